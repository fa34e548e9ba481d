//! `loadgen`: measures swarmbridge against its performance budget.
//!
//! It starts the real `swarmbridge serve` (release build, next to this
//! binary) as a child process on a fresh SQLite file, and, for comparison,
//! a bare tokio-tungstenite broadcast server (`loadgen bare-server`, also a
//! child), then drives them with real WebSocket clients on loopback. Every
//! run is bounded in time and count and stops by itself.
//!
//! ```text
//! cargo build --release --bins
//! target/release/loadgen fanout --conns 1000 --seconds 10 --target both
//! target/release/loadgen idle --conns 10000
//! target/release/loadgen claims --agents 20 --tasks 20000
//! target/release/loadgen status --requests 20000
//! node benches/node-ws-broadcast.js 127.0.0.1 9400 &   # after `npm install ws`
//! target/release/loadgen fanout --conns 1000 --target external --addr 127.0.0.1:9400
//! ```

use clap::{Parser, Subcommand, ValueEnum};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use swarmbridge::bus::Bus;
use swarmbridge::config::Config;
use swarmbridge::core::model::Role;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::{broadcast, Semaphore};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Parser)]
#[command(about = "swarmbridge load generator (loopback only, bounded runs)")]
struct Args {
    /// The swarmbridge binary (default: next to this one).
    #[arg(long, global = true)]
    bin: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    Swarmbridge,
    Bare,
    Both,
    /// A server already running at `--addr` that speaks the bare protocol
    /// (e.g. benches/node-ws-broadcast.js).
    External,
}

#[derive(Subcommand)]
enum Cmd {
    /// Broadcast fan-out: events/s delivered to N connections and latency.
    Fanout {
        #[arg(long, default_value_t = 1000)]
        conns: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, value_enum, default_value_t = Target::Both)]
        target: Target,
        /// Published messages awaiting their acknowledgement at once.
        #[arg(long, default_value_t = 64)]
        window: usize,
        /// Bytes of text in each broadcast.
        #[arg(long, default_value_t = 64)]
        payload: usize,
        /// With `--target external`: the server's host:port.
        #[arg(long)]
        addr: Option<SocketAddr>,
    },
    /// Memory of the server per idle connected agent.
    Idle {
        #[arg(long, default_value_t = 10000)]
        conns: usize,
    },
    /// Exactly-once claims per second by concurrent agents.
    Claims {
        #[arg(long, default_value_t = 20)]
        agents: usize,
        #[arg(long, default_value_t = 20000)]
        tasks: usize,
    },
    /// Round-trip latency of `status`.
    Status {
        #[arg(long, default_value_t = 20000)]
        requests: usize,
    },
    /// (internal) the bare tokio-tungstenite broadcast server.
    BareServer {
        #[arg(long)]
        listen: SocketAddr,
    },
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(17878)
}

/// Resident memory of a process in KiB, from /proc.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// A child server process, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    async fn wait_listening(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("server at {} did not start listening", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn swarmbridge_bin(args: &Args) -> anyhow::Result<PathBuf> {
    if let Some(b) = &args.bin {
        return Ok(b.clone());
    }
    let me = std::env::current_exe()?;
    let bin = me.with_file_name("swarmbridge");
    anyhow::ensure!(
        bin.exists(),
        "{} not found: build it with `cargo build --release --bins`",
        bin.display()
    );
    Ok(bin)
}

/// A fresh database with `agents` agents of `role`; returns their tokens.
async fn prepare_db(
    db: &std::path::Path,
    prefix: &str,
    agents: usize,
    role: Role,
    tasks: usize,
) -> anyhow::Result<Vec<String>> {
    let mut cfg = Config::load(None)?;
    cfg.database.url = db.display().to_string();
    let core = swarmbridge::server::open_core(&cfg, Arc::new(Bus::new())).await?;
    let mut tokens = Vec::with_capacity(agents);
    for i in 0..agents {
        let (_, t) = core
            .add_agent(&format!("{prefix}{i}"), role, vec![])
            .await?;
        tokens.push(t);
    }
    let cli = swarmbridge::core::model::Caller {
        identity: "cli:loadgen".into(),
        role: Role::Admin,
        capabilities: vec![],
        platform: swarmbridge::core::model::Platform::Cli,
    };
    for i in 0..tasks {
        let new = swarmbridge::core::model::NewTask {
            title: format!("task {i}"),
            ..Default::default()
        };
        core.create_task(&cli, new).await?;
    }
    Ok(tokens)
}

