//! Layered configuration: `config/default.toml` (embedded), then a user
//! file, then environment variables. Errors name the key and what was
//! expected. Secrets come from the environment or files and are never logged.

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

pub use crate::gateway::discord::config::DiscordConfig;
pub use crate::gateway::twitch::config::{
    ChannelList, TwitchAnnounceConfig, TwitchChannelConfig, TwitchConfig, TwitchOutboundConfig,
    TwitchReconnectConfig,
};

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
    /// The MCP front door at `/mcp`: allowed `Host`s and `Origin`s.
    #[serde(default)]
    pub mcp: crate::gateway::mcp::McpConfig,
    /// Bottleneck alerts: thresholds and evaluation period (docs/insights.md).
    #[serde(default)]
    pub alerts: crate::core::alerts::AlertsConfig,
    /// Schedules: sweep period, shortest interval, grace for late occurrences.
    #[serde(default)]
    pub schedules: crate::core::schedules::SchedulesConfig,
    /// Replay and retention of durable events.
    #[serde(default)]
    pub events: EventsConfig,
}

/// `[events]`: catching agents up, and how long events are kept.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Events acknowledged by every active agent are pruned once older
    /// than this many days; 0 keeps every event.
    pub retention_days: u64,
    /// How often retention runs, in seconds (it also refreshes the event
    /// table's figures in `/metrics`).
    pub prune_interval_s: u64,
    /// Events removed per pruning write; small, so writes are not held up.
    pub prune_batch: i64,
    /// Replay page reads that may run at once across all connections, so
    /// live requests still get a read connection.
    pub replay_reads: usize,
    /// Events per replay page.
    pub replay_page: i64,
    /// Announcements committed while nobody announced (a platform owner's
    /// fail-over, a restart) are sent when announcing resumes if younger
    /// than this many seconds; older ones are counted as missed. 0: none.
    pub announce_backlog_s: u64,
    /// Events committed within this many microseconds of the last fan-out
    /// are fanned out together at the end of the window (one wake-up and
    /// one socket write per busy connection, not one per event); 0 fans
    /// each commit out at once. Adds at most this much delay, and only
    /// under load.
    pub fanout_window_us: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            retention_days: 7,
            prune_interval_s: 60,
            prune_batch: 500,
            replay_reads: 2,
            replay_page: 512,
            announce_backlog_s: 3600,
            fanout_window_us: 2000,
        }
    }
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
    /// Most open connections on the listener (HTTP and WebSocket together);
    /// beyond it a new connection gets 503 with a JSON body and is closed.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Most open connections from one IP address; beyond it a new one gets
    /// 429 with a JSON body and is closed.
    #[serde(default = "default_max_connections_per_addr")]
    pub max_connections_per_addr: usize,
    /// Connections from loopback addresses (a reverse proxy or a local load
    /// generator on the same host) count only against `max_connections`.
    #[serde(default = "default_true")]
    pub loopback_exempt: bool,
    /// Time a client has to send a complete request head (and, on a new
    /// connection, its first byte); slower connections are closed.
    #[serde(default = "default_header_timeout_s")]
    pub header_timeout_s: u64,
    /// Longest pause while a request body is sent; a body that stalls
    /// longer is refused.
    #[serde(default = "default_body_timeout_s")]
    pub body_timeout_s: u64,
    /// Failed authentications allowed per client address (agent tokens on
    /// `/ws`, `/api`, `/mcp` and the dashboard): a burst, then `per_s`;
    /// beyond it every attempt from that address is refused with
    /// `rate_limited` (HTTP 429) and the wait, until it has waited.
    #[serde(default = "default_auth_failures")]
    pub auth_failures: Rate,
}

fn default_max_connections() -> usize {
    16384
}

fn default_max_connections_per_addr() -> usize {
    1024
}

fn default_true() -> bool {
    true
}

fn default_header_timeout_s() -> u64 {
    10
}

fn default_body_timeout_s() -> u64 {
    30
}

fn default_auth_failures() -> Rate {
    Rate {
        per_s: 0.2,
        burst: 10,
    }
}

/// `[database]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// A SQLite path, `sqlite:` URL or `postgres://` URL
    /// (`SWARMBRIDGE_DATABASE_URL`).
    pub url: String,
    /// Size of the read pool.
    pub read_connections: u32,
    /// PostgreSQL: most connections this instance opens (reads, the
    /// writer's batches; the event listener and leader locks use their own).
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// Group commit: most write requests in one transaction.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
    /// Group commit: how long (µs) the writer keeps a batch open for more
    /// requests once it has one; 0 takes only what is already queued.
    #[serde(default = "default_batch_wait_us")]
    pub batch_wait_us: u64,
    /// PostgreSQL: write batches this instance runs at once, each on its
    /// own pooled connection (claims on different rows do not conflict);
    /// their commits and publishing stay in `seq` order. At most half of
    /// `pool_size` is used; SQLite has one writer.
    #[serde(default = "default_writers")]
    pub writers: usize,
    /// SQLite: how long (ms) a write waits for a lock another process
    /// holds before the caller is answered `unavailable`.
    #[serde(default = "default_busy_timeout_ms")]
    pub busy_timeout_ms: u64,
}

fn default_writers() -> usize {
    2
}

fn default_busy_timeout_ms() -> u64 {
    10_000
}

fn default_pool_size() -> u32 {
    16
}

fn default_batch_max() -> usize {
    256
}

fn default_batch_wait_us() -> u64 {
    100
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
    /// Who gets a new task: `first_come` (default) or `learned` (offered to
    /// the best idle agent first; docs/insights.md, "Learned allocation").
    #[serde(default)]
    pub allocation: crate::core::allocation::AllocationMode,
    /// Learned allocation: how long only the chosen agent may claim a new task.
    #[serde(default = "default_offer_window_ms")]
    pub offer_window_ms: u64,
}

fn default_offer_window_ms() -> u64 {
    2000
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
pub(crate) fn scalar_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
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
        "twitch_client_id" => "twitch.client_id".to_string(),
        "twitch_client_secret" => "twitch.client_secret".to_string(),
        "twitch_refresh_token" => "twitch.refresh_token".to_string(),
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
        if self.server.max_connections == 0 || self.server.max_connections_per_addr == 0 {
            return bad(
                "server.max_connections",
                "max_connections and max_connections_per_addr must be at least 1",
            );
        }
        if self.server.header_timeout_s == 0 || self.server.body_timeout_s == 0 {
            return bad(
                "server.header_timeout_s",
                "header_timeout_s and body_timeout_s must be at least 1",
            );
        }
        let af = self.server.auth_failures;
        if !(af.per_s > 0.0 && af.per_s.is_finite()) || af.burst == 0 {
            return bad(
                "server.auth_failures",
                "per_s must be > 0 and burst at least 1",
            );
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
        self.alerts.validate().map_err(|b| ConfigError::Invalid {
            key: b.key,
            problem: b.problem,
        })?;
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
