//! What every scenario shares: child servers, agent registration through
//! the `swarmbridge` CLI, WebSocket connections, latency percentiles and
//! the markdown rows the scenarios print.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A client WebSocket connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Wall-clock microseconds since the epoch: timestamps travel inside frames
/// between the generator's tasks, so they must be comparable across tasks.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Resident memory of a process in KiB, from /proc.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Prints one row of the markdown table `benches/run-all.sh` assembles:
/// scenario, what was measured, the figure, how it was obtained.
pub fn row(scenario: &str, what: &str, figure: &str, detail: &str) {
    println!("| {scenario} | {what} | {figure} | {detail} |");
}

/// Latency samples in microseconds.
#[derive(Default)]
pub struct Samples(pub Vec<u32>);

impl Samples {
    /// Records one latency.
    pub fn push(&mut self, d: Duration) {
        self.0.push(d.as_micros().min(u32::MAX as u128) as u32);
    }

    /// The `p` quantile (0..=1) in milliseconds; NaN without samples.
    pub fn pct_ms(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        let (_, v, _) = self.0.select_nth_unstable(i);
        *v as f64 / 1000.0
    }
}

/// A child server process, killed when dropped.
pub struct Server {
    /// The process.
    pub child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its scratch directory (database), removed after the process.
    pub dir: Option<tempfile::TempDir>,
}

