//! Group commit on PostgreSQL: `database.writers` writer tasks per
//! instance share one request queue. A free writer takes what is queued
//! (up to `batch.max`, keeping the batch open up to `batch.wait` for more);
//! the others take what arrives while it runs, so batches stay as large as
//! the load allows (a batch's task requests cost the same few statements
//! whatever their number, see [`task_batch`]). The writer runs the task
//! requests together, every other request under its own savepoint, inside
//! one transaction on its own pooled connection, then, in its **commit turn**,
//! appends the batch's events, commits, publishes through the
//! [`CommitLog`] and answers every request. Batches therefore run their
//! statements concurrently (claims on different rows do not conflict: `FOR
//! UPDATE SKIP LOCKED` passes over rows another batch holds), while commits
//! and publishing happen one batch at a time.
//!
//! Across instances the ordering rule holds because event appends are
//! serialised: a batch with events takes a transaction-level advisory lock
//! ([`EVENT_LOCK`]) just before it numbers its events and keeps it until its
//! commit. Every `seq` below a committed batch's first is therefore already
//! committed, so `seq` order is commit order, and a reader that loads
//! `(published, upto]` after learning of `upto` misses nothing. Within an
//! instance the commit turn (a mutex taken before the advisory lock and
//! held until the batch's events are published) keeps the writers from
//! publishing out of `seq` order: a batch numbers, commits and publishes
//! before the next one of this instance numbers. The batch sends `NOTIFY`
//! with its `first last` seqs in the same transaction, so the other
//! instances hear of it at its commit (see [`super::listen`]).
//!
//! - A request the core's rules reject is rolled back to its savepoint and
//!   answered with its own error; its neighbours commit.
//! - A batch whose connection is lost is answered
//!   [`StoreError::Unavailable`] (retry later); one that cannot commit for
//!   another reason [`StoreError::CommitFailed`]. Nothing of it is written.

use super::events::{insert_events, load_events_between};
use super::task_batch::{self, TaskOp};
use super::{classify, PgStore};
use crate::clock::{now_ms, Millis};
use crate::core::events::{CommittedEvent, NewEvent};
use crate::core::model::{TaskCounts, TaskState};
use crate::core::store::{record_duration, CommitLog, CountDelta, StoreError};
use crate::store::BatchPolicy;
use futures_util::future::BoxFuture;
use sqlx::{PgConnection, PgPool};
use std::any::Any;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, Mutex};

/// The advisory lock (bigint key space) that serialises event appends of
/// every instance, held from numbering a batch's events to its commit.
pub(super) const EVENT_LOCK: i64 = 0x5357_4252_4556; // "SWBREV"

/// What a request's work produced inside the transaction, type-erased.
type Staged = (Box<dyn Any + Send>, Vec<NewEvent>, CountDelta);
/// A request's work: runs on the batch's connection inside its
/// transaction, at the batch's `now`.
type Work = Box<
    dyn for<'c> FnOnce(&'c mut PgConnection, Millis) -> BoxFuture<'c, Result<Staged, StoreError>>
        + Send,
>;
type Reply = oneshot::Sender<Result<Box<dyn Any + Send>, StoreError>>;

/// How deep the request queue may get before callers wait for room.
const QUEUE: usize = 8192;

pub(super) enum Request {
    Write {
        work: Work,
        reply: Reply,
    },
    /// A task change or claim, run set-based with the batch's others.
    Task {
        op: TaskOp,
        reply: Reply,
    },
    /// Publish events other instances committed, up to `upto`.
    CatchUp {
        upto: i64,
        reply: Option<oneshot::Sender<()>>,
    },
}

/// The handle every store call uses to reach the writer task.
pub(super) struct WriterHandle {
    tx: mpsc::Sender<Request>,
}

