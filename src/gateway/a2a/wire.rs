//! The A2A 1.0 JSON the endpoint reads and writes (ProtoJSON of the spec's
//! `lf.a2a.v1` messages: camelCase fields, `TASK_STATE_*` and `ROLE_*`
//! enum names), as serde types of our own for what comes in and JSON built
//! here for what goes out; and the spec's JSON-RPC error codes.

use crate::clock::rfc3339;
use crate::core::error::CoreError;
use crate::core::model::{Task, TaskState};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The tag prefix that keeps an A2A `contextId` on the swarm task it names.
pub const CONTEXT_TAG: &str = "a2a-context:";
/// The tag every task made from an A2A message carries.
pub const A2A_TAG: &str = "a2a";
/// The longest `contextId` a client may choose (a task tag is at most 64 characters).
pub const MAX_CONTEXT_ID_CHARS: usize = 64 - CONTEXT_TAG.len();
/// The longest title taken from a message's first line.
pub const MAX_TITLE_CHARS: usize = 120;

/// An A2A error: the spec's JSON-RPC code, a message saying what was wrong,
/// and (for errors the core raised) the swarmbridge error code in `data`.
#[derive(Debug, thiserror::Error)]
pub enum A2aError {
    /// -32700: the body is not JSON.
    #[error("{0}")]
    Parse(String),
    /// -32600: not a JSON-RPC 2.0 request.
    #[error("{0}")]
    InvalidRequest(String),
    /// -32601: a method this endpoint does not have.
    #[error("{0}")]
    MethodNotFound(String),
    /// -32602: parameters that do not fit the method.
    #[error("{0}")]
    InvalidParams(String),
    /// -32603: the server failed.
    #[error("{0}")]
    Internal(String),
    /// -32001: no task with that id.
    #[error("{0}")]
    TaskNotFound(String),
    /// -32002: the task is already final.
    #[error("{0}")]
    TaskNotCancelable(String),
    /// -32003: push notifications are not offered.
    #[error("{0}")]
    PushNotificationNotSupported(String),
    /// -32004: an operation this endpoint does not offer.
    #[error("{0}")]
    UnsupportedOperation(String),
    /// -32005: a part type the swarm cannot take.
    #[error("{0}")]
    ContentTypeNotSupported(String),
    /// -32009: an `A2A-Version` other than 1.0.
    #[error("{0}")]
    VersionNotSupported(String),
    /// A refusal by the swarm (role, rate limit, ...), with the A2A code it maps to.
    #[error("{1}")]
    Core(i64, CoreError),
}

impl A2aError {
    /// The JSON-RPC error code the spec gives this error.
    pub fn code(&self) -> i64 {
        match self {
            A2aError::Parse(_) => -32700,
            A2aError::InvalidRequest(_) => -32600,
            A2aError::MethodNotFound(_) => -32601,
            A2aError::InvalidParams(_) => -32602,
            A2aError::Internal(_) => -32603,
            A2aError::TaskNotFound(_) => -32001,
            A2aError::TaskNotCancelable(_) => -32002,
            A2aError::PushNotificationNotSupported(_) => -32003,
            A2aError::UnsupportedOperation(_) => -32004,
            A2aError::ContentTypeNotSupported(_) => -32005,
            A2aError::VersionNotSupported(_) => -32009,
            A2aError::Core(code, _) => *code,
        }
    }

    /// A core error in A2A terms: `not_found` is TaskNotFound, `conflict`
    /// on a cancel is TaskNotCancelable, `bad_request` is InvalidParams,
    /// the rest InvalidRequest or Internal; the swarmbridge code (and
    /// `retry_after_ms`) travel in `data` as a `google.rpc.ErrorInfo`.
    pub fn from_core(e: CoreError, cancelling: bool) -> Self {
        let code = match &e {
            CoreError::NotFound(_) => -32001,
            CoreError::Conflict(_) if cancelling => -32002,
            CoreError::BadRequest(_) => -32602,
            CoreError::Internal(_)
            | CoreError::Unavailable(_)
            | CoreError::StoreUnavailable { .. } => -32603,
            _ => -32600,
        };
        A2aError::Core(code, e)
    }

