//! Swarm insight (docs/insights.md): the performance analysis on every
//! surface, bottleneck alerts provoked on purpose (a queue nobody serves,
//! an agent that vanishes holding a lease, the reasoning breaker open),
//! their repeat, clearing and survival across a restart, and `recommend`.

use crate::common::fake_openai::{FakeOpenAi, Reply};
use crate::common::fake_twitch::{exclusive, FakeTwitch};
use crate::common::http_api;
use crate::common::*;
use serde_json::{json, Value};
use swarmbridge::config::Config;
use swarmbridge::core::model::Role;

/// Alerts evaluated every 100 ms, an open task unserved after 1 s.
fn fast_alerts(cfg: &mut Config) {
    cfg.alerts.interval_ms = 100;
    cfg.alerts.unserved_after_s = 1;
}

/// The next `alert.raised` or `alert.cleared` event about `key`.
async fn alert_event(c: &mut Client, kind: &str, key: &str) -> Value {
    loop {
        let ev = c.event(kind).await;
        if ev["data"]["alert"]["key"] == key {
            return ev;
        }
    }
}

fn queue<'a>(insights: &'a Value, name: &str) -> &'a Value {
    insights["queues"]
        .as_array()
        .expect("queues is a list")
        .iter()
        .find(|q| q["queue"] == name)
        .unwrap_or_else(|| panic!("no queue {name}: {insights}"))
}

fn agent<'a>(insights: &'a Value, name: &str) -> &'a Value {
    insights["agents"]
        .as_array()
        .expect("agents is a list")
        .iter()
        .find(|a| a["agent"] == name)
        .unwrap_or_else(|| panic!("no agent {name}: {insights}"))
}

#[tokio::test]
async fn insights_report_success_rates_durations_and_queue_waits_on_every_backend() {
    on_every_backend(
        |_| {},
        |srv| async move {
            let token = srv.add_agent("worker", Role::Agent, &["rust"]).await;
            let mut w = Client::hello(&srv.ws_url(), &token, json!({})).await;
            for title in ["build", "test"] {
                w.create_task(json!({"title": title, "requires": ["rust"]}))
                    .await;
            }
            w.create_task(json!({"title": "port", "requires": ["cobol"]}))
                .await;
            let first = w.ok(json!({"type": "task.claim"}), "task").await;
            w.ok(
                json!({"type": "task.complete", "task_id": first["task"]["id"]}),
                "task",
            )
            .await;
            let second = w.ok(json!({"type": "task.claim"}), "task").await;
            w.ok(
                json!({"type": "task.fail", "task_id": second["task"]["id"], "error": "broken", "retry": false}),
                "task",
            )
            .await;

            let r = w.ok(json!({"type": "insights"}), "insights").await;
            let i = &r["insights"];
            let me = agent(i, "worker");
            assert_eq!(me["hour"]["claims"], 2, "{me}");
            assert_eq!(me["hour"]["completions"], 1);
            assert_eq!(me["hour"]["failures"], 1);
            assert_eq!(me["day"]["success_rate"], 0.5);
            assert_eq!(me["online"], true);
            assert_eq!(me["hour"]["duration"]["samples"], 1);
            let rust = queue(i, "rust");
            assert_eq!(rust["wait_hour"]["samples"], 2, "{rust}");
            assert_eq!(rust["backlog"], 0);
            assert_eq!(rust["capable_online"], 1);
            let cobol = queue(i, "cobol");
            assert_eq!(cobol["backlog"], 1, "{cobol}");
            assert_eq!(cobol["capable_online"], 0);
            assert!(cobol["oldest_open_age_s"].is_i64(), "{cobol}");
            assert_eq!(i["swarm"]["hour"]["claims"], 2);
            assert!(i["trend"]["success"].is_string());

            // the same over HTTP, in the OpenAPI document too
            let (status, body) = http_api::get(&srv.http_url(), "/api/insights", Some(&token)).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(agent(&body["insights"], "worker")["day"]["claims"], 2);
            let (_, doc) = http_api::get(&srv.http_url(), "/api/openapi.json", None).await;
            assert_eq!(doc["paths"]["/api/insights"]["get"]["operationId"], "insights");
        },
    )
    .await;
}

