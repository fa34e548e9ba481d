//! Tasks over the WebSocket: claiming (concurrency, capabilities, order),
//! leases, attempts, who may do what, and who hears about it
//! (protocol.md, "Tasks").

use crate::common::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;
use swarmbridge::config::Rate;
use swarmbridge::core::model::Role;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

fn at(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().expect("a timestamp"), &Rfc3339).expect("RFC 3339")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_clients_claiming_500_tasks_concurrently_claim_each_exactly_once() {
    let srv = TestServer::spawn_with(|cfg| {
        cfg.limits.exempt_roles = vec![Role::Admin];
        cfg.limits.max_claims = 1000;
        cfg.limits.rates.insert(
            "requests".into(),
            Rate {
                per_s: 10_000.0,
                burst: 10_000,
            },
        );
    })
    .await;
    let mut creator = srv.admin("creator").await;
    let mut created = HashSet::new();
    for i in 0..500 {
        let t = creator.create_task(json!({"title": format!("t{i}")})).await;
        created.insert(t["id"].as_i64().unwrap());
    }
    drop(creator);
    assert_eq!(created.len(), 500);

    let mut clients = Vec::new();
    for i in 0..20 {
        clients.push(srv.agent(&format!("worker-{i}"), &[]).await);
    }
    let mut set = tokio::task::JoinSet::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        set.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let r = c.ok(json!({"type":"task.claim"}), "task").await;
                if r["task"].is_null() {
                    return mine;
                }
                assert_eq!(r["task"]["state"], "claimed", "{r}");
                assert_eq!(r["task"]["assignee"], format!("worker-{i}"), "{r}");
                mine.push(r["task"]["id"].as_i64().unwrap());
            }
        });
    }
    let mut claimed = Vec::new();
    while let Some(r) = set.join_next().await {
        claimed.extend(r.expect("worker finished"));
    }
    let unique: HashSet<i64> = claimed.iter().copied().collect();
    assert_eq!(
        claimed.len(),
        unique.len(),
        "{} claims but only {} distinct tasks: some task was claimed twice",
        claimed.len(),
        unique.len()
    );
    assert_eq!(unique, created, "every task is claimed exactly once");
}

#[tokio::test]
async fn an_agent_without_a_required_capability_claims_nothing() {
    let srv = TestServer::spawn().await;
    let mut creator = srv.agent("creator", &[]).await;
    creator
        .create_task(json!({"title":"needs rust","requires":["rust"]}))
        .await;
    let mut go = srv.agent("go-agent", &["go"]).await;
    let r = go.ok(json!({"type":"task.claim"}), "task").await;
    assert!(r["task"].is_null(), "{r}");
}

#[tokio::test]
async fn an_agent_with_every_required_capability_claims_the_task() {
    let srv = TestServer::spawn().await;
    let mut creator = srv.agent("creator", &[]).await;
    let t = creator
        .create_task(json!({"title":"review rust","requires":["rust","review"]}))
        .await;
    let mut only_rust = srv.agent("only-rust", &["rust"]).await;
    let r = only_rust.ok(json!({"type":"task.claim"}), "task").await;
    assert!(
        r["task"].is_null(),
        "one capability of two is not enough: {r}"
    );
    let mut both = srv.agent("both", &["go", "review", "rust"]).await;
    let r = both.ok(json!({"type":"task.claim"}), "task").await;
    assert_eq!(r["task"]["id"], t["id"], "{r}");
    assert_eq!(r["task"]["assignee"], "both", "{r}");
}

#[tokio::test]
async fn claims_take_the_highest_priority_first() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    for p in [0, 5, -3, 1] {
        c.create_task(json!({"title": format!("p{p}"), "priority": p}))
            .await;
    }
    let mut order = vec![];
    for _ in 0..4 {
        let r = c.ok(json!({"type":"task.claim"}), "task").await;
        order.push(r["task"]["priority"].as_i64().unwrap());
    }
    assert_eq!(order, vec![5, 1, 0, -3]);
}

