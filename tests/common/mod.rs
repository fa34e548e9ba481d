//! Shared test kit: a real server on a random loopback port with a fresh
//! SQLite file, and a WebSocket agent client that speaks the protocol.
#![allow(dead_code)]

pub mod child;
pub mod fake_discord;
pub mod fake_embeddings;
pub mod fake_openai;
pub mod fake_twitch;
pub mod fault_proxy;
pub mod http_api;
pub mod pg_cluster;
pub mod webdriver;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use swarmbridge::config::Config;
use swarmbridge::core::model::Role;
use swarmbridge::server::{self, Running};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for anything before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running server with its own database directory (and, on
/// PostgreSQL, its own database, dropped with the server).
pub struct TestServer {
    pub running: Option<Running>,
    pub dir: TempDir,
    pub db: PathBuf,
    pub cfg: Config,
    pub pg: Option<PgTestDb>,
}

/// A fresh PostgreSQL database with a unique name, created at the
/// `SWARMBRIDGE_TEST_PG` server and dropped (with any sessions left) when
/// this value is dropped.
pub struct PgTestDb {
    admin_url: String,
    name: String,
    /// The URL of the new database.
    pub url: String,
}

/// `base` (`postgres://.../db?opts`) with its database replaced by `name`.
fn pg_url_with_database(base: &str, name: &str) -> String {
    let (main, query) = match base.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (base, None),
    };
    let authority_start = main.find("://").map(|i| i + 3).unwrap_or(0);
    let root = match main[authority_start..].find('/') {
        Some(slash) => &main[..authority_start + slash],
        None => main,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

impl PgTestDb {
    /// Creates a database named `sb_test_<uuid>` at `admin_url`'s server.
    pub async fn create(admin_url: &str) -> PgTestDb {
        use sqlx::Connection;
        let name = format!("sb_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(admin_url)
            .await
            .unwrap_or_else(|e| panic!("SWARMBRIDGE_TEST_PG is set but unreachable: {e}"));
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .expect("create the test database");
        let _ = conn.close().await;
        PgTestDb {
            url: pg_url_with_database(admin_url, &name),
            admin_url: admin_url.to_string(),
            name,
        }
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop may run inside a runtime: use a thread with its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&admin_url).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// The default test configuration: port 0, a fresh database, fast upkeep.
pub fn test_config(db: &std::path::Path) -> Config {
    let mut cfg = Config::load(None).expect("default config loads");
    cfg.server.listen = "127.0.0.1:0".into();
    cfg.database.url = db.display().to_string();
    cfg.tasks.sweep_interval_ms = 50;
    cfg.sync.poll_interval_ms = 100;
    cfg.sync.ack_flush_ms = 50;
    cfg.server.shutdown_grace_s = 5;
    cfg
}

/// A storage backend an integration test can run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh SQLite file in the test's directory.
    Sqlite,
    /// A fresh database at the PostgreSQL server `SWARMBRIDGE_TEST_PG` names.
    Postgres,
}

/// The PostgreSQL server for tests, when `SWARMBRIDGE_TEST_PG` names one.
pub fn test_pg_url() -> Option<String> {
    std::env::var("SWARMBRIDGE_TEST_PG")
        .ok()
        .filter(|u| !u.trim().is_empty())
}

/// The PostgreSQL server for a PostgreSQL-only test, or None after
/// printing that the test was skipped.
pub fn pg_or_skip(test: &str) -> Option<String> {
    let url = test_pg_url();
    if url.is_none() {
        eprintln!("skipped {test}: SWARMBRIDGE_TEST_PG is not set (PostgreSQL tests)");
    }
    url
}

impl Backend {
    /// Every backend the server knows, available here or not.
    pub const ALL: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

    /// The database URL for this backend, or why it cannot run here.
    pub fn database_url(self, dir: &std::path::Path) -> Result<String, String> {
        match self {
            Backend::Sqlite => Ok(dir.join("test.db").display().to_string()),
            Backend::Postgres => {
                test_pg_url().ok_or_else(|| "SWARMBRIDGE_TEST_PG is not set".into())
            }
        }
    }

    /// The backend `TestServer::spawn` and `spawn_with` use:
    /// `SWARMBRIDGE_TEST_BACKEND=postgres` runs a whole test binary on
    /// PostgreSQL (CI does so for a set of them), SQLite otherwise.
    pub fn default_for_tests() -> Backend {
        match std::env::var("SWARMBRIDGE_TEST_BACKEND").as_deref() {
            Ok("postgres") => Backend::Postgres,
            _ => Backend::Sqlite,
        }
    }
}

/// The backends a test can run against here; says which are skipped and why.
pub fn backends() -> Vec<Backend> {
    let probe = std::env::temp_dir();
    Backend::ALL
        .into_iter()
        .filter(|b| match b.database_url(&probe) {
            Ok(_) => true,
            Err(why) => {
                eprintln!("skipped on {b:?}: {why}");
                false
            }
        })
        .collect()
}

/// Runs `test` once against a fresh server (its config adjusted by
/// `tweak`) on every available backend.
pub async fn on_every_backend<T, F, Fut>(tweak: T, test: F)
where
    T: Fn(&mut Config),
    F: Fn(TestServer) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for backend in backends() {
        eprintln!("running on {backend:?}");
        test(TestServer::spawn_on(backend, &tweak).await).await;
    }
}

impl TestServer {
    /// Starts a server on `backend` after `tweak` adjusts the test configuration
    /// (see [`backends`] for the ones available).
    pub async fn spawn_on(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = backend
            .database_url(dir.path())
            .unwrap_or_else(|why| panic!("{backend:?} is not available: {why}"));
        match backend {
            Backend::Sqlite => Self::spawn_in(dir, url, None, tweak).await,
            Backend::Postgres => {
                let pg = PgTestDb::create(&url).await;
                let url = pg.url.clone();
                Self::spawn_in(dir, url, Some(pg), tweak).await
            }
        }
    }

    /// Starts another instance on the same database as `first` (its own
    /// port, the same configuration after `tweak`), as a second server of a
    /// PostgreSQL deployment.
    pub async fn spawn_peer(first: &TestServer, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = first.cfg.clone();
        tweak(&mut cfg);
        let running = server::start(cfg.clone()).await.expect("peer starts");
        TestServer {
            running: Some(running),
            dir,
            db: first.db.clone(),
            cfg,
            pg: None,
        }
    }

    /// Starts a server with the default test configuration.
    pub async fn spawn() -> TestServer {
        Self::spawn_with(|_| {}).await
    }

    /// Starts a server after `tweak` adjusts the configuration.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        Self::spawn_on(Backend::default_for_tests(), tweak).await
    }

    async fn spawn_in(
        dir: TempDir,
        url: String,
        pg: Option<PgTestDb>,
        tweak: impl FnOnce(&mut Config),
    ) -> TestServer {
        let db = PathBuf::from(&url);
        let mut cfg = test_config(&db);
        cfg.database.url = url;
        tweak(&mut cfg);
        let running = server::start(cfg.clone()).await.expect("server starts");
        TestServer {
            running: Some(running),
            dir,
            db,
            cfg,
            pg,
        }
    }

    fn running(&self) -> &Running {
        self.running.as_ref().expect("server running")
    }

    /// `ws://127.0.0.1:PORT/ws`
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.running().local_addr())
    }

    /// `http://127.0.0.1:PORT`
    pub fn http_url(&self) -> String {
        format!("http://{}", self.running().local_addr())
    }

    /// Registers an agent and returns its token.
    pub async fn add_agent(&self, name: &str, role: Role, caps: &[&str]) -> String {
        let (_, token) = self
            .running()
            .core
            .add_agent(name, role, caps.iter().map(|s| s.to_string()).collect())
            .await
            .expect("agent added");
        token
    }

    /// Connects and says hello as a new agent with these capabilities.
    pub async fn agent(&self, name: &str, caps: &[&str]) -> Client {
        let token = self.add_agent(name, Role::Agent, caps).await;
        Client::hello(&self.ws_url(), &token, json!({})).await
    }

    /// Connects and says hello as a new operator.
    pub async fn operator(&self, name: &str) -> Client {
        let token = self.add_agent(name, Role::Operator, &[]).await;
        Client::hello(&self.ws_url(), &token, json!({})).await
    }

    /// Shuts the server down in order (as SIGTERM would).
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }

    /// Stops and starts again on the same database (new port).
    pub async fn restart(&mut self) {
        self.stop().await;
        let running = server::start(self.cfg.clone())
            .await
            .expect("server restarts");
        self.running = Some(running);
    }
}

