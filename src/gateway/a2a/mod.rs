//! The A2A 1.0 front door: the Agent Card at
//! `/.well-known/agent-card.json` and JSON-RPC at `/a2a` with
//! `SendMessage`, `SendStreamingMessage` (SSE), `GetTask`, `CancelTask`
//! and `SubscribeToTask` (SSE). The caller is the agent named by
//! `Authorization: Bearer <token>` (401 with `WWW-Authenticate`
//! otherwise); `A2A-Version` must be 1.0 (absent means 0.3, as the spec
//! says; either way VersionNotSupported, -32009).
//!
//! A message becomes a swarm task through the dispatcher like any front
//! door's `task.create`: the A2A task id is the swarm task's number, and
//! the message's `contextId` is kept as the task's `a2a-context:` tag.
//! Claimed is WORKING, progress notes are status updates, the result is an
//! artifact, and the task ends COMPLETED, FAILED or CANCELED; `CancelTask`
//! is the core's `task.cancel` (which ends the holder's lease).

pub mod card;
pub mod watch;
pub mod wire;

use crate::core::command::Reply;
use crate::core::model::{Caller, Platform, Task};
use crate::dispatch::parse;
use crate::gateway::bearer::bearer_caller;
use crate::gateway::limits::PeerAddr;
use crate::gateway::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::mpsc;
use wire::A2aError;

/// The protocol version this endpoint speaks (major.minor).
pub const A2A_VERSION: &str = "1.0";
/// The header a client names its protocol version in.
pub const VERSION_HEADER: &str = "a2a-version";
/// The skill id of work that needs no capability.
pub const GENERAL_SKILL: &str = "task";
/// How long a `SendMessage` without `returnImmediately` waits for the task
/// to end before answering with it as it is (below common client time-outs).
pub const BLOCKING_WAIT: Duration = Duration::from_secs(25);
/// Stream responses queued for one SSE client.
const STREAM_QUEUE: usize = 32;

/// The A2A routes, to merge into the HTTP router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/.well-known/agent-card.json", get(card::serve_card))
        .route("/a2a", post(serve_rpc))
}

