//! Rows for insights (`task_runs` with their tasks, the open backlog) and
//! the `alerts` table. The figures are computed in `crate::core::insights`.

use super::row::Cols;
use super::{parse_list, SqliteStore};
use crate::clock::Millis;
use crate::core::alerts::{Alert, AlertEvents, Finding};
use crate::core::insights::{BacklogRow, RunRow};
use crate::core::store::StoreError;
use rusqlite::{params, Connection};
use sqlx::Row;

/// The `alerts` columns every alert query reads (both backends).
pub const ALERT_COLS: &str =
    "id, key, rule, subject, message, raised_at, notified_at, repeats, cleared_at";

fn alert_from_row<R: Cols>(r: &R) -> Result<Alert, StoreError> {
    Ok(Alert {
        id: r.int("id")?,
        key: r.text("key")?,
        rule: r.text("rule")?,
        subject: r.text("subject")?,
        message: r.text("message")?,
        raised_at: r.int("raised_at")?,
        notified_at: r.int("notified_at")?,
        repeats: r.int("repeats")?,
        cleared_at: r.opt_int("cleared_at")?,
    })
}

/// The alert row `sql` returns with `params`, if any (writer thread).
fn alert_returned(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Option<Alert>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    rows.next()?.map(alert_from_row).transpose()
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
                let key = finding.key();
                let active = alert_returned(
                    conn,
                    &format!(
                        "SELECT {ALERT_COLS} FROM alerts WHERE key = ?1 AND cleared_at IS NULL"
                    ),
                    params![key],
                )?;
                let alert = match active {
                    None => alert_returned(
                        conn,
                        &format!(
                            "INSERT INTO alerts (key, rule, subject, message, raised_at, \
                             notified_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5) RETURNING {ALERT_COLS}"
                        ),
                        params![key, finding.rule, finding.subject, finding.message, now],
                    )?,
                    Some(a) => {
                        if now - a.notified_at < repeat_after_ms {
                            return Ok((None, vec![], vec![]));
                        }
                        alert_returned(
                            conn,
                            &format!(
                                "UPDATE alerts SET notified_at = ?1, repeats = repeats + 1, \
                                 message = ?2 WHERE id = ?3 RETURNING {ALERT_COLS}"
                            ),
                            params![now, finding.message, a.id],
                        )?
                    }
                };
                let alert = alert
                    .ok_or_else(|| StoreError::Corrupt("alert write returned no row".into()))?;
                let events = events_for(&alert);
                Ok((Some(alert), events, vec![]))
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
                let cleared = alert_returned(
                    conn,
                    &format!(
                        "UPDATE alerts SET cleared_at = ?1 WHERE key = ?2 AND cleared_at IS NULL \
                         RETURNING {ALERT_COLS}"
                    ),
                    params![now, key],
                )?;
                match cleared {
                    None => Ok((None, vec![], vec![])),
                    Some(alert) => {
                        let events = events_for(&alert);
                        Ok((Some(alert), events, vec![]))
                    }
                }
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
