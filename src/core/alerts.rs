//! Bottleneck alerts: rules over the [`Insights`] and a few live probes
//! (the reasoning breaker, queues, platform links), evaluated by a periodic
//! loop. An alert is raised once (`alert.raised`), raised again at most every
//! `alerts.repeat_s` while its rule holds (`alert.raised` with a higher
//! `repeats`), and cleared when the rule stops holding (`alert.cleared`).
//! Active alerts are rows of the `alerts` table, so they survive restarts;
//! the events are committed through the store like every other event and go
//! to operator and admin agents, the dashboard and the announcers.

use super::error::CoreError;
use super::events::{Audience, EventKind, NewEvent};
use super::insights::Insights;
use super::model::Role;
use super::store::timed;
use super::Core;
use crate::clock::{now_ms, serde_rfc3339, Millis};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// `[alerts]`: the rules' thresholds and how often they are evaluated.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Whether the rules are evaluated at all.
    pub enabled: bool,
    /// How often the rules are evaluated, in milliseconds (at least 100).
    pub interval_ms: u64,
    /// While an alert holds, `alert.raised` is repeated at most this often (seconds).
    pub repeat_s: u64,
    /// `unserved`: open tasks this old (seconds) with no capable agent online.
    pub unserved_after_s: u64,
    /// `queue_wait`: wait p95 of a queue over the last hour above this (seconds).
    pub queue_wait_p95_s: u64,
    /// `queue_wait`: claims in the last hour a queue needs before it is judged.
    pub queue_min_samples: usize,
    /// `agent_failing`: share of an agent's judged claims in the last hour
    /// that failed or expired at or above which it is alerted (0 to 1).
    pub agent_failure_rate: f64,
    /// `agent_failing`: judged claims (done, failed, expired) in the last
    /// hour an agent needs before it is judged.
    pub agent_min_runs: i64,
    /// `queue_full`: share of the event backlog or of an agent's send queue
    /// in use at or above which it is alerted (0 to 1).
    pub queue_full_ratio: f64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            interval_ms: 5000,
            repeat_s: 900,
            unserved_after_s: 600,
            queue_wait_p95_s: 300,
            queue_min_samples: 5,
            agent_failure_rate: 0.5,
            agent_min_runs: 5,
            queue_full_ratio: 0.8,
        }
    }
}

/// A threshold out of range, naming its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadThreshold {
    /// The dotted key (`alerts.agent_failure_rate`).
    pub key: &'static str,
    /// What is expected.
    pub problem: String,
}

impl AlertsConfig {
    /// Checks every threshold's range; the error names the key.
    pub fn validate(&self) -> Result<(), BadThreshold> {
        let bad = |key: &'static str, problem: &str| {
            Err(BadThreshold {
                key,
                problem: problem.to_string(),
            })
        };
        let ratio = |x: f64| x > 0.0 && x <= 1.0;
        if !(100..=3_600_000).contains(&self.interval_ms) {
            return bad("alerts.interval_ms", "expected 100 to 3600000 milliseconds");
        }
        if !(1..=604_800).contains(&self.repeat_s) {
            return bad("alerts.repeat_s", "expected 1 to 604800 seconds");
        }
        if !(1..=604_800).contains(&self.unserved_after_s) {
            return bad("alerts.unserved_after_s", "expected 1 to 604800 seconds");
        }
        if !(1..=86_400).contains(&self.queue_wait_p95_s) {
            return bad("alerts.queue_wait_p95_s", "expected 1 to 86400 seconds");
        }
        if !(1..=100_000).contains(&self.queue_min_samples) {
            return bad("alerts.queue_min_samples", "expected 1 to 100000");
        }
        if !ratio(self.agent_failure_rate) {
            return bad(
                "alerts.agent_failure_rate",
                "expected a share above 0 and at most 1",
            );
        }
        if !(1..=100_000).contains(&self.agent_min_runs) {
            return bad("alerts.agent_min_runs", "expected 1 to 100000");
        }
        if !ratio(self.queue_full_ratio) {
            return bad(
                "alerts.queue_full_ratio",
                "expected a share above 0 and at most 1",
            );
        }
        Ok(())
    }
}

