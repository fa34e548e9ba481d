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
/// (`database.batch_max`, `database.batch_wait_us`), and how long SQLite
/// waits for a lock another process holds (`database.busy_timeout_ms`).
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    /// Most requests in one transaction.
    pub max: usize,
    /// How long the writer keeps a batch open for more requests once it has
    /// the first one; zero takes only what is already queued.
    pub wait: Duration,
    /// PostgreSQL: batches run at once, each on its own connection
    /// (`database.writers`); SQLite always runs one.
    pub writers: usize,
    /// SQLite: how long a statement waits for a lock held by another
    /// connection or process before it fails (then the caller gets
    /// `unavailable`). PostgreSQL ignores it.
    pub busy_timeout: Duration,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        BatchPolicy {
            max: 256,
            wait: Duration::from_micros(100),
            writers: 2,
            busy_timeout: Duration::from_secs(10),
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

/// True when `url` names a database several instances may share
/// (PostgreSQL); platform connections then need an owner
/// ([`while_platform_owner`]).
pub fn is_shared(url: &str) -> bool {
    Backend::of_url(url) == Backend::Postgres
}

/// What a platform's runner gets each time this instance becomes the
/// owner of the platform connection.
#[derive(Debug, Clone)]
pub struct PlatformOwnership {
    /// Cancelled when ownership ends (the database session holding it
    /// failed) or at shutdown; the runner must then stop using the
    /// platform connection.
    pub stop: tokio_util::sync::CancellationToken,
    /// True when another owner may have used the platform account moments
    /// ago: this instance had to wait for ownership (another instance held
    /// it) or held it before and lost it. Budgets kept per account (Twitch's
    /// lines per window) must then be taken as spent for one window.
    pub taken_over: bool,
    /// On a shared database, the session holding ownership: writes that
    /// must only land while this instance owns the platform (announcement
    /// marks) are fenced by it. None on SQLite (one server per file).
    pub fence: Option<crate::core::store::OwnerFence>,
}

/// Runs `term` while this instance owns `platform`'s connection (the
/// Discord gateway, the Twitch login), until `stop`. On PostgreSQL one
/// instance at a time owns it (an advisory lock on a dedicated
/// connection, see [`postgres::leader`]) and another takes over within a
/// few seconds of the owner dying; on SQLite (one server per file) this
/// instance always owns it. `term` gets a [`PlatformOwnership`] whose token
/// is cancelled when ownership ends; it must stop using the connection then.
pub async fn while_platform_owner<F, Fut>(
    url: String,
    platform: &'static str,
    stop: tokio_util::sync::CancellationToken,
    term: F,
) where
    F: Fn(PlatformOwnership) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    match Backend::of_url(&url) {
        Backend::Sqlite => {
            term(PlatformOwnership {
                stop,
                taken_over: false,
                fence: None,
            })
            .await
        }
        Backend::Postgres => postgres::leader::while_owner(url, platform, stop, term).await,
    }
}

/// Applies the migrations only (what `swarmbridge migrate` does); returns
/// how many were applied now.
pub async fn migrate_only(url: &str) -> Result<usize, StoreError> {
    match Backend::of_url(url) {
        Backend::Sqlite => sqlite::SqliteStore::migrate_only(url).await,
        Backend::Postgres => postgres::PgStore::migrate_only(url).await,
    }
}
