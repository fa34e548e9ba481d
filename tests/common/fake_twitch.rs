//! A fake Twitch IRC server on 127.0.0.1:0 that speaks Twitch's dialect:
//! CAP REQ/ACK, PASS/NICK → 001..376, JOIN → JOIN echo + ROOMSTATE +
//! USERSTATE (with moderator badges or not), PRIVMSG with IRCv3 tags,
//! PING/PONG and RECONNECT. It records every line the bot sends with the
//! time it arrived, injects viewer messages, and can refuse logins (accept
//! and close at once) to count connection attempts.

#![allow(dead_code)] // Each test binary uses a different part of the fake.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// One line the bot sent.
#[derive(Debug, Clone)]
pub struct Sent {
    /// When it arrived.
    pub at: Instant,
    /// Which connection (1, 2, ...).
    pub conn: u64,
    /// The raw line without CRLF.
    pub raw: String,
}

/// A PRIVMSG the bot sent, parsed.
#[derive(Debug, Clone)]
pub struct Said {
    /// When it arrived.
    pub at: Instant,
    /// Channel without `#`.
    pub channel: String,
    /// `reply-parent-msg-id`, when it is a reply.
    pub reply_to: Option<String>,
    /// The text.
    pub text: String,
}

struct Conn {
    id: u64,
    tx: mpsc::UnboundedSender<String>,
    nick: String,
    joined: HashSet<String>,
    alive: bool,
}

#[derive(Default)]
struct Inner {
    sent: Vec<Sent>,
    conns: Vec<Conn>,
    attempts: u64,
    moderator: bool,
    refuse: bool,
    echo_own: bool,
    /// When set, only `PASS oauth:<this>` logs in; other logins get
    /// Twitch's "Login authentication failed" NOTICE and are closed.
    accepted_token: Option<String>,
}

struct Shared {
    inner: Mutex<Inner>,
    version: watch::Sender<u64>,
    next_id: AtomicU64,
    /// Bumped by `drop_connections`; each connection ends when it changes.
    drops: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }
}

/// The fake server.
pub struct FakeTwitch {
    addr: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeTwitch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One Twitch client runs per process: tests that start one hold this guard
/// (taken after any previous client has freed the slot).
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    let guard = EXCLUSIVE.lock().await;
    let deadline = Instant::now() + super::WAIT;
    while !swarmbridge::gateway::twitch::transport::slot_is_free() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    guard
}

/// Splits an IRC line into tags, prefix, command and parameters.
pub fn parse(line: &str) -> (HashMap<String, String>, Option<String>, String, Vec<String>) {
    let mut rest = line;
    let mut tags = HashMap::new();
    if let Some(r) = rest.strip_prefix('@') {
        let (t, r) = r.split_once(' ').unwrap_or((r, ""));
        for kv in t.split(';') {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            tags.insert(k.to_string(), v.to_string());
        }
        rest = r;
    }
    let mut prefix = None;
    if let Some(r) = rest.strip_prefix(':') {
        let (p, r) = r.split_once(' ').unwrap_or((r, ""));
        prefix = Some(p.to_string());
        rest = r;
    }
    let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let mut params = Vec::new();
    while !rest.is_empty() {
        if let Some(trailing) = rest.strip_prefix(':') {
            params.push(trailing.to_string());
            break;
        }
        let (p, r) = rest.split_once(' ').unwrap_or((rest, ""));
        params.push(p.to_string());
        rest = r;
    }
    (tags, prefix, command.to_string(), params)
}

