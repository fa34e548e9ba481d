//! The `[embeddings]` config section: which backend turns text into vectors
//! and how the client treats it (batches, timeouts, retries, breaker).

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The most inputs OpenAI accepts in one `/v1/embeddings` request.
pub const MAX_BATCH_SIZE: usize = 2_048;

/// Environment variable read for the API key unless `api_key_env` names another.
pub const DEFAULT_API_KEY_ENV: &str = "SWARMBRIDGE_EMBEDDINGS_API_KEY";

/// Model name used for the local backend when `model` is left empty.
pub const LOCAL_MODEL_NAME: &str = "all-MiniLM-L6-v2";

/// Where vectors come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbedBackendKind {
    /// No embeddings: semantic search answers `unavailable` (the default).
    #[default]
    Off,
    /// An OpenAI-compatible `POST {base_url}/embeddings` (OpenAI, Ollama's
    /// `/v1`, vLLM, llama.cpp server, LiteLLM).
    Openai,
    /// all-MiniLM-L6-v2 run in-process from `local_model_dir`; needs a build
    /// with the `local-embeddings` cargo feature.
    Local,
}

/// Settings of the embeddings client (the `[embeddings]` config section).
/// Every field has a default, so an empty section is valid and means "off".
/// The API key is never read from a file: it comes from the environment
/// variable named by `api_key_env`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbedConfig {
    /// `off` (default), `openai` or `local`.
    pub backend: EmbedBackendKind,
    /// Base URL of the OpenAI-compatible API, up to and including `/v1`
    /// (e.g. `http://127.0.0.1:11434/v1`); `openai` only.
    pub base_url: Option<String>,
    /// Model name sent with every request and stored with every vector;
    /// empty means `all-MiniLM-L6-v2` for `local` and is an error for `openai`.
    pub model: String,
    /// Length of every vector. Required for `openai` (a backend answering
    /// another length is refused); for `local`, 0 means "the model's own"
    /// and any other value must equal it.
    pub dimensions: usize,
    /// Send `dimensions` in the request, for models that can shorten their
    /// vectors (OpenAI's text-embedding-3); off because other servers
    /// reject the field.
    pub send_dimensions: bool,
    /// Most texts in one request, 1 to 2048; larger calls are split.
    pub batch_size: usize,
    /// Name of the environment variable holding the API key (sent as a
    /// bearer token when set and not empty; never logged).
    pub api_key_env: String,
    /// Connect timeout per attempt, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Total time per attempt (one batch request and its whole answer), in
    /// milliseconds.
    pub timeout_ms: u64,
    /// Retries after the first attempt of a batch, for 408, 429, 5xx,
    /// timeouts and transport errors.
    pub max_retries: u32,
    /// First backoff delay in milliseconds, doubled per retry, with jitter;
    /// a `Retry-After` header (seconds, capped at 30 s) wins over it.
    pub backoff_base_ms: u64,
    /// Consecutive failed batch requests (after their retries) that open the
    /// circuit; 0 disables the breaker.
    pub breaker_threshold: u32,
    /// Seconds the circuit stays open before one trial request goes through.
    pub breaker_cooldown_s: u64,
    /// Most requests to the backend in flight at once.
    pub max_concurrent: usize,
    /// Texts longer than this many characters are cut before embedding
    /// (models read a few hundred tokens at most; the rest would be refused
    /// or ignored by the backend).
    pub max_input_chars: usize,
    /// Directory holding `model.safetensors`, `tokenizer.json` and
    /// `config.json`; `local` only.
    pub local_model_dir: Option<PathBuf>,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        Self {
            backend: EmbedBackendKind::Off,
            base_url: None,
            model: String::new(),
            dimensions: 0,
            send_dimensions: false,
            batch_size: 64,
            api_key_env: DEFAULT_API_KEY_ENV.to_owned(),
            connect_timeout_ms: 3_000,
            timeout_ms: 30_000,
            max_retries: 3,
            backoff_base_ms: 250,
            breaker_threshold: 5,
            breaker_cooldown_s: 30,
            max_concurrent: 2,
            max_input_chars: 8_000,
            local_model_dir: None,
        }
    }
}

