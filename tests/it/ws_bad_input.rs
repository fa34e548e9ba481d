//! Bad input on an open session: every malformed, oversized or excessive
//! frame gets its error code, and only the cases the protocol names close
//! the connection (protocol.md, "Transport" and "Requests and replies").

use crate::common::*;
use futures_util::SinkExt;
use serde_json::{json, Value};
use swarmbridge::config::Rate;
use swarmbridge::core::model::Role;
use tokio_tungstenite::tungstenite::Message;

/// Sends `text` as is and returns the reply (an error is expected).
async fn bad_frame(c: &mut Client, text: &str) -> Value {
    c.send_text(text).await;
    c.reply().await
}

fn assert_bad_request(v: &Value) {
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["code"], "bad_request", "{v}");
    assert!(
        v["message"].as_str().is_some_and(|m| !m.is_empty()),
        "the message should say what is wrong: {v}"
    );
}

#[tokio::test]
async fn malformed_json_gets_bad_request_and_the_connection_stays_open() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    let v = bad_frame(&mut c, r#"{"type":"ping","#).await;
    assert_bad_request(&v);
    c.assert_alive().await;
}

#[tokio::test]
async fn a_frame_that_is_not_a_json_object_gets_bad_request_and_the_connection_stays_open() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    let v = bad_frame(&mut c, r#"["ping"]"#).await;
    assert_bad_request(&v);
    c.assert_alive().await;
}

#[tokio::test]
async fn an_unknown_type_gets_bad_request_and_the_connection_stays_open() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    let v = bad_frame(&mut c, r#"{"type":"task.explode"}"#).await;
    assert_bad_request(&v);
    c.assert_alive().await;
}

#[tokio::test]
async fn a_missing_field_gets_bad_request_and_the_connection_stays_open() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    let v = bad_frame(&mut c, r#"{"type":"msg.send","to":"agent-1"}"#).await;
    assert_bad_request(&v);
    assert!(v["message"].as_str().unwrap().contains("text"), "{v}");
    c.assert_alive().await;
}

#[tokio::test]
async fn a_mistyped_field_gets_bad_request_and_the_connection_stays_open() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    let v = bad_frame(&mut c, r#"{"type":"task.get","task_id":"seven"}"#).await;
    assert_bad_request(&v);
    c.assert_alive().await;
}

#[tokio::test]
async fn errors_for_bad_frames_carry_the_frames_id_as_re() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    for (id, frame) in [
        ("u1", json!({"type":"no.such.type","id":"u1"})),
        ("m1", json!({"type":"msg.send","id":"m1","to":"agent-1"})),
        ("t1", json!({"type":"task.get","id":"t1","task_id":"x"})),
        ("n1", json!({"id":"n1"})),
    ] {
        c.send(frame).await;
        let v = c.reply().await;
        assert_bad_request(&v);
        assert_eq!(v["re"], id, "{v}");
    }
}

#[tokio::test]
async fn a_frame_larger_than_max_frame_bytes_gets_payload_too_large_and_close_1009() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    let pad = "x".repeat(65536);
    c.send(json!({"type":"ping","id":"big","pad":pad})).await;
    let v = c.reply().await;
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["code"], "payload_too_large", "{v}");
    assert_eq!(close_code(&c.closed().await), Some(1009));
}

#[tokio::test]
async fn a_frame_of_exactly_max_frame_bytes_is_accepted() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    let skeleton = json!({"type":"ping","id":"edge","pad":""}).to_string();
    let pad = "x".repeat(65536 - skeleton.len());
    let frame = json!({"type":"ping","id":"edge","pad":pad}).to_string();
    assert_eq!(frame.len(), 65536);
    c.send_text(frame).await;
    let v = c.reply().await;
    assert_eq!(v["type"], "pong", "{v}");
}

