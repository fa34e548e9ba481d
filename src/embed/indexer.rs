//! The background indexer: embeds tasks (title, body, result), direct
//! messages and broadcasts after they are committed, in batches, never
//! inside a write transaction.
//!
//! It is driven by the committed events of the bus (a new task, message or
//! broadcast wakes it; a completed or failed task is embedded again, its
//! result having changed) and by a catch-up scan of the items without a
//! vector of the current model: on start, every [`CATCH_UP_INTERVAL`], and
//! after an event was missed. A restart or a model change therefore
//! re-embeds whatever lacks a vector. When the backend fails the indexer
//! backs off (1 s doubling to 60 s); the backlog grows and nothing is lost,
//! since the scan finds the items again.
//!
//! Its figures are in [`IndexerStats`] (the dashboard) and in `/metrics`
//! ([`BACKLOG`], [`INDEXED_TOTAL`], [`ERRORS_TOTAL`], [`ITEMS_PER_SECOND`]).

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::{counter, describe_counter, describe_gauge, gauge};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::{EmbedError, Embedder};
use crate::core::events::EventKind;
use crate::core::vectors::{ItemRef, ItemText};
use crate::core::Core;

/// Items without a vector of the current model (gauge).
pub const BACKLOG: &str = "swarmbridge_search_index_backlog";
/// Items embedded and stored by the indexer (counter).
pub const INDEXED_TOTAL: &str = "swarmbridge_search_indexed_total";
/// Batches the indexer could not embed or store (counter).
pub const ERRORS_TOTAL: &str = "swarmbridge_search_index_errors_total";
/// Items embedded per second over the last [`RATE_WINDOW`] (gauge).
pub const ITEMS_PER_SECOND: &str = "swarmbridge_search_index_items_per_second";

/// How often the indexer scans for items without a vector even when no
/// event woke it.
pub const CATCH_UP_INTERVAL: Duration = Duration::from_secs(30);
/// The window of the items-per-second figure.
pub const RATE_WINDOW: Duration = Duration::from_secs(30);
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Describes the indexer's metrics to the installed recorder.
pub fn describe_metrics() {
    describe_gauge!(
        BACKLOG,
        "Tasks and messages without a vector of the current embeddings model."
    );
    describe_counter!(
        INDEXED_TOTAL,
        "Tasks and messages embedded and stored by the background indexer."
    );
    describe_counter!(
        ERRORS_TOTAL,
        "Indexer batches that failed (backend or store); the items are retried."
    );
    describe_gauge!(
        ITEMS_PER_SECOND,
        "Items the indexer embedded per second over the last 30 s."
    );
}

/// What the indexer has done, for the dashboard and `/metrics`; shared by
/// the indexer task (writer) and readers.
#[derive(Debug)]
pub struct IndexerStats {
    running: AtomicBool,
    backlog: AtomicI64,
    indexed: AtomicI64,
    embedded_total: AtomicU64,
    errors_total: AtomicU64,
    recent: Mutex<VecDeque<(Instant, u64)>>,
    last_error: Mutex<Option<String>>,
    /// Bumped after every change, for [`IndexerStats::wait_until`].
    changes: tokio::sync::watch::Sender<u64>,
}

impl Default for IndexerStats {
    fn default() -> Self {
        IndexerStats {
            running: AtomicBool::new(false),
            backlog: AtomicI64::new(0),
            indexed: AtomicI64::new(0),
            embedded_total: AtomicU64::new(0),
            errors_total: AtomicU64::new(0),
            recent: Mutex::new(VecDeque::new()),
            last_error: Mutex::new(None),
            changes: tokio::sync::watch::Sender::new(0),
        }
    }
}

/// A copy of [`IndexerStats`] at one moment.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IndexerSnapshot {
    /// True while an indexer runs in this process.
    pub running: bool,
    /// Items with a vector of the current model, at the last scan.
    pub indexed: i64,
    /// Items without one, at the last scan.
    pub backlog: i64,
    /// Items embedded since start.
    pub embedded_total: u64,
    /// Failed batches since start.
    pub errors_total: u64,
    /// Items per second over the last 30 s.
    pub items_per_second: f64,
    /// The last failure, cleared by the next success.
    pub last_error: Option<String>,
}