#[tokio::test]
async fn insights_for_one_agent_show_only_it_and_an_unknown_agent_is_not_found() {
    let srv = TestServer::spawn().await;
    let mut a = srv.agent("solo", &[]).await;
    srv.agent("other", &[]).await;
    let t = a.create_task(json!({"title": "x"})).await;
    a.ok(json!({"type": "task.claim", "task_id": t["id"]}), "task")
        .await;
    let r = a
        .ok(json!({"type": "insights", "agent": "solo"}), "insights")
        .await;
    let agents = r["insights"]["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1, "{r}");
    assert_eq!(agents[0]["agent"], "solo");
    let e = a
        .err(json!({"type": "insights", "agent": "ghost"}), "not_found")
        .await;
    assert!(e["message"].as_str().unwrap().contains("ghost"), "{e}");
    a.assert_alive().await;
}

#[tokio::test]
async fn a_queue_nobody_serves_raises_an_unserved_alert_that_clears_once_a_capable_agent_is_online()
{
    on_every_backend(fast_alerts, |srv| async move {
        let mut op = srv.operator("op").await;
        op.create_task(json!({"title": "port the ledger", "requires": ["cobol"]}))
            .await;
        let raised = alert_event(&mut op, "alert.raised", "unserved:cobol").await;
        let alert = &raised["data"]["alert"];
        assert_eq!(alert["rule"], "unserved");
        assert_eq!(alert["subject"], "cobol");
        assert_eq!(alert["repeats"], 0);
        assert!(
            alert["message"]
                .as_str()
                .unwrap()
                .contains("no capable agent online"),
            "{alert}"
        );
        let listed = op.ok(json!({"type": "alerts"}), "alerts").await;
        assert!(
            listed["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["key"] == "unserved:cobol"),
            "{listed}"
        );

        let _veteran = srv.agent("veteran", &["cobol"]).await;
        let cleared = alert_event(&mut op, "alert.cleared", "unserved:cobol").await;
        assert_eq!(cleared["data"]["alert"]["id"], alert["id"]);
        assert!(cleared["data"]["alert"]["cleared_at"].is_string());
        let listed = op.ok(json!({"type": "alerts"}), "alerts").await;
        assert_eq!(listed["alerts"], json!([]), "{listed}");
    })
    .await;
}

#[tokio::test]
async fn an_agent_that_vanishes_holding_a_lease_raises_agent_failing() {
    let srv = TestServer::spawn_with(|cfg| {
        fast_alerts(cfg);
        cfg.alerts.agent_min_runs = 1;
        cfg.alerts.unserved_after_s = 3600;
    })
    .await;
    let mut op = srv.operator("op").await;
    let mut ghost = srv.agent("ghost", &["rust"]).await;
    op.create_task(json!({"title": "migrate", "requires": ["rust"]}))
        .await;
    ghost
        .ok(json!({"type": "task.claim", "lease_s": 1}), "task")
        .await;
    drop(ghost);
    op.event("task.expired").await;
    let raised = alert_event(&mut op, "alert.raised", "agent_failing:ghost").await;
    let message = raised["data"]["alert"]["message"].as_str().unwrap();
    assert!(message.contains("let 1 leases expire"), "{message}");
}

#[tokio::test]
async fn an_alert_holding_is_raised_again_at_most_every_repeat_interval() {
    let tweak = |cfg: &mut Config| {
        fast_alerts(cfg);
        cfg.alerts.repeat_s = 1;
    };
    on_every_backend(tweak, |srv| async move {
        let mut op = srv.operator("op").await;
        op.create_task(json!({"title": "orphan", "requires": ["fortran"]}))
            .await;
        let first = alert_event(&mut op, "alert.raised", "unserved:fortran").await;
        let again = alert_event(&mut op, "alert.raised", "unserved:fortran").await;
        assert_eq!(first["data"]["alert"]["repeats"], 0);
        assert_eq!(again["data"]["alert"]["repeats"], 1);
        assert_eq!(again["data"]["alert"]["id"], first["data"]["alert"]["id"]);
        let at = |v: &Value| {
            swarmbridge::clock::parse_rfc3339(v["data"]["alert"]["notified_at"].as_str().unwrap())
                .unwrap()
        };
        assert!(at(&again) - at(&first) >= 1000, "{first} {again}");
    })
    .await;
}

#[tokio::test]
async fn an_active_alert_survives_a_restart_and_clears_afterwards() {
    on_every_backend(fast_alerts, |mut srv| async move {
        let op_token = srv.add_agent("op", Role::Operator, &[]).await;
        let mut op = Client::hello(&srv.ws_url(), &op_token, json!({})).await;
        op.create_task(json!({"title": "ancient", "requires": ["pascal"]}))
            .await;
        let raised = alert_event(&mut op, "alert.raised", "unserved:pascal").await;
        let id = raised["data"]["alert"]["id"].clone();
        drop(op);

        srv.restart().await;
        let mut op = Client::hello(&srv.ws_url(), &op_token, json!({})).await;
        let listed = op.ok(json!({"type": "alerts"}), "alerts").await;
        let kept = listed["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == "unserved:pascal")
            .cloned()
            .unwrap_or_else(|| panic!("the alert is gone after a restart: {listed}"));
        assert_eq!(kept["id"], id);
        assert_eq!(kept["raised_at"], raised["data"]["alert"]["raised_at"]);

        let _capable = srv.agent("wirth", &["pascal"]).await;
        let cleared = alert_event(&mut op, "alert.cleared", "unserved:pascal").await;
        assert_eq!(cleared["data"]["alert"]["id"], id);
        assert_eq!(cleared["data"]["alert"]["repeats"], 0, "not raised anew");
    })
    .await;
}

#[tokio::test]
async fn an_open_reasoning_breaker_raises_breaker_open() {
    let fake = FakeOpenAi::spawn(Reply::status(500, "backend down")).await;
    let base = fake.base_url();
    let srv = TestServer::spawn_with(move |cfg| {
        fast_alerts(cfg);
        cfg.reasoning.base_url = Some(base);
        cfg.reasoning.max_retries = 0;
        cfg.reasoning.breaker_threshold = 1;
        cfg.reasoning.breaker_cooldown_s = 600;
    })
    .await;
    let mut op = srv.operator("op").await;
    op.err(
        json!({"type": "reason", "prompt": "hello?", "mode": "simple"}),
        "unavailable",
    )
    .await;
    let raised = alert_event(&mut op, "alert.raised", "breaker_open:reasoning").await;
    assert_eq!(raised["data"]["alert"]["rule"], "breaker_open");
}

#[test]
fn an_alert_threshold_out_of_range_stops_config_check_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let check = |key: &str, value: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_swarmbridge"))
            .args(["config", "check"])
            .env("SWARMBRIDGE_DATABASE_URL", dir.path().join("x.db"))
            .env(key, value)
            .output()
            .expect("the binary runs")
    };
    let out = check("SWARMBRIDGE_ALERTS__AGENT_FAILURE_RATE", "1.5");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("alerts.agent_failure_rate"), "{err}");
    let out = check("SWARMBRIDGE_ALERTS__INTERVAL_MS", "5");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("alerts.interval_ms"), "{err}");
    let out = check("SWARMBRIDGE_ALERTS__REPEAT_S", "60");
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("alerts:     on, every 5000 ms, repeated every 60 s"),
        "{said}"
    );
}