async fn spawn_swarmbridge(
    bin: &PathBuf,
    dir: tempfile::TempDir,
    db: &std::path::Path,
) -> anyhow::Result<Server> {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
    let child = Command::new(bin)
        .arg("serve")
        .env("SWARMBRIDGE_DATABASE_URL", db)
        .env("SWARMBRIDGE_LISTEN", addr.to_string())
        .env("SWARMBRIDGE_LIMITS__EXEMPT_ROLES", "[\"agent\",\"admin\"]")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let s = Server {
        child,
        addr,
        _dir: Some(dir),
    };
    s.wait_listening().await?;
    Ok(s)
}

async fn spawn_bare() -> anyhow::Result<Server> {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
    let child = Command::new(std::env::current_exe()?)
        .args(["bare-server", "--listen", &addr.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let s = Server {
        child,
        addr,
        _dir: None,
    };
    s.wait_listening().await?;
    Ok(s)
}

async fn connect(addr: SocketAddr) -> anyhow::Result<Ws> {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await?;
    Ok(ws)
}

async fn hello(addr: SocketAddr, token: &str) -> anyhow::Result<Ws> {
    let mut ws = connect(addr).await?;
    ws.send(Message::Text(
        json!({"type":"hello","token":token}).to_string().into(),
    ))
    .await?;
    while let Some(m) = ws.next().await {
        if let Message::Text(t) = m? {
            let v: Value = serde_json::from_str(&t)?;
            anyhow::ensure!(v["type"] == "welcome", "no welcome: {v}");
            return Ok(ws);
        }
    }
    anyhow::bail!("closed before welcome")
}

/// Connects `tokens.len()` agents (or bare subscribers), 256 at a time.
async fn connect_many(
    addr: SocketAddr,
    tokens: Option<&[String]>,
    n: usize,
) -> anyhow::Result<Vec<Ws>> {
    let sem = Arc::new(Semaphore::new(256));
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let token = tokens.map(|t| t[i].clone());
        let sem = sem.clone();
        handles.push(tokio::spawn(async move {
            let _p = sem.acquire().await;
            match token {
                Some(t) => hello(addr, &t).await,
                None => {
                    // The bare server tells subscribers from the publisher by the first message.
                    let mut ws = connect(addr).await?;
                    ws.send(Message::Text("sub".into())).await?;
                    Ok(ws)
                }
            }
        }));
    }
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await??);
    }
    Ok(out)
}

/// Latency samples in microseconds.
#[derive(Default)]
struct Samples(Vec<u32>);

impl Samples {
    fn pct(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0.sort_unstable();
        let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0[i] as f64 / 1000.0
    }
}

/// Reads frames, counts those carrying the `@@ts@@` marker and samples
/// their latency (every 8th), until `stop`.
async fn subscribe(
    mut rx: SplitStream<Ws>,
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Samples {
    let mut samples = Samples::default();
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let msg = match tokio::time::timeout(Duration::from_millis(200), rx.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(_) => break,
            Err(_) => continue,
        };
        if let Message::Text(t) = msg {
            if let Some(start) = t.find("@@") {
                count.fetch_add(1, Ordering::Relaxed);
                n += 1;
                if n.is_multiple_of(8) {
                    let rest = &t[start + 2..];
                    if let Some(end) = rest.find("@@") {
                        if let Ok(ts) = rest[..end].parse::<u64>() {
                            let lat = now_us().saturating_sub(ts);
                            samples.0.push(lat.min(u32::MAX as u64) as u32);
                        }
                    }
                }
            }
        }
    }
    samples
}

