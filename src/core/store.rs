//! The storage port: what the core needs from a database, as one
//! object-safe trait ([`Store`], used as `Arc<dyn Store>`), and the logic
//! every backend shares so a second backend does not write it twice (task
//! counts, run records, publishing in order, event pages, query timing).
//!
//! # The ordering rule every backend keeps
//!
//! 1. Every state change is one atomic unit with the events it produces: the
//!    change and its events commit together or not at all.
//! 2. Committed events reach the bus **after** their commit and **in `seq`
//!    order**, each exactly once: a backend hands them to its [`CommitLog`]
//!    (which publishes them) from one place at a time, in commit order, and
//!    never before the commit returned.
//! 3. The task counts move in the same step as the events are published, so
//!    a `status` asked on receipt of an event already counts its change.
//! 4. Events another process committed (the CLI) are published before any
//!    later event of this process ([`CommitLog::gap_before`] finds them,
//!    [`CommitLog::catch_up`] publishes them from the table).
//! 5. A crash between commit and publish loses nothing: the events are in the
//!    table, and agents replay them from their acked `seq` on reconnect.
//!
//! The SQLite adapter (`crate::store::sqlite`) keeps the rule with one
//! writer thread that owns the only write connection: it takes requests from
//! a queue, runs a batch of them synchronously in one transaction (one
//! savepoint per request, so a rejected request does not roll back its
//! neighbours),
//! appends the batch's events with consecutive `seq`s, commits, and only then
//! calls [`CommitLog::committed`]; it does not start the next batch before
//! that returns. Each request's answer is sent after the publish, so a
//! caller who sees `ok` can rely on its event being on the bus.

use super::alerts::{Alert, AlertEvents, Finding};
use super::allocation::RunStat;
use super::error::CoreError;
use super::events::{CommittedEvent, EventKind, EventSink, NewEvent};
use super::insights::{BacklogRow, RunRow};
use super::model::{Agent, NewTask, Role, RunTally, Task, TaskCounts, TaskState};
use super::polls::{Ballot, NewPoll, Poll};
use super::schedules::{FireOutcome, Firing, OccurrenceClaim, Schedule, ScheduleChange};
use super::search::{MessageHit, SearchHit, SearchQuery};
use crate::clock::Millis;
use crate::reason::ReasonCache;
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Mutex;
use std::time::Instant;

/// The error of any backend, free of the backend's own types: the cause is
/// kept as a boxed source so it can be logged in full.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database error: {0}")]
    Db(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The core's rules rejected the change; nothing was written.
    #[error(transparent)]
    Rejected(CoreError),
    /// A stored value could not be read back.
    #[error("unreadable stored value: {0}")]
    Corrupt(String),
    /// The database URL is not usable.
    #[error("{0}")]
    Url(String),
    /// The batch this request was part of could not commit; the change was
    /// not written. Carries the cause for the log.
    #[error("commit failed: {0}")]
    CommitFailed(String),
    /// The writer is not running (the server is shutting down).
    #[error("the database writer has stopped")]
    WriterStopped,
    /// The database cannot be reached right now (connection lost, server
    /// restarting); nothing was written and the request may be retried.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database's disk (or quota) is full: nothing was written; writes
    /// work again once space is freed. Carries the cause for the log.
    #[error("the database's disk is full: {0}")]
    DiskFull(String),
    /// Another connection or process held the database's write lock past
    /// the busy timeout: nothing was written and the request may be
    /// retried. Carries the cause for the log.
    #[error("the database is locked: {0}")]
    Locked(String),
}

/// How long a caller is told to wait when the database is unreachable.
pub const UNAVAILABLE_RETRY_MS: u64 = 1000;

