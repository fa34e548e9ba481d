//! Vectors in the store (semantic search's index), on every backend: the
//! nearest-vector search equals a brute-force cosine ranking, keeps the
//! privacy rule of full-text search, refuses vectors of the wrong length,
//! and counts what is left to embed per model.

use crate::common::*;
use serde_json::json;
use swarmbridge::core::search::{HitKind, SearchQuery};
use swarmbridge::core::vectors::{ItemRef, VectorHit};
use swarmbridge::embed::rank::cosine_top_k;

const MODEL: &str = "test-model";
const DIMS: usize = 16;

/// A seeded generator (SplitMix64), so every run sees the same vectors.
struct Seeded(u64);

impl Seeded {
    fn next_f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }

    fn vector(&mut self, dims: usize) -> Vec<f32> {
        (0..dims).map(|_| self.next_f32()).collect()
    }
}

fn query(limit: i64, reader: Option<&str>) -> SearchQuery {
    SearchQuery {
        terms: vec![],
        prefix_last: false,
        limit,
        state: None,
        agent: None,
        since: None,
        reader: reader.map(str::to_string),
    }
}

/// Seeds tasks, direct messages (a to b) and broadcasts; returns the
/// items with a seeded random vector each, as stored.
async fn seeded(srv: &TestServer) -> Vec<(ItemRef, Vec<f32>)> {
    let mut a = srv.agent("a", &[]).await;
    let _b = srv.agent("b", &[]).await;
    for i in 0..40 {
        a.create_task(json!({"title": format!("task {i}"), "body": "something to do"}))
            .await;
    }
    for i in 0..10 {
        a.ok(
            json!({"type":"msg.send","to":"b","text":format!("direct {i}")}),
            "ok",
        )
        .await;
        a.ok(json!({"type":"broadcast","text":format!("news {i}")}), "ok")
            .await;
    }
    let items = srv
        .core()
        .store
        .unembedded(MODEL, 1000)
        .await
        .expect("unembedded");
    assert_eq!(items.len(), 60, "40 tasks and 20 messages to embed");
    let mut rng = Seeded(14);
    items
        .into_iter()
        .map(|t| (t.item, rng.vector(DIMS)))
        .collect()
}

fn brute_force(
    q: &[f32],
    items: &[(ItemRef, Vec<f32>)],
    kind: HitKind,
    allowed: impl Fn(&ItemRef) -> bool,
    k: usize,
) -> Vec<i64> {
    cosine_top_k(
        q,
        items
            .iter()
            .filter(|(i, _)| i.kind == kind && allowed(i))
            .map(|(i, v)| (i.id, v.as_slice())),
        k,
    )
    .into_iter()
    .map(|h| h.key)
    .collect()
}

fn ids(hits: &[VectorHit], kind: HitKind) -> Vec<i64> {
    hits.iter()
        .filter(|h| h.item.kind == kind)
        .map(|h| h.item.id)
        .collect()
}

#[tokio::test]
async fn nearest_vectors_equal_a_brute_force_cosine_ranking_on_seeded_random_vectors() {
    on_every_backend(
        |_| {},
        |srv| async move {
            let items = seeded(&srv).await;
            let store = &srv.core().store;
            let (first, rest) = items.split_at(25);
            store.upsert_vectors(MODEL, first.to_vec()).await.unwrap();
            store.upsert_vectors(MODEL, rest.to_vec()).await.unwrap();
            let mut rng = Seeded(2026);
            for _ in 0..5 {
                let q = rng.vector(DIMS);
                let hits = store
                    .nearest_vectors(MODEL, &q, &query(10, None))
                    .await
                    .unwrap();
                for kind in [HitKind::Task, HitKind::Message] {
                    assert_eq!(
                        ids(&hits, kind),
                        brute_force(&q, &items, kind, |_| true, 10),
                        "{kind:?}"
                    );
                }
                for h in &hits {
                    let v = &items.iter().find(|(i, _)| *i == h.item).unwrap().1;
                    let want = f64::from(swarmbridge::embed::rank::cosine(&q, v));
                    assert!((h.similarity - want).abs() < 1e-4, "{h:?} vs {want}");
                }
            }
        },
    )
    .await;
}

#[tokio::test]
async fn nearest_vectors_show_direct_messages_only_to_their_parties() {
    on_every_backend(
        |_| {},
        |srv| async move {
            let items = seeded(&srv).await;
            let store = &srv.core().store;
            store.upsert_vectors(MODEL, items.clone()).await.unwrap();
            let q = Seeded(7).vector(DIMS);
            let all = store
                .nearest_vectors(MODEL, &q, &query(100, Some("b")))
                .await
                .unwrap();
            assert_eq!(ids(&all, HitKind::Message).len(), 20, "b sees its messages");
            let outsider = store
                .nearest_vectors(MODEL, &q, &query(100, Some("c")))
                .await
                .unwrap();
            assert_eq!(
                ids(&outsider, HitKind::Message).len(),
                10,
                "c sees the broadcasts only"
            );
            assert_eq!(ids(&outsider, HitKind::Task).len(), 40);
        },
    )
    .await;
}

#[tokio::test]
async fn vectors_of_the_wrong_length_are_refused_naming_the_model_and_dimensions() {
    on_every_backend(
        |_| {},
        |srv| async move {
            let items = seeded(&srv).await;
            let store = &srv.core().store;
            store
                .upsert_vectors(MODEL, items[..5].to_vec())
                .await
                .unwrap();
            let short = vec![(items[6].0, vec![0.5; 8])];
            let e = store
                .upsert_vectors(MODEL, short)
                .await
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("`test-model`") && e.contains("16") && e.contains('8'),
                "{e}"
            );
            let e = store
                .nearest_vectors(MODEL, &[0.5; 8], &query(10, None))
                .await
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("`test-model`") && e.contains("16") && e.contains('8'),
                "{e}"
            );
            // Another model may have other dimensions.
            store
                .upsert_vectors("other-model", vec![(items[6].0, vec![0.5; 8])])
                .await
                .unwrap();
        },
    )
    .await;
}

#[tokio::test]
async fn the_backlog_counts_items_without_a_vector_of_the_current_model() {
    on_every_backend(
        |_| {},
        |srv| async move {
            let items = seeded(&srv).await;
            let store = &srv.core().store;
            store.upsert_vectors(MODEL, items.clone()).await.unwrap();
            let b = store.vector_backlog(MODEL).await.unwrap();
            assert_eq!((b.indexed, b.missing), (60, 0));
            assert!(store.unembedded(MODEL, 10).await.unwrap().is_empty());
            // A model change leaves everything to re-embed.
            let b = store.vector_backlog("new-model").await.unwrap();
            assert_eq!((b.indexed, b.missing), (0, 60));
            // Re-embedding one item with the new model moves it over.
            store
                .upsert_vectors("new-model", vec![(items[0].0, vec![1.0; 4])])
                .await
                .unwrap();
            let b = store.vector_backlog(MODEL).await.unwrap();
            assert_eq!((b.indexed, b.missing), (59, 1));
            assert_eq!(store.delete_vectors(vec![items[1].0]).await.unwrap(), 1);
            let b = store.vector_backlog(MODEL).await.unwrap();
            assert_eq!((b.indexed, b.missing), (58, 2));
            let todo = store.unembedded(MODEL, 10).await.unwrap();
            assert_eq!(todo.len(), 2);
            assert_eq!(store.clear_vectors().await.unwrap(), 59);
        },
    )
    .await;
}
