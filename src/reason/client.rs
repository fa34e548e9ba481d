//! One HTTP attempt against an OpenAI-compatible `POST /chat/completions`:
//! the request body, the JSON and SSE answers, and how each failure should be
//! treated (retry or not, counted against the backend or not).

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

use super::confidence::LogprobTally;
use super::modes::ModePreset;
use super::ReasonError;

/// Longest backend error message passed on to users, in characters.
const MAX_ERROR_CHARS: usize = 200;
/// Longest `Retry-After` honoured, whatever the backend asks.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The chat-completions request body.
#[derive(Debug, Serialize)]
pub(crate) struct ChatRequest<'a> {
    model: &'a str,
    messages: [ChatMessage<'a>; 2],
    temperature: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    /// Left out entirely when off: some backends reject the field itself.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    logprobs: bool,
    stream: bool,
}

#[derive(Debug, Serialize)]
struct ChatMessage<'a> {
    role: &'static str,
    content: &'a str,
}

impl<'a> ChatRequest<'a> {
    pub(crate) fn new(
        model: &'a str,
        preset: &'a ModePreset,
        prompt: &'a str,
        logprobs: bool,
        stream: bool,
    ) -> Self {
        Self {
            model,
            messages: [
                ChatMessage {
                    role: "system",
                    content: &preset.system_prompt,
                },
                ChatMessage {
                    role: "user",
                    content: prompt,
                },
            ],
            temperature: preset.temperature,
            top_p: preset.top_p,
            max_tokens: preset.max_tokens,
            logprobs,
            stream,
        }
    }
}

/// A finished answer from the backend.
#[derive(Debug, Clone)]
pub(crate) struct Completion {
    pub(crate) text: String,
    pub(crate) confidence: Option<f64>,
}

/// When a failed attempt may be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Not retryable (a client error, or deltas were already passed on).
    No,
    /// Retry after the usual exponential backoff.
    Backoff,
    /// Retry after the delay the backend asked for (`Retry-After`).
    After(Duration),
}

/// A failed attempt and how to treat it.
#[derive(Debug)]
pub(crate) struct AttemptFailure {
    pub(crate) error: ReasonError,
    pub(crate) retry: Retry,
    /// The backend itself is at fault (down, overloaded, misconfigured):
    /// counts towards opening the circuit breaker.
    pub(crate) backend_fault: bool,
    /// A 400/422 whose body mentions logprobs: the backend rejects the field.
    pub(crate) rejects_logprobs: bool,
}

impl AttemptFailure {
    fn transient(error: ReasonError) -> Self {
        Self {
            error,
            retry: Retry::Backoff,
            backend_fault: true,
            rejects_logprobs: false,
        }
    }

    /// Deltas already reached the caller: retrying would repeat them.
    fn final_if_streamed(mut self, sink: Option<&DeltaSink<'_>>) -> Self {
        if sink.is_some_and(|sink| sink.sent_any) {
            self.retry = Retry::No;
        }
        self
    }
}

/// Where streamed deltas go. A receiver that went away is not an error: the
/// answer is still read to the end (and cached).
#[derive(Debug)]
pub(crate) struct DeltaSink<'a> {
    sender: &'a mpsc::Sender<String>,
    receiver_open: bool,
    sent_any: bool,
}

impl<'a> DeltaSink<'a> {
    pub(crate) fn new(sender: &'a mpsc::Sender<String>) -> Self {
        Self {
            sender,
            receiver_open: true,
            sent_any: false,
        }
    }

    /// Passes one non-empty delta on, waiting while the bounded channel is full.
    pub(crate) async fn send(&mut self, delta: &str) {
        if delta.is_empty() {
            return;
        }
        self.sent_any = true;
        if self.receiver_open && self.sender.send(delta.to_owned()).await.is_err() {
            self.receiver_open = false;
        }
    }
}

