//! The PostgreSQL adapter: several swarmbridge instances share one
//! database. Writes go through one group-commit writer per instance
//! ([`writer`]); event appends of all instances are serialised by an
//! advisory lock so `seq` order is commit order; a committed batch
//! `NOTIFY`s the others, which publish from the `events` table
//! ([`listen`]). Claims use `FOR UPDATE SKIP LOCKED`; sweeps skip locked
//! rows, so each expiry and poll closing happens once. [`leader`] gives one
//! instance at a time a platform connection. Each file holds what one table
//! family needs; this one connects, migrates and maps the [`Store`] port.

mod agents;
mod allocation;
mod announce;
mod cache;
mod events;
mod insights;
pub mod leader;
mod listen;
mod planner_stats;
mod polls;
mod schedules;
mod search;
mod stats;
mod task_batch;
mod tasks;
mod vectors;
mod writer;

use crate::clock::Millis;
use crate::core::alerts::{Alert, AlertEvents, Finding};
use crate::core::allocation::RunStat;
use crate::core::events::{CommittedEvent, EventSink, NewEvent};
use crate::core::insights::{BacklogRow, RunRow};
use crate::core::model::{Agent, NewTask, Role, RunTally, Task, TaskCounts, TaskState};
use crate::core::polls::{Ballot, NewPoll, Poll};
use crate::core::schedules::{FireOutcome, Firing, OccurrenceClaim, Schedule, ScheduleChange};
use crate::core::search::{MessageHit, SearchHit, SearchQuery};
use crate::core::store::{
    counts_from_rows, BallotCheck, ClaimGuard, CommitLog, EventTable, MessageRecord, OwnerFence,
    PollChange, PollClosing, PollEvents, Pruned, SeqRange, Store, StoreError, StoredEvent,
    TaskChange, TaskEvents, TaskExpiry,
};
use crate::store::BatchPolicy;
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use writer::WriterHandle;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a request waits for a pooled connection before it is answered
/// `unavailable`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long `/ready` waits for the database.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Turns a failure to reach the database (I/O, pool timeout, the server
/// shutting down) into [`StoreError::Unavailable`]; other errors stay.
pub(super) fn classify(e: StoreError) -> StoreError {
    let StoreError::Db(cause) = e else {
        return e;
    };
    let unreachable = match cause.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Io(_))
        | Some(sqlx::Error::PoolTimedOut)
        | Some(sqlx::Error::PoolClosed)
        | Some(sqlx::Error::WorkerCrashed)
        | Some(sqlx::Error::Tls(_)) => true,
        // 08: connection exceptions; 57P: admin/crash shutdown, cannot
        // connect now; 53: out of connections or memory; 55000: the database
        // does not accept connections now
        Some(sqlx::Error::Database(d)) => d.code().is_some_and(|c| {
            c.starts_with("08") || c.starts_with("57P") || c.starts_with("53") || c == "55000"
        }),
        Some(sqlx::Error::Protocol(_)) => true,
        _ => false,
    };
    if unreachable {
        StoreError::Unavailable(cause.to_string())
    } else {
        StoreError::Db(cause)
    }
}

/// PostgreSQL storage. Cheap to share behind an `Arc`; its writer task and
/// listener stop when it is dropped.
pub struct PgStore {
    writer: WriterHandle,
    pool: PgPool,
    planner_stats: Arc<planner_stats::PlannerStats>,
    log: Arc<CommitLog>,
    stop: CancellationToken,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Connect options for `url`, with statements logged at trace level only.
fn connect_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    let opts = PgConnectOptions::from_str(url).map_err(|e| {
        StoreError::Url(format!(
            "bad PostgreSQL URL {}: {e}",
            crate::server::redact_url(url)
        ))
    })?;
    Ok(opts
        .application_name("swarmbridge")
        .log_statements(tracing::log::LevelFilter::Trace))
}

/// A pool of at most `size` connections to `url`; the error names the URL
/// without its password.
async fn connect(url: &str, size: u32) -> Result<PgPool, StoreError> {
    PgPoolOptions::new()
        .max_connections(size.max(2))
        .min_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(connect_options(url)?)
        .await
        .map_err(|e| {
            StoreError::Url(format!(
                "cannot connect to PostgreSQL at {}: {e}",
                crate::server::redact_url(url)
            ))
        })
}

