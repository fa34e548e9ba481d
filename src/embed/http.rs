//! The client for an OpenAI-compatible `POST /v1/embeddings`.
//!
//! One [`Embedder::embed`] call is split into requests of at most
//! `batch_size` texts, sent one after the other (so the answer keeps the
//! order of the texts). Each request asks the circuit breaker for leave,
//! waits for one of `max_concurrent` backend slots, and is attempted with a
//! total timeout, retrying 408/429/5xx and transport failures with
//! exponential backoff and jitter, or after the backend's `Retry-After`.
//! The first request that still fails ends the call with its error.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::config::{ApiKey, EmbedConfig, EmbedConfigError};
use super::metrics as embed_metrics;
use super::{check_texts, clip_chars, EmbedError, Embedder};
use crate::reason::{
    backend_error_message, backoff_delay, judge_status, retry_after, root_cause, status_message,
    CircuitBreaker, CircuitState, StatusVerdict,
};

/// Longest transport error text passed on to users, in characters.
const MAX_ERROR_CHARS: usize = 200;

/// The `/v1/embeddings` request body.
#[derive(Debug, Serialize)]
struct EmbeddingsRequest<'a> {
    model: &'a str,
    input: Vec<&'a str>,
    /// Only sent when `send_dimensions` is on: most servers other than
    /// OpenAI's reject it.
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
}

/// The parts of the answer that are used.
#[derive(Debug, Deserialize)]
struct EmbeddingsAnswer {
    data: Vec<EmbeddingItem>,
}

#[derive(Debug, Deserialize)]
struct EmbeddingItem {
    embedding: Vec<f32>,
    /// Position of the input; servers that leave it out answer in order.
    index: Option<usize>,
}

/// How a failed attempt should be treated.
#[derive(Debug)]
struct AttemptFailure {
    error: EmbedError,
    /// `None`: final. `Some(None)`: retry after the usual backoff.
    /// `Some(Some(delay))`: retry after the delay the backend asked for.
    retry: Option<Option<Duration>>,
    /// The backend itself is at fault: counts towards opening the breaker.
    backend_fault: bool,
    /// Label of the attempt's outcome in `swarmbridge_embedding_requests_total`.
    outcome: &'static str,
}

impl AttemptFailure {
    fn transient(error: EmbedError, outcome: &'static str) -> Self {
        Self {
            error,
            retry: Some(None),
            backend_fault: true,
            outcome,
        }
    }

    fn fatal(error: EmbedError) -> Self {
        Self {
            error,
            retry: None,
            backend_fault: true,
            outcome: "invalid_answer",
        }
    }
}

/// An OpenAI-compatible embeddings backend; share one per process.
pub struct HttpEmbedder {
    http: reqwest::Client,
    endpoint: reqwest::Url,
    api_key: Option<ApiKey>,
    model: String,
    dimensions: usize,
    send_dimensions: bool,
    batch_size: usize,
    max_input_chars: usize,
    timeout: Duration,
    max_retries: u32,
    backoff_base: Duration,
    breaker: CircuitBreaker,
    backend_slots: Semaphore,
}

impl std::fmt::Debug for HttpEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpEmbedder")
            .field("endpoint", &self.endpoint.as_str())
            .field("api_key", &self.api_key)
            .field("model", &self.model)
            .field("dimensions", &self.dimensions)
            .field("batch_size", &self.batch_size)
            .field("circuit", &self.breaker.state())
            .finish_non_exhaustive()
    }
}