impl WriterHandle {
    /// Starts `batch.writers` writer tasks; they stop when the last handle
    /// is dropped.
    pub(super) fn start(pool: PgPool, log: Arc<CommitLog>, batch: BatchPolicy) -> WriterHandle {
        let (tx, rx) = mpsc::channel(QUEUE);
        let shared = Arc::new(Shared {
            rx: Mutex::new(rx),
            turn: Mutex::new(()),
            writers: batch.writers.max(1),
        });
        for _ in 0..shared.writers {
            let writer = Writer {
                pool: pool.clone(),
                log: log.clone(),
                batch,
                shared: shared.clone(),
            };
            tokio::spawn(writer.run());
        }
        WriterHandle { tx }
    }

    /// A sender that does not keep the writer alive (for the listener).
    pub(super) fn weak(&self) -> mpsc::WeakSender<Request> {
        self.tx.downgrade()
    }

    /// Runs `f` as one request of the next batch and returns its value once
    /// the batch committed and its events were published.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(
                &'c mut PgConnection,
                Millis,
            )
                -> BoxFuture<'c, Result<(T, Vec<NewEvent>, CountDelta), StoreError>>
            + Send
            + 'static,
    {
        let work: Work = Box::new(move |conn, now| {
            let fut = f(conn, now);
            Box::pin(async move {
                let (value, events, delta) = fut.await?;
                Ok((Box::new(value) as Box<dyn Any + Send>, events, delta))
            })
        });
        self.request(|reply| Request::Write { work, reply }).await
    }

    /// Runs a task change or claim in the next batch, set-based with the
    /// batch's others ([`task_batch`]); its value once published.
    pub(super) async fn task<T: Send + 'static>(&self, op: TaskOp) -> Result<T, StoreError> {
        self.request(|reply| Request::Task { op, reply }).await
    }

    async fn request<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply) -> Request,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        let value = answer.await.map_err(|_| StoreError::WriterStopped)??;
        value
            .downcast::<T>()
            .map(|v| *v)
            .map_err(|_| StoreError::Corrupt("writer answered with another type".into()))
    }

    /// Has the writer publish events other instances committed up to `upto`.
    pub(super) async fn catch_up(&self, upto: i64) -> Result<(), StoreError> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send(Request::CatchUp {
                upto,
                reply: Some(reply),
            })
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        done.await.map_err(|_| StoreError::WriterStopped)
    }
}

/// Runs statements without parameters (several may be joined by `;`).
fn exec<'c>(
    conn: &'c mut PgConnection,
    sql: &'static str,
) -> BoxFuture<'c, Result<(), sqlx::Error>> {
    Box::pin(async move {
        // a bare &str runs as a simple query: several statements, one round trip
        sqlx::Executor::execute(&mut *conn, sql).await?;
        Ok(())
    })
}

/// What the writers of one instance share.
struct Shared {
    /// The request queue; a writer holds it while it gathers a batch.
    rx: Mutex<mpsc::Receiver<Request>>,
    /// Held from taking the event lock to publishing: one batch of this
    /// instance commits and publishes at a time, in `seq` order.
    turn: Mutex<()>,
    writers: usize,
}

struct Writer {
    pool: PgPool,
    log: Arc<CommitLog>,
    batch: BatchPolicy,
    shared: Arc<Shared>,
}

/// One request of a batch after its work ran.
struct Done {
    reply: Reply,
    outcome: Result<(Box<dyn Any + Send>, CountDelta), StoreError>,
}

/// The requests a writer gathered for its next batch.
struct Pending {
    writes: VecDeque<(Work, Reply)>,
    tasks: Vec<(TaskOp, Reply)>,
    catch_ups: Vec<(i64, Option<oneshot::Sender<()>>)>,
}