/// Why an [`EmbedConfig`] cannot be used; reported at start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmbedConfigError {
    /// `base_url` is missing, or not an absolute http(s) URL.
    #[error("embeddings.base_url: {0}")]
    InvalidBaseUrl(String),
    /// `model` is empty while the `openai` backend is chosen.
    #[error("embeddings.model is empty; name the embeddings model the backend serves")]
    EmptyModel,
    /// `dimensions` is 0 while the `openai` backend is chosen.
    #[error("embeddings.dimensions is 0; set the length of the model's vectors (e.g. 1536 for text-embedding-3-small, 384 for all-minilm)")]
    MissingDimensions,
    /// `batch_size` is outside 1..=2048.
    #[error("embeddings.batch_size is {0}; expected 1 to {MAX_BATCH_SIZE}")]
    InvalidBatchSize(usize),
    /// `max_input_chars` is 0.
    #[error("embeddings.max_input_chars is 0; expected at least 1")]
    InvalidMaxInputChars,
    /// `local` without `local_model_dir`.
    #[error("embeddings.local_model_dir is not set; point it at a directory holding model.safetensors, tokenizer.json and config.json")]
    MissingModelDir,
    /// `local` in a build without the `local-embeddings` feature.
    #[error("embeddings.backend = \"local\" needs a build with `--features local-embeddings`")]
    LocalNotBuilt,
    /// The local model could not be loaded.
    #[error("cannot load the local embeddings model: {0}")]
    LocalModel(String),
    /// The HTTP client could not be built (TLS set-up).
    #[error("cannot build the embeddings HTTP client: {0}")]
    HttpClient(String),
}

impl EmbedConfig {
    /// Checks the values the types alone do not, for the chosen backend.
    pub fn validate(&self) -> Result<(), EmbedConfigError> {
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return Err(EmbedConfigError::InvalidBatchSize(self.batch_size));
        }
        if self.max_input_chars == 0 {
            return Err(EmbedConfigError::InvalidMaxInputChars);
        }
        match self.backend {
            EmbedBackendKind::Off => Ok(()),
            EmbedBackendKind::Openai => {
                self.embeddings_url()?;
                if self.model.trim().is_empty() {
                    return Err(EmbedConfigError::EmptyModel);
                }
                if self.dimensions == 0 {
                    return Err(EmbedConfigError::MissingDimensions);
                }
                Ok(())
            }
            EmbedBackendKind::Local => {
                if self.local_model_dir.is_none() {
                    return Err(EmbedConfigError::MissingModelDir);
                }
                if !cfg!(feature = "local-embeddings") {
                    return Err(EmbedConfigError::LocalNotBuilt);
                }
                Ok(())
            }
        }
    }

    /// `{base_url}/embeddings`, whether or not `base_url` ends with a slash.
    pub fn embeddings_url(&self) -> Result<reqwest::Url, EmbedConfigError> {
        let invalid = |why: String| EmbedConfigError::InvalidBaseUrl(why);
        let base = self
            .base_url
            .as_deref()
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .ok_or_else(|| {
                invalid(
                    "not set; e.g. http://127.0.0.1:11434/v1 or https://api.openai.com/v1".into(),
                )
            })?;
        let endpoint = format!("{}/embeddings", base.trim_end_matches('/'));
        let url = reqwest::Url::parse(&endpoint).map_err(|err| invalid(err.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "scheme `{}` is not http or https",
                url.scheme()
            )));
        }
        Ok(url)
    }

    /// The API key from the environment variable `api_key_env`, as looked up
    /// by `var` (pass `|name| std::env::var(name).ok()`); blank is none.
    pub fn api_key(&self, var: impl Fn(&str) -> Option<String>) -> Option<ApiKey> {
        let name = self.api_key_env.trim();
        if name.is_empty() {
            return None;
        }
        var(name)
            .map(|key| key.trim().to_owned())
            .filter(|key| !key.is_empty())
            .map(ApiKey)
    }

    /// The model name vectors are stored under: `model`, or
    /// `all-MiniLM-L6-v2` for the local backend when it is empty.
    pub fn model_name(&self) -> String {
        match (self.backend, self.model.trim()) {
            (EmbedBackendKind::Local, "") => LOCAL_MODEL_NAME.to_owned(),
            (_, model) => model.to_owned(),
        }
    }
}

