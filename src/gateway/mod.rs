//! Front doors on the HTTP listener: the agent WebSocket (`/ws`) and the
//! HTTP endpoints. Each parses into the core's command model and renders
//! its replies; none touches the database directly.

pub mod api;
pub mod discord;
pub mod http;
pub mod ws;

use crate::config::Config;
use crate::core::Core;
use crate::limits::RateLimits;
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The coordination core.
    pub core: Arc<Core>,
    /// The loaded configuration.
    pub cfg: Arc<Config>,
    /// Per-caller rate limits.
    pub rate_limits: Arc<RateLimits>,
    /// Fired at shutdown: connections close with 1001.
    pub shutdown: CancellationToken,
    /// Open WebSocket sessions, waited for at shutdown.
    pub sessions: TaskTracker,
    /// The Discord front door (None when Discord is not configured).
    pub discord: Option<Arc<discord::Discord>>,
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let body_limit = state.cfg.server.max_body_bytes;
    Router::new()
        .route("/ws", get(ws::upgrade))
        .route("/health", get(http::health))
        .route("/ready", get(http::ready))
        .route("/api/reason", post(api::reason))
        .route("/api/reason/stream", post(api::reason_stream))
        .route(
            "/discord/interactions",
            post(discord::http_endpoint::interactions),
        )
        .fallback(http::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(state)
}
