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
    /// The Discord front door (`SWARMBRIDGE_DISCORD_*`).
    #[serde(default)]
    pub discord: DiscordConfig,
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
    fn embedded_defaults_load_and_validate() {
        let cfg: Config = Figment::from(Toml::string(DEFAULT_TOML)).extract().unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.limits.max_frame_bytes, 65536);
        assert_eq!(cfg.limits.rates["msg.send"].burst, 50);
    }

    #[test]
    fn env_names_map_to_keys() {
        assert_eq!(env_key("LISTEN").as_deref(), Some("server.listen"));
        assert_eq!(env_key("TASKS__LEASE_S").as_deref(), Some("tasks.lease_s"));
        assert_eq!(env_key("TEST_PG"), None);
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