#[tokio::test]
async fn claims_of_equal_priority_take_the_oldest_first() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    let mut ids = vec![];
    for i in 0..4 {
        let t = c
            .create_task(json!({"title": format!("t{i}"), "priority": 2}))
            .await;
        ids.push(t["id"].clone());
    }
    let mut order = vec![];
    for _ in 0..4 {
        let r = c.ok(json!({"type":"task.claim"}), "task").await;
        order.push(r["task"]["id"].clone());
    }
    assert_eq!(order, ids);
}

#[tokio::test]
async fn an_expired_lease_reopens_the_task_and_emits_task_expired_to_the_holder() {
    let srv = TestServer::spawn().await;
    let mut creator = srv.agent("creator", &[]).await;
    let t = creator.create_task(json!({"title":"slow"})).await;
    let mut holder = srv.agent("holder", &[]).await;
    let r = holder
        .ok(json!({"type":"task.claim","lease_s":1}), "task")
        .await;
    assert_eq!(r["task"]["id"], t["id"]);
    let ev = holder.event("task.expired").await;
    assert_eq!(ev["data"]["task"]["id"], t["id"], "{ev}");
    assert_eq!(ev["data"]["task"]["state"], "open", "{ev}");
    assert!(ev["data"]["task"]["assignee"].is_null(), "{ev}");
    let now = creator
        .ok(json!({"type":"task.get","task_id":t["id"]}), "task")
        .await;
    assert_eq!(now["task"]["state"], "open", "{now}");
    assert_eq!(now["task"]["attempts"], 1, "{now}");
}

#[tokio::test]
async fn an_expired_lease_is_also_reported_to_the_creator() {
    let srv = TestServer::spawn().await;
    let mut creator = srv.agent("creator", &[]).await;
    let t = creator.create_task(json!({"title":"slow"})).await;
    let mut holder = srv.agent("holder", &[]).await;
    holder
        .ok(json!({"type":"task.claim","lease_s":1}), "task")
        .await;
    let ev = creator.event("task.expired").await;
    assert_eq!(ev["data"]["task"]["id"], t["id"], "{ev}");
}

#[tokio::test]
async fn a_lease_expiring_on_the_last_attempt_fails_the_task() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    let t = c
        .create_task(json!({"title":"one shot","max_attempts":1}))
        .await;
    c.ok(json!({"type":"task.claim","lease_s":1}), "task").await;
    let ev = c.event("task.expired").await;
    assert_eq!(ev["data"]["task"]["id"], t["id"], "{ev}");
    assert_eq!(ev["data"]["task"]["state"], "failed", "{ev}");
    let r = c.ok(json!({"type":"task.claim"}), "task").await;
    assert!(r["task"].is_null(), "a failed task is not claimable: {r}");
}

#[tokio::test]
async fn failing_with_retry_on_the_last_attempt_ends_failed() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    let t = c
        .create_task(json!({"title":"one shot","max_attempts":1}))
        .await;
    c.ok(json!({"type":"task.claim"}), "task").await;
    let r = c
        .ok(
            json!({"type":"task.fail","task_id":t["id"],"error":"boom","retry":true}),
            "task",
        )
        .await;
    assert_eq!(r["task"]["state"], "failed", "{r}");
}

#[tokio::test]
async fn failing_with_retry_while_attempts_remain_reopens_the_task() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    let t = c
        .create_task(json!({"title":"two shots","max_attempts":2}))
        .await;
    c.ok(json!({"type":"task.claim"}), "task").await;
    let r = c
        .ok(
            json!({"type":"task.fail","task_id":t["id"],"error":"flaky"}),
            "task",
        )
        .await;
    assert_eq!(r["task"]["state"], "open", "{r}");
    let again = c.ok(json!({"type":"task.claim"}), "task").await;
    assert_eq!(again["task"]["id"], t["id"], "{again}");
    assert_eq!(again["task"]["attempts"], 2, "{again}");
}