impl From<CoreError> for StoreError {
    fn from(e: CoreError) -> Self {
        StoreError::Rejected(e)
    }
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Rejected(e) => e,
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                CoreError::StoreUnavailable {
                    message: "the database is unreachable; retry shortly".into(),
                    retry_after_ms: UNAVAILABLE_RETRY_MS,
                }
            }
            StoreError::DiskFull(cause) => {
                tracing::error!(error = %cause, "database disk full; the write was refused");
                CoreError::Internal(
                    "the database's disk is full: nothing was saved; writes work again once space is freed"
                        .into(),
                )
            }
            StoreError::Locked(cause) => {
                tracing::warn!(error = %cause, "database locked past the busy timeout");
                CoreError::StoreUnavailable {
                    message: "the database is locked by another process; nothing was saved, retry shortly"
                        .into(),
                    retry_after_ms: UNAVAILABLE_RETRY_MS,
                }
            }
            other => {
                tracing::error!(error = %other, "storage failure");
                CoreError::Internal("storage failure; see the server log".into())
            }
        }
    }
}

/// Caps the claims one agent may hold; checked in the claiming transaction.
#[derive(Debug, Clone)]
pub struct ClaimGuard {
    /// The claiming agent.
    pub agent: String,
    /// How many claimed tasks it may hold at once, this one included.
    pub max_claims: i64,
}

impl ClaimGuard {
    /// Refuses when the agent already holds `held` claims.
    pub fn check(&self, held: i64) -> Result<(), CoreError> {
        if held >= self.max_claims {
            return Err(CoreError::Conflict(format!(
                "{} already holds {held} claimed tasks (limits.max_claims is {})",
                self.agent, self.max_claims
            )));
        }
        Ok(())
    }
}

/// A row for the `messages` table (direct messages and broadcasts).
#[derive(Debug, Clone)]
pub struct MessageRecord {
    /// Who sent it.
    pub sender: String,
    /// The addressee (agent name) or None for a broadcast.
    pub recipient: Option<String>,
    /// A broadcast's topic.
    pub topic: Option<String>,
    /// The text.
    pub text: String,
}

/// A rule that edits a task in its transaction (or refuses) and names the
/// events the change emits.
pub type TaskChange =
    Box<dyn FnOnce(&mut Task, Millis) -> Result<Vec<NewEvent>, CoreError> + Send + 'static>;
/// The events a newly created task emits.
pub type TaskEvents = Box<dyn FnOnce(&Task) -> Vec<NewEvent> + Send + 'static>;
/// What a lease expiry does to one task (applied to each due task).
pub type TaskExpiry = Box<dyn Fn(&mut Task, Millis) -> Vec<NewEvent> + Send + Sync + 'static>;
/// The events a newly opened poll emits.
pub type PollEvents = Box<dyn FnOnce(&Poll) -> Vec<NewEvent> + Send + 'static>;
/// A rule that edits a poll in its transaction (or refuses).
pub type PollChange =
    Box<dyn FnOnce(&mut Poll, Millis) -> Result<Vec<NewEvent>, CoreError> + Send + 'static>;
/// What closing at `closes_at` does to one poll.
pub type PollClosing = Box<dyn Fn(&mut Poll, Millis) -> Vec<NewEvent> + Send + Sync + 'static>;
/// Accepts or refuses a ballot for a poll as it is at `now`.
pub type BallotCheck = Box<dyn FnOnce(&Poll, Millis) -> Result<(), CoreError> + Send + 'static>;

