//! The storage port under load and failure, on every available backend:
//! group commit keeps each request's own answer, a failing commit answers
//! every request in it and the writer goes on serving.

use crate::common::*;
use serde_json::{json, Value};
use swarmbridge::config::Rate;
use swarmbridge::core::model::Role;

fn generous_rates(cfg: &mut swarmbridge::config::Config) {
    cfg.limits.exempt_roles = vec![Role::Admin];
    cfg.limits.max_claims = 1000;
    for class in ["requests", "broadcast", "messages"] {
        cfg.limits.rates.insert(
            class.into(),
            Rate {
                per_s: 10_000.0,
                burst: 10_000,
            },
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_claims_and_completions_each_get_their_own_answer_on_every_backend() {
    on_every_backend(generous_rates, |mut srv| async move {
        let mut boss = srv.admin("boss").await;
        let mut ids = Vec::new();
        for i in 0..40 {
            ids.push(boss.create_task(json!({"title": format!("t{i}")})).await["id"].clone());
        }
        // 40 claims sent at once on one connection: read in one go, their
        // writes share commits, and each gets its own answer.
        let mut w = srv.admin("worker").await;
        for (i, id) in ids.iter().enumerate() {
            w.send(json!({"type": "task.claim", "id": format!("c{i}"), "task_id": id}))
                .await;
        }
        // and one that must be refused without touching its neighbours
        w.send(json!({"type": "task.claim", "id": "again", "task_id": ids[0]}))
            .await;
        let mut claimed = 0;
        let mut refused = 0;
        while claimed + refused < ids.len() + 1 {
            let v = w.recv().await;
            match v["type"].as_str() {
                Some("task") => claimed += 1,
                Some("error") => {
                    assert_eq!(v["re"], "again", "only the repeated claim fails: {v}");
                    assert_eq!(v["code"], "conflict", "{v}");
                    refused += 1;
                }
                _ => {}
            }
        }
        assert_eq!((claimed, refused), (ids.len(), 1));
        for id in &ids {
            w.ok(json!({"type": "task.complete", "task_id": id}), "task")
                .await;
        }
        let status = w.ok(json!({"type": "status"}), "status").await;
        assert_eq!(status["tasks"]["done"], json!(ids.len()), "{status}");
        srv.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_fails_is_answered_internal_and_the_writer_keeps_serving() {
    let srv = TestServer::spawn_with(generous_rates).await;
    let mut op = srv.admin("op").await;
    op.ok(json!({"type": "broadcast", "text": "before"}), "ok")
        .await;
    // Another process makes the event log refuse one broadcast: the batch
    // holding it cannot commit.
    let db = sqlx::SqlitePool::connect(&format!("sqlite:{}", srv.db.display()))
        .await
        .expect("open the database beside the server");
    sqlx::query(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON events \
         WHEN NEW.data LIKE '%POISON%' BEGIN SELECT RAISE(ABORT, 'poisoned event'); END",
    )
    .execute(&db)
    .await
    .expect("trigger created");
    let e = op
        .err(json!({"type": "broadcast", "text": "POISON"}), "internal")
        .await;
    assert!(e["message"].as_str().is_some(), "{e}");
    // The writer goes on: the next write commits and is delivered.
    let mut listener = srv.agent("listener", &[]).await;
    op.ok(json!({"type": "broadcast", "text": "after"}), "ok")
        .await;
    let ev = listener.event("broadcast").await;
    assert_eq!(ev["data"]["text"], "after");
    let stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE text LIKE '%POISON%'")
            .fetch_one(&db)
            .await
            .expect("count");
    assert_eq!(stored, 0, "the failed batch left nothing behind");
}

/// Reads frames until each of `ids` is answered; the answers by id.
async fn answers(c: &mut Client, ids: &[String]) -> std::collections::HashMap<String, Value> {
    let mut out = std::collections::HashMap::new();
    while out.len() < ids.len() {
        let v = c.recv().await;
        if let Some(re) = v["re"].as_str() {
            if ids.iter().any(|i| i == re) {
                out.insert(re.to_string(), v);
            }
        }
    }
    out
}

/// Sends `n` claim-nexts at once (ids `{prefix}0..`); the ids of the
/// tasks claimed and the number refused for `max_claims`.
async fn claim_at_once(c: &mut Client, prefix: &str, n: usize) -> (Vec<i64>, usize) {
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    for id in &ids {
        c.send(json!({"type": "task.claim", "id": id})).await;
    }
    let mut claimed = Vec::new();
    let mut refused = 0;
    for (_, v) in answers(c, &ids).await {
        match v["type"].as_str() {
            Some("task") => claimed.push(v["task"]["id"].as_i64().expect("a task was claimed")),
            _ => {
                assert_eq!(v["code"], "conflict", "only max_claims refuses: {v}");
                assert!(
                    v["message"].as_str().unwrap_or("").contains("max_claims"),
                    "{v}"
                );
                refused += 1;
            }
        }
    }
    (claimed, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_and_changes_sent_at_once_keep_max_claims_and_each_answer_on_every_backend() {
    let tweak = |cfg: &mut swarmbridge::config::Config| {
        generous_rates(cfg);
        cfg.limits.max_claims = 3;
    };
    on_every_backend(tweak, |mut srv| async move {
        let mut boss = srv.admin("boss").await;
        for i in 0..10 {
            boss.create_task(json!({"title": format!("t{i}")})).await;
        }
        // five claim-nexts at once from an agent that may hold three
        let mut w = srv.agent("w1", &[]).await;
        let (held, refused) = claim_at_once(&mut w, "c", 5).await;
        assert_eq!((held.len(), refused), (3, 2), "{held:?}");
        // a progress note and a completion of one task, and a completion of
        // a task that does not exist, at once: the one refused leaves the
        // others' changes, applied in order
        let t = held[0];
        w.send(json!({"type": "task.progress", "id": "p", "task_id": t, "note": "half", "percent": 50}))
            .await;
        w.send(json!({"type": "task.complete", "id": "d", "task_id": t, "result": {"ok": true}}))
            .await;
        w.send(json!({"type": "task.complete", "id": "x", "task_id": 999_999}))
            .await;
        let got = answers(&mut w, &["p".into(), "d".into(), "x".into()]).await;
        assert_eq!(got["p"]["type"], "ok", "{}", got["p"]);
        assert_eq!(got["d"]["task"]["state"], "done", "{}", got["d"]);
        assert_eq!(got["d"]["task"]["progress"], "half", "{}", got["d"]);
        assert_eq!(got["x"]["code"], "not_found", "{}", got["x"]);
        // two agents claim at once, four each, with seven tasks open: their
        // requests share write batches; three each, never the same task
        // twice, and the limit counts claims made earlier in the batch
        let mut a = srv.agent("w2", &[]).await;
        let mut b = srv.agent("w3", &[]).await;
        let ((got_a, refused_a), (got_b, refused_b)) =
            tokio::join!(claim_at_once(&mut a, "a", 4), claim_at_once(&mut b, "b", 4));
        assert_eq!((got_a.len(), refused_a, got_b.len(), refused_b), (3, 1, 3, 1));
        let mut all: Vec<i64> = held.iter().chain(&got_a).chain(&got_b).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 9, "a task was claimed twice: {held:?} {got_a:?} {got_b:?}");
        let status = boss.ok(json!({"type": "status"}), "status").await;
        assert_eq!(status["tasks"]["open"], 1, "{status}");
        assert_eq!(status["tasks"]["claimed"], 8, "{status}");
        assert_eq!(status["tasks"]["done"], 1, "{status}");
        srv.stop().await;
    })
    .await;
}
