//! `Authorization: Bearer <agent token>` for the front doors that speak a
//! standard protocol over HTTP (MCP, A2A): the caller on success, otherwise
//! 401 with a `WWW-Authenticate` challenge (RFC 6750) and the API's error
//! body, so a client learns how to authenticate.

use crate::core::error::CoreError;
use crate::core::model::{Caller, Platform};
use crate::gateway::http::caller::{status_for, ApiError};
use crate::gateway::AppState;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;

/// The `WWW-Authenticate` challenge of a refused request.
fn challenge(err: &CoreError, token_given: bool) -> HeaderValue {
    let value = if token_given {
        format!(
            "Bearer realm=\"swarmbridge\", error=\"invalid_token\", error_description=\"{}\"",
            err.to_string().replace('"', "'")
        )
    } else {
        "Bearer realm=\"swarmbridge\"".to_string()
    };
    HeaderValue::from_str(&value)
        .unwrap_or(HeaderValue::from_static("Bearer realm=\"swarmbridge\""))
}

/// A refusal as a response: the error body, with the challenge when it is a 401.
fn refused(err: CoreError, token_given: bool) -> Response {
    let unauthorized = status_for(&err) == StatusCode::UNAUTHORIZED;
    let challenge = challenge(&err, token_given);
    let mut resp = ApiError(err).into_response();
    if unauthorized {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
    }
    resp
}

/// The token of `Authorization: Bearer <token>` (scheme case as clients
/// send it), if the request carries one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// The refusal of a request that carries no bearer token.
fn no_token() -> CoreError {
    CoreError::Unauthorized("send an agent token as `Authorization: Bearer <token>`".into())
}

/// The agent named by `token`, as a caller on `platform`. Failed tokens
/// count against `peer`'s authentication budget
/// ([`crate::gateway::limits::authenticate`]), as on every front door.
async fn agent_caller(
    app: &AppState,
    peer: Option<IpAddr>,
    token: &str,
    platform: Platform,
) -> Result<Caller, CoreError> {
    let agent = crate::gateway::limits::authenticate(app, peer, token).await?;
    Ok(Caller {
        identity: agent.name,
        role: agent.role,
        capabilities: agent.capabilities,
        platform,
    })
}

/// The agent named by the request's bearer token, as a caller on
/// `platform`, for `/api`: a refusal is the API's error body.
pub async fn api_caller(
    app: &AppState,
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    platform: Platform,
) -> Result<Caller, CoreError> {
    let token = bearer_token(headers).ok_or_else(no_token)?;
    agent_caller(app, peer, token, platform).await
}

/// The agent named by the request's bearer token, as a caller on
/// `platform`; the response to send instead when there is none or it is
/// not valid, with the RFC 6750 challenge (MCP and A2A clients read it).
pub async fn bearer_caller(
    app: &AppState,
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    platform: Platform,
) -> Result<Caller, Response> {
    let Some(token) = bearer_token(headers) else {
        return Err(refused(no_token(), false));
    };
    agent_caller(app, peer, token, platform)
        .await
        .map_err(|e| refused(e, true))
}
