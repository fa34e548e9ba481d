//! Durable announcements: what a platform's announcer (Discord channel,
//! Twitch chat) reads, and where it records how far it got, so that events
//! committed while nobody announced (the owner died, the server was down)
//! are announced once when announcing resumes.
//!
//! - Each announcement target (`discord`, `twitch:#channel`) has a mark in
//!   the store: the `seq` of the last event announced there, recorded by
//!   the announcer right after each line went out ([`AnnounceMark::record`]),
//!   fenced by the platform ownership on a shared database, so an owner
//!   that lost ownership cannot move it.
//! - A starting announcer opens an [`AnnounceFeed`]: it subscribes to the
//!   bus, reads the newest committed `seq` (`top`), and loads the events
//!   `(mark, top]` from the store; it yields those first, then bus events
//!   after `top`. Every event after `top` is committed after the
//!   subscription, so reaches it; none is yielded twice.
//! - The backlog is bounded: events older than the configured age, and any
//!   beyond [`BACKLOG_MAX`], are not announced but counted as missed.
//!
//! What can still repeat: a line that went out but whose mark was not
//! written yet when its owner died (at most the one line in flight per
//! target). What can still be lost: nothing committed, within the bound.

use crate::clock::now_ms;
use crate::core::events::{CommittedEvent, EventKind};
use crate::core::store::{OwnerFence, Store};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};

/// Most backlog events announced when announcing resumes (the newest).
pub const BACKLOG_MAX: usize = 1_000;
/// Most events read back when announcing resumes; an older mark skips to
/// this many before the newest (the rest count as missed).
const SCAN_MAX: i64 = 100_000;
/// Events per store read while loading the backlog.
const PAGE: i64 = 1_000;

/// One announcement target's mark, and the ownership fencing its writes.
#[derive(Clone)]
pub struct AnnounceMark {
    store: Arc<dyn Store>,
    target: String,
    fence: Option<OwnerFence>,
}

impl AnnounceMark {
    /// The mark of `target` in `store`, written under `fence` (None on a
    /// store only this server uses).
    pub fn new(store: Arc<dyn Store>, target: String, fence: Option<OwnerFence>) -> Self {
        AnnounceMark {
            store,
            target,
            fence,
        }
    }

    /// The store the mark (and the backlog) is in.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The target's name (`discord`, `twitch:#channel`).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Where announcing stopped last time; None when never recorded (or
    /// when the store cannot say: then nothing is resumed).
    pub async fn load(&self) -> Option<i64> {
        match self.store.announce_mark(&self.target).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(target_name = %self.target, error = %e, "cannot read the announcement mark; announcing live events only");
                None
            }
        }
    }

    /// Records that events up to `seq` were announced. False when this
    /// instance no longer owns the platform (the announcer must stop); a
    /// store error is logged and counts as written (the next line retries).
    pub async fn record(&self, seq: i64) -> bool {
        match self
            .store
            .set_announce_mark(&self.target, seq, self.fence.as_ref())
            .await
        {
            Ok(written) => {
                if !written {
                    tracing::warn!(target_name = %self.target, "platform ownership moved; this instance stops announcing");
                }
                written
            }
            Err(e) => {
                tracing::warn!(target_name = %self.target, error = %e, "cannot record the announcement mark");
                true
            }
        }
    }
}

/// Committed events for an announcer: the backlog since its mark, then
/// live events from the bus, each once and in `seq` order.
pub struct AnnounceFeed {
    backlog: VecDeque<CommittedEvent>,
    missed: u64,
    rx: broadcast::Receiver<CommittedEvent>,
    top: i64,
}

impl AnnounceFeed {
    /// Subscribes to `rx` (a fresh bus subscription) and loads what was
    /// committed after `after` (None: nothing to resume) and at most
    /// `max_age` ago, keeping events `wanted` says are announced.
    pub async fn open(
        store: &dyn Store,
        rx: broadcast::Receiver<CommittedEvent>,
        after: Option<i64>,
        max_age: Duration,
        wanted: impl Fn(EventKind) -> bool,
    ) -> AnnounceFeed {
        let mut feed = AnnounceFeed {
            backlog: VecDeque::new(),
            missed: 0,
            rx,
            top: 0,
        };
        feed.top = match store.max_seq().await {
            Ok(top) => top,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the newest event; announcing live events only");
                return feed;
            }
        };
        let Some(mut after) = after else {
            return feed;
        };
        if feed.top - after > SCAN_MAX {
            feed.missed += (feed.top - SCAN_MAX - after) as u64;
            after = feed.top - SCAN_MAX;
        }
        let cutoff = now_ms() - max_age.as_millis() as i64;
        while after < feed.top {
            let page = match store.events_between(after, feed.top, PAGE).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the announcement backlog; announcing what was read");
                    break;
                }
            };
            let Some(last) = page.last() else { break };
            after = last.seq;
            for ev in page {
                if !wanted(ev.kind) {
                    continue;
                }
                if max_age.is_zero() || ev.at < cutoff {
                    feed.missed += 1;
                    continue;
                }
                feed.backlog.push_back(ev);
                if feed.backlog.len() > BACKLOG_MAX {
                    feed.backlog.pop_front();
                    feed.missed += 1;
                }
            }
        }
        if !feed.backlog.is_empty() || feed.missed > 0 {
            tracing::info!(
                backlog = feed.backlog.len(),
                missed = feed.missed,
                "announcing what was committed while nobody announced"
            );
        }
        feed
    }

    /// The newest `seq` committed when the feed opened: later events come
    /// from the bus.
    pub fn top(&self) -> i64 {
        self.top
    }

    /// The next event, like a bus receiver: first `Lagged` with the
    /// backlog events not announced (too old, too many), then the backlog,
    /// then live events after [`AnnounceFeed::top`]. Cancel-safe.
    pub async fn recv(&mut self) -> Result<CommittedEvent, RecvError> {
        if self.missed > 0 {
            return Err(RecvError::Lagged(std::mem::take(&mut self.missed)));
        }
        if let Some(ev) = self.backlog.pop_front() {
            return Ok(ev);
        }
        loop {
            let ev = self.rx.recv().await?;
            if ev.seq > self.top {
                return Ok(ev);
            }
        }
    }
}