#[tokio::test]
async fn a_binary_frame_gets_bad_request_and_the_connection_stays_open() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    c.ws.send(Message::Binary(br#"{"type":"ping"}"#.to_vec().into()))
        .await
        .unwrap();
    let v = c.reply().await;
    assert_bad_request(&v);
    c.assert_alive().await;
}

#[tokio::test]
async fn msg_send_with_4001_characters_of_text_gets_bad_request() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    srv.add_agent("agent-2", Role::Agent, &[]).await;
    c.err(
        json!({"type":"msg.send","to":"agent-2","text":"a".repeat(4001)}),
        "bad_request",
    )
    .await;
    c.assert_alive().await;
}

#[tokio::test]
async fn msg_send_with_4000_characters_of_text_is_accepted() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    srv.add_agent("agent-2", Role::Agent, &[]).await;
    c.ok(
        json!({"type":"msg.send","to":"agent-2","text":"a".repeat(4000)}),
        "ok",
    )
    .await;
}

#[tokio::test]
async fn the_text_limit_counts_characters_not_bytes() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    srv.add_agent("agent-2", Role::Agent, &[]).await;
    // 4000 characters, 8000 bytes
    c.ok(
        json!({"type":"msg.send","to":"agent-2","text":"é".repeat(4000)}),
        "ok",
    )
    .await;
}

#[tokio::test]
async fn max_bad_frames_in_a_row_close_the_connection_with_1008() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    assert_eq!(c.welcome["limits"]["max_bad_frames"], 20);
    for _ in 0..20 {
        assert_bad_request(&bad_frame(&mut c, "not json").await);
    }
    assert_eq!(close_code(&c.closed().await), Some(1008));
}

#[tokio::test]
async fn nineteen_bad_frames_do_not_close_the_connection() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    for _ in 0..19 {
        assert_bad_request(&bad_frame(&mut c, "not json").await);
    }
    c.assert_alive().await;
}

#[tokio::test]
async fn a_good_frame_resets_the_count_of_bad_frames_in_a_row() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    for _ in 0..19 {
        assert_bad_request(&bad_frame(&mut c, "not json").await);
    }
    c.assert_alive().await;
    // another 19 make 38 bad frames, but never 20 in a row
    for _ in 0..19 {
        assert_bad_request(&bad_frame(&mut c, "not json").await);
    }
    c.assert_alive().await;
}

#[tokio::test]
async fn max_bad_frames_is_configurable() {
    let srv = TestServer::spawn_with(|cfg| cfg.limits.max_bad_frames = 3).await;
    let mut c = srv.agent("agent-1", &[]).await;
    assert_eq!(c.welcome["limits"]["max_bad_frames"], 3);
    for _ in 0..3 {
        assert_bad_request(&bad_frame(&mut c, "{}").await);
    }
    assert_eq!(close_code(&c.closed().await), Some(1008));
}

#[tokio::test]
async fn an_id_longer_than_64_characters_gets_bad_request() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    c.send(json!({"type":"ping","id":"i".repeat(65)})).await;
    let v = c.reply().await;
    assert_bad_request(&v);
    c.assert_alive().await;
}

#[tokio::test]
async fn an_id_of_64_characters_is_echoed_as_re() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    let id = "i".repeat(64);
    c.send(json!({"type":"ping","id":id})).await;
    let v = c.reply().await;
    assert_eq!(v["type"], "pong", "{v}");
    assert_eq!(v["re"], json!(id), "{v}");
}

/// A server where an agent may broadcast twice, then once every 10 s.
async fn spawn_with_tight_broadcast_rate() -> TestServer {
    TestServer::spawn_with(|cfg| {
        cfg.limits.rates.insert(
            "broadcast".into(),
            Rate {
                per_s: 0.1,
                burst: 2,
            },
        );
    })
    .await
}

