//! Front doors on the HTTP listener: the agent WebSocket (`/ws`) and the
//! HTTP endpoints. Each parses into the core's command model and renders
//! its replies; none touches the database directly.

pub mod api;
pub mod dashboard;
pub mod discord;
pub mod http;
pub mod rest;
pub mod twitch;
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
    let (api_routes, doc) = rest::router();
    let doc = rest::openapi_json(&doc);
    Router::new()
        .route("/ws", get(ws::upgrade))
        .route("/health", get(http::health))
        .route("/ready", get(http::ready))
        .route("/metrics", get(http::metrics))
        .route("/api/reason", post(api::reason))
        .route("/api/reason/stream", post(api::reason_stream))
        .route("/api/polls", post(api::poll_open))
        .route("/api/polls/{id}", get(api::poll_get))
        .route("/api/polls/{id}/vote", post(api::poll_vote))
        .route("/api/polls/{id}/close", post(api::poll_close))
        .route("/api/search", get(api::search))
        .route(
            "/api/openapi.json",
            get(move || {
                let body = doc.to_string();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        body,
                    )
                }
            }),
        )
        .merge(api_routes)
        .route("/", get(dashboard::index))
        .route("/dashboard/app.js", get(dashboard::script))
        .route("/dashboard/app.css", get(dashboard::style))
        .route("/dashboard/snapshot", get(dashboard::snapshot))
        .route("/dashboard/events", get(dashboard::events))
        .route(
            "/discord/interactions",
            post(discord::http_endpoint::interactions),
        )
        .fallback(http::not_found)
        .method_not_allowed_fallback(http::method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(state)
}
