//! The coordination core: tasks under leases, agents, durable events,
//! messages. No Discord, Twitch, WebSocket or SQL types: front doors parse
//! into [`command::Command`], [`Core::execute`] applies it, and they render
//! the [`command::Reply`].

pub mod acks;
pub mod agents;
pub mod command;
pub mod error;
pub mod events;
pub mod messages;
pub mod model;
pub mod reasoning;
pub mod stats;
pub mod sweeper;
pub mod tasks;

use crate::bus::Bus;
use crate::config::{LimitsConfig, TasksConfig};
use crate::store::Store;
use acks::AckBook;
use std::sync::Arc;
use std::time::Instant;

/// Everything a command needs: the store, the bus (presence and fan-out),
/// the limits and task defaults. Shared by all front doors behind an `Arc`.
pub struct Core {
    /// Durable state.
    pub store: Arc<Store>,
    /// Live connections and event fan-out.
    pub bus: Arc<Bus>,
    /// Task defaults (lease, attempts).
    pub tasks_cfg: TasksConfig,
    /// Input limits (text lengths, claims).
    pub limits: LimitsConfig,
    /// Acknowledgements, kept in memory and flushed in batches.
    pub acks: AckBook,
    /// The reasoning engine (answers `unavailable` when not configured).
    pub reasoner: Arc<crate::reason::Reasoner>,
    /// Commands served and refused per platform, open event streams.
    pub front_doors: crate::observe::FrontDoorStats,
    started: Instant,
}

impl Core {
    /// Builds the core over an opened store and its bus.
    pub fn new(
        store: Arc<Store>,
        bus: Arc<Bus>,
        reasoner: Arc<crate::reason::Reasoner>,
        tasks_cfg: TasksConfig,
        limits: LimitsConfig,
    ) -> Arc<Self> {
        Arc::new(Core {
            store,
            bus,
            reasoner,
            tasks_cfg,
            limits,
            acks: AckBook::default(),
            front_doors: Default::default(),
            started: Instant::now(),
        })
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