impl FakeTwitch {
    /// Starts the fake; `moderator` decides the bot's USERSTATE badges.
    pub async fn spawn(moderator: bool) -> FakeTwitch {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                moderator,
                ..Inner::default()
            }),
            version: watch::channel(0).0,
            next_id: AtomicU64::new(1),
            drops: watch::channel(0).0,
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            let mut conn_tasks = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let id = {
                    let mut inner = s.lock();
                    inner.attempts += 1;
                    if inner.refuse {
                        drop(inner);
                        drop(stream);
                        s.bump();
                        continue;
                    }
                    inner.attempts
                };
                s.bump();
                conn_tasks.spawn(serve(s.clone(), stream, id));
            }
        });
        FakeTwitch { addr, shared, task }
    }

    /// `host:port` for `twitch.server`.
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// Accept connections and close them at once (a refused login).
    pub fn set_refuse(&self, refuse: bool) {
        self.shared.lock().refuse = refuse;
    }

    /// Accept only this OAuth token (None: any); a login with another one
    /// is refused as Twitch refuses an expired token.
    pub fn set_accepted_token(&self, token: Option<&str>) {
        self.shared.lock().accepted_token = token.map(str::to_string);
    }

    /// Every `PASS` line's token (without `oauth:`) in order of arrival.
    pub fn passwords(&self) -> Vec<String> {
        self.sent()
            .iter()
            .filter_map(|s| s.raw.strip_prefix("PASS "))
            .map(|p| p.trim().trim_start_matches("oauth:").to_string())
            .collect()
    }

    /// Relay the bot's own PRIVMSGs back to it, as Twitch relays chat.
    pub fn set_echo_own(&self, echo: bool) {
        self.shared.lock().echo_own = echo;
    }

    /// Connections accepted so far (including refused ones).
    pub fn attempts(&self) -> u64 {
        self.shared.lock().attempts
    }

    /// Every line the bot sent.
    pub fn sent(&self) -> Vec<Sent> {
        self.shared.lock().sent.clone()
    }

    /// Every PRIVMSG the bot sent, in order.
    pub fn said(&self) -> Vec<Said> {
        self.sent()
            .into_iter()
            .filter_map(|s| {
                let (tags, _, cmd, params) = parse(&s.raw);
                (cmd == "PRIVMSG" && params.len() == 2).then(|| Said {
                    at: s.at,
                    channel: params[0].trim_start_matches('#').to_string(),
                    reply_to: tags.get("reply-parent-msg-id").cloned(),
                    text: params[1].clone(),
                })
            })
            .collect()
    }

    /// Waits until `pred` holds for the fake's state (panics after `WAIT`).
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&FakeTwitch) -> bool) {
        let mut rx = self.shared.version.subscribe();
        let deadline = tokio::time::Instant::now() + super::WAIT;
        loop {
            if pred(self) {
                return;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                panic!("timed out waiting for {what}; bot sent: {:#?}", self.sent());
            }
        }
    }

    /// Waits until a live connection has joined `channel`.
    pub async fn wait_joined(&self, channel: &str) {
        self.wait_joined_by(channel, 1).await;
    }

    /// Waits until `n` live connections have joined `channel` (a new owner
    /// beside a frozen one whose socket is still open).
    pub async fn wait_joined_by(&self, channel: &str, n: usize) {
        self.wait_for(&format!("{n} connections in #{channel}"), |f| {
            f.shared
                .lock()
                .conns
                .iter()
                .filter(|c| c.alive && c.joined.contains(channel))
                .count()
                >= n
        })
        .await;
    }

    /// Live connections.
    pub fn live_connections(&self) -> usize {
        self.shared.lock().conns.iter().filter(|c| c.alive).count()
    }

    /// Waits for the first PRIVMSG that replies to `msg_id`.
    pub async fn reply_to(&self, msg_id: &str) -> Said {
        self.wait_for(&format!("a reply to {msg_id}"), |f| {
            f.said()
                .iter()
                .any(|s| s.reply_to.as_deref() == Some(msg_id))
        })
        .await;
        self.said()
            .into_iter()
            .find(|s| s.reply_to.as_deref() == Some(msg_id))
            .expect("reply present")
    }

    /// A viewer says `text` in `channel` with these badges (`moderator/1`,
    /// `broadcaster/1`, `subscriber/12`, or empty); returns the message id.
    pub fn say(&self, channel: &str, login: &str, badges: &str, text: &str) -> String {
        self.say_coloured(channel, login, badges, "#1E90FF", text)
    }

    /// As [`FakeTwitch::say`], with the `color` tag's value written as given
    /// (as on the wire: a hostile server may send anything there).
    pub fn say_coloured(
        &self,
        channel: &str,
        login: &str,
        badges: &str,
        color: &str,
        text: &str,
    ) -> String {
        let n = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("msg-{n:08}");
        let is_mod = u8::from(badges.contains("moderator"));
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let line = format!(
            "@badge-info=;badges={badges};color={color};display-name={login};emotes=;first-msg=0;flags=;id={id};mod={is_mod};returning-chatter=0;room-id=4242;subscriber=0;tmi-sent-ts={ts};turbo=0;user-id={};user-type= :{login}!{login}@{login}.tmi.twitch.tv PRIVMSG #{channel} :{text}",
            1000 + n
        );
        let inner = self.shared.lock();
        for c in inner
            .conns
            .iter()
            .filter(|c| c.alive && c.joined.contains(channel))
        {
            let _ = c.tx.send(line.clone());
        }
        id
    }

    /// Closes every live connection at once without a word (no RECONNECT,
    /// no QUIT), as a network failure or a crashed edge server does.
    pub fn drop_connections(&self) {
        self.shared.drops.send_modify(|n| *n += 1);
    }

    /// Tells every live connection to reconnect, as Twitch does before a restart.
    pub fn reconnect(&self) {
        let inner = self.shared.lock();
        for c in inner.conns.iter().filter(|c| c.alive) {
            let _ = c.tx.send(":tmi.twitch.tv RECONNECT".into());
        }
    }
}