/// A configured backend endpoint.
#[derive(Clone)]
pub(crate) struct ChatClient {
    http: reqwest::Client,
    endpoint: reqwest::Url,
    api_key: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for ChatClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatClient")
            .field("endpoint", &self.endpoint.as_str())
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ChatClient {
    pub(crate) fn new(
        http: reqwest::Client,
        endpoint: reqwest::Url,
        api_key: Option<String>,
        timeout: Duration,
    ) -> Self {
        Self {
            http,
            endpoint,
            api_key,
            timeout,
        }
    }

    /// One HTTP request and its whole answer, bounded by the total timeout.
    /// With `sink`, asks for a stream and passes deltas on as they arrive.
    pub(crate) async fn attempt(
        &self,
        request: &ChatRequest<'_>,
        mut sink: Option<&mut DeltaSink<'_>>,
    ) -> Result<Completion, AttemptFailure> {
        let mut builder = self.http.post(self.endpoint.clone()).json(request);
        if let Some(key) = &self.api_key {
            builder = builder.bearer_auth(key);
        }
        let exchange = async {
            let response = builder.send().await.map_err(transport_failure)?;
            let status = response.status();
            if !status.is_success() {
                return Err(status_failure(response, self.api_key.as_deref()).await);
            }
            match sink.as_deref_mut() {
                Some(sink) if is_event_stream(response.headers()) => {
                    read_event_stream(response, sink).await
                }
                sink => {
                    let completion = read_json(response).await?;
                    if let Some(sink) = sink {
                        // The backend ignored `stream`: the whole text is one delta.
                        sink.send(&completion.text).await;
                    }
                    Ok(completion)
                }
            }
        };
        let outcome = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(outcome) => outcome,
            Err(_elapsed) => Err(AttemptFailure::transient(ReasonError::Timeout {
                after_ms: millis(self.timeout),
            })),
        };
        outcome.map_err(|failure| failure.final_if_streamed(sink.as_deref()))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

/// A request that failed below HTTP: connect errors, resets, timeouts.
fn transport_failure(err: reqwest::Error) -> AttemptFailure {
    let error = if err.is_timeout() {
        // Only the connect timeout can fire here; the total one is ours.
        ReasonError::Backend {
            status: None,
            message: "could not connect to the reasoning backend in time".to_owned(),
        }
    } else if err.is_connect() {
        ReasonError::Backend {
            status: None,
            message: format!(
                "could not connect to the reasoning backend ({})",
                root_cause(&err)
            ),
        }
    } else {
        ReasonError::Backend {
            status: None,
            message: format!(
                "the request to the reasoning backend failed ({})",
                root_cause(&err)
            ),
        }
    };
    AttemptFailure::transient(error)
}

/// The innermost error's text: names the actual cause (refused, reset, DNS)
/// without the URL that reqwest's outer message carries.
pub(crate) fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    truncate_chars(&cause.to_string(), MAX_ERROR_CHARS)
}

/// How an error status from an OpenAI-compatible backend is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatusVerdict {
    /// 408, 429 and 5xx: worth another attempt.
    pub(crate) retryable: bool,
    /// The backend itself is at fault (down, overloaded, misconfigured):
    /// counts towards opening the circuit breaker.
    pub(crate) backend_fault: bool,
}

/// Judges an error status the same way for every backend client.
pub(crate) fn judge_status(status: StatusCode) -> StatusVerdict {
    let retryable = status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error();
    let backend_fault = retryable
        || matches!(
            status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
        );
    StatusVerdict {
        retryable,
        backend_fault,
    }
}

/// The backend's own message in an error body, else the status's reason.
pub(crate) fn status_message(status: StatusCode, body: &str) -> String {
    backend_error_message(body)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("no reason").to_owned())
}

/// The failure of a non-2xx answer. A backend that echoes the API key in
/// its error (some say "incorrect API key provided: ...") does not get it
/// passed on: `api_key` is cut out of the message.
async fn status_failure(response: reqwest::Response, api_key: Option<&str>) -> AttemptFailure {
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let body = response.text().await.unwrap_or_default();
    let StatusVerdict {
        retryable,
        backend_fault,
    } = judge_status(status);
    let retry = match (retryable, retry_after) {
        (false, _) => Retry::No,
        (true, Some(delay)) => Retry::After(delay),
        (true, None) => Retry::Backoff,
    };
    let rejects_logprobs = matches!(
        status,
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY
    ) && body.to_ascii_lowercase().contains("logprob");
    let mut message = status_message(status, &body);
    if let Some(key) = api_key.map(str::trim).filter(|k| !k.is_empty()) {
        message = message.replace(key, crate::secrets::REDACTED);
    }
    AttemptFailure {
        error: ReasonError::Backend {
            status: Some(status.as_u16()),
            message,
        },
        retry,
        backend_fault,
        rejects_logprobs,
    }
}