/// Durable state, as the core needs it. Each write is atomic with the
/// events it returns and keeps the ordering rule of this module; reads see
/// committed state. Implemented by each backend under `crate::store`.
/// Vectors for semantic search are the [`super::vectors::VectorStore`] part.
#[async_trait]
pub trait Store: ReasonCache + super::vectors::VectorStore + Send + Sync + 'static {
    /// True when the database answers a trivial query (and, after a write
    /// failed for want of space or a lock, when a write works again).
    async fn ping(&self) -> bool;

    /// Why writes fail right now, when the backend knows: `disk_full` or
    /// `locked` (SQLite), until a write commits again.
    fn write_fault(&self) -> Option<&'static str> {
        None
    }
    /// Tasks by state, from memory kept in step with every commit.
    fn task_counts(&self) -> TaskCounts;
    /// Publishes events other processes committed; true when there were any.
    async fn sync_external(&self) -> Result<bool, StoreError>;

    /// Inserts a task and the events `events_for` derives from it.
    async fn create_task(
        &self,
        new: NewTask,
        created_by: String,
        max_attempts: i64,
        events_for: TaskEvents,
    ) -> Result<Task, StoreError>;
    /// Loads task `id`, lets `change` edit it (or refuse) and saves it with
    /// its events; with a guard, an open task's claimant's claims are capped.
    async fn update_task(
        &self,
        id: i64,
        guard: Option<ClaimGuard>,
        change: TaskChange,
    ) -> Result<Task, StoreError>;
    /// Claims the highest-priority, oldest open task whose `requires` are
    /// all in `capabilities` by applying `claim`; None when nothing matches.
    async fn claim_next(
        &self,
        capabilities: Vec<String>,
        guard: ClaimGuard,
        claim: TaskChange,
    ) -> Result<Option<Task>, StoreError>;
    /// Applies `expire` to up to `limit` claimed tasks whose lease ran out.
    async fn expire_due(&self, limit: i64, expire: TaskExpiry) -> Result<Vec<Task>, StoreError>;
    /// Applies `lapse` to up to `limit` tasks whose offer has ended and
    /// clears their offer (learned allocation).
    async fn lapse_offers(&self, limit: i64, lapse: TaskExpiry) -> Result<Vec<Task>, StoreError>;
    /// What each agent's claims ended since `since` came to, per agent and
    /// capability set (learned allocation; `requires` as stored, unsorted).
    async fn run_stats(&self, since: Millis) -> Result<Vec<RunStat>, StoreError>;
    /// One task.
    async fn task(&self, id: i64) -> Result<Option<Task>, StoreError>;
    /// Tasks, newest first, optionally filtered by state and assignee.
    async fn list_tasks(
        &self,
        state: Option<TaskState>,
        assignee: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Task>, StoreError>;
    /// For each agent holding claims, the id of its most recent claim.
    async fn current_tasks(&self) -> Result<HashMap<String, i64>, StoreError>;

    /// Registers an agent (or re-issues a revoked one); `conflict` when an
    /// active agent has that name.
    async fn add_agent(
        &self,
        name: String,
        token_hash: String,
        role: Role,
        capabilities: Vec<String>,
    ) -> Result<Agent, StoreError>;
    /// The active agent holding this token hash.
    async fn agent_by_token_hash(&self, hash: &str) -> Result<Option<Agent>, StoreError>;
    /// An agent by name, revoked or not.
    async fn agent(&self, name: &str) -> Result<Option<Agent>, StoreError>;
    /// Every agent, revoked ones included, by name.
    async fn list_agents(&self) -> Result<Vec<Agent>, StoreError>;
    /// Revokes an agent's token; `not_found` when no active agent has that name.
    async fn revoke_agent(&self, name: String) -> Result<(), StoreError>;
    /// Names of agents revoked at or after `since`.
    async fn revoked_since(&self, since: Millis) -> Result<Vec<String>, StoreError>;
    /// Marks an agent seen now, replacing its capabilities when given.
    async fn agent_connected(
        &self,
        name: String,
        capabilities: Option<Vec<String>>,
    ) -> Result<(), StoreError>;
    /// Records acknowledgements `(agent, seq)`, all in one write; an agent's
    /// stored ack never moves back.
    async fn record_acks(&self, acks: Vec<(String, i64)>) -> Result<(), StoreError>;

    /// Stores a direct message or broadcast together with its event.
    async fn record_message(
        &self,
        message: MessageRecord,
        event: NewEvent,
    ) -> Result<(), StoreError>;
    /// The newest event `seq` this agent gets, 0 when there is none.
    async fn newest_seq_for(&self, agent: &str, capabilities: &[String])
        -> Result<i64, StoreError>;
    /// The newest event sequence number.
    async fn max_seq(&self) -> Result<i64, StoreError>;
    /// Up to `limit` events after `after` that may concern `agent`, in `seq`
    /// order (a superset: [`EventPage::from_scan`] filters them).
    async fn scan_events(
        &self,
        agent: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<CommittedEvent>, StoreError>;
    /// Every event with `after < seq <= upto`, at most `limit`, in `seq` order.
    async fn events_between(
        &self,
        after: i64,
        upto: i64,
        limit: i64,
    ) -> Result<Vec<CommittedEvent>, StoreError>;
    /// The newest `limit` events, oldest first.
    async fn recent_events(&self, limit: i64) -> Result<Vec<CommittedEvent>, StoreError>;
    /// Up to `limit` of the events `agent` gets (named as a target, sent to
    /// every agent, or addressed by capability and covered by
    /// `capabilities`) with `after < seq < before`, oldest first, or newest
    /// first when `newest_first`. Exact: nothing for other agents is
    /// returned, so a page shorter than `limit` means there is no more.
    /// Served by indexes on (recipient, seq) and on broadcast seqs.
    async fn agent_events(
        &self,
        agent: &str,
        capabilities: &[String],
        range: SeqRange,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError>;
    /// Events at or below this `seq` were removed by retention (0 when none).
    async fn pruned_to(&self) -> Result<i64, StoreError>;
    /// Removes, in one short write, up to `batch` of the oldest events
    /// committed before `cutoff` that every active agent has acknowledged
    /// (or that predate it), never the newest event; moves `pruned_to`.
    async fn prune_events(&self, cutoff: Millis, batch: i64) -> Result<Pruned, StoreError>;
    /// How many events are stored and when the oldest was committed.
    async fn event_table(&self) -> Result<EventTable, StoreError>;

    /// Where announcing stopped on `target` (a platform channel such as
    /// `discord` or `twitch:#somechannel`): the `seq` of the last event
    /// announced there, None when nothing was ever recorded.
    async fn announce_mark(&self, target: &str) -> Result<Option<i64>, StoreError>;
    /// Records that events up to `seq` were announced on `target` (the mark
    /// never moves back). With a `fence` (a shared database) it is written
    /// only while the fence's session still owns the platform; false when
    /// it does not (ownership moved: stop announcing).
    async fn set_announce_mark(
        &self,
        target: &str,
        seq: i64,
        fence: Option<&OwnerFence>,
    ) -> Result<bool, StoreError>;

    /// What `agent`'s claims came to (with its latest completion durations).
    async fn run_tally(&self, agent: &str) -> Result<RunTally, StoreError>;
    /// [`Store::run_tally`] for every agent that ever claimed a task.
    async fn run_tallies(&self) -> Result<BTreeMap<String, RunTally>, StoreError>;
    /// Completions per minute for the last `minutes` minutes, oldest first.
    async fn done_per_minute(&self, minutes: usize) -> Result<Vec<i64>, StoreError>;

    /// Every claim of the tasks among the newest `limit` claims started at
    /// or after `since`, with its task's `requires` and creation time
    /// (earlier claims of those tasks included: they say when a retried
    /// task was reopened). Any order.
    async fn insight_runs(&self, since: Millis, limit: i64) -> Result<Vec<RunRow>, StoreError>;
    /// Open tasks counted per stored `requires`, with the oldest creation time.
    async fn open_backlog(&self) -> Result<Vec<BacklogRow>, StoreError>;
    /// Raises the alert `finding` describes: inserts it when no alert with
    /// its key is active; when one is and it was last notified at least
    /// `repeat_after_ms` ago, counts a repeat and updates its message;
    /// otherwise changes nothing and returns None. The events `events_for`
    /// derives from the stored alert commit with it.
    async fn raise_alert(
        &self,
        finding: Finding,
        repeat_after_ms: i64,
        events_for: AlertEvents,
    ) -> Result<Option<Alert>, StoreError>;
    /// Clears the active alert with `key` (None when none is active), with
    /// the events `events_for` derives from it.
    async fn clear_alert(
        &self,
        key: String,
        events_for: AlertEvents,
    ) -> Result<Option<Alert>, StoreError>;
    /// Every active alert, oldest first.
    async fn active_alerts(&self) -> Result<Vec<Alert>, StoreError>;

    /// Inserts a poll and the events `events_for` derives from it.
    async fn create_poll(
        &self,
        new: NewPoll,
        created_by: String,
        events_for: PollEvents,
    ) -> Result<Poll, StoreError>;
    /// Records `ballot` once `check` accepts the poll, replacing the voter's
    /// earlier ballot.
    async fn cast_ballot(
        &self,
        poll_id: i64,
        ballot: Ballot,
        check: BallotCheck,
    ) -> Result<(), StoreError>;
    /// Loads poll `id`, lets `change` edit it (or refuse), saves it with its events.
    async fn update_poll(&self, id: i64, change: PollChange) -> Result<Poll, StoreError>;
    /// Applies `close` to up to `limit` open polls past `closes_at`.
    async fn close_due_polls(
        &self,
        limit: i64,
        close: PollClosing,
    ) -> Result<Vec<Poll>, StoreError>;
    /// True when an open poll's `closes_at` has passed.
    async fn any_poll_due(&self) -> Result<bool, StoreError>;
    /// Up to `limit` open polls not yet past `closes_at`, newest first.
    async fn open_polls(&self, limit: i64) -> Result<Vec<Poll>, StoreError>;
    /// One poll with its tally.
    async fn poll(&self, id: i64) -> Result<Option<Poll>, StoreError>;

    /// Tasks matching every term and the filters, best first.
    async fn search_tasks(&self, q: &SearchQuery) -> Result<Vec<SearchHit>, StoreError>;
    /// Messages matching every term and the filters, best first.
    async fn search_messages(&self, q: &SearchQuery) -> Result<Vec<MessageHit>, StoreError>;

    /// Inserts a schedule (its `id` is assigned) and returns it as stored.
    async fn create_schedule(&self, schedule: Schedule) -> Result<Schedule, StoreError>;
    /// Up to `limit` schedules, oldest first.
    async fn schedules(&self, limit: i64) -> Result<Vec<Schedule>, StoreError>;
    /// One schedule.
    async fn schedule(&self, id: i64) -> Result<Option<Schedule>, StoreError>;
    /// Loads schedule `id`, lets `change` edit its state and `next_at` (or
    /// refuse), and saves it; `not_found` when there is no such schedule.
    async fn update_schedule(
        &self,
        id: i64,
        change: ScheduleChange,
    ) -> Result<Schedule, StoreError>;
    /// Deletes a schedule; false when there was none.
    async fn delete_schedule(&self, id: i64) -> Result<bool, StoreError>;
    /// Up to `limit` active schedules whose `next_at` is at or before `now`,
    /// earliest first.
    async fn due_schedules(&self, now: Millis, limit: i64) -> Result<Vec<Schedule>, StoreError>;
    /// Claims one occurrence and writes what it fires, in one transaction:
    /// moves `next_at` from `claim.due_next_at` to `claim.next_at` only while
    /// the schedule is active and `next_at` still holds the old value (a
    /// compare-and-set), then creates the task or stores the broadcast with
    /// its events. [`FireOutcome::Lost`] (nothing written) when another
    /// write got there first, so an occurrence fires once across instances.
    async fn fire_schedule(
        &self,
        claim: OccurrenceClaim,
        firing: Firing,
    ) -> Result<FireOutcome, StoreError>;
}

/// What one write did to the task counts: (state before, state after) per task.
pub type CountDelta = Vec<(Option<TaskState>, TaskState)>;

/// The count change of one task going from `before` to `after`
/// (nothing when the state did not change).
pub fn count_delta(before: Option<TaskState>, after: TaskState) -> CountDelta {
    if before == Some(after) {
        vec![]
    } else {
        vec![(before, after)]
    }
}

/// How a task change touches its run record (`task_runs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunChange {
    /// A claim started: open a run for `agent`.
    Open {
        /// The claimant.
        agent: String,
    },
    /// A claim ended: close the open run with `outcome`; when there is none
    /// (claimed before runs were recorded), record a closed one for `holder`.
    Close {
        /// `done`, `failed`, `released`, `expired`, `cancelled` or the new state.
        outcome: &'static str,
        /// Who held the claim.
        holder: String,
    },
}

/// How a claim ended, named after the event that ended it (`done`,
/// `failed`, `released`, `expired`, `cancelled`); the new state when no
/// such event was emitted.
pub fn claim_outcome(events: &[NewEvent], after: TaskState) -> &'static str {
    events
        .iter()
        .find_map(|e| match e.kind {
            EventKind::TaskCompleted => Some("done"),
            EventKind::TaskFailed => Some("failed"),
            EventKind::TaskReleased => Some("released"),
            EventKind::TaskExpired => Some("expired"),
            EventKind::TaskCancelled => Some("cancelled"),
            _ => None,
        })
        .unwrap_or(after.as_str())
}

