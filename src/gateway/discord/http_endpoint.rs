//! `POST /discord/interactions`: Discord's outgoing-webhook transport.
//! Every request is checked against the application's Ed25519 public key
//! (`X-Signature-Ed25519` over `X-Signature-Timestamp` + body) before
//! anything else looks at it; a bad or missing signature gets 401, and so
//! does a signed request whose timestamp is more than
//! `discord.interactions_max_age_s` from now (a replay). A PING
//! gets PONG; everything else goes through the same handler as the gateway
//! and is answered in the HTTP response (deferred work follows by REST).

use super::interactions::Outcome;
use crate::gateway::http::probe::json_error;
use crate::gateway::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serenity::model::application::Interaction;

/// Discord's PING interaction type.
const PING: u64 = 1;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The handler of `POST /discord/interactions`.
pub async fn interactions(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(discord) = app.discord.clone() else {
        return off();
    };
    let Some(verifier) = discord.verifier.as_ref() else {
        return off();
    };
    let (Some(signature), Some(timestamp)) = (
        header(&headers, "x-signature-ed25519"),
        header(&headers, "x-signature-timestamp"),
    ) else {
        return unsigned("missing signature headers");
    };
    if verifier.verify(signature, timestamp, &body).is_err() {
        return unsigned("invalid request signature");
    }
    if let Err(why) = fresh(timestamp, app.cfg.discord.interactions_max_age_s) {
        return unsigned(&why);
    }
    let interaction = match read_body(&body) {
        Ok(SignedBody::Ping) => return Json(serde_json::json!({ "type": 1 })).into_response(),
        Ok(SignedBody::Interaction(i)) => *i,
        Err(BodyError::NotJson(e)) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("bad JSON: {e}"),
            )
        }
        Err(BodyError::NotInteraction(e)) => {
            tracing::warn!(platform = "discord", error = %e, "unparseable interaction");
            return json_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("not an interaction: {e}"),
            );
        }
    };
    if let Some(app_id) = super::application_of(&interaction) {
        if discord.http.application_id().is_none() {
            discord.http.set_application_id(app_id);
        }
    }
    match discord.handler.handle(interaction).await {
        Outcome::Respond(r) => Json(r).into_response(),
        Outcome::Deferred {
            response,
            follow_up,
        } => {
            discord.spawn_follow_up(discord.http.clone(), follow_up);
            Json(response).into_response()
        }
        // Already told once in this window: no answer (Discord shows the
        // user alone that the interaction failed).
        Outcome::Silent => StatusCode::NO_CONTENT.into_response(),
    }
}

/// Checks that a signed request was signed within `max_age_s` of now (in
/// either direction): a replayed old request carries an old timestamp, and
/// the signature covers it.
fn fresh(timestamp: &str, max_age_s: u64) -> Result<(), String> {
    let Ok(signed) = timestamp.trim().parse::<i64>() else {
        return Err("X-Signature-Timestamp is not a Unix time in seconds".into());
    };
    let now = crate::clock::now_ms() / 1000;
    let skew = now.saturating_sub(signed);
    if skew.unsigned_abs() > max_age_s {
        let when = if skew > 0 { "old" } else { "in the future" };
        return Err(format!(
            "request timestamp is {} s {when} (discord.interactions_max_age_s = {max_age_s}); replayed or clock skewed",
            skew.unsigned_abs()
        ));
    }
    Ok(())
}

/// A signed request body, read.
#[derive(Debug)]
pub enum SignedBody {
    /// Discord's PING (endpoint validation): answered with PONG.
    Ping,
    /// Any other interaction, for the shared handler.
    Interaction(Box<Interaction>),
}

/// Why a signed body could not be read (each answered 400).
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Not JSON at all.
    #[error("bad JSON: {0}")]
    NotJson(serde_json::Error),
    /// JSON, but not an interaction serenity understands.
    #[error("not an interaction: {0}")]
    NotInteraction(serde_json::Error),
}

/// Reads a body whose signature was checked: PING is recognised before any
/// model parsing, so endpoint validation cannot fail on fields Discord adds
/// later; anything else must parse as an [`Interaction`].
pub fn read_body(body: &[u8]) -> Result<SignedBody, BodyError> {
    let raw: serde_json::Value = serde_json::from_slice(body).map_err(BodyError::NotJson)?;
    if raw.get("type").and_then(|t| t.as_u64()) == Some(PING) {
        return Ok(SignedBody::Ping);
    }
    serde_json::from_value(raw)
        .map(|i| SignedBody::Interaction(Box::new(i)))
        .map_err(BodyError::NotInteraction)
}

fn off() -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "Discord interactions are off: set SWARMBRIDGE_DISCORD_PUBLIC_KEY",
    )
}

fn unsigned(why: &str) -> Response {
    tracing::debug!(platform = "discord", why, "refused unsigned interaction");
    json_error(StatusCode::UNAUTHORIZED, "unauthorized", why)
}
