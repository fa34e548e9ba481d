//! Vectors for semantic search on SQLite (migration 0010): the
//! `item_vectors` table in the same file, ranked by sqlite-vec's
//! `vec_distance_cosine` in SQL, after the same filters as full-text search
//! (state, agent, since, the reader's privacy rule). Every allowed row is
//! scored, so the ranking is exact.

use super::SqliteStore;
use crate::core::search::{HitKind, SearchHit, SearchQuery};
use crate::core::store::StoreError;
use crate::core::vectors::{
    check_dims, ids_by_kind, to_blob, wrong_dims, ItemRef, ItemText, VectorBacklog, VectorHit,
    VectorStore,
};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use sqlx::{Row, SqlitePool};
use std::sync::Once;

/// Registers sqlite-vec with every SQLite connection opened from now on in
/// this process (`sqlite3_auto_extension`); the store calls it before it
/// opens its first connection. Idempotent.
pub(super) fn register_sqlite_vec() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        type Init = unsafe extern "C" fn(
            *mut libsqlite3_sys::sqlite3,
            *mut *mut std::os::raw::c_char,
            *const libsqlite3_sys::sqlite3_api_routines,
        ) -> std::os::raw::c_int;
        // SAFETY: `sqlite3_vec_init` is sqlite-vec's extension entry point,
        // whose C signature is exactly `Init` (the crate declares it without
        // arguments); sqlite-vec is compiled against the same libsqlite3-sys
        // (pinned in Cargo.toml), and registering an auto extension is
        // thread-safe in SQLite.
        let rc = unsafe {
            let init: Init =
                std::mem::transmute::<*const (), Init>(sqlite_vec::sqlite3_vec_init as *const ());
            libsqlite3_sys::sqlite3_auto_extension(Some(init))
        };
        if rc != libsqlite3_sys::SQLITE_OK {
            tracing::error!(
                rc,
                "sqlite-vec could not be registered; semantic search will fail"
            );
        }
    });
}

/// The dimensions of the vectors stored for `model`, if any.
async fn model_dims<'e, E>(exec: E, model: &str) -> Result<Option<usize>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    let d: Option<i64> =
        sqlx::query_scalar("SELECT dims FROM item_vectors WHERE model = ?1 LIMIT 1")
            .bind(model)
            .fetch_optional(exec)
            .await?;
    Ok(d.map(|d| d.max(0) as usize))
}

fn upsert(
    conn: &Connection,
    now: i64,
    model: &str,
    items: &[(ItemRef, Vec<f32>)],
) -> Result<(), StoreError> {
    let stored: Option<i64> = conn
        .prepare_cached("SELECT dims FROM item_vectors WHERE model = ?1 LIMIT 1")?
        .query_row(params![model], |r| r.get(0))
        .optional()?;
    let dims = check_dims(model, stored.map(|d| d.max(0) as usize), items)?;
    let mut stmt = conn.prepare_cached(
        "INSERT INTO item_vectors (kind, item_id, model, dims, vector, embedded_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (kind, item_id) DO UPDATE SET model = ?3, dims = ?4, vector = ?5, \
         embedded_at = ?6",
    )?;
    for (item, v) in items {
        stmt.execute(params![
            item.kind.as_str(),
            item.id,
            model,
            dims as i64,
            to_blob(v),
            now
        ])?;
    }
    Ok(())
}

async fn nearest_of_kind(
    readers: &SqlitePool,
    kind: HitKind,
    model: &str,
    blob: &[u8],
    dims: usize,
    q: &SearchQuery,
) -> Result<Vec<VectorHit>, StoreError> {
    let sql = match kind {
        HitKind::Task => {
            "SELECT v.item_id, vec_distance_cosine(v.vector, ?1) AS d \
             FROM item_vectors v JOIN tasks t ON t.id = v.item_id \
             WHERE v.kind = 'task' AND v.model = ?2 AND v.dims = ?3 \
             AND (?4 IS NULL OR t.state = ?4) \
             AND (?5 IS NULL OR t.assignee = ?5 OR t.created_by = ?5) \
             AND (?6 IS NULL OR t.created_at >= ?6) \
             ORDER BY d, v.item_id LIMIT ?8"
        }
        HitKind::Message => {
            "SELECT v.item_id, vec_distance_cosine(v.vector, ?1) AS d \
             FROM item_vectors v JOIN messages m ON m.id = v.item_id \
             WHERE v.kind = 'message' AND v.model = ?2 AND v.dims = ?3 \
             AND (?5 IS NULL OR m.sender = ?5 OR m.recipient = ?5) \
             AND (?6 IS NULL OR m.at >= ?6) \
             AND (?7 IS NULL OR m.recipient IS NULL OR m.sender = ?7 OR m.recipient = ?7) \
             AND (?4 IS NULL) \
             ORDER BY d, v.item_id LIMIT ?8"
        }
    };
    let rows = sqlx::query(sql)
        .bind(blob)
        .bind(model)
        .bind(dims as i64)
        .bind(q.state.map(|s| s.as_str()))
        .bind(&q.agent)
        .bind(q.since)
        .bind(&q.reader)
        .bind(q.limit)
        .fetch_all(readers)
        .await?;
    rows.iter()
        .map(|r| {
            let d: Option<f64> = r.try_get("d")?;
            Ok(VectorHit {
                item: ItemRef {
                    kind,
                    id: r.try_get("item_id")?,
                },
                // A zero vector has no direction: sqlite-vec gives no distance.
                similarity: d.map_or(0.0, |d| 1.0 - d),
            })
        })
        .collect()
}