/// The run-record changes of one task change, in the order to apply them:
/// a claim that ends closes its run, a claim that starts opens one.
/// `holder` is the assignee before the change.
pub fn run_changes(
    before: TaskState,
    holder: Option<&str>,
    task: &Task,
    events: &[NewEvent],
) -> Vec<RunChange> {
    let was_claimed = before == TaskState::Claimed;
    let is_claimed = task.state == TaskState::Claimed;
    let mut out = Vec::new();
    if was_claimed && !is_claimed {
        out.push(RunChange::Close {
            outcome: claim_outcome(events, task.state),
            holder: holder
                .or(task.assignee.as_deref())
                .unwrap_or("unknown")
                .to_string(),
        });
    }
    if is_claimed && !was_claimed {
        out.push(RunChange::Open {
            agent: task.assignee.as_deref().unwrap_or("unknown").to_string(),
        });
    }
    out
}

/// A page of replayed events for one agent.
#[derive(Debug, Default)]
pub struct EventPage {
    /// The events for the agent.
    pub events: Vec<CommittedEvent>,
    /// The last `seq` scanned, None when there was nothing after `after`.
    pub scanned_to: Option<i64>,
}

impl EventPage {
    /// Keeps the scanned events `agent` (with these capabilities) gets;
    /// `scanned_to` lets the caller page on past events for others.
    pub fn from_scan(scanned: Vec<CommittedEvent>, agent: &str, capabilities: &[String]) -> Self {
        let scanned_to = scanned.last().map(|e| e.seq);
        let events = scanned
            .into_iter()
            .filter(|e| e.audience.includes(agent, capabilities))
            .collect();
        EventPage { events, scanned_to }
    }
}