impl Pending {
    fn len(&self) -> usize {
        self.writes.len() + self.tasks.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Answers every request not yet run with `err`.
    fn fail(&mut self, err: &StoreError) {
        for (_, reply) in self.writes.drain(..) {
            let _ = reply.send(Err(clone_error(err)));
        }
        for (_, reply) in self.tasks.drain(..) {
            let _ = reply.send(Err(clone_error(err)));
        }
    }

    fn push(&mut self, r: Request) {
        match r {
            Request::Write { work, reply } => self.writes.push_back((work, reply)),
            Request::Task { op, reply } => self.tasks.push((op, reply)),
            Request::CatchUp { upto, reply } => self.catch_ups.push((upto, reply)),
        }
    }
}

/// Why a batch was not written, as its requests are told.
fn batch_error(e: sqlx::Error) -> StoreError {
    match classify(StoreError::Db(Box::new(e))) {
        StoreError::Db(cause) => StoreError::CommitFailed(cause.to_string()),
        other => other,
    }
}

impl Writer {
    async fn run(mut self) {
        let mut batch = Pending {
            writes: VecDeque::with_capacity(self.batch.max),
            tasks: Vec::new(),
            catch_ups: Vec::new(),
        };
        loop {
            {
                let shared = self.shared.clone();
                let mut rx = shared.rx.lock().await;
                let Some(first) = rx.recv().await else {
                    return;
                };
                batch.push(first);
                // all that is queued: splitting it between writers was
                // measured slower (smaller batches, more statements each)
                self.gather(&mut rx, &mut batch, self.batch.max).await;
            }
            while !batch.is_empty() {
                self.run_batch(&mut batch).await;
            }
            if let Some(upto) = batch.catch_ups.iter().map(|(u, _)| *u).max() {
                let shared = self.shared.clone();
                let _turn = shared.turn.lock().await;
                self.catch_up(upto).await;
            }
            for (_, reply) in batch.catch_ups.drain(..) {
                if let Some(r) = reply {
                    let _ = r.send(());
                }
            }
        }
    }

