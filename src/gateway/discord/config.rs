//! `[discord]`: the Discord front door's settings, beside the front door
//! (re-exported as `crate::config::DiscordConfig`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    /// `POST /discord/interactions`: refuse (401) a signed request whose
    /// `X-Signature-Timestamp` is more than this many seconds from now, in
    /// either direction, so a captured request cannot be replayed later.
    #[serde(default = "default_interactions_max_age_s")]
    pub interactions_max_age_s: u64,
}

fn default_interactions_max_age_s() -> u64 {
    5
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
            interactions_max_age_s: default_interactions_max_age_s(),
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

#[cfg(test)]
mod tests {
    use crate::config::{Config, DEFAULT_TOML};
    use figment::providers::{Format, Toml};
    use figment::Figment;

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
