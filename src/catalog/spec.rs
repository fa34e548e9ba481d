//! What one catalog entry declares: the command, its options, where it exists.

use crate::core::model::Role;
use serde::Deserialize;
use std::collections::HashSet;

/// Where a command exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Surface {
    /// Discord slash commands.
    Discord,
    /// Twitch chat (`!alias`).
    Twitch,
    /// The agent WebSocket.
    Ws,
    /// The HTTP API.
    Http,
    /// MCP tools (`/mcp`).
    Mcp,
    /// A2A JSON-RPC methods (`/a2a`).
    A2a,
}

/// The type of an option value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptionKind {
    /// Free text.
    String,
    /// A whole number.
    Integer,
    /// true/false (Twitch: yes/no/true/false/1/0).
    Boolean,
    /// A task id (an integer; Discord autocompletes it).
    Task,
    /// An agent name (a string; Discord autocompletes it).
    Agent,
}

/// One option of a command.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionSpec {
    /// Lowercase name, also the WebSocket field name.
    pub name: String,
    /// Value type.
    #[serde(rename = "type")]
    pub kind: OptionKind,
    /// Shown in Discord and help.
    pub description: String,
    /// Must be given.
    #[serde(default)]
    pub required: bool,
    /// Allowed values (strings).
    #[serde(default)]
    pub choices: Vec<String>,
    /// Least value (integers).
    #[serde(default)]
    pub min: Option<i64>,
    /// Greatest value (integers).
    #[serde(default)]
    pub max: Option<i64>,
    /// Longest value in characters (strings).
    #[serde(default)]
    pub max_length: Option<u32>,
}

/// One command.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    /// `status`, or `task create` (group and subcommand, as on Discord).
    pub name: String,
    /// The WebSocket frame type; defaults to the name.
    #[serde(default)]
    pub ws: Option<String>,
    /// One line, at most 100 characters (Discord's limit).
    pub description: String,
    /// The least role that may run it.
    pub role: Role,
    /// The rate-limit class (`requests`, `msg.send`, `broadcast`, `reason`).
    pub rate_class: String,
    /// Where it exists.
    pub platforms: Vec<Surface>,
    /// The Twitch chat alias without the prefix (`status` for `!status`).
    #[serde(default)]
    pub twitch: Option<String>,
    /// Changes nothing: identical asks at the same time may share one
    /// answer (chat coalesces them).
    #[serde(default)]
    pub read_only: bool,
    /// Its options, required ones first.
    #[serde(default)]
    pub options: Vec<OptionSpec>,
}

impl CommandSpec {
    /// The WebSocket frame type of the command (`task.create`).
    pub fn ws_type(&self) -> &str {
        self.ws.as_deref().unwrap_or(&self.name)
    }

    /// Whether the command exists on `surface`.
    pub fn on(&self, surface: Surface) -> bool {
        self.platforms.contains(&surface)
    }

    /// The option named `name`.
    pub fn option(&self, name: &str) -> Option<&OptionSpec> {
        self.options.iter().find(|o| o.name == name)
    }

    /// A one-line usage, e.g. `task show <task_id>`.
    pub fn usage(&self) -> String {
        let mut s = self.name.clone();
        for o in &self.options {
            if o.required {
                s.push_str(&format!(" <{}>", o.name));
            } else {
                s.push_str(&format!(" [{}]", o.name));
            }
        }
        s
    }
}

pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

pub(super) fn check_command(c: &CommandSpec) -> Result<(), String> {
    let parts: Vec<&str> = c.name.split(' ').collect();
    if parts.len() > 2 || !parts.iter().all(|p| valid_name(p)) {
        return Err("name must be one or two lowercase words of a-z, 0-9, _ or -".into());
    }
    if c.description.is_empty() || c.description.chars().count() > 100 {
        return Err("description must be 1 to 100 characters".into());
    }
    if c.platforms.is_empty() {
        return Err("platforms must name at least one of discord, twitch, ws, http, mcp".into());
    }
    if c.twitch.is_some() != c.on(Surface::Twitch) {
        return Err("a `twitch` alias is needed exactly when platforms include twitch".into());
    }
    if let Some(alias) = &c.twitch {
        if !valid_name(alias) {
            return Err(format!("twitch alias {alias:?} must be a lowercase word"));
        }
    }
    if c.options.len() > 25 {
        return Err("at most 25 options".into());
    }
    let mut seen = HashSet::new();
    let mut optional_seen = false;
    for o in &c.options {
        if !valid_name(&o.name) {
            return Err(format!(
                "option {:?}: name must be a lowercase word",
                o.name
            ));
        }
        if !seen.insert(o.name.as_str()) {
            return Err(format!("option {:?} is declared twice", o.name));
        }
        if o.description.is_empty() || o.description.chars().count() > 100 {
            return Err(format!(
                "option {}: description must be 1 to 100 characters",
                o.name
            ));
        }
        if o.required && optional_seen {
            return Err(format!(
                "option {}: required options must come before optional ones",
                o.name
            ));
        }
        optional_seen |= !o.required;
        if o.choices.len() > 25 {
            return Err(format!("option {}: at most 25 choices", o.name));
        }
        if !o.choices.is_empty() && o.kind != OptionKind::String {
            return Err(format!("option {}: choices are for string options", o.name));
        }
        if let (Some(min), Some(max)) = (o.min, o.max) {
            if min > max {
                return Err(format!("option {}: min is greater than max", o.name));
            }
        }
        if o.max_length.is_some_and(|m| m == 0 || m > 6000) {
            return Err(format!("option {}: max_length must be 1 to 6000", o.name));
        }
    }
    Ok(())
}
