//! Layered configuration: `config/default.toml` (embedded), then a user
//! file, then environment variables. Errors name the key and what was
//! expected. Secrets come from the environment or files and are never logged.

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

/// The embedded defaults.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Everything swarmbridge can be told.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The HTTP/WebSocket listener.
    pub server: ServerConfig,
    /// Where state lives.
    pub database: DatabaseConfig,
    /// Task defaults.
    pub tasks: TasksConfig,
    /// Protocol limits and rates.
    pub limits: LimitsConfig,
    /// Picking up writes by other processes.
    pub sync: SyncConfig,
    /// Logging.
    pub log: LogConfig,
    /// Where the command catalog comes from.
    #[serde(default)]
    pub catalog: CatalogConfig,
    /// The OpenAI-compatible reasoning backend (`SWARMBRIDGE_REASONING_*`).
    #[serde(default)]
    pub reasoning: crate::reason::ReasonConfig,
    /// Embeddings for semantic search (`[embeddings]`, off by default).
    #[serde(default)]
    pub embeddings: crate::embed::EmbedConfig,
    /// Polls: shortest duration, sweep period, vote weights per role.
    #[serde(default)]
    pub polls: PollsConfig,
    /// The live dashboard at `/`.
    #[serde(default)]
    pub dashboard: DashboardConfig,
    /// The Twitch chat front door (`SWARMBRIDGE_TWITCH_*`); on when
    /// `channels` is not empty.
    #[serde(default)]
    pub twitch: TwitchConfig,
    /// The Discord front door (`SWARMBRIDGE_DISCORD_*`).
    #[serde(default)]
    pub discord: DiscordConfig,
}

/// `[dashboard]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardConfig {
    /// When true (the default), the read-only dashboard (`/`, `/dashboard/...`)
    /// needs no token; when false its data endpoints need an agent token
    /// (`SWARMBRIDGE_DASHBOARD__PUBLIC=false`). Actions always need an
    /// operator token.
    pub public: bool,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig { public: true }
    }
}

/// `[server]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Listen address (`SWARMBRIDGE_LISTEN`).
    pub listen: String,
    /// Largest HTTP request body; 413 beyond.
    pub max_body_bytes: usize,
    /// How long shutdown waits for connections to finish.
    pub shutdown_grace_s: u64,
}

/// `[database]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// A SQLite path or `sqlite:` URL (`SWARMBRIDGE_DATABASE_URL`).
    pub url: String,
    /// Size of the read pool.
    pub read_connections: u32,
}

/// `[tasks]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TasksConfig {
    /// Default lease in seconds.
    pub lease_s: u64,
    /// Default claims a task allows before failing for good.
    pub max_attempts: u32,
    /// How often expired leases are swept.
    pub sweep_interval_ms: u64,
}

/// A sustained rate and a burst.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Requests per second, sustained (may be fractional).
    pub per_s: f64,
    /// Requests allowed at once.
    pub burst: u32,
}

/// `[limits]`: what `welcome.limits` reports.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest WebSocket frame; larger gets `payload_too_large` and close 1009.
    pub max_frame_bytes: usize,
    /// Bad frames in a row before close 1008.
    pub max_bad_frames: u32,
    /// Longest `text` (and other text fields).
    pub max_text_chars: usize,
    /// Longest `prompt`.
    pub max_prompt_chars: usize,
    /// Tasks one agent may hold at once.
    pub max_claims: u32,
    /// Events queued for one connection before it counts as stalled.
    pub send_queue: usize,
    /// Heartbeat period; silence for 3× this closes the connection.
    pub heartbeat_s: u64,
    /// Time allowed for the `hello` frame.
    pub hello_timeout_s: u64,
    /// Roles that no rate limit applies to.
    pub exempt_roles: Vec<crate::core::model::Role>,
    /// Rate limits per request class: `requests` (all), `msg.send`, `broadcast`, `reason`.
    pub rates: BTreeMap<String, Rate>,
}

