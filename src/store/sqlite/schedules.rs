//! Schedules (`schedules`): rows the core reads, and the one write that
//! fires an occurrence: a compare-and-set on `next_at` in the transaction
//! that creates the task or stores the broadcast.

use super::events::insert_message;
use super::row::Cols;
use super::tasks::insert_task;
use super::{json_list, parse_list, SqliteStore};
use crate::core::error::CoreError;
use crate::core::model::TaskState;
use crate::core::schedules::{FireOutcome, Firing, OccurrenceClaim, Schedule, ScheduleChange};
use crate::core::store::{count_delta, StoreError};
use rusqlite::{params, Connection};

const SCHEDULE_COLS: &str = "id, cron, timezone, every_s, anchor_at, action, title, body, \
    requires, priority, topic, missed, state, next_at, last_fired_at, fired, created_by, created_at";

fn schedule_from_row<R: Cols>(r: &R) -> Result<Schedule, StoreError> {
    Ok(Schedule {
        id: r.int("id")?,
        cron: r.opt_text("cron")?,
        timezone: r.text("timezone")?,
        every_s: r.opt_int("every_s")?,
        anchor_at: r.opt_int("anchor_at")?,
        action: r.parsed("action")?,
        title: r.text("title")?,
        body: r.text("body")?,
        requires: parse_list(&r.text("requires")?)?,
        priority: r.int("priority")?,
        topic: r.opt_text("topic")?,
        missed: r.parsed("missed")?,
        state: r.parsed("state")?,
        next_at: r.int("next_at")?,
        last_fired_at: r.opt_int("last_fired_at")?,
        fired: r.int("fired")?,
        created_by: r.text("created_by")?,
        created_at: r.int("created_at")?,
    })
}

/// The schedule row `sql` returns with `params`, if any (writer thread).
fn schedule_returned(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Option<Schedule>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    rows.next()?.map(schedule_from_row).transpose()
}

impl SqliteStore {
    /// Inserts a schedule and returns it with its id.
    pub(super) async fn create_schedule(&self, s: Schedule) -> Result<Schedule, StoreError> {
        self.writer
            .write(move |conn, now| {
                let stored = schedule_returned(
                    conn,
                    &format!(
                        "INSERT INTO schedules (cron, timezone, every_s, anchor_at, action, title, \
                         body, requires, priority, topic, missed, state, next_at, created_by, \
                         created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, \
                         ?11, ?12, ?13, ?14, ?15, ?15) RETURNING {SCHEDULE_COLS}"
                    ),
                    params![
                        s.cron,
                        s.timezone,
                        s.every_s,
                        s.anchor_at,
                        s.action.as_str(),
                        s.title,
                        s.body,
                        json_list(&s.requires),
                        s.priority,
                        s.topic,
                        s.missed.as_str(),
                        s.state.as_str(),
                        s.next_at,
                        s.created_by,
                        now
                    ],
                )?
                .ok_or_else(|| StoreError::Corrupt("schedule insert returned no row".into()))?;
                Ok((stored, vec![], vec![]))
            })
            .await
    }

    /// Up to `limit` schedules, oldest first.
    pub(super) async fn schedules(&self, limit: i64) -> Result<Vec<Schedule>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SCHEDULE_COLS} FROM schedules ORDER BY id LIMIT ?1"
        ))
        .bind(limit)
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    /// One schedule.
    pub(super) async fn schedule(&self, id: i64) -> Result<Option<Schedule>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SCHEDULE_COLS} FROM schedules WHERE id = ?1"
        ))
        .bind(id)
        .fetch_optional(&self.readers)
        .await?;
        row.as_ref().map(schedule_from_row).transpose()
    }

    /// Loads schedule `id`, lets `change` edit it, saves its state and `next_at`.
    pub(super) async fn update_schedule(
        &self,
        id: i64,
        change: ScheduleChange,
    ) -> Result<Schedule, StoreError> {
        self.writer
            .write(move |conn, now| {
                let mut s = schedule_returned(
                    conn,
                    &format!("SELECT {SCHEDULE_COLS} FROM schedules WHERE id = ?1"),
                    params![id],
                )?
                .ok_or_else(|| CoreError::NotFound(format!("schedule {id} does not exist")))?;
                change(&mut s, now)?;
                conn.prepare_cached(
                    "UPDATE schedules SET state = ?2, next_at = ?3, updated_at = ?4 WHERE id = ?1",
                )?
                .execute(params![id, s.state.as_str(), s.next_at, now])?;
                Ok((s, vec![], vec![]))
            })
            .await
    }

    /// Deletes a schedule; false when there was none.
    pub(super) async fn delete_schedule(&self, id: i64) -> Result<bool, StoreError> {
        self.writer
            .write(move |conn, _now| {
                let n = conn
                    .prepare_cached("DELETE FROM schedules WHERE id = ?1")?
                    .execute(params![id])?;
                Ok((n > 0, vec![], vec![]))
            })
            .await
    }

    /// Active schedules due at `now`, earliest first.
    pub(super) async fn due_schedules(
        &self,
        now: crate::clock::Millis,
        limit: i64,
    ) -> Result<Vec<Schedule>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SCHEDULE_COLS} FROM schedules WHERE state = 'active' AND next_at <= ?1 \
             ORDER BY next_at LIMIT ?2"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    /// Claims an occurrence (compare-and-set on `next_at`) and writes what
    /// it fires, in one transaction.
    pub(super) async fn fire_schedule(
        &self,
        claim: OccurrenceClaim,
        firing: Firing,
    ) -> Result<FireOutcome, StoreError> {
        self.writer
            .write(move |conn, now| {
                let fires = !matches!(firing, Firing::Nothing);
                let claimed = conn
                    .prepare_cached(
                        "UPDATE schedules SET next_at = ?3, updated_at = ?4, \
                         fired = fired + ?5, \
                         last_fired_at = CASE WHEN ?5 = 1 THEN ?4 ELSE last_fired_at END \
                         WHERE id = ?1 AND next_at = ?2 AND state = 'active'",
                    )?
                    .execute(params![
                        claim.schedule_id,
                        claim.due_next_at,
                        claim.next_at,
                        now,
                        i64::from(fires)
                    ])?;
                if claimed == 0 {
                    return Ok((FireOutcome::Lost, vec![], vec![]));
                }
                match firing {
                    Firing::Task {
                        new,
                        created_by,
                        max_attempts,
                        events_for,
                    } => {
                        let task = insert_task(conn, &new, &created_by, max_attempts, now)?;
                        let events = events_for(&task);
                        Ok((
                            FireOutcome::Claimed(Some(task.id)),
                            events,
                            count_delta(None, TaskState::Open),
                        ))
                    }
                    Firing::Broadcast { message, event } => {
                        insert_message(conn, &message, now)?;
                        Ok((FireOutcome::Claimed(None), vec![event], vec![]))
                    }
                    Firing::Nothing => Ok((FireOutcome::Claimed(None), vec![], vec![])),
                }
            })
            .await
    }
}
