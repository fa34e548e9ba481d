//! The Discord front door end to end, against the fake Discord on loopback:
//! slash commands over the gateway, signed HTTP interactions, buttons,
//! autocomplete, deferred reasoning, registration and announcements.

use crate::common::fake_discord::*;
use crate::common::fake_openai::{FakeOpenAi, Reply};
use crate::common::*;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};
use std::time::Duration;
use swarmbridge::catalog::{Catalog, OptionKind, Surface};
use swarmbridge::config::{Config, Rate};
use swarmbridge::core::model::Role;

const OPERATOR_ID: u64 = 600_000_000_000_000_001;
const VIEWER_ID: u64 = 600_000_000_000_000_002;
const AGENT_ROLE_ID: u64 = 700_000_000_000_000_001;

fn operator() -> Value {
    member_json(OPERATOR_ID, "olive", &[])
}

fn viewer() -> Value {
    member_json(VIEWER_ID, "victor", &[])
}

fn discord_member_with_agent_role() -> Value {
    member_json(600_000_000_000_000_003, "ada", &[AGENT_ROLE_ID])
}

fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

fn public_key_hex() -> String {
    hex::encode(signing_key().verifying_key().to_bytes())
}

fn discord_base(cfg: &mut Config, fake: &FakeDiscord) {
    cfg.discord.application_id = Some(APP_ID);
    cfg.discord.api_base = Some(fake.base_url());
    cfg.discord
        .users
        .insert(OPERATOR_ID.to_string(), Role::Operator);
    cfg.discord
        .roles
        .insert(AGENT_ROLE_ID.to_string(), Role::Agent);
}

/// A server connected to the fake gateway, announcing in the fake channel.
async fn gateway_server(fake: &FakeDiscord, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let srv = TestServer::spawn_with(|cfg| {
        discord_base(cfg, fake);
        cfg.discord.token = Some(BOT_TOKEN.into());
        cfg.discord.announce_channel = Some(ANNOUNCE_CHANNEL_ID);
        cfg.discord.announce_coalesce_ms = 200;
        tweak(cfg);
    })
    .await;
    fake.wait_ready().await;
    srv
}

/// A server with only the signed HTTP interactions endpoint.
async fn http_server(fake: &FakeDiscord, tweak: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::spawn_with(|cfg| {
        discord_base(cfg, fake);
        cfg.discord.public_key = Some(public_key_hex());
        tweak(cfg);
    })
    .await
}

/// POSTs an interaction signed now; returns status and JSON body (Null if none).
async fn post_signed(srv: &TestServer, body: &Value) -> (u16, Value) {
    post_signed_at(srv, body, unix_now()).await
}

/// The current Unix time in seconds (Discord's `X-Signature-Timestamp`).
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// POSTs an interaction signed with timestamp `ts`.
async fn post_signed_at(srv: &TestServer, body: &Value, ts: i64) -> (u16, Value) {
    let body = body.to_string();
    let sig = signing_key().sign(format!("{ts}{body}").as_bytes());
    post_raw(
        srv,
        body,
        Some(hex::encode(sig.to_bytes())),
        Some(ts.to_string()),
    )
    .await
}

