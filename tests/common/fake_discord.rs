//! A fake Discord on 127.0.0.1:0: the REST API under `/api/v10` (what
//! serenity calls when its REST base is pointed here) and the gateway
//! WebSocket (HELLO, IDENTIFY → READY, heartbeat ACK, dispatches). Every
//! REST request is recorded; tests wait on them instead of sleeping.
//! Payloads are shaped as Discord documents them. Faults can be switched
//! on: REST calls answered 429 (with `retry_after`) or 5xx
//! ([`FakeDiscord::fail_next`]), gateway connections dropped without a
//! close frame ([`FakeDiscord::drop_gateway`]).

#![allow(dead_code)] // Each test binary uses a different part of the fake.

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{OriginalUri, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

/// The fake application's id.
pub const APP_ID: u64 = 111_111_111_111_111_111;
/// The fake guild's id.
pub const GUILD_ID: u64 = 222_222_222_222_222_222;
/// The fake channel interactions come from.
pub const CHANNEL_ID: u64 = 333_333_333_333_333_333;
/// The announcement channel.
pub const ANNOUNCE_CHANNEL_ID: u64 = 444_444_444_444_444_444;
/// The bot user's id.
pub const BOT_USER_ID: u64 = 555_555_555_555_555_555;
/// A token the fake accepts.
pub const BOT_TOKEN: &str = "fake-bot-token";

/// One REST request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path without `/api/v10`, e.g. `/channels/1/messages`.
    pub path: String,
    /// The JSON body (Null when empty or not JSON).
    pub body: Value,
    /// The status the fake answered with (a fault's, or 200-ish).
    pub status: u16,
}

/// A failure the fake answers a REST call with instead of the real answer.
#[derive(Debug, Clone, Copy)]
pub enum RestFault {
    /// 429 with `retry_after` seconds in the `Retry-After` header and the
    /// JSON body, as Discord's per-route limits answer.
    RateLimited {
        /// Seconds to wait (fractions allowed, as Discord sends them).
        retry_after_s: f64,
    },
    /// This status (e.g. 502) with Discord's JSON error body.
    Status(u16),
}

/// Faults queued for REST calls of one method whose path starts with a prefix.
struct QueuedFaults {
    method: String,
    path_prefix: String,
    faults: std::collections::VecDeque<RestFault>,
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Recorded>>,
    changed: Notify,
    sessions: Mutex<Vec<mpsc::UnboundedSender<String>>>,
    ready_sent: Mutex<u32>,
    seq: Mutex<u64>,
    addr: Mutex<Option<SocketAddr>>,
    faults: Mutex<Vec<QueuedFaults>>,
    /// Bumped by `drop_gateway`; each session ends when it changes.
    drops: tokio::sync::watch::Sender<u64>,
}

