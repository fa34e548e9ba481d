//! Search quality on the evaluation set (docs/search-eval/), in the default
//! build: the fake embeddings backend replays all-MiniLM-L6-v2's vectors of
//! the documents and queries from the checked-in fixture
//! `vectors-minilm.i8` (written by `search-eval --write-vectors`), and the
//! corpus goes through the real server, the real indexer and the real
//! `search` command. A quality check, not a timed one.

use crate::common::fake_embeddings::FakeEmbeddings;
use crate::common::*;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use swarmbridge::core::model::Role;

const EVAL_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/search-eval");

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Doc {
    Task {
        id: String,
        title: String,
        body: String,
    },
    Message {
        id: String,
        to: String,
        text: String,
    },
    Broadcast {
        id: String,
        topic: String,
        text: String,
    },
}

impl Doc {
    /// What the indexer embeds of it (a task without a result: title and body).
    fn indexed_text(&self) -> String {
        match self {
            Doc::Task { title, body, .. } => format!("{title}\n{body}"),
            Doc::Message { text, .. } | Doc::Broadcast { text, .. } => text.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Query {
    query: String,
    target: String,
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(name: &str) -> Vec<T> {
    std::fs::read_to_string(format!("{EVAL_DIR}/{name}"))
        .expect("evaluation set")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The fixture's vectors (see `quantised` in src/bin/search-eval.rs).
fn fixture_vectors() -> (usize, Vec<Vec<f32>>) {
    let bytes = std::fs::read(format!("{EVAL_DIR}/vectors-minilm.i8")).expect("fixture");
    assert_eq!(&bytes[..4], b"SBV1", "fixture magic");
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let (dims, count) = (word(4), word(8));
    let mut vectors = Vec::with_capacity(count);
    let mut at = 12;
    for _ in 0..count {
        let scale = f32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let v = bytes[at + 4..at + 4 + dims]
            .iter()
            .map(|b| f32::from(*b as i8) * scale)
            .collect();
        vectors.push(v);
        at += 4 + dims;
    }
    assert_eq!(at, bytes.len(), "fixture length");
    (dims, vectors)
}

/// recall@10 of `ranked` (per query, document ids best first).
fn recall_at_10(queries: &[Query], ranked: &[Vec<String>]) -> f64 {
    let found = queries
        .iter()
        .zip(ranked)
        .filter(|(q, r)| r.iter().take(10).any(|id| *id == q.target))
        .count();
    found as f64 / queries.len() as f64
}

#[tokio::test]
async fn hybrid_recall_at_10_is_not_below_text_recall_on_the_evaluation_set() {
    let corpus: Vec<Doc> = read_jsonl("corpus.jsonl");
    let queries: Vec<Query> = read_jsonl("queries.jsonl");
    let (dims, vectors) = fixture_vectors();
    assert_eq!(
        vectors.len(),
        corpus.len() + queries.len(),
        "fixture is stale"
    );
    let fake = FakeEmbeddings::spawn(dims).await;
    let texts = corpus
        .iter()
        .map(Doc::indexed_text)
        .chain(queries.iter().map(|q| q.query.clone()));
    for (text, v) in texts.zip(vectors) {
        fake.serve(text, v);
    }
    let mut cfg_embed = fake.config();
    cfg_embed.batch_size = 64;
    let srv = TestServer::spawn_with(move |c| {
        c.embeddings = cfg_embed;
        c.limits.exempt_roles = vec![Role::Operator];
    })
    .await;
    let mut op = srv.operator("eval-operator").await;
    let mut recipients: Vec<&str> = corpus
        .iter()
        .filter_map(|d| match d {
            Doc::Message { to, .. } => Some(to.as_str()),
            _ => None,
        })
        .collect();
    recipients.sort_unstable();
    recipients.dedup();
    for name in recipients {
        srv.add_agent(name, Role::Agent, &[]).await;
    }
    // (kind, server id) -> document id; messages and broadcasts share one sequence
    let mut doc_of: HashMap<(String, i64), String> = HashMap::new();
    let mut message_seq = 0;
    for doc in &corpus {
        match doc {
            Doc::Task { id, title, body } => {
                let t = op.create_task(json!({"title": title, "body": body})).await;
                doc_of.insert(("task".into(), t["id"].as_i64().unwrap()), id.clone());
            }
            Doc::Message { id, to, text } => {
                op.ok(json!({"type":"msg.send","to":to,"text":text}), "ok")
                    .await;
                message_seq += 1;
                doc_of.insert(("message".into(), message_seq), id.clone());
            }
            Doc::Broadcast { id, topic, text } => {
                op.ok(json!({"type":"broadcast","text":text,"topic":topic}), "ok")
                    .await;
                message_seq += 1;
                doc_of.insert(("message".into(), message_seq), id.clone());
            }
        }
    }
    let stats = &srv.core().indexer;
    let n = corpus.len() as u64;
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        stats.wait_until(|s| s.backlog == 0 && s.embedded_total >= n),
    )
    .await
    .unwrap_or_else(|_| panic!("the corpus was not indexed: {:?}", stats.snapshot()));

    let mut ranked: HashMap<&str, Vec<Vec<String>>> = HashMap::new();
    for mode in ["text", "semantic", "hybrid"] {
        for q in &queries {
            let r = op
                .ok(
                    json!({"type":"search","query":q.query,"mode":mode,"limit":10}),
                    "results",
                )
                .await;
            assert_eq!(r["degraded"], false, "{r}");
            let ids = r["results"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|h| {
                    doc_of
                        .get(&(h["kind"].as_str()?.to_owned(), h["id"].as_i64()?))
                        .cloned()
                })
                .collect();
            ranked.entry(mode).or_default().push(ids);
        }
    }
    let recall = |mode: &str| recall_at_10(&queries, &ranked[mode]);
    let (text, semantic, hybrid) = (recall("text"), recall("semantic"), recall("hybrid"));
    eprintln!("recall@10: text {text:.3}, semantic {semantic:.3}, hybrid {hybrid:.3}");
    assert!(
        hybrid >= text,
        "hybrid recall@10 {hybrid:.3} is below text recall@10 {text:.3}"
    );
    assert!(
        semantic > text,
        "semantic recall@10 {semantic:.3} is not above text recall@10 {text:.3}"
    );
}
