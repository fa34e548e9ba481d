//! `/api/polls`: open, vote, close and show polls.

use super::caller::{body_fields, path_id, respond, ApiCaller, ApiError};
use super::openapi::{ErrorBody, OkReply};
use crate::core::polls::Poll;
use crate::gateway::AppState;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

/// `POST /api/polls` (the `poll.open` fields).
#[derive(Debug, Deserialize, ToSchema)]
pub struct PollOpenBody {
    /// The question.
    pub question: String,
    /// 2 to 10 options.
    pub options: Vec<String>,
    /// Seconds until it closes by itself (default 300).
    pub duration_s: Option<i64>,
    /// `agents`, `discord`, `twitch` or `all` (default).
    pub voters: Option<String>,
}

/// `POST /api/polls/{id}/vote`
#[derive(Debug, Deserialize, ToSchema)]
pub struct PollVoteBody {
    /// 1-based option.
    pub option: i64,
}

/// `{"poll": {...}}`
#[derive(Serialize, ToSchema)]
pub struct PollReply {
    /// The poll with its tally.
    #[schema(value_type = Object)]
    pub poll: Poll,
}

/// Opens a poll (role operator); every agent allowed to vote gets `poll.opened`.
#[utoipa::path(
    post, path = "/api/polls", operation_id = "poll.open", tag = "polls", request_body = PollOpenBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Opened", body = PollReply),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 403, description = "Not an operator", body = ErrorBody),
    )
)]
pub async fn poll_open(
    State(app): State<AppState>,
    caller: ApiCaller,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let f = body.map(|Json(b)| b).map_err(super::caller::body_error)?;
    Ok(respond(&caller.run(&app, "poll.open", f).await?))
}

/// Votes as the token's agent (role viewer); a later vote replaces the earlier.
#[utoipa::path(
    post, path = "/api/polls/{id}/vote", operation_id = "poll.vote", tag = "polls", request_body = PollVoteBody,
    params(("id" = i64, Path, description = "Poll id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Counted", body = OkReply),
        (status = 400, description = "Option out of range", body = ErrorBody),
        (status = 403, description = "The poll's voters exclude agents", body = ErrorBody),
        (status = 409, description = "The poll is closed", body = ErrorBody),
    )
)]
pub async fn poll_vote(
    State(app): State<AppState>,
    caller: ApiCaller,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let poll_id = path_id(id)?;
    let mut f = body.map(|Json(b)| b).map_err(super::caller::body_error)?;
    f.insert("poll_id".into(), json!(poll_id));
    Ok(respond(&caller.run(&app, "poll.vote", f).await?))
}

/// Closes a poll now (role operator) with its final tally.
#[utoipa::path(
    post, path = "/api/polls/{id}/close", operation_id = "poll.close", tag = "polls",
    params(("id" = i64, Path, description = "Poll id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Closed", body = PollReply),
        (status = 403, description = "Not an operator", body = ErrorBody),
        (status = 409, description = "Already closed", body = ErrorBody),
    )
)]
pub async fn poll_close(
    State(app): State<AppState>,
    caller: ApiCaller,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let poll_id = path_id(id)?;
    let mut f = body_fields(body)?;
    f.insert("poll_id".into(), json!(poll_id));
    Ok(respond(&caller.run(&app, "poll.close", f).await?))
}

/// One poll with its tally (role viewer).
#[utoipa::path(
    get, path = "/api/polls/{id}", operation_id = "poll.get", tag = "polls",
    params(("id" = i64, Path, description = "Poll id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The poll", body = PollReply),
        (status = 404, description = "No such poll", body = ErrorBody),
    )
)]
pub async fn poll_get(
    State(app): State<AppState>,
    caller: ApiCaller,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, ApiError> {
    let poll_id = path_id(id)?;
    let mut f = Map::new();
    f.insert("poll_id".into(), json!(poll_id));
    Ok(respond(&caller.run(&app, "poll.get", f).await?))
}
