//! Durable events: delivery now or on reconnect, acknowledgement, replay
//! from a `seq`, fan-out, restarts, and writes by another process
//! (protocol.md, "Durable events" and "Session").

use crate::common::*;
use serde_json::{json, Value};
use std::sync::Arc;
use swarmbridge::bus::Bus;
use swarmbridge::core::model::{Caller, NewTask, Platform, Role};

/// The next `message` event's text.
async fn next_message(c: &mut Client) -> Value {
    let ev = c.event("message").await;
    assert!(ev["seq"].is_i64(), "{ev}");
    ev
}

/// Sends a direct message and waits until it is stored.
async fn say(from: &mut Client, to: &str, text: &str) {
    from.ok(json!({"type":"msg.send","to":to,"text":text}), "ok")
        .await;
}

/// Says hello with `token`.
async fn connect(srv: &TestServer, token: &str) -> Client {
    Client::hello(&srv.ws_url(), token, json!({})).await
}

/// Alice and Bob connected; also Bob's token, to reconnect.
async fn alice_and_bob(srv: &TestServer) -> (Client, String, Client) {
    let a = srv.agent("alice", &[]).await;
    let token = srv.add_agent("bob", Role::Agent, &[]).await;
    let b = connect(srv, &token).await;
    (a, token, b)
}

/// Makes sure the server has read everything sent before (frames are read in order).
async fn sync(c: &mut Client) {
    c.assert_alive().await;
}

#[tokio::test]
async fn a_message_to_an_offline_agent_is_delivered_when_it_connects() {
    let srv = TestServer::spawn().await;
    let mut a = srv.agent("alice", &[]).await;
    let token = srv.add_agent("bob", Role::Agent, &[]).await;
    say(&mut a, "bob", "while you were out").await;
    let mut b = connect(&srv, &token).await;
    let ev = next_message(&mut b).await;
    assert_eq!(ev["data"]["from"], "alice", "{ev}");
    assert_eq!(ev["data"]["text"], "while you were out", "{ev}");
    assert!(ev["at"].is_string(), "{ev}");
}

#[tokio::test]
async fn a_message_to_a_connected_agent_arrives_live() {
    let srv = TestServer::spawn().await;
    let mut b = srv.agent("bob", &[]).await;
    let mut a = srv.agent("alice", &[]).await;
    say(&mut a, "bob", "hi bob").await;
    let ev = next_message(&mut b).await;
    assert_eq!(ev["data"]["text"], "hi bob", "{ev}");
}

#[tokio::test]
async fn unacknowledged_events_are_replayed_after_reconnect() {
    let srv = TestServer::spawn().await;
    let (mut a, token, mut b) = alice_and_bob(&srv).await;
    say(&mut a, "bob", "m1").await;
    let first = next_message(&mut b).await;
    drop(b);
    let mut b = connect(&srv, &token).await;
    let again = next_message(&mut b).await;
    assert_eq!(again["seq"], first["seq"], "{again}");
    assert_eq!(again["data"]["text"], "m1", "{again}");
}

#[tokio::test]
async fn acknowledged_events_are_not_replayed_after_reconnect() {
    let srv = TestServer::spawn().await;
    let (mut a, token, mut b) = alice_and_bob(&srv).await;
    say(&mut a, "bob", "m1").await;
    say(&mut a, "bob", "m2").await;
    let m1 = next_message(&mut b).await;
    next_message(&mut b).await;
    b.send(json!({"type":"ack","seq":m1["seq"]})).await;
    sync(&mut b).await;
    drop(b);
    let mut b = connect(&srv, &token).await;
    let ev = next_message(&mut b).await;
    assert_eq!(ev["data"]["text"], "m2", "m1 was acknowledged: {ev}");
}