/// A WebSocket agent client.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub welcome: Value,
    next_id: u64,
}

impl Client {
    /// Opens a WebSocket without saying hello.
    pub async fn raw(url: &str) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        ws
    }

    /// Connects and says hello with `token` plus `extra` fields; panics unless welcomed.
    pub async fn hello(url: &str, token: &str, extra: Value) -> Client {
        let mut ws = Self::raw(url).await;
        let mut hello = json!({ "type": "hello", "id": "hello", "token": token });
        if let (Some(h), Some(e)) = (hello.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                h.insert(k.clone(), v.clone());
            }
        }
        ws.send(Message::Text(hello.to_string().into()))
            .await
            .expect("send hello");
        let mut c = Client {
            ws,
            welcome: Value::Null,
            next_id: 0,
        };
        let w = c.recv().await;
        assert_eq!(w["type"], "welcome", "expected welcome, got {w}");
        c.welcome = w;
        c
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, text: impl Into<String>) {
        let text: String = text.into();
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    /// Sends a JSON frame as is.
    pub async fn send(&mut self, frame: Value) {
        self.send_text(frame.to_string()).await;
    }

    /// The next JSON text frame (panics on timeout or close).
    pub async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("connection ended")
                .expect("websocket error");
            match msg {
                Message::Text(t) => return serde_json::from_str(&t).expect("frame is JSON"),
                Message::Close(c) => panic!("closed: {c:?}"),
                _ => continue,
            }
        }
    }

    /// The next frame, or None if nothing arrives within `d`.
    pub async fn recv_within(&mut self, d: Duration) -> Option<Value> {
        match tokio::time::timeout(d, self.ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => Some(serde_json::from_str(&t).expect("JSON")),
            Ok(_) | Err(_) => None,
        }
    }

    /// Sends a request with a fresh id and returns the frame that answers it
    /// (events that arrive meanwhile are skipped).
    pub async fn request(&mut self, mut frame: Value) -> Value {
        self.next_id += 1;
        let id = format!("r{}", self.next_id);
        frame["id"] = json!(id);
        self.send(frame).await;
        loop {
            let v = self.recv().await;
            if v["re"] == json!(id) {
                return v;
            }
        }
    }

    /// Like [`Client::request`], asserting the reply type.
    pub async fn ok(&mut self, frame: Value, reply_type: &str) -> Value {
        let v = self.request(frame).await;
        assert_eq!(v["type"], reply_type, "unexpected reply: {v}");
        v
    }

    /// Waits for the next `event` of `kind`, skipping other frames.
    pub async fn event(&mut self, kind: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == "event" && v["kind"] == kind {
                return v;
            }
        }
    }

    /// Waits until the server closes the connection; returns the close frame.
    pub async fn closed(&mut self) -> Option<CloseFrame> {
        wait_close(&mut self.ws).await
    }
}

