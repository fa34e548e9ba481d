//! `loadgen crash`: SIGKILL in the middle of a claiming load and a message
//! load, restart on the same database, and count what was lost.
//!
//! Each run, on a fresh database (a SQLite file, or a new database on the
//! PostgreSQL server `--database-url` names):
//!
//! 1. an operator creates `--tasks` tasks; workers loop `task.claim`
//!    (short lease) → `task.complete`; senders loop `msg.send` to two
//!    receivers, recording every message answered `ok`; the receivers
//!    record what they get and ack as they go;
//! 2. once a random share (20-80 %) of the tasks is completed, the server
//!    gets SIGKILL;
//! 3. it is started again on the same database; the receivers reconnect
//!    (replay after their last stored ack); the leases of the tasks claimed
//!    at the kill run out; fresh workers drain what is open;
//! 4. checks, all through the protocol: every `ok`-acknowledged message
//!    reached its receiver (before the kill or replayed after it); every
//!    created task exists; every completion answered before the kill is
//!    `done`; no task is `claimed` once the leases ran out (each claimed at
//!    the kill is `done` or was re-opened); after the drain every task is
//!    `done` with exactly one `task.completed` event (none completed twice).
//!
//! Duplicated deliveries are allowed (events are at least once) and counted.

use crate::common::{create_tasks, free_port, hello, next_reply, row, Server, Ws};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::Command;
use tokio_tungstenite::tungstenite::Message;

/// What `loadgen crash` is asked to do.
pub struct CrashPlan {
    /// The server binary.
    pub bin: PathBuf,
    /// A PostgreSQL server URL (a fresh database per run), or None for SQLite.
    pub database_url: Option<String>,
    /// Runs, each with its own database.
    pub runs: usize,
    /// Agents claiming and completing.
    pub workers: usize,
    /// Agents sending messages.
    pub senders: usize,
    /// Tasks created per run.
    pub tasks: usize,
    /// Lease of every claim, in seconds.
    pub lease_s: u64,
}

const RECEIVERS: usize = 2;

/// What one run counted.
#[derive(Default, Debug)]
struct RunCounts {
    completed_before_kill: usize,
    claimed_at_kill: usize,
    reopened: usize,
    done_at_kill: usize,
    acked_messages: usize,
    duplicate_deliveries: usize,
    lost_messages: usize,
    lost_tasks: usize,
    lost_completions: usize,
    stuck_claimed: usize,
    doubled: usize,
}

impl RunCounts {
    fn clean(&self) -> bool {
        self.lost_messages == 0
            && self.lost_tasks == 0
            && self.lost_completions == 0
            && self.stuck_claimed == 0
            && self.doubled == 0
    }
}

/// A database for one run, dropped (PostgreSQL) or deleted (SQLite) after it.
enum RunDb {
    Sqlite(tempfile::TempDir),
    Postgres { admin: String, name: String },
}

impl RunDb {
    async fn fresh(pg: Option<&str>) -> anyhow::Result<RunDb> {
        let Some(admin) = pg else {
            return Ok(RunDb::Sqlite(tempfile::tempdir()?));
        };
        use sqlx::Connection;
        let name = format!("sb_crash_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(admin).await?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(RunDb::Postgres {
            admin: admin.to_string(),
            name,
        })
    }

    fn url(&self) -> String {
        match self {
            RunDb::Sqlite(dir) => dir.path().join("crash.db").display().to_string(),
            RunDb::Postgres { admin, name } => with_database(admin, name),
        }
    }

    async fn remove(self) {
        if let RunDb::Postgres { admin, name } = self {
            use sqlx::Connection;
            if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                let _ = sqlx::query(&drop).execute(&mut conn).await;
                let _ = conn.close().await;
            }
        }
    }
}

