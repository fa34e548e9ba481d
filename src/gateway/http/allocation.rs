//! `GET /api/tasks/{id}/recommend`: the learned-allocation ranking for a task.

use super::caller::{path_id, respond, ApiCaller, ApiError};
use super::openapi::ErrorBody;
use crate::core::allocation::Recommendation;
use crate::gateway::AppState;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Serialize;
use serde_json::{json, Map};
use utoipa::ToSchema;

/// `{"recommendation": {task_id, requires, candidates: [...]}}`
#[derive(Serialize, ToSchema)]
pub struct RecommendationReply {
    /// The ranking, best first, each with its reasons.
    #[schema(value_type = Object)]
    pub recommendation: Recommendation,
}

/// Ranks the online agents that can do a task by their record on similar
/// tasks (role operator).
#[utoipa::path(
    get, path = "/api/tasks/{id}/recommend", operation_id = "task.recommend", tag = "tasks",
    params(("id" = i64, Path, description = "Task id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The ranking", body = RecommendationReply),
        (status = 403, description = "Not an operator", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
    )
)]
pub async fn recommend(
    State(app): State<AppState>,
    caller: ApiCaller,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, ApiError> {
    let mut f = Map::new();
    f.insert("task_id".into(), json!(path_id(id)?));
    Ok(respond(&caller.run(&app, "task.recommend", f).await?))
}
