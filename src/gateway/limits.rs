//! Abuse limits on the listener, shared by every front door on it: open
//! connections per client address and in total ([`ConnLimits`]), and
//! failed authentications per client address ([`AuthFailures`]).
//!
//! An address is an IPv4 address, or an IPv6 /64 (one subscriber's usual
//! allocation, so a client cannot dodge the limit by hopping addresses in
//! its own prefix). Loopback clients may be exempt from the per-address
//! limit (`server.loopback_exempt`): a reverse proxy or a local load
//! generator then counts only against the total.

use crate::config::{Rate, ServerConfig};
use crate::core::error::CoreError;
use crate::core::model::Agent;
use crate::gateway::AppState;
use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The key limits are counted under: the IPv4 address, or the IPv6 /64.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// Why a new connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `server.max_connections` connections are open.
    Total(usize),
    /// `server.max_connections_per_addr` connections from this address are open.
    PerAddress(usize),
}

impl Refusal {
    /// The HTTP status, error code and message the refused client gets.
    pub fn reply(self) -> (u16, &'static str, String) {
        match self {
            Refusal::Total(max) => (
                503,
                "unavailable",
                format!("the server has reached its connection limit (server.max_connections = {max}); retry later"),
            ),
            Refusal::PerAddress(max) => (
                429,
                "rate_limited",
                format!("too many connections from your address (server.max_connections_per_addr = {max}); close some first"),
            ),
        }
    }

    /// The label of the refusal in `swarmbridge_connections_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Total(_) => "total",
            Refusal::PerAddress(_) => "per_address",
        }
    }
}

/// Counts open listener connections, in total and per address. Admitting
/// a connection returns a [`ConnGuard`] that gives its place back when dropped.
pub struct ConnLimits {
    max_total: usize,
    max_per_addr: usize,
    loopback_exempt: bool,
    total: AtomicUsize,
    per_addr: DashMap<IpAddr, usize>,
}

impl ConnLimits {
    /// Limits from `[server]`.
    pub fn new(cfg: &ServerConfig) -> Arc<ConnLimits> {
        Arc::new(ConnLimits {
            max_total: cfg.max_connections.max(1),
            max_per_addr: cfg.max_connections_per_addr.max(1),
            loopback_exempt: cfg.loopback_exempt,
            total: AtomicUsize::new(0),
            per_addr: DashMap::new(),
        })
    }

    /// Admits a connection from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnGuard, Refusal> {
        let prev = self.total.fetch_add(1, Ordering::AcqRel);
        if prev >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Total(self.max_total));
        }
        let key =
            (!(self.loopback_exempt && ip.to_canonical().is_loopback())).then(|| address_key(ip));
        if let Some(key) = key {
            let mut n = self.per_addr.entry(key).or_insert(0);
            if *n >= self.max_per_addr {
                drop(n);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::PerAddress(self.max_per_addr));
            }
            *n += 1;
        }
        Ok(ConnGuard {
            limits: self.clone(),
            key,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

/// One admitted connection's place; released on drop.
pub struct ConnGuard {
    limits: Arc<ConnLimits>,
    key: Option<IpAddr>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.limits.per_addr.remove_if_mut(&key, |_, n| {
                *n = n.saturating_sub(1);
                *n == 0
            });
        }
        self.limits.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Failed authentications per client address. After
/// `server.auth_failures.burst` failures (refilled at `per_s`), the
/// address is refused every authentication, good token or bad, until the
/// wait has passed: guessing tokens goes no faster than `per_s`.
pub struct AuthFailures {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    blocked: DashMap<IpAddr, Instant>,
    clock: DefaultClock,
}

impl AuthFailures {
    /// The limiter for `[server] auth_failures`.
    pub fn new(rate: Rate) -> AuthFailures {
        let period = Duration::from_secs_f64(1.0 / rate.per_s).max(Duration::from_nanos(1));
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN));
        AuthFailures {
            limiter: RateLimiter::keyed(quota),
            blocked: DashMap::new(),
            clock: DefaultClock::default(),
        }
    }

    /// `rate_limited` (with the wait) while `ip` may not authenticate.
    pub fn check(&self, ip: IpAddr) -> Result<(), CoreError> {
        let key = address_key(ip);
        let Some(until) = self.blocked.get(&key).map(|u| *u) else {
            return Ok(());
        };
        let now = Instant::now();
        if until <= now {
            self.blocked.remove_if(&key, |_, u| *u <= now);
            return Ok(());
        }
        Err(self.refusal(until - now))
    }

    /// Counts one failed authentication from `ip`; the error to give when
    /// this failure used up the address's allowance.
    pub fn failed(&self, ip: IpAddr) -> Option<CoreError> {
        let key = address_key(ip);
        metrics::counter!("swarmbridge_auth_failures_total").increment(1);
        match self.limiter.check_key(&key) {
            Ok(()) => None,
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                self.blocked.insert(key, Instant::now() + wait);
                tracing::warn!(
                    address = %key,
                    retry_after_ms = wait.as_millis() as u64,
                    "too many failed authentications from one address"
                );
                Some(self.refusal(wait))
            }
        }
    }

    fn refusal(&self, wait: Duration) -> CoreError {
        let ms = (wait.as_millis() as u64).max(1);
        CoreError::RateLimited {
            message: format!(
                "too many failed authentications from your address; retry in {} s",
                ms.div_ceil(1000)
            ),
            retry_after_ms: ms,
        }
    }

    /// Forgets addresses that are back at full allowance (bounded memory).
    pub fn retain_recent(&self) {
        let now = Instant::now();
        self.blocked.retain(|_, until| *until > now);
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// The client's address as the listener recorded it on the request (None
/// for a request that did not come through [`crate::gateway::listener`]).
pub fn peer_of(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Extracts the client's address (see [`peer_of`]); never refuses.
pub struct PeerAddr(pub Option<IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(peer_of(&parts.extensions)))
    }
}