/// The running fake.
pub struct FakeDiscord {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn snowflake(n: u64) -> Value {
    json!(n.to_string())
}

/// A Discord user object.
pub fn user_json(id: u64, username: &str) -> Value {
    json!({
        "id": snowflake(id), "username": username, "discriminator": "0",
        "global_name": username, "avatar": null, "bot": false, "system": false,
        "public_flags": 0
    })
}

/// A guild member object (as in interactions: with `permissions`).
pub fn member_json(user_id: u64, username: &str, roles: &[u64]) -> Value {
    json!({
        "user": user_json(user_id, username),
        "nick": null, "avatar": null,
        "roles": roles.iter().map(|r| snowflake(*r)).collect::<Vec<_>>(),
        "joined_at": "2024-01-01T00:00:00.000000+00:00",
        "premium_since": null, "deaf": false, "mute": false, "flags": 0,
        "pending": false, "permissions": "2248473465835073",
        "communication_disabled_until": null
    })
}

/// A message object as Discord returns it.
pub fn message_json(
    id: u64,
    channel_id: u64,
    content: &str,
    embeds: Value,
    components: Value,
) -> Value {
    json!({
        "id": snowflake(id), "channel_id": snowflake(channel_id),
        "author": { "id": snowflake(BOT_USER_ID), "username": "swarmbridge", "discriminator": "0",
                    "global_name": null, "avatar": null, "bot": true },
        "content": content, "timestamp": "2024-01-01T00:00:00.000000+00:00",
        "edited_timestamp": null, "tts": false, "mention_everyone": false,
        "mentions": [], "mention_roles": [], "attachments": [],
        "embeds": if embeds.is_array() { embeds } else { json!([]) },
        "components": if components.is_array() { components } else { json!([]) },
        "pinned": false, "type": 0, "flags": 0
    })
}

fn base_interaction(kind: u8, id: u64, token: &str, data: Value, member: Value) -> Value {
    json!({
        "id": snowflake(id), "application_id": snowflake(APP_ID), "type": kind,
        "data": data, "guild_id": snowflake(GUILD_ID),
        "channel": { "id": snowflake(CHANNEL_ID), "type": 0, "name": "ops",
                     "permissions": "2248473465835073" },
        "channel_id": snowflake(CHANNEL_ID), "member": member, "token": token,
        "version": 1, "app_permissions": "2248473465835073", "locale": "en-US",
        "guild_locale": "en-US", "entitlements": [],
        "authorizing_integration_owners": { "0": snowflake(GUILD_ID) },
        "context": 0, "attachment_size_limit": 10485760
    })
}

/// An APPLICATION_COMMAND interaction: `name` is the top-level command and
/// `options` its options (a subcommand is one option of type 1).
pub fn command_interaction(
    id: u64,
    token: &str,
    name: &str,
    options: Value,
    member: Value,
) -> Value {
    let data = json!({ "id": snowflake(900 + id), "name": name, "type": 1, "options": options });
    base_interaction(2, id, token, data, member)
}

/// The same command as an APPLICATION_COMMAND_AUTOCOMPLETE interaction
/// (type 4 instead of 2): Discord sends the options typed so far, one of
/// them made by [`focused`].
pub fn as_autocomplete(mut command_interaction: Value) -> Value {
    command_interaction["type"] = json!(4);
    command_interaction
}

/// A subcommand option: `{"name": sub, "type": 1, "options": [...]}`.
pub fn sub(name: &str, options: Value) -> Value {
    json!([{ "name": name, "type": 1, "options": options }])
}

/// The option being typed in an autocomplete interaction (its value is
/// what was typed so far, always a string).
pub fn focused(name: &str, option_type: u8, typed: &str) -> Value {
    json!({ "name": name, "type": option_type, "value": typed, "focused": true })
}

/// A MESSAGE_COMPONENT interaction: a button with `custom_id` pressed on a bot message.
pub fn button_interaction(id: u64, token: &str, custom_id: &str, member: Value) -> Value {
    let data = json!({ "custom_id": custom_id, "component_type": 2 });
    let mut v = base_interaction(3, id, token, data, member);
    v["message"] = message_json(id + 7000, CHANNEL_ID, "", json!([]), json!([]));
    v
}

/// A PING interaction.
pub fn ping_interaction() -> Value {
    json!({ "id": "1", "application_id": snowflake(APP_ID), "type": 1,
            "token": "ping-token", "version": 1 })
}

impl FakeDiscord {
    /// Starts the fake on a random loopback port.
    pub async fn spawn() -> FakeDiscord {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/gateway", get(gateway))
            .fallback(rest)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        *shared.addr.lock().unwrap() = Some(addr);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeDiscord { addr, shared, task }
    }

    /// Answers the next REST calls of `method` whose path (without
    /// `/api/v10`) starts with `path_prefix` with `faults`, one each, in
    /// order; later calls are answered normally again.
    pub fn fail_next(&self, method: &str, path_prefix: &str, faults: &[RestFault]) {
        self.shared.faults.lock().unwrap().push(QueuedFaults {
            method: method.to_string(),
            path_prefix: path_prefix.to_string(),
            faults: faults.iter().copied().collect(),
        });
    }

    /// Drops every open gateway connection at once, without a close
    /// frame, as a network failure does.
    pub fn drop_gateway(&self) {
        self.shared.sessions.lock().unwrap().clear();
        self.shared.drops.send_modify(|n| *n += 1);
    }

