//! The storage port under load and failure, on every available backend:
//! group commit keeps each request's own answer, a failing commit answers
//! every request in it and the writer goes on serving.

use crate::common::*;
use serde_json::json;
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
