//! The core's data: roles, identities, tasks, agents. Plain types, shared by
//! every front door and by the store.

use crate::clock::{serde_rfc3339, Millis};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a caller may do. Ordered: each role may do all that the ones below it may.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Twitch viewers and Discord members without a mapped role: read-only queries.
    Viewer,
    /// An autonomous agent: claims and works tasks, messages, broadcasts.
    Agent,
    /// Creates, assigns and cancels tasks, opens polls.
    Operator,
    /// Everything.
    Admin,
}

impl Role {
    /// The lowercase name used in config, the CLI and the protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Agent => "agent",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "agent" => Ok(Role::Agent),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?} (expected viewer, agent, operator or admin)"
            )),
        }
    }
}

/// Where a caller came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// A WebSocket agent.
    Ws,
    /// Discord slash commands and buttons.
    Discord,
    /// Twitch chat.
    Twitch,
    /// The HTTP API.
    Http,
    /// An MCP client at `/mcp` (or through the stdio bridge).
    Mcp,
    /// An A2A client at `/a2a`.
    A2a,
    /// The command line, writing to the database directly.
    Cli,
}

impl Platform {
    /// The lowercase name used in identities, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Ws => "ws",
            Platform::Discord => "discord",
            Platform::Twitch => "twitch",
            Platform::Http => "http",
            Platform::Mcp => "mcp",
            Platform::A2a => "a2a",
            Platform::Cli => "cli",
        }
    }
}

/// Who is asking: identity (as the protocol spells it), role, capabilities.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `agent-3` for an agent; `discord:alice`, `twitch:bob`, `cli:root` for people.
    pub identity: String,
    /// The caller's role, already resolved from config or the agent record.
    pub role: Role,
    /// An agent's capabilities (empty for people).
    pub capabilities: Vec<String>,
    /// The front door the request came through.
    pub platform: Platform,
}

impl Caller {
    /// True when the caller is an agent (its identity has no platform prefix).
    pub fn is_agent(&self) -> bool {
        is_agent_identity(&self.identity)
    }
}

/// True when `identity` names an agent rather than a person (`discord:...`).
pub fn is_agent_identity(identity: &str) -> bool {
    !identity.contains(':')
}

/// The life cycle of a task. `open` → `claimed` → `done` | `failed`;
/// `claimed` → `open` on release, expiry or a retryable failure; any
/// non-final state → `cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Waiting to be claimed.
    Open,
    /// Held by an assignee under a lease.
    Claimed,
    /// Completed (final).
    Done,
    /// Failed for good (final).
    Failed,
    /// Cancelled (final).
    Cancelled,
}

impl TaskState {
    /// Every state, in life-cycle order.
    pub const ALL: [TaskState; 5] = [
        TaskState::Open,
        TaskState::Claimed,
        TaskState::Done,
        TaskState::Failed,
        TaskState::Cancelled,
    ];

    /// The lowercase name stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Open => "open",
            TaskState::Claimed => "claimed",
            TaskState::Done => "done",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }

    /// True for `done`, `failed` and `cancelled`.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Done | TaskState::Failed | TaskState::Cancelled
        )
    }

    /// The position in [`TaskState::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown task state {s:?} (expected open, claimed, done, failed or cancelled)"
                )
            })
    }
}

/// A unit of work, as the protocol shows it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Task {
    /// Database id, shown as `#42`.
    pub id: i64,
    /// Short title.
    pub title: String,
    /// Longer description (may be empty).
    pub body: String,
    /// Life-cycle state.
    pub state: TaskState,
    /// Higher first.
    pub priority: i64,
    /// Capabilities an agent needs to claim it by `task.claim` without an id.
    pub requires: Vec<String>,
    /// Free labels.
    pub tags: Vec<String>,
    /// Who holds it (claimed) or held it last.
    pub assignee: Option<String>,
    /// When the current claim's lease runs out.
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub lease_expires_at: Option<Millis>,
    /// Claims made so far.
    pub attempts: i64,
    /// Claims allowed before a failure or expiry is final.
    pub max_attempts: i64,
    /// Identity of the creator.
    pub created_by: String,
    /// Creation time.
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    /// Last change.
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Millis,
    /// What the assignee reported on completion.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// The last failure's error text.
    pub error: Option<String>,
    /// The last progress note.
    pub progress: Option<String>,
    /// The last progress percentage.
    pub percent: Option<i64>,
    /// Learned allocation: the agent the task was offered to first; until
    /// `offer_expires_at` only it may claim the task.
    pub offered_to: Option<String>,
    /// When the offer ends and any capable agent may claim.
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub offer_expires_at: Option<Millis>,
}

impl Task {
    /// True while the task is offered to an agent other than `who` at `now`.
    pub fn offered_to_other(&self, who: &str, now: Millis) -> bool {
        match (&self.offered_to, self.offer_expires_at) {
            (Some(to), Some(until)) => to != who && now < until,
            _ => false,
        }
    }
}

/// What a creator gives for a new task.
#[derive(Debug, Clone, Default)]
pub struct NewTask {
    /// Short title (required, non-empty).
    pub title: String,
    /// Longer description.
    pub body: String,
    /// Higher first.
    pub priority: i64,
    /// Capabilities needed.
    pub requires: Vec<String>,
    /// Free labels.
    pub tags: Vec<String>,
    /// Claims allowed (default from config).
    pub max_attempts: Option<i64>,
    /// Learned allocation: offer it to this agent first (set by the core).
    pub offered_to: Option<String>,
    /// Until when the offer holds (set by the core).
    pub offer_expires_at: Option<Millis>,
}