#[tokio::test]
async fn an_ack_is_not_answered() {
    let srv = TestServer::spawn().await;
    let mut a = srv.agent("alice", &[]).await;
    let mut b = srv.agent("bob", &[]).await;
    say(&mut a, "bob", "m1").await;
    let m1 = next_message(&mut b).await;
    // frames are answered in order: a reply to the ack would come before the pong
    b.send(json!({"type":"ack","id":"a1","seq":m1["seq"]}))
        .await;
    b.send(json!({"type":"ping","id":"p1"})).await;
    let next = b.reply().await;
    assert_eq!(next["re"], "p1", "ack got a reply: {next}");
}

#[tokio::test]
async fn resume_from_replays_exactly_the_events_after_that_seq() {
    let srv = TestServer::spawn().await;
    let (mut a, token, mut b) = alice_and_bob(&srv).await;
    for t in ["m1", "m2", "m3"] {
        say(&mut a, "bob", t).await;
    }
    let m1 = next_message(&mut b).await;
    next_message(&mut b).await;
    next_message(&mut b).await;
    drop(b);
    let mut b = Client::hello(&srv.ws_url(), &token, json!({"resume_from": m1["seq"]})).await;
    // then one live event, so "nothing else was replayed" needs no timing
    say(&mut a, "bob", "live").await;
    let mut texts = vec![];
    loop {
        let v = b.recv().await;
        assert_eq!(v["type"], "event", "{v}");
        let t = v["data"]["text"].as_str().unwrap().to_string();
        texts.push(t.clone());
        if t == "live" {
            break;
        }
    }
    assert_eq!(texts, vec!["m2", "m3", "live"]);
}

#[tokio::test]
async fn resume_from_replays_events_even_if_they_were_acknowledged() {
    let srv = TestServer::spawn().await;
    let (mut a, token, mut b) = alice_and_bob(&srv).await;
    say(&mut a, "bob", "m1").await;
    say(&mut a, "bob", "m2").await;
    let m1 = next_message(&mut b).await;
    let m2 = next_message(&mut b).await;
    b.send(json!({"type":"ack","seq":m2["seq"]})).await;
    sync(&mut b).await;
    drop(b);
    let mut b = Client::hello(&srv.ws_url(), &token, json!({"resume_from": m1["seq"]})).await;
    let ev = next_message(&mut b).await;
    assert_eq!(ev["data"]["text"], "m2", "{ev}");
}

#[tokio::test]
async fn a_broadcast_reaches_every_connected_agent() {
    let srv = TestServer::spawn().await;
    let mut sender = srv.agent("sender", &[]).await;
    let mut others = vec![];
    for i in 0..5 {
        others.push(srv.agent(&format!("agent-{i}"), &[]).await);
    }
    sender
        .ok(
            json!({"type":"broadcast","text":"all hands","topic":"news"}),
            "ok",
        )
        .await;
    for c in &mut others {
        let ev = c.event("broadcast").await;
        assert_eq!(ev["data"]["from"], "sender", "{ev}");
        assert_eq!(ev["data"]["text"], "all hands", "{ev}");
        assert_eq!(ev["data"]["topic"], "news", "{ev}");
    }
}

#[tokio::test]
async fn a_broadcast_without_topic_has_a_null_topic() {
    let srv = TestServer::spawn().await;
    let mut sender = srv.agent("sender", &[]).await;
    let mut other = srv.agent("other", &[]).await;
    sender
        .ok(json!({"type":"broadcast","text":"hello"}), "ok")
        .await;
    let ev = other.event("broadcast").await;
    assert!(ev["data"]["topic"].is_null(), "{ev}");
}

#[tokio::test]
async fn an_agent_with_two_connections_gets_each_event_on_both() {
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("bob", Role::Agent, &[]).await;
    let mut b1 = connect(&srv, &token).await;
    let mut b2 = connect(&srv, &token).await;
    let mut a = srv.agent("alice", &[]).await;
    say(&mut a, "bob", "to both").await;
    let e1 = next_message(&mut b1).await;
    let e2 = next_message(&mut b2).await;
    assert_eq!(e1["data"]["text"], "to both");
    assert_eq!(e1, e2);
}

