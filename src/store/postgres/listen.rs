//! Events across instances: a dedicated connection `LISTEN`s on
//! [`CHANNEL`]; each committed batch of any instance notifies `first last`
//! (its seqs). A notification only says "there is more up to `last`": the
//! writer then publishes `(published, last]` from the `events` table, so
//! the table stays the source of truth and a notification missed while the
//! connection was down is caught up from it (at reconnection, and by the
//! periodic [`Store::sync_external`](crate::core::store::Store::sync_external)).

use super::events::CHANNEL;
use super::writer::Request;
use crate::core::store::CommitLog;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Parses a notification payload `first last` into `last`.
fn last_seq(payload: &str) -> Option<i64> {
    payload.split_whitespace().nth(1)?.parse().ok()
}

/// Listens until `stop` (or until the writer is gone), asking the writer
/// to catch up whenever another instance committed past what this one
/// published.
pub(super) async fn run_listener(
    pool: PgPool,
    writer: mpsc::WeakSender<Request>,
    log: Arc<CommitLog>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "event listener cannot connect; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "cannot LISTEN; retrying");
            continue;
        }
        backoff = Duration::from_millis(100);
        // anything committed while we were not listening
        if !ask_catch_up(&writer, i64::MAX) {
            return;
        }
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                n = listener.try_recv() => n,
            };
            match next {
                Ok(Some(n)) => {
                    let Some(last) = last_seq(n.payload()) else {
                        tracing::warn!(payload = n.payload(), "unreadable event notification");
                        continue;
                    };
                    if last > log.published() && !ask_catch_up(&writer, last) {
                        return;
                    }
                }
                Ok(None) => {
                    // connection lost: reconnects on the next call; notifications
                    // sent meanwhile are lost, so catch up from the table then
                    tracing::warn!("event listener lost its connection; reconnecting");
                    if !ask_catch_up(&writer, i64::MAX) {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "event listener failed; reconnecting");
                    break;
                }
            }
        }
    }
}

/// Queues a catch-up up to `upto` (`i64::MAX`: whatever is committed) without
/// waiting for it; false when the writer is gone.
fn ask_catch_up(writer: &mpsc::WeakSender<Request>, upto: i64) -> bool {
    let Some(tx) = writer.upgrade() else {
        return false;
    };
    match tx.try_send(Request::CatchUp { upto, reply: None }) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => true, // the writer is busy; the next one will do
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn payload_is_first_and_last_seq() {
        assert_eq!(super::last_seq("3 7"), Some(7));
        assert_eq!(super::last_seq("x"), None);
    }
}
