//! Swarm insight: how agents, capabilities and queues perform, computed
//! once here from the plain rows every backend reads (claims from
//! `task_runs` with their tasks, open tasks by queue). Percentiles, rates
//! and trends live in this file only; the store returns rows, front doors
//! render the [`Insights`] it produces (`insights` command,
//! `GET /api/insights`, the dashboard panel, `/metrics` gauges).
//!
//! A *queue* is the set of capabilities a task requires (sorted, joined by
//! `,`; `any` for none). Wait time is from the task's creation (or its
//! reopening after an earlier claim ended) to the claim. Figures cover the
//! last hour and the last day; the trend compares the two.

use super::error::CoreError;
use super::model::DurationSummary;
use super::store::timed;
use super::Core;
use crate::clock::{now_ms, rfc3339, Millis};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// One hour in milliseconds: the short window.
pub const HOUR_MS: i64 = 3_600_000;
/// One day in milliseconds: the long window (and how far back rows are read).
pub const DAY_MS: i64 = 24 * HOUR_MS;
/// Most claims read for one computation (the newest, within the day).
pub const MAX_RUNS: i64 = 100_000;
/// The queue name of tasks that require nothing.
pub const ANY_QUEUE: &str = "any";

/// One claim as a backend reads it for insights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    /// The claim's `task_runs.id` (orders the claims of one task).
    pub id: i64,
    /// The task claimed.
    pub task_id: i64,
    /// The claimant.
    pub agent: String,
    /// The task's `requires`.
    pub requires: Vec<String>,
    /// When the task was created.
    pub task_created_at: Millis,
    /// When the claim started.
    pub claimed_at: Millis,
    /// When it ended; None while held.
    pub ended_at: Option<Millis>,
    /// `done`, `failed`, `released`, `expired`, `cancelled`; None while held.
    pub outcome: Option<String>,
}

/// Open tasks of one `requires` list as a backend reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BacklogRow {
    /// The tasks' `requires`, as stored.
    pub requires: Vec<String>,
    /// How many are open.
    pub open: i64,
    /// Creation time of the oldest.
    pub oldest_created_at: Millis,
}

/// The queue name of a `requires` list: sorted, deduplicated, `,`-joined.
pub fn queue_name(requires: &[String]) -> String {
    let set: BTreeSet<&str> = requires.iter().map(String::as_str).collect();
    if set.is_empty() {
        ANY_QUEUE.to_string()
    } else {
        set.into_iter().collect::<Vec<_>>().join(",")
    }
}

/// What a set of claims came to in one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RunFigures {
    /// Claims started in the window.
    pub claims: i64,
    /// Of those, ended in `task.complete`.
    pub completions: i64,
    /// Ended in `task.fail`.
    pub failures: i64,
    /// Ended because the lease ran out.
    pub expiries: i64,
    /// Given back or cancelled.
    pub released: i64,
    /// Claims of a task that had been claimed before (a retry).
    pub retries: i64,
    /// completions / (completions + failures + expiries); null without any.
    pub success_rate: Option<f64>,
    /// Claim to completion.
    pub duration: DurationSummary,
}

#[derive(Default)]
struct Tally {
    figures: RunFigures,
    durations: Vec<i64>,
}

impl Tally {
    fn add(&mut self, run: &RunRow, retry: bool) {
        let f = &mut self.figures;
        f.claims += 1;
        if retry {
            f.retries += 1;
        }
        match run.outcome.as_deref() {
            Some("done") => {
                f.completions += 1;
                if let Some(end) = run.ended_at {
                    self.durations.push(end - run.claimed_at);
                }
            }
            Some("failed") => f.failures += 1,
            Some("expired") => f.expiries += 1,
            Some(_) => f.released += 1,
            None => {}
        }
    }

    fn finish(mut self) -> RunFigures {
        let judged = self.figures.completions + self.figures.failures + self.figures.expiries;
        self.figures.success_rate =
            (judged > 0).then(|| round3(self.figures.completions as f64 / judged as f64));
        self.figures.duration = DurationSummary::of(&self.durations);
        self.figures
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Figures over the last hour and the last day.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Windows {
    /// The last hour.
    pub hour: RunFigures,
    /// The last day.
    pub day: RunFigures,
}

/// One agent's record.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AgentInsight {
    /// The agent.
    pub agent: String,
    /// Whether it is connected (to this instance).
    pub online: bool,
    /// Its claims, by window.
    #[serde(flatten)]
    pub windows: Windows,
}

/// The record of the claims of tasks requiring one capability.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CapabilityInsight {
    /// The capability (`any` for tasks that require nothing).
    pub capability: String,
    /// The claims, by window.
    #[serde(flatten)]
    pub windows: Windows,
}