/// `[polls]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PollsConfig {
    /// Shortest `duration_s` a poll may ask for (default 10; tests lower it).
    pub min_duration_s: u64,
    /// How often polls past their `closes_at` are closed.
    pub sweep_interval_ms: u64,
    /// What one vote counts for in the tally, by the voter's role.
    pub weights: PollWeights,
}

impl Default for PollsConfig {
    fn default() -> Self {
        PollsConfig {
            min_duration_s: 10,
            sweep_interval_ms: 1000,
            weights: PollWeights::default(),
        }
    }
}

/// `[polls.weights]`: a vote's weight by the voter's role (all 1 by default).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PollWeights {
    /// Twitch viewers, Discord members without a mapped role.
    pub viewer: u32,
    /// Agents.
    pub agent: u32,
    /// Operators.
    pub operator: u32,
    /// Admins.
    pub admin: u32,
}

impl Default for PollWeights {
    fn default() -> Self {
        PollWeights {
            viewer: 1,
            agent: 1,
            operator: 1,
            admin: 1,
        }
    }
}

impl PollWeights {
    /// The weight of a vote cast by someone with `role`.
    pub fn for_role(&self, role: crate::core::model::Role) -> i64 {
        use crate::core::model::Role;
        i64::from(match role {
            Role::Viewer => self.viewer,
            Role::Agent => self.agent,
            Role::Operator => self.operator,
            Role::Admin => self.admin,
        })
    }
}

/// `[sync]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// How often the server looks for writes by other processes (the CLI).
    pub poll_interval_ms: u64,
    /// How often acknowledgements are written.
    pub ack_flush_ms: u64,
}

/// `[catalog]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// A directory of `*.toml` command files replacing the embedded catalog.
    pub dir: Option<String>,
}

/// `[discord]`: the Discord front door. The gateway runs when `token` is
/// set; the HTTP interactions endpoint answers when `public_key` is set.
/// Snowflake ids may be written as strings or integers.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    /// The bot token (`SWARMBRIDGE_DISCORD_TOKEN`); a secret, never logged.
    #[serde(default)]
    pub token: Option<String>,
    /// The application id (`SWARMBRIDGE_DISCORD_APPLICATION_ID`); looked up
    /// with the token when unset.
    #[serde(default, deserialize_with = "snowflake::opt")]
    pub application_id: Option<u64>,
    /// The application's Ed25519 public key, 64 hex digits
    /// (`SWARMBRIDGE_DISCORD_PUBLIC_KEY`); turns on `POST /discord/interactions`.
    #[serde(default)]
    pub public_key: Option<String>,
    /// The channel announcements go to (`SWARMBRIDGE_DISCORD_ANNOUNCE_CHANNEL`).
    #[serde(default, deserialize_with = "snowflake::opt")]
    pub announce_channel: Option<u64>,
    /// The REST base URL, for an HTTP proxy or a test double
    /// (`SWARMBRIDGE_DISCORD_API_BASE`, default `https://discord.com`).
    #[serde(default)]
    pub api_base: Option<String>,
    /// Register the catalog's commands when `serve` starts.
    #[serde(default)]
    pub register_on_start: bool,
    /// Register in this guild only (instant) instead of globally.
    #[serde(default, deserialize_with = "snowflake::opt")]
    pub guild_id: Option<u64>,
    /// Discord role id → swarmbridge role.
    #[serde(default)]
    pub roles: BTreeMap<String, crate::core::model::Role>,
    /// Discord user id → swarmbridge role (wins over lower role mappings).
    #[serde(default)]
    pub users: BTreeMap<String, crate::core::model::Role>,
    /// How long announcements are collected into one message.
    #[serde(default = "default_coalesce_ms")]
    pub announce_coalesce_ms: u64,
    /// Messages the bot may post per channel within `announce_period_s`.
    #[serde(default = "default_announce_burst")]
    pub announce_burst: u32,
    /// The window of `announce_burst`.
    #[serde(default = "default_announce_period_s")]
    pub announce_period_s: u64,
}

