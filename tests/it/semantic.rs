//! Semantic and hybrid search end to end against the fake embeddings
//! backend: the background indexer, the three modes on the WebSocket and
//! over HTTP, privacy, degradation, bad input and `search reindex`.

use crate::common::fake_embeddings::{EmbedReply, FakeEmbeddings};
use crate::common::http_api;
use crate::common::*;
use serde_json::{json, Value};
use std::time::Duration;
use swarmbridge::core::model::Role;

const DIMS: usize = 16;

/// A unit vector along axis `i`, nudged towards axis `i + 1` by `tilt`.
fn axis(i: usize, tilt: f32) -> Vec<f32> {
    let mut v = vec![0.0; DIMS];
    v[i % DIMS] = 1.0;
    v[(i + 1) % DIMS] = tilt;
    v
}

async fn semantic_server(fake: &FakeEmbeddings) -> TestServer {
    let cfg = fake.config();
    TestServer::spawn_with(move |c| c.embeddings = cfg).await
}

/// Waits until the indexer has no backlog and has embedded at least `n` items.
async fn indexed(srv: &TestServer, n: u64) {
    let stats = &srv.core().indexer;
    tokio::time::timeout(
        WAIT,
        stats.wait_until(|s| s.backlog == 0 && s.embedded_total >= n),
    )
    .await
    .unwrap_or_else(|_| panic!("the indexer did not catch up: {:?}", stats.snapshot()));
}

async fn search(c: &mut Client, fields: Value) -> Value {
    let mut frame = json!({"type": "search"});
    for (k, v) in fields.as_object().expect("fields") {
        frame[k] = v.clone();
    }
    c.ok(frame, "results").await
}