/// Reads until the connection closes; returns the close frame (if one came).
pub async fn wait_close(ws: &mut WebSocketStream<MaybeTlsStream<TcpStream>>) -> Option<CloseFrame> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out waiting for close")
        {
            Some(Ok(Message::Close(c))) => return c,
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

// ---- helpers for the WebSocket protocol suites (ws_*.rs) -----------------

/// The close code of a close frame, if one came.
pub fn close_code(c: &Option<CloseFrame>) -> Option<u16> {
    c.as_ref().map(|c| u16::from(c.code))
}

impl TestServer {
    /// The running server's core (for revocation and bus counters).
    pub fn core(&self) -> &std::sync::Arc<swarmbridge::core::Core> {
        &self.running().core
    }

    /// Connects and says hello as a new admin.
    pub async fn admin(&self, name: &str) -> Client {
        let token = self.add_agent(name, Role::Admin, &[]).await;
        Client::hello(&self.ws_url(), &token, json!({})).await
    }
}

impl Client {
    /// Wraps a socket that has not been welcomed (to read what a refused
    /// `hello` gets, for example).
    pub fn unwelcomed(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Client {
        Client {
            ws,
            welcome: Value::Null,
            next_id: 0,
        }
    }

    /// Sends a request and asserts it is refused with `code`; returns the error frame.
    pub async fn err(&mut self, frame: Value, code: &str) -> Value {
        let v = self.request(frame).await;
        assert_eq!(v["type"], "error", "expected error {code}, got {v}");
        assert_eq!(v["code"], code, "unexpected error: {v}");
        v
    }

    /// Asserts the connection is open and served: `ping` is answered by `pong`.
    pub async fn assert_alive(&mut self) {
        let v = self.request(json!({"type": "ping"})).await;
        assert_eq!(v["type"], "pong", "expected pong, got {v}");
    }

    /// The next frame that is not an event (a reply to a frame sent as is).
    pub async fn reply(&mut self) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] != "event" {
                return v;
            }
        }
    }

    /// How the `agents` reply shows agent `name`.
    pub async fn agent_view(&mut self, name: &str) -> Value {
        let agents = self.ok(json!({"type": "agents"}), "agents").await;
        agents["agents"]
            .as_array()
            .expect("agents is a list")
            .iter()
            .find(|a| a["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} is not listed: {agents}"))
    }

    /// Creates a task and returns it (the `task` object of the reply).
    pub async fn create_task(&mut self, fields: Value) -> Value {
        let mut frame = json!({"type": "task.create"});
        if let (Some(f), Some(e)) = (frame.as_object_mut(), fields.as_object()) {
            for (k, v) in e {
                f.insert(k.clone(), v.clone());
            }
        }
        self.ok(frame, "task").await["task"].clone()
    }
}

