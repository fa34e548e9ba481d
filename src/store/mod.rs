//! The storage adapters behind the core's [`Store`](crate::core::store::Store)
//! port. This is the one place that chooses a backend (from the database
//! URL) and the only module that names sqlx.

pub mod postgres;
pub mod sqlite;

use crate::core::events::EventSink;
use std::sync::Arc;
use std::time::Duration;

pub use crate::core::store::{ClaimGuard, MessageRecord, Store, StoreError};

/// How the writer groups concurrent writes into one transaction
/// (`database.batch_max`, `database.batch_wait_us`).
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    /// Most requests in one transaction.
    pub max: usize,
    /// How long the writer keeps a batch open for more requests once it has
    /// the first one; zero takes only what is already queued.
    pub wait: Duration,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        BatchPolicy {
            max: 256,
            wait: Duration::from_micros(100),
        }
    }
}

/// Which backend a database URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite path or `sqlite:` URL.
    Sqlite,
    /// A `postgres://` or `postgresql://` URL.
    Postgres,
}

impl Backend {
    /// The backend `url` selects.
    pub fn of_url(url: &str) -> Backend {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// Opens (creating and migrating when needed) the database `url` names,
/// publishing committed events to `sink`. `read_connections` sizes
/// SQLite's read pool, `pool_size` PostgreSQL's pool.
pub async fn open(
    url: &str,
    read_connections: u32,
    pool_size: u32,
    batch: BatchPolicy,
    sink: Arc<dyn EventSink>,
) -> Result<Arc<dyn Store>, StoreError> {
    match Backend::of_url(url) {
        Backend::Sqlite => Ok(Arc::new(
            sqlite::SqliteStore::open(url, read_connections, batch, sink).await?,
        )),
        Backend::Postgres => Ok(Arc::new(
            postgres::PgStore::open(url, pool_size, batch, sink).await?,
        )),
    }
}

/// A fresh, empty, private in-memory store (SQLite `:memory:` with a shared
/// cache between its writer and readers), for tests of the core.
pub async fn open_in_memory(sink: Arc<dyn EventSink>) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(
        sqlite::SqliteStore::open_in_memory(BatchPolicy::default(), sink).await?,
    ))
}

/// Applies the migrations only (what `swarmbridge migrate` does); returns
/// how many were applied now.
pub async fn migrate_only(url: &str) -> Result<usize, StoreError> {
    match Backend::of_url(url) {
        Backend::Sqlite => sqlite::SqliteStore::migrate_only(url).await,
        Backend::Postgres => postgres::PgStore::migrate_only(url).await,
    }
}
