//! The session: hello and welcome, authentication, revocation, the hello
//! deadline, keep-alive and the idle limit (protocol.md, "Transport" and "Session").

use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use swarmbridge::bus::Bus;
use swarmbridge::core::model::Role;
use tokio_tungstenite::tungstenite::Message;

/// Asserts that at least `min` passed since `started` (a close came no sooner).
fn assert_not_sooner(started: Instant, min: Duration) {
    let took = started.elapsed();
    assert!(took >= min, "closed after {took:?}, sooner than {min:?}");
}

#[tokio::test]
async fn hello_with_a_valid_token_is_welcomed_with_agent_session_seq_heartbeat_and_limits() {
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("agent-1", Role::Agent, &["rust"]).await;
    let c = Client::hello(&srv.ws_url(), &token, json!({})).await;
    let w = &c.welcome;
    assert_eq!(w["re"], "hello", "{w}");
    assert_eq!(w["agent"], "agent-1", "{w}");
    let session = w["session"].as_str().expect("session is a string");
    assert!(
        uuid::Uuid::parse_str(session).is_ok(),
        "session is not a uuid: {w}"
    );
    assert!(w["seq"].as_i64().is_some_and(|s| s >= 0), "{w}");
    assert_eq!(w["heartbeat_s"], 20, "{w}");
    let l = &w["limits"];
    assert_eq!(l["max_frame_bytes"], 65536, "{w}");
    assert_eq!(l["max_bad_frames"], 20, "{w}");
    assert_eq!(l["max_text_chars"], 4000, "{w}");
    assert_eq!(l["max_prompt_chars"], 8000, "{w}");
    assert_eq!(l["max_claims"], 10, "{w}");
    assert!(l["send_queue"].as_u64().is_some_and(|q| q > 0), "{w}");
    let rates = &l["rates"];
    for (class, per_s, burst) in [
        ("requests", 50.0, 100),
        ("msg.send", 20.0, 50),
        ("broadcast", 2.0, 10),
        ("reason", 1.0, 5),
    ] {
        assert_eq!(rates[class]["per_s"].as_f64(), Some(per_s), "{class}: {w}");
        assert_eq!(rates[class]["burst"], burst, "{class}: {w}");
    }
}

#[tokio::test]
async fn two_connections_get_different_session_ids() {
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("agent-1", Role::Agent, &[]).await;
    let a = Client::hello(&srv.ws_url(), &token, json!({})).await;
    let b = Client::hello(&srv.ws_url(), &token, json!({})).await;
    assert_ne!(a.welcome["session"], b.welcome["session"]);
}

#[tokio::test]
async fn welcome_seq_is_the_newest_event_for_the_agent() {
    let srv = TestServer::spawn().await;
    let mut sender = srv.agent("sender", &[]).await;
    let token = srv.add_agent("reader", Role::Agent, &[]).await;
    srv.add_agent("other", Role::Agent, &[]).await;
    sender
        .ok(
            json!({"type":"msg.send","to":"reader","text":"for reader"}),
            "ok",
        )
        .await;
    let mut r = Client::hello(&srv.ws_url(), &token, json!({})).await;
    let ev = r.event("message").await;
    drop(r);
    // a later event for someone else does not change the reader's newest event
    sender
        .ok(
            json!({"type":"msg.send","to":"other","text":"not for reader"}),
            "ok",
        )
        .await;
    let r = Client::hello(&srv.ws_url(), &token, json!({})).await;
    assert_eq!(
        r.welcome["seq"], ev["seq"],
        "welcome.seq should be the reader's newest event ({}), got {}",
        ev["seq"], r.welcome
    );
}

#[tokio::test]
async fn hello_with_capabilities_replaces_the_stored_capabilities() {
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("agent-1", Role::Agent, &["rust"]).await;
    let mut c = Client::hello(
        &srv.ws_url(),
        &token,
        json!({"capabilities":["go","review"]}),
    )
    .await;
    let me = c.agent_view("agent-1").await;
    assert_eq!(me["capabilities"], json!(["go", "review"]), "{me}");
    assert_eq!(me["online"], true, "{me}");
}

/// Says hello (id "1") with `token` on a fresh socket; returns the reply
/// and the close code that followed it.
async fn refused_hello(srv: &TestServer, token: &str) -> (serde_json::Value, Option<u16>) {
    let mut c = Client::unwelcomed(Client::raw(&srv.ws_url()).await);
    c.send(json!({"type":"hello","id":"1","token":token})).await;
    let reply = c.recv().await;
    (reply, close_code(&c.closed().await))
}

#[tokio::test]
async fn hello_with_an_unknown_token_gets_unauthorized_and_close_1008() {
    let srv = TestServer::spawn().await;
    let (e, code) = refused_hello(&srv, "sbt_not_a_real_token").await;
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["code"], "unauthorized", "{e}");
    assert_eq!(e["re"], "1", "{e}");
    assert_eq!(code, Some(1008));
}

