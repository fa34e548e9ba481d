//! Vectors for semantic search on PostgreSQL (migration 0010): the
//! `item_vectors` table holds each vector as little-endian f32 in a
//! `bytea`; the rows that pass the same filters as full-text search (state,
//! agent, since, the reader's privacy rule) are read and ranked here by
//! exact cosine ([`crate::embed::rank::cosine_top_k`]). With pgvector
//! installed the column could become `vector(N)` and the ranking an
//! `ORDER BY vector <=> $1` in SQL (docs/search.md).

use super::PgStore;
use crate::core::search::{HitKind, SearchHit, SearchQuery};
use crate::core::store::StoreError;
use crate::core::vectors::{
    check_dims, from_blob, ids_by_kind, to_blob, wrong_dims, ItemRef, ItemText, VectorBacklog,
    VectorHit, VectorStore,
};
use crate::embed::rank::cosine_top_k;
use async_trait::async_trait;
use sqlx::Row;

/// The dimensions of the vectors stored for `model`, if any.
async fn model_dims<'e, E>(exec: E, model: &str) -> Result<Option<usize>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    let d: Option<i32> =
        sqlx::query_scalar("SELECT dims FROM item_vectors WHERE model = $1 LIMIT 1")
            .bind(model)
            .fetch_optional(exec)
            .await?;
    Ok(d.map(|d| d.max(0) as usize))
}

impl PgStore {
    async fn nearest_of_kind(
        &self,
        kind: HitKind,
        model: &str,
        query: &[f32],
        dims: usize,
        q: &SearchQuery,
    ) -> Result<Vec<VectorHit>, StoreError> {
        let sql = match kind {
            HitKind::Task => {
                "SELECT v.item_id, v.vector FROM item_vectors v JOIN tasks t ON t.id = v.item_id \
                 WHERE v.kind = 'task' AND v.model = $1 AND v.dims = $2 \
                 AND ($3::text IS NULL OR t.state = $3) \
                 AND ($4::text IS NULL OR t.assignee = $4 OR t.created_by = $4) \
                 AND ($5::bigint IS NULL OR t.created_at >= $5) \
                 AND ($6::text IS NULL OR TRUE) \
                 ORDER BY v.item_id"
            }
            HitKind::Message => {
                "SELECT v.item_id, v.vector FROM item_vectors v JOIN messages m ON m.id = v.item_id \
                 WHERE v.kind = 'message' AND v.model = $1 AND v.dims = $2 \
                 AND $3::text IS NULL \
                 AND ($4::text IS NULL OR m.sender = $4 OR m.recipient = $4) \
                 AND ($5::bigint IS NULL OR m.at >= $5) \
                 AND ($6::text IS NULL OR m.recipient IS NULL OR m.sender = $6 OR m.recipient = $6) \
                 ORDER BY v.item_id"
            }
        };
        let rows = sqlx::query(sql)
            .bind(model)
            .bind(dims as i32)
            .bind(q.state.map(|s| s.as_str()))
            .bind(&q.agent)
            .bind(q.since)
            .bind(&q.reader)
            .fetch_all(&self.pool)
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: i64 = r.try_get("item_id")?;
            let blob: Vec<u8> = r.try_get("vector")?;
            let v = from_blob(&blob)
                .ok_or_else(|| StoreError::Corrupt(format!("vector of {} {id}", kind.as_str())))?;
            items.push((id, v));
        }
        let k = usize::try_from(q.limit).unwrap_or(0);
        Ok(
            cosine_top_k(query, items.iter().map(|(id, v)| (*id, v.as_slice())), k)
                .into_iter()
                .map(|h| VectorHit {
                    item: ItemRef { kind, id: h.key },
                    similarity: f64::from(h.score),
                })
                .collect(),
        )
    }
}

/// An `ItemText` from a row of `kind`, `id` and `text`.
fn item_text(r: &sqlx::postgres::PgRow) -> Result<ItemText, StoreError> {
    ItemText::from_row(
        &r.try_get::<String, _>("kind")?,
        r.try_get("id")?,
        r.try_get("text")?,
    )
}

