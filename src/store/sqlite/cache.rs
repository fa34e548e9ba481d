//! The reasoning answer cache (`reason_cache`).

use super::SqliteStore;
use crate::clock::now_ms;
use crate::reason::ReasonCache;
use futures_util::future::BoxFuture;
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
                    Box::pin(async move {
                        sqlx::query(
                            "INSERT INTO reason_cache (digest, model, mode, prompt, text, \
                             confidence, created_at, expires_at) \
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                             ON CONFLICT (digest) DO UPDATE SET text = ?5, confidence = ?6, \
                             created_at = ?7, expires_at = ?8",
                        )
                        .bind(&key.digest)
                        .bind(&key.model)
                        .bind(&key.mode)
                        .bind(&key.prompt)
                        .bind(&answer.text)
                        .bind(answer.confidence)
                        .bind(now)
                        .bind(now + (ttl_s as i64).saturating_mul(1000))
                        .execute(&mut *conn)
                        .await?;
                        sqlx::query("DELETE FROM reason_cache WHERE expires_at <= ?1")
                            .bind(now)
                            .execute(&mut *conn)
                            .await?;
                        Ok(((), vec![], vec![]))
                    })
                })
                .await;
            if let Err(e) = res {
                tracing::warn!(error = %e, "reasoning cache write failed");
            }
        })
    }
}