/// One queue: tasks requiring the same capability set.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct QueueInsight {
    /// The queue name (sorted capabilities joined by `,`, or `any`).
    pub queue: String,
    /// Open tasks now.
    pub backlog: i64,
    /// Seconds since the oldest open task was created (null: none open).
    pub oldest_open_age_s: Option<i64>,
    /// Agents online now whose capabilities cover the queue.
    pub capable_online: usize,
    /// Wait from created (or reopened) to claimed, claims of the last hour.
    pub wait_hour: DurationSummary,
    /// The same over the last day.
    pub wait_day: DurationSummary,
}

impl QueueInsight {
    /// The wait p95 that judges the queue: the last hour's, else the day's.
    pub fn wait_p95_ms(&self) -> Option<i64> {
        self.wait_hour.p95_ms.or(self.wait_day.p95_ms)
    }
}

/// Where the swarm is heading: the last hour against the whole day.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Trend {
    /// `better`, `worse`, `steady`, or `unknown` (too little to compare).
    pub success: &'static str,
    /// `faster`, `slower`, `steady` or `unknown`: queue wait p95, hour against day.
    pub wait: &'static str,
    /// Completions per hour in the last hour.
    pub completions_last_hour: i64,
    /// Mean completions per hour over the day.
    pub completions_per_hour_day: f64,
}

/// The whole analysis at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Insights {
    /// When it was computed (RFC 3339).
    pub generated_at: String,
    /// The whole swarm, by window.
    pub swarm: Windows,
    /// Queue wait of every claim, by window.
    pub wait_hour: DurationSummary,
    /// The same over the day.
    pub wait_day: DurationSummary,
    /// Hour against day.
    pub trend: Trend,
    /// Every agent with claims in the last day, least reliable first.
    pub agents: Vec<AgentInsight>,
    /// Every capability required by a task claimed in the last day, by name.
    pub capabilities: Vec<CapabilityInsight>,
    /// Every queue with open tasks or claims in the last day, slowest first.
    pub queues: Vec<QueueInsight>,
}

/// What the computation needs besides the rows.
pub struct Presence<'a> {
    /// Online agents and their capabilities.
    pub online: &'a [(String, Vec<String>)],
}

impl Presence<'_> {
    fn capable(&self, requires: &[String]) -> usize {
        self.online
            .iter()
            .filter(|(_, caps)| super::events::covers(caps, requires))
            .count()
    }

    fn is_online(&self, agent: &str) -> bool {
        self.online.iter().any(|(a, _)| a == agent)
    }
}

fn queue_requires(queue: &str) -> Vec<String> {
    if queue == ANY_QUEUE {
        vec![]
    } else {
        queue.split(',').map(str::to_string).collect()
    }
}

fn compare(
    now: Option<f64>,
    base: Option<f64>,
    up: &'static str,
    down: &'static str,
) -> &'static str {
    match (now, base) {
        (Some(n), Some(b)) if b > 0.0 || n > 0.0 => {
            let scale = b.abs().max(1e-9);
            let change = (n - b) / scale;
            if change > 0.1 {
                up
            } else if change < -0.1 {
                down
            } else {
                "steady"
            }
        }
        (Some(_), Some(_)) => "steady",
        _ => "unknown",
    }
}