fn ids(r: &Value, kind: &str) -> Vec<i64> {
    r["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|h| h["kind"] == kind)
        .map(|h| h["id"].as_i64().expect("id"))
        .collect()
}

#[tokio::test]
async fn the_indexer_embeds_tasks_messages_and_broadcasts_after_commit_and_results_again() {
    let fake = FakeEmbeddings::spawn(DIMS).await;
    let srv = semantic_server(&fake).await;
    let mut a = srv.agent("a", &[]).await;
    let _b = srv.agent("b", &[]).await;
    let t = a
        .create_task(json!({"title":"Rotate certificates","body":"the edge certs expire friday"}))
        .await;
    a.ok(
        json!({"type":"msg.send","to":"b","text":"staging disk is full"}),
        "ok",
    )
    .await;
    a.ok(
        json!({"type":"broadcast","text":"deploy freeze tonight"}),
        "ok",
    )
    .await;
    indexed(&srv, 3).await;
    let sent: Vec<String> = fake.requests().into_iter().flat_map(|r| r.inputs).collect();
    for text in [
        "Rotate certificates\nthe edge certs expire friday",
        "staging disk is full",
        "deploy freeze tonight",
    ] {
        assert!(
            sent.iter().any(|s| s == text),
            "{text:?} not embedded: {sent:?}"
        );
    }
    // a result changes the task's text: it is embedded again
    let id = t["id"].as_i64().unwrap();
    a.ok(json!({"type":"task.claim","task_id":id}), "task")
        .await;
    a.ok(
        json!({"type":"task.complete","task_id":id,"result":"renewed via acme"}),
        "task",
    )
    .await;
    indexed(&srv, 4).await;
    let sent: Vec<String> = fake.requests().into_iter().flat_map(|r| r.inputs).collect();
    assert!(
        sent.iter().any(|s| s.contains("renewed via acme")),
        "the result was not embedded: {sent:?}"
    );
    let (status, metrics) = metrics_text(&srv).await;
    assert_eq!(status, 200);
    // the recorder is shared by every server of this test process: names only
    for name in [
        "swarmbridge_search_index_backlog",
        "swarmbridge_search_indexed_total",
        "swarmbridge_search_index_items_per_second",
    ] {
        assert!(metrics.contains(name), "{name} missing: {metrics}");
    }
    let (status, dash) = http_api::get(&srv.http_url(), "/dashboard/snapshot", None).await;
    assert_eq!(status, 200, "{dash}");
    assert_eq!(
        dash["search_index"]["backlog"], 0,
        "{}",
        dash["search_index"]
    );
    assert!(dash["search_index"]["running"].as_bool().unwrap());
}

async fn metrics_text(srv: &TestServer) -> (u16, String) {
    let resp = reqwest::get(srv.url("/metrics")).await.expect("metrics");
    (resp.status().as_u16(), resp.text().await.expect("body"))
}

#[tokio::test]
async fn semantic_search_finds_a_paraphrase_that_text_search_cannot() {
    let fake = FakeEmbeddings::spawn(DIMS).await;
    fake.serve(
        "Session expiry bug in auth service\nusers are logged out",
        axis(3, 0.1),
    )
    .serve("Write the release notes\nfor version 2", axis(7, 0.0))
    .serve("who fixed the login timeout?", axis(3, 0.0));
    let srv = semantic_server(&fake).await;
    let mut a = srv.agent("a", &[]).await;
    let want = a
        .create_task(
            json!({"title":"Session expiry bug in auth service","body":"users are logged out"}),
        )
        .await;
    a.create_task(json!({"title":"Write the release notes","body":"for version 2"}))
        .await;
    indexed(&srv, 2).await;
    let q = "who fixed the login timeout?";
    let text = search(&mut a, json!({"query": q, "mode": "text"})).await;
    assert_eq!(text["mode"], "fulltext");
    assert!(ids(&text, "task").is_empty(), "{text}");
    let sem = search(&mut a, json!({"query": q, "mode": "semantic"})).await;
    assert_eq!(sem["mode"], "semantic");
    assert_eq!(sem["degraded"], false);
    assert_eq!(ids(&sem, "task")[0], want["id"].as_i64().unwrap(), "{sem}");
    assert_eq!(
        sem["results"][0]["title"],
        "Session expiry bug in auth service"
    );
    // the default with embeddings configured is hybrid
    let hybrid = search(&mut a, json!({"query": q})).await;
    assert_eq!(hybrid["mode"], "hybrid");
    assert_eq!(
        ids(&hybrid, "task")[0],
        want["id"].as_i64().unwrap(),
        "{hybrid}"
    );
}

#[tokio::test]
async fn hybrid_falls_back_to_text_saying_so_and_semantic_is_unavailable_when_the_backend_is_down()
{
    let fake = FakeEmbeddings::spawn(DIMS).await;
    let srv = semantic_server(&fake).await;
    let mut a = srv.agent("a", &[]).await;
    let t = a
        .create_task(json!({"title":"Flaky linker on arm","body":"ci fails"}))
        .await;
    indexed(&srv, 1).await;
    fake.set_down(true);
    let r = search(&mut a, json!({"query":"linker","mode":"hybrid"})).await;
    assert_eq!(r["degraded"], true, "{r}");
    assert!(
        r["degraded_reason"]
            .as_str()
            .unwrap()
            .contains("embeddings backend"),
        "{r}"
    );
    assert_eq!(ids(&r, "task"), vec![t["id"].as_i64().unwrap()], "{r}");
    let e = a
        .err(
            json!({"type":"search","query":"linker","mode":"semantic"}),
            "unavailable",
        )
        .await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("embeddings backend"),
        "{e}"
    );
    // new items wait in the backlog while the backend is down, then are indexed
    a.create_task(json!({"title":"Second","body":"queued while down"}))
        .await;
    let stats = &srv.core().indexer;
    tokio::time::timeout(
        WAIT,
        stats.wait_until(|s| s.errors_total > 0 && s.backlog >= 1),
    )
    .await
    .unwrap_or_else(|_| panic!("no backoff seen: {:?}", stats.snapshot()));
    fake.set_down(false);
    indexed(&srv, 2).await;
    a.assert_alive().await;
}

#[tokio::test]
async fn without_embeddings_the_default_is_text_and_semantic_says_how_to_configure() {
    let srv = TestServer::spawn().await;
    let mut a = srv.agent("a", &[]).await;
    a.create_task(json!({"title":"Fix the build","body":"linker"}))
        .await;
    let r = search(&mut a, json!({"query":"linker"})).await;
    assert_eq!(r["mode"], "fulltext");
    assert_eq!(r["degraded"], false);
    let e = a
        .err(
            json!({"type":"search","query":"linker","mode":"semantic"}),
            "unavailable",
        )
        .await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("embeddings.backend"),
        "{e}"
    );
    let h = search(&mut a, json!({"query":"linker","mode":"hybrid"})).await;
    assert_eq!(h["degraded"], true, "{h}");
    assert_eq!(h["results"].as_array().unwrap().len(), 1, "{h}");
    assert!(!srv.core().indexer.snapshot().running);
}

