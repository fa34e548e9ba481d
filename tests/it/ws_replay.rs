//! Catching up after downtime (issue 17, docs/protocol.md "Catching up"):
//! replay in pages beside the requests, live events after it, the agent
//! asking for less, bad resume values, a replay failing half way, and
//! retention with `resume_gap`. Every test runs on every available backend.

use crate::common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use swarmbridge::config::Config;
use swarmbridge::core::model::{Caller, Platform, Role};
use swarmbridge::core::store::SeqRange;

/// Pages of 3 events, so a small backlog takes many pages.
fn small_pages(cfg: &mut Config) {
    cfg.events.replay_page = 3;
}

/// The command line's identity, writing straight to the core (no rate limits).
fn cli() -> Caller {
    Caller {
        identity: "cli:test".into(),
        role: Role::Admin,
        capabilities: vec![],
        platform: Platform::Cli,
    }
}

/// Stores `n` messages `{prefix}{i}` to `to`.
async fn backlog(srv: &TestServer, to: &str, prefix: &str, n: usize) {
    for i in 0..n {
        srv.core()
            .send_message(&cli(), to, format!("{prefix}{i}"))
            .await
            .expect("message stored");
    }
}

/// Says hello with `token` plus `extra`.
async fn connect(srv: &TestServer, token: &str, extra: Value) -> Client {
    Client::hello(&srv.ws_url(), token, extra).await
}

/// Reads `message` events until one has `last` as its text; returns
/// `(seq, text)` of each, failing on anything out of `seq` order.
async fn messages_until(c: &mut Client, last: &str) -> Vec<(i64, String)> {
    let mut got: Vec<(i64, String)> = Vec::new();
    loop {
        let v = c.recv().await;
        if v["type"] != "event" {
            continue;
        }
        let seq = v["seq"].as_i64().expect("seq");
        if let Some((prev, _)) = got.last() {
            assert!(
                seq > *prev,
                "seq {seq} after {prev}: not strictly increasing"
            );
        }
        let text = v["data"]["text"].as_str().unwrap_or_default().to_string();
        got.push((seq, text.clone()));
        if text == last {
            return got;
        }
    }
}

fn texts(got: &[(i64, String)]) -> Vec<String> {
    got.iter().map(|(_, t)| t.clone()).collect()
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test]
async fn a_backlog_of_many_pages_is_replayed_once_in_seq_order() {
    on_every_backend(small_pages, |srv| async move {
        let token = srv.add_agent("w", Role::Agent, &[]).await;
        backlog(&srv, "w", "m", 20).await;
        let mut w = connect(&srv, &token, json!({})).await;
        let got = messages_until(&mut w, "m19").await;
        assert_eq!(texts(&got), numbered("m", 20));
    })
    .await;
}

#[tokio::test]
async fn live_events_during_a_replay_come_after_it_without_gaps_or_duplicates() {
    on_every_backend(small_pages, |srv| async move {
        let token = srv.add_agent("w", Role::Agent, &[]).await;
        backlog(&srv, "w", "old", 30).await;
        let mut w = connect(&srv, &token, json!({})).await;
        // written while the replay is under way
        backlog(&srv, "w", "new", 30).await;
        let got = messages_until(&mut w, "new29").await;
        let mut want = numbered("old", 30);
        want.extend(numbered("new", 30));
        assert_eq!(texts(&got), want);
        // and nothing twice after the end either
        w.assert_alive().await;
    })
    .await;
}

#[tokio::test]
async fn a_request_sent_during_a_replay_is_answered_before_the_replay_ends() {
    on_every_backend(
        |cfg| cfg.events.replay_page = 1,
        |srv| async move {
            let token = srv.add_agent("w", Role::Agent, &[]).await;
            backlog(&srv, "w", "m", 300).await;
            let mut w = connect(&srv, &token, json!({})).await;
            w.send(json!({"type":"ping","id":"during"})).await;
            let mut events_before_pong = 0;
            loop {
                let v = w.recv().await;
                if v["type"] == "pong" {
                    assert_eq!(v["re"], "during", "{v}");
                    break;
                }
                events_before_pong += 1;
            }
            assert!(
                events_before_pong < 300,
                "the ping was answered only after all 300 replayed events"
            );
            let rest = messages_until(&mut w, "m299").await;
            assert_eq!(events_before_pong + rest.len(), 300);
        },
    )
    .await;
}

