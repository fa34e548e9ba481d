//! Announcement marks (`announce_marks`): how far each announcement target
//! was announced, written by the platform's owner only while it still
//! holds the ownership lock, so the next owner resumes there.

use super::leader::OWNER_LOCK;
use super::PgStore;
use crate::clock::now_ms;
use crate::core::store::{OwnerFence, StoreError};

/// Moves a mark up (never back), only when no fence is given or the
/// fence's session (`$4`, its pid) holds the ownership lock of platform
/// `$6` (class `$5`; PostgreSQL shows a two-int advisory key as two oids).
const SET_MARK: &str = "\
    INSERT INTO announce_marks (target, seq, at) SELECT $1, $2, $3 \
    WHERE $4::bigint IS NULL OR EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
        AND granted AND pid = $4 AND objsubid = 2 AND classid::bigint = $5 \
        AND objid::bigint = (hashtext($6)::bigint & 4294967295)) \
    ON CONFLICT (target) DO UPDATE SET seq = GREATEST(announce_marks.seq, EXCLUDED.seq), \
        at = EXCLUDED.at \
    RETURNING 1";

impl PgStore {
    /// The `seq` last announced on `target`.
    pub(super) async fn announce_mark(&self, target: &str) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT seq FROM announce_marks WHERE target = $1")
                .bind(target)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Moves `target`'s mark up to `seq` while `fence` holds; false when
    /// the fence's session no longer owns the platform.
    pub(super) async fn set_announce_mark(
        &self,
        target: &str,
        seq: i64,
        fence: Option<&OwnerFence>,
    ) -> Result<bool, StoreError> {
        let written: Option<i32> = sqlx::query_scalar(SET_MARK)
            .bind(target)
            .bind(seq)
            .bind(now_ms())
            .bind(fence.map(|f| f.session))
            .bind(i64::from(OWNER_LOCK))
            .bind(fence.map(|f| f.platform.as_str()).unwrap_or(""))
            .fetch_optional(&self.pool)
            .await?;
        Ok(written.is_some())
    }
}