#[tokio::test]
async fn metrics_show_queue_and_alert_gauges() {
    let srv = TestServer::spawn_with(fast_alerts).await;
    let mut op = srv.operator("op").await;
    op.create_task(json!({"title": "orphan", "requires": ["ada"]}))
        .await;
    alert_event(&mut op, "alert.raised", "unserved:ada").await;
    // the gauges follow the evaluation that raised the alert: scrape until they do
    let scrape = || async {
        reqwest::get(srv.url("/metrics"))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    };
    let value = |text: &str, series: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    };
    let backlog = "swarmbridge_queue_backlog{queue=\"ada\"}";
    let active = "swarmbridge_alerts_active{rule=\"unserved\"}";
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let text = scrape().await;
        if value(&text, backlog) == Some(1.0) && value(&text, active) == Some(1.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no backlog and active alert gauges: {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_dashboard_snapshot_carries_insights_and_active_alerts() {
    let srv = TestServer::spawn_with(fast_alerts).await;
    let mut op = srv.operator("op").await;
    op.create_task(json!({"title": "orphan", "requires": ["lisp"]}))
        .await;
    alert_event(&mut op, "alert.raised", "unserved:lisp").await;
    let (status, snap) = http_api::get(&srv.http_url(), "/dashboard/snapshot", None).await;
    assert_eq!(status, 200);
    assert_eq!(queue(&snap["insights"], "lisp")["backlog"], 1, "{snap}");
    assert!(
        snap["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["key"] == "unserved:lisp"),
        "{snap}"
    );
}

#[tokio::test]
async fn recommend_asks_the_strategic_mode_with_figures_and_never_a_message_body() {
    let fake = FakeOpenAi::spawn(Reply::text_with_logprobs(
        "Add an agent that can do cobol.",
        &[-0.1, -0.1],
    ))
    .await;
    let base = fake.base_url();
    let srv = TestServer::spawn_with(move |cfg| {
        fast_alerts(cfg);
        cfg.reasoning.base_url = Some(base);
    })
    .await;
    let mut op = srv.operator("op").await;
    let _w = srv.agent("worker", &["rust"]).await;
    op.ok(
        json!({"type": "msg.send", "to": "worker", "text": "the vault code is 7351"}),
        "ok",
    )
    .await;
    op.create_task(
        json!({"title": "secret plan", "body": "private body text", "requires": ["cobol"]}),
    )
    .await;
    alert_event(&mut op, "alert.raised", "unserved:cobol").await;
    let r = op
        .ok(
            json!({"type": "recommend", "question": "what should we hire?"}),
            "reason.result",
        )
        .await;
    assert_eq!(r["text"], "Add an agent that can do cobol.");
    assert_eq!(r["mode"], "strategic");
    assert!(r["confidence"].is_f64(), "{r}");
    let seen = fake.requests();
    let body = seen.last().expect("the backend was asked").body.to_string();
    assert!(
        body.contains("cobol") && body.contains("unserved"),
        "{body}"
    );
    assert!(body.contains("what should we hire?"), "{body}");
    for private in ["7351", "vault", "private body text", "secret plan"] {
        assert!(
            !body.contains(private),
            "the prompt holds {private:?}: {body}"
        );
    }
    // and over HTTP
    let token = srv.add_agent("op2", Role::Operator, &[]).await;
    let (status, answer) =
        http_api::post(&srv.http_url(), "/api/recommend", Some(&token), json!({})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["mode"], "strategic");
}

#[tokio::test]
async fn recommend_without_a_backend_is_unavailable_and_says_why() {
    let srv = TestServer::spawn().await;
    let mut op = srv.operator("op").await;
    let e = op.err(json!({"type": "recommend"}), "unavailable").await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("SWARMBRIDGE_REASONING_BASE_URL"),
        "{e}"
    );
    let mut viewer_like = srv.agent("plain", &[]).await;
    viewer_like
        .err(json!({"type": "recommend"}), "forbidden")
        .await;
}

#[tokio::test]
async fn twitch_insights_is_a_one_line_summary() {
    let _one = exclusive().await;
    let fake = FakeTwitch::spawn(false).await;
    let mut srv = crate::twitch::twitch_server(&fake, |c| c.twitch.announce.enabled = false).await;
    let mut a = srv.agent("worker", &[]).await;
    a.create_task(json!({"title": "build", "requires": ["go"]}))
        .await;
    fake.wait_joined(crate::twitch::CH).await;
    let id = fake.say(crate::twitch::CH, "viewer1", "", "!insights");
    let reply = fake.reply_to(&id).await;
    assert!(reply.text.starts_with("@viewer1 "), "{reply:?}");
    assert!(
        reply.text.contains("last hour") && reply.text.contains("slowest queue go"),
        "{reply:?}"
    );
    assert!(!reply.text.contains('\n'));
    srv.stop().await;
}

#[tokio::test]
async fn a_platform_connection_down_raises_platform_down_until_it_is_back() {
    if crate::common::Backend::default_for_tests() == crate::common::Backend::Postgres {
        // On a shared database an instance may not hold the connection, so
        // the rule is judged only on SQLite (docs/insights.md).
        eprintln!(
            "skipped on PostgreSQL: platform_down is judged on a single-instance database only"
        );
        return;
    }
    let _one = exclusive().await;
    let fake = FakeTwitch::spawn(false).await;
    let mut srv = crate::twitch::twitch_server(&fake, |c| {
        fast_alerts(c);
        c.twitch.announce.enabled = false;
        c.twitch.reconnect.base_ms = 100;
        c.twitch.reconnect.max_ms = 300;
        c.twitch.reconnect.min_interval_ms = 0;
    })
    .await;
    let mut op = srv.operator("op").await;
    fake.wait_joined(crate::twitch::CH).await;

    fake.set_refuse(true);
    fake.reconnect();
    let raised = alert_event(&mut op, "alert.raised", "platform_down:twitch").await;
    assert_eq!(
        raised["data"]["alert"]["message"],
        "the twitch connection is down"
    );
    fake.set_refuse(false);
    let cleared = alert_event(&mut op, "alert.cleared", "platform_down:twitch").await;
    assert_eq!(
        cleared["data"]["alert"]["id"],
        raised["data"]["alert"]["id"]
    );
    srv.stop().await;
}

#[tokio::test]
async fn with_two_instances_on_postgresql_an_alert_is_raised_once_and_listed_by_both() {
    if pg_or_skip("with_two_instances_on_postgresql_an_alert_is_raised_once").is_none() {
        return;
    }
    let first = TestServer::spawn_on(Backend::Postgres, fast_alerts).await;
    let second = TestServer::spawn_peer(&first, |_| {}).await;
    let token = first.add_agent("op", Role::Operator, &[]).await;
    let mut op = Client::hello(&second.ws_url(), &token, json!({})).await;
    op.create_task(json!({"title": "orphan", "requires": ["smalltalk"]}))
        .await;
    let raised = alert_event(&mut op, "alert.raised", "unserved:smalltalk").await;
    assert_eq!(raised["data"]["alert"]["repeats"], 0);
    for srv in [&first, &second] {
        let (status, body) = http_api::get(&srv.http_url(), "/api/alerts", Some(&token)).await;
        assert_eq!(status, 200, "{body}");
        let keys: Vec<&Value> = body["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["key"] == "unserved:smalltalk")
            .collect();
        assert_eq!(keys.len(), 1, "one active alert per key: {body}");
        assert_eq!(keys[0]["id"], raised["data"]["alert"]["id"]);
    }
}