/// Computes the insights at `now` from `runs` (the claims of the last day
/// and every earlier claim of the same tasks, any order) and the open
/// backlog. Pure: every backend's rows give the same figures.
pub fn compute(
    runs: &[RunRow],
    backlog: &[BacklogRow],
    presence: &Presence,
    now: Millis,
) -> Insights {
    let hour_start = now - HOUR_MS;
    let day_start = now - DAY_MS;
    // claims of each task in order, for retries and reopen times
    let mut by_task: HashMap<i64, Vec<&RunRow>> = HashMap::new();
    for r in runs {
        by_task.entry(r.task_id).or_default().push(r);
    }
    let mut swarm = (Tally::default(), Tally::default());
    let mut agents: BTreeMap<String, (Tally, Tally)> = BTreeMap::new();
    let mut caps: BTreeMap<String, (Tally, Tally)> = BTreeMap::new();
    let mut waits: BTreeMap<String, (Vec<i64>, Vec<i64>)> = BTreeMap::new();
    let (mut all_wait_hour, mut all_wait_day) = (Vec::new(), Vec::new());
    for claims in by_task.values_mut() {
        claims.sort_by_key(|r| r.id);
        let mut previous: Option<&RunRow> = None;
        for &run in claims.iter() {
            let retry = previous.is_some();
            let waiting_since = previous
                .map(|p| p.ended_at.unwrap_or(p.claimed_at))
                .unwrap_or(run.task_created_at);
            previous = Some(run);
            if run.claimed_at < day_start {
                continue;
            }
            let in_hour = run.claimed_at >= hour_start;
            let wait = (run.claimed_at - waiting_since).max(0);
            let queue = queue_name(&run.requires);
            let w = waits.entry(queue).or_default();
            w.1.push(wait);
            all_wait_day.push(wait);
            if in_hour {
                w.0.push(wait);
                all_wait_hour.push(wait);
            }
            let add = |pair: &mut (Tally, Tally)| {
                pair.1.add(run, retry);
                if in_hour {
                    pair.0.add(run, retry);
                }
            };
            add(&mut swarm);
            add(agents.entry(run.agent.clone()).or_default());
            let cap_names: Vec<String> = if run.requires.is_empty() {
                vec![ANY_QUEUE.to_string()]
            } else {
                run.requires
                    .iter()
                    .cloned()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect()
            };
            for c in cap_names {
                add(caps.entry(c).or_default());
            }
        }
    }
    let windows = |(h, d): (Tally, Tally)| Windows {
        hour: h.finish(),
        day: d.finish(),
    };
    let mut agents: Vec<AgentInsight> = agents
        .into_iter()
        .map(|(agent, t)| AgentInsight {
            online: presence.is_online(&agent),
            agent,
            windows: windows(t),
        })
        .collect();
    // least reliable first: lowest day success rate, unknown last
    agents.sort_by(|a, b| {
        let key = |x: &AgentInsight| x.windows.day.success_rate.unwrap_or(2.0);
        key(a)
            .partial_cmp(&key(b))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.agent.cmp(&b.agent))
    });
    let capabilities = caps
        .into_iter()
        .map(|(capability, t)| CapabilityInsight {
            capability,
            windows: windows(t),
        })
        .collect();
    let mut open: BTreeMap<String, (i64, Millis)> = BTreeMap::new();
    for b in backlog {
        let e = open
            .entry(queue_name(&b.requires))
            .or_insert((0, b.oldest_created_at));
        e.0 += b.open;
        e.1 = e.1.min(b.oldest_created_at);
    }
    let names: BTreeSet<String> = open.keys().chain(waits.keys()).cloned().collect();
    let mut queues: Vec<QueueInsight> = names
        .into_iter()
        .map(|queue| {
            let (backlog, oldest) = open.get(&queue).copied().unwrap_or((0, now));
            let (h, d) = waits.remove(&queue).unwrap_or_default();
            QueueInsight {
                backlog,
                oldest_open_age_s: (backlog > 0).then(|| ((now - oldest) / 1000).max(0)),
                capable_online: presence.capable(&queue_requires(&queue)),
                wait_hour: DurationSummary::of(&h),
                wait_day: DurationSummary::of(&d),
                queue,
            }
        })
        .collect();
    // slowest first: the longer of wait p95 and the oldest open task's age
    queues.sort_by(|a, b| {
        let key = |q: &QueueInsight| {
            q.wait_p95_ms()
                .unwrap_or(0)
                .max(q.oldest_open_age_s.unwrap_or(0) * 1000)
        };
        key(b).cmp(&key(a)).then_with(|| a.queue.cmp(&b.queue))
    });
    let swarm = windows(swarm);
    let wait_hour = DurationSummary::of(&all_wait_hour);
    let wait_day = DurationSummary::of(&all_wait_day);
    let trend = Trend {
        success: compare(
            swarm.hour.success_rate,
            swarm.day.success_rate,
            "better",
            "worse",
        ),
        wait: compare(
            wait_hour.p95_ms.map(|x| x as f64),
            wait_day.p95_ms.map(|x| x as f64),
            "slower",
            "faster",
        ),
        completions_last_hour: swarm.hour.completions,
        completions_per_hour_day: round3(swarm.day.completions as f64 / 24.0),
    };
    Insights {
        generated_at: rfc3339(now),
        swarm,
        wait_hour,
        wait_day,
        trend,
        agents,
        capabilities,
        queues,
    }
}

