//! Tasks under leases and their run records (`tasks`, `task_runs`). The
//! rules come from the core as closures; this file loads, saves and keeps
//! `task_runs` as [`run_changes`] says.

use super::row::Cols;
use super::{json_list, parse_list, SqliteStore};
use crate::clock::Millis;
use crate::core::events::NewEvent;
use crate::core::model::{NewTask, Task, TaskState};
use crate::core::store::{
    count_delta, run_changes, ClaimGuard, CountDelta, RunChange, StoreError, TaskChange,
    TaskEvents, TaskExpiry,
};
use rusqlite::{params, Connection};
use sqlx::Row;
use std::collections::HashMap;

pub(super) const TASK_COLS: &str = "id, title, body, state, priority, requires, tags, assignee, \
    lease_expires_at, attempts, max_attempts, created_by, created_at, updated_at, result, \
    error, progress, percent, offered_to, offer_expires_at";

/// Learned allocation: a task offered to another agent is passed over
/// until its offer ends (`?2` the claimant, `?3` now).
const OFFER_FREE: &str =
    "AND (t.offered_to IS NULL OR t.offered_to = ?2 OR t.offer_expires_at <= ?3)";

pub(super) fn task_from_row<R: Cols>(r: &R) -> Result<Task, StoreError> {
    Ok(Task {
        id: r.int("id")?,
        title: r.text("title")?,
        body: r.text("body")?,
        state: r.parsed("state")?,
        priority: r.int("priority")?,
        requires: parse_list(&r.text("requires")?)?,
        tags: parse_list(&r.text("tags")?)?,
        assignee: r.opt_text("assignee")?,
        lease_expires_at: r.opt_int("lease_expires_at")?,
        attempts: r.int("attempts")?,
        max_attempts: r.int("max_attempts")?,
        created_by: r.text("created_by")?,
        created_at: r.int("created_at")?,
        updated_at: r.int("updated_at")?,
        result: match r.opt_text("result")? {
            Some(s) => Some(
                serde_json::from_str(&s)
                    .map_err(|e| StoreError::Corrupt(format!("task result: {e}")))?,
            ),
            None => None,
        },
        error: r.opt_text("error")?,
        progress: r.opt_text("progress")?,
        percent: r.opt_int("percent")?,
        offered_to: r.opt_text("offered_to")?,
        offer_expires_at: r.opt_int("offer_expires_at")?,
    })
}

/// Every task row `sql` selects with `params`, decoded (writer thread).
pub(super) fn select_tasks(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Task>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(task_from_row(r)?);
    }
    Ok(out)
}

fn load_task(conn: &Connection, id: i64) -> Result<Option<Task>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {TASK_COLS} FROM tasks WHERE id = ?1"))?;
    let mut rows = stmt.query(params![id])?;
    rows.next()?.map(task_from_row).transpose()
}

/// Writes every mutable column of `t` back.
fn save_task(conn: &Connection, t: &Task) -> Result<(), StoreError> {
    let result = t.result.as_ref().map(|v| v.to_string());
    conn.prepare_cached(
        "UPDATE tasks SET state = ?2, assignee = ?3, lease_expires_at = ?4, attempts = ?5, \
         updated_at = ?6, result = ?7, error = ?8, progress = ?9, percent = ?10, \
         claimed_at = CASE WHEN ?2 = 'claimed' AND state <> 'claimed' THEN ?6 ELSE claimed_at END \
         WHERE id = ?1",
    )?
    .execute(params![
        t.id,
        t.state.as_str(),
        t.assignee,
        t.lease_expires_at,
        t.attempts,
        t.updated_at,
        result,
        t.error,
        t.progress,
        t.percent
    ])?;
    Ok(())
}

fn claims_held(conn: &Connection, agent: &str) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT COUNT(*) FROM tasks WHERE assignee = ?1 AND state = 'claimed'")?
        .query_row(params![agent], |r| r.get(0))?)
}