/// A registered agent, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    /// Unique name, the agent's identity.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// What it can do; `task.claim` matches these against `requires`.
    pub capabilities: Vec<String>,
    /// Creation time.
    pub created_at: Millis,
    /// When it was revoked (its token no longer works).
    pub revoked_at: Option<Millis>,
    /// Last time it was connected.
    pub last_seen: Option<Millis>,
    /// Every event up to this sequence number is acknowledged.
    pub acked_seq: i64,
    /// Events at or before this sequence number predate the agent.
    pub base_seq: i64,
}

/// An agent as `agents` lists it: stored record plus live presence.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AgentView {
    /// Agent name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Whether it has at least one open connection (on this instance).
    pub online: bool,
    /// Its capabilities.
    pub capabilities: Vec<String>,
    /// Id of its most recent claim still held.
    pub current_task: Option<i64>,
    /// Last time it was connected (now, when online).
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_seen: Option<Millis>,
}

/// Number of tasks in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskCounts(pub [i64; 5]);

impl TaskCounts {
    /// The count for one state.
    pub fn get(&self, state: TaskState) -> i64 {
        self.0[state.index()]
    }

    /// Moves the counts by `delta`: each `(before, after)` takes one task
    /// out of `before` (none for a new task) and into `after`.
    pub fn apply(&mut self, delta: &[(Option<TaskState>, TaskState)]) {
        for (before, after) in delta {
            if let Some(b) = before {
                self.0[b.index()] -= 1;
            }
            self.0[after.index()] += 1;
        }
    }
}

impl Serialize for TaskCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(5))?;
        for st in TaskState::ALL {
            m.serialize_entry(st.as_str(), &self.get(st))?;
        }
        m.end()
    }
}

/// `status`: a snapshot answered from memory.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StatusReport {
    /// Distinct agents with an open connection.
    pub agents_online: usize,
    /// Tasks by state.
    #[schema(value_type = std::collections::BTreeMap<String, i64>)]
    pub tasks: TaskCounts,
    /// Seconds since this process started.
    pub uptime_s: u64,
    /// The crate version.
    pub version: &'static str,
}

/// How an agent's claims ended, counted: the part of its statistics kept
/// in the database.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ClaimCounts {
    /// Claims made (task.claim and task.assign), ended or not.
    pub claims: i64,
    /// Claims that ended in `task.complete`.
    pub completions: i64,
    /// Claims that ended in `task.fail` (retried or not).
    pub failures: i64,
    /// Claims whose lease ran out.
    pub expiries: i64,
    /// Claims given back with `task.release`.
    pub releases: i64,
    /// Claims ended by a cancellation of the task.
    pub cancellations: i64,
}

impl ClaimCounts {
    /// Claims that have ended, whatever the outcome.
    pub fn ended(&self) -> i64 {
        self.completions + self.failures + self.expiries + self.releases + self.cancellations
    }
}

/// The raw record of one agent's claims, as the store reads it: the counts
/// and how long its completed claims took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunTally {
    /// How the claims ended.
    pub counts: ClaimCounts,
    /// Milliseconds from claim to completion of the latest completions.
    pub durations_ms: Vec<i64>,
}

/// Time from claim to completion, summarized.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DurationSummary {
    /// Completions the figures are computed from.
    pub samples: usize,
    /// Mean in milliseconds (null without samples).
    pub mean_ms: Option<f64>,
    /// Median in milliseconds (nearest rank).
    pub p50_ms: Option<i64>,
    /// 95th percentile in milliseconds (nearest rank).
    pub p95_ms: Option<i64>,
}

impl DurationSummary {
    /// Summarizes durations given in any order.
    pub fn of(durations_ms: &[i64]) -> Self {
        if durations_ms.is_empty() {
            return DurationSummary::default();
        }
        let mut sorted = durations_ms.to_vec();
        sorted.sort_unstable();
        let n = sorted.len();
        let rank = |p: f64| sorted[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        let sum: i128 = sorted.iter().map(|&d| d as i128).sum();
        DurationSummary {
            samples: n,
            mean_ms: Some(((sum as f64 / n as f64) * 10.0).round() / 10.0),
            p50_ms: Some(rank(0.50)),
            p95_ms: Some(rank(0.95)),
        }
    }
}

/// One agent's work record (`GET /api/agents/{name}/stats`); kept in the
/// database, so it survives restarts.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AgentStats {
    /// The agent.
    pub agent: String,
    /// How its claims ended (flattened into this object).
    #[serde(flatten)]
    pub counts: ClaimCounts,
    /// Claims still held.
    pub in_progress: i64,
    /// Time from claim to completion.
    pub claim_to_done: DurationSummary,
}

impl AgentStats {
    /// The statistics of `agent` from its tally.
    pub fn from_tally(agent: &str, t: &RunTally) -> Self {
        AgentStats {
            agent: agent.to_string(),
            counts: t.counts.clone(),
            in_progress: (t.counts.claims - t.counts.ended()).max(0),
            claim_to_done: DurationSummary::of(&t.durations_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_summary_uses_nearest_rank() {
        let d: Vec<i64> = (1..=100).rev().collect();
        let s = DurationSummary::of(&d);
        assert_eq!(s.samples, 100);
        assert_eq!(s.p50_ms, Some(50));
        assert_eq!(s.p95_ms, Some(95));
        assert_eq!(s.mean_ms, Some(50.5));
        assert_eq!(DurationSummary::of(&[]).p50_ms, None);
        assert_eq!(DurationSummary::of(&[7]).p95_ms, Some(7));
    }

    #[test]
    fn in_progress_counts_claims_not_yet_ended() {
        let t = RunTally {
            counts: ClaimCounts {
                claims: 5,
                completions: 2,
                expiries: 1,
                ..ClaimCounts::default()
            },
            durations_ms: vec![],
        };
        assert_eq!(AgentStats::from_tally("a", &t).in_progress, 2);
    }
}
