//! Announcements: task and broadcast events posted to one channel. A burst
//! of events is collected for `discord.announce_coalesce_ms` and posted as
//! one embed, and our own governor cap (`announce_burst` messages per
//! `announce_period_s`) sits on top of serenity's per-route buckets, so a
//! storm of events never turns into a storm of messages. A 429 is waited
//! out by serenity (its `retry_after`); a 5xx or no answer at all is tried
//! again [`ATTEMPTS`] times with a doubling wait before the batch is given
//! up (and logged).
//!
//! Durable across restarts and fail-overs ([`crate::core::announce`]): the
//! announcer starts from the channel's mark (events committed while nobody
//! announced, within `events.announce_backlog_s`) and records the mark
//! right after each message went out.

use super::render;
use crate::core::announce::{AnnounceFeed, AnnounceMark};
use crate::core::events::CommittedEvent;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serenity::builder::CreateMessage;
use serenity::http::Http;
use serenity::model::id::ChannelId;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Events in one message at most; more wait for the next message.
const BATCH_MAX: usize = 20;

/// Tries per announcement when Discord answers 5xx or not at all.
pub const ATTEMPTS: u32 = 4;
/// The wait before the second try; it doubles for each further one.
const RETRY_BASE: Duration = Duration::from_millis(500);

/// True when Discord may take the same message later: a server error, a
/// 429 serenity did not wait out, or no answer.
fn worth_retrying(e: &serenity::Error) -> bool {
    use serenity::http::HttpError;
    match e {
        serenity::Error::Http(HttpError::UnsuccessfulRequest(r)) => {
            r.status_code.is_server_error() || r.status_code.as_u16() == 429
        }
        serenity::Error::Http(HttpError::Request(_)) => true,
        _ => false,
    }
}

/// Posts announcements to one channel until `stop` fires.
pub struct Announcer {
    http: Arc<Http>,
    channel: ChannelId,
    coalesce: Duration,
    limiter: DefaultDirectRateLimiter,
}

impl Announcer {
    /// An announcer for `channel` posting at most `burst` messages per `period`.
    pub fn new(
        http: Arc<Http>,
        channel: u64,
        coalesce: Duration,
        burst: u32,
        period: Duration,
    ) -> Self {
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let per_message = (period / burst.get()).max(Duration::from_millis(1));
        let quota = Quota::with_period(per_message)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Announcer {
            http,
            channel: ChannelId::new(channel.max(1)),
            coalesce,
            limiter: RateLimiter::direct(quota),
        }
    }

    /// Posts the events committed since `mark` (at most `backlog` old),
    /// then those read from `rx` (a fresh bus subscription), in coalesced
    /// batches, recording the mark after each message. Stops at `stop`, or
    /// when the mark can no longer be recorded because the platform's
    /// ownership moved to another instance.
    pub async fn run(
        self,
        rx: broadcast::Receiver<CommittedEvent>,
        mark: AnnounceMark,
        backlog: Duration,
        stop: CancellationToken,
    ) {
        let after = mark.load().await;
        let mut rx = AnnounceFeed::open(mark.store(), rx, after, backlog, render::announced).await;
        // the last event read (announced or not) and the last mark recorded
        let (mut seen, mut recorded) = (rx.top(), after.unwrap_or(rx.top()));
        if after.is_none() && !mark.record(seen).await {
            return;
        }
        let mut pending: Vec<CommittedEvent> = Vec::new();
        let mut missed: u64 = 0;
        loop {
            // Wait for the first event of a batch.
            if pending.is_empty() {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    r = rx.recv() => match r {
                        Ok(ev) if render::announced(ev.kind) => {
                            seen = seen.max(ev.seq);
                            pending.push(ev);
                        }
                        Ok(ev) => {
                            seen = seen.max(ev.seq);
                            continue;
                        }
                        Err(RecvError::Lagged(n)) => { missed += n; continue; }
                        Err(RecvError::Closed) => return,
                    },
                }
            }
            // Collect the rest of the burst.
            let deadline = Instant::now() + self.coalesce;
            while pending.len() < BATCH_MAX {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until(deadline) => break,
                    r = rx.recv() => match r {
                        Ok(ev) if render::announced(ev.kind) => {
                            seen = seen.max(ev.seq);
                            pending.push(ev);
                        }
                        Ok(ev) => seen = seen.max(ev.seq),
                        Err(RecvError::Lagged(n)) => missed += n,
                        Err(RecvError::Closed) => break,
                    },
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.limiter.until_ready() => {}
            }
            let message = CreateMessage::new().embed(render::announcement_embed(&pending, missed));
            let mut attempt = 1;
            loop {
                match self.http.send_message(self.channel, vec![], &message).await {
                    Ok(_) => {
                        tracing::debug!(platform = "discord", events = pending.len(), "announced");
                        break;
                    }
                    Err(e) if attempt < ATTEMPTS && worth_retrying(&e) => {
                        let wait = RETRY_BASE * 2u32.pow(attempt - 1);
                        tracing::warn!(
                            platform = "discord", error = %e, events = pending.len(), attempt,
                            retry_in_ms = wait.as_millis() as u64,
                            "announcement failed; trying again"
                        );
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(wait) => {}
                        }
                        attempt += 1;
                    }
                    Err(e) => {
                        tracing::warn!(
                            platform = "discord", error = %e, events = pending.len(), attempt,
                            "announcement failed; given up"
                        );
                        break;
                    }
                }
            }
            pending.clear();
            missed = 0;
            // a failed post is not retried either way: move past it
            if seen > recorded {
                if !mark.record(seen).await {
                    return;
                }
                recorded = seen;
            }
        }
    }
}