    /// The JSON-RPC `error` object.
    pub fn to_json(&self) -> Value {
        let mut error = json!({ "code": self.code(), "message": self.to_string() });
        if let A2aError::Core(_, e) = self {
            let mut metadata = json!({ "code": e.code() });
            if let Some(ms) = e.retry_after_ms() {
                metadata["retry_after_ms"] = json!(ms.to_string());
            }
            error["data"] = json!([{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": e.code().to_uppercase(),
                "domain": "swarmbridge",
                "metadata": metadata,
            }]);
        }
        error
    }
}

/// A JSON-RPC response carrying `result`.
pub fn response(id: &Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// A JSON-RPC response carrying an error.
pub fn error_response(id: &Value, e: &A2aError) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": e.to_json() })
}

/// A JSON-RPC 2.0 request as it arrives.
#[derive(Debug, Deserialize)]
pub struct RpcRequest {
    /// Must be `"2.0"`.
    pub jsonrpc: Option<String>,
    /// The request id (a string or number); absent for a notification.
    #[serde(default)]
    pub id: Value,
    /// The method name, e.g. `SendMessage`.
    pub method: Option<Value>,
    /// The parameters object.
    #[serde(default)]
    pub params: Value,
}

/// One part of a message.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    /// Text content.
    pub text: Option<String>,
    /// Structured content.
    pub data: Option<Value>,
    /// A link to content.
    pub url: Option<String>,
    /// Inline bytes (base64); not taken.
    pub raw: Option<String>,
}

/// An A2A message from the client.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// The client's id for the message.
    pub message_id: Option<String>,
    /// The conversation it belongs to.
    pub context_id: Option<String>,
    /// A task it continues (not supported: each message is a new task).
    pub task_id: Option<String>,
    /// Its content.
    #[serde(default)]
    pub parts: Vec<Part>,
    /// Extra fields; `skill`, `requires` and `priority` are read.
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
}

/// How the client wants `SendMessage` answered.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendConfiguration {
    /// Answer at once with the submitted task instead of waiting for it to end.
    #[serde(default)]
    pub return_immediately: bool,
}

/// `SendMessage` / `SendStreamingMessage` parameters.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessageParams {
    /// The message.
    pub message: Message,
    /// How to answer.
    #[serde(default)]
    pub configuration: Option<SendConfiguration>,
    /// Request metadata; `skill`, `requires` and `priority` are read here too.
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
}

/// `GetTask`, `CancelTask` and `SubscribeToTask` parameters.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskIdParams {
    /// The task id (the swarm task's number, as a string).
    pub id: String,
}

/// Parses a method's parameters; InvalidParams says what did not fit.
pub fn params<T: serde::de::DeserializeOwned>(method: &str, params: Value) -> Result<T, A2aError> {
    serde_json::from_value(params)
        .map_err(|e| A2aError::InvalidParams(format!("bad {method} params: {e}")))
}

/// The `contextId` the message names (trimmed), None when it names none;
/// InvalidParams when it is too long.
pub fn given_context_id(p: &SendMessageParams) -> Result<Option<String>, A2aError> {
    match p.message.context_id.as_deref().map(str::trim) {
        Some(c) if c.chars().count() > MAX_CONTEXT_ID_CHARS => Err(A2aError::InvalidParams(
            format!("contextId is limited to {MAX_CONTEXT_ID_CHARS} characters"),
        )),
        Some(c) if !c.is_empty() => Ok(Some(c.to_string())),
        _ => Ok(None),
    }
}

/// The swarm task id an A2A task id names.
pub fn task_number(id: &str) -> Result<i64, A2aError> {
    id.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| A2aError::TaskNotFound(format!("no task with id {id:?}")))
}

