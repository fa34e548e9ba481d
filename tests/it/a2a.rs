//! The A2A front door (`/.well-known/agent-card.json`, JSON-RPC at `/a2a`),
//! driven by the official Python `a2a-sdk` client (1.x) while WebSocket
//! agents do the work, and by raw HTTP for streaming, auth, versions and
//! bad JSON-RPC. The Python tests say they were skipped when python3 or the
//! package is missing (`.ci/run` installs it).

use crate::common::*;
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::Duration;
use swarmbridge::core::model::Role;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

/// The Python script that plays the A2A orchestrator.
fn client_script() -> String {
    format!("{}/tests/clients/a2a_client.py", env!("CARGO_MANIFEST_DIR"))
}

/// Whether python3 with the `a2a-sdk` package (1.x) is here; says why not.
async fn python_a2a_available() -> bool {
    let probe = tokio::process::Command::new("python3")
        .args([
            "-c",
            "import httpx, a2a.client; from a2a.types.a2a_pb2 import SendMessageRequest",
        ])
        .output()
        .await;
    match probe {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            eprintln!(
                "SKIPPED: the Python `a2a-sdk` package (1.x) is missing (pip install \"a2a-sdk[http-server]\"): {}",
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

/// Starts the script with piped stdin and stdout.
fn run_client(args: &[&str]) -> Child {
    tokio::process::Command::new("python3")
        .arg(client_script())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 starts")
}

/// The script's stdout, line by line.
fn lines_of(child: &mut Child) -> Lines<BufReader<ChildStdout>> {
    BufReader::new(child.stdout.take().expect("stdout")).lines()
}

/// The next line the script printed, as JSON.
async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>, child: &mut Child) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the A2A client printed in time")
        .expect("stdout readable");
    match line {
        Some(l) => serde_json::from_str(&l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")),
        None => {
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut err).await;
            }
            panic!("the A2A client stopped early: {err}")
        }
    }
}

/// Runs the script to its end and returns its one JSON object.
async fn client_output(args: &[&str]) -> Value {
    let mut child = run_client(args);
    let mut lines = lines_of(&mut child);
    let out = next_line(&mut lines, &mut child).await;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the A2A client ended")
        .expect("the A2A client ran");
    assert!(status.success(), "the A2A client failed: {out}");
    out
}

/// A stream response's status state and message text, if it is a status update.
fn status_of(resp: &Value) -> Option<(&str, &str)> {
    let status = &resp["statusUpdate"]["status"];
    let state = status["state"].as_str()?;
    let text = status["message"]["parts"][0]["text"].as_str().unwrap_or("");
    Some((state, text))
}