impl IndexerStats {
    /// Waits until `done` holds for the figures (checked now and after
    /// every change the indexer makes); pair it with a timeout.
    pub async fn wait_until(&self, done: impl Fn(&IndexerSnapshot) -> bool) {
        let mut rx = self.changes.subscribe();
        loop {
            if done(&self.snapshot()) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    fn bump(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// The figures now.
    pub fn snapshot(&self) -> IndexerSnapshot {
        IndexerSnapshot {
            running: self.running.load(Ordering::Relaxed),
            indexed: self.indexed.load(Ordering::Relaxed),
            backlog: self.backlog.load(Ordering::Relaxed),
            embedded_total: self.embedded_total.load(Ordering::Relaxed),
            errors_total: self.errors_total.load(Ordering::Relaxed),
            items_per_second: self.items_per_second(),
            last_error: lock(&self.last_error).clone(),
        }
    }

    fn items_per_second(&self) -> f64 {
        let mut recent = lock(&self.recent);
        let now = Instant::now();
        while recent
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > RATE_WINDOW)
        {
            recent.pop_front();
        }
        let items: u64 = recent.iter().map(|(_, n)| n).sum();
        items as f64 / RATE_WINDOW.as_secs_f64()
    }

    fn embedded(&self, n: usize) {
        self.embedded_total.fetch_add(n as u64, Ordering::Relaxed);
        lock(&self.recent).push_back((Instant::now(), n as u64));
        *lock(&self.last_error) = None;
        counter!(INDEXED_TOTAL).increment(n as u64);
        gauge!(ITEMS_PER_SECOND).set(self.items_per_second());
        self.bump();
    }

    fn failed(&self, why: String) {
        self.errors_total.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_error) = Some(why);
        counter!(ERRORS_TOTAL).increment(1);
        self.bump();
    }

    fn backlog(&self, indexed: i64, missing: i64) {
        self.indexed.store(indexed, Ordering::Relaxed);
        self.backlog.store(missing, Ordering::Relaxed);
        gauge!(BACKLOG).set(missing as f64);
        gauge!(ITEMS_PER_SECOND).set(self.items_per_second());
        self.bump();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why one pass of the indexer stopped early.
#[derive(Debug)]
enum PassError {
    /// The embeddings backend failed; back off.
    Embed(EmbedError),
    /// The store failed; back off.
    Store(String),
    /// Shutdown.
    Stopped,
}

/// One indexer over the core's store and embedder.
struct Indexer {
    core: Arc<Core>,
    embedder: Arc<dyn Embedder>,
    batch_size: usize,
    /// Tasks whose text changed (a result) since their vector was made.
    changed: BTreeSet<ItemRef>,
    /// Items the backend refused as input (HTTP 400, 413, 422): skipped
    /// until restart so that one of them cannot stall the rest.
    refused: HashSet<ItemRef>,
}

impl Indexer {
    /// Embeds and stores one batch; a batch the backend refuses as input is
    /// split so only the refused items are left out.
    async fn embed_batch(&mut self, batch: Vec<ItemText>) -> Result<(), PassError> {
        let texts: Vec<String> = batch.iter().map(|t| text_to_embed(&t.text)).collect();
        match self.embedder.embed(&texts).await {
            Ok(vectors) => {
                let items: Vec<(ItemRef, Vec<f32>)> =
                    batch.iter().map(|t| t.item).zip(vectors).collect();
                let n = items.len();
                self.core
                    .store
                    .upsert_vectors(self.embedder.model(), items)
                    .await
                    .map_err(|e| PassError::Store(e.to_string()))?;
                self.core.indexer.embedded(n);
                Ok(())
            }
            Err(EmbedError::Backend {
                status: Some(400 | 413 | 422),
                message,
            }) if batch.len() == 1 => {
                tracing::warn!(item = ?batch[0].item, %message, "the embeddings backend refused an item; it is skipped until restart");
                self.core.indexer.failed(message);
                self.refused.insert(batch[0].item);
                Ok(())
            }
            Err(EmbedError::Backend {
                status: Some(400 | 413 | 422),
                ..
            }) => {
                for one in batch {
                    Box::pin(self.embed_batch(vec![one])).await?;
                }
                Ok(())
            }
            Err(e) => Err(PassError::Embed(e)),
        }
    }

    /// Embeds the changed tasks, then every item without a vector, batch
    /// after batch, until none is left.
    async fn pass(&mut self, stop: &CancellationToken) -> Result<(), PassError> {
        while !self.changed.is_empty() {
            let take: Vec<ItemRef> = self.changed.iter().take(self.batch_size).copied().collect();
            let texts = self
                .core
                .store
                .item_texts(&take)
                .await
                .map_err(|e| PassError::Store(e.to_string()))?;
            if !texts.is_empty() {
                self.guarded(stop, texts).await?;
            }
            for item in take {
                self.changed.remove(&item);
            }
        }
        loop {
            let want = (self.batch_size + self.refused.len()) as i64;
            let mut batch = self
                .core
                .store
                .unembedded(self.embedder.model(), want)
                .await
                .map_err(|e| PassError::Store(e.to_string()))?;
            let fetched = batch.len();
            batch.retain(|t| !self.refused.contains(&t.item));
            batch.truncate(self.batch_size);
            if batch.is_empty() {
                return Ok(());
            }
            self.guarded(stop, batch).await?;
            if (fetched as i64) < want {
                return Ok(());
            }
        }
    }

    async fn guarded(
        &mut self,
        stop: &CancellationToken,
        batch: Vec<ItemText>,
    ) -> Result<(), PassError> {
        tokio::select! {
            _ = stop.cancelled() => Err(PassError::Stopped),
            r = self.embed_batch(batch) => r,
        }
    }

    async fn refresh_backlog(&self) {
        match self.core.store.vector_backlog(self.embedder.model()).await {
            Ok(b) => self.core.indexer.backlog(b.indexed, b.missing),
            Err(e) => tracing::warn!(error = %e, "indexer: cannot count the backlog"),
        }
    }
}

/// A text as it is sent: a blank text (never written by the core, but
/// possible in an old database) becomes a placeholder, since backends
/// refuse empty input.
fn text_to_embed(text: &str) -> String {
    if text.trim().is_empty() {
        "(empty)".to_owned()
    } else {
        text.to_owned()
    }
}

/// What a committed event asks of the indexer.
fn wake_for(kind: EventKind, data: &str) -> Option<Option<ItemRef>> {
    match kind {
        EventKind::Message | EventKind::Broadcast | EventKind::TaskCreated => Some(None),
        EventKind::TaskCompleted | EventKind::TaskFailed => {
            let v: serde_json::Value = serde_json::from_str(data).ok()?;
            Some(v["task"]["id"].as_i64().map(ItemRef::task))
        }
        _ => None,
    }
}

/// Runs the indexer until `stop`: nothing when embeddings are not
/// configured. Owned by the server, which cancels `stop` on shutdown.
pub async fn run_indexer(core: Arc<Core>, batch_size: usize, stop: CancellationToken) {
    let embedder = core.embedder();
    if !embedder.is_configured() {
        return;
    }
    let mut events = core.bus.observe();
    let mut indexer = Indexer {
        core: core.clone(),
        embedder,
        batch_size: batch_size.max(1),
        changed: BTreeSet::new(),
        refused: HashSet::new(),
    };
    core.indexer.running.store(true, Ordering::Relaxed);
    core.indexer.bump();
    tracing::info!(model = indexer.embedder.model(), "search indexer started");
    let mut backoff: Option<Duration> = None;
    loop {
        let outcome = indexer.pass(&stop).await;
        indexer.refresh_backlog().await;
        let wait = match outcome {
            Ok(()) => {
                backoff = None;
                None
            }
            Err(PassError::Stopped) => break,
            Err(PassError::Embed(e)) => {
                indexer.core.indexer.failed(e.to_string());
                let next = backoff.map_or(BACKOFF_FIRST, |b| (b * 2).min(BACKOFF_MAX));
                let next = e
                    .retry_after_ms()
                    .map_or(next, |ms| next.max(Duration::from_millis(ms)));
                tracing::warn!(error = %e, retry_in_ms = next.as_millis() as u64, "search indexer: embeddings failed; backing off");
                backoff = Some(next);
                backoff
            }
            Err(PassError::Store(e)) => {
                indexer.core.indexer.failed(e.clone());
                let next = backoff.map_or(BACKOFF_FIRST, |b| (b * 2).min(BACKOFF_MAX));
                tracing::warn!(error = %e, retry_in_ms = next.as_millis() as u64, "search indexer: the store failed; backing off");
                backoff = Some(next);
                backoff
            }
        };
        // Wait for work: an event (not while backing off), the catch-up
        // interval, the end of the backoff, or shutdown.
        let deadline = tokio::time::Instant::now() + wait.unwrap_or(CATCH_UP_INTERVAL);
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    core.indexer.running.store(false, Ordering::Relaxed);
                    core.indexer.bump();
                    return;
                }
                _ = tokio::time::sleep_until(deadline) => break,
                ev = events.recv() => match ev {
                    Ok(ev) => {
                        if let Some(item) = wake_for(ev.kind, &ev.data) {
                            indexer.changed.extend(item);
                            if wait.is_none() {
                                break;
                            }
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        if wait.is_none() {
                            break;
                        }
                    }
                    Err(RecvError::Closed) => {
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            _ = tokio::time::sleep_until(deadline) => {}
                        }
                        break;
                    }
                },
            }
        }
    }
    core.indexer.running.store(false, Ordering::Relaxed);
    core.indexer.bump();
    tracing::info!("search indexer stopped");
}

