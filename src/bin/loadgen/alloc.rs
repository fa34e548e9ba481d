//! `loadgen alloc`: does learned allocation help? A simulated swarm runs
//! the same task stream under `tasks.allocation = "first_come"` and
//! `"learned"`, on a skewed swarm (fast and reliable, slow, flaky agents)
//! and on a uniform one.
//!
//! Every simulated agent behaves the same in both modes: while idle it
//! claims on `task.created` / `task.offered` events and polls `task.claim`
//! every `poll_ms`; with a task it "works" for its profile's duration
//! (±20 %, seeded, so both modes draw the same numbers per agent) and then
//! completes it, or fails it with `retry: true` at its failure rate. An
//! operator creates the tasks at a fixed rate and watches `task.completed`
//! and `task.failed` (it is their creator). Figures: makespan (first
//! creation to last final outcome), mean completion time (creation to
//! `done`), failures (claims that failed), retries (failures that went back
//! to `open`), tasks given up (failed `max_attempts` times), and the share
//! of tasks done by each kind of agent.

use crate::common::{hello, next_reply, registry, row, spawn_swarmbridge_with, AgentGroup, Ws};
use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// The capability every simulated task needs and every agent has.
const CAPABILITY: &str = "sim";
/// Agents in each swarm.
pub const SWARM: usize = 8;

/// How one kind of agent works.
#[derive(Debug, Clone, Copy)]
struct Profile {
    kind: &'static str,
    mean_ms: u64,
    fail: f64,
}

const FAST: Profile = Profile {
    kind: "fast",
    mean_ms: 60,
    fail: 0.02,
};
const SLOW: Profile = Profile {
    kind: "slow",
    mean_ms: 600,
    fail: 0.05,
};
const FLAKY: Profile = Profile {
    kind: "flaky",
    mean_ms: 120,
    fail: 0.5,
};
const EVEN: Profile = Profile {
    kind: "even",
    mean_ms: 200,
    fail: 0.05,
};

/// The two swarms: skewed (2 fast, 4 slow, 2 flaky) and uniform (8 even).
/// The fast agents come last in name order (`sim-3`, `sim-7`), so that ties
/// between agents without a record (broken by name) do not favour them.
fn swarm(skewed: bool) -> Vec<Profile> {
    if skewed {
        vec![SLOW, FLAKY, SLOW, FAST, SLOW, FLAKY, SLOW, FAST]
    } else {
        vec![EVEN; SWARM]
    }
}

/// The agents this scenario registers: the swarm and one operator.
pub fn roster() -> [AgentGroup<'static>; 2] {
    [
        AgentGroup {
            prefix: "sim-",
            count: SWARM,
            role: "agent",
        },
        AgentGroup {
            prefix: "op-",
            count: 1,
            role: "operator",
        },
    ]
}

/// What one simulated agent did with one claim.
struct Outcome {
    kind: &'static str,
    done: bool,
}

async fn send(ws: &mut Ws, frame: Value) -> anyhow::Result<()> {
    ws.send(Message::Text(frame.to_string().into())).await?;
    Ok(())
}

/// One simulated agent: claims while idle, works, completes or fails.
async fn simulated_agent(
    mut ws: Ws,
    profile: Profile,
    seed: u64,
    poll: Duration,
    outcomes: mpsc::UnboundedSender<Outcome>,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut n = 0u64;
    loop {
        // idle: claim now, then again on any event or after `poll`
        n += 1;
        let id = format!("c{n}");
        send(&mut ws, json!({"type": "task.claim", "id": id})).await?;
        let reply = next_reply(&mut ws, &id).await?;
        let task_id = if reply["type"] == "task" {
            reply["task"]["id"].as_i64()
        } else {
            None
        };
        let Some(task_id) = task_id else {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(poll) => {}
                m = ws.next() => {
                    if m.is_none() {
                        return Ok(());
                    }
                }
            }
            continue;
        };
        let jitter = rng.random_range(0.8..1.2);
        let fails = rng.random_bool(profile.fail);
        tokio::time::sleep(Duration::from_micros(
            (profile.mean_ms as f64 * 1000.0 * jitter) as u64,
        ))
        .await;
        let id = format!("d{n}");
        let frame = if fails {
            json!({"type": "task.fail", "id": id, "task_id": task_id, "error": "simulated failure", "retry": true})
        } else {
            json!({"type": "task.complete", "id": id, "task_id": task_id})
        };
        send(&mut ws, frame).await?;
        let r = next_reply(&mut ws, &id).await?;
        anyhow::ensure!(r["type"] == "task", "finishing a task failed: {r}");
        let _ = outcomes.send(Outcome {
            kind: profile.kind,
            done: !fails,
        });
    }
}

/// The figures of one run.
struct RunFigures {
    makespan_s: f64,
    mean_completion_ms: f64,
    failures: usize,
    retries: usize,
    given_up: usize,
    done_by_kind: BTreeMap<&'static str, usize>,
}

