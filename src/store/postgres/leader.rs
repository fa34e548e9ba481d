//! One owner per platform connection across instances: a session-level
//! advisory lock held on a dedicated connection. The instance holding it
//! runs the connection; when that instance dies its session ends, the
//! lock is released by PostgreSQL, and another instance's next attempt
//! (every [`RETRY`]) takes it over.
//!
//! A process that dies closes its sockets, so PostgreSQL ends the session
//! at once. A host that dies or is cut off says nothing: the owner's
//! session asks PostgreSQL to end it after [`SILENCE`] without a word (the
//! owner checks in every [`RETRY`]), and to probe the peer with TCP
//! keepalives, so ownership moves within `SILENCE + RETRY` then too.

use crate::core::store::{OwnerFence, StoreError};
use crate::store::PlatformOwnership;
use sqlx::postgres::PgConnection;
use sqlx::Connection;
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The advisory lock class (two-int key space) of platform ownership.
pub(super) const OWNER_LOCK: i32 = 0x5357_424f; // "SWBO"
/// How often a waiting instance tries for the lock, and the owner checks
/// that its connection (and so its lock) is still alive.
pub const RETRY: Duration = Duration::from_secs(2);
/// How long an owner's session may stay silent before PostgreSQL ends it
/// (and so releases ownership): several [`RETRY`] check-ins.
pub const SILENCE: Duration = Duration::from_secs(8);

/// Session settings of the owner's connection: end it after [`SILENCE`]
/// idle (PostgreSQL 14 and later), and notice a vanished peer through TCP
/// keepalives (5 s idle, then 3 probes 2 s apart). A server that knows
/// neither setting refuses the statement; ownership then still moves when
/// the owner's process dies, and after the operating system's keepalive
/// time when its host does.
const OWNER_SESSION: &str = "SET idle_session_timeout = '8s'; \
    SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3";

/// Runs `term` each time this instance becomes the owner of `platform`,
/// until `stop`. The token `term` gets is cancelled when ownership is lost
/// (the dedicated connection failed) or at `stop`; `term` must then stop
/// using the platform connection. `taken_over` is false only for an
/// ownership taken at this instance's first attempt (nobody held it).
pub async fn while_owner<F, Fut>(
    url: String,
    platform: &'static str,
    stop: CancellationToken,
    term: F,
) where
    F: Fn(PlatformOwnership) -> Fut,
    Fut: Future<Output = ()>,
{
    // another owner (or this instance, earlier) may have used the platform
    let mut contested = false;
    loop {
        let conn = tokio::select! {
            _ = stop.cancelled() => return,
            c = acquire(&url, platform) => c,
        };
        let (mut conn, session) = match conn {
            Ok(Some(c)) => c,
            Ok(None) | Err(_) => {
                contested = true;
                if let Err(e) = conn {
                    tracing::warn!(platform, error = %e, "cannot reach PostgreSQL for platform ownership");
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(RETRY) => continue,
                }
            }
        };
        tracing::info!(
            platform,
            taken_over = contested,
            "this instance now owns the platform connection"
        );
        metrics::gauge!("swarmbridge_platform_owner", "platform" => platform).set(1.0);
        let term_token = stop.child_token();
        let running = term(PlatformOwnership {
            stop: term_token.clone(),
            taken_over: contested,
            fence: Some(OwnerFence {
                platform: platform.to_string(),
                session,
            }),
        });
        contested = true;
        tokio::pin!(running);
        let mut check = tokio::time::interval(RETRY);
        check.tick().await;
        let lost = loop {
            tokio::select! {
                _ = &mut running => break false,
                _ = check.tick() => {
                    let alive = tokio::time::timeout(
                        RETRY,
                        sqlx::query("SELECT 1").execute(&mut conn),
                    ).await;
                    if !matches!(alive, Ok(Ok(_))) {
                        break true;
                    }
                }
            }
        };
        term_token.cancel();
        if lost {
            tracing::warn!(platform, "lost the database session holding platform ownership; stopping the platform connection");
            running.await;
        }
        metrics::gauge!("swarmbridge_platform_owner", "platform" => platform).set(0.0);
        let _ = sqlx::query("SELECT pg_advisory_unlock($1, hashtext($2))")
            .bind(OWNER_LOCK)
            .bind(platform)
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
        // a term that ended by itself (the platform refused to start) is
        // retried after a pause, by whichever instance gets the lock
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(if lost { Duration::ZERO } else { RETRY }) => {}
        }
    }
}

/// A dedicated connection holding `platform`'s lock (with its session's
/// pid, the fence of writes only the owner may make), or None when another
/// instance holds it.
async fn acquire(url: &str, platform: &str) -> Result<Option<(PgConnection, i64)>, StoreError> {
    let mut conn = PgConnection::connect(url)
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    if let Err(e) = sqlx::Executor::execute(&mut conn, OWNER_SESSION).await {
        tracing::debug!(platform, error = %e, "owner session settings refused; ownership moves on process death only");
    }
    let (got, session): (bool, i32) =
        sqlx::query_as("SELECT pg_try_advisory_lock($1, hashtext($2)), pg_backend_pid()")
            .bind(OWNER_LOCK)
            .bind(platform)
            .fetch_one(&mut conn)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    if got {
        Ok(Some((conn, i64::from(session))))
    } else {
        let _ = conn.close().await;
        Ok(None)
    }
}
