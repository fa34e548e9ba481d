//! Tasks under leases and their run records (`tasks`, `task_runs`). Claims
//! take the best open task with `FOR UPDATE SKIP LOCKED`, so instances
//! claiming at once never wait on or collide over the same row; a task
//! being changed is locked (`FOR UPDATE`) so a change made through another
//! instance is never lost; the lease sweep skips locked rows, so each
//! expiry happens exactly once across instances.

use super::task_batch::TaskOp;
use super::PgStore;
use crate::clock::Millis;
use crate::core::error::CoreError;
use crate::core::events::NewEvent;
use crate::core::model::{NewTask, Task, TaskState};
use crate::core::store::{
    count_delta, run_changes, ClaimGuard, CountDelta, RunChange, StoreError, TaskChange,
    TaskEvents, TaskExpiry,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use std::collections::HashMap;
use std::str::FromStr;

pub(super) const TASK_COLS: &str = "id, title, body, state, priority, requires, tags, assignee, \
    lease_expires_at, attempts, max_attempts, created_by, created_at, updated_at, result, \
    error, progress, percent, offered_to, offer_expires_at";

/// The advisory lock class (two-int key space) of "claims held by one
/// agent": taken before counting them, so `max_claims` holds across instances.
pub(super) const AGENT_CLAIMS_LOCK: i32 = 0x5357_4243; // "SWBC"

pub(super) fn task_from_row(r: &PgRow) -> Result<Task, StoreError> {
    let state: String = r.try_get("state")?;
    let result: Option<String> = r.try_get("result")?;
    Ok(Task {
        id: r.try_get("id")?,
        title: r.try_get("title")?,
        body: r.try_get("body")?,
        state: TaskState::from_str(&state).map_err(StoreError::Corrupt)?,
        priority: r.try_get("priority")?,
        requires: r.try_get("requires")?,
        tags: r.try_get("tags")?,
        assignee: r.try_get("assignee")?,
        lease_expires_at: r.try_get("lease_expires_at")?,
        attempts: r.try_get("attempts")?,
        max_attempts: r.try_get("max_attempts")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        result: match result {
            Some(s) => Some(
                serde_json::from_str(&s)
                    .map_err(|e| StoreError::Corrupt(format!("task result: {e}")))?,
            ),
            None => None,
        },
        error: r.try_get("error")?,
        progress: r.try_get("progress")?,
        percent: r.try_get("percent")?,
        offered_to: r.try_get("offered_to")?,
        offer_expires_at: r.try_get("offer_expires_at")?,
    })
}

/// Writes every mutable column of `t` back and applies the core's
/// run-record decision ([`run_changes`]: at most one of "close the open
/// run" and "open a run") in the same statement, one round trip per task
/// change. A close with no open run to close (a claim made before runs
/// were recorded) records a closed run for the holder instead.
const SAVE_TASK_AND_RUN: &str = "\
    WITH saved AS ( \
        UPDATE tasks SET state = $2, assignee = $3, lease_expires_at = $4, attempts = $5, \
            updated_at = $6, result = $7, error = $8, progress = $9, percent = $10, \
            claimed_at = CASE WHEN $2 = 'claimed' AND state <> 'claimed' THEN $6 ELSE claimed_at END \
        WHERE id = $1), \
    closed AS ( \
        UPDATE task_runs SET ended_at = $6, outcome = $11 \
        WHERE $11::text IS NOT NULL AND task_id = $1 AND ended_at IS NULL RETURNING 1), \
    closed_unopened AS ( \
        INSERT INTO task_runs (task_id, agent, claimed_at, ended_at, outcome) \
        SELECT id, $12, COALESCE(claimed_at, $6), $6, $11 FROM tasks \
        WHERE $11::text IS NOT NULL AND id = $1 AND NOT EXISTS (SELECT 1 FROM closed)), \
    opened AS ( \
        INSERT INTO task_runs (task_id, agent, claimed_at) \
        SELECT $1, $13, $6 WHERE $13::text IS NOT NULL) \
    SELECT 1";

/// Saves `t` (changed from state `before`, held by `holder`) with its run record.
pub(super) async fn save_task(
    conn: &mut PgConnection,
    before: TaskState,
    holder: Option<&str>,
    t: &Task,
    events: &[NewEvent],
) -> Result<(), StoreError> {
    let (close, open) = run_decision(before, holder, t, events);
    save_task_and_run(conn, t, close, open).await
}

/// What a change does to the run records: the open run to close (its
/// outcome and holder), the run to open (its agent).
pub(super) type RunDecision = (Option<(&'static str, String)>, Option<String>);

/// The core's [`run_changes`] for one change, as [`RunDecision`].
pub(super) fn run_decision(
    before: TaskState,
    holder: Option<&str>,
    t: &Task,
    events: &[NewEvent],
) -> RunDecision {
    let (mut close, mut open) = (None, None);
    for change in run_changes(before, holder, t, events) {
        match change {
            RunChange::Close { outcome, holder } => close = Some((outcome, holder)),
            RunChange::Open { agent } => open = Some(agent),
        }
    }
    (close, open)
}

/// Writes `t` and applies a decided run change, in one statement.
pub(super) async fn save_task_and_run(
    conn: &mut PgConnection,
    t: &Task,
    close: Option<(&'static str, String)>,
    open: Option<String>,
) -> Result<(), StoreError> {
    let result = t.result.as_ref().map(|v| v.to_string());
    sqlx::query(SAVE_TASK_AND_RUN)
        .bind(t.id)
        .bind(t.state.as_str())
        .bind(&t.assignee)
        .bind(t.lease_expires_at)
        .bind(t.attempts)
        .bind(t.updated_at)
        .bind(result)
        .bind(&t.error)
        .bind(&t.progress)
        .bind(t.percent)
        .bind(close.as_ref().map(|(outcome, _)| *outcome))
        .bind(close.as_ref().map(|(_, holder)| holder.as_str()))
        .bind(open.as_deref())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Applies `change` to a loaded (locked) task and writes it and its run record.
async fn apply_change(
    conn: &mut PgConnection,
    mut task: Task,
    holder: Option<String>,
    now: Millis,
    change: impl FnOnce(&mut Task, Millis) -> Result<Vec<NewEvent>, CoreError>,
) -> Result<(Task, Vec<NewEvent>, CountDelta), StoreError> {
    let before = task.state;
    task.updated_at = now;
    let events = change(&mut task, now)?;
    save_task(conn, before, holder.as_deref(), &task, &events).await?;
    let delta = count_delta(Some(before), task.state);
    Ok((task, events, delta))
}

/// Inserts an open task (inside the caller's transaction) and returns it.
pub(super) async fn insert_task(
    conn: &mut PgConnection,
    new: &NewTask,
    created_by: &str,
    max_attempts: i64,
    now: Millis,
) -> Result<Task, StoreError> {
    let row = sqlx::query(&format!(
        "INSERT INTO tasks (title, body, state, priority, requires, tags, \
         max_attempts, created_by, created_at, updated_at, offered_to, offer_expires_at) \
         VALUES ($1, $2, 'open', $3, $4, $5, $6, $7, $8, $8, $9, $10) RETURNING {TASK_COLS}"
    ))
    .bind(&new.title)
    .bind(&new.body)
    .bind(new.priority)
    .bind(&new.requires)
    .bind(&new.tags)
    .bind(new.max_attempts.unwrap_or(max_attempts))
    .bind(created_by)
    .bind(now)
    .bind(&new.offered_to)
    .bind(new.offer_expires_at)
    .fetch_one(&mut *conn)
    .await?;
    task_from_row(&row)
}

impl PgStore {
    /// Inserts a task and the events `events_for` derives from it.
    pub(super) async fn create_task(
        &self,
        new: NewTask,
        created_by: String,
        max_attempts: i64,
        events_for: TaskEvents,
    ) -> Result<Task, StoreError> {
        let task = self
            .writer
            .write(move |conn, now| {
                Box::pin(async move {
                    let task = insert_task(conn, &new, &created_by, max_attempts, now).await?;
                    let events = events_for(&task);
                    Ok((task, events, count_delta(None, TaskState::Open)))
                })
            })
            .await?;
        self.planner_stats.added(1, &self.pool);
        Ok(task)
    }

    /// Locks task `id`, lets `change` edit it (or refuse), and saves it;
    /// set-based with the batch's other task requests ([`super::task_batch`]).
    pub(super) async fn update_task(
        &self,
        id: i64,
        guard: Option<ClaimGuard>,
        change: TaskChange,
    ) -> Result<Task, StoreError> {
        self.writer.task(TaskOp::Change { id, guard, change }).await
    }

    /// Claims the best open task the capabilities cover: `FOR UPDATE SKIP
    /// LOCKED`, so a task another instance is claiming is passed over;
    /// set-based with the batch's other task requests.
    pub(super) async fn claim_next(
        &self,
        capabilities: Vec<String>,
        guard: ClaimGuard,
        claim: TaskChange,
    ) -> Result<Option<Task>, StoreError> {
        let task: Option<Task> = self
            .writer
            .task(TaskOp::ClaimNext {
                capabilities,
                guard,
                claim,
            })
            .await?;
        if task.is_some() {
            // a run opened
            self.planner_stats.added(1, &self.pool);
        }
        Ok(task)
    }

    /// Applies `expire` to up to `limit` claims whose lease ran out,
    /// skipping rows another instance holds (it is expiring or changing them).
    pub(super) async fn expire_due(
        &self,
        limit: i64,
        expire: TaskExpiry,
    ) -> Result<Vec<Task>, StoreError> {
        self.writer
            .write(move |conn, now| {
                Box::pin(async move {
                    let rows = sqlx::query(&format!(
                        "SELECT {TASK_COLS} FROM tasks WHERE state = 'claimed' \
                         AND lease_expires_at <= $1 ORDER BY lease_expires_at LIMIT $2 \
                         FOR UPDATE SKIP LOCKED"
                    ))
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&mut *conn)
                    .await?;
                    let mut tasks = Vec::with_capacity(rows.len());
                    let mut events = Vec::new();
                    let mut delta = Vec::new();
                    for row in &rows {
                        let task = task_from_row(row)?;
                        let holder = task.assignee.clone();
                        let (task, expired, d) =
                            apply_change(conn, task, holder, now, |t, now| Ok(expire(t, now)))
                                .await?;
                        events.extend(expired);
                        delta.extend(d);
                        tasks.push(task);
                    }
                    Ok((tasks, events, delta))
                })
            })
            .await
    }

    /// One task.
    pub(super) async fn task(&self, id: i64) -> Result<Option<Task>, StoreError> {
        let row = sqlx::query(&format!("SELECT {TASK_COLS} FROM tasks WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
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
            "SELECT {TASK_COLS} FROM tasks WHERE ($1::text IS NULL OR state = $1) \
             AND ($2::text IS NULL OR assignee = $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(state.map(|s| s.as_str()))
        .bind(assignee)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    /// For each agent holding claims, the id of its most recent claim.
    pub(super) async fn current_tasks(&self) -> Result<HashMap<String, i64>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT ON (assignee) assignee, id FROM tasks WHERE state = 'claimed' \
             AND assignee IS NOT NULL ORDER BY assignee, claimed_at DESC NULLS LAST, id DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("assignee")?, r.try_get("id")?)))
            .collect()
    }
}
