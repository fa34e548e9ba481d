//! Schedules (docs/schedules.md): operators create them on every front
//! door; each occurrence creates its task (or posts its broadcast) once,
//! on time, across restarts and across instances; missed occurrences
//! follow the schedule's policy; bad input names the field.

use crate::common::http_api::{call, get, post};
use crate::common::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use swarmbridge::clock::{now_ms, parse_rfc3339, rfc3339};
use swarmbridge::config::Config;
use swarmbridge::core::model::Role;

/// Schedules may fire every second, and are looked for every 50 ms.
fn fast(cfg: &mut Config) {
    cfg.schedules.min_interval_s = 1;
    cfg.schedules.sweep_interval_ms = 50;
}

/// The `schedule:ID` tag a fired task carries.
fn tag_of(schedule: &Value) -> String {
    format!("schedule:{}", schedule["id"])
}

/// Whether `task` carries `tag`.
fn tagged(task: &Value, tag: &str) -> bool {
    task["tags"]
        .as_array()
        .is_some_and(|t| t.iter().any(|x| x == tag))
}

/// The occurrence a fired task was created for (its `occurrence:` tag).
fn occurrence(task: &Value) -> String {
    task["tags"]
        .as_array()
        .and_then(|t| {
            t.iter()
                .filter_map(|x| x.as_str())
                .find_map(|x| x.strip_prefix("occurrence:"))
        })
        .unwrap_or_else(|| panic!("no occurrence tag on {task}"))
        .to_string()
}

/// Waits for the next `task.created` event of a task carrying `tag`.
async fn created_with_tag(c: &mut Client, tag: &str) -> Value {
    loop {
        let ev = c.event("task.created").await;
        if tagged(&ev["data"]["task"], tag) {
            return ev["data"]["task"].clone();
        }
    }
}

