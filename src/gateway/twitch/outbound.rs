//! Everything the bot says goes through one queue and one sender task, kept
//! within Twitch's rules (twitch-irc itself does not throttle):
//!
//! - at most `messages` lines per `window` in channels where the bot is not
//!   moderator, `moderator_messages` where it is (known from USERSTATE),
//!   enforced with governor quotas that cannot exceed the count in any window;
//! - replies to the same question coalesce: a reply for a key waits
//!   `coalesce_ms` after the first ask, later askers join it and are named
//!   in the one line, which carries the answer (a burst of 100 `!status`
//!   is one line); asked again after it went out, the answer goes out again
//!   with the new askers' names;
//! - the same text is never sent to a channel twice within
//!   `duplicate_window` (replies are dropped, announcements varied);
//! - the queue is bounded: the oldest line is dropped and counted, and the
//!   next announcement says how many were lost;
//! - nothing is sent while the connection is down or the channel not joined,
//!   so announcements wait for the reconnection.

use super::render;
use super::transport::{window_quota, Link};
use crate::config::TwitchOutboundConfig;
use crate::core::announce::AnnounceMark;
use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, RateLimiter};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// One line ready to go out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutLine {
    /// Channel login, without `#`.
    pub channel: String,
    /// The message this line replies to (`reply-parent-msg-id`).
    pub reply_to: Option<String>,
    /// The final text (already cleaned and cut).
    pub text: String,
}

/// Where lines are written: the IRC client, or a recorder in tests.
#[async_trait]
pub trait ChatSink: Send + Sync + 'static {
    /// Sends one PRIVMSG; an error means it was not sent.
    async fn send_line(&self, line: &OutLine) -> Result<(), String>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Reply,
    Announce,
    /// A composed line whose first send failed, sent as it is.
    Retry,
}

#[derive(Debug)]
struct Pending {
    channel: String,
    kind: Kind,
    key: Option<String>,
    reply_to: Option<String>,
    viewers: Vec<String>,
    text: String,
    at: Instant,
    /// Not sent before this (a coalescing reply waits for equal asks).
    ready_at: Instant,
    /// An announcement: the newest event `seq` it covers, recorded as the
    /// channel's announcement mark once the line went out.
    upto: Option<i64>,
}

#[derive(Debug, Default)]
struct ChannelState {
    moderator: bool,
    joined_epoch: Option<u64>,
    recent: VecDeque<(Instant, String)>,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Pending>,
    channels: HashMap<String, ChannelState>,
    dropped_announcements: u64,
    /// Nothing is sent before this (see [`Outbound::quiet_until`]).
    quiet_until: Option<Instant>,
}

/// Counters of the outbound path (for tests, logs and metrics).
#[derive(Debug, Default)]
pub struct OutboundStats {
    /// Lines sent.
    pub sent: AtomicU64,
    /// Lines dropped because the queue was full.
    pub overflowed: AtomicU64,
    /// Replies dropped because they would repeat a line or went stale.
    pub suppressed: AtomicU64,
    /// Viewers whose request joined a waiting reply.
    pub merged: AtomicU64,
}

enum Next {
    /// A line, and the event `seq` it announces up to.
    Send(OutLine, Option<i64>),
    Wait(Option<Duration>),
}

/// The outbound queue and its limits.
pub struct Outbound {
    cfg: TwitchOutboundConfig,
    queue: Mutex<Queue>,
    wake: Notify,
    plain: DefaultDirectRateLimiter,
    moderated: DefaultDirectRateLimiter,
    clock: DefaultClock,
    /// Counters.
    pub stats: OutboundStats,
}

