//! Full-text search with PostgreSQL's own `tsvector` (migration 0004):
//! ranked by `ts_rank` (task title weighted above body and result), the
//! passage shown by `ts_headline` with matched words in `**`.

use super::PgStore;
use crate::core::search::{HitKind, MessageHit, SearchHit, SearchQuery};
use crate::core::store::StoreError;
use sqlx::Row;

/// `ts_headline` options: matched words in `**`, about a dozen words.
const HEADLINE: &str = "StartSel=**, StopSel=**, MaxWords=14, MinWords=6, ShortWord=2, \
    MaxFragments=2, FragmentDelimiter=\" … \"";

/// Turns search terms into a `to_tsquery` text that cannot be a syntax
/// error: every word is a quoted lexeme (quotes and backslashes escaped), a
/// phrase's words are joined by `<->`, phrases by `&`, and the last word
/// may match as a prefix (`:*`).
fn tsquery_text(terms: &[Vec<String>], prefix_last: bool) -> String {
    let last = terms.len().saturating_sub(1);
    terms
        .iter()
        .enumerate()
        .map(|(i, words)| {
            let n = words.len();
            let phrase = words
                .iter()
                .enumerate()
                .map(|(j, w)| {
                    let quoted = format!("'{}'", w.replace('\\', "\\\\").replace('\'', "''"));
                    if prefix_last && i == last && j + 1 == n {
                        quoted + ":*"
                    } else {
                        quoted
                    }
                })
                .collect::<Vec<_>>()
                .join(" <-> ");
            format!("({phrase})")
        })
        .collect::<Vec<_>>()
        .join(" & ")
}

impl PgStore {
    /// Tasks matching every term and the filters, best first.
    pub(super) async fn search_tasks(&self, q: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT t.id, t.title, \
             ts_headline('simple', concat_ws(' ', t.title, t.body, t.result), q, '{HEADLINE}') \
               AS snip, \
             ts_rank(t.search, q)::float8 AS rank \
             FROM tasks t, to_tsquery('simple', $1) q \
             WHERE t.search @@ q AND ($2::text IS NULL OR t.state = $2) \
             AND ($3::text IS NULL OR t.assignee = $3 OR t.created_by = $3) \
             AND ($4::bigint IS NULL OR t.created_at >= $4) \
             ORDER BY rank DESC, t.id DESC LIMIT $5"
        ))
        .bind(tsquery_text(&q.terms, q.prefix_last))
        .bind(q.state.map(|s| s.as_str()))
        .bind(&q.agent)
        .bind(q.since)
        .bind(q.limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SearchHit {
                    kind: HitKind::Task,
                    id: r.try_get("id")?,
                    title: r.try_get("title")?,
                    snippet: r.try_get("snip")?,
                    score: r.try_get("rank")?,
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
        let rows = sqlx::query(&format!(
            "SELECT m.id, m.sender, m.recipient, m.topic, \
             ts_headline('simple', m.text, q, '{HEADLINE}') AS snip, \
             ts_rank(m.search, q)::float8 AS rank \
             FROM messages m, to_tsquery('simple', $1) q \
             WHERE m.search @@ q \
             AND ($2::text IS NULL OR m.sender = $2 OR m.recipient = $2) \
             AND ($3::bigint IS NULL OR m.at >= $3) \
             AND ($4::text IS NULL OR m.recipient IS NULL OR m.sender = $4 OR m.recipient = $4) \
             ORDER BY rank DESC, m.id DESC LIMIT $5"
        ))
        .bind(tsquery_text(&q.terms, q.prefix_last))
        .bind(&q.agent)
        .bind(q.since)
        .bind(&q.reader)
        .bind(q.limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MessageHit {
                    id: r.try_get("id")?,
                    sender: r.try_get("sender")?,
                    recipient: r.try_get("recipient")?,
                    topic: r.try_get("topic")?,
                    snippet: r.try_get("snip")?,
                    score: r.try_get("rank")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::tsquery_text;

    fn t(p: &[&[&str]]) -> Vec<Vec<String>> {
        p.iter()
            .map(|w| w.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn tsquery_quotes_every_word_joins_phrases_and_prefixes_the_last() {
        assert_eq!(
            tsquery_text(&t(&[&["a", "b"], &["near"]]), true),
            "('a' <-> 'b') & ('near':*)"
        );
        assert_eq!(tsquery_text(&t(&[&["x'y\\"]]), false), r"('x''y\\')");
    }
}