    /// Takes what is queued (up to `cap` writes), and keeps the batch open
    /// up to `batch.wait` (yielding, so tasks about to write get to run)
    /// while more arrives.
    fn gather<'a>(
        &'a self,
        rx: &'a mut mpsc::Receiver<Request>,
        batch: &'a mut Pending,
        cap: usize,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let deadline = Instant::now() + self.batch.wait;
            let mut quiet_rounds = 0;
            while batch.len() < cap {
                let before = batch.len();
                while batch.len() < cap {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                quiet_rounds = if batch.len() == before {
                    quiet_rounds + 1
                } else {
                    0
                };
                if batch.is_empty() || quiet_rounds > 2 || Instant::now() >= deadline {
                    return;
                }
                tokio::task::yield_now().await;
            }
        })
    }

    /// Runs requests from the front of `batch` in one transaction until the
    /// batch is done or the transaction is lost.
    fn run_batch<'a>(&'a mut self, pending: &'a mut Pending) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let started = Instant::now();
            let now = now_ms();
            let mut conn = match self.pool.acquire().await {
                Ok(c) => c,
                Err(e) => {
                    let err = batch_error(e);
                    tracing::error!(error = %err, requests = pending.len(), "no database connection for a write batch");
                    pending.fail(&err);
                    return;
                }
            };
            if let Err(e) = exec(&mut conn, "BEGIN; SAVEPOINT req").await {
                let err = batch_error(e);
                tracing::error!(error = %err, requests = pending.len(), "could not begin a write transaction");
                conn.close_on_drop();
                pending.fail(&err);
                return;
            }
            let mut done: Vec<Done> = Vec::with_capacity(pending.len());
            let mut events: Vec<NewEvent> = Vec::new();
            let mut tx_lost: Option<StoreError> = None;
            let mut first = true;
            if !pending.tasks.is_empty() {
                // every task request of the batch at once, under the first savepoint
                first = false;
                let (ops, replies): (Vec<TaskOp>, Vec<Reply>) = pending.tasks.drain(..).unzip();
                match task_batch::run(&mut conn, now, ops).await {
                    Ok(outcomes) => {
                        for (reply, (outcome, new_events)) in replies.into_iter().zip(outcomes) {
                            if outcome.is_ok() {
                                events.extend(new_events);
                            }
                            done.push(Done { reply, outcome });
                        }
                    }
                    Err(e) => {
                        let (e, lost) = roll_back_request(&mut conn, e).await;
                        tx_lost = lost;
                        tracing::error!(error = %e, requests = replies.len(), "the batch's task requests failed; none of them was written");
                        for reply in replies {
                            done.push(Done {
                                reply,
                                outcome: Err(clone_error(&e)),
                            });
                        }
                    }
                }
            }
            while tx_lost.is_none() {
                let Some((work, reply)) = pending.writes.pop_front() else {
                    break;
                };
                if !first {
                    if let Err(e) = exec(&mut conn, "RELEASE req; SAVEPOINT req").await {
                        pending.writes.push_front((work, reply));
                        tx_lost = Some(batch_error(e));
                        break;
                    }
                }
                first = false;
                match work(&mut conn, now).await {
                    Ok((value, new_events, delta)) => {
                        done.push(Done {
                            reply,
                            outcome: Ok((value, delta)),
                        });
                        events.extend(new_events);
                    }
                    Err(e) => {
                        let (e, lost) = roll_back_request(&mut conn, e).await;
                        done.push(Done {
                            reply,
                            outcome: Err(e),
                        });
                        if lost.is_some() {
                            tx_lost = lost;
                            break;
                        }
                    }
                }
                if done.len() >= self.batch.max {
                    break;
                }
            }
            let shared = self.shared.clone();
            let turn = shared.turn.lock().await;
            let delta: CountDelta = done
                .iter()
                .filter_map(|d| d.outcome.as_ref().ok())
                .flat_map(|(_, dl)| dl.iter().copied())
                .collect();
            let committed = match tx_lost {
                Some(err) => Err(err),
                None => append_and_commit(&mut conn, now, events, &delta).await,
            };
            match committed {
                Ok(committed) => {
                    drop(conn);
                    record_duration("write", started);
                    self.publish(done, &delta, committed).await;
                    drop(turn);
                }
                Err(err) => {
                    drop(turn);
                    if exec(&mut conn, "ROLLBACK").await.is_err() {
                        conn.close_on_drop();
                    }
                    drop(conn);
                    let failed = done.iter().filter(|d| d.outcome.is_ok()).count();
                    tracing::error!(
                        error = %err,
                        requests = failed,
                        "write batch could not commit; nothing of it was written"
                    );
                    for d in done {
                        let res = match d.outcome {
                            Ok(_) => Err(clone_error(&err)),
                            Err(e) => Err(e),
                        };
                        let _ = d.reply.send(res);
                    }
                    // requests not reached in a lost transaction get the same answer
                    pending.fail(&err);
                }
            }
        })
    }

    /// After a commit: counts and events to the log (after any events
    /// other instances committed before ours), then every request's answer.
    fn publish<'a>(
        &'a mut self,
        done: Vec<Done>,
        delta: &'a CountDelta,
        committed: Vec<CommittedEvent>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            match committed.first().map(|e| e.seq) {
                Some(first) if first <= self.log.published() => {
                    // already published from the table by a catch-up (cannot
                    // happen while commits take the turn; kept as a guard)
                }
                Some(first) => match self.log.gap_before(first) {
                    Some(upto) => {
                        // the recount already includes this batch: no delta on top
                        self.catch_up(upto).await;
                        self.log.committed(&[], &committed);
                    }
                    None => self.log.committed(delta, &committed),
                },
                None if !delta.is_empty() => {
                    // a task change without events (none today): recount to stay exact
                    self.recount_only().await
                }
                None => {}
            }
            for d in done {
                let _ = d.reply.send(d.outcome.map(|(value, _)| value));
            }
        })
    }

    fn recount_only(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Ok(counts) = PgStore::count_tasks(&self.pool).await {
                let published = self.log.published();
                self.log
                    .catch_up(counts, published, |_, _| async { Ok(vec![]) })
                    .await;
            }
        })
    }

    /// Publishes events other instances committed up to `upto` (at most
    /// the newest committed `seq`), after a recount.
    fn catch_up(&mut self, upto: i64) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if upto <= self.log.published() {
                return;
            }
            let newest: i64 = match sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
                .fetch_one(&self.pool)
                .await
            {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the newest event seq");
                    return;
                }
            };
            let upto = upto.min(newest);
            if upto <= self.log.published() {
                return;
            }
            let counts = match PgStore::count_tasks(&self.pool).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "could not recount tasks");
                    return;
                }
            };
            let pool = self.pool.clone();
            self.log
                .catch_up(counts, upto, |after, upto| {
                    let pool = pool.clone();
                    async move { load_events_between(&pool, after, upto, 1000).await }
                })
                .await;
        })
    }
}