#[tokio::test]
async fn only_the_assignee_may_complete_renew_release_progress_or_fail_a_task() {
    let srv = TestServer::spawn().await;
    let mut holder = srv.agent("holder", &[]).await;
    let t = holder.create_task(json!({"title":"mine"})).await;
    holder.ok(json!({"type":"task.claim"}), "task").await;
    let id = t["id"].clone();
    let mut other = srv.agent("other", &[]).await;
    for frame in [
        json!({"type":"task.complete","task_id":id}),
        json!({"type":"task.renew","task_id":id}),
        json!({"type":"task.release","task_id":id}),
        json!({"type":"task.progress","task_id":id,"note":"halfway"}),
        json!({"type":"task.fail","task_id":id,"error":"nope"}),
    ] {
        other.err(frame, "forbidden").await;
    }
    let r = holder
        .ok(json!({"type":"task.get","task_id":id}), "task")
        .await;
    assert_eq!(r["task"]["state"], "claimed", "{r}");
    assert_eq!(r["task"]["assignee"], "holder", "{r}");
}

#[tokio::test]
async fn claiming_a_claimed_task_gets_conflict() {
    let srv = TestServer::spawn().await;
    let mut a = srv.agent("agent-a", &[]).await;
    let t = a.create_task(json!({"title":"contended"})).await;
    a.ok(json!({"type":"task.claim","task_id":t["id"]}), "task")
        .await;
    let mut b = srv.agent("agent-b", &[]).await;
    b.err(json!({"type":"task.claim","task_id":t["id"]}), "conflict")
        .await;
}

#[tokio::test]
async fn an_unknown_task_id_gets_not_found() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    let id = 987_654;
    for frame in [
        json!({"type":"task.get","task_id":id}),
        json!({"type":"task.claim","task_id":id}),
        json!({"type":"task.renew","task_id":id}),
        json!({"type":"task.progress","task_id":id,"note":"x"}),
        json!({"type":"task.complete","task_id":id}),
        json!({"type":"task.fail","task_id":id,"error":"x"}),
        json!({"type":"task.release","task_id":id}),
        json!({"type":"task.cancel","task_id":id}),
    ] {
        c.err(frame, "not_found").await;
    }
}

#[tokio::test]
async fn a_lease_outside_1_to_86400_seconds_gets_bad_request() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    c.create_task(json!({"title":"t"})).await;
    for lease in [0, 86_401, -1] {
        c.err(json!({"type":"task.claim","lease_s":lease}), "bad_request")
            .await;
    }
    let r = c
        .ok(json!({"type":"task.list","state":"claimed"}), "tasks")
        .await;
    assert_eq!(r["tasks"], json!([]), "a refused claim claims nothing: {r}");
}

#[tokio::test]
async fn renewing_with_a_lease_outside_1_to_86400_seconds_gets_bad_request() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    let t = c.create_task(json!({"title":"t"})).await;
    c.ok(json!({"type":"task.claim"}), "task").await;
    for lease in [0, 86_401] {
        c.err(
            json!({"type":"task.renew","task_id":t["id"],"lease_s":lease}),
            "bad_request",
        )
        .await;
    }
}

#[tokio::test]
async fn leases_of_1_and_86400_seconds_are_accepted() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    c.create_task(json!({"title":"a"})).await;
    c.create_task(json!({"title":"b"})).await;
    for lease in [86_400, 1] {
        let r = c
            .ok(json!({"type":"task.claim","lease_s":lease}), "task")
            .await;
        assert_eq!(r["task"]["state"], "claimed", "{r}");
    }
}

#[tokio::test]
async fn a_claim_without_lease_s_gets_the_configured_lease() {
    let srv = TestServer::spawn_with(|cfg| cfg.tasks.lease_s = 120).await;
    let mut c = srv.agent("agent-1", &[]).await;
    c.create_task(json!({"title":"t"})).await;
    let r = c.ok(json!({"type":"task.claim"}), "task").await;
    let lease = at(&r["task"]["lease_expires_at"]) - at(&r["task"]["updated_at"]);
    assert!(
        (lease.whole_seconds() - 120).abs() <= 1,
        "lease of {lease} instead of 120 s: {r}"
    );
}

#[tokio::test]
async fn renewing_moves_the_lease_expiry_later() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    let t = c.create_task(json!({"title":"t"})).await;
    let r = c
        .ok(json!({"type":"task.claim","lease_s":10}), "task")
        .await;
    let first = at(&r["task"]["lease_expires_at"]);
    let r = c
        .ok(
            json!({"type":"task.renew","task_id":t["id"],"lease_s":3600}),
            "task",
        )
        .await;
    let renewed = at(&r["task"]["lease_expires_at"]);
    assert!(
        renewed - first > time::Duration::minutes(55),
        "{first} -> {renewed}"
    );
}

