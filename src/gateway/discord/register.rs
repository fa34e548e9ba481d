//! Slash-command registration, generated from the command catalog alone:
//! `task create` and its siblings become one top-level `task` command with
//! SUB_COMMAND options; option kinds map to Discord's option types. Sent by
//! bulk overwrite, so what Discord holds is exactly what the catalog says.

use super::render::clip;
use crate::catalog::{Catalog, CommandSpec, OptionKind, OptionSpec, Surface};
use serde_json::{json, Map, Value};
use serenity::http::Http;
use serenity::model::id::GuildId;

/// Discord's SUB_COMMAND option type.
pub const SUB_COMMAND: u8 = 1;
/// Discord's CHAT_INPUT command type.
pub const CHAT_INPUT: u8 = 1;

/// The Discord option type of a catalog option kind: string 3, integer 4,
/// boolean 5 (a task id is an integer, an agent name a string).
pub fn option_type(kind: OptionKind) -> u8 {
    match kind {
        OptionKind::String | OptionKind::Agent => 3,
        OptionKind::Integer | OptionKind::Task => 4,
        OptionKind::Boolean => 5,
    }
}

/// Whether Discord should ask us for suggestions for this kind.
pub fn autocompletes(kind: OptionKind) -> bool {
    matches!(kind, OptionKind::Task | OptionKind::Agent)
}

fn option_body(o: &OptionSpec) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), json!(option_type(o.kind)));
    m.insert("name".into(), json!(o.name));
    m.insert("description".into(), json!(o.description));
    m.insert("required".into(), json!(o.required));
    if !o.choices.is_empty() {
        let choices: Vec<Value> = o
            .choices
            .iter()
            .map(|c| json!({ "name": c, "value": c }))
            .collect();
        m.insert("choices".into(), Value::Array(choices));
    }
    if autocompletes(o.kind) {
        m.insert("autocomplete".into(), json!(true));
    }
    if let Some(min) = o.min {
        m.insert("min_value".into(), json!(min));
    }
    if let Some(max) = o.max {
        m.insert("max_value".into(), json!(max));
    }
    if let Some(len) = o.max_length {
        m.insert("max_length".into(), json!(len));
    }
    Value::Object(m)
}

fn options_body(spec: &CommandSpec) -> Vec<Value> {
    spec.options.iter().map(option_body).collect()
}

/// The bulk-overwrite body: one object per top-level command, in catalog
/// order. A group's description lists its subcommands (the catalog has no
/// text for groups). `default_member_permissions` is left unset (everyone
/// sees the commands; roles are checked by the core); `dm_permission` is false.
pub fn registration_body(catalog: &Catalog) -> Vec<Value> {
    let mut order: Vec<String> = Vec::new();
    let mut subs: std::collections::BTreeMap<String, Vec<(&str, &CommandSpec)>> =
        Default::default();
    let mut singles: std::collections::BTreeMap<String, &CommandSpec> = Default::default();
    for spec in catalog.commands().iter().filter(|c| c.on(Surface::Discord)) {
        let (top, sub) = match spec.name.split_once(' ') {
            Some((group, sub)) => (group, Some(sub)),
            None => (spec.name.as_str(), None),
        };
        if !order.iter().any(|o| o == top) {
            order.push(top.to_string());
        }
        match sub {
            Some(sub) => subs.entry(top.to_string()).or_default().push((sub, spec)),
            None => {
                singles.insert(top.to_string(), spec);
            }
        }
    }
    order
        .iter()
        .map(|top| {
            if let Some(spec) = singles.get(top) {
                return json!({
                    "type": CHAT_INPUT,
                    "name": top,
                    "description": spec.description,
                    "options": options_body(spec),
                    "dm_permission": false,
                });
            }
            let group = subs.get(top).map(Vec::as_slice).unwrap_or_default();
            let names: Vec<&str> = group.iter().map(|(sub, _)| *sub).collect();
            let options: Vec<Value> = group
                .iter()
                .map(|(sub, spec)| {
                    json!({
                        "type": SUB_COMMAND,
                        "name": sub,
                        "description": spec.description,
                        "options": options_body(spec),
                    })
                })
                .collect();
            json!({
                "type": CHAT_INPUT,
                "name": top,
                "description": clip(&format!("{}: {}", top, names.join(", ")), 100),
                "options": options,
                "dm_permission": false,
            })
        })
        .collect()
}

/// Why registration failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// No application id was configured or could be looked up.
    #[error("no Discord application id: set SWARMBRIDGE_DISCORD_APPLICATION_ID ({0})")]
    NoApplication(String),
    /// Discord refused or could not be reached.
    #[error("Discord refused the registration: {0}")]
    Http(String),
}

/// Replaces the application's commands (globally, or in `guild`) with the
/// catalog's Discord commands; returns how many top-level commands Discord
/// now holds. Looks the application id up with the token when `http` has none.
pub async fn register_commands(
    http: &Http,
    catalog: &Catalog,
    guild: Option<u64>,
) -> Result<usize, RegisterError> {
    if http.application_id().is_none() {
        let app = http
            .get_current_application_info()
            .await
            .map_err(|e| RegisterError::NoApplication(e.to_string()))?;
        http.set_application_id(app.id);
    }
    let body = registration_body(catalog);
    let registered = match guild.filter(|g| *g != 0) {
        Some(g) => http.create_guild_commands(GuildId::new(g), &body).await,
        None => http.create_global_commands(&body).await,
    }
    .map_err(|e| RegisterError::Http(e.to_string()))?;
    tracing::info!(
        platform = "discord",
        commands = registered.len(),
        scope = guild.map_or("global".to_string(), |g| format!("guild {g}")),
        "registered slash commands"
    );
    Ok(registered.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subcommands_are_grouped_and_limits_are_kept() {
        let catalog = Catalog::embedded().unwrap();
        let body = registration_body(&catalog);
        let names: Vec<&str> = body.iter().filter_map(|c| c["name"].as_str()).collect();
        assert_eq!(
            names.iter().filter(|n| **n == "task").count(),
            1,
            "{names:?}"
        );
        assert!(!names.iter().any(|n| n.contains(' ')), "{names:?}");
        for c in &body {
            let d = c["description"].as_str().unwrap();
            assert!(!d.is_empty() && d.chars().count() <= 100, "{d}");
            assert_eq!(c["dm_permission"], false);
            assert!(c.get("default_member_permissions").is_none());
        }
    }
}
