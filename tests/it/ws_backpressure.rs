//! Backpressure: a client that stops reading is cut off on its own, without
//! slowing delivery to anyone else, and catches up later with `resume_from`
//! (protocol.md, "Transport": `send_queue`; bus.rs).

use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use swarmbridge::core::model::Role;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Broadcasts in these tests: 4000 characters of 4 bytes, about 16 KB a frame,
/// so a reader that stops reading fills its TCP buffers after a few hundred.
const BROADCASTS: usize = 400;

fn broadcast_text(i: usize) -> String {
    format!("{i:04}:{}", "🦀".repeat(3995))
}

/// The index a broadcast's text starts with.
fn broadcast_index(ev: &Value) -> usize {
    ev["data"]["text"].as_str().expect("text")[..4]
        .parse()
        .expect("indexed broadcast")
}

/// A server with a small send queue whose admins are not rate limited.
async fn spawn() -> TestServer {
    TestServer::spawn_with(|cfg| {
        cfg.limits.exempt_roles = vec![Role::Admin];
        cfg.limits.send_queue = 64;
    })
    .await
}

/// Says hello over a socket with a tiny receive buffer, reads the welcome,
/// and hands the socket back; the caller then stops reading it.
async fn stalled_client(srv: &TestServer, token: &str) -> WebSocketStream<TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let addr = srv.running.as_ref().unwrap().local_addr();
    let stream = sock.connect(addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(srv.ws_url(), stream)
        .await
        .expect("websocket handshake");
    let hello = json!({"type":"hello","id":"h","token":token});
    ws.send(Message::Text(hello.to_string().into()))
        .await
        .unwrap();
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("welcome in time")
            .expect("open")
            .expect("no error");
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            assert_eq!(v["type"], "welcome", "{v}");
            return ws;
        }
    }
}

/// Reads a socket that stopped reading until the server ends it; returns
/// the broadcast events it had been sent. Fails if it is never ended.
async fn drain_until_cut_off(ws: &mut WebSocketStream<TcpStream>) -> Vec<Value> {
    let mut got = vec![];
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Err(_) => panic!(
                "the stalled connection was not ended (it got {} broadcasts, then nothing)",
                got.len()
            ),
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return got,
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["kind"] == "broadcast" {
                    got.push(v);
                }
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Sends `n` broadcasts, pipelined a window at a time, and waits for every `ok`.
async fn broadcast_many(sender: &mut Client, n: usize) {
    const WINDOW: usize = 16;
    let mut next = 0;
    while next < n {
        let end = (next + WINDOW).min(n);
        for i in next..end {
            sender
                .send(json!({"type":"broadcast","id":format!("b{i}"),"text":broadcast_text(i)}))
                .await;
        }
        let mut pending = end - next;
        while pending > 0 {
            let v = sender.recv().await;
            if v["type"] == "event" {
                continue;
            }
            assert_eq!(v["type"], "ok", "broadcast refused: {v}");
            pending -= 1;
        }
        next = end;
    }
}

/// Reads `n` broadcasts in order on each client, concurrently; returns
/// how long the slowest took.
async fn receive_all(clients: Vec<Client>, n: usize) -> Duration {
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for mut c in clients {
        set.spawn(async move {
            for i in 0..n {
                let ev = c.event("broadcast").await;
                assert_eq!(broadcast_index(&ev), i, "broadcasts out of order");
            }
            started.elapsed()
        });
    }
    let mut slowest = Duration::ZERO;
    while let Some(r) = set.join_next().await {
        slowest = slowest.max(r.expect("a reader missed broadcasts"));
    }
    slowest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_does_not_delay_broadcasts_to_fifty_other_clients() {
    let srv = spawn().await;
    let mut sender = srv.admin("sender").await;
    let mut readers = vec![];
    for i in 0..50 {
        readers.push(srv.agent(&format!("reader-{i}"), &[]).await);
    }
    let token = srv.add_agent("stalled", Role::Agent, &[]).await;
    let mut stalled = stalled_client(&srv, &token).await;
    let reading = tokio::spawn(receive_all(readers, BROADCASTS));
    broadcast_many(&mut sender, BROADCASTS).await;
    let slowest = reading.await.expect("every reader got every broadcast");
    // the scenario really stalled: the stalled client was cut off part way
    let got = drain_until_cut_off(&mut stalled).await;
    assert!(
        got.len() < BROADCASTS,
        "the stalled client was never behind (it got all {} broadcasts)",
        got.len()
    );
    eprintln!(
        "50 readers got {BROADCASTS} broadcasts in {slowest:?}; stalled got {}",
        got.len()
    );
}

/// An admin broadcasts [`BROADCASTS`] times while agent `stalled` reads
/// nothing; then the stalled socket is read until the server ended it.
/// Returns the sender, the stalled agent's token and what it had been sent.
async fn stall_one_client(srv: &TestServer) -> (Client, String, Vec<Value>) {
    let mut sender = srv.admin("sender").await;
    let token = srv.add_agent("stalled", Role::Agent, &[]).await;
    let mut stalled = stalled_client(srv, &token).await;
    broadcast_many(&mut sender, BROADCASTS).await;
    let got = drain_until_cut_off(&mut stalled).await;
    (sender, token, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected_once_its_send_queue_is_full() {
    let srv = spawn().await;
    let (mut sender, _, got) = stall_one_client(&srv).await;
    assert!(
        got.len() < BROADCASTS,
        "got all {} broadcasts; never fell behind",
        got.len()
    );
    // and the server no longer counts it as online
    let me = sender.agent_view("stalled").await;
    assert_eq!(me["online"], false, "{me}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cut_off_for_being_slow_catches_up_with_resume_from() {
    let srv = spawn().await;
    let (_sender, token, got) = stall_one_client(&srv).await;
    let (resume_from, next) = match got.last() {
        Some(last) => (last["seq"].clone(), broadcast_index(last) + 1),
        None => (json!(0), 0),
    };
    assert!(next < BROADCASTS, "never fell behind");
    let mut again = Client::hello(&srv.ws_url(), &token, json!({"resume_from": resume_from})).await;
    for i in next..BROADCASTS {
        let ev = again.event("broadcast").await;
        assert_eq!(broadcast_index(&ev), i, "{}", ev["seq"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_cut_off_while_a_write_is_pending_sees_close_code_1013() {
    let srv = spawn().await;
    let mut sender = srv.admin("sender").await;
    let token = srv.add_agent("slow", Role::Agent, &[]).await;
    let mut slow = stalled_client(&srv, &token).await;
    // Reads one frame every 10 ms: slower than the broadcasts come, so the
    // server's writes to it are pending when its queue overflows.
    let reader = tokio::spawn(async move {
        let mut frames = 0usize;
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            match tokio::time::timeout(WAIT, slow.next()).await {
                Err(_) => return (frames, Err("never ended")),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return (frames, Ok(frame.map(|f| u16::from(f.code))))
                }
                Ok(None) | Ok(Some(Err(_))) => {
                    return (frames, Err("dropped without a close frame"))
                }
                Ok(Some(Ok(_))) => frames += 1,
            }
        }
    });
    broadcast_many(&mut sender, BROADCASTS).await;
    let (frames, close) = reader.await.expect("reader");
    assert!(frames < BROADCASTS, "never fell behind ({frames} frames)");
    assert_eq!(close, Ok(Some(1013)), "after {frames} frames");
}