impl Insights {
    /// One line for chat: the swarm's success rate and throughput, the
    /// slowest queue and the least reliable agent.
    pub fn summary_line(&self) -> String {
        let pct = |r: Option<f64>| r.map_or("n/a".to_string(), |r| format!("{:.0}%", r * 100.0));
        let secs = |ms: Option<i64>| {
            ms.map_or("n/a".to_string(), |ms| {
                format!("{:.1}s", ms as f64 / 1000.0)
            })
        };
        let mut parts = vec![format!(
            "last hour: {} done, success {}, wait p95 {} (trend {})",
            self.swarm.hour.completions,
            pct(self.swarm.hour.success_rate),
            secs(self.wait_hour.p95_ms),
            self.trend.success
        )];
        if let Some(q) = self.queues.first() {
            parts.push(format!(
                "slowest queue {}: {} open, wait p95 {}",
                q.queue,
                q.backlog,
                secs(q.wait_p95_ms())
            ));
        }
        if let Some(a) = self
            .agents
            .iter()
            .find(|a| a.windows.day.success_rate.is_some())
        {
            parts.push(format!(
                "least reliable {}: success {} over {} claims",
                a.agent,
                pct(a.windows.day.success_rate),
                a.windows.day.claims
            ));
        }
        parts.join(" · ")
    }

    /// The same figures for one agent only (`insights agent=NAME`).
    pub fn for_agent(mut self, agent: &str) -> Self {
        self.agents.retain(|a| a.agent == agent);
        self
    }
}

/// The newest insights computed and the active alerts counted by rule, for
/// readers that must not wait on the database (`/metrics`): refreshed by
/// every computation and alert evaluation.
#[derive(Default)]
pub struct LatestInsights {
    insights: Mutex<Option<Arc<Insights>>>,
    alerts: Mutex<BTreeMap<String, usize>>,
    shown: Mutex<(BTreeSet<String>, BTreeSet<String>)>,
}

impl LatestInsights {
    /// The newest, if any was computed yet.
    pub fn get(&self) -> Option<Arc<Insights>> {
        self.insights
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, i: Arc<Insights>) {
        *self.insights.lock().unwrap_or_else(|p| p.into_inner()) = Some(i);
    }

    /// Active alerts by rule as of the latest evaluation.
    pub fn alert_counts(&self) -> BTreeMap<String, usize> {
        self.alerts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records the active alerts by rule after an evaluation.
    pub fn set_alert_counts(&self, counts: BTreeMap<String, usize>) {
        *self.alerts.lock().unwrap_or_else(|p| p.into_inner()) = counts;
    }

    /// Records the queues and agents now given a metrics series and returns
    /// those shown before but not now (their series are zeroed, so a label
    /// that leaves the top does not keep a stale value).
    pub fn replace_shown(
        &self,
        queues: BTreeSet<String>,
        agents: BTreeSet<String>,
    ) -> (Vec<String>, Vec<String>) {
        let mut shown = self.shown.lock().unwrap_or_else(|p| p.into_inner());
        let gone_q = shown.0.difference(&queues).cloned().collect();
        let gone_a = shown.1.difference(&agents).cloned().collect();
        *shown = (queues, agents);
        (gone_q, gone_a)
    }
}

impl Core {
    /// Computes the insights now from the store's rows and this instance's
    /// presence, and keeps them as the latest.
    pub async fn insights(&self) -> Result<Arc<Insights>, CoreError> {
        let now = now_ms();
        let runs = timed(
            "insight_runs",
            self.store.insight_runs(now - DAY_MS, MAX_RUNS),
        )
        .await?;
        let backlog = timed("open_backlog", self.store.open_backlog()).await?;
        let online = self.bus.online_capabilities();
        let insights = Arc::new(compute(&runs, &backlog, &Presence { online: &online }, now));
        self.latest_insights.set(insights.clone());
        Ok(insights)
    }

