//! Observability: the Prometheus recorder behind `/metrics` and the few
//! hooks the store, the sweeper and the reasoner call. Commands are counted
//! by [`crate::dispatch`], the one path every front door takes.
//!
//! Hot-path rule: nothing here is called per event delivery. Fan-out
//! counters live in [`BusStats`](crate::bus::BusStats) atomics and are read
//! when `/metrics` is scraped.

use crate::core::model::TaskState;
use crate::core::Core;
use crate::dispatch::FrontDoorStats;
use crate::reason::CircuitState;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Records how long a store operation took, from `started` to now.
pub fn db_query(op: &'static str, started: Instant) {
    histogram!("swarmbridge_db_query_duration_seconds", "op" => op)
        .record(started.elapsed().as_secs_f64());
}

/// Counts leases that ran out (called by the sweeper).
pub fn lease_expiries(n: usize) {
    if n > 0 {
        counter!("swarmbridge_lease_expiries_total").increment(n as u64);
    }
}

/// Records one reasoning request: its duration and outcome (`ok` or an error code).
pub fn reasoning(elapsed: Duration, outcome: &'static str) {
    histogram!("swarmbridge_reasoning_duration_seconds", "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

/// Latency buckets (seconds) shared by every histogram: from half a
/// millisecond (a `status`) to a minute (a slow reasoning backend).
const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

fn describe() {
    describe_gauge!("swarmbridge_connections", "Open connections by platform (ws: agent WebSockets, http: event streams; discord and twitch are 0 while off).");
    describe_counter!(
        "swarmbridge_commands_total",
        "Commands run, by command, platform and outcome (ok or the error code)."
    );
    describe_histogram!(
        "swarmbridge_command_duration_seconds",
        "Time to run a command in the core, by command and platform."
    );
    describe_counter!(
        "swarmbridge_platform_commands_total",
        "Commands by platform and result (served or refused), since start."
    );
    describe_counter!(
        "swarmbridge_task_claims_total",
        "Successful claims and assignments."
    );
    describe_counter!(
        "swarmbridge_lease_expiries_total",
        "Claims whose lease ran out."
    );
    describe_counter!(
        "swarmbridge_events_published_total",
        "Committed events fanned out by the bus."
    );
    describe_counter!(
        "swarmbridge_event_deliveries_total",
        "Event frames queued to agent connections."
    );
    describe_counter!(
        "swarmbridge_deliveries_dropped_total",
        "Event deliveries refused because a connection's queue was full."
    );
    describe_counter!(
        "swarmbridge_slow_disconnects_total",
        "Connections cut off for backpressure (queue full)."
    );
    describe_counter!(
        "swarmbridge_rate_limited_total",
        "Requests refused by a rate limit, by platform and class."
    );
    describe_histogram!(
        "swarmbridge_reasoning_duration_seconds",
        "Reasoning requests, by outcome (cache hits included)."
    );
    describe_counter!(
        "swarmbridge_reasoning_cache_hits_total",
        "Reasoning answers served from the cache."
    );
    describe_counter!(
        "swarmbridge_reasoning_cache_misses_total",
        "Reasoning asks the cache could not answer."
    );
    describe_counter!(
        "swarmbridge_reasoning_backend_calls_total",
        "Calls to the reasoning backend (retries included in one call)."
    );
    describe_counter!(
        "swarmbridge_reasoning_backend_failures_total",
        "Backend calls that failed after their retries."
    );
    describe_gauge!(
        "swarmbridge_reasoning_circuit_state",
        "1 for the circuit breaker's current state (closed, half_open, open), 0 for the others."
    );
    describe_gauge!(
        "swarmbridge_reasoning_configured",
        "1 when a reasoning backend is configured."
    );
    describe_gauge!(
        "swarmbridge_reasoning_last_latency_seconds",
        "Duration of the latest backend call."
    );
    describe_histogram!(
        "swarmbridge_db_query_duration_seconds",
        "Database time by operation (write: one whole transaction)."
    );
    describe_gauge!("swarmbridge_tasks", "Tasks by state.");
    describe_gauge!(
        "swarmbridge_alerts_active",
        "Active bottleneck alerts by rule (docs/insights.md)."
    );
    describe_gauge!(
        "swarmbridge_swarm_success_ratio",
        "Done / (done + failed + expired) claims of the whole swarm, by window (hour, day)."
    );
    describe_gauge!(
        "swarmbridge_queue_wait_p95_seconds",
        "Wait from created (or reopened) to claimed, p95, by queue (the 20 slowest, and all) and window."
    );
    describe_gauge!(
        "swarmbridge_queue_backlog",
        "Open tasks by queue (the 20 slowest queues)."
    );
    describe_gauge!(
        "swarmbridge_queue_oldest_open_seconds",
        "Age of the oldest open task by queue (the 20 slowest queues)."
    );
    describe_gauge!(
        "swarmbridge_agent_success_ratio",
        "An agent's done / (done + failed + expired) over the last day (the 20 least reliable)."
    );
    describe_gauge!(
        "swarmbridge_agent_expiries_last_day",
        "Leases an agent let expire over the last day (the 20 least reliable)."
    );
    describe_gauge!("swarmbridge_agents_online", "Distinct agents connected.");
    describe_gauge!(
        "swarmbridge_uptime_seconds",
        "Seconds since the server started."
    );
}

/// The process's Prometheus handle. The first call installs the recorder
/// globally; if another recorder is already installed (an embedding
/// program's), a detached one is used and only the figures read at scrape
/// time are reported.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = || {
            PrometheusBuilder::new()
                .set_buckets(&BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new())
        };
        match builder().install_recorder() {
            Ok(handle) => {
                describe();
                crate::embed::metrics::describe_metrics();
                crate::embed::indexer::describe_metrics();
                handle
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed; /metrics is partial");
                builder().build_recorder().handle()
            }
        }
    })
}

