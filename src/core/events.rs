//! Durable events: what the core appends in the same transaction as a state
//! change, and what the bus fans out after commit.

use crate::clock::{rfc3339, Millis};
use std::sync::Arc;

/// The event kinds of the protocol (`event.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A direct message to one agent.
    Message,
    /// A broadcast to every agent.
    Broadcast,
    /// A task was created.
    TaskCreated,
    /// A task was assigned to an agent by an operator.
    TaskOffered,
    /// A task was claimed.
    TaskClaimed,
    /// A task was completed.
    TaskCompleted,
    /// A task failed (its state says whether it will be retried).
    TaskFailed,
    /// The assignee released a task.
    TaskReleased,
    /// A lease ran out.
    TaskExpired,
    /// A task was cancelled.
    TaskCancelled,
    /// A poll opened.
    PollOpened,
    /// A poll closed.
    PollClosed,
    /// A bottleneck alert started holding, or holds still (`repeats` > 0).
    AlertRaised,
    /// A bottleneck alert stopped holding.
    AlertCleared,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 14] = [
        EventKind::Message,
        EventKind::Broadcast,
        EventKind::TaskCreated,
        EventKind::TaskOffered,
        EventKind::TaskClaimed,
        EventKind::TaskCompleted,
        EventKind::TaskFailed,
        EventKind::TaskReleased,
        EventKind::TaskExpired,
        EventKind::TaskCancelled,
        EventKind::PollOpened,
        EventKind::PollClosed,
        EventKind::AlertRaised,
        EventKind::AlertCleared,
    ];

    /// The protocol name, e.g. `task.created`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Message => "message",
            EventKind::Broadcast => "broadcast",
            EventKind::TaskCreated => "task.created",
            EventKind::TaskOffered => "task.offered",
            EventKind::TaskClaimed => "task.claimed",
            EventKind::TaskCompleted => "task.completed",
            EventKind::TaskFailed => "task.failed",
            EventKind::TaskReleased => "task.released",
            EventKind::TaskExpired => "task.expired",
            EventKind::TaskCancelled => "task.cancelled",
            EventKind::PollOpened => "poll.opened",
            EventKind::PollClosed => "poll.closed",
            EventKind::AlertRaised => "alert.raised",
            EventKind::AlertCleared => "alert.cleared",
        }
    }

    /// Parses a protocol name.
    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Which agents an event is for: the union of the named agents, every agent
/// (`all`), and every agent whose capabilities cover `requires`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audience {
    /// Every agent.
    pub all: bool,
    /// Every agent whose capabilities include all of these.
    pub requires: Option<Vec<String>>,
    /// These agents by name.
    pub agents: Vec<String>,
}

impl Audience {
    /// Every agent.
    pub fn everyone() -> Self {
        Audience {
            all: true,
            ..Audience::default()
        }
    }

    /// The named agents; identities of people (`discord:...`) are dropped and
    /// duplicates removed.
    pub fn agents<I: IntoIterator<Item = S>, S: AsRef<str>>(names: I) -> Self {
        let mut agents: Vec<String> = Vec::new();
        for n in names {
            let n = n.as_ref();
            if crate::core::model::is_agent_identity(n) && !agents.iter().any(|a| a == n) {
                agents.push(n.to_string());
            }
        }
        Audience {
            agents,
            ..Audience::default()
        }
    }

    /// True when the audience names nobody at all.
    pub fn is_empty(&self) -> bool {
        !self.all && self.requires.is_none() && self.agents.is_empty()
    }

    /// Whether an agent with this name and these capabilities gets the event.
    pub fn includes(&self, agent: &str, capabilities: &[String]) -> bool {
        self.all
            || self.agents.iter().any(|a| a == agent)
            || self
                .requires
                .as_ref()
                .is_some_and(|req| covers(capabilities, req))
    }
}

/// True when `capabilities` include every entry of `requires`.
pub fn covers(capabilities: &[String], requires: &[String]) -> bool {
    requires.iter().all(|r| capabilities.iter().any(|c| c == r))
}

/// An event the core wants appended, before it has a sequence number.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Its kind.
    pub kind: EventKind,
    /// The `data` object, as JSON.
    pub data: serde_json::Value,
    /// Who gets it.
    pub audience: Audience,
}