#[tokio::test]
async fn a_claim_beyond_max_claims_gets_conflict() {
    let srv = TestServer::spawn_with(|cfg| cfg.limits.max_claims = 2).await;
    let mut c = srv.agent("agent-1", &[]).await;
    assert_eq!(c.welcome["limits"]["max_claims"], 2);
    let mut ids = vec![];
    for i in 0..3 {
        ids.push(c.create_task(json!({"title": format!("t{i}")})).await["id"].clone());
    }
    c.ok(json!({"type":"task.claim"}), "task").await;
    c.ok(json!({"type":"task.claim"}), "task").await;
    c.err(json!({"type":"task.claim"}), "conflict").await;
    c.err(json!({"type":"task.claim","task_id":ids[2]}), "conflict")
        .await;
}

#[tokio::test]
async fn completing_a_task_frees_a_claim_under_max_claims() {
    let srv = TestServer::spawn_with(|cfg| cfg.limits.max_claims = 1).await;
    let mut c = srv.agent("agent-1", &[]).await;
    c.create_task(json!({"title":"a"})).await;
    c.create_task(json!({"title":"b"})).await;
    let r = c.ok(json!({"type":"task.claim"}), "task").await;
    c.ok(
        json!({"type":"task.complete","task_id":r["task"]["id"]}),
        "task",
    )
    .await;
    let r = c.ok(json!({"type":"task.claim"}), "task").await;
    assert_eq!(r["task"]["state"], "claimed", "{r}");
}

#[tokio::test]
async fn the_creator_may_cancel_its_task() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    let t = c.create_task(json!({"title":"t"})).await;
    let r = c
        .ok(
            json!({"type":"task.cancel","task_id":t["id"],"reason":"obsolete"}),
            "task",
        )
        .await;
    assert_eq!(r["task"]["state"], "cancelled", "{r}");
}

#[tokio::test]
async fn an_operator_may_cancel_another_agents_task() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    let t = c.create_task(json!({"title":"t"})).await;
    let mut op = srv.operator("op").await;
    let r = op
        .ok(json!({"type":"task.cancel","task_id":t["id"]}), "task")
        .await;
    assert_eq!(r["task"]["state"], "cancelled", "{r}");
}

#[tokio::test]
async fn an_agent_other_than_the_creator_may_not_cancel_a_task() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    let t = c.create_task(json!({"title":"t"})).await;
    let mut other = srv.agent("agent-2", &[]).await;
    other
        .err(json!({"type":"task.cancel","task_id":t["id"]}), "forbidden")
        .await;
    let r = c
        .ok(json!({"type":"task.get","task_id":t["id"]}), "task")
        .await;
    assert_eq!(r["task"]["state"], "open", "{r}");
}

#[tokio::test]
async fn cancelling_a_done_task_gets_conflict() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    let t = c.create_task(json!({"title":"t"})).await;
    c.ok(json!({"type":"task.claim"}), "task").await;
    c.ok(json!({"type":"task.complete","task_id":t["id"]}), "task")
        .await;
    c.err(json!({"type":"task.cancel","task_id":t["id"]}), "conflict")
        .await;
}

#[tokio::test]
async fn cancelling_a_claimed_task_tells_the_holder() {
    let srv = TestServer::spawn().await;
    let mut creator = srv.agent("creator", &[]).await;
    let t = creator.create_task(json!({"title":"t"})).await;
    let mut holder = srv.agent("holder", &[]).await;
    holder.ok(json!({"type":"task.claim"}), "task").await;
    creator
        .ok(json!({"type":"task.cancel","task_id":t["id"]}), "task")
        .await;
    let ev = holder.event("task.cancelled").await;
    assert_eq!(ev["data"]["task"]["id"], t["id"], "{ev}");
    assert_eq!(ev["data"]["task"]["state"], "cancelled", "{ev}");
}

#[tokio::test]
async fn task_assign_by_an_agent_is_forbidden() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    srv.add_agent("agent-2", Role::Agent, &[]).await;
    let t = c.create_task(json!({"title":"t"})).await;
    let e = c
        .err(
            json!({"type":"task.assign","task_id":t["id"],"agent":"agent-2"}),
            "forbidden",
        )
        .await;
    assert!(
        e["message"].as_str().unwrap().contains("operator"),
        "the message should name the role needed: {e}"
    );
}

