//! Full-text search over tasks (title, body, result) and messages (direct
//! messages and broadcasts). The core turns the caller's text into plain
//! search terms (no query syntax survives, so no input can break the
//! backend's query parser), checks the filters, and merges what the store
//! finds into one ranked list.

use super::error::CoreError;
use super::model::{Caller, Role, TaskState};
use super::vectors::ItemRef;
use super::Core;
use crate::clock::Millis;
use serde::Serialize;

/// Results one search returns when the caller does not say.
pub const DEFAULT_LIMIT: i64 = 20;
/// Most results one search returns.
pub const MAX_LIMIT: i64 = 100;
/// Longest query text.
pub const MAX_QUERY_CHARS: usize = 500;
/// Most terms of a query that are used; the rest are ignored.
pub const MAX_TERMS: usize = 32;

/// How results are found: the `mode` of a `search`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Words matched by the database's full-text index, ranked by BM25.
    /// Named `fulltext` in replies (the name the protocol has always
    /// sent); `text` is accepted as input too.
    #[serde(rename = "fulltext")]
    Text,
    /// The items whose vectors are nearest the query's (exact cosine);
    /// needs an embeddings backend.
    Semantic,
    /// Reciprocal rank fusion (k = 60) of the top 50 of `text` and of
    /// `semantic`.
    Hybrid,
}

impl SearchMode {
    /// Every mode, in the order they are documented.
    pub const ALL: [SearchMode; 3] = [SearchMode::Text, SearchMode::Semantic, SearchMode::Hybrid];

    /// The name sent as `mode`.
    pub fn as_str(self) -> &'static str {
        match self {
            SearchMode::Text => "fulltext",
            SearchMode::Semantic => "semantic",
            SearchMode::Hybrid => "hybrid",
        }
    }

    /// The mode named `s`: `fulltext` (the name replies carry) or its
    /// shorter alias `text`, `semantic`, `hybrid`.
    pub fn parse(s: &str) -> Option<SearchMode> {
        match s {
            "text" | "fulltext" => Some(SearchMode::Text),
            "semantic" => Some(SearchMode::Semantic),
            "hybrid" => Some(SearchMode::Hybrid),
            _ => None,
        }
    }
}

/// What a result is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HitKind {
    /// A task (its id is the task id).
    Task,
    /// A direct message or broadcast (its id is the message id).
    Message,
}

impl HitKind {
    /// `task` or `message`, as sent and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            HitKind::Task => "task",
            HitKind::Message => "message",
        }
    }

    /// The kind named `task` or `message`.
    pub fn parse(s: &str) -> Option<HitKind> {
        match s {
            "task" => Some(HitKind::Task),
            "message" => Some(HitKind::Message),
            _ => None,
        }
    }
}

/// One result.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SearchHit {
    /// `task` or `message`.
    pub kind: HitKind,
    /// The task's or message's id.
    pub id: i64,
    /// The task title, or who sent the message to whom.
    pub title: String,
    /// The matching passage, matched words in `**`, cut parts as `…`.
    pub snippet: String,
    /// Relevance, higher is better (BM25, sign turned).
    pub score: f64,
}

/// The `results` reply.
#[derive(Debug, Clone, Serialize)]
pub struct SearchResults {
    /// Best first.
    pub results: Vec<SearchHit>,
    /// The mode of the search (asked for, or the default).
    pub mode: SearchMode,
    /// True when `hybrid` could not use the embeddings backend and these are
    /// `text` results only.
    pub degraded: bool,
    /// Why the search is degraded (set exactly when `degraded` is true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded_reason: Option<String>,
}

/// What `search` asks for, as front doors parse it.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    /// The caller's words, any characters.
    pub query: String,
    /// At most this many results (default 20, 1 to 100).
    pub limit: Option<i64>,
    /// Only tasks in this state (and then no messages).
    pub state: Option<TaskState>,
    /// Only tasks this agent created or is assigned, and messages from or to it.
    pub agent: Option<String>,
    /// Only tasks created and messages sent at or after this time.
    pub since: Option<Millis>,
    /// How to search; None is `hybrid` when embeddings are configured,
    /// otherwise `text`.
    pub mode: Option<SearchMode>,
}