/// A secret sent as a bearer token; its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(pub(crate) String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openai() -> EmbedConfig {
        EmbedConfig {
            backend: EmbedBackendKind::Openai,
            base_url: Some("http://127.0.0.1:11434/v1/".into()),
            model: "all-minilm".into(),
            dimensions: 384,
            ..EmbedConfig::default()
        }
    }

    #[test]
    fn empty_section_is_off_with_the_documented_defaults() {
        let cfg: EmbedConfig = serde_json::from_str("{}").expect("all fields default");
        assert_eq!(cfg.backend, EmbedBackendKind::Off);
        assert_eq!(
            (cfg.batch_size, cfg.max_retries, cfg.timeout_ms),
            (64, 3, 30_000)
        );
        assert_eq!(cfg.api_key_env, DEFAULT_API_KEY_ENV);
        assert_eq!(cfg.validate(), Ok(()));
    }

    #[test]
    fn openai_backend_needs_url_model_and_dimensions() {
        assert_eq!(openai().validate(), Ok(()));
        let no_url = EmbedConfig {
            base_url: None,
            ..openai()
        };
        assert!(matches!(
            no_url.validate(),
            Err(EmbedConfigError::InvalidBaseUrl(_))
        ));
        let ftp = EmbedConfig {
            base_url: Some("ftp://h/v1".into()),
            ..openai()
        };
        assert!(matches!(
            ftp.validate(),
            Err(EmbedConfigError::InvalidBaseUrl(_))
        ));
        let no_model = EmbedConfig {
            model: " ".into(),
            ..openai()
        };
        assert_eq!(no_model.validate(), Err(EmbedConfigError::EmptyModel));
        let no_dims = EmbedConfig {
            dimensions: 0,
            ..openai()
        };
        assert_eq!(no_dims.validate(), Err(EmbedConfigError::MissingDimensions));
    }

    #[test]
    fn batch_size_is_bounded_by_what_openai_accepts() {
        for bad in [0, MAX_BATCH_SIZE + 1] {
            let cfg = EmbedConfig {
                batch_size: bad,
                ..openai()
            };
            assert_eq!(cfg.validate(), Err(EmbedConfigError::InvalidBatchSize(bad)));
        }
        let max = EmbedConfig {
            batch_size: MAX_BATCH_SIZE,
            ..openai()
        };
        assert_eq!(max.validate(), Ok(()));
    }

    #[test]
    fn endpoint_is_joined_to_the_base_url_with_or_without_slash() {
        let url = openai().embeddings_url().expect("valid");
        assert_eq!(url.as_str(), "http://127.0.0.1:11434/v1/embeddings");
    }

    #[test]
    fn api_key_comes_from_the_named_variable_and_is_redacted() {
        let cfg = EmbedConfig {
            api_key_env: "MY_KEY".into(),
            ..openai()
        };
        let key = cfg
            .api_key(|name| (name == "MY_KEY").then(|| " sk-secret ".to_owned()))
            .expect("key set");
        assert_eq!(key.0, "sk-secret");
        assert!(!format!("{key:?}").contains("sk-secret"));
        assert_eq!(cfg.api_key(|_| Some("  ".to_owned())), None);
    }

    #[test]
    fn local_backend_needs_a_model_directory_and_names_minilm() {
        let local = EmbedConfig {
            backend: EmbedBackendKind::Local,
            ..EmbedConfig::default()
        };
        assert_eq!(local.validate(), Err(EmbedConfigError::MissingModelDir));
        assert_eq!(local.model_name(), LOCAL_MODEL_NAME);
        let with_dir = EmbedConfig {
            local_model_dir: Some("/models/minilm".into()),
            ..local
        };
        let expected = if cfg!(feature = "local-embeddings") {
            Ok(())
        } else {
            Err(EmbedConfigError::LocalNotBuilt)
        };
        assert_eq!(with_dir.validate(), expected);
    }
}