fn default_coalesce_ms() -> u64 {
    1500
}
fn default_announce_burst() -> u32 {
    5
}
fn default_announce_period_s() -> u64 {
    5
}

impl Default for DiscordConfig {
    fn default() -> Self {
        DiscordConfig {
            token: None,
            application_id: None,
            public_key: None,
            announce_channel: None,
            api_base: None,
            register_on_start: false,
            guild_id: None,
            roles: BTreeMap::new(),
            users: BTreeMap::new(),
            announce_coalesce_ms: default_coalesce_ms(),
            announce_burst: default_announce_burst(),
            announce_period_s: default_announce_period_s(),
        }
    }
}

impl std::fmt::Debug for DiscordConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("application_id", &self.application_id)
            .field("public_key", &self.public_key)
            .field("announce_channel", &self.announce_channel)
            .field("api_base", &self.api_base)
            .field("register_on_start", &self.register_on_start)
            .field("guild_id", &self.guild_id)
            .field("roles", &self.roles)
            .field("users", &self.users)
            .field("announce_coalesce_ms", &self.announce_coalesce_ms)
            .field("announce_burst", &self.announce_burst)
            .field("announce_period_s", &self.announce_period_s)
            .finish()
    }
}

impl DiscordConfig {
    /// True when the gateway client should run.
    pub fn gateway_on(&self) -> bool {
        self.token.as_deref().is_some_and(|t| !t.trim().is_empty())
    }

    /// True when `POST /discord/interactions` should answer.
    pub fn interactions_on(&self) -> bool {
        self.public_key
            .as_deref()
            .is_some_and(|k| !k.trim().is_empty())
    }
}

/// Discord ids ("snowflakes") from TOML integers or strings.
mod snowflake {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Str(String),
    }

    /// An optional snowflake; an empty string counts as unset.
    pub fn opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<Raw>::deserialize(d)? {
            None => Ok(None),
            Some(Raw::Int(i)) => Ok(Some(i)),
            Some(Raw::Str(s)) if s.trim().is_empty() => Ok(None),
            Some(Raw::Str(s)) => s.trim().parse().map(Some).map_err(|_| {
                serde::de::Error::custom(format!("expected a Discord id (digits), got {s:?}"))
            }),
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter (`RUST_LOG` wins when set).
    pub filter: String,
}

/// A secret string (an OAuth token): usable by the code that needs it,
/// shown as `<redacted>` by `Debug`, never logged.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(#[serde(deserialize_with = "scalar_string")] String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself; callers must not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Accepts a string, or a number or boolean written without quotes (an
/// environment variable such as `SWARMBRIDGE_TWITCH_USERNAME=12345` arrives
/// as a number), as a string.
fn scalar_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        S(String),
        I(i64),
        U(u64),
        F(f64),
        B(bool),
    }
    Ok(match Scalar::deserialize(d)? {
        Scalar::S(s) => s,
        Scalar::I(i) => i.to_string(),
        Scalar::U(u) => u.to_string(),
        Scalar::F(f) => f.to_string(),
        Scalar::B(b) => b.to_string(),
    })
}

/// Twitch channel logins: a list, or one comma separated string (as
/// `SWARMBRIDGE_TWITCH_CHANNELS=a,b` gives it). Names are lowercased, a
/// leading `#` and blanks are dropped, duplicates removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelList(pub Vec<String>);

impl ChannelList {
    fn push_all<'a>(&mut self, parts: impl Iterator<Item = &'a str>) {
        for p in parts {
            let name = p.trim().trim_start_matches('#').trim().to_ascii_lowercase();
            if !name.is_empty() && !self.0.contains(&name) {
                self.0.push(name);
            }
        }
    }
}

impl<'de> Deserialize<'de> for ChannelList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            List(Vec<String>),
            One(#[serde(deserialize_with = "scalar_string")] String),
        }
        let mut out = ChannelList::default();
        match Raw::deserialize(d)? {
            Raw::List(list) => out.push_all(list.iter().flat_map(|s| s.split(','))),
            Raw::One(s) => out.push_all(s.split(',')),
        }
        Ok(out)
    }
}