async fn post_raw(
    srv: &TestServer,
    body: String,
    sig: Option<String>,
    ts: Option<String>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/discord/interactions", srv.http_url()))
        .header("content-type", "application/json")
        .body(body);
    if let Some(sig) = sig {
        req = req.header("X-Signature-Ed25519", sig);
    }
    if let Some(ts) = ts {
        req = req.header("X-Signature-Timestamp", ts);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn embed_text(data: &Value) -> String {
    data["embeds"].to_string()
}

#[tokio::test]
async fn slash_task_create_reaches_an_agent_and_its_completion_is_announced() {
    let fake = FakeDiscord::spawn().await;
    let srv = gateway_server(&fake, |_| {}).await;
    let mut agent = srv.agent("worker", &[]).await;

    fake.interaction(command_interaction(
        1,
        "tok-1",
        "task",
        sub(
            "create",
            json!([{ "name": "title", "type": 3, "value": "ship the release" },
                   { "name": "priority", "type": 4, "value": 5 }]),
        ),
        operator(),
    ));
    let created = agent.event("task.created").await;
    assert_eq!(created["data"]["task"]["title"], "ship the release");
    assert_eq!(created["data"]["task"]["created_by"], "discord:olive");
    let id = created["data"]["task"]["id"].as_i64().unwrap();

    let cb = fake
        .wait_for(|r| r.path == "/interactions/1/tok-1/callback")
        .await;
    assert_eq!(cb.body["type"], 4, "{}", cb.body);
    assert!(embed_text(&cb.body["data"]).contains(&format!("#{id} ship the release")));
    assert!(cb.body["data"]["components"]
        .to_string()
        .contains(&format!("task:claim:{id}")));

    agent
        .ok(json!({"type": "task.claim", "task_id": id}), "task")
        .await;
    agent
        .ok(json!({"type": "task.complete", "task_id": id}), "task")
        .await;
    let announced = fake
        .wait_for(|r| {
            r.method == "POST"
                && r.path == format!("/channels/{ANNOUNCE_CHANNEL_ID}/messages")
                && r.body.to_string().contains("done by worker")
        })
        .await;
    assert!(announced.body.to_string().contains(&format!("#{id}")));
}

#[tokio::test]
async fn a_burst_of_events_is_announced_in_few_messages() {
    let fake = FakeDiscord::spawn().await;
    let srv = gateway_server(&fake, |cfg| cfg.discord.announce_coalesce_ms = 1000).await;
    let mut op = srv.operator("boss").await;
    for i in 0..10 {
        op.create_task(json!({ "title": format!("burst {i}") }))
            .await;
    }
    let posts = fake
        .wait_for_n(1, |r| {
            r.path.starts_with("/channels/") && r.body.to_string().contains("burst 9")
        })
        .await;
    let all = fake.matching(|r| r.path.starts_with("/channels/"));
    assert!(all.len() <= 3, "10 events became {} messages", all.len());
    assert!(posts[0].body.to_string().contains("burst 9"));
}

#[tokio::test]
async fn a_viewer_is_refused_task_assign_ephemerally_with_the_role_needed() {
    let fake = FakeDiscord::spawn().await;
    let srv = gateway_server(&fake, |_| {}).await;
    let _agent = srv.agent("worker", &[]).await;
    fake.interaction(command_interaction(
        2,
        "tok-2",
        "task",
        sub(
            "assign",
            json!([{ "name": "task_id", "type": 4, "value": 1 },
                   { "name": "agent", "type": 3, "value": "worker" }]),
        ),
        viewer(),
    ));
    let cb = fake
        .wait_for(|r| r.path == "/interactions/2/tok-2/callback")
        .await;
    assert_eq!(cb.body["type"], 4);
    assert_eq!(cb.body["data"]["flags"], 64, "{}", cb.body);
    assert!(
        embed_text(&cb.body["data"]).contains("needs role operator"),
        "{}",
        cb.body
    );
}

#[tokio::test]
async fn a_rate_limited_user_gets_exactly_one_ephemeral_notice_for_a_burst() {
    let fake = FakeDiscord::spawn().await;
    let _srv = gateway_server(&fake, |cfg| {
        cfg.limits.rates.insert(
            "requests".into(),
            Rate {
                per_s: 0.01,
                burst: 2,
            },
        );
    })
    .await;
    for i in 10..16 {
        fake.interaction(command_interaction(
            i,
            &format!("tok-{i}"),
            "status",
            json!([]),
            viewer(),
        ));
    }
    let cbs = fake.wait_for_n(3, |r| r.path.ends_with("/callback")).await;
    // Nothing else may follow: the other three are not answered at all.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cbs_after = fake.callbacks();
    assert_eq!(cbs_after.len(), 3, "{cbs_after:#?}");
    let notices: Vec<_> = cbs
        .iter()
        .filter(|c| embed_text(&c.body["data"]).contains("try again in"))
        .collect();
    assert_eq!(notices.len(), 1, "{cbs:#?}");
    assert_eq!(notices[0].body["data"]["flags"], 64);
}

#[tokio::test]
async fn registration_body_is_what_the_catalog_declares() {
    let fake = FakeDiscord::spawn().await;
    let _srv = gateway_server(&fake, |cfg| {
        cfg.discord.register_on_start = true;
        cfg.discord.guild_id = Some(GUILD_ID);
    })
    .await;
    let put = fake
        .wait_for(|r| {
            r.method == "PUT"
                && r.path == format!("/applications/{APP_ID}/guilds/{GUILD_ID}/commands")
        })
        .await;
    let body = put.body.as_array().expect("an array of commands").clone();
    let catalog = Catalog::embedded().unwrap();
    let discord: Vec<_> = catalog
        .commands()
        .iter()
        .filter(|c| c.on(Surface::Discord))
        .collect();
    let mut tops: Vec<String> = discord
        .iter()
        .map(|c| c.name.split(' ').next().unwrap().to_string())
        .collect();
    tops.dedup();
    let names: Vec<String> = body
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, tops);
    for cmd in &body {
        assert_eq!(cmd["dm_permission"], false);
        assert!(cmd.get("default_member_permissions").is_none());
        assert_eq!(cmd["type"], 1);
    }
    for spec in discord {
        let (top, sub) = match spec.name.split_once(' ') {
            Some((t, s)) => (t, Some(s)),
            None => (spec.name.as_str(), None),
        };
        let top_cmd = body.iter().find(|c| c["name"] == top).unwrap();
        let declared = match sub {
            Some(sub) => {
                let s = top_cmd["options"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|o| o["name"] == sub)
                    .unwrap_or_else(|| panic!("{} missing", spec.name));
                assert_eq!(s["type"], 1, "{} is a SUB_COMMAND", spec.name);
                s
            }
            None => top_cmd,
        };
        assert_eq!(declared["description"], spec.description);
        let opts = declared["options"].as_array().unwrap();
        assert_eq!(opts.len(), spec.options.len(), "{}", spec.name);
        for (o, want) in opts.iter().zip(&spec.options) {
            let ctx = format!("{} {}", spec.name, want.name);
            assert_eq!(o["name"], want.name, "{ctx}");
            assert_eq!(o["description"], want.description, "{ctx}");
            assert_eq!(o["required"], want.required, "{ctx}");
            let (ty, auto) = match want.kind {
                OptionKind::String => (3, false),
                OptionKind::Integer => (4, false),
                OptionKind::Boolean => (5, false),
                OptionKind::Task => (4, true),
                OptionKind::Agent => (3, true),
            };
            assert_eq!(o["type"], ty, "{ctx}");
            assert_eq!(o["autocomplete"].as_bool().unwrap_or(false), auto, "{ctx}");
            let choices: Vec<Value> = want
                .choices
                .iter()
                .map(|c| json!({"name": c, "value": c}))
                .collect();
            assert_eq!(
                o.get("choices").cloned().unwrap_or(json!([])),
                json!(choices),
                "{ctx}"
            );
            assert_eq!(
                o.get("min_value").and_then(Value::as_i64),
                want.min,
                "{ctx}"
            );
            assert_eq!(
                o.get("max_value").and_then(Value::as_i64),
                want.max,
                "{ctx}"
            );
            assert_eq!(
                o.get("max_length").and_then(Value::as_u64),
                want.max_length.map(u64::from),
                "{ctx}"
            );
        }
    }
}

#[tokio::test]
async fn a_replayed_old_or_future_dated_interaction_gets_401_with_a_json_reason() {
    let fake = FakeDiscord::spawn().await;
    let srv = http_server(&fake, |_| {}).await;
    let body = command_interaction(4, "tok-4", "status", json!([]), viewer());
    // the same request, correctly signed, a minute late and a minute early
    for ts in [unix_now() - 60, unix_now() + 60] {
        let (status, v) = post_signed_at(&srv, &body, ts).await;
        assert_eq!(status, 401, "{v}");
        assert_eq!(v["error"]["code"], "unauthorized");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("interactions_max_age_s")),
            "{v}"
        );
    }
    assert!(fake.callbacks().is_empty());
    // signed now, it is served
    let (status, v) = post_signed(&srv, &body).await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test]
