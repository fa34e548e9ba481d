//! Direct messages and broadcasts: stored with their event in one
//! transaction, so a message accepted is a message delivered (now or on
//! reconnect).

use super::error::CoreError;
use super::events::{Audience, EventKind, NewEvent};
use super::model::Caller;
use super::store::MessageRecord;
use super::Core;
use crate::clock::{serde_rfc3339, Millis};
use serde::Serialize;
use serde_json::{json, Value};

/// Longest broadcast topic.
pub const MAX_TOPIC_CHARS: usize = 64;

/// Messages an `inbox` read returns when it names no `limit`.
pub const INBOX_DEFAULT_LIMIT: i64 = 20;
/// The most messages one `inbox` read returns.
pub const INBOX_MAX_LIMIT: i64 = 100;
/// Events scanned per store read while an `inbox` read looks for messages.
const INBOX_SCAN_PAGE: i64 = 500;
/// Store reads one `inbox` read makes at most; past them it answers what
/// it found with `more` set, and the next read goes on from `next`.
const INBOX_MAX_PAGES: usize = 20;

/// One direct message or broadcast as an `inbox` read returns it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InboxMessage {
    /// The event's `seq` (the same as on the WebSocket).
    pub seq: i64,
    /// `message` (to this agent) or `broadcast`.
    pub kind: String,
    /// When it was stored.
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: Millis,
    /// Who sent it (an agent name, `discord:<user>`, ...).
    pub from: String,
    /// The text.
    pub text: String,
    /// A broadcast's topic (null for direct messages and broadcasts without one).
    pub topic: Option<String>,
}

/// What an `inbox` read found, and where the next one starts.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Inbox {
    /// The messages, oldest first.
    pub messages: Vec<InboxMessage>,
    /// The cursor: pass it as `seq` to read on (every event up to it is
    /// acknowledged).
    pub next: i64,
    /// True when the read stopped at `limit` (or its scan budget) and more may follow.
    pub more: bool,
}

impl Core {
    /// Stores a message to agent `to`; it arrives as a `message` event.
    pub async fn send_message(
        &self,
        caller: &Caller,
        to: &str,
        text: String,
    ) -> Result<(), CoreError> {
        self.check_text("text", &text, true)?;
        match self.store.agent(to).await? {
            Some(a) if a.revoked_at.is_none() => {}
            _ => return Err(CoreError::NotFound(format!("no agent named {to}"))),
        }
        let event = NewEvent {
            kind: EventKind::Message,
            data: json!({ "from": caller.identity, "text": text }),
            audience: Audience::agents([to]),
        };
        let record = MessageRecord {
            sender: caller.identity.clone(),
            recipient: Some(to.to_string()),
            topic: None,
            text,
        };
        Ok(self.store.record_message(record, event).await?)
    }

    /// Stores a broadcast; every agent gets a `broadcast` event, and the
    /// platform bridges announce it.
    pub async fn broadcast(
        &self,
        caller: &Caller,
        text: String,
        topic: Option<String>,
    ) -> Result<(), CoreError> {
        self.check_text("text", &text, true)?;
        if let Some(t) = &topic {
            if t.chars().count() > MAX_TOPIC_CHARS {
                return Err(CoreError::bad_request(format!(
                    "`topic` is limited to {MAX_TOPIC_CHARS} characters"
                )));
            }
        }
        let event = NewEvent {
            kind: EventKind::Broadcast,
            data: json!({ "from": caller.identity, "text": text, "topic": topic }),
            audience: Audience::everyone(),
        };
        let record = MessageRecord {
            sender: caller.identity.clone(),
            recipient: None,
            topic,
            text,
        };
        Ok(self.store.record_message(record, event).await?)
    }
}

impl Core {
    /// Reads the direct messages and broadcasts `caller` (an agent) got
    /// after `seq` (default: after its last acknowledgement), at most
    /// `limit`, and acknowledges every event up to the returned cursor, as a
    /// WebSocket `ack` would (so those events are not replayed on the next
    /// `hello` either). An ack never moves back, so re-reading an older
    /// `seq` is harmless.
    pub async fn read_inbox(
        &self,
        caller: &Caller,
        seq: Option<i64>,
        limit: Option<i64>,
    ) -> Result<Inbox, CoreError> {
        if !caller.is_agent() {
            return Err(CoreError::bad_request(
                "the inbox belongs to an agent; call it with an agent token",
            ));
        }
        let limit = limit.unwrap_or(INBOX_DEFAULT_LIMIT);
        if !(1..=INBOX_MAX_LIMIT).contains(&limit) {
            return Err(CoreError::bad_request(format!(
                "`limit` must be between 1 and {INBOX_MAX_LIMIT}, got {limit}"
            )));
        }
        if seq.is_some_and(|s| s < 0) {
            return Err(CoreError::bad_request("`seq` must not be negative"));
        }
        let agent = match self.store.agent(&caller.identity).await? {
            Some(a) if a.revoked_at.is_none() => a,
            _ => {
                return Err(CoreError::NotFound(format!(
                    "no agent named {}",
                    caller.identity
                )))
            }
        };
        let acked = agent
            .acked_seq
            .max(self.acks.latest(&agent.name).unwrap_or(0));
        let mut cursor = seq.unwrap_or(acked).max(agent.base_seq);
        let mut messages = Vec::new();
        let mut more = false;
        'pages: for page_no in 0..INBOX_MAX_PAGES {
            let page = self
                .events_for(&agent.name, &agent.capabilities, cursor, INBOX_SCAN_PAGE)
                .await?;
            let Some(scanned_to) = page.scanned_to else {
                break;
            };
            for e in page.events {
                if !matches!(e.kind, EventKind::Message | EventKind::Broadcast) {
                    continue;
                }
                let data: Value = serde_json::from_str(&e.data).unwrap_or(Value::Null);
                let field = |name: &str| data[name].as_str().map(str::to_string);
                messages.push(InboxMessage {
                    seq: e.seq,
                    kind: e.kind.as_str().to_string(),
                    at: e.at,
                    from: field("from").unwrap_or_default(),
                    text: field("text").unwrap_or_default(),
                    topic: field("topic"),
                });
                if messages.len() as i64 == limit {
                    cursor = e.seq;
                    more = true;
                    break 'pages;
                }
            }
            cursor = scanned_to;
            if page_no + 1 == INBOX_MAX_PAGES {
                more = true;
            }
        }
        if cursor > acked {
            self.acks.ack(&agent.name, cursor);
        }
        Ok(Inbox {
            messages,
            next: cursor,
            more,
        })
    }
}
