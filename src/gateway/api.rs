//! The JSON API under `/api` (bearer agent token). Errors are
//! `{"error":{"code","message"}}` with the matching HTTP status.

use super::http::json_error;
use super::AppState;
use crate::core::command::Command;
use crate::core::error::CoreError;
use crate::core::model::{Caller, Platform};
use crate::core::polls::NewPoll;
use crate::gateway::ws::frames;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use tokio::sync::mpsc;

/// A [`CoreError`] as an HTTP response.
pub struct ApiError(pub CoreError);

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        ApiError(e)
    }
}

/// The HTTP status for a protocol error code.
pub fn status_for(e: &CoreError) -> StatusCode {
    match e {
        CoreError::BadRequest(_) => StatusCode::BAD_REQUEST,
        CoreError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        CoreError::Forbidden(_) => StatusCode::FORBIDDEN,
        CoreError::NotFound(_) => StatusCode::NOT_FOUND,
        CoreError::Conflict(_) => StatusCode::CONFLICT,
        CoreError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        CoreError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        CoreError::Unavailable(_) | CoreError::StoreUnavailable { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        CoreError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = json_error(status_for(&self.0), self.0.code(), self.0.to_string());
        if let Some(ms) = self.0.retry_after_ms() {
            let secs = ms.div_ceil(1000).max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

/// Turns a JSON body rejection into a protocol error (413 stays 413).
pub fn body_error(rej: JsonRejection) -> ApiError {
    if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError(CoreError::PayloadTooLarge(
            "request body exceeds server.max_body_bytes".into(),
        ))
    } else {
        ApiError(CoreError::BadRequest(format!(
            "bad JSON body: {}",
            rej.body_text()
        )))
    }
}

/// The agent behind `Authorization: Bearer <token>`.
pub struct ApiCaller(pub Caller);

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                ApiError(CoreError::Unauthorized(
                    "send an agent token as `Authorization: Bearer <token>`".into(),
                ))
            })?;
        let agent = app.core.authenticate(token).await?;
        Ok(ApiCaller(Caller {
            identity: agent.name,
            role: agent.role,
            capabilities: agent.capabilities,
            platform: Platform::Http,
        }))
    }
}

impl ApiCaller {
    /// Applies the caller's rate limits for `command` (its catalog class).
    pub fn check_rate(&self, app: &AppState, command: &str) -> Result<(), ApiError> {
        let key = format!("http:{}", self.0.identity);
        app.rate_limits
            .check(&key, self.0.role, app.core.rate_class(command))
            .map_err(|l| {
                crate::observe::rate_limited(&app.core, Platform::Http, &l.class);
                ApiError(CoreError::RateLimited {
                    message: format!(
                        "rate limit for {} exceeded; retry in {} ms",
                        l.class, l.retry_after_ms
                    ),
                    retry_after_ms: l.retry_after_ms,
                })
            })
    }
}

impl ApiCaller {
    /// Runs `cmd` for the caller (rate limits, role check, core) and answers
    /// with the reply's fields as JSON, as the WebSocket frame would carry
    /// them without `type` and `re`.
    pub async fn run(self, app: &AppState, cmd: Command) -> Result<Response, ApiError> {
        self.check_rate(app, cmd.name())?;
        let reply = crate::observe::execute(&app.core, &self.0, cmd).await?;
        let body = match reply {
            crate::core::command::Reply::Ok => json!({ "ok": true }),
            other => frames::reply_body(&other).1,
        };
        Ok(Json(body).into_response())
    }
}

/// Turns a bad path segment (`/api/polls/abc`) into `bad_request`.
fn path_error(rej: PathRejection) -> ApiError {
    ApiError(CoreError::BadRequest(format!(
        "bad path: {}",
        rej.body_text()
    )))
}

/// `POST /api/polls` body: the `poll.open` fields.
#[derive(Debug, Deserialize)]
pub struct PollOpenBody {
    /// The question.
    pub question: String,
    /// 2 to 10 options.
    pub options: Vec<String>,
    /// Seconds until it closes by itself.
    pub duration_s: i64,
    /// `agents`, `discord`, `twitch` or `all` (default).
    #[serde(default)]
    pub voters: Option<String>,
}

/// `POST /api/polls/{id}/vote` body.
#[derive(Debug, Deserialize)]
pub struct PollVoteBody {
    /// 1-based option.
    pub option: i64,
}

/// `POST /api/polls` (operator): opens a poll; answers `{"poll": {...}}`.
pub async fn poll_open(
    State(app): State<AppState>,
    caller: ApiCaller,
    body: Result<Json<PollOpenBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body.map_err(body_error)?;
    let cmd = Command::PollOpen(NewPoll {
        question: b.question,
        options: b.options,
        duration_s: b.duration_s,
        voters: frames::parse_voters(b.voters.as_deref())?,
    });
    caller.run(&app, cmd).await
}

/// `POST /api/polls/{id}/vote`: votes as the token's agent; answers `{"ok": true}`.
pub async fn poll_vote(
    State(app): State<AppState>,
    caller: ApiCaller,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<PollVoteBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Path(poll_id) = id.map_err(path_error)?;
    let Json(b) = body.map_err(body_error)?;
    let cmd = Command::PollVote {
        poll_id,
        option: b.option,
    };
    caller.run(&app, cmd).await
}

