//! `GET /api/insights`, `GET /api/alerts` and `POST /api/recommend`: the
//! `insights`, `alerts` and `recommend` commands over HTTP
//! (docs/insights.md).

use super::caller::{body_fields, fields, query_params, respond, ApiCaller, ApiError};
use super::openapi::ErrorBody;
use crate::core::alerts::Alert;
use crate::core::insights::Insights;
use crate::gateway::AppState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::{IntoParams, ToSchema};

/// `GET /api/insights` query string.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InsightsParams {
    /// Only this agent's record (`not_found` for an unknown agent).
    pub agent: Option<String>,
}

/// `{"insights": {...}}`
#[derive(Serialize, ToSchema)]
pub struct InsightsReply {
    /// The analysis.
    pub insights: Insights,
}

/// `{"alerts": [...]}`
#[derive(Serialize, ToSchema)]
pub struct AlertsReply {
    /// Active alerts, oldest first.
    pub alerts: Vec<Alert>,
}

/// `POST /api/recommend` body (may be empty).
#[derive(Debug, Deserialize, ToSchema)]
pub struct RecommendBody {
    /// What the operator wants advice on (at most 500 characters).
    pub question: Option<String>,
}

/// Success rates, durations, queue waits and trends (role viewer).
#[utoipa::path(
    get, path = "/api/insights", operation_id = "insights", tag = "insights",
    params(InsightsParams), security(("bearer" = [])),
    responses(
        (status = 200, description = "The analysis", body = InsightsReply),
        (status = 404, description = "Unknown agent", body = ErrorBody),
    )
)]
pub async fn insights(
    State(app): State<AppState>,
    caller: ApiCaller,
    params: Result<Query<InsightsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let p = query_params(params)?;
    let f = fields([("agent", json!(p.agent))]);
    Ok(respond(&caller.run(&app, "insights", f).await?))
}

/// The active bottleneck alerts (role agent).
#[utoipa::path(
    get, path = "/api/alerts", operation_id = "alerts", tag = "insights",
    security(("bearer" = [])),
    responses((status = 200, description = "Active alerts", body = AlertsReply))
)]
pub async fn alerts(State(app): State<AppState>, caller: ApiCaller) -> Result<Response, ApiError> {
    Ok(respond(&caller.run(&app, "alerts", Map::new()).await?))
}

/// Advice from the reasoning engine in strategic mode on the insights and
/// active alerts (role operator): the `reason.result` fields.
#[utoipa::path(
    post, path = "/api/recommend", operation_id = "recommend", tag = "insights",
    request_body = RecommendBody, security(("bearer" = [])),
    responses(
        (status = 200, description = "`text`, `mode` (strategic), `confidence`, `cached`, `model`"),
        (status = 503, description = "No reasoning backend, circuit open, or backend failing", body = ErrorBody),
    )
)]
pub async fn recommend(
    State(app): State<AppState>,
    caller: ApiCaller,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let f = body_fields(body)?;
    Ok(respond(&caller.run(&app, "recommend", f).await?))
}
