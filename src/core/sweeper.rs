//! Background upkeep: the lease, poll and schedule sweepers, the watcher of
//! writes by other processes (the CLI), and the ack flusher. Each runs
//! until shutdown.

use super::error::CoreError;
use super::Core;
use crate::clock::now_ms;
use crate::periodic;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs `sweep` every `every` until `stop`. A sweep that comes back with a
/// full batch (`batch` items) runs again at once, so a backlog drains
/// without waiting for the next tick; `log` reports each item swept; a
/// failed sweep is logged and retried at the next tick.
async fn sweep_periodically<T, Fut>(
    every: Duration,
    stop: CancellationToken,
    what: &'static str,
    batch: usize,
    sweep: impl Fn() -> Fut,
    log: impl Fn(&T),
) where
    Fut: Future<Output = Result<Vec<T>, CoreError>>,
{
    let (sweep, log) = (&sweep, &log);
    periodic::every(every, stop, move || async move {
        loop {
            match sweep().await {
                Ok(items) => {
                    items.iter().for_each(log);
                    if items.len() < batch {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "{what} sweep failed");
                    break;
                }
            }
        }
    })
    .await
}

/// Returns expired claims to `open` every `every`, emitting `task.expired`.
pub async fn run_lease_sweeper(core: Arc<Core>, every: Duration, stop: CancellationToken) {
    sweep_periodically(
        every,
        stop,
        "lease",
        super::tasks::EXPIRE_BATCH,
        || core.expire_leases(),
        |t| {
            crate::observe::lease_expiries(1);
            tracing::info!(task_id = t.id, state = %t.state, "lease expired")
        },
    )
    .await
}

/// Ends lapsed task offers every `every` (learned allocation), so the
/// task becomes claimable by anyone and capable agents hear of it.
pub async fn run_offer_sweeper(core: Arc<Core>, every: Duration, stop: CancellationToken) {
    sweep_periodically(
        every,
        stop,
        "offer",
        super::tasks::EXPIRE_BATCH,
        || core.lapse_offers(),
        |t| tracing::debug!(task_id = t.id, "offer lapsed"),
    )
    .await
}

/// Closes polls whose `closes_at` has passed every `every`, emitting `poll.closed`.
pub async fn run_poll_sweeper(core: Arc<Core>, every: Duration, stop: CancellationToken) {
    sweep_periodically(
        every,
        stop,
        "poll",
        super::polls::CLOSE_BATCH as usize,
        || core.close_due_polls(),
        |p| tracing::info!(poll_id = p.id, tally = ?p.tally, "poll closed at its closes_at"),
    )
    .await
}

/// Fires due schedule occurrences every `every` (each once across
/// instances; see [`super::schedules`]).
pub async fn run_schedule_sweeper(core: Arc<Core>, every: Duration, stop: CancellationToken) {
    sweep_periodically(
        every,
        stop,
        "schedule",
        super::schedules::DUE_BATCH as usize,
        || core.fire_due_schedules(),
        |s| {
            if s.fired {
                tracing::info!(schedule_id = s.id, task_id = s.task_id, due_at = %crate::clock::rfc3339(s.due_at), "schedule fired")
            } else {
                tracing::info!(schedule_id = s.id, due_at = %crate::clock::rfc3339(s.due_at), "missed schedule occurrence skipped")
            }
        },
    )
    .await
}

/// Picks up what other processes wrote to the database every `every`:
/// their events are published, and connections of agents revoked there
/// are closed (1008).
pub async fn run_external_watcher(core: Arc<Core>, every: Duration, stop: CancellationToken) {
    let mut since = now_ms();
    periodic::every(every, stop, || {
        // The window of revocations to look at: from the previous tick
        // (less a second of slack) to now.
        let check_from = since;
        since = now_ms();
        let core = &core;
        async move {
            if let Err(e) = core.store.sync_external().await {
                tracing::warn!(error = %e, "could not read events written by other processes");
            }
            match core.store.revoked_since(check_from - 1000).await {
                Ok(names) => {
                    for name in names {
                        core.bus.disconnect_agent(&name, 1008, "token revoked");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not check revocations"),
            }
        }
    })
    .await
}

/// Writes acknowledgements to the store every `every`, and once more at shutdown.
pub async fn run_ack_flusher(core: Arc<Core>, every: Duration, stop: CancellationToken) {
    periodic::every(every, stop, || flush_acks(&core)).await;
    flush_acks(&core).await;
}

/// Stores every pending acknowledgement now, all in one write (one
/// statement in one batch of the writer, so acks never queue behind
/// broadcasts and claims one by one).
pub async fn flush_acks(core: &Core) {
    let pending = core.acks.take_pending();
    if pending.is_empty() {
        return;
    }
    if let Err(e) = core.store.record_acks(pending.clone()).await {
        tracing::warn!(error = %e, acks = pending.len(), "could not store acks");
        for (agent, seq) in pending {
            core.acks.requeue(&agent, seq);
        }
    }
}
