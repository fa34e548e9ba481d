//! SQLite backend: WAL, one writer connection (so writes are serialized and
//! events are published in commit order), a small read pool, statements
//! prepared once by sqlx's per-connection cache.

use super::{ClaimGuard, MessageRecord, StoreError};
use crate::clock::{now_ms, Millis};
use crate::core::error::CoreError;
use crate::core::events::{Audience, CommittedEvent, EventKind, EventSink, NewEvent};
use crate::core::model::{
    Agent, ClaimCounts, NewTask, Role, RunTally, Task, TaskCounts, TaskState,
};
use crate::core::polls::{Ballot, NewPoll, Poll, PollState, Voters};
use crate::core::search::{HitKind, MessageHit, SearchHit, SearchQuery};
use crate::observe;
use futures_util::future::BoxFuture;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Row, SqlitePool};
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Mutex as AsyncMutex;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

const TASK_COLS: &str = "id, title, body, state, priority, requires, tags, assignee, \
    lease_expires_at, attempts, max_attempts, created_by, created_at, updated_at, result, \
    error, progress, percent";

const EVENT_COLS: &str = "e.seq, e.kind, e.at, e.data, e.to_all, e.requires, \
    (SELECT json_group_array(t.agent) FROM event_targets t WHERE t.seq = e.seq) AS targets";

const AGENT_COLS: &str =
    "name, role, capabilities, created_at, revoked_at, last_seen, acked_seq, base_seq";

/// A poll with its tally, read in one statement (one snapshot).
const POLL_SELECT: &str = "SELECT p.id, p.question, p.options, p.voters, p.state, p.created_by, \
    p.created_at, p.closes_at, p.closed_at, \
    (SELECT json_group_array(json_array(v.option, v.w, v.n)) FROM \
      (SELECT option, SUM(weight) AS w, COUNT(*) AS n FROM poll_votes \
       WHERE poll_id = p.id GROUP BY option) v) AS votes \
    FROM polls p";

/// What one write did to the task counts: (state before, state after).
type CountDelta = Vec<(Option<TaskState>, TaskState)>;

/// The one writer connection and what has been published from it.
struct Writer {
    conn: SqliteConnection,
    /// Highest `seq` handed to the sink; events above it not yet published
    /// were written by another process (the CLI) and are loaded from disk.
    published: i64,
}

/// SQLite storage. Cheap to share behind an `Arc`.
pub struct SqliteStore {
    writer: AsyncMutex<Writer>,
    readers: SqlitePool,
    sink: Arc<dyn EventSink>,
    counts: Mutex<TaskCounts>,
}

/// Turns `swarmbridge.db`, `./x.db`, `sqlite:x.db` or `sqlite://x.db?mode=rwc`
/// into connect options that create the file when missing.
fn connect_options(url: &str) -> Result<SqliteConnectOptions, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err(StoreError::Url(
            "PostgreSQL is not supported yet; use a SQLite path or sqlite: URL".into(),
        ));
    }
    let opts = if url.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Url(format!("bad SQLite URL {url:?}: {e}")))?
    } else {
        SqliteConnectOptions::new().filename(url)
    };
    Ok(opts
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
        .pragma("temp_store", "memory")
        .log_statements(tracing::log::LevelFilter::Trace))
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

fn parse_list(s: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("list {s:?}: {e}")))
}

fn task_from_row(r: &SqliteRow) -> Result<Task, StoreError> {
    let state: String = r.try_get("state")?;
    let result: Option<String> = r.try_get("result")?;
    Ok(Task {
        id: r.try_get("id")?,
        title: r.try_get("title")?,
        body: r.try_get("body")?,
        state: TaskState::from_str(&state).map_err(StoreError::Corrupt)?,
        priority: r.try_get("priority")?,
        requires: parse_list(r.try_get("requires")?)?,
        tags: parse_list(r.try_get("tags")?)?,
        assignee: r.try_get("assignee")?,
        lease_expires_at: r.try_get("lease_expires_at")?,
        attempts: r.try_get("attempts")?,
        max_attempts: r.try_get("max_attempts")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        result: match result {
            Some(s) => Some(
                serde_json::from_str(&s)
                    .map_err(|e| StoreError::Corrupt(format!("task result: {e}")))?,
            ),
            None => None,
        },
        error: r.try_get("error")?,
        progress: r.try_get("progress")?,
        percent: r.try_get("percent")?,
    })
}

fn agent_from_row(r: &SqliteRow) -> Result<Agent, StoreError> {
    let role: String = r.try_get("role")?;
    Ok(Agent {
        name: r.try_get("name")?,
        role: Role::from_str(&role).map_err(StoreError::Corrupt)?,
        capabilities: parse_list(r.try_get("capabilities")?)?,
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
        last_seen: r.try_get("last_seen")?,
        acked_seq: r.try_get("acked_seq")?,
        base_seq: r.try_get("base_seq")?,
    })
}

fn event_from_row(r: &SqliteRow) -> Result<CommittedEvent, StoreError> {
    let kind: String = r.try_get("kind")?;
    let kind = EventKind::parse(&kind)
        .ok_or_else(|| StoreError::Corrupt(format!("event kind {kind:?}")))?;
    let requires: Option<String> = r.try_get("requires")?;
    let targets: String = r.try_get("targets")?;
    let to_all: i64 = r.try_get("to_all")?;
    let audience = Audience {
        all: to_all != 0,
        requires: requires.as_deref().map(parse_list).transpose()?,
        agents: parse_list(&targets)?,
    };
    let data: String = r.try_get("data")?;
    Ok(CommittedEvent::new(
        r.try_get("seq")?,
        kind,
        r.try_get("at")?,
        audience,
        &data,
    ))
}

