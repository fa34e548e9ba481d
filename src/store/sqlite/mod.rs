//! The SQLite adapter: WAL, one writer thread owning the only write
//! connection (rusqlite, group commit, see [`writer`]), a small sqlx read
//! pool, statements prepared once by each connection's statement cache. Each file holds what one
//! table family needs; this one opens the database and maps the
//! [`Store`] port onto them.

mod agents;
mod allocation;
mod announce;
mod cache;
mod checkpoint;
mod events;
mod insights;
mod polls;
mod row;
mod schedules;
mod search;
mod stats;
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
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection as _, SqlitePool};
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use writer::WriterHandle;

pub use insights::ALERT_COLS;
pub use stats::MAX_DURATIONS;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match fault_of_sqlx(&e) {
            Some(WriteFault::DiskFull) => StoreError::DiskFull(e.to_string()),
            Some(WriteFault::Locked) => StoreError::Locked(e.to_string()),
            None => StoreError::Db(Box::new(e)),
        }
    }
}

/// A failure that says the database cannot take writes right now (rather
/// than that a statement is wrong); it lasts until space is freed or the
/// other process lets go of the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WriteFault {
    /// SQLITE_FULL: the disk or quota is full.
    DiskFull,
    /// SQLITE_BUSY / SQLITE_LOCKED past the busy timeout.
    Locked,
}

/// The write fault a sqlx error reports, from SQLite's (extended) result code.
fn fault_of_sqlx(e: &sqlx::Error) -> Option<WriteFault> {
    let code: i32 = e.as_database_error()?.code()?.parse().ok()?;
    fault_of_code(code)
}

/// The write fault an error of the writer thread's connection reports.
pub(super) fn fault_of(e: &rusqlite::Error) -> Option<WriteFault> {
    fault_of_code(e.sqlite_error()?.extended_code)
}

fn fault_of_code(code: i32) -> Option<WriteFault> {
    match code & 0xff {
        13 => Some(WriteFault::DiskFull),
        5 | 6 => Some(WriteFault::Locked),
        _ => None,
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(Box::new(e))
    }
}

/// SQLite storage. Cheap to share behind an `Arc`; its writer thread stops
/// when the last handle is dropped.
pub struct SqliteStore {
    writer: WriterHandle,
    readers: SqlitePool,
    log: Arc<CommitLog>,
    /// Checkpoints the WAL off the writer's path (file databases only).
    _checkpoints: Option<checkpoint::Checkpointer>,
    /// A probe write (see [`SqliteStore::probe_write`]) is under way.
    probing: std::sync::atomic::AtomicBool,
}

/// How much a probe write writes: enough pages that a full disk shows.
const PROBE_BYTES: i64 = 64 * 1024;
/// How long `/ready` waits for a probe write.
const PROBE_WAIT: Duration = Duration::from_secs(2);

/// Turns `swarmbridge.db`, `./x.db`, `sqlite:x.db` or `sqlite://x.db?mode=rwc`
/// into connect options that create the file when missing.
fn connect_options(url: &str, busy_timeout: Duration) -> Result<SqliteConnectOptions, StoreError> {
    let opts = if url.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Url(format!("bad SQLite URL {url:?}: {e}")))?
    } else {
        SqliteConnectOptions::new().filename(url)
    };
    Ok(tuned(
        opts.create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal),
        busy_timeout,
    ))
}

fn tuned(opts: SqliteConnectOptions, busy_timeout: Duration) -> SqliteConnectOptions {
    opts.synchronous(SqliteSynchronous::Normal)
        .busy_timeout(busy_timeout)
        .foreign_keys(true)
        .pragma("temp_store", "memory")
        // A 2 MiB page cache (SQLite's default) sends most B-tree reads of a
        // busy task table to pread(2): under a claiming load that copy was
        // the largest single cost. 32 MiB per connection and memory-mapped
        // reads keep the hot pages in process.
        .pragma("cache_size", "-32768")
        .pragma("mmap_size", "268435456")
        .log_statements(tracing::log::LevelFilter::Trace)
}

/// Statements the writer thread keeps prepared (every write statement of
/// the adapter fits, with room to spare).
const WRITER_STATEMENTS: usize = 128;

