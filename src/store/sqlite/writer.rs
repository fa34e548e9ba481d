//! Group commit on the writer's own OS thread. The thread owns the only
//! write connection (rusqlite, statements prepared once and cached), takes
//! what is queued (up to `batch.max`, keeping the batch open up to
//! `batch.wait` for more), runs each request synchronously under its own
//! savepoint inside one IMMEDIATE transaction, appends the batch's events,
//! commits once, then publishes through the [`CommitLog`] and answers every
//! request through its oneshot channel. No statement crosses a thread: a
//! batch of a hundred claims is one run of plain function calls.
//!
//! - A request the core's rules reject is rolled back to its savepoint and
//!   answered with its own error; its neighbours commit.
//! - A failing commit (disk full, locked past the busy timeout, a
//!   constraint) answers every request of the batch with
//!   [`StoreError::CommitFailed`] naming the cause (or
//!   [`StoreError::DiskFull`] / [`StoreError::Locked`], which the caller
//!   sees as such), logs it once, and the writer goes on with the next
//!   batch. A disk-full or lock failure is remembered as the store's
//!   [`WriteFault`] until a batch that changed something commits.
//! - Events are published after the commit, in `seq` order, before the next
//!   batch starts, so the bus sees every event once and in order.

use super::events::{insert_events, load_events_between_on};
use super::{fault_of, SqliteStore, WriteFault};
use crate::clock::{now_ms, Millis};
use crate::core::events::{CommittedEvent, NewEvent};
use crate::core::store::{record_duration, CommitLog, CountDelta, StoreError};
use crate::store::BatchPolicy;
use rusqlite::Connection;
use std::any::Any;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// What a request's work produced inside the transaction, type-erased.
type Staged = (Box<dyn Any + Send>, Vec<NewEvent>, CountDelta);
/// A request's work: runs synchronously on the writer thread's connection
/// inside the batch's transaction, at the batch's `now`.
type Work = Box<dyn FnOnce(&Connection, Millis) -> Result<Staged, StoreError> + Send>;
type Reply = oneshot::Sender<Result<Box<dyn Any + Send>, StoreError>>;

/// How deep the request queue may get before callers wait for room.
const QUEUE: usize = 8192;

enum Request {
    Write {
        work: Work,
        reply: Reply,
    },
    /// Publish events other processes committed, up to `upto`.
    CatchUp {
        upto: i64,
        reply: oneshot::Sender<()>,
    },
}

/// The handle every store call uses to reach the writer thread.
pub(super) struct WriterHandle {
    tx: mpsc::Sender<Request>,
    fault: Arc<Mutex<Option<WriteFault>>>,
}

/// Why a batch could not commit, kept so that each of its requests gets
/// its own copy of the error.
#[derive(Debug, Clone)]
struct Failure {
    fault: Option<WriteFault>,
    cause: String,
}

impl Failure {
    fn of_sqlite(e: &rusqlite::Error) -> Failure {
        Failure {
            fault: fault_of(e),
            cause: e.to_string(),
        }
    }

    fn of_store(e: &StoreError) -> Failure {
        let fault = match e {
            StoreError::DiskFull(_) => Some(WriteFault::DiskFull),
            StoreError::Locked(_) => Some(WriteFault::Locked),
            _ => None,
        };
        Failure {
            fault,
            cause: e.to_string(),
        }
    }

    /// The error a request of the failed batch is answered with.
    fn error(&self) -> StoreError {
        match self.fault {
            Some(WriteFault::DiskFull) => StoreError::DiskFull(self.cause.clone()),
            Some(WriteFault::Locked) => StoreError::Locked(self.cause.clone()),
            None => StoreError::CommitFailed(self.cause.clone()),
        }
    }
}