/// Publishes as fast as acknowledgements allow (`window` in flight) for
/// `seconds`; `frame(ts)` builds each message. Returns messages published.
async fn publish(
    ws: Ws,
    window: usize,
    seconds: u64,
    frame: impl Fn(u64) -> String + Send + Sync + 'static,
) -> anyhow::Result<u64> {
    let (mut tx, mut rx) = ws.split();
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut sent: u64 = 0;
    let mut acked: u64 = 0;
    for _ in 0..window {
        tx.send(Message::Text(frame(now_us()).into())).await?;
        sent += 1;
    }
    while Instant::now() < end {
        match tokio::time::timeout(Duration::from_secs(5), rx.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                if t.contains("\"type\":\"error\"") {
                    anyhow::bail!("publisher got an error: {t}");
                }
                // Only acknowledgements open the window; the publisher
                // (an agent too) also receives its own broadcasts.
                if !(t.as_str() == "ok" || t.contains("\"type\":\"ok\"")) {
                    continue;
                }
                acked += 1;
                send_one(&mut tx, &frame).await?;
                sent += 1;
            }
            Ok(Some(Ok(_))) => {}
            Ok(_) => anyhow::bail!("publisher connection closed"),
            Err(_) => anyhow::bail!("publisher got no acknowledgement for 5 s"),
        }
    }
    let _ = acked;
    Ok(sent)
}

async fn send_one(
    tx: &mut SplitSink<Ws, Message>,
    frame: &(impl Fn(u64) -> String + Send + Sync),
) -> anyhow::Result<()> {
    tx.send(Message::Text(frame(now_us()).into())).await?;
    Ok(())
}

struct FanoutResult {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    published: u64,
}

async fn fanout_run(
    addr: SocketAddr,
    subs: Vec<Ws>,
    publisher: Ws,
    window: usize,
    seconds: u64,
    frame: impl Fn(u64) -> String + Send + Sync + 'static,
) -> anyhow::Result<FanoutResult> {
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::with_capacity(subs.len());
    for ws in subs {
        let (_tx, rx) = ws.split();
        let c = count.clone();
        let s = stop.clone();
        readers.push(tokio::spawn(async move {
            let _keep = _tx;
            subscribe(rx, c, s).await
        }));
    }
    let _ = addr;
    let pubh = tokio::spawn(publish(publisher, window, seconds + 1, frame));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let c0 = count.load(Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let c1 = count.load(Ordering::Relaxed);
    let dt = t0.elapsed().as_secs_f64();
    let published = pubh.await??;
    stop.store(true, Ordering::Relaxed);
    let mut all = Samples::default();
    for r in readers {
        all.0.extend(r.await?.0);
    }
    Ok(FanoutResult {
        rate: (c1 - c0) as f64 / dt,
        p50_ms: all.pct(0.50),
        p99_ms: all.pct(0.99),
        published,
    })
}

async fn fanout_swarmbridge(
    bin: &PathBuf,
    conns: usize,
    seconds: u64,
    window: usize,
    payload: usize,
) -> anyhow::Result<FanoutResult> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("fanout.db");
    let mut tokens = prepare_db(&db, "sub-", conns, Role::Agent, 0).await?;
    tokens.extend(prepare_db(&db, "pub-", 1, Role::Admin, 0).await?);
    let srv = spawn_swarmbridge(bin, dir, &db).await?;
    let pub_token = tokens.pop().unwrap_or_default();
    let subs = connect_many(srv.addr, Some(&tokens), conns).await?;
    let publisher = hello(srv.addr, &pub_token).await?;
    let pad = "x".repeat(payload.saturating_sub(20));
    let r = fanout_run(srv.addr, subs, publisher, window, seconds, move |ts| {
        json!({"type":"broadcast","text":format!("@@{ts}@@{pad}")}).to_string()
    })
    .await?;
    eprintln!(
        "  server RSS at end: {} MiB",
        rss_kib(srv.pid()).unwrap_or(0) / 1024
    );
    Ok(r)
}