#[async_trait]
impl VectorStore for PgStore {
    async fn upsert_vectors(
        &self,
        model: &str,
        items: Vec<(ItemRef, Vec<f32>)>,
    ) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        // One writer of a model's vectors at a time, so two batches cannot
        // store two lengths for one model.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('item_vectors:' || $1))")
            .bind(model)
            .execute(&mut *tx)
            .await?;
        let stored = model_dims(&mut *tx, model).await?;
        let dims = check_dims(model, stored, &items)?;
        let now = crate::clock::now_ms();
        for (item, v) in &items {
            sqlx::query(
                "INSERT INTO item_vectors (kind, item_id, model, dims, vector, embedded_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (kind, item_id) DO UPDATE SET model = $3, dims = $4, vector = $5, \
                 embedded_at = $6",
            )
            .bind(item.kind.as_str())
            .bind(item.id)
            .bind(model)
            .bind(dims as i32)
            .bind(to_blob(v))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn delete_vectors(&self, items: Vec<ItemRef>) -> Result<u64, StoreError> {
        let mut n = 0;
        for item in &items {
            n += sqlx::query("DELETE FROM item_vectors WHERE kind = $1 AND item_id = $2")
                .bind(item.kind.as_str())
                .bind(item.id)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        Ok(n)
    }

    async fn clear_vectors(&self) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM item_vectors")
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn nearest_vectors(
        &self,
        model: &str,
        query: &[f32],
        q: &SearchQuery,
    ) -> Result<Vec<VectorHit>, StoreError> {
        let Some(dims) = model_dims(&self.pool, model).await? else {
            return Ok(Vec::new());
        };
        if dims != query.len() {
            return Err(wrong_dims(model, dims, query.len()));
        }
        let mut hits = self
            .nearest_of_kind(HitKind::Task, model, query, dims, q)
            .await?;
        hits.extend(
            self.nearest_of_kind(HitKind::Message, model, query, dims, q)
                .await?,
        );
        Ok(hits)
    }

    async fn unembedded(&self, model: &str, limit: i64) -> Result<Vec<ItemText>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, id, text FROM ( \
               SELECT 'task' AS kind, t.id AS id, \
                 concat_ws(E'\\n', t.title, t.body, t.result) AS text, \
                 t.created_at AS at FROM tasks t \
               WHERE NOT EXISTS (SELECT 1 FROM item_vectors v \
                 WHERE v.kind = 'task' AND v.item_id = t.id AND v.model = $1) \
               UNION ALL \
               SELECT 'message', m.id, m.text, m.at FROM messages m \
               WHERE NOT EXISTS (SELECT 1 FROM item_vectors v \
                 WHERE v.kind = 'message' AND v.item_id = m.id AND v.model = $1)) AS u \
             ORDER BY at, kind, id LIMIT $2",
        )
        .bind(model)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(item_text).collect()
    }

    async fn describe_items(&self, items: &[ItemRef]) -> Result<Vec<SearchHit>, StoreError> {
        let (tasks, messages) = ids_by_kind(items);
        let mut hits = Vec::with_capacity(items.len());
        if !tasks.is_empty() {
            let rows = sqlx::query("SELECT id, title, body, result FROM tasks WHERE id = ANY($1)")
                .bind(&tasks)
                .fetch_all(&self.pool)
                .await?;
            for r in &rows {
                hits.push(SearchHit::unranked_task(
                    r.try_get("id")?,
                    r.try_get("title")?,
                    r.try_get("body")?,
                    r.try_get("result")?,
                ));
            }
        }
        if !messages.is_empty() {
            let rows = sqlx::query(
                "SELECT id, sender, recipient, topic, text FROM messages WHERE id = ANY($1)",
            )
            .bind(&messages)
            .fetch_all(&self.pool)
            .await?;
            for r in &rows {
                let text: String = r.try_get("text")?;
                hits.push(SearchHit::unranked_message(
                    r.try_get("id")?,
                    r.try_get("sender")?,
                    r.try_get("recipient")?,
                    r.try_get("topic")?,
                    &text,
                ));
            }
        }
        Ok(hits)
    }

    async fn item_texts(&self, items: &[ItemRef]) -> Result<Vec<ItemText>, StoreError> {
        let (tasks, messages) = ids_by_kind(items);
        let rows = sqlx::query(
            "SELECT 'task' AS kind, t.id AS id, \
               concat_ws(E'\\n', t.title, t.body, t.result) AS text \
             FROM tasks t WHERE t.id = ANY($1) \
             UNION ALL \
             SELECT 'message', m.id, m.text FROM messages m WHERE m.id = ANY($2)",
        )
        .bind(&tasks)
        .bind(&messages)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(item_text).collect()
    }

    async fn vector_backlog(&self, model: &str) -> Result<VectorBacklog, StoreError> {
        let row = sqlx::query(
            "SELECT \
               (SELECT COUNT(*) FROM item_vectors v JOIN tasks t ON v.kind = 'task' \
                  AND t.id = v.item_id WHERE v.model = $1) + \
               (SELECT COUNT(*) FROM item_vectors v JOIN messages m ON v.kind = 'message' \
                  AND m.id = v.item_id WHERE v.model = $1) AS indexed, \
               (SELECT COUNT(*) FROM tasks) + (SELECT COUNT(*) FROM messages) AS total",
        )
        .bind(model)
        .fetch_one(&self.pool)
        .await?;
        let indexed: i64 = row.try_get("indexed")?;
        let total: i64 = row.try_get("total")?;
        Ok(VectorBacklog {
            indexed,
            missing: (total - indexed).max(0),
        })
    }
}