async fn forged_missing_and_altered_signatures_get_401() {
    let fake = FakeDiscord::spawn().await;
    let srv = http_server(&fake, |_| {}).await;
    let body = command_interaction(3, "tok-3", "status", json!([]), viewer()).to_string();
    let ts = unix_now().to_string();
    // missing
    let (status, v) = post_raw(&srv, body.clone(), None, None).await;
    assert_eq!(status, 401);
    assert_eq!(v["error"]["code"], "unauthorized");
    // forged by another key
    let other = SigningKey::from_bytes(&[9u8; 32]);
    let forged = hex::encode(other.sign(format!("{ts}{body}").as_bytes()).to_bytes());
    let (status, _) = post_raw(&srv, body.clone(), Some(forged), Some(ts.clone())).await;
    assert_eq!(status, 401);
    // signed, then the body altered
    let good = hex::encode(
        signing_key()
            .sign(format!("{ts}{body}").as_bytes())
            .to_bytes(),
    );
    let altered = body.replace("status", "agents");
    let (status, _) = post_raw(&srv, altered, Some(good.clone()), Some(ts.clone())).await;
    assert_eq!(status, 401);
    // signed, then the timestamp altered
    let (status, _) = post_raw(
        &srv,
        body.clone(),
        Some(good.clone()),
        Some((unix_now() + 1).to_string()),
    )
    .await;
    assert_eq!(status, 401);
    // garbage signature
    let (status, _) = post_raw(&srv, body.clone(), Some("zz".into()), Some(ts.clone())).await;
    assert_eq!(status, 401);
    assert!(fake.callbacks().is_empty());
    // the untouched request passes
    let (status, v) = post_raw(&srv, body, Some(good), Some(ts)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["type"], 4);
}

