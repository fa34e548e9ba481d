//! Learned allocation's reads and writes: agents' records per capability
//! set (from `task_runs`), and offers that ended.

use super::tasks::{task_from_row, TASK_COLS};
use super::PgStore;
use crate::clock::Millis;
use crate::core::allocation::RunStat;
use crate::core::store::{StoreError, TaskExpiry};
use sqlx::Row;

impl PgStore {
    /// Ended claims since `since` per agent and capability set.
    pub(super) async fn run_stats(&self, since: Millis) -> Result<Vec<RunStat>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.agent, t.requires, \
             COUNT(*) FILTER (WHERE r.outcome = 'done') AS done, \
             COUNT(*) FILTER (WHERE r.outcome IN ('failed', 'expired')) AS failed, \
             COALESCE(SUM(r.ended_at - r.claimed_at) FILTER (WHERE r.outcome = 'done'), 0)::bigint AS done_ms \
             FROM task_runs r JOIN tasks t ON t.id = r.task_id \
             WHERE r.ended_at >= $1 GROUP BY r.agent, t.requires",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RunStat {
                    agent: r.try_get("agent")?,
                    requires: r.try_get("requires")?,
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
                Box::pin(async move {
                    let rows = sqlx::query(&format!(
                        "SELECT {TASK_COLS} FROM tasks WHERE offered_to IS NOT NULL \
                         AND offer_expires_at <= $1 ORDER BY offer_expires_at LIMIT $2 \
                         FOR UPDATE SKIP LOCKED"
                    ))
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&mut *conn)
                    .await?;
                    let mut tasks = Vec::with_capacity(rows.len());
                    let mut events = Vec::new();
                    for row in &rows {
                        let mut task = task_from_row(row)?;
                        events.extend(lapse(&mut task, now));
                        sqlx::query(
                            "UPDATE tasks SET offered_to = NULL, offer_expires_at = NULL WHERE id = $1",
                        )
                        .bind(task.id)
                        .execute(&mut *conn)
                        .await?;
                        tasks.push(task);
                    }
                    Ok((tasks, events, vec![]))
                })
            })
            .await
    }
}
