//! Ranking as pure functions: exact cosine top-k over a set of vectors, and
//! reciprocal rank fusion (RRF) of ranked lists. No I/O, no allocation
//! beyond the answer; the same input always gives the same order.

use std::collections::HashMap;
use std::hash::Hash;

/// RRF's damping constant: Elasticsearch, OpenSearch and pgvector's
/// examples use 60. Larger values flatten the difference between ranks.
pub const RRF_K: f64 = 60.0;

/// How many entries of each list take part in the fusion.
pub const RRF_DEPTH: usize = 50;

/// One item of a cosine ranking.
#[derive(Debug, Clone, PartialEq)]
pub struct CosineHit<K> {
    /// The item's key, as given.
    pub key: K,
    /// Cosine similarity with the query, in [-1, 1].
    pub score: f32,
}

/// Cosine similarity of `a` and `b`: 0 when either is all zeros or their
/// lengths differ (no direction to compare).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    cosine_with_norm(a, norm(a), b)
}

/// [`cosine`] with `a`'s norm computed once by the caller.
fn cosine_with_norm(a: &[f32], a_norm: f32, b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    let norms = a_norm * norm(b);
    if norms == 0.0 || !norms.is_finite() {
        return 0.0;
    }
    (dot(a, b) / norms).clamp(-1.0, 1.0)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(v: &[f32]) -> f32 {
    dot(v, v).sqrt()
}

/// The `k` items most similar to `query` by cosine, best first; ties keep
/// the order of `items`. Exact: every item is scored. Items whose length
/// differs from the query's score 0.
pub fn cosine_top_k<'a, K>(
    query: &[f32],
    items: impl IntoIterator<Item = (K, &'a [f32])>,
    k: usize,
) -> Vec<CosineHit<K>> {
    if k == 0 {
        return Vec::new();
    }
    let query_norm = norm(query);
    let mut scored: Vec<(usize, CosineHit<K>)> = items
        .into_iter()
        .enumerate()
        .map(|(position, (key, vector))| {
            let score = cosine_with_norm(query, query_norm, vector);
            (position, CosineHit { key, score })
        })
        .collect();
    let best_first = |a: &(usize, CosineHit<K>), b: &(usize, CosineHit<K>)| {
        b.1.score.total_cmp(&a.1.score).then(a.0.cmp(&b.0))
    };
    if scored.len() > k {
        scored.select_nth_unstable_by(k - 1, best_first);
        scored.truncate(k);
    }
    scored.sort_unstable_by(best_first);
    scored.into_iter().map(|(_, hit)| hit).collect()
}

/// One item of a fused ranking.
#[derive(Debug, Clone, PartialEq)]
pub struct FusedHit<K> {
    /// The item's key, as given.
    pub key: K,
    /// Sum over the lists of `1 / (k + rank)`, rank counted from 1.
    pub score: f64,
    /// The item's 1-based rank in each list, `None` where it is absent (or
    /// beyond the depth).
    pub ranks: Vec<Option<usize>>,
}

/// Reciprocal rank fusion of `lists` (each best first): every key in the
/// first `depth` entries of a list gains `1 / (k + rank)`. Best first; ties
/// go to the better single rank, then to the earlier list's order. A key
/// repeated within one list counts at its first place only.
pub fn reciprocal_rank_fusion<K: Clone + Eq + Hash>(
    lists: &[&[K]],
    k: f64,
    depth: usize,
) -> Vec<FusedHit<K>> {
    let mut position: HashMap<&K, usize> = HashMap::new();
    let mut fused: Vec<FusedHit<K>> = Vec::new();
    for (list_index, list) in lists.iter().enumerate() {
        for (rank0, key) in list.iter().take(depth).enumerate() {
            let at = *position.entry(key).or_insert_with(|| {
                fused.push(FusedHit {
                    key: key.clone(),
                    score: 0.0,
                    ranks: vec![None; lists.len()],
                });
                fused.len() - 1
            });
            let hit = &mut fused[at];
            if hit.ranks[list_index].is_none() {
                let rank = rank0 + 1;
                hit.ranks[list_index] = Some(rank);
                hit.score += 1.0 / (k + rank as f64);
            }
        }
    }
    // `fused` is in first-seen order; the stable sort keeps it for full ties.
    fused.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| best_rank(a).cmp(&best_rank(b)))
    });
    fused
}

