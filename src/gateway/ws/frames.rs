//! The agent protocol's frames: parsing client frames (commands through the
//! shared [`parse`]) and rendering replies and errors. Field names and error codes
//! are the contract in `docs/protocol.md`.

use crate::catalog::Catalog;
use crate::core::command::{Command, Reply};
use crate::core::error::CoreError;
use crate::dispatch::parse;
use serde::Deserialize;
use serde_json::{json, Value};

/// Longest client-chosen `id`.
pub const MAX_ID_CHARS: usize = 64;

/// Every frame a client may send: the session's own frames, or a command.
#[derive(Debug)]
pub enum ClientFrame {
    /// Opens the session.
    Hello {
        /// The agent token.
        token: String,
        /// Replaces the stored capabilities.
        capabilities: Option<Vec<String>>,
        /// Replay every event after this `seq`; an unusable value is kept
        /// as the message that says why (answered after `welcome`).
        resume_from: Result<Option<i64>, String>,
        /// Replay at most this many of the newest waiting events; an
        /// unusable value is kept as the message that says why.
        replay_limit: Result<Option<i64>, String>,
    },
    /// Keep-alive.
    Ping,
    /// Acknowledges events up to `seq`.
    Ack {
        /// The newest processed event.
        seq: i64,
    },
    /// A request for the dispatcher, parsed by [`crate::dispatch::parse`].
    Command(Command),
}

#[derive(Deserialize)]
struct HelloFields {
    token: String,
    #[serde(default)]
    capabilities: Option<Vec<String>>,
    #[serde(default)]
    resume_from: Option<Value>,
    #[serde(default)]
    replay_limit: Option<Value>,
}

/// A `hello` field that must be a whole number of at least zero, or null.
fn count_field(name: &str, v: Option<Value>) -> Result<Option<i64>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) if i >= 0 => Ok(Some(i)),
            Some(i) => Err(format!("`{name}` must not be negative, got {i}")),
            None => Err(format!("`{name}` must be a whole number, got {n}")),
        },
        Some(other) => {
            let kind = match other {
                Value::Bool(_) => "a boolean",
                Value::String(_) => "a string",
                Value::Array(_) => "an array",
                _ => "an object",
            };
            Err(format!("`{name}` must be a whole number, got {kind}"))
        }
    }
}

#[derive(Deserialize)]
struct AckFields {
    seq: i64,
}

/// A frame that failed to parse, with the client's `id` when it had one.
#[derive(Debug)]
pub struct BadFrame {
    /// The `id` to answer with.
    pub re: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Parses one text frame: JSON, then `id`, then the typed frame; a
/// command's arguments are checked against `catalog`'s option limits.
pub fn parse(text: &str, catalog: &Catalog) -> Result<(Option<String>, ClientFrame), BadFrame> {
    let value: Value = serde_json::from_str(text).map_err(|e| BadFrame {
        re: None,
        message: format!("malformed JSON: {e}"),
    })?;
    let Value::Object(map) = value else {
        return Err(BadFrame {
            re: None,
            message: "a frame must be a JSON object".into(),
        });
    };
    let re = match map.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().count() <= MAX_ID_CHARS => Some(s.clone()),
        Some(Value::String(_)) => {
            return Err(BadFrame {
                re: None,
                message: format!("`id` is limited to {MAX_ID_CHARS} characters"),
            })
        }
        Some(_) => {
            return Err(BadFrame {
                re: None,
                message: "`id` must be a string".into(),
            })
        }
    };
    let kind = match map.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(_) => {
            return Err(BadFrame {
                re,
                message: "`type` must be a string".into(),
            })
        }
        None => {
            return Err(BadFrame {
                re,
                message: "missing field `type`".into(),
            })
        }
    };
    let bad = |re: Option<String>, e: String| BadFrame { re, message: e };
    let frame = match kind.as_str() {
        "hello" => {
            let h: HelloFields = serde_json::from_value(Value::Object(map))
                .map_err(|e| bad(re.clone(), e.to_string()))?;
            ClientFrame::Hello {
                token: h.token,
                capabilities: h.capabilities,
                resume_from: count_field("resume_from", h.resume_from),
                replay_limit: count_field("replay_limit", h.replay_limit),
            }
        }
        "ping" => ClientFrame::Ping,
        "ack" => {
            let a: AckFields = serde_json::from_value(Value::Object(map))
                .map_err(|e| bad(re.clone(), e.to_string()))?;
            ClientFrame::Ack { seq: a.seq }
        }
        name => ClientFrame::Command(
            parse::command_in(catalog, name, map).map_err(|e| bad(re.clone(), e.to_string()))?,
        ),
    };
    Ok((re, frame))
}

