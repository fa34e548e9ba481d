//! Catching an agent up after downtime: where its replay starts (its last
//! ack, `resume_from`, `replay_limit`, what retention pruned) and the pages
//! of its own events, each serialized once into the frame that is sent.

use super::error::CoreError;
use super::events::event_frame;
use super::model::Agent;
use super::store::{timed, SeqRange};

/// What the agent asked for on `hello`, already checked for type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResumeAsk {
    /// Replay every event after this `seq` (default: the agent's last ack).
    pub resume_from: Option<i64>,
    /// Replay at most this many of the newest waiting events.
    pub replay_limit: Option<i64>,
}

/// Events the agent asked to resume from were pruned by retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeGap {
    /// The `seq` the agent would have resumed after.
    pub requested: i64,
    /// Every event at or below this `seq` is gone; replay starts after it.
    pub pruned_to: i64,
}

/// Where a replay starts, and why there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayStart {
    /// Events after this `seq` are replayed.
    pub after: i64,
    /// Set when the start was moved past pruned events.
    pub gap: Option<ResumeGap>,
    /// Set when `replay_limit` left older waiting events out.
    pub trimmed: bool,
}

/// One page of an agent's replay: its frames in `seq` order.
#[derive(Debug, Default)]
pub struct ReplayPage {
    /// `(seq, frame)` for each event, oldest first.
    pub frames: Vec<(i64, String)>,
    /// True when the page was short: nothing more was stored for this
    /// agent when it was read.
    pub complete: bool,
}

impl ReplayPage {
    /// The newest `seq` on the page.
    pub fn last_seq(&self) -> Option<i64> {
        self.frames.last().map(|(seq, _)| *seq)
    }
}

impl super::Core {
    /// Checks a `resume_from` against the stored sequence: a value ahead
    /// of the newest `seq` cannot be resumed from.
    pub async fn check_resume_from(&self, seq: i64) -> Result<(), CoreError> {
        let newest = self.store.max_seq().await?;
        if seq > newest {
            return Err(CoreError::bad_request(format!(
                "`resume_from` {seq} is ahead of the newest event seq {newest}"
            )));
        }
        Ok(())
    }

    /// Where `agent`'s replay starts: after `resume_from` or its last ack
    /// (never before its registration), moved past events retention pruned
    /// (reported as a [`ResumeGap`]), and to the newest `replay_limit`
    /// events when it asked for fewer than are waiting.
    pub async fn replay_start(
        &self,
        agent: &Agent,
        ask: ResumeAsk,
    ) -> Result<ReplayStart, CoreError> {
        let acked = agent
            .acked_seq
            .max(self.acks.latest(&agent.name).unwrap_or(0));
        let mut after = ask.resume_from.unwrap_or(acked).max(agent.base_seq);
        let pruned_to = self.store.pruned_to().await?;
        let gap = (after < pruned_to).then_some(ResumeGap {
            requested: after,
            pruned_to,
        });
        after = after.max(pruned_to);
        let mut trimmed = false;
        if let Some(limit) = ask.replay_limit {
            // The limit+1-th newest event, when there is one, is where the
            // newest `limit` start.
            let newest = self
                .store
                .agent_events(
                    &agent.name,
                    &agent.capabilities,
                    SeqRange {
                        after,
                        before: i64::MAX,
                        newest_first: true,
                    },
                    limit.saturating_add(1),
                )
                .await?;
            if newest.len() as i64 > limit {
                if let Some(start) = newest.last() {
                    after = start.seq;
                    trimmed = true;
                }
            }
        }
        Ok(ReplayStart {
            after,
            gap,
            trimmed,
        })
    }

    /// Up to `limit` of `agent`'s events after `after`, as frames.
    pub async fn replay_page(
        &self,
        agent: &str,
        capabilities: &[String],
        after: i64,
        limit: i64,
    ) -> Result<ReplayPage, CoreError> {
        let rows = timed(
            "replay_page",
            self.store
                .agent_events(agent, capabilities, SeqRange::after(after), limit),
        )
        .await?;
        let complete = (rows.len() as i64) < limit;
        let frames = rows
            .into_iter()
            .map(|e| (e.seq, event_frame(e.seq, e.kind, e.at, &e.data)))
            .collect();
        Ok(ReplayPage { frames, complete })
    }
}