    /// The `insights` command: everything, or one agent's record
    /// (`not_found` for an agent never registered).
    pub async fn insights_for(&self, agent: Option<&str>) -> Result<Insights, CoreError> {
        if let Some(name) = agent {
            if self.store.agent(name).await?.is_none() {
                return Err(CoreError::NotFound(format!("no agent named {name}")));
            }
        }
        let all = self.insights().await?;
        Ok(match agent {
            Some(name) => (*all).clone().for_agent(name),
            None => (*all).clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        id: i64,
        task: i64,
        agent: &str,
        req: &[&str],
        created: Millis,
        claimed: Millis,
        end: Option<(Millis, &str)>,
    ) -> RunRow {
        RunRow {
            id,
            task_id: task,
            agent: agent.into(),
            requires: req.iter().map(|s| s.to_string()).collect(),
            task_created_at: created,
            claimed_at: claimed,
            ended_at: end.map(|e| e.0),
            outcome: end.map(|e| e.1.to_string()),
        }
    }

    const NOW: Millis = 10 * DAY_MS;

    #[test]
    fn queue_names_are_sorted_sets() {
        let q = queue_name(&["review".into(), "rust".into(), "review".into()]);
        assert_eq!(q, "review,rust");
        assert_eq!(queue_name(&[]), "any");
    }

    #[test]
    fn success_rate_durations_retries_and_waits_are_computed_per_agent_and_queue() {
        let t0 = NOW - 30 * 60_000;
        let runs = vec![
            // task 1: a expires after waiting 10 s, b completes 5 s after the reopen
            run(
                1,
                1,
                "a",
                &["rust"],
                t0,
                t0 + 10_000,
                Some((t0 + 70_000, "expired")),
            ),
            run(
                2,
                1,
                "b",
                &["rust"],
                t0,
                t0 + 75_000,
                Some((t0 + 95_000, "done")),
            ),
            // task 2: b completes
            run(
                3,
                2,
                "b",
                &["rust"],
                t0,
                t0 + 1_000,
                Some((t0 + 3_000, "done")),
            ),
            // yesterday's claim: in the day only
            run(
                4,
                3,
                "a",
                &[],
                NOW - 5 * HOUR_MS,
                NOW - 5 * HOUR_MS,
                Some((NOW - 4 * HOUR_MS, "failed")),
            ),
        ];
        let online = vec![("b".to_string(), vec!["rust".to_string()])];
        let backlog = vec![BacklogRow {
            requires: vec!["go".into()],
            open: 2,
            oldest_created_at: NOW - 120_000,
        }];
        let i = compute(&runs, &backlog, &Presence { online: &online }, NOW);
        assert_eq!(i.agents[0].agent, "a", "least reliable first");
        assert_eq!(i.agents[0].windows.day.success_rate, Some(0.0));
        assert_eq!(i.agents[0].windows.hour.expiries, 1);
        assert_eq!(i.agents[0].windows.hour.failures, 0);
        let b = &i.agents[1];
        assert_eq!(b.windows.hour.success_rate, Some(1.0));
        assert_eq!(b.windows.hour.retries, 1);
        assert_eq!(b.windows.hour.duration.p95_ms, Some(20_000));
        assert!(b.online);
        let rust = i.queues.iter().find(|q| q.queue == "rust").unwrap();
        // waits: 10 s, 5 s (from the expiry), 1 s
        assert_eq!(rust.wait_hour.samples, 3);
        assert_eq!(rust.wait_hour.p95_ms, Some(10_000));
        assert_eq!(rust.capable_online, 1);
        let go = &i.queues[0];
        assert_eq!(
            (go.queue.as_str(), go.backlog, go.oldest_open_age_s),
            ("go", 2, Some(120))
        );
        assert_eq!(go.capable_online, 0);
        assert_eq!(i.swarm.day.claims, 4);
        assert_eq!(i.swarm.hour.claims, 3);
        let any = i
            .capabilities
            .iter()
            .find(|c| c.capability == "any")
            .unwrap();
        assert_eq!(any.windows.day.failures, 1);
        assert!(
            i.summary_line().contains("slowest queue go"),
            "{}",
            i.summary_line()
        );
    }

    #[test]
    fn claims_before_the_day_count_only_for_reopen_times() {
        let old = NOW - 2 * DAY_MS;
        let runs = vec![
            run(1, 1, "a", &[], old, old, Some((NOW - 60_000, "expired"))),
            run(2, 1, "b", &[], old, NOW - 30_000, None),
        ];
        let i = compute(&runs, &[], &Presence { online: &[] }, NOW);
        assert_eq!(i.swarm.day.claims, 1);
        assert_eq!(i.wait_day.p50_ms, Some(30_000));
        assert_eq!(i.swarm.day.success_rate, None);
    }
}