impl Outbound {
    /// An empty queue with Twitch's limits from `cfg`.
    pub fn new(cfg: TwitchOutboundConfig) -> Arc<Outbound> {
        let window = Duration::from_millis(cfg.window_ms);
        Arc::new(Outbound {
            plain: RateLimiter::direct(window_quota(cfg.messages, window)),
            moderated: RateLimiter::direct(window_quota(cfg.moderator_messages, window)),
            cfg,
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            clock: DefaultClock::default(),
            stats: OutboundStats::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records whether the bot is moderator or broadcaster in `channel`.
    pub fn set_moderator(&self, channel: &str, moderator: bool) {
        let mut q = self.lock();
        let ch = q.channels.entry(channel.to_string()).or_default();
        if ch.moderator != moderator {
            tracing::info!(
                platform = "twitch",
                channel,
                moderator,
                "twitch: moderator status"
            );
        }
        ch.moderator = moderator;
    }

    /// Records that `channel` is joined on the connection of `epoch`.
    pub fn set_joined(&self, channel: &str, epoch: u64) {
        self.lock()
            .channels
            .entry(channel.to_string())
            .or_default()
            .joined_epoch = Some(epoch);
        self.wake.notify_one();
    }

    /// Adds `viewer` to a reply for `key` still waiting in `channel`; true
    /// when there was one (the caller then has nothing more to do).
    pub fn join_waiting(&self, channel: &str, key: &str, viewer: &str) -> bool {
        let mut q = self.lock();
        let Some(p) = q.items.iter_mut().find(|p| {
            p.kind == Kind::Reply && p.channel == channel && p.key.as_deref() == Some(key)
        }) else {
            return false;
        };
        if !p.viewers.iter().any(|v| v == viewer) {
            p.viewers.push(viewer.to_string());
        }
        self.stats.merged.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Queues `body` as a reply to `viewer`'s message `msg_id`. With a
    /// `key` it coalesces: it joins a waiting reply of the same key (taking
    /// the newer answer), or waits `coalesce_ms` for equal asks to join it.
    pub fn push_reply(
        &self,
        channel: &str,
        key: Option<&str>,
        msg_id: &str,
        viewer: &str,
        body: String,
    ) {
        let now = Instant::now();
        let mut q = self.lock();
        if let Some(k) = key {
            if let Some(p) = q.items.iter_mut().find(|p| {
                p.kind == Kind::Reply && p.channel == channel && p.key.as_deref() == Some(k)
            }) {
                if !p.viewers.iter().any(|v| v == viewer) {
                    p.viewers.push(viewer.to_string());
                }
                p.text = body;
                self.stats.merged.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let hold = if key.is_some() {
            Duration::from_millis(self.cfg.coalesce_ms)
        } else {
            Duration::ZERO
        };
        q.items.push_back(Pending {
            channel: channel.to_string(),
            kind: Kind::Reply,
            key: key.map(str::to_string),
            reply_to: Some(msg_id.to_string()),
            viewers: vec![viewer.to_string()],
            text: body,
            at: now,
            ready_at: now + hold,
            upto: None,
        });
        self.trim(&mut q);
        drop(q);
        self.wake.notify_one();
    }

    /// Queues an announcement for `channel` covering events up to `upto`
    /// (recorded as the channel's mark when it went out, see
    /// [`Outbound::run_sender`]).
    pub fn push_announce(&self, channel: &str, text: String, upto: Option<i64>) {
        let mut q = self.lock();
        q.items.push_back(Pending {
            channel: channel.to_string(),
            kind: Kind::Announce,
            key: None,
            reply_to: None,
            viewers: Vec::new(),
            text,
            at: Instant::now(),
            ready_at: Instant::now(),
            upto,
        });
        self.trim(&mut q);
        drop(q);
        self.wake.notify_one();
    }

    /// Sends nothing before `until`; lines queue meanwhile. A new owner of
    /// the Twitch login after a hand-over cannot know how much of the
    /// account's budget the previous owner spent, so it waits one window.
    pub fn quiet_until(&self, until: Instant) {
        self.lock().quiet_until = Some(until);
        self.wake.notify_one();
    }

    /// Lines waiting.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn trim(&self, q: &mut Queue) {
        while q.items.len() > self.cfg.queue {
            if let Some(old) = q.items.pop_front() {
                self.stats.overflowed.fetch_add(1, Ordering::Relaxed);
                if old.kind == Kind::Announce {
                    q.dropped_announcements += 1;
                }
            }
        }
    }

    fn compose(&self, p: &Pending, dropped: u64) -> String {
        let max = self.cfg.max_chars;
        match p.kind {
            Kind::Retry => p.text.clone(),
            Kind::Announce => {
                let text = if dropped > 0 {
                    format!("({dropped} older announcements dropped) {}", p.text)
                } else {
                    p.text.clone()
                };
                render::chat_line(&text, max)
            }
            Kind::Reply => {
                // Name as many askers as fit in half the line, count the rest.
                let budget = max / 2;
                let mut names = String::new();
                let mut shown = 0;
                for v in &p.viewers {
                    let tag = format!("@{} ", render::clean(v));
                    if names.chars().count() + tag.chars().count() > budget {
                        break;
                    }
                    names.push_str(&tag);
                    shown += 1;
                }
                if shown < p.viewers.len() {
                    names.push_str(&format!("(+{}) ", p.viewers.len() - shown));
                }
                render::chat_line(&format!("{names}{}", render::clean(&p.text)), max)
            }
        }
    }

    fn take_next(&self, now: Instant, epoch: u64) -> Next {
        let dup_window = Duration::from_millis(self.cfg.duplicate_window_ms);
        let ttl = Duration::from_millis(self.cfg.reply_ttl_ms);
        let mut q = self.lock();
        if let Some(until) = q.quiet_until.filter(|t| *t > now) {
            return Next::Wait(Some(until - now));
        }
        let before = q.items.len();
        q.items
            .retain(|p| p.kind != Kind::Reply || now.duration_since(p.at) < ttl);
        self.stats
            .suppressed
            .fetch_add((before - q.items.len()) as u64, Ordering::Relaxed);
        for ch in q.channels.values_mut() {
            while ch
                .recent
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) >= dup_window)
            {
                ch.recent.pop_front();
            }
        }
        let mut wait: Option<Duration> = None;
        let (mut plain_blocked, mut mod_blocked) = (false, false);
        let mut i = 0;
        while i < q.items.len() {
            let channel = q.items[i].channel.clone();
            let (joined, moderator) = q.channels.get(&channel).map_or((false, false), |c| {
                (c.joined_epoch == Some(epoch), c.moderator)
            });
            if !joined || (moderator && mod_blocked) || (!moderator && plain_blocked) {
                i += 1;
                continue;
            }
            let ready_at = q.items[i].ready_at;
            if ready_at > now {
                let w = ready_at - now;
                wait = Some(wait.map_or(w, |x: Duration| x.min(w)));
                i += 1;
                continue;
            }
            let dropped = q.dropped_announcements;
            let mut text = self.compose(&q.items[i], dropped);
            let kind = q.items[i].kind;
            let seen = |t: &str, ch: &ChannelState| ch.recent.iter().any(|(_, r)| r == t);
            if let Some(ch) = q.channels.get(&channel) {
                if seen(&text, ch) {
                    if kind == Kind::Reply {
                        q.items.remove(i);
                        self.stats.suppressed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let base = text.clone();
                    let mut n = 2;
                    while seen(&text, ch) {
                        let suffix = format!(" ({n})");
                        let room = self.cfg.max_chars.saturating_sub(suffix.chars().count());
                        text = format!("{}{suffix}", render::fit(&base, room));
                        n += 1;
                    }
                }
            }
            let allowed = if moderator {
                self.moderated.check()
            } else {
                self.plain.check().and_then(|()| self.moderated.check())
            };
            if let Err(not_until) = allowed {
                let w = not_until.wait_time_from(self.clock.now());
                wait = Some(wait.map_or(w, |x: Duration| x.min(w)));
                if moderator {
                    mod_blocked = true;
                } else {
                    plain_blocked = true;
                }
                i += 1;
                continue;
            }
            let Some(p) = q.items.remove(i) else { break };
            if p.kind == Kind::Announce {
                q.dropped_announcements = 0;
            }
            let ch = q.channels.entry(channel.clone()).or_default();
            ch.recent.push_back((now, text.clone()));
            return Next::Send(
                OutLine {
                    channel,
                    reply_to: p.reply_to,
                    text,
                },
                p.upto,
            );
        }
        Next::Wait(wait)
    }

    /// Puts a line whose send failed back at the front, to go out as it is.
    fn requeue(&self, line: OutLine, upto: Option<i64>) {
        let mut q = self.lock();
        if let Some(ch) = q.channels.get_mut(&line.channel) {
            if let Some(pos) = ch.recent.iter().rposition(|(_, t)| *t == line.text) {
                ch.recent.remove(pos);
            }
        }
        q.items.push_front(Pending {
            channel: line.channel,
            kind: Kind::Retry,
            key: None,
            reply_to: line.reply_to,
            viewers: Vec::new(),
            text: line.text,
            at: Instant::now(),
            ready_at: Instant::now(),
            upto,
        });
    }

    /// Sends queued lines through `sink` while the link is up, within the
    /// limits, until `stop`. After an announcement went out, its channel's
    /// mark in `marks` is recorded (before the next line); when that is
    /// refused (the Twitch login's ownership moved) the sender stops.
    pub async fn run_sender(
        self: Arc<Self>,
        sink: Arc<dyn ChatSink>,
        link: Arc<Link>,
        marks: HashMap<String, AnnounceMark>,
        stop: CancellationToken,
    ) {
        let mut connected = link.watch_connected();
        loop {
            if stop.is_cancelled() {
                return;
            }
            if !*connected.borrow_and_update() {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    changed = connected.changed() => if changed.is_err() { return },
                }
                continue;
            }
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.take_next(Instant::now(), link.epoch()) {
                Next::Send(line, upto) => match sink.send_line(&line).await {
                    Ok(()) => {
                        self.stats.sent.fetch_add(1, Ordering::Relaxed);
                        let mark = upto.and_then(|seq| Some((marks.get(&line.channel)?, seq)));
                        if let Some((mark, seq)) = mark {
                            if !mark.record(seq).await {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(platform = "twitch", channel = %line.channel, error = %e, "twitch: send failed; will retry");
                        self.requeue(line, upto);
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        }
                    }
                },
                Next::Wait(d) => {
                    let d = d.unwrap_or(Duration::from_secs(3600));
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = &mut notified => {}
                        _ = connected.changed() => {}
                        _ = tokio::time::sleep(d) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(messages: u32) -> Arc<Outbound> {
        Outbound::new(TwitchOutboundConfig {
            messages,
            window_ms: 30_000,
            ..TwitchOutboundConfig::default()
        })
    }

    /// What goes out once every coalescing reply is due.
    fn drain(o: &Outbound) -> Vec<OutLine> {
        let due = Instant::now() + Duration::from_millis(o.cfg.coalesce_ms);
        let mut lines = Vec::new();
        while let Next::Send(l, _) = o.take_next(due, 1) {
            lines.push(l);
        }
        lines
    }

    #[test]
    fn waiting_replies_coalesce_and_name_the_askers() {
        let o = out(20);
        o.set_joined("c", 1);
        o.push_reply("c", Some("status"), "m1", "alice", "2 online".into());
        assert!(o.join_waiting("c", "status", "bob"));
        o.push_reply("c", Some("status"), "m3", "carol", "2 online".into());
        let lines = drain(&o);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].text, "@alice @bob @carol 2 online");
        assert_eq!(lines[0].reply_to.as_deref(), Some("m1"));
        // asked again after it went out: one more line, with the answer
        o.push_reply("c", Some("status"), "m4", "dave", "2 online".into());
        o.push_reply("c", Some("status"), "m5", "erin", "2 online".into());
        let lines = drain(&o);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].text, "@dave @erin 2 online", "{lines:?}");
    }

    #[test]
    fn a_burst_of_equal_asks_is_one_line_carrying_the_answer() {
        let o = out(20);
        o.set_joined("c", 1);
        for i in 0..100 {
            let viewer = format!("v{i}");
            if !o.join_waiting("c", "status", &viewer) {
                o.push_reply(
                    "c",
                    Some("status"),
                    &format!("m{i}"),
                    &viewer,
                    "2 online".into(),
                );
            }
        }
        // nothing leaves before the coalescing wait is over
        assert!(matches!(
            o.take_next(Instant::now(), 1),
            Next::Wait(Some(_))
        ));
        let lines = drain(&o);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].text.starts_with("@v0 @v1 "), "{}", lines[0].text);
        assert!(lines[0].text.ends_with(" 2 online"), "{}", lines[0].text);
        assert!(lines[0].text.contains("(+"), "{}", lines[0].text);
    }

    #[test]
    fn the_same_text_is_not_sent_twice_within_the_window() {
        let o = out(20);
        o.set_joined("c", 1);
        o.push_announce("c", "3 tasks done".into(), None);
        o.push_announce("c", "3 tasks done".into(), None);
        o.push_reply("c", None, "m1", "a", "x".into());
        o.push_reply("c", None, "m2", "a", "x".into());
        let texts: Vec<String> = drain(&o).into_iter().map(|l| l.text).collect();
        assert_eq!(texts, ["3 tasks done", "3 tasks done (2)", "@a x"]);
    }

    #[test]
    fn nothing_goes_out_while_quiet_and_everything_queued_goes_after() {
        let o = out(20);
        o.set_joined("c", 1);
        let start = Instant::now();
        o.quiet_until(start + Duration::from_secs(30));
        o.push_announce("c", "hello".into(), None);
        o.push_reply("c", None, "m1", "a", "x".into());
        assert!(matches!(
            o.take_next(start, 1),
            Next::Wait(Some(d)) if d == Duration::from_secs(30)
        ));
        let mut sent = 0;
        while let Next::Send(_, _) = o.take_next(start + Duration::from_secs(30), 1) {
            sent += 1;
        }
        assert_eq!(sent, 2);
    }

    #[test]
    fn nothing_goes_to_a_channel_not_joined_on_this_connection() {
        let o = out(20);
        o.push_announce("c", "hello".into(), None);
        assert!(drain(&o).is_empty());
        o.set_joined("c", 1);
        assert_eq!(drain(&o).len(), 1);
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_says_so() {
        let o = Outbound::new(TwitchOutboundConfig {
            queue: 2,
            ..TwitchOutboundConfig::default()
        });
        for i in 0..5 {
            o.push_announce("c", format!("event {i}"), None);
        }
        o.set_joined("c", 1);
        let texts: Vec<String> = drain(&o).into_iter().map(|l| l.text).collect();
        assert_eq!(
            texts,
            ["(3 older announcements dropped) event 3", "event 4"]
        );
    }
}
