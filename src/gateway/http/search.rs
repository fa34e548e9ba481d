//! `GET /api/search`: full-text (or semantic) search over tasks and messages.

use super::caller::{fields, query_params, respond, ApiCaller, ApiError};
use super::openapi::ErrorBody;
use crate::gateway::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

/// `GET /api/search` query string (the `search` fields, `q` for `query`).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// The words to find.
    #[serde(default)]
    pub q: String,
    /// At most this many results (default 20, 1 to 100).
    pub limit: Option<i64>,
    /// Only tasks in this state.
    pub state: Option<String>,
    /// Only what this agent created, holds, sent or received.
    pub agent: Option<String>,
    /// Only items at or after this RFC 3339 time.
    pub since: Option<String>,
}

/// Searches tasks and messages (role viewer): `{"results": [...], "mode": "fulltext"}`.
#[utoipa::path(
    get, path = "/api/search", operation_id = "search", tag = "search", params(SearchParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`results` ({kind, id, title, snippet, score}) and `mode` (fulltext or semantic)"),
        (status = 400, description = "Empty or bad query", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
    )
)]
pub async fn search(
    State(app): State<AppState>,
    caller: ApiCaller,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let p = query_params(params)?;
    let f = fields([
        ("query", json!(p.q)),
        ("limit", json!(p.limit)),
        ("state", json!(p.state)),
        ("agent", json!(p.agent)),
        ("since", json!(p.since)),
    ]);
    Ok(respond(&caller.run(&app, "search", f).await?))
}
