//! The reasoning engine: one client for any OpenAI-compatible
//! chat-completions backend (OpenAI, Ollama's `/v1`, vLLM, llama.cpp server,
//! LiteLLM).
//!
//! [`Reasoner`] is the facade the core calls. Each [`Reasoner::ask`]:
//!
//! 1. refuses at once when no backend is configured
//!    ([`ReasonError::NotConfigured`]) or the prompt is empty or too long;
//! 2. answers from the [`ReasonCache`] when the same (model, mode, normalized
//!    prompt) was answered within `cache_ttl_s`;
//! 3. joins an identical request already in flight instead of calling the
//!    backend again (single-flight), sharing its answer or its error;
//! 4. otherwise asks the circuit breaker for leave, waits for one of
//!    `max_concurrent` backend slots, and calls the backend with connect and
//!    total timeouts, retrying 408/429/5xx and transport failures with
//!    exponential backoff and jitter (honouring `Retry-After`).
//!
//! The answer's confidence is `exp(mean token logprob)` when the backend sent
//! log-probabilities, `None` otherwise. Every error maps to a protocol code
//! through [`ReasonError::code`].

mod breaker;
mod cache;
mod client;
mod confidence;
mod modes;

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Semaphore};

pub use breaker::{CallPermit, CircuitBreaker, CircuitState};
pub use cache::{normalize_prompt, CacheKey, CachedAnswer, MemoryCache, ReasonCache};
pub use confidence::{confidence_from_logprobs, LogprobTally};
pub use modes::{Mode, ModePreset, UnknownMode};

use cache::{follow, Flight, SingleFlight};
use client::{ChatClient, ChatRequest, Retry};
// Shared with the embeddings client, which speaks the same HTTP conventions.
pub(crate) use client::{
    backend_error_message, judge_status, retry_after, root_cause, status_message, StatusVerdict,
    MAX_RETRY_AFTER,
};
// What the fuzz targets (`crate::fuzzing`) feed a backend's answers through.
pub(crate) use client::{
    answer_from_event_stream, answer_from_json, Completion, DeltaSink, SseDecoder,
};
use modes::ModePresets;

/// Environment variable naming the backend's base URL (up to and including `/v1`).
pub const ENV_BASE_URL: &str = "SWARMBRIDGE_REASONING_BASE_URL";
/// Environment variable naming the model.
pub const ENV_MODEL: &str = "SWARMBRIDGE_REASONING_MODEL";
/// Environment variable holding the API key, sent as a bearer token.
pub const ENV_API_KEY: &str = "SWARMBRIDGE_REASONING_API_KEY";

/// Keyed budgets beyond this many callers drop the ones that are back to a
/// full budget, so memory stays bounded however many callers pass by.
const MAX_TRACKED_BUDGETS: usize = 10_000;

/// Settings of the reasoning engine (the `[reasoning]` config section).
/// Every field has a default, so an empty section is valid and means "not
/// configured". `Debug` redacts the API key.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReasonConfig {
    /// Base URL of the OpenAI-compatible API, e.g. `http://127.0.0.1:11434/v1`;
    /// `None` (or empty) leaves reasoning unconfigured.
    pub base_url: Option<String>,
    /// Model name sent with every request; part of the cache key.
    pub model: String,
    /// Sent as `Authorization: Bearer` when set; never logged.
    pub api_key: Option<String>,
    /// Connect timeout per attempt, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Total time per attempt (connect, answer and whole stream), in milliseconds.
    pub timeout_ms: u64,
    /// Retries after the first attempt, for 408, 429, 5xx, timeouts and
    /// transport errors.
    pub max_retries: u32,
    /// First backoff delay in milliseconds, doubled per retry, with jitter;
    /// a `Retry-After` header (seconds, capped at 30 s) wins over it.
    pub backoff_base_ms: u64,
    /// Consecutive failed calls (after their retries) that open the circuit;
    /// 0 disables the breaker.
    pub breaker_threshold: u32,
    /// Seconds the circuit stays open before one trial call is let through.
    pub breaker_cooldown_s: u64,
    /// Most backend calls in flight at once.
    pub max_concurrent: usize,
    /// Seconds an answer stays cached; 0 disables the cache.
    pub cache_ttl_s: u64,
    /// Longest prompt accepted, in characters.
    pub max_prompt_chars: usize,
    /// Ask for token log-probabilities (for confidence). Turned off for the
    /// rest of the `Reasoner`'s life if the backend rejects them.
    pub logprobs: bool,
    /// Sustained per-caller budget for [`Reasoner::check_budget`], requests
    /// per minute; 0 disables budgets.
    pub budget_per_min: u32,
    /// Requests a caller may make in a burst before the sustained rate applies.
    pub budget_burst: u32,
    /// Presets by lowercase mode name, each replacing that mode's built-in
    /// preset; unknown names are a configuration error.
    pub modes: BTreeMap<String, ModePreset>,
}

