//! The MCP front door at `/mcp`, driven by the official Python `mcp`
//! client (2.x) in both the handshake (`legacy`) and the stateless
//! `2026-07-28` modes, and by raw HTTP for auth, `Host`/`Origin` and bad
//! JSON-RPC. The Python tests say they were skipped when python3 or the
//! package is missing (`.ci/run` installs it).

use crate::common::*;
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::{Duration, Instant};
use swarmbridge::core::model::Role;

/// The Python script that plays the MCP agent.
fn agent_script() -> String {
    format!("{}/tests/clients/mcp_agent.py", env!("CARGO_MANIFEST_DIR"))
}

/// Whether python3 with the `mcp` package (2.x) is here; says why not.
async fn python_mcp_available() -> bool {
    let probe = tokio::process::Command::new("python3")
        .args(["-c", "import mcp, httpx2; from mcp import Client"])
        .output()
        .await;
    match probe {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            eprintln!(
                "SKIPPED: the Python `mcp` package (2.x) is missing (pip install \"mcp>=2\"): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!("SKIPPED: python3 is not available: {e}");
            false
        }
    }
}

/// Runs the script and returns its JSON output.
fn run_script(args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new("python3")
        .arg(agent_script())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 starts")
}

async fn script_output(child: tokio::process::Child, within: Duration) -> Value {
    let out = tokio::time::timeout(within, child.wait_with_output())
        .await
        .expect("the MCP client finished in time")
        .expect("the MCP client ran");
    assert!(
        out.status.success(),
        "the MCP client failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the MCP client printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Checks what the `work` scenario saw, and what the swarm saw of it.
async fn assert_work_done(out: &Value, task_id: i64, op: &mut Client, peer: &mut Client) {
    let tools: Vec<&str> = out["tools"]
        .as_array()
        .expect("tool names")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for want in ["status", "task_claim", "task_progress", "task_done", "msg"] {
        assert!(tools.contains(&want), "{want} not in {tools:?}");
    }
    assert!(
        !tools.contains(&"task_assign"),
        "not an mcp command: {tools:?}"
    );
    assert_eq!(out["claim_schema"]["properties"]["wait_s"]["maximum"], 25);
    assert_eq!(out["claim"]["is_error"], false, "{out}");
    assert_eq!(out["claim"]["body"]["task"]["id"], task_id, "{out}");
    assert_eq!(out["claim"]["body"]["task"]["state"], "claimed");
    assert_eq!(out["progress"]["is_error"], false, "{out}");
    assert_eq!(out["done"]["is_error"], false, "{out}");
    assert_eq!(out["msg"]["is_error"], false, "{out}");
    assert_eq!(out["refused_schema"]["is_error"], true);
    assert_eq!(
        out["refused_schema"]["body"]["error"]["code"],
        "bad_request"
    );
    let why = out["refused_schema"]["body"]["error"]["message"]
        .as_str()
        .unwrap_or("");
    assert!(why.contains("task_id must be a whole number"), "{why}");
    assert_eq!(out["refused_role"]["is_error"], true);
    assert_eq!(out["refused_role"]["body"]["error"]["code"], "not_found");
    let unknown = out["unknown_tool"].as_str().unwrap_or("");
    assert!(unknown.contains("unknown tool"), "{unknown}");
    assert_eq!(out["status"]["is_error"], false);

    // `task.progress` emits no event (docs/protocol.md, "Tasks"): the note
    // is kept on the task object, which `task.completed` carries.
    let done = op.event("task.completed").await;
    assert_eq!(done["data"]["task"]["id"], task_id, "{done}");
    assert_eq!(done["data"]["task"]["progress"], "halfway", "{done}");
    assert_eq!(done["data"]["task"]["result"], "all green", "{done}");
    let m = peer.event("message").await;
    assert_eq!(m["data"]["text"], "hello from mcp");
}

async fn work_in_mode(mode: &str) {
    if !python_mcp_available().await {
        return;
    }
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("mcp-worker", Role::Agent, &["rust"]).await;
    let mut op = srv.operator("op").await;
    let mut peer = srv.agent("peer", &[]).await;
    let task = op
        .create_task(json!({"title": "port the parser", "requires": ["rust"]}))
        .await;
    let task_id = task["id"].as_i64().expect("task id");
    let url = format!("{}/mcp", srv.http_url());
    let child = run_script(&["work", &url, &token, mode, "peer"]);
    let out = script_output(child, Duration::from_secs(60)).await;
    assert_work_done(&out, task_id, &mut op, &mut peer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_mcp_client_claims_reports_completes_and_messages() {
    work_in_mode("legacy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2026_07_28_mcp_client_claims_reports_completes_and_messages() {
    work_in_mode("2026-07-28").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_with_wait_s_gets_the_task_created_while_it_waits() {
    if !python_mcp_available().await {
        return;
    }
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("waiter", Role::Agent, &[]).await;
    let mut op = srv.operator("op").await;
    let url = format!("{}/mcp", srv.http_url());
    let child = run_script(&["wait", &url, &token, "2026-07-28", "25"]);
    // The claim is in flight once the MCP platform has served a command.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, status) = http_api::get(&srv.http_url(), "/api/status", Some(&token)).await;
        let served = status["commands"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["platform"] == "mcp"))
            .and_then(|p| p["served"].as_i64())
            .unwrap_or(0);
        if served > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the claim never arrived: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Timed from here: the Python start-up before the claim is not the wait.
    let in_flight = Instant::now();
    let task = op.create_task(json!({"title": "late work"})).await;
    let out = script_output(child, Duration::from_secs(40)).await;
    assert_eq!(out["is_error"], false, "{out}");
    assert_eq!(out["body"]["task"]["id"], task["id"], "{out}");
    assert!(
        in_flight.elapsed() < Duration::from_secs(20),
        "it waited out the whole 25 s instead of taking the new task"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_with_nothing_to_do_answers_no_task_after_the_wait() {
    if !python_mcp_available().await {
        return;
    }
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("idle", Role::Agent, &[]).await;
    let url = format!("{}/mcp", srv.http_url());
    let started = Instant::now();
    let out = script_output(
        run_script(&["wait", &url, &token, "legacy", "1"]),
        Duration::from_secs(30),
    )
    .await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(out["is_error"], false, "{out}");
    assert_eq!(out["body"]["task"], Value::Null, "{out}");
    assert!(
        out["text"][0].as_str().unwrap_or("").contains("no task"),
        "{out}"
    );
}

/// A JSON-RPC POST to `/mcp` as a legacy client sends it.
fn mcp_post(srv: &TestServer, token: Option<&str>, body: String) -> reqwest::RequestBuilder {
    let mut req = reqwest::Client::new()
        .post(format!("{}/mcp", srv.http_url()))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req
}

fn initialize() -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}})
    .to_string()
}

#[tokio::test]
async fn mcp_without_a_token_or_with_a_bad_one_gets_401_and_a_bearer_challenge() {
    let srv = TestServer::spawn().await;
    let r = mcp_post(&srv, None, initialize())
        .send()
        .await
        .expect("reply");
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().expect("ascii");
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    let r = mcp_post(&srv, Some("not-a-token"), initialize())
        .send()
        .await
        .expect("reply");
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().expect("ascii");
    assert!(challenge.contains("invalid_token"), "{challenge}");
    let token = srv.add_agent("ok", Role::Agent, &[]).await;
    let r = mcp_post(&srv, Some(&token), initialize())
        .send()
        .await
        .expect("reply");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["result"]["serverInfo"]["name"], "swarmbridge", "{v}");
    assert_eq!(v["result"]["protocolVersion"], "2025-06-18", "{v}");
}

#[tokio::test]
async fn mcp_refuses_a_foreign_host_or_origin_and_serves_loopback() {
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("ok", Role::Agent, &[]).await;
    let r = mcp_post(&srv, Some(&token), initialize())
        .header("host", "evil.example")
        .send()
        .await
        .expect("reply");
    assert_eq!(r.status(), 403, "a rebinding Host must be refused");
    let r = mcp_post(&srv, Some(&token), initialize())
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("reply");
    assert_eq!(r.status(), 403, "a foreign Origin must be refused");
    let r = mcp_post(&srv, Some(&token), initialize())
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .expect("reply");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn malformed_json_rpc_gets_a_parse_error_and_the_server_keeps_serving() {
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("ok", Role::Agent, &[]).await;
    let r = mcp_post(
        &srv,
        Some(&token),
        "{\"jsonrpc\": \"2.0\", \"id\": 1,".into(),
    )
    .send()
    .await
    .expect("reply");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    assert!((400..500).contains(&status), "{status} {text}");
    assert!(
        text.contains("-32700") || text.to_lowercase().contains("parse"),
        "{status} {text}"
    );
    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\",\"params\":{{\"pad\":\"{}\"}}}}",
        "x".repeat(srv.cfg.server.max_body_bytes + 1)
    );
    let r = mcp_post(&srv, Some(&token), big)
        .send()
        .await
        .expect("reply");
    assert_eq!(r.status(), 413);
    let r = mcp_post(&srv, Some(&token), initialize())
        .send()
        .await
        .expect("reply");
    assert_eq!(r.status(), 200, "still serving");
}

async fn bridged_work_in_mode(mode: &str) {
    if !python_mcp_available().await {
        return;
    }
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("mcp-worker", Role::Agent, &[]).await;
    let mut op = srv.operator("op").await;
    let mut peer = srv.agent("peer", &[]).await;
    let task = op.create_task(json!({"title": "bridged work"})).await;
    let task_id = task["id"].as_i64().expect("task id");
    let child = run_script(&[
        "stdio",
        env!("CARGO_BIN_EXE_swarmbridge"),
        &token,
        mode,
        &srv.http_url(),
    ]);
    let out = script_output(child, Duration::from_secs(60)).await;
    assert_work_done(&out, task_id, &mut op, &mut peer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stdio_bridge_serves_a_legacy_client_from_a_running_server() {
    bridged_work_in_mode("legacy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stdio_bridge_serves_a_2026_07_28_client_from_a_running_server() {
    bridged_work_in_mode("2026-07-28").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_client_reads_its_messages_from_the_inbox_once() {
    if !python_mcp_available().await {
        return;
    }
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("reader", Role::Agent, &[]).await;
    let mut peer = srv.agent("peer", &[]).await;
    peer.ok(
        json!({"type": "msg.send", "to": "reader", "text": "the build is green"}),
        "ok",
    )
    .await;
    peer.ok(
        json!({"type": "broadcast", "text": "deploy at noon", "topic": "ops"}),
        "ok",
    )
    .await;
    let url = format!("{}/mcp", srv.http_url());
    let out = script_output(
        run_script(&["inbox", &url, &token, "2026-07-28"]),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out["first"]["is_error"], false, "{out}");
    let messages = out["first"]["body"]["messages"]
        .as_array()
        .expect("messages");
    assert_eq!(messages.len(), 2, "{out}");
    assert_eq!(messages[0]["kind"], "message");
    assert_eq!(messages[0]["from"], "peer");
    assert_eq!(messages[0]["text"], "the build is green");
    assert_eq!(messages[1]["kind"], "broadcast");
    assert_eq!(messages[1]["topic"], "ops");
    assert_eq!(out["first"]["body"]["next"], messages[1]["seq"], "{out}");
    assert_eq!(
        out["second"]["body"]["messages"],
        json!([]),
        "read once: {out}"
    );
}

/// Sends one JSON-RPC request to `/mcp` as a legacy client and returns status and body.
async fn mcp_call(srv: &TestServer, token: &str, body: Value) -> (u16, Value) {
    let r = mcp_post(srv, Some(token), body.to_string())
        .send()
        .await
        .expect("reply");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn an_unsupported_mcp_protocol_version_is_answered_as_the_spec_says() {
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("ok", Role::Agent, &[]).await;
    // `initialize` with a version the server does not know: the server
    // answers with one it supports, and the client decides.
    let r = reqwest::Client::new()
        .post(format!("{}/mcp", srv.http_url()))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "1999-01-01", "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"}}})
            .to_string(),
        )
        .send()
        .await
        .expect("reply");
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "{v}");
    let offered = v["result"]["protocolVersion"].as_str().unwrap_or("");
    assert!(
        ["2025-06-18", "2025-11-25", "2026-07-28"].contains(&offered),
        "{v}"
    );
    // A request whose MCP-Protocol-Version header names an unknown
    // revision is refused with 400.
    let r = reqwest::Client::new()
        .post(format!("{}/mcp", srv.http_url()))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "1999-01-01")
        .body(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string())
        .send()
        .await
        .expect("reply");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("1999-01-01") || text.to_lowercase().contains("version"),
        "{text}"
    );
}

