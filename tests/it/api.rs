//! The JSON API under `/api`: auth, roles, filters, errors, body limit,
//! rate limits, the SSE event stream, per-agent statistics and the OpenAPI
//! document, spoken to with reqwest as an HTTP client would.

use crate::common::*;
use serde_json::{json, Value};
use swarmbridge::core::model::Role;

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn error_code(r: reqwest::Response, status: u16) -> String {
    assert_eq!(r.status(), status, "unexpected status");
    let body: Value = r.json().await.expect("error body is JSON");
    body["error"]["message"]
        .as_str()
        .expect("error has a message");
    body["error"]["code"]
        .as_str()
        .expect("error has a code")
        .to_string()
}

#[tokio::test]
async fn api_without_or_with_a_bad_token_is_401_json() {
    let srv = TestServer::spawn().await;
    let r = http().get(srv.url("/api/tasks")).send().await.unwrap();
    assert_eq!(error_code(r, 401).await, "unauthorized");
    let r = http()
        .get(srv.url("/api/status"))
        .bearer_auth("sbt_not_a_token")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 401).await, "unauthorized");
}

#[tokio::test]
async fn http_writes_follow_the_catalogs_roles_like_the_websocket() {
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("writer", Role::Agent, &[]).await;
    let r = http()
        .get(srv.url("/api/tasks"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // role agent: what the catalog opens to agents
    for (path, body, status) in [
        ("/api/tasks", json!({"title": "x"}), 201),
        ("/api/broadcast", json!({"text": "hi"}), 200),
        ("/api/messages", json!({"to": "writer", "text": "hi"}), 200),
    ] {
        let r = http()
            .post(srv.url(path))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{path}");
    }
    // role operator: refused to an agent, with the role it needs
    for (path, body) in [
        ("/api/tasks/1/assign", json!({"agent": "writer"})),
        (
            "/api/polls",
            json!({"question": "q?", "options": ["a", "b"], "duration_s": 60}),
        ),
    ] {
        let r = http()
            .post(srv.url(path))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(r, 403).await, "forbidden", "{path}");
    }
}

#[tokio::test]
async fn operator_creates_gets_and_filters_tasks() {
    let srv = TestServer::spawn().await;
    let op = srv.add_agent("op", Role::Operator, &[]).await;
    let mut ids = Vec::new();
    for title in ["first", "second"] {
        let r = http()
            .post(srv.url("/api/tasks"))
            .bearer_auth(&op)
            .json(&json!({"title": title, "priority": 2, "requires": ["rust"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["task"]["state"], "open");
        assert_eq!(v["task"]["created_by"], "op");
        ids.push(v["task"]["id"].as_i64().unwrap());
    }
    let mut worker = srv.agent("w", &["rust"]).await;
    let c = worker
        .ok(json!({"type": "task.claim", "task_id": ids[0]}), "task")
        .await;
    assert_eq!(c["task"]["state"], "claimed");

    let get = |q: &str| {
        let (url, op, q) = (srv.url(q), op.clone(), q.to_string());
        async move {
            let r = http().get(url).bearer_auth(op).send().await.unwrap();
            assert_eq!(r.status(), 200, "{q}");
            r.json::<Value>().await.unwrap()
        }
    };
    let all = get("/api/tasks").await;
    assert_eq!(all["tasks"].as_array().unwrap().len(), 2);
    let open = get("/api/tasks?state=open").await;
    assert_eq!(open["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(open["tasks"][0]["id"], ids[1]);
    let held = get("/api/tasks?assignee=w").await;
    assert_eq!(held["tasks"][0]["id"], ids[0]);
    let one = get("/api/tasks?limit=1").await;
    assert_eq!(one["tasks"].as_array().unwrap().len(), 1);
    let t = get(&format!("/api/tasks/{}", ids[1])).await;
    assert_eq!(t["task"]["title"], "second");

    for bad in [
        "/api/tasks?state=sleeping",
        "/api/tasks?limit=0",
        "/api/tasks?limit=x",
    ] {
        let r = http()
            .get(srv.url(bad))
            .bearer_auth(&op)
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(r, 400).await, "bad_request", "{bad}");
    }
    let r = http()
        .get(srv.url("/api/tasks/999"))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 404).await, "not_found");
    let r = http()
        .post(srv.url("/api/tasks"))
        .bearer_auth(&op)
        .json(&json!({"title": "  "}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 400).await, "bad_request");
}

#[tokio::test]
async fn cancel_follows_the_core_rules_creator_or_operator() {
    let srv = TestServer::spawn().await;
    let creator_token = srv.add_agent("creator", Role::Agent, &[]).await;
    let other_token = srv.add_agent("other", Role::Agent, &[]).await;
    let op = srv.add_agent("op", Role::Operator, &[]).await;
    let mut creator = Client::hello(&srv.ws_url(), &creator_token, json!({})).await;
    let a = creator.create_task(json!({"title": "mine"})).await;
    let b = creator.create_task(json!({"title": "also mine"})).await;
    let cancel = |id: &Value, token: &str| {
        http()
            .post(srv.url(&format!("/api/tasks/{id}/cancel")))
            .bearer_auth(token)
            .json(&json!({"reason": "no longer needed"}))
            .send()
    };
    let r = cancel(&a["id"], &other_token).await.unwrap();
    assert_eq!(error_code(r, 403).await, "forbidden");
    let r = cancel(&a["id"], &creator_token).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["task"]["state"], "cancelled");
    assert_eq!(v["task"]["error"], "no longer needed");
    // no body at all is fine too
    let r = http()
        .post(srv.url(&format!("/api/tasks/{}/cancel", b["id"])))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = cancel(&b["id"], &op).await.unwrap();
    assert_eq!(error_code(r, 409).await, "conflict");
    let e = creator.event("task.cancelled").await;
    assert_eq!(e["data"]["task"]["id"], a["id"]);
}

#[tokio::test]
async fn operator_assigns_a_task_and_the_agent_is_offered_it() {
    let srv = TestServer::spawn().await;
    let op = srv.add_agent("op", Role::Operator, &[]).await;
    let mut worker = srv.agent("worker", &[]).await;
    let r = http()
        .post(srv.url("/api/tasks"))
        .bearer_auth(&op)
        .json(&json!({"title": "for worker"}))
        .send()
        .await
        .unwrap();
    let id = r.json::<Value>().await.unwrap()["task"]["id"].clone();
    let r = http()
        .post(srv.url(&format!("/api/tasks/{id}/assign")))
        .bearer_auth(&op)
        .json(&json!({"agent": "worker"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["task"]["state"], "claimed");
    assert_eq!(v["task"]["assignee"], "worker");
    let offered = worker.event("task.offered").await;
    assert_eq!(offered["data"]["task"]["id"], id);
    let r = http()
        .post(srv.url(&format!("/api/tasks/{id}/assign")))
        .bearer_auth(&op)
        .json(&json!({"agent": "nobody"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 404).await, "not_found");
}

#[tokio::test]
async fn messages_and_broadcasts_reach_agents_over_websocket() {
    let srv = TestServer::spawn().await;
    let op = srv.add_agent("op", Role::Operator, &[]).await;
    let mut a = srv.agent("a", &[]).await;
    let r = http()
        .post(srv.url("/api/messages"))
        .bearer_auth(&op)
        .json(&json!({"to": "a", "text": "look at #1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m = a.event("message").await;
    assert_eq!(m["data"]["from"], "op");
    assert_eq!(m["data"]["text"], "look at #1");
    let r = http()
        .post(srv.url("/api/broadcast"))
        .bearer_auth(&op)
        .json(&json!({"text": "deploy at noon", "topic": "ops"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b = a.event("broadcast").await;
    assert_eq!(b["data"]["topic"], "ops");
    let r = http()
        .post(srv.url("/api/messages"))
        .bearer_auth(&op)
        .json(&json!({"to": "ghost", "text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 404).await, "not_found");
}

#[tokio::test]
async fn body_over_the_limit_is_413_with_a_json_error() {
    let srv = TestServer::spawn_with(|cfg| cfg.server.max_body_bytes = 1024).await;
    let op = srv.add_agent("op", Role::Operator, &[]).await;
    let r = http()
        .post(srv.url("/api/tasks"))
        .bearer_auth(&op)
        .json(&json!({"title": "x".repeat(4096)}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 413).await, "payload_too_large");
    // the existing mirror gets the same treatment
    let r = http()
        .post(srv.url("/api/reason"))
        .bearer_auth(&op)
        .json(&json!({"prompt": "x".repeat(4096), "mode": "simple"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 413).await, "payload_too_large");
    let r = http()
        .post(srv.url("/api/tasks"))
        .bearer_auth(&op)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 400).await, "bad_request");
}

#[tokio::test]
async fn http_rate_limit_answers_429_with_retry_after() {
    let srv = TestServer::spawn_with(one_broadcast_per_caller).await;
    let op = srv.add_agent("op", Role::Operator, &[]).await;
    let send = || {
        http()
            .post(srv.url("/api/broadcast"))
            .bearer_auth(&op)
            .json(&json!({"text": "hello"}))
            .send()
    };
    assert_eq!(send().await.unwrap().status(), 200);
    let r = send().await.unwrap();
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(error_code(r, 429).await, "rate_limited");
}

#[tokio::test]
async fn api_events_streams_task_created_with_seq_as_id() {
    let srv = TestServer::spawn().await;
    let op = srv.add_agent("op", Role::Operator, &[]).await;
    let r = http().get(srv.url("/api/events")).send().await.unwrap();
    assert_eq!(error_code(r, 401).await, "unauthorized");
    let mut events = SseStream::open(http().get(srv.url("/api/events")).bearer_auth(&op)).await;
    let r = http()
        .post(srv.url("/api/tasks"))
        .bearer_auth(&op)
        .json(&json!({"title": "watch me"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let ev = events.until("task.created").await;
    let frame = ev.json();
    assert_eq!(frame["type"], "event");
    assert_eq!(frame["kind"], "task.created");
    assert_eq!(frame["data"]["task"]["title"], "watch me");
    assert_eq!(ev.id.as_deref(), Some(frame["seq"].to_string().as_str()));
}

#[tokio::test]
async fn status_and_agents_show_presence_and_commands_per_platform() {
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("viewer", Role::Agent, &[]).await;
    let mut a = srv.agent("online-one", &[]).await;
    a.ok(json!({"type": "status"}), "status").await;
    let r = http()
        .get(srv.url("/api/agents"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let online: Vec<_> = v["agents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["online"] == true)
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(online, vec!["online-one".to_string()]);
    let r = http()
        .get(srv.url("/api/status"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let s: Value = r.json().await.unwrap();
    assert_eq!(s["agents_online"], 1);
    assert_eq!(s["platforms"]["discord"], "off");
    assert_eq!(s["platforms"]["reasoning"], "off");
    assert_eq!(s["platforms"]["ws_connections"], 1);
    let ws = s["commands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["platform"] == "ws")
        .unwrap();
    assert!(ws["served"].as_u64().unwrap() >= 1, "{s}");
}

#[tokio::test]
async fn agent_stats_count_claims_outcomes_and_survive_a_restart() {
    let mut srv = TestServer::spawn().await;
    let token = srv.add_agent("w", Role::Agent, &[]).await;
    let mut w = Client::hello(&srv.ws_url(), &token, json!({})).await;
    let t1 = w.create_task(json!({"title": "done quickly"})).await;
    let t2 = w.create_task(json!({"title": "left to expire"})).await;
    let t3 = w.create_task(json!({"title": "failed"})).await;
    w.ok(json!({"type": "task.claim", "task_id": t1["id"]}), "task")
        .await;
    w.ok(
        json!({"type": "task.complete", "task_id": t1["id"]}),
        "task",
    )
    .await;
    w.ok(
        json!({"type": "task.claim", "task_id": t2["id"], "lease_s": 1}),
        "task",
    )
    .await;
    let expired = w.event("task.expired").await;
    assert_eq!(expired["data"]["task"]["id"], t2["id"]);
    w.ok(json!({"type": "task.claim", "task_id": t3["id"]}), "task")
        .await;
    w.ok(
        json!({"type": "task.fail", "task_id": t3["id"], "error": "no", "retry": false}),
        "task",
    )
    .await;

    let stats = |srv: &TestServer| {
        let (url, token) = (srv.url("/api/agents/w/stats"), token.clone());
        async move {
            let r = http().get(url).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let before = stats(&srv).await;
    assert_eq!(before["agent"], "w");
    assert_eq!(before["claims"], 3);
    assert_eq!(before["completions"], 1);
    assert_eq!(before["expiries"], 1);
    assert_eq!(before["failures"], 1);
    assert_eq!(before["in_progress"], 0);
    assert_eq!(before["claim_to_done"]["samples"], 1);
    assert!(before["claim_to_done"]["p50_ms"].as_i64().unwrap() >= 0);
    assert!(before["claim_to_done"]["p95_ms"].as_i64().is_some());
    assert!(before["claim_to_done"]["mean_ms"].as_f64().is_some());

    drop(w);
    srv.restart().await;
    assert_eq!(stats(&srv).await, before);

    let r = http()
        .get(srv.url("/api/agents/ghost/stats"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 404).await, "not_found");
}

#[tokio::test]
async fn openapi_document_is_public_and_lists_the_endpoints() {
    let srv = TestServer::spawn().await;
    let r = http()
        .get(srv.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/tasks",
        "/api/tasks/{id}",
        "/api/tasks/{id}/cancel",
        "/api/tasks/{id}/assign",
        "/api/agents",
        "/api/agents/{name}/stats",
        "/api/messages",
        "/api/broadcast",
        "/api/status",
        "/api/events",
        "/api/reason",
        "/api/reason/stream",
        "/api/polls",
        "/api/polls/{id}",
        "/api/polls/{id}/vote",
        "/api/polls/{id}/close",
        "/api/search",
    ] {
        assert!(paths.contains_key(p), "missing {p}");
    }
    assert!(paths["/api/tasks"]["post"].is_object());
    assert!(doc["components"]["schemas"]["Task"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}
