//! `/api/agents`, `/api/messages` and `/api/broadcast`: agents with
//! presence, their work record, direct messages and broadcasts.

use super::caller::{respond, ApiCaller, ApiError};
use super::openapi::{ErrorBody, OkReply};
use crate::core::model::{AgentStats, AgentView};
use crate::gateway::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// `{"agents": [...]}`
#[derive(Serialize, ToSchema)]
pub struct AgentsReply {
    /// Active agents by name, with presence.
    pub agents: Vec<AgentView>,
}

/// `POST /api/messages` (the `msg.send` fields).
#[derive(Debug, Deserialize, ToSchema)]
pub struct MessageBody {
    /// Agent name.
    pub to: String,
    /// The text.
    pub text: String,
}

/// `POST /api/broadcast` (the `broadcast` fields).
#[derive(Debug, Deserialize, ToSchema)]
pub struct BroadcastBody {
    /// The text.
    pub text: String,
    /// An optional topic.
    pub topic: Option<String>,
}

/// Every active agent with presence and current task (role viewer).
#[utoipa::path(
    get, path = "/api/agents", operation_id = "agents", tag = "agents",
    security(("bearer" = [])),
    responses((status = 200, description = "Agents by name", body = AgentsReply))
)]
pub async fn list_agents(
    State(app): State<AppState>,
    caller: ApiCaller,
) -> Result<Response, ApiError> {
    Ok(respond(&caller.run(&app, "agents", Map::new()).await?))
}

/// One agent's work record: claims, outcomes, time from claim to done
/// (any valid token; not a catalog command, counted against `requests`).
#[utoipa::path(
    get, path = "/api/agents/{name}/stats", tag = "agents",
    params(("name" = String, Path, description = "Agent name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Statistics (kept across restarts)", body = AgentStats),
        (status = 404, description = "No such agent", body = ErrorBody),
    )
)]
pub async fn agent_stats(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> Result<Json<AgentStats>, ApiError> {
    caller.check_rate(&app)?;
    Ok(Json(app.core.agent_stats(&name).await?))
}

/// Sends a direct message to an agent (role agent, rate class `msg.send`).
#[utoipa::path(
    post, path = "/api/messages", operation_id = "msg.send", tag = "messages", request_body = MessageBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Stored; delivered now or on reconnect", body = OkReply),
        (status = 404, description = "No such agent", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    )
)]
pub async fn send_message(
    State(app): State<AppState>,
    caller: ApiCaller,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let f = body.map(|Json(b)| b).map_err(super::caller::body_error)?;
    Ok(respond(&caller.run(&app, "msg.send", f).await?))
}

/// Sends a broadcast to every agent (role agent, rate class `broadcast`).
#[utoipa::path(
    post, path = "/api/broadcast", operation_id = "broadcast", tag = "messages", request_body = BroadcastBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Stored and fanned out", body = OkReply),
        (status = 429, description = "Rate limited", body = ErrorBody),
    )
)]
pub async fn broadcast(
    State(app): State<AppState>,
    caller: ApiCaller,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let f = body.map(|Json(b)| b).map_err(super::caller::body_error)?;
    Ok(respond(&caller.run(&app, "broadcast", f).await?))
}
