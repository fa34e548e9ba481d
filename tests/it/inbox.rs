//! The `inbox` command over HTTP (`POST /api/inbox`) and the WebSocket: an
//! agent reads its direct messages and broadcasts after a cursor, and
//! reading acknowledges them. Run on every backend.

use crate::common::*;
use serde_json::{json, Value};
use swarmbridge::core::model::Role;

#[tokio::test]
async fn an_agent_reads_its_messages_over_http_once_and_pages_with_the_cursor() {
    on_every_backend(
        |_| {},
        |srv| async move {
            let token = srv.add_agent("reader", Role::Agent, &[]).await;
            let mut peer = srv.agent("peer", &[]).await;
            let mut op = srv.operator("op").await;
            for text in ["one", "two", "three"] {
                peer.ok(
                    json!({"type": "msg.send", "to": "reader", "text": text}),
                    "ok",
                )
                .await;
            }
            // a task event for the reader between messages is not an inbox entry
            op.create_task(json!({"title": "not a message"})).await;
            op.ok(json!({"type": "broadcast", "text": "four"}), "ok")
                .await;
            let url = srv.http_url();
            let (st, page) =
                http_api::post(&url, "/api/inbox", Some(&token), json!({"limit": 2})).await;
            assert_eq!(st, 200, "{page}");
            let texts = |v: &Value| -> Vec<String> {
                v["messages"]
                    .as_array()
                    .expect("messages")
                    .iter()
                    .map(|m| m["text"].as_str().unwrap_or("").to_string())
                    .collect()
            };
            assert_eq!(texts(&page), ["one", "two"]);
            assert_eq!(page["more"], true);
            assert_eq!(page["next"], page["messages"][1]["seq"]);
            let (_, rest) = http_api::post(&url, "/api/inbox", Some(&token), json!({})).await;
            assert_eq!(texts(&rest), ["three", "four"], "{rest}");
            assert_eq!(rest["messages"][1]["kind"], "broadcast");
            assert_eq!(rest["messages"][1]["from"], "op");
            let (_, empty) = http_api::post(&url, "/api/inbox", Some(&token), json!({})).await;
            assert_eq!(texts(&empty), Vec::<String>::new(), "read once: {empty}");
            // an explicit cursor reads again from there
            let (_, again) = http_api::post(
                &url,
                "/api/inbox",
                Some(&token),
                json!({"seq": 0, "limit": 1}),
            )
            .await;
            assert_eq!(texts(&again), ["one"], "{again}");
        },
    )
    .await;
}

#[tokio::test]
async fn an_inbox_read_acknowledges_so_a_reconnect_replays_nothing_read() {
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("reader", Role::Agent, &[]).await;
    let mut peer = srv.agent("peer", &[]).await;
    peer.ok(
        json!({"type": "msg.send", "to": "reader", "text": "read me"}),
        "ok",
    )
    .await;
    let (_, page) = http_api::post(&srv.http_url(), "/api/inbox", Some(&token), json!({})).await;
    assert_eq!(page["messages"][0]["text"], "read me", "{page}");
    peer.ok(
        json!({"type": "msg.send", "to": "reader", "text": "new one"}),
        "ok",
    )
    .await;
    let mut reader = Client::hello(&srv.ws_url(), &token, json!({})).await;
    let m = reader.event("message").await;
    assert_eq!(
        m["data"]["text"], "new one",
        "only what was not read is replayed"
    );
}

#[tokio::test]
async fn a_bad_inbox_cursor_or_limit_is_refused_with_the_reason() {
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("reader", Role::Agent, &[]).await;
    let url = srv.http_url();
    for body in [
        json!({"limit": 0}),
        json!({"limit": 101}),
        json!({"seq": -1}),
        json!({"seq": "x"}),
    ] {
        let (st, v) = http_api::post(&url, "/api/inbox", Some(&token), body.clone()).await;
        assert_eq!(st, 400, "{body}: {v}");
        assert_eq!(v["error"]["code"], "bad_request", "{v}");
    }
    let mut ws = srv.agent("ws-reader", &[]).await;
    let v = ws.ok(json!({"type": "inbox"}), "inbox").await;
    assert_eq!(v["messages"], json!([]), "{v}");
}