async fn serve(shared: Arc<Shared>, stream: tokio::net::TcpStream, id: u64) {
    let (read, mut write) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    shared.lock().conns.push(Conn {
        id,
        tx: tx.clone(),
        nick: String::new(),
        joined: HashSet::new(),
        alive: true,
    });
    let writer = tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            if write
                .write_all(format!("{line}\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut lines = BufReader::new(read).lines();
    let mut refused_login = false;
    let mut drops = shared.drops.subscribe();
    drops.mark_unchanged();
    loop {
        let line = tokio::select! {
            _ = drops.changed() => break,
            read = lines.next_line() => match read {
                Ok(Some(line)) => line,
                _ => break,
            },
        };
        let at = Instant::now();
        let (_, _, cmd, params) = parse(&line);
        let mut inner = shared.lock();
        inner.sent.push(Sent {
            at,
            conn: id,
            raw: line.clone(),
        });
        let moderator = inner.moderator;
        let echo = inner.echo_own;
        let Some(me) = inner.conns.iter().position(|c| c.id == id) else {
            break;
        };
        let nick = inner.conns[me].nick.clone();
        let send = |l: String| {
            let _ = tx.send(l);
        };
        match cmd.as_str() {
            "CAP" if params.first().map(String::as_str) == Some("REQ") => {
                send(format!(
                    ":tmi.twitch.tv CAP * ACK :{}",
                    params.get(1).cloned().unwrap_or_default()
                ));
            }
            "NICK"
                if inner.accepted_token.as_ref().is_some_and(|ok| {
                    let pass = inner
                        .sent
                        .iter()
                        .rev()
                        .find(|s| s.conn == id && s.raw.starts_with("PASS "));
                    pass.map(|s| {
                        s.raw
                            .trim_start_matches("PASS ")
                            .trim_start_matches("oauth:")
                    }) != Some(ok.as_str())
                }) =>
            {
                send(":tmi.twitch.tv NOTICE * :Login authentication failed".into());
                refused_login = true;
                break;
            }
            "NICK" => {
                let nick = params.first().cloned().unwrap_or_default();
                inner.conns[me].nick = nick.clone();
                for (code, text) in [
                    ("001", "Welcome, GLHF!"),
                    ("002", "Your host is tmi.twitch.tv"),
                    ("003", "This server is rather new"),
                    ("004", "-"),
                    ("375", "-"),
                    ("372", "You are in a maze of twisty passages, all alike."),
                    ("376", ">"),
                ] {
                    send(format!(":tmi.twitch.tv {code} {nick} :{text}"));
                }
            }
            "JOIN" => {
                let badges = if moderator { "moderator/1" } else { "" };
                for ch in params.first().cloned().unwrap_or_default().split(',') {
                    let ch = ch.trim_start_matches('#').to_string();
                    send(format!(":{nick}!{nick}@{nick}.tmi.twitch.tv JOIN #{ch}"));
                    send(format!(
                        "@emote-only=0;followers-only=-1;r9k=0;room-id=4242;slow=0;subs-only=0 :tmi.twitch.tv ROOMSTATE #{ch}"
                    ));
                    send(format!(
                        "@badge-info=;badges={badges};color=;display-name={nick};emote-sets=0;mod={};subscriber=0;user-type= :tmi.twitch.tv USERSTATE #{ch}",
                        u8::from(moderator)
                    ));
                    inner.conns[me].joined.insert(ch);
                }
            }
            "PART" => {
                let ch = params.first().cloned().unwrap_or_default();
                inner.conns[me].joined.remove(ch.trim_start_matches('#'));
            }
            "PING" => send(format!(
                ":tmi.twitch.tv PONG tmi.twitch.tv :{}",
                params.first().cloned().unwrap_or_default()
            )),
            "PRIVMSG" if echo && params.len() == 2 => {
                let ch = params[0].trim_start_matches('#');
                let n = shared.next_id.fetch_add(1, Ordering::Relaxed);
                let relay = format!(
                    "@badge-info=;badges=;color=;display-name={nick};emotes=;flags=;id=echo-{n};mod=0;room-id=4242;subscriber=0;tmi-sent-ts=0;turbo=0;user-id=1;user-type= :{nick}!{nick}@{nick}.tmi.twitch.tv PRIVMSG #{ch} :{}",
                    params[1]
                );
                for c in inner
                    .conns
                    .iter()
                    .filter(|c| c.alive && c.joined.contains(ch))
                {
                    let _ = c.tx.send(relay.clone());
                }
            }
            _ => {}
        }
        drop(inner);
        shared.bump();
    }
    {
        let mut inner = shared.lock();
        if let Some(c) = inner.conns.iter_mut().find(|c| c.id == id) {
            c.alive = false;
        }
    }
    shared.bump();
    if refused_login {
        // let the NOTICE go out before closing, as Twitch does
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    writer.abort();
}

/// A fake of Twitch's OAuth token endpoint (`POST /oauth2/token`,
/// `grant_type=refresh_token`): it accepts one refresh token for one
/// client, answers a new access token and a rotated refresh token, and
/// records every request's form.
pub struct FakeTwitchAuth {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<AuthState>>,
    task: JoinHandle<()>,
}

struct AuthState {
    client_id: String,
    client_secret: String,
    refresh_token: String,
    issued: u32,
    forms: Vec<HashMap<String, String>>,
}

impl Drop for FakeTwitchAuth {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeTwitchAuth {
    /// Starts the endpoint accepting `refresh_token` from `client_id`/`client_secret`.
    pub async fn spawn(
        client_id: &str,
        client_secret: &str,
        refresh_token: &str,
    ) -> FakeTwitchAuth {
        use axum::extract::{Form, State};
        use axum::response::IntoResponse;
        let state = Arc::new(Mutex::new(AuthState {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            refresh_token: refresh_token.into(),
            issued: 0,
            forms: Vec::new(),
        }));
        async fn token(
            State(state): State<Arc<Mutex<AuthState>>>,
            Form(form): Form<HashMap<String, String>>,
        ) -> axum::response::Response {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            st.forms.push(form.clone());
            let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
            if get("grant_type") != "refresh_token"
                || get("client_id") != st.client_id
                || get("client_secret") != st.client_secret
                || get("refresh_token") != st.refresh_token
            {
                return (
                    axum::http::StatusCode::BAD_REQUEST,
                    axum::Json(
                        serde_json::json!({"status": 400, "message": "Invalid refresh token"}),
                    ),
                )
                    .into_response();
            }
            st.issued += 1;
            let n = st.issued;
            st.refresh_token = format!("rotated-refresh-{n}");
            axum::Json(serde_json::json!({
                "access_token": format!("fresh-access-{n}"),
                "refresh_token": st.refresh_token,
                "expires_in": 14400,
                "scope": ["chat:read", "chat:edit"],
                "token_type": "bearer"
            }))
            .into_response()
        }
        let app = axum::Router::new()
            .route("/oauth2/token", axum::routing::post(token))
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeTwitchAuth { addr, state, task }
    }

    /// The token URL for `twitch.token_url`.
    pub fn token_url(&self) -> String {
        format!("http://{}/oauth2/token", self.addr)
    }

    /// The forms posted so far.
    pub fn requests(&self) -> Vec<HashMap<String, String>> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forms
            .clone()
    }
}
