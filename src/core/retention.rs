//! Retention of durable events: events every active agent has acknowledged
//! (or that predate it) are pruned once older than `events.retention_days`,
//! oldest first, a small batch per write, so appends are never held up for
//! long. Pruning only ever removes a prefix of the sequence, so one number,
//! `pruned_to`, says what is gone; a resume from below it is answered with
//! `resume_gap`. The same loop keeps the event-table figures `/metrics`
//! shows (table size, oldest unacknowledged event per agent).

use super::error::CoreError;
use super::store::{EventTable, Pruned, SeqRange};
use crate::clock::{now_ms, Millis};
use crate::config::EventsConfig;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Most agents named in the oldest-unacknowledged figure (the label set of
/// that metric stays this small however many agents there are).
pub const UNACKED_AGENTS: usize = 10;
/// Most agents looked at per refresh to find those with unacknowledged events.
const UNACKED_SCAN: usize = 50;
/// Most pruning writes per retention run; the rest waits for the next run.
const MAX_BATCHES_PER_RUN: usize = 200;

/// One agent's oldest event it has not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unacked {
    /// The agent.
    pub agent: String,
    /// The event's `seq`.
    pub seq: i64,
    /// When the event was committed.
    pub at: Millis,
}

/// The event-table figures as of the last refresh.
#[derive(Debug, Clone, Default)]
pub struct EventFigures {
    /// Stored events and the oldest one's time.
    pub table: EventTable,
    /// Events at or below this `seq` were pruned.
    pub pruned_to: i64,
    /// Events pruned by this process since it started.
    pub pruned_total: u64,
    /// The agents whose oldest unacknowledged event is oldest, oldest first,
    /// at most [`UNACKED_AGENTS`].
    pub oldest_unacked: Vec<Unacked>,
}

/// The figures, shared between the retention loop and `/metrics`.
#[derive(Default)]
pub struct RetentionState {
    figures: Mutex<EventFigures>,
}

impl RetentionState {
    /// A copy of the last figures.
    pub fn figures(&self) -> EventFigures {
        self.figures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn update(&self, f: impl FnOnce(&mut EventFigures)) {
        f(&mut self.figures.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

impl super::Core {
    /// Prunes events older than `age` that every active agent acknowledged,
    /// `batch` per write, until none is left or [`MAX_BATCHES_PER_RUN`]
    /// writes were made; returns what the last write left.
    pub async fn prune_events(&self, age: Duration, batch: i64) -> Result<Pruned, CoreError> {
        let cutoff = now_ms() - age.as_millis() as Millis;
        let mut total = Pruned::default();
        for _ in 0..MAX_BATCHES_PER_RUN {
            let step = self.store.prune_events(cutoff, batch.max(1)).await?;
            total.removed += step.removed;
            total.pruned_to = step.pruned_to;
            if step.removed == 0 {
                break;
            }
            // let queued writes go first between batches
            tokio::task::yield_now().await;
        }
        if total.removed > 0 {
            tracing::info!(
                removed = total.removed,
                pruned_to = total.pruned_to,
                "pruned acknowledged events"
            );
        }
        self.retention.update(|f| f.pruned_total += total.removed);
        Ok(total)
    }

    /// Re-reads the event-table figures shown in `/metrics`.
    pub async fn refresh_event_figures(&self) -> Result<(), CoreError> {
        let table = self.store.event_table().await?;
        let pruned_to = self.store.pruned_to().await?;
        let mut agents: Vec<_> = self
            .store
            .list_agents()
            .await?
            .into_iter()
            .filter(|a| a.revoked_at.is_none())
            .map(|a| {
                let acked = a
                    .acked_seq
                    .max(self.acks.latest(&a.name).unwrap_or(0))
                    .max(a.base_seq);
                (acked, a)
            })
            .collect();
        agents.sort_by_key(|(acked, _)| *acked);
        let mut unacked = Vec::new();
        for (acked, agent) in agents.into_iter().take(UNACKED_SCAN) {
            let first = self
                .store
                .agent_events(&agent.name, &agent.capabilities, SeqRange::after(acked), 1)
                .await?;
            if let Some(e) = first.into_iter().next() {
                unacked.push(Unacked {
                    agent: agent.name,
                    seq: e.seq,
                    at: e.at,
                });
            }
        }
        unacked.sort_by_key(|u| u.seq);
        unacked.truncate(UNACKED_AGENTS);
        self.retention.update(|f| {
            f.table = table;
            f.pruned_to = pruned_to;
            f.oldest_unacked = unacked;
        });
        Ok(())
    }
}

/// Runs retention every `events.prune_interval_s` until `stop`: prunes
/// (unless `retention_days` is 0), then refreshes the figures.
pub async fn run_retention(core: Arc<super::Core>, cfg: EventsConfig, stop: CancellationToken) {
    let period = Duration::from_secs(cfg.prune_interval_s.max(1));
    let age = Duration::from_secs(cfg.retention_days.saturating_mul(86_400));
    crate::periodic::every(period, stop, move || {
        let core = core.clone();
        let cfg = cfg.clone();
        async move {
            if cfg.retention_days > 0 {
                if let Err(e) = core.prune_events(age, cfg.prune_batch).await {
                    tracing::warn!(error = %e, "pruning events failed; retrying next run");
                }
            }
            if let Err(e) = core.refresh_event_figures().await {
                tracing::warn!(error = %e, "could not read the event table's figures");
            }
        }
    })
    .await
}
