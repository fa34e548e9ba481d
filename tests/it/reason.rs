//! The reasoning client against a fake OpenAI-compatible backend on loopback.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::fake_openai::{FakeOpenAi, Reply};
use serde_json::json;
use swarmbridge::reason::{
    CircuitState, MemoryCache, Mode, ReasonAnswer, ReasonConfig, ReasonError, Reasoner,
};
use tokio::sync::mpsc;

/// Longest any single wait in these tests may take before it counts as a failure.
const WAIT: Duration = Duration::from_secs(10);

/// Fast settings against `fake`: tiny backoff, 1 s cooldown, 2 retries.
fn config_for(fake: &FakeOpenAi) -> ReasonConfig {
    ReasonConfig {
        base_url: Some(fake.base_url()),
        model: "test-model".to_owned(),
        connect_timeout_ms: 1_000,
        timeout_ms: 5_000,
        max_retries: 2,
        backoff_base_ms: 10,
        breaker_cooldown_s: 1,
        ..ReasonConfig::default()
    }
}

fn reasoner(cfg: ReasonConfig) -> Reasoner {
    Reasoner::new(cfg, Arc::new(MemoryCache::new())).expect("valid config")
}

/// Runs `ask_streaming` while draining its deltas; returns both.
async fn ask_collecting(
    reasoner: &Reasoner,
    prompt: &str,
    mode: Mode,
) -> (Result<ReasonAnswer, ReasonError>, Vec<String>) {
    // Capacity 1 so the stream really waits on a slow consumer.
    let (tx, mut rx) = mpsc::channel(1);
    let collector = tokio::spawn(async move {
        let mut deltas = Vec::new();
        while let Some(delta) = rx.recv().await {
            deltas.push(delta);
        }
        deltas
    });
    let answer = tokio::time::timeout(WAIT, reasoner.ask_streaming(prompt, mode, tx))
        .await
        .expect("answer in time");
    let deltas = collector.await.expect("collector finished");
    (answer, deltas)
}

/// Polls `condition` until it holds; false if `WAIT` passed first.
async fn wait_until(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// Asks `n` identical prompts at once while `fake` holds its answers, and
/// releases them only once one request reached the backend and the other
/// `n - 1` joined it; returns every outcome.
async fn ask_together_while_held(
    fake: &FakeOpenAi,
    reasoner: &Arc<Reasoner>,
    n: u64,
) -> Vec<Result<ReasonAnswer, ReasonError>> {
    fake.close_gate();
    let mut asks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let reasoner = Arc::clone(reasoner);
        asks.spawn(async move { reasoner.ask("same question", Mode::Simple).await });
    }
    assert!(fake.wait_for_calls(1, WAIT).await);
    assert!(wait_until(|| reasoner.stats().coalesced == n - 1).await);
    fake.open_gate();
    tokio::time::timeout(WAIT, asks.join_all())
        .await
        .expect("all answered")
}

fn rounded_exp_mean(logprobs: &[f64]) -> f64 {
    let mean = logprobs.iter().sum::<f64>() / logprobs.len() as f64;
    (mean.exp() * 1000.0).round() / 1000.0
}

#[tokio::test]
async fn json_answer_with_logprobs_reports_exp_of_mean_logprob_as_confidence() {
    let fake = FakeOpenAi::spawn(Reply::text_with_logprobs("Ship it.", &[-0.1, -0.2, -0.3])).await;
    let reasoner = reasoner(config_for(&fake));

    let answer = reasoner
        .ask("Should we ship?", Mode::Analytical)
        .await
        .expect("answer");

    assert_eq!(answer.text, "Ship it.");
    assert_eq!(answer.mode, Mode::Analytical);
    assert_eq!(answer.model, "test-model");
    assert!(!answer.cached);
    // exp(mean(-0.1, -0.2, -0.3)) = exp(-0.2) = 0.8187...
    assert_eq!(answer.confidence, Some(0.819));
    let sent = &fake.requests()[0].body;
    assert_eq!(sent["model"], "test-model");
    assert_eq!(sent["logprobs"], true);
    assert_eq!(sent["stream"], false);
    assert_eq!(sent["messages"][0]["role"], "system");
    assert_eq!(
        sent["messages"][1],
        json!({"role": "user", "content": "Should we ship?"})
    );
}