async fn fanout_bare(
    conns: usize,
    seconds: u64,
    window: usize,
    payload: usize,
    external: Option<SocketAddr>,
) -> anyhow::Result<FanoutResult> {
    let srv = match external {
        Some(_) => None,
        None => Some(spawn_bare().await?),
    };
    let addr = match (external, &srv) {
        (Some(a), _) => a,
        (None, Some(s)) => s.addr,
        (None, None) => anyhow::bail!("no server to measure"),
    };
    let subs = connect_many(addr, None, conns).await?;
    let mut publisher = connect(addr).await?;
    publisher.send(Message::Text("pub".into())).await?;
    let pad = "x".repeat(payload.saturating_sub(20));
    // The same event frame shape swarmbridge sends, so bytes per event match.
    fanout_run(addr, subs, publisher, window, seconds, move |ts| {
        json!({"type":"event","seq":1,"kind":"broadcast","at":"2026-11-25T00:00:00.000Z",
               "data":{"from":"pub-0","text":format!("@@{ts}@@{pad}"),"topic":null}})
        .to_string()
    })
    .await
}

/// The reference: every text from the publisher goes to every subscriber
/// through a tokio broadcast channel; the publisher gets "ok" per message.
async fn bare_server(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let (tx, _) = broadcast::channel::<Message>(4096);
    loop {
        let (sock, _) = listener.accept().await?;
        let tx = tx.clone();
        tokio::spawn(async move {
            let Ok(ws) = tokio_tungstenite::accept_async(sock).await else {
                return;
            };
            let (mut sink, mut stream) = ws.split();
            let mut rx = tx.subscribe();
            let first = match stream.next().await {
                Some(Ok(m)) => Some(m),
                _ => None,
            };
            if matches!(&first, Some(Message::Text(t)) if t.as_str() == "pub") {
                while let Some(Ok(m)) = stream.next().await {
                    if m.is_text() {
                        let _ = tx.send(m);
                        if sink.send(Message::Text("ok".into())).await.is_err() {
                            return;
                        }
                    }
                }
                return;
            }
            loop {
                tokio::select! {
                    m = rx.recv() => match m {
                        Ok(m) => {
                            if sink.feed(m).await.is_err() { return; }
                            while let Ok(m) = rx.try_recv() {
                                if sink.feed(m).await.is_err() { return; }
                            }
                            if sink.flush().await.is_err() { return; }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => return,
                    },
                    m = stream.next() => if !matches!(m, Some(Ok(_))) { return },
                }
            }
        });
    }
}

async fn idle(bin: &PathBuf, conns: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("idle.db");
    let tokens = prepare_db(&db, "idle-", conns, Role::Agent, 0).await?;
    let srv = spawn_swarmbridge(bin, dir, &db).await?;
    // Warm the server up with a few connections first, then measure from there.
    let warm = connect_many(srv.addr, Some(&tokens[..10.min(conns)]), 10.min(conns)).await?;
    drop(warm);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss_kib(srv.pid()).unwrap_or(0);
    let t0 = Instant::now();
    let held = connect_many(srv.addr, Some(&tokens), conns).await?;
    let connect_s = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib(srv.pid()).unwrap_or(0);
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / conns as f64;
    println!(
        "idle: {conns} agents connected in {connect_s:.1} s; server RSS {} MiB -> {} MiB; {:.1} KiB per idle connection",
        before / 1024,
        after / 1024,
        per / 1024.0
    );
    drop(held);
    Ok(())
}

async fn claims(bin: &PathBuf, agents: usize, tasks: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("claims.db");
    let tokens = prepare_db(&db, "worker-", agents, Role::Agent, tasks).await?;
    let srv = spawn_swarmbridge(bin, dir, &db).await?;
    let conns = connect_many(srv.addr, Some(&tokens), agents).await?;
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for mut ws in conns {
        handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                ws.send(Message::Text(r#"{"type":"task.claim","id":"c"}"#.into()))
                    .await?;
                let reply = next_reply(&mut ws, "c").await?;
                let task = &reply["task"];
                if task.is_null() {
                    return anyhow::Ok(got);
                }
                anyhow::ensure!(reply["type"] == "task", "claim failed: {reply}");
                let id = task["id"].as_i64().unwrap_or(-1);
                got.push(id);
                ws.send(Message::Text(
                    json!({"type":"task.complete","id":"d","task_id":id})
                        .to_string()
                        .into(),
                ))
                .await?;
                let done = next_reply(&mut ws, "d").await?;
                anyhow::ensure!(done["type"] == "task", "complete failed: {done}");
            }
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await??);
    }
    let dt = t0.elapsed().as_secs_f64();
    let unique: HashSet<i64> = all.iter().copied().collect();
    println!(
        "claims: {} agents claimed and completed {} tasks in {dt:.2} s: {:.0} claims/s (each with its completion); {} distinct ids, duplicates: {}",
        agents,
        all.len(),
        all.len() as f64 / dt,
        unique.len(),
        all.len() - unique.len()
    );
    anyhow::ensure!(
        all.len() == tasks && unique.len() == tasks,
        "not exactly once!"
    );
    Ok(())
}

async fn next_reply(ws: &mut Ws, id: &str) -> anyhow::Result<Value> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed"))??;
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t)?;
            if v["re"] == id {
                return Ok(v);
            }
        }
    }
}

