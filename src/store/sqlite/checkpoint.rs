//! WAL checkpoints off the writer's path. With SQLite's automatic
//! checkpoint, the commit that crosses 1,000 WAL pages copies them into the
//! database file and syncs it, inside the writer's turn: every request of
//! that batch waits for it. The writer connection turns the automatic
//! checkpoint off and this thread runs a `PASSIVE` checkpoint (it never
//! waits for, nor blocks, the writer or readers) on its own connection
//! every [`EVERY`].

use crate::core::store::StoreError;
use std::sync::mpsc;
use std::time::Duration;

/// How often the WAL is checkpointed.
pub(super) const EVERY: Duration = Duration::from_millis(500);

/// The checkpointing thread; it stops when this is dropped (with the store).
pub(super) struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    /// Starts checkpointing the WAL of the database `conn` is open on.
    pub(super) fn start(conn: rusqlite::Connection) -> Result<Checkpointer, StoreError> {
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "WAL checkpoint failed; the next one retries");
                    }
                }
            })
            .map_err(|e| StoreError::Db(Box::new(e)))?;
        Ok(Checkpointer { _stop: stop })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn wal_pages_reach_the_database_file_without_the_writer_checkpointing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cp.db");
        let writer = rusqlite::Connection::open(&path).expect("open");
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; \
                 CREATE TABLE t (b BLOB); \
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 256) \
                 INSERT INTO t SELECT zeroblob(4096) FROM n;",
            )
            .expect("write a megabyte into the WAL");
        let db_len = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(db_len() < 1 << 20, "nothing checkpointed yet");
        let _cp =
            Checkpointer::start(rusqlite::Connection::open(&path).expect("open")).expect("start");
        let deadline = Instant::now() + Duration::from_secs(10);
        while db_len() < 1 << 20 {
            assert!(Instant::now() < deadline, "no checkpoint within 10 s");
            std::thread::park_timeout(Duration::from_millis(20));
        }
        drop(writer);
    }
}