#[tokio::test]
async fn bad_modes_and_empty_or_oversized_queries_get_bad_request_in_every_mode() {
    let fake = FakeEmbeddings::spawn(DIMS).await;
    let srv = semantic_server(&fake).await;
    let mut a = srv.agent("a", &[]).await;
    let e = a
        .err(
            json!({"type":"search","query":"x","mode":"vector"}),
            "bad_request",
        )
        .await;
    assert!(e["message"].as_str().unwrap().contains("mode"), "{e}");
    for mode in ["text", "semantic", "hybrid"] {
        a.err(
            json!({"type":"search","query":"  ","mode":mode}),
            "bad_request",
        )
        .await;
        let long = "word ".repeat(200);
        let e = a
            .err(
                json!({"type":"search","query":long,"mode":mode}),
                "bad_request",
            )
            .await;
        assert!(e["message"].as_str().unwrap().contains("500"), "{e}");
    }
    a.assert_alive().await;
}

#[tokio::test]
async fn a_backend_answering_the_wrong_dimensions_is_refused_naming_model_and_dimensions() {
    let fake = FakeEmbeddings::spawn(DIMS).await;
    let srv = semantic_server(&fake).await;
    let mut a = srv.agent("a", &[]).await;
    fake.then(EmbedReply::WrongLength(8));
    let e = a
        .err(
            json!({"type":"search","query":"anything","mode":"semantic"}),
            "unavailable",
        )
        .await;
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("fake-embed") && msg.contains('8') && msg.contains("16"),
        "{e}"
    );
}

#[tokio::test]
async fn semantic_search_shows_a_direct_message_only_to_its_parties() {
    let fake = FakeEmbeddings::spawn(DIMS).await;
    fake.serve("the vault password rotates monday", axis(5, 0.0))
        .serve("when do secrets change", axis(5, 0.05));
    let srv = semantic_server(&fake).await;
    let mut a = srv.agent("a", &[]).await;
    let mut b = srv.agent("b", &[]).await;
    let mut c = srv.agent("c", &[]).await;
    let mut op = srv.operator("op").await;
    a.ok(
        json!({"type":"msg.send","to":"b","text":"the vault password rotates monday"}),
        "ok",
    )
    .await;
    indexed(&srv, 1).await;
    for mode in ["semantic", "hybrid"] {
        let q = json!({"query":"when do secrets change","mode":mode});
        assert_eq!(
            ids(&search(&mut a, q.clone()).await, "message").len(),
            1,
            "{mode}"
        );
        assert_eq!(
            ids(&search(&mut b, q.clone()).await, "message").len(),
            1,
            "{mode}"
        );
        assert_eq!(
            ids(&search(&mut op, q.clone()).await, "message").len(),
            1,
            "{mode}"
        );
        let r = search(&mut c, q).await;
        assert!(ids(&r, "message").is_empty(), "{mode}: {r}");
    }
}

