//! Per-agent work statistics (claims, outcomes, time from claim to done),
//! kept by the store in `task_runs` in the same transaction as each task
//! change, and the swarm's throughput.

use super::error::CoreError;
use super::model::AgentStats;
use super::store::timed;
use super::Core;
use std::collections::BTreeMap;

/// Minutes of throughput history the dashboard shows.
pub const THROUGHPUT_MINUTES: usize = 60;

impl Core {
    /// One agent's statistics; `not_found` for an agent never registered.
    pub async fn agent_stats(&self, name: &str) -> Result<AgentStats, CoreError> {
        if self.store.agent(name).await?.is_none() {
            return Err(CoreError::NotFound(format!("no agent named {name}")));
        }
        let tally = timed("run_tally", self.store.run_tally(name)).await?;
        Ok(AgentStats::from_tally(name, &tally))
    }

    /// Statistics of every agent that ever held a claim, by name.
    pub async fn all_agent_stats(&self) -> Result<BTreeMap<String, AgentStats>, CoreError> {
        Ok(timed("run_tallies", self.store.run_tallies())
            .await?
            .iter()
            .map(|(name, t)| (name.clone(), AgentStats::from_tally(name, t)))
            .collect())
    }

    /// Tasks completed per minute over the last [`THROUGHPUT_MINUTES`]
    /// minutes, oldest first.
    pub async fn throughput(&self) -> Result<Vec<i64>, CoreError> {
        Ok(timed(
            "done_per_minute",
            self.store.done_per_minute(THROUGHPUT_MINUTES),
        )
        .await?)
    }
}