/// `Retry-After` in (possibly fractional) seconds, capped; HTTP dates are ignored.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: f64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(
        seconds.min(MAX_RETRY_AFTER.as_secs_f64()),
    ))
}

/// The message of an error body, in the shapes OpenAI-compatible servers use:
/// `{"error":{"message":..}}`, `{"error":".."}`, `{"message":..}`,
/// `{"detail":..}`, or plain text; truncated for display.
pub(crate) fn backend_error_message(body: &str) -> Option<String> {
    let body = body.trim();
    if body.is_empty() {
        return None;
    }
    let message = match serde_json::from_str::<Value>(body) {
        Ok(json) => {
            let error = json.get("error");
            [
                error.and_then(|e| e.get("message")),
                error,
                json.get("message"),
                json.get("detail"),
            ]
            .into_iter()
            .flatten()
            .find_map(Value::as_str)
            .map_or_else(|| body.to_owned(), str::to_owned)
        }
        Err(_) => body.to_owned(),
    };
    Some(truncate_chars(&message, MAX_ERROR_CHARS))
}

/// At most `max` characters of `text`, with an ellipsis when cut.
pub(crate) fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn invalid_answer(message: String) -> AttemptFailure {
    AttemptFailure {
        error: ReasonError::Backend {
            status: None,
            message,
        },
        retry: Retry::No,
        backend_fault: true,
        rejects_logprobs: false,
    }
}

fn empty_answer() -> AttemptFailure {
    AttemptFailure {
        error: ReasonError::Backend {
            status: None,
            message: "the reasoning backend returned an empty answer".to_owned(),
        },
        retry: Retry::No,
        // It answered: it is up, the model just said nothing.
        backend_fault: false,
        rejects_logprobs: false,
    }
}

async fn read_json(response: reqwest::Response) -> Result<Completion, AttemptFailure> {
    let body = response.bytes().await.map_err(transport_failure)?;
    answer_from_json(&body)
}

/// A whole (non-streamed) chat-completions answer: the first choice's text
/// and confidence, or why the body is not a usable answer.
pub(crate) fn answer_from_json(body: &[u8]) -> Result<Completion, AttemptFailure> {
    let json: Value = serde_json::from_slice(body).map_err(|err| {
        invalid_answer(format!(
            "the reasoning backend's answer is not chat-completions JSON ({err})"
        ))
    })?;
    if let Some(message) = json.get("error").map(|e| error_value_message(e, &json)) {
        return Err(AttemptFailure::transient(ReasonError::Backend {
            status: None,
            message,
        }));
    }
    let choice = json
        .get("choices")
        .and_then(|choices| choices.get(0))
        .ok_or_else(|| {
            invalid_answer("the reasoning backend's answer has no choices".to_owned())
        })?;
    let text = choice
        .get("message")
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if text.is_empty() {
        return Err(empty_answer());
    }
    let mut tally = LogprobTally::default();
    tally.add_choice_logprobs(choice);
    Ok(Completion {
        text: text.to_owned(),
        confidence: tally.confidence(),
    })
}

fn error_value_message(error: &Value, whole: &Value) -> String {
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .or_else(|| error.as_str())
        .map_or_else(|| whole.to_string(), str::to_owned);
    truncate_chars(&message, MAX_ERROR_CHARS)
}

async fn read_event_stream(
    response: reqwest::Response,
    sink: &mut DeltaSink<'_>,
) -> Result<Completion, AttemptFailure> {
    answer_from_event_stream(response.bytes_stream(), sink).await
}

/// A streamed answer read from the body's pieces as they arrive: each
/// event's delta passed to `sink`, up to `[DONE]` or the end of the body.
pub(crate) async fn answer_from_event_stream<B: AsRef<[u8]>>(
    body: impl futures_util::Stream<Item = Result<B, reqwest::Error>>,
    sink: &mut DeltaSink<'_>,
) -> Result<Completion, AttemptFailure> {
    let mut body = std::pin::pin!(body);
    let mut decoder = SseDecoder::default();
    let mut answer = StreamedAnswer::default();
    'read: while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(transport_failure)?;
        for data in decoder.push(chunk.as_ref()) {
            if answer.apply(&data, sink).await? == StreamStep::Done {
                break 'read;
            }
        }
    }
    if !answer.done {
        // The stream closed without `[DONE]`; take any last unterminated event.
        if let Some(data) = decoder.finish() {
            answer.apply(&data, sink).await?;
        }
    }
    answer.into_completion()
}