/// The `task.create` fields a message becomes: title (its first line),
/// body (the whole text), requires (metadata `skill` or `requires`),
/// priority, and the tags that keep its `contextId`.
pub fn task_fields(
    p: &SendMessageParams,
    context_id: &str,
) -> Result<Map<String, Value>, A2aError> {
    if p.message.task_id.as_deref().is_some_and(|t| !t.is_empty()) {
        return Err(A2aError::UnsupportedOperation(
            "a message to an existing task is not supported: every message is a new task; \
             send it without taskId"
                .into(),
        ));
    }
    let mut pieces = Vec::new();
    for part in &p.message.parts {
        if let Some(t) = &part.text {
            pieces.push(t.clone());
        } else if let Some(d) = &part.data {
            pieces.push(d.to_string());
        } else if let Some(u) = &part.url {
            pieces.push(u.clone());
        } else if part.raw.is_some() {
            return Err(A2aError::ContentTypeNotSupported(
                "file bytes (raw parts) are not taken: send text, data or url parts".into(),
            ));
        }
    }
    let text = pieces.join("\n");
    let Some(first) = text.lines().map(str::trim).find(|l| !l.is_empty()) else {
        return Err(A2aError::InvalidParams(
            "the message has no text: give it a text (or data) part saying what to do".into(),
        ));
    };
    let title: String = if first.chars().count() > MAX_TITLE_CHARS {
        let mut t: String = first.chars().take(MAX_TITLE_CHARS - 1).collect();
        t.push('…');
        t
    } else {
        first.to_string()
    };
    let body = if text.trim() == first {
        String::new()
    } else {
        text.clone()
    };
    let meta = |key: &str| {
        p.message
            .metadata
            .as_ref()
            .and_then(|m| m.get(key))
            .or_else(|| p.metadata.as_ref().and_then(|m| m.get(key)))
            .cloned()
    };
    let requires: Vec<String> = match (meta("requires"), meta("skill")) {
        (Some(Value::Array(list)), _) => list
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    A2aError::InvalidParams("metadata.requires must be a list of strings".into())
                })
            })
            .collect::<Result<_, _>>()?,
        (Some(_), _) => {
            return Err(A2aError::InvalidParams(
                "metadata.requires must be a list of strings".into(),
            ))
        }
        (None, Some(Value::String(s))) if s == super::GENERAL_SKILL || s.is_empty() => vec![],
        (None, Some(Value::String(s))) => vec![s],
        (None, Some(_)) => {
            return Err(A2aError::InvalidParams(
                "metadata.skill must be a skill id from the agent card".into(),
            ))
        }
        (None, None) => vec![],
    };
    let mut fields = Map::new();
    fields.insert("title".into(), json!(title));
    fields.insert("body".into(), json!(body));
    fields.insert("requires".into(), json!(requires));
    fields.insert(
        "tags".into(),
        json!([A2A_TAG, format!("{CONTEXT_TAG}{context_id}")]),
    );
    if let Some(priority) = meta("priority") {
        fields.insert("priority".into(), priority);
    }
    Ok(fields)
}

/// The `contextId` of a task: the one its A2A message named, else one
/// derived from the task id (tasks made on other front doors).
pub fn context_id(t: &Task) -> String {
    t.tags
        .iter()
        .find_map(|tag| tag.strip_prefix(CONTEXT_TAG))
        .map(str::to_string)
        .unwrap_or_else(|| format!("swarmbridge-task-{}", t.id))
}

/// The A2A state of a swarm task: open is SUBMITTED (waiting for an
/// agent, also after a release or an expired lease), claimed is WORKING,
/// done COMPLETED, failed FAILED, cancelled CANCELED.
pub fn a2a_state(state: TaskState) -> &'static str {
    match state {
        TaskState::Open => "TASK_STATE_SUBMITTED",
        TaskState::Claimed => "TASK_STATE_WORKING",
        TaskState::Done => "TASK_STATE_COMPLETED",
        TaskState::Failed => "TASK_STATE_FAILED",
        TaskState::Cancelled => "TASK_STATE_CANCELED",
    }
}

/// True for the states after which nothing more happens to a task.
pub fn is_terminal(state: TaskState) -> bool {
    state.is_final()
}

/// What the status message says about a task in its state: the latest
/// progress note while it is worked on, the error of a failure or cancel.
fn status_text(t: &Task) -> Option<String> {
    match t.state {
        TaskState::Claimed => Some(match (&t.progress, t.percent) {
            (Some(note), Some(p)) => format!("{note} ({p}%)"),
            (Some(note), None) => note.clone(),
            (None, _) => format!("claimed by {}", t.assignee.as_deref().unwrap_or("an agent")),
        }),
        TaskState::Open if t.attempts > 0 => {
            Some("back in the queue, waiting for an agent to claim it".into())
        }
        TaskState::Failed | TaskState::Cancelled => t.error.clone(),
        _ => None,
    }
}