/// `[twitch]`: the Twitch chat front door. Twitch is on when `channels` is
/// not empty; without `oauth_token` the bot joins anonymously and only reads.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TwitchConfig {
    /// The bot account's login (`SWARMBRIDGE_TWITCH_USERNAME`).
    #[serde(deserialize_with = "scalar_string")]
    pub username: String,
    /// `oauth:...` or the bare token, scopes `chat:read chat:edit`
    /// (`SWARMBRIDGE_TWITCH_OAUTH_TOKEN`); never logged.
    pub oauth_token: Option<Secret>,
    /// Channels to join (`SWARMBRIDGE_TWITCH_CHANNELS`, comma separated).
    pub channels: ChannelList,
    /// `host:port` of another IRC server, spoken to over plain TCP
    /// (`SWARMBRIDGE_TWITCH_SERVER`, for tests and proxies); unset means
    /// Twitch over TLS.
    pub server: Option<String>,
    /// What chat commands start with.
    pub prefix: String,
    /// Role per badge (`broadcaster`, `moderator`, `vip`, `subscriber`, ...);
    /// a viewer gets the highest role among their badges, `viewer` without one.
    pub badges: BTreeMap<String, crate::core::model::Role>,
    /// Logins that are operators whatever their badges.
    pub operators: Vec<String>,
    /// Least time between two commands of one viewer; extra ones are ignored
    /// (the first gets one short notice).
    pub cooldown_ms: u64,
    /// What the bot sends and how fast.
    pub outbound: TwitchOutboundConfig,
    /// Reconnecting after a lost or refused connection.
    pub reconnect: TwitchReconnectConfig,
    /// Announcements of task events and broadcasts.
    pub announce: TwitchAnnounceConfig,
    /// Per-channel overrides of `announce`, by channel login.
    pub channel: BTreeMap<String, TwitchChannelConfig>,
}

impl Default for TwitchConfig {
    fn default() -> Self {
        let badges = [
            ("broadcaster", crate::core::model::Role::Admin),
            ("moderator", crate::core::model::Role::Operator),
        ]
        .into_iter()
        .map(|(b, r)| (b.to_string(), r))
        .collect();
        TwitchConfig {
            username: String::new(),
            oauth_token: None,
            channels: ChannelList::default(),
            server: None,
            prefix: "!".into(),
            badges,
            operators: Vec::new(),
            cooldown_ms: 3_000,
            outbound: TwitchOutboundConfig::default(),
            reconnect: TwitchReconnectConfig::default(),
            announce: TwitchAnnounceConfig::default(),
            channel: BTreeMap::new(),
        }
    }
}

impl std::fmt::Debug for TwitchConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwitchConfig")
            .field("username", &self.username)
            .field("oauth_token", &self.oauth_token)
            .field("channels", &self.channels.0)
            .field("server", &self.server)
            .field("prefix", &self.prefix)
            .field("badges", &self.badges)
            .field("operators", &self.operators)
            .field("cooldown_ms", &self.cooldown_ms)
            .field("outbound", &self.outbound)
            .field("reconnect", &self.reconnect)
            .field("announce", &self.announce)
            .field("channel", &self.channel)
            .finish()
    }
}

impl TwitchConfig {
    /// True when channels are configured (the front door runs).
    pub fn enabled(&self) -> bool {
        !self.channels.0.is_empty()
    }

    /// The OAuth token without an `oauth:` prefix; None when unset or blank
    /// (the bot then joins anonymously and only reads).
    pub fn token(&self) -> Option<&str> {
        let t = self.oauth_token.as_ref()?.expose().trim();
        let t = t.strip_prefix("oauth:").unwrap_or(t);
        (!t.is_empty()).then_some(t)
    }