#[tokio::test]
async fn bad_mcp_requests_get_json_rpc_error_objects_and_nothing_runs() {
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("ok", Role::Agent, &[]).await;
    let call = |name: &str, args: Value| {
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
               "params": {"name": name, "arguments": args}})
    };
    // an unknown method
    let (_, v) = mcp_call(
        &srv,
        &token,
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/nope"}),
    )
    .await;
    assert_eq!(v["error"]["code"], -32601, "{v}");
    // JSON that is not a JSON-RPC request
    let (status, v) = mcp_call(&srv, &token, json!({"hello": "world"})).await;
    assert!(
        (400..500).contains(&status) || v["error"].is_object(),
        "{status} {v}"
    );
    // an unknown tool
    let (_, v) = mcp_call(&srv, &token, call("no_such_tool", json!({}))).await;
    assert_eq!(v["error"]["code"], -32602, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("unknown tool"),
        "{v}"
    );
    // arguments that break the schema: a tool error saying what was wrong
    let (_, v) = mcp_call(
        &srv,
        &token,
        call("task_create", json!({"title": "t", "priority": "high"})),
    )
    .await;
    assert_eq!(v["result"]["isError"], true, "{v}");
    let why = v["result"]["content"][0]["text"].as_str().unwrap_or("");
    assert!(why.contains("priority"), "{v}");
    let (_, v) = mcp_call(&srv, &token, call("inbox", json!({"limit": 1000}))).await;
    assert_eq!(v["result"]["isError"], true, "{v}");
    // nothing was created, and the server still serves
    let (_, tasks) = http_api::get(&srv.http_url(), "/api/tasks", Some(&token)).await;
    assert_eq!(tasks["tasks"], json!([]));
    let (status, v) = mcp_call(&srv, &token, call("status", json!({}))).await;
    assert_eq!(status, 200);
    assert_eq!(v["result"]["isError"], false, "{v}");
}

