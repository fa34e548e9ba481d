//! The connection to Twitch (or, for tests, any IRC server over plain TCP)
//! through twitch-irc's `TCPTransport<C>` with our own `MakeConnection`.
//!
//! twitch-irc's `new_socket()` takes no arguments, so what it needs (the
//! address, the backoff state, the JOIN budget) lives in a process-wide
//! slot: one Twitch client per process. [`install`] claims the slot and the
//! returned guard frees it. Every connection attempt passes through
//! [`Link::before_attempt`]: exponential backoff with a cap (reset when the
//! server welcomes us), the JOIN budget for the channels the connection will
//! join, and one log line per state change, not per attempt. Every line
//! read from the server passes through [`super::tags::Repaired`] before
//! twitch-irc parses it (tag values it would panic on are blanked).

use super::tags::Repaired;
use crate::config::TwitchReconnectConfig;
use async_trait::async_trait;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use twitch_irc::transport::tcp::{MakeConnection, TCPTransport, TCPTransportConnectError, TLS};

/// Twitch's plain-text IRC endpoint, used when `twitch.server` is unset and
/// TLS is not wanted (never by default).
const TWITCH_PLAIN: &str = "irc.chat.twitch.tv:6667";

/// A quota that lets at most `n` cells through in any window of `window`:
/// a burst of half of them, the rest spread evenly (GCRA allows
/// `burst + window / period` in a window; both halves sum to `n`).
pub fn window_quota(n: u32, window: Duration) -> Quota {
    let burst = (n / 2).max(1);
    let spread = (n - burst).max(1);
    let nanos = window.as_nanos().div_ceil(u128::from(spread));
    let period = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX).max(1));
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Starting,
    Connected,
    Reconnecting,
    Failing,
}

#[derive(Debug)]
struct LinkState {
    phase: Phase,
    /// Attempts since the server last welcomed us.
    attempts_since_welcome: u32,
    last_error: Option<String>,
    /// Why the last login failed (refused token, failed refresh), until a welcome.
    login_problem: Option<String>,
}

/// What the connection attempts share: where to connect, the backoff state,
/// the JOIN budget, and whether the server has welcomed the current
/// connection.
pub struct Link {
    server: Option<String>,
    reconnect: TwitchReconnectConfig,
    joins: DefaultDirectRateLimiter,
    channels: usize,
    state: Mutex<LinkState>,
    epoch: AtomicU64,
    attempts: AtomicU64,
    connected: watch::Sender<bool>,
    stop: CancellationToken,
}

impl Link {
    /// A link to `server` (plain TCP) or Twitch over TLS (`None`), joining
    /// `channels` channels per connection within `joins` per `join_window`.
    pub fn new(
        server: Option<String>,
        reconnect: TwitchReconnectConfig,
        channels: usize,
        joins: u32,
        join_window: Duration,
        stop: CancellationToken,
    ) -> Arc<Link> {
        Arc::new(Link {
            server,
            reconnect,
            joins: RateLimiter::direct(window_quota(joins, join_window)),
            channels,
            state: Mutex::new(LinkState {
                phase: Phase::Starting,
                attempts_since_welcome: 0,
                last_error: None,
                login_problem: None,
            }),
            epoch: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            connected: watch::channel(false).0,
            stop,
        })
    }

    /// Where the client connects, for logs.
    pub fn target(&self) -> String {
        match &self.server {
            Some(s) => format!("{s} (plain TCP)"),
            None => "irc.chat.twitch.tv:6697 (TLS)".into(),
        }
    }

    /// True while the current connection is welcomed by the server.
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// A receiver that sees every change of [`Link::is_connected`].
    pub fn watch_connected(&self) -> watch::Receiver<bool> {
        self.connected.subscribe()
    }

    /// Increases with every connection attempt: a channel joined under an
    /// older epoch is no longer joined.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Connection attempts so far.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The server welcomed us (001): backoff resets, sending may start.
    pub fn welcomed(&self) {
        let mut st = self.lock();
        st.attempts_since_welcome = 0;
        st.last_error = None;
        st.login_problem = None;
        if st.phase != Phase::Connected {
            tracing::info!(platform = "twitch", server = %self.target(), "twitch: connected");
            st.phase = Phase::Connected;
        }
        drop(st);
        self.connected.send_replace(true);
    }

