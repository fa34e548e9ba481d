//! `[twitch]`: the Twitch front door's settings, beside the front door
//! (re-exported from `crate::config`).

use crate::config::{scalar_string, ConfigError, Secret};
use serde::Deserialize;
use std::collections::BTreeMap;

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

/// Twitch's OAuth token endpoint.
pub const DEFAULT_TOKEN_URL: &str = "https://id.twitch.tv/oauth2/token";

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
    /// The Twitch application's client id (`SWARMBRIDGE_TWITCH_CLIENT_ID`),
    /// needed with `refresh_token`.
    pub client_id: Option<String>,
    /// The application's client secret (`SWARMBRIDGE_TWITCH_CLIENT_SECRET`); never logged.
    pub client_secret: Option<Secret>,
    /// The refresh token issued with `oauth_token`
    /// (`SWARMBRIDGE_TWITCH_REFRESH_TOKEN`); with `client_id` and
    /// `client_secret`, an expired or refused token is refreshed without a
    /// restart. Never logged.
    pub refresh_token: Option<Secret>,
    /// Where tokens are refreshed (default `https://id.twitch.tv/oauth2/token`).
    pub token_url: String,
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
            client_id: None,
            client_secret: None,
            refresh_token: None,
            token_url: DEFAULT_TOKEN_URL.into(),
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
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("refresh_token", &self.refresh_token)
            .field("token_url", &self.token_url)
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

    /// The refresh settings, when `refresh_token`, `client_id` and
    /// `client_secret` are all set.
    pub fn refresh_settings(&self) -> Option<super::credentials::RefreshSettings> {
        let nonblank = |s: &Secret| !s.expose().trim().is_empty();
        let refresh_token = self.refresh_token.clone().filter(nonblank)?;
        let client_secret = self.client_secret.clone().filter(nonblank)?;
        let client_id = self.client_id.clone().filter(|c| !c.trim().is_empty())?;
        Some(super::credentials::RefreshSettings {
            token_url: self.token_url.clone(),
            client_id: client_id.trim().to_string(),
            client_secret,
            refresh_token,
        })
    }

    /// The bot's login: the configured token, refreshed when it can be.
    pub fn credentials(&self) -> super::credentials::TwitchCredentials {
        let refresh = self.refresh_settings();
        let token = self.token().map(str::to_string);
        let login = if token.is_some() || refresh.is_some() {
            self.username.to_ascii_lowercase()
        } else {
            // twitch-irc's anonymous login
            "justinfan12345".to_string()
        };
        super::credentials::TwitchCredentials::new(login, token, refresh)
    }

    /// The refresh secrets (client secret, refresh token), for redaction.
    pub fn refresh_secrets(&self) -> Vec<&str> {
        [&self.client_secret, &self.refresh_token]
            .into_iter()
            .flatten()
            .map(|s| s.expose().trim())
            .collect()
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

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
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
        let refresh_parts = [
            self.refresh_token.as_ref().map(|s| s.expose()),
            self.client_secret.as_ref().map(|s| s.expose()),
            self.client_id.as_deref(),
        ];
        let given = refresh_parts
            .iter()
            .filter(|p| p.is_some_and(|v| !v.trim().is_empty()))
            .count();
        if self
            .refresh_token
            .as_ref()
            .is_some_and(|t| !t.expose().trim().is_empty())
            && given < 3
        {
            return bad(
                "twitch.refresh_token",
                "refreshing needs twitch.client_id and twitch.client_secret too",
            );
        }
        if !(self.token_url.starts_with("https://") || self.token_url.starts_with("http://")) {
            return bad(
                "twitch.token_url",
                format!(
                    "expected an http:// or https:// URL, got {:?}",
                    self.token_url
                ),
            );
        }
        if (self.token().is_some() || self.refresh_settings().is_some())
            && !login_ok(&self.username.to_ascii_lowercase())
        {
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
    /// A reply to a question others may ask too (`!status`) waits this
    /// long after the first ask, so a burst of equal asks gets one line (1 500).
    pub coalesce_ms: u64,
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
            coalesce_ms: 1_500,
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