    /// The REST base to give swarmbridge (`SWARMBRIDGE_DISCORD_API_BASE`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every REST request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The requests so far that `pred` accepts.
    pub fn matching(&self, pred: impl Fn(&Recorded) -> bool) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| pred(r)).collect()
    }

    /// Waits until `n` requests satisfy `pred`; returns them (panics after 10 s).
    pub async fn wait_for_n(&self, n: usize, pred: impl Fn(&Recorded) -> bool) -> Vec<Recorded> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.shared.changed.notified();
            let found = self.matching(&pred);
            if found.len() >= n {
                return found;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "timed out waiting for {n} matching Discord requests; got: {:#?}",
                    self.requests()
                );
            }
        }
    }

    /// How often `text` occurs in the messages posted to `channel`.
    pub fn posted_count(&self, channel: u64, text: &str) -> usize {
        let path = format!("/channels/{channel}/messages");
        self.matching(|r| r.method == "POST" && r.path == path)
            .iter()
            .map(|r| r.body.to_string().matches(text).count())
            .sum()
    }

    /// Waits until a message posted to `channel` contains `text`.
    pub async fn wait_posted(&self, channel: u64, text: &str) {
        let path = format!("/channels/{channel}/messages");
        self.wait_for(|r| {
            r.method == "POST" && r.path == path && r.body.to_string().contains(text)
        })
        .await;
    }

    /// Waits for the first request `pred` accepts.
    pub async fn wait_for(&self, pred: impl Fn(&Recorded) -> bool) -> Recorded {
        self.wait_for_n(1, pred).await.remove(0)
    }

    /// The interaction callbacks (`POST /interactions/{id}/{token}/callback`) so far.
    pub fn callbacks(&self) -> Vec<Recorded> {
        self.matching(|r| r.method == "POST" && r.path.ends_with("/callback"))
    }

    /// Waits until a gateway session has been sent READY.
    pub async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let notified = self.shared.changed.notified();
            if *self.shared.ready_sent.lock().unwrap() > 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "the bot never identified on the fake gateway; REST so far: {:#?}",
                    self.requests()
                );
            }
        }
    }

    /// Gateway sessions sent READY so far (each IDENTIFY or RESUME of any
    /// bot instance).
    pub fn ready_count(&self) -> u32 {
        *self.shared.ready_sent.lock().unwrap()
    }

    /// Waits until `n` gateway sessions have been sent READY (panics after `within`).
    pub async fn wait_ready_n(&self, n: u32, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.shared.changed.notified();
            if self.ready_count() >= n {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "only {} gateway session(s) identified within {within:?}, waiting for {n}",
                    self.ready_count()
                );
            }
        }
    }

    /// Sends a dispatch (op 0) with event name `t` to every gateway session.
    pub fn dispatch(&self, t: &str, d: Value) {
        let seq = {
            let mut s = self.shared.seq.lock().unwrap();
            *s += 1;
            *s
        };
        let frame = json!({ "op": 0, "t": t, "s": seq, "d": d }).to_string();
        let sessions = self.shared.sessions.lock().unwrap();
        assert!(!sessions.is_empty(), "no gateway session to dispatch to");
        for s in sessions.iter() {
            let _ = s.send(frame.clone());
        }
    }

    /// Sends an INTERACTION_CREATE dispatch.
    pub fn interaction(&self, payload: Value) {
        self.dispatch("INTERACTION_CREATE", payload);
    }
}

fn record(shared: &Shared, r: Recorded) {
    shared.requests.lock().unwrap().push(r);
    shared.changed.notify_waiters();
}