#[tokio::test]
async fn ping_gets_pong() {
    let fake = FakeDiscord::spawn().await;
    let srv = http_server(&fake, |_| {}).await;
    let (status, v) = post_signed(&srv, &ping_interaction()).await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({"type": 1}));
}

#[tokio::test]
async fn the_endpoint_is_off_without_a_public_key() {
    let srv = TestServer::spawn().await;
    let (status, v) = post_raw(&srv, ping_interaction().to_string(), None, None).await;
    assert_eq!(status, 404);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SWARMBRIDGE_DISCORD_PUBLIC_KEY"),
        "{v}"
    );
}

#[tokio::test]
async fn a_claim_button_press_claims_the_task() {
    let fake = FakeDiscord::spawn().await;
    let srv = http_server(&fake, |_| {}).await;
    let mut op = srv.operator("boss").await;
    let task = op.create_task(json!({"title": "press me"})).await;
    let id = task["id"].as_i64().unwrap();
    let press = button_interaction(
        4,
        "tok-4",
        &format!("task:claim:{id}"),
        discord_member_with_agent_role(),
    );
    let (status, v) = post_signed(&srv, &press).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["type"], 7, "the task message is updated: {v}");
    assert!(embed_text(&v["data"]).contains("claimed"), "{v}");
    assert!(v["data"]["components"]
        .to_string()
        .contains(&format!("task:done:{id}")));
    let claimed = op.event("task.claimed").await;
    assert_eq!(claimed["data"]["task"]["assignee"], "discord:ada");
    // a viewer pressing Done is refused, ephemerally
    let press = button_interaction(5, "tok-5", &format!("task:done:{id}"), viewer());
    let (_, v) = post_signed(&srv, &press).await;
    assert_eq!(v["type"], 4);
    assert_eq!(v["data"]["flags"], 64);
}

