//! The OpenAI-compatible embeddings client against a fake backend on loopback.

use std::time::{Duration, Instant};

use crate::common::fake_embeddings::{word_vector, EmbedReply, FakeEmbeddings};
use swarmbridge::config::Config;
use swarmbridge::embed::config::ApiKey;
use swarmbridge::embed::{
    from_config, EmbedBackendKind, EmbedConfig, EmbedError, Embedder, HttpEmbedder,
};
use swarmbridge::reason::CircuitState;

const DIMENSIONS: usize = 16;

/// Fast settings against `fake`: tiny backoff, 2 retries, 1 s cooldown.
fn config_for(fake: &FakeEmbeddings) -> EmbedConfig {
    EmbedConfig {
        backend: EmbedBackendKind::Openai,
        base_url: Some(fake.base_url()),
        model: "fake-embed".to_owned(),
        dimensions: DIMENSIONS,
        batch_size: 3,
        connect_timeout_ms: 1_000,
        timeout_ms: 5_000,
        max_retries: 2,
        backoff_base_ms: 10,
        breaker_cooldown_s: 1,
        ..EmbedConfig::default()
    }
}

fn embedder(cfg: &EmbedConfig) -> HttpEmbedder {
    HttpEmbedder::new(cfg, None).expect("valid config")
}

fn texts(words: &[&str]) -> Vec<String> {
    words.iter().map(|word| (*word).to_owned()).collect()
}

#[tokio::test]
async fn texts_are_sent_in_batches_of_batch_size_and_come_back_in_order() {
    let fake = FakeEmbeddings::spawn(DIMENSIONS).await;
    let cfg = config_for(&fake);
    let client = HttpEmbedder::new(&cfg, Some(test_key())).expect("valid config");
    let input = texts(&[
        "deploy failed",
        "login timeout",
        "review the patch",
        "disk full on db-2",
        "rollback release",
        "flaky test",
        "rotate the certificates",
    ]);

    let vectors = client.embed(&input).await.expect("embedded");

    let expected: Vec<Vec<f32>> = input.iter().map(|t| word_vector(t, DIMENSIONS)).collect();
    assert_eq!(vectors, expected);
    let sizes: Vec<usize> = fake.requests().iter().map(|r| r.inputs.len()).collect();
    assert_eq!(sizes, vec![3, 3, 1]);
    let first = &fake.requests()[0];
    assert_eq!(first.model.as_deref(), Some("fake-embed"));
    assert_eq!(first.authorization.as_deref(), Some("Bearer sk-embed-test"));
    assert_eq!(client.model(), "fake-embed");
    assert_eq!(client.dimensions(), DIMENSIONS);
}

fn test_key() -> ApiKey {
    EmbedConfig {
        api_key_env: "TEST_EMBED_KEY".into(),
        ..EmbedConfig::default()
    }
    .api_key(|_| Some("sk-embed-test".to_owned()))
    .expect("key")
}

#[tokio::test]
async fn an_empty_call_answers_at_once_and_a_blank_text_is_a_bad_request() {
    let fake = FakeEmbeddings::spawn(DIMENSIONS).await;
    let client = embedder(&config_for(&fake));

    assert_eq!(client.embed(&[]).await, Ok(Vec::new()));
    let err = client
        .embed(&texts(&["fine", "  "]))
        .await
        .expect_err("blank text");

    assert_eq!(err, EmbedError::EmptyText { index: 1 });
    assert_eq!(err.code(), "bad_request");
    assert!(fake.requests().is_empty(), "the backend was not called");
}

