//! `swarmbridge serve` as a child process on a given database, so a test
//! can kill it the way a crash or the OOM killer does (SIGKILL: no
//! shutdown, no goodbye to PostgreSQL or to the platforms) while the test
//! process keeps running other instances in-process.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// The server binary this test build comes with.
pub const BIN: &str = env!("CARGO_BIN_EXE_swarmbridge");

/// A running child server, killed (SIGKILL) when dropped.
pub struct ChildServer {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl ChildServer {
    /// Starts `swarmbridge serve` on `database_url` with the test
    /// defaults (fast sweeps and syncs) plus `env` (`SWARMBRIDGE_...`
    /// variables), and waits until `/health` answers.
    pub async fn spawn(database_url: &str, env: &[(&str, String)]) -> ChildServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .env_remove("SWARMBRIDGE_CONFIG")
            .env("SWARMBRIDGE_DATABASE_URL", database_url)
            .env("SWARMBRIDGE_LISTEN", addr.to_string())
            .env("SWARMBRIDGE_TASKS__SWEEP_INTERVAL_MS", "50")
            .env("SWARMBRIDGE_SYNC__POLL_INTERVAL_MS", "100")
            .env("SWARMBRIDGE_SYNC__ACK_FLUSH_MS", "50")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the swarmbridge binary starts");
        let health = format!("http://{addr}/health");
        let deadline = Instant::now() + super::WAIT;
        loop {
            if let Ok(r) = reqwest::get(&health).await {
                if r.status().is_success() {
                    break;
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the child server exited before answering /health: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "the child server did not answer /health"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ChildServer { child, addr }
    }

    /// `ws://ADDR/ws`
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Freezes the process with SIGSTOP, as a host that hangs or is cut off
    /// from the network: its sockets stay open, it answers nothing.
    pub fn freeze(&self) {
        let pid = self.child.id().expect("the child runs");
        let stopped = std::process::Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(stopped.success(), "SIGSTOP the child");
    }

    /// Kills the process with SIGKILL and reaps it: nothing of it runs
    /// afterwards, and it said goodbye to no one.
    pub async fn kill(&mut self) {
        self.child.start_kill().expect("SIGKILL the child");
        let _ = tokio::time::timeout(super::WAIT, self.child.wait())
            .await
            .expect("the killed child is reaped");
    }
}