async fn rest(
    State(shared): State<Arc<Shared>>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Response {
    let full = uri.path().to_string();
    let path = full.strip_prefix("/api/v10").unwrap_or(&full).to_string();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let addr = shared.addr.lock().unwrap().expect("addr set");
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let fault = {
        let mut queued = shared.faults.lock().unwrap();
        queued
            .iter_mut()
            .find(|q| {
                q.method == method.as_str()
                    && path.starts_with(&q.path_prefix)
                    && !q.faults.is_empty()
            })
            .and_then(|q| q.faults.pop_front())
    };
    if let Some(fault) = fault {
        let resp = match fault {
            RestFault::RateLimited { retry_after_s } => (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", retry_after_s.to_string())],
                Json(json!({
                    "message": "You are being rate limited.",
                    "retry_after": retry_after_s,
                    "global": false
                })),
            )
                .into_response(),
            RestFault::Status(code) => (
                StatusCode::from_u16(code).expect("a valid status"),
                Json(
                    json!({ "message": format!("{code}: fault injected by the test"), "code": 0 }),
                ),
            )
                .into_response(),
        };
        let status = resp.status().as_u16();
        record(
            &shared,
            Recorded {
                method: method.to_string(),
                path,
                body,
                status,
            },
        );
        return resp;
    }
    let resp = match (method.as_str(), parts.as_slice()) {
        ("GET", ["gateway"]) => Json(json!({ "url": format!("ws://{addr}/gateway") })).into_response(),
        ("GET", ["gateway", "bot"]) => Json(json!({
            "url": format!("ws://{addr}/gateway"), "shards": 1,
            "session_start_limit": { "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1 }
        }))
        .into_response(),
        ("GET", ["users", "@me"]) => Json(bot_user()).into_response(),
        ("GET", ["oauth2", "applications", "@me"]) => Json(json!({
            "id": snowflake(APP_ID), "name": "swarmbridge", "icon": null, "description": "",
            "bot_public": false, "bot_require_code_grant": false, "verify_key": "0".repeat(64),
            "owner": user_json(1, "owner"), "team": null, "flags": 0
        }))
        .into_response(),
        ("PUT", ["applications", _, "commands"]) | ("PUT", ["applications", _, "guilds", _, "commands"]) => {
            let registered: Vec<Value> = body
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(i, mut c)| {
                    c["id"] = snowflake(10_000 + i as u64);
                    c["application_id"] = snowflake(APP_ID);
                    c["version"] = snowflake(1);
                    c["default_member_permissions"] = Value::Null;
                    c
                })
                .collect();
            Json(Value::Array(registered)).into_response()
        }
        ("POST", ["interactions", _, _, "callback"]) => StatusCode::NO_CONTENT.into_response(),
        ("PATCH", ["webhooks", _, _, "messages", "@original"]) | ("POST", ["webhooks", _, _]) => {
            Json(message_json(7, CHANNEL_ID, body["content"].as_str().unwrap_or(""), body["embeds"].clone(), json!([])))
                .into_response()
        }
        ("POST", ["channels", channel, "messages"]) => {
            let channel = channel.parse().unwrap_or(0);
            Json(message_json(8, channel, body["content"].as_str().unwrap_or(""), body["embeds"].clone(), json!([])))
                .into_response()
        }
        _ => (StatusCode::NOT_FOUND, Json(json!({ "message": "404: Not Found", "code": 0 }))).into_response(),
    };
    record(
        &shared,
        Recorded {
            method: method.to_string(),
            path,
            body,
            status: resp.status().as_u16(),
        },
    );
    resp
}

fn bot_user() -> Value {
    json!({
        "id": snowflake(BOT_USER_ID), "username": "swarmbridge", "discriminator": "0",
        "global_name": null, "avatar": null, "bot": true, "verified": true,
        "mfa_enabled": false, "flags": 0
    })
}

async fn gateway(State(shared): State<Arc<Shared>>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| session(shared, socket))
}

async fn session(shared: Arc<Shared>, socket: WebSocket) {
    let mut drops = shared.drops.subscribe();
    drops.mark_unchanged();
    let (mut out, mut inp) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let hello = json!({ "op": 10, "d": { "heartbeat_interval": 41250 }, "s": null, "t": null });
    if out
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            // dropping both halves closes the TCP connection without a close frame
            _ = drops.changed() => return,
            Some(frame) = rx.recv() => {
                if out.send(Message::Text(frame.into())).await.is_err() {
                    return;
                }
            }
            msg = inp.next() => {
                let Some(Ok(msg)) = msg else { return };
                let Message::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
                match v["op"].as_u64() {
                    Some(1) => {
                        let ack = json!({ "op": 11, "d": null, "s": null, "t": null });
                        if out.send(Message::Text(ack.to_string().into())).await.is_err() {
                            return;
                        }
                    }
                    Some(2) | Some(6) => {
                        let addr = shared.addr.lock().unwrap().expect("addr set");
                        let seq = {
                            let mut s = shared.seq.lock().unwrap();
                            *s += 1;
                            *s
                        };
                        let ready = json!({ "op": 0, "t": "READY", "s": seq, "d": {
                            "v": 10, "user": bot_user(),
                            "guilds": [{ "id": snowflake(GUILD_ID), "unavailable": true }],
                            "session_id": "fake-session",
                            "resume_gateway_url": format!("ws://{addr}/gateway"),
                            "shard": [0, 1],
                            "application": { "id": snowflake(APP_ID), "flags": 0 }
                        }});
                        if out.send(Message::Text(ready.to_string().into())).await.is_err() {
                            return;
                        }
                        shared.sessions.lock().unwrap().push(tx.clone());
                        *shared.ready_sent.lock().unwrap() += 1;
                        shared.changed.notify_waiters();
                    }
                    _ => {}
                }
            }
        }
    }
}