#[tokio::test]
async fn hello_with_a_revoked_token_gets_unauthorized_and_close_1008() {
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("agent-1", Role::Agent, &[]).await;
    srv.core().revoke_agent("agent-1").await.unwrap();
    let (e, code) = refused_hello(&srv, &token).await;
    assert_eq!(e["code"], "unauthorized", "{e}");
    assert_eq!(code, Some(1008));
}

#[tokio::test]
async fn revoking_an_agent_closes_its_open_connection_with_1008() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    c.assert_alive().await;
    srv.core().revoke_agent("agent-1").await.unwrap();
    assert_eq!(close_code(&c.closed().await), Some(1008));
}

#[tokio::test]
async fn revoking_from_another_process_closes_the_open_connection_with_1008() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    c.assert_alive().await;
    // what `swarmbridge agent revoke` does: its own core on the same database
    let cli = swarmbridge::server::open_core(&srv.cfg, Arc::new(Bus::new()))
        .await
        .unwrap();
    cli.revoke_agent("agent-1").await.unwrap();
    assert_eq!(close_code(&c.closed().await), Some(1008));
}

#[tokio::test]
async fn a_first_frame_other_than_hello_closes_with_1008() {
    let srv = TestServer::spawn().await;
    let mut ws = Client::raw(&srv.ws_url()).await;
    ws.send(Message::Text(
        json!({"type":"ping","id":"1"}).to_string().into(),
    ))
    .await
    .unwrap();
    assert_eq!(close_code(&wait_close(&mut ws).await), Some(1008));
}

#[tokio::test]
async fn no_hello_within_hello_timeout_closes_with_1008() {
    let srv = TestServer::spawn_with(|cfg| cfg.limits.hello_timeout_s = 1).await;
    let started = Instant::now();
    let mut ws = Client::raw(&srv.ws_url()).await;
    let code = close_code(&wait_close(&mut ws).await);
    assert_eq!(code, Some(1008));
    assert_not_sooner(started, Duration::from_millis(900));
}

#[tokio::test]
async fn ping_is_answered_by_pong_carrying_its_id() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    c.send(json!({"type":"ping","id":"p-42"})).await;
    let v = c.reply().await;
    assert_eq!(v["type"], "pong", "{v}");
    assert_eq!(v["re"], "p-42", "{v}");
}

#[tokio::test]
async fn a_websocket_ping_is_answered_with_a_websocket_pong() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    c.ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    loop {
        let m = tokio::time::timeout(WAIT, c.ws.next())
            .await
            .expect("timed out waiting for pong")
            .expect("connection ended")
            .expect("websocket error");
        match m {
            Message::Pong(p) => {
                assert_eq!(&p[..], b"are you there");
                break;
            }
            Message::Close(f) => panic!("closed instead of pong: {f:?}"),
            _ => continue,
        }
    }
}

#[tokio::test]
async fn an_idle_connection_is_closed_with_1008_after_three_heartbeats() {
    let srv = TestServer::spawn_with(|cfg| cfg.limits.heartbeat_s = 1).await;
    let mut c = srv.agent("agent-1", &[]).await;
    assert_eq!(c.welcome["heartbeat_s"], 1);
    let started = Instant::now();
    assert_eq!(close_code(&c.closed().await), Some(1008));
    assert_not_sooner(started, Duration::from_millis(2500));
}

#[tokio::test]
async fn pings_keep_a_connection_open_past_three_heartbeats() {
    let srv = TestServer::spawn_with(|cfg| cfg.limits.heartbeat_s = 1).await;
    let mut c = srv.agent("agent-1", &[]).await;
    let started = Instant::now();
    // one ping every half heartbeat, for twice the idle limit (pacing, not waiting)
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    while started.elapsed() < Duration::from_secs(6) {
        tick.tick().await;
        c.assert_alive().await;
    }
}

#[tokio::test]
async fn a_reply_that_follows_an_event_to_the_same_connection_is_not_held_back() {
    let srv = TestServer::spawn_with(|cfg| cfg.limits.exempt_roles = vec![Role::Admin]).await;
    let mut a = srv.admin("alice").await;
    srv.add_agent("bob", Role::Agent, &[]).await;
    // baseline: writes whose reply is the only frame alice gets
    let started = Instant::now();
    for i in 0..40 {
        a.ok(
            json!({"type":"msg.send","to":"bob","text":format!("m{i}")}),
            "ok",
        )
        .await;
    }
    let baseline = started.elapsed();
    // the same writes, but alice gets each one's event just before its reply
    let started = Instant::now();
    for i in 0..40 {
        a.ok(
            json!({"type":"msg.send","to":"alice","text":format!("m{i}")}),
            "ok",
        )
        .await;
    }
    let with_event = started.elapsed();
    assert!(
        with_event < baseline * 5 + Duration::from_millis(100),
        "40 requests took {with_event:?} when an event preceded each reply, \
         {baseline:?} otherwise"
    );
}