#[tokio::test]
async fn ai_semantic_search_answers_over_http_and_api_search_takes_a_mode() {
    let fake = FakeEmbeddings::spawn(DIMS).await;
    fake.serve("Disk pressure on db-2\nvolume at 95%", axis(9, 0.0))
        .serve("storage almost exhausted", axis(9, 0.1));
    let srv = semantic_server(&fake).await;
    let token = srv.add_agent("reader", Role::Agent, &[]).await;
    let mut a = srv.agent("a", &[]).await;
    a.create_task(json!({"title":"Disk pressure on db-2","body":"volume at 95%"}))
        .await;
    indexed(&srv, 1).await;
    let base = srv.http_url();
    let (s, r) = http_api::post(
        &base,
        "/ai/semantic-search",
        Some(&token),
        json!({"query":"storage almost exhausted"}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["mode"], "semantic");
    assert_eq!(r["results"][0]["title"], "Disk pressure on db-2", "{r}");
    let (s, r) = http_api::post(
        &base,
        "/ai/semantic-search",
        Some(&token),
        json!({"query":""}),
    )
    .await;
    assert_eq!(s, 400, "{r}");
    let (s, r) = http_api::get(
        &base,
        "/api/search?q=storage%20almost%20exhausted&mode=hybrid",
        Some(&token),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["mode"], "hybrid");
    assert_eq!(r["results"][0]["title"], "Disk pressure on db-2", "{r}");
    let (s, r) = http_api::get(&base, "/api/search?q=x&mode=nope", Some(&token)).await;
    assert_eq!(s, 400, "{r}");
    let (_, doc) = http_api::get(&base, "/api/openapi.json", None).await;
    assert!(
        doc["paths"]["/ai/semantic-search"]["post"].is_object(),
        "not in OpenAPI"
    );
    fake.set_down(true);
    let (s, r) = http_api::post(
        &base,
        "/ai/semantic-search",
        Some(&token),
        json!({"query":"storage almost exhausted"}),
    )
    .await;
    assert_eq!(s, 503, "{r}");
}

#[tokio::test]
async fn the_indexer_stops_with_the_server() {
    let fake = FakeEmbeddings::spawn(DIMS).await;
    let mut srv = semantic_server(&fake).await;
    let core = srv.core().clone();
    tokio::time::timeout(WAIT, core.indexer.wait_until(|s| s.running))
        .await
        .expect("the indexer starts");
    tokio::time::timeout(Duration::from_secs(10), srv.stop())
        .await
        .expect("the server stops");
    assert!(!core.indexer.snapshot().running);
}

#[tokio::test]
async fn search_reindex_rebuilds_every_vector_from_the_cli() {
    let fake = FakeEmbeddings::spawn(DIMS).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("cli.db");
    let base_url = fake.base_url();
    let run = move |args: &'static [&'static str]| {
        let (db, base_url) = (db.clone(), base_url.clone());
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_swarmbridge"))
                .args(args)
                .env("SWARMBRIDGE_DATABASE_URL", &db)
                .env_remove("SWARMBRIDGE_CONFIG")
                .env("SWARMBRIDGE_EMBEDDINGS__BACKEND", "openai")
                .env("SWARMBRIDGE_EMBEDDINGS__BASE_URL", &base_url)
                .env("SWARMBRIDGE_EMBEDDINGS__MODEL", "fake-embed")
                .env("SWARMBRIDGE_EMBEDDINGS__DIMENSIONS", DIMS.to_string())
                .output()
                .expect("binary runs");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };
    for title in ["rotate keys", "renew certificates"] {
        let (ok, _, err) = run(if title == "rotate keys" {
            &["task", "add", "rotate keys"]
        } else {
            &["task", "add", "renew certificates"]
        })
        .await
        .unwrap();
        assert!(ok, "{err}");
    }
    let (ok, out, err) = run(&["search", "reindex"]).await.unwrap();
    assert!(ok, "{err}");
    assert!(
        out.contains("reindexed 2 item(s) with model fake-embed (16 dimensions)"),
        "{out}"
    );
    let (ok, out, err) = run(&["search", "reindex"]).await.unwrap();
    assert!(ok, "{err}");
    assert!(
        out.contains("reindexed 2 item(s)"),
        "a rebuild embeds everything again: {out}"
    );
    let sent: Vec<String> = fake.requests().into_iter().flat_map(|r| r.inputs).collect();
    assert_eq!(
        sent.iter().filter(|s| s.starts_with("rotate keys")).count(),
        2,
        "{sent:?}"
    );
    fake.set_down(true);
    let (ok, _, err) = run(&["search", "reindex"]).await.unwrap();
    assert!(!ok);
    assert!(err.contains("embeddings backend"), "{err}");
}

#[tokio::test]
async fn stored_vectors_of_another_length_make_semantic_unavailable_naming_model_and_dimensions() {
    use swarmbridge::core::vectors::ItemRef;
    let fake = FakeEmbeddings::spawn(DIMS).await;
    let srv = semantic_server(&fake).await;
    // as if embeddings.dimensions had been 8 before
    srv.core()
        .store
        .upsert_vectors("fake-embed", vec![(ItemRef::task(999), vec![1.0; 8])])
        .await
        .expect("stored");
    let mut a = srv.agent("a", &[]).await;
    a.create_task(json!({"title":"linker flakes","body":"on arm"}))
        .await;
    let e = a
        .err(
            json!({"type":"search","query":"linker","mode":"semantic"}),
            "unavailable",
        )
        .await;
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("`fake-embed`") && msg.contains("8 dimensions") && msg.contains("16"),
        "{e}"
    );
    assert!(msg.contains("search reindex"), "{e}");
    let r = search(&mut a, json!({"query":"linker","mode":"hybrid"})).await;
    assert_eq!(r["degraded"], true, "{r}");
    assert_eq!(ids(&r, "task").len(), 1, "{r}");
}
