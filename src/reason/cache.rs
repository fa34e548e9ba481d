//! The answer cache: key normalization, the storage trait a database can
//! implement, an in-memory implementation, and single-flight de-duplication
//! of identical requests in flight at the same time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::Mode;

/// Identifies one cacheable question: the same model, mode and normalized
/// prompt give the same answer. Built only by [`CacheKey::new`], so `prompt`
/// is always normalized and `digest` always matches the three fields.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The configured model name.
    pub model: String,
    /// The mode's lowercase name.
    pub mode: String,
    /// The prompt trimmed, with whitespace runs collapsed to one space, lowercased.
    pub prompt: String,
    /// Lowercase hex SHA-256 of model, mode and prompt (NUL-separated): 64
    /// characters, fit for a database primary key.
    pub digest: String,
}

impl CacheKey {
    /// The key for asking `prompt` of `model` in `mode`.
    pub fn new(model: &str, mode: Mode, prompt: &str) -> Self {
        let prompt = normalize_prompt(prompt);
        let mode = mode.as_str().to_owned();
        let mut hasher = Sha256::new();
        hasher.update(model.as_bytes());
        hasher.update([0]);
        hasher.update(mode.as_bytes());
        hasher.update([0]);
        hasher.update(prompt.as_bytes());
        Self {
            model: model.to_owned(),
            mode,
            prompt,
            digest: hex::encode(hasher.finalize()),
        }
    }
}

/// Trims, collapses every run of (Unicode) whitespace to one space and
/// lowercases, so prompts that differ only in spacing or case share a cache entry.
pub fn normalize_prompt(prompt: &str) -> String {
    let mut normalized = String::with_capacity(prompt.len());
    for word in prompt.split_whitespace() {
        if !normalized.is_empty() {
            normalized.push(' ');
        }
        normalized.push_str(word);
    }
    normalized.to_lowercase()
}

/// What the cache keeps of an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedAnswer {
    /// The answer text.
    pub text: String,
    /// The confidence computed when the answer was first produced, if any.
    pub confidence: Option<f64>,
}

/// Storage for cached answers, implemented in memory here and by the database
/// layer in the main crate. Dyn-compatible so the `Reasoner` holds an
/// `Arc<dyn ReasonCache>`.
///
/// Implementations swallow their own storage errors (log them and answer
/// `None` / do nothing): a failing cache must never fail a reasoning call.
pub trait ReasonCache: Send + Sync + 'static {
    /// The live entry for `key`; an expired entry answers `None`.
    fn get(&self, key: &CacheKey) -> BoxFuture<'_, Option<CachedAnswer>>;
    /// Stores `answer` under `key` for `ttl_s` seconds, replacing any entry.
    fn put(&self, key: &CacheKey, answer: &CachedAnswer, ttl_s: u64) -> BoxFuture<'_, ()>;
}

/// An in-process [`ReasonCache`] for tests and as the fallback when no
/// database cache is wired in. Bounded: when full, expired entries go first,
/// then the entry closest to expiry.
#[derive(Debug)]
pub struct MemoryCache {
    max_entries: usize,
    entries: Mutex<HashMap<String, (CachedAnswer, Instant)>>,
}

impl MemoryCache {
    /// Default bound on the number of entries.
    pub const DEFAULT_MAX_ENTRIES: usize = 10_000;

    /// An empty cache holding at most [`Self::DEFAULT_MAX_ENTRIES`] answers.
    pub fn new() -> Self {
        Self::with_max_entries(Self::DEFAULT_MAX_ENTRIES)
    }

    /// An empty cache holding at most `max_entries` answers (at least one).
    pub fn with_max_entries(max_entries: usize) -> Self {
        Self {
            max_entries: max_entries.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Number of entries held, expired ones included until they are next touched.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (CachedAnswer, Instant)>> {
        // Entries are replaced whole: a panic elsewhere cannot leave one half-written.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for MemoryCache {
    fn default() -> Self {
        Self::new()
    }
}

impl ReasonCache for MemoryCache {
    fn get(&self, key: &CacheKey) -> BoxFuture<'_, Option<CachedAnswer>> {
        let now = Instant::now();
        let mut entries = self.lock();
        let found = match entries.get(&key.digest) {
            Some((answer, expires_at)) if *expires_at > now => Some(answer.clone()),
            Some(_) => {
                entries.remove(&key.digest);
                None
            }
            None => None,
        };
        Box::pin(std::future::ready(found))
    }

    fn put(&self, key: &CacheKey, answer: &CachedAnswer, ttl_s: u64) -> BoxFuture<'_, ()> {
        let now = Instant::now();
        let expires_at = now + Duration::from_secs(ttl_s);
        let mut entries = self.lock();
        if entries.len() >= self.max_entries && !entries.contains_key(&key.digest) {
            entries.retain(|_, (_, expires)| *expires > now);
            if entries.len() >= self.max_entries {
                let soonest = entries
                    .iter()
                    .min_by_key(|(_, (_, expires))| *expires)
                    .map(|(digest, _)| digest.clone());
                if let Some(digest) = soonest {
                    entries.remove(&digest);
                }
            }
        }
        entries.insert(key.digest.clone(), (answer.clone(), expires_at));
        Box::pin(std::future::ready(()))
    }
}

/// De-duplicates identical work in flight: the first caller for a key leads
/// and does the work, later callers follow and receive a clone of the
/// leader's result, error included.
#[derive(Debug)]
pub(crate) struct SingleFlight<T> {
    in_flight: Mutex<HashMap<String, watch::Receiver<Option<T>>>>,
}

/// A caller's role for one key, from [`SingleFlight::join`].
pub(crate) enum Flight<'a, T> {
    /// Do the work, then hand the result to [`FlightLeader::finish`].
    Leader(FlightLeader<'a, T>),
    /// Wait with [`follow`] for the leader's result.
    Follower(watch::Receiver<Option<T>>),
}

/// Held by the caller doing the work for a key. Dropping it without
/// finishing (the leader was cancelled) releases the followers, who then
/// join again and one of them leads.
pub(crate) struct FlightLeader<'a, T> {
    flights: &'a SingleFlight<T>,
    key: String,
    result: watch::Sender<Option<T>>,
}

