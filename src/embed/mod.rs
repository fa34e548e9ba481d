//! Embeddings: text in, vectors out, for semantic search.
//!
//! [`Embedder`] is what search and the indexer call. [`from_config`] builds
//! the one the `[embeddings]` section asks for:
//!
//! - `off` (the default): [`Unconfigured`], whose every call answers
//!   [`EmbedError::NotConfigured`] (protocol code `unavailable`) saying how
//!   to turn embeddings on;
//! - `openai`: [`HttpEmbedder`], a client for any OpenAI-compatible
//!   `POST /v1/embeddings`, with batching, retries honouring `Retry-After`,
//!   the circuit breaker the reasoning client uses, timeouts and metrics;
//! - `local` (cargo feature `local-embeddings`): all-MiniLM-L6-v2 run
//!   in-process with candle (`local::LocalMiniLm`).
//!
//! Every vector handed out has exactly [`Embedder::dimensions`] entries: a
//! backend that answers another length is refused with
//! [`EmbedError::WrongDimensions`]. [`rank`] holds the pure ranking
//! functions (exact cosine top-k, reciprocal rank fusion).

pub mod config;
mod http;
pub mod indexer;
#[cfg(feature = "local-embeddings")]
pub mod local;
pub mod metrics;
pub mod rank;

use std::sync::Arc;

use async_trait::async_trait;

pub use config::{EmbedBackendKind, EmbedConfig, EmbedConfigError};
pub use http::HttpEmbedder;

/// Turns texts into vectors. Implementations are shared (`Arc<dyn Embedder>`)
/// and safe to call concurrently.
#[async_trait]
pub trait Embedder: Send + Sync + std::fmt::Debug {
    /// One vector per text, in the order of `texts`, each of
    /// [`Embedder::dimensions`] entries. An empty `texts` gives an empty
    /// answer without calling any backend.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;

    /// The model name the vectors belong to (stored beside them, so that a
    /// change of model is seen and the vectors are rebuilt).
    fn model(&self) -> &str;

    /// The length of every vector.
    fn dimensions(&self) -> usize;

    /// False only for [`Unconfigured`]: search then defaults to `text`.
    fn is_configured(&self) -> bool {
        true
    }
}

/// Why texts could not be embedded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EmbedError {
    /// No embeddings backend is configured.
    #[error(
        "no embeddings backend is configured: set embeddings.backend = \"openai\" with \
         embeddings.base_url, embeddings.model and embeddings.dimensions \
         (SWARMBRIDGE_EMBEDDINGS__BASE_URL, ...), or \"local\" with embeddings.local_model_dir \
         in a build with the local-embeddings feature"
    )]
    NotConfigured,
    /// A text to embed is empty or only whitespace.
    #[error("text {index} to embed is empty")]
    EmptyText {
        /// Its position in the call's `texts`.
        index: usize,
    },
    /// The circuit breaker is open after repeated backend failures.
    #[error(
        "the embeddings backend is failing; it will be tried again in {} s",
        retry_after_ms.div_ceil(1000)
    )]
    CircuitOpen {
        /// When a request may be let through again.
        retry_after_ms: u64,
    },
    /// An attempt took longer than the total timeout (after all retries).
    #[error("the embeddings backend did not answer within {after_ms} ms")]
    Timeout {
        /// The configured per-attempt timeout.
        after_ms: u64,
    },
    /// The backend failed or refused, after any retries.
    #[error("the embeddings backend failed{}: {message}", http_status_suffix(*.status))]
    Backend {
        /// The HTTP status, when the failure was an HTTP answer.
        status: Option<u16>,
        /// The backend's own message (truncated) or the transport error.
        message: String,
    },
    /// The backend answered, but not with what was asked (not JSON, too few
    /// or too many vectors, values that are not numbers).
    #[error("the embeddings backend gave an unusable answer: {0}")]
    InvalidAnswer(String),
    /// The backend's vectors have another length than configured.
    #[error(
        "the embeddings model `{model}` returned vectors of {got} dimensions, \
         but embeddings.dimensions is {expected}"
    )]
    WrongDimensions {
        /// The configured model.
        model: String,
        /// The configured length.
        expected: usize,
        /// The length the backend returned.
        got: usize,
    },
    /// Every backend slot stayed busy for a whole timeout.
    #[error("too many embeddings requests are in flight; try again shortly")]
    Busy,
    /// The in-process model failed.
    #[error("the local embeddings model failed: {0}")]
    Local(String),
}

fn http_status_suffix(status: Option<u16>) -> String {
    status.map_or_else(String::new, |status| format!(" (HTTP {status})"))
}

