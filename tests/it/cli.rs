//! The real binary, as a user runs it: CLI subcommands against a database
//! file, a served process picking up CLI writes, and graceful shutdown.

use crate::common::*;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_swarmbridge");

/// Runs the binary with a database in `dir`; returns (status, stdout, stderr).
fn run(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("SWARMBRIDGE_DATABASE_URL", dir.join("cli.db"))
        .env_remove("SWARMBRIDGE_CONFIG")
        .output()
        .expect("binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A served child process on a free port.
struct Served {
    child: std::process::Child,
    port: u16,
}

impl Served {
    fn start(dir: &std::path::Path) -> Served {
        let port = free_port();
        let child = Command::new(BIN)
            .arg("serve")
            .env("SWARMBRIDGE_DATABASE_URL", dir.join("cli.db"))
            .env("SWARMBRIDGE_LISTEN", format!("127.0.0.1:{port}"))
            .env("SWARMBRIDGE_SYNC__POLL_INTERVAL_MS", "100")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve starts");
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Served { child, port }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn agent_add_prints_the_token_alone_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = run(
        dir.path(),
        &["agent", "add", "worker-1", "--capability", "rust"],
    );
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "stdout: {out:?}");
    assert!(
        lines[0].starts_with("sbt_") && !lines[0].contains(' '),
        "{out:?}"
    );
    let (ok, list, _) = run(dir.path(), &["agent", "list"]);
    assert!(ok);
    assert!(
        list.contains("worker-1") && list.contains("rust") && !list.contains(lines[0]),
        "{list}"
    );
}

#[test]
fn adding_the_same_agent_twice_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    assert!(run(dir.path(), &["agent", "add", "a"]).0);
    let (ok, _, err) = run(dir.path(), &["agent", "add", "a"]);
    assert!(!ok);
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn a_bad_config_value_names_the_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["config", "check"])
        .env("SWARMBRIDGE_DATABASE_URL", dir.path().join("x.db"))
        .env("SWARMBRIDGE_TASKS__LEASE_S", "forever")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.to_lowercase().contains("tasks.lease_s"), "{err}");
}

#[test]
fn config_check_refuses_a_catalog_dir_that_leaves_a_command_out() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("commands");
    std::fs::create_dir(&catalog).unwrap();
    for (name, text) in swarmbridge::catalog::EMBEDDED {
        if *name != "polls.toml" {
            std::fs::write(catalog.join(name), text).unwrap();
        }
    }
    let out = Command::new(BIN)
        .args(["config", "check"])
        .env("SWARMBRIDGE_DATABASE_URL", dir.path().join("x.db"))
        .env("SWARMBRIDGE_CATALOG__DIR", &catalog)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not declare `poll."), "{err}");
}

#[test]
fn task_list_shows_tasks_added_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, id, err) = run(
        dir.path(),
        &["task", "add", "write docs", "--priority", "5"],
    );
    assert!(ok, "{err}");
    assert_eq!(id.trim(), "1");
    let (ok, list, _) = run(dir.path(), &["task", "list", "--state", "open"]);
    assert!(ok);
    assert!(
        list.contains("write docs") && list.contains("open"),
        "{list}"
    );
    let (ok, _, err) = run(dir.path(), &["task", "list", "--state", "sideways"]);
    assert!(!ok);
    assert!(err.contains("unknown task state"), "{err}");
}

#[tokio::test]
async fn cli_writes_reach_a_running_server_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let (_, token, _) = run(dir.path(), &["agent", "add", "w", "--capability", "rust"]);
    let (_, victim, _) = run(dir.path(), &["agent", "add", "v"]);
    let srv = Served::start(dir.path());
    let mut w = Client::hello(&srv.url(), token.trim(), json!({})).await;
    let mut v = Client::hello(&srv.url(), victim.trim(), json!({})).await;

    let (ok, _, err) = run(
        dir.path(),
        &["task", "add", "from the cli", "--requires", "rust"],
    );
    assert!(ok, "{err}");
    let ev = w.event("task.created").await;
    assert_eq!(ev["data"]["task"]["title"], "from the cli");
    assert!(ev["data"]["task"]["created_by"]
        .as_str()
        .unwrap()
        .starts_with("cli:"));

    assert!(run(dir.path(), &["send", "--to", "w", "hello from cli"]).0);
    let m = w.event("message").await;
    assert_eq!(m["data"]["text"], "hello from cli");

    assert!(run(dir.path(), &["agent", "revoke", "v"]).0);
    let close = v.closed().await;
    assert_eq!(close_code(&close), Some(1008));
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_closes_websockets_with_1001_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (_, token, _) = run(dir.path(), &["agent", "add", "w"]);
    let mut srv = Served::start(dir.path());
    let mut w = Client::hello(&srv.url(), token.trim(), json!({})).await;
    let pid = srv.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let close = w.closed().await;
    assert_eq!(close_code(&close), Some(1001));
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = srv.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "server did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));
}