/// Checks an agent token for a client at `peer` (None when the transport
/// gives no address, e.g. the stdio bridge): refused while the address is
/// rate-limited, and a failure counts against it. Every front door that
/// takes an agent token calls this, never the core directly.
pub async fn authenticate(
    app: &AppState,
    peer: Option<IpAddr>,
    token: &str,
) -> Result<Agent, CoreError> {
    if let Some(ip) = peer {
        app.auth_failures.check(ip)?;
    }
    match app.core.authenticate(token).await {
        Err(CoreError::Unauthorized(msg)) => {
            let limited = peer.and_then(|ip| app.auth_failures.failed(ip));
            Err(limited.unwrap_or(CoreError::Unauthorized(msg)))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_cfg(total: usize, per_addr: usize, loopback_exempt: bool) -> ServerConfig {
        let mut cfg = crate::config::Config::load(None).expect("defaults").server;
        cfg.max_connections = total;
        cfg.max_connections_per_addr = per_addr;
        cfg.loopback_exempt = loopback_exempt;
        cfg
    }

    #[test]
    fn per_address_and_total_limits_refuse_and_release() {
        let limits = ConnLimits::new(&server_cfg(3, 2, false));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let g1 = limits.admit(a).unwrap();
        let _g2 = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).err(), Some(Refusal::PerAddress(2)));
        let _g3 = limits.admit(b).unwrap();
        assert_eq!(limits.admit(b).err(), Some(Refusal::Total(3)));
        drop(g1);
        assert_eq!(limits.open(), 2);
        let _g4 = limits.admit(a).unwrap();
    }

    #[test]
    fn loopback_counts_only_against_the_total_when_exempt() {
        let limits = ConnLimits::new(&server_cfg(4, 1, true));
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..4).map(|_| limits.admit(lo).unwrap()).collect();
        assert_eq!(limits.admit(lo).err(), Some(Refusal::Total(4)));
        drop(held);
        assert_eq!(limits.open(), 0);
    }

    #[test]
    fn ipv6_addresses_in_one_64_share_a_limit() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(address_key(mapped), "10.1.2.3".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn failures_beyond_the_burst_block_the_address_with_a_wait() {
        let f = AuthFailures::new(Rate {
            per_s: 0.01,
            burst: 2,
        });
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(f.failed(ip).is_none());
        assert!(f.failed(ip).is_none());
        f.check(ip).unwrap();
        let e = f.failed(ip).expect("third failure is refused");
        assert!(e.retry_after_ms().unwrap_or(0) > 1000, "{e:?}");
        assert_eq!(f.check(ip).unwrap_err().code(), "rate_limited");
        f.check("192.0.2.8".parse().unwrap()).unwrap();
    }
}
