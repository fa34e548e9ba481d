//! What every `/api` handler shares: the bearer-token caller, errors as
//! JSON with the matching status, and the one way a request runs (parse the
//! command's fields with [`crate::dispatch::parse`], then dispatch).

use super::probe::json_error;
use crate::core::command::Reply;
use crate::core::error::CoreError;
use crate::core::model::{Caller, Platform};
use crate::dispatch::parse;
use crate::gateway::ws::frames;
use crate::gateway::AppState;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

/// A [`CoreError`] as an HTTP response: `{"error":{"code","message"}}`.
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

/// The JSON object of a body; a missing body (no content type) is an empty one.
pub fn body_fields(
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Map<String, Value>, ApiError> {
    match body {
        Ok(Json(map)) => Ok(map),
        Err(JsonRejection::MissingJsonContentType(_)) => Ok(Map::new()),
        Err(e) => Err(body_error(e)),
    }
}

/// The parameters of a query string; `bad_request` naming what is wrong.
pub fn query_params<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(p)| p).map_err(|rej| {
        ApiError(CoreError::BadRequest(format!(
            "bad query string: {}",
            rej.body_text()
        )))
    })
}

/// The id in a path such as `/api/tasks/{id}`; `bad_request` when it is not a number.
pub fn path_id(p: Result<Path<i64>, PathRejection>) -> Result<i64, ApiError> {
    p.map(|Path(id)| id)
        .map_err(|e| CoreError::bad_request(format!("bad path: {}", e.body_text())).into())
}

/// The agent behind `Authorization: Bearer <token>`.
pub struct ApiCaller(pub Caller);

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let peer = crate::gateway::limits::peer_of(&parts.extensions);
        let caller =
            crate::gateway::bearer::api_caller(app, peer, &parts.headers, Platform::Http).await?;
        Ok(ApiCaller(caller))
    }
}

impl ApiCaller {
    /// Parses command `name` from `fields` (body and path parameters) and
    /// runs it through the dispatcher: the catalog's platform, rate class
    /// and role rules, the same as on the WebSocket.
    pub async fn run(
        &self,
        app: &AppState,
        name: &str,
        fields: Map<String, Value>,
    ) -> Result<Reply, ApiError> {
        let cmd = parse::command_in(&app.dispatch.core().catalog, name, fields)?;
        Ok(app.dispatch.dispatch(&self.0, cmd).await?)
    }

    /// Counts a read that is not a catalog command (event stream, agent
    /// statistics) against the caller's `requests` limit.
    pub fn check_rate(&self, app: &AppState) -> Result<(), ApiError> {
        Ok(app
            .dispatch
            .check_rate_class(&self.0, crate::limits::REQUESTS)?)
    }
}

/// A reply as its JSON body: the WebSocket frame's fields without `type`
/// and `re`; `{"ok": true}` for replies without content.
pub fn reply_json(reply: &Reply) -> Value {
    match reply {
        Reply::Ok | Reply::Voted(_) => json!({ "ok": true }),
        other => frames::reply_body(other).1,
    }
}

/// Answers with a reply's JSON body.
pub fn respond(reply: &Reply) -> Response {
    Json(reply_json(reply)).into_response()
}

/// Builds a field map from (name, value) pairs, leaving out nulls.
pub fn fields<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}