/// Reads the figures kept elsewhere (bus atomics, reasoner stats, task
/// counts) into the registry, then renders the Prometheus text format.
pub fn render(core: &Core, fd: &FrontDoorStats) -> String {
    let handle = prometheus();
    gauge!("swarmbridge_connections", "platform" => "ws").set(core.bus.connections() as f64);
    gauge!("swarmbridge_connections", "platform" => "http").set(fd.streams() as f64);
    let up = |w: &str| if w == "up" { 1.0 } else { 0.0 };
    gauge!("swarmbridge_connections", "platform" => "discord").set(up(fd.discord_link()));
    gauge!("swarmbridge_connections", "platform" => "twitch").set(up(fd.twitch_link()));
    for p in fd.snapshot() {
        counter!("swarmbridge_platform_commands_total", "platform" => p.platform, "result" => "served")
            .absolute(p.served);
        counter!("swarmbridge_platform_commands_total", "platform" => p.platform, "result" => "refused")
            .absolute(p.refused);
    }
    let bus = &core.bus.stats;
    counter!("swarmbridge_events_published_total").absolute(bus.published.load(Ordering::Relaxed));
    counter!("swarmbridge_event_deliveries_total").absolute(bus.delivered.load(Ordering::Relaxed));
    counter!("swarmbridge_deliveries_dropped_total").absolute(bus.dropped.load(Ordering::Relaxed));
    counter!("swarmbridge_slow_disconnects_total")
        .absolute(bus.slow_disconnects.load(Ordering::Relaxed));
    // created at zero so the family is always there
    counter!("swarmbridge_lease_expiries_total").increment(0);

    let r = core.reasoner.stats();
    counter!("swarmbridge_reasoning_cache_hits_total").absolute(r.cache_hits);
    counter!("swarmbridge_reasoning_cache_misses_total").absolute(r.cache_misses);
    counter!("swarmbridge_reasoning_backend_calls_total").absolute(r.backend_calls);
    counter!("swarmbridge_reasoning_backend_failures_total").absolute(r.backend_failures);
    for (state, name) in [
        (CircuitState::Closed, "closed"),
        (CircuitState::HalfOpen, "half_open"),
        (CircuitState::Open, "open"),
    ] {
        gauge!("swarmbridge_reasoning_circuit_state", "state" => name).set(if r.circuit == state {
            1.0
        } else {
            0.0
        });
    }
    gauge!("swarmbridge_reasoning_configured").set(if core.reasoner.is_configured() {
        1.0
    } else {
        0.0
    });
    if let Some(ms) = r.last_latency_ms {
        gauge!("swarmbridge_reasoning_last_latency_seconds").set(ms as f64 / 1000.0);
    }

    let counts = core.task_counts();
    for st in TaskState::ALL {
        gauge!("swarmbridge_tasks", "state" => st.as_str()).set(counts.get(st) as f64);
    }
    gauge!("swarmbridge_agents_online").set(core.bus.agents_online() as f64);
    gauge!("swarmbridge_uptime_seconds").set(core.uptime_s() as f64);
    insight_gauges(core);
    let mut text = handle.render();
    event_table_figures(&mut text, core);
    text
}

