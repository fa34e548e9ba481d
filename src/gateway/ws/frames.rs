//! The agent protocol's frames: parsing client frames into the core's
//! [`Command`] and rendering replies and errors. Field names and error codes
//! are the contract in `docs/protocol.md`.

use crate::core::command::{Command, Reply};
use crate::core::error::CoreError;
use crate::core::model::{NewTask, TaskState};
use crate::core::polls::{NewPoll, Voters};
use crate::core::search::SearchRequest;
use serde::Deserialize;
use serde_json::{json, Value};

/// Longest client-chosen `id`.
pub const MAX_ID_CHARS: usize = 64;

/// Every frame a client may send, by `type`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
pub enum ClientFrame {
    /// Opens the session.
    #[serde(rename = "hello")]
    Hello {
        /// The agent token.
        token: String,
        /// Replaces the stored capabilities.
        #[serde(default)]
        capabilities: Option<Vec<String>>,
        /// Replay every event after this `seq`.
        #[serde(default)]
        resume_from: Option<i64>,
    },
    /// Keep-alive.
    #[serde(rename = "ping")]
    Ping {},
    /// Acknowledges events up to `seq`.
    #[serde(rename = "ack")]
    Ack {
        /// The newest processed event.
        seq: i64,
    },
    /// `task.create`
    #[serde(rename = "task.create")]
    TaskCreate {
        /// Title.
        title: String,
        /// Body.
        #[serde(default)]
        body: Option<String>,
        /// Priority, higher first.
        #[serde(default)]
        priority: Option<i64>,
        /// Needed capabilities.
        #[serde(default)]
        requires: Option<Vec<String>>,
        /// Labels.
        #[serde(default)]
        tags: Option<Vec<String>>,
        /// Claims allowed.
        #[serde(default)]
        max_attempts: Option<i64>,
    },
    /// `task.claim`
    #[serde(rename = "task.claim")]
    TaskClaim {
        /// A specific task.
        #[serde(default)]
        task_id: Option<i64>,
        /// Lease seconds.
        #[serde(default)]
        lease_s: Option<i64>,
    },
    /// `task.renew`
    #[serde(rename = "task.renew")]
    TaskRenew {
        /// The task.
        task_id: i64,
        /// Lease seconds.
        #[serde(default)]
        lease_s: Option<i64>,
    },
    /// `task.progress`
    #[serde(rename = "task.progress")]
    TaskProgress {
        /// The task.
        task_id: i64,
        /// What happened.
        note: String,
        /// 0 to 100.
        #[serde(default)]
        percent: Option<i64>,
    },
    /// `task.complete`
    #[serde(rename = "task.complete")]
    TaskComplete {
        /// The task.
        task_id: i64,
        /// Any JSON.
        #[serde(default)]
        result: Option<Value>,
    },
    /// `task.fail`
    #[serde(rename = "task.fail")]
    TaskFail {
        /// The task.
        task_id: i64,
        /// Why.
        error: String,
        /// Retry while attempts remain (default true).
        #[serde(default)]
        retry: Option<bool>,
    },
    /// `task.release`
    #[serde(rename = "task.release")]
    TaskRelease {
        /// The task.
        task_id: i64,
    },
    /// `task.get`
    #[serde(rename = "task.get")]
    TaskGet {
        /// The task.
        task_id: i64,
    },
    /// `task.list`
    #[serde(rename = "task.list")]
    TaskList {
        /// Only this state.
        #[serde(default)]
        state: Option<String>,
        /// Only this assignee.
        #[serde(default)]
        assignee: Option<String>,
        /// At most this many.
        #[serde(default)]
        limit: Option<i64>,
    },
    /// `task.cancel`
    #[serde(rename = "task.cancel")]
    TaskCancel {
        /// The task.
        task_id: i64,
        /// Why.
        #[serde(default)]
        reason: Option<String>,
    },
    /// `task.assign`
    #[serde(rename = "task.assign")]
    TaskAssign {
        /// The task.
        task_id: i64,
        /// The agent.
        agent: String,
    },
    /// `msg.send`
    #[serde(rename = "msg.send")]
    MsgSend {
        /// Agent name.
        to: String,
        /// The text.
        text: String,
    },
    /// `broadcast`
    #[serde(rename = "broadcast")]
    Broadcast {
        /// The text.
        text: String,
        /// Topic.
        #[serde(default)]
        topic: Option<String>,
    },
    /// `status`
    #[serde(rename = "status")]
    Status {},
    /// `agents`
    #[serde(rename = "agents")]
    Agents {},
    /// `poll.open`
    #[serde(rename = "poll.open")]
    PollOpen {
        /// The question.
        question: String,
        /// 2 to 10 options.
        options: Vec<String>,
        /// Seconds until it closes by itself.
        duration_s: i64,
        /// `agents`, `discord`, `twitch` or `all` (default).
        #[serde(default)]
        voters: Option<String>,
    },
    /// `poll.vote`
    #[serde(rename = "poll.vote")]
    PollVote {
        /// The poll.
        poll_id: i64,
        /// 1-based option.
        option: i64,
    },
    /// `poll.close`
    #[serde(rename = "poll.close")]
    PollClose {
        /// The poll.
        poll_id: i64,
    },
    /// `poll.get`
    #[serde(rename = "poll.get")]
    PollGet {
        /// The poll.
        poll_id: i64,
    },
    /// `search`
    #[serde(rename = "search")]
    Search {
        /// The words to find.
        query: String,
        /// At most this many results.
        #[serde(default)]
        limit: Option<i64>,
        /// Only tasks in this state.
        #[serde(default)]
        state: Option<String>,
        /// Only what this agent created, holds, sent or received.
        #[serde(default)]
        agent: Option<String>,
        /// Only items at or after this RFC 3339 time.
        #[serde(default)]
        since: Option<String>,
    },
    /// `reason`
    #[serde(rename = "reason")]
    Reason {
        /// The prompt.
        prompt: String,
        /// The mode.
        mode: String,
        /// Stream deltas.
        #[serde(default)]
        stream: Option<bool>,
    },
}

