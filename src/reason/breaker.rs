//! Circuit breaker in front of an outside backend (the reasoning backend,
//! the embeddings backend).
//!
//! Closed: calls go through; `threshold` consecutive failed calls (each after
//! all its retries) open it. Open: calls are refused at once, without touching
//! the backend, until `cooldown` has passed. Half-open: exactly one trial call
//! goes through; its success closes the breaker, its failure opens it again
//! for another cooldown.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// What the breaker currently does with calls, as reported in stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// Calls are refused until the cooldown ends.
    Open,
    /// The cooldown has ended: the next call is a trial (or one is running).
    HalfOpen,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed { consecutive_failures: u32 },
    Open { until: Instant },
    HalfOpen { trial_running: bool },
}

/// While half-open with a trial running, other callers are told to come back
/// after this long: the trial will have settled the state by then.
const TRIAL_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The breaker's state machine; shared by all calls to one backend (one
/// `Reasoner`, one embeddings client).
#[derive(Debug)]
pub struct CircuitBreaker {
    /// Names the backend in the log line written when the circuit opens.
    backend: &'static str,
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

/// Leave to make one backend call. Report how it went with
/// [`CallPermit::record`]; a permit dropped unrecorded (the call was cancelled
/// or never reached the backend) leaves the breaker as it was and frees the
/// half-open trial slot for the next caller.
#[must_use = "record the outcome of the call"]
#[derive(Debug)]
pub struct CallPermit<'a> {
    breaker: &'a CircuitBreaker,
    trial: bool,
}