#[tokio::test]
async fn autocomplete_suggests_open_and_claimed_task_ids_matching_the_prefix() {
    let fake = FakeDiscord::spawn().await;
    let srv = http_server(&fake, |_| {}).await;
    let mut op = srv.operator("boss").await;
    let mut ids = vec![];
    for i in 0..12 {
        ids.push(
            op.create_task(json!({"title": format!("t{i}")})).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    // a finished task is not suggested
    let mut w = srv.agent("w", &[]).await;
    w.ok(json!({"type":"task.claim","task_id": 10}), "task")
        .await;
    w.ok(json!({"type":"task.complete","task_id": 10}), "task")
        .await;
    let ac = as_autocomplete(command_interaction(
        6,
        "tok-6",
        "task",
        sub("show", json!([focused("task_id", 4, "1")])),
        viewer(),
    ));
    let (status, v) = post_signed(&srv, &ac).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["type"], 8, "{v}");
    let mut got: Vec<i64> = v["data"]["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["value"].as_i64().unwrap())
        .collect();
    got.sort();
    assert_eq!(got, vec![1, 11, 12]);
    // agent names too
    let ac = as_autocomplete(command_interaction(
        7,
        "tok-7",
        "task",
        sub(
            "assign",
            json!([{ "name": "task_id", "type": 4, "value": 1 }, focused("agent", 3, "W")]),
        ),
        viewer(),
    ));
    let (_, v) = post_signed(&srv, &ac).await;
    assert_eq!(v["data"]["choices"], json!([{"name": "w", "value": "w"}]));
}

#[tokio::test]
async fn reason_is_deferred_then_edited_with_the_answer() {
    let openai = FakeOpenAi::spawn(Reply::stream(&["forty", "-two"], None)).await;
    let fake = FakeDiscord::spawn().await;
    let base = openai.base_url();
    let srv = http_server(&fake, move |cfg| {
        cfg.reasoning.base_url = Some(base);
        cfg.reasoning.model = "fake-model".into();
    })
    .await;
    let ask = command_interaction(
        8,
        "tok-8",
        "reason",
        json!([{ "name": "prompt", "type": 3, "value": "the answer?" },
               { "name": "mode", "type": 3, "value": "analytical" }]),
        viewer(),
    );
    let (status, v) = post_signed(&srv, &ask).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["type"], 5, "deferred: {v}");
    let edit = fake
        .wait_for(|r| {
            r.method == "PATCH"
                && r.path == format!("/webhooks/{APP_ID}/tok-8/messages/@original")
                && r.body.to_string().contains("forty-two")
                && r.body.to_string().contains("analytical")
        })
        .await;
    assert!(edit.body["embeds"][0]["description"]
        .as_str()
        .unwrap()
        .contains("forty-two"));
    // edits are at least a second apart (the final one included)
    let patches = fake.matching(|r| r.method == "PATCH");
    assert!(patches.len() <= 3, "{patches:#?}");
}

#[tokio::test]
async fn discord_register_cli_overwrites_guild_commands_using_the_documented_env_names() {
    let fake = FakeDiscord::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_swarmbridge"))
        .args(["discord", "register", "--guild", &GUILD_ID.to_string()])
        .current_dir(dir.path())
        .env("SWARMBRIDGE_DISCORD_TOKEN", BOT_TOKEN)
        .env("SWARMBRIDGE_DISCORD_APPLICATION_ID", APP_ID.to_string())
        .env("SWARMBRIDGE_DISCORD_API_BASE", fake.base_url())
        .output()
        .await
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected =
        swarmbridge::gateway::discord::register::registration_body(&Catalog::embedded().unwrap());
    assert!(
        stdout.contains(&format!(
            "registered {} slash command(s) in guild",
            expected.len()
        )),
        "{stdout}"
    );
    let put = fake.wait_for(|r| r.method == "PUT").await;
    assert_eq!(
        put.path,
        format!("/applications/{APP_ID}/guilds/{GUILD_ID}/commands")
    );
    assert_eq!(put.body, Value::Array(expected));
}

#[tokio::test]
async fn shutdown_stops_the_gateway_client_promptly() {
    let fake = FakeDiscord::spawn().await;
    let mut srv = gateway_server(&fake, |_| {}).await;
    tokio::time::timeout(Duration::from_secs(5), srv.stop())
        .await
        .expect("shutdown within 5 s with Discord on");
}

#[tokio::test]
async fn a_release_button_pressed_over_the_gateway_updates_the_task_message() {
    let fake = FakeDiscord::spawn().await;
    let srv = gateway_server(&fake, |_| {}).await;
    let mut op = srv.operator("boss").await;
    let id = op.create_task(json!({"title": "hold it"})).await["id"]
        .as_i64()
        .unwrap();
    fake.interaction(button_interaction(
        20,
        "tok-20",
        &format!("task:claim:{id}"),
        discord_member_with_agent_role(),
    ));
    let claimed = fake
        .wait_for(|r| r.path == "/interactions/20/tok-20/callback")
        .await;
    assert_eq!(claimed.body["type"], 7, "{}", claimed.body);
    fake.interaction(button_interaction(
        21,
        "tok-21",
        &format!("task:release:{id}"),
        discord_member_with_agent_role(),
    ));
    let released = fake
        .wait_for(|r| r.path == "/interactions/21/tok-21/callback")
        .await;
    assert_eq!(released.body["type"], 7, "{}", released.body);
    assert!(embed_text(&released.body["data"]).contains("open"));
    assert!(released.body["data"]["components"]
        .to_string()
        .contains(&format!("task:claim:{id}")));
}

#[tokio::test]
async fn bottleneck_alerts_are_announced_and_slash_insights_shows_the_slowest_queue() {
    let fake = FakeDiscord::spawn().await;
    let srv = gateway_server(&fake, |cfg| {
        cfg.alerts.interval_ms = 100;
        cfg.alerts.unserved_after_s = 1;
    })
    .await;
    let mut op = srv.operator("boss").await;
    op.create_task(json!({"title": "port the ledger", "requires": ["cobol"]}))
        .await;
    let announced = fake
        .wait_for(|r| {
            r.method == "POST"
                && r.path == format!("/channels/{ANNOUNCE_CHANNEL_ID}/messages")
                && r.body.to_string().contains("unserved")
        })
        .await;
    assert!(
        announced
            .body
            .to_string()
            .contains("no capable agent online"),
        "{}",
        announced.body
    );

    fake.interaction(command_interaction(
        41,
        "tok-41",
        "insights",
        json!([]),
        viewer(),
    ));
    let cb = fake
        .wait_for(|r| r.path == "/interactions/41/tok-41/callback")
        .await;
    assert_eq!(cb.body["type"], 4, "{}", cb.body);
    let shown = cb.body["data"].to_string();
    assert!(
        shown.contains("Slowest queues") && shown.contains("cobol"),
        "{shown}"
    );
}

#[tokio::test]
async fn slash_recommend_is_deferred_then_edited_with_the_strategic_advice() {
    let openai = FakeOpenAi::spawn(Reply::text("Hire a cobol agent.")).await;
    let fake = FakeDiscord::spawn().await;
    let base = openai.base_url();
    let srv = http_server(&fake, move |cfg| {
        cfg.reasoning.base_url = Some(base);
    })
    .await;
    let ask = command_interaction(
        9,
        "tok-9",
        "recommend",
        json!([{ "name": "question", "type": 3, "value": "who should we add?" }]),
        operator(),
    );
    let (status, v) = post_signed(&srv, &ask).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["type"], 5, "deferred: {v}");
    let edit = fake
        .wait_for(|r| {
            r.method == "PATCH"
                && r.path == format!("/webhooks/{APP_ID}/tok-9/messages/@original")
                && r.body.to_string().contains("Hire a cobol agent.")
        })
        .await;
    assert!(edit.body.to_string().contains("strategic"), "{}", edit.body);
    // a viewer may not ask
    let refused = command_interaction(10, "tok-10", "recommend", json!([]), viewer());
    let (_, v) = post_signed(&srv, &refused).await;
    assert!(v.to_string().contains("operator"), "{v}");
}

