//! One owner per platform connection across instances: a session-level
//! advisory lock held on a dedicated connection. The instance holding it
//! runs the connection; when that instance dies its session ends, the
//! lock is released by PostgreSQL, and another instance's next attempt
//! (every [`RETRY`]) takes it over.

use crate::core::store::StoreError;
use sqlx::postgres::PgConnection;
use sqlx::Connection;
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The advisory lock class (two-int key space) of platform ownership.
const OWNER_LOCK: i32 = 0x5357_424f; // "SWBO"
/// How often a waiting instance tries for the lock, and the owner checks
/// that its connection (and so its lock) is still alive.
pub const RETRY: Duration = Duration::from_secs(2);

/// Runs `term` each time this instance becomes the owner of `platform`,
/// until `stop`. The token `term` gets is cancelled when ownership is lost
/// (the dedicated connection failed) or at `stop`; `term` must then stop
/// using the platform connection.
pub async fn while_owner<F, Fut>(
    url: String,
    platform: &'static str,
    stop: CancellationToken,
    term: F,
) where
    F: Fn(CancellationToken) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        let conn = tokio::select! {
            _ = stop.cancelled() => return,
            c = acquire(&url, platform) => c,
        };
        let mut conn = match conn {
            Ok(Some(c)) => c,
            Ok(None) | Err(_) => {
                if let Err(e) = conn {
                    tracing::warn!(platform, error = %e, "cannot reach PostgreSQL for platform ownership");
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(RETRY) => continue,
                }
            }
        };
        tracing::info!(platform, "this instance now owns the platform connection");
        metrics::gauge!("swarmbridge_platform_owner", "platform" => platform).set(1.0);
        let term_token = stop.child_token();
        let running = term(term_token.clone());
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

/// A dedicated connection holding `platform`'s lock, or None when another
/// instance holds it.
async fn acquire(url: &str, platform: &str) -> Result<Option<PgConnection>, StoreError> {
    let mut conn = PgConnection::connect(url)
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
        .bind(OWNER_LOCK)
        .bind(platform)
        .fetch_one(&mut conn)
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    if got {
        Ok(Some(conn))
    } else {
        let _ = conn.close().await;
        Ok(None)
    }
}