impl CircuitBreaker {
    /// A closed breaker for the reasoning backend. `threshold` 0 disables
    /// it: it never opens.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self::for_backend("reasoning", threshold, cooldown)
    }

    /// A closed breaker for the backend named `backend` (in logs only).
    /// `threshold` 0 disables it: it never opens.
    pub fn for_backend(backend: &'static str, threshold: u32, cooldown: Duration) -> Self {
        Self {
            backend,
            threshold,
            cooldown,
            state: Mutex::new(State::Closed {
                consecutive_failures: 0,
            }),
        }
    }

    /// Asks leave to call the backend now; `Err(retry_after_ms)` while open.
    pub fn admit(&self) -> Result<CallPermit<'_>, u64> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Result<CallPermit<'_>, u64> {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Ok(CallPermit {
                breaker: self,
                trial: false,
            }),
            State::Open { until } if now < until => Err(millis_ceil(until - now)),
            State::Open { .. }
            | State::HalfOpen {
                trial_running: false,
            } => {
                *state = State::HalfOpen {
                    trial_running: true,
                };
                Ok(CallPermit {
                    breaker: self,
                    trial: true,
                })
            }
            State::HalfOpen {
                trial_running: true,
            } => Err(millis_ceil(TRIAL_RETRY_AFTER)),
        }
    }

    /// The state as callers will meet it right now.
    pub fn state(&self) -> CircuitState {
        self.state_at(Instant::now())
    }

    fn state_at(&self, now: Instant) -> CircuitState {
        match *self.lock() {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { until } if now < until => CircuitState::Open,
            State::Open { .. } | State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    fn settle(&self, trial: bool, success: bool, now: Instant) {
        let mut state = self.lock();
        *state = match (*state, success) {
            (_, true) if trial => State::Closed {
                consecutive_failures: 0,
            },
            (_, false) if trial => State::Open {
                until: now + self.cooldown,
            },
            (State::Closed { .. }, true) => State::Closed {
                consecutive_failures: 0,
            },
            (
                State::Closed {
                    consecutive_failures,
                },
                false,
            ) => {
                let failures = consecutive_failures.saturating_add(1);
                if self.threshold > 0 && failures >= self.threshold {
                    tracing::warn!(
                        backend = self.backend,
                        failures,
                        cooldown_s = self.cooldown.as_secs(),
                        "backend circuit opened"
                    );
                    State::Open {
                        until: now + self.cooldown,
                    }
                } else {
                    State::Closed {
                        consecutive_failures: failures,
                    }
                }
            }
            // A call admitted before the breaker opened finished late: the
            // trial, not stragglers, decides when it closes again.
            (other, _) => other,
        };
    }

    fn release_trial(&self) {
        let mut state = self.lock();
        if let State::HalfOpen {
            trial_running: true,
        } = *state
        {
            *state = State::HalfOpen {
                trial_running: false,
            };
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a plain value: a panic elsewhere cannot leave it half-written.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl CallPermit<'_> {
    /// Reports the call's outcome: `true` if the backend answered usefully.
    pub fn record(self, success: bool) {
        self.record_at(success, Instant::now());
    }

    fn record_at(mut self, success: bool, now: Instant) {
        self.breaker.settle(self.trial, success, now);
        // Settled: the trial slot must not be released again on drop.
        self.trial = false;
    }
}

impl Drop for CallPermit<'_> {
    fn drop(&mut self) {
        if self.trial {
            self.breaker.release_trial();
        }
    }
}

fn millis_ceil(d: Duration) -> u64 {
    let ms = d.as_micros().div_ceil(1000);
    u64::try_from(ms).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: Duration = Duration::from_secs(30);

    fn fail_at(breaker: &CircuitBreaker, now: Instant) {
        breaker
            .admit_at(now)
            .expect("admitted")
            .record_at(false, now);
    }

    #[test]
    fn opens_after_threshold_consecutive_failures_and_refuses_until_cooldown() {
        let breaker = CircuitBreaker::new(3, COOLDOWN);
        let t0 = Instant::now();
        fail_at(&breaker, t0);
        fail_at(&breaker, t0);
        assert_eq!(breaker.state_at(t0), CircuitState::Closed);
        fail_at(&breaker, t0);
        assert_eq!(breaker.state_at(t0), CircuitState::Open);
        let refused = breaker.admit_at(t0 + Duration::from_secs(10)).map(|_| ());
        assert_eq!(refused, Err(20_000));
    }

    #[test]
    fn success_resets_the_failure_count() {
        let breaker = CircuitBreaker::new(2, COOLDOWN);
        let t0 = Instant::now();
        fail_at(&breaker, t0);
        breaker.admit_at(t0).expect("closed").record(true);
        fail_at(&breaker, t0);
        assert_eq!(breaker.state_at(t0), CircuitState::Closed);
    }

    #[test]
    fn half_open_lets_one_trial_through_and_its_failure_reopens() {
        let breaker = CircuitBreaker::new(1, COOLDOWN);
        let t0 = Instant::now();
        fail_at(&breaker, t0);
        let after = t0 + COOLDOWN;
        assert_eq!(breaker.state_at(after), CircuitState::HalfOpen);
        let trial = breaker.admit_at(after).expect("trial admitted");
        assert!(trial.trial);
        assert!(breaker.admit_at(after).is_err(), "only one trial at a time");
        trial.record_at(false, after);
        assert_eq!(breaker.state_at(after), CircuitState::Open);
        assert!(breaker.admit_at(after + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn successful_trial_closes_and_dropped_trial_frees_the_slot() {
        let breaker = CircuitBreaker::new(1, COOLDOWN);
        let t0 = Instant::now();
        fail_at(&breaker, t0);
        let after = t0 + COOLDOWN;
        drop(breaker.admit_at(after).expect("trial admitted"));
        let trial = breaker.admit_at(after).expect("slot freed by the drop");
        trial.record(true);
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[test]
    fn threshold_zero_never_opens() {
        let breaker = CircuitBreaker::new(0, COOLDOWN);
        let t0 = Instant::now();
        for _ in 0..100 {
            fail_at(&breaker, t0);
        }
        assert_eq!(breaker.state_at(t0), CircuitState::Closed);
    }
}