/// Opens the writer thread's connection to the database `opts` names, with
/// the same settings as [`tuned`] (sqlite-vec comes in through the auto
/// extension registered before). `memory` for the shared in-memory database
/// of tests. `synchronous = NORMAL` in WAL: a commit is durable against a
/// crash of the process, and against power loss up to the last checkpoint.
fn open_writer(
    opts: &SqliteConnectOptions,
    memory: bool,
    busy_timeout: Duration,
) -> Result<rusqlite::Connection, StoreError> {
    use rusqlite::OpenFlags;
    let mut flags = OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    flags |= if memory {
        OpenFlags::SQLITE_OPEN_MEMORY | OpenFlags::SQLITE_OPEN_SHARED_CACHE
    } else {
        OpenFlags::SQLITE_OPEN_PRIVATE_CACHE
    };
    let conn = rusqlite::Connection::open_with_flags(opts.get_filename(), flags)?;
    conn.busy_timeout(busy_timeout)?;
    let journal = if memory { "MEMORY" } else { "WAL" };
    conn.execute_batch(&format!("PRAGMA journal_mode = {journal}"))?;
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
         PRAGMA temp_store = memory; PRAGMA cache_size = -32768; PRAGMA mmap_size = 268435456;",
    )?;
    if !memory {
        // checkpoints run on their own thread (see `checkpoint`)
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0")?;
    }
    conn.set_prepared_statement_cache_capacity(WRITER_STATEMENTS);
    Ok(conn)
}

pub(super) fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

pub(super) fn parse_list(s: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("list {s:?}: {e}")))
}

async fn applied_migrations(conn: &mut SqliteConnection) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = 1")
        .fetch_one(&mut *conn)
        .await
        .unwrap_or(0)
}

impl SqliteStore {
    /// Opens (creating when missing) the database at `url`, applies the
    /// migrations, starts the writer and publishes committed events to `sink`.
    pub async fn open(
        url: &str,
        readers: u32,
        batch: BatchPolicy,
        sink: Arc<dyn EventSink>,
    ) -> Result<Self, StoreError> {
        let opts = connect_options(url, batch.busy_timeout)?;
        Self::open_with(
            opts.clone(),
            opts.read_only(true),
            false,
            readers,
            batch,
            sink,
        )
        .await
    }

