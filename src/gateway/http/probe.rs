//! Plain HTTP endpoints: liveness, readiness, Prometheus metrics, and JSON errors.

use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// A JSON error body `{"error":{"code","message"}}` with a status.
pub fn json_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message.into() } })),
    )
        .into_response()
}

/// `GET /health`: 200 while the process runs.
pub async fn health() -> Response {
    Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") })).into_response()
}

/// `GET /ready`: 200 when the database answers, 503 (with a JSON error)
/// otherwise, or while writes fail for want of disk space or a lock
/// (`database`: `disk_full`, `locked`; a probe write on each call tells
/// when they work again). Either way the body also says how the chat platforms are
/// (`discord`, `twitch`: `off`, `down` or `up`) and why Twitch is down
/// (`twitch_error`, e.g. a refused login); they do not decide readiness.
pub async fn ready(State(app): State<AppState>) -> Response {
    let stats = app.dispatch.stats();
    let mut body = json!({
        "discord": stats.discord_link(),
        "twitch": stats.twitch_link(),
        "twitch_error": stats.twitch_problem(),
    });
    if app.core.database_ready().await {
        body["status"] = json!("ready");
        body["database"] = json!("ok");
        Json(body).into_response()
    } else {
        body["status"] = json!("unavailable");
        let (state, message) = match app.core.database_write_fault() {
            Some("disk_full") => (
                "disk_full",
                "the database's disk is full: writes are refused until space is freed",
            ),
            Some(_) => (
                "locked",
                "the database is locked by another process: writes are refused until it lets go",
            ),
            None => ("unreachable", "the database does not answer"),
        };
        body["database"] = json!(state);
        body["error"] = json!({ "code": "unavailable", "message": message });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// Anything else: 404 with a JSON body.
pub async fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// A known path with the wrong method: 405 with a JSON body.
pub async fn method_not_allowed() -> Response {
    json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "bad_request",
        "method not allowed on this endpoint",
    )
}

/// `GET /metrics`: Prometheus text format, no token (see `docs/dashboard.md`).
pub async fn metrics(State(app): State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::observe::render(&app.core, app.dispatch.stats()),
    )
        .into_response()
}
