//! The coordination core: tasks under leases, agents, durable events,
//! messages, polls, search, insights, alerts, schedules and allocation. No
//! Discord, Twitch, WebSocket or SQL types: front doors parse
//! into [`command::Command`], hand it to [`crate::dispatch`] (which applies
//! the policy and calls the core), and render the [`command::Reply`].

pub mod acks;
pub mod agents;
pub mod alerts;
pub mod allocation;
pub mod announce;
pub mod command;
pub mod error;
pub mod events;
pub mod insights;
pub mod messages;
pub mod model;
pub mod polls;
pub mod reasoning;
pub mod recommend;
pub mod replay;
pub mod retention;
pub mod schedules;
pub mod search;
pub mod stats;
pub mod store;
pub mod sweeper;
pub mod tasks;
pub mod vectors;

use crate::bus::Bus;
use crate::config::{LimitsConfig, PollsConfig, TasksConfig};
use acks::AckBook;
use std::sync::Arc;
use std::time::Instant;
use store::Store;

/// Everything a command needs: the store, the bus (presence and fan-out),
/// the limits and task defaults. Shared by all front doors behind an `Arc`.
pub struct Core {
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// Live connections and event fan-out.
    pub bus: Arc<Bus>,
    /// Task defaults (lease, attempts).
    pub tasks_cfg: TasksConfig,
    /// Input limits (text lengths, claims).
    pub limits: LimitsConfig,
    /// Poll durations and vote weights.
    pub polls_cfg: PollsConfig,
    /// Acknowledgements, kept in memory and flushed in batches.
    pub acks: AckBook,
    /// Every command: roles, rate classes, options.
    pub catalog: Arc<crate::catalog::Catalog>,
    /// The reasoning engine (answers `unavailable` when not configured).
    pub reasoner: Arc<crate::reason::Reasoner>,
    /// The event-table figures the retention loop keeps for `/metrics`.
    pub retention: retention::RetentionState,
    /// The newest insights computed (read by `/metrics` without a query).
    pub latest_insights: insights::LatestInsights,
    /// The embeddings backend, set once at start-up ([`Core::configure_embeddings`]).
    embedder: std::sync::OnceLock<Arc<dyn crate::embed::Embedder>>,
    /// The background indexer's counters (for `/metrics` and the dashboard).
    pub indexer: crate::embed::indexer::IndexerStats,
    /// `[schedules]`, set once at start-up ([`Core::configure_schedules`]).
    schedules_cfg: std::sync::OnceLock<schedules::SchedulesConfig>,
    started: Instant,
}

impl Core {
    /// Builds the core over an opened store and its bus.
    pub fn new(
        store: Arc<dyn Store>,
        bus: Arc<Bus>,
        reasoner: Arc<crate::reason::Reasoner>,
        catalog: Arc<crate::catalog::Catalog>,
        tasks_cfg: TasksConfig,
        limits: LimitsConfig,
        polls_cfg: PollsConfig,
    ) -> Arc<Self> {
        Arc::new(Core {
            store,
            bus,
            reasoner,
            catalog,
            tasks_cfg,
            limits,
            polls_cfg,
            acks: AckBook::default(),
            retention: retention::RetentionState::default(),
            latest_insights: insights::LatestInsights::default(),
            schedules_cfg: std::sync::OnceLock::new(),
            embedder: std::sync::OnceLock::new(),
            indexer: Default::default(),
            started: Instant::now(),
        })
    }

    /// Sets the embeddings backend semantic search and the indexer use;
    /// only the first call counts (start-up). Without one, embeddings are
    /// not configured.
    pub fn configure_embeddings(&self, embedder: Arc<dyn crate::embed::Embedder>) {
        let _ = self.embedder.set(embedder);
    }

    /// The embeddings backend ([`crate::embed::Unconfigured`] when none was set).
    pub fn embedder(&self) -> Arc<dyn crate::embed::Embedder> {
        self.embedder
            .get()
            .cloned()
            .unwrap_or_else(|| Arc::new(crate::embed::Unconfigured))
    }

    /// Seconds since this core started.
    pub fn uptime_s(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Checks a text field against `limits.max_text_chars` (and emptiness).
    pub fn check_text(
        &self,
        field: &str,
        text: &str,
        required: bool,
    ) -> Result<(), error::CoreError> {
        let n = text.chars().count();
        if required && text.trim().is_empty() {
            return Err(error::CoreError::bad_request(format!(
                "`{field}` must not be empty"
            )));
        }
        if n > self.limits.max_text_chars {
            return Err(error::CoreError::bad_request(format!(
                "`{field}` has {n} characters; the limit is {} (limits.max_text_chars)",
                self.limits.max_text_chars
            )));
        }
        Ok(())
    }
}