    fn delay_for(&self, attempt: u32) -> Duration {
        if attempt == 0 {
            return Duration::ZERO;
        }
        let base = self.reconnect.base_ms as f64;
        let exp = base * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
        let capped = exp.min(self.reconnect.max_ms as f64);
        let jitter = rand::rng().random_range(0.8..=1.0);
        Duration::from_millis((capped * jitter) as u64)
    }

    /// Runs before every connection attempt: marks the link down, waits the
    /// backoff, then takes JOIN budget for the channels to (re)join.
    async fn before_attempt(&self) -> std::io::Result<()> {
        self.connected.send_replace(false);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let delay = {
            let mut st = self.lock();
            let n = st.attempts_since_welcome;
            st.attempts_since_welcome = n.saturating_add(1);
            let delay = self.delay_for(n);
            match st.phase {
                Phase::Connected => {
                    tracing::warn!(platform = "twitch", "twitch: connection lost; reconnecting");
                    st.phase = Phase::Reconnecting;
                }
                Phase::Starting | Phase::Reconnecting if n > 0 => {
                    tracing::warn!(
                        platform = "twitch",
                        server = %self.target(),
                        error = st.last_error.as_deref().unwrap_or("closed before welcome"),
                        max_backoff_ms = self.reconnect.max_ms,
                        "twitch: cannot connect; retrying with exponential backoff"
                    );
                    st.phase = Phase::Failing;
                }
                _ => {}
            }
            delay
        };
        tracing::debug!(
            platform = "twitch",
            delay_ms = delay.as_millis() as u64,
            "twitch: connection attempt"
        );
        tokio::select! {
            _ = self.stop.cancelled() => return Err(stopped()),
            _ = tokio::time::sleep(delay) => {}
        }
        for _ in 0..self.channels {
            tokio::select! {
                _ = self.stop.cancelled() => return Err(stopped()),
                _ = self.joins.until_ready() => {}
            }
        }
        self.attempts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn attempt_failed(&self, e: &dyn std::fmt::Display) {
        self.lock().last_error = Some(e.to_string());
    }

    /// The bot could not log in (the server refused the token, or no token
    /// could be had): shown on `/ready` and the dashboard until a welcome.
    pub fn login_failed(&self, why: &str) {
        let mut st = self.lock();
        st.last_error = Some(format!("login failed: {why}"));
        st.login_problem = Some(format!("login failed: {why}"));
    }

    /// Why the link is not up: the login problem, else the last connection
    /// error; None while connected or before any attempt failed.
    pub fn problem(&self) -> Option<String> {
        if self.is_connected() {
            return None;
        }
        let st = self.lock();
        st.login_problem.clone().or_else(|| st.last_error.clone())
    }
}

fn stopped() -> std::io::Error {
    std::io::Error::other("the Twitch front door is stopped")
}

static SLOT: Mutex<Option<Arc<Link>>> = Mutex::new(None);

/// Holds the process-wide slot; dropping it frees the slot, and connection
/// attempts of a client that outlives it fail at once.
pub struct SlotGuard(Arc<Link>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut slot = SLOT.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|l| Arc::ptr_eq(l, &self.0)) {
            *slot = None;
        }
    }
}

/// Another Twitch client already runs in this process.
#[derive(Debug, thiserror::Error)]
#[error("a Twitch client already runs in this process (one per process)")]
pub struct SlotTaken;

/// Makes `link` the one the dialers use.
pub fn install(link: Arc<Link>) -> Result<SlotGuard, SlotTaken> {
    let mut slot = SLOT.lock().unwrap_or_else(|e| e.into_inner());
    if slot.is_some() {
        return Err(SlotTaken);
    }
    *slot = Some(link.clone());
    Ok(SlotGuard(link))
}

/// True when this process's Twitch client is connected and welcomed.
pub fn link_connected() -> bool {
    SLOT.lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_some_and(|l| *l.connected.borrow())
}

