//! Direct messages and broadcasts: stored with their event in one
//! transaction, so a message accepted is a message delivered (now or on
//! reconnect).

use super::error::CoreError;
use super::events::{Audience, EventKind, NewEvent};
use super::model::Caller;
use super::store::MessageRecord;
use super::Core;
use serde_json::json;

/// Longest broadcast topic.
pub const MAX_TOPIC_CHARS: usize = 64;

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
