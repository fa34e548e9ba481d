//! `GET /api/search` and `POST /ai/semantic-search`: search over tasks and
//! messages in the `text`, `semantic` or `hybrid` mode (docs/search.md).

use super::caller::{body_error, fields, query_params, respond, ApiCaller, ApiError};
use super::openapi::ErrorBody;
use crate::gateway::AppState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
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
    /// `text`, `semantic` or `hybrid` (default: `hybrid` when embeddings
    /// are configured, otherwise `text`).
    pub mode: Option<String>,
}

/// Searches tasks and messages (role viewer): `{"results": [...], "mode": "fulltext", "degraded": false}`.
#[utoipa::path(
    get, path = "/api/search", operation_id = "search", tag = "search", params(SearchParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`results` ({kind, id, title, snippet, score}), `mode` (text, semantic or hybrid), `degraded` (true when hybrid fell back to text) and `degraded_reason`"),
        (status = 400, description = "Empty, oversized or bad query", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 503, description = "`semantic` without a working embeddings backend", body = ErrorBody),
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
        ("mode", json!(p.mode)),
    ]);
    Ok(respond(&caller.run(&app, "search", f).await?))
}

/// `POST /ai/semantic-search` body: the `search` fields.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SemanticSearchBody {
    /// The question or words, 1 to 500 characters.
    pub query: String,
    /// `semantic` (the default here), `hybrid` or `text`.
    pub mode: Option<String>,
    /// At most this many results (default 20, 1 to 100).
    pub limit: Option<i64>,
    /// Only tasks in this state.
    pub state: Option<String>,
    /// Only what this agent created, holds, sent or received.
    pub agent: Option<String>,
    /// Only items at or after this RFC 3339 time.
    pub since: Option<String>,
}

/// Searches by meaning (role viewer): the `search` command with `mode`
/// `semantic` unless the body names another; the same answer as `GET /api/search`.
#[utoipa::path(
    post, path = "/ai/semantic-search", operation_id = "ai.semantic_search", tag = "search",
    request_body = SemanticSearchBody, security(("bearer" = [])),
    responses(
        (status = 200, description = "`results` ({kind, id, title, snippet, score}), `mode`, `degraded` and `degraded_reason` (as `GET /api/search`)"),
        (status = 400, description = "Empty, oversized or bad query", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 503, description = "No embeddings backend configured, or it is failing", body = ErrorBody),
    )
)]
pub async fn semantic_search(
    State(app): State<AppState>,
    caller: ApiCaller,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(mut f) = body.map_err(body_error)?;
    if f.get("mode").is_none_or(Value::is_null) {
        f.insert("mode".into(), json!("semantic"));
    }
    Ok(respond(&caller.run(&app, "search", f).await?))
}