fn poll_from_row(r: &SqliteRow) -> Result<Poll, StoreError> {
    let voters: String = r.try_get("voters")?;
    let state: String = r.try_get("state")?;
    let options = parse_list(r.try_get("options")?)?;
    let votes: String = r.try_get("votes")?;
    let votes: Vec<(i64, i64, i64)> = serde_json::from_str(&votes)
        .map_err(|e| StoreError::Corrupt(format!("poll votes {votes:?}: {e}")))?;
    let mut tally = vec![0; options.len()];
    let mut total_votes = 0;
    for (option, weight, ballots) in votes {
        if let Some(slot) = usize::try_from(option - 1)
            .ok()
            .and_then(|i| tally.get_mut(i))
        {
            *slot = weight;
        }
        total_votes += ballots;
    }
    Ok(Poll {
        id: r.try_get("id")?,
        question: r.try_get("question")?,
        options,
        state: PollState::from_str(&state).map_err(StoreError::Corrupt)?,
        closes_at: r.try_get("closes_at")?,
        tally,
        voters: Voters::from_str(&voters).map_err(StoreError::Corrupt)?,
        created_by: r.try_get("created_by")?,
        total_votes,
        created_at: r.try_get("created_at")?,
        closed_at: r.try_get("closed_at")?,
    })
}