#[tokio::test]
async fn retry_after_from_a_429_is_waited_instead_of_the_backoff() {
    let fake = FakeEmbeddings::spawn(DIMENSIONS).await;
    fake.then(EmbedReply::status_retry_after(429, "0.4"));
    let cfg = EmbedConfig {
        // Were the backoff used instead, the wait would be 5 to 10 s.
        backoff_base_ms: 10_000,
        ..config_for(&fake)
    };
    let client = embedder(&cfg);

    let started = Instant::now();
    let vectors = client
        .embed(&texts(&["queue backlog"]))
        .await
        .expect("retried");
    let waited = started.elapsed();

    assert_eq!(vectors, vec![word_vector("queue backlog", DIMENSIONS)]);
    assert_eq!(fake.requests().len(), 2);
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(4),
        "waited {waited:?}"
    );
}

#[tokio::test]
async fn server_errors_are_retried_until_the_backend_answers() {
    let fake = FakeEmbeddings::spawn(DIMENSIONS).await;
    fake.then(EmbedReply::status(503))
        .then(EmbedReply::status(500));
    let client = embedder(&config_for(&fake));

    let vectors = client.embed(&texts(&["cache miss storm"])).await;

    assert_eq!(
        vectors,
        Ok(vec![word_vector("cache miss storm", DIMENSIONS)])
    );
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn a_backend_still_failing_after_the_retries_is_unavailable_with_its_message() {
    let fake = FakeEmbeddings::spawn(DIMENSIONS).await;
    for _ in 0..3 {
        fake.then(EmbedReply::status(502));
    }
    let client = embedder(&config_for(&fake));

    let err = client
        .embed(&texts(&["gateway"]))
        .await
        .expect_err("still failing");

    assert_eq!(
        err,
        EmbedError::Backend {
            status: Some(502),
            message: "fake failure 502".into()
        }
    );
    assert_eq!(err.code(), "unavailable");
    assert_eq!(fake.requests().len(), 3, "one attempt and two retries");
}

#[tokio::test]
async fn a_client_error_is_not_retried_and_does_not_open_the_breaker() {
    let fake = FakeEmbeddings::spawn(DIMENSIONS).await;
    fake.then(EmbedReply::status(400))
        .then(EmbedReply::status(400));
    let cfg = EmbedConfig {
        breaker_threshold: 1,
        ..config_for(&fake)
    };
    let client = embedder(&cfg);

    for _ in 0..2 {
        let err = client.embed(&texts(&["x"])).await.expect_err("400");
        assert!(
            matches!(
                err,
                EmbedError::Backend {
                    status: Some(400),
                    ..
                }
            ),
            "{err}"
        );
    }

    assert_eq!(fake.requests().len(), 2);
    assert_eq!(client.circuit_state(), CircuitState::Closed);
}

#[tokio::test]
async fn the_breaker_opens_after_repeated_failures_and_refuses_without_calling() {
    let fake = FakeEmbeddings::spawn(DIMENSIONS).await;
    for _ in 0..2 {
        fake.then(EmbedReply::status(503));
    }
    let cfg = EmbedConfig {
        max_retries: 0,
        breaker_threshold: 2,
        breaker_cooldown_s: 30,
        ..config_for(&fake)
    };
    let client = embedder(&cfg);

    for _ in 0..2 {
        client.embed(&texts(&["a"])).await.expect_err("503");
    }
    let refused = client.embed(&texts(&["a"])).await.expect_err("open");

    assert!(
        matches!(refused, EmbedError::CircuitOpen { .. }),
        "{refused}"
    );
    assert_eq!(refused.code(), "unavailable");
    assert!(refused.retry_after_ms().is_some_and(|ms| ms > 25_000));
    assert!(refused
        .to_string()
        .contains("embeddings backend is failing"));
    assert_eq!(fake.requests().len(), 2, "the open breaker sent nothing");
    assert_eq!(client.circuit_state(), CircuitState::Open);
}

#[tokio::test]
async fn the_breaker_lets_a_trial_through_after_the_cooldown_and_closes_on_success() {
    let fake = FakeEmbeddings::spawn(DIMENSIONS).await;
    fake.then(EmbedReply::status(503));
    let cfg = EmbedConfig {
        max_retries: 0,
        breaker_threshold: 1,
        breaker_cooldown_s: 1,
        ..config_for(&fake)
    };
    let client = embedder(&cfg);
    client.embed(&texts(&["a"])).await.expect_err("503");
    assert_eq!(client.circuit_state(), CircuitState::Open);

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let vectors = client.embed(&texts(&["a"])).await;

    assert_eq!(vectors, Ok(vec![word_vector("a", DIMENSIONS)]));
    assert_eq!(client.circuit_state(), CircuitState::Closed);
}

#[tokio::test]
async fn vectors_of_the_wrong_length_are_refused_naming_the_model_and_both_lengths() {
    let fake = FakeEmbeddings::spawn(DIMENSIONS).await;
    fake.then(EmbedReply::WrongLength(768));
    let client = embedder(&config_for(&fake));

    let err = client
        .embed(&texts(&["incident review"]))
        .await
        .expect_err("wrong length");

    assert_eq!(
        err,
        EmbedError::WrongDimensions {
            model: "fake-embed".into(),
            expected: DIMENSIONS,
            got: 768
        }
    );
    let message = err.to_string();
    for part in ["fake-embed", "768", "16"] {
        assert!(message.contains(part), "{message}");
    }
    assert_eq!(err.code(), "unavailable");
    assert_eq!(fake.requests().len(), 1, "a wrong answer is not retried");
}

#[tokio::test]
async fn the_default_config_has_embeddings_off_and_says_how_to_turn_them_on() {
    let cfg = Config::load(None).expect("default config loads");
    assert_eq!(cfg.embeddings.backend, EmbedBackendKind::Off);

    let embedder = from_config(&cfg.embeddings).expect("off is valid");
    let err = embedder
        .embed(&texts(&["anything"]))
        .await
        .expect_err("not configured");

    assert!(!embedder.is_configured());
    assert_eq!(err, EmbedError::NotConfigured);
    assert_eq!(err.code(), "unavailable");
    assert!(err.to_string().contains("embeddings.base_url"), "{err}");
}

#[tokio::test]
async fn an_openai_backend_without_dimensions_is_refused_at_start() {
    let fake = FakeEmbeddings::spawn(DIMENSIONS).await;
    let cfg = EmbedConfig {
        dimensions: 0,
        ..config_for(&fake)
    };
    let err = from_config(&cfg).expect_err("dimensions required");
    assert!(err.to_string().contains("embeddings.dimensions"), "{err}");
}

#[tokio::test]
async fn an_unreachable_backend_is_unavailable_after_its_retries() {
    // Bind then drop: nothing listens on the port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let cfg = EmbedConfig {
        backend: EmbedBackendKind::Openai,
        base_url: Some(format!("http://127.0.0.1:{port}/v1")),
        model: "m".into(),
        dimensions: 4,
        max_retries: 1,
        backoff_base_ms: 10,
        ..EmbedConfig::default()
    };
    let err = embedder(&cfg)
        .embed(&texts(&["x"]))
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(err, EmbedError::Backend { status: None, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("could not connect"), "{err}");
}

#[tokio::test]
async fn calls_are_counted_in_the_metrics() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    // A current-thread test: every await below runs on this thread.
    let _guard = metrics::set_default_local_recorder(&recorder);
    let fake = FakeEmbeddings::spawn(DIMENSIONS).await;
    fake.then(EmbedReply::status(503));
    let client = embedder(&config_for(&fake));

    client
        .embed(&texts(&["a", "b", "c", "d"]))
        .await
        .expect("embedded");

    let text = handle.render();
    for line in [
        "swarmbridge_embedding_texts_total 4",
        "swarmbridge_embedding_requests_total{outcome=\"ok\"} 2",
        "swarmbridge_embedding_requests_total{outcome=\"http_error\"} 1",
        "swarmbridge_embedding_batches_total{outcome=\"ok\"} 2",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}