/// Takes the event lock, appends the batch's events (numbered after every
/// committed one) and moves `task_counts` by its `delta`, notifies the
/// other instances and commits.
fn append_and_commit<'a>(
    conn: &'a mut PgConnection,
    now: Millis,
    events: Vec<NewEvent>,
    delta: &'a CountDelta,
) -> BoxFuture<'a, Result<Vec<CommittedEvent>, StoreError>> {
    Box::pin(async move {
        let moved = net_counts(delta);
        let committed = if events.is_empty() && moved.0.is_empty() {
            Vec::new()
        } else {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(EVENT_LOCK)
                .execute(&mut *conn)
                .await
                .map_err(batch_error)?;
            if events.is_empty() {
                move_counts(conn, &moved).await.map_err(classify)?;
                Vec::new()
            } else {
                insert_events(conn, now, events, &moved)
                    .await
                    .map_err(classify)?
            }
        };
        exec(conn, "COMMIT").await.map_err(batch_error)?;
        Ok(committed)
    })
}

/// A batch's count delta as net changes per state (states that did not
/// move are left out): `(states, changes)`, for `task_counts`.
pub(super) fn net_counts(delta: &CountDelta) -> (Vec<&'static str>, Vec<i64>) {
    let mut net = TaskCounts::default();
    net.apply(delta);
    TaskState::ALL
        .into_iter()
        .filter(|st| net.get(*st) != 0)
        .map(|st| (st.as_str(), net.get(st)))
        .unzip()
}

/// Moves `task_counts` by `moved` (from [`net_counts`]); the caller holds
/// the event lock.
async fn move_counts(
    conn: &mut PgConnection,
    moved: &(Vec<&'static str>, Vec<i64>),
) -> Result<(), StoreError> {
    sqlx::query(MOVE_COUNTS)
        .bind(&moved.0)
        .bind(&moved.1)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Moves `task_counts` by the net changes `$1` (states) / `$2` (changes);
/// `insert_events` does the same with its events.
const MOVE_COUNTS: &str = "UPDATE task_counts SET n = task_counts.n + d.n \
    FROM unnest($1::text[], $2::bigint[]) AS d(state, n) WHERE task_counts.state = d.state";

/// Rolls a failed request (or the batch's task requests) back to its
/// savepoint; returns its error, classified, and the error that ends the
/// batch's transaction if that is lost too (the rollback failed, or the
/// connection is gone).
async fn roll_back_request(
    conn: &mut PgConnection,
    e: StoreError,
) -> (StoreError, Option<StoreError>) {
    let e = classify(e);
    let lost = matches!(e, StoreError::Unavailable(_));
    let tx_lost = match exec(conn, "ROLLBACK TO req").await {
        Err(undo) => Some(batch_error(undo)),
        Ok(()) if lost => Some(StoreError::Unavailable("connection lost".into())),
        Ok(()) => None,
    };
    (e, tx_lost)
}

/// A copy of a batch-wide error for each of its requests.
fn clone_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(c) => StoreError::Unavailable(c.clone()),
        other => StoreError::CommitFailed(other.to_string()),
    }
}