/// Why this process's Twitch link is not up (see [`Link::problem`]).
pub fn link_problem() -> Option<String> {
    let link = SLOT.lock().unwrap_or_else(|e| e.into_inner()).clone();
    link.and_then(|l| l.problem())
}

/// Records a login problem on this process's Twitch link.
pub fn report_login_problem(why: &str) {
    let link = SLOT.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(l) = link {
        l.login_failed(why);
    }
}

/// True when no Twitch client holds the process's slot (tests wait for it
/// between servers).
pub fn slot_is_free() -> bool {
    SLOT.lock().unwrap_or_else(|e| e.into_inner()).is_none()
}

fn current() -> std::io::Result<Arc<Link>> {
    SLOT.lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .ok_or_else(stopped)
}

/// Connects over plain TCP to `twitch.server` (tests, proxies).
pub struct PlainDialer;

#[async_trait]
impl MakeConnection for PlainDialer {
    type Socket = Repaired<TcpStream>;

    async fn new_socket() -> Result<Self::Socket, TCPTransportConnectError> {
        let link = current()?;
        link.before_attempt().await?;
        let addr = link.server.clone().unwrap_or_else(|| TWITCH_PLAIN.into());
        match TcpStream::connect(addr.as_str()).await {
            Ok(socket) => Ok(Repaired::new(socket)),
            Err(e) => {
                link.attempt_failed(&e);
                Err(e.into())
            }
        }
    }
}

/// Connects to Twitch over TLS (rustls with the webpki roots).
pub struct TlsDialer;

#[async_trait]
impl MakeConnection for TlsDialer {
    type Socket = Repaired<<TLS as MakeConnection>::Socket>;

    async fn new_socket() -> Result<Self::Socket, TCPTransportConnectError> {
        let link = current()?;
        link.before_attempt().await?;
        // rustls is built with two crypto providers here (ring for reqwest,
        // aws-lc-rs through twitch-irc's tokio-rustls), so it cannot pick
        // one by itself: choose ring for the process (an error means one is
        // already installed, which is as good).
        let _ = rustls::crypto::ring::default_provider().install_default();
        TLS::new_socket()
            .await
            .map(Repaired::new)
            .inspect_err(|e| link.attempt_failed(e))
    }
}

/// The transport to `twitch.server` over plain TCP.
pub type PlainTransport = TCPTransport<PlainDialer>;
/// The transport to Twitch over TLS.
pub type TlsTransport = TCPTransport<TlsDialer>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_quota_never_lets_more_than_n_through_in_a_window() {
        // Simulated with governor's fake clock: send whenever allowed for
        // three windows and count the busiest window.
        use governor::clock::FakeRelativeClock;
        let clock = FakeRelativeClock::default();
        let window = Duration::from_secs(30);
        let lim = RateLimiter::direct_with_clock(window_quota(20, window), clock.clone());
        let mut sent = Vec::new();
        let step = Duration::from_millis(10);
        let mut t = Duration::ZERO;
        while t < window * 3 {
            while lim.check().is_ok() {
                sent.push(t);
            }
            clock.advance(step);
            t += step;
        }
        let busiest = sent
            .iter()
            .map(|&s| sent.iter().filter(|&&x| x >= s && x <= s + window).count())
            .max()
            .unwrap_or(0);
        assert_eq!(busiest, 20, "{sent:?}");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let link = Link::new(
            None,
            TwitchReconnectConfig {
                base_ms: 100,
                max_ms: 1000,
                min_interval_ms: 0,
            },
            1,
            20,
            Duration::from_secs(10),
            CancellationToken::new(),
        );
        assert_eq!(link.delay_for(0), Duration::ZERO);
        let d1 = link.delay_for(1).as_millis();
        let d3 = link.delay_for(3).as_millis();
        let d9 = link.delay_for(9).as_millis();
        assert!((80..=100).contains(&d1), "{d1}");
        assert!((320..=400).contains(&d3), "{d3}");
        assert!((800..=1000).contains(&d9), "{d9}");
    }
}
