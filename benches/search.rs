//! Search query latency at store level (issue 14): fills a fresh SQLite
//! store (a file in a temporary directory) with N tasks of generated text
//! and a 384-dimension vector each, through the store's own write methods,
//! then times the store calls that `Core::search` makes for each mode.
//!
//! ```sh
//! cargo bench --bench search -- --items 10000 --queries 200
//! # an empty PostgreSQL database instead of a fresh SQLite file:
//! cargo bench --bench search -- --items 10000 --database-url postgres://...
//! ```
//!
//! What each mode times (the embedding of the query is not included: the
//! query vector is given):
//! - `text`: `search_tasks` + `search_messages` (limit 20, the default).
//! - `semantic`: `nearest_vectors` (exact cosine, sqlite-vec, over every
//!   vector) + `describe_items` of the top 20.
//! - `hybrid`: `text` and `semantic` at depth 50, then reciprocal rank
//!   fusion (k = 60) of the two lists, as `Core::search` does.
//!
//! The vectors are seeded random unit vectors: an exact scan's cost does
//! not depend on the values. The text comes from word lists with a fixed
//! seed, so every run stores the same corpus and asks the same queries.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::{Duration, Instant};
use swarmbridge::core::events::{Audience, CommittedEvent, EventKind, EventSink, NewEvent};
use swarmbridge::core::model::NewTask;
use swarmbridge::core::search::{terms_of, HitKind, SearchHit, SearchQuery};
use swarmbridge::core::store::Store;
use swarmbridge::core::vectors::ItemRef;
use swarmbridge::embed::rank::{reciprocal_rank_fusion, RRF_DEPTH, RRF_K};
use swarmbridge::store::BatchPolicy;

const DIMS: usize = 384;
const MODEL: &str = "bench-model";
/// Tasks sent to the store at once while filling (the writer thread groups
/// concurrent writes into transactions of up to 256).
const TASK_BATCH: usize = 256;
/// Vectors per `upsert_vectors` call (one transaction each).
const VECTOR_BATCH: usize = 500;
/// The default `limit` of a search.
const LIMIT: i64 = 20;

const VERBS: &[&str] = &[
    "fix",
    "investigate",
    "review",
    "deploy",
    "migrate",
    "refactor",
    "document",
    "test",
    "profile",
    "upgrade",
    "rollback",
    "monitor",
    "benchmark",
    "audit",
    "rewrite",
    "triage",
];
const THINGS: &[&str] = &[
    "login",
    "session",
    "timeout",
    "cache",
    "database",
    "index",
    "queue",
    "worker",
    "billing",
    "invoice",
    "webhook",
    "dashboard",
    "scheduler",
    "backup",
    "replica",
    "certificate",
    "token",
    "gateway",
    "parser",
    "upload",
    "search",
    "metrics",
    "alert",
    "retry",
    "deadlock",
    "memory",
    "latency",
    "pipeline",
    "release",
    "config",
    "schema",
    "migration",
    "payment",
    "report",
    "export",
    "import",
    "notification",
    "email",
    "sandbox",
    "cluster",
];
const PLACES: &[&str] = &[
    "auth service",
    "api server",
    "staging",
    "production",
    "ci runner",
    "admin panel",
    "mobile app",
    "billing service",
    "search service",
    "postgres primary",
    "edge proxy",
    "batch jobs",
    "data warehouse",
    "frontend",
    "k8s cluster",
    "message broker",
];
const DETAILS: &[&str] = &[
    "users report errors after the last deploy",
    "p99 went up since tuesday",
    "happens only under load",
    "customer ticket attached, see logs",
    "flaky in ci, fails one run in ten",
    "needs a runbook entry",
    "blocked on the vendor answer",
    "the old code path is still used by the nightly export",
    "memory grows until the pod is killed",
    "retries make it worse",
    "seen in two regions",
    "requires a schema change and a backfill",
    "add a regression test",
    "compare with last week's figures",
    "owner is on call this week",
    "the fix should be behind a flag",
];

/// A skewed pick: low indexes far more often (so some words are common,
/// most are rare, as in real text).
fn skewed<'a>(rng: &mut StdRng, words: &[&'a str]) -> &'a str {
    let u: f64 = rng.random();
    words[((u * u * u) * words.len() as f64) as usize % words.len()]
}