    /// A private database in memory (shared cache between the writer and
    /// the readers), gone when the store is dropped; for tests.
    pub async fn open_in_memory(
        batch: BatchPolicy,
        sink: Arc<dyn EventSink>,
    ) -> Result<Self, StoreError> {
        let name = format!("file:swarmbridge-{}", uuid::Uuid::new_v4());
        let opts = tuned(
            SqliteConnectOptions::new()
                .filename(name)
                .in_memory(true)
                .shared_cache(true)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Memory),
            batch.busy_timeout,
        );
        Self::open_with(opts.clone(), opts, true, 2, batch, sink).await
    }

    async fn open_with(
        write_opts: SqliteConnectOptions,
        read_opts: SqliteConnectOptions,
        memory: bool,
        readers: u32,
        batch: BatchPolicy,
        sink: Arc<dyn EventSink>,
    ) -> Result<Self, StoreError> {
        vectors::register_sqlite_vec();
        let mut conn = write_opts.connect().await?;
        MIGRATOR.run(&mut conn).await?;
        let published: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
            .fetch_one(&mut conn)
            .await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(readers.max(1))
            .min_connections(1)
            .connect_with(read_opts)
            .await?;
        let writer_conn = open_writer(&write_opts, memory, batch.busy_timeout)?;
        // the migrating connection is done; the writer thread's is the only one that writes
        conn.close().await?;
        let counts = Self::count_tasks(&readers).await?;
        let log = Arc::new(CommitLog::new(sink, published, counts));
        let writer = WriterHandle::start(writer_conn, log.clone(), batch)?;
        let checkpoints = match memory {
            true => None,
            false => Some(checkpoint::Checkpointer::start(open_writer(
                &write_opts,
                false,
                batch.busy_timeout,
            )?)?),
        };
        Ok(SqliteStore {
            writer,
            readers,
            log,
            _checkpoints: checkpoints,
            probing: Default::default(),
        })
    }

    /// Applies the migrations only; returns how many were applied now.
    pub async fn migrate_only(url: &str) -> Result<usize, StoreError> {
        vectors::register_sqlite_vec();
        let mut conn = connect_options(url, BatchPolicy::default().busy_timeout)?
            .connect()
            .await?;
        let before: i64 = applied_migrations(&mut conn).await;
        MIGRATOR.run(&mut conn).await?;
        let after: i64 = applied_migrations(&mut conn).await;
        Ok((after - before).max(0) as usize)
    }

    /// After a write fault: writes a row of [`PROBE_BYTES`] through the
    /// writer (one probe at a time, waiting at most [`PROBE_WAIT`]); true
    /// when it committed, which also clears the fault.
    async fn probe_write(&self) -> bool {
        use std::sync::atomic::Ordering;
        if self.probing.swap(true, Ordering::AcqRel) {
            return false;
        }
        let write = self.writer.write(|conn, now| {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO write_probe (id, written_at, filler) \
                 VALUES (1, ?1, randomblob(?2))",
            )?
            .execute(rusqlite::params![now, PROBE_BYTES])?;
            Ok(((), Vec::new(), Vec::new()))
        });
        let ok = matches!(tokio::time::timeout(PROBE_WAIT, write).await, Ok(Ok(())));
        self.probing.store(false, Ordering::Release);
        ok
    }

    /// Tasks by state, counted on the writer thread's connection.
    fn count_tasks_on(conn: &rusqlite::Connection) -> Result<TaskCounts, StoreError> {
        let mut stmt =
            conn.prepare_cached("SELECT state, COUNT(*) AS n FROM tasks GROUP BY state")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        counts_from_rows(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Tasks by state, counted in the database.
    async fn count_tasks(readers: &SqlitePool) -> Result<TaskCounts, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) AS n FROM tasks GROUP BY state")
                .fetch_all(readers)
                .await?;
        counts_from_rows(rows)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> bool {
        let reads = sqlx::query_scalar::<_, i64>("SELECT 1")
            .fetch_one(&self.readers)
            .await
            .is_ok();
        reads && (self.writer.fault().is_none() || self.probe_write().await)
    }

    fn write_fault(&self) -> Option<&'static str> {
        self.writer.fault().map(|f| match f {
            WriteFault::DiskFull => "disk_full",
            WriteFault::Locked => "locked",
        })
    }

    fn task_counts(&self) -> TaskCounts {
        self.log.task_counts()
    }

    async fn sync_external(&self) -> Result<bool, StoreError> {
        let max = self.max_seq().await?;
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
    }

    async fn update_task(
        &self,
        id: i64,
        guard: Option<ClaimGuard>,
        change: TaskChange,
    ) -> Result<Task, StoreError> {
        self.update_task(id, guard, change).await
    }

    async fn claim_next(
        &self,
        capabilities: Vec<String>,
        guard: ClaimGuard,
        claim: TaskChange,
    ) -> Result<Option<Task>, StoreError> {
        self.claim_next(capabilities, guard, claim).await
    }

    async fn expire_due(&self, limit: i64, expire: TaskExpiry) -> Result<Vec<Task>, StoreError> {
        self.expire_due(limit, expire).await
    }

    async fn lapse_offers(&self, limit: i64, lapse: TaskExpiry) -> Result<Vec<Task>, StoreError> {
        self.lapse_offers(limit, lapse).await
    }

    async fn run_stats(&self, since: Millis) -> Result<Vec<RunStat>, StoreError> {
        self.run_stats(since).await
    }

    async fn task(&self, id: i64) -> Result<Option<Task>, StoreError> {
        self.task(id).await
    }

    async fn list_tasks(
        &self,
        state: Option<TaskState>,
        assignee: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Task>, StoreError> {
        self.list_tasks(state, assignee, limit).await
    }

    async fn current_tasks(&self) -> Result<HashMap<String, i64>, StoreError> {
        self.current_tasks().await
    }

    async fn add_agent(
        &self,
        name: String,
        token_hash: String,
        role: Role,
        capabilities: Vec<String>,
    ) -> Result<Agent, StoreError> {
        self.add_agent(name, token_hash, role, capabilities).await
    }

    async fn agent_by_token_hash(&self, hash: &str) -> Result<Option<Agent>, StoreError> {
        self.agent_by_token_hash(hash).await
    }

    async fn agent(&self, name: &str) -> Result<Option<Agent>, StoreError> {
        self.agent(name).await
    }

    async fn list_agents(&self) -> Result<Vec<Agent>, StoreError> {
        self.list_agents().await
    }

    async fn revoke_agent(&self, name: String) -> Result<(), StoreError> {
        self.revoke_agent(name).await
    }

    async fn revoked_since(&self, since: Millis) -> Result<Vec<String>, StoreError> {
        self.revoked_since(since).await
    }

    async fn agent_connected(
        &self,
        name: String,
        capabilities: Option<Vec<String>>,
    ) -> Result<(), StoreError> {
        self.agent_connected(name, capabilities).await
    }

    async fn record_acks(&self, acks: Vec<(String, i64)>) -> Result<(), StoreError> {
        self.record_acks(acks).await
    }

    async fn record_message(
        &self,
        message: MessageRecord,
        event: NewEvent,
    ) -> Result<(), StoreError> {
        self.record_message(message, event).await
    }

    async fn newest_seq_for(
        &self,
        agent: &str,
        capabilities: &[String],
    ) -> Result<i64, StoreError> {
        self.newest_seq_for(agent, capabilities).await
    }

    async fn max_seq(&self) -> Result<i64, StoreError> {
        self.max_seq().await
    }

    async fn scan_events(
        &self,
        agent: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<CommittedEvent>, StoreError> {
        self.scan_events(agent, after, limit).await
    }

    async fn events_between(
        &self,
        after: i64,
        upto: i64,
        limit: i64,
    ) -> Result<Vec<CommittedEvent>, StoreError> {
        events::load_events_between(&self.readers, after, upto, limit).await
    }

    async fn recent_events(&self, limit: i64) -> Result<Vec<CommittedEvent>, StoreError> {
        self.recent_events(limit).await
    }

    async fn agent_events(
        &self,
        agent: &str,
        capabilities: &[String],
        range: SeqRange,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.agent_events(agent, capabilities, range, limit).await
    }

    async fn pruned_to(&self) -> Result<i64, StoreError> {
        self.pruned_to().await
    }

    async fn prune_events(&self, cutoff: Millis, batch: i64) -> Result<Pruned, StoreError> {
        self.prune_events(cutoff, batch).await
    }

    async fn event_table(&self) -> Result<EventTable, StoreError> {
        self.event_table().await
    }

    async fn announce_mark(&self, target: &str) -> Result<Option<i64>, StoreError> {
        self.announce_mark(target).await
    }

    async fn set_announce_mark(
        &self,
        target: &str,
        seq: i64,
        _fence: Option<&OwnerFence>,
    ) -> Result<bool, StoreError> {
        // one server per file: it always owns its platforms
        self.set_announce_mark(target, seq).await
    }

    async fn run_tally(&self, agent: &str) -> Result<RunTally, StoreError> {
        self.run_tally(agent).await
    }

    async fn run_tallies(&self) -> Result<BTreeMap<String, RunTally>, StoreError> {
        self.run_tallies().await
    }

    async fn done_per_minute(&self, minutes: usize) -> Result<Vec<i64>, StoreError> {
        self.done_per_minute(minutes).await
    }

    async fn insight_runs(&self, since: Millis, limit: i64) -> Result<Vec<RunRow>, StoreError> {
        self.insight_runs(since, limit).await
    }

    async fn open_backlog(&self) -> Result<Vec<BacklogRow>, StoreError> {
        self.open_backlog().await
    }

    async fn raise_alert(
        &self,
        finding: Finding,
        repeat_after_ms: i64,
        events_for: AlertEvents,
    ) -> Result<Option<Alert>, StoreError> {
        self.raise_alert(finding, repeat_after_ms, events_for).await
    }

    async fn clear_alert(
        &self,
        key: String,
        events_for: AlertEvents,
    ) -> Result<Option<Alert>, StoreError> {
        self.clear_alert(key, events_for).await
    }

    async fn active_alerts(&self) -> Result<Vec<Alert>, StoreError> {
        self.active_alerts().await
    }

    async fn create_poll(
        &self,
        new: NewPoll,
        created_by: String,
        events_for: PollEvents,
    ) -> Result<Poll, StoreError> {
        self.create_poll(new, created_by, events_for).await
    }

    async fn cast_ballot(
        &self,
        poll_id: i64,
        ballot: Ballot,
        check: BallotCheck,
    ) -> Result<(), StoreError> {
        self.cast_ballot(poll_id, ballot, check).await
    }

    async fn update_poll(&self, id: i64, change: PollChange) -> Result<Poll, StoreError> {
        self.update_poll(id, change).await
    }

    async fn close_due_polls(
        &self,
        limit: i64,
        close: PollClosing,
    ) -> Result<Vec<Poll>, StoreError> {
        self.close_due_polls(limit, close).await
    }

    async fn any_poll_due(&self) -> Result<bool, StoreError> {
        self.any_poll_due().await
    }

    async fn open_polls(&self, limit: i64) -> Result<Vec<Poll>, StoreError> {
        self.open_polls(limit).await
    }

    async fn poll(&self, id: i64) -> Result<Option<Poll>, StoreError> {
        self.poll(id).await
    }

    async fn search_tasks(&self, q: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        self.search_tasks(q).await
    }

    async fn search_messages(&self, q: &SearchQuery) -> Result<Vec<MessageHit>, StoreError> {
        self.search_messages(q).await
    }

    async fn create_schedule(&self, schedule: Schedule) -> Result<Schedule, StoreError> {
        self.create_schedule(schedule).await
    }

    async fn schedules(&self, limit: i64) -> Result<Vec<Schedule>, StoreError> {
        self.schedules(limit).await
    }

    async fn schedule(&self, id: i64) -> Result<Option<Schedule>, StoreError> {
        self.schedule(id).await
    }

    async fn update_schedule(
        &self,
        id: i64,
        change: ScheduleChange,
    ) -> Result<Schedule, StoreError> {
        self.update_schedule(id, change).await
    }

    async fn delete_schedule(&self, id: i64) -> Result<bool, StoreError> {
        self.delete_schedule(id).await
    }

    async fn due_schedules(&self, now: Millis, limit: i64) -> Result<Vec<Schedule>, StoreError> {
        self.due_schedules(now, limit).await
    }

    async fn fire_schedule(
        &self,
        claim: OccurrenceClaim,
        firing: Firing,
    ) -> Result<FireOutcome, StoreError> {
        self.fire_schedule(claim, firing).await
    }
}