/// The `seq` bounds of [`Store::agent_events`]: `after < seq < before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRange {
    /// Exclusive lower bound.
    pub after: i64,
    /// Exclusive upper bound.
    pub before: i64,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
}

impl SeqRange {
    /// Everything after `after`, oldest first.
    pub fn after(after: i64) -> Self {
        SeqRange {
            after,
            before: i64::MAX,
            newest_first: false,
        }
    }
}

/// One stored event as replay reads it: no audience (the query already
/// chose the agent's events), the `data` JSON text as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its sequence number.
    pub seq: i64,
    /// Its kind.
    pub kind: EventKind,
    /// When it was committed.
    pub at: Millis,
    /// The `data` object as JSON text.
    pub data: String,
}

/// What one pruning step removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Events removed by this step.
    pub removed: u64,
    /// Events at or below this `seq` are gone (after this step).
    pub pruned_to: i64,
}

/// Proof of owning a platform connection on a shared database: the
/// database session that holds the platform's ownership lock. A write
/// fenced by it lands only while that session still holds the lock, so an
/// owner that lost ownership (its session ended) cannot write after the
/// next owner read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerFence {
    /// The platform owned (`discord`, `twitch`).
    pub platform: String,
    /// The backend's id of the session holding the lock.
    pub session: i64,
}

