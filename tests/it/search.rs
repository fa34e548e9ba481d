//! Full-text search over tasks and messages, on the agent WebSocket and
//! `GET /api/search`.

use crate::common::http_api;
use crate::common::*;
use serde_json::{json, Value};
use swarmbridge::clock::{now_ms, parse_rfc3339, rfc3339};
use swarmbridge::core::model::Role;

async fn search(c: &mut Client, fields: Value) -> Vec<Value> {
    let mut frame = json!({"type": "search"});
    if let (Some(f), Some(e)) = (frame.as_object_mut(), fields.as_object()) {
        for (k, v) in e {
            f.insert(k.clone(), v.clone());
        }
    }
    let r = c.ok(frame, "results").await;
    assert_eq!(r["mode"], "fulltext", "{r}");
    r["results"].as_array().expect("results is a list").clone()
}

fn ids_of(results: &[Value], kind: &str) -> Vec<i64> {
    results
        .iter()
        .filter(|r| r["kind"] == kind)
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn search_finds_a_task_by_a_word_in_its_body_with_a_snippet() {
    let srv = TestServer::spawn().await;
    let mut a = srv.agent("a", &[]).await;
    let t = a
        .create_task(json!({"title":"Fix the build","body":"the linker fails on aarch64 runners"}))
        .await;
    a.create_task(json!({"title":"Write docs","body":"explain the protocol"}))
        .await;
    let r = search(&mut a, json!({"query":"linker"})).await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["kind"], "task");
    assert_eq!(r[0]["id"], t["id"]);
    assert_eq!(r[0]["title"], "Fix the build");
    assert!(
        r[0]["snippet"].as_str().unwrap().contains("**linker**"),
        "{}",
        r[0]
    );
    assert!(r[0]["score"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn search_finds_direct_messages_and_broadcasts_by_their_text() {
    let srv = TestServer::spawn().await;
    let mut a = srv.agent("a", &[]).await;
    let _b = srv.agent("b", &[]).await;
    a.ok(
        json!({"type":"msg.send","to":"b","text":"the staging database is full"}),
        "ok",
    )
    .await;
    a.ok(
        json!({"type":"broadcast","text":"database maintenance tonight","topic":"ops"}),
        "ok",
    )
    .await;
    a.ok(json!({"type":"broadcast","text":"lunch is here"}), "ok")
        .await;
    let r = search(&mut a, json!({"query":"database"})).await;
    let mut titles: Vec<&str> = r.iter().map(|h| h["title"].as_str().unwrap()).collect();
    titles.sort();
    assert_eq!(titles, ["broadcast from a on ops", "message from a to b"]);
    assert!(r.iter().all(|h| h["kind"] == "message"));
    assert!(r
        .iter()
        .all(|h| h["snippet"].as_str().unwrap().contains("**database**")));
}

#[tokio::test]
async fn a_completed_tasks_result_is_searchable() {
    let srv = TestServer::spawn().await;
    let mut a = srv.agent("a", &[]).await;
    let t = a.create_task(json!({"title":"Benchmark"})).await;
    a.ok(json!({"type":"task.claim","task_id":t["id"]}), "task")
        .await;
    assert!(search(&mut a, json!({"query":"throughput"}))
        .await
        .is_empty());
    a.ok(
        json!({"type":"task.complete","task_id":t["id"],"result":{"summary":"throughput doubled"}}),
        "task",
    )
    .await;
    let r = search(&mut a, json!({"query":"throughput"})).await;
    assert_eq!(ids_of(&r, "task"), [t["id"].as_i64().unwrap()]);
}

#[tokio::test]
async fn search_with_a_state_returns_only_tasks_in_that_state() {
    let srv = TestServer::spawn().await;
    let mut a = srv.agent("a", &[]).await;
    let open = a.create_task(json!({"title":"rotate keys one"})).await;
    let done = a.create_task(json!({"title":"rotate keys two"})).await;
    a.ok(json!({"type":"task.claim","task_id":done["id"]}), "task")
        .await;
    a.ok(json!({"type":"task.complete","task_id":done["id"]}), "task")
        .await;
    a.ok(json!({"type":"broadcast","text":"rotate keys now"}), "ok")
        .await;
    let r = search(&mut a, json!({"query":"rotate keys","state":"done"})).await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(ids_of(&r, "task"), [done["id"].as_i64().unwrap()]);
    let r = search(&mut a, json!({"query":"rotate keys","state":"open"})).await;
    assert_eq!(ids_of(&r, "task"), [open["id"].as_i64().unwrap()]);
    a.err(
        json!({"type":"search","query":"rotate","state":"sleeping"}),
        "bad_request",
    )
    .await;
}

#[tokio::test]
async fn search_with_an_agent_returns_only_what_that_agent_made_holds_sent_or_got() {
    let srv = TestServer::spawn().await;
    let mut a = srv.agent("a", &[]).await;
    let mut b = srv.agent("b", &[]).await;
    let _c = srv.agent("c", &[]).await;
    let by_a = a.create_task(json!({"title":"cache warmup by a"})).await;
    let by_b = b.create_task(json!({"title":"cache warmup by b"})).await;
    let held_by_a = b.create_task(json!({"title":"cache warmup held"})).await;
    a.ok(
        json!({"type":"task.claim","task_id":held_by_a["id"]}),
        "task",
    )
    .await;
    b.ok(
        json!({"type":"msg.send","to":"a","text":"cache warmup question"}),
        "ok",
    )
    .await;
    b.ok(
        json!({"type":"msg.send","to":"c","text":"cache warmup private"}),
        "ok",
    )
    .await;
    let mut op = srv.operator("op").await;
    let r = search(&mut op, json!({"query":"cache warmup","agent":"a"})).await;
    let mut tasks = ids_of(&r, "task");
    tasks.sort();
    assert_eq!(
        tasks,
        [
            by_a["id"].as_i64().unwrap(),
            held_by_a["id"].as_i64().unwrap()
        ]
    );
    assert!(!tasks.contains(&by_b["id"].as_i64().unwrap()));
    let titles: Vec<&str> = r
        .iter()
        .filter(|h| h["kind"] == "message")
        .map(|h| h["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["message from b to a"]);
}

#[tokio::test]
async fn search_with_since_leaves_out_older_items() {
    let srv = TestServer::spawn().await;
    let mut a = srv.agent("a", &[]).await;
    let old = a.create_task(json!({"title":"migrate billing"})).await;
    let old_at = parse_rfc3339(old["created_at"].as_str().unwrap()).unwrap();
    while now_ms() <= old_at {
        tokio::task::yield_now().await;
    }
    let since = rfc3339(old_at + 1);
    let new = a
        .create_task(json!({"title":"migrate billing again"}))
        .await;
    a.ok(
        json!({"type":"broadcast","text":"migrate billing done"}),
        "ok",
    )
    .await;
    let r = search(&mut a, json!({"query":"migrate billing","since":since})).await;
    assert_eq!(ids_of(&r, "task"), [new["id"].as_i64().unwrap()]);
    assert_eq!(ids_of(&r, "message").len(), 1);
    let all = search(&mut a, json!({"query":"migrate billing"})).await;
    assert_eq!(ids_of(&all, "task").len(), 2);
    a.err(
        json!({"type":"search","query":"x","since":"last tuesday"}),
        "bad_request",
    )
    .await;
}

#[tokio::test]
async fn search_ranks_the_better_match_first() {
    let srv = TestServer::spawn().await;
    let mut a = srv.agent("a", &[]).await;
    let weak = a
        .create_task(json!({
            "title": "Quarterly planning",
            "body": "agenda: budget, hiring, offsites, travel, and maybe kubernetes later on"
        }))
        .await;
    let strong = a
        .create_task(json!({
            "title": "Upgrade kubernetes",
            "body": "kubernetes 1.31 upgrade for every kubernetes cluster"
        }))
        .await;
    let r = search(&mut a, json!({"query":"kubernetes"})).await;
    assert_eq!(
        ids_of(&r, "task"),
        [strong["id"].as_i64().unwrap(), weak["id"].as_i64().unwrap()]
    );
    assert!(r[0]["score"].as_f64().unwrap() > r[1]["score"].as_f64().unwrap());
}

#[tokio::test]
async fn search_matches_the_last_word_as_a_prefix() {
    let srv = TestServer::spawn().await;
    let mut a = srv.agent("a", &[]).await;
    let t = a
        .create_task(json!({"title":"observability dashboards"}))
        .await;
    let r = search(&mut a, json!({"query":"observab"})).await;
    assert_eq!(ids_of(&r, "task"), [t["id"].as_i64().unwrap()]);
}

#[tokio::test]
async fn queries_of_special_characters_answer_results_never_an_error() {
    let srv = TestServer::spawn().await;
    let mut a = srv.agent("a", &[]).await;
    a.create_task(json!({"title":"near the foo bar", "body":"a:b (c) \"quoted\" 🎉 party"}))
        .await;
    let queries = [
        "\"",
        "\"\"",
        "*",
        "foo*",
        "-foo",
        "a:b",
        "(",
        ")",
        "foo)",
        "NEAR",
        "NEAR(foo bar)",
        "foo AND",
        "OR",
        "NOT foo",
        "^foo",
        "title:foo",
        "'; DROP TABLE tasks; --",
        "🎉",
        "party 🎉",
        "\u{0}",
        "\\",
        "'",
        "%_",
    ];
    for q in queries {
        let r = a.request(json!({"type":"search","query":q})).await;
        assert_eq!(r["type"], "results", "query {q:?} got {r}");
    }
    let r = search(&mut a, json!({"query":"-foo"})).await;
    assert_eq!(r.len(), 1, "-foo is the word foo, not a negation");
    let r = search(&mut a, json!({"query":"NEAR"})).await;
    assert_eq!(r.len(), 1, "NEAR is a word");
    let r = search(&mut a, json!({"query":"party 🎉"})).await;
    assert_eq!(r.len(), 1);
    let after = search(&mut a, json!({"query":"near"})).await;
    assert_eq!(after.len(), 1, "the tasks table is still there");
}

#[tokio::test]
async fn an_empty_query_is_a_bad_request() {
    let srv = TestServer::spawn().await;
    let mut a = srv.agent("a", &[]).await;
    for q in ["", "   "] {
        a.err(json!({"type":"search","query":q}), "bad_request")
            .await;
    }
    a.err(json!({"type":"search"}), "bad_request").await;
}

#[tokio::test]
async fn a_limit_out_of_range_is_a_bad_request_and_a_limit_caps_the_results() {
    let srv = TestServer::spawn().await;
    let mut a = srv.agent("a", &[]).await;
    for i in 0..3 {
        a.create_task(json!({"title": format!("flaky test {i}")}))
            .await;
    }
    for limit in [0, 101] {
        a.err(
            json!({"type":"search","query":"flaky","limit":limit}),
            "bad_request",
        )
        .await;
    }
    assert_eq!(
        search(&mut a, json!({"query":"flaky","limit":2}))
            .await
            .len(),
        2
    );
    assert_eq!(search(&mut a, json!({"query":"flaky"})).await.len(), 3);
}

#[tokio::test]
async fn direct_messages_are_found_only_by_their_sender_addressee_and_operators() {
    let srv = TestServer::spawn().await;
    let mut a = srv.agent("a", &[]).await;
    let mut b = srv.agent("b", &[]).await;
    let mut c = srv.agent("c", &[]).await;
    let mut op = srv.operator("op").await;
    a.ok(
        json!({"type":"msg.send","to":"b","text":"the vault password rotates"}),
        "ok",
    )
    .await;
    assert_eq!(search(&mut a, json!({"query":"vault"})).await.len(), 1);
    assert_eq!(search(&mut b, json!({"query":"vault"})).await.len(), 1);
    assert_eq!(search(&mut op, json!({"query":"vault"})).await.len(), 1);
    assert!(search(&mut c, json!({"query":"vault"})).await.is_empty());
}

#[tokio::test]
async fn the_http_search_answers_results_and_mode_without_type_or_re() {
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("a", Role::Agent, &[]).await;
    let mut a = Client::hello(&srv.ws_url(), &token, json!({})).await;
    let t = a
        .create_task(json!({"title":"renew certificates","body":"letsencrypt"}))
        .await;
    let (st, v) = http_api::get(
        &srv.http_url(),
        "/api/search?q=certificates&limit=5&state=open&agent=a&since=2000-01-01T00:00:00Z",
        Some(&token),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert!(v.get("type").is_none() && v.get("re").is_none(), "{v}");
    assert_eq!(v["mode"], "fulltext");
    assert_eq!(v["results"][0]["id"], t["id"]);
    assert_eq!(v["results"][0]["kind"], "task");

    let (st, v) = http_api::get(&srv.http_url(), "/api/search?q=%22%28NEAR", Some(&token)).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = http_api::get(&srv.http_url(), "/api/search?q=", Some(&token)).await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["code"], "bad_request");
    let (st, v) = http_api::get(&srv.http_url(), "/api/search?q=x&limit=lots", Some(&token)).await;
    assert_eq!(st, 400, "{v}");
}

#[tokio::test]
async fn the_http_search_refuses_requests_without_a_valid_token() {
    let srv = TestServer::spawn().await;
    let (st, v) = http_api::get(&srv.http_url(), "/api/search?q=x", None).await;
    assert_eq!(st, 401);
    assert_eq!(v["error"]["code"], "unauthorized");
    let (st, _) = http_api::get(&srv.http_url(), "/api/search?q=x", Some("sbt_nope")).await;
    assert_eq!(st, 401);
}
