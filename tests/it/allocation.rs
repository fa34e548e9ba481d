//! Learned allocation (docs/insights.md, "Learned allocation"): operators
//! see a ranking of the agents that can do a task with its reasons; in
//! `learned` mode a new task is offered to the best idle agent first, only
//! it may claim it during the offer window, and then anyone may.
//! (The claim tests of ws_tasks.rs run in learned mode too with
//! `SWARMBRIDGE_TASKS__ALLOCATION=learned`.)

use crate::common::*;
use serde_json::{json, Value};
use swarmbridge::config::Config;
use swarmbridge::core::allocation::AllocationMode;

fn learned(window_ms: u64) -> impl Fn(&mut Config) {
    move |cfg: &mut Config| {
        cfg.tasks.allocation = AllocationMode::Learned;
        cfg.tasks.offer_window_ms = window_ms;
    }
}

/// `good` completes three `render` tasks and `flaky` fails three (the
/// operator assigns them), so both have a record on that capability set.
async fn with_records(srv: &TestServer) -> (Client, Client, Client) {
    let mut op = srv.operator("op").await;
    let mut good = srv.agent("good", &["render"]).await;
    let mut flaky = srv.agent("flaky", &["render"]).await;
    for (name, agent, ok) in [("good", &mut good, true), ("flaky", &mut flaky, false)] {
        for i in 0..3 {
            let t = op
                .create_task(json!({"title": format!("warm-up {i}"), "requires": ["render"]}))
                .await;
            let id = t["id"].clone();
            op.ok(
                json!({"type": "task.assign", "task_id": id, "agent": name}),
                "task",
            )
            .await;
            let done = if ok {
                json!({"type": "task.complete", "task_id": id})
            } else {
                json!({"type": "task.fail", "task_id": id, "error": "crashed", "retry": false})
            };
            agent.ok(done, "task").await;
        }
    }
    (op, good, flaky)
}

fn ranked(reply: &Value) -> Vec<String> {
    reply["recommendation"]["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .map(|c| c["agent"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn recommend_ranks_agents_by_their_record_on_similar_tasks() {
    on_every_backend(
        |cfg| cfg.tasks.allocation = AllocationMode::FirstCome,
        |srv| async move {
            let (mut op, _good, _flaky) = with_records(&srv).await;
            let _newcomer = srv.agent("newcomer", &["render"]).await;
            let _other = srv.agent("other", &["python"]).await;
            let t = op
                .create_task(json!({"title": "frame 1", "requires": ["render"]}))
                .await;
            assert!(t["offered_to"].is_null(), "first come offers nothing: {t}");
            let r = op
                .ok(
                    json!({"type": "task.recommend", "task_id": t["id"]}),
                    "recommendation",
                )
                .await;
            assert_eq!(ranked(&r), ["good", "newcomer", "flaky"], "{r}");
            let best = &r["recommendation"]["candidates"][0];
            assert!(
                best["reason"].as_str().unwrap().contains("3 done"),
                "{best}"
            );
            assert_eq!(best["done"], 3);
            assert_eq!(r["recommendation"]["candidates"][2]["failed"], 3);
            op.err(
                json!({"type": "task.recommend", "task_id": 999_999}),
                "not_found",
            )
            .await;
        },
    )
    .await;
}

#[tokio::test]
async fn recommend_needs_an_operator() {
    let srv = TestServer::spawn().await;
    let mut agent = srv.agent("plain", &[]).await;
    let t = agent.create_task(json!({"title": "x"})).await;
    agent
        .err(
            json!({"type": "task.recommend", "task_id": t["id"]}),
            "forbidden",
        )
        .await;
}

#[tokio::test]
async fn learned_mode_offers_a_new_task_to_the_best_idle_agent_alone() {
    on_every_backend(learned(60_000), |srv| async move {
        let (mut op, mut good, mut flaky) = with_records(&srv).await;
        let t = op
            .create_task(json!({"title": "frame 2", "requires": ["render"]}))
            .await;
        assert_eq!(t["offered_to"], "good", "{t}");
        assert!(t["offer_expires_at"].is_string(), "{t}");
        let offered = loop {
            let ev = good.event("task.offered").await;
            if ev["data"]["task"]["id"] == t["id"] {
                break ev;
            }
        };
        assert_eq!(offered["data"]["task"]["offered_to"], "good");
        // the others cannot have it during the window
        let none = flaky.ok(json!({"type": "task.claim"}), "task").await;
        assert!(none["task"].is_null(), "{none}");
        let e = flaky
            .err(
                json!({"type": "task.claim", "task_id": t["id"]}),
                "conflict",
            )
            .await;
        assert!(
            e["message"].as_str().unwrap().contains("offered to good"),
            "{e}"
        );
        let mine = good.ok(json!({"type": "task.claim"}), "task").await;
        assert_eq!(mine["task"]["id"], t["id"], "{mine}");
    })
    .await;
}

#[tokio::test]
async fn a_lapsed_offer_opens_the_task_to_every_capable_agent() {
    on_every_backend(learned(200), |srv| async move {
        let (mut op, _good, mut flaky) = with_records(&srv).await;
        let t = op
            .create_task(json!({"title": "frame 3", "requires": ["render"]}))
            .await;
        assert_eq!(t["offered_to"], "good", "{t}");
        // good does nothing; when the window ends flaky hears of the task
        let ev = loop {
            let ev = flaky.event("task.created").await;
            if ev["data"]["task"]["id"] == t["id"] {
                break ev;
            }
        };
        assert!(ev["data"]["task"]["offered_to"].is_null(), "{ev}");
        let got = flaky
            .ok(json!({"type": "task.claim", "task_id": t["id"]}), "task")
            .await;
        assert_eq!(got["task"]["assignee"], "flaky", "{got}");
    })
    .await;
}

#[tokio::test]
async fn a_busy_agent_is_not_offered_new_work() {
    let srv = TestServer::spawn_with(learned(60_000)).await;
    let (mut op, mut good, _flaky) = with_records(&srv).await;
    let _newcomer = srv.agent("newcomer", &["render"]).await;
    let busy = op
        .create_task(json!({"title": "long job", "requires": ["render"]}))
        .await;
    good.ok(json!({"type": "task.claim", "task_id": busy["id"]}), "task")
        .await;
    let t = op
        .create_task(json!({"title": "frame 4", "requires": ["render"]}))
        .await;
    // good, the best, is busy; of the idle ones no record sets one apart
    // (newcomer has none), so the task is left to the first to claim
    assert!(t["offered_to"].is_null(), "{t}");
}

#[tokio::test]
async fn nothing_is_offered_while_no_record_sets_an_agent_apart() {
    let srv = TestServer::spawn_with(learned(60_000)).await;
    let mut op = srv.operator("op").await;
    let mut a = srv.agent("a", &["render"]).await;
    let _b = srv.agent("b", &["render"]).await;
    let t = op
        .create_task(json!({"title": "first ever", "requires": ["render"]}))
        .await;
    assert!(t["offered_to"].is_null(), "{t}");
    let got = a.ok(json!({"type": "task.claim"}), "task").await;
    assert_eq!(got["task"]["id"], t["id"], "first come: {got}");
}
