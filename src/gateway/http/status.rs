//! `GET /api/status`: the `status` command plus the front doors' state and
//! the commands counted per platform.

use super::caller::{ApiCaller, ApiError};
use crate::core::command::Reply;
use crate::core::error::CoreError;
use crate::core::model::StatusReport;
use crate::dispatch::PlatformCommands;
use crate::gateway::AppState;
use crate::reason::CircuitState;
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use serde_json::Map;
use utoipa::ToSchema;

/// The front doors and the reasoning backend, as the dashboard shows them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlatformsView {
    /// Open agent WebSocket connections.
    pub ws_connections: usize,
    /// Open event streams (`/api/events`, `/dashboard/events`).
    pub event_streams: usize,
    /// Discord's gateway link: `off` (not configured), `down` or `up`.
    pub discord: &'static str,
    /// Twitch chat: `off` (not configured), `down` or `up`.
    pub twitch: &'static str,
    /// Why Twitch is down (a refused login, a failed token refresh, the
    /// last connection error); null while up or off.
    pub twitch_error: Option<String>,
    /// `off` (not configured), `up` (circuit closed), `degraded` (half-open)
    /// or `down` (circuit open).
    pub reasoning: &'static str,
    /// The configured reasoning model.
    pub reasoning_model: String,
}

/// `GET /api/status`: the `status` reply plus the front doors.
#[derive(Serialize, ToSchema)]
pub struct StatusReply {
    /// Counts and uptime (the protocol's `status`).
    #[serde(flatten)]
    pub status: StatusReport,
    /// Front doors and the reasoning backend.
    pub platforms: PlatformsView,
    /// Commands served and refused per platform since start.
    pub commands: Vec<PlatformCommands>,
}

/// The platforms' state now.
pub fn platforms(app: &AppState) -> PlatformsView {
    let core = &app.core;
    let stats = app.dispatch.stats();
    let reasoning = if !core.reasoner.is_configured() {
        "off"
    } else {
        match core.reasoner.stats().circuit {
            CircuitState::Closed => "up",
            CircuitState::HalfOpen => "degraded",
            CircuitState::Open => "down",
        }
    };
    PlatformsView {
        ws_connections: core.bus.connections(),
        event_streams: stats.streams(),
        discord: stats.discord_link(),
        twitch: stats.twitch_link(),
        twitch_error: stats.twitch_problem(),
        reasoning,
        reasoning_model: core.reasoner.model().to_string(),
    }
}

/// Counts, uptime, front doors and commands per platform (role viewer).
#[utoipa::path(
    get, path = "/api/status", operation_id = "status", tag = "status",
    security(("bearer" = [])),
    responses((status = 200, description = "Status", body = StatusReply))
)]
pub async fn status(
    State(app): State<AppState>,
    caller: ApiCaller,
) -> Result<Json<StatusReply>, ApiError> {
    match caller.run(&app, "status", Map::new()).await? {
        Reply::Status(status) => Ok(Json(StatusReply {
            status,
            platforms: platforms(&app),
            commands: app.dispatch.stats().snapshot(),
        })),
        _ => Err(CoreError::Internal("unexpected reply".into()).into()),
    }
}