/// One run: a fresh server in `mode`, the swarm, `tasks` created at `rate`.
async fn run_once(
    bin: &Path,
    skewed: bool,
    mode: &str,
    tasks: usize,
    rate: f64,
) -> anyhow::Result<RunFigures> {
    let (reg, tokens) = registry(bin, &roster()).await?;
    let db = reg.db.clone();
    let server = spawn_swarmbridge_with(
        bin,
        reg.dir,
        &db,
        &[
            ("SWARMBRIDGE_TASKS__ALLOCATION", mode),
            ("SWARMBRIDGE_TASKS__OFFER_WINDOW_MS", "500"),
            ("SWARMBRIDGE_TASKS__SWEEP_INTERVAL_MS", "50"),
        ],
    )
    .await?;
    let stop = tokio_util::sync::CancellationToken::new();
    let (tx, mut outcomes) = mpsc::unbounded_channel();
    let mut agents = Vec::new();
    for (i, profile) in swarm(skewed).into_iter().enumerate() {
        let mut ws = crate::common::connect(server.addr).await?;
        send(
            &mut ws,
            json!({"type": "hello", "id": "hello", "token": tokens[0][i], "capabilities": [CAPABILITY]}),
        )
        .await?;
        let w = next_reply(&mut ws, "hello").await?;
        anyhow::ensure!(w["type"] == "welcome", "no welcome: {w}");
        agents.push(tokio::spawn(simulated_agent(
            ws,
            profile,
            1000 + i as u64,
            Duration::from_millis(100),
            tx.clone(),
            stop.clone(),
        )));
    }
    drop(tx);
    let (mut op, _) = hello(server.addr, &tokens[1][0], None).await?;
    let mut created: HashMap<i64, Instant> = HashMap::with_capacity(tasks);
    let mut finished: HashMap<i64, Instant> = HashMap::new();
    let (mut failures, mut retries, mut given_up) = (0, 0, 0);
    let mut done_by_kind: BTreeMap<&'static str, usize> = BTreeMap::new();
    let t0 = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / rate);
    let mut next_create = Instant::now();
    let mut sent = 0usize;
    let deadline = Instant::now() + Duration::from_secs(300);
    while finished.len() < tasks {
        anyhow::ensure!(
            Instant::now() < deadline,
            "alloc: {} of {tasks} tasks finished after 300 s",
            finished.len()
        );
        while let Ok(o) = outcomes.try_recv() {
            if o.done {
                *done_by_kind.entry(o.kind).or_default() += 1;
            }
        }
        if sent < tasks && Instant::now() >= next_create {
            let frame = json!({"type": "task.create", "id": format!("t{sent}"),
                "title": format!("sim task {sent}"), "requires": [CAPABILITY]});
            send(&mut op, frame).await?;
            sent += 1;
            next_create += gap;
        }
        let wait = if sent < tasks {
            next_create.saturating_duration_since(Instant::now())
        } else {
            Duration::from_millis(200)
        };
        let Ok(m) = tokio::time::timeout(wait, op.next()).await else {
            continue;
        };
        let Some(m) = m else {
            anyhow::bail!("the operator's connection closed");
        };
        let Message::Text(t) = m? else { continue };
        let v: Value = serde_json::from_str(&t)?;
        if v["type"] == "task" && v["re"].as_str().is_some_and(|r| r.starts_with('t')) {
            if let Some(id) = v["task"]["id"].as_i64() {
                created.entry(id).or_insert_with(Instant::now);
            }
        } else if v["type"] == "event" {
            let task = &v["data"]["task"];
            let Some(id) = task["id"].as_i64() else {
                continue;
            };
            match v["kind"].as_str() {
                Some("task.completed") => {
                    finished.insert(id, Instant::now());
                }
                Some("task.failed") => {
                    failures += 1;
                    if task["state"] == "open" {
                        retries += 1;
                    } else {
                        given_up += 1;
                        finished.insert(id, Instant::now());
                    }
                }
                _ => {}
            }
        } else if v["type"] == "error" {
            anyhow::bail!("the operator's request failed: {v}");
        }
    }
    let makespan_s = t0.elapsed().as_secs_f64();
    stop.cancel();
    for a in agents {
        let _ = tokio::time::timeout(Duration::from_secs(5), a).await;
    }
    while let Ok(o) = outcomes.try_recv() {
        if o.done {
            *done_by_kind.entry(o.kind).or_default() += 1;
        }
    }
    drop(op);
    let _ = server.stop().await?;
    let completions: Vec<f64> = finished
        .iter()
        .filter_map(|(id, end)| created.get(id).map(|c| end.duration_since(*c)))
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    Ok(RunFigures {
        makespan_s,
        mean_completion_ms: completions.iter().sum::<f64>() / completions.len().max(1) as f64,
        failures,
        retries,
        given_up,
        done_by_kind,
    })
}

/// Runs both swarms under both modes and prints one row per run.
pub async fn alloc(bin: &Path, tasks: usize, rate: f64) -> anyhow::Result<()> {
    for skewed in [true, false] {
        let swarm_name = if skewed {
            "skewed swarm (2 fast 60 ms 2 % fail, 4 slow 600 ms 5 %, 2 flaky 120 ms 50 %)"
        } else {
            "uniform swarm (8 × 200 ms, 5 % fail)"
        };
        for mode in ["first_come", "learned"] {
            eprintln!("alloc: {swarm_name}, {mode}: {tasks} tasks at {rate}/s ...");
            let f = run_once(bin, skewed, mode, tasks, rate).await?;
            let shares: Vec<String> = f
                .done_by_kind
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            row(
                "alloc",
                &format!("{swarm_name}, {mode}"),
                &format!(
                    "makespan {:.1} s, mean completion {:.0} ms",
                    f.makespan_s, f.mean_completion_ms
                ),
                &format!(
                    "{tasks} tasks at {rate}/s; failures {}, retries {}, given up {}; done by {}",
                    f.failures,
                    f.retries,
                    f.given_up,
                    shares.join(", ")
                ),
            );
        }
    }
    Ok(())
}