#[tokio::test]
async fn the_mcp_search_tool_takes_a_mode_and_answers_semantic_results() {
    use crate::common::fake_embeddings::FakeEmbeddings;
    let embeddings = FakeEmbeddings::spawn(8).await;
    let mut near = vec![0.0; 8];
    near[4] = 1.0;
    embeddings
        .serve("Nightly backup failed\nS3 bucket quota", near.clone())
        .serve("last night's snapshot did not complete", near);
    let embed_cfg = embeddings.config();
    let srv = TestServer::spawn_with(move |c| c.embeddings = embed_cfg).await;
    let token = srv.add_agent("ok", Role::Agent, &[]).await;
    let mut a = srv.agent("a", &[]).await;
    a.create_task(json!({"title":"Nightly backup failed","body":"S3 bucket quota"}))
        .await;
    tokio::time::timeout(
        WAIT,
        srv.core()
            .indexer
            .wait_until(|s| s.backlog == 0 && s.embedded_total >= 1),
    )
    .await
    .expect("indexed");
    let (_, tools) = mcp_call(
        &srv,
        &token,
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    )
    .await;
    let search = tools["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .find(|t| t["name"] == "search")
        .expect("search tool")
        .clone();
    assert_eq!(
        search["inputSchema"]["properties"]["mode"]["enum"],
        json!(["text", "semantic", "hybrid"]),
        "{search}"
    );
    let (_, v) = mcp_call(
        &srv,
        &token,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "search",
               "arguments": {"query": "last night's snapshot did not complete", "mode": "semantic"}}}),
    )
    .await;
    assert_eq!(v["result"]["isError"], false, "{v}");
    let text = v["result"]["content"][0]["text"].as_str().unwrap_or("");
    assert!(
        text.contains("Nightly backup failed") && text.contains("semantic"),
        "{v}"
    );
}
