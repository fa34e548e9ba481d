//! The Agent Card at `/.well-known/agent-card.json`: who the swarm is to
//! an A2A client, where its JSON-RPC endpoint is, that it streams, that it
//! wants a bearer token, and its skills, one per task capability that a
//! registered agent offers (plus `task`, work that needs no capability).

use super::{A2A_VERSION, GENERAL_SKILL};
use crate::gateway::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// The `/a2a` URL as the client reached this server (its `Host`).
fn endpoint_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or("127.0.0.1:7878");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|p| *p == "https")
        .unwrap_or("http");
    format!("{scheme}://{host}/a2a")
}

/// One skill per capability in `capabilities`, after the general one.
pub fn skills(capabilities: &BTreeSet<String>) -> Vec<Value> {
    let mut skills = vec![json!({
        "id": GENERAL_SKILL,
        "name": "Any task",
        "description": "Hand the swarm a piece of work in plain text; the first line is its \
            title. Any agent may claim it. Progress notes arrive as status updates and the \
            result as an artifact.",
        "tags": ["task"],
        "examples": ["Summarise yesterday's failed builds"],
        "inputModes": ["text/plain", "application/json"],
        "outputModes": ["text/plain", "application/json"],
    })];
    for cap in capabilities {
        skills.push(json!({
            "id": cap,
            "name": cap,
            "description": format!(
                "Work for an agent with the `{cap}` capability: send the message with \
                 metadata {{\"skill\": \"{cap}\"}} and only such an agent claims it."
            ),
            "tags": [cap],
            "inputModes": ["text/plain", "application/json"],
            "outputModes": ["text/plain", "application/json"],
        }));
    }
    skills
}

/// The card for a client that reached the server at `url`.
pub fn agent_card(url: &str, capabilities: &BTreeSet<String>) -> Value {
    json!({
        "name": "swarmbridge",
        "description": "A swarm of agents coordinated by swarmbridge. A message becomes a task \
            that one of the swarm's agents claims under a lease; its progress notes stream as \
            status updates and its result arrives as an artifact.",
        "supportedInterfaces": [
            {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": A2A_VERSION}
        ],
        "version": env!("CARGO_PKG_VERSION"),
        "capabilities": {"streaming": true, "pushNotifications": false, "extendedAgentCard": false},
        "securitySchemes": {
            "bearer": {"httpAuthSecurityScheme": {
                "scheme": "Bearer",
                "description": "An agent token from `swarmbridge agent add NAME`",
            }}
        },
        "securityRequirements": [{"schemes": {"bearer": {"list": []}}}],
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["text/plain", "application/json"],
        "skills": skills(capabilities),
    })
}

/// `GET /.well-known/agent-card.json` (public, as the spec asks).
pub async fn serve_card(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let capabilities: BTreeSet<String> = match app.core.list_agents().await {
        Ok(agents) => agents
            .into_iter()
            .filter(|a| a.revoked_at.is_none())
            .flat_map(|a| a.capabilities)
            .collect(),
        Err(e) => return crate::gateway::http::caller::ApiError(e).into_response(),
    };
    Json(agent_card(&endpoint_url(&headers), &capabilities)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_card_has_a_skill_per_capability_streaming_and_bearer_auth() {
        let caps: BTreeSet<String> = ["rust".to_string(), "review".to_string()].into();
        let card = agent_card("http://h:1/a2a", &caps);
        let ids: Vec<&str> = card["skills"]
            .as_array()
            .expect("skills")
            .iter()
            .filter_map(|s| s["id"].as_str())
            .collect();
        assert_eq!(ids, [GENERAL_SKILL, "review", "rust"]);
        assert_eq!(card["capabilities"]["streaming"], true);
        assert_eq!(card["supportedInterfaces"][0]["protocolVersion"], "1.0");
        assert_eq!(
            card["securitySchemes"]["bearer"]["httpAuthSecurityScheme"]["scheme"],
            "Bearer"
        );
    }
}