    /// Whether `kind` (`task.completed`, `broadcast`, ...) is announced in
    /// `channel`: the channel's override, else `announce`.
    pub fn announces(&self, channel: &str, kind: &str) -> bool {
        let over = self.channel.get(channel);
        let on = over
            .and_then(|c| c.announce)
            .unwrap_or(self.announce.enabled);
        let events = over
            .and_then(|c| c.events.as_ref())
            .unwrap_or(&self.announce.events);
        on && events.iter().any(|e| e == kind)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        fn bad(key: &'static str, problem: impl Into<String>) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid {
                key,
                problem: problem.into(),
            })
        }
        let login_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 25
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        for c in &self.channels.0 {
            if !login_ok(c) {
                return bad(
                    "twitch.channels",
                    format!("{c:?} is not a Twitch login (a-z, 0-9, _; at most 25)"),
                );
            }
        }
        if self.token().is_some() && !login_ok(&self.username.to_ascii_lowercase()) {
            return bad(
                "twitch.username",
                "the bot's Twitch login is needed with an OAuth token (SWARMBRIDGE_TWITCH_USERNAME)",
            );
        }
        if let Some(server) = &self.server {
            let port_ok = server
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !port_ok {
                return bad(
                    "twitch.server",
                    format!("expected host:port such as 127.0.0.1:6667, got {server:?}"),
                );
            }
        }
        if self.prefix.is_empty()
            || self.prefix.chars().count() > 8
            || self.prefix.chars().any(char::is_whitespace)
        {
            return bad("twitch.prefix", "expected 1 to 8 characters without blanks");
        }
        let o = &self.outbound;
        if o.messages < 2 || o.moderator_messages < 2 || o.joins < 2 {
            return bad(
                "twitch.outbound",
                "messages, moderator_messages and joins must be at least 2",
            );
        }
        if o.window_ms == 0 || o.join_window_ms == 0 {
            return bad(
                "twitch.outbound",
                "window_ms and join_window_ms must be > 0",
            );
        }
        if !(20..=500).contains(&o.max_chars) {
            return bad("twitch.outbound.max_chars", "expected 20 to 500");
        }
        if o.queue == 0 {
            return bad("twitch.outbound.queue", "expected at least 1");
        }
        let r = &self.reconnect;
        if r.base_ms == 0 || r.max_ms < r.base_ms {
            return bad(
                "twitch.reconnect",
                "base_ms must be > 0 and max_ms at least base_ms",
            );
        }
        let known = |k: &str| crate::core::events::EventKind::parse(k).is_some();
        let lists = std::iter::once(&self.announce.events)
            .chain(self.channel.values().filter_map(|c| c.events.as_ref()));
        for list in lists {
            if let Some(k) = list.iter().find(|k| !known(k)) {
                return bad(
                    "twitch.announce.events",
                    format!("unknown event kind {k:?} (e.g. task.completed, broadcast)"),
                );
            }
        }
        Ok(())
    }
}

/// `[twitch.outbound]`: Twitch's limits for what the bot sends. Exceeding
/// them gets the account ignored for 30 minutes, so they are enforced here.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TwitchOutboundConfig {
    /// Messages per window in channels where the bot is not moderator (20).
    pub messages: u32,
    /// Messages per window in channels where it is moderator or broadcaster (100).
    pub moderator_messages: u32,
    /// The window of `messages`, in milliseconds (30 000).
    pub window_ms: u64,
    /// JOINs per `join_window_ms` (20).
    pub joins: u32,
    /// The window of `joins`, in milliseconds (10 000).
    pub join_window_ms: u64,
    /// The same text is never sent twice to a channel within this time (30 000).
    pub duplicate_window_ms: u64,
    /// Longest line, in characters (500, Twitch's limit).
    pub max_chars: usize,
    /// Lines waiting to be sent; beyond, the oldest is dropped (and counted).
    pub queue: usize,
    /// A reply not sent within this time is dropped as stale.
    pub reply_ttl_ms: u64,
}

