//! A fake OpenAI-compatible backend on 127.0.0.1:0 for reasoning tests.
//!
//! It serves `POST /v1/chat/completions`, records every request it receives
//! (body, `Authorization`, arrival time) and answers with the next scripted
//! [`Reply`] or, when the script is empty, the fallback reply. Tests can make
//! it slow ([`FakeOpenAi::set_delay`]), hold every answer until released
//! ([`FakeOpenAi::close_gate`] / [`FakeOpenAi::open_gate`]), and wait for a
//! number of requests ([`FakeOpenAi::wait_for_calls`]) instead of sleeping.

#![allow(dead_code)] // Each test binary uses a different part of the fake.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One answer the fake gives to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with this chat-completions JSON body.
    Json(Value),
    /// 200 `text/event-stream` with this raw body, written in pieces of
    /// `piece_len` bytes (split anywhere, mid-line and mid-UTF-8) or whole.
    Sse {
        /// The raw SSE text.
        body: String,
        /// Size of each separately written piece; `None` writes it at once.
        piece_len: Option<usize>,
    },
    /// An error status with an optional `Retry-After` value and a body.
    Status {
        /// HTTP status code.
        code: u16,
        /// `Retry-After` header value, if any.
        retry_after: Option<String>,
        /// Response body.
        body: String,
    },
}

impl Reply {
    /// A JSON answer without log-probabilities.
    pub fn text(text: &str) -> Self {
        Reply::Json(json!({
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": "fake-model",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop"
            }]
        }))
    }

    /// A JSON answer whose tokens carry these log-probabilities.
    pub fn text_with_logprobs(text: &str, logprobs: &[f64]) -> Self {
        Self::text_with_logprobs_value(text, json!({ "content": token_logprobs(logprobs) }))
    }

    /// A JSON answer whose `choices[0].logprobs` is exactly `logprobs`
    /// (e.g. `null` or `{"content": []}`).
    pub fn text_with_logprobs_value(text: &str, logprobs: Value) -> Self {
        let mut reply = Self::text(text);
        if let Reply::Json(body) = &mut reply {
            body["choices"][0]["logprobs"] = logprobs;
        }
        reply
    }

    /// An SSE stream with one chunk per delta, the i-th chunk carrying the
    /// i-th log-probability when given, framed the way real servers vary it:
    /// a comment, a role-only first chunk, `data:` with and without the
    /// space, an `event:` field, an empty final delta and `[DONE]`.
    pub fn stream(deltas: &[&str], logprobs: Option<&[f64]>) -> Self {
        let mut body = String::from(": fake stream\n\n");
        let role = json!({"choices": [{"index": 0, "delta": {"role": "assistant"}}]});
        body.push_str(&format!("data: {role}\n\n"));
        for (i, delta) in deltas.iter().enumerate() {
            let mut choice = json!({"index": 0, "delta": {"content": delta}});
            if let Some(logprob) = logprobs.and_then(|lps| lps.get(i)) {
                choice["logprobs"] = json!({ "content": token_logprobs(&[*logprob]) });
            }
            let chunk = json!({"object": "chat.completion.chunk", "choices": [choice]});
            let prefix = if i % 2 == 0 {
                "data: "
            } else {
                "event: chunk\ndata:"
            };
            body.push_str(&format!("{prefix}{chunk}\n\n"));
        }
        let last = json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
        body.push_str(&format!("data: {last}\n\ndata: [DONE]\n\n"));
        Reply::Sse {
            body,
            piece_len: None,
        }
    }

    /// The same SSE reply, written `piece_len` bytes at a time.
    pub fn in_pieces(self, piece_len: usize) -> Self {
        match self {
            Reply::Sse { body, .. } => Reply::Sse {
                body,
                piece_len: Some(piece_len.max(1)),
            },
            other => other,
        }
    }

    /// An error status with an OpenAI-style error body.
    pub fn status(code: u16, message: &str) -> Self {
        Reply::Status {
            code,
            retry_after: None,
            body: json!({"error": {"message": message, "type": "fake_error"}}).to_string(),
        }
    }

    /// The same status reply with a `Retry-After` header.
    pub fn retry_after(self, value: &str) -> Self {
        match self {
            Reply::Status { code, body, .. } => Reply::Status {
                code,
                retry_after: Some(value.to_owned()),
                body,
            },
            other => other,
        }
    }
}

