//! Announcements in chat of committed task events and broadcasts, read from
//! the bus. Events arriving within `batch_ms` are summarized per channel in
//! one line ("3 tasks done: #4 build, #5 test, #6 ship"), then queued on the
//! outbound path, which throttles them and keeps them while the connection
//! is down.
//!
//! Durable across restarts and fail-overs ([`crate::core::announce`]):
//! each channel has a mark (`twitch:#channel`), recorded by the outbound
//! sender once a line went out; the announcer starts with what was
//! committed after the marks (within `events.announce_backlog_s`).

use super::outbound::Outbound;
use super::render;
use crate::config::TwitchConfig;
use crate::core::announce::{AnnounceFeed, AnnounceMark};
use crate::core::events::{CommittedEvent, EventKind};
use crate::core::Core;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

/// Most events summarized in one batch; more wait for the next.
const MAX_BATCH: usize = 500;

/// How a task event is worded in a summary.
fn label(kind: EventKind) -> Option<&'static str> {
    Some(match kind {
        EventKind::TaskCreated => "new",
        EventKind::TaskClaimed => "claimed",
        EventKind::TaskCompleted => "done",
        EventKind::TaskFailed => "failed",
        EventKind::TaskExpired => "expired",
        EventKind::TaskCancelled => "cancelled",
        EventKind::TaskReleased => "released",
        EventKind::TaskOffered => "offered",
        _ => return None,
    })
}

fn task_ref(data: &Value) -> String {
    let t = &data["task"];
    let id = t["id"].as_i64().unwrap_or(0);
    let title = render::fit(&render::clean(t["title"].as_str().unwrap_or("")), 40);
    format!("#{id} {title}")
}

/// One line summarizing `events` (in order), at most `max` characters;
/// `missed` events were lost by a lagging receiver and are counted.
pub fn summarize(events: &[(EventKind, Value)], missed: u64, max: usize) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    let mut groups: Vec<(EventKind, Vec<String>)> = Vec::new();
    for (kind, data) in events {
        if matches!(kind, EventKind::PollOpened | EventKind::PollClosed) {
            if let Some(line) = crate::core::polls::announcement(*kind, data) {
                let hint = if *kind == EventKind::PollOpened {
                    " · vote with !vote N"
                } else {
                    ""
                };
                parts.push(format!("🗳 {}{hint}", render::clean(&line)));
            }
        } else if matches!(kind, EventKind::AlertRaised | EventKind::AlertCleared) {
            let a = &data["alert"];
            let text = render::clean(a["message"].as_str().unwrap_or(""));
            let what = if *kind == EventKind::AlertRaised {
                "🚨 alert"
            } else {
                "✅ alert cleared"
            };
            parts.push(format!("{what}: {}", render::fit(&text, max / 2)));
        } else if *kind == EventKind::Broadcast {
            let from = render::who(data["from"].as_str().unwrap_or("?"));
            let text = render::clean(data["text"].as_str().unwrap_or(""));
            parts.push(format!("📢 {from}: {}", render::fit(&text, max / 2)));
        } else if label(*kind).is_some() {
            match groups.iter_mut().find(|(k, _)| k == kind) {
                Some((_, refs)) => refs.push(task_ref(data)),
                None => groups.push((*kind, vec![task_ref(data)])),
            }
        }
    }
    for (kind, refs) in groups {
        let shown: Vec<&String> = refs.iter().take(5).collect();
        let mut list = shown
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        if refs.len() > shown.len() {
            list.push_str(&format!(", +{} more", refs.len() - shown.len()));
        }
        let noun = if refs.len() == 1 { "task" } else { "tasks" };
        parts.push(format!(
            "{} {noun} {}: {list}",
            refs.len(),
            label(kind).unwrap_or("changed")
        ));
    }
    if missed > 0 {
        parts.push(format!("({missed} events missed)"));
    }
    if parts.is_empty() {
        return None;
    }
    Some(render::chat_line(&parts.join(" · "), max))
}

/// The mark of each channel's announcements.
pub fn marks(
    core: &Core,
    cfg: &TwitchConfig,
    fence: Option<crate::core::store::OwnerFence>,
) -> HashMap<String, AnnounceMark> {
    cfg.channels
        .0
        .iter()
        .map(|c| {
            let target = format!("twitch:#{c}");
            let mark = AnnounceMark::new(core.store.clone(), target, fence.clone());
            (c.clone(), mark)
        })
        .collect()
}