impl Default for TwitchOutboundConfig {
    fn default() -> Self {
        TwitchOutboundConfig {
            messages: 20,
            moderator_messages: 100,
            window_ms: 30_000,
            joins: 20,
            join_window_ms: 10_000,
            duplicate_window_ms: 30_000,
            max_chars: 500,
            queue: 200,
            reply_ttl_ms: 60_000,
        }
    }
}

/// `[twitch.reconnect]`: exponential backoff between connection attempts.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TwitchReconnectConfig {
    /// First delay after a failure, doubled per further failure.
    pub base_ms: u64,
    /// Longest delay.
    pub max_ms: u64,
    /// Least time between two connection attempts, whatever happens.
    pub min_interval_ms: u64,
}

impl Default for TwitchReconnectConfig {
    fn default() -> Self {
        TwitchReconnectConfig {
            base_ms: 1_000,
            max_ms: 60_000,
            min_interval_ms: 2_000,
        }
    }
}

/// `[twitch.announce]`: which committed events are announced in chat.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TwitchAnnounceConfig {
    /// Announce at all (per channel: `[twitch.channel.NAME] announce`).
    pub enabled: bool,
    /// Event kinds announced.
    pub events: Vec<String>,
    /// Events arriving within this time are summarized in one line.
    pub batch_ms: u64,
}

impl Default for TwitchAnnounceConfig {
    fn default() -> Self {
        TwitchAnnounceConfig {
            enabled: true,
            events: [
                "task.created",
                "task.claimed",
                "task.completed",
                "task.failed",
                "task.expired",
                "task.cancelled",
                "broadcast",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            batch_ms: 2_000,
        }
    }
}

/// `[twitch.channel.NAME]`: one channel's announcement settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TwitchChannelConfig {
    /// Announce in this channel (default: `twitch.announce.enabled`).
    pub announce: Option<bool>,
    /// Event kinds announced here (default: `twitch.announce.events`).
    pub events: Option<Vec<String>>,
}