/// A frame that failed to parse, with the client's `id` when it had one.
#[derive(Debug)]
pub struct BadFrame {
    /// The `id` to answer with.
    pub re: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Parses one text frame: JSON, then `id`, then the typed frame.
pub fn parse(text: &str) -> Result<(Option<String>, ClientFrame), BadFrame> {
    let value: Value = serde_json::from_str(text).map_err(|e| BadFrame {
        re: None,
        message: format!("malformed JSON: {e}"),
    })?;
    let Value::Object(map) = &value else {
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
    match map.get("type") {
        Some(Value::String(_)) => {}
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
    }
    match serde_json::from_value::<ClientFrame>(value) {
        Ok(frame) => Ok((re, frame)),
        Err(e) => Err(BadFrame {
            re,
            message: e.to_string().replace("unknown variant", "unknown type"),
        }),
    }
}

impl ClientFrame {
    /// The protocol name of the frame, for rate classes and logs.
    pub fn name(&self) -> &'static str {
        match self {
            ClientFrame::Hello { .. } => "hello",
            ClientFrame::Ping {} => "ping",
            ClientFrame::Ack { .. } => "ack",
            ClientFrame::Reason { .. } => "reason",
            other => other.to_command_name(),
        }
    }

    fn to_command_name(&self) -> &'static str {
        match self {
            ClientFrame::TaskCreate { .. } => "task.create",
            ClientFrame::TaskClaim { .. } => "task.claim",
            ClientFrame::TaskRenew { .. } => "task.renew",
            ClientFrame::TaskProgress { .. } => "task.progress",
            ClientFrame::TaskComplete { .. } => "task.complete",
            ClientFrame::TaskFail { .. } => "task.fail",
            ClientFrame::TaskRelease { .. } => "task.release",
            ClientFrame::TaskGet { .. } => "task.get",
            ClientFrame::TaskList { .. } => "task.list",
            ClientFrame::TaskCancel { .. } => "task.cancel",
            ClientFrame::TaskAssign { .. } => "task.assign",
            ClientFrame::MsgSend { .. } => "msg.send",
            ClientFrame::Broadcast { .. } => "broadcast",
            ClientFrame::Status {} => "status",
            ClientFrame::Agents {} => "agents",
            ClientFrame::PollOpen { .. } => "poll.open",
            ClientFrame::PollVote { .. } => "poll.vote",
            ClientFrame::PollClose { .. } => "poll.close",
            ClientFrame::PollGet { .. } => "poll.get",
            ClientFrame::Search { .. } => "search",
            _ => "other",
        }
    }