/// Checks `A2A-Version`: 1.0 (any patch) passes; absent or empty is 0.3.
fn check_version(headers: &HeaderMap) -> Result<(), A2aError> {
    let given = headers
        .get(VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or("0.3");
    let mut parts = given.split('.');
    let major_minor = (parts.next(), parts.next());
    if major_minor == (Some("1"), Some("0")) || given == "1" {
        return Ok(());
    }
    Err(A2aError::VersionNotSupported(format!(
        "A2A-Version {given} is not supported: this endpoint speaks A2A {A2A_VERSION}; \
         send the header `A2A-Version: {A2A_VERSION}`"
    )))
}

/// A JSON-RPC answer with `status`.
fn answer(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// `POST /a2a`: authenticates, reads one JSON-RPC request and runs its method.
pub async fn serve_rpc(
    State(app): State<AppState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let caller = match bearer_caller(&app, peer, &headers, Platform::A2a).await {
        Ok(c) => c,
        Err(refusal) => return refusal,
    };
    let bytes = match body {
        Ok(b) => b,
        Err(rej) if rej.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let e = A2aError::InvalidRequest(format!(
                "request body exceeds server.max_body_bytes ({} bytes)",
                app.cfg.server.max_body_bytes
            ));
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                wire::error_response(&Value::Null, &e),
            );
        }
        Err(rej) => {
            let e = A2aError::Parse(format!("the request body could not be read: {rej}"));
            return answer(StatusCode::OK, wire::error_response(&Value::Null, &e));
        }
    };
    let request: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            let e = A2aError::Parse(format!("Parse error: the request body is not JSON: {e}"));
            return answer(StatusCode::OK, wire::error_response(&Value::Null, &e));
        }
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let outcome = match envelope(request) {
        Ok((method, params)) => match check_version(&headers) {
            Ok(()) => run_method(&app, &caller, &id, &method, params).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match outcome {
        Ok(resp) => resp,
        Err(e) => answer(StatusCode::OK, wire::error_response(&id, &e)),
    }
}

/// The method and params of a JSON-RPC 2.0 request; InvalidRequest says
/// what is missing.
pub fn envelope(request: Value) -> Result<(String, Value), A2aError> {
    if request.is_array() {
        return Err(A2aError::InvalidRequest(
            "Invalid Request: batch requests are not supported; send one request object".into(),
        ));
    }
    let req: wire::RpcRequest = serde_json::from_value(request).map_err(|e| {
        A2aError::InvalidRequest(format!("Invalid Request: not a JSON-RPC 2.0 request: {e}"))
    })?;
    if req.jsonrpc.as_deref() != Some("2.0") {
        return Err(A2aError::InvalidRequest(
            "Invalid Request: `jsonrpc` must be \"2.0\"".into(),
        ));
    }
    if !matches!(req.id, Value::String(_) | Value::Number(_) | Value::Null) {
        return Err(A2aError::InvalidRequest(
            "Invalid Request: `id` must be a string or a number".into(),
        ));
    }
    match req.method {
        Some(Value::String(m)) => Ok((m, req.params)),
        _ => Err(A2aError::InvalidRequest(
            "Invalid Request: `method` must be a string".into(),
        )),
    }
}

/// Runs one method for `caller`.
async fn run_method(
    app: &AppState,
    caller: &Caller,
    id: &Value,
    method: &str,
    params: Value,
) -> Result<Response, A2aError> {
    match method {
        "SendMessage" => {
            let p: wire::SendMessageParams = wire::params(method, params)?;
            let immediate = p
                .configuration
                .as_ref()
                .is_some_and(|c| c.return_immediately);
            let task = create_task(app, caller, &p).await?;
            let task = if immediate || wire::is_terminal(task.state) {
                task
            } else {
                wait_for_end(app, task).await
            };
            Ok(rpc_ok(id, json!({ "task": wire::task(&task) })))
        }
        "SendStreamingMessage" => {
            let p: wire::SendMessageParams = wire::params(method, params)?;
            let task = create_task(app, caller, &p).await?;
            Ok(stream(app, id.clone(), task.id))
        }
        "GetTask" => {
            let p: wire::TaskIdParams = wire::params(method, params)?;
            let task = run_task_command(app, caller, "task.get", wire::task_number(&p.id)?).await?;
            Ok(rpc_ok(id, wire::task(&task)))
        }
        "CancelTask" => {
            let p: wire::TaskIdParams = wire::params(method, params)?;
            let task =
                run_task_command(app, caller, "task.cancel", wire::task_number(&p.id)?).await?;
            Ok(rpc_ok(id, wire::task(&task)))
        }
        "SubscribeToTask" => {
            let p: wire::TaskIdParams = wire::params(method, params)?;
            let task = run_task_command(app, caller, "task.get", wire::task_number(&p.id)?).await?;
            if wire::is_terminal(task.state) {
                return Err(A2aError::UnsupportedOperation(format!(
                    "task {} is already {}; GetTask shows its outcome",
                    task.id, task.state
                )));
            }
            Ok(stream(app, id.clone(), task.id))
        }
        "CreateTaskPushNotificationConfig"
        | "GetTaskPushNotificationConfig"
        | "ListTaskPushNotificationConfigs"
        | "DeleteTaskPushNotificationConfig" => Err(A2aError::PushNotificationNotSupported(
            "push notifications are not offered (the agent card says pushNotifications: false); \
             use SendStreamingMessage or SubscribeToTask"
                .into(),
        )),
        other => Err(A2aError::MethodNotFound(format!(
            "Method not found: {other:?}; this endpoint serves SendMessage, \
             SendStreamingMessage, GetTask, CancelTask and SubscribeToTask"
        ))),
    }
}

/// A JSON-RPC result as an HTTP 200 response.
fn rpc_ok(id: &Value, result: Value) -> Response {
    answer(StatusCode::OK, wire::response(id, result))
}

/// Creates the swarm task a message asks for, through the dispatcher.
async fn create_task(
    app: &AppState,
    caller: &Caller,
    p: &wire::SendMessageParams,
) -> Result<Task, A2aError> {
    let context_id = wire::given_context_id(p)?.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let fields = wire::task_fields(p, &context_id)?;
    let cmd = parse::command_in(&app.core.catalog, "task.create", fields)
        .map_err(|e| A2aError::from_core(e, false))?;
    match app.dispatch.dispatch(caller, cmd).await {
        Ok(Reply::Task(Some(task))) => Ok(task),
        Ok(other) => Err(A2aError::Internal(format!(
            "task.create answered {other:?}"
        ))),
        Err(e) => Err(A2aError::from_core(e, false)),
    }
}

/// Runs `task.get` or `task.cancel` on task `task_id` through the dispatcher.
async fn run_task_command(
    app: &AppState,
    caller: &Caller,
    name: &str,
    task_id: i64,
) -> Result<Task, A2aError> {
    let mut fields = Map::new();
    fields.insert("task_id".into(), json!(task_id));
    let cancelling = name == "task.cancel";
    let cmd = parse::command_in(&app.core.catalog, name, fields)
        .map_err(|e| A2aError::from_core(e, cancelling))?;
    match app.dispatch.dispatch(caller, cmd).await {
        Ok(Reply::Task(Some(task))) => Ok(task),
        Ok(other) => Err(A2aError::Internal(format!("{name} answered {other:?}"))),
        Err(e) => Err(A2aError::from_core(e, cancelling)),
    }
}

/// Waits up to [`BLOCKING_WAIT`] for `task` to end; the task as it is then.
async fn wait_for_end(app: &AppState, task: Task) -> Task {
    let (tx, mut rx) = mpsc::channel(STREAM_QUEUE);
    let follower = app
        .sessions
        .spawn(watch::follow(app.clone(), task.id, false, tx));
    let _ = tokio::time::timeout(BLOCKING_WAIT, async { while rx.recv().await.is_some() {} }).await;
    drop(rx);
    let _ = follower.await;
    app.core.get_task(task.id).await.unwrap_or(task)
}

/// An SSE response following task `task_id`: each stream response wrapped
/// as the JSON-RPC result of request `id`, the `Task` first.
fn stream(app: &AppState, id: Value, task_id: i64) -> Response {
    let (tx, rx) = mpsc::channel::<Value>(STREAM_QUEUE);
    app.sessions
        .spawn(watch::follow(app.clone(), task_id, true, tx));
    let events = futures_util::stream::unfold(rx, move |mut rx| {
        let id = id.clone();
        async move {
            let result = rx.recv().await?;
            let event = Event::default().data(wire::response(&id, result).to_string());
            Some((Ok::<_, Infallible>(event), rx))
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_version(v: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = v {
            h.insert(VERSION_HEADER, HeaderValue::from_str(v).expect("ascii"));
        }
        h
    }

    #[test]
    fn version_1_0_passes_and_others_or_none_get_version_not_supported() {
        assert!(check_version(&with_version(Some("1.0"))).is_ok());
        assert!(check_version(&with_version(Some("1.0.2"))).is_ok());
        for v in [Some("0.3"), Some("2.0"), Some("1.1"), None] {
            let e = check_version(&with_version(v)).unwrap_err();
            assert_eq!(e.code(), -32009, "{v:?}");
        }
    }

    #[test]
    fn a_request_that_is_not_json_rpc_2_0_is_an_invalid_request() {
        for bad in [
            json!([]),
            json!({"id": 1, "method": "GetTask"}),
            json!({"jsonrpc": "2.0", "id": {}, "method": "GetTask"}),
            json!({"jsonrpc": "2.0", "id": 1, "method": 7}),
        ] {
            assert_eq!(envelope(bad.clone()).unwrap_err().code(), -32600, "{bad}");
        }
    }
}
