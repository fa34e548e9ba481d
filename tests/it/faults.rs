//! Fault injection against a running server: the SQLite disk filling up,
//! another process holding SQLite's write lock, and the reasoning and
//! embeddings backends hanging or resetting connections. In each the
//! caller gets a clear error while the fault lasts, the server keeps
//! serving, and it recovers by itself when the fault ends, without a
//! restart. (PostgreSQL stopped and restarted: `pg_failover.rs`
//! `losing_postgres_while_running_...`; Discord and Twitch faults:
//! `discord.rs`, `twitch.rs`.)

use crate::common::fake_embeddings::{word_vector, FakeEmbeddings};
use crate::common::fake_openai::{FakeOpenAi, Reply};
use crate::common::fault_proxy::{FaultProxy, ProxyMode};
use crate::common::http_api::get;
use crate::common::*;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use swarmbridge::embed::{EmbedBackendKind, EmbedConfig, EmbedError, Embedder, HttpEmbedder};
use swarmbridge::reason::CircuitState;

/// Polls `GET /ready` until it answers `status`; returns its body.
async fn ready_becomes(srv: &TestServer, status: u16) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (got, body) = get(&srv.http_url(), "/ready", None).await;
        if got == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/ready never answered {status}; last {got} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---- SQLite: the disk fills up ---------------------------------------------

/// A small ext4 filesystem in a file, loop-mounted; unmounted when dropped.
struct SmallDisk {
    mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    /// An 8 MiB filesystem, or None (saying why) where mounting is not
    /// permitted (not root, no loop devices).
    fn mount(test: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = dir.path().join("disk.img");
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).expect("mount point");
        let run = |cmd: &mut Command| -> Result<(), String> {
            match cmd.output() {
                Ok(out) if out.status.success() => Ok(()),
                Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
                Err(e) => Err(e.to_string()),
            }
        };
        let made = run(Command::new("truncate").args(["-s", "8M"]).arg(&image))
            .and_then(|()| run(Command::new("mkfs.ext4").arg("-q").arg(&image)))
            .and_then(|()| {
                run(Command::new("mount")
                    .args(["-o", "loop"])
                    .arg(&image)
                    .arg(&mount))
            });
        match made {
            Ok(()) => Some(SmallDisk { mount, _dir: dir }),
            Err(why) => {
                eprintln!("skipped {test}: cannot loop-mount a small filesystem: {why}");
                None
            }
        }
    }

    /// Writes a filler file until the filesystem refuses (ENOSPC).
    fn fill(&self) -> PathBuf {
        let filler = self.mount.join("filler");
        let mut f = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0x5au8; 64 * 1024];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        // small writes may still fit in the last blocks: take them too
        let mut byte = [0u8; 1];
        while f.write(&byte).is_ok_and(|n| n == 1) {
            byte[0] = byte[0].wrapping_add(1);
        }
        let _ = f.sync_all();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

