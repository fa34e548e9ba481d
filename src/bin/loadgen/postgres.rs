//! `loadgen pg`: claims and cross-instance event latency on PostgreSQL,
//! with one or more `swarmbridge serve` instances sharing one database.
//!
//! Each step gets a fresh database at the server `--url` names (copied
//! from a template in which the agents were registered once with
//! `swarmbridge agent add`), starts `instances` servers on it, and:
//!
//! - **claims**: an operator creates the tasks through instance 1; `agents`
//!   agents, spread round-robin over the instances, each loop
//!   `task.claim` → `task.complete` until a claim finds nothing. The figure
//!   is claim+complete pairs per second. After the servers stopped, the
//!   database is checked with the `psql` CLI as `loadgen claims` checks
//!   SQLite: every task done, exactly one done run and one `task.claimed`
//!   and `task.completed` event per task, no overlapping runs;
//! - **latency**: an agent on the first instance sends `messages` direct
//!   messages one after the other to an agent on the last instance; each
//!   latency runs from sending `msg.send` to the `message` event arriving
//!   on the other instance (commit, `NOTIFY`, read back from the table,
//!   fan-out).
//!
//! Every database it creates is dropped at the end of its step.

use crate::common::{create_tasks, hello, next_reply, row, spawn_swarmbridge, Samples, Server, Ws};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::Command;
use tokio_tungstenite::tungstenite::Message;

/// What one `loadgen pg` run measures.
pub struct PgPlan {
    /// PostgreSQL server URL (its database part is replaced per step).
    pub url: String,
    /// Instance counts, one step each.
    pub instances: Vec<usize>,
    /// Claiming agents.
    pub agents: usize,
    /// Tasks per claims step.
    pub tasks: usize,
    /// Messages per latency step (0: no latency step).
    pub messages: usize,
}

/// `base` (`postgres://.../db?opts`) with its database replaced by `name`.
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

/// Runs `sql` with the `psql` CLI against `url`; returns its output (one
/// unaligned value per line).
async fn psql(url: &str, sql: &str) -> anyhow::Result<String> {
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .output()
        .await
        .map_err(|e| {
            anyhow::anyhow!("psql CLI not runnable ({e}); apt-get install postgresql-client")
        })?;
    anyhow::ensure!(
        out.status.success(),
        "psql failed on {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

async fn psql_count(url: &str, sql: &str) -> anyhow::Result<i64> {
    let text = psql(url, sql).await?;
    text.parse()
        .map_err(|e| anyhow::anyhow!("psql answered {text:?} to {sql}: {e}"))
}

/// A database created for one step, dropped (with its sessions) at the end.
struct ScratchDb {
    admin: String,
    name: String,
    url: String,
}

impl ScratchDb {
    async fn create(admin: &str, name: &str, template: Option<&str>) -> anyhow::Result<ScratchDb> {
        let _ = psql(
            admin,
            &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        )
        .await;
        let sql = match template {
            Some(t) => format!("CREATE DATABASE \"{name}\" TEMPLATE \"{t}\""),
            None => format!("CREATE DATABASE \"{name}\""),
        };
        psql(admin, &sql).await?;
        Ok(ScratchDb {
            admin: admin.to_string(),
            url: with_database(admin, name),
            name: name.to_string(),
        })
    }

    async fn drop_now(self) -> anyhow::Result<()> {
        psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name),
        )
        .await
        .map(|_| ())
    }
}