impl ClientFrame {
    /// The protocol name of the frame, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            ClientFrame::Hello { .. } => "hello",
            ClientFrame::Ping => "ping",
            ClientFrame::Ack { .. } => "ack",
            ClientFrame::Command(c) => c.name(),
        }
    }
}

/// A reply's frame `type` and its fields (without `type` and `re`); the
/// HTTP API answers with the fields alone.
pub fn reply_body(reply: &Reply) -> (&'static str, Value) {
    match reply {
        Reply::Task(task) => ("task", json!({ "task": task })),
        Reply::Tasks(tasks) => ("tasks", json!({ "tasks": tasks })),
        Reply::Ok => ("ok", json!({})),
        Reply::Status(s) => (
            "status",
            json!({
                "agents_online": s.agents_online, "tasks": s.tasks,
                "uptime_s": s.uptime_s, "version": s.version,
            }),
        ),
        Reply::Agents(a) => ("agents", json!({ "agents": a })),
        Reply::Poll(p) => ("poll", json!({ "poll": p })),
        Reply::Results(r) => ("results", json!(r)),
        Reply::Voted(p) => ("ok", json!({ "poll": p })),
        Reply::Inbox(i) => (
            "inbox",
            json!({ "messages": i.messages, "next": i.next, "more": i.more }),
        ),
        Reply::Reason(a) => (
            "reason.result",
            json!({
                "text": a.text, "mode": a.mode, "confidence": a.confidence,
                "cached": a.cached, "model": a.model,
            }),
        ),
        Reply::Help { command } => ("help", json!({ "command": command })),
        Reply::Insights(i) => ("insights", json!({ "insights": i })),
        Reply::Alerts(a) => ("alerts", json!({ "alerts": a })),
        Reply::Schedule(s) => ("schedule", json!({ "schedule": s })),
        Reply::Schedules(s) => ("schedules", json!({ "schedules": s })),
        Reply::Recommendation(r) => ("recommendation", json!({ "recommendation": r })),
    }
}

/// A `task` reply, serialised straight to text (the commonest reply under
/// load: every claim and task change) instead of through a `Value`; the
/// same JSON, the task's keys in its field order.
#[derive(serde::Serialize)]
struct TaskReply<'a> {
    re: Option<&'a str>,
    task: &'a Option<crate::core::model::Task>,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// Renders a reply frame answering request `re`.
pub fn reply_frame(re: Option<&str>, reply: &Reply) -> String {
    if let Reply::Task(task) = reply {
        let frame = TaskReply {
            re,
            task,
            kind: "task",
        };
        if let Ok(text) = serde_json::to_string(&frame) {
            return text;
        }
    }
    let (kind, mut v) = reply_body(reply);
    if let Some(o) = v.as_object_mut() {
        o.insert("type".into(), json!(kind));
        o.insert("re".into(), json!(re));
    }
    v.to_string()
}

