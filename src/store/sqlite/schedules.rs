//! Schedules (`schedules`): rows the core reads, and the one write that
//! fires an occurrence: a compare-and-set on `next_at` in the transaction
//! that creates the task or stores the broadcast.

use super::events::insert_message;
use super::tasks::insert_task;
use super::{json_list, parse_list, SqliteStore};
use crate::core::error::CoreError;
use crate::core::model::TaskState;
use crate::core::schedules::{FireOutcome, Firing, OccurrenceClaim, Schedule, ScheduleChange};
use crate::core::store::{count_delta, StoreError};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use std::str::FromStr;

const SCHEDULE_COLS: &str = "id, cron, timezone, every_s, anchor_at, action, title, body, \
    requires, priority, topic, missed, state, next_at, last_fired_at, fired, created_by, created_at";

fn parsed<T: FromStr<Err = String>>(r: &SqliteRow, col: &str) -> Result<T, StoreError> {
    let s: String = r.try_get(col)?;
    T::from_str(&s).map_err(StoreError::Corrupt)
}

fn schedule_from_row(r: &SqliteRow) -> Result<Schedule, StoreError> {
    Ok(Schedule {
        id: r.try_get("id")?,
        cron: r.try_get("cron")?,
        timezone: r.try_get("timezone")?,
        every_s: r.try_get("every_s")?,
        anchor_at: r.try_get("anchor_at")?,
        action: parsed(r, "action")?,
        title: r.try_get("title")?,
        body: r.try_get("body")?,
        requires: parse_list(r.try_get("requires")?)?,
        priority: r.try_get("priority")?,
        topic: r.try_get("topic")?,
        missed: parsed(r, "missed")?,
        state: parsed(r, "state")?,
        next_at: r.try_get("next_at")?,
        last_fired_at: r.try_get("last_fired_at")?,
        fired: r.try_get("fired")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
    })
}

async fn load_schedule(
    conn: &mut SqliteConnection,
    id: i64,
) -> Result<Option<Schedule>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {SCHEDULE_COLS} FROM schedules WHERE id = ?1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(schedule_from_row).transpose()
}

impl SqliteStore {
    /// Inserts a schedule and returns it with its id.
    pub(super) async fn create_schedule(&self, s: Schedule) -> Result<Schedule, StoreError> {
        self.writer
            .write(move |conn, now| {
                Box::pin(async move {
                    let row = sqlx::query(&format!(
                        "INSERT INTO schedules (cron, timezone, every_s, anchor_at, action, title, \
                         body, requires, priority, topic, missed, state, next_at, created_by, \
                         created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, \
                         ?11, ?12, ?13, ?14, ?15, ?15) RETURNING {SCHEDULE_COLS}"
                    ))
                    .bind(&s.cron)
                    .bind(&s.timezone)
                    .bind(s.every_s)
                    .bind(s.anchor_at)
                    .bind(s.action.as_str())
                    .bind(&s.title)
                    .bind(&s.body)
                    .bind(json_list(&s.requires))
                    .bind(s.priority)
                    .bind(&s.topic)
                    .bind(s.missed.as_str())
                    .bind(s.state.as_str())
                    .bind(s.next_at)
                    .bind(&s.created_by)
                    .bind(now)
                    .fetch_one(&mut *conn)
                    .await?;
                    Ok((schedule_from_row(&row)?, vec![], vec![]))
                })
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
        let mut conn = self.readers.acquire().await?;
        load_schedule(&mut conn, id).await
    }

    /// Loads schedule `id`, lets `change` edit it, saves its state and `next_at`.
    pub(super) async fn update_schedule(
        &self,
        id: i64,
        change: ScheduleChange,
    ) -> Result<Schedule, StoreError> {
        self.writer
            .write(move |conn, now| {
                Box::pin(async move {
                    let mut s = load_schedule(conn, id).await?.ok_or_else(|| {
                        CoreError::NotFound(format!("schedule {id} does not exist"))
                    })?;
                    change(&mut s, now)?;
                    sqlx::query(
                        "UPDATE schedules SET state = ?2, next_at = ?3, updated_at = ?4 WHERE id = ?1",
                    )
                    .bind(id)
                    .bind(s.state.as_str())
                    .bind(s.next_at)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                    Ok((s, vec![], vec![]))
                })
            })
            .await
    }

    /// Deletes a schedule; false when there was none.
    pub(super) async fn delete_schedule(&self, id: i64) -> Result<bool, StoreError> {
        self.writer
            .write(move |conn, _now| {
                Box::pin(async move {
                    let n = sqlx::query("DELETE FROM schedules WHERE id = ?1")
                        .bind(id)
                        .execute(&mut *conn)
                        .await?
                        .rows_affected();
                    Ok((n > 0, vec![], vec![]))
                })
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
                Box::pin(async move {
                    let fires = !matches!(firing, Firing::Nothing);
                    let claimed = sqlx::query(
                        "UPDATE schedules SET next_at = ?3, updated_at = ?4, \
                         fired = fired + ?5, \
                         last_fired_at = CASE WHEN ?5 = 1 THEN ?4 ELSE last_fired_at END \
                         WHERE id = ?1 AND next_at = ?2 AND state = 'active'",
                    )
                    .bind(claim.schedule_id)
                    .bind(claim.due_next_at)
                    .bind(claim.next_at)
                    .bind(now)
                    .bind(i64::from(fires))
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
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
                            let task =
                                insert_task(conn, &new, &created_by, max_attempts, now).await?;
                            let events = events_for(&task);
                            Ok((
                                FireOutcome::Claimed(Some(task.id)),
                                events,
                                count_delta(None, TaskState::Open),
                            ))
                        }
                        Firing::Broadcast { message, event } => {
                            insert_message(conn, &message, now).await?;
                            Ok((FireOutcome::Claimed(None), vec![event], vec![]))
                        }
                        Firing::Nothing => Ok((FireOutcome::Claimed(None), vec![], vec![])),
                    }
                })
            })
            .await
    }
}
