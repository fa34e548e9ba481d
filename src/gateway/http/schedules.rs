//! `/api/schedules`: create, list, pause, resume and delete schedules
//! (docs/schedules.md).

use super::caller::{body_fields, path_id, respond, ApiCaller, ApiError};
use super::openapi::{ErrorBody, OkReply};
use crate::core::schedules::Schedule;
use crate::gateway::AppState;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

/// `POST /api/schedules` (the `schedule.add` fields).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ScheduleAddBody {
    /// A cron expression, e.g. `0 9 * * 1-5` (give `cron` or `every`).
    pub cron: Option<String>,
    /// An interval, e.g. `15m`, `2h`, `1d`, or a number of minutes.
    pub every: Option<String>,
    /// The IANA time zone of `cron` (default UTC).
    pub timezone: Option<String>,
    /// The first occurrence of an `every` schedule (RFC 3339).
    pub start_at: Option<String>,
    /// `task` (default) or `broadcast`.
    pub action: Option<String>,
    /// The task's title.
    pub title: Option<String>,
    /// The task's body.
    pub body: Option<String>,
    /// Capabilities the task needs.
    pub requires: Option<Vec<String>>,
    /// The task's priority.
    pub priority: Option<i64>,
    /// The broadcast's text.
    pub text: Option<String>,
    /// The broadcast's topic.
    pub topic: Option<String>,
    /// `skip` (default) or `run_once`.
    pub missed: Option<String>,
}

/// `{"schedule": {...}}`
#[derive(Serialize, ToSchema)]
pub struct ScheduleReply {
    /// The schedule.
    #[schema(value_type = Object)]
    pub schedule: Schedule,
}

/// `{"schedules": [...]}`
#[derive(Serialize, ToSchema)]
pub struct SchedulesReply {
    /// Every schedule, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub schedules: Vec<Schedule>,
}

/// Creates a schedule (role operator).
#[utoipa::path(
    post, path = "/api/schedules", operation_id = "schedule.add", tag = "schedules",
    request_body = ScheduleAddBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Created", body = ScheduleReply),
        (status = 400, description = "Invalid cron, zone or interval, or too frequent", body = ErrorBody),
        (status = 403, description = "Not an operator", body = ErrorBody),
    )
)]
pub async fn schedule_add(
    State(app): State<AppState>,
    caller: ApiCaller,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let f = body.map(|Json(b)| b).map_err(super::caller::body_error)?;
    Ok(respond(&caller.run(&app, "schedule.add", f).await?))
}

/// Every schedule with its next occurrence (role viewer).
#[utoipa::path(
    get, path = "/api/schedules", operation_id = "schedule.list", tag = "schedules",
    security(("bearer" = [])),
    responses((status = 200, description = "The schedules", body = SchedulesReply))
)]
pub async fn schedule_list(
    State(app): State<AppState>,
    caller: ApiCaller,
) -> Result<Response, ApiError> {
    Ok(respond(
        &caller.run(&app, "schedule.list", Map::new()).await?,
    ))
}

async fn by_id(
    app: &AppState,
    caller: &ApiCaller,
    name: &str,
    id: Result<Path<i64>, PathRejection>,
    body: Option<Result<Json<Map<String, Value>>, JsonRejection>>,
) -> Result<Response, ApiError> {
    let schedule_id = path_id(id)?;
    let mut f = match body {
        Some(b) => body_fields(b)?,
        None => Map::new(),
    };
    f.insert("schedule_id".into(), json!(schedule_id));
    Ok(respond(&caller.run(app, name, f).await?))
}

/// Stops a schedule firing until resumed (role operator).
#[utoipa::path(
    post, path = "/api/schedules/{id}/pause", operation_id = "schedule.pause", tag = "schedules",
    params(("id" = i64, Path, description = "Schedule id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Paused", body = ScheduleReply),
        (status = 404, description = "No such schedule", body = ErrorBody),
        (status = 409, description = "Already paused", body = ErrorBody),
    )
)]
pub async fn schedule_pause(
    State(app): State<AppState>,
    caller: ApiCaller,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Response, ApiError> {
    by_id(&app, &caller, "schedule.pause", id, Some(body)).await
}

/// Lets a paused schedule fire again from its next occurrence (role operator).
#[utoipa::path(
    post, path = "/api/schedules/{id}/resume", operation_id = "schedule.resume", tag = "schedules",
    params(("id" = i64, Path, description = "Schedule id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Resumed", body = ScheduleReply),
        (status = 404, description = "No such schedule", body = ErrorBody),
        (status = 409, description = "Not paused", body = ErrorBody),
    )
)]
pub async fn schedule_resume(
    State(app): State<AppState>,
    caller: ApiCaller,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Response, ApiError> {
    by_id(&app, &caller, "schedule.resume", id, Some(body)).await
}

/// Deletes a schedule; the tasks it created stay (role operator).
#[utoipa::path(
    delete, path = "/api/schedules/{id}", operation_id = "schedule.delete", tag = "schedules",
    params(("id" = i64, Path, description = "Schedule id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Deleted", body = OkReply),
        (status = 404, description = "No such schedule", body = ErrorBody),
    )
)]
pub async fn schedule_delete(
    State(app): State<AppState>,
    caller: ApiCaller,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, ApiError> {
    by_id(&app, &caller, "schedule.delete", id, None).await
}
