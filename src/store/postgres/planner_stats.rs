//! Fresh planner statistics for the task queue. PostgreSQL's autovacuum
//! analyzes a table at most once a minute per database, after 10% of it
//! changed; until then a table that grew from empty is planned as nearly
//! empty. The claim pick then becomes "read every open task and sort"
//! (measured: 5,000 rows read and sorted per pick, 3 ms instead of 0.1 ms),
//! and closing runs "read every open-run index entry, then hash-join"
//! (16,000 entries per save). This instance therefore runs `ANALYZE` on
//! `tasks` and `task_runs` itself, in the background, once it has added
//! more rows to them (tasks created, runs opened by claims) than they held
//! at the last analyze (at least [`MIN_GROWTH`]).

use sqlx::PgPool;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

/// Tasks created before the first refresh, and the least growth after.
const MIN_GROWTH: i64 = 1000;

/// Counts added rows and refreshes the statistics when they are due.
#[derive(Default)]
pub(super) struct PlannerStats {
    /// Rows this instance added since the last refresh.
    added: AtomicI64,
    /// Rows the tables held at the last refresh (0 before the first).
    baseline: AtomicI64,
    running: AtomicBool,
}

impl PlannerStats {
    /// Records `n` added rows (a task created, a run opened); starts a
    /// refresh when the tables grew by more than they held (at least
    /// [`MIN_GROWTH`]) and none is running.
    pub(super) fn added(self: &Arc<Self>, n: i64, pool: &PgPool) {
        let added = self.added.fetch_add(n, Ordering::Relaxed) + n;
        let due = added >= self.baseline.load(Ordering::Relaxed).max(MIN_GROWTH);
        if !due || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        self.added.store(0, Ordering::Relaxed);
        let me = self.clone();
        let pool = pool.clone();
        tokio::spawn(async move {
            match me.refresh(&pool).await {
                Ok(rows) => {
                    tracing::debug!(rows, "refreshed the planner statistics of tasks and runs");
                    me.baseline.store(rows, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not refresh the planner statistics of tasks and runs")
                }
            }
            me.running.store(false, Ordering::Release);
        });
    }

    async fn refresh(&self, pool: &PgPool) -> Result<i64, sqlx::Error> {
        sqlx::query("ANALYZE tasks, task_runs")
            .execute(pool)
            .await?;
        let rows: f64 = sqlx::query_scalar(
            "SELECT sum(greatest(reltuples, 0))::float8 FROM pg_class \
             WHERE oid IN ('tasks'::regclass, 'task_runs'::regclass)",
        )
        .fetch_one(pool)
        .await?;
        Ok(rows as i64)
    }
}