fn token_logprobs(logprobs: &[f64]) -> Vec<Value> {
    logprobs
        .iter()
        .enumerate()
        .map(|(i, lp)| json!({"token": format!("t{i}"), "logprob": lp, "top_logprobs": []}))
        .collect()
}

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// The JSON body (`Value::Null` if it was not JSON).
    pub body: Value,
    /// The `Authorization` header, if sent.
    pub authorization: Option<String>,
    /// When it arrived.
    pub at: Instant,
}

struct FakeState {
    script: Mutex<VecDeque<Reply>>,
    fallback: Mutex<Reply>,
    delay: Mutex<Duration>,
    gate_open: watch::Sender<bool>,
    requests: Mutex<Vec<SeenRequest>>,
    calls: watch::Sender<usize>,
}

/// The running fake; stops when dropped.
pub struct FakeOpenAi {
    addr: SocketAddr,
    state: Arc<FakeState>,
    server: JoinHandle<()>,
}

impl FakeOpenAi {
    /// Starts a fake on a free loopback port answering `fallback` to every
    /// request not covered by [`FakeOpenAi::then`].
    pub async fn spawn(fallback: Reply) -> Self {
        let state = Arc::new(FakeState {
            script: Mutex::new(VecDeque::new()),
            fallback: Mutex::new(fallback),
            delay: Mutex::new(Duration::ZERO),
            gate_open: watch::Sender::new(true),
            requests: Mutex::new(Vec::new()),
            calls: watch::Sender::new(0),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat_completions))
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

    /// Queues `reply` for the next request not yet answered by the script.
    pub fn then(&self, reply: Reply) -> &Self {
        lock(&self.state.script).push_back(reply);
        self
    }

    /// Replaces the reply given once the script is used up.
    pub fn set_fallback(&self, reply: Reply) {
        *lock(&self.state.fallback) = reply;
    }

    /// Waits this long before answering each request from now on.
    pub fn set_delay(&self, delay: Duration) {
        *lock(&self.state.delay) = delay;
    }

    /// Holds every answer (requests are still counted) until [`Self::open_gate`].
    pub fn close_gate(&self) {
        self.state.gate_open.send_replace(false);
    }

    /// Releases held answers and stops holding new ones.
    pub fn open_gate(&self) {
        self.state.gate_open.send_replace(true);
    }

    /// Requests received so far.
    pub fn calls(&self) -> usize {
        *self.state.calls.borrow()
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        lock(&self.state.requests).clone()
    }

    /// Waits until at least `n` requests arrived; false if `timeout` passed first.
    pub async fn wait_for_calls(&self, n: usize, timeout: Duration) -> bool {
        let mut calls = self.state.calls.subscribe();
        tokio::time::timeout(timeout, calls.wait_for(|seen| *seen >= n))
            .await
            .is_ok_and(|waited| waited.is_ok())
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn chat_completions(
    State(state): State<Arc<FakeState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = SeenRequest {
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        at: Instant::now(),
    };
    lock(&state.requests).push(seen);
    state.calls.send_modify(|calls| *calls += 1);

    let reply = lock(&state.script)
        .pop_front()
        .unwrap_or_else(|| lock(&state.fallback).clone());
    let delay = *lock(&state.delay);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut gate = state.gate_open.subscribe();
    // The sender lives in `state`, which this handler holds: this cannot fail.
    let _ = gate.wait_for(|open| *open).await;

    match reply {
        Reply::Json(body) => (
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response(),
        Reply::Sse { body, piece_len } => {
            let bytes = body.into_bytes();
            let pieces: Vec<Bytes> = match piece_len {
                Some(len) => bytes.chunks(len).map(Bytes::copy_from_slice).collect(),
                None => vec![Bytes::from(bytes)],
            };
            let stream = futures_util::stream::iter(pieces).then(|piece| async move {
                // Let each piece go out as its own write.
                tokio::task::yield_now().await;
                Ok::<_, Infallible>(piece)
            });
            (
                [(header::CONTENT_TYPE, "text/event-stream")],
                Body::from_stream(stream),
            )
                .into_response()
        }
        Reply::Status {
            code,
            retry_after,
            body,
        } => {
            let status = StatusCode::from_u16(code).expect("a valid status code");
            let mut response =
                (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
            if let Some(value) = retry_after {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    value.parse().expect("a valid Retry-After value"),
                );
            }
            response
        }
    }
}