impl Server {
    /// The child's process id (0 once it has exited).
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Waits until the server accepts TCP connections (30 s at most).
    pub async fn wait_listening(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("server exited before listening: {status}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::bail!("server at {} did not start listening", self.addr)
    }

    /// Stops the server with SIGTERM (its graceful shutdown), SIGKILL after
    /// 15 s, and returns its scratch directory for inspection.
    pub async fn stop(mut self) -> anyhow::Result<Option<tempfile::TempDir>> {
        let pid = self.pid();
        if pid != 0 {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
                .await
                .is_err()
            {
                self.child.start_kill()?;
                self.child.wait().await?;
            }
        }
        Ok(self.dir.take())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The `swarmbridge` binary: `--bin`, else next to this one.
pub fn swarmbridge_bin(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(b) = explicit {
        return Ok(b.to_path_buf());
    }
    let bin = std::env::current_exe()?.with_file_name("swarmbridge");
    anyhow::ensure!(
        bin.exists(),
        "{} not found: build it with `cargo build --release --bins` or pass --bin",
        bin.display()
    );
    Ok(bin)
}

/// Starts `swarmbridge serve` on `db` (in `dir`) on a free loopback port.
/// Rate limits are lifted for every agent role: the generator measures the
/// server's capacity, not its limiter.
pub async fn spawn_swarmbridge(
    bin: &Path,
    dir: tempfile::TempDir,
    db: &Path,
) -> anyhow::Result<Server> {
    spawn_swarmbridge_with(bin, dir, db, &[]).await
}

/// [`spawn_swarmbridge`] with extra environment (configuration) variables.
pub async fn spawn_swarmbridge_with(
    bin: &Path,
    dir: tempfile::TempDir,
    db: &Path,
    env: &[(&str, &str)],
) -> anyhow::Result<Server> {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let child = Command::new(bin)
        .arg("serve")
        .envs(env.iter().copied())
        .env("SWARMBRIDGE_DATABASE_URL", db)
        .env("SWARMBRIDGE_LISTEN", addr.to_string())
        .env(
            "SWARMBRIDGE_LIMITS__EXEMPT_ROLES",
            "[\"agent\",\"operator\",\"admin\"]",
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let mut s = Server {
        child,
        addr,
        dir: Some(dir),
    };
    s.wait_listening().await?;
    Ok(s)
}

/// Agents registered with `swarmbridge agent add`, in a database file that
/// is built once per (binary, names, role) and copied for every run.
pub struct Registry {
    /// A fresh scratch directory holding the copied database.
    pub dir: tempfile::TempDir,
    /// The database file inside `dir`.
    pub db: PathBuf,
}

/// One group of agents to register: `count` agents named `{prefix}{i}`.
pub struct AgentGroup<'a> {
    /// Name prefix.
    pub prefix: &'a str,
    /// How many.
    pub count: usize,
    /// `agent`, `operator` or `admin`.
    pub role: &'a str,
}

/// A fresh database with the given agents registered through the CLI, and
/// their tokens, group by group. Registering 10,000 agents takes a while
/// (one CLI process each), so the result is cached under the temp dir,
/// keyed by the binary's size and mtime and the groups.
pub async fn registry(
    bin: &Path,
    groups: &[AgentGroup<'_>],
) -> anyhow::Result<(Registry, Vec<Vec<String>>)> {
    let meta = std::fs::metadata(bin)?;
    let mtime = meta
        .modified()?
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut key = format!("{}-{}", meta.len(), mtime);
    for g in groups {
        key.push_str(&format!("-{}{}{}", g.prefix, g.count, g.role));
    }
    let cache = std::env::temp_dir()
        .join("swarmbridge-loadgen-cache")
        .join(key);
    let tokens_file = cache.join("tokens.json");
    if !tokens_file.exists() {
        build_registry(bin, groups, &cache).await?;
    }
    let tokens: Vec<Vec<String>> = serde_json::from_str(&std::fs::read_to_string(&tokens_file)?)?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("swarmbridge.db");
    for suffix in ["", "-wal", "-shm"] {
        let from = cache.join(format!("registry.db{suffix}"));
        if from.exists() {
            std::fs::copy(&from, dir.path().join(format!("swarmbridge.db{suffix}")))?;
        }
    }
    Ok((Registry { dir, db }, tokens))
}

async fn build_registry(bin: &Path, groups: &[AgentGroup<'_>], cache: &Path) -> anyhow::Result<()> {
    let building = cache.with_extension("building");
    let _ = std::fs::remove_dir_all(&building);
    std::fs::create_dir_all(&building)?;
    let db = building.join("registry.db");
    let total: usize = groups.iter().map(|g| g.count).sum();
    eprintln!("registering {total} agents with `swarmbridge agent add` (cached for later runs)...");
    let t0 = Instant::now();
    // The first process creates the database and runs the migrations alone.
    let migrate = Command::new(bin)
        .arg("migrate")
        .env("SWARMBRIDGE_DATABASE_URL", &db)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .status()
        .await?;
    anyhow::ensure!(migrate.success(), "swarmbridge migrate failed");
    let parallel = Arc::new(Semaphore::new(4));
    let mut all = Vec::new();
    for g in groups {
        let mut handles = Vec::with_capacity(g.count);
        for i in 0..g.count {
            let name = format!("{}{i}", g.prefix);
            let (bin, db, role, parallel) = (
                bin.to_path_buf(),
                db.clone(),
                g.role.to_string(),
                parallel.clone(),
            );
            handles.push(tokio::spawn(async move {
                let _slot = parallel.acquire_owned().await?;
                let out = Command::new(&bin)
                    .args(["agent", "add", &name, "--role", &role])
                    .env("SWARMBRIDGE_DATABASE_URL", &db)
                    .env("RUST_LOG", "warn")
                    .stderr(Stdio::piped())
                    .output()
                    .await?;
                anyhow::ensure!(
                    out.status.success(),
                    "agent add {name}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let token = String::from_utf8(out.stdout)?.trim().to_string();
                anyhow::ensure!(!token.is_empty(), "agent add {name} printed no token");
                Ok(token)
            }));
        }
        let mut tokens = Vec::with_capacity(g.count);
        for h in handles {
            tokens.push(h.await??);
        }
        all.push(tokens);
    }
    std::fs::write(building.join("tokens.json"), serde_json::to_string(&all)?)?;
    if let Some(parent) = cache.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::rename(&building, cache)?;
    eprintln!("  registered in {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}

/// Opens a WebSocket to `/ws`.
pub async fn connect(addr: SocketAddr) -> anyhow::Result<Ws> {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await?;
    Ok(ws)
}

/// Connects and says `hello` (with `resume_from` when given); returns the
/// connection and the `welcome` frame.
pub async fn hello(
    addr: SocketAddr,
    token: &str,
    resume_from: Option<u64>,
) -> anyhow::Result<(Ws, Value)> {
    let mut ws = connect(addr).await?;
    let mut frame = json!({"type":"hello","id":"hello","token":token});
    if let Some(seq) = resume_from {
        frame["resume_from"] = json!(seq);
    }
    ws.send(Message::Text(frame.to_string().into())).await?;
    let deadline = Duration::from_secs(30);
    loop {
        let m = tokio::time::timeout(deadline, ws.next())
            .await
            .map_err(|_| anyhow::anyhow!("no welcome within 30 s"))?
            .ok_or_else(|| anyhow::anyhow!("closed before welcome"))??;
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t)?;
            anyhow::ensure!(v["type"] == "welcome", "no welcome: {v}");
            return Ok((ws, v));
        }
    }
}

/// Connects every token's agent (256 handshakes at a time).
pub async fn hello_many(addr: SocketAddr, tokens: &[String]) -> anyhow::Result<Vec<Ws>> {
    let sem = Arc::new(Semaphore::new(256));
    let mut handles = Vec::with_capacity(tokens.len());
    for token in tokens {
        let (token, sem) = (token.clone(), sem.clone());
        handles.push(tokio::spawn(async move {
            let _slot = sem.acquire_owned().await?;
            Ok::<_, anyhow::Error>(hello(addr, &token, None).await?.0)
        }));
    }
    let mut out = Vec::with_capacity(tokens.len());
    for h in handles {
        out.push(h.await??);
    }
    Ok(out)
}

/// Reads until the reply to request `id` (other frames are skipped).
pub async fn next_reply(ws: &mut Ws, id: &str) -> anyhow::Result<Value> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .map_err(|_| anyhow::anyhow!("no reply to {id} within 30 s"))?
            .ok_or_else(|| anyhow::anyhow!("closed while waiting for {id}"))??;
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t)?;
            if v["re"] == id {
                return Ok(v);
            }
        }
    }
}

/// The `"seq":N` of an event frame without parsing the whole frame.
pub fn frame_seq(text: &str) -> Option<u64> {
    let at = text.find("\"seq\":")? + 6;
    let digits: &str = &text[at..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// Creates `count` tasks through the protocol as the agent on `ws` (an
/// operator), `window` requests in flight. Returns the new task ids and the
/// newest event `seq` the creator saw (its own `task.created` events), from
/// which agents connecting afterwards can `resume_from` to skip the backlog.
pub async fn create_tasks(
    ws: &mut Ws,
    count: usize,
    window: usize,
) -> anyhow::Result<(Vec<i64>, u64)> {
    let mut ids = Vec::with_capacity(count);
    let mut newest_seq = 0;
    let mut sent = 0usize;
    let mut in_flight = 0usize;
    let mut created_events = 0usize;
    while ids.len() < count {
        while in_flight < window && sent < count {
            let frame = json!({"type":"task.create","id":format!("t{sent}"),"title":format!("loadgen task {sent}")});
            ws.feed(Message::Text(frame.to_string().into())).await?;
            sent += 1;
            in_flight += 1;
        }
        ws.flush().await?;
        let m = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .map_err(|_| anyhow::anyhow!("task.create: no reply within 30 s"))?
            .ok_or_else(|| anyhow::anyhow!("closed while creating tasks"))??;
        if let Message::Text(t) = m {
            if t.contains("\"re\":\"t") {
                let v: Value = serde_json::from_str(&t)?;
                anyhow::ensure!(v["type"] == "task", "task.create failed: {v}");
                let id = v["task"]["id"]
                    .as_i64()
                    .ok_or_else(|| anyhow::anyhow!("task reply without an id: {v}"))?;
                ids.push(id);
                in_flight -= 1;
            } else if let Some(seq) = frame_seq(&t) {
                newest_seq = newest_seq.max(seq);
                created_events += 1;
            }
        }
    }
    // The creator's own task.created events may trail the last reply.
    let until = Instant::now() + Duration::from_secs(5);
    while created_events < count && Instant::now() < until {
        let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), ws.next()).await else {
            break;
        };
        if let Message::Text(t) = m? {
            if let Some(seq) = frame_seq(&t) {
                newest_seq = newest_seq.max(seq);
                created_events += 1;
            }
        }
    }
    Ok((ids, newest_seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_seq_reads_the_seq_of_an_event_frame() {
        let frame = r#"{"at":"2026-11-25T00:00:00Z","data":{"text":"hi"},"kind":"broadcast","seq":1187,"type":"event"}"#;
        assert_eq!(frame_seq(frame), Some(1187));
        assert_eq!(frame_seq(r#"{"re":"1","type":"ok"}"#), None);
    }

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let mut s = Samples((1..=100).map(|ms| ms * 1000).collect());
        assert_eq!(s.pct_ms(0.5), 51.0);
        assert_eq!(s.pct_ms(0.99), 99.0);
        assert_eq!(s.pct_ms(1.0), 100.0);
        assert!(Samples::default().pct_ms(0.5).is_nan());
    }
}