/// The rules, by name (`rule` of an alert).
pub const RULES: [&str; 6] = [
    "unserved",
    "queue_wait",
    "agent_failing",
    "breaker_open",
    "queue_full",
    "platform_down",
];

/// An alert as stored and as `alerts` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Alert {
    /// Row id.
    pub id: i64,
    /// Rule and subject, `rule:subject`; one active alert per key.
    pub key: String,
    /// One of [`RULES`].
    pub rule: String,
    /// What it is about: a queue, an agent, `reasoning`, `events`, a platform.
    pub subject: String,
    /// What holds, for people.
    pub message: String,
    /// When it was first raised.
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub raised_at: Millis,
    /// When `alert.raised` was last sent for it.
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub notified_at: Millis,
    /// How many times it was raised again while holding.
    pub repeats: i64,
    /// When it cleared (null while active).
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub cleared_at: Option<Millis>,
}

/// A rule that holds now, for one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// One of [`RULES`].
    pub rule: &'static str,
    /// What it is about.
    pub subject: String,
    /// What holds, for people.
    pub message: String,
}

impl Finding {
    /// `rule:subject`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.rule, self.subject)
    }
}

/// The events an alert change emits, given the alert as stored.
pub type AlertEvents = Box<dyn FnOnce(&Alert) -> Vec<NewEvent> + Send + 'static>;

/// What the loop observes outside the store, at one moment.
#[derive(Debug, Clone, Default)]
pub struct Probes {
    /// The reasoning backend's circuit breaker is open.
    pub breaker_open: bool,
    /// Configured platforms whose connection is down (`discord`, `twitch`).
    pub platforms_down: Vec<&'static str>,
    /// Committed events waiting for the slowest observer, and the room.
    pub event_backlog: (usize, usize),
    /// The fullest send queue of each connected agent: (agent, used, room).
    pub send_queues: Vec<(String, usize, usize)>,
}