/// A query as the store runs it: backend-neutral terms plus filters.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    /// Every term must match. A term is a phrase: its words in this order.
    pub terms: Vec<Vec<String>>,
    /// The last word of the last term also matches as a prefix.
    pub prefix_last: bool,
    /// At most this many results per kind.
    pub limit: i64,
    /// See [`SearchRequest::state`].
    pub state: Option<TaskState>,
    /// See [`SearchRequest::agent`].
    pub agent: Option<String>,
    /// See [`SearchRequest::since`].
    pub since: Option<Millis>,
    /// Direct messages are found only when this identity sent or received
    /// them; None finds all of them (operators and admins).
    pub reader: Option<String>,
}

/// A message the store found, before the core titles it.
#[derive(Debug, Clone)]
pub struct MessageHit {
    /// Message id.
    pub id: i64,
    /// Sender identity.
    pub sender: String,
    /// Addressee, None for a broadcast.
    pub recipient: Option<String>,
    /// A broadcast's topic.
    pub topic: Option<String>,
    /// The matching passage.
    pub snippet: String,
    /// Relevance, higher is better.
    pub score: f64,
}

impl SearchHit {
    /// A task found without a text rank (a `semantic` result): its title,
    /// and the start of its body, or of its result when the body is blank.
    pub fn unranked_task(
        id: i64,
        title: String,
        body: String,
        result: Option<String>,
    ) -> SearchHit {
        let text = if body.trim().is_empty() {
            result.unwrap_or_default()
        } else {
            body
        };
        SearchHit {
            kind: HitKind::Task,
            id,
            title,
            snippet: plain_snippet(&text),
            score: 0.0,
        }
    }

    /// A direct message or broadcast found without a text rank: titled by
    /// its sender and addressee or topic, the start of its text as snippet.
    pub fn unranked_message(
        id: i64,
        sender: String,
        recipient: Option<String>,
        topic: Option<String>,
        text: &str,
    ) -> SearchHit {
        let m = MessageHit {
            id,
            sender,
            recipient,
            topic,
            snippet: plain_snippet(text),
            score: 0.0,
        };
        SearchHit {
            kind: HitKind::Message,
            id,
            title: m.title(),
            snippet: m.snippet,
            score: 0.0,
        }
    }
}

impl MessageHit {
    /// `message from X to Y`, `broadcast from X` or `broadcast from X on T`.
    pub fn title(&self) -> String {
        match (&self.recipient, &self.topic) {
            (Some(to), _) => format!("message from {} to {to}", self.sender),
            (None, Some(topic)) => format!("broadcast from {} on {topic}", self.sender),
            (None, None) => format!("broadcast from {}", self.sender),
        }
    }
}

