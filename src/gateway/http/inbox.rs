//! `POST /api/inbox`: an agent reads its direct messages and broadcasts
//! after a cursor; reading acknowledges them (the `inbox` command).

use super::caller::{body_fields, respond, ApiCaller, ApiError};
use super::openapi::ErrorBody;
use crate::core::messages::InboxMessage;
use crate::gateway::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// `POST /api/inbox` body (every field optional; no body reads on from the last ack).
#[derive(Debug, Deserialize, ToSchema)]
pub struct InboxBody {
    /// Read what came after this event `seq` (default: after your last acknowledgement).
    pub seq: Option<i64>,
    /// At most this many messages (1 to 100, default 20).
    pub limit: Option<i64>,
}

/// `{"messages": [...], "next": 42, "more": false}`
#[derive(Debug, Serialize, ToSchema)]
pub struct InboxReply {
    /// Direct messages and broadcasts, oldest first.
    pub messages: Vec<InboxMessage>,
    /// Pass as `seq` to read on; every event up to it is acknowledged.
    pub next: i64,
    /// True when the read stopped at `limit` and more may follow.
    pub more: bool,
}

/// Reads the caller's messages and broadcasts after `seq` and acknowledges them (role agent).
#[utoipa::path(
    post, path = "/api/inbox", operation_id = "inbox", tag = "messages", request_body = InboxBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The messages and the next cursor", body = InboxReply),
        (status = 400, description = "Bad `seq` or `limit`", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
    )
)]
pub async fn read_inbox(
    State(app): State<AppState>,
    caller: ApiCaller,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let f = body_fields(body)?;
    Ok(respond(&caller.run(&app, "inbox", f).await?))
}
