//! Secrets never leave the process: a server with every secret configured
//! runs a full session (agents, a failing reasoning call that echoes its
//! key, Twitch and Discord through their fakes, refused tokens), and no
//! secret appears in its debug log, `/metrics`, the dashboard, `config
//! check` or any error reply.

use crate::common::child::ChildServer;
use crate::common::fake_discord::{
    command_interaction, member_json, FakeDiscord, APP_ID, BOT_TOKEN,
};
use crate::common::fake_openai::{FakeOpenAi, Reply};
use crate::common::fake_twitch::FakeTwitch;
use crate::common::*;
use serde_json::json;

const REASONING_KEY: &str = "sk-reasoning-0123456789abcdef";
const EMBEDDINGS_KEY: &str = "sk-embeddings-fedcba9876543210";
const TWITCH_TOKEN: &str = "twitchsecrettoken0123456789";

#[tokio::test]
async fn no_configured_secret_appears_in_logs_metrics_dashboard_config_or_errors() {
    let openai = FakeOpenAi::spawn(Reply::status(
        401,
        &format!("Incorrect API key provided: {REASONING_KEY}"),
    ))
    .await;
    let discord = FakeDiscord::spawn().await;
    let twitch = FakeTwitch::spawn(false).await;
    let dir = tempfile::tempdir().unwrap();
    let twitch_oauth = format!("oauth:{TWITCH_TOKEN}");
    let public_key = hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&[7u8; 32])
            .verifying_key()
            .to_bytes(),
    );
    let env = [
        ("RUST_LOG", "debug".to_string()),
        ("SWARMBRIDGE_REASONING_BASE_URL", openai.base_url()),
        ("SWARMBRIDGE_REASONING_MODEL", "fake-model".to_string()),
        ("SWARMBRIDGE_REASONING_API_KEY", REASONING_KEY.to_string()),
        ("SWARMBRIDGE_REASONING__MAX_RETRIES", "0".to_string()),
        ("SWARMBRIDGE_EMBEDDINGS_API_KEY", EMBEDDINGS_KEY.to_string()),
        ("SWARMBRIDGE_DISCORD_TOKEN", BOT_TOKEN.to_string()),
        ("SWARMBRIDGE_DISCORD_APPLICATION_ID", APP_ID.to_string()),
        ("SWARMBRIDGE_DISCORD_API_BASE", discord.base_url()),
        ("SWARMBRIDGE_DISCORD_PUBLIC_KEY", public_key),
        ("SWARMBRIDGE_TWITCH_USERNAME", "sbbot".to_string()),
        ("SWARMBRIDGE_TWITCH_OAUTH_TOKEN", twitch_oauth.clone()),
        ("SWARMBRIDGE_TWITCH_CHANNELS", "secretchan".to_string()),
        ("SWARMBRIDGE_TWITCH_SERVER", twitch.addr()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let srv = ChildServer::start(dir.path(), &env).await;
    let agent_token = srv.add_agent("worker", &[]);
    let op_token = srv.add_agent("boss", &["--role", "operator"]);
    discord.wait_ready().await;
    twitch.wait_joined("secretchan").await;

    // a session: agents, a task, a message, a failing reasoning call
    let mut seen = String::new();
    let mut op = Client::hello(&srv.ws_url(), &op_token, json!({})).await;
    let mut worker = Client::hello(&srv.ws_url(), &agent_token, json!({})).await;
    let task = op.create_task(json!({"title": "keep secrets"})).await;
    worker.ok(json!({"type": "task.claim"}), "task").await;
    seen += &worker
        .ok(
            json!({"type": "task.complete", "task_id": task["id"]}),
            "task",
        )
        .await
        .to_string();
    op.ok(
        json!({"type": "msg.send", "to": "worker", "text": "hi"}),
        "ok",
    )
    .await;
    let refused = worker
        .err(
            json!({"type": "reason", "prompt": "why?", "mode": "simple"}),
            "unavailable",
        )
        .await;
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("Incorrect API key provided: <redacted>")),
        "the backend's echo of the key is cut out: {refused}"
    );
    seen += &refused.to_string();
    // Twitch and Discord traffic
    let said = twitch.say("secretchan", "viewer1", "", "!status");
    twitch.reply_to(&said).await;
    discord.interaction(command_interaction(
        1,
        "tok-1",
        "status",
        json!([]),
        member_json(600_000_000_000_000_002, "victor", &[]),
    ));
    discord
        .wait_for(|r| r.method == "POST" && r.path.ends_with("/callback"))
        .await;
    let http = reqwest::Client::new();
    // refused tokens, on every front door
    let mut bad = Client::unwelcomed(Client::raw(&srv.ws_url()).await);
    bad.send(json!({"type": "hello", "id": "h", "token": "sbt_wrong"}))
        .await;
    seen += &bad.reply().await.to_string();
    for path in ["/api/status", "/dashboard/snapshot"] {
        let r = http
            .get(srv.url(path))
            .bearer_auth("sbt_wrong")
            .send()
            .await
            .unwrap();
        seen += &r.text().await.unwrap();
    }
    let r = http
        .post(srv.url("/api/reason"))
        .bearer_auth(&agent_token)
        .json(&json!({"prompt": "again?", "mode": "simple"}))
        .send()
        .await
        .unwrap();
    seen += &r.text().await.unwrap();
    // what anyone can read
    for path in ["/metrics", "/", "/dashboard/snapshot", "/ready", "/health"] {
        let r = http
            .get(srv.url(path))
            .bearer_auth(&op_token)
            .send()
            .await
            .unwrap();
        seen += &r.text().await.unwrap();
    }
    seen += &srv.cli(&["config", "check"]);
    drop((op, worker, bad));
    let mut srv = srv;
    srv.terminate().await;
    let log = srv.output();
    assert!(log.contains("DEBUG"), "the log was captured at debug level");
    assert!(log.contains("front doors"), "{log}");

    let secrets = [
        ("agent token", agent_token.as_str()),
        ("operator token", op_token.as_str()),
        ("reasoning API key", REASONING_KEY),
        ("embeddings API key", EMBEDDINGS_KEY),
        ("Discord bot token", BOT_TOKEN),
        ("Twitch OAuth token", TWITCH_TOKEN),
    ];
    for (what, secret) in secrets {
        assert!(
            !log.contains(secret),
            "the {what} is in the server log:\n{}",
            lines_with(&log, secret)
        );
        assert!(
            !seen.contains(secret),
            "the {what} is in a reply:\n{}",
            lines_with(&seen, secret)
        );
    }
}

fn lines_with(text: &str, needle: &str) -> String {
    text.lines()
        .filter(|l| l.contains(needle))
        .take(5)
        .collect::<Vec<_>>()
        .join("\n")
}