/// Splits the caller's text into terms: each whitespace-separated chunk
/// becomes a phrase of its runs of letters and digits; chunks without any
/// (punctuation, emoji) are dropped. Query operators (`AND`, `NEAR`, `-`,
/// `*`, quotes, parentheses, `:`) are therefore plain words or nothing.
pub fn terms_of(query: &str) -> Vec<Vec<String>> {
    query
        .split_whitespace()
        .map(|chunk| {
            chunk
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .filter(|words| !words.is_empty())
        .take(MAX_TERMS)
        .collect()
}

/// How long a snippet of a semantic hit is, in characters.
const SEMANTIC_SNIPPET_CHARS: usize = 160;

/// The start of `text` as a snippet: whitespace runs folded, at most
/// [`SEMANTIC_SNIPPET_CHARS`] characters, a cut marked with `…`.
pub fn plain_snippet(text: &str) -> String {
    let folded = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match folded.char_indices().nth(SEMANTIC_SNIPPET_CHARS) {
        Some((cut, _)) => format!("{}…", &folded[..cut]),
        None => folded,
    }
}

/// Why the semantic half of a search could not run.
enum SemanticFailure {
    /// The embeddings backend is not configured or failing: `semantic`
    /// answers `unavailable`, `hybrid` falls back to text.
    Backend(String),
    /// Anything else (the store), answered as is.
    Other(CoreError),
}

impl Core {
    /// Searches tasks and messages in the request's mode (see
    /// [`SearchMode`]). An empty (or blank) or oversized query is
    /// `bad_request`; a query with no letters or digits finds nothing by
    /// text. `semantic` without a working embeddings backend is
    /// `unavailable` saying why; `hybrid` then answers the text results with
    /// `degraded` set. Direct messages are found only by their sender and
    /// addressee, and by operators and admins, in every mode; broadcasts and
    /// tasks by everyone.
    pub async fn search(
        &self,
        caller: &Caller,
        req: SearchRequest,
    ) -> Result<SearchResults, CoreError> {
        if req.query.trim().is_empty() {
            return Err(CoreError::bad_request("`query` must not be empty"));
        }
        let n = req.query.chars().count();
        if n > MAX_QUERY_CHARS {
            return Err(CoreError::bad_request(format!(
                "`query` has {n} characters; the limit is {MAX_QUERY_CHARS}"
            )));
        }
        let limit = req.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(CoreError::bad_request(format!(
                "`limit` must be between 1 and {MAX_LIMIT}, got {limit}"
            )));
        }
        let mode = req.mode.unwrap_or_else(|| {
            if self.embedder().is_configured() {
                SearchMode::Hybrid
            } else {
                SearchMode::Text
            }
        });
        let base = SearchQuery {
            terms: Vec::new(),
            prefix_last: false,
            limit,
            state: req.state,
            agent: req.agent,
            since: req.since,
            reader: (caller.role < Role::Operator).then(|| caller.identity.clone()),
        };
        let results = |results, degraded_reason: Option<String>| SearchResults {
            results,
            mode,
            degraded: degraded_reason.is_some(),
            degraded_reason,
        };
        match mode {
            SearchMode::Text => Ok(results(self.text_hits(&req.query, &base).await?, None)),
            SearchMode::Semantic => match self.semantic_hits(&req.query, &base).await {
                Ok(hits) => Ok(results(hits, None)),
                Err(SemanticFailure::Backend(why)) => Err(CoreError::Unavailable(format!(
                    "semantic search is unavailable: {why}"
                ))),
                Err(SemanticFailure::Other(e)) => Err(e),
            },
            SearchMode::Hybrid => {
                let deep = SearchQuery {
                    limit: crate::embed::rank::RRF_DEPTH as i64,
                    ..base
                };
                let text = self.text_hits(&req.query, &deep).await?;
                match self.semantic_hits(&req.query, &deep).await {
                    Ok(semantic) => Ok(results(fuse(text, semantic, limit), None)),
                    Err(SemanticFailure::Backend(why)) => {
                        let mut text = text;
                        text.truncate(limit as usize);
                        Ok(results(text, Some(format!("text results only: {why}"))))
                    }
                    Err(SemanticFailure::Other(e)) => Err(e),
                }
            }
        }
    }

    /// Full-text hits, best first, at most `q.limit`.
    async fn text_hits(&self, query: &str, q: &SearchQuery) -> Result<Vec<SearchHit>, CoreError> {
        let terms = terms_of(query);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let prefix_last = query
            .trim_end()
            .chars()
            .last()
            .is_some_and(char::is_alphanumeric);
        let q = SearchQuery {
            terms,
            prefix_last,
            ..q.clone()
        };
        let mut results = self.store.search_tasks(&q).await?;
        if q.state.is_none() {
            let messages = self.store.search_messages(&q).await?;
            results.extend(messages.into_iter().map(|m| SearchHit {
                kind: HitKind::Message,
                id: m.id,
                title: m.title(),
                snippet: m.snippet,
                score: m.score,
            }));
        }
        results.sort_by(|a, b| b.score.total_cmp(&a.score));
        results.truncate(q.limit as usize);
        Ok(results)
    }

    /// The items nearest the query's vector, best first (score = cosine
    /// similarity), at most `q.limit`.
    async fn semantic_hits(
        &self,
        query: &str,
        q: &SearchQuery,
    ) -> Result<Vec<SearchHit>, SemanticFailure> {
        let embedder = self.embedder();
        let vector = embedder
            .embed(&[query.to_owned()])
            .await
            .map_err(|e| SemanticFailure::Backend(e.to_string()))?
            .pop()
            .ok_or_else(|| {
                SemanticFailure::Backend("the embeddings backend returned no vector".into())
            })?;
        let mut near = self
            .store
            .nearest_vectors(embedder.model(), &vector, q)
            .await
            .map_err(|e| match e {
                // stored vectors of another length than the backend's now
                // (embeddings.dimensions changed): not the caller's fault
                super::store::StoreError::Rejected(why) => SemanticFailure::Backend(format!(
                    "{why}; run `swarmbridge search reindex` after changing embeddings.dimensions"
                )),
                other => SemanticFailure::Other(other.into()),
            })?;
        near.sort_by(|a, b| {
            b.similarity
                .total_cmp(&a.similarity)
                .then(a.item.cmp(&b.item))
        });
        near.truncate(q.limit as usize);
        let items: Vec<ItemRef> = near.iter().map(|h| h.item).collect();
        let mut described: std::collections::HashMap<ItemRef, SearchHit> = self
            .store
            .describe_items(&items)
            .await
            .map_err(|e| SemanticFailure::Other(e.into()))?
            .into_iter()
            .map(|h| {
                (
                    ItemRef {
                        kind: h.kind,
                        id: h.id,
                    },
                    h,
                )
            })
            .collect();
        Ok(near
            .into_iter()
            .filter_map(|h| {
                described.remove(&h.item).map(|mut hit| {
                    hit.score = h.similarity;
                    hit
                })
            })
            .collect())
    }
}

/// Reciprocal rank fusion of the text and semantic lists (each best
/// first), best `limit` first, scored by the fused score; an item found by
/// both keeps the text snippet (its matched words are marked).
fn fuse(text: Vec<SearchHit>, semantic: Vec<SearchHit>, limit: i64) -> Vec<SearchHit> {
    use crate::embed::rank::{reciprocal_rank_fusion, RRF_DEPTH, RRF_K};
    let key = |h: &SearchHit| ItemRef {
        kind: h.kind,
        id: h.id,
    };
    let text_keys: Vec<ItemRef> = text.iter().map(key).collect();
    let semantic_keys: Vec<ItemRef> = semantic.iter().map(key).collect();
    let fused = reciprocal_rank_fusion(&[&text_keys, &semantic_keys], RRF_K, RRF_DEPTH);
    let mut by_key: std::collections::HashMap<ItemRef, SearchHit> = semantic
        .into_iter()
        .chain(text)
        .map(|h| (key(&h), h))
        .collect();
    fused
        .into_iter()
        .take(limit as usize)
        .filter_map(|f| {
            by_key.remove(&f.key).map(|mut hit| {
                hit.score = f.score;
                hit
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(t: &[&[&str]]) -> Vec<Vec<String>> {
        t.iter()
            .map(|p| p.iter().map(|w| w.to_string()).collect())
            .collect()
    }

    #[test]
    fn query_syntax_becomes_plain_words() {
        assert_eq!(
            terms_of(r#"deploy -foo a:b "x" (y) NEAR z*"#),
            words(&[
                &["deploy"],
                &["foo"],
                &["a", "b"],
                &["x"],
                &["y"],
                &["near"],
                &["z"]
            ])
        );
    }

    #[test]
    fn punctuation_and_emoji_alone_leave_no_terms() {
        for q in ["\"", "*", "(", "--", "🎉", "'; --"] {
            assert!(terms_of(q).is_empty(), "{q}");
        }
        assert_eq!(
            terms_of("'; DROP TABLE tasks; --"),
            words(&[&["drop"], &["table"], &["tasks"]])
        );
    }

    #[test]
    fn letters_of_any_script_are_kept() {
        assert_eq!(terms_of("Grüße 東京"), words(&[&["grüße"], &["東京"]]));
    }

    #[test]
    fn messages_are_titled_by_sender_and_addressee() {
        let mut m = MessageHit {
            id: 1,
            sender: "a".into(),
            recipient: Some("b".into()),
            topic: None,
            snippet: String::new(),
            score: 0.0,
        };
        assert_eq!(m.title(), "message from a to b");
        m.recipient = None;
        assert_eq!(m.title(), "broadcast from a");
        m.topic = Some("ops".into());
        assert_eq!(m.title(), "broadcast from a on ops");
    }
}