impl EmbedError {
    /// The protocol error code: `bad_request` for input the caller must
    /// change, `unavailable` for everything about the backend.
    pub fn code(&self) -> &'static str {
        match self {
            EmbedError::EmptyText { .. } => "bad_request",
            EmbedError::NotConfigured
            | EmbedError::CircuitOpen { .. }
            | EmbedError::Timeout { .. }
            | EmbedError::Backend { .. }
            | EmbedError::InvalidAnswer(_)
            | EmbedError::WrongDimensions { .. }
            | EmbedError::Busy
            | EmbedError::Local(_) => "unavailable",
        }
    }

    /// When retrying makes sense, if the error says (an open circuit does).
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            EmbedError::CircuitOpen { retry_after_ms } => Some(*retry_after_ms),
            _ => None,
        }
    }
}

/// The embedder of a server without embeddings: every call answers
/// [`EmbedError::NotConfigured`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Unconfigured;

#[async_trait]
impl Embedder for Unconfigured {
    async fn embed(&self, _texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Err(EmbedError::NotConfigured)
    }

    fn model(&self) -> &str {
        ""
    }

    fn dimensions(&self) -> usize {
        0
    }

    fn is_configured(&self) -> bool {
        false
    }
}

/// Builds the embedder `cfg` asks for, reading the API key from the
/// process environment. A malformed config is refused so start-up can
/// report it; `off` gives [`Unconfigured`].
pub fn from_config(cfg: &EmbedConfig) -> Result<Arc<dyn Embedder>, EmbedConfigError> {
    cfg.validate()?;
    match cfg.backend {
        EmbedBackendKind::Off => Ok(Arc::new(Unconfigured)),
        EmbedBackendKind::Openai => {
            let api_key = cfg.api_key(|name| std::env::var(name).ok());
            Ok(Arc::new(HttpEmbedder::new(cfg, api_key)?))
        }
        EmbedBackendKind::Local => local_from_config(cfg),
    }
}

#[cfg(feature = "local-embeddings")]
fn local_from_config(cfg: &EmbedConfig) -> Result<Arc<dyn Embedder>, EmbedConfigError> {
    let dir = cfg
        .local_model_dir
        .as_deref()
        .ok_or(EmbedConfigError::MissingModelDir)?;
    let model = local::LocalMiniLm::load(dir, cfg.model_name(), cfg.max_input_chars)
        .map_err(|err| EmbedConfigError::LocalModel(err.to_string()))?;
    if cfg.dimensions != 0 && cfg.dimensions != model.dimensions() {
        return Err(EmbedConfigError::LocalModel(format!(
            "the model in {} makes vectors of {} dimensions, but embeddings.dimensions is {}",
            dir.display(),
            model.dimensions(),
            cfg.dimensions
        )));
    }
    Ok(Arc::new(model))
}

#[cfg(not(feature = "local-embeddings"))]
fn local_from_config(_cfg: &EmbedConfig) -> Result<Arc<dyn Embedder>, EmbedConfigError> {
    Err(EmbedConfigError::LocalNotBuilt)
}

/// Refuses texts that are empty or only whitespace; the backends reject
/// them (OpenAI) or make meaningless vectors of them.
pub(crate) fn check_texts(texts: &[String]) -> Result<(), EmbedError> {
    match texts.iter().position(|text| text.trim().is_empty()) {
        Some(index) => Err(EmbedError::EmptyText { index }),
        None => Ok(()),
    }
}

/// At most `max` characters of `text`, cut at a character boundary.
pub(crate) fn clip_chars(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_follow_the_protocol() {
        assert_eq!(EmbedError::EmptyText { index: 0 }.code(), "bad_request");
        assert_eq!(EmbedError::NotConfigured.code(), "unavailable");
        let wrong = EmbedError::WrongDimensions {
            model: "m".into(),
            expected: 384,
            got: 768,
        };
        assert_eq!(wrong.code(), "unavailable");
        assert_eq!(
            wrong.to_string(),
            "the embeddings model `m` returned vectors of 768 dimensions, but embeddings.dimensions is 384"
        );
    }

    #[tokio::test]
    async fn off_gives_an_embedder_that_says_how_to_configure_one() {
        let embedder = from_config(&EmbedConfig::default()).expect("off is valid");
        assert!(!embedder.is_configured());
        let err = embedder
            .embed(&["x".to_owned()])
            .await
            .expect_err("not configured");
        assert_eq!(err, EmbedError::NotConfigured);
        assert!(err.to_string().contains("embeddings.backend"), "{err}");
    }

    #[test]
    fn blank_texts_are_refused_with_their_position() {
        let texts = ["a".to_owned(), " \n".to_owned()];
        assert_eq!(check_texts(&texts), Err(EmbedError::EmptyText { index: 1 }));
        assert_eq!(clip_chars("héllo", 2), "hé");
        assert_eq!(clip_chars("hé", 5), "hé");
    }
}
