//! Abuse of the listener: connections that never say hello, slowloris
//! clients, too many connections from one address or in total, guessed
//! tokens. Each ends in a clear refusal and a server that keeps serving
//! everyone else with bounded file descriptors.

use crate::common::child::ChildServer;
use crate::common::*;
use futures_util::future::join_all;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;

/// Opens a WebSocket and returns the HTTP refusal it got instead (status, JSON body).
async fn refused_upgrade(url: &str) -> (u16, Value) {
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => panic!("the upgrade was accepted"),
        Err(tungstenite::Error::Http(resp)) => {
            let body = resp.body().clone().unwrap_or_default();
            (
                resp.status().as_u16(),
                serde_json::from_slice(&body).unwrap_or(Value::Null),
            )
        }
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
    }
}

/// Waits (bounded) until `check` holds, polling.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_thousand_connections_that_never_say_hello_are_closed_and_fds_return_to_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ChildServer::start(dir.path(), &[("SWARMBRIDGE_LIMITS__HELLO_TIMEOUT_S", "1")]).await;
    let token = srv.add_agent("worker", &[]);
    let baseline = srv.open_fds();
    let url = srv.ws_url();
    let mut silent = Vec::new();
    for chunk in 0..10 {
        let opened = join_all((0..100).map(|_| Client::raw(&url))).await;
        silent.extend(opened);
        assert!(silent.len() == (chunk + 1) * 100);
    }
    // while they hang there, the server still answers a probe and an agent
    let health = reqwest::get(srv.url("/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    let mut agent = Client::hello(&url, &token, json!({})).await;
    agent.assert_alive().await;
    // every silent one is closed with 1008 and a reason
    let closes = join_all(silent.iter_mut().map(wait_close)).await;
    for c in &closes {
        assert_eq!(close_code(c), Some(1008), "{c:?}");
        assert!(c.as_ref().is_some_and(|c| c.reason.contains("hello")));
    }
    drop(silent);
    agent.assert_alive().await;
    eventually(
        "the server's descriptors are back near the baseline",
        || srv.open_fds() <= baseline + 8,
    )
    .await;
}

#[tokio::test]
async fn connections_beyond_the_per_address_limit_get_429_with_a_json_reason() {
    let srv = TestServer::spawn_with(|cfg| {
        cfg.server.max_connections_per_addr = 3;
        cfg.server.loopback_exempt = false;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(Client::raw(&srv.ws_url()).await);
    }
    let (status, body) = refused_upgrade(&srv.ws_url()).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("max_connections_per_addr")));
    // plain HTTP from the same address is refused the same way
    let resp = reqwest::get(srv.url("/health")).await.unwrap();
    assert_eq!(resp.status(), 429);
    // a connection given back makes room again
    drop(held.pop());
    let url = srv.ws_url();
    let deadline = Instant::now() + WAIT;
    loop {
        if tokio_tungstenite::connect_async(&url).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no room after a close");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn connections_beyond_the_total_limit_get_503_with_a_json_reason() {
    let srv = TestServer::spawn_with(|cfg| {
        cfg.server.max_connections = 2;
    })
    .await;
    let _a = Client::raw(&srv.ws_url()).await;
    let _b = Client::raw(&srv.ws_url()).await;
    let (status, body) = refused_upgrade(&srv.ws_url()).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("max_connections")));
}

#[tokio::test]
async fn a_connection_that_sends_no_complete_request_head_is_closed_after_the_header_timeout() {
    let srv = TestServer::spawn_with(|cfg| cfg.server.header_timeout_s = 1).await;
    let addr = srv.running.as_ref().unwrap().local_addr();
    // one says nothing, one trickles half a request head and stops
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    for conn in [&mut silent, &mut slow] {
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(WAIT, conn.read_to_end(&mut buf))
            .await
            .expect("the server closes the connection");
    }
    // and the server still answers
    let resp = reqwest::get(srv.url("/health")).await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn repeated_bad_tokens_from_one_address_are_rate_limited_with_a_retry_time() {
    let srv = TestServer::spawn_with(|cfg| {
        cfg.server.auth_failures = swarmbridge::config::Rate {
            per_s: 0.01,
            burst: 3,
        };
    })
    .await;
    let good = srv
        .add_agent("honest", swarmbridge::core::model::Role::Agent, &[])
        .await;
    let hello = |token: &str| json!({"type": "hello", "id": "h", "token": token});
    for _ in 0..3 {
        let mut c = Client::unwelcomed(Client::raw(&srv.ws_url()).await);
        c.send(hello("sbt_guess")).await;
        assert_eq!(c.reply().await["code"], "unauthorized");
    }
    // the fourth guess is refused with the wait, and the connection closed with 1013
    let mut c = Client::unwelcomed(Client::raw(&srv.ws_url()).await);
    c.send(hello("sbt_guess")).await;
    let e = c.reply().await;
    assert_eq!(e["code"], "rate_limited", "{e}");
    assert!(
        e["retry_after_ms"].as_u64().is_some_and(|ms| ms > 1000),
        "{e}"
    );
    assert_eq!(close_code(&c.closed().await), Some(1013));
    // while limited, even a good token from that address is refused ...
    let mut c = Client::unwelcomed(Client::raw(&srv.ws_url()).await);
    c.send(hello(&good)).await;
    assert_eq!(c.reply().await["code"], "rate_limited");
    // ... and so is the HTTP API, with 429 and Retry-After
    let resp = reqwest::Client::new()
        .get(srv.url("/api/status"))
        .bearer_auth("sbt_guess")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_some());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
}