/// Adds a task with the `swarmbridge task add` CLI on `srv`'s database.
fn task_add_from_cli(srv: &TestServer, title: &str) {
    let out = std::process::Command::new(crate::common::child::BIN)
        .args(["task", "add", title])
        .env_remove("SWARMBRIDGE_CONFIG")
        .env("SWARMBRIDGE_DATABASE_URL", &srv.cfg.database.url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the CLI runs");
    assert!(
        out.status.success(),
        "task add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn announcements_committed_while_the_server_was_down_are_posted_once_at_start() {
    let fake = FakeDiscord::spawn().await;
    let mut srv = gateway_server(&fake, |_| {}).await;
    let mut op = srv.operator("boss").await;
    op.create_task(json!({"title": "before the stop"})).await;
    fake.wait_posted(ANNOUNCE_CHANNEL_ID, "before the stop")
        .await;
    wait_announce_mark(srv.core(), "discord").await;
    drop(op);
    srv.stop().await;

    task_add_from_cli(&srv, "added while down");
    srv.restart().await;
    fake.wait_posted(ANNOUNCE_CHANNEL_ID, "added while down")
        .await;
    let mut op = srv.operator("boss2").await;
    op.create_task(json!({"title": "after the restart"})).await;
    fake.wait_posted(ANNOUNCE_CHANNEL_ID, "after the restart")
        .await;
    for title in ["before the stop", "added while down", "after the restart"] {
        assert_eq!(
            fake.posted_count(ANNOUNCE_CHANNEL_ID, title),
            1,
            "{title} must be announced exactly once"
        );
    }
}

#[tokio::test]
async fn announcements_older_than_the_backlog_bound_are_counted_not_posted_at_start() {
    let fake = FakeDiscord::spawn().await;
    let mut srv = gateway_server(&fake, |cfg| cfg.events.announce_backlog_s = 0).await;
    let mut op = srv.operator("boss").await;
    op.create_task(json!({"title": "before the stop"})).await;
    fake.wait_posted(ANNOUNCE_CHANNEL_ID, "before the stop")
        .await;
    wait_announce_mark(srv.core(), "discord").await;
    drop(op);
    srv.stop().await;

    task_add_from_cli(&srv, "added while down");
    srv.restart().await;
    let mut op = srv.operator("boss2").await;
    op.create_task(json!({"title": "after the restart"})).await;
    fake.wait_posted(ANNOUNCE_CHANNEL_ID, "after the restart")
        .await;
    assert_eq!(
        fake.posted_count(ANNOUNCE_CHANNEL_ID, "added while down"),
        0
    );
    assert_eq!(
        fake.posted_count(ANNOUNCE_CHANNEL_ID, "1 more events were not announced"),
        1,
        "the skipped backlog is counted"
    );
}

#[tokio::test]
async fn slash_search_takes_a_mode_and_semantic_finds_a_paraphrase() {
    use crate::common::fake_embeddings::FakeEmbeddings;
    let embeddings = FakeEmbeddings::spawn(8).await;
    let mut near = vec![0.0; 8];
    near[2] = 1.0;
    embeddings
        .serve("Session expiry bug in auth\nusers logged out", near.clone())
        .serve("who fixed the login timeout", near);
    let fake = FakeDiscord::spawn().await;
    let embed_cfg = embeddings.config();
    let srv = gateway_server(&fake, move |c| c.embeddings = embed_cfg).await;
    let mut agent = srv.agent("worker", &[]).await;
    agent
        .create_task(json!({"title":"Session expiry bug in auth","body":"users logged out"}))
        .await;
    tokio::time::timeout(
        WAIT,
        srv.core()
            .indexer
            .wait_until(|s| s.backlog == 0 && s.embedded_total >= 1),
    )
    .await
    .expect("indexed");
    fake.interaction(command_interaction(
        3,
        "tok-3",
        "search",
        json!([{ "name": "query", "type": 3, "value": "who fixed the login timeout" },
               { "name": "mode", "type": 3, "value": "semantic" }]),
        viewer(),
    ));
    let cb = fake
        .wait_for(|r| r.path == "/interactions/3/tok-3/callback")
        .await;
    let text = embed_text(&cb.body["data"]);
    assert!(text.contains("1 found, semantic"), "{}", cb.body);
    assert!(text.contains("Session expiry bug in auth"), "{}", cb.body);
    fake.interaction(command_interaction(
        4,
        "tok-4",
        "search",
        json!([{ "name": "query", "type": 3, "value": "x" },
               { "name": "mode", "type": 3, "value": "vector" }]),
        viewer(),
    ));
    let cb = fake
        .wait_for(|r| r.path == "/interactions/4/tok-4/callback")
        .await;
    assert!(embed_text(&cb.body["data"]).contains("mode"), "{}", cb.body);
}

// ---- faults: Discord answering 429 / 5xx, the gateway dropping -------------

/// The announcement posts so far, in order.
fn announcement_posts(fake: &FakeDiscord) -> Vec<Recorded> {
    fake.matching(|r| {
        r.method == "POST" && r.path == format!("/channels/{ANNOUNCE_CHANNEL_ID}/messages")
    })
}

#[tokio::test]
async fn an_announcement_answered_429_is_posted_after_discords_retry_after() {
    let fake = FakeDiscord::spawn().await;
    let path = format!("/channels/{ANNOUNCE_CHANNEL_ID}/messages");
    fake.fail_next(
        "POST",
        &path,
        &[RestFault::RateLimited { retry_after_s: 0.3 }],
    );
    let srv = gateway_server(&fake, |_| {}).await;
    let mut op = srv.operator("boss").await;
    op.create_task(json!({ "title": "announce me despite the 429" }))
        .await;
    fake.wait_for(|r| {
        r.path == path && r.status == 200 && r.body.to_string().contains("despite the 429")
    })
    .await;
    let statuses: Vec<u16> = announcement_posts(&fake).iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 200], "one refusal, then the same message");
}

