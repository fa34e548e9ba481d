//! Rate limits with governor, keyed per (platform, caller) and request
//! class. A limited request is refused with the wait, never queued.

use crate::config::{LimitsConfig, Rate};
use crate::core::model::Role;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

/// The class every request counts against.
pub const REQUESTS: &str = "requests";

struct Class {
    rate: Rate,
    limiter: DefaultKeyedRateLimiter<String>,
}

/// One keyed limiter per configured class.
pub struct RateLimits {
    classes: BTreeMap<String, Class>,
    exempt: Vec<Role>,
    clock: DefaultClock,
}

/// A refused request: which class and how long to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// The class that refused (`requests`, `msg.send`, ...).
    pub class: String,
    /// Milliseconds until a retry can pass (at least 1).
    pub retry_after_ms: u64,
}

fn quota(rate: Rate) -> Quota {
    let period = Duration::from_secs_f64(1.0 / rate.per_s).max(Duration::from_nanos(1));
    let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

impl RateLimits {
    /// Builds the limiters from `[limits.rates]` and `exempt_roles`.
    pub fn new(cfg: &LimitsConfig) -> Self {
        let classes = cfg
            .rates
            .iter()
            .map(|(name, rate)| {
                (
                    name.clone(),
                    Class {
                        rate: *rate,
                        limiter: RateLimiter::keyed(quota(*rate)),
                    },
                )
            })
            .collect();
        RateLimits {
            classes,
            exempt: cfg.exempt_roles.clone(),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one request of rate class `class` by `key` (e.g. `ws:agent-3`):
    /// against `requests`, then against `class` when it is another
    /// configured class. Exempt roles always pass.
    pub fn check(&self, key: &str, role: Role, class: &str) -> Result<(), Limited> {
        if self.exempt.contains(&role) {
            return Ok(());
        }
        let key = key.to_string();
        for name in [REQUESTS, class] {
            let Some(limiter) = self.classes.get(name).map(|c| &c.limiter) else {
                continue;
            };
            if let Err(not_until) = limiter.check_key(&key) {
                let wait = not_until.wait_time_from(self.clock.now());
                return Err(Limited {
                    class: name.to_string(),
                    retry_after_ms: (wait.as_millis() as u64).max(1),
                });
            }
            if name == class {
                break;
            }
        }
        Ok(())
    }

    /// The configured rates as `welcome.limits.rates` reports them.
    pub fn report(&self) -> serde_json::Value {
        let map: serde_json::Map<String, serde_json::Value> = self
            .classes
            .iter()
            .map(|(name, c)| {
                (
                    name.clone(),
                    serde_json::json!({ "per_s": c.rate.per_s, "burst": c.rate.burst }),
                )
            })
            .collect();
        serde_json::Value::Object(map)
    }

    /// Forgets keys that are back at full burst (bounded memory).
    pub fn retain_recent(&self) {
        for c in self.classes.values() {
            c.limiter.retain_recent();
            c.limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_s: f64, burst: u32) -> RateLimits {
        let mut rates = BTreeMap::new();
        rates.insert(
            REQUESTS.to_string(),
            Rate {
                per_s: 1000.0,
                burst: 1000,
            },
        );
        rates.insert("broadcast".to_string(), Rate { per_s, burst });
        RateLimits::new(&LimitsConfig {
            max_frame_bytes: 65536,
            max_bad_frames: 20,
            max_text_chars: 4000,
            max_prompt_chars: 8000,
            max_claims: 10,
            send_queue: 16,
            heartbeat_s: 20,
            hello_timeout_s: 10,
            exempt_roles: vec![Role::Admin],
            rates,
        })
    }

    #[test]
    fn burst_then_refusal_with_a_wait() {
        let l = limits(1.0, 3);
        for _ in 0..3 {
            l.check("ws:a", Role::Agent, "broadcast").unwrap();
        }
        let err = l.check("ws:a", Role::Agent, "broadcast").unwrap_err();
        assert_eq!(err.class, "broadcast");
        assert!(
            err.retry_after_ms > 0 && err.retry_after_ms <= 1000,
            "{err:?}"
        );
        // other callers and other classes are unaffected
        l.check("ws:b", Role::Agent, "broadcast").unwrap();
        l.check("ws:a", Role::Agent, "status").unwrap();
    }

    #[test]
    fn exempt_roles_pass() {
        let l = limits(1.0, 1);
        for _ in 0..5 {
            l.check("ws:root", Role::Admin, "broadcast").unwrap();
        }
    }
}