/// Applies the core's run-record decision for one task change.
fn record_run(
    conn: &Connection,
    before: TaskState,
    holder: Option<&str>,
    task: &Task,
    events: &[NewEvent],
    now: Millis,
) -> Result<(), StoreError> {
    for change in run_changes(before, holder, task, events) {
        match change {
            RunChange::Close { outcome, holder } => {
                let closed = conn
                    .prepare_cached(
                        "UPDATE task_runs SET ended_at = ?2, outcome = ?3 \
                         WHERE task_id = ?1 AND ended_at IS NULL",
                    )?
                    .execute(params![task.id, now, outcome])?;
                if closed == 0 {
                    // claimed before runs were recorded: close one from the task's own record
                    conn.prepare_cached(
                        "INSERT INTO task_runs (task_id, agent, claimed_at, ended_at, outcome) \
                         SELECT id, ?2, COALESCE(claimed_at, ?3), ?3, ?4 FROM tasks WHERE id = ?1",
                    )?
                    .execute(params![task.id, holder, now, outcome])?;
                }
            }
            RunChange::Open { agent } => {
                conn.prepare_cached(
                    "INSERT INTO task_runs (task_id, agent, claimed_at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![task.id, agent, now])?;
            }
        }
    }
    Ok(())
}

/// Applies `change` to a loaded task and writes the result and its run record.
pub(super) fn apply_change(
    conn: &Connection,
    mut task: Task,
    holder: Option<String>,
    now: Millis,
    change: impl FnOnce(&mut Task, Millis) -> Result<Vec<NewEvent>, crate::core::error::CoreError>,
) -> Result<(Task, Vec<NewEvent>, CountDelta), StoreError> {
    let before = task.state;
    task.updated_at = now;
    let events = change(&mut task, now)?;
    save_task(conn, &task)?;
    record_run(conn, before, holder.as_deref(), &task, &events, now)?;
    let delta = count_delta(Some(before), task.state);
    Ok((task, events, delta))
}

/// Inserts an open task (inside the caller's transaction) and returns it.
pub(super) fn insert_task(
    conn: &Connection,
    new: &NewTask,
    created_by: &str,
    max_attempts: i64,
    now: Millis,
) -> Result<Task, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "INSERT INTO tasks (title, body, state, priority, requires, tags, \
         max_attempts, created_by, created_at, updated_at, offered_to, offer_expires_at) \
         VALUES (?1, ?2, 'open', ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10) RETURNING {TASK_COLS}"
    ))?;
    let mut rows = stmt.query(params![
        new.title,
        new.body,
        new.priority,
        json_list(&new.requires),
        json_list(&new.tags),
        new.max_attempts.unwrap_or(max_attempts),
        created_by,
        now,
        new.offered_to,
        new.offer_expires_at
    ])?;
    match rows.next()? {
        Some(r) => task_from_row(r),
        None => Err(StoreError::Corrupt("task insert returned no row".into())),
    }
}

impl SqliteStore {
    /// Inserts a task and the events `events_for` derives from it.
    pub(super) async fn create_task(
        &self,
        new: NewTask,
        created_by: String,
        max_attempts: i64,
        events_for: TaskEvents,
    ) -> Result<Task, StoreError> {
        self.writer
            .write(move |conn, now| {
                let task = insert_task(conn, &new, &created_by, max_attempts, now)?;
                let events = events_for(&task);
                Ok((task, events, count_delta(None, TaskState::Open)))
            })
            .await
    }

    /// Loads task `id`, lets `change` edit it (or refuse), and saves it.
    pub(super) async fn update_task(
        &self,
        id: i64,
        guard: Option<ClaimGuard>,
        change: TaskChange,
    ) -> Result<Task, StoreError> {
        self.writer
            .write(move |conn, now| {
                let task = load_task(conn, id)?.ok_or_else(|| {
                    crate::core::error::CoreError::NotFound(format!("task {id} does not exist"))
                })?;
                if let Some(g) = &guard {
                    if task.state == TaskState::Open {
                        g.check(claims_held(conn, &g.agent)?)?;
                    }
                }
                let holder = task.assignee.clone();
                apply_change(conn, task, holder, now, change)
            })
            .await
    }