#[tokio::test]
async fn event_seq_is_strictly_increasing_for_an_agent_across_replay_and_live_events() {
    let srv = TestServer::spawn().await;
    let mut a = srv.agent("alice", &[]).await;
    let token = srv.add_agent("bob", Role::Agent, &[]).await;
    // replayed: messages, broadcasts and task events while bob is offline
    for i in 0..3 {
        say(&mut a, "bob", &format!("offline {i}")).await;
        a.ok(json!({"type":"broadcast","text":format!("b{i}")}), "ok")
            .await;
        a.create_task(json!({"title": format!("t{i}")})).await;
    }
    let mut b = connect(&srv, &token).await;
    // live
    for i in 0..3 {
        say(&mut a, "bob", &format!("online {i}")).await;
        a.create_task(json!({"title": format!("live {i}")})).await;
    }
    say(&mut a, "bob", "last").await;
    let mut seqs = vec![];
    loop {
        let v = b.recv().await;
        assert_eq!(v["type"], "event", "{v}");
        seqs.push(v["seq"].as_i64().expect("seq is an integer"));
        if v["data"]["text"] == "last" {
            break;
        }
    }
    assert_eq!(seqs.len(), 9 + 7, "every event exactly once: {seqs:?}");
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seq not strictly increasing: {seqs:?}"
    );
}

