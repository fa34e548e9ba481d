//! `POST /api/reason` and `/api/reason/stream`: the reasoning engine over
//! HTTP, the `reason` command's mirrors (`docs/protocol.md`, "HTTP mirrors").

use super::caller::{body_error, reply_json, ApiCaller, ApiError};
use super::openapi::ErrorBody;
use crate::core::command::{Command, Reply};
use crate::dispatch::parse;
use crate::gateway::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::convert::Infallible;
use tokio::sync::mpsc;

/// `POST /api/reason` and `/api/reason/stream` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ReasonBody {
    /// The question.
    pub prompt: String,
    /// One of the five modes.
    pub mode: String,
    /// Accepted for symmetry with the WebSocket frame; `/api/reason` always
    /// answers JSON, `/api/reason/stream` always streams.
    #[serde(default)]
    pub stream: Option<bool>,
}

fn reason_command(
    app: &AppState,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Command, ApiError> {
    let Json(fields) = body.map_err(body_error)?;
    Ok(parse::command_in(
        &app.dispatch.core().catalog,
        "reason",
        fields,
    )?)
}

/// `POST /api/reason`: the `reason.result` fields as JSON.
#[utoipa::path(
    post, path = "/api/reason", operation_id = "reason", tag = "reasoning", request_body = ReasonBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`text`, `mode`, `confidence`, `cached`, `model`"),
        (status = 503, description = "No backend, circuit open, or backend failing", body = ErrorBody),
    )
)]
pub async fn reason(
    State(app): State<AppState>,
    caller: ApiCaller,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let cmd = reason_command(&app, body)?;
    let reply = app.dispatch.dispatch(&caller.0, cmd).await?;
    Ok(Json(reply_json(&reply)).into_response())
}

/// `POST /api/reason/stream`: `text/event-stream` with one
/// `data: {"text": ...}` per delta, then `event: result` with the
/// `reason.result` fields (or `event: error` with `code` and `message`).
#[utoipa::path(
    post, path = "/api/reason/stream", operation_id = "reason.stream", tag = "reasoning", request_body = ReasonBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "text/event-stream: deltas, then `event: result`", content_type = "text/event-stream", body = String),
    )
)]
pub async fn reason_stream(
    State(app): State<AppState>,
    caller: ApiCaller,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let cmd = reason_command(&app, body)?;
    let admitted = app.dispatch.admit(&caller.0, cmd)?;
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(64);
    tokio::spawn(async move {
        let (dtx, mut drx) = mpsc::channel::<String>(64);
        let fwd_tx = tx.clone();
        let forward = async move {
            while let Some(text) = drx.recv().await {
                let ev = Event::default().data(json!({ "text": text }).to_string());
                if fwd_tx.send(Ok(ev)).await.is_err() {
                    break;
                }
            }
        };
        let (res, ()) = tokio::join!(admitted.run(Some(dtx)), forward);
        let ev = match res {
            Ok(reply @ Reply::Reason(_)) => Event::default()
                .event("result")
                .data(reply_json(&reply).to_string()),
            Ok(_) => Event::default()
                .event("error")
                .data(json!({ "code": "internal", "message": "unexpected reply" }).to_string()),
            Err(e) => Event::default()
                .event("error")
                .data(json!({ "code": e.code(), "message": e.to_string() }).to_string()),
        };
        let _ = tx.send(Ok(ev)).await;
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