#[tokio::test]
async fn answer_without_logprobs_has_no_confidence() {
    let fake = FakeOpenAi::spawn(Reply::text("plain")).await;
    fake.then(Reply::text("plain"))
        .then(Reply::text_with_logprobs_value("plain", json!(null)))
        .then(Reply::text_with_logprobs_value(
            "plain",
            json!({"content": []}),
        ));
    let reasoner = reasoner(config_for(&fake));

    for prompt in ["absent", "null", "empty"] {
        let answer = reasoner.ask(prompt, Mode::Simple).await.expect("answer");
        assert_eq!(answer.confidence, None, "logprobs {prompt}");
    }
    assert_eq!(fake.calls(), 3);
}

#[tokio::test]
async fn sse_stream_passes_deltas_in_order_then_the_full_answer() {
    let deltas = ["Hel", "lo, ", "wörld", "!"];
    let logprobs = [-0.1, -0.2, -0.3, -0.4];
    let fake = FakeOpenAi::spawn(Reply::stream(&deltas, Some(&logprobs))).await;
    let reasoner = reasoner(config_for(&fake));

    let (answer, received) = ask_collecting(&reasoner, "greet", Mode::Creative).await;
    let answer = answer.expect("answer");

    assert_eq!(received, deltas);
    assert_eq!(answer.text, "Hello, wörld!");
    assert_eq!(answer.confidence, Some(rounded_exp_mean(&logprobs)));
    assert_eq!(fake.requests()[0].body["stream"], true);
}

#[tokio::test]
async fn sse_body_split_mid_line_and_mid_utf8_character_is_reassembled() {
    let deltas = ["Grüße ", "aus ", "東京 ", "🌍✨"];
    // Three-byte pieces cut through JSON, `data:` prefixes and multi-byte characters.
    let fake = FakeOpenAi::spawn(Reply::stream(&deltas, None).in_pieces(3)).await;
    let reasoner = reasoner(config_for(&fake));

    let (answer, received) = ask_collecting(&reasoner, "greet", Mode::Creative).await;
    let answer = answer.expect("answer");

    assert_eq!(received, deltas);
    assert_eq!(answer.text, deltas.concat());
    assert_eq!(answer.confidence, None);
}

#[tokio::test]
async fn dropped_delta_receiver_does_not_stop_the_answer_from_being_cached() {
    let fake = FakeOpenAi::spawn(Reply::stream(&["a", "b", "c"], None)).await;
    let reasoner = reasoner(config_for(&fake));
    let (tx, rx) = mpsc::channel(1);
    drop(rx);

    let answer = reasoner
        .ask_streaming("letters", Mode::Simple, tx)
        .await
        .expect("answer");
    assert_eq!(answer.text, "abc");

    let again = reasoner.ask("letters", Mode::Simple).await.expect("answer");
    assert!(again.cached);
    assert_eq!(fake.calls(), 1);
}

#[tokio::test]
async fn rate_limited_429_is_retried_after_its_retry_after_delay() {
    let fake = FakeOpenAi::spawn(Reply::text("finally")).await;
    fake.then(Reply::status(429, "slow down").retry_after("1"));
    let reasoner = reasoner(config_for(&fake));

    let answer = reasoner.ask("now?", Mode::Simple).await.expect("answer");

    assert_eq!(answer.text, "finally");
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let waited = requests[1].at - requests[0].at;
    assert!(waited >= Duration::from_millis(950), "waited {waited:?}");
}

