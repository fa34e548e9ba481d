//! Full-text search: FTS5 over `tasks_fts` and `messages_fts` (migration
//! 0004), ranked by BM25 with the task title weighted above body and result.

use super::SqliteStore;
use crate::core::search::{HitKind, MessageHit, SearchHit, SearchQuery};
use crate::core::store::StoreError;
use sqlx::Row;

/// Turns search terms into an FTS5 query that cannot be a syntax error:
/// every phrase is one double-quoted string (inner quotes doubled), phrases
/// are joined by AND, and the last may match as a prefix.
fn fts5_match(terms: &[Vec<String>], prefix_last: bool) -> String {
    let last = terms.len().saturating_sub(1);
    terms
        .iter()
        .enumerate()
        .map(|(i, words)| {
            let quoted = format!("\"{}\"", words.join(" ").replace('"', "\"\""));
            if prefix_last && i == last {
                quoted + "*"
            } else {
                quoted
            }
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// BM25 is lower-is-better and negative; results show higher-is-better.
/// Not rounded: with few documents FTS5 clamps the IDF to 1e-6, and the
/// order then lives in the small digits.
fn score_of(bm25: f64) -> f64 {
    -bm25
}

impl SqliteStore {
    /// Tasks matching every term and the filters, best first.
    pub(super) async fn search_tasks(&self, q: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.id, t.title, snippet(tasks_fts, -1, '**', '**', '…', 12) AS snip, \
             bm25(tasks_fts, 4.0, 1.0, 1.0) AS bm \
             FROM tasks_fts JOIN tasks t ON t.id = tasks_fts.rowid \
             WHERE tasks_fts MATCH ?1 AND (?2 IS NULL OR t.state = ?2) \
             AND (?3 IS NULL OR t.assignee = ?3 OR t.created_by = ?3) \
             AND (?4 IS NULL OR t.created_at >= ?4) \
             ORDER BY bm LIMIT ?5",
        )
        .bind(fts5_match(&q.terms, q.prefix_last))
        .bind(q.state.map(|s| s.as_str()))
        .bind(&q.agent)
        .bind(q.since)
        .bind(q.limit)
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SearchHit {
                    kind: HitKind::Task,
                    id: r.try_get("id")?,
                    title: r.try_get("title")?,
                    snippet: r.try_get("snip")?,
                    score: score_of(r.try_get("bm")?),
                })
            })
            .collect()
    }

    /// Messages matching every term and the filters, best first. Direct
    /// messages are left out unless `q.reader` is None or took part in them.
    pub(super) async fn search_messages(
        &self,
        q: &SearchQuery,
    ) -> Result<Vec<MessageHit>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.id, m.sender, m.recipient, m.topic, \
             snippet(messages_fts, 0, '**', '**', '…', 12) AS snip, bm25(messages_fts) AS bm \
             FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid \
             WHERE messages_fts MATCH ?1 \
             AND (?2 IS NULL OR m.sender = ?2 OR m.recipient = ?2) \
             AND (?3 IS NULL OR m.at >= ?3) \
             AND (?4 IS NULL OR m.recipient IS NULL OR m.sender = ?4 OR m.recipient = ?4) \
             ORDER BY bm LIMIT ?5",
        )
        .bind(fts5_match(&q.terms, q.prefix_last))
        .bind(&q.agent)
        .bind(q.since)
        .bind(&q.reader)
        .bind(q.limit)
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MessageHit {
                    id: r.try_get("id")?,
                    sender: r.try_get("sender")?,
                    recipient: r.try_get("recipient")?,
                    topic: r.try_get("topic")?,
                    snippet: r.try_get("snip")?,
                    score: score_of(r.try_get("bm")?),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::fts5_match;

    fn t(p: &[&[&str]]) -> Vec<Vec<String>> {
        p.iter()
            .map(|w| w.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn fts5_query_quotes_every_phrase_and_prefixes_the_last() {
        assert_eq!(
            fts5_match(&t(&[&["a", "b"], &["near"]]), true),
            r#""a b" AND "near"*"#
        );
        assert_eq!(fts5_match(&t(&[&["x\"y"]]), false), r#""x""y""#);
    }
}
