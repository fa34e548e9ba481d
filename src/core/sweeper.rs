//! Background upkeep: the lease sweeper, the watcher of writes by other
//! processes (the CLI), and the ack flusher. Each runs until shutdown.

use super::Core;
use crate::clock::now_ms;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Returns expired claims to `open` every `every`, emitting `task.expired`.
pub async fn run_lease_sweeper(core: Arc<Core>, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        loop {
            match core.expire_leases().await {
                Ok(tasks) if tasks.len() >= 500 => {
                    crate::observe::lease_expiries(tasks.len());
                    continue;
                }
                Ok(tasks) => {
                    crate::observe::lease_expiries(tasks.len());
                    for t in &tasks {
                        tracing::info!(task_id = t.id, state = %t.state, "lease expired");
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lease sweep failed");
                    break;
                }
            }
        }
    }
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

/// Stores every pending acknowledgement now.
pub async fn flush_acks(core: &Core) {
    for (agent, seq) in core.acks.take_pending() {
        if let Err(e) = core.store.ack(agent.clone(), seq).await {
            tracing::warn!(error = %e, agent = %agent, "could not store ack");
            core.acks.requeue(&agent, seq);
        }
    }
}