/// The size of the event table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventTable {
    /// Events stored.
    pub rows: i64,
    /// When the oldest stored event was committed, None when there is none.
    pub oldest_at: Option<Millis>,
}

/// Runs a store call and records its duration under `op` in
/// `swarmbridge_db_query_duration_seconds`.
pub async fn timed<T>(op: &'static str, call: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = call.await;
    record_duration(op, started);
    out
}

/// Records, under `op`, how long a store operation took from `started`
/// (for what a backend times itself, such as one group commit: `write`).
pub fn record_duration(op: &'static str, started: Instant) {
    crate::observe::db_query(op, started);
}

/// The publishing side of a backend: the task counts in memory and the
/// highest `seq` handed to the bus. A backend calls it from its one
/// committing place, in commit order (see the module's ordering rule).
pub struct CommitLog {
    sink: std::sync::Arc<dyn EventSink>,
    counts: Mutex<TaskCounts>,
    published: Mutex<i64>,
}

impl CommitLog {
    /// A log that publishes to `sink`, with every event up to `published`
    /// counted as already delivered (the newest `seq` at start-up).
    pub fn new(sink: std::sync::Arc<dyn EventSink>, published: i64, counts: TaskCounts) -> Self {
        CommitLog {
            sink,
            counts: Mutex::new(counts),
            published: Mutex::new(published),
        }
    }