async fn status(bin: &PathBuf, requests: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("status.db");
    let tokens = prepare_db(&db, "ask-", 1, Role::Agent, 1000).await?;
    let srv = spawn_swarmbridge(bin, dir, &db).await?;
    let mut ws = hello(srv.addr, &tokens[0]).await?;
    let mut samples = Samples::default();
    for _ in 0..requests {
        let t = Instant::now();
        ws.send(Message::Text(r#"{"type":"status","id":"s"}"#.into()))
            .await?;
        let v = next_reply(&mut ws, "s").await?;
        anyhow::ensure!(v["type"] == "status", "{v}");
        samples.0.push(t.elapsed().as_micros() as u32);
    }
    println!(
        "status: {requests} sequential requests over WebSocket: p50 {:.3} ms, p99 {:.3} ms (round trip incl. client)",
        samples.pct(0.5),
        samples.pct(0.99)
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        match &args.cmd {
            Cmd::BareServer { listen } => bare_server(*listen).await,
            Cmd::Fanout {
                conns,
                seconds,
                target,
                window,
                payload,
                addr,
            } => {
                if matches!(target, Target::External) {
                    let addr = addr.ok_or_else(|| anyhow::anyhow!("--target external needs --addr"))?;
                    let r = fanout_bare(*conns, *seconds, *window, *payload, Some(addr)).await?;
                    println!(
                        "fanout external {addr}: {conns} conns: {:.0} events/s delivered, p50 {:.1} ms, p99 {:.1} ms ({} published)",
                        r.rate, r.p50_ms, r.p99_ms, r.published
                    );
                }
                if matches!(target, Target::Bare | Target::Both) {
                    let r = fanout_bare(*conns, *seconds, *window, *payload, None).await?;
                    println!(
                        "fanout bare tokio-tungstenite: {conns} conns: {:.0} events/s delivered, p50 {:.1} ms, p99 {:.1} ms ({} published)",
                        r.rate, r.p50_ms, r.p99_ms, r.published
                    );
                }
                if matches!(target, Target::Swarmbridge | Target::Both) {
                    let bin = swarmbridge_bin(&args)?;
                    let r = fanout_swarmbridge(&bin, *conns, *seconds, *window, *payload).await?;
                    println!(
                        "fanout swarmbridge: {conns} conns: {:.0} events/s delivered, p50 {:.1} ms, p99 {:.1} ms ({} broadcasts committed)",
                        r.rate, r.p50_ms, r.p99_ms, r.published
                    );
                }
                Ok(())
            }
            Cmd::Idle { conns } => idle(&swarmbridge_bin(&args)?, *conns).await,
            Cmd::Claims { agents, tasks } => claims(&swarmbridge_bin(&args)?, *agents, *tasks).await,
            Cmd::Status { requests } => status(&swarmbridge_bin(&args)?, *requests).await,
        }
    })
}
