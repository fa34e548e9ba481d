//! The `/ai` routes the plan names: `POST /ai/reason` and
//! `/ai/reason/stream`, the same handlers as `/api/reason` and
//! `/api/reason/stream` under a second path (same body, roles, rate class
//! and answers).

use super::caller::{ApiCaller, ApiError};
use super::openapi::ErrorBody;
use super::reason::{self, ReasonBody};
use crate::gateway::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use serde_json::{Map, Value};

/// `POST /ai/reason`: the same as `POST /api/reason`.
#[utoipa::path(
    post, path = "/ai/reason", operation_id = "ai.reason", tag = "reasoning", request_body = ReasonBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`text`, `mode`, `confidence`, `cached`, `model` (as `/api/reason`)"),
        (status = 503, description = "No backend, circuit open, or backend failing", body = ErrorBody),
    )
)]
pub async fn ai_reason(
    state: State<AppState>,
    caller: ApiCaller,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Response, ApiError> {
    reason::reason(state, caller, body).await
}

/// `POST /ai/reason/stream`: the same as `POST /api/reason/stream`.
#[utoipa::path(
    post, path = "/ai/reason/stream", operation_id = "ai.reason.stream", tag = "reasoning", request_body = ReasonBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "text/event-stream: deltas, then `event: result` (as `/api/reason/stream`)", content_type = "text/event-stream", body = String),
    )
)]
pub async fn ai_reason_stream(
    state: State<AppState>,
    caller: ApiCaller,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Response, ApiError> {
    reason::reason_stream(state, caller, body).await
}