/// Reads stream responses until one satisfies `want`.
async fn read_until(
    lines: &mut Lines<BufReader<ChildStdout>>,
    child: &mut Child,
    want: impl Fn(&Value) -> bool,
) -> Value {
    loop {
        let resp = next_line(lines, child).await;
        if want(&resp) {
            return resp;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_a2a_client_streams_a_task_to_completion_while_a_websocket_agent_works_it() {
    if !python_a2a_available().await {
        return;
    }
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("orchestrator", Role::Agent, &[]).await;
    let mut worker = srv.agent("worker", &[]).await;
    let mut child = run_client(&[
        "stream",
        &srv.http_url(),
        &token,
        "Port the parser\nto the new tokenizer API",
    ]);
    let mut lines = lines_of(&mut child);
    let first = next_line(&mut lines, &mut child).await;
    assert_eq!(
        first["task"]["status"]["state"], "TASK_STATE_SUBMITTED",
        "{first}"
    );
    assert_eq!(first["task"]["contextId"], "ctx-tests", "{first}");
    let task_id: i64 = first["task"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("the A2A task id is the swarm task's number");
    let created = worker.event("task.created").await;
    assert_eq!(created["data"]["task"]["id"], task_id);
    assert_eq!(created["data"]["task"]["title"], "Port the parser");
    assert_eq!(created["data"]["task"]["created_by"], "orchestrator");

    worker
        .ok(json!({"type": "task.claim", "task_id": task_id}), "task")
        .await;
    let working = read_until(&mut lines, &mut child, |r| status_of(r).is_some()).await;
    assert_eq!(
        status_of(&working).map(|s| s.0),
        Some("TASK_STATE_WORKING"),
        "{working}"
    );
    worker
        .ok(
            json!({"type": "task.progress", "task_id": task_id, "note": "halfway", "percent": 50}),
            "ok",
        )
        .await;
    read_until(&mut lines, &mut child, |r| {
        status_of(r) == Some(("TASK_STATE_WORKING", "halfway (50%)"))
    })
    .await;
    worker
        .ok(
            json!({"type": "task.complete", "task_id": task_id, "result": "all green"}),
            "task",
        )
        .await;
    let artifact = next_line(&mut lines, &mut child).await;
    assert_eq!(
        artifact["artifactUpdate"]["artifact"]["parts"][0]["text"], "all green",
        "{artifact}"
    );
    let done = next_line(&mut lines, &mut child).await;
    assert_eq!(
        status_of(&done).map(|s| s.0),
        Some("TASK_STATE_COMPLETED"),
        "{done}"
    );
    let end = next_line(&mut lines, &mut child).await;
    assert_eq!(
        end["end"], true,
        "the stream ends after the terminal status: {end}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_a2a_client_cancels_a_claimed_task_and_its_holder_loses_the_lease() {
    if !python_a2a_available().await {
        return;
    }
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("orchestrator", Role::Agent, &[]).await;
    let mut worker = srv.agent("worker", &[]).await;
    let mut child = run_client(&["cancel", &srv.http_url(), &token, "Rebuild the index"]);
    let mut lines = lines_of(&mut child);
    let sent = next_line(&mut lines, &mut child).await;
    assert_eq!(
        sent["task"]["status"]["state"], "TASK_STATE_SUBMITTED",
        "{sent}"
    );
    let task_id: i64 = sent["task"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("task id");
    worker
        .ok(json!({"type": "task.claim", "task_id": task_id}), "task")
        .await;
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"go\n").await.expect("stdin write");
    stdin.flush().await.expect("stdin flush");
    let out = next_line(&mut lines, &mut child).await;
    assert_eq!(
        out["cancelled"]["status"]["state"], "TASK_STATE_CANCELED",
        "{out}"
    );
    assert_eq!(
        out["got"]["status"]["state"], "TASK_STATE_CANCELED",
        "{out}"
    );
    assert_eq!(
        out["cancel_again"]["type"], "TaskNotCancelableError",
        "{out}"
    );
    let cancelled = worker.event("task.cancelled").await;
    assert_eq!(cancelled["data"]["task"]["id"], task_id);
    assert_eq!(cancelled["data"]["task"]["lease_expires_at"], Value::Null);
    let e = worker
        .err(
            json!({"type": "task.progress", "task_id": task_id, "note": "still here"}),
            "conflict",
        )
        .await;
    assert!(
        e["message"].as_str().unwrap_or("").contains("cancelled"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_a2a_client_with_an_unsupported_version_gets_version_not_supported() {
    if !python_a2a_available().await {
        return;
    }
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("orchestrator", Role::Agent, &[]).await;
    let out = client_output(&["version", &srv.http_url(), &token, "0.3"]).await;
    assert_eq!(out["type"], "VersionNotSupportedError", "{out}");
    assert!(
        out["message"]
            .as_str()
            .unwrap_or("")
            .contains("A2A-Version: 1.0"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_a2a_client_without_a_token_is_refused_with_401() {
    if !python_a2a_available().await {
        return;
    }
    let srv = TestServer::spawn().await;
    let out = client_output(&["noauth", &srv.http_url(), "-"]).await;
    assert_eq!(out["type"], "A2AClientError", "{out}");
    assert!(
        out["message"].as_str().unwrap_or("").contains("401"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_reads_the_agent_card_with_a_skill_per_capability() {
    if !python_a2a_available().await {
        return;
    }
    let srv = TestServer::spawn().await;
    srv.add_agent("rustacean", Role::Agent, &["rust"]).await;
    let out = client_output(&["card", &srv.http_url(), "-"]).await;
    assert_eq!(out["capabilities"]["streaming"], true, "{out}");
    let skills: Vec<&str> = out["skills"]
        .as_array()
        .expect("skills")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(skills, ["task", "rust"], "{out}");
    assert_eq!(
        out["supportedInterfaces"][0]["url"],
        format!("{}/a2a", srv.http_url()),
        "{out}"
    );
    assert_eq!(
        out["securitySchemes"]["bearer"]["httpAuthSecurityScheme"]["scheme"],
        "Bearer"
    );
}

/// A JSON-RPC POST to `/a2a` as an A2A 1.0 client sends it.
fn a2a_post(srv: &TestServer, token: Option<&str>, body: String) -> reqwest::RequestBuilder {
    let mut req = reqwest::Client::new()
        .post(format!("{}/a2a", srv.http_url()))
        .header("content-type", "application/json")
        .header("a2a-version", "1.0")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req
}

fn rpc(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": "r1", "method": method, "params": params}).to_string()
}

fn send_params(text: &str) -> Value {
    json!({"message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": text}]},
           "configuration": {"returnImmediately": true}})
}

/// The JSON-RPC error code of a 200 answer.
async fn error_code(resp: reqwest::Response) -> (i64, String) {
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("json");
    let code = v["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("no error: {v}"));
    (
        code,
        v["error"]["message"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::test]
async fn a2a_without_a_token_or_with_a_bad_one_gets_401_and_a_bearer_challenge() {
    let srv = TestServer::spawn().await;
    let r = a2a_post(&srv, None, rpc("GetTask", json!({"id": "1"})))
        .send()
        .await
        .expect("reply");
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().expect("ascii");
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    let r = a2a_post(
        &srv,
        Some("sbt_not_a_token"),
        rpc("GetTask", json!({"id": "1"})),
    )
    .send()
    .await
    .expect("reply");
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().expect("ascii");
    assert!(challenge.contains("invalid_token"), "{challenge}");
    let (st, card) = http_api::get(&srv.http_url(), "/.well-known/agent-card.json", None).await;
    assert_eq!(st, 200, "the card is public");
    assert_eq!(card["capabilities"]["streaming"], true);
}

#[tokio::test]
async fn an_a2a_request_without_version_1_0_gets_version_not_supported_and_nothing_runs() {
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("o", Role::Agent, &[]).await;
    for version in [Some("0.3"), Some("2.0"), None] {
        let mut req = reqwest::Client::new()
            .post(format!("{}/a2a", srv.http_url()))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(rpc("SendMessage", send_params("must not run")));
        if let Some(v) = version {
            req = req.header("a2a-version", v);
        }
        let (code, message) = error_code(req.send().await.expect("reply")).await;
        assert_eq!(code, -32009, "{version:?}: {message}");
        assert!(message.contains("1.0"), "{message}");
    }
    let (_, tasks) = http_api::get(&srv.http_url(), "/api/tasks", Some(&token)).await;
    assert_eq!(tasks["tasks"], json!([]), "nothing was created");
}

#[tokio::test]
async fn bad_a2a_json_rpc_gets_the_specs_error_objects_and_the_server_keeps_serving() {
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("o", Role::Agent, &[]).await;
    let t = Some(token.as_str());
    let cases = [
        ("{\"jsonrpc\": \"2.0\",".to_string(), -32700),
        (json!({"id": 1, "method": "GetTask"}).to_string(), -32600),
        (json!([]).to_string(), -32600),
        (rpc("tasks/send", json!({})), -32601),
        (rpc("SendMessage", json!({"message": "hello"})), -32602),
        (
            rpc(
                "SendMessage",
                json!({"message": {"parts": [{"raw": "AAAA"}]}}),
            ),
            -32005,
        ),
        (rpc("GetTask", json!({"id": "999"})), -32001),
        (rpc("GetTask", json!({"id": "not-a-number"})), -32001),
        (rpc("CreateTaskPushNotificationConfig", json!({})), -32003),
    ];
    for (body, want) in cases {
        let (code, message) =
            error_code(a2a_post(&srv, t, body.clone()).send().await.expect("reply")).await;
        assert_eq!(code, want, "{body}: {message}");
        assert!(!message.is_empty(), "{body}");
    }
    let big = rpc(
        "SendMessage",
        send_params(&"x".repeat(srv.cfg.server.max_body_bytes + 1)),
    );
    let r = a2a_post(&srv, t, big).send().await.expect("reply");
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], -32600, "{v}");
    let (_, tasks) = http_api::get(&srv.http_url(), "/api/tasks", t).await;
    assert_eq!(tasks["tasks"], json!([]), "nothing was created");
    let r = a2a_post(&srv, t, rpc("SendMessage", send_params("still serving")))
        .send()
        .await
        .expect("reply");
    let v: Value = r.json().await.expect("json");
    assert_eq!(
        v["result"]["task"]["status"]["state"], "TASK_STATE_SUBMITTED",
        "{v}"
    );
}

#[tokio::test]
async fn a_subscribed_stream_follows_a_task_from_claim_to_failure() {
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("o", Role::Agent, &[]).await;
    let mut worker = srv.agent("worker", &["rust"]).await;
    let r = a2a_post(
        &srv,
        Some(&token),
        rpc(
            "SendMessage",
            json!({
        "message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "Fix the build"}],
                    "metadata": {"skill": "rust"}},
        "configuration": {"returnImmediately": true}}),
        ),
    )
    .send()
    .await
    .expect("reply");
    let v: Value = r.json().await.expect("json");
    let id = v["result"]["task"]["id"]
        .as_str()
        .expect("task id")
        .to_string();
    let task_id: i64 = id.parse().expect("number");
    let mut stream = SseStream::open(a2a_post(
        &srv,
        Some(&token),
        rpc("SubscribeToTask", json!({"id": id})),
    ))
    .await;
    let first = stream.next().await.json();
    assert_eq!(first["id"], "r1");
    assert_eq!(first["result"]["task"]["id"], id.as_str(), "{first}");
    let created = worker.event("task.created").await;
    assert_eq!(created["data"]["task"]["requires"], json!(["rust"]));
    worker
        .ok(json!({"type": "task.claim", "task_id": task_id}), "task")
        .await;
    let working = stream.next().await.json();
    assert_eq!(
        working["result"]["statusUpdate"]["status"]["state"], "TASK_STATE_WORKING",
        "{working}"
    );
    worker
        .ok(
            json!({"type": "task.fail", "task_id": task_id, "error": "linker crashed", "retry": false}),
            "task",
        )
        .await;
    let failed = stream.next().await.json();
    let status = &failed["result"]["statusUpdate"]["status"];
    assert_eq!(status["state"], "TASK_STATE_FAILED", "{failed}");
    assert_eq!(
        status["message"]["parts"][0]["text"], "linker crashed",
        "{failed}"
    );
    let (code, _) = error_code(
        a2a_post(
            &srv,
            Some(&token),
            rpc("SubscribeToTask", json!({"id": id})),
        )
        .send()
        .await
        .expect("reply"),
    )
    .await;
    assert_eq!(code, -32004, "a terminal task cannot be subscribed to");
}

#[tokio::test]
async fn a_blocking_send_message_answers_with_the_completed_task_and_its_data_artifact() {
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("o", Role::Agent, &[]).await;
    let mut worker = srv.agent("worker", &[]).await;
    let send = a2a_post(
        &srv,
        Some(&token),
        rpc(
            "SendMessage",
            json!({"message": {"messageId": "m1", "role": "ROLE_USER",
                   "parts": [{"text": "Count the open issues"}]}}),
        ),
    )
    .send();
    let answer = tokio::spawn(send);
    let created = worker.event("task.created").await;
    let task_id = created["data"]["task"]["id"].as_i64().expect("task id");
    worker
        .ok(json!({"type": "task.claim", "task_id": task_id}), "task")
        .await;
    worker
        .ok(
            json!({"type": "task.complete", "task_id": task_id, "result": {"open": 12}}),
            "task",
        )
        .await;
    let r = answer.await.expect("joined").expect("reply");
    let v: Value = r.json().await.expect("json");
    let task = &v["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{v}");
    assert_eq!(
        task["artifacts"][0]["parts"][0]["data"],
        json!({"open": 12}),
        "{v}"
    );
    assert_eq!(task["metadata"]["swarmbridge"]["assignee"], "worker", "{v}");
}

#[tokio::test]
async fn cancelling_another_callers_task_is_refused_with_the_swarms_reason() {
    let srv = TestServer::spawn().await;
    let owner = srv.add_agent("owner", Role::Agent, &[]).await;
    let other = srv.add_agent("other", Role::Agent, &[]).await;
    let r = a2a_post(&srv, Some(&owner), rpc("SendMessage", send_params("Mine")))
        .send()
        .await
        .expect("reply");
    let v: Value = r.json().await.expect("json");
    let id = v["result"]["task"]["id"].as_str().expect("id").to_string();
    let r = a2a_post(&srv, Some(&other), rpc("CancelTask", json!({"id": id})))
        .send()
        .await
        .expect("reply");
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], -32600, "{v}");
    assert_eq!(
        v["error"]["data"][0]["metadata"]["code"], "forbidden",
        "{v}"
    );
    let r = a2a_post(&srv, Some(&owner), rpc("GetTask", json!({"id": id})))
        .send()
        .await
        .expect("reply");
    let v: Value = r.json().await.expect("json");
    assert_eq!(
        v["result"]["status"]["state"], "TASK_STATE_SUBMITTED",
        "{v}"
    );
    // every A2A call went through the dispatcher, counted on its own front door
    let (_, status) = http_api::get(&srv.http_url(), "/api/status", Some(&owner)).await;
    let a2a = status["commands"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["platform"] == "a2a"))
        .cloned()
        .unwrap_or_else(|| panic!("no a2a line: {status}"));
    assert_eq!(a2a["served"], 2, "{status}");
    assert_eq!(a2a["refused"], 1, "{status}");
}