/// Renders an `error` frame.
pub fn error_frame(re: Option<&str>, err: &CoreError) -> String {
    json!({
        "type": "error",
        "re": re,
        "code": err.code(),
        "message": err.to_string(),
        "retry_after_ms": err.retry_after_ms(),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The general rendering of a reply, which the `task` fast path must
    /// match (as JSON; key order is not part of the protocol).
    fn general(re: Option<&str>, reply: &Reply) -> String {
        let (kind, mut v) = reply_body(reply);
        if let Some(o) = v.as_object_mut() {
            o.insert("type".into(), json!(kind));
            o.insert("re".into(), json!(re));
        }
        v.to_string()
    }

    #[test]
    fn a_task_reply_renders_as_the_general_path_does() {
        use crate::core::model::{Task, TaskState};
        let task = Task {
            id: 7,
            title: "t \"quoted\" é".into(),
            body: "line\nbreak".into(),
            state: TaskState::Claimed,
            priority: 2,
            requires: vec!["rust".into()],
            tags: vec![],
            assignee: Some("w1".into()),
            lease_expires_at: Some(1_000),
            attempts: 1,
            max_attempts: 3,
            created_by: "boss".into(),
            created_at: 10,
            updated_at: 20,
            result: Some(json!({"ok": true, "n": 1.5})),
            error: None,
            progress: Some("half".into()),
            percent: Some(50),
            offered_to: None,
            offer_expires_at: None,
        };
        for reply in [Reply::Task(Some(task)), Reply::Task(None)] {
            for re in [Some("c1"), None] {
                let fast: Value = serde_json::from_str(&reply_frame(re, &reply)).expect("JSON");
                let slow: Value = serde_json::from_str(&general(re, &reply)).expect("JSON");
                assert_eq!(fast, slow);
            }
        }
    }

    /// Parses against the embedded catalog, as a server without `catalog.dir` does.
    fn parse(text: &str) -> Result<(Option<String>, ClientFrame), BadFrame> {
        super::parse(text, &Catalog::embedded().expect("embedded catalog"))
    }

    #[test]
    fn parses_a_request_with_its_id() {
        let (re, f) = parse(r#"{"type":"task.claim","id":"7","lease_s":30}"#).unwrap();
        assert_eq!(re.as_deref(), Some("7"));
        assert!(matches!(
            f,
            ClientFrame::Command(Command::TaskClaim {
                task_id: None,
                lease_s: Some(30)
            })
        ));
    }

    #[test]
    fn bad_frames_say_what_is_wrong_and_keep_the_id() {
        let e = parse("{not json").unwrap_err();
        assert!(e.message.starts_with("malformed JSON"));
        let e = parse(r#"{"type":"nope","id":"1"}"#).unwrap_err();
        assert_eq!(e.re.as_deref(), Some("1"));
        assert!(e.message.contains("unknown type"), "{}", e.message);
        let e = parse(r#"{"type":"msg.send","id":"2","to":"a"}"#).unwrap_err();
        assert!(e.message.contains("missing field `text`"), "{}", e.message);
        let e = parse(r#"{"type":"task.get","task_id":"x"}"#).unwrap_err();
        assert!(e.message.contains("invalid type"), "{}", e.message);
        let e = parse(r#"{"type":"hello"}"#).unwrap_err();
        assert!(e.message.contains("missing field `token`"), "{}", e.message);
    }

    #[test]
    fn poll_and_search_frames_parse_into_commands() {
        let (_, f) =
            parse(r#"{"type":"poll.open","question":"q","options":["a","b"],"duration_s":60}"#)
                .unwrap();
        match f {
            ClientFrame::Command(Command::PollOpen(p)) => {
                assert_eq!(p.voters, crate::core::polls::Voters::All)
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(r#"{"type":"poll.open","question":"q","options":["a","b"],"duration_s":60,"voters":"nobody"}"#).is_err());
        assert!(parse(r#"{"type":"search","query":"x","since":"yesterday"}"#).is_err());
        let (_, f) =
            parse(r#"{"type":"search","query":"x","since":"2026-01-01T00:00:00Z","state":"done"}"#)
                .unwrap();
        assert!(matches!(f, ClientFrame::Command(Command::Search(_))));
    }

    #[test]
    fn error_frame_carries_code_and_retry() {
        let f = error_frame(
            Some("3"),
            &CoreError::RateLimited {
                message: "slow down".into(),
                retry_after_ms: 120,
            },
        );
        let v: Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["code"], "rate_limited");
        assert_eq!(v["retry_after_ms"], 120);
        assert_eq!(v["re"], "3");
    }
}
