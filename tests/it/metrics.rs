//! `/metrics`: Prometheus text format without a token, with every family
//! the operators' dashboards and alerts rely on.

use crate::common::fake_openai::{FakeOpenAi, Reply};
use crate::common::*;
use serde_json::json;
use std::collections::BTreeMap;
use swarmbridge::core::model::Role;

/// One sample: metric name, label text (inside the braces), value.
type Sample = (String, String, f64);

/// Parses the Prometheus text exposition format strictly enough to catch a
/// malformed line: returns each family's declared type and its samples
/// (full name with labels → value).
fn parse_prometheus(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let name = it.next().expect("TYPE has a name");
            let ty = it.next().expect("TYPE has a type");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&ty),
                "bad type in {line:?}"
            );
            types.insert(name.to_string(), ty.to_string());
            continue;
        }
        if line.starts_with('#') {
            assert!(line.starts_with("# HELP "), "unknown comment {line:?}");
            continue;
        }
        let (name, labels, value) = match line.find('{') {
            Some(open) => {
                let close = line.rfind('}').expect("labels close");
                (
                    &line[..open],
                    &line[open + 1..close],
                    line[close + 1..].trim(),
                )
            }
            None => {
                let (n, v) = line.split_once(' ').expect("sample has a value");
                (n, "", v.trim())
            }
        };
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if !labels.is_empty() {
            for pair in split_labels(labels) {
                let (k, v) = pair.split_once('=').expect("label has =");
                assert!(
                    k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "bad label name in {line:?}"
                );
                assert!(
                    v.starts_with('"') && v.ends_with('"'),
                    "unquoted label in {line:?}"
                );
            }
        }
        let value = value.split_whitespace().next().expect("value");
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        samples.push((name.to_string(), labels.to_string(), v));
    }
    (types, samples)
}

/// Splits `a="x",b="y,z"` at the commas outside quotes.
fn split_labels(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            '\\' if quoted && !escaped => {
                escaped = true;
                continue;
            }
            '"' if !escaped => quoted = !quoted,
            ',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        escaped = false;
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_have_every_family() {
    let fake = FakeOpenAi::spawn(Reply::text("fine")).await;
    let base = fake.base_url();
    let srv = TestServer::spawn_with(move |cfg| {
        cfg.reasoning.base_url = Some(base);
        cfg.reasoning.model = "fake-model".into();
        one_broadcast_per_caller(cfg);
    })
    .await;
    let op = srv.add_agent("op", Role::Operator, &[]).await;
    let mut a = srv.agent("a", &[]).await;
    // a claim and a completion over WebSocket, a refusal, a rate limit, a reasoning call
    let t = a.create_task(json!({"title": "measure me"})).await;
    a.ok(json!({"type": "task.claim", "task_id": t["id"]}), "task")
        .await;
    a.ok(json!({"type": "task.complete", "task_id": t["id"]}), "task")
        .await;
    a.err(json!({"type": "task.get", "task_id": 999}), "not_found")
        .await;
    a.ok(json!({"type": "broadcast", "text": "one"}), "ok")
        .await;
    a.err(json!({"type": "broadcast", "text": "two"}), "rate_limited")
        .await;
    a.ok(
        json!({"type": "reason", "prompt": "ok?", "mode": "simple"}),
        "reason.result",
    )
    .await;
    let http = reqwest::Client::new();
    let r = http
        .get(srv.url("/api/tasks"))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let r = http.get(srv.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain"), "{ct}");
    let text = r.text().await.unwrap();
    let (types, samples) = parse_prometheus(&text);

    let expect = [
        ("swarmbridge_connections", "gauge"),
        ("swarmbridge_commands_total", "counter"),
        ("swarmbridge_command_duration_seconds", "histogram"),
        ("swarmbridge_platform_commands_total", "counter"),
        ("swarmbridge_task_claims_total", "counter"),
        ("swarmbridge_lease_expiries_total", "counter"),
        ("swarmbridge_events_published_total", "counter"),
        ("swarmbridge_event_deliveries_total", "counter"),
        ("swarmbridge_deliveries_dropped_total", "counter"),
        ("swarmbridge_slow_disconnects_total", "counter"),
        ("swarmbridge_rate_limited_total", "counter"),
        ("swarmbridge_reasoning_duration_seconds", "histogram"),
        ("swarmbridge_reasoning_cache_hits_total", "counter"),
        ("swarmbridge_reasoning_cache_misses_total", "counter"),
        ("swarmbridge_reasoning_backend_calls_total", "counter"),
        ("swarmbridge_reasoning_circuit_state", "gauge"),
        ("swarmbridge_db_query_duration_seconds", "histogram"),
        ("swarmbridge_tasks", "gauge"),
        ("swarmbridge_agents_online", "gauge"),
    ];
    for (family, ty) in expect {
        assert_eq!(
            types.get(family).map(String::as_str),
            Some(ty),
            "family {family} missing or mistyped in:\n{text}"
        );
    }
    let has = |name: &str, label_part: &str| {
        samples
            .iter()
            .any(|(n, l, _)| n == name && l.contains(label_part))
    };
    assert!(has("swarmbridge_connections", "platform=\"ws\""));
    assert!(has("swarmbridge_connections", "platform=\"discord\""));
    assert!(
        has(
            "swarmbridge_commands_total",
            "command=\"task.get\",platform=\"ws\",outcome=\"not_found\""
        ) || has("swarmbridge_commands_total", "outcome=\"not_found\"")
    );
    assert!(has(
        "swarmbridge_command_duration_seconds_bucket",
        "le=\"+Inf\""
    ));
    assert!(has("swarmbridge_rate_limited_total", "class=\"broadcast\""));
    assert!(has(
        "swarmbridge_db_query_duration_seconds_count",
        "op=\"write\""
    ));
    assert!(has(
        "swarmbridge_reasoning_circuit_state",
        "state=\"closed\""
    ));
    let value = |name: &str, label_part: &str| {
        samples
            .iter()
            .find(|(n, l, _)| n == name && l.contains(label_part))
            .map(|s| s.2)
    };
    assert_eq!(
        value("swarmbridge_reasoning_circuit_state", "state=\"closed\""),
        Some(1.0)
    );
    assert!(value("swarmbridge_events_published_total", "").unwrap() >= 3.0);
    assert!(value("swarmbridge_task_claims_total", "platform=\"ws\"").unwrap() >= 1.0);
}