async fn load_poll(conn: &mut SqliteConnection, id: i64) -> Result<Option<Poll>, StoreError> {
    let row = sqlx::query(&format!("{POLL_SELECT} WHERE p.id = ?1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(poll_from_row).transpose()
}

/// Writes a poll's state and closing time back (the rest never changes).
async fn save_poll(conn: &mut SqliteConnection, p: &Poll) -> Result<(), StoreError> {
    sqlx::query("UPDATE polls SET state = ?2, closed_at = ?3 WHERE id = ?1")
        .bind(p.id)
        .bind(p.state.as_str())
        .bind(p.closed_at)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Turns search terms into an FTS5 query that cannot be a syntax error:
/// every phrase is one double-quoted string (inner quotes doubled), phrases
/// are joined by AND, and the last may match as a prefix.
fn fts5_match(terms: &[Vec<String>], prefix_last: bool) -> String {
    let last = terms.len().saturating_sub(1);
    terms
        .iter()
        .enumerate()
        .map(|(i, words)| {
            let quoted = format!("\"{}\"", words.join(" ").replace('"', "\"\""));
            if prefix_last && i == last {
                quoted + "*"
            } else {
                quoted
            }
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// BM25 is lower-is-better and negative; results show higher-is-better.
/// Not rounded: with few documents FTS5 clamps the IDF to 1e-6, and the
/// order then lives in the small digits.
fn score_of(bm25: f64) -> f64 {
    -bm25
}

async fn load_task(conn: &mut SqliteConnection, id: i64) -> Result<Option<Task>, StoreError> {
    let row = sqlx::query(&format!("SELECT {TASK_COLS} FROM tasks WHERE id = ?1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(task_from_row).transpose()
}

/// Writes every mutable column of `t` back.
async fn save_task(conn: &mut SqliteConnection, t: &Task) -> Result<(), StoreError> {
    let result = t.result.as_ref().map(|v| v.to_string());
    sqlx::query(
        "UPDATE tasks SET state = ?2, assignee = ?3, lease_expires_at = ?4, attempts = ?5, \
         updated_at = ?6, result = ?7, error = ?8, progress = ?9, percent = ?10, \
         claimed_at = CASE WHEN ?2 = 'claimed' AND state <> 'claimed' THEN ?6 ELSE claimed_at END \
         WHERE id = ?1",
    )
    .bind(t.id)
    .bind(t.state.as_str())
    .bind(&t.assignee)
    .bind(t.lease_expires_at)
    .bind(t.attempts)
    .bind(t.updated_at)
    .bind(result)
    .bind(&t.error)
    .bind(&t.progress)
    .bind(t.percent)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn claims_held(conn: &mut SqliteConnection, agent: &str) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE assignee = ?1 AND state = 'claimed'")
            .bind(agent)
            .fetch_one(&mut *conn)
            .await?,
    )
}

async fn check_guard(conn: &mut SqliteConnection, guard: &ClaimGuard) -> Result<(), StoreError> {
    let held = claims_held(conn, &guard.agent).await?;
    if held >= guard.max_claims {
        return Err(CoreError::Conflict(format!(
            "{} already holds {held} claimed tasks (limits.max_claims is {})",
            guard.agent, guard.max_claims
        ))
        .into());
    }
    Ok(())
}

async fn insert_events(
    conn: &mut SqliteConnection,
    now: Millis,
    events: Vec<NewEvent>,
) -> Result<Vec<CommittedEvent>, StoreError> {
    let mut out = Vec::with_capacity(events.len());
    for ev in events {
        // An event no agent gets (a poll for Discord or Twitch voters only)
        // is still recorded and published: the platform announcers see it.
        let data = ev.data.to_string();
        let requires = ev.audience.requires.as_deref().map(json_list);
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO events (kind, at, data, to_all, requires) VALUES (?1, ?2, ?3, ?4, ?5) \
             RETURNING seq",
        )
        .bind(ev.kind.as_str())
        .bind(now)
        .bind(&data)
        .bind(ev.audience.all as i64)
        .bind(requires)
        .fetch_one(&mut *conn)
        .await?;
        for agent in &ev.audience.agents {
            sqlx::query("INSERT OR IGNORE INTO event_targets (agent, seq) VALUES (?1, ?2)")
                .bind(agent)
                .bind(seq)
                .execute(&mut *conn)
                .await?;
        }
        out.push(CommittedEvent::new(seq, ev.kind, now, ev.audience, &data));
    }
    Ok(out)
}

/// How a claim ended, named after the event that ended it (`done`,
/// `failed`, `released`, `expired`, `cancelled`); the new state when no
/// such event was emitted.
fn claim_outcome(events: &[NewEvent], after: TaskState) -> &'static str {
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

/// Keeps `task_runs` in step with a task change, inside its transaction: a
/// claim that starts opens a run, a claim that ends closes it with its
/// outcome. `holder` is the assignee before the change.
async fn record_run(
    conn: &mut SqliteConnection,
    before: TaskState,
    holder: Option<&str>,
    task: &Task,
    events: &[NewEvent],
    now: Millis,
) -> Result<(), StoreError> {
    let was_claimed = before == TaskState::Claimed;
    let is_claimed = task.state == TaskState::Claimed;
    if was_claimed && !is_claimed {
        let outcome = claim_outcome(events, task.state);
        let closed = sqlx::query(
            "UPDATE task_runs SET ended_at = ?2, outcome = ?3 \
             WHERE task_id = ?1 AND ended_at IS NULL",
        )
        .bind(task.id)
        .bind(now)
        .bind(outcome)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if closed == 0 {
            // claimed before runs were recorded: close a run from the task's own record
            sqlx::query(
                "INSERT INTO task_runs (task_id, agent, claimed_at, ended_at, outcome) \
                 SELECT id, ?2, COALESCE(claimed_at, ?3), ?3, ?4 FROM tasks WHERE id = ?1",
            )
            .bind(task.id)
            .bind(holder.or(task.assignee.as_deref()).unwrap_or("unknown"))
            .bind(now)
            .bind(outcome)
            .execute(&mut *conn)
            .await?;
        }
    }
    if is_claimed && !was_claimed {
        sqlx::query("INSERT INTO task_runs (task_id, agent, claimed_at) VALUES (?1, ?2, ?3)")
            .bind(task.id)
            .bind(task.assignee.as_deref().unwrap_or("unknown"))
            .bind(now)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The result of one write closure: its value, the events to append, and
/// how it moved tasks between states.
type WriteOutcome<T> = (T, Vec<NewEvent>, CountDelta);

impl SqliteStore {
    /// Opens (creating when missing) the database at `url`, applies the
    /// migrations, and publishes committed events to `sink`.
    pub async fn open(
        url: &str,
        readers: u32,
        sink: Arc<dyn EventSink>,
    ) -> Result<Self, StoreError> {
        let opts = connect_options(url)?;
        let mut conn = opts.connect().await?;
        MIGRATOR.run(&mut conn).await?;
        let published: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
            .fetch_one(&mut conn)
            .await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(readers.max(1))
            .min_connections(1)
            .connect_with(opts.read_only(true))
            .await?;
        let store = SqliteStore {
            writer: AsyncMutex::new(Writer { conn, published }),
            readers,
            sink,
            counts: Mutex::new(TaskCounts::default()),
        };
        store.recount().await?;
        Ok(store)
    }

    /// Applies the migrations only (what `swarmbridge migrate` does); returns
    /// how many were applied now.
    pub async fn migrate_only(url: &str) -> Result<usize, StoreError> {
        let mut conn = connect_options(url)?.connect().await?;
        let before: i64 = applied_migrations(&mut conn).await;
        MIGRATOR.run(&mut conn).await?;
        let after: i64 = applied_migrations(&mut conn).await;
        Ok((after - before).max(0) as usize)
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query_scalar::<_, i64>("SELECT 1")
            .fetch_one(&self.readers)
            .await
            .is_ok()
    }

    async fn recount(&self) -> Result<(), StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM tasks GROUP BY state")
            .fetch_all(&self.readers)
            .await?;
        let mut counts = TaskCounts::default();
        for r in rows {
            let state: String = r.try_get("state")?;
            let st = TaskState::from_str(&state).map_err(StoreError::Corrupt)?;
            counts.0[st.index()] = r.try_get("n")?;
        }
        *self.counts.lock().unwrap_or_else(|p| p.into_inner()) = counts;
        Ok(())
    }

    /// Tasks by state, from memory kept in step with every commit.
    pub fn task_counts(&self) -> TaskCounts {
        *self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in one IMMEDIATE transaction on the writer, appends its
    /// events, commits, then publishes them (after any events other processes
    /// committed before them) while still holding the writer, so the sink
    /// sees every event exactly once and in `seq` order.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: for<'c> FnOnce(
            &'c mut SqliteConnection,
            Millis,
        ) -> BoxFuture<'c, Result<WriteOutcome<T>, StoreError>>,
    {
        let mut w = self.writer.lock().await;
        let started = Instant::now();
        let now = now_ms();
        sqlx::query("BEGIN IMMEDIATE").execute(&mut w.conn).await?;
        let res = async {
            let (value, events, delta) = f(&mut w.conn, now).await?;
            let committed = insert_events(&mut w.conn, now, events).await?;
            Ok::<_, StoreError>((value, committed, delta))
        }
        .await;
        let (value, committed, delta) = match res {
            Ok(v) => v,
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut w.conn).await;
                return Err(e);
            }
        };
        if let Err(e) = sqlx::query("COMMIT").execute(&mut w.conn).await {
            let _ = sqlx::query("ROLLBACK").execute(&mut w.conn).await;
            return Err(e.into());
        }
        observe::db_query("write", started);
        let gap = match committed.first() {
            Some(first) => first.seq > w.published + 1,
            None => false,
        };
        if gap {
            let upto = committed[0].seq - 1;
            self.publish_from_disk(&mut w, upto).await;
        } else {
            let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            for (before, after) in &delta {
                if let Some(b) = before {
                    counts.0[b.index()] -= 1;
                }
                counts.0[after.index()] += 1;
            }
        }
        if let Some(last) = committed.last() {
            self.sink.publish(&committed);
            w.published = last.seq;
        }
        Ok(value)
    }

    /// Publishes events other processes committed, up to `upto`, after
    /// recounting tasks (those processes changed them too), so a `status`
    /// asked on receipt of such an event already counts its change.
    async fn publish_from_disk(&self, w: &mut Writer, upto: i64) {
        if let Err(e) = self.recount().await {
            tracing::warn!(error = %e, "could not recount tasks");
        }
        loop {
            let rows = sqlx::query(&format!(
                "SELECT {EVENT_COLS} FROM events e WHERE e.seq > ?1 AND e.seq <= ?2 \
                 ORDER BY e.seq LIMIT 1000"
            ))
            .bind(w.published)
            .bind(upto)
            .fetch_all(&mut w.conn)
            .await;
            let events: Vec<CommittedEvent> = match rows {
                Ok(rows) => rows.iter().filter_map(|r| event_from_row(r).ok()).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "could not load events written by another process");
                    return;
                }
            };
            match events.last() {
                Some(last) => {
                    w.published = last.seq;
                    self.sink.publish(&events);
                }
                None => {
                    w.published = upto;
                    break;
                }
            }
        }
    }

    /// Looks for events that other processes (the CLI) committed and
    /// publishes them; returns true when there were any.
    pub async fn sync_external(&self) -> Result<bool, StoreError> {
        let max: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
            .fetch_one(&self.readers)
            .await?;
        let mut w = self.writer.lock().await;
        if max <= w.published {
            return Ok(false);
        }
        self.publish_from_disk(&mut w, max).await;
        Ok(true)
    }

    // ---- tasks ----------------------------------------------------------

    /// Inserts a task and the events `events_for` derives from it, in one transaction.
    pub async fn create_task<E>(
        &self,
        new: NewTask,
        created_by: String,
        max_attempts: i64,
        events_for: E,
    ) -> Result<Task, StoreError>
    where
        E: FnOnce(&Task) -> Vec<NewEvent> + Send + 'static,
    {
        self.write(move |conn, now| {
            Box::pin(async move {
                let row = sqlx::query(&format!(
                    "INSERT INTO tasks (title, body, state, priority, requires, tags, \
                     max_attempts, created_by, created_at, updated_at) \
                     VALUES (?1, ?2, 'open', ?3, ?4, ?5, ?6, ?7, ?8, ?8) RETURNING {TASK_COLS}"
                ))
                .bind(&new.title)
                .bind(&new.body)
                .bind(new.priority)
                .bind(json_list(&new.requires))
                .bind(json_list(&new.tags))
                .bind(new.max_attempts.unwrap_or(max_attempts))
                .bind(&created_by)
                .bind(now)
                .fetch_one(&mut *conn)
                .await?;
                let task = task_from_row(&row)?;
                let events = events_for(&task);
                Ok((task, events, vec![(None, TaskState::Open)]))
            })
        })
        .await
    }

    /// Loads task `id`, lets `change` edit it (or refuse), and saves it with
    /// the events `change` returns, in one transaction. With a guard, the
    /// agent's held claims are checked first.
    pub async fn update_task<F>(
        &self,
        id: i64,
        guard: Option<ClaimGuard>,
        change: F,
    ) -> Result<Task, StoreError>
    where
        F: FnOnce(&mut Task, Millis) -> Result<Vec<NewEvent>, CoreError> + Send + 'static,
    {
        self.write(move |conn, now| {
            Box::pin(async move {
                let mut task = load_task(conn, id)
                    .await?
                    .ok_or_else(|| CoreError::NotFound(format!("task {id} does not exist")))?;
                let before = task.state;
                let holder = task.assignee.clone();
                if let Some(g) = &guard {
                    if task.state == TaskState::Open {
                        check_guard(conn, g).await?;
                    }
                }
                task.updated_at = now;
                let events = change(&mut task, now)?;
                save_task(conn, &task).await?;
                record_run(conn, before, holder.as_deref(), &task, &events, now).await?;
                let delta = if before != task.state {
                    vec![(Some(before), task.state)]
                } else {
                    vec![]
                };
                Ok((task, events, delta))
            })
        })
        .await
    }

    /// Claims the highest-priority, oldest open task whose `requires` are all
    /// in `capabilities`, applying `claim` to it; None when nothing matches.
    pub async fn claim_next<F>(
        &self,
        capabilities: Vec<String>,
        guard: ClaimGuard,
        claim: F,
    ) -> Result<Option<Task>, StoreError>
    where
        F: FnOnce(&mut Task, Millis) -> Result<Vec<NewEvent>, CoreError> + Send + 'static,
    {
        self.write(move |conn, now| {
            Box::pin(async move {
                check_guard(conn, &guard).await?;
                let row = sqlx::query(&format!(
                    // INDEXED BY: otherwise the planner picks tasks_state and
                    // sorts every open task (O(open tasks) per claim).
                    "SELECT {TASK_COLS} FROM tasks t INDEXED BY tasks_open_queue \
                     WHERE state = 'open' AND NOT EXISTS \
                     (SELECT 1 FROM json_each(t.requires) r WHERE r.value NOT IN \
                      (SELECT value FROM json_each(?1))) \
                     ORDER BY priority DESC, id LIMIT 1"
                ))
                .bind(json_list(&capabilities))
                .fetch_optional(&mut *conn)
                .await?;
                let Some(row) = row else {
                    return Ok((None, vec![], vec![]));
                };
                let mut task = task_from_row(&row)?;
                let before = task.state;
                task.updated_at = now;
                let events = claim(&mut task, now)?;
                save_task(conn, &task).await?;
                record_run(conn, before, None, &task, &events, now).await?;
                let delta = vec![(Some(before), task.state)];
                Ok((Some(task), events, delta))
            })
        })
        .await
    }

    /// Applies `expire` to the claimed tasks whose lease ran out by now (at
    /// most [`EXPIRE_BATCH`](crate::core::tasks::EXPIRE_BATCH)), in one
    /// transaction; returns the changed tasks.
    pub async fn expire_due<F>(&self, expire: F) -> Result<Vec<Task>, StoreError>
    where
        F: Fn(&mut Task, Millis) -> Vec<NewEvent> + Send + 'static,
    {
        self.write(move |conn, now| {
            Box::pin(async move {
                let rows = sqlx::query(&format!(
                    "SELECT {TASK_COLS} FROM tasks WHERE state = 'claimed' \
                     AND lease_expires_at <= ?1 ORDER BY lease_expires_at LIMIT ?2"
                ))
                .bind(now)
                .bind(crate::core::tasks::EXPIRE_BATCH as i64)
                .fetch_all(&mut *conn)
                .await?;
                let mut tasks = Vec::with_capacity(rows.len());
                let mut events = Vec::new();
                let mut delta = Vec::new();
                for row in &rows {
                    let mut task = task_from_row(row)?;
                    let before = task.state;
                    let holder = task.assignee.clone();
                    task.updated_at = now;
                    let expired = expire(&mut task, now);
                    save_task(conn, &task).await?;
                    record_run(conn, before, holder.as_deref(), &task, &expired, now).await?;
                    events.extend(expired);
                    delta.push((Some(before), task.state));
                    tasks.push(task);
                }
                Ok((tasks, events, delta))
            })
        })
        .await
    }

    /// One task.
    pub async fn task(&self, id: i64) -> Result<Option<Task>, StoreError> {
        let started = Instant::now();
        let row = sqlx::query(&format!("SELECT {TASK_COLS} FROM tasks WHERE id = ?1"))
            .bind(id)
            .fetch_optional(&self.readers)
            .await?;
        observe::db_query("task", started);
        row.as_ref().map(task_from_row).transpose()
    }

    /// Tasks, newest first, optionally filtered by state and assignee.
    pub async fn list_tasks(
        &self,
        state: Option<TaskState>,
        assignee: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Task>, StoreError> {
        let started = Instant::now();
        let rows = sqlx::query(&format!(
            "SELECT {TASK_COLS} FROM tasks WHERE (?1 IS NULL OR state = ?1) \
             AND (?2 IS NULL OR assignee = ?2) ORDER BY id DESC LIMIT ?3"
        ))
        .bind(state.map(|s| s.as_str()))
        .bind(assignee)
        .bind(limit)
        .fetch_all(&self.readers)
        .await?;
        observe::db_query("list_tasks", started);
        rows.iter().map(task_from_row).collect()
    }

    /// For each agent holding claims, the id of its most recent claim.
    pub async fn current_tasks(&self) -> Result<HashMap<String, i64>, StoreError> {
        let rows = sqlx::query(
            "SELECT assignee, id, MAX(claimed_at) FROM tasks WHERE state = 'claimed' \
             AND assignee IS NOT NULL GROUP BY assignee",
        )
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("assignee")?, r.try_get("id")?)))
            .collect()
    }

    // ---- agents ---------------------------------------------------------

    /// Registers an agent with a token hash. A revoked agent of the same name
    /// is re-issued (new token, role and capabilities); an active one is a conflict.
    pub async fn add_agent(
        &self,
        name: String,
        token_hash: String,
        role: Role,
        capabilities: Vec<String>,
    ) -> Result<Agent, StoreError> {
        self.write(move |conn, now| {
            Box::pin(async move {
                let existing: Option<Option<i64>> =
                    sqlx::query_scalar("SELECT revoked_at FROM agents WHERE name = ?1")
                        .bind(&name)
                        .fetch_optional(&mut *conn)
                        .await?;
                if let Some(None) = existing {
                    return Err(CoreError::Conflict(format!(
                        "agent {name} already exists (revoke it first to issue a new token)"
                    ))
                    .into());
                }
                let base: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
                    .fetch_one(&mut *conn)
                    .await?;
                let row = sqlx::query(&format!(
                    "INSERT INTO agents (name, token_hash, role, capabilities, created_at, \
                     acked_seq, base_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) \
                     ON CONFLICT (name) DO UPDATE SET token_hash = ?2, role = ?3, \
                     capabilities = ?4, created_at = ?5, revoked_at = NULL, acked_seq = ?6, \
                     base_seq = ?6 RETURNING {AGENT_COLS}"
                ))
                .bind(&name)
                .bind(&token_hash)
                .bind(role.as_str())
                .bind(json_list(&capabilities))
                .bind(now)
                .bind(base)
                .fetch_one(&mut *conn)
                .await?;
                Ok((agent_from_row(&row)?, vec![], vec![]))
            })
        })
        .await
    }

    /// The active (not revoked) agent holding this token hash.
    pub async fn agent_by_token_hash(&self, hash: &str) -> Result<Option<Agent>, StoreError> {
        let started = Instant::now();
        let row = sqlx::query(&format!(
            "SELECT {AGENT_COLS} FROM agents WHERE token_hash = ?1 AND revoked_at IS NULL"
        ))
        .bind(hash)
        .fetch_optional(&self.readers)
        .await?;
        observe::db_query("agent_by_token", started);
        row.as_ref().map(agent_from_row).transpose()
    }

    /// An agent by name, revoked or not.
    pub async fn agent(&self, name: &str) -> Result<Option<Agent>, StoreError> {
        let row = sqlx::query(&format!("SELECT {AGENT_COLS} FROM agents WHERE name = ?1"))
            .bind(name)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(agent_from_row).transpose()
    }

    /// Every agent, revoked ones included, by name.
    pub async fn list_agents(&self) -> Result<Vec<Agent>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {AGENT_COLS} FROM agents ORDER BY name"))
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(agent_from_row).collect()
    }

    /// Revokes an agent's token; `not_found` when no active agent has that name.
    pub async fn revoke_agent(&self, name: String) -> Result<(), StoreError> {
        self.write(move |conn, now| {
            Box::pin(async move {
                let n = sqlx::query(
                    "UPDATE agents SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                )
                .bind(&name)
                .bind(now)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if n == 0 {
                    return Err(CoreError::NotFound(format!("no active agent named {name}")).into());
                }
                Ok(((), vec![], vec![]))
            })
        })
        .await
    }

    /// Names of agents revoked at or after `since`.
    pub async fn revoked_since(&self, since: Millis) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT name FROM agents WHERE revoked_at >= ?1")
                .bind(since)
                .fetch_all(&self.readers)
                .await?,
        )
    }

    /// Replaces an agent's capabilities and marks it seen now.
    pub async fn agent_connected(
        &self,
        name: String,
        capabilities: Option<Vec<String>>,
    ) -> Result<(), StoreError> {
        self.write(move |conn, now| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE agents SET last_seen = ?2, \
                     capabilities = COALESCE(?3, capabilities) WHERE name = ?1",
                )
                .bind(&name)
                .bind(now)
                .bind(capabilities.as_deref().map(json_list))
                .execute(&mut *conn)
                .await?;
                Ok(((), vec![], vec![]))
            })
        })
        .await
    }

    /// Marks an agent seen now (on disconnect).
    pub async fn touch_agent(&self, name: String) -> Result<(), StoreError> {
        self.agent_connected(name, None).await
    }

    /// Records that `agent` processed every event up to `seq` (never moves back).
    pub async fn ack(&self, agent: String, seq: i64) -> Result<(), StoreError> {
        self.write(move |conn, _now| {
            Box::pin(async move {
                sqlx::query("UPDATE agents SET acked_seq = MAX(acked_seq, ?2) WHERE name = ?1")
                    .bind(&agent)
                    .bind(seq)
                    .execute(&mut *conn)
                    .await?;
                Ok(((), vec![], vec![]))
            })
        })
        .await
    }

    // ---- messages and events --------------------------------------------

    /// Stores a direct message or broadcast together with its event.
    pub async fn record_message(
        &self,
        message: MessageRecord,
        event: NewEvent,
    ) -> Result<(), StoreError> {
        self.write(move |conn, now| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO messages (sender, recipient, topic, text, at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .bind(&message.sender)
                .bind(&message.recipient)
                .bind(&message.topic)
                .bind(&message.text)
                .bind(now)
                .execute(&mut *conn)
                .await?;
                Ok(((), vec![event], vec![]))
            })
        })
        .await
    }

    /// The newest event `seq` that `agent` (with these capabilities) gets,
    /// 0 when there is none.
    pub async fn newest_seq_for(
        &self,
        agent: &str,
        capabilities: &[String],
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COALESCE(MAX(seq), 0) FROM ( \
               SELECT MAX(seq) AS seq FROM event_targets WHERE agent = ?1 \
               UNION ALL SELECT MAX(seq) FROM events WHERE to_all = 1 \
               UNION ALL SELECT seq FROM (SELECT e.seq FROM events e \
                 WHERE e.requires IS NOT NULL AND NOT EXISTS \
                 (SELECT 1 FROM json_each(e.requires) r WHERE r.value NOT IN \
                  (SELECT value FROM json_each(?2))) ORDER BY e.seq DESC LIMIT 1))",
        )
        .bind(agent)
        .bind(json_list(capabilities))
        .fetch_one(&self.readers)
        .await?)
    }

    /// The newest event sequence number.
    pub async fn max_seq(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
                .fetch_one(&self.readers)
                .await?,
        )
    }

    /// One page of the events after `after` that `agent` (with these
    /// capabilities) should get, in `seq` order. `scanned_to` is the last
    /// `seq` looked at, so a caller pages on even when a page had nothing
    /// for this agent; an empty scan means the end.
    pub async fn events_for(
        &self,
        agent: &str,
        capabilities: &[String],
        after: i64,
        limit: i64,
    ) -> Result<EventPage, StoreError> {
        let started = Instant::now();
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLS} FROM events e WHERE e.seq > ?1 AND (e.to_all = 1 \
             OR e.requires IS NOT NULL OR e.seq IN \
             (SELECT seq FROM event_targets WHERE agent = ?2 AND seq > ?1)) \
             ORDER BY e.seq LIMIT ?3"
        ))
        .bind(after)
        .bind(agent)
        .bind(limit)
        .fetch_all(&self.readers)
        .await?;
        observe::db_query("events_for", started);
        let mut page = EventPage {
            events: Vec::with_capacity(rows.len()),
            scanned_to: None,
        };
        for r in &rows {
            let ev = event_from_row(r)?;
            page.scanned_to = Some(ev.seq);
            if ev.audience.includes(agent, capabilities) {
                page.events.push(ev);
            }
        }
        Ok(page)
    }

    /// The newest `limit` events, oldest first (the dashboard's feed on load).
    pub async fn recent_events(&self, limit: i64) -> Result<Vec<CommittedEvent>, StoreError> {
        let started = Instant::now();
        let rows = sqlx::query(&format!(
            "SELECT * FROM (SELECT {EVENT_COLS} FROM events e ORDER BY e.seq DESC LIMIT ?1) \
             ORDER BY seq"
        ))
        .bind(limit)
        .fetch_all(&self.readers)
        .await?;
        observe::db_query("recent_events", started);
        rows.iter().map(event_from_row).collect()
    }

    // ---- claim statistics ------------------------------------------------

    /// What `agent`'s claims came to, from `task_runs` (durations of its
    /// latest [`MAX_DURATIONS`] completions).
    pub async fn run_tally(&self, agent: &str) -> Result<RunTally, StoreError> {
        let started = Instant::now();
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
        observe::db_query("run_tally", started);
        Ok(tally)
    }

    /// [`SqliteStore::run_tally`] for every agent that ever claimed a task.
    pub async fn run_tallies(&self) -> Result<BTreeMap<String, RunTally>, StoreError> {
        let started = Instant::now();
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
        observe::db_query("run_tallies", started);
        Ok(out)
    }

    /// Completions per minute for the `minutes` minutes up to now, oldest
    /// first (the current, partial minute last).
    pub async fn done_per_minute(&self, minutes: usize) -> Result<Vec<i64>, StoreError> {
        let started = Instant::now();
        let now_min = now_ms().div_euclid(60_000);
        let first = now_min - minutes as i64 + 1;
        let rows = sqlx::query(
            "SELECT ended_at / 60000 AS minute, COUNT(*) AS n FROM task_runs \
             WHERE outcome = 'done' AND ended_at >= ?1 GROUP BY minute",
        )
        .bind(first * 60_000)
        .fetch_all(&self.readers)
        .await?;
        observe::db_query("done_per_minute", started);
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

/// Polls: each change is one transaction with its event; the tally is
/// computed from `poll_votes` in the same statement that reads the poll.
impl SqliteStore {
    /// Inserts a poll closing `duration_s` from now, with the events
    /// `events_for` derives from it, in one transaction.
    pub async fn create_poll<E>(
        &self,
        new: NewPoll,
        created_by: String,
        events_for: E,
    ) -> Result<Poll, StoreError>
    where
        E: FnOnce(&Poll) -> Vec<NewEvent> + Send + 'static,
    {
        self.write(move |conn, now| {
            Box::pin(async move {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO polls (question, options, voters, state, created_by, \
                     created_at, closes_at) VALUES (?1, ?2, ?3, 'open', ?4, ?5, ?6) RETURNING id",
                )
                .bind(&new.question)
                .bind(json_list(&new.options))
                .bind(new.voters.as_str())
                .bind(&created_by)
                .bind(now)
                .bind(now + new.duration_s.saturating_mul(1000))
                .fetch_one(&mut *conn)
                .await?;
                let poll = load_poll(conn, id)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt(format!("poll {id} vanished")))?;
                let events = events_for(&poll);
                Ok((poll, events, vec![]))
            })
        })
        .await
    }

    /// Records `ballot` in poll `poll_id` once `check` accepts it, replacing
    /// the voter's earlier ballot, in one transaction.
    pub async fn cast_ballot<F>(
        &self,
        poll_id: i64,
        ballot: Ballot,
        check: F,
    ) -> Result<(), StoreError>
    where
        F: FnOnce(&Poll, Millis) -> Result<(), CoreError> + Send + 'static,
    {
        self.write(move |conn, now| {
            Box::pin(async move {
                let poll = load_poll(conn, poll_id)
                    .await?
                    .ok_or_else(|| CoreError::NotFound(format!("poll {poll_id} does not exist")))?;
                check(&poll, now)?;
                sqlx::query(
                    "INSERT INTO poll_votes (poll_id, voter, option, weight, voted_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (poll_id, voter) DO UPDATE SET \
                     option = excluded.option, weight = excluded.weight, \
                     voted_at = excluded.voted_at",
                )
                .bind(poll_id)
                .bind(&ballot.voter)
                .bind(ballot.option)
                .bind(ballot.weight)
                .bind(now)
                .execute(&mut *conn)
                .await?;
                Ok(((), vec![], vec![]))
            })
        })
        .await
    }

    /// Loads poll `id`, lets `change` edit its state (or refuse), and saves
    /// it with the events `change` returns, in one transaction.
    pub async fn update_poll<F>(&self, id: i64, change: F) -> Result<Poll, StoreError>
    where
        F: FnOnce(&mut Poll, Millis) -> Result<Vec<NewEvent>, CoreError> + Send + 'static,
    {
        self.write(move |conn, now| {
            Box::pin(async move {
                let mut poll = load_poll(conn, id)
                    .await?
                    .ok_or_else(|| CoreError::NotFound(format!("poll {id} does not exist")))?;
                let events = change(&mut poll, now)?;
                save_poll(conn, &poll).await?;
                Ok((poll, events, vec![]))
            })
        })
        .await
    }

    /// Applies `close` to up to `limit` open polls whose `closes_at` has
    /// passed, in one transaction; returns them.
    pub async fn close_due_polls<F>(&self, limit: i64, close: F) -> Result<Vec<Poll>, StoreError>
    where
        F: Fn(&mut Poll, Millis) -> Vec<NewEvent> + Send + 'static,
    {
        self.write(move |conn, now| {
            Box::pin(async move {
                let rows = sqlx::query(&format!(
                    "{POLL_SELECT} WHERE p.state = 'open' AND p.closes_at <= ?1 \
                     ORDER BY p.closes_at LIMIT ?2"
                ))
                .bind(now)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?;
                let mut polls = Vec::with_capacity(rows.len());
                let mut events = Vec::new();
                for row in &rows {
                    let mut poll = poll_from_row(row)?;
                    events.extend(close(&mut poll, now));
                    save_poll(conn, &poll).await?;
                    polls.push(poll);
                }
                Ok((polls, events, vec![]))
            })
        })
        .await
    }

    /// True when an open poll's `closes_at` has passed (a cheap read, so the
    /// sweeper takes the writer only when there is work).
    pub async fn any_poll_due(&self) -> Result<bool, StoreError> {
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM polls WHERE state = 'open' AND closes_at <= ?1 LIMIT 1",
        )
        .bind(now_ms())
        .fetch_optional(&self.readers)
        .await?;
        Ok(due.is_some())
    }

    /// Up to `limit` open polls that have not reached `closes_at`, newest first.
    pub async fn open_polls(&self, limit: i64) -> Result<Vec<Poll>, StoreError> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM polls WHERE state = 'open' AND closes_at > ?1 ORDER BY id DESC LIMIT ?2",
        )
        .bind(now_ms())
        .bind(limit)
        .fetch_all(&self.readers)
        .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(p) = self.poll(id).await? {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// One poll with its tally.
    pub async fn poll(&self, id: i64) -> Result<Option<Poll>, StoreError> {
        let mut conn = self.readers.acquire().await?;
        load_poll(&mut conn, id).await
    }
}

