//! The storage boundary. The core talks to [`Store`]; each backend keeps its
//! SQL next to the functions that run it. Every state change is one
//! transaction that also appends its events; the events are handed to the
//! [`EventSink`](crate::core::events::EventSink) after commit, in `seq` order.

pub mod sqlite;

use crate::core::error::CoreError;

pub use sqlite::SqliteStore;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The core's rules rejected the change; nothing was written.
    #[error(transparent)]
    Rejected(CoreError),
    /// A stored value could not be read back.
    #[error("unreadable stored value: {0}")]
    Corrupt(String),
    /// The database URL is not usable.
    #[error("{0}")]
    Url(String),
}

impl From<CoreError> for StoreError {
    fn from(e: CoreError) -> Self {
        StoreError::Rejected(e)
    }
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Rejected(e) => e,
            other => {
                tracing::error!(error = %other, "storage failure");
                CoreError::Internal("storage failure; see the server log".into())
            }
        }
    }
}

/// The store the core uses. SQLite is the one backend today; PostgreSQL
/// fills the same surface (its own module) when `database.url` is
/// `postgres://...`.
pub type Store = SqliteStore;

/// Caps the claims one agent may hold; checked in the claiming transaction.
#[derive(Debug, Clone)]
pub struct ClaimGuard {
    /// The claiming agent.
    pub agent: String,
    /// How many claimed tasks it may hold at once, this one included.
    pub max_claims: i64,
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
