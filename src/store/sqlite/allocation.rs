//! Learned allocation's reads and writes: agents' records per capability
//! set (from `task_runs`), and offers that ended.

use super::tasks::{select_tasks, TASK_COLS};
use super::{parse_list, SqliteStore};
use crate::clock::Millis;
use crate::core::allocation::RunStat;
use crate::core::store::{StoreError, TaskExpiry};
use rusqlite::params;
use sqlx::Row;

impl SqliteStore {
    /// Ended claims since `since` per agent and capability set.
    pub(super) async fn run_stats(&self, since: Millis) -> Result<Vec<RunStat>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.agent, t.requires, \
             SUM(CASE WHEN r.outcome = 'done' THEN 1 ELSE 0 END) AS done, \
             SUM(CASE WHEN r.outcome IN ('failed', 'expired') THEN 1 ELSE 0 END) AS failed, \
             SUM(CASE WHEN r.outcome = 'done' THEN r.ended_at - r.claimed_at ELSE 0 END) AS done_ms \
             FROM task_runs r JOIN tasks t ON t.id = r.task_id \
             WHERE r.ended_at >= ?1 GROUP BY r.agent, t.requires",
        )
        .bind(since)
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RunStat {
                    agent: r.try_get("agent")?,
                    requires: parse_list(r.try_get("requires")?)?,
                    done: r.try_get("done")?,
                    failed: r.try_get("failed")?,
                    done_ms: r.try_get("done_ms")?,
                })
            })
            .collect()
    }

    /// Applies `lapse` to up to `limit` tasks whose offer ended, clearing it.
    pub(super) async fn lapse_offers(
        &self,
        limit: i64,
        lapse: TaskExpiry,
    ) -> Result<Vec<crate::core::model::Task>, StoreError> {
        self.writer
            .write(move |conn, now| {
                let due = select_tasks(
                    conn,
                    &format!(
                        "SELECT {TASK_COLS} FROM tasks WHERE offered_to IS NOT NULL \
                         AND offer_expires_at <= ?1 ORDER BY offer_expires_at LIMIT ?2"
                    ),
                    params![now, limit],
                )?;
                let mut tasks = Vec::with_capacity(due.len());
                let mut events = Vec::new();
                for mut task in due {
                    events.extend(lapse(&mut task, now));
                    conn.prepare_cached(
                        "UPDATE tasks SET offered_to = NULL, offer_expires_at = NULL WHERE id = ?1",
                    )?
                    .execute(params![task.id])?;
                    tasks.push(task);
                }
                Ok((tasks, events, vec![]))
            })
            .await
    }
}