/// The event-table figures the retention loop keeps, written here rather
/// than through the registry so an agent that caught up leaves the
/// per-agent family instead of keeping a stale series.
fn event_table_figures(out: &mut String, core: &Core) {
    use std::fmt::Write;
    let f = core.retention.figures();
    let now = crate::clock::now_ms();
    let age = |at: i64| ((now - at).max(0) as f64) / 1000.0;
    let _ = writeln!(
        out,
        "# HELP swarmbridge_events_stored Durable events in the event table.\n\
         # TYPE swarmbridge_events_stored gauge\nswarmbridge_events_stored {}",
        f.table.rows
    );
    let _ = writeln!(
        out,
        "# HELP swarmbridge_events_oldest_age_seconds Age of the oldest stored event.\n\
         # TYPE swarmbridge_events_oldest_age_seconds gauge\n\
         swarmbridge_events_oldest_age_seconds {}",
        f.table.oldest_at.map(age).unwrap_or(0.0)
    );
    let _ = writeln!(
        out,
        "# HELP swarmbridge_events_pruned_to_seq Events at or below this seq were pruned by retention.\n\
         # TYPE swarmbridge_events_pruned_to_seq gauge\nswarmbridge_events_pruned_to_seq {}",
        f.pruned_to
    );
    let _ = writeln!(
        out,
        "# HELP swarmbridge_events_pruned_total Events pruned by retention in this process.\n\
         # TYPE swarmbridge_events_pruned_total counter\nswarmbridge_events_pruned_total {}",
        f.pruned_total
    );
    let _ = writeln!(
        out,
        "# HELP swarmbridge_event_oldest_unacked_age_seconds Age of an agent's oldest \
         unacknowledged event (the {} agents with the oldest).\n\
         # TYPE swarmbridge_event_oldest_unacked_age_seconds gauge",
        crate::core::retention::UNACKED_AGENTS
    );
    for u in &f.oldest_unacked {
        let _ = writeln!(
            out,
            "swarmbridge_event_oldest_unacked_age_seconds{{agent=\"{}\"}} {}",
            label_value(&u.agent),
            age(u.at)
        );
    }
    let _ = writeln!(
        out,
        "# HELP swarmbridge_event_oldest_unacked_seq The seq of that event.\n\
         # TYPE swarmbridge_event_oldest_unacked_seq gauge"
    );
    for u in &f.oldest_unacked {
        let _ = writeln!(
            out,
            "swarmbridge_event_oldest_unacked_seq{{agent=\"{}\"}} {}",
            label_value(&u.agent),
            u.seq
        );
    }
}

/// A Prometheus label value with `\`, `"` and newlines escaped.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Queues and agents given their own series at most (the slowest queues,
/// the least reliable agents), so label cardinality stays bounded.
pub const MAX_INSIGHT_SERIES: usize = 20;

/// The latest insights (computed by the alert loop or an `insights`
/// command, never by a scrape) and the active alerts as gauges.
fn insight_gauges(core: &Core) {
    for (rule, n) in core.latest_insights.alert_counts() {
        gauge!("swarmbridge_alerts_active", "rule" => rule).set(n as f64);
    }
    let Some(i) = core.latest_insights.get() else {
        return;
    };
    let ratio = |r: Option<f64>| r.unwrap_or(f64::NAN);
    gauge!("swarmbridge_swarm_success_ratio", "window" => "hour")
        .set(ratio(i.swarm.hour.success_rate));
    gauge!("swarmbridge_swarm_success_ratio", "window" => "day")
        .set(ratio(i.swarm.day.success_rate));
    let secs = |ms: Option<i64>| ms.map_or(f64::NAN, |ms| ms as f64 / 1000.0);
    gauge!("swarmbridge_queue_wait_p95_seconds", "queue" => "all", "window" => "hour")
        .set(secs(i.wait_hour.p95_ms));
    gauge!("swarmbridge_queue_wait_p95_seconds", "queue" => "all", "window" => "day")
        .set(secs(i.wait_day.p95_ms));
    let mut queues = std::collections::BTreeSet::new();
    for q in i.queues.iter().take(MAX_INSIGHT_SERIES) {
        let name = q.queue.clone();
        gauge!("swarmbridge_queue_backlog", "queue" => name.clone()).set(q.backlog as f64);
        gauge!("swarmbridge_queue_oldest_open_seconds", "queue" => name.clone())
            .set(q.oldest_open_age_s.unwrap_or(0) as f64);
        gauge!("swarmbridge_queue_wait_p95_seconds", "queue" => name.clone(), "window" => "hour")
            .set(secs(q.wait_hour.p95_ms));
        gauge!("swarmbridge_queue_wait_p95_seconds", "queue" => name.clone(), "window" => "day")
            .set(secs(q.wait_day.p95_ms));
        queues.insert(name);
    }
    let mut agents = std::collections::BTreeSet::new();
    for a in i.agents.iter().take(MAX_INSIGHT_SERIES) {
        let name = a.agent.clone();
        gauge!("swarmbridge_agent_success_ratio", "agent" => name.clone())
            .set(ratio(a.windows.day.success_rate));
        gauge!("swarmbridge_agent_expiries_last_day", "agent" => name.clone())
            .set(a.windows.day.expiries as f64);
        agents.insert(name);
    }
    let (gone_q, gone_a) = core.latest_insights.replace_shown(queues, agents);
    for name in gone_q {
        gauge!("swarmbridge_queue_backlog", "queue" => name.clone()).set(0.0);
        gauge!("swarmbridge_queue_oldest_open_seconds", "queue" => name.clone()).set(0.0);
        for w in ["hour", "day"] {
            gauge!("swarmbridge_queue_wait_p95_seconds", "queue" => name.clone(), "window" => w)
                .set(f64::NAN);
        }
    }
    for name in gone_a {
        gauge!("swarmbridge_agent_success_ratio", "agent" => name.clone()).set(f64::NAN);
        gauge!("swarmbridge_agent_expiries_last_day", "agent" => name).set(0.0);
    }
}
