//! `recommend`: asks the reasoning engine, in its strategic mode, for advice
//! on the swarm's state. The prompt holds figures, queue (capability) names,
//! agent names and alert texts only: never a task's title or body, a
//! message, a result or a secret.

use super::alerts::Alert;
use super::error::CoreError;
use super::insights::{Insights, RunFigures};
use super::model::Caller;
use super::Core;
use crate::reason::ReasonAnswer;

/// Queues, agents and alerts listed in the prompt at most (each).
const PROMPT_ROWS: usize = 10;
/// Longest operator question taken into the prompt.
pub const MAX_QUESTION_CHARS: usize = 500;

fn pct(r: Option<f64>) -> String {
    r.map_or("n/a".into(), |r| format!("{:.0}%", r * 100.0))
}

fn secs(ms: Option<i64>) -> String {
    ms.map_or("n/a".into(), |ms| format!("{:.1} s", ms as f64 / 1000.0))
}

fn figures(f: &RunFigures) -> String {
    format!(
        "{} claims, {} done, {} failed, {} expired, {} retries, success {}, claim-to-done p50 {} p95 {}",
        f.claims,
        f.completions,
        f.failures,
        f.expiries,
        f.retries,
        pct(f.success_rate),
        secs(f.duration.p50_ms),
        secs(f.duration.p95_ms)
    )
}

/// The prompt for `recommend`: the insights summary and the active alerts
/// (figures and names only), then the operator's question if any.
pub fn recommendation_prompt(i: &Insights, alerts: &[Alert], question: Option<&str>) -> String {
    let mut p = String::from(
        "You advise the operators of a swarm of software agents. Agents claim tasks from \
         queues (a queue is the set of capabilities its tasks require) under leases; a lease \
         that runs out sends the task back to its queue. From the figures below, recommend at \
         most five concrete actions, most important first, each with the figure that \
         motivates it.\n\n",
    );
    p.push_str(&format!("Swarm, last hour: {}.\n", figures(&i.swarm.hour)));
    p.push_str(&format!("Swarm, last day: {}.\n", figures(&i.swarm.day)));
    p.push_str(&format!(
        "Queue wait p95: last hour {}, last day {}. Trend: success {}, wait {}.\n",
        secs(i.wait_hour.p95_ms),
        secs(i.wait_day.p95_ms),
        i.trend.success,
        i.trend.wait
    ));
    p.push_str("\nQueues, slowest first:\n");
    for q in i.queues.iter().take(PROMPT_ROWS) {
        p.push_str(&format!(
            "- {}: {} open, oldest open {}, {} capable agents online, wait p95 last hour {} (last day {})\n",
            q.queue,
            q.backlog,
            q.oldest_open_age_s
                .map_or("none".into(), |s| format!("{s} s")),
            q.capable_online,
            secs(q.wait_hour.p95_ms),
            secs(q.wait_day.p95_ms)
        ));
    }
    p.push_str("\nAgents, least reliable first (last day):\n");
    for a in i.agents.iter().take(PROMPT_ROWS) {
        p.push_str(&format!(
            "- {} ({}): {}\n",
            a.agent,
            if a.online { "online" } else { "offline" },
            figures(&a.windows.day)
        ));
    }
    p.push_str("\nActive alerts:\n");
    if alerts.is_empty() {
        p.push_str("- none\n");
    }
    for a in alerts.iter().take(PROMPT_ROWS) {
        p.push_str(&format!("- {} ({}): {}\n", a.rule, a.subject, a.message));
    }
    if let Some(q) = question {
        let q: String = q.chars().take(MAX_QUESTION_CHARS).collect();
        p.push_str(&format!("\nThe operator asks: {q}\n"));
    }
    p
}

impl Core {
    /// Asks the reasoning engine (strategic mode) for advice on the current
    /// insights and active alerts; `unavailable` without a backend, with why.
    pub async fn recommend(
        &self,
        caller: &Caller,
        question: Option<&str>,
    ) -> Result<ReasonAnswer, CoreError> {
        if let Some(q) = question {
            let n = q.chars().count();
            if n > MAX_QUESTION_CHARS {
                return Err(CoreError::bad_request(format!(
                    "`question` has {n} characters; the limit is {MAX_QUESTION_CHARS}"
                )));
            }
        }
        // refuses at once when no backend is configured (the message says how)
        self.check_reason(caller, "recommend", "strategic")?;
        let insights = self.insights().await?;
        let alerts = self.active_alerts().await?;
        let mut prompt = recommendation_prompt(&insights, &alerts, question);
        if prompt.chars().count() > self.limits.max_prompt_chars {
            prompt = prompt.chars().take(self.limits.max_prompt_chars).collect();
        }
        self.reason(&prompt, crate::reason::Mode::Strategic, None)
            .await
    }
}
