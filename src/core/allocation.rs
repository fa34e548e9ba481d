//! Learned allocation: which online agent should do a task, judged by how
//! each did on similar tasks (the same capability set) before.
//!
//! For every online agent whose capabilities cover the task's `requires`:
//!
//! - **success rate** with a Beta(1, 1) prior: `(done + 1) / (done +
//!   failed + 2)`, so an agent with no record counts as 50 % and is tried
//!   before one that mostly fails or lets leases expire;
//! - **expected duration** of a successful run, the agent's mean shrunk
//!   towards the mean of every agent on such tasks (one pseudo-run of the
//!   overall mean), so one lucky run does not make an agent "fastest";
//! - **current load**, the claims it holds now.
//!
//! The score is the expected successful completions per second,
//! `success rate / expected seconds`, divided by `1 + held` (a busy agent
//! would start later). `task.recommend` shows the ranking with its
//! reasons; with `tasks.allocation = "learned"` a new task is offered to
//! the best *idle* agent first (see [`Core::offer_for`]).

use super::error::CoreError;
use super::model::{Task, TaskState};
use super::Core;
use crate::clock::Millis;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Runs older than this are not looked at: a week.
pub const HISTORY_MS: Millis = 7 * 86_400_000;
/// The expected duration of a run when nobody has a record (30 s).
const DEFAULT_DURATION_MS: f64 = 30_000.0;

/// `tasks.allocation`: who gets a new task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AllocationMode {
    /// Whichever capable agent claims first (the default).
    #[default]
    FirstCome,
    /// Offered to the best idle agent first, for `tasks.offer_window_ms`.
    Learned,
}

/// What one agent's claims of tasks with one capability set came to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunStat {
    /// The agent.
    pub agent: String,
    /// The capability set of the tasks (sorted, deduplicated).
    pub requires: Vec<String>,
    /// Claims that ended `done`.
    pub done: i64,
    /// Claims that ended `failed` or `expired`.
    pub failed: i64,
    /// Milliseconds from claim to completion, summed over the `done` ones.
    pub done_ms: i64,
}

/// One agent in a ranking, with the figures behind its place.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Candidate {
    /// The agent.
    pub agent: String,
    /// Expected successful completions per second, load considered; higher first.
    pub score: f64,
    /// Success rate with the Beta(1, 1) prior.
    pub success_rate: f64,
    /// Claims of similar tasks that ended done.
    pub done: i64,
    /// Claims of similar tasks that failed or expired.
    pub failed: i64,
    /// Expected milliseconds to complete one.
    pub expected_ms: f64,
    /// Claims it holds now.
    pub held: i64,
    /// The figures in words.
    pub reason: String,
}

/// `task.recommend`: the ranking for one task.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Recommendation {
    /// The task.
    pub task_id: i64,
    /// Its capability set.
    pub requires: Vec<String>,
    /// Online agents that can do it, best first.
    pub candidates: Vec<Candidate>,
}

/// The capability set key: sorted and deduplicated.
pub fn capability_set(requires: &[String]) -> Vec<String> {
    let mut v: Vec<String> = requires.to_vec();
    v.sort();
    v.dedup();
    v
}

/// Ranks `agents` (name, claims held) for tasks needing `requires` by the
/// records in `stats` (any capability sets; only equal ones count).
pub fn rank(requires: &[String], agents: &[(String, i64)], stats: &[RunStat]) -> Vec<Candidate> {
    let key = capability_set(requires);
    let mut mine: HashMap<&str, (i64, i64, i64)> = HashMap::new();
    let (mut all_done, mut all_ms) = (0i64, 0i64);
    for s in stats.iter().filter(|s| capability_set(&s.requires) == key) {
        let e = mine.entry(s.agent.as_str()).or_default();
        e.0 += s.done;
        e.1 += s.failed;
        e.2 += s.done_ms;
        all_done += s.done;
        all_ms += s.done_ms;
    }
    let overall_ms = if all_done > 0 {
        all_ms as f64 / all_done as f64
    } else {
        DEFAULT_DURATION_MS
    };
    let mut out: Vec<Candidate> = agents
        .iter()
        .map(|(agent, held)| {
            let (done, failed, done_ms) = mine.get(agent.as_str()).copied().unwrap_or_default();
            let success_rate = (done as f64 + 1.0) / ((done + failed) as f64 + 2.0);
            let expected_ms = ((done_ms as f64 + overall_ms) / (done as f64 + 1.0)).max(1.0);
            let score = success_rate / (expected_ms / 1000.0) / (1.0 + *held as f64);
            let reason = if done + failed == 0 {
                format!(
                    "no record on {}; prior 50% success, ~{:.1} s (the average), holds {held}",
                    describe(&key),
                    expected_ms / 1000.0
                )
            } else {
                format!(
                    "{done} done, {failed} failed or expired on {} ({:.0}% with prior), ~{:.1} s each, holds {held}",
                    describe(&key),
                    success_rate * 100.0,
                    expected_ms / 1000.0
                )
            };
            Candidate {
                agent: agent.clone(),
                score,
                success_rate,
                done,
                failed,
                expected_ms,
                held: *held,
                reason,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.held.cmp(&b.held))
            .then_with(|| a.agent.cmp(&b.agent))
    });
    out
}