// ---- HTTP helpers (api_*.rs, metrics.rs, dashboard.rs) --------------------

impl TestServer {
    /// `http://127.0.0.1:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.http_url(), path)
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone, Default)]
pub struct SseEvent {
    /// The `id:` field.
    pub id: Option<String>,
    /// The `event:` field (None means the default, `message`).
    pub event: Option<String>,
    /// The `data:` lines joined by newlines.
    pub data: String,
}

impl SseEvent {
    /// `data` parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("SSE data is JSON")
    }
}

/// A `text/event-stream` response read event by event.
pub struct SseStream {
    resp: reqwest::Response,
    buf: String,
}

impl SseStream {
    /// Sends the request and asserts a 200 `text/event-stream` answer.
    pub async fn open(req: reqwest::RequestBuilder) -> SseStream {
        let resp = req.send().await.expect("SSE request");
        assert_eq!(resp.status(), 200, "SSE status");
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/event-stream"), "content type {ct}");
        SseStream {
            resp,
            buf: String::new(),
        }
    }

    /// The next event with data (comments and keep-alives are skipped).
    pub async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..i + 2).collect();
                let mut ev = SseEvent::default();
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.trim_start().to_string());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        ev.event = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("id:") {
                        ev.id = Some(v.trim().to_string());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                ev.data = data.join("\n");
                return ev;
            }
            let chunk = tokio::time::timeout(WAIT, self.resp.chunk())
                .await
                .expect("timed out waiting for an SSE event")
                .expect("SSE read")
                .expect("SSE stream ended");
            self.buf
                .push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
        }
    }

    /// The next event named `event`, skipping others.
    pub async fn until(&mut self, event: &str) -> SseEvent {
        loop {
            let ev = self.next().await;
            if ev.event.as_deref() == Some(event) {
                return ev;
            }
        }
    }
}

/// Lets each caller broadcast once, then refuses for a long while (to see
/// `rate_limited` without waiting).
pub fn one_broadcast_per_caller(cfg: &mut Config) {
    cfg.limits.rates.insert(
        "broadcast".into(),
        swarmbridge::config::Rate {
            per_s: 0.01,
            burst: 1,
        },
    );
}

/// Waits (up to `WAIT`) until the announcer of `target` (`discord`,
/// `twitch:#channel`) recorded every event committed so far as announced,
/// so a test can kill or stop its server outside the one-line window in
/// which a sent announcement is not recorded yet.
pub async fn wait_announce_mark(core: &swarmbridge::core::Core, target: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let newest = core.store.max_seq().await.expect("newest seq");
    loop {
        let mark = core.store.announce_mark(target).await.expect("mark");
        if mark.is_some_and(|m| m >= newest) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the announcement mark of {target} stayed at {mark:?}, below {newest}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