impl Default for ReasonConfig {
    fn default() -> Self {
        Self {
            base_url: None,
            model: "gpt-4o-mini".to_owned(),
            api_key: None,
            connect_timeout_ms: 3_000,
            timeout_ms: 60_000,
            max_retries: 3,
            backoff_base_ms: 250,
            breaker_threshold: 5,
            breaker_cooldown_s: 30,
            max_concurrent: 4,
            cache_ttl_s: 3_600,
            max_prompt_chars: 8_000,
            logprobs: true,
            budget_per_min: 10,
            budget_burst: 5,
            modes: BTreeMap::new(),
        }
    }
}

impl fmt::Debug for ReasonConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReasonConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_retries", &self.max_retries)
            .field("backoff_base_ms", &self.backoff_base_ms)
            .field("breaker_threshold", &self.breaker_threshold)
            .field("breaker_cooldown_s", &self.breaker_cooldown_s)
            .field("max_concurrent", &self.max_concurrent)
            .field("cache_ttl_s", &self.cache_ttl_s)
            .field("max_prompt_chars", &self.max_prompt_chars)
            .field("logprobs", &self.logprobs)
            .field("budget_per_min", &self.budget_per_min)
            .field("budget_burst", &self.budget_burst)
            .field("modes", &self.modes.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why a [`ReasonConfig`] cannot be used; reported at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ReasonConfigError {
    /// `base_url` is not an absolute http(s) URL.
    #[error("reasoning.base_url is not a valid http(s) URL: {0}")]
    InvalidBaseUrl(String),
    /// `model` is empty while a backend is configured.
    #[error("reasoning.model is empty; set {ENV_MODEL} or reasoning.model")]
    EmptyModel,
    /// `modes` names a mode that does not exist.
    #[error("reasoning.modes: {0}")]
    UnknownMode(#[from] UnknownMode),
    /// A preset in `modes` has an out-of-range value.
    #[error("reasoning.modes.{mode}: {why}")]
    InvalidPreset {
        /// The mode whose preset is wrong.
        mode: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// The HTTP client could not be built (TLS set-up).
    #[error("cannot build the reasoning HTTP client: {0}")]
    HttpClient(String),
}

/// Why a reasoning request produced no answer. Cloneable because one
/// backend failure is shared by every caller that joined the same request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReasonError {
    /// No backend is configured.
    #[error(
        "no reasoning backend is configured: set {ENV_BASE_URL} (e.g. http://127.0.0.1:11434/v1 \
         for Ollama or https://api.openai.com/v1), and {ENV_MODEL} and {ENV_API_KEY} as needed"
    )]
    NotConfigured,
    /// The prompt has more characters than allowed.
    #[error("the prompt is too long: {got} characters, at most {max} allowed")]
    PromptTooLong {
        /// The configured limit, in characters.
        max: usize,
        /// The prompt's length, in characters.
        got: usize,
    },
    /// The prompt is empty or only whitespace.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// The circuit breaker is open after repeated backend failures.
    #[error(
        "the reasoning backend is failing; it will be tried again in {} s",
        retry_after_ms.div_ceil(1000)
    )]
    CircuitOpen {
        /// When a call may be let through again.
        retry_after_ms: u64,
    },
    /// An attempt took longer than the total timeout (after all retries).
    #[error("the reasoning backend did not answer within {after_ms} ms")]
    Timeout {
        /// The configured per-attempt timeout.
        after_ms: u64,
    },
    /// The backend failed or refused, after any retries.
    #[error("the reasoning backend failed{}: {message}", http_status_suffix(*.status))]
    Backend {
        /// The HTTP status, when the failure was an HTTP answer.
        status: Option<u16>,
        /// The backend's own message (truncated) or the transport error.
        message: String,
    },
    /// Every backend slot stayed busy for a whole timeout.
    #[error("too many reasoning requests are in flight; try again shortly")]
    Busy,
}