#[tokio::test]
async fn msg_send_to_an_unknown_agent_gets_not_found() {
    let srv = TestServer::spawn().await;
    let mut a = srv.agent("alice", &[]).await;
    a.err(
        json!({"type":"msg.send","to":"nobody","text":"hello?"}),
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn tasks_survive_a_server_restart() {
    let mut srv = TestServer::spawn().await;
    let token = srv.add_agent("alice", Role::Agent, &[]).await;
    let mut a = connect(&srv, &token).await;
    let open = a
        .create_task(json!({"title":"open one","priority":3}))
        .await;
    let claimed = a.create_task(json!({"title":"claimed one"})).await;
    a.ok(json!({"type":"task.claim","task_id":claimed["id"]}), "task")
        .await;
    drop(a);
    srv.restart().await;
    let mut a = connect(&srv, &token).await;
    let r = a
        .ok(json!({"type":"task.get","task_id":open["id"]}), "task")
        .await;
    assert_eq!(r["task"]["title"], "open one", "{r}");
    assert_eq!(r["task"]["state"], "open", "{r}");
    assert_eq!(r["task"]["priority"], 3, "{r}");
    let r = a
        .ok(json!({"type":"task.get","task_id":claimed["id"]}), "task")
        .await;
    assert_eq!(r["task"]["state"], "claimed", "{r}");
    assert_eq!(r["task"]["assignee"], "alice", "{r}");
    let s = a.ok(json!({"type":"status"}), "status").await;
    assert_eq!(s["tasks"]["open"], 1, "{s}");
    assert_eq!(s["tasks"]["claimed"], 1, "{s}");
}

#[tokio::test]
async fn undelivered_messages_are_replayed_after_a_server_restart() {
    let mut srv = TestServer::spawn().await;
    let mut a = srv.agent("alice", &[]).await;
    let token = srv.add_agent("bob", Role::Agent, &[]).await;
    say(&mut a, "bob", "before the restart").await;
    drop(a);
    srv.restart().await;
    let mut b = connect(&srv, &token).await;
    let ev = next_message(&mut b).await;
    assert_eq!(ev["data"]["text"], "before the restart", "{ev}");
    assert_eq!(ev["data"]["from"], "alice", "{ev}");
}

#[tokio::test]
async fn acknowledgements_survive_a_server_restart() {
    let mut srv = TestServer::spawn().await;
    let (mut a, token, mut b) = alice_and_bob(&srv).await;
    say(&mut a, "bob", "m1").await;
    let m1 = next_message(&mut b).await;
    b.send(json!({"type":"ack","seq":m1["seq"]})).await;
    sync(&mut b).await;
    drop(a);
    drop(b);
    srv.restart().await;
    let token_a = srv.add_agent("carol", Role::Agent, &[]).await;
    let mut c = Client::hello(&srv.ws_url(), &token_a, json!({})).await;
    say(&mut c, "bob", "m2").await;
    let mut b = connect(&srv, &token).await;
    let ev = next_message(&mut b).await;
    assert_eq!(
        ev["data"]["text"], "m2",
        "m1 was acknowledged before the restart: {ev}"
    );
}

#[tokio::test]
async fn seq_keeps_increasing_across_a_server_restart() {
    let mut srv = TestServer::spawn().await;
    let mut a = srv.agent("alice", &[]).await;
    let token = srv.add_agent("bob", Role::Agent, &[]).await;
    say(&mut a, "bob", "m1").await;
    let token_a = srv.add_agent("carol", Role::Agent, &[]).await;
    drop(a);
    srv.restart().await;
    let mut c = Client::hello(&srv.ws_url(), &token_a, json!({})).await;
    say(&mut c, "bob", "m2").await;
    let mut b = connect(&srv, &token).await;
    let e1 = next_message(&mut b).await;
    let e2 = next_message(&mut b).await;
    assert_eq!(e1["data"]["text"], "m1");
    assert_eq!(e2["data"]["text"], "m2");
    assert!(e2["seq"].as_i64() > e1["seq"].as_i64(), "{e1} then {e2}");
}

#[tokio::test]
async fn a_task_created_by_another_process_reaches_a_connected_agent() {
    let srv = TestServer::spawn().await;
    let mut agent = srv.agent("rusty", &["rust"]).await;
    let id = create_task_from_another_process(
        &srv,
        NewTask {
            title: "from the cli".into(),
            requires: vec!["rust".into()],
            ..NewTask::default()
        },
    )
    .await;
    let ev = agent.event("task.created").await;
    assert_eq!(ev["data"]["task"]["id"], id, "{ev}");
    assert_eq!(ev["data"]["task"]["created_by"], "cli:root", "{ev}");
}

fn titled(title: &str) -> NewTask {
    NewTask {
        title: title.into(),
        ..NewTask::default()
    }
}

/// What `swarmbridge task add` does: its own core on the same database.
async fn create_task_from_another_process(srv: &TestServer, new: NewTask) -> i64 {
    let cli = swarmbridge::server::open_core(&srv.cfg, Arc::new(Bus::new()))
        .await
        .unwrap();
    let caller = Caller {
        identity: "cli:root".into(),
        role: Role::Admin,
        capabilities: vec![],
        platform: Platform::Cli,
    };
    cli.create_task(&caller, new).await.unwrap().id
}

#[tokio::test]
async fn a_task_created_by_another_process_is_claimable() {
    let srv = TestServer::spawn().await;
    let mut agent = srv.agent("rusty", &[]).await;
    let id = create_task_from_another_process(&srv, titled("from the cli")).await;
    let r = agent.ok(json!({"type":"task.claim"}), "task").await;
    assert_eq!(r["task"]["id"], id, "{r}");
}

/// The server publishes external events before it recounts tasks
/// (src/store/sqlite.rs, `publish_from_disk`), so an agent can hear of a task
/// that `status` does not count yet. While that order stands this is a race
/// and the test fails intermittently (about 1 run in 6 alone, more under load).
#[tokio::test]
async fn status_counts_a_task_created_by_another_process_once_its_event_arrived() {
    let srv = TestServer::spawn().await;
    let mut agent = srv.agent("rusty", &[]).await;
    create_task_from_another_process(&srv, titled("from the cli")).await;
    agent.event("task.created").await;
    let s = agent.ok(json!({"type":"status"}), "status").await;
    assert_eq!(
        s["tasks"]["open"], 1,
        "told of the task by task.created, but status does not count it: {s}"
    );
}
