//! The dashboard's own endpoints: the embedded page and assets, the public
//! snapshot and event feed, and the token they need when not public.

use crate::common::*;
use serde_json::{json, Value};
use swarmbridge::core::model::Role;

#[tokio::test]
async fn dashboard_page_and_assets_are_served_from_the_binary() {
    let srv = TestServer::spawn().await;
    let http = reqwest::Client::new();
    for (path, ct, needle) in [
        ("/", "text/html", "swarmbridge"),
        ("/dashboard/app.js", "text/javascript", "/dashboard/events"),
        ("/dashboard/app.css", "text/css", "@media"),
    ] {
        let r = http.get(srv.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let got = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(got.starts_with(ct), "{path}: {got}");
        let body = r.text().await.unwrap();
        assert!(body.contains(needle), "{path}");
        assert!(
            !body.contains("https://"),
            "{path} must not load anything remote"
        );
    }
}

#[tokio::test]
async fn public_snapshot_shows_agents_tasks_stats_and_throughput() {
    let srv = TestServer::spawn().await;
    let mut w = srv.agent("w", &[]).await;
    let t = w.create_task(json!({"title": "on the board"})).await;
    w.ok(json!({"type": "task.claim", "task_id": t["id"]}), "task")
        .await;
    w.ok(json!({"type": "task.complete", "task_id": t["id"]}), "task")
        .await;
    w.create_task(json!({"title": "still open"})).await;
    let r = reqwest::Client::new()
        .get(srv.url("/dashboard/snapshot"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s: Value = r.json().await.unwrap();
    assert_eq!(s["public"], true);
    assert_eq!(s["status"]["tasks"]["done"], 1);
    assert_eq!(s["status"]["tasks"]["open"], 1);
    assert_eq!(s["agents"][0]["name"], "w");
    assert_eq!(s["agents"][0]["online"], true);
    assert_eq!(s["tasks"].as_array().unwrap().len(), 2);
    assert_eq!(s["stats"]["w"]["completions"], 1);
    let done = s["throughput"]["done"].as_array().unwrap();
    assert_eq!(done.len(), 60);
    assert_eq!(done.iter().map(|v| v.as_i64().unwrap()).sum::<i64>(), 1);
    assert_eq!(s["platforms"]["twitch"], "off");
    assert!(s["events"].as_array().unwrap().len() >= 3);
}

#[tokio::test]
async fn private_dashboard_needs_a_token_for_its_data() {
    let srv = TestServer::spawn_with(|cfg| cfg.dashboard.public = false).await;
    let token = srv.add_agent("viewer", Role::Agent, &[]).await;
    let http = reqwest::Client::new();
    assert_eq!(http.get(srv.url("/")).send().await.unwrap().status(), 200);
    for path in ["/dashboard/snapshot", "/dashboard/events"] {
        let r = http.get(srv.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let r = http
        .get(srv.url("/dashboard/snapshot"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["public"], false);
}

#[tokio::test]
async fn dashboard_feed_is_live_and_leaves_out_direct_message_text() {
    let srv = TestServer::spawn().await;
    let op = srv.add_agent("op", Role::Operator, &[]).await;
    let _a = srv.agent("a", &[]).await;
    let http = reqwest::Client::new();
    let mut feed = SseStream::open(http.get(srv.url("/dashboard/events"))).await;
    let r = http
        .post(srv.url("/api/messages"))
        .bearer_auth(&op)
        .json(&json!({"to": "a", "text": "a secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m = feed.until("message").await.json();
    assert_eq!(m["data"]["from"], "op");
    assert_eq!(m["data"]["to"], "a");
    assert_eq!(m["data"]["text"], Value::Null);
    let r = http
        .post(srv.url("/api/tasks"))
        .bearer_auth(&op)
        .json(&json!({"title": "seen live"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let t = feed.until("task.created").await.json();
    assert_eq!(t["data"]["task"]["title"], "seen live");
}