fn best_rank<K>(hit: &FusedHit<K>) -> usize {
    hit.ranks
        .iter()
        .flatten()
        .copied()
        .min()
        .unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys<K: Clone>(hits: &[CosineHit<K>]) -> Vec<K> {
        hits.iter().map(|hit| hit.key.clone()).collect()
    }

    #[test]
    fn cosine_is_scale_free_and_zero_for_degenerate_vectors() {
        assert!((cosine(&[1.0, 0.0], &[5.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!((cosine(&[1.0, 0.0], &[0.0, 2.0])).abs() < 1e-6);
        assert!((cosine(&[1.0, 1.0], &[-1.0, -1.0]) + 1.0).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        assert_eq!(cosine(&[1.0], &[1.0, 0.0]), 0.0);
    }

    #[test]
    fn top_k_orders_by_cosine_and_cuts_at_k() {
        let vectors: Vec<(u32, Vec<f32>)> = vec![
            (1, vec![0.0, 1.0]),
            (2, vec![1.0, 0.1]),
            (3, vec![-1.0, 0.0]),
            (4, vec![1.0, 1.0]),
            (5, vec![3.0, 0.0]),
        ];
        let items = vectors.iter().map(|(key, v)| (*key, v.as_slice()));
        let hits = cosine_top_k(&[1.0, 0.0], items, 3);
        assert_eq!(keys(&hits), vec![5, 2, 4]);
        assert!((hits[0].score - 1.0).abs() < 1e-6);
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    }

    #[test]
    fn top_k_equals_a_full_sort_on_seeded_random_vectors() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let vectors: Vec<Vec<f32>> = (0..500)
            .map(|_| (0..16).map(|_| rng.random_range(-1.0..1.0)).collect())
            .collect();
        let query: Vec<f32> = (0..16).map(|_| rng.random_range(-1.0..1.0)).collect();
        let mut all: Vec<(usize, f32)> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| (i, cosine(&query, v)))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1));
        let expected: Vec<usize> = all.iter().take(25).map(|(i, _)| *i).collect();
        let items = vectors.iter().enumerate().map(|(i, v)| (i, v.as_slice()));
        assert_eq!(keys(&cosine_top_k(&query, items, 25)), expected);
    }

    #[test]
    fn top_k_keeps_input_order_for_ties_and_handles_small_sets() {
        let same = [1.0_f32, 1.0];
        let items = [("a", &same[..]), ("b", &same[..]), ("c", &same[..])];
        assert_eq!(keys(&cosine_top_k(&[1.0, 1.0], items, 2)), vec!["a", "b"]);
        assert_eq!(
            keys(&cosine_top_k(&[1.0, 1.0], items, 10)),
            vec!["a", "b", "c"]
        );
        assert!(cosine_top_k(&[1.0, 1.0], items, 0).is_empty());
    }

    #[test]
    fn rrf_rewards_items_found_by_both_lists() {
        let text = ["t1", "both", "t3"];
        let semantic = ["s1", "s2", "both"];
        let fused = reciprocal_rank_fusion(&[&text, &semantic], RRF_K, RRF_DEPTH);
        assert_eq!(fused[0].key, "both");
        let expected = 1.0 / 62.0 + 1.0 / 63.0;
        assert!((fused[0].score - expected).abs() < 1e-12);
        assert_eq!(fused[0].ranks, vec![Some(2), Some(3)]);
        // Rank-1 items of each list tie; the first list's comes first.
        assert_eq!(fused[1].key, "t1");
        assert_eq!(fused[2].key, "s1");
        assert_eq!(fused.len(), 5);
    }

    #[test]
    fn rrf_looks_only_at_the_first_depth_entries_and_counts_repeats_once() {
        let first: Vec<u32> = (0..100).collect();
        let second = [99, 99, 7];
        let fused = reciprocal_rank_fusion(&[&first, &second], RRF_K, 50);
        let find = |key: u32| fused.iter().find(|hit| hit.key == key);
        assert_eq!(
            find(99).map(|hit| hit.ranks.clone()),
            Some(vec![None, Some(1)])
        );
        assert!(find(60).is_none(), "beyond the depth");
        let seven = find(7).expect("in both");
        assert!((seven.score - (1.0 / 68.0 + 1.0 / 63.0)).abs() < 1e-12);
        assert_eq!(fused.len(), 51);
    }

    #[test]
    fn rrf_of_one_list_keeps_its_order_and_of_none_is_empty() {
        let only = ["a", "b", "c"];
        let fused = reciprocal_rank_fusion(&[&only], RRF_K, RRF_DEPTH);
        let order: Vec<&str> = fused.iter().map(|hit| hit.key).collect();
        assert_eq!(order, only);
        let empty: [&[&str]; 0] = [];
        assert!(reciprocal_rank_fusion(&empty, RRF_K, RRF_DEPTH).is_empty());
    }
}