#[tokio::test]
async fn replay_limit_replays_only_the_newest_waiting_events() {
    on_every_backend(small_pages, |srv| async move {
        let token = srv.add_agent("w", Role::Agent, &[]).await;
        backlog(&srv, "w", "m", 10).await;
        let mut w = connect(&srv, &token, json!({"replay_limit": 3})).await;
        assert_eq!(w.welcome["replay"]["limited"], true, "{}", w.welcome);
        backlog(&srv, "w", "live", 1).await;
        let got = messages_until(&mut w, "live0").await;
        assert_eq!(texts(&got), vec!["m7", "m8", "m9", "live0"]);
    })
    .await;
}

#[tokio::test]
async fn replay_limit_zero_starts_with_live_events() {
    on_every_backend(small_pages, |srv| async move {
        let token = srv.add_agent("w", Role::Agent, &[]).await;
        backlog(&srv, "w", "m", 5).await;
        let mut w = connect(&srv, &token, json!({"replay_limit": 0})).await;
        backlog(&srv, "w", "live", 1).await;
        let got = messages_until(&mut w, "live0").await;
        assert_eq!(texts(&got), vec!["live0"]);
    })
    .await;
}

/// Says hello with a bad `resume_from`; expects `welcome`, then a
/// `bad_request` naming the field, then the replay from the stored ack
/// and a usable connection.
async fn bad_resume_is_refused_after_welcome(resume_from: Value, says: &str) {
    on_every_backend(small_pages, |srv| {
        let resume_from = resume_from.clone();
        async move {
            let token = srv.add_agent("w", Role::Agent, &[]).await;
            backlog(&srv, "w", "m", 4).await;
            let mut w = connect(&srv, &token, json!({ "resume_from": resume_from })).await;
            let err = w.recv().await;
            assert_eq!(err["type"], "error", "{err}");
            assert_eq!(err["code"], "bad_request", "{err}");
            assert_eq!(err["re"], "hello", "{err}");
            let msg = err["message"].as_str().unwrap_or_default();
            assert!(msg.contains("resume_from") && msg.contains(says), "{err}");
            let got = messages_until(&mut w, "m3").await;
            assert_eq!(
                texts(&got),
                numbered("m", 4),
                "replayed from the stored ack"
            );
            w.assert_alive().await;
        }
    })
    .await;
}

#[tokio::test]
async fn resume_from_ahead_of_the_newest_seq_gets_an_error_and_the_connection_stays_usable() {
    bad_resume_is_refused_after_welcome(json!(1_000_000), "ahead of the newest").await;
}

#[tokio::test]
async fn a_negative_resume_from_gets_an_error_and_the_connection_stays_usable() {
    bad_resume_is_refused_after_welcome(json!(-5), "negative").await;
}

#[tokio::test]
async fn a_resume_from_that_is_not_a_number_gets_an_error_and_the_connection_stays_usable() {
    bad_resume_is_refused_after_welcome(json!("seven"), "whole number").await;
}

/// Runs `sql` on the test server's database, as an operator's repair would.
async fn run_sql(srv: &TestServer, sql: &str) {
    use sqlx::Connection;
    match &srv.pg {
        Some(pg) => {
            let mut c = sqlx::PgConnection::connect(&pg.url).await.expect("pg");
            sqlx::query(sql).execute(&mut c).await.expect("sql runs");
        }
        None => {
            let url = format!("sqlite://{}", srv.db.display());
            let mut c = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
            sqlx::query(sql).execute(&mut c).await.expect("sql runs");
        }
    }
}