#[tokio::test]
async fn task_assign_by_an_operator_claims_the_task_for_the_agent_and_offers_it() {
    let srv = TestServer::spawn().await;
    let mut op = srv.operator("op").await;
    let t = op.create_task(json!({"title":"for you"})).await;
    let mut worker = srv.agent("worker", &[]).await;
    let r = op
        .ok(
            json!({"type":"task.assign","task_id":t["id"],"agent":"worker"}),
            "task",
        )
        .await;
    assert_eq!(r["task"]["state"], "claimed", "{r}");
    assert_eq!(r["task"]["assignee"], "worker", "{r}");
    assert!(
        r["task"]["lease_expires_at"].is_string(),
        "lease started: {r}"
    );
    let ev = worker.event("task.offered").await;
    assert_eq!(ev["data"]["task"]["id"], t["id"], "{ev}");
    assert_eq!(ev["data"]["task"]["assignee"], "worker", "{ev}");
}

#[tokio::test]
async fn task_list_filters_by_state() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    for i in 0..3 {
        c.create_task(json!({"title": format!("t{i}")})).await;
    }
    let claimed = c.ok(json!({"type":"task.claim"}), "task").await;
    let open = c
        .ok(json!({"type":"task.list","state":"open"}), "tasks")
        .await;
    let open = open["tasks"].as_array().unwrap();
    assert_eq!(open.len(), 2, "{open:?}");
    assert!(open.iter().all(|t| t["state"] == "open"), "{open:?}");
    let cl = c
        .ok(json!({"type":"task.list","state":"claimed"}), "tasks")
        .await;
    let cl = cl["tasks"].as_array().unwrap();
    assert_eq!(cl.len(), 1, "{cl:?}");
    assert_eq!(cl[0]["id"], claimed["task"]["id"]);
}

#[tokio::test]
async fn task_list_with_an_unknown_state_gets_bad_request() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    c.err(
        json!({"type":"task.list","state":"sleeping"}),
        "bad_request",
    )
    .await;
}

#[tokio::test]
async fn task_list_with_a_limit_over_500_gets_bad_request() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    c.err(json!({"type":"task.list","limit":501}), "bad_request")
        .await;
    c.ok(json!({"type":"task.list","limit":500}), "tasks").await;
}

#[tokio::test]
async fn task_list_returns_at_most_limit_tasks() {
    let srv = TestServer::spawn().await;
    let mut c = srv.agent("agent-1", &[]).await;
    for i in 0..4 {
        c.create_task(json!({"title": format!("t{i}")})).await;
    }
    let r = c.ok(json!({"type":"task.list","limit":3}), "tasks").await;
    assert_eq!(r["tasks"].as_array().unwrap().len(), 3, "{r}");
}

#[tokio::test]
async fn task_created_reaches_agents_whose_capabilities_cover_the_requirements() {
    let srv = TestServer::spawn().await;
    let mut rust = srv.agent("rust-agent", &["rust", "review"]).await;
    let mut creator = srv.agent("creator", &[]).await;
    let t = creator
        .create_task(json!({"title":"needs rust","requires":["rust"]}))
        .await;
    let ev = rust.event("task.created").await;
    assert_eq!(ev["data"]["task"]["id"], t["id"], "{ev}");
}

#[tokio::test]
async fn task_created_does_not_reach_agents_lacking_a_required_capability() {
    let srv = TestServer::spawn().await;
    let mut go = srv.agent("go-agent", &["go"]).await;
    let mut creator = srv.agent("creator", &[]).await;
    creator
        .create_task(json!({"title":"needs rust","requires":["rust"]}))
        .await;
    // a marker sent afterwards: had task.created reached go-agent, it would come first
    creator
        .ok(
            json!({"type":"msg.send","to":"go-agent","text":"marker"}),
            "ok",
        )
        .await;
    let first = go.recv().await;
    assert_eq!(
        first["kind"], "message",
        "expected only the marker, got {first}"
    );
    assert!(go.recv_within(Duration::from_millis(200)).await.is_none());
}