/// `base` (`postgres://host/db?opts`) naming database `name` instead.
fn with_database(base: &str, name: &str) -> String {
    let (main, query) = match base.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (base, None),
    };
    let start = main.find("://").map(|i| i + 3).unwrap_or(0);
    let root = match main[start..].find('/') {
        Some(slash) => &main[..start + slash],
        None => main,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

/// Registers an agent with the CLI on `db`; returns its token.
async fn add_agent(bin: &Path, db: &str, name: &str, role: &str) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .args(["agent", "add", name, "--role", role])
        .env("SWARMBRIDGE_DATABASE_URL", db)
        .env("RUST_LOG", "warn")
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "agent add {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// Starts `serve` on `db` with a fast lease sweeper and no rate limits.
async fn start_server(bin: &Path, db: &str, log: &Path) -> anyhow::Result<Server> {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let child = Command::new(bin)
        .arg("serve")
        .env("SWARMBRIDGE_DATABASE_URL", db)
        .env("SWARMBRIDGE_LISTEN", addr.to_string())
        .env(
            "SWARMBRIDGE_LIMITS__EXEMPT_ROLES",
            "[\"agent\",\"operator\",\"admin\"]",
        )
        .env("SWARMBRIDGE_TASKS__SWEEP_INTERVAL_MS", "100")
        .env("SWARMBRIDGE_SYNC__ACK_FLUSH_MS", "100")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()?;
    let mut s = Server {
        child,
        addr,
        dir: None,
    };
    s.wait_listening().await?;
    Ok(s)
}

/// What one worker saw answered before its connection ended.
#[derive(Default)]
struct WorkerLog {
    claimed: Vec<i64>,
    completed: Vec<i64>,
}

/// Claims (with `lease_s`) and completes until nothing is left or the
/// connection ends.
async fn work(mut ws: Ws, lease_s: u64, done: Arc<AtomicUsize>) -> WorkerLog {
    let mut log = WorkerLog::default();
    let claim = json!({"type":"task.claim","id":"c","lease_s":lease_s}).to_string();
    loop {
        if ws.send(Message::Text(claim.clone().into())).await.is_err() {
            return log;
        }
        let Ok(reply) = next_reply(&mut ws, "c").await else {
            return log;
        };
        let Some(id) = reply["task"]["id"].as_i64() else {
            return log; // nothing open (or an error): this worker is done
        };
        log.claimed.push(id);
        let complete = json!({"type":"task.complete","id":"d","task_id":id}).to_string();
        if ws.send(Message::Text(complete.into())).await.is_err() {
            return log;
        }
        match next_reply(&mut ws, "d").await {
            Ok(r) if r["task"]["state"] == "done" => {
                log.completed.push(id);
                done.fetch_add(1, Ordering::Relaxed);
            }
            _ => return log,
        }
    }
}

/// Sends messages to the receivers until the connection ends; returns
/// (receiver index, text) of every message answered `ok`.
async fn send_messages(mut ws: Ws, me: usize, receivers: Vec<String>) -> Vec<(usize, String)> {
    let mut acked = Vec::new();
    for n in 0.. {
        let to = n % receivers.len();
        let text = format!("crash-{me}-{n}");
        let frame = json!({"type":"msg.send","id":"m","to":receivers[to],"text":text});
        if ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .is_err()
        {
            break;
        }
        match next_reply(&mut ws, "m").await {
            Ok(r) if r["type"] == "ok" => acked.push((to, text)),
            _ => break,
        }
    }
    acked
}

/// Records every message event until the connection ends or `until`
/// (returns early once `expect` texts are all seen); acks every 16 events.
async fn receive(mut ws: Ws, expect: Option<HashSet<String>>, idle: Duration) -> Vec<String> {
    let mut got = Vec::new();
    let mut seen = HashSet::new();
    let mut since_ack = 0;
    loop {
        if let Some(e) = &expect {
            if e.iter().all(|t| seen.contains(t)) {
                return got;
            }
        }
        let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(idle, ws.next()).await else {
            return got;
        };
        let Ok(v) = serde_json::from_str::<Value>(&t) else {
            continue;
        };
        if v["type"] != "event" || v["kind"] != "message" {
            continue;
        }
        if let Some(text) = v["data"]["text"].as_str() {
            seen.insert(text.to_string());
            got.push(text.to_string());
        }
        since_ack += 1;
        if since_ack >= 16 {
            since_ack = 0;
            let ack = json!({"type":"ack","seq":v["seq"]}).to_string();
            if ws.send(Message::Text(ack.into())).await.is_err() {
                return got;
            }
        }
    }
}

/// Every task's state, by id, through `task.list`.
async fn task_states(ws: &mut Ws) -> anyhow::Result<BTreeMap<i64, String>> {
    ws.send(Message::Text(
        json!({"type":"task.list","id":"l","limit":500})
            .to_string()
            .into(),
    ))
    .await?;
    let reply = next_reply(ws, "l").await?;
    let tasks = reply["tasks"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("task.list failed: {reply}"))?;
    Ok(tasks
        .iter()
        .filter_map(|t| Some((t["id"].as_i64()?, t["state"].as_str()?.to_string())))
        .collect())
}

/// `task.completed` events per task in the operator's whole event log
/// (replayed from seq 0 up to the `welcome`'s newest seq).
async fn completions(addr: SocketAddr, token: &str) -> anyhow::Result<HashMap<i64, usize>> {
    let (mut ws, welcome) = hello(addr, token, Some(0)).await?;
    let newest = welcome["seq"].as_u64().unwrap_or(0);
    let mut count = HashMap::new();
    let mut last = 0;
    while last < newest {
        let m = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .map_err(|_| anyhow::anyhow!("replay stalled at seq {last} of {newest}"))?
            .ok_or_else(|| anyhow::anyhow!("closed during replay"))??;
        let Message::Text(t) = m else { continue };
        let v: Value = serde_json::from_str(&t)?;
        if v["type"] != "event" {
            continue;
        }
        last = v["seq"].as_u64().unwrap_or(last);
        if v["kind"] == "task.completed" {
            if let Some(id) = v["data"]["task"]["id"].as_i64() {
                *count.entry(id).or_insert(0) += 1;
            }
        }
    }
    Ok(count)
}

/// One kill-and-restart run.
async fn one_run(
    plan: &CrashPlan,
    run: usize,
    db: &RunDb,
    log: &Path,
) -> anyhow::Result<RunCounts> {
    let url = db.url();
    let bin = plan.bin.as_path();
    let op_token = add_agent(bin, &url, "crash-op", "operator").await?;
    let mut worker_tokens = Vec::new();
    for i in 0..plan.workers {
        worker_tokens.push(add_agent(bin, &url, &format!("crash-worker-{i}"), "agent").await?);
    }
    let mut sender_tokens = Vec::new();
    for i in 0..plan.senders {
        sender_tokens.push(add_agent(bin, &url, &format!("crash-sender-{i}"), "agent").await?);
    }
    let receivers: Vec<String> = (0..RECEIVERS).map(|i| format!("crash-recv-{i}")).collect();
    let mut receiver_tokens = Vec::new();
    for name in &receivers {
        receiver_tokens.push(add_agent(bin, &url, name, "agent").await?);
    }

    let mut server = start_server(bin, &url, log).await?;
    let (mut op, _) = hello(server.addr, &op_token, None).await?;
    let (created, newest) = create_tasks(&mut op, plan.tasks, 32).await?;
    drop(op);

    // the load
    let done = Arc::new(AtomicUsize::new(0));
    let mut recv_handles = Vec::new();
    for token in &receiver_tokens {
        let (ws, _) = hello(server.addr, token, None).await?;
        recv_handles.push(tokio::spawn(receive(ws, None, Duration::from_secs(60))));
    }
    let mut worker_handles = Vec::new();
    for token in &worker_tokens {
        let (ws, _) = hello(server.addr, token, Some(newest)).await?;
        worker_handles.push(tokio::spawn(work(ws, plan.lease_s, done.clone())));
    }
    let mut sender_handles = Vec::new();
    for (i, token) in sender_tokens.iter().enumerate() {
        let (ws, _) = hello(server.addr, token, Some(newest)).await?;
        sender_handles.push(tokio::spawn(send_messages(ws, i, receivers.clone())));
    }
    let share = 0.2 + 0.6 * rand::random::<f64>();
    let target = ((plan.tasks as f64 * share) as usize).max(1);
    let deadline = Instant::now() + Duration::from_secs(60);
    while done.load(Ordering::Relaxed) < target && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.child.start_kill()?; // SIGKILL
    server.child.wait().await?;

    let mut claimed = HashSet::new();
    let mut completed: HashMap<i64, usize> = HashMap::new();
    for h in worker_handles {
        let log = h.await?;
        claimed.extend(log.claimed);
        for id in log.completed {
            *completed.entry(id).or_insert(0) += 1;
        }
    }
    let mut acked: Vec<HashSet<String>> = vec![HashSet::new(); RECEIVERS];
    for h in sender_handles {
        for (to, text) in h.await? {
            acked[to].insert(text);
        }
    }
    let mut delivered: Vec<Vec<String>> = Vec::new();
    for h in recv_handles {
        delivered.push(h.await?);
    }

    // restart on the same database
    let server = start_server(bin, &url, log).await?;
    for (i, token) in receiver_tokens.iter().enumerate() {
        let (ws, _) = hello(server.addr, token, None).await?;
        let expect: HashSet<String> = acked[i]
            .iter()
            .filter(|t| !delivered[i].contains(t))
            .cloned()
            .collect();
        delivered[i].extend(receive(ws, Some(expect), Duration::from_secs(10)).await);
    }
    let mut c = RunCounts {
        completed_before_kill: completed.len(),
        acked_messages: acked.iter().map(HashSet::len).sum(),
        doubled: completed.values().filter(|n| **n > 1).count(),
        ..RunCounts::default()
    };
    for (i, got) in delivered.iter().enumerate() {
        let distinct: HashSet<&String> = got.iter().collect();
        c.duplicate_deliveries += got.len() - distinct.len();
        c.lost_messages += acked[i].iter().filter(|t| !distinct.contains(t)).count();
    }

    // leases of the tasks claimed at the kill run out
    let (mut op, _) = hello(server.addr, &op_token, None).await?;
    let at_kill: Vec<i64> = claimed
        .iter()
        .filter(|id| !completed.contains_key(id))
        .copied()
        .collect();
    c.claimed_at_kill = at_kill.len();
    let lease_deadline = Instant::now() + Duration::from_secs(plan.lease_s + 15);
    let states = loop {
        let states = task_states(&mut op).await?;
        let claimed_now = states.values().filter(|s| *s == "claimed").count();
        if claimed_now == 0 || Instant::now() > lease_deadline {
            c.stuck_claimed = claimed_now;
            break states;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    c.lost_tasks = created.iter().filter(|id| !states.contains_key(id)).count();
    c.lost_completions = completed
        .keys()
        .filter(|id| states.get(id).map(String::as_str) != Some("done"))
        .count();
    for id in &at_kill {
        match states.get(id).map(String::as_str) {
            Some("done") => c.done_at_kill += 1,
            Some("open") => c.reopened += 1,
            _ => {}
        }
    }

    // drain what is open, then every task must be done exactly once
    let mut drains = Vec::new();
    for token in &worker_tokens {
        let (ws, _) = hello(server.addr, token, None).await?;
        drains.push(tokio::spawn(work(ws, plan.lease_s, done.clone())));
    }
    for h in drains {
        h.await?;
    }
    let states = task_states(&mut op).await?;
    let not_done = created
        .iter()
        .filter(|id| states.get(id).map(String::as_str) != Some("done"))
        .count();
    c.lost_tasks = c.lost_tasks.max(not_done);
    let events = completions(server.addr, &op_token).await?;
    let doubled_events = events.values().filter(|n| **n > 1).count();
    let missing_events = created
        .iter()
        .filter(|id| events.get(id).copied().unwrap_or(0) == 0)
        .count();
    c.doubled += doubled_events;
    c.lost_completions += missing_events;
    drop(op);
    server.stop().await?;
    eprintln!("crash run {run}: {c:?}");
    Ok(c)
}

/// Runs the scenario `plan.runs` times and prints a row per run and a
/// summary; fails when any run lost or doubled anything.
pub async fn crash(plan: &CrashPlan) -> anyhow::Result<()> {
    anyhow::ensure!(
        plan.runs > 0 && plan.workers > 0 && plan.senders > 0 && plan.tasks > 0,
        "--runs, --workers, --senders and --tasks must be at least 1"
    );
    anyhow::ensure!(plan.tasks <= 500, "--tasks is at most 500 (one task.list)");
    let backend = if plan.database_url.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let logs = tempfile::tempdir()?;
    let mut clean_runs = 0;
    let mut totals = RunCounts::default();
    for run in 1..=plan.runs {
        let db = RunDb::fresh(plan.database_url.as_deref()).await?;
        let log = logs.path().join(format!("run-{run}.log"));
        let result = one_run(plan, run, &db, &log).await;
        db.remove().await;
        let c = match result {
            Ok(c) => c,
            Err(e) => {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                anyhow::bail!("run {run} failed: {e}\nserver log:\n{tail}");
            }
        };
        row(
            "crash",
            &format!("run {run}, {backend}"),
            if c.clean() { "clean" } else { "LOST/DOUBLED" },
            &format!(
                "{} completed before the kill, {} claimed at it ({} done, {} re-opened by lease expiry); \
                 {} acked messages, {} lost, {} delivered twice; lost tasks {}, lost completions {}, \
                 stuck claims {}, doubled {}",
                c.completed_before_kill, c.claimed_at_kill, c.done_at_kill, c.reopened,
                c.acked_messages, c.lost_messages, c.duplicate_deliveries, c.lost_tasks,
                c.lost_completions, c.stuck_claimed, c.doubled
            ),
        );
        if c.clean() {
            clean_runs += 1;
        }
        totals.completed_before_kill += c.completed_before_kill;
        totals.claimed_at_kill += c.claimed_at_kill;
        totals.reopened += c.reopened;
        totals.done_at_kill += c.done_at_kill;
        totals.acked_messages += c.acked_messages;
        totals.duplicate_deliveries += c.duplicate_deliveries;
        totals.lost_messages += c.lost_messages;
        totals.lost_tasks += c.lost_tasks;
        totals.lost_completions += c.lost_completions;
        totals.stuck_claimed += c.stuck_claimed;
        totals.doubled += c.doubled;
    }
    row(
        "crash",
        &format!("{} SIGKILL runs, {backend}", plan.runs),
        &format!("{clean_runs}/{} clean", plan.runs),
        &format!(
            "{} tasks x {} runs; {} acked messages, {} lost; {} tasks claimed at a kill ({} done, {} re-opened); \
             lost tasks {}, lost completions {}, stuck claims {}, doubled {}; {} duplicate deliveries (allowed)",
            plan.tasks, plan.runs, totals.acked_messages, totals.lost_messages, totals.claimed_at_kill,
            totals.done_at_kill, totals.reopened, totals.lost_tasks, totals.lost_completions,
            totals.stuck_claimed, totals.doubled, totals.duplicate_deliveries
        ),
    );
    anyhow::ensure!(
        clean_runs == plan.runs,
        "{} of {} runs lost or doubled something",
        plan.runs - clean_runs,
        plan.runs
    );
    Ok(())
}
