//! The embeddings client's figures in `/metrics` (the `metrics` crate: they
//! reach whichever recorder is installed, the server's Prometheus one).

use std::time::Duration;

use metrics::{counter, describe_counter, describe_histogram, histogram};

/// HTTP requests to the embeddings backend, retries counted one by one.
pub const REQUESTS_TOTAL: &str = "swarmbridge_embedding_requests_total";
/// Batches (one request and its retries), by outcome.
pub const BATCHES_TOTAL: &str = "swarmbridge_embedding_batches_total";
/// Time per batch, retries and backoff included.
pub const BATCH_DURATION_SECONDS: &str = "swarmbridge_embedding_batch_duration_seconds";
/// Texts turned into vectors.
pub const TEXTS_TOTAL: &str = "swarmbridge_embedding_texts_total";

/// Describes the embeddings metrics to the installed recorder; call once
/// after installing it.
pub fn describe_metrics() {
    describe_counter!(
        REQUESTS_TOTAL,
        "HTTP requests to the embeddings backend, by outcome (ok, http_error, transport_error, timeout, invalid_answer); retries count one each."
    );
    describe_counter!(
        BATCHES_TOTAL,
        "Embedding batches by outcome (ok, failed after retries, circuit_open, busy)."
    );
    describe_histogram!(
        BATCH_DURATION_SECONDS,
        "Time to embed one batch, retries and backoff included."
    );
    describe_counter!(TEXTS_TOTAL, "Texts turned into vectors.");
}

/// Records one HTTP attempt's outcome.
pub(crate) fn attempt_done(outcome: &'static str) {
    counter!(REQUESTS_TOTAL, "outcome" => outcome).increment(1);
}

/// Records one batch: how long it took, how it ended, how many texts it embedded.
pub(crate) fn batch_done(elapsed: Duration, outcome: &'static str, texts: usize) {
    counter!(BATCHES_TOTAL, "outcome" => outcome).increment(1);
    histogram!(BATCH_DURATION_SECONDS, "outcome" => outcome).record(elapsed.as_secs_f64());
    if texts > 0 {
        counter!(TEXTS_TOTAL).increment(texts as u64);
    }
}