/// Creates tasks with long bodies until one is refused; returns the refusal.
async fn write_until_refused(agent: &mut Client) -> Value {
    let body = "x".repeat(4000);
    for i in 0..200 {
        let reply = agent
            .request(json!({"type":"task.create","title":format!("filler {i}"),"body":body}))
            .await;
        if reply["type"] == "error" {
            return reply;
        }
    }
    panic!("200 writes of 8 KB went through on a full 8 MiB disk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_disk_full_refuses_writes_naming_the_cause_and_they_work_again_once_space_is_freed()
{
    let test = "sqlite_disk_full_refuses_writes";
    let Some(disk) = SmallDisk::mount(test) else {
        return;
    };
    let db = disk.mount.join("swarmbridge.db");
    let url = db.display().to_string();
    let mut srv = TestServer::spawn_on(Backend::Sqlite, move |cfg| cfg.database.url = url).await;
    let mut agent = srv.operator("op").await;
    let before = agent
        .create_task(json!({"title":"before the disk filled"}))
        .await;

    let filler = disk.fill();
    let refused = write_until_refused(&mut agent).await;
    assert_eq!(refused["code"], "internal", "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(message.contains("disk is full"), "{refused}");
    // the server goes on: the connection is served, reads work, /ready says why
    agent.assert_alive().await;
    let kept = agent
        .ok(json!({"type":"task.get","task_id":before["id"]}), "task")
        .await;
    assert_eq!(kept["task"]["title"], "before the disk filled");
    let ready = ready_becomes(&srv, 503).await;
    assert_eq!(ready["database"], "disk_full", "{ready}");
    assert_eq!(ready["error"]["code"], "unavailable", "{ready}");

    std::fs::remove_file(&filler).expect("free the space");
    let ready = ready_becomes(&srv, 200).await;
    assert_eq!(ready["database"], "ok", "{ready}");
    let after = agent
        .create_task(json!({"title":"after space was freed"}))
        .await;
    assert!(after["id"].as_i64() > before["id"].as_i64(), "{after}");
    srv.stop().await;
    drop(disk);
}

// ---- SQLite: another process holds the write lock --------------------------

/// Holds SQLite's write lock on `db` from a connection of its own (as a
/// backup tool or a `sqlite3` shell would) until released.
async fn lock_database(db: &Path) -> sqlx::SqliteConnection {
    use sqlx::{ConnectOptions, Connection};
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .connect()
        .await
        .expect("a second connection");
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut conn)
        .await
        .expect("take the write lock");
    let _ = conn.ping().await;
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_locked_past_the_busy_timeout_answers_unavailable_and_writes_resume_when_released() {
    let mut srv = TestServer::spawn_on(Backend::Sqlite, |cfg| {
        cfg.database.busy_timeout_ms = 300;
    })
    .await;
    let mut agent = srv.operator("op").await;
    let before = agent.create_task(json!({"title":"before the lock"})).await;

    let mut lock = lock_database(&srv.db).await;
    let started = Instant::now();
    let refused = agent
        .err(
            json!({"type":"task.create","title":"during the lock"}),
            "unavailable",
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered after {:?}",
        started.elapsed()
    );
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("locked by another process")),
        "{refused}"
    );
    assert!(
        refused["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0),
        "{refused}"
    );
    // reads go on while another process writes
    let kept = agent
        .ok(json!({"type":"task.get","task_id":before["id"]}), "task")
        .await;
    assert_eq!(kept["task"]["title"], "before the lock");
    let ready = ready_becomes(&srv, 503).await;
    assert_eq!(ready["database"], "locked", "{ready}");

    sqlx::query("ROLLBACK")
        .execute(&mut lock)
        .await
        .expect("release the lock");
    ready_becomes(&srv, 200).await;
    let after = agent.create_task(json!({"title":"after the lock"})).await;
    assert!(after["id"].as_i64() > before["id"].as_i64(), "{after}");
    srv.stop().await;
}

// ---- the reasoning backend hangs or resets ---------------------------------

/// A server whose reasoning backend is `fake` behind a [`FaultProxy`]:
/// 400 ms per attempt, no retries, the breaker opening after 2 failures
/// for 1 s, and a budget the test does not run out of.
async fn server_reasoning_through(fake: &FakeOpenAi) -> (TestServer, FaultProxy) {
    let (proxy, base) = FaultProxy::in_front_of(&fake.base_url()).await;
    let srv = TestServer::spawn_with(move |cfg| {
        cfg.reasoning.base_url = Some(base);
        cfg.reasoning.model = "fake-model".into();
        cfg.reasoning.connect_timeout_ms = 400;
        cfg.reasoning.timeout_ms = 400;
        cfg.reasoning.max_retries = 0;
        cfg.reasoning.backoff_base_ms = 10;
        cfg.reasoning.breaker_threshold = 2;
        cfg.reasoning.breaker_cooldown_s = 1;
        cfg.reasoning.budget_per_min = 10_000;
        cfg.reasoning.budget_burst = 1_000;
    })
    .await;
    (srv, proxy)
}

/// Sends `reason` with `prompt`; returns the reply and how long it took.
async fn reason(agent: &mut Client, prompt: &str) -> (Value, Duration) {
    let started = Instant::now();
    let reply = agent
        .request(json!({"type":"reason","prompt":prompt,"mode":"simple"}))
        .await;
    (reply, started.elapsed())
}

/// Asks until the answer is `expected` (the breaker's cooldown running out).
async fn reason_recovers(agent: &mut Client, expected: &str) {
    let deadline = Instant::now() + WAIT;
    for i in 0.. {
        let (reply, _) = reason(agent, &format!("after the fault {i}")).await;
        if reply["type"] != "error" {
            assert!(reply.to_string().contains(expected), "{reply}");
            return;
        }
        assert!(Instant::now() < deadline, "never recovered: {reply}");
        // the breaker's cooldown, or the `reason` request rate, says when
        let wait = match reply["code"].as_str() {
            Some("unavailable") | Some("rate_limited") => reply["retry_after_ms"].as_u64(),
            _ => panic!("unexpected error while recovering: {reply}"),
        };
        tokio::time::sleep(Duration::from_millis(wait.unwrap_or(200).min(2_000))).await;
    }
}

/// The fault of `mode` at the backend: two failures within the timeout,
/// then the breaker refuses without calling, then recovery.
async fn reasoning_fault_then_recovery(mode: ProxyMode) {
    let fake = FakeOpenAi::spawn(Reply::text("the backend is back")).await;
    let (mut srv, proxy) = server_reasoning_through(&fake).await;
    let mut agent = srv.agent("asker", &[]).await;
    proxy.set(mode);

    for i in 0..2 {
        let (reply, took) = reason(&mut agent, &format!("during the fault {i}")).await;
        assert_eq!(reply["type"], "error", "{reply}");
        assert_eq!(reply["code"], "unavailable", "{reply}");
        assert!(
            reply["message"]
                .as_str()
                .is_some_and(|m| m.contains("reasoning backend")),
            "{reply}"
        );
        assert!(
            took < Duration::from_secs(3),
            "{mode:?}: answered after {took:?}"
        );
    }
    let reached = proxy.accepted();
    let (open, took) = reason(&mut agent, "while the breaker is open").await;
    assert_eq!(open["code"], "unavailable", "{open}");
    assert!(open["retry_after_ms"].as_u64().is_some(), "{open}");
    assert!(
        took < Duration::from_secs(1),
        "an open breaker answers at once"
    );
    assert_eq!(proxy.accepted(), reached, "an open breaker does not call");
    agent.assert_alive().await;

    proxy.set(ProxyMode::Pass);
    reason_recovers(&mut agent, "the backend is back").await;
    assert_eq!(
        fake.calls(),
        1,
        "only the recovered call reached the backend"
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_reasoning_backend_answers_unavailable_within_the_timeout_and_recovers() {
    reasoning_fault_then_recovery(ProxyMode::Hang).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reasoning_backend_resetting_connections_answers_unavailable_and_recovers() {
    reasoning_fault_then_recovery(ProxyMode::Reset).await;
}

// ---- the embeddings backend hangs or resets --------------------------------

const DIMENSIONS: usize = 8;

fn embedder_through(base: String) -> HttpEmbedder {
    let cfg = EmbedConfig {
        backend: EmbedBackendKind::Openai,
        base_url: Some(base),
        model: "fake-embed".into(),
        dimensions: DIMENSIONS,
        connect_timeout_ms: 400,
        timeout_ms: 400,
        max_retries: 0,
        backoff_base_ms: 10,
        breaker_threshold: 2,
        breaker_cooldown_s: 1,
        ..EmbedConfig::default()
    };
    HttpEmbedder::new(&cfg, None).expect("valid config")
}

#[tokio::test]
async fn a_hanging_or_resetting_embeddings_backend_fails_fast_opens_the_breaker_and_recovers() {
    let fake = FakeEmbeddings::spawn(DIMENSIONS).await;
    let (proxy, base) = FaultProxy::in_front_of(&fake.base_url()).await;
    let client = embedder_through(base);
    let text = vec!["hello".to_string()];

    proxy.set(ProxyMode::Hang);
    let started = Instant::now();
    let hung = client.embed(&text).await.expect_err("hangs");
    assert_eq!(hung, EmbedError::Timeout { after_ms: 400 }, "{hung}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(hung.code(), "unavailable");

    proxy.set(ProxyMode::Reset);
    let reset = client.embed(&text).await.expect_err("reset");
    assert!(
        matches!(reset, EmbedError::Backend { status: None, .. }),
        "{reset}"
    );
    assert_eq!(reset.code(), "unavailable");
    assert_eq!(client.circuit_state(), CircuitState::Open);

    let reached = proxy.accepted();
    let open = client.embed(&text).await.expect_err("open");
    assert!(matches!(open, EmbedError::CircuitOpen { .. }), "{open}");
    assert_eq!(proxy.accepted(), reached, "an open breaker does not call");

    proxy.set(ProxyMode::Pass);
    let deadline = Instant::now() + WAIT;
    let vectors = loop {
        match client.embed(&text).await {
            Ok(v) => break v,
            Err(EmbedError::CircuitOpen { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("no recovery: {e}"),
        }
    };
    assert_eq!(vectors, vec![word_vector("hello", DIMENSIONS)]);
    assert_eq!(client.circuit_state(), CircuitState::Closed);
}