    /// Claims the best open task the capabilities cover (one statement reads
    /// the claimant's held claims and the candidate).
    pub(super) async fn claim_next(
        &self,
        capabilities: Vec<String>,
        guard: ClaimGuard,
        claim: TaskChange,
    ) -> Result<Option<Task>, StoreError> {
        self.writer
            .write(move |conn, now| {
                let mut stmt = conn.prepare_cached(&format!(
                    // INDEXED BY: otherwise the planner picks tasks_state and
                    // sorts every open task (O(open tasks) per claim).
                    "SELECT h.held, c.* FROM (SELECT COUNT(*) AS held FROM tasks \
                     WHERE assignee = ?2 AND state = 'claimed') h LEFT JOIN \
                     (SELECT {TASK_COLS} FROM tasks t INDEXED BY tasks_open_queue \
                      WHERE state = 'open' AND NOT EXISTS \
                      (SELECT 1 FROM json_each(t.requires) r WHERE r.value NOT IN \
                       (SELECT value FROM json_each(?1))) {OFFER_FREE} \
                      ORDER BY priority DESC, id LIMIT 1) c"
                ))?;
                let mut rows = stmt.query(params![json_list(&capabilities), guard.agent, now])?;
                let row = rows
                    .next()?
                    .ok_or_else(|| StoreError::Corrupt("claim query returned no row".into()))?;
                guard.check(row.int("held")?)?;
                if row.opt_int("id")?.is_none() {
                    return Ok((None, vec![], vec![]));
                }
                let task = task_from_row(row)?;
                drop(rows);
                drop(stmt);
                let (task, events, delta) = apply_change(conn, task, None, now, claim)?;
                Ok((Some(task), events, delta))
            })
            .await
    }

    /// Applies `expire` to up to `limit` claims whose lease ran out.
    pub(super) async fn expire_due(
        &self,
        limit: i64,
        expire: TaskExpiry,
    ) -> Result<Vec<Task>, StoreError> {
        self.writer
            .write(move |conn, now| {
                let due = select_tasks(
                    conn,
                    &format!(
                        "SELECT {TASK_COLS} FROM tasks WHERE state = 'claimed' \
                         AND lease_expires_at <= ?1 ORDER BY lease_expires_at LIMIT ?2"
                    ),
                    params![now, limit],
                )?;
                let mut tasks = Vec::with_capacity(due.len());
                let mut events = Vec::new();
                let mut delta = Vec::new();
                for task in due {
                    let holder = task.assignee.clone();
                    let (task, expired, d) =
                        apply_change(conn, task, holder, now, |t, now| Ok(expire(t, now)))?;
                    events.extend(expired);
                    delta.extend(d);
                    tasks.push(task);
                }
                Ok((tasks, events, delta))
            })
            .await
    }

    /// One task.
    pub(super) async fn task(&self, id: i64) -> Result<Option<Task>, StoreError> {
        let row = sqlx::query(&format!("SELECT {TASK_COLS} FROM tasks WHERE id = ?1"))
            .bind(id)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(task_from_row).transpose()
    }

    /// Tasks, newest first, optionally filtered by state and assignee.
    pub(super) async fn list_tasks(
        &self,
        state: Option<TaskState>,
        assignee: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Task>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TASK_COLS} FROM tasks WHERE (?1 IS NULL OR state = ?1) \
             AND (?2 IS NULL OR assignee = ?2) ORDER BY id DESC LIMIT ?3"
        ))
        .bind(state.map(|s| s.as_str()))
        .bind(assignee)
        .bind(limit)
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    /// For each agent holding claims, the id of its most recent claim.
    pub(super) async fn current_tasks(&self) -> Result<HashMap<String, i64>, StoreError> {
        let rows = sqlx::query(
            "SELECT assignee, id, MAX(claimed_at) FROM tasks WHERE state = 'claimed' \
             AND assignee IS NOT NULL GROUP BY assignee",
        )
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("assignee")?, r.try_get("id")?)))
            .collect()
    }
}