#[tokio::test]
async fn exceeding_a_rate_limit_gets_rate_limited_with_retry_after_ms() {
    let srv = spawn_with_tight_broadcast_rate().await;
    let mut c = srv.agent("agent-1", &[]).await;
    for i in 0..2 {
        c.ok(json!({"type":"broadcast","text":format!("b{i}")}), "ok")
            .await;
    }
    let v = c
        .err(json!({"type":"broadcast","text":"b2"}), "rate_limited")
        .await;
    assert!(
        v["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0),
        "retry_after_ms should be > 0: {v}"
    );
    // other request classes are not limited by it
    c.assert_alive().await;
}

#[tokio::test]
async fn a_rate_limited_request_is_not_executed() {
    let srv = spawn_with_tight_broadcast_rate().await;
    let mut sender = srv.agent("sender", &[]).await;
    let mut listener = srv.agent("listener", &[]).await;
    for i in 0..2 {
        sender
            .ok(json!({"type":"broadcast","text":format!("b{i}")}), "ok")
            .await;
    }
    sender
        .err(json!({"type":"broadcast","text":"b2"}), "rate_limited")
        .await;
    // a marker sent after the refused broadcast: had b2 been executed, it
    // would arrive before the marker
    sender
        .ok(
            json!({"type":"msg.send","to":"listener","text":"marker"}),
            "ok",
        )
        .await;
    let mut seen = vec![];
    loop {
        let v = listener.recv().await;
        if v["type"] != "event" {
            continue;
        }
        let text = v["data"]["text"].as_str().unwrap_or_default().to_string();
        seen.push(text.clone());
        if text == "marker" {
            break;
        }
    }
    assert_eq!(seen, vec!["b0", "b1", "marker"]);
}

/// A catalog directory holding the embedded files, `edit` applied to each
/// (file name, text); files for which it returns None are left out.
fn catalog_dir(edit: impl Fn(&str, &str) -> Option<String>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in swarmbridge::catalog::EMBEDDED {
        if let Some(t) = edit(name, text) {
            std::fs::write(dir.path().join(name), t).expect("write catalog file");
        }
    }
    dir
}

#[tokio::test]
async fn a_catalog_dir_that_leaves_a_command_out_stops_start_up_naming_it() {
    let catalog = catalog_dir(|name, text| (name != "status.toml").then(|| text.to_string()));
    let db = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(&db.path().join("t.db"));
    cfg.catalog.dir = Some(catalog.path().display().to_string());
    let err = match swarmbridge::server::start(cfg).await {
        Ok(_) => panic!("started with a catalog that has no `status`"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("`status`"), "{err}");
}

#[tokio::test]
async fn the_catalogs_ws_and_http_platform_entries_are_enforced() {
    const ALL: &str = r#"platforms = ["discord", "twitch", "ws", "http", "mcp"]"#;
    // status.toml declares `status`, then `agents`: status leaves ws, agents leaves http
    let catalog = catalog_dir(|name, text| {
        Some(if name == "status.toml" {
            assert_eq!(text.matches(ALL).count(), 2, "status.toml changed");
            text.replacen(
                ALL,
                r#"platforms = ["discord", "twitch", "http", "mcp"]"#,
                1,
            )
            .replacen(ALL, r#"platforms = ["discord", "twitch", "ws", "mcp"]"#, 1)
        } else {
            text.to_string()
        })
    });
    let path = catalog.path().display().to_string();
    let srv = TestServer::spawn_with(move |cfg| cfg.catalog.dir = Some(path)).await;
    let mut a = srv.agent("a", &[]).await;
    let e = a.err(json!({"type":"status"}), "bad_request").await;
    assert!(e["message"].as_str().unwrap().contains("ws"), "{e}");
    a.ok(json!({"type":"agents"}), "agents").await;
    let token = srv.add_agent("h", Role::Agent, &[]).await;
    let (st, _) = http_api::get(&srv.http_url(), "/api/status", Some(&token)).await;
    assert_eq!(st, 200);
    let (st, v) = http_api::get(&srv.http_url(), "/api/agents", Some(&token)).await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["code"], "bad_request", "{v}");
}