#[tokio::test]
async fn an_announcement_answered_5xx_is_tried_again_until_discord_takes_it() {
    let fake = FakeDiscord::spawn().await;
    let path = format!("/channels/{ANNOUNCE_CHANNEL_ID}/messages");
    fake.fail_next(
        "POST",
        &path,
        &[RestFault::Status(502), RestFault::Status(503)],
    );
    let srv = gateway_server(&fake, |_| {}).await;
    let mut op = srv.operator("boss").await;
    op.create_task(json!({ "title": "announce me despite the 5xx" }))
        .await;
    fake.wait_for(|r| {
        r.path == path && r.status == 200 && r.body.to_string().contains("despite the 5xx")
    })
    .await;
    let posts = announcement_posts(&fake);
    let statuses: Vec<u16> = posts.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [502, 503, 200]);
    assert!(
        posts.iter().all(|r| r.body == posts[0].body),
        "the same message each time"
    );
}

#[tokio::test]
async fn a_dropped_gateway_connection_comes_back_and_commands_and_announcements_work_again() {
    let fake = FakeDiscord::spawn().await;
    let srv = gateway_server(&fake, |_| {}).await;
    let mut agent = srv.agent("worker", &[]).await;

    fake.drop_gateway();
    fake.wait_ready_n(2, Duration::from_secs(20)).await;
    fake.interaction(command_interaction(
        31,
        "tok-31",
        "task",
        sub(
            "create",
            json!([{ "name": "title", "type": 3, "value": "after the drop" }]),
        ),
        operator(),
    ));
    let created = agent.event("task.created").await;
    assert_eq!(created["data"]["task"]["title"], "after the drop");
    fake.wait_for(|r| r.path == "/interactions/31/tok-31/callback")
        .await;
    fake.wait_for(|r| {
        r.path == format!("/channels/{ANNOUNCE_CHANNEL_ID}/messages")
            && r.body.to_string().contains("after the drop")
    })
    .await;
    let (status, ready) = crate::common::http_api::get(&srv.http_url(), "/ready", None).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["discord"], "up", "{ready}");
}

#[tokio::test]
async fn a_number_option_beyond_64_bits_is_refused_instead_of_saturated() {
    let fake = FakeDiscord::spawn().await;
    let _srv = gateway_server(&fake, |_| {}).await;
    fake.interaction(command_interaction(
        41,
        "tok-41",
        "task",
        sub(
            "show",
            json!([{ "name": "task_id", "type": 10, "value": 1e30 }]),
        ),
        operator(),
    ));
    let cb = fake
        .wait_for(|r| r.path == "/interactions/41/tok-41/callback")
        .await;
    let text = embed_text(&cb.body["data"]);
    assert!(text.contains("out of range"), "{}", cb.body);
    assert!(!text.contains("9223372036854775807"), "{}", cb.body);
}
