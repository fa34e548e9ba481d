//! `loadgen claims`: exactly-once claims under concurrency, checked from
//! the database.
//!
//! An operator agent creates the tasks through the protocol; then `agents`
//! agents each loop `task.claim` → `task.complete` until nothing is left.
//! The figure is claim+complete pairs per second. After the server has
//! stopped, the SQLite file is opened with the `sqlite3` CLI and checked:
//! every task `done`, exactly one `done` run and one `task.claimed` and
//! `task.completed` event per task, no two runs of one task overlapping.

use crate::common::{
    create_tasks, hello, next_reply, registry, row, spawn_swarmbridge, AgentGroup, Ws,
};
use futures_util::SinkExt;
use serde_json::json;
use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Claims and completes until `task.claim` finds nothing; returns the ids.
async fn work(mut ws: Ws) -> anyhow::Result<Vec<i64>> {
    let mut got = Vec::new();
    loop {
        ws.send(Message::Text(r#"{"type":"task.claim","id":"c"}"#.into()))
            .await?;
        let reply = next_reply(&mut ws, "c").await?;
        anyhow::ensure!(reply["type"] == "task", "claim failed: {reply}");
        let task = &reply["task"];
        if task.is_null() {
            return Ok(got);
        }
        let id = task["id"]
            .as_i64()
            .ok_or_else(|| anyhow::anyhow!("claimed task without an id: {reply}"))?;
        got.push(id);
        let complete = json!({"type":"task.complete","id":"d","task_id":id});
        ws.send(Message::Text(complete.to_string().into())).await?;
        let done = next_reply(&mut ws, "d").await?;
        anyhow::ensure!(done["type"] == "task", "complete failed: {done}");
    }
}

/// Runs one query with the sqlite3 CLI and returns its single integer.
fn query_count(db: &Path, sql: &str) -> anyhow::Result<i64> {
    let out = std::process::Command::new("sqlite3")
        .arg("-batch")
        .arg(db)
        .arg(sql)
        .output()
        .map_err(|e| anyhow::anyhow!("sqlite3 CLI not runnable ({e}); apt-get install sqlite3"))?;
    anyhow::ensure!(
        out.status.success(),
        "sqlite3 failed on {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    text.trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("sqlite3 answered {text:?} to {sql}: {e}"))
}

/// What the database says about the run.
struct DbCheck {
    tasks: i64,
    done: i64,
    runs: i64,
    tasks_without_one_done_run: i64,
    overlapping_runs: i64,
    tasks_without_one_claimed_event: i64,
    tasks_without_one_completed_event: i64,
}

fn check_database(db: &Path) -> anyhow::Result<DbCheck> {
    Ok(DbCheck {
        tasks: query_count(db, "SELECT count(*) FROM tasks")?,
        done: query_count(db, "SELECT count(*) FROM tasks WHERE state = 'done'")?,
        runs: query_count(db, "SELECT count(*) FROM task_runs")?,
        tasks_without_one_done_run: query_count(
            db,
            "SELECT count(*) FROM tasks t LEFT JOIN \
             (SELECT task_id, count(*) AS n FROM task_runs WHERE outcome = 'done' GROUP BY task_id) r \
             ON r.task_id = t.id WHERE coalesce(r.n, 0) <> 1",
        )?,
        overlapping_runs: query_count(
            db,
            "SELECT count(*) FROM task_runs a JOIN task_runs b \
             ON a.task_id = b.task_id AND a.id < b.id \
             WHERE a.claimed_at < coalesce(b.ended_at, 9223372036854775807) \
             AND b.claimed_at < coalesce(a.ended_at, 9223372036854775807)",
        )?,
        tasks_without_one_claimed_event: events_mismatch(db, "task.claimed")?,
        tasks_without_one_completed_event: events_mismatch(db, "task.completed")?,
    })
}

/// Tasks that do not have exactly one event of `kind`.
fn events_mismatch(db: &Path, kind: &str) -> anyhow::Result<i64> {
    query_count(
        db,
        &format!(
            "SELECT count(*) FROM tasks t LEFT JOIN \
             (SELECT json_extract(data, '$.task.id') AS id, count(*) AS n FROM events \
              WHERE kind = '{kind}' GROUP BY 1) e \
             ON e.id = t.id WHERE coalesce(e.n, 0) <> 1"
        ),
    )
}

/// The agents this scenario needs: `count` workers and one operator.
pub fn roster(count: usize) -> [AgentGroup<'static>; 2] {
    [
        AgentGroup {
            prefix: "worker-",
            count,
            role: "agent",
        },
        AgentGroup {
            prefix: "op-",
            count: 1,
            role: "operator",
        },
    ]
}

/// Runs the scenario and prints its rows; fails when the database shows a
/// task not completed exactly once.
pub async fn claims(bin: &Path, agents: usize, tasks: usize) -> anyhow::Result<()> {
    let (reg, tokens) = registry(bin, &roster(agents)).await?;
    let db = reg.db.clone();
    let server = spawn_swarmbridge(bin, reg.dir, &db).await?;
    let (mut op, _) = hello(server.addr, &tokens[1][0], None).await?;
    let t_create = Instant::now();
    let (_, newest_seq) = create_tasks(&mut op, tasks, 64).await?;
    eprintln!(
        "claims: {tasks} tasks created through the protocol in {:.1} s",
        t_create.elapsed().as_secs_f64()
    );
    drop(op);
    // Workers skip the backlog of task.created events: this scenario
    // measures claims, `reconnect` measures replay.
    let mut conns = Vec::with_capacity(agents);
    for token in &tokens[0] {
        conns.push(hello(server.addr, token, Some(newest_seq)).await?.0);
    }
    let t0 = Instant::now();
    let handles: Vec<_> = conns.into_iter().map(|ws| tokio::spawn(work(ws))).collect();
    let mut all = Vec::with_capacity(tasks);
    for h in handles {
        all.extend(h.await??);
    }
    let dt = t0.elapsed().as_secs_f64();
    let dir = server.stop().await?;
    let distinct: HashSet<i64> = all.iter().copied().collect();
    let check = check_database(&db)?;
    drop(dir);
    let rate = all.len() as f64 / dt;
    row(
        "claims",
        &format!("claim+complete per second, {agents} agents, SQLite"),
        &format!("{rate:.0}/s"),
        &format!(
            "{} tasks in {dt:.2} s; generator saw {} claims of {} distinct tasks",
            all.len(),
            all.len(),
            distinct.len()
        ),
    );
    let exactly_once = check.tasks == tasks as i64
        && check.done == check.tasks
        && check.runs == check.tasks
        && check.tasks_without_one_done_run == 0
        && check.overlapping_runs == 0
        && check.tasks_without_one_claimed_event == 0
        && check.tasks_without_one_completed_event == 0;
    row(
        "claims",
        "double claims, from the database",
        if exactly_once { "0" } else { "FAILED" },
        &format!(
            "{} tasks, {} done, {} runs; tasks without exactly one done run: {}; overlapping runs: {}; \
             tasks without exactly one task.claimed / task.completed event: {} / {}",
            check.tasks,
            check.done,
            check.runs,
            check.tasks_without_one_done_run,
            check.overlapping_runs,
            check.tasks_without_one_claimed_event,
            check.tasks_without_one_completed_event
        ),
    );
    anyhow::ensure!(
        exactly_once,
        "the database shows a task not claimed and completed exactly once"
    );
    Ok(())
}