fn http_status_suffix(status: Option<u16>) -> String {
    status.map_or_else(String::new, |status| format!(" (HTTP {status})"))
}

impl ReasonError {
    /// The protocol error code: `bad_request` for a prompt the caller must
    /// change, `unavailable` for everything about the backend.
    pub fn code(&self) -> &'static str {
        match self {
            ReasonError::PromptTooLong { .. } | ReasonError::EmptyPrompt => "bad_request",
            ReasonError::NotConfigured
            | ReasonError::CircuitOpen { .. }
            | ReasonError::Timeout { .. }
            | ReasonError::Backend { .. }
            | ReasonError::Busy => "unavailable",
        }
    }

    /// When retrying makes sense, if the error says (an open circuit does).
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            ReasonError::CircuitOpen { retry_after_ms } => Some(*retry_after_ms),
            _ => None,
        }
    }
}

/// An answer, as the protocol's `reason.result` carries it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReasonAnswer {
    /// The whole answer text.
    pub text: String,
    /// The mode it was asked in.
    pub mode: Mode,
    /// `exp(mean token logprob)` in [0, 1] (3 decimals), or `None` when the
    /// backend gave no log-probabilities.
    pub confidence: Option<f64>,
    /// True when served from the cache without calling the backend.
    pub cached: bool,
    /// The configured model that produced it.
    pub model: String,
}

/// Counters for `/metrics` and `status`, cumulative since start.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReasonStats {
    /// Asks answered from the cache.
    pub cache_hits: u64,
    /// Asks the cache could not answer (only counted while the cache is on).
    pub cache_misses: u64,
    /// Asks that shared an identical in-flight request instead of calling.
    pub coalesced: u64,
    /// Backend calls: one per ask that reached the backend, retries included.
    pub backend_calls: u64,
    /// HTTP requests sent to the backend, retries counted one by one.
    pub backend_attempts: u64,
    /// Backend calls that ended in an error after their retries.
    pub backend_failures: u64,
    /// The circuit breaker's state now.
    pub circuit: CircuitState,
    /// Duration of the latest backend call (retries included), in milliseconds.
    pub last_latency_ms: Option<u64>,
}