fn mins(s: i64) -> String {
    if s >= 120 {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

/// Every rule that holds for `insights` and `probes` under `cfg`.
pub fn findings(insights: &Insights, probes: &Probes, cfg: &AlertsConfig) -> Vec<Finding> {
    let mut out = Vec::new();
    for q in &insights.queues {
        if let Some(age) = q.oldest_open_age_s {
            if q.backlog > 0 && q.capable_online == 0 && age >= cfg.unserved_after_s as i64 {
                out.push(Finding {
                    rule: "unserved",
                    subject: q.queue.clone(),
                    message: format!(
                        "{} open in queue {} for {} with no capable agent online",
                        if q.backlog == 1 {
                            "1 task".to_string()
                        } else {
                            format!("{} tasks", q.backlog)
                        },
                        q.queue,
                        mins(age)
                    ),
                });
            }
        }
        if let Some(p95) = q.wait_hour.p95_ms {
            if q.wait_hour.samples >= cfg.queue_min_samples
                && p95 > cfg.queue_wait_p95_s as i64 * 1000
            {
                out.push(Finding {
                    rule: "queue_wait",
                    subject: q.queue.clone(),
                    message: format!(
                        "queue {} wait p95 is {:.1} s over the last hour (bound {} s)",
                        q.queue,
                        p95 as f64 / 1000.0,
                        cfg.queue_wait_p95_s
                    ),
                });
            }
        }
    }
    for a in &insights.agents {
        let h = &a.windows.hour;
        let judged = h.completions + h.failures + h.expiries;
        let bad = h.failures + h.expiries;
        if judged >= cfg.agent_min_runs
            && judged > 0
            && bad as f64 / judged as f64 >= cfg.agent_failure_rate
        {
            out.push(Finding {
                rule: "agent_failing",
                subject: a.agent.clone(),
                message: format!(
                    "agent {} failed {} and let {} leases expire of {} claims judged in the last hour",
                    a.agent, h.failures, h.expiries, judged
                ),
            });
        }
    }
    if probes.breaker_open {
        out.push(Finding {
            rule: "breaker_open",
            subject: "reasoning".into(),
            message:
                "the reasoning backend's circuit breaker is open; reasoning answers unavailable"
                    .into(),
        });
    }
    let full =
        |used: usize, room: usize| room > 0 && used as f64 >= cfg.queue_full_ratio * room as f64;
    let (used, room) = probes.event_backlog;
    if full(used, room) {
        out.push(Finding {
            rule: "queue_full",
            subject: "events".into(),
            message: format!("the event backlog holds {used} of {room} events"),
        });
    }
    for (agent, used, room) in &probes.send_queues {
        if full(*used, *room) {
            out.push(Finding {
                rule: "queue_full",
                subject: agent.clone(),
                message: format!("the send queue of agent {agent} holds {used} of {room} events"),
            });
        }
    }
    for p in &probes.platforms_down {
        out.push(Finding {
            rule: "platform_down",
            subject: (*p).to_string(),
            message: format!("the {p} connection is down"),
        });
    }
    out
}

/// What one evaluation changed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AlertStep {
    /// Raised for the first time.
    pub raised: Vec<Alert>,
    /// Raised again while holding.
    pub repeated: Vec<Alert>,
    /// Cleared.
    pub cleared: Vec<Alert>,
}

fn alert_event(kind: EventKind, audience: Audience) -> AlertEvents {
    Box::new(move |a: &Alert| {
        vec![NewEvent {
            kind,
            data: serde_json::json!({ "alert": a }),
            audience,
        }]
    })
}

impl Core {
    /// The agents alert events go to: every active operator and admin.
    async fn alert_audience(&self) -> Result<Audience, CoreError> {
        let agents = self.store.list_agents().await?;
        Ok(Audience::agents(
            agents
                .iter()
                .filter(|a| a.revoked_at.is_none() && a.role >= Role::Operator)
                .map(|a| a.name.as_str()),
        ))
    }

    /// Active alerts, oldest first (the `alerts` command).
    pub async fn active_alerts(&self) -> Result<Vec<Alert>, CoreError> {
        Ok(timed("active_alerts", self.store.active_alerts()).await?)
    }

    /// Evaluates every rule now: raises what newly holds, repeats what held
    /// since at least `repeat_s`, clears what no longer holds.
    pub async fn evaluate_alerts(
        &self,
        cfg: &AlertsConfig,
        probes: &Probes,
    ) -> Result<AlertStep, CoreError> {
        let insights = self.insights().await?;
        let found = findings(&insights, probes, cfg);
        let active = self.active_alerts().await?;
        let mut step = AlertStep::default();
        if found.is_empty() && active.is_empty() {
            self.latest_insights
                .set_alert_counts(RULES.iter().map(|r| (r.to_string(), 0)).collect());
            return Ok(step);
        }
        let audience = self.alert_audience().await?;
        let repeat_ms = cfg.repeat_s as i64 * 1000;
        for f in &found {
            let key = f.key();
            let was = active.iter().find(|a| a.key == key);
            if was.is_some_and(|a| now_ms() - a.notified_at < repeat_ms) {
                continue;
            }
            let stored = timed(
                "raise_alert",
                self.store.raise_alert(
                    f.clone(),
                    repeat_ms,
                    alert_event(EventKind::AlertRaised, audience.clone()),
                ),
            )
            .await?;
            if let Some(a) = stored {
                if a.repeats > 0 {
                    step.repeated.push(a);
                } else {
                    step.raised.push(a);
                }
            }
        }
        for a in &active {
            if found.iter().any(|f| f.key() == a.key) {
                continue;
            }
            let cleared = timed(
                "clear_alert",
                self.store.clear_alert(
                    a.key.clone(),
                    alert_event(EventKind::AlertCleared, audience.clone()),
                ),
            )
            .await?;
            step.cleared.extend(cleared);
        }
        let mut counts: std::collections::BTreeMap<String, usize> =
            RULES.iter().map(|r| (r.to_string(), 0)).collect();
        for a in active
            .iter()
            .filter(|a| !step.cleared.iter().any(|c| c.key == a.key))
            .chain(step.raised.iter())
        {
            *counts.entry(a.rule.clone()).or_default() += 1;
        }
        self.latest_insights.set_alert_counts(counts);
        Ok(step)
    }
}

/// Evaluates the alert rules every `cfg.interval_ms` until `stop`, with the
/// probes `probe` reads each time; failures are logged and retried next time.
pub async fn run_alert_loop<P>(
    core: Arc<Core>,
    cfg: AlertsConfig,
    probe: P,
    stop: CancellationToken,
) where
    P: Fn() -> Probes + Send + Sync + 'static,
{
    let period = Duration::from_millis(cfg.interval_ms.max(100));
    let cfg = Arc::new(cfg);
    let probe = Arc::new(probe);
    crate::periodic::every(period, stop, move || {
        let (core, cfg, probe) = (core.clone(), cfg.clone(), probe.clone());
        async move {
            match core.evaluate_alerts(&cfg, &probe()).await {
                Ok(step) => {
                    for a in &step.raised {
                        tracing::warn!(rule = %a.rule, subject = %a.subject, "alert raised: {}", a.message);
                    }
                    for a in &step.cleared {
                        tracing::info!(rule = %a.rule, subject = %a.subject, "alert cleared");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not evaluate alerts"),
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::insights::{compute, BacklogRow, Presence, RunRow, HOUR_MS};

    #[test]
    fn thresholds_out_of_range_name_their_key() {
        let cfg = AlertsConfig {
            agent_failure_rate: 1.5,
            ..AlertsConfig::default()
        };
        assert_eq!(cfg.validate().unwrap_err().key, "alerts.agent_failure_rate");
        let cfg = AlertsConfig {
            interval_ms: 0,
            ..AlertsConfig::default()
        };
        assert_eq!(cfg.validate().unwrap_err().key, "alerts.interval_ms");
        assert!(AlertsConfig::default().validate().is_ok());
    }

    #[test]
    fn rules_fire_for_an_unserved_queue_a_failing_agent_and_the_probes() {
        let now = 100 * HOUR_MS;
        let runs: Vec<RunRow> = (0..4)
            .map(|i| RunRow {
                id: i,
                task_id: i,
                agent: "flaky".into(),
                requires: vec![],
                task_created_at: now - 60_000,
                claimed_at: now - 50_000,
                ended_at: Some(now - 40_000),
                outcome: Some(if i == 0 { "done" } else { "expired" }.into()),
            })
            .collect();
        let backlog = vec![BacklogRow {
            requires: vec!["cobol".into()],
            open: 1,
            oldest_created_at: now - 700_000,
        }];
        let ins = compute(&runs, &backlog, &Presence { online: &[] }, now);
        let cfg = AlertsConfig {
            agent_min_runs: 4,
            ..AlertsConfig::default()
        };
        let probes = Probes {
            breaker_open: true,
            platforms_down: vec!["twitch"],
            event_backlog: (10, 4096),
            send_queues: vec![("slow".into(), 900, 1000)],
        };
        let keys: Vec<String> = findings(&ins, &probes, &cfg)
            .iter()
            .map(Finding::key)
            .collect();
        assert_eq!(
            keys,
            [
                "unserved:cobol",
                "agent_failing:flaky",
                "breaker_open:reasoning",
                "queue_full:slow",
                "platform_down:twitch"
            ]
        );
        let quiet = findings(
            &ins,
            &Probes::default(),
            &AlertsConfig {
                unserved_after_s: 800,
                agent_min_runs: 5,
                ..cfg
            },
        );
        assert!(quiet.is_empty(), "{quiet:?}");
    }
}
