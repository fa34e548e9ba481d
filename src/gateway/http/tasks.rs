//! `/api/tasks`: list, create, show, cancel and assign tasks.

use super::caller::{body_fields, fields, path_id, respond, ApiCaller, ApiError};
use super::openapi::ErrorBody;
use crate::core::model::Task;
use crate::gateway::AppState;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::{IntoParams, ToSchema};

/// Filters of `GET /api/tasks`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskQuery {
    /// Only tasks in this state (`open`, `claimed`, `done`, `failed`, `cancelled`).
    pub state: Option<String>,
    /// Only tasks held (or last held) by this agent.
    pub assignee: Option<String>,
    /// At most this many, newest first (default 50, at most 500).
    pub limit: Option<i64>,
}

/// `POST /api/tasks` (the `task.create` fields).
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateTaskBody {
    /// Short title.
    pub title: String,
    /// Longer description.
    pub body: Option<String>,
    /// Higher first (default 0).
    pub priority: Option<i64>,
    /// Capabilities an agent needs to claim it.
    pub requires: Option<Vec<String>>,
    /// Free labels.
    pub tags: Option<Vec<String>>,
    /// Claims allowed before it fails for good.
    pub max_attempts: Option<i64>,
}

/// `POST /api/tasks/{id}/cancel` (the body is optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CancelBody {
    /// Why (kept as the task's `error`).
    pub reason: Option<String>,
}

/// `POST /api/tasks/{id}/assign`
#[derive(Debug, Deserialize, ToSchema)]
pub struct AssignBody {
    /// The agent that gets the task.
    pub agent: String,
}

/// `{"task": {...}}`
#[derive(Serialize, ToSchema)]
pub struct TaskReply {
    /// The task.
    pub task: Task,
}

/// `{"tasks": [...]}`
#[derive(Serialize, ToSchema)]
pub struct TasksReply {
    /// Newest first.
    pub tasks: Vec<Task>,
}

/// Lists tasks, newest first, optionally by state and assignee (role viewer).
#[utoipa::path(
    get, path = "/api/tasks", operation_id = "task.list", tag = "tasks", params(TaskQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Tasks, newest first", body = TasksReply),
        (status = 400, description = "Bad filter", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
    )
)]
pub async fn list_tasks(
    State(app): State<AppState>,
    caller: ApiCaller,
    query: Result<Query<TaskQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError(crate::core::error::CoreError::bad_request(e.body_text())))?;
    let f = fields([
        ("state", json!(q.state)),
        ("assignee", json!(q.assignee)),
        ("limit", json!(q.limit)),
    ]);
    Ok(respond(&caller.run(&app, "task.list", f).await?))
}

/// Creates a task (role agent, as on the WebSocket); `task.created` goes
/// to the matching agents.
#[utoipa::path(
    post, path = "/api/tasks", operation_id = "task.create", tag = "tasks", request_body = CreateTaskBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = TaskReply),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 413, description = "Body over server.max_body_bytes", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    )
)]
pub async fn create_task(
    State(app): State<AppState>,
    caller: ApiCaller,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let f = body.map(|Json(b)| b).map_err(super::caller::body_error)?;
    let reply = caller.run(&app, "task.create", f).await?;
    Ok((StatusCode::CREATED, respond(&reply)).into_response())
}

/// One task (role viewer).
#[utoipa::path(
    get, path = "/api/tasks/{id}", operation_id = "task.get", tag = "tasks",
    params(("id" = i64, Path, description = "Task id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The task", body = TaskReply),
        (status = 404, description = "No such task", body = ErrorBody),
    )
)]
pub async fn get_task(
    State(app): State<AppState>,
    caller: ApiCaller,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, ApiError> {
    let f = fields([("task_id", json!(path_id(id)?))]);
    Ok(respond(&caller.run(&app, "task.get", f).await?))
}

/// Cancels a task that is not final: its creator or an operator may.
#[utoipa::path(
    post, path = "/api/tasks/{id}/cancel", operation_id = "task.cancel", tag = "tasks",
    params(("id" = i64, Path, description = "Task id")),
    request_body(content = CancelBody, description = "Optional: a reason"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Cancelled", body = TaskReply),
        (status = 403, description = "Neither creator nor operator", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "Already final", body = ErrorBody),
    )
)]
pub async fn cancel_task(
    State(app): State<AppState>,
    caller: ApiCaller,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let task_id = path_id(id)?;
    let mut f = body_fields(body)?;
    f.insert("task_id".into(), json!(task_id));
    Ok(respond(&caller.run(&app, "task.cancel", f).await?))
}

/// Claims an open task on an agent's behalf (role operator); the agent gets `task.offered`.
#[utoipa::path(
    post, path = "/api/tasks/{id}/assign", operation_id = "task.assign", tag = "tasks",
    params(("id" = i64, Path, description = "Task id")),
    request_body = AssignBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Assigned (claimed by the agent)", body = TaskReply),
        (status = 403, description = "Not an operator", body = ErrorBody),
        (status = 404, description = "No such task or agent", body = ErrorBody),
        (status = 409, description = "Task not open, or the agent holds too many", body = ErrorBody),
    )
)]
pub async fn assign_task(
    State(app): State<AppState>,
    caller: ApiCaller,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let task_id = path_id(id)?;
    let mut f = body.map(|Json(b)| b).map_err(super::caller::body_error)?;
    f.insert("task_id".into(), json!(task_id));
    Ok(respond(&caller.run(&app, "task.assign", f).await?))
}