#[derive(Debug, Default)]
struct Counters {
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    coalesced: AtomicU64,
    backend_calls: AtomicU64,
    backend_attempts: AtomicU64,
    backend_failures: AtomicU64,
    /// `u64::MAX` until the first backend call.
    last_latency_ms: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What single-flight hands from the leader to its followers.
#[derive(Debug, Clone)]
struct SharedAnswer {
    text: String,
    confidence: Option<f64>,
    from_cache: bool,
}

type SharedOutcome = Result<SharedAnswer, ReasonError>;

/// The reasoning engine's facade; share one per process (`Arc<Reasoner>`).
/// All methods take `&self` and are safe to call concurrently.
pub struct Reasoner {
    /// `None` when no backend is configured.
    client: Option<ChatClient>,
    model: String,
    presets: ModePresets,
    cache: Arc<dyn ReasonCache>,
    cache_ttl_s: u64,
    max_prompt_chars: usize,
    max_retries: u32,
    backoff_base: Duration,
    timeout: Duration,
    /// Cleared for good once the backend rejects `logprobs`.
    send_logprobs: AtomicBool,
    breaker: CircuitBreaker,
    backend_slots: Semaphore,
    flights: SingleFlight<SharedOutcome>,
    budgets: Option<DefaultKeyedRateLimiter<String>>,
    counters: Counters,
}

impl fmt::Debug for Reasoner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reasoner")
            .field("client", &self.client)
            .field("model", &self.model)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Reasoner {
    /// Builds the engine. A config without `base_url` gives an unconfigured
    /// engine whose asks answer [`ReasonError::NotConfigured`]; a malformed
    /// one is refused so start-up can report it.
    pub fn new(cfg: ReasonConfig, cache: Arc<dyn ReasonCache>) -> Result<Self, ReasonConfigError> {
        let presets = ModePresets::resolve(&cfg.modes)?;
        let timeout = Duration::from_millis(cfg.timeout_ms.max(1));
        let base_url = cfg
            .base_url
            .as_deref()
            .map(str::trim)
            .filter(|url| !url.is_empty());
        let client = match base_url {
            None => None,
            Some(base_url) => {
                if cfg.model.trim().is_empty() {
                    return Err(ReasonConfigError::EmptyModel);
                }
                let endpoint = chat_completions_url(base_url)?;
                let http = reqwest::Client::builder()
                    .connect_timeout(Duration::from_millis(cfg.connect_timeout_ms.max(1)))
                    .user_agent(concat!("swarmbridge/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|err| ReasonConfigError::HttpClient(err.to_string()))?;
                let api_key = cfg.api_key.filter(|key| !key.trim().is_empty());
                Some(ChatClient::new(http, endpoint, api_key, timeout))
            }
        };
        let budgets = NonZeroU32::new(cfg.budget_per_min).map(|per_min| {
            let burst = NonZeroU32::new(cfg.budget_burst).unwrap_or(NonZeroU32::MIN);
            RateLimiter::keyed(Quota::per_minute(per_min).allow_burst(burst))
        });
        Ok(Self {
            client,
            model: cfg.model,
            presets,
            cache,
            cache_ttl_s: cfg.cache_ttl_s,
            max_prompt_chars: cfg.max_prompt_chars,
            max_retries: cfg.max_retries,
            backoff_base: Duration::from_millis(cfg.backoff_base_ms),
            timeout,
            send_logprobs: AtomicBool::new(cfg.logprobs),
            breaker: CircuitBreaker::new(
                cfg.breaker_threshold,
                Duration::from_secs(cfg.breaker_cooldown_s),
            ),
            backend_slots: Semaphore::new(cfg.max_concurrent.max(1)),
            flights: SingleFlight::new(),
            budgets,
            counters: Counters {
                last_latency_ms: AtomicU64::new(u64::MAX),
                ..Counters::default()
            },
        })
    }

    /// True when a backend is configured (asks may succeed).
    pub fn is_configured(&self) -> bool {
        self.client.is_some()
    }

    /// The configured model name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Answers `prompt` in `mode`, from the cache, a shared in-flight
    /// request, or the backend.
    pub async fn ask(&self, prompt: &str, mode: Mode) -> Result<ReasonAnswer, ReasonError> {
        self.answer(prompt, mode, None).await
    }

    /// Like [`Reasoner::ask`], and also sends the answer's text into `deltas`
    /// as it arrives, in order; the deltas concatenate to the returned text.
    /// A cache hit, or an answer shared from an identical request already in
    /// flight, arrives as one delta holding the whole text. If the receiver is
    /// dropped the answer is still read to the end and cached. On error some
    /// deltas may already have been sent.
    pub async fn ask_streaming(
        &self,
        prompt: &str,
        mode: Mode,
        deltas: mpsc::Sender<String>,
    ) -> Result<ReasonAnswer, ReasonError> {
        self.answer(prompt, mode, Some(&deltas)).await
    }

    /// Counters and circuit state, for metrics and `status`.
    pub fn stats(&self) -> ReasonStats {
        let c = &self.counters;
        let last_latency_ms = c.last_latency_ms.load(Ordering::Relaxed);
        ReasonStats {
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            cache_misses: c.cache_misses.load(Ordering::Relaxed),
            coalesced: c.coalesced.load(Ordering::Relaxed),
            backend_calls: c.backend_calls.load(Ordering::Relaxed),
            backend_attempts: c.backend_attempts.load(Ordering::Relaxed),
            backend_failures: c.backend_failures.load(Ordering::Relaxed),
            circuit: self.breaker.state(),
            last_latency_ms: (last_latency_ms != u64::MAX).then_some(last_latency_ms),
        }
    }

    /// Takes one request from `caller`'s budget (`budget_per_min` sustained,
    /// `budget_burst` at once); `Err(retry_after_ms)` when it is spent, for a
    /// `rate_limited` reply. Callers are any stable key, e.g. `discord:1234`.
    pub fn check_budget(&self, caller: &str) -> Result<(), u64> {
        let Some(budgets) = &self.budgets else {
            return Ok(());
        };
        if budgets.len() > MAX_TRACKED_BUDGETS {
            budgets.retain_recent();
        }
        budgets.check_key(&caller.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(budgets.clock().now());
            u64::try_from(wait.as_micros().div_ceil(1000))
                .unwrap_or(u64::MAX)
                .max(1)
        })
    }

    async fn answer(
        &self,
        prompt: &str,
        mode: Mode,
        deltas: Option<&mpsc::Sender<String>>,
    ) -> Result<ReasonAnswer, ReasonError> {
        let started = Instant::now();
        let outcome = self.answer_untraced(prompt, mode, deltas).await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match &outcome {
            Ok(answer) => tracing::debug!(
                mode = %mode,
                latency_ms,
                cached = answer.cached,
                streaming = deltas.is_some(),
                status = "ok",
                "reason call"
            ),
            Err(err) => tracing::debug!(
                mode = %mode,
                latency_ms,
                cached = false,
                streaming = deltas.is_some(),
                status = err.code(),
                error = %err,
                "reason call"
            ),
        }
        outcome
    }

    async fn answer_untraced(
        &self,
        prompt: &str,
        mode: Mode,
        deltas: Option<&mpsc::Sender<String>>,
    ) -> Result<ReasonAnswer, ReasonError> {
        let client = self.client.as_ref().ok_or(ReasonError::NotConfigured)?;
        self.check_prompt(prompt)?;
        let key = CacheKey::new(&self.model, mode, prompt);
        let mut sink = deltas.map(DeltaSink::new);
        let (shared, streamed) = loop {
            match self.flights.join(&key.digest) {
                Flight::Leader(leader) => {
                    let (outcome, streamed) =
                        self.lead(client, &key, prompt, mode, sink.as_mut()).await;
                    leader.finish(outcome.clone());
                    break (outcome?, streamed);
                }
                Flight::Follower(leader) => {
                    bump(&self.counters.coalesced);
                    // `None`: the leader was cancelled; join again.
                    if let Some(outcome) = follow(leader).await {
                        let shared = outcome?;
                        self.count_cache_outcome(shared.from_cache);
                        break (shared, false);
                    }
                }
            }
        };
        if let (Some(sink), false) = (sink.as_mut(), streamed) {
            sink.send(&shared.text).await;
        }
        Ok(ReasonAnswer {
            text: shared.text,
            mode,
            confidence: shared.confidence,
            cached: shared.from_cache,
            model: self.model.clone(),
        })
    }

    fn check_prompt(&self, prompt: &str) -> Result<(), ReasonError> {
        if prompt.trim().is_empty() {
            return Err(ReasonError::EmptyPrompt);
        }
        let got = prompt.chars().count();
        if got > self.max_prompt_chars {
            return Err(ReasonError::PromptTooLong {
                max: self.max_prompt_chars,
                got,
            });
        }
        Ok(())
    }

    fn cache_enabled(&self) -> bool {
        self.cache_ttl_s > 0
    }

    fn count_cache_outcome(&self, hit: bool) {
        if self.cache_enabled() {
            bump(if hit {
                &self.counters.cache_hits
            } else {
                &self.counters.cache_misses
            });
        }
    }

    /// The single-flight leader's work: cache, else backend then cache.
    /// Also says whether deltas were already streamed to `sink`.
    async fn lead(
        &self,
        client: &ChatClient,
        key: &CacheKey,
        prompt: &str,
        mode: Mode,
        sink: Option<&mut DeltaSink<'_>>,
    ) -> (SharedOutcome, bool) {
        if self.cache_enabled() {
            let hit = self.cache.get(key).await;
            self.count_cache_outcome(hit.is_some());
            if let Some(hit) = hit {
                let shared = SharedAnswer {
                    text: hit.text,
                    confidence: hit.confidence,
                    from_cache: true,
                };
                return (Ok(shared), false);
            }
        }
        let streamed = sink.is_some();
        let completion = match self.call_backend(client, prompt, mode, sink).await {
            Ok(completion) => completion,
            Err(err) => return (Err(err), streamed),
        };
        if self.cache_enabled() {
            let entry = CachedAnswer {
                text: completion.text.clone(),
                confidence: completion.confidence,
            };
            self.cache.put(key, &entry, self.cache_ttl_s).await;
        }
        let shared = SharedAnswer {
            text: completion.text,
            confidence: completion.confidence,
            from_cache: false,
        };
        (Ok(shared), streamed)
    }

    /// One call: breaker, concurrency slot, attempts with retries; the
    /// outcome is reported to the breaker.
    async fn call_backend(
        &self,
        client: &ChatClient,
        prompt: &str,
        mode: Mode,
        sink: Option<&mut DeltaSink<'_>>,
    ) -> Result<Completion, ReasonError> {
        let permit = self
            .breaker
            .admit()
            .map_err(|retry_after_ms| ReasonError::CircuitOpen { retry_after_ms })?;
        let _slot = match tokio::time::timeout(self.timeout, self.backend_slots.acquire()).await {
            Ok(Ok(slot)) => slot,
            // Timed out waiting (or the semaphore closed, which it never is).
            _ => return Err(ReasonError::Busy),
        };
        bump(&self.counters.backend_calls);
        let started = Instant::now();
        let outcome = self.attempts_with_retries(client, prompt, mode, sink).await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.counters
            .last_latency_ms
            .store(latency_ms, Ordering::Relaxed);
        match outcome {
            Ok(completion) => {
                permit.record(true);
                Ok(completion)
            }
            Err(failure) => {
                bump(&self.counters.backend_failures);
                permit.record(!failure.backend_fault);
                Err(failure.error)
            }
        }
    }

    async fn attempts_with_retries(
        &self,
        client: &ChatClient,
        prompt: &str,
        mode: Mode,
        mut sink: Option<&mut DeltaSink<'_>>,
    ) -> Result<Completion, client::AttemptFailure> {
        let preset = self.presets.get(mode);
        let mut retries_done = 0;
        loop {
            let logprobs = self.send_logprobs.load(Ordering::Relaxed);
            let request = ChatRequest::new(&self.model, preset, prompt, logprobs, sink.is_some());
            bump(&self.counters.backend_attempts);
            let failure = match client.attempt(&request, sink.as_deref_mut()).await {
                Ok(completion) => return Ok(completion),
                Err(failure) => failure,
            };
            if failure.rejects_logprobs && logprobs {
                tracing::info!(
                    "the reasoning backend rejects logprobs; asking without them from now on"
                );
                self.send_logprobs.store(false, Ordering::Relaxed);
                continue;
            }
            let delay = match failure.retry {
                Retry::No => return Err(failure),
                _ if retries_done >= self.max_retries => return Err(failure),
                Retry::Backoff => self.backoff(retries_done),
                Retry::After(delay) => delay,
            };
            retries_done += 1;
            tracing::warn!(
                retry = retries_done,
                of = self.max_retries,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                error = %failure.error,
                "reasoning backend attempt failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    fn backoff(&self, retry: u32) -> Duration {
        backoff_delay(self.backoff_base, retry)
    }
}

/// Exponential backoff with jitter: a delay between half and all of
/// `base * 2^retry`, capped like `Retry-After`. Shared by every client of an
/// outside backend.
pub(crate) fn backoff_delay(base: Duration, retry: u32) -> Duration {
    let ceiling = base
        .saturating_mul(1u32 << retry.min(16))
        .min(MAX_RETRY_AFTER);
    let half = ceiling / 2;
    let jitter_ms = rand::rng().random_range(0..=millis_u64(ceiling - half));
    half + Duration::from_millis(jitter_ms)
}

fn millis_u64(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `{base}/chat/completions`, whether or not `base` ends with a slash.
fn chat_completions_url(base_url: &str) -> Result<reqwest::Url, ReasonConfigError> {
    let invalid = |why: String| ReasonConfigError::InvalidBaseUrl(why);
    let endpoint = format!("{}/chat/completions", base_url.trim_end_matches('/'));
    let url = reqwest::Url::parse(&endpoint).map_err(|err| invalid(err.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "scheme `{}` is not http or https",
            url.scheme()
        )));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_debug_never_shows_the_api_key() {
        let cfg = ReasonConfig {
            api_key: Some("sk-secret-123".into()),
            ..ReasonConfig::default()
        };
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("sk-secret-123"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn empty_config_section_gives_the_documented_defaults() {
        let cfg: ReasonConfig = serde_json::from_str("{}").expect("all fields default");
        assert_eq!(cfg.base_url, None);
        assert_eq!(cfg.model, "gpt-4o-mini");
        assert_eq!(
            (cfg.connect_timeout_ms, cfg.timeout_ms, cfg.max_retries),
            (3000, 60000, 3)
        );
        assert_eq!(
            (
                cfg.breaker_threshold,
                cfg.breaker_cooldown_s,
                cfg.max_concurrent
            ),
            (5, 30, 4)
        );
        assert_eq!((cfg.cache_ttl_s, cfg.max_prompt_chars), (3600, 8000));
        assert!(cfg.logprobs);
        assert_eq!((cfg.budget_per_min, cfg.budget_burst), (10, 5));
    }

    #[test]
    fn endpoint_is_joined_to_the_base_url_with_or_without_slash() {
        for base in ["http://h:1/v1", "http://h:1/v1/"] {
            let url = chat_completions_url(base).expect("valid");
            assert_eq!(url.as_str(), "http://h:1/v1/chat/completions");
        }
        assert!(chat_completions_url("ftp://h/v1").is_err());
        assert!(chat_completions_url("not a url").is_err());
    }

    #[test]
    fn error_codes_follow_the_protocol() {
        assert_eq!(ReasonError::EmptyPrompt.code(), "bad_request");
        assert_eq!(
            ReasonError::PromptTooLong { max: 1, got: 2 }.code(),
            "bad_request"
        );
        assert_eq!(ReasonError::NotConfigured.code(), "unavailable");
        assert_eq!(ReasonError::Timeout { after_ms: 5 }.code(), "unavailable");
        assert_eq!(
            ReasonError::Timeout { after_ms: 5 }.to_string(),
            "the reasoning backend did not answer within 5 ms"
        );
    }

    #[test]
    fn backoff_grows_exponentially_within_jitter_bounds() {
        let reasoner = Reasoner::new(
            ReasonConfig {
                backoff_base_ms: 100,
                ..ReasonConfig::default()
            },
            Arc::new(MemoryCache::new()),
        )
        .expect("valid config");
        for (retry, low, high) in [(0, 50, 100), (1, 100, 200), (3, 400, 800)] {
            let delay = reasoner.backoff(retry).as_millis();
            assert!((low..=high).contains(&delay), "retry {retry}: {delay} ms");
        }
        assert!(reasoner.backoff(40) <= MAX_RETRY_AFTER);
    }
}