/// `POST /api/polls/{id}/close` (operator): answers `{"poll": {...}}`.
pub async fn poll_close(
    State(app): State<AppState>,
    caller: ApiCaller,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(poll_id) = id.map_err(path_error)?;
    caller.run(&app, Command::PollClose { poll_id }).await
}

/// `GET /api/polls/{id}`: answers `{"poll": {...}}`.
pub async fn poll_get(
    State(app): State<AppState>,
    caller: ApiCaller,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(poll_id) = id.map_err(path_error)?;
    caller.run(&app, Command::PollGet { poll_id }).await
}

/// `GET /api/search` query string.
#[derive(Debug, Deserialize)]
pub struct SearchParams {
    /// The words to find.
    #[serde(default)]
    pub q: String,
    /// At most this many results (default 20, 1 to 100).
    #[serde(default)]
    pub limit: Option<i64>,
    /// Only tasks in this state.
    #[serde(default)]
    pub state: Option<String>,
    /// Only what this agent created, holds, sent or received.
    #[serde(default)]
    pub agent: Option<String>,
    /// Only items at or after this RFC 3339 time.
    #[serde(default)]
    pub since: Option<String>,
}

/// `GET /api/search?q=&limit=&state=&agent=&since=` (any role): answers
/// `{"results": [...], "mode": "fulltext"}`.
pub async fn search(
    State(app): State<AppState>,
    caller: ApiCaller,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(|rej| {
        ApiError(CoreError::BadRequest(format!(
            "bad query string: {}",
            rej.body_text()
        )))
    })?;
    let req = frames::search_request(
        p.q,
        p.limit,
        p.state.as_deref(),
        p.agent,
        p.since.as_deref(),
    )?;
    caller.run(&app, Command::Search(req)).await
}

/// `POST /api/reason` and `/api/reason/stream` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ReasonBody {
    /// The question.
    pub prompt: String,
    /// One of the five modes.
    pub mode: String,
    /// Accepted for symmetry with the WebSocket frame; `/api/reason` always
    /// answers JSON, `/api/reason/stream` always streams.
    #[serde(default)]
    pub stream: Option<bool>,
}

/// `POST /api/reason`: the `reason.result` fields as JSON.
#[utoipa::path(
    post, path = "/api/reason", tag = "reasoning", request_body = ReasonBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`text`, `mode`, `confidence`, `cached`, `model`"),
        (status = 503, description = "No backend, circuit open, or backend failing", body = super::rest::ErrorBody),
    )
)]
pub async fn reason(
    State(app): State<AppState>,
    caller: ApiCaller,
    body: Result<Json<ReasonBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(body_error)?;
    caller.check_rate(&app, "reason")?;
    let mode = app.core.check_reason(&caller.0, &body.prompt, &body.mode)?;
    let a = app.core.reason(&body.prompt, mode, None).await?;
    Ok(Json(json!({
        "text": a.text, "mode": a.mode, "confidence": a.confidence,
        "cached": a.cached, "model": a.model,
    }))
    .into_response())
}

/// `POST /api/reason/stream`: `text/event-stream` with one
/// `data: {"text": ...}` per delta, then `event: result` with the
/// `reason.result` fields (or `event: error` with `code` and `message`).
#[utoipa::path(
    post, path = "/api/reason/stream", tag = "reasoning", request_body = ReasonBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "text/event-stream: deltas, then `event: result`", content_type = "text/event-stream", body = String),
    )
)]
pub async fn reason_stream(
    State(app): State<AppState>,
    caller: ApiCaller,
    body: Result<Json<ReasonBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(body_error)?;
    caller.check_rate(&app, "reason")?;
    let mode = app.core.check_reason(&caller.0, &body.prompt, &body.mode)?;
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(64);
    let core = app.core.clone();
    tokio::spawn(async move {
        let (dtx, mut drx) = mpsc::channel::<String>(64);
        let fwd_tx = tx.clone();
        let forward = async move {
            while let Some(text) = drx.recv().await {
                let ev = Event::default().data(json!({ "text": text }).to_string());
                if fwd_tx.send(Ok(ev)).await.is_err() {
                    break;
                }
            }
        };
        let (res, ()) = tokio::join!(core.reason(&body.prompt, mode, Some(dtx)), forward);
        let ev = match res {
            Ok(a) => {
                let mut v: serde_json::Value =
                    serde_json::from_str(&frames::reason_result_frame(None, &a))
                        .unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.remove("type");
                    o.remove("re");
                }
                Event::default().event("result").data(v.to_string())
            }
            Err(e) => Event::default()
                .event("error")
                .data(json!({ "code": e.code(), "message": e.to_string() }).to_string()),
        };
        let _ = tx.send(Ok(ev)).await;
    });
    let stream = tokio_stream_from(rx);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Adapts a receiver to a `Stream` without another dependency.
fn tokio_stream_from<T: Send + 'static>(
    rx: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}