impl WriterHandle {
    /// Starts the writer thread on `conn`; it stops when the handle is dropped
    /// (the queue closes and the thread returns after its current batch).
    pub(super) fn start(
        conn: Connection,
        log: Arc<CommitLog>,
        batch: BatchPolicy,
    ) -> Result<WriterHandle, StoreError> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let fault = Arc::new(Mutex::new(None));
        let writer = Writer {
            conn,
            log,
            batch,
            fault: fault.clone(),
        };
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Db(Box::new(e)))?;
        Ok(WriterHandle { tx, fault })
    }

    /// The disk-full or lock failure of the last write that failed, while
    /// no write has committed since.
    pub(super) fn fault(&self) -> Option<WriteFault> {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` as one request of the next batch and returns its value once
    /// the batch committed and its events were published.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, Millis) -> Result<(T, Vec<NewEvent>, CountDelta), StoreError>
            + Send
            + 'static,
    {
        let work: Work = Box::new(move |conn, now| {
            let (value, events, delta) = f(conn, now)?;
            Ok((Box::new(value) as Box<dyn Any + Send>, events, delta))
        });
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request::Write { work, reply })
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        let value = answer.await.map_err(|_| StoreError::WriterStopped)??;
        value
            .downcast::<T>()
            .map(|v| *v)
            .map_err(|_| StoreError::Corrupt("writer answered with another type".into()))
    }

    /// Has the writer publish events other processes committed up to `upto`.
    pub(super) async fn catch_up(&self, upto: i64) -> Result<(), StoreError> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send(Request::CatchUp { upto, reply })
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        done.await.map_err(|_| StoreError::WriterStopped)
    }
}

/// Runs one parameterless statement through the statement cache.
fn exec(conn: &Connection, sql: &'static str) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

struct Writer {
    conn: Connection,
    log: Arc<CommitLog>,
    batch: BatchPolicy,
    fault: Arc<Mutex<Option<WriteFault>>>,
}

/// One request of a batch after its work ran.
struct Done {
    reply: Reply,
    outcome: Result<(Box<dyn Any + Send>, CountDelta), StoreError>,
    /// How many of the batch's events are this request's.
    events: usize,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let mut batch: VecDeque<(Work, Reply)> = VecDeque::with_capacity(self.batch.max);
        let mut catch_ups = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            match first {
                Request::Write { work, reply } => batch.push_back((work, reply)),
                Request::CatchUp { upto, reply } => catch_ups.push((upto, reply)),
            }
            self.gather(&mut rx, &mut batch, &mut catch_ups);
            while !batch.is_empty() {
                self.run_batch(&mut batch);
            }
            for (upto, reply) in catch_ups.drain(..) {
                self.catch_up(upto);
                let _ = reply.send(());
            }
        }
    }

    /// Takes what is queued, and keeps the batch open up to `batch.wait`
    /// (yielding the CPU, so tasks about to write get to run) while more
    /// arrives.
    fn gather(
        &self,
        rx: &mut mpsc::Receiver<Request>,
        batch: &mut VecDeque<(Work, Reply)>,
        catch_ups: &mut Vec<(i64, oneshot::Sender<()>)>,
    ) {
        let deadline = Instant::now() + self.batch.wait;
        let mut quiet_rounds = 0;
        while batch.len() < self.batch.max {
            let before = batch.len();
            while batch.len() < self.batch.max {
                match rx.try_recv() {
                    Ok(Request::Write { work, reply }) => batch.push_back((work, reply)),
                    Ok(Request::CatchUp { upto, reply }) => catch_ups.push((upto, reply)),
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
            std::thread::yield_now();
        }
    }

    /// Runs requests from the front of `batch` in one transaction until the
    /// batch is done or the transaction is lost (then the rest go next time).
    fn run_batch(&mut self, batch: &mut VecDeque<(Work, Reply)>) {
        let started = Instant::now();
        let now = now_ms();
        if let Err(e) = exec(&self.conn, "BEGIN IMMEDIATE") {
            let failure = Failure::of_sqlite(&e);
            tracing::error!(error = %failure.cause, requests = batch.len(), "could not begin a write transaction");
            let _ = exec(&self.conn, "ROLLBACK");
            self.note(failure.fault, false);
            for (_, reply) in batch.drain(..) {
                let _ = reply.send(Err(failure.error()));
            }
            return;
        }
        let mut done: Vec<Done> = Vec::with_capacity(batch.len());
        let mut events: Vec<NewEvent> = Vec::new();
        let mut tx_lost = None;
        while let Some((work, reply)) = batch.pop_front() {
            if let Err(e) = exec(&self.conn, "SAVEPOINT req") {
                batch.push_front((work, reply));
                tx_lost = Some(Failure::of_sqlite(&e));
                break;
            }
            let outcome = work(&self.conn, now);
            let closed = match &outcome {
                Ok(_) => exec(&self.conn, "RELEASE req"),
                Err(_) => exec(&self.conn, "ROLLBACK TO req")
                    .and_then(|_| exec(&self.conn, "RELEASE req")),
            };
            match outcome {
                Ok((value, new_events, delta)) => {
                    done.push(Done {
                        reply,
                        outcome: Ok((value, delta)),
                        events: new_events.len(),
                    });
                    events.extend(new_events);
                }
                Err(e) => done.push(Done {
                    reply,
                    outcome: Err(e),
                    events: 0,
                }),
            }
            if let Err(e) = closed {
                tx_lost = Some(Failure::of_sqlite(&e));
                break;
            }
            if done.len() >= self.batch.max {
                break;
            }
        }
        let committed = match tx_lost {
            Some(failure) => Err(failure),
            None => self.append_and_commit(now, events),
        };
        match committed {
            Ok(committed) => {
                record_duration("write", started);
                if done.iter().any(|d| d.outcome.is_ok()) {
                    self.note(None, true);
                }
                self.publish(done, committed);
            }
            Err(failure) => {
                let _ = exec(&self.conn, "ROLLBACK");
                self.note(failure.fault, false);
                let failed = done.iter().filter(|d| d.outcome.is_ok()).count();
                tracing::error!(
                    error = %failure.cause,
                    requests = failed,
                    "write batch could not commit; each of its requests is answered `internal`"
                );
                for d in done {
                    let res = match d.outcome {
                        Ok(_) => Err(failure.error()),
                        Err(e) => Err(e),
                    };
                    let _ = d.reply.send(res);
                }
            }
        }
    }

    /// Appends the batch's events and commits.
    fn append_and_commit(
        &mut self,
        now: Millis,
        events: Vec<NewEvent>,
    ) -> Result<Vec<CommittedEvent>, Failure> {
        let committed =
            insert_events(&self.conn, now, events).map_err(|e| Failure::of_store(&e))?;
        exec(&self.conn, "COMMIT").map_err(|e| Failure::of_sqlite(&e))?;
        Ok(committed)
    }

    /// Remembers a write fault (`fault`), or forgets it once a batch that
    /// changed something committed (`cleared`).
    fn note(&self, fault: Option<WriteFault>, cleared: bool) {
        let mut held = self.fault.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = fault {
            if *held != Some(f) {
                tracing::warn!(fault = ?f, "the database refuses writes");
            }
            *held = Some(f);
        } else if cleared && held.take().is_some() {
            tracing::info!("the database takes writes again");
        }
    }

    /// After a commit: counts and events to the log (after any events other
    /// processes committed before ours), then every request's answer.
    fn publish(&mut self, done: Vec<Done>, committed: Vec<CommittedEvent>) {
        let mut delta: CountDelta = Vec::new();
        for d in &done {
            if let Ok((_, dl)) = &d.outcome {
                delta.extend(dl.iter().copied());
            }
        }
        match committed.first().and_then(|e| self.log.gap_before(e.seq)) {
            Some(upto) => {
                // the recount already includes this batch: no delta on top
                self.catch_up(upto);
                self.log.committed(&[], &committed);
            }
            None => self.log.committed(&delta, &committed),
        }
        debug_assert_eq!(
            done.iter().map(|d| d.events).sum::<usize>(),
            committed.len()
        );
        for d in done {
            let _ = d.reply.send(d.outcome.map(|(value, _)| value));
        }
    }

    /// Publishes events other processes committed up to `upto`, after a
    /// recount; both read on this thread's connection, so the future
    /// [`CommitLog::catch_up`] returns never waits and is driven here.
    fn catch_up(&mut self, upto: i64) {
        if upto <= self.log.published() {
            return;
        }
        let counts = match SqliteStore::count_tasks_on(&self.conn) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "could not recount tasks");
                self.log.task_counts()
            }
        };
        let conn = &self.conn;
        let catching_up = self.log.catch_up(counts, upto, |after, upto| {
            std::future::ready(load_events_between_on(conn, after, upto, 1000))
        });
        drive_ready(catching_up);
    }
}

/// Polls a future whose every await is already ready to completion on this
/// thread (no runtime needed: nothing it awaits ever pends).
fn drive_ready<F: std::future::Future<Output = ()>>(fut: F) {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if fut.as_mut().poll(&mut cx).is_ready() {
            return;
        }
        std::thread::yield_now();
    }
}