    /// Tasks by state as of the last publish.
    pub fn task_counts(&self) -> TaskCounts {
        *self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The highest `seq` handed to the bus.
    pub fn published(&self) -> i64 {
        *self.published.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When events before `first_seq` were committed by someone else and
    /// not published yet, the `seq` to publish up to first.
    pub fn gap_before(&self, first_seq: i64) -> Option<i64> {
        (first_seq > self.published() + 1).then_some(first_seq - 1)
    }

    /// Moves the counts by `delta` and publishes `events` (this process's
    /// own commit, in `seq` order, right after it committed).
    pub fn committed(&self, delta: &[(Option<TaskState>, TaskState)], events: &[CommittedEvent]) {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .apply(delta);
        self.publish(events);
    }

    fn publish(&self, events: &[CommittedEvent]) {
        if let Some(last) = events.last() {
            self.sink.publish(events);
            *self.published.lock().unwrap_or_else(|p| p.into_inner()) = last.seq;
        }
    }

    /// Publishes what other processes committed up to `upto`, after taking
    /// `recounted` (their task changes are not in any delta), so a `status`
    /// asked on receipt of such an event already counts it. `load` reads
    /// events `(after, upto]` in `seq` order, a page at a time.
    pub async fn catch_up<F, Fut>(&self, recounted: TaskCounts, upto: i64, load: F)
    where
        F: Fn(i64, i64) -> Fut,
        Fut: Future<Output = Result<Vec<CommittedEvent>, StoreError>>,
    {
        *self.counts.lock().unwrap_or_else(|p| p.into_inner()) = recounted;
        loop {
            let after = self.published();
            if after >= upto {
                return;
            }
            match load(after, upto).await {
                Ok(events) if events.is_empty() => {
                    *self.published.lock().unwrap_or_else(|p| p.into_inner()) = upto;
                    return;
                }
                Ok(events) => self.publish(&events),
                Err(e) => {
                    tracing::warn!(error = %e, "could not load events written by another process");
                    return;
                }
            }
        }
    }
}

/// Counts tasks by state from `(state, count)` rows, as a backend reads them.
pub fn counts_from_rows(
    rows: impl IntoIterator<Item = (String, i64)>,
) -> Result<TaskCounts, StoreError> {
    let mut counts = TaskCounts::default();
    for (state, n) in rows {
        let st: TaskState = state.parse().map_err(StoreError::Corrupt)?;
        counts.0[st.index()] = n;
    }
    Ok(counts)
}

impl super::Core {
    /// True when the database answers (`/ready`).
    pub async fn database_ready(&self) -> bool {
        self.store.ping().await
    }

    /// Why the database refuses writes right now (`disk_full`, `locked`),
    /// when the backend knows; shown by `GET /ready`.
    pub fn database_write_fault(&self) -> Option<&'static str> {
        self.store.write_fault()
    }

    /// Tasks by state, from memory kept in step with every commit.
    pub fn task_counts(&self) -> TaskCounts {
        self.store.task_counts()
    }
}

#[cfg(test)]
mod tests;
