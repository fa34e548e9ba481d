//! The reasoning answer cache (`reason_cache`).

use super::SqliteStore;
use crate::clock::now_ms;
use crate::reason::ReasonCache;
use futures_util::future::BoxFuture;
use rusqlite::params;
use sqlx::Row;

/// The reasoning cache lives in `reason_cache`. A storage failure is logged
/// and counts as a miss (or is dropped): the cache never fails an answer.
impl ReasonCache for SqliteStore {
    fn get(
        &self,
        key: &crate::reason::CacheKey,
    ) -> BoxFuture<'_, Option<crate::reason::CachedAnswer>> {
        let digest = key.digest.clone();
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT text, confidence FROM reason_cache WHERE digest = ?1 AND expires_at > ?2",
            )
            .bind(&digest)
            .bind(now_ms())
            .fetch_optional(&self.readers)
            .await;
            match row {
                Ok(Some(r)) => Some(crate::reason::CachedAnswer {
                    text: r.try_get("text").ok()?,
                    confidence: r.try_get("confidence").ok()?,
                }),
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "reasoning cache read failed");
                    None
                }
            }
        })
    }

    fn put(
        &self,
        key: &crate::reason::CacheKey,
        answer: &crate::reason::CachedAnswer,
        ttl_s: u64,
    ) -> BoxFuture<'_, ()> {
        let key = key.clone();
        let answer = answer.clone();
        Box::pin(async move {
            let res = self
                .writer
                .write(move |conn, now| {
                    conn.prepare_cached(
                        "INSERT INTO reason_cache (digest, model, mode, prompt, text, \
                         confidence, created_at, expires_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                         ON CONFLICT (digest) DO UPDATE SET text = ?5, confidence = ?6, \
                         created_at = ?7, expires_at = ?8",
                    )?
                    .execute(params![
                        key.digest,
                        key.model,
                        key.mode,
                        key.prompt,
                        answer.text,
                        answer.confidence,
                        now,
                        now + (ttl_s as i64).saturating_mul(1000)
                    ])?;
                    conn.prepare_cached("DELETE FROM reason_cache WHERE expires_at <= ?1")?
                        .execute(params![now])?;
                    Ok(((), vec![], vec![]))
                })
                .await;
            if let Err(e) = res {
                tracing::warn!(error = %e, "reasoning cache write failed");
            }
        })
    }
}
