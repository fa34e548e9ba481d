//! A fake OpenAI-compatible embeddings backend on 127.0.0.1:0.
//!
//! It serves `POST /v1/embeddings`, records every request (inputs, model,
//! `Authorization`) and answers with the next scripted [`EmbedReply`] or,
//! when the script is empty, real vectors. Its vectors are deterministic:
//! [`word_vector`] hashes each lowercase word of a text into one of
//! `dimensions` buckets, so texts sharing words point the same way and the
//! same text always gets the same vector.

#![allow(dead_code)] // Each test binary uses a different part of the fake.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

/// One answer the fake gives to one request.
#[derive(Debug, Clone)]
pub enum EmbedReply {
    /// 200 with one [`word_vector`] per input, in reverse order with their
    /// `index` (clients must put them back in input order).
    Vectors,
    /// 200 with vectors of this length instead of the configured one.
    WrongLength(usize),
    /// An error status with an optional `Retry-After` value.
    Status {
        /// HTTP status code.
        code: u16,
        /// `Retry-After` header value, if any.
        retry_after: Option<String>,
    },
}

impl EmbedReply {
    /// An error status with an OpenAI-style error body.
    pub fn status(code: u16) -> Self {
        EmbedReply::Status {
            code,
            retry_after: None,
        }
    }

    /// An error status with a `Retry-After` header.
    pub fn status_retry_after(code: u16, value: &str) -> Self {
        EmbedReply::Status {
            code,
            retry_after: Some(value.to_owned()),
        }
    }
}

/// The vector the fake gives `text`: words (runs of letters and digits,
/// lowercased) hashed into `dimensions` buckets, L2-normalised; all zeros
/// but the first bucket for a text without words.
pub fn word_vector(text: &str, dimensions: usize) -> Vec<f32> {
    let mut vector = vec![0.0_f32; dimensions];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
    {
        // FNV-1a: stable across runs and platforms.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in word.to_lowercase().bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        let bucket = usize::try_from(hash % dimensions as u64).expect("bucket fits usize");
        vector[bucket] += 1.0;
    }
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        vector[0] = 1.0;
    } else {
        vector.iter_mut().for_each(|x| *x /= norm);
    }
    vector
}

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct SeenEmbedRequest {
    /// The `input` texts.
    pub inputs: Vec<String>,
    /// The `model` field.
    pub model: Option<String>,
    /// The `Authorization` header, if sent.
    pub authorization: Option<String>,
}

struct FakeState {
    dimensions: usize,
    /// Vectors served for exact texts instead of [`word_vector`].
    known: Mutex<std::collections::HashMap<String, Vec<f32>>>,
    /// While set, every request answers 503 (the script is left alone).
    down: std::sync::atomic::AtomicBool,
    script: Mutex<VecDeque<EmbedReply>>,
    requests: Mutex<Vec<SeenEmbedRequest>>,
}

/// The running fake; stops when dropped.
pub struct FakeEmbeddings {
    addr: SocketAddr,
    state: Arc<FakeState>,
    server: JoinHandle<()>,
}

impl FakeEmbeddings {
    /// Starts a fake on a free loopback port whose vectors have `dimensions` entries.
    pub async fn spawn(dimensions: usize) -> Self {
        let state = Arc::new(FakeState {
            dimensions,
            known: Mutex::new(std::collections::HashMap::new()),
            down: std::sync::atomic::AtomicBool::new(false),
            script: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/v1/embeddings", post(embeddings))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound address");
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake server runs");
        });
        Self {
            addr,
            state,
            server,
        }
    }

    /// The base URL to configure, ending in `/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// An `[embeddings]` section pointing at this fake (model `fake-embed`,
    /// its dimensions, batches of 8, no retries, a fast backoff), for a
    /// server under test.
    pub fn config(&self) -> swarmbridge::embed::EmbedConfig {
        swarmbridge::embed::EmbedConfig {
            backend: swarmbridge::embed::EmbedBackendKind::Openai,
            base_url: Some(self.base_url()),
            model: "fake-embed".to_owned(),
            dimensions: self.state.dimensions,
            batch_size: 8,
            connect_timeout_ms: 1_000,
            timeout_ms: 5_000,
            max_retries: 0,
            backoff_base_ms: 10,
            breaker_cooldown_s: 1,
            ..swarmbridge::embed::EmbedConfig::default()
        }
    }

    /// Queues `reply` for the next request not yet answered by the script.
    pub fn then(&self, reply: EmbedReply) -> &Self {
        lock(&self.state.script).push_back(reply);
        self
    }

    /// Serves `vector` for exactly `text` from now on (instead of its
    /// [`word_vector`]): how a test makes two texts that share no word
    /// mean the same, or replays a real model's vectors.
    pub fn serve(&self, text: impl Into<String>, vector: Vec<f32>) -> &Self {
        lock(&self.state.known).insert(text.into(), vector);
        self
    }

    /// Makes every request answer 503 (`true`) until called with `false`:
    /// a backend that is down.
    pub fn set_down(&self, down: bool) {
        self.state
            .down
            .store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<SeenEmbedRequest> {
        lock(&self.state.requests).clone()
    }
}

impl Drop for FakeEmbeddings {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn embeddings(
    State(state): State<Arc<FakeState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let inputs: Vec<String> = body["input"]
        .as_array()
        .map(|inputs| {
            inputs
                .iter()
                .filter_map(|input| input.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    lock(&state.requests).push(SeenEmbedRequest {
        inputs: inputs.clone(),
        model: body["model"].as_str().map(str::to_owned),
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
    let reply = if state.down.load(std::sync::atomic::Ordering::SeqCst) {
        EmbedReply::status(503)
    } else {
        lock(&state.script)
            .pop_front()
            .unwrap_or(EmbedReply::Vectors)
    };
    let length = match reply {
        EmbedReply::Vectors => state.dimensions,
        EmbedReply::WrongLength(length) => length,
        EmbedReply::Status { code, retry_after } => {
            let status = StatusCode::from_u16(code).expect("a valid status code");
            let error =
                json!({"error": {"message": format!("fake failure {code}"), "type": "fake_error"}});
            let mut response = (status, axum::Json(error)).into_response();
            if let Some(value) = retry_after {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    value.parse().expect("a valid Retry-After value"),
                );
            }
            return response;
        }
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .rev()
        .map(|(index, text)| {
            let known = lock(&state.known).get(text).cloned();
            let mut vector = known.unwrap_or_else(|| word_vector(text, state.dimensions.max(1)));
            vector.resize(length, 0.0);
            json!({"object": "embedding", "index": index, "embedding": vector})
        })
        .collect();
    axum::Json(json!({
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": 0, "total_tokens": 0}
    }))
    .into_response()
}
