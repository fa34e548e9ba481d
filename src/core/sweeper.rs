//! Background upkeep: the lease sweeper, the poll sweeper, the watcher of
//! writes by other processes (the CLI), and the ack flusher. Each runs
//! until shutdown.

use super::error::CoreError;
use super::Core;
use crate::clock::now_ms;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs `sweep` every `every` until `stop`. A sweep that comes back with a
/// full batch (`batch` items) runs again at once, so a backlog drains
/// without waiting for the next tick; `log` reports each item swept.
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
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        loop {
            match sweep().await {
                Ok(items) => {
                    items.iter().for_each(&log);
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
    }
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

/// Picks up what other processes wrote to the database every `every`:
/// their events are published, and connections of agents revoked there
/// are closed (1008).
pub async fn run_external_watcher(core: Arc<Core>, every: Duration, stop: CancellationToken) {
    let mut since = now_ms();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = core.store.sync_external().await {
            tracing::warn!(error = %e, "could not read events written by other processes");
        }
        let check_from = since;
        since = now_ms();
        match core.store.revoked_since(check_from - 1000).await {
            Ok(names) => {
                for name in names {
                    core.bus.disconnect_agent(&name, 1008, "token revoked");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not check revocations"),
        }
    }
}

/// Writes acknowledgements to the store every `every`, and once more at shutdown.
pub async fn run_ack_flusher(core: Arc<Core>, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    loop {
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = tick.tick() => false,
        };
        flush_acks(&core).await;
        if stopping {
            return;
        }
    }
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