    /// The core command this frame asks for; None for session frames
    /// (`hello`, `ping`, `ack`, `reason`) that the gateway answers itself.
    pub fn into_command(self) -> Result<Option<Command>, CoreError> {
        Ok(Some(match self {
            ClientFrame::Hello { .. }
            | ClientFrame::Ping {}
            | ClientFrame::Ack { .. }
            | ClientFrame::Reason { .. } => return Ok(None),
            ClientFrame::TaskCreate {
                title,
                body,
                priority,
                requires,
                tags,
                max_attempts,
            } => Command::TaskCreate(NewTask {
                title,
                body: body.unwrap_or_default(),
                priority: priority.unwrap_or(0),
                requires: requires.unwrap_or_default(),
                tags: tags.unwrap_or_default(),
                max_attempts,
            }),
            ClientFrame::TaskClaim { task_id, lease_s } => Command::TaskClaim { task_id, lease_s },
            ClientFrame::TaskRenew { task_id, lease_s } => Command::TaskRenew { task_id, lease_s },
            ClientFrame::TaskProgress {
                task_id,
                note,
                percent,
            } => Command::TaskProgress {
                task_id,
                note,
                percent,
            },
            ClientFrame::TaskComplete { task_id, result } => {
                Command::TaskComplete { task_id, result }
            }
            ClientFrame::TaskFail {
                task_id,
                error,
                retry,
            } => Command::TaskFail {
                task_id,
                error,
                retry: retry.unwrap_or(true),
            },
            ClientFrame::TaskRelease { task_id } => Command::TaskRelease { task_id },
            ClientFrame::TaskGet { task_id } => Command::TaskGet { task_id },
            ClientFrame::TaskList {
                state,
                assignee,
                limit,
            } => Command::TaskList {
                state: state
                    .map(|s| s.parse::<TaskState>())
                    .transpose()
                    .map_err(CoreError::BadRequest)?,
                assignee,
                limit,
            },
            ClientFrame::TaskCancel { task_id, reason } => Command::TaskCancel { task_id, reason },
            ClientFrame::TaskAssign { task_id, agent } => Command::TaskAssign { task_id, agent },
            ClientFrame::MsgSend { to, text } => Command::MsgSend { to, text },
            ClientFrame::Broadcast { text, topic } => Command::Broadcast { text, topic },
            ClientFrame::Status {} => Command::Status,
            ClientFrame::Agents {} => Command::Agents,
            ClientFrame::PollOpen {
                question,
                options,
                duration_s,
                voters,
            } => Command::PollOpen(NewPoll {
                question,
                options,
                duration_s,
                voters: parse_voters(voters.as_deref())?,
            }),
            ClientFrame::PollVote { poll_id, option } => Command::PollVote { poll_id, option },
            ClientFrame::PollClose { poll_id } => Command::PollClose { poll_id },
            ClientFrame::PollGet { poll_id } => Command::PollGet { poll_id },
            ClientFrame::Search {
                query,
                limit,
                state,
                agent,
                since,
            } => Command::Search(search_request(
                query,
                limit,
                state.as_deref(),
                agent,
                since.as_deref(),
            )?),
        }))
    }
}

/// `voters` of `poll.open` (absent: `all`).
pub fn parse_voters(voters: Option<&str>) -> Result<Voters, CoreError> {
    voters
        .map(str::parse::<Voters>)
        .transpose()
        .map(|v| v.unwrap_or(Voters::All))
        .map_err(CoreError::BadRequest)
}

/// Builds a search request from its wire fields (shared by `search` and
/// `GET /api/search`): `state` must be a task state, `since` RFC 3339.
pub fn search_request(
    query: String,
    limit: Option<i64>,
    state: Option<&str>,
    agent: Option<String>,
    since: Option<&str>,
) -> Result<SearchRequest, CoreError> {
    let state = state
        .map(str::parse::<TaskState>)
        .transpose()
        .map_err(CoreError::BadRequest)?;
    let since = since
        .map(|s| {
            crate::clock::parse_rfc3339(s).ok_or_else(|| {
                CoreError::bad_request(format!(
                    "`since` must be an RFC 3339 time such as 2026-11-24T12:00:00Z, got {s:?}"
                ))
            })
        })
        .transpose()?;
    Ok(SearchRequest {
        query,
        limit,
        state,
        agent,
        since,
    })
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
        Reply::Results(r) => ("results", json!({ "results": r.results, "mode": r.mode })),
    }
}

/// Renders a reply frame answering request `re`.
pub fn reply_frame(re: Option<&str>, reply: &Reply) -> String {
    let (kind, mut v) = reply_body(reply);
    if let Some(o) = v.as_object_mut() {
        o.insert("type".into(), json!(kind));
        o.insert("re".into(), json!(re));
    }
    v.to_string()
}

/// Renders a `reason.result` frame.
pub fn reason_result_frame(re: Option<&str>, a: &crate::reason::ReasonAnswer) -> String {
    json!({
        "type": "reason.result", "re": re, "text": a.text, "mode": a.mode,
        "confidence": a.confidence, "cached": a.cached, "model": a.model,
    })
    .to_string()
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

    #[test]
    fn parses_a_request_with_its_id() {
        let (re, f) = parse(r#"{"type":"task.claim","id":"7","lease_s":30}"#).unwrap();
        assert_eq!(re.as_deref(), Some("7"));
        assert!(matches!(
            f,
            ClientFrame::TaskClaim {
                task_id: None,
                lease_s: Some(30)
            }
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
    }

    #[test]
    fn poll_and_search_frames_parse_into_commands() {
        let (_, f) =
            parse(r#"{"type":"poll.open","question":"q","options":["a","b"],"duration_s":60}"#)
                .unwrap();
        match f.into_command().unwrap() {
            Some(Command::PollOpen(p)) => assert_eq!(p.voters, Voters::All),
            other => panic!("{other:?}"),
        }
        let (_, f) = parse(r#"{"type":"poll.open","question":"q","options":["a","b"],"duration_s":60,"voters":"nobody"}"#)
            .unwrap();
        assert_eq!(f.into_command().unwrap_err().code(), "bad_request");
        let (_, f) = parse(r#"{"type":"search","query":"x","since":"yesterday"}"#).unwrap();
        assert_eq!(f.into_command().unwrap_err().code(), "bad_request");
        let (_, f) =
            parse(r#"{"type":"search","query":"x","since":"2026-01-01T00:00:00Z","state":"done"}"#)
                .unwrap();
        assert!(matches!(f.into_command(), Ok(Some(Command::Search(_)))));
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