/// Announces what was committed since each channel's mark (at most
/// `backlog` old), then reads the bus until `stop`, batching and queueing
/// announcements for every channel that wants them. Each line carries the
/// newest `seq` it covers, for the sender to record as the channel's mark.
pub async fn run_announcer(
    core: Arc<Core>,
    cfg: Arc<TwitchConfig>,
    outbound: Arc<Outbound>,
    marks: HashMap<String, AnnounceMark>,
    backlog: Duration,
    stop: CancellationToken,
) {
    let bus = core.bus.observe();
    let mut after: HashMap<String, Option<i64>> = HashMap::new();
    for (channel, mark) in &marks {
        after.insert(channel.clone(), mark.load().await);
    }
    let oldest = after.values().flatten().min().copied();
    let wanted = |k: EventKind| cfg.channels.0.iter().any(|c| cfg.announces(c, k.as_str()));
    let mut rx = AnnounceFeed::open(core.store.as_ref(), bus, oldest, backlog, wanted).await;
    // per channel, the events after this seq are its to announce
    let mut start: HashMap<String, i64> = HashMap::new();
    for (channel, mark) in &marks {
        let from = match after.get(channel).copied().flatten() {
            Some(m) => m,
            None => {
                // never announced here: start now, and say so for the next owner
                if !mark.record(rx.top()).await {
                    return;
                }
                rx.top()
            }
        };
        start.insert(channel.clone(), from);
    }
    let batch = Duration::from_millis(cfg.announce.batch_ms);
    loop {
        let mut events: Vec<CommittedEvent> = Vec::new();
        let mut missed = 0u64;
        tokio::select! {
            _ = stop.cancelled() => return,
            got = rx.recv() => match got {
                Ok(ev) => events.push(ev),
                Err(RecvError::Lagged(n)) => missed += n,
                Err(RecvError::Closed) => return,
            },
        }
        let deadline = tokio::time::Instant::now() + batch;
        while events.len() < MAX_BATCH {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(deadline) => break,
                got = rx.recv() => match got {
                    Ok(ev) => events.push(ev),
                    Err(RecvError::Lagged(n)) => missed += n,
                    Err(RecvError::Closed) => break,
                },
            }
        }
        let upto = events.iter().map(|e| e.seq).max();
        let parsed: Vec<(i64, EventKind, Value)> = events
            .iter()
            .filter_map(|e| Some((e.seq, e.kind, serde_json::from_str::<Value>(&e.data).ok()?)))
            .collect();
        for channel in &cfg.channels.0 {
            let from = start.get(channel).copied().unwrap_or(0);
            let wanted: Vec<(EventKind, Value)> = parsed
                .iter()
                .filter(|(seq, k, _)| *seq > from && cfg.announces(channel, k.as_str()))
                .map(|(_, k, v)| (*k, v.clone()))
                .collect();
            let missed_here = if cfg.announces(channel, "task.completed") || !wanted.is_empty() {
                missed
            } else {
                0
            };
            if let Some(line) = summarize(&wanted, missed_here, cfg.outbound.max_chars) {
                outbound.push_announce(channel, line, upto);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn done(id: i64, title: &str) -> (EventKind, Value) {
        (
            EventKind::TaskCompleted,
            json!({"task": {"id": id, "title": title}}),
        )
    }

    #[test]
    fn events_of_a_batch_are_summarized_in_one_line() {
        let evs = vec![
            done(4, "build"),
            done(5, "test"),
            (
                EventKind::Broadcast,
                json!({"from": "twitch:mod", "text": "/ban\nall"}),
            ),
            done(6, "ship"),
        ];
        let line = summarize(&evs, 0, 500).unwrap();
        assert_eq!(
            line,
            "📢 mod: /ban all · 3 tasks done: #4 build, #5 test, #6 ship"
        );
        let many: Vec<_> = (1..=40).map(|i| done(i, &"x".repeat(60))).collect();
        let line = summarize(&many, 2, 500).unwrap();
        assert!(
            line.chars().count() <= 500 && line.contains("+35 more"),
            "{line}"
        );
    }
}