/// The `status` of a task: state, timestamp and (when there is something
/// to say) an agent message.
pub fn status(t: &Task) -> Value {
    let mut status = json!({ "state": a2a_state(t.state), "timestamp": rfc3339(t.updated_at) });
    if let Some(text) = status_text(t) {
        status["message"] = json!({
            "messageId": format!("swarmbridge-{}-{}", t.id, t.updated_at),
            "contextId": context_id(t),
            "taskId": t.id.to_string(),
            "role": "ROLE_AGENT",
            "parts": [{"text": text}],
        });
    }
    status
}

/// The result artifact of a done task: a text part for a string result,
/// a data part for any other JSON.
pub fn artifact(t: &Task) -> Option<Value> {
    let result = t.result.as_ref().filter(|_| t.state == TaskState::Done)?;
    let part = match result {
        Value::String(s) => json!({"text": s, "mediaType": "text/plain"}),
        other => json!({"data": other, "mediaType": "application/json"}),
    };
    Some(json!({
        "artifactId": format!("swarmbridge-{}-result", t.id),
        "name": "result",
        "description": format!("The result {} reported", t.assignee.as_deref().unwrap_or("the agent")),
        "parts": [part],
    }))
}

/// A swarm task as an A2A `Task`.
pub fn task(t: &Task) -> Value {
    let mut task = json!({
        "id": t.id.to_string(),
        "contextId": context_id(t),
        "status": status(t),
        "metadata": {"swarmbridge": {
            "taskId": t.id, "state": t.state, "assignee": t.assignee,
            "attempts": t.attempts, "title": t.title,
        }},
    });
    if let Some(a) = artifact(t) {
        task["artifacts"] = json!([a]);
    }
    task
}

/// A `statusUpdate` stream response for a task's current status.
pub fn status_update(t: &Task) -> Value {
    json!({"statusUpdate": {
        "taskId": t.id.to_string(), "contextId": context_id(t), "status": status(t),
    }})
}

/// An `artifactUpdate` stream response carrying the result, whole.
pub fn artifact_update(t: &Task, artifact: Value) -> Value {
    json!({"artifactUpdate": {
        "taskId": t.id.to_string(), "contextId": context_id(t), "artifact": artifact,
        "append": false, "lastChunk": true,
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(v: Value) -> SendMessageParams {
        serde_json::from_value(v).expect("params")
    }

    #[test]
    fn a_message_becomes_a_task_titled_by_its_first_line_with_its_context_kept() {
        let p = send(json!({"message": {"messageId": "m1", "role": "ROLE_USER",
            "parts": [{"text": "Port the parser\nto the new API"}],
            "metadata": {"skill": "rust"}}}));
        let f = task_fields(&p, "ctx-1").expect("fields");
        assert_eq!(f["title"], "Port the parser");
        assert_eq!(f["body"], "Port the parser\nto the new API");
        assert_eq!(f["requires"], json!(["rust"]));
        assert_eq!(f["tags"], json!(["a2a", "a2a-context:ctx-1"]));
    }

    #[test]
    fn bytes_an_empty_message_and_a_follow_up_are_refused_with_the_specs_codes() {
        let raw = send(json!({"message": {"parts": [{"raw": "AAAA"}]}}));
        assert_eq!(task_fields(&raw, "c").unwrap_err().code(), -32005);
        let empty = send(json!({"message": {"parts": [{"text": "  "}]}}));
        assert_eq!(task_fields(&empty, "c").unwrap_err().code(), -32602);
        let follow = send(json!({"message": {"taskId": "4", "parts": [{"text": "more"}]}}));
        assert_eq!(task_fields(&follow, "c").unwrap_err().code(), -32004);
    }

    #[test]
    fn core_refusals_keep_their_swarmbridge_code_in_error_info() {
        let e = A2aError::from_core(CoreError::Conflict("task 3 is already done".into()), true);
        let j = e.to_json();
        assert_eq!(j["code"], -32002);
        assert_eq!(j["data"][0]["metadata"]["code"], "conflict");
        let e = A2aError::from_core(CoreError::NotFound("task 9 does not exist".into()), false);
        assert_eq!(e.code(), -32001);
    }
}