/// A configuration that could not be loaded or makes no sense.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file or value could not be read as the expected type.
    #[error("configuration error: {0}")]
    Load(#[from] Box<figment::Error>),
    /// A value is of the right type but not usable.
    #[error("configuration error: `{key}`: {problem}")]
    Invalid {
        /// The dotted key.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// Maps `SWARMBRIDGE_*` variables to keys: a few documented short names,
/// and `SECTION__KEY` for everything else (`SWARMBRIDGE_TASKS__LEASE_S`).
/// Variables that match neither are ignored (they may belong to tests or
/// to other parts, e.g. `SWARMBRIDGE_TEST_PG`).
fn env_key(key: &str) -> Option<String> {
    let k = key.to_ascii_lowercase();
    let mapped = match k.as_str() {
        "listen" => "server.listen".to_string(),
        "database_url" => "database.url".to_string(),
        "log_format" => "log.format".to_string(),
        "reasoning_base_url" => "reasoning.base_url".to_string(),
        "reasoning_model" => "reasoning.model".to_string(),
        "reasoning_api_key" => "reasoning.api_key".to_string(),
        "twitch_username" => "twitch.username".to_string(),
        "twitch_oauth_token" => "twitch.oauth_token".to_string(),
        "twitch_channels" => "twitch.channels".to_string(),
        "twitch_server" => "twitch.server".to_string(),
        "discord_token" => "discord.token".to_string(),
        "discord_application_id" => "discord.application_id".to_string(),
        "discord_public_key" => "discord.public_key".to_string(),
        "discord_announce_channel" => "discord.announce_channel".to_string(),
        "discord_api_base" => "discord.api_base".to_string(),
        _ if k.contains("__") => k.replace("__", "."),
        _ => return None,
    };
    Some(mapped)
}

impl Config {
    /// Loads defaults, then `file` (when given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Invalid {
                    key: "--config",
                    problem: format!("file {} does not exist", path.display()),
                });
            }
            fig = fig.merge(Toml::file(path));
        }
        fig = fig.merge(
            Env::prefixed("SWARMBRIDGE_").filter_map(|k| env_key(k.as_str()).map(Into::into)),
        );
        let mut cfg: Config = fig.extract().map_err(Box::new)?;
        if cfg
            .reasoning
            .base_url
            .as_deref()
            .is_some_and(|u| u.trim().is_empty())
        {
            cfg.reasoning.base_url = None;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values the types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.reasoning.base_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Invalid {
                    key: "reasoning.base_url",
                    problem: format!("expected an http:// or https:// URL, got {url:?}"),
                });
            }
        }
        fn bad(key: &'static str, problem: impl Into<String>) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid {
                key,
                problem: problem.into(),
            })
        }
        if self.server.listen.parse::<SocketAddr>().is_err() {
            return bad(
                "server.listen",
                format!(
                    "expected host:port such as 127.0.0.1:7878, got {:?}",
                    self.server.listen
                ),
            );
        }
        if !(1..=crate::core::tasks::MAX_LEASE_S as u64).contains(&self.tasks.lease_s) {
            return bad("tasks.lease_s", "expected 1 to 86400 seconds");
        }
        if self.tasks.max_attempts == 0 {
            return bad("tasks.max_attempts", "expected at least 1");
        }
        if self.limits.max_frame_bytes < 1024 {
            return bad("limits.max_frame_bytes", "expected at least 1024");
        }
        if self.limits.send_queue == 0 {
            return bad("limits.send_queue", "expected at least 1");
        }
        if self.limits.heartbeat_s == 0 {
            return bad("limits.heartbeat_s", "expected at least 1");
        }
        for (name, rate) in &self.limits.rates {
            if !(rate.per_s > 0.0 && rate.per_s.is_finite()) || rate.burst == 0 {
                return Err(ConfigError::Invalid {
                    key: "limits.rates",
                    problem: format!("{name}: per_s must be > 0 and burst at least 1"),
                });
            }
        }
        let max_poll_s = crate::core::polls::MAX_DURATION_S as u64;
        if !(1..=max_poll_s).contains(&self.polls.min_duration_s) {
            return bad(
                "polls.min_duration_s",
                format!("expected 1 to {max_poll_s} seconds"),
            );
        }
        if self.polls.sweep_interval_ms == 0 {
            return bad("polls.sweep_interval_ms", "expected at least 1");
        }
        let w = self.polls.weights;
        if [w.viewer, w.agent, w.operator, w.admin]
            .iter()
            .any(|&x| x > crate::core::polls::MAX_WEIGHT)
        {
            return bad(
                "polls.weights",
                format!(
                    "expected weights of 0 to {}",
                    crate::core::polls::MAX_WEIGHT
                ),
            );
        }
        self.twitch.validate()?;
        if let Some(key) = self
            .discord
            .public_key
            .as_deref()
            .filter(|k| !k.trim().is_empty())
        {
            let k = key.trim();
            if k.len() != 64 || !k.chars().all(|c| c.is_ascii_hexdigit()) {
                return bad("discord.public_key", "expected 64 hex digits");
            }
        }
        if let Some(base) = self
            .discord
            .api_base
            .as_deref()
            .filter(|b| !b.trim().is_empty())
        {
            if !(base.starts_with("http://") || base.starts_with("https://")) {
                return bad(
                    "discord.api_base",
                    format!("expected an http:// or https:// URL, got {base:?}"),
                );
            }
        }
        if self.discord.announce_burst == 0 || self.discord.announce_period_s == 0 {
            return bad(
                "discord.announce_burst",
                "announce_burst and announce_period_s must be at least 1",
            );
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return bad("log.format", "expected text or json");
        }
        Ok(())
    }

    /// The listen address (validated).
    pub fn listen_addr(&self) -> SocketAddr {
        self.server
            .listen
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 7878)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twitch_channels_come_as_a_comma_separated_string_or_a_list() {
        let cfg: Config = Figment::from(Toml::string(DEFAULT_TOML))
            .merge(Toml::string(
                "[twitch]\nusername = \"bot\"\nchannels = \"#Alpha, beta,,\"\noauth_token = \"oauth:abc\"",
            ))
            .extract()
            .unwrap();
        assert_eq!(cfg.twitch.channels.0, vec!["alpha", "beta"]);
        assert!(cfg.twitch.enabled());
        assert_eq!(cfg.twitch.token(), Some("abc"));
        let shown = format!("{:?}", cfg.twitch);
        assert!(!shown.contains("abc"), "{shown}");
        cfg.validate().unwrap();
        let cfg: Config = Figment::from(Toml::string(DEFAULT_TOML))
            .merge(Toml::string(
                "[twitch]\nchannels = [\"gamma\"]\n[twitch.badges]\nvip = \"operator\"",
            ))
            .extract()
            .unwrap();
        assert_eq!(cfg.twitch.channels.0, vec!["gamma"]);
        assert_eq!(cfg.twitch.token(), None);
        assert_eq!(
            cfg.twitch.badges["moderator"],
            crate::core::model::Role::Operator
        );
        assert_eq!(cfg.twitch.badges["vip"], crate::core::model::Role::Operator);
        cfg.validate().unwrap();
    }

    #[test]
    fn embedded_defaults_load_and_validate() {
        let cfg: Config = Figment::from(Toml::string(DEFAULT_TOML)).extract().unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.limits.max_frame_bytes, 65536);
        assert_eq!(cfg.limits.rates["msg.send"].burst, 50);
        assert_eq!(cfg.polls.min_duration_s, 10);
        assert_eq!(cfg.polls.weights, PollWeights::default());
    }

    #[test]
    fn poll_weights_may_be_given_in_part() {
        let cfg: Config = Figment::from(Toml::string(DEFAULT_TOML))
            .merge(Toml::string("[polls]\nweights = { operator = 3 }"))
            .extract()
            .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.polls.weights.operator, 3);
        assert_eq!(cfg.polls.weights.viewer, 1);
    }

    #[test]
    fn env_names_map_to_keys() {
        assert_eq!(env_key("LISTEN").as_deref(), Some("server.listen"));
        assert_eq!(env_key("TASKS__LEASE_S").as_deref(), Some("tasks.lease_s"));
        assert_eq!(env_key("TEST_PG"), None);
        assert_eq!(
            env_key("TWITCH_OAUTH_TOKEN").as_deref(),
            Some("twitch.oauth_token")
        );
        assert_eq!(
            env_key("TWITCH_CHANNELS").as_deref(),
            Some("twitch.channels")
        );
        assert_eq!(env_key("DISCORD_TOKEN").as_deref(), Some("discord.token"));
        assert_eq!(
            env_key("DISCORD_API_BASE").as_deref(),
            Some("discord.api_base")
        );
    }

    #[test]
    fn a_wrong_type_names_the_key() {
        let err = Figment::from(Toml::string(DEFAULT_TOML))
            .merge(Toml::string("[tasks]\nlease_s = \"long\""))
            .extract::<Config>()
            .unwrap_err();
        assert!(err.to_string().contains("lease_s"), "{err}");
    }
}

#[cfg(test)]
mod discord_tests {
    use super::*;

    #[test]
    fn discord_ids_load_from_strings_or_integers_and_the_token_is_hidden() {
        let cfg: Config = Figment::from(Toml::string(DEFAULT_TOML))
            .merge(Toml::string(
                "[discord]\ntoken = \"sekrit\"\napplication_id = \"123\"\nannounce_channel = 456\nroles = { \"789\" = \"operator\" }",
            ))
            .extract()
            .unwrap();
        assert_eq!(cfg.discord.application_id, Some(123));
        assert_eq!(cfg.discord.announce_channel, Some(456));
        assert_eq!(cfg.discord.roles["789"], crate::core::model::Role::Operator);
        assert!(cfg.discord.gateway_on());
        assert!(!format!("{:?}", cfg.discord).contains("sekrit"));
    }
}
