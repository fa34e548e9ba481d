//! Rows for insights (`task_runs` with their tasks, the open backlog) and
//! the `alerts` table. The figures are computed in `crate::core::insights`.

use super::{parse_list, SqliteStore};
use crate::clock::Millis;
use crate::core::alerts::{Alert, AlertEvents, Finding};
use crate::core::insights::{BacklogRow, RunRow};
use crate::core::store::StoreError;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

/// The `alerts` columns every alert query reads (both backends).
pub const ALERT_COLS: &str =
    "id, key, rule, subject, message, raised_at, notified_at, repeats, cleared_at";

fn alert_from_row(r: &SqliteRow) -> Result<Alert, StoreError> {
    Ok(Alert {
        id: r.try_get("id")?,
        key: r.try_get("key")?,
        rule: r.try_get("rule")?,
        subject: r.try_get("subject")?,
        message: r.try_get("message")?,
        raised_at: r.try_get("raised_at")?,
        notified_at: r.try_get("notified_at")?,
        repeats: r.try_get("repeats")?,
        cleared_at: r.try_get("cleared_at")?,
    })
}

impl SqliteStore {
    /// See [`crate::core::store::Store::insight_runs`].
    pub(super) async fn insight_runs(
        &self,
        since: Millis,
        limit: i64,
    ) -> Result<Vec<RunRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.id, r.task_id, r.agent, r.claimed_at, r.ended_at, r.outcome, \
               t.requires, t.created_at \
             FROM task_runs r JOIN tasks t ON t.id = r.task_id \
             WHERE r.task_id IN (SELECT task_id FROM task_runs WHERE claimed_at >= ?1 \
               ORDER BY claimed_at DESC LIMIT ?2)",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RunRow {
                    id: r.try_get("id")?,
                    task_id: r.try_get("task_id")?,
                    agent: r.try_get("agent")?,
                    requires: parse_list(r.try_get("requires")?)?,
                    task_created_at: r.try_get("created_at")?,
                    claimed_at: r.try_get("claimed_at")?,
                    ended_at: r.try_get("ended_at")?,
                    outcome: r.try_get("outcome")?,
                })
            })
            .collect()
    }

    /// See [`crate::core::store::Store::open_backlog`].
    pub(super) async fn open_backlog(&self) -> Result<Vec<BacklogRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT requires, COUNT(*) AS n, MIN(created_at) AS oldest FROM tasks \
             WHERE state = 'open' GROUP BY requires",
        )
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(BacklogRow {
                    requires: parse_list(r.try_get("requires")?)?,
                    open: r.try_get("n")?,
                    oldest_created_at: r.try_get("oldest")?,
                })
            })
            .collect()
    }

    /// See [`crate::core::store::Store::raise_alert`].
    pub(super) async fn raise_alert(
        &self,
        finding: Finding,
        repeat_after_ms: i64,
        events_for: AlertEvents,
    ) -> Result<Option<Alert>, StoreError> {
        self.writer
            .write(move |conn, now| {
                Box::pin(async move {
                    let key = finding.key();
                    let active = sqlx::query(&format!(
                        "SELECT {ALERT_COLS} FROM alerts WHERE key = ?1 AND cleared_at IS NULL"
                    ))
                    .bind(&key)
                    .fetch_optional(&mut *conn)
                    .await?;
                    let row = match active {
                        None => {
                            sqlx::query(&format!(
                                "INSERT INTO alerts (key, rule, subject, message, raised_at, \
                                 notified_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5) \
                                 RETURNING {ALERT_COLS}"
                            ))
                            .bind(&key)
                            .bind(finding.rule)
                            .bind(&finding.subject)
                            .bind(&finding.message)
                            .bind(now)
                            .fetch_one(&mut *conn)
                            .await?
                        }
                        Some(r) => {
                            let notified: i64 = r.try_get("notified_at")?;
                            if now - notified < repeat_after_ms {
                                return Ok((None, vec![], vec![]));
                            }
                            sqlx::query(&format!(
                                "UPDATE alerts SET notified_at = ?1, repeats = repeats + 1, \
                                 message = ?2 WHERE id = ?3 RETURNING {ALERT_COLS}"
                            ))
                            .bind(now)
                            .bind(&finding.message)
                            .bind(r.try_get::<i64, _>("id")?)
                            .fetch_one(&mut *conn)
                            .await?
                        }
                    };
                    let alert = alert_from_row(&row)?;
                    let events = events_for(&alert);
                    Ok((Some(alert), events, vec![]))
                })
            })
            .await
    }

    /// See [`crate::core::store::Store::clear_alert`].
    pub(super) async fn clear_alert(
        &self,
        key: String,
        events_for: AlertEvents,
    ) -> Result<Option<Alert>, StoreError> {
        self.writer
            .write(move |conn, now| {
                Box::pin(async move {
                    let row = sqlx::query(&format!(
                        "UPDATE alerts SET cleared_at = ?1 WHERE key = ?2 AND cleared_at IS NULL \
                         RETURNING {ALERT_COLS}"
                    ))
                    .bind(now)
                    .bind(&key)
                    .fetch_optional(&mut *conn)
                    .await?;
                    match row {
                        None => Ok((None, vec![], vec![])),
                        Some(r) => {
                            let alert = alert_from_row(&r)?;
                            let events = events_for(&alert);
                            Ok((Some(alert), events, vec![]))
                        }
                    }
                })
            })
            .await
    }

    /// See [`crate::core::store::Store::active_alerts`].
    pub(super) async fn active_alerts(&self) -> Result<Vec<Alert>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ALERT_COLS} FROM alerts WHERE cleared_at IS NULL ORDER BY raised_at, id"
        ))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(alert_from_row).collect()
    }
}