fn task_text(rng: &mut StdRng, i: usize) -> (String, String) {
    let title = format!(
        "{} {} {} in {}",
        skewed(rng, VERBS),
        skewed(rng, THINGS),
        skewed(rng, THINGS),
        skewed(rng, PLACES)
    );
    let n = rng.random_range(2..=4);
    let mut body = String::new();
    for _ in 0..n {
        body.push_str(skewed(rng, DETAILS));
        body.push_str(&format!(
            "; {} {} ({i}). ",
            skewed(rng, THINGS),
            skewed(rng, THINGS)
        ));
    }
    (title, body)
}

fn unit_vector(rng: &mut StdRng) -> Vec<f32> {
    let v: Vec<f32> = (0..DIMS).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

/// Drops committed events: nothing listens in this bench.
struct NoSink;

impl EventSink for NoSink {
    fn publish(&self, _: &[CommittedEvent]) {}
}

struct Args {
    items: usize,
    queries: usize,
    /// An empty database to fill instead of a fresh SQLite file
    /// (a PostgreSQL URL, as SWARMBRIDGE_TEST_PG).
    database_url: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        items: 10_000,
        queries: 200,
        database_url: None,
    };
    let (mut items, mut queries, mut bench) = (None, None, false);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match arg.as_str() {
            "--items" => items = Some(value("--items")),
            "--queries" => queries = Some(value("--queries")),
            "--database-url" => a.database_url = it.next(),
            // what `cargo bench` adds
            "--bench" => bench = true,
            other => {
                panic!("unknown argument {other:?} (--items N, --queries N, --database-url URL)")
            }
        }
    }
    if !bench {
        // `cargo test --all-targets` runs this without `--bench`: a small
        // run, which checks that the bench still works
        (a.items, a.queries) = (300, 20);
    }
    a.items = items.unwrap_or(a.items);
    a.queries = queries.unwrap_or(a.queries);
    a
}

async fn fill(store: &Arc<dyn Store>, items: usize, rng: &mut StdRng) -> Duration {
    let started = Instant::now();
    let mut ids = Vec::with_capacity(items);
    let mut i = 0;
    while i < items {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..TASK_BATCH.min(items - i) {
            let (title, body) = task_text(rng, i);
            let store = store.clone();
            batch.spawn(async move {
                let new = NewTask {
                    title,
                    body,
                    priority: 0,
                    requires: vec![],
                    tags: vec![],
                    max_attempts: None,
                    offered_to: None,
                    offer_expires_at: None,
                };
                // the event the core writes with a new task
                let events = Box::new(|task: &swarmbridge::core::model::Task| {
                    vec![NewEvent {
                        kind: EventKind::TaskCreated,
                        data: serde_json::json!({ "task": task }),
                        audience: Audience::agents([task.created_by.as_str()]),
                    }]
                });
                store.create_task(new, "bench".into(), 3, events).await
            });
            i += 1;
        }
        while let Some(done) = batch.join_next().await {
            ids.push(done.expect("task joins").expect("create_task").id);
        }
    }
    let tasks_done = started.elapsed();
    ids.sort_unstable();
    for chunk in ids.chunks(VECTOR_BATCH) {
        let batch = chunk
            .iter()
            .map(|&id| (ItemRef::task(id), unit_vector(rng)))
            .collect();
        store
            .upsert_vectors(MODEL, batch)
            .await
            .expect("upsert_vectors");
    }
    let all = started.elapsed();
    eprintln!(
        "filled {items} tasks in {:.1} s ({:.0}/s), their vectors in {:.1} s ({:.0}/s)",
        tasks_done.as_secs_f64(),
        items as f64 / tasks_done.as_secs_f64(),
        (all - tasks_done).as_secs_f64(),
        items as f64 / (all - tasks_done).as_secs_f64()
    );
    all
}

fn query(text: &str, limit: i64) -> SearchQuery {
    SearchQuery {
        terms: terms_of(text),
        // a query ending in a letter or digit: its last word is a prefix too
        prefix_last: true,
        limit,
        state: None,
        agent: None,
        since: None,
        reader: None,
    }
}

async fn text(store: &Arc<dyn Store>, q: &SearchQuery) -> Vec<SearchHit> {
    let mut hits = store.search_tasks(q).await.expect("search_tasks");
    let messages = store.search_messages(q).await.expect("search_messages");
    hits.extend(messages.into_iter().map(|m| SearchHit {
        kind: HitKind::Message,
        id: m.id,
        title: m.title(),
        snippet: m.snippet,
        score: m.score,
    }));
    hits.sort_by(|a, b| b.score.total_cmp(&a.score));
    hits.truncate(q.limit as usize);
    hits
}