#[tokio::test]
async fn repeated_500s_open_the_circuit_until_a_trial_after_cooldown_succeeds() {
    let fake = FakeOpenAi::spawn(Reply::status(500, "boom")).await;
    let reasoner = reasoner(ReasonConfig {
        breaker_threshold: 2,
        max_retries: 1,
        ..config_for(&fake)
    });

    for expected_calls in [2, 4] {
        let err = reasoner.ask("q", Mode::Technical).await.expect_err("fails");
        assert!(
            matches!(
                err,
                ReasonError::Backend {
                    status: Some(500),
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            fake.calls(),
            expected_calls,
            "one call = first try + 1 retry"
        );
    }
    assert_eq!(reasoner.stats().circuit, CircuitState::Open);

    let started = Instant::now();
    let err = reasoner.ask("q", Mode::Technical).await.expect_err("open");
    assert!(matches!(err, ReasonError::CircuitOpen { .. }), "{err:?}");
    assert_eq!(err.code(), "unavailable");
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(
        fake.calls(),
        4,
        "an open circuit does not touch the backend"
    );

    fake.set_fallback(Reply::text("recovered"));
    assert!(wait_until(|| reasoner.stats().circuit == CircuitState::HalfOpen).await);
    let answer = reasoner.ask("q", Mode::Technical).await.expect("trial");
    assert_eq!(answer.text, "recovered");
    assert_eq!(fake.calls(), 5);
    assert_eq!(reasoner.stats().circuit, CircuitState::Closed);
}

#[tokio::test]
async fn failed_trial_after_cooldown_reopens_the_circuit() {
    let fake = FakeOpenAi::spawn(Reply::status(503, "down")).await;
    let reasoner = reasoner(ReasonConfig {
        breaker_threshold: 1,
        max_retries: 0,
        ..config_for(&fake)
    });
    reasoner.ask("q", Mode::Simple).await.expect_err("fails");
    assert_eq!(reasoner.stats().circuit, CircuitState::Open);

    assert!(wait_until(|| reasoner.stats().circuit == CircuitState::HalfOpen).await);
    let err = reasoner
        .ask("q", Mode::Simple)
        .await
        .expect_err("trial fails");
    assert!(
        matches!(
            err,
            ReasonError::Backend {
                status: Some(503),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(fake.calls(), 2, "the trial reached the backend");

    let err = reasoner
        .ask("q", Mode::Simple)
        .await
        .expect_err("open again");
    assert!(matches!(err, ReasonError::CircuitOpen { .. }), "{err:?}");
    assert_eq!(fake.calls(), 2);
}

#[tokio::test]
async fn slow_backend_fails_with_a_clear_timeout_after_retrying() {
    let fake = FakeOpenAi::spawn(Reply::text("too late")).await;
    fake.set_delay(Duration::from_secs(30));
    let reasoner = reasoner(ReasonConfig {
        timeout_ms: 300,
        max_retries: 1,
        ..config_for(&fake)
    });

    let started = Instant::now();
    let err = reasoner
        .ask("q", Mode::Simple)
        .await
        .expect_err("times out");

    assert_eq!(err, ReasonError::Timeout { after_ms: 300 });
    assert_eq!(
        err.to_string(),
        "the reasoning backend did not answer within 300 ms"
    );
    assert_eq!(err.code(), "unavailable");
    assert_eq!(fake.calls(), 2, "a timeout is retried");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn prompt_equal_after_whitespace_and_case_normalization_is_a_cache_hit() {
    let fake = FakeOpenAi::spawn(Reply::text_with_logprobs("42", &[-0.5])).await;
    let reasoner = reasoner(config_for(&fake));

    let first = reasoner
        .ask("What is   the\tANSWER?", Mode::Analytical)
        .await
        .expect("answer");
    let second = reasoner
        .ask("  what is the answer? ", Mode::Analytical)
        .await
        .expect("answer");

    assert!(!first.cached);
    assert!(second.cached);
    assert_eq!(second.text, "42");
    assert_eq!(second.confidence, first.confidence);
    assert_eq!(fake.calls(), 1);
    let stats = reasoner.stats();
    assert_eq!((stats.cache_hits, stats.cache_misses), (1, 1));

    let other_mode = reasoner
        .ask("what is the answer?", Mode::Creative)
        .await
        .expect("answer");
    assert!(!other_mode.cached, "the mode is part of the key");
    assert_eq!(fake.calls(), 2);
}

#[tokio::test]
async fn ten_identical_concurrent_prompts_make_one_backend_call() {
    let fake = FakeOpenAi::spawn(Reply::text("shared")).await;
    // Cache off: only single-flight can keep the other nine off the backend.
    let reasoner = Arc::new(reasoner(ReasonConfig {
        cache_ttl_s: 0,
        ..config_for(&fake)
    }));

    let answers = ask_together_while_held(&fake, &reasoner, 10).await;
    assert_eq!(answers.len(), 10);
    for answer in answers {
        assert_eq!(answer.expect("answer").text, "shared");
    }
    assert_eq!(fake.calls(), 1);
}

#[tokio::test]
async fn concurrent_identical_prompts_share_the_leaders_error() {
    let fake = FakeOpenAi::spawn(Reply::status(400, "unsupported parameter: foo")).await;
    let reasoner = Arc::new(reasoner(config_for(&fake)));

    let outcomes = ask_together_while_held(&fake, &reasoner, 5).await;
    for outcome in outcomes {
        let err = outcome.expect_err("shared error");
        assert!(
            matches!(
                err,
                ReasonError::Backend {
                    status: Some(400),
                    ..
                }
            ),
            "{err:?}"
        );
    }
    assert_eq!(fake.calls(), 1);
}

#[tokio::test]
async fn unconfigured_reasoner_answers_not_configured_with_how_to_configure() {
    let reasoner = reasoner(ReasonConfig::default());
    assert!(!reasoner.is_configured());

    let err = reasoner
        .ask("hello", Mode::Simple)
        .await
        .expect_err("fails");

    assert_eq!(err, ReasonError::NotConfigured);
    assert_eq!(err.code(), "unavailable");
    let message = err.to_string();
    for needed in [
        "SWARMBRIDGE_REASONING_BASE_URL",
        "SWARMBRIDGE_REASONING_MODEL",
        "SWARMBRIDGE_REASONING_API_KEY",
    ] {
        assert!(message.contains(needed), "{message}");
    }
}

#[tokio::test]
async fn prompt_limit_counts_characters_and_empty_prompts_are_rejected() {
    let fake = FakeOpenAi::spawn(Reply::text("fine")).await;
    let reasoner = reasoner(ReasonConfig {
        max_prompt_chars: 10,
        ..config_for(&fake)
    });

    let err = reasoner
        .ask(&"é".repeat(11), Mode::Simple)
        .await
        .expect_err("too long");
    assert_eq!(err, ReasonError::PromptTooLong { max: 10, got: 11 });
    assert_eq!(err.code(), "bad_request");

    let err = reasoner
        .ask(" \n\t", Mode::Simple)
        .await
        .expect_err("empty");
    assert_eq!(err, ReasonError::EmptyPrompt);
    assert_eq!(err.code(), "bad_request");
    assert_eq!(fake.calls(), 0);

    // Ten two-byte characters: 20 bytes, but within a 10-character limit.
    let answer = reasoner.ask(&"é".repeat(10), Mode::Simple).await;
    assert_eq!(answer.expect("accepted").text, "fine");
    assert_eq!(fake.calls(), 1);
}

#[tokio::test]
async fn bad_request_not_about_logprobs_is_not_retried() {
    let fake = FakeOpenAi::spawn(Reply::status(
        400,
        "This model's maximum context length is 8 tokens",
    ))
    .await;
    let reasoner = reasoner(config_for(&fake));

    let err = reasoner.ask("q", Mode::Simple).await.expect_err("fails");

    assert_eq!(
        err,
        ReasonError::Backend {
            status: Some(400),
            message: "This model's maximum context length is 8 tokens".to_owned()
        }
    );
    assert_eq!(err.code(), "unavailable");
    assert_eq!(fake.calls(), 1);
    assert_eq!(fake.requests()[0].body["logprobs"], true);
}

#[tokio::test]
async fn backend_rejecting_logprobs_is_asked_again_without_them_from_then_on() {
    let fake = FakeOpenAi::spawn(Reply::text("ok")).await;
    fake.then(Reply::status(
        400,
        "logprobs is not supported by this model",
    ));
    let reasoner = reasoner(config_for(&fake));

    let answer = reasoner.ask("first", Mode::Simple).await.expect("answer");
    assert_eq!(answer.text, "ok");
    assert_eq!(answer.confidence, None);
    reasoner.ask("second", Mode::Simple).await.expect("answer");

    let requests = fake.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].body["logprobs"], true);
    assert!(requests[1].body.get("logprobs").is_none());
    assert!(requests[2].body.get("logprobs").is_none(), "remembered");
}

#[tokio::test]
async fn backend_error_message_is_surfaced_and_truncated() {
    let long = format!("upstream exploded: {}", "x".repeat(400));
    let fake = FakeOpenAi::spawn(Reply::status(502, &long)).await;
    let reasoner = reasoner(ReasonConfig {
        max_retries: 1,
        ..config_for(&fake)
    });

    let err = reasoner.ask("q", Mode::Simple).await.expect_err("fails");

    let ReasonError::Backend {
        status: Some(502),
        message,
    } = &err
    else {
        panic!("expected a 502 backend error, got {err:?}");
    };
    assert!(message.starts_with("upstream exploded: xxx"), "{message}");
    assert!(message.chars().count() <= 201, "{} chars", message.len());
    assert!(err.to_string().contains("HTTP 502"), "{err}");
    assert_eq!(fake.calls(), 2, "5xx is retried");
    assert_eq!(reasoner.stats().backend_failures, 1);
}

#[tokio::test]
async fn api_key_is_sent_as_a_bearer_token_only_when_configured() {
    let fake = FakeOpenAi::spawn(Reply::text("ok")).await;
    let with_key = reasoner(ReasonConfig {
        api_key: Some("sk-test-key".to_owned()),
        ..config_for(&fake)
    });
    let without_key = reasoner(config_for(&fake));

    with_key.ask("q", Mode::Simple).await.expect("answer");
    without_key.ask("q", Mode::Simple).await.expect("answer");

    let requests = fake.requests();
    assert_eq!(
        requests[0].authorization.as_deref(),
        Some("Bearer sk-test-key")
    );
    assert_eq!(requests[1].authorization, None);
}

#[tokio::test]
async fn streaming_a_cache_hit_sends_the_whole_text_as_one_delta() {
    let fake = FakeOpenAi::spawn(Reply::text("the whole cached answer")).await;
    let reasoner = reasoner(config_for(&fake));
    reasoner.ask("q", Mode::Strategic).await.expect("answer");

    let (answer, received) = ask_collecting(&reasoner, "Q", Mode::Strategic).await;

    let answer = answer.expect("answer");
    assert!(answer.cached);
    assert_eq!(received, ["the whole cached answer"]);
    assert_eq!(fake.calls(), 1);
}

#[tokio::test]
async fn per_caller_budget_allows_a_burst_then_says_when_to_retry() {
    let reasoner = reasoner(ReasonConfig {
        budget_per_min: 60,
        budget_burst: 2,
        ..ReasonConfig::default()
    });

    assert_eq!(reasoner.check_budget("discord:1"), Ok(()));
    assert_eq!(reasoner.check_budget("discord:1"), Ok(()));
    let retry_after_ms = reasoner.check_budget("discord:1").expect_err("burst spent");
    assert!((1..=1_000).contains(&retry_after_ms), "{retry_after_ms} ms");
    assert_eq!(reasoner.check_budget("twitch:viewer"), Ok(()), "per caller");
}
