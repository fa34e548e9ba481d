//! The real `swarmbridge` binary as a child process, for tests that need a
//! process of its own: its open file descriptors, its complete log output,
//! SIGKILL. Configured through `SWARMBRIDGE_*` variables, as an operator would.

use super::WAIT;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_swarmbridge");

/// A free loopback port (bound, then released for the child to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A `swarmbridge serve` child on a free port with its database in `dir`;
/// stdout and stderr go to `dir/server.log`. Killed when dropped.
pub struct ChildServer {
    child: std::process::Child,
    /// The port it listens on.
    pub port: u16,
    /// The database URL (a SQLite file in `dir` unless given).
    pub database: String,
    /// Where its output goes.
    pub log: PathBuf,
    env: Vec<(String, String)>,
    /// The directory holding the log when [`ChildServer::spawn`] made one.
    _dir: Option<tempfile::TempDir>,
}

impl ChildServer {
    /// Starts `serve` with the default test settings plus `env`, and waits
    /// until `/health` answers.
    pub async fn start(dir: &Path, env: &[(&str, &str)]) -> ChildServer {
        let database = dir.join("server.db").display().to_string();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::start_on(dir, database, env).await
    }

    /// Starts `serve` on `database` (a path or a URL) with `env`.
    pub async fn start_on(dir: &Path, database: String, env: Vec<(String, String)>) -> ChildServer {
        let port = free_port();
        let log = dir.join("server.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .env_remove("SWARMBRIDGE_CONFIG")
            .env("SWARMBRIDGE_DATABASE_URL", &database)
            .env("SWARMBRIDGE_LISTEN", format!("127.0.0.1:{port}"))
            .env("SWARMBRIDGE_SYNC__POLL_INTERVAL_MS", "100")
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("serve starts");
        let srv = ChildServer {
            child,
            port,
            database,
            log,
            env,
            _dir: None,
        };
        srv.wait_healthy().await;
        srv
    }

    async fn wait_healthy(&self) {
        let deadline = Instant::now() + WAIT;
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(self.url("/health")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "server did not answer /health; log:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Starts `serve` on `database_url` (shared with in-process instances)
    /// with fast sweeps, syncs and ack flushes plus `env`; its log goes to a
    /// directory of its own.
    pub async fn spawn(database_url: &str, env: &[(&str, String)]) -> ChildServer {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut all: Vec<(String, String)> = [
            ("SWARMBRIDGE_TASKS__SWEEP_INTERVAL_MS", "50"),
            ("SWARMBRIDGE_SYNC__ACK_FLUSH_MS", "50"),
            ("RUST_LOG", "warn"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let mut srv = Self::start_on(dir.path(), database_url.to_string(), all).await;
        srv._dir = Some(dir);
        srv
    }

    /// Freezes the process with SIGSTOP, as a host that hangs or is cut off
    /// from the network: its sockets stay open, it answers nothing.
    pub fn freeze(&self) {
        let stopped = Command::new("kill")
            .args(["-STOP", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(stopped.success(), "SIGSTOP the child");
    }

    /// Kills the process with SIGKILL and reaps it: nothing of it runs
    /// afterwards, and it said goodbye to no one.
    pub async fn kill(&mut self) {
        let _ = self.child.kill();
        let deadline = Instant::now() + WAIT;
        while self.child.try_wait().ok().flatten().is_none() {
            assert!(Instant::now() < deadline, "the killed child was not reaped");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `http://127.0.0.1:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// `ws://127.0.0.1:PORT/ws`
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// File descriptors the child has open now.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Everything the child wrote to stdout and stderr so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs a CLI subcommand on the same database and environment;
    /// returns stdout (panics with stderr when it fails).
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_remove("SWARMBRIDGE_CONFIG")
            .env("SWARMBRIDGE_DATABASE_URL", &self.database);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("cli runs");
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Registers an agent with the CLI; returns its token.
    pub fn add_agent(&self, name: &str, extra: &[&str]) -> String {
        let mut args = vec!["agent", "add", name];
        args.extend_from_slice(extra);
        self.cli(&args).trim().to_string()
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub async fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + WAIT;
        while self.child.try_wait().ok().flatten().is_none() {
            assert!(Instant::now() < deadline, "server did not exit on SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
