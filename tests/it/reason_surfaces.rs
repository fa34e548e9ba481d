//! Reasoning on the agent WebSocket and the HTTP mirrors, against a fake
//! OpenAI-compatible backend on loopback.

use crate::common::fake_openai::{FakeOpenAi, Reply};
use crate::common::*;
use serde_json::{json, Value};
use swarmbridge::core::model::Role;

async fn server_with_backend(fake: &FakeOpenAi) -> TestServer {
    let base = fake.base_url();
    TestServer::spawn_with(move |cfg| {
        cfg.reasoning.base_url = Some(base);
        cfg.reasoning.model = "fake-model".into();
        cfg.reasoning.backoff_base_ms = 10;
    })
    .await
}

#[tokio::test]
async fn reason_without_a_backend_is_unavailable_and_says_how_to_configure() {
    let srv = TestServer::spawn().await;
    let mut a = srv.agent("a", &[]).await;
    let e = a
        .request(json!({"type":"reason","prompt":"hi","mode":"simple"}))
        .await;
    assert_eq!(e["type"], "error");
    assert_eq!(e["code"], "unavailable");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("SWARMBRIDGE_REASONING_BASE_URL"),
        "{e}"
    );
}

#[tokio::test]
async fn reason_over_websocket_reports_confidence_from_logprobs() {
    let fake = FakeOpenAi::spawn(Reply::text_with_logprobs("42", &[-0.1, -0.2, -0.3])).await;
    let srv = server_with_backend(&fake).await;
    let mut a = srv.agent("a", &[]).await;
    let r = a
        .ok(
            json!({"type":"reason","prompt":"the answer?","mode":"analytical"}),
            "reason.result",
        )
        .await;
    assert_eq!(r["text"], "42");
    assert_eq!(r["mode"], "analytical");
    assert_eq!(r["cached"], false);
    assert_eq!(r["model"], "fake-model");
    let expected = ((-0.2f64).exp() * 1000.0).round() / 1000.0;
    assert_eq!(r["confidence"].as_f64(), Some(expected));
    // the same prompt again comes from the cache stored in the database
    let r2 = a
        .ok(
            json!({"type":"reason","prompt":"  The answer? ","mode":"analytical"}),
            "reason.result",
        )
        .await;
    assert_eq!(r2["cached"], true);
    assert_eq!(fake.calls(), 1);
}

#[tokio::test]
async fn streamed_reason_sends_ordered_deltas_then_the_result() {
    let fake = FakeOpenAi::spawn(Reply::stream(&["Hel", "lo ", "world"], None)).await;
    let srv = server_with_backend(&fake).await;
    let mut a = srv.agent("a", &[]).await;
    a.send(json!({"type":"reason","id":"s1","prompt":"greet","mode":"creative","stream":true}))
        .await;
    let mut text = String::new();
    loop {
        let f = a.recv().await;
        assert_eq!(f["re"], "s1", "{f}");
        match f["type"].as_str() {
            Some("reason.delta") => text.push_str(f["text"].as_str().unwrap()),
            Some("reason.result") => {
                assert_eq!(f["text"], "Hello world");
                assert_eq!(f["confidence"], Value::Null);
                break;
            }
            other => panic!("unexpected frame type {other:?}: {f}"),
        }
    }
    assert_eq!(text, "Hello world");
}

#[tokio::test]
async fn reason_rejects_an_unknown_mode_and_a_long_prompt() {
    let fake = FakeOpenAi::spawn(Reply::text("x")).await;
    let srv = server_with_backend(&fake).await;
    let mut a = srv.agent("a", &[]).await;
    let e = a
        .request(json!({"type":"reason","prompt":"x","mode":"poetic"}))
        .await;
    assert_eq!(e["code"], "bad_request", "{e}");
    let long = "x".repeat(8001);
    let e = a
        .request(json!({"type":"reason","prompt":long,"mode":"simple"}))
        .await;
    assert_eq!(e["code"], "bad_request", "{e}");
    assert_eq!(fake.calls(), 0);
}

#[tokio::test]
async fn http_reason_needs_a_token_and_answers_json() {
    let fake = FakeOpenAi::spawn(Reply::text("pong")).await;
    let srv = server_with_backend(&fake).await;
    let token = srv.add_agent("h", Role::Agent, &[]).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/reason", srv.http_url());
    let r = http
        .post(&url)
        .json(&json!({"prompt":"ping","mode":"simple"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let r = http
        .post(&url)
        .bearer_auth(&token)
        .json(&json!({"prompt":"ping","mode":"simple"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["text"], "pong");
    assert_eq!(body["cached"], false);
    let r = http
        .post(&url)
        .bearer_auth(&token)
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn http_reason_stream_sends_sse_deltas_then_a_result_event() {
    let fake = FakeOpenAi::spawn(Reply::stream(&["a", "b", "c"], Some(&[-0.5, -0.5, -0.5]))).await;
    let srv = server_with_backend(&fake).await;
    let token = srv.add_agent("h", Role::Agent, &[]).await;
    let r = reqwest::Client::new()
        .post(format!("{}/api/reason/stream", srv.http_url()))
        .bearer_auth(&token)
        .json(&json!({"prompt":"abc","mode":"technical"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let body = r.text().await.unwrap();
    let mut deltas = String::new();
    let mut result: Option<Value> = None;
    for block in body.split("\n\n") {
        let event = block
            .lines()
            .find_map(|l| l.strip_prefix("event:"))
            .map(str::trim);
        let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")) else {
            continue;
        };
        let v: Value = serde_json::from_str(data.trim()).unwrap();
        match event {
            None => deltas.push_str(v["text"].as_str().unwrap()),
            Some("result") => result = Some(v),
            Some(other) => panic!("unexpected event {other}: {v}"),
        }
    }
    assert_eq!(deltas, "abc");
    let result = result.expect("a result event");
    assert_eq!(result["text"], "abc");
    assert_eq!(result["confidence"].as_f64(), Some(0.607));
}

#[tokio::test]
async fn ai_reason_routes_answer_as_the_api_routes_do_and_are_documented() {
    let fake = FakeOpenAi::spawn(Reply::text("pong")).await;
    let srv = server_with_backend(&fake).await;
    let token = srv.add_agent("h", Role::Agent, &[]).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/ai/reason", srv.http_url()))
        .json(&json!({"prompt":"ping","mode":"simple"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(format!("{}/ai/reason", srv.http_url()))
        .bearer_auth(&token)
        .json(&json!({"prompt":"ping","mode":"simple"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["text"], "pong");
    let r = http
        .post(format!("{}/ai/reason/stream", srv.http_url()))
        .bearer_auth(&token)
        .json(&json!({"prompt":"ping again","mode":"simple"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = r.text().await.unwrap();
    assert!(text.contains("event: result"), "{text}");
    let doc: Value = http
        .get(format!("{}/api/openapi.json", srv.http_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for p in ["/ai/reason", "/ai/reason/stream"] {
        assert!(doc["paths"][p]["post"].is_object(), "missing {p}");
    }
}
