//! The catalog's option limits (lengths, ranges, choices) hold for JSON
//! input over the WebSocket and HTTP as they do for chat input, with a
//! `bad_request` naming the field; and no limit the protocol documents
//! becomes stricter (text fields follow `limits.max_text_chars`, not the
//! catalog's Discord-sized `max_length`).

use crate::common::*;
use serde_json::{json, Value};
use swarmbridge::core::model::Role;

/// Posts `body` to `path` and returns the status and the JSON body.
async fn post(srv: &TestServer, token: &str, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(srv.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request sent");
    let status = r.status().as_u16();
    (status, r.json().await.expect("JSON body"))
}

/// Asserts an HTTP `bad_request` whose message names `field`.
fn assert_http_bad_field(status: u16, body: &Value, field: &str) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "bad_request", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("`{field}`")), "{body}");
}

/// Asserts a WebSocket `bad_request` whose message names `field`.
fn assert_ws_bad_field(frame: &Value, field: &str) {
    assert_eq!(frame["code"], "bad_request", "{frame}");
    let message = frame["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("`{field}`")), "{frame}");
}

#[tokio::test]
async fn a_value_longer_than_the_catalog_allows_is_refused_naming_the_field() {
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("sender", Role::Agent, &[]).await;
    let mut c = srv.agent("a", &[]).await;
    let long_name = "x".repeat(65);
    let v = c
        .err(
            json!({"type": "msg.send", "to": long_name, "text": "hi"}),
            "bad_request",
        )
        .await;
    assert_ws_bad_field(&v, "to");
    let (status, body) = post(
        &srv,
        &token,
        "/api/messages",
        json!({"to": long_name, "text": "hi"}),
    )
    .await;
    assert_http_bad_field(status, &body, "to");
}

#[tokio::test]
async fn a_number_outside_the_catalog_range_is_refused_naming_the_field() {
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("maker", Role::Agent, &[]).await;
    let mut c = srv.agent("a", &[]).await;
    let v = c
        .err(
            json!({"type": "task.create", "title": "t", "priority": 5000}),
            "bad_request",
        )
        .await;
    assert_ws_bad_field(&v, "priority");
    let (status, body) = post(
        &srv,
        &token,
        "/api/tasks",
        json!({"title": "t", "priority": 5000}),
    )
    .await;
    assert_http_bad_field(status, &body, "priority");
}

#[tokio::test]
async fn a_value_outside_the_catalog_choices_is_refused_naming_the_field() {
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("asker", Role::Agent, &[]).await;
    let mut c = srv.agent("a", &[]).await;
    let v = c
        .err(
            json!({"type": "reason", "prompt": "why?", "mode": "dreamy"}),
            "bad_request",
        )
        .await;
    assert_ws_bad_field(&v, "mode");
    let (status, body) = post(
        &srv,
        &token,
        "/api/reason",
        json!({"prompt": "why?", "mode": "dreamy"}),
    )
    .await;
    assert_http_bad_field(status, &body, "mode");
}

#[tokio::test]
async fn text_fields_keep_the_protocol_limit_not_the_catalogs_discord_limit() {
    // The catalog caps a Discord `title` at 256 characters; the protocol
    // allows limits.max_text_chars (4000).
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("maker", Role::Agent, &[]).await;
    let mut c = srv.agent("a", &[]).await;
    let title = "t".repeat(1000);
    let task = c.create_task(json!({"title": title})).await;
    assert_eq!(task["title"].as_str().map(str::len), Some(1000));
    let (status, body) = post(&srv, &token, "/api/tasks", json!({"title": title})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["task"]["title"].as_str().map(str::len), Some(1000));
    // Beyond max_text_chars the core refuses it, naming the field.
    let v = c
        .err(
            json!({"type": "task.create", "title": "t".repeat(4001)}),
            "bad_request",
        )
        .await;
    assert_ws_bad_field(&v, "title");
}

#[tokio::test]
async fn a_prompt_longer_than_discord_allows_is_not_refused_as_too_long() {
    // The catalog's 6000 is Discord's cap; agents get limits.max_prompt_chars
    // (8000). With no backend configured the prompt reaches the reasoner's
    // `unavailable`, so no length check refused it first.
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("asker", Role::Agent, &[]).await;
    let mut c = srv.agent("a", &[]).await;
    let prompt = "p".repeat(7000);
    c.err(
        json!({"type": "reason", "prompt": prompt, "mode": "simple"}),
        "unavailable",
    )
    .await;
    let (status, body) = post(
        &srv,
        &token,
        "/api/reason",
        json!({"prompt": prompt, "mode": "simple"}),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
}