/// Applies the migrations this binary knows, after refusing a database
/// that a newer swarmbridge migrated further. sqlx takes an advisory lock,
/// so instances starting together migrate once.
async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let applied: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(version) FROM _sqlx_migrations WHERE success \
         AND to_regclass('_sqlx_migrations') IS NOT NULL",
    )
    .fetch_one(pool)
    .await
    .unwrap_or(None);
    if let Some(v) = applied.filter(|v| *v > known) {
        return Err(StoreError::Migrate(
            format!(
                "the database is at migration {v}, newer than this binary knows (up to \
                 {known}); run a swarmbridge release that includes it"
            )
            .into(),
        ));
    }
    MIGRATOR
        .run(pool)
        .await
        .map_err(|e| StoreError::Migrate(Box::new(e)))
}

async fn applied_migrations(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

impl PgStore {
    /// Connects to `url` (a pool of `pool_size`), applies the migrations,
    /// starts the writer and the listener, and publishes committed events
    /// (this instance's and the others') to `sink`.
    pub async fn open(
        url: &str,
        pool_size: u32,
        batch: BatchPolicy,
        sink: Arc<dyn EventSink>,
    ) -> Result<Self, StoreError> {
        let pool = connect(url, pool_size).await?;
        migrate(&pool).await?;
        let published: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
            .fetch_one(&pool)
            .await?;
        let counts = Self::count_tasks(&pool).await?;
        let log = Arc::new(CommitLog::new(sink, published, counts));
        // writers hold a connection each while their batch runs: leave at
        // least half the pool to reads
        let batch = BatchPolicy {
            writers: batch.writers.clamp(1, (pool_size.max(2) / 2) as usize),
            ..batch
        };
        let writer = WriterHandle::start(pool.clone(), log.clone(), batch);
        let stop = CancellationToken::new();
        tokio::spawn(listen::run_listener(
            pool.clone(),
            writer.weak(),
            log.clone(),
            stop.clone(),
        ));
        Ok(PgStore {
            writer,
            pool,
            planner_stats: Default::default(),
            log,
            stop,
        })
    }

    /// Applies the migrations only; returns how many were applied now.
    pub async fn migrate_only(url: &str) -> Result<usize, StoreError> {
        let pool = connect(url, 2).await?;
        let before = applied_migrations(&pool).await;
        migrate(&pool).await?;
        let after = applied_migrations(&pool).await;
        pool.close().await;
        Ok((after - before).max(0) as usize)
    }

    /// Tasks by state, as `task_counts` holds them: every write batch moves
    /// it in its commit turn, so reading it costs five rows, not a count of
    /// every task (an instance reads it each time it publishes another's
    /// commits).
    async fn count_tasks(pool: &PgPool) -> Result<TaskCounts, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT state, n FROM task_counts")
            .fetch_all(pool)
            .await?;
        counts_from_rows(rows)
    }
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> bool {
        let probe = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&self.pool);
        matches!(tokio::time::timeout(PING_TIMEOUT, probe).await, Ok(Ok(_)))
    }

    fn task_counts(&self) -> TaskCounts {
        self.log.task_counts()
    }

    async fn sync_external(&self) -> Result<bool, StoreError> {
        let max = self.max_seq().await.map_err(classify)?;
        if max <= self.log.published() {
            return Ok(false);
        }
        self.writer.catch_up(max).await?;
        Ok(true)
    }

    async fn create_task(
        &self,
        new: NewTask,
        created_by: String,
        max_attempts: i64,
        events_for: TaskEvents,
    ) -> Result<Task, StoreError> {
        self.create_task(new, created_by, max_attempts, events_for)
            .await
            .map_err(classify)
    }

    async fn update_task(
        &self,
        id: i64,
        guard: Option<ClaimGuard>,
        change: TaskChange,
    ) -> Result<Task, StoreError> {
        self.update_task(id, guard, change).await.map_err(classify)
    }

    async fn claim_next(
        &self,
        capabilities: Vec<String>,
        guard: ClaimGuard,
        claim: TaskChange,
    ) -> Result<Option<Task>, StoreError> {
        self.claim_next(capabilities, guard, claim)
            .await
            .map_err(classify)
    }

    async fn expire_due(&self, limit: i64, expire: TaskExpiry) -> Result<Vec<Task>, StoreError> {
        self.expire_due(limit, expire).await.map_err(classify)
    }

    async fn lapse_offers(&self, limit: i64, lapse: TaskExpiry) -> Result<Vec<Task>, StoreError> {
        self.lapse_offers(limit, lapse).await.map_err(classify)
    }

    async fn run_stats(&self, since: Millis) -> Result<Vec<RunStat>, StoreError> {
        self.run_stats(since).await.map_err(classify)
    }

    async fn task(&self, id: i64) -> Result<Option<Task>, StoreError> {
        self.task(id).await.map_err(classify)
    }

    async fn list_tasks(
        &self,
        state: Option<TaskState>,
        assignee: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Task>, StoreError> {
        self.list_tasks(state, assignee, limit)
            .await
            .map_err(classify)
    }

    async fn current_tasks(&self) -> Result<HashMap<String, i64>, StoreError> {
        self.current_tasks().await.map_err(classify)
    }

    async fn add_agent(
        &self,
        name: String,
        token_hash: String,
        role: Role,
        capabilities: Vec<String>,
    ) -> Result<Agent, StoreError> {
        self.add_agent(name, token_hash, role, capabilities)
            .await
            .map_err(classify)
    }

    async fn agent_by_token_hash(&self, hash: &str) -> Result<Option<Agent>, StoreError> {
        self.agent_by_token_hash(hash).await.map_err(classify)
    }

    async fn agent(&self, name: &str) -> Result<Option<Agent>, StoreError> {
        self.agent(name).await.map_err(classify)
    }

    async fn list_agents(&self) -> Result<Vec<Agent>, StoreError> {
        self.list_agents().await.map_err(classify)
    }

    async fn revoke_agent(&self, name: String) -> Result<(), StoreError> {
        self.revoke_agent(name).await.map_err(classify)
    }

    async fn revoked_since(&self, since: Millis) -> Result<Vec<String>, StoreError> {
        self.revoked_since(since).await.map_err(classify)
    }

    async fn agent_connected(
        &self,
        name: String,
        capabilities: Option<Vec<String>>,
    ) -> Result<(), StoreError> {
        self.agent_connected(name, capabilities)
            .await
            .map_err(classify)
    }

    async fn record_acks(&self, acks: Vec<(String, i64)>) -> Result<(), StoreError> {
        self.record_acks(acks).await.map_err(classify)
    }

    async fn record_message(
        &self,
        message: MessageRecord,
        event: NewEvent,
    ) -> Result<(), StoreError> {
        self.record_message(message, event).await.map_err(classify)
    }

    async fn newest_seq_for(
        &self,
        agent: &str,
        capabilities: &[String],
    ) -> Result<i64, StoreError> {
        self.newest_seq_for(agent, capabilities)
            .await
            .map_err(classify)
    }

    async fn max_seq(&self) -> Result<i64, StoreError> {
        self.max_seq().await.map_err(classify)
    }

    async fn scan_events(
        &self,
        agent: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<CommittedEvent>, StoreError> {
        self.scan_events(agent, after, limit)
            .await
            .map_err(classify)
    }

    async fn events_between(
        &self,
        after: i64,
        upto: i64,
        limit: i64,
    ) -> Result<Vec<CommittedEvent>, StoreError> {
        events::load_events_between(&self.pool, after, upto, limit)
            .await
            .map_err(classify)
    }

    async fn recent_events(&self, limit: i64) -> Result<Vec<CommittedEvent>, StoreError> {
        self.recent_events(limit).await.map_err(classify)
    }

    async fn agent_events(
        &self,
        agent: &str,
        capabilities: &[String],
        range: SeqRange,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.agent_events(agent, capabilities, range, limit)
            .await
            .map_err(classify)
    }

    async fn pruned_to(&self) -> Result<i64, StoreError> {
        self.pruned_to().await.map_err(classify)
    }

    async fn prune_events(&self, cutoff: Millis, batch: i64) -> Result<Pruned, StoreError> {
        self.prune_events(cutoff, batch).await.map_err(classify)
    }

    async fn event_table(&self) -> Result<EventTable, StoreError> {
        self.event_table().await.map_err(classify)
    }

    async fn announce_mark(&self, target: &str) -> Result<Option<i64>, StoreError> {
        self.announce_mark(target).await.map_err(classify)
    }

    async fn set_announce_mark(
        &self,
        target: &str,
        seq: i64,
        fence: Option<&OwnerFence>,
    ) -> Result<bool, StoreError> {
        self.set_announce_mark(target, seq, fence)
            .await
            .map_err(classify)
    }

    async fn run_tally(&self, agent: &str) -> Result<RunTally, StoreError> {
        self.run_tally(agent).await.map_err(classify)
    }

    async fn run_tallies(&self) -> Result<BTreeMap<String, RunTally>, StoreError> {
        self.run_tallies().await.map_err(classify)
    }

    async fn done_per_minute(&self, minutes: usize) -> Result<Vec<i64>, StoreError> {
        self.done_per_minute(minutes).await.map_err(classify)
    }

    async fn insight_runs(&self, since: Millis, limit: i64) -> Result<Vec<RunRow>, StoreError> {
        self.insight_runs(since, limit).await.map_err(classify)
    }

    async fn open_backlog(&self) -> Result<Vec<BacklogRow>, StoreError> {
        self.open_backlog().await.map_err(classify)
    }

    async fn raise_alert(
        &self,
        finding: Finding,
        repeat_after_ms: i64,
        events_for: AlertEvents,
    ) -> Result<Option<Alert>, StoreError> {
        self.raise_alert(finding, repeat_after_ms, events_for)
            .await
            .map_err(classify)
    }

    async fn clear_alert(
        &self,
        key: String,
        events_for: AlertEvents,
    ) -> Result<Option<Alert>, StoreError> {
        self.clear_alert(key, events_for).await.map_err(classify)
    }

    async fn active_alerts(&self) -> Result<Vec<Alert>, StoreError> {
        self.active_alerts().await.map_err(classify)
    }

    async fn create_poll(
        &self,
        new: NewPoll,
        created_by: String,
        events_for: PollEvents,
    ) -> Result<Poll, StoreError> {
        self.create_poll(new, created_by, events_for)
            .await
            .map_err(classify)
    }

    async fn cast_ballot(
        &self,
        poll_id: i64,
        ballot: Ballot,
        check: BallotCheck,
    ) -> Result<(), StoreError> {
        self.cast_ballot(poll_id, ballot, check)
            .await
            .map_err(classify)
    }

    async fn update_poll(&self, id: i64, change: PollChange) -> Result<Poll, StoreError> {
        self.update_poll(id, change).await.map_err(classify)
    }

    async fn close_due_polls(
        &self,
        limit: i64,
        close: PollClosing,
    ) -> Result<Vec<Poll>, StoreError> {
        self.close_due_polls(limit, close).await.map_err(classify)
    }

    async fn any_poll_due(&self) -> Result<bool, StoreError> {
        self.any_poll_due().await.map_err(classify)
    }

    async fn open_polls(&self, limit: i64) -> Result<Vec<Poll>, StoreError> {
        self.open_polls(limit).await.map_err(classify)
    }

    async fn poll(&self, id: i64) -> Result<Option<Poll>, StoreError> {
        self.poll(id).await.map_err(classify)
    }

    async fn search_tasks(&self, q: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        self.search_tasks(q).await.map_err(classify)
    }

    async fn search_messages(&self, q: &SearchQuery) -> Result<Vec<MessageHit>, StoreError> {
        self.search_messages(q).await.map_err(classify)
    }

    async fn create_schedule(&self, schedule: Schedule) -> Result<Schedule, StoreError> {
        self.create_schedule(schedule).await.map_err(classify)
    }

    async fn schedules(&self, limit: i64) -> Result<Vec<Schedule>, StoreError> {
        self.schedules(limit).await.map_err(classify)
    }

    async fn schedule(&self, id: i64) -> Result<Option<Schedule>, StoreError> {
        self.schedule(id).await.map_err(classify)
    }

    async fn update_schedule(
        &self,
        id: i64,
        change: ScheduleChange,
    ) -> Result<Schedule, StoreError> {
        self.update_schedule(id, change).await.map_err(classify)
    }

    async fn delete_schedule(&self, id: i64) -> Result<bool, StoreError> {
        self.delete_schedule(id).await.map_err(classify)
    }

    async fn due_schedules(&self, now: Millis, limit: i64) -> Result<Vec<Schedule>, StoreError> {
        self.due_schedules(now, limit).await.map_err(classify)
    }

    async fn fire_schedule(
        &self,
        claim: OccurrenceClaim,
        firing: Firing,
    ) -> Result<FireOutcome, StoreError> {
        self.fire_schedule(claim, firing).await.map_err(classify)
    }
}