/// The ids of the tasks and of the messages among `items`, each as a JSON
/// array for `json_each`.
fn ids_by_kind_json(items: &[ItemRef]) -> (String, String) {
    let json = |ids: Vec<i64>| serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into());
    let (tasks, messages) = ids_by_kind(items);
    (json(tasks), json(messages))
}

/// An `ItemText` from a row of `kind`, `id` and `text`.
fn item_text(r: &sqlx::sqlite::SqliteRow) -> Result<ItemText, StoreError> {
    ItemText::from_row(
        &r.try_get::<String, _>("kind")?,
        r.try_get("id")?,
        r.try_get("text")?,
    )
}

#[async_trait]
impl VectorStore for SqliteStore {
    async fn upsert_vectors(
        &self,
        model: &str,
        items: Vec<(ItemRef, Vec<f32>)>,
    ) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let model = model.to_string();
        self.writer
            .write(move |conn, now| {
                upsert(conn, now, &model, &items)?;
                Ok(((), vec![], vec![]))
            })
            .await
    }

    async fn delete_vectors(&self, items: Vec<ItemRef>) -> Result<u64, StoreError> {
        self.writer
            .write(move |conn, _| {
                let mut stmt = conn
                    .prepare_cached("DELETE FROM item_vectors WHERE kind = ?1 AND item_id = ?2")?;
                let mut n = 0;
                for item in &items {
                    n += stmt.execute(params![item.kind.as_str(), item.id])? as u64;
                }
                Ok((n, vec![], vec![]))
            })
            .await
    }

    async fn clear_vectors(&self) -> Result<u64, StoreError> {
        self.writer
            .write(move |conn, _| {
                let n = conn
                    .prepare_cached("DELETE FROM item_vectors")?
                    .execute([])? as u64;
                Ok((n, vec![], vec![]))
            })
            .await
    }

    async fn nearest_vectors(
        &self,
        model: &str,
        query: &[f32],
        q: &SearchQuery,
    ) -> Result<Vec<VectorHit>, StoreError> {
        let Some(dims) = model_dims(&self.readers, model).await? else {
            return Ok(Vec::new());
        };
        if dims != query.len() {
            return Err(wrong_dims(model, dims, query.len()));
        }
        let blob = to_blob(query);
        let mut hits = nearest_of_kind(&self.readers, HitKind::Task, model, &blob, dims, q).await?;
        hits.extend(nearest_of_kind(&self.readers, HitKind::Message, model, &blob, dims, q).await?);
        Ok(hits)
    }

    async fn unembedded(&self, model: &str, limit: i64) -> Result<Vec<ItemText>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, id, text FROM ( \
               SELECT 'task' AS kind, t.id AS id, \
                 t.title || char(10) || t.body || COALESCE(char(10) || t.result, '') AS text, \
                 t.created_at AS at FROM tasks t \
               WHERE NOT EXISTS (SELECT 1 FROM item_vectors v \
                 WHERE v.kind = 'task' AND v.item_id = t.id AND v.model = ?1) \
               UNION ALL \
               SELECT 'message', m.id, m.text, m.at FROM messages m \
               WHERE NOT EXISTS (SELECT 1 FROM item_vectors v \
                 WHERE v.kind = 'message' AND v.item_id = m.id AND v.model = ?1)) \
             ORDER BY at, kind, id LIMIT ?2",
        )
        .bind(model)
        .bind(limit)
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(item_text).collect()
    }

    async fn describe_items(&self, items: &[ItemRef]) -> Result<Vec<SearchHit>, StoreError> {
        let (tasks, messages) = ids_by_kind_json(items);
        let mut hits = Vec::with_capacity(items.len());
        if tasks != "[]" {
            let rows = sqlx::query(
                "SELECT id, title, body, result FROM tasks \
                 WHERE id IN (SELECT value FROM json_each(?1))",
            )
            .bind(&tasks)
            .fetch_all(&self.readers)
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
        if messages != "[]" {
            let rows = sqlx::query(
                "SELECT id, sender, recipient, topic, text FROM messages \
                 WHERE id IN (SELECT value FROM json_each(?1))",
            )
            .bind(&messages)
            .fetch_all(&self.readers)
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
        let (tasks, messages) = ids_by_kind_json(items);
        let rows = sqlx::query(
            "SELECT 'task' AS kind, t.id AS id, \
               t.title || char(10) || t.body || COALESCE(char(10) || t.result, '') AS text \
             FROM tasks t WHERE t.id IN (SELECT value FROM json_each(?1)) \
             UNION ALL \
             SELECT 'message', m.id, m.text FROM messages m \
             WHERE m.id IN (SELECT value FROM json_each(?2))",
        )
        .bind(&tasks)
        .bind(&messages)
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(item_text).collect()
    }

    async fn vector_backlog(&self, model: &str) -> Result<VectorBacklog, StoreError> {
        let row = sqlx::query(
            "SELECT \
               (SELECT COUNT(*) FROM item_vectors v JOIN tasks t ON v.kind = 'task' \
                  AND t.id = v.item_id WHERE v.model = ?1) + \
               (SELECT COUNT(*) FROM item_vectors v JOIN messages m ON v.kind = 'message' \
                  AND m.id = v.item_id WHERE v.model = ?1) AS indexed, \
               (SELECT COUNT(*) FROM tasks) + (SELECT COUNT(*) FROM messages) AS total",
        )
        .bind(model)
        .fetch_one(&self.readers)
        .await?;
        let indexed: i64 = row.try_get("indexed")?;
        let total: i64 = row.try_get("total")?;
        Ok(VectorBacklog {
            indexed,
            missing: (total - indexed).max(0),
        })
    }
}
