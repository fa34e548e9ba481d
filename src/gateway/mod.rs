//! The front doors: the agent WebSocket (`/ws`), the HTTP API, the
//! dashboard, MCP (`/mcp`) and A2A (`/a2a`) on the HTTP listener, Discord and Twitch beside them. Each
//! parses its input into the core's [`Command`](crate::core::command::Command),
//! hands it to the [`Dispatcher`] and renders the reply. Reads that are not
//! commands (the dashboard's snapshot, autocomplete, presence) call the
//! core's read methods; no front door runs SQL.

pub mod a2a;
pub mod bearer;
pub mod dashboard;
pub mod discord;
pub mod http;
pub mod limits;
pub mod listener;
pub mod mcp;
pub mod twitch;
pub mod ws;

use crate::config::Config;
use crate::core::Core;
use crate::dispatch::Dispatcher;
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
    /// The one path commands take (rate limits, roles, metrics).
    pub dispatch: Arc<Dispatcher>,
    /// Fired at shutdown: connections close with 1001.
    pub shutdown: CancellationToken,
    /// Open WebSocket sessions, waited for at shutdown.
    pub sessions: TaskTracker,
    /// The Discord front door (None when Discord is not configured).
    pub discord: Option<Arc<discord::Discord>>,
    /// Failed authentications per client address (`server.auth_failures`).
    pub auth_failures: Arc<limits::AuthFailures>,
    /// Permits for replay page reads (`events.replay_reads`): catching-up
    /// connections take turns, so live requests still get a read connection.
    pub replay_reads: Arc<tokio::sync::Semaphore>,
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let body_limit = state.cfg.server.max_body_bytes;
    let body_timeout = std::time::Duration::from_secs(state.cfg.server.body_timeout_s);
    let (api_routes, doc) = http::api_router();
    let doc = http::openapi::openapi_json(&doc);
    Router::new()
        .route("/ws", get(ws::upgrade))
        .route("/health", get(http::probe::health))
        .route("/ready", get(http::probe::ready))
        .route("/metrics", get(http::probe::metrics))
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
        .nest_service("/mcp", mcp::service(&state))
        .merge(a2a::routes())
        .route("/", get(dashboard::index))
        .route("/dashboard/app.js", get(dashboard::script))
        .route("/dashboard/app.css", get(dashboard::style))
        .route("/dashboard/snapshot", get(dashboard::snapshot))
        .route("/dashboard/events", get(dashboard::events))
        .route(
            "/discord/interactions",
            post(discord::http_endpoint::interactions),
        )
        .fallback(http::probe::not_found)
        .method_not_allowed_fallback(http::probe::method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            body_timeout,
        ))
        .with_state(state)
}

#[cfg(test)]
mod catalog_walk;