/// An event that is committed: it has its sequence number, and its frame is
/// serialized once, here, for every connection that will get it.
#[derive(Debug, Clone)]
pub struct CommittedEvent {
    /// The global, strictly increasing sequence number.
    pub seq: i64,
    /// Its kind.
    pub kind: EventKind,
    /// When it was committed.
    pub at: Millis,
    /// Who gets it.
    pub audience: Audience,
    /// The `data` object as JSON text.
    pub data: Arc<str>,
    /// The whole `{"type":"event",...}` frame, shared by every recipient.
    pub frame: Arc<str>,
}

/// The `{"type":"event",...}` frame of an event, built from its stored
/// parts (`data` is JSON text); the one serialization of an event.
pub fn event_frame(seq: i64, kind: EventKind, at: Millis, data: &str) -> String {
    format!(
        r#"{{"type":"event","seq":{seq},"kind":"{}","at":"{}","data":{data}}}"#,
        kind.as_str(),
        rfc3339(at)
    )
}

impl CommittedEvent {
    /// Builds the event and its one serialized frame from the stored parts.
    pub fn new(seq: i64, kind: EventKind, at: Millis, audience: Audience, data: &str) -> Self {
        let frame = event_frame(seq, kind, at, data);
        CommittedEvent {
            seq,
            kind,
            at,
            audience,
            data: Arc::from(data),
            frame: Arc::from(frame),
        }
    }
}

/// Receives committed events, in sequence order, right after their
/// transaction commits. Implementations must not block: the store calls this
/// while it holds its writer.
pub trait EventSink: Send + Sync + 'static {
    /// Delivers a batch of committed events in increasing `seq` order.
    fn publish(&self, events: &[CommittedEvent]);
}

impl super::Core {
    /// One page of the events after `after` that `agent` (with these
    /// capabilities) gets, in `seq` order; page on from `scanned_to` (an
    /// empty scan means the end).
    pub async fn events_for(
        &self,
        agent: &str,
        capabilities: &[String],
        after: i64,
        limit: i64,
    ) -> Result<super::store::EventPage, super::error::CoreError> {
        let scanned =
            super::store::timed("events_for", self.store.scan_events(agent, after, limit)).await?;
        Ok(super::store::EventPage::from_scan(
            scanned,
            agent,
            capabilities,
        ))
    }

    /// The newest event `seq` that `agent` (with these capabilities) gets,
    /// 0 when there is none.
    pub async fn newest_seq_for(
        &self,
        agent: &str,
        capabilities: &[String],
    ) -> Result<i64, super::error::CoreError> {
        Ok(self.store.newest_seq_for(agent, capabilities).await?)
    }

    /// The newest `limit` events, oldest first (the dashboard's feed on load).
    pub async fn recent_events(
        &self,
        limit: i64,
    ) -> Result<Vec<CommittedEvent>, super::error::CoreError> {
        Ok(super::store::timed("recent_events", self.store.recent_events(limit)).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(c: &[&str]) -> Vec<String> {
        c.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn audience_by_capability_needs_every_required_capability() {
        let a = Audience {
            requires: Some(caps(&["rust", "review"])),
            ..Audience::default()
        };
        assert!(a.includes("x", &caps(&["review", "rust", "go"])));
        assert!(!a.includes("x", &caps(&["rust"])));
    }

    #[test]
    fn audience_of_people_is_empty() {
        assert!(Audience::agents(["discord:alice", "twitch:bob"]).is_empty());
        assert_eq!(Audience::agents(["a", "a", "b"]).agents, caps(&["a", "b"]));
    }

    #[test]
    fn event_frame_is_valid_json() {
        let e = CommittedEvent::new(
            7,
            EventKind::Message,
            0,
            Audience::agents(["a"]),
            r#"{"from":"b","text":"hi"}"#,
        );
        let v: serde_json::Value = serde_json::from_str(&e.frame).unwrap();
        assert_eq!(v["type"], "event");
        assert_eq!(v["seq"], 7);
        assert_eq!(v["kind"], "message");
        assert_eq!(v["data"]["text"], "hi");
    }
}
