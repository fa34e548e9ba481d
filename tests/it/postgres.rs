//! PostgreSQL-specific start-up and failure behaviour: an unreachable
//! server, a database migrated by a newer release, `swarmbridge migrate`,
//! and PostgreSQL going away while the server runs. Tests needing a
//! PostgreSQL server are skipped (saying so) without `SWARMBRIDGE_TEST_PG`.

use crate::common::http_api::get;
use crate::common::{pg_or_skip, test_config, Backend, PgTestDb, TestServer, WAIT};
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_swarmbridge");

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

#[tokio::test]
async fn unreachable_postgres_at_start_is_an_error_naming_the_url_without_its_password() {
    let url = format!("postgres://bot:hunter2@127.0.0.1:{}/swarm", closed_port());
    let mut cfg = test_config(std::path::Path::new("unused.db"));
    cfg.database.url = url.clone();
    let err = match swarmbridge::server::start(cfg).await {
        Ok(_) => panic!("a server started without its database"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("cannot connect to PostgreSQL"), "{err}");
    assert!(err.contains("postgres://bot:***@127.0.0.1:"), "{err}");
    assert!(!err.contains("hunter2"), "the password leaked: {err}");

    let out = Command::new(BIN)
        .arg("migrate")
        .env("SWARMBRIDGE_DATABASE_URL", &url)
        .env_remove("SWARMBRIDGE_CONFIG")
        .output()
        .expect("binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit status {:?}", out.status);
    assert!(stderr.contains("postgres://bot:***@"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the password leaked: {stderr}");

    // and `serve` refuses to start, naming the URL without its password
    let out = Command::new(BIN)
        .arg("serve")
        .env("SWARMBRIDGE_DATABASE_URL", &url)
        .env("SWARMBRIDGE_LISTEN", "127.0.0.1:0")
        .env_remove("SWARMBRIDGE_CONFIG")
        .output()
        .expect("binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "serve exit status; {stderr}");
    assert!(stderr.contains("cannot connect to PostgreSQL"), "{stderr}");
    assert!(stderr.contains("postgres://bot:***@127.0.0.1:"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the password leaked: {stderr}");
}

#[tokio::test]
async fn swarmbridge_migrate_applies_the_postgres_migrations_once() {
    let Some(admin) = pg_or_skip("swarmbridge_migrate_applies_the_postgres_migrations_once") else {
        return;
    };
    let db = PgTestDb::create(&admin).await;
    let migrate = || {
        Command::new(BIN)
            .arg("migrate")
            .env("SWARMBRIDGE_DATABASE_URL", &db.url)
            .env_remove("SWARMBRIDGE_CONFIG")
            .output()
            .expect("binary runs")
    };
    let first = migrate();
    assert!(first.status.success(), "{first:?}");
    let second = migrate();
    assert!(second.status.success(), "{second:?}");
    let (first_out, second_out) = (
        String::from_utf8_lossy(&first.stdout).into_owned(),
        String::from_utf8_lossy(&second.stdout).into_owned(),
    );
    assert_ne!(
        first_out, second_out,
        "the second run applied something again"
    );
}

#[tokio::test]
async fn a_database_migrated_by_a_newer_release_is_refused_with_a_clear_message() {
    if pg_or_skip("a_database_migrated_by_a_newer_release_is_refused").is_none() {
        return;
    }
    let mut srv = TestServer::spawn_on(Backend::Postgres, |_| {}).await;
    srv.stop().await;
    let pool = sqlx::PgPool::connect(&srv.cfg.database.url)
        .await
        .expect("connect");
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', TRUE, '\\x00', 1)",
    )
    .execute(&pool)
    .await
    .expect("pretend a newer release migrated");
    pool.close().await;
    let err = match swarmbridge::server::start(srv.cfg.clone()).await {
        Ok(_) => panic!("started on a database from a newer release"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("migration 9999") && err.contains("newer than this binary"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_postgres_answers_unavailable_turns_ready_503_and_recovers_by_itself() {
    let Some(admin) = pg_or_skip("losing_postgres_answers_unavailable") else {
        return;
    };
    let srv = TestServer::spawn_on(Backend::Postgres, |_| {}).await;
    let name = srv
        .cfg
        .database
        .url
        .rsplit('/')
        .next()
        .expect("database name")
        .to_string();
    let mut creator = srv.agent("creator", &[]).await;
    let before = creator
        .create_task(json!({"title":"before the outage"}))
        .await;
    let admin_pool = sqlx::PgPool::connect(&admin).await.expect("admin connects");
    let outage = |allow: bool| {
        let pool = admin_pool.clone();
        let name = name.clone();
        async move {
            sqlx::query(&format!(
                "ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS {allow}"
            ))
            .execute(&pool)
            .await
            .expect("alter database");
            if !allow {
                sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                )
                .bind(&name)
                .execute(&pool)
                .await
                .expect("terminate sessions");
            }
        }
    };
    outage(false).await;

    let (status, _) = get(&srv.http_url(), "/ready", None).await;
    assert_eq!(status, 503, "/ready while the database is away");
    let refused = creator
        .err(
            json!({"type":"task.create","title":"during the outage"}),
            "unavailable",
        )
        .await;
    assert!(
        refused["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0),
        "{refused}"
    );

    outage(true).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, _) = get(&srv.http_url(), "/ready", None).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "/ready never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = creator
        .create_task(json!({"title":"after the outage"}))
        .await;
    assert!(after["id"].as_i64() > before["id"].as_i64(), "{after}");
    let listed = srv
        .running
        .as_ref()
        .expect("running")
        .core
        .get_task(before["id"].as_i64().expect("id"))
        .await
        .expect("the task acknowledged before the outage is still there");
    assert_eq!(listed.title, "before the outage");
    admin_pool.close().await;
}
