//! Full-text search over tasks (title, body, result) and messages (direct
//! messages and broadcasts). The core turns the caller's text into plain
//! search terms (no query syntax survives, so no input can break the
//! backend's query parser), checks the filters, and merges what the store
//! finds into one ranked list.

use super::error::CoreError;
use super::model::{Caller, Role, TaskState};
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

/// How results were found. Only full-text search exists: semantic search
/// needs an embeddings backend, which the reasoning client does not have yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Words matched by the database's full-text index, ranked by BM25.
    Fulltext,
}

impl SearchMode {
    /// The name sent as `mode`.
    pub fn as_str(self) -> &'static str {
        match self {
            SearchMode::Fulltext => "fulltext",
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
    /// How they were found.
    pub mode: SearchMode,
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

impl Core {
    /// Searches tasks and messages. An empty (or blank) query is
    /// `bad_request`; a query with no letters or digits finds nothing.
    /// Direct messages are found only by their sender and addressee, and by
    /// operators and admins; broadcasts and tasks by everyone.
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
        let terms = terms_of(&req.query);
        let mut results = Vec::new();
        if !terms.is_empty() {
            let prefix_last = req
                .query
                .trim_end()
                .chars()
                .last()
                .is_some_and(char::is_alphanumeric);
            let query = SearchQuery {
                terms,
                prefix_last,
                limit,
                state: req.state,
                agent: req.agent,
                since: req.since,
                reader: (caller.role < Role::Operator).then(|| caller.identity.clone()),
            };
            results = self.store.search_tasks(&query).await?;
            if query.state.is_none() {
                let messages = self.store.search_messages(&query).await?;
                results.extend(messages.into_iter().map(|m| SearchHit {
                    kind: HitKind::Message,
                    id: m.id,
                    title: m.title(),
                    snippet: m.snippet,
                    score: m.score,
                }));
            }
            results.sort_by(|a, b| b.score.total_cmp(&a.score));
            results.truncate(limit as usize);
        }
        Ok(SearchResults {
            results,
            mode: SearchMode::Fulltext,
        })
    }
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
