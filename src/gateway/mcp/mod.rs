//! The MCP front door at `/mcp` (Streamable HTTP, served by the official
//! Rust SDK `rmcp`): the catalog's `mcp` commands as tools, the caller an
//! agent named by `Authorization: Bearer <token>` (401 with
//! `WWW-Authenticate` otherwise), every call through the dispatcher (the
//! same roles and rate limits as the WebSocket). Revisions 2025-06-18 and
//! 2025-11-25 (`initialize`) and 2026-07-28 (`server/discover`, stateless)
//! are answered; requests are served statelessly, so any instance answers
//! any request. `Host` and `Origin` are checked against `[mcp]`.

pub mod bridge;
pub mod config;
pub mod handler;
pub mod tools;

pub use config::McpConfig;

use crate::core::model::Platform;
use crate::gateway::bearer::bearer_caller;
use crate::gateway::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use std::sync::Arc;

/// The `/mcp` service, to be mounted with `nest_service`.
pub fn service(app: &AppState) -> axum::Router {
    let cfg = &app.cfg.mcp;
    let mut http = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_cancellation_token(app.shutdown.child_token())
        .with_max_request_body_bytes(app.cfg.server.max_body_bytes);
    http = if cfg.allowed_hosts.iter().any(|h| h == "*") {
        http.disable_allowed_hosts()
    } else {
        http.with_allowed_hosts(cfg.allowed_hosts.clone())
    };
    http = if cfg.allowed_origins.iter().any(|o| o == "*") {
        http.disable_allowed_origins()
    } else {
        http.with_allowed_origins(cfg.allowed_origins.clone())
            .enforce_origin_validation()
    };
    let tools_app = app.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(handler::SwarmTools::new(tools_app.clone())),
        Arc::new(NeverSessionManager::default()),
        http,
    );
    axum::Router::new()
        .fallback_service(mcp)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            check_body,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            require_agent,
        ))
}

/// Lets a request through only with a valid agent token, and puts the
/// agent (as a [`crate::core::model::Caller`] on the MCP platform) on the request for the
/// tool handler.
pub async fn require_agent(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    match bearer_caller(&app, req.headers(), Platform::Mcp).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(refusal) => refusal,
    }
}

/// A JSON-RPC error object with no request id (the request could not be
/// read), answered with `status`.
fn json_rpc_refusal(status: StatusCode, code: i64, message: String) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {"code": code, "message": message},
    });
    (status, axum::Json(body)).into_response()
}

/// Reads a POST body before rmcp sees it: over `server.max_body_bytes` it
/// gets 413, and a body that is not JSON gets the JSON-RPC parse error
/// (-32700, HTTP 400), each saying what was wrong; nothing is executed.
pub async fn check_body(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let limit = app.cfg.server.max_body_bytes;
    let too_large = || {
        json_rpc_refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            -32600,
            format!("request body exceeds server.max_body_bytes ({limit} bytes)"),
        )
    };
    let declared_length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_length.is_some_and(|len| len > limit as u64) {
        return too_large();
    }
    let (parts, body) = req.into_parts();
    let mut chunks = body.into_data_stream();
    let mut collected = Vec::new();
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(bytes) if collected.len() + bytes.len() > limit => return too_large(),
            Ok(bytes) => collected.extend_from_slice(&bytes),
            Err(e) => {
                return json_rpc_refusal(
                    StatusCode::BAD_REQUEST,
                    -32700,
                    format!("Parse error: the request body could not be read: {e}"),
                )
            }
        }
    }
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&collected) {
        return json_rpc_refusal(
            StatusCode::BAD_REQUEST,
            -32700,
            format!("Parse error: the request body is not JSON: {e}"),
        );
    }
    next.run(Request::from_parts(parts, Body::from(collected)))
        .await
}