#[tokio::test]
async fn a_replay_failing_half_way_closes_1011_and_resuming_loses_and_doubles_nothing() {
    on_every_backend(
        |cfg| cfg.events.replay_page = 2,
        |srv| async move {
            let token = srv.add_agent("w", Role::Agent, &[]).await;
            backlog(&srv, "w", "m", 10).await;
            let seqs: Vec<i64> = srv
                .core()
                .store
                .agent_events("w", &[], SeqRange::after(0), 100)
                .await
                .expect("read")
                .iter()
                .map(|e| e.seq)
                .collect();
            assert_eq!(seqs.len(), 10);
            // The sixth event becomes unreadable: the third page fails.
            let broken = seqs[5];
            run_sql(
                &srv,
                &format!("UPDATE events SET kind = 'bogus' WHERE seq = {broken}"),
            )
            .await;
            let mut w = connect(&srv, &token, json!({})).await;
            let mut first = Vec::new();
            let close = loop {
                match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut w.ws))
                    .await
                    .expect("a frame or the close within the wait")
                {
                    Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                        let v: Value = serde_json::from_str(&t).expect("JSON");
                        if v["type"] == "event" {
                            first.push(v["seq"].as_i64().expect("seq"));
                        }
                    }
                    Some(Ok(tokio_tungstenite::tungstenite::Message::Close(c))) => break c,
                    Some(Ok(_)) => continue,
                    other => panic!("no close frame: {other:?}"),
                }
            };
            assert_eq!(close_code(&close), Some(1011), "{close:?}");
            assert_eq!(first, seqs[..4].to_vec(), "the pages before the failure");
            // The database is repaired; the agent processed three of the four.
            run_sql(
                &srv,
                &format!("UPDATE events SET kind = 'message' WHERE seq = {broken}"),
            )
            .await;
            let mut w = connect(&srv, &token, json!({"resume_from": first[2]})).await;
            let got = messages_until(&mut w, "m9").await;
            let again: Vec<i64> = got.iter().map(|(s, _)| *s).collect();
            assert_eq!(again, seqs[3..].to_vec(), "every later event once");
        },
    )
    .await;
}