impl<T: Clone> SingleFlight<T> {
    pub(crate) fn new() -> Self {
        Self {
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// Leads the work for `key` if nobody is doing it yet, else follows the leader.
    pub(crate) fn join(&self, key: &str) -> Flight<'_, T> {
        let mut in_flight = self.lock();
        if let Some(running) = in_flight.get(key) {
            return Flight::Follower(running.clone());
        }
        let (result, receiver) = watch::channel(None);
        in_flight.insert(key.to_owned(), receiver);
        Flight::Leader(FlightLeader {
            flights: self,
            key: key.to_owned(),
            result,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Receiver<Option<T>>>> {
        // The map only gains and loses whole entries.
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<T> FlightLeader<'_, T> {
    /// Hands `value` to every follower, present and arriving until this
    /// leader is dropped.
    pub(crate) fn finish(self, value: T) {
        self.result.send_replace(Some(value));
    }
}

impl<T> Drop for FlightLeader<'_, T> {
    fn drop(&mut self) {
        self.flights
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.key);
    }
}

/// The leader's result, or `None` if the leader went away without one.
pub(crate) async fn follow<T: Clone>(mut leader: watch::Receiver<Option<T>>) -> Option<T> {
    let result = leader.wait_for(Option::is_some).await;
    result.ok().and_then(|value| value.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_trims_collapses_whitespace_and_lowercases() {
        assert_eq!(
            normalize_prompt("  What IS\t\n the   Plan? "),
            "what is the plan?"
        );
        assert_eq!(normalize_prompt("ÉTÉ\u{3000}Été"), "été été");
    }

    #[test]
    fn keys_differ_by_model_mode_and_prompt_but_not_by_spacing() {
        let a = CacheKey::new("m", Mode::Simple, "Hello  World");
        assert_eq!(a, CacheKey::new("m", Mode::Simple, " hello world"));
        assert_eq!(a.digest.len(), 64);
        assert_ne!(
            a.digest,
            CacheKey::new("m2", Mode::Simple, "hello world").digest
        );
        assert_ne!(
            a.digest,
            CacheKey::new("m", Mode::Creative, "hello world").digest
        );
        assert_ne!(
            a.digest,
            CacheKey::new("m", Mode::Simple, "hello worlds").digest
        );
    }

    #[tokio::test]
    async fn memory_cache_returns_live_entries_and_forgets_expired_ones() {
        let cache = MemoryCache::new();
        let key = CacheKey::new("m", Mode::Simple, "q");
        let answer = CachedAnswer {
            text: "a".into(),
            confidence: Some(0.5),
        };
        assert_eq!(cache.get(&key).await, None);
        cache.put(&key, &answer, 60).await;
        assert_eq!(cache.get(&key).await, Some(answer.clone()));
        cache.put(&key, &answer, 0).await;
        assert_eq!(cache.get(&key).await, None);
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn memory_cache_stays_within_its_bound() {
        let cache = MemoryCache::with_max_entries(2);
        let answer = CachedAnswer {
            text: "a".into(),
            confidence: None,
        };
        for (i, ttl) in [(0, 10), (1, 20), (2, 30)] {
            let key = CacheKey::new("m", Mode::Simple, &format!("q{i}"));
            cache.put(&key, &answer, ttl).await;
        }
        assert_eq!(cache.len(), 2);
        let first = CacheKey::new("m", Mode::Simple, "q0");
        assert_eq!(cache.get(&first).await, None, "closest to expiry evicted");
    }

    #[tokio::test]
    async fn followers_get_the_leaders_result_and_a_dropped_leader_frees_the_key() {
        let flights = SingleFlight::<u32>::new();
        let Flight::Leader(leader) = flights.join("k") else {
            panic!("first caller leads");
        };
        let Flight::Follower(waiting) = flights.join("k") else {
            panic!("second caller follows");
        };
        leader.finish(7);
        assert_eq!(follow(waiting).await, Some(7));

        let Flight::Leader(leader) = flights.join("k") else {
            panic!("key freed after the leader finished");
        };
        let Flight::Follower(waiting) = flights.join("k") else {
            panic!("second caller follows");
        };
        drop(leader);
        assert_eq!(follow(waiting).await, None);
        assert!(matches!(flights.join("k"), Flight::Leader(_)));
    }
}