#[derive(Debug, PartialEq, Eq)]
enum StreamStep {
    More,
    Done,
}

/// The answer assembled from stream chunks so far.
#[derive(Debug, Default)]
struct StreamedAnswer {
    text: String,
    tally: LogprobTally,
    done: bool,
}

impl StreamedAnswer {
    /// Applies one event's `data`: a chunk, an error, or `[DONE]`.
    async fn apply(
        &mut self,
        data: &str,
        sink: &mut DeltaSink<'_>,
    ) -> Result<StreamStep, AttemptFailure> {
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(StreamStep::Done);
        }
        let chunk: Value = match serde_json::from_str(data) {
            Ok(chunk) => chunk,
            Err(err) => {
                tracing::warn!(%err, "ignoring a stream event that is not JSON");
                return Ok(StreamStep::More);
            }
        };
        if let Some(error) = chunk.get("error") {
            return Err(AttemptFailure::transient(ReasonError::Backend {
                status: None,
                message: error_value_message(error, &chunk),
            }));
        }
        // Chunks without choices (usage reports, keep-alives) carry no text.
        if let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) {
            self.tally.add_choice_logprobs(choice);
            if let Some(delta) = choice
                .get("delta")
                .and_then(|d| d.get("content"))
                .and_then(Value::as_str)
            {
                self.text.push_str(delta);
                sink.send(delta).await;
            }
        }
        Ok(StreamStep::More)
    }

    fn into_completion(self) -> Result<Completion, AttemptFailure> {
        if self.text.is_empty() {
            return Err(empty_answer());
        }
        Ok(Completion {
            text: self.text,
            confidence: self.tally.confidence(),
        })
    }
}

/// Incremental Server-Sent Events parser: accepts the body in pieces split at
/// any byte (mid-line, mid-CRLF, mid-UTF-8 character) and yields each
/// complete event's `data` (several `data:` lines joined with `\n`).
/// Comments (`:`) and other fields (`event`, `id`, `retry`) are ignored.
/// Each byte is looked at once (linear in the body however it is split),
/// and a line longer than [`SSE_MAX_LINE`] is dropped whole, so a backend
/// sending one endless line costs no more than that in memory.
#[derive(Debug, Default)]
pub(crate) struct SseDecoder {
    /// Bytes of the line not yet terminated (at most [`SSE_MAX_LINE`]).
    pending: Vec<u8>,
    /// The line being read outgrew [`SSE_MAX_LINE`]: it is dropped.
    overlong: bool,
    /// The last byte was a CR: an LF right after it is the same line end.
    after_cr: bool,
    /// `data` of the event being built, each line followed by `\n`.
    data: String,
}

/// The longest SSE line the reasoning client takes (1 MiB); longer lines
/// are dropped whole.
pub(crate) const SSE_MAX_LINE: usize = 1 << 20;