/// Reads `w`'s events from a fresh connection until `last`, acks it and
/// waits until the ack is stored; returns its `seq`.
async fn read_and_ack(srv: &TestServer, token: &str, last: &str) -> i64 {
    let mut w = connect(srv, token, json!({})).await;
    let got = messages_until(&mut w, last).await;
    let (seq, _) = got.last().cloned().expect("events");
    w.send(json!({"type":"ack","seq":seq})).await;
    w.assert_alive().await;
    // The periodic flusher may be writing it already: wait until it is stored.
    tokio::time::timeout(WAIT, async {
        loop {
            swarmbridge::core::sweeper::flush_acks(srv.core()).await;
            let stored = srv.core().store.agent("w").await.expect("read agent");
            if stored.is_some_and(|a| a.acked_seq >= seq) {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the ack is stored within the wait");
    seq
}

#[tokio::test]
async fn events_every_agent_acked_are_pruned_and_resuming_below_them_gets_resume_gap() {
    on_every_backend(small_pages, |srv| async move {
        let token = srv.add_agent("w", Role::Agent, &[]).await;
        backlog(&srv, "w", "m", 6).await;
        let acked = read_and_ack(&srv, &token, "m5").await;
        backlog(&srv, "w", "later", 1).await;
        let pruned = srv
            .core()
            .prune_events(Duration::ZERO, 2)
            .await
            .expect("prune");
        assert_eq!(pruned.pruned_to, acked, "pruned up to the ack, not beyond");
        let mut w = connect(&srv, &token, json!({"resume_from": 0})).await;
        let gap = w.recv().await;
        assert_eq!(gap["type"], "resume_gap", "{gap}");
        assert_eq!(gap["resume_from"], 0, "{gap}");
        assert_eq!(gap["pruned_to"], acked, "{gap}");
        assert_eq!(gap["replay_after"], acked, "{gap}");
        let got = messages_until(&mut w, "later0").await;
        assert_eq!(texts(&got), vec!["later0"]);
    })
    .await;
}

#[tokio::test]
async fn events_an_agent_has_not_acknowledged_are_not_pruned() {
    on_every_backend(small_pages, |srv| async move {
        let token = srv.add_agent("w", Role::Agent, &[]).await;
        srv.add_agent("away", Role::Agent, &[]).await;
        backlog(&srv, "w", "m", 4).await;
        read_and_ack(&srv, &token, "m3").await;
        let pruned = srv
            .core()
            .prune_events(Duration::ZERO, 100)
            .await
            .expect("prune");
        assert_eq!(pruned.removed, 0, "`away` acknowledged nothing");
        let mut w = connect(&srv, &token, json!({"resume_from": 0})).await;
        let got = messages_until(&mut w, "m3").await;
        assert_eq!(texts(&got), numbered("m", 4));
    })
    .await;
}

#[tokio::test]
async fn the_newest_event_is_never_pruned() {
    on_every_backend(small_pages, |srv| async move {
        let token = srv.add_agent("w", Role::Agent, &[]).await;
        backlog(&srv, "w", "m", 3).await;
        let acked = read_and_ack(&srv, &token, "m2").await;
        let pruned = srv
            .core()
            .prune_events(Duration::ZERO, 100)
            .await
            .expect("prune");
        assert_eq!(pruned.removed, 2);
        assert!(pruned.pruned_to < acked, "{pruned:?}");
        backlog(&srv, "w", "after", 1).await;
        let mut w = connect(&srv, &token, json!({})).await;
        let got = messages_until(&mut w, "after0").await;
        assert!(got[0].0 > acked, "seqs keep rising after pruning: {got:?}");
    })
    .await;
}

#[tokio::test]
async fn events_younger_than_the_retention_age_are_kept() {
    on_every_backend(small_pages, |srv| async move {
        let token = srv.add_agent("w", Role::Agent, &[]).await;
        backlog(&srv, "w", "m", 3).await;
        read_and_ack(&srv, &token, "m2").await;
        let pruned = srv
            .core()
            .prune_events(Duration::from_secs(3600), 100)
            .await
            .expect("prune");
        assert_eq!(pruned.removed, 0);
    })
    .await;
}

#[tokio::test]
async fn metrics_show_the_event_table_and_the_oldest_unacknowledged_event_per_agent() {
    on_every_backend(small_pages, |srv| async move {
        srv.add_agent("late", Role::Agent, &[]).await;
        backlog(&srv, "late", "m", 2).await;
        srv.core().refresh_event_figures().await.expect("figures");
        let body = reqwest::get(srv.url("/metrics"))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("body");
        assert!(body.contains("swarmbridge_events_stored 2\n"), "{body}");
        let line = body
            .lines()
            .find(|l| l.starts_with("swarmbridge_event_oldest_unacked_seq{agent=\"late\"}"))
            .unwrap_or_else(|| panic!("no oldest-unacked line for late: {body}"));
        let seq: i64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("a seq");
        assert!(seq > 0, "{line}");
    })
    .await;
}

#[tokio::test]
async fn agent_events_returns_only_this_agents_events_in_either_order() {
    on_every_backend(small_pages, |srv| async move {
        srv.add_agent("a", Role::Agent, &["rust"]).await;
        srv.add_agent("b", Role::Agent, &[]).await;
        let core = srv.core();
        core.send_message(&cli(), "a", "to a".into())
            .await
            .expect("msg");
        core.send_message(&cli(), "b", "to b".into())
            .await
            .expect("msg");
        core.broadcast(&cli(), "all".into(), None)
            .await
            .expect("broadcast");
        let mut boss = srv.admin("boss").await;
        boss.create_task(json!({"title":"needs go","requires":["go"]}))
            .await;
        boss.create_task(json!({"title":"needs rust","requires":["rust"]}))
            .await;
        let caps = vec!["rust".to_string()];
        let all = core
            .store
            .agent_events("a", &caps, SeqRange::after(0), 100)
            .await
            .expect("read");
        let kinds: Vec<&str> = all.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            vec!["message", "broadcast", "task.created"],
            "{all:?}"
        );
        assert!(all[0].data.contains("to a"), "{all:?}");
        assert!(all[2].data.contains("needs rust"), "{all:?}");
        let seqs: BTreeSet<i64> = all.iter().map(|e| e.seq).collect();
        let newest = core
            .store
            .agent_events(
                "a",
                &caps,
                SeqRange {
                    after: 0,
                    before: all[2].seq,
                    newest_first: true,
                },
                1,
            )
            .await
            .expect("read");
        assert_eq!(newest.len(), 1);
        assert_eq!(newest[0].seq, all[1].seq, "newest below the bound");
        assert!(seqs.contains(&newest[0].seq));
    })
    .await;
}
