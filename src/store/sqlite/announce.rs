//! Announcement marks (`announce_marks`): how far each announcement target
//! was announced, so a restart resumes there.

use super::SqliteStore;
use crate::core::store::StoreError;
use rusqlite::params;

impl SqliteStore {
    /// The `seq` last announced on `target`.
    pub(super) async fn announce_mark(&self, target: &str) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT seq FROM announce_marks WHERE target = ?1")
                .bind(target)
                .fetch_optional(&self.readers)
                .await?,
        )
    }

    /// Moves `target`'s mark up to `seq` (never back).
    pub(super) async fn set_announce_mark(
        &self,
        target: &str,
        seq: i64,
    ) -> Result<bool, StoreError> {
        let target = target.to_string();
        self.writer
            .write(move |conn, now| {
                conn.prepare_cached(
                    "INSERT INTO announce_marks (target, seq, at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (target) DO UPDATE SET seq = MAX(seq, excluded.seq), \
                     at = excluded.at",
                )?
                .execute(params![target, seq, now])?;
                Ok((true, vec![], vec![]))
            })
            .await
    }
}
