//! Claim statistics from `task_runs`: per-agent tallies and the swarm's
//! completions per minute.

use super::SqliteStore;
use crate::clock::now_ms;
use crate::core::model::{ClaimCounts, RunTally};
use crate::core::store::StoreError;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use std::collections::BTreeMap;

impl SqliteStore {
    /// What `agent`'s claims came to, from `task_runs` (durations of its
    /// latest [`MAX_DURATIONS`] completions).
    pub(super) async fn run_tally(&self, agent: &str) -> Result<RunTally, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {RUN_COUNT_COLS} FROM task_runs WHERE agent = ?1"
        ))
        .bind(agent)
        .fetch_one(&self.readers)
        .await?;
        let mut tally = tally_from_row(&row)?;
        tally.durations_ms = sqlx::query_scalar(
            "SELECT ended_at - claimed_at FROM task_runs WHERE agent = ?1 AND outcome = 'done' \
             ORDER BY id DESC LIMIT ?2",
        )
        .bind(agent)
        .bind(MAX_DURATIONS)
        .fetch_all(&self.readers)
        .await?;
        Ok(tally)
    }

    /// `run_tally` for every agent that ever claimed a task.
    pub(super) async fn run_tallies(&self) -> Result<BTreeMap<String, RunTally>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT agent, {RUN_COUNT_COLS} FROM task_runs GROUP BY agent"
        ))
        .fetch_all(&self.readers)
        .await?;
        let mut out = BTreeMap::new();
        for r in &rows {
            out.insert(r.try_get::<String, _>("agent")?, tally_from_row(r)?);
        }
        let rows = sqlx::query(
            "SELECT agent, ended_at - claimed_at AS ms FROM task_runs WHERE outcome = 'done' \
             ORDER BY id DESC LIMIT ?1",
        )
        .bind(MAX_DURATIONS)
        .fetch_all(&self.readers)
        .await?;
        for r in &rows {
            let agent: String = r.try_get("agent")?;
            if let Some(t) = out.get_mut(&agent) {
                t.durations_ms.push(r.try_get("ms")?);
            }
        }
        Ok(out)
    }

    /// Completions per minute for the `minutes` minutes up to now, oldest
    /// first (the current, partial minute last).
    pub(super) async fn done_per_minute(&self, minutes: usize) -> Result<Vec<i64>, StoreError> {
        let now_min = now_ms().div_euclid(60_000);
        let first = now_min - minutes as i64 + 1;
        let rows = sqlx::query(
            "SELECT ended_at / 60000 AS minute, COUNT(*) AS n FROM task_runs \
             WHERE outcome = 'done' AND ended_at >= ?1 GROUP BY minute",
        )
        .bind(first * 60_000)
        .fetch_all(&self.readers)
        .await?;
        let mut out = vec![0; minutes];
        for r in &rows {
            let minute: i64 = r.try_get("minute")?;
            if let Some(slot) = out.get_mut((minute - first) as usize) {
                *slot = r.try_get("n")?;
            }
        }
        Ok(out)
    }
}

/// Most completion durations read per statistics query.
pub const MAX_DURATIONS: i64 = 10_000;

const RUN_COUNT_COLS: &str = "COUNT(*) AS claims, \
    COALESCE(SUM(outcome = 'done'), 0) AS completions, \
    COALESCE(SUM(outcome = 'failed'), 0) AS failures, \
    COALESCE(SUM(outcome = 'expired'), 0) AS expiries, \
    COALESCE(SUM(outcome = 'released'), 0) AS releases, \
    COALESCE(SUM(outcome = 'cancelled'), 0) AS cancellations";

fn tally_from_row(r: &SqliteRow) -> Result<RunTally, StoreError> {
    Ok(RunTally {
        counts: ClaimCounts {
            claims: r.try_get("claims")?,
            completions: r.try_get("completions")?,
            failures: r.try_get("failures")?,
            expiries: r.try_get("expiries")?,
            releases: r.try_get("releases")?,
            cancellations: r.try_get("cancellations")?,
        },
        durations_ms: Vec::new(),
    })
}