impl SseDecoder {
    /// Feeds the next piece of the body; returns the events it completed, in order.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut events = Vec::new();
        for &b in bytes {
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                continue;
            }
            match b {
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    self.end_line(&mut events);
                }
                _ if self.pending.len() < SSE_MAX_LINE => self.pending.push(b),
                _ => {
                    self.overlong = true;
                    self.pending = Vec::new();
                }
            }
        }
        events
    }

    /// A line ended: takes it (or drops it when it was too long).
    fn end_line(&mut self, events: &mut Vec<String>) {
        if std::mem::take(&mut self.overlong) {
            self.pending.clear();
            return;
        }
        Self::take_line(&mut self.data, &self.pending, events);
        self.pending.clear();
    }

    /// The body ended: completes a last event that lacked its blank line.
    pub(crate) fn finish(&mut self) -> Option<String> {
        let mut events = Vec::new();
        if !self.pending.is_empty() || self.overlong {
            self.end_line(&mut events);
        }
        Self::take_line(&mut self.data, b"", &mut events);
        events.pop()
    }

    fn take_line(data: &mut String, line: &[u8], events: &mut Vec<String>) {
        if line.is_empty() {
            // Blank line: dispatch, unless the event had no data.
            if data.ends_with('\n') {
                data.pop();
            }
            if !data.is_empty() {
                events.push(std::mem::take(data));
            }
            data.clear();
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        if field == b"data" {
            data.push_str(&String::from_utf8_lossy(value));
            data.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = ": keep-alive\n\
        event: message\nid: 1\ndata: {\"a\":\"héllo 🌍\"}\n\n\
        data:{\"b\":2}\r\n\r\n\
        data: line one\ndata: line two\n\n\
        retry: 100\n\n\
        data: [DONE]\n\n";

    fn expected() -> Vec<String> {
        vec![
            "{\"a\":\"héllo 🌍\"}".to_owned(),
            "{\"b\":2}".to_owned(),
            "line one\nline two".to_owned(),
            "[DONE]".to_owned(),
        ]
    }

    #[test]
    fn sse_events_are_parsed_whole() {
        let mut decoder = SseDecoder::default();
        assert_eq!(decoder.push(BODY.as_bytes()), expected());
        assert_eq!(decoder.finish(), None);
    }

    #[test]
    fn sse_events_survive_a_split_at_every_byte() {
        let bytes = BODY.as_bytes();
        for split in 0..=bytes.len() {
            let mut decoder = SseDecoder::default();
            let mut events = decoder.push(&bytes[..split]);
            events.extend(decoder.push(&bytes[split..]));
            assert_eq!(events, expected(), "split at byte {split}");
        }
        let mut decoder = SseDecoder::default();
        let events: Vec<String> = bytes
            .iter()
            .flat_map(|b| decoder.push(std::slice::from_ref(b)))
            .collect();
        assert_eq!(events, expected(), "one byte at a time");
    }

    #[test]
    fn sse_last_event_without_blank_line_is_kept_at_the_end() {
        let mut decoder = SseDecoder::default();
        assert!(decoder.push(b"data: tail\r").is_empty());
        assert_eq!(decoder.finish().as_deref(), Some("tail"));
    }

    #[test]
    fn sse_a_long_line_in_small_pieces_is_read_once_per_byte() {
        // 256 KiB in 16-byte pieces: rescanning the pending line on each
        // piece (as before) looked at ~2 * 10^9 bytes here
        let text = "y".repeat(256 * 1024);
        let body = format!("data: {text}\n\n");
        let mut decoder = SseDecoder::default();
        let events: Vec<String> = body
            .as_bytes()
            .chunks(16)
            .flat_map(|piece| decoder.push(piece))
            .collect();
        assert_eq!(events, vec![text]);
    }

    #[test]
    fn sse_a_line_longer_than_the_limit_is_dropped_and_the_stream_goes_on() {
        let mut decoder = SseDecoder::default();
        let endless = vec![b'z'; SSE_MAX_LINE + 10];
        let mut events = decoder.push(b"data: ");
        for piece in endless.chunks(64 * 1024) {
            events.extend(decoder.push(piece));
            assert!(decoder.pending.len() <= SSE_MAX_LINE);
        }
        events.extend(decoder.push(b"\n\ndata: after\n\n"));
        assert_eq!(events, vec!["after".to_owned()]);
    }

    #[test]
    fn backend_error_messages_are_extracted_and_truncated() {
        assert_eq!(
            backend_error_message(r#"{"error":{"message":"model not found","type":"x"}}"#)
                .as_deref(),
            Some("model not found")
        );
        assert_eq!(
            backend_error_message(r#"{"error":"no such model"}"#).as_deref(),
            Some("no such model")
        );
        assert_eq!(
            backend_error_message(r#"{"detail":"bad"}"#).as_deref(),
            Some("bad")
        );
        assert_eq!(
            backend_error_message("Bad Gateway").as_deref(),
            Some("Bad Gateway")
        );
        assert_eq!(backend_error_message("  "), None);
        let long = backend_error_message(&"é".repeat(500)).expect("message");
        assert_eq!(long.chars().count(), MAX_ERROR_CHARS + 1);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, "2".parse().expect("header"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(RETRY_AFTER, "3600".parse().expect("header"));
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().expect("header"),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn request_body_leaves_out_unset_options() {
        let preset = ModePreset {
            system_prompt: "sys".into(),
            temperature: 0.5,
            top_p: None,
            max_tokens: None,
        };
        let body = serde_json::to_value(ChatRequest::new("m", &preset, "q", false, true))
            .expect("serializable");
        assert_eq!(
            body,
            serde_json::json!({
                "model": "m",
                "messages": [{"role":"system","content":"sys"},{"role":"user","content":"q"}],
                "temperature": 0.5,
                "stream": true
            })
        );
    }
}