impl HttpEmbedder {
    /// A client for the backend `cfg` names (validated here), sending
    /// `api_key` as a bearer token when given.
    pub fn new(cfg: &EmbedConfig, api_key: Option<ApiKey>) -> Result<Self, EmbedConfigError> {
        cfg.validate()?;
        let endpoint = cfg.embeddings_url()?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(cfg.connect_timeout_ms.max(1)))
            .user_agent(concat!("swarmbridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| EmbedConfigError::HttpClient(err.to_string()))?;
        Ok(Self {
            http,
            endpoint,
            api_key,
            model: cfg.model_name(),
            dimensions: cfg.dimensions,
            send_dimensions: cfg.send_dimensions,
            batch_size: cfg.batch_size,
            max_input_chars: cfg.max_input_chars,
            timeout: Duration::from_millis(cfg.timeout_ms.max(1)),
            max_retries: cfg.max_retries,
            backoff_base: Duration::from_millis(cfg.backoff_base_ms),
            breaker: CircuitBreaker::for_backend(
                "embeddings",
                cfg.breaker_threshold,
                Duration::from_secs(cfg.breaker_cooldown_s),
            ),
            backend_slots: Semaphore::new(cfg.max_concurrent.max(1)),
        })
    }

    /// The circuit breaker's state now, for `/metrics` and `status`.
    pub fn circuit_state(&self) -> CircuitState {
        self.breaker.state()
    }

    /// One batch: breaker, backend slot, attempts with retries; the outcome
    /// is reported to the breaker and to the metrics.
    async fn embed_batch(&self, batch: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let permit = match self.breaker.admit() {
            Ok(permit) => permit,
            Err(retry_after_ms) => {
                embed_metrics::batch_done(Duration::ZERO, "circuit_open", 0);
                return Err(EmbedError::CircuitOpen { retry_after_ms });
            }
        };
        let started = Instant::now();
        let _slot = match tokio::time::timeout(self.timeout, self.backend_slots.acquire()).await {
            Ok(Ok(slot)) => slot,
            // Timed out waiting (or the semaphore closed, which it never is).
            _ => {
                embed_metrics::batch_done(started.elapsed(), "busy", 0);
                return Err(EmbedError::Busy);
            }
        };
        match self.attempts_with_retries(batch).await {
            Ok(vectors) => {
                permit.record(true);
                embed_metrics::batch_done(started.elapsed(), "ok", batch.len());
                Ok(vectors)
            }
            Err(failure) => {
                permit.record(!failure.backend_fault);
                embed_metrics::batch_done(started.elapsed(), "failed", 0);
                Err(failure.error)
            }
        }
    }

    async fn attempts_with_retries(
        &self,
        batch: &[String],
    ) -> Result<Vec<Vec<f32>>, AttemptFailure> {
        let mut retries_done = 0;
        loop {
            let failure = match self.attempt(batch).await {
                Ok(vectors) => {
                    embed_metrics::attempt_done("ok");
                    return Ok(vectors);
                }
                Err(failure) => failure,
            };
            embed_metrics::attempt_done(failure.outcome);
            let delay = match failure.retry {
                None => return Err(failure),
                Some(_) if retries_done >= self.max_retries => return Err(failure),
                Some(None) => backoff_delay(self.backoff_base, retries_done),
                Some(Some(asked)) => asked,
            };
            retries_done += 1;
            tracing::warn!(
                retry = retries_done,
                of = self.max_retries,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                error = %failure.error,
                "embeddings backend attempt failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One HTTP request and its whole answer, bounded by the total timeout.
    async fn attempt(&self, batch: &[String]) -> Result<Vec<Vec<f32>>, AttemptFailure> {
        let request = EmbeddingsRequest {
            model: &self.model,
            input: batch
                .iter()
                .map(|text| clip_chars(text, self.max_input_chars))
                .collect(),
            dimensions: self.send_dimensions.then_some(self.dimensions),
        };
        let mut builder = self.http.post(self.endpoint.clone()).json(&request);
        if let Some(key) = &self.api_key {
            builder = builder.bearer_auth(&key.0);
        }
        let exchange = async {
            let response = builder.send().await.map_err(transport_failure)?;
            if !response.status().is_success() {
                let key = self.api_key.as_ref().map(|k| k.0.as_str());
                return Err(status_failure(response, key).await);
            }
            let body = response.bytes().await.map_err(transport_failure)?;
            self.read_answer(&body, batch.len())
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(outcome) => outcome,
            Err(_elapsed) => Err(AttemptFailure::transient(
                EmbedError::Timeout {
                    after_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
                },
                "timeout",
            )),
        }
    }

    /// The vectors of a 200 answer, in input order, each checked for length.
    fn read_answer(&self, body: &[u8], inputs: usize) -> Result<Vec<Vec<f32>>, AttemptFailure> {
        if let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(body) {
            if let Some(error) = fields.get("error") {
                let message =
                    backend_error_message(&serde_json::json!({ "error": error }).to_string())
                        .unwrap_or_else(|| "an error without a message".to_owned());
                return Err(AttemptFailure::transient(
                    EmbedError::Backend {
                        status: None,
                        message,
                    },
                    "http_error",
                ));
            }
        }
        let answer: EmbeddingsAnswer = serde_json::from_slice(body).map_err(|err| {
            AttemptFailure::fatal(EmbedError::InvalidAnswer(format!(
                "not embeddings JSON ({err})"
            )))
        })?;
        if answer.data.len() != inputs {
            return Err(AttemptFailure::fatal(EmbedError::InvalidAnswer(format!(
                "{} vectors for {inputs} texts",
                answer.data.len()
            ))));
        }
        let mut slots: Vec<Option<Vec<f32>>> = vec![None; inputs];
        for (position, item) in answer.data.into_iter().enumerate() {
            if item.embedding.len() != self.dimensions {
                return Err(AttemptFailure::fatal(EmbedError::WrongDimensions {
                    model: self.model.clone(),
                    expected: self.dimensions,
                    got: item.embedding.len(),
                }));
            }
            let index = item.index.unwrap_or(position);
            match slots.get_mut(index) {
                Some(slot @ None) => *slot = Some(item.embedding),
                _ => {
                    return Err(AttemptFailure::fatal(EmbedError::InvalidAnswer(format!(
                        "index {index} is out of range or repeated"
                    ))))
                }
            }
        }
        // Every slot is filled: `inputs` distinct in-range indexes were seen.
        Ok(slots.into_iter().flatten().collect())
    }
}

#[async_trait]
impl Embedder for HttpEmbedder {
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        check_texts(texts)?;
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch_size) {
            vectors.extend(self.embed_batch(batch).await?);
        }
        Ok(vectors)
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }
}

/// A request that failed below HTTP: connect errors, resets.
fn transport_failure(err: reqwest::Error) -> AttemptFailure {
    let message = if err.is_timeout() {
        // Only the connect timeout can fire here; the total one is ours.
        "could not connect to the embeddings backend in time".to_owned()
    } else if err.is_connect() {
        format!(
            "could not connect to the embeddings backend ({})",
            root_cause(&err)
        )
    } else {
        format!(
            "the request to the embeddings backend failed ({})",
            root_cause(&err)
        )
    };
    let message = super::clip_chars(&message, MAX_ERROR_CHARS).to_owned();
    AttemptFailure::transient(
        EmbedError::Backend {
            status: None,
            message,
        },
        "transport_error",
    )
}

/// The failure of a non-2xx answer, with `api_key` cut out of the
/// backend's message (some backends echo the key they refused).
async fn status_failure(response: reqwest::Response, api_key: Option<&str>) -> AttemptFailure {
    let status = response.status();
    let asked_delay = retry_after(response.headers());
    let body = response.text().await.unwrap_or_default();
    let StatusVerdict {
        retryable,
        backend_fault,
    } = judge_status(status);
    AttemptFailure {
        error: EmbedError::Backend {
            status: Some(status.as_u16()),
            message: match api_key.map(str::trim).filter(|k| !k.is_empty()) {
                Some(key) => status_message(status, &body).replace(key, crate::secrets::REDACTED),
                None => status_message(status, &body),
            },
        },
        retry: retryable.then_some(asked_delay),
        backend_fault,
        outcome: "http_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::EmbedBackendKind;

    fn embedder(dimensions: usize) -> HttpEmbedder {
        let cfg = EmbedConfig {
            backend: EmbedBackendKind::Openai,
            base_url: Some("http://127.0.0.1:9/v1".into()),
            model: "m".into(),
            dimensions,
            ..EmbedConfig::default()
        };
        HttpEmbedder::new(&cfg, None).expect("valid config")
    }

    #[test]
    fn answer_is_put_back_in_input_order_by_index() {
        let body = br#"{"data":[{"embedding":[2,2],"index":1},{"embedding":[1,1],"index":0}]}"#;
        let vectors = embedder(2).read_answer(body, 2).expect("valid answer");
        assert_eq!(vectors, vec![vec![1.0, 1.0], vec![2.0, 2.0]]);
    }

    #[test]
    fn answers_with_missing_or_repeated_vectors_are_refused() {
        let short = br#"{"data":[{"embedding":[1,1],"index":0}]}"#;
        let err = embedder(2).read_answer(short, 2).expect_err("one short");
        assert!(matches!(err.error, EmbedError::InvalidAnswer(_)), "{err:?}");
        let repeated = br#"{"data":[{"embedding":[1,1],"index":0},{"embedding":[1,1],"index":0}]}"#;
        let err = embedder(2).read_answer(repeated, 2).expect_err("repeated");
        assert!(matches!(err.error, EmbedError::InvalidAnswer(_)), "{err:?}");
        let not_json = b"<html>";
        let err = embedder(2).read_answer(not_json, 1).expect_err("not json");
        assert_eq!(err.retry, None);
    }

    #[test]
    fn an_error_object_in_a_200_is_a_retryable_backend_error() {
        let body = br#"{"error":{"message":"model is loading"}}"#;
        let err = embedder(2).read_answer(body, 1).expect_err("error body");
        assert_eq!(
            err.error,
            EmbedError::Backend {
                status: None,
                message: "model is loading".into()
            }
        );
        assert_eq!(err.retry, Some(None));
    }

    #[test]
    fn request_body_sends_dimensions_only_when_asked() {
        let body = serde_json::to_value(EmbeddingsRequest {
            model: "m",
            input: vec!["a", "b"],
            dimensions: None,
        })
        .expect("serializable");
        assert_eq!(body, serde_json::json!({"model": "m", "input": ["a", "b"]}));
    }
}