/// Every task carrying `tag`, as `task.list` shows them.
async fn tasks_tagged(c: &mut Client, tag: &str) -> Vec<Value> {
    let r = c
        .ok(json!({"type": "task.list", "limit": 500}), "tasks")
        .await;
    r["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter(|t| tagged(t, tag))
        .cloned()
        .collect()
}

/// The schedule with `id`, as `schedule.list` shows it.
async fn listed(c: &mut Client, id: &Value) -> Value {
    let r = c.ok(json!({"type": "schedule.list"}), "schedules").await;
    r["schedules"]
        .as_array()
        .expect("schedules")
        .iter()
        .find(|s| s["id"] == *id)
        .cloned()
        .unwrap_or_else(|| panic!("schedule {id} not listed: {r}"))
}

async fn add(c: &mut Client, fields: Value) -> Value {
    let mut frame = json!({"type": "schedule.add"});
    for (k, v) in fields.as_object().expect("fields") {
        frame[k] = v.clone();
    }
    c.ok(frame, "schedule").await["schedule"].clone()
}

#[tokio::test]
async fn an_every_schedule_creates_its_task_on_time() {
    on_every_backend(fast, |srv| async move {
        let mut op = srv.operator("op").await;
        let mut worker = srv.agent("worker", &["ops"]).await;
        let s = add(
            &mut op,
            json!({"every": "1s", "title": "Rotate logs", "body": "keep 7", "requires": ["ops"]}),
        )
        .await;
        assert_eq!(s["every_s"], 1);
        assert_eq!(s["state"], "active");
        assert_eq!(s["missed"], "skip");
        let next_at = parse_rfc3339(s["next_at"].as_str().unwrap()).unwrap();
        let task = created_with_tag(&mut worker, &tag_of(&s)).await;
        assert_eq!(task["title"], "Rotate logs");
        assert_eq!(task["body"], "keep 7");
        assert_eq!(task["requires"], json!(["ops"]));
        assert_eq!(task["created_by"], "op");
        assert_eq!(occurrence(&task), rfc3339(next_at));
        let created = parse_rfc3339(task["created_at"].as_str().unwrap()).unwrap();
        assert!(
            created >= next_at && created - next_at < 1000,
            "fired at {created}, due {next_at}"
        );
        let shown = listed(&mut op, &s["id"]).await;
        assert!(shown["fired"].as_i64().unwrap() >= 1, "{shown}");
    })
    .await;
}

#[tokio::test]
async fn a_broadcast_schedule_posts_its_announcement() {
    let srv = TestServer::spawn_with(fast).await;
    let mut op = srv.operator("op").await;
    let mut listener = srv.agent("listener", &[]).await;
    let s = add(
        &mut op,
        json!({"every": "1s", "action": "broadcast", "text": "standup in 5", "topic": "daily"}),
    )
    .await;
    let ev = listener.event("broadcast").await;
    assert_eq!(ev["data"]["text"], "standup in 5");
    assert_eq!(ev["data"]["topic"], "daily");
    assert_eq!(ev["data"]["from"], "op");
    assert_eq!(ev["data"]["schedule_id"], s["id"]);
}

#[tokio::test]
async fn a_cron_schedule_fires_in_its_time_zone() {
    let srv = TestServer::spawn_with(fast).await;
    let mut op = srv.operator("op").await;
    let s = add(
        &mut op,
        json!({"cron": "*/2 * * * * *", "timezone": "Asia/Kathmandu", "title": "tick"}),
    )
    .await;
    assert_eq!(s["cron"], "*/2 * * * * *");
    assert_eq!(s["timezone"], "Asia/Kathmandu");
    let next_at = parse_rfc3339(s["next_at"].as_str().unwrap()).unwrap();
    assert_eq!(next_at % 2000, 0, "on an even second: {s}");
    let task = created_with_tag(&mut op, &tag_of(&s)).await;
    assert_eq!(occurrence(&task), rfc3339(next_at));
}

#[tokio::test]
async fn bad_cron_zone_and_interval_are_refused_naming_the_field() {
    let srv = TestServer::spawn().await;
    let mut op = srv.operator("op").await;
    let refused = |fields: Value| {
        let mut frame = json!({"type": "schedule.add", "title": "t"});
        for (k, v) in fields.as_object().unwrap() {
            frame[k] = v.clone();
        }
        frame
    };
    for (fields, needle) in [
        (json!({"cron": "61 * * * *"}), "`cron`"),
        (
            json!({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}),
            "`timezone`",
        ),
        (json!({"every": "soon"}), "`every`"),
        (
            json!({"every": "15m", "start_at": "tomorrow"}),
            "`start_at`",
        ),
        (json!({"every": "15m", "missed": "sometimes"}), "`missed`"),
        (json!({}), "`cron`"),
        (json!({"cron": "0 9 * * *", "every": "15m"}), "not both"),
        // the floor (schedules.min_interval_s, 60 by default)
        (json!({"every": "30s"}), "schedules.min_interval_s"),
        (
            json!({"cron": "*/10 * * * * *"}),
            "schedules.min_interval_s",
        ),
    ] {
        let e = op.err(refused(fields.clone()), "bad_request").await;
        let msg = e["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{fields}: {msg}");
    }
    let e = op
        .err(
            json!({"type": "schedule.add", "every": "15m", "action": "broadcast"}),
            "bad_request",
        )
        .await;
    assert!(e["message"].as_str().unwrap().contains("`text`"), "{e}");
    // and the connection is still served
    op.assert_alive().await;
    let mut agent = srv.agent("plain", &[]).await;
    agent
        .err(
            json!({"type": "schedule.add", "every": "15m", "title": "t"}),
            "forbidden",
        )
        .await;
}

#[tokio::test]
async fn each_occurrence_fires_once_across_a_restart() {
    on_every_backend(fast, |mut srv| async move {
        let mut op = srv.operator("op").await;
        let s = add(&mut op, json!({"every": "1s", "title": "heartbeat"})).await;
        let tag = tag_of(&s);
        for _ in 0..2 {
            created_with_tag(&mut op, &tag).await;
        }
        drop(op);
        srv.restart().await;
        let token = srv.add_agent("op2", Role::Operator, &[]).await;
        let mut op = Client::hello(&srv.ws_url(), &token, json!({})).await;
        let before = tasks_tagged(&mut op, &tag).await.len();
        while tasks_tagged(&mut op, &tag).await.len() < before + 2 {
            created_with_tag(&mut op, &tag).await;
        }
        let pause = op
            .ok(
                json!({"type": "schedule.pause", "schedule_id": s["id"]}),
                "schedule",
            )
            .await;
        let tasks = tasks_tagged(&mut op, &tag).await;
        let occurrences: HashSet<String> = tasks.iter().map(occurrence).collect();
        assert_eq!(occurrences.len(), tasks.len(), "an occurrence fired twice");
        assert_eq!(
            pause["schedule"]["fired"].as_i64().unwrap(),
            tasks.len() as i64
        );
    })
    .await;
}

/// Creates an hourly schedule whose first occurrence is `lead` from now,
/// stops the server before it, keeps it down until that occurrence is past
/// the grace, and starts it again; returns the server, the schedule and the
/// occurrence that was missed.
async fn missed_while_down(missed: &str) -> (TestServer, Client, Value, i64) {
    let mut srv = TestServer::spawn_with(|cfg| {
        fast(cfg);
        cfg.schedules.grace_s = 1;
    })
    .await;
    let mut op = srv.operator("op").await;
    let first = now_ms() + 1500;
    let s = add(
        &mut op,
        json!({"every": "1h", "start_at": rfc3339(first), "title": "report", "missed": missed}),
    )
    .await;
    drop(op);
    srv.stop().await;
    // the downtime: past the occurrence and its one second of grace
    let up_again = first + 1000 + 500;
    tokio::time::sleep(Duration::from_millis((up_again - now_ms()).max(0) as u64)).await;
    srv.restart().await;
    let token = srv.add_agent("op2", Role::Operator, &[]).await;
    let op = Client::hello(&srv.ws_url(), &token, json!({})).await;
    (srv, op, s, first)
}

#[tokio::test]
async fn missed_occurrences_are_skipped_by_default() {
    let (_srv, mut op, s, first) = missed_while_down("skip").await;
    let deadline = Instant::now() + WAIT;
    let shown = loop {
        let shown = listed(&mut op, &s["id"]).await;
        if shown["next_at"] != s["next_at"] {
            break shown;
        }
        assert!(
            Instant::now() < deadline,
            "the sweeper never looked: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(shown["next_at"], rfc3339(first + 3_600_000), "{shown}");
    assert_eq!(shown["fired"], 0, "{shown}");
    assert!(tasks_tagged(&mut op, &tag_of(&s)).await.is_empty());
}

#[tokio::test]
async fn missed_occurrences_run_once_when_the_schedule_says_so() {
    let (_srv, mut op, s, first) = missed_while_down("run_once").await;
    let task = loop {
        let tasks = tasks_tagged(&mut op, &tag_of(&s)).await;
        if let Some(t) = tasks.first() {
            assert_eq!(tasks.len(), 1, "{tasks:?}");
            break t.clone();
        }
        tokio::time::timeout(WAIT, created_with_tag(&mut op, &tag_of(&s)))
            .await
            .expect("the missed occurrence runs once");
    };
    assert_eq!(occurrence(&task), rfc3339(first));
    let shown = listed(&mut op, &s["id"]).await;
    assert_eq!(shown["fired"], 1, "{shown}");
    assert_eq!(shown["next_at"], rfc3339(first + 3_600_000), "{shown}");
}

#[tokio::test]
async fn a_paused_schedule_fires_nothing_until_resumed() {
    on_every_backend(fast, |srv| async move {
        let mut op = srv.operator("op").await;
        let paused = add(&mut op, json!({"every": "1s", "title": "paused"})).await;
        let p = op
            .ok(
                json!({"type": "schedule.pause", "schedule_id": paused["id"]}),
                "schedule",
            )
            .await;
        assert_eq!(p["schedule"]["state"], "paused");
        op.err(
            json!({"type": "schedule.pause", "schedule_id": paused["id"]}),
            "conflict",
        )
        .await;
        // a second schedule on the same second ticks meanwhile
        let ticking = add(&mut op, json!({"every": "1s", "title": "ticking"})).await;
        for _ in 0..2 {
            created_with_tag(&mut op, &tag_of(&ticking)).await;
        }
        assert!(tasks_tagged(&mut op, &tag_of(&paused)).await.is_empty());
        assert_eq!(listed(&mut op, &paused["id"]).await["fired"], 0);
        let resumed_at = now_ms();
        let r = op
            .ok(
                json!({"type": "schedule.resume", "schedule_id": paused["id"]}),
                "schedule",
            )
            .await;
        assert_eq!(r["schedule"]["state"], "active");
        let next = parse_rfc3339(r["schedule"]["next_at"].as_str().unwrap()).unwrap();
        assert!(next > resumed_at, "resumed from now on: {r}");
        let task = created_with_tag(&mut op, &tag_of(&paused)).await;
        assert_eq!(occurrence(&task), rfc3339(next));
        op.ok(
            json!({"type": "schedule.delete", "schedule_id": paused["id"]}),
            "ok",
        )
        .await;
        op.err(
            json!({"type": "schedule.delete", "schedule_id": paused["id"]}),
            "not_found",
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn two_instances_on_postgresql_fire_each_occurrence_once() {
    let Some(_) = pg_or_skip("two_instances_on_postgresql_fire_each_occurrence_once") else {
        return;
    };
    let first = TestServer::spawn_on(Backend::Postgres, fast).await;
    let second = TestServer::spawn_peer(&first, |_| {}).await;
    let mut op = first.operator("op").await;
    let token = second.add_agent("watcher", Role::Operator, &[]).await;
    let mut watcher = Client::hello(&second.ws_url(), &token, json!({})).await;
    let s = add(&mut op, json!({"every": "1s", "title": "once"})).await;
    let tag = tag_of(&s);
    for _ in 0..4 {
        created_with_tag(&mut watcher, &tag).await;
    }
    let p = op
        .ok(
            json!({"type": "schedule.pause", "schedule_id": s["id"]}),
            "schedule",
        )
        .await;
    let tasks = tasks_tagged(&mut op, &tag).await;
    let occurrences: HashSet<String> = tasks.iter().map(occurrence).collect();
    assert_eq!(occurrences.len(), tasks.len(), "an occurrence fired twice");
    assert_eq!(p["schedule"]["fired"].as_i64().unwrap(), tasks.len() as i64);
    assert!(tasks.len() >= 4);
}

#[tokio::test]
async fn schedules_are_managed_over_http() {
    let srv = TestServer::spawn().await;
    let token = srv.add_agent("op", Role::Operator, &[]).await;
    let base = srv.http_url();
    let (status, body) = post(
        &base,
        "/api/schedules",
        Some(&token),
        json!({"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin", "title": "standup notes"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["schedule"]["id"].as_i64().unwrap();
    let (status, body) = post(
        &base,
        "/api/schedules",
        Some(&token),
        json!({"cron": "0 9 * * *", "timezone": "Nowhere/Special", "title": "x"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("`timezone`"));
    let (status, body) = get(&base, "/api/schedules", Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(body["schedules"][0]["id"], id, "{body}");
    let (status, body) = post(
        &base,
        &format!("/api/schedules/{id}/pause"),
        Some(&token),
        json!({}),
    )
    .await;
    assert_eq!(
        (status, &body["schedule"]["state"]),
        (200, &json!("paused"))
    );
    let (status, body) = post(
        &base,
        &format!("/api/schedules/{id}/resume"),
        Some(&token),
        json!({}),
    )
    .await;
    assert_eq!(
        (status, &body["schedule"]["state"]),
        (200, &json!("active"))
    );
    let path = format!("/api/schedules/{id}");
    let (status, _) = call(&base, reqwest::Method::DELETE, &path, Some(&token), None).await;
    assert_eq!(status, 200);
    let (status, _) = call(&base, reqwest::Method::DELETE, &path, Some(&token), None).await;
    assert_eq!(status, 404);
}

#[test]
fn the_cli_adds_lists_and_refuses_schedules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_swarmbridge"))
            .args(args)
            .env("SWARMBRIDGE_DATABASE_URL", dir.path().join("cli.db"))
            .env_remove("SWARMBRIDGE_CONFIG")
            .output()
            .expect("binary runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, id, err) = run(&[
        "schedule",
        "add",
        "Nightly backup",
        "--cron",
        "0 3 * * *",
        "--timezone",
        "Europe/Berlin",
        "--requires",
        "ops",
    ]);
    assert!(ok, "{err}");
    assert_eq!(id.trim(), "1");
    let (ok, _, err) = run(&["schedule", "add", "--broadcast", "hi", "--every", "30s"]);
    assert!(!ok);
    assert!(err.contains("schedules.min_interval_s"), "{err}");
    let (ok, _, err) = run(&[
        "schedule",
        "add",
        "x",
        "--cron",
        "0 3 * * *",
        "--timezone",
        "Atlantis",
    ]);
    assert!(!ok);
    assert!(err.contains("`timezone`"), "{err}");
    let (ok, list, err) = run(&["schedule", "list"]);
    assert!(ok, "{err}");
    assert!(
        list.contains("cron 0 3 * * * (Europe/Berlin)") && list.contains("Nightly backup"),
        "{list}"
    );
    let (ok, _, err) = run(&["schedule", "pause", "1"]);
    assert!(ok, "{err}");
    let (ok, list, _) = run(&["schedule", "list"]);
    assert!(ok && list.contains("paused"), "{list}");
}