fn describe(key: &[String]) -> String {
    if key.is_empty() {
        "tasks without requirements".into()
    } else {
        format!("[{}] tasks", key.join(", "))
    }
}

impl Core {
    /// Online agents that can do a task needing `requires`, with the claims
    /// each holds now.
    async fn capable_online(&self, requires: &[String]) -> Result<Vec<(String, i64)>, CoreError> {
        let held = self.claims_held().await?;
        Ok(self
            .store
            .list_agents()
            .await?
            .into_iter()
            .filter(|a| a.revoked_at.is_none() && self.bus.is_online(&a.name))
            .filter(|a| super::events::covers(&a.capabilities, requires))
            .map(|a| {
                let h = held.get(&a.name).copied().unwrap_or(0);
                (a.name, h)
            })
            .collect())
    }

    /// Claims held per agent now.
    async fn claims_held(&self) -> Result<BTreeMap<String, i64>, CoreError> {
        let claimed = self
            .store
            .list_tasks(Some(TaskState::Claimed), None, super::tasks::MAX_LIST)
            .await?;
        let mut held = BTreeMap::new();
        for t in claimed {
            if let Some(a) = t.assignee {
                *held.entry(a).or_insert(0) += 1;
            }
        }
        Ok(held)
    }

    /// The ranking of online capable agents for `requires`, best first.
    pub async fn rank_agents(&self, requires: &[String]) -> Result<Vec<Candidate>, CoreError> {
        let agents = self.capable_online(requires).await?;
        if agents.is_empty() {
            return Ok(vec![]);
        }
        let since = crate::clock::now_ms() - HISTORY_MS;
        let stats = self.store.run_stats(since).await?;
        Ok(rank(requires, &agents, &stats))
    }

    /// `task.recommend`: the ranking for task `task_id` with its reasons
    /// (operators); `not_found` for an unknown task.
    pub async fn recommend_task(&self, task_id: i64) -> Result<Recommendation, CoreError> {
        let task: Task = self.get_task(task_id).await?;
        Ok(Recommendation {
            task_id,
            requires: task.requires.clone(),
            candidates: self.rank_agents(&task.requires).await?,
        })
    }

    /// In learned mode, the agent a new task needing `requires` is offered
    /// to first: the best-ranked idle one, when the records set it apart.
    /// None in first-come mode, when fewer than two capable agents are
    /// online and idle (there is nothing to choose), or when the best has
    /// no record or scores no better than the runner-up (nothing learned
    /// tells them apart): the first to claim gets the task then.
    pub async fn offer_for(&self, requires: &[String]) -> Result<Option<String>, CoreError> {
        if self.tasks_cfg.allocation != AllocationMode::Learned {
            return Ok(None);
        }
        let ranked = self.rank_agents(requires).await?;
        let mut idle = ranked.into_iter().filter(|c| c.held == 0);
        let (Some(best), Some(second)) = (idle.next(), idle.next()) else {
            return Ok(None);
        };
        if best.done + best.failed == 0 || best.score <= second.score {
            return Ok(None);
        }
        Ok(Some(best.agent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(agent: &str, done: i64, failed: i64, mean_ms: i64) -> RunStat {
        RunStat {
            agent: agent.into(),
            requires: vec!["rust".into()],
            done,
            failed,
            done_ms: done * mean_ms,
        }
    }

    fn names(c: &[Candidate]) -> Vec<&str> {
        c.iter().map(|c| c.agent.as_str()).collect()
    }

    #[test]
    fn fast_reliable_agents_rank_above_new_ones_and_new_above_flaky() {
        let stats = [stat("fast", 20, 0, 500), stat("flaky", 5, 15, 500)];
        let agents: Vec<(String, i64)> = ["new", "flaky", "fast"]
            .iter()
            .map(|a| (a.to_string(), 0))
            .collect();
        let ranked = rank(&["rust".into()], &agents, &stats);
        assert_eq!(names(&ranked), ["fast", "new", "flaky"], "{ranked:?}");
        assert!(ranked[0].reason.contains("20 done"), "{}", ranked[0].reason);
        assert!(
            ranked[1].reason.contains("no record"),
            "{}",
            ranked[1].reason
        );
    }

    #[test]
    fn of_two_reliable_agents_the_faster_ranks_first() {
        let stats = [stat("slow", 20, 0, 5000), stat("fast", 20, 0, 500)];
        let agents = vec![("slow".to_string(), 0), ("fast".to_string(), 0)];
        assert_eq!(
            names(&rank(&["rust".into()], &agents, &stats)),
            ["fast", "slow"]
        );
    }

    #[test]
    fn load_lowers_the_score_and_other_capability_sets_do_not_count() {
        let mut other = stat("a", 50, 0, 100);
        other.requires = vec!["python".into()];
        let stats = [stat("a", 10, 0, 1000), stat("b", 10, 0, 1000), other];
        let agents = vec![("a".to_string(), 2), ("b".to_string(), 0)];
        let ranked = rank(&["rust".into()], &agents, &stats);
        assert_eq!(names(&ranked), ["b", "a"]);
        assert_eq!(ranked[1].done, 10, "python runs are not counted");
    }

    #[test]
    fn capability_sets_compare_as_sets() {
        assert_eq!(
            capability_set(&["b".into(), "a".into(), "b".into()]),
            vec!["a".to_string(), "b".to_string()]
        );
    }
}