/// Search: FTS5 over `tasks_fts` and `messages_fts` (migration 0004),
/// ranked by BM25 with the task title weighted above body and result.
impl SqliteStore {
    /// Tasks matching every term and the filters, best first.
    pub async fn search_tasks(&self, q: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.id, t.title, snippet(tasks_fts, -1, '**', '**', '…', 12) AS snip, \
             bm25(tasks_fts, 4.0, 1.0, 1.0) AS bm \
             FROM tasks_fts JOIN tasks t ON t.id = tasks_fts.rowid \
             WHERE tasks_fts MATCH ?1 AND (?2 IS NULL OR t.state = ?2) \
             AND (?3 IS NULL OR t.assignee = ?3 OR t.created_by = ?3) \
             AND (?4 IS NULL OR t.created_at >= ?4) \
             ORDER BY bm LIMIT ?5",
        )
        .bind(fts5_match(&q.terms, q.prefix_last))
        .bind(q.state.map(|s| s.as_str()))
        .bind(&q.agent)
        .bind(q.since)
        .bind(q.limit)
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SearchHit {
                    kind: HitKind::Task,
                    id: r.try_get("id")?,
                    title: r.try_get("title")?,
                    snippet: r.try_get("snip")?,
                    score: score_of(r.try_get("bm")?),
                })
            })
            .collect()
    }

    /// Messages matching every term and the filters, best first. Direct
    /// messages are left out unless `q.reader` is None or took part in them.
    pub async fn search_messages(&self, q: &SearchQuery) -> Result<Vec<MessageHit>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.id, m.sender, m.recipient, m.topic, \
             snippet(messages_fts, 0, '**', '**', '…', 12) AS snip, bm25(messages_fts) AS bm \
             FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid \
             WHERE messages_fts MATCH ?1 \
             AND (?2 IS NULL OR m.sender = ?2 OR m.recipient = ?2) \
             AND (?3 IS NULL OR m.at >= ?3) \
             AND (?4 IS NULL OR m.recipient IS NULL OR m.sender = ?4 OR m.recipient = ?4) \
             ORDER BY bm LIMIT ?5",
        )
        .bind(fts5_match(&q.terms, q.prefix_last))
        .bind(&q.agent)
        .bind(q.since)
        .bind(&q.reader)
        .bind(q.limit)
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MessageHit {
                    id: r.try_get("id")?,
                    sender: r.try_get("sender")?,
                    recipient: r.try_get("recipient")?,
                    topic: r.try_get("topic")?,
                    snippet: r.try_get("snip")?,
                    score: score_of(r.try_get("bm")?),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod search_tests {
    use super::fts5_match;

    fn t(p: &[&[&str]]) -> Vec<Vec<String>> {
        p.iter()
            .map(|w| w.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn fts5_query_quotes_every_phrase_and_prefixes_the_last() {
        assert_eq!(
            fts5_match(&t(&[&["a", "b"], &["near"]]), true),
            r#""a b" AND "near"*"#
        );
        assert_eq!(fts5_match(&t(&[&["x\"y"]]), false), r#""x""y""#);
    }
}

/// A page of replayed events; see [`SqliteStore::events_for`].
#[derive(Debug, Default)]
pub struct EventPage {
    /// The events for the agent.
    pub events: Vec<CommittedEvent>,
    /// The last `seq` scanned, None when there was nothing after `after`.
    pub scanned_to: Option<i64>,
}

async fn applied_migrations(conn: &mut SqliteConnection) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = 1")
        .fetch_one(&mut *conn)
        .await
        .unwrap_or(0)
}

/// The reasoning cache lives in `reason_cache`. A storage failure is logged
/// and counts as a miss (or is dropped): the cache never fails an answer.
impl crate::reason::ReasonCache for SqliteStore {
    fn get(
        &self,
        key: &crate::reason::CacheKey,
    ) -> BoxFuture<'_, Option<crate::reason::CachedAnswer>> {
        let digest = key.digest.clone();
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT text, confidence FROM reason_cache WHERE digest = ?1 AND expires_at > ?2",
            )
            .bind(&digest)
            .bind(now_ms())
            .fetch_optional(&self.readers)
            .await;
            match row {
                Ok(Some(r)) => Some(crate::reason::CachedAnswer {
                    text: r.try_get("text").ok()?,
                    confidence: r.try_get("confidence").ok()?,
                }),
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "reasoning cache read failed");
                    None
                }
            }
        })
    }

    fn put(
        &self,
        key: &crate::reason::CacheKey,
        answer: &crate::reason::CachedAnswer,
        ttl_s: u64,
    ) -> BoxFuture<'_, ()> {
        let key = key.clone();
        let answer = answer.clone();
        Box::pin(async move {
            let res = self
                .write(move |conn, now| {
                    Box::pin(async move {
                        sqlx::query(
                            "INSERT INTO reason_cache (digest, model, mode, prompt, text, \
                             confidence, created_at, expires_at) \
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                             ON CONFLICT (digest) DO UPDATE SET text = ?5, confidence = ?6, \
                             created_at = ?7, expires_at = ?8",
                        )
                        .bind(&key.digest)
                        .bind(&key.model)
                        .bind(&key.mode)
                        .bind(&key.prompt)
                        .bind(&answer.text)
                        .bind(answer.confidence)
                        .bind(now)
                        .bind(now + (ttl_s as i64).saturating_mul(1000))
                        .execute(&mut *conn)
                        .await?;
                        sqlx::query("DELETE FROM reason_cache WHERE expires_at <= ?1")
                            .bind(now)
                            .execute(&mut *conn)
                            .await?;
                        Ok(((), vec![], vec![]))
                    })
                })
                .await;
            if let Err(e) = res {
                tracing::warn!(error = %e, "reasoning cache write failed");
            }
        })
    }
}