/// A template database with `agents` workers (`worker-N`), one operator
/// and two messengers registered through the CLI; returns the tokens in
/// that order (workers, then `op-0`, `tx-0`, `rx-0`).
async fn template(
    bin: &Path,
    admin: &str,
    agents: usize,
) -> anyhow::Result<(ScratchDb, Vec<String>)> {
    let name = format!("loadgen_pg_template_{}", std::process::id());
    let db = ScratchDb::create(admin, &name, None).await?;
    let status = Command::new(bin)
        .arg("migrate")
        .env("SWARMBRIDGE_DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .status()
        .await?;
    anyhow::ensure!(
        status.success(),
        "swarmbridge migrate failed on {}",
        db.name
    );
    let mut names: Vec<(String, &str)> = (0..agents)
        .map(|i| (format!("worker-{i}"), "agent"))
        .collect();
    names.push(("op-0".into(), "operator"));
    names.push(("tx-0".into(), "agent"));
    names.push(("rx-0".into(), "agent"));
    eprintln!(
        "pg: registering {} agents with `swarmbridge agent add`...",
        names.len()
    );
    let mut tokens = Vec::with_capacity(names.len());
    for chunk in names.chunks(4) {
        let mut running = Vec::new();
        for (name, role) in chunk {
            running.push(
                Command::new(bin)
                    .args(["agent", "add", name, "--role", role])
                    .env("SWARMBRIDGE_DATABASE_URL", &db.url)
                    .env("RUST_LOG", "warn")
                    .stderr(Stdio::piped())
                    .output(),
            );
        }
        for (out, (name, _)) in futures_util::future::join_all(running)
            .await
            .into_iter()
            .zip(chunk)
        {
            let out = out?;
            anyhow::ensure!(
                out.status.success(),
                "agent add {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            tokens.push(String::from_utf8(out.stdout)?.trim().to_string());
        }
    }
    Ok((db, tokens))
}

/// Starts one `swarmbridge serve` on `url`. Instances inherit the
/// generator's environment, so `SWARMBRIDGE_DATABASE__POOL_SIZE=32 loadgen
/// pg ...` (or any other `SWARMBRIDGE_` setting) applies to all of them.
async fn spawn_instance(bin: &Path, url: &str) -> anyhow::Result<Server> {
    spawn_swarmbridge(bin, tempfile::tempdir()?, Path::new(url)).await
}

/// Claims and completes until `task.claim` finds nothing; returns the ids.
async fn work(mut ws: Ws) -> anyhow::Result<Vec<i64>> {
    let mut got = Vec::new();
    loop {
        ws.send(Message::Text(r#"{"type":"task.claim","id":"c"}"#.into()))
            .await?;
        let reply = next_reply(&mut ws, "c").await?;
        anyhow::ensure!(reply["type"] == "task", "claim failed: {reply}");
        let Some(id) = reply["task"]["id"].as_i64() else {
            return Ok(got);
        };
        got.push(id);
        let complete = json!({"type":"task.complete","id":"d","task_id":id});
        ws.send(Message::Text(complete.to_string().into())).await?;
        let done = next_reply(&mut ws, "d").await?;
        anyhow::ensure!(done["type"] == "task", "complete failed: {done}");
    }
}

/// Tasks that do not have exactly one event of `kind`.
async fn events_mismatch(url: &str, kind: &str) -> anyhow::Result<i64> {
    psql_count(
        url,
        &format!(
            "SELECT count(*) FROM tasks t LEFT JOIN \
             (SELECT (data::json->'task'->>'id')::bigint AS id, count(*) AS n FROM events \
              WHERE kind = '{kind}' GROUP BY 1) e \
             ON e.id = t.id WHERE coalesce(e.n, 0) <> 1"
        ),
    )
    .await
}

/// Checks the finished run in the database; returns the detail line and
/// whether every task was claimed and completed exactly once.
async fn check(url: &str, tasks: usize) -> anyhow::Result<(String, bool)> {
    let total = psql_count(url, "SELECT count(*) FROM tasks").await?;
    let done = psql_count(url, "SELECT count(*) FROM tasks WHERE state = 'done'").await?;
    let runs = psql_count(url, "SELECT count(*) FROM task_runs").await?;
    let without_one_done_run = psql_count(
        url,
        "SELECT count(*) FROM tasks t LEFT JOIN \
         (SELECT task_id, count(*) AS n FROM task_runs WHERE outcome = 'done' GROUP BY task_id) r \
         ON r.task_id = t.id WHERE coalesce(r.n, 0) <> 1",
    )
    .await?;
    let overlapping = psql_count(
        url,
        "SELECT count(*) FROM task_runs a JOIN task_runs b \
         ON a.task_id = b.task_id AND a.id < b.id \
         WHERE a.claimed_at < coalesce(b.ended_at, 9223372036854775807) \
         AND b.claimed_at < coalesce(a.ended_at, 9223372036854775807)",
    )
    .await?;
    let claimed = events_mismatch(url, "task.claimed").await?;
    let completed = events_mismatch(url, "task.completed").await?;
    let ok = total == tasks as i64
        && done == total
        && runs == total
        && without_one_done_run == 0
        && overlapping == 0
        && claimed == 0
        && completed == 0;
    Ok((
        format!(
            "{total} tasks, {done} done, {runs} runs; tasks without exactly one done run: \
             {without_one_done_run}; overlapping runs: {overlapping}; tasks without exactly one \
             task.claimed / task.completed event: {claimed} / {completed}"
        ),
        ok,
    ))
}

/// One step: `instances` servers on a fresh copy of the template.
async fn step(
    bin: &Path,
    plan: &PgPlan,
    template: &str,
    tokens: &[String],
    instances: usize,
) -> anyhow::Result<bool> {
    let name = format!("loadgen_pg_{}_{instances}", std::process::id());
    let db = ScratchDb::create(&plan.url, &name, Some(template)).await?;
    let mut servers = Vec::with_capacity(instances);
    for _ in 0..instances {
        servers.push(spawn_instance(bin, &db.url).await?);
    }
    let addrs: Vec<_> = servers.iter().map(|s| s.addr).collect();
    let (workers, rest) = tokens.split_at(plan.agents);
    let (op, tx, rx) = (&rest[0], &rest[1], &rest[2]);

    let (mut creator, _) = hello(addrs[0], op, None).await?;
    let t_create = Instant::now();
    let (_, newest_seq) = create_tasks(&mut creator, plan.tasks, 64).await?;
    eprintln!(
        "pg: {} tasks created through instance 1 in {:.1} s",
        plan.tasks,
        t_create.elapsed().as_secs_f64()
    );
    drop(creator);
    let mut conns = Vec::with_capacity(plan.agents);
    for (i, token) in workers.iter().enumerate() {
        conns.push(
            hello(addrs[i % instances], token, Some(newest_seq))
                .await?
                .0,
        );
    }
    let t0 = Instant::now();
    let handles: Vec<_> = conns.into_iter().map(|ws| tokio::spawn(work(ws))).collect();
    let mut all = Vec::with_capacity(plan.tasks);
    for h in handles {
        all.extend(h.await??);
    }
    let dt = t0.elapsed().as_secs_f64();
    let distinct: HashSet<i64> = all.iter().copied().collect();
    row(
        "pg claims",
        &format!(
            "claim+complete per second, {} agents, {instances} instance(s), PostgreSQL",
            plan.agents
        ),
        &format!("{:.0}/s", all.len() as f64 / dt),
        &format!(
            "{} tasks in {dt:.2} s; generator saw {} claims of {} distinct tasks",
            all.len(),
            all.len(),
            distinct.len()
        ),
    );

    if plan.messages > 0 {
        let latency =
            cross_instance_latency(addrs[0], addrs[instances - 1], tx, rx, plan.messages).await?;
        row(
            "pg latency",
            &format!("msg.send on instance 1 to the `message` event on instance {instances}"),
            &latency.0,
            &latency.1,
        );
    }

    for s in servers {
        s.stop().await?;
    }
    let (detail, exactly_once) = check(&db.url, plan.tasks).await?;
    row(
        "pg claims",
        &format!("double claims, from the database, {instances} instance(s)"),
        if exactly_once { "0" } else { "FAILED" },
        &detail,
    );
    db.drop_now().await?;
    Ok(exactly_once)
}

/// Connects `token`'s agent with nothing to replay: the claims phase left
/// tens of thousands of task events behind, and reading them first would
/// measure replay, not latency. The first `hello` learns the newest `seq`
/// from the welcome; the second resumes from it.
async fn hello_at_head(addr: std::net::SocketAddr, token: &str) -> anyhow::Result<Ws> {
    let (probe, welcome) = hello(addr, token, None).await?;
    drop(probe);
    let head = welcome["seq"].as_u64().unwrap_or(0);
    Ok(hello(addr, token, Some(head)).await?.0)
}

/// `messages` direct messages from `tx` (on `from`) to `rx` (on `to`), one
/// after the other; returns the figure and detail cells.
async fn cross_instance_latency(
    from: std::net::SocketAddr,
    to: std::net::SocketAddr,
    tx: &str,
    rx: &str,
    messages: usize,
) -> anyhow::Result<(String, String)> {
    let mut sender = hello_at_head(from, tx).await?;
    let mut receiver = hello_at_head(to, rx).await?;
    let mut samples = Samples::default();
    for i in 0..messages {
        let text = format!("latency probe {i}");
        let frame = json!({"type":"msg.send","id":format!("m{i}"),"to":"rx-0","text":text});
        let sent = Instant::now();
        sender.send(Message::Text(frame.to_string().into())).await?;
        loop {
            let m = tokio::time::timeout(Duration::from_secs(10), receiver.next())
                .await
                .map_err(|_| anyhow::anyhow!("message {i} did not arrive within 10 s"))?
                .ok_or_else(|| anyhow::anyhow!("receiver closed"))??;
            let Message::Text(t) = m else { continue };
            if !t.contains(&text) {
                continue;
            }
            let v: Value = serde_json::from_str(&t)?;
            if v["type"] == "event" && v["data"]["text"] == text.as_str() {
                samples.push(sent.elapsed());
                if i % 100 == 99 {
                    let ack = json!({"type":"ack","seq":v["seq"]});
                    receiver.send(Message::Text(ack.to_string().into())).await?;
                }
                break;
            }
        }
        // the sender's own reply (ok), so the next send starts level
        let reply = next_reply(&mut sender, &format!("m{i}")).await?;
        anyhow::ensure!(reply["type"] == "ok", "msg.send failed: {reply}");
    }
    Ok((
        format!(
            "p50 {:.2} ms, p99 {:.2} ms",
            samples.pct_ms(0.5),
            samples.pct_ms(0.99)
        ),
        format!(
            "{messages} messages one after the other, max {:.2} ms",
            samples.pct_ms(1.0)
        ),
    ))
}

/// Runs every step of `plan`; fails when a database shows a task not
/// claimed and completed exactly once.
pub async fn pg(bin: &Path, plan: &PgPlan) -> anyhow::Result<()> {
    anyhow::ensure!(
        plan.url.starts_with("postgres://") || plan.url.starts_with("postgresql://"),
        "--url must be a postgres:// URL"
    );
    let (template, tokens) = template(bin, &plan.url, plan.agents).await?;
    let mut all_ok = true;
    let mut failure = None;
    for &n in &plan.instances {
        match step(bin, plan, &template.name, &tokens, n.max(1)).await {
            Ok(ok) => all_ok &= ok,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    template.drop_now().await?;
    if let Some(e) = failure {
        return Err(e);
    }
    anyhow::ensure!(
        all_ok,
        "the database shows a task not claimed and completed exactly once"
    );
    Ok(())
}