/// Rebuilds every vector: checks that the backend answers, removes every
/// vector, then embeds every task and message again with the configured
/// model, batch after batch. Returns how many items were embedded.
/// `swarmbridge search reindex` calls it; a running server's indexer
/// finishes whatever an interrupted rebuild leaves out.
pub async fn reindex(core: Arc<Core>, batch_size: usize) -> Result<u64, String> {
    let embedder = core.embedder();
    if !embedder.is_configured() {
        return Err(EmbedError::NotConfigured.to_string());
    }
    // a backend that is down is found before any vector is removed
    embedder
        .embed(&["reindex probe".to_owned()])
        .await
        .map_err(|e| e.to_string())?;
    core.store
        .clear_vectors()
        .await
        .map_err(|e| format!("cannot remove the old vectors: {e}"))?;
    let mut indexer = Indexer {
        core: core.clone(),
        embedder,
        batch_size: batch_size.max(1),
        changed: BTreeSet::new(),
        refused: HashSet::new(),
    };
    let stop = CancellationToken::new();
    match indexer.pass(&stop).await {
        Ok(()) | Err(PassError::Stopped) => {}
        Err(PassError::Embed(e)) => return Err(e.to_string()),
        Err(PassError::Store(e)) => return Err(e),
    }
    if !indexer.refused.is_empty() {
        return Err(format!(
            "the embeddings backend refused {} item(s); see the log",
            indexer.refused.len()
        ));
    }
    Ok(core.indexer.snapshot().embedded_total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_items_wake_the_indexer_and_finished_tasks_are_embedded_again() {
        assert_eq!(wake_for(EventKind::Message, "{}"), Some(None));
        assert_eq!(wake_for(EventKind::TaskCreated, "{}"), Some(None));
        assert_eq!(
            wake_for(EventKind::TaskCompleted, r#"{"task":{"id":7}}"#),
            Some(Some(ItemRef::task(7)))
        );
        assert_eq!(wake_for(EventKind::TaskClaimed, "{}"), None);
    }

    #[test]
    fn blank_texts_are_sent_as_a_placeholder() {
        assert_eq!(text_to_embed(" \n"), "(empty)");
        assert_eq!(text_to_embed("x"), "x");
    }
}
