//! A connection's replay as a stream of pages, read one at a time beside
//! the connection's request loop (so requests are answered while it
//! catches up) and ended only once it has reached the live events.
//!
//! The ordering argument: the connection is registered on the bus before
//! the first page is read, so every event committed later reaches its
//! queue. While replaying, live events are not written; their highest
//! `seq` is noted. A page shorter than the page size means every event for
//! the agent committed before that read is sent; events committed after
//! it have higher `seq`s. The replay ends on such a page when no live
//! event above it was seen; otherwise it reads again. Live events at or
//! below what replay sent are then skipped, so each event goes out once
//! and in `seq` order.

use crate::core::error::CoreError;
use crate::core::replay::ReplayPage;
use crate::core::Core;
use futures_util::future::BoxFuture;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// First wait before a failed replay read is tried again; it doubles up to
/// [`RETRY_LAST`] (about 1.5 s in all), then the error ends the session.
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(100);
const RETRY_LAST: std::time::Duration = std::time::Duration::from_millis(800);

/// One connection's replay in progress.
pub(super) struct ReplayStream {
    core: Arc<Core>,
    gate: Arc<Semaphore>,
    agent: Arc<str>,
    capabilities: Arc<[String]>,
    page_size: i64,
    /// Everything for the agent up to here has been sent.
    after: i64,
    /// The highest live `seq` left unwritten while replaying.
    live_max: i64,
    /// `live_max` when the read in progress was started: those events
    /// were committed before it, so it sees them.
    live_at_read: i64,
    /// The page read in progress; kept across `select!` iterations, so a
    /// request served meanwhile does not cancel it.
    fetch: Option<BoxFuture<'static, Result<ReplayPage, CoreError>>>,
}

impl ReplayStream {
    /// A replay of `agent`'s events after `after`.
    pub(super) fn new(
        core: Arc<Core>,
        gate: Arc<Semaphore>,
        agent: &str,
        capabilities: &[String],
        after: i64,
        page_size: i64,
    ) -> Self {
        ReplayStream {
            core,
            gate,
            agent: Arc::from(agent),
            capabilities: Arc::from(capabilities),
            page_size: page_size.max(1),
            after,
            live_max: 0,
            live_at_read: 0,
            fetch: None,
        }
    }

    /// The next page. Cancel-safe: a read interrupted by another branch of
    /// the connection's loop goes on at the next call.
    pub(super) async fn next_page(&mut self) -> Result<ReplayPage, CoreError> {
        let fetch = match &mut self.fetch {
            Some(f) => f,
            None => {
                let (core, gate) = (self.core.clone(), self.gate.clone());
                let (agent, caps) = (self.agent.clone(), self.capabilities.clone());
                let (after, limit) = (self.after, self.page_size);
                self.live_at_read = self.live_max;
                self.fetch.insert(Box::pin(async move {
                    // The permit is held for the read only, never while
                    // the page is written to a possibly slow peer.
                    let _permit = gate
                        .acquire_owned()
                        .await
                        .map_err(|_| CoreError::Internal("replay reads closed".into()))?;
                    // A read that finds the database briefly gone (a pooled
                    // connection that died with a restart of PostgreSQL) is
                    // tried again on a fresh one before the session gives up.
                    let mut backoff = RETRY_FIRST;
                    loop {
                        match core.replay_page(&agent, &caps, after, limit).await {
                            Err(e) if e.code() == "unavailable" && backoff <= RETRY_LAST => {
                                tracing::warn!(error = %e, "replay read failed; trying again");
                                tokio::time::sleep(backoff).await;
                                backoff *= 2;
                            }
                            page => return page,
                        }
                    }
                }))
            }
        };
        let page = fetch.await;
        self.fetch = None;
        page
    }

    /// Notes a live event left unwritten while replaying.
    pub(super) fn saw_live(&mut self, seq: i64) {
        self.live_max = self.live_max.max(seq);
    }

    /// Takes a page that was read; true when the replay is over: the page
    /// was short, and no live event came that the read may not have seen.
    pub(super) fn took(&mut self, page: &ReplayPage) -> bool {
        if let Some(last) = page.last_seq() {
            self.after = self.after.max(last);
        }
        page.complete && (self.live_max <= self.after || self.live_max == self.live_at_read)
    }

    /// Everything for the agent up to this `seq` has been sent.
    pub(super) fn sent_to(&self) -> i64 {
        self.after
    }
}