async fn semantic(store: &Arc<dyn Store>, v: &[f32], q: &SearchQuery) -> Vec<SearchHit> {
    let mut near = store
        .nearest_vectors(MODEL, v, q)
        .await
        .expect("nearest_vectors");
    near.sort_by(|a, b| {
        b.similarity
            .total_cmp(&a.similarity)
            .then(a.item.cmp(&b.item))
    });
    near.truncate(q.limit as usize);
    let items: Vec<ItemRef> = near.iter().map(|h| h.item).collect();
    store.describe_items(&items).await.expect("describe_items")
}

fn hybrid(text: &[SearchHit], semantic: &[SearchHit]) -> usize {
    let key = |h: &SearchHit| ItemRef {
        kind: h.kind,
        id: h.id,
    };
    let t: Vec<ItemRef> = text.iter().map(key).collect();
    let s: Vec<ItemRef> = semantic.iter().map(key).collect();
    let fused = reciprocal_rank_fusion(&[&t, &s], RRF_K, RRF_DEPTH);
    fused.len().min(LIMIT as usize)
}

fn report(mode: &str, items: usize, mut times: Vec<Duration>, found: usize) {
    times.sort_unstable();
    let at = |p: f64| times[((p * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "| {items} | {mode} | {} | {:.2} | {:.2} | {:.2} | {:.1} |",
        times.len(),
        ms(at(0.50)),
        ms(at(0.99)),
        ms(*times.last().expect("some queries")),
        found as f64 / times.len() as f64
    );
}

#[tokio::main]
async fn main() {
    let a = args();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("search-bench.db");
    let url = a
        .database_url
        .clone()
        .unwrap_or_else(|| path.to_str().expect("utf-8 path").to_string());
    let store = swarmbridge::store::open(&url, 4, 4, BatchPolicy::default(), Arc::new(NoSink))
        .await
        .expect("store opens");
    let held = store.task_counts();
    assert!(
        held.0.iter().all(|&n| n == 0),
        "the database must be empty (it holds tasks): give a fresh one"
    );
    let mut rng = StdRng::seed_from_u64(14);
    fill(&store, a.items, &mut rng).await;

    let mut qrng = StdRng::seed_from_u64(2026);
    let queries: Vec<(String, Vec<f32>)> = (0..a.queries)
        .map(|_| {
            let words = if qrng.random_bool(0.5) {
                format!(
                    "{} {}",
                    skewed(&mut qrng, THINGS),
                    skewed(&mut qrng, THINGS)
                )
            } else {
                skewed(&mut qrng, THINGS).to_string()
            };
            (words, unit_vector(&mut qrng))
        })
        .collect();

    // one untimed pass, so every mode starts with the same warm page cache
    for (t, v) in queries.iter().take(10) {
        text(&store, &query(t, LIMIT)).await;
        semantic(&store, v, &query(t, LIMIT)).await;
    }

    println!("| items | mode | queries | p50 ms | p99 ms | max ms | mean results |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut times = Vec::new();
    let mut found = 0;
    for (t, _) in &queries {
        let started = Instant::now();
        found += text(&store, &query(t, LIMIT)).await.len();
        times.push(started.elapsed());
    }
    report("text", a.items, std::mem::take(&mut times), found);
    found = 0;
    for (t, v) in &queries {
        let started = Instant::now();
        found += semantic(&store, v, &query(t, LIMIT)).await.len();
        times.push(started.elapsed());
    }
    report("semantic", a.items, std::mem::take(&mut times), found);
    found = 0;
    for (t, v) in &queries {
        let started = Instant::now();
        let deep = query(t, RRF_DEPTH as i64);
        let th = text(&store, &deep).await;
        let sh = semantic(&store, v, &deep).await;
        found += hybrid(&th, &sh);
        times.push(started.elapsed());
    }
    report("hybrid", a.items, times, found);

    // how much each text query matches (untimed): BM25 ranks every match
    let mut matches = Vec::new();
    for (t, _) in &queries {
        let all = store
            .search_tasks(&query(t, a.items as i64))
            .await
            .expect("search_tasks");
        matches.push(all.len());
    }
    matches.sort_unstable();
    eprintln!(
        "text queries match (tasks): median {}, p99 {}, max {} of {}",
        matches[matches.len() / 2],
        matches[(matches.len() * 99).div_ceil(100) - 1],
        matches[matches.len() - 1],
        a.items
    );
}
