//! Reading the catalog: the embedded files or a `catalog.dir`, parsed,
//! validated and indexed by WebSocket type and Twitch alias.

use super::spec::{check_command, CommandSpec, Surface};
use crate::core::model::Role;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The catalog files compiled into the binary.
pub const EMBEDDED: &[(&str, &str)] = &[
    ("status.toml", include_str!("../../commands/status.toml")),
    ("task.toml", include_str!("../../commands/task.toml")),
    (
        "messages.toml",
        include_str!("../../commands/messages.toml"),
    ),
    ("polls.toml", include_str!("../../commands/polls.toml")),
    (
        "insights.toml",
        include_str!("../../commands/insights.toml"),
    ),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    command: Vec<CommandSpec>,
}

/// A catalog that cannot be used, naming the file, command and problem.
#[derive(Debug, thiserror::Error)]
#[error("command catalog {file}: {command}: {problem}")]
pub struct CatalogError {
    /// The file.
    pub file: String,
    /// The command (or `-` for the whole file).
    pub command: String,
    /// What is wrong.
    pub problem: String,
}

/// Every command, validated.
#[derive(Debug, Clone)]
pub struct Catalog {
    commands: Vec<CommandSpec>,
    by_ws: BTreeMap<String, usize>,
    by_twitch: BTreeMap<String, usize>,
}

impl Catalog {
    /// The catalog compiled into the binary.
    pub fn embedded() -> Result<Catalog, CatalogError> {
        Self::from_files(
            EMBEDDED
                .iter()
                .map(|(f, t)| (f.to_string(), t.to_string()))
                .collect(),
        )
    }

    /// Loads every `*.toml` in `dir` (replacing the embedded catalog).
    pub fn from_dir(dir: &Path) -> Result<Catalog, CatalogError> {
        let err = |problem: String| CatalogError {
            file: dir.display().to_string(),
            command: "-".into(),
            problem,
        };
        let mut files = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(|e| err(e.to_string()))?;
        for entry in entries {
            let path = entry.map_err(|e| err(e.to_string()))?.path();
            if path.extension().and_then(|e| e.to_str()) == Some("toml") {
                let text = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
                files.push((path.display().to_string(), text));
            }
        }
        files.sort();
        if files.is_empty() {
            return Err(err("no *.toml files".into()));
        }
        Self::from_files(files)
    }

    /// Parses and validates (file name, TOML text) pairs.
    pub fn from_files(files: Vec<(String, String)>) -> Result<Catalog, CatalogError> {
        let mut commands = Vec::new();
        let mut by_ws = BTreeMap::new();
        let mut by_twitch = BTreeMap::new();
        for (file, text) in files {
            let parsed: CatalogFile = toml::from_str(&text).map_err(|e| CatalogError {
                file: file.clone(),
                command: "-".into(),
                problem: e.to_string(),
            })?;
            for c in parsed.command {
                let fail = |problem: String| CatalogError {
                    file: file.clone(),
                    command: c.name.clone(),
                    problem,
                };
                check_command(&c).map_err(fail)?;
                let idx = commands.len();
                if by_ws.insert(c.ws_type().to_string(), idx).is_some() {
                    return Err(fail(format!("command {:?} is declared twice", c.ws_type())));
                }
                if let Some(alias) = &c.twitch {
                    if by_twitch.insert(alias.clone(), idx).is_some() {
                        return Err(fail(format!("twitch alias {alias:?} is used twice")));
                    }
                }
                commands.push(c);
            }
        }
        Ok(Catalog {
            commands,
            by_ws,
            by_twitch,
        })
    }

    /// Every command, in file order.
    pub fn commands(&self) -> &[CommandSpec] {
        &self.commands
    }

    /// The command whose WebSocket type (or name) is `ws_type`.
    pub fn get(&self, ws_type: &str) -> Option<&CommandSpec> {
        self.by_ws.get(ws_type).map(|&i| &self.commands[i])
    }

    /// The command with this Twitch alias (without the prefix).
    pub fn by_twitch_alias(&self, alias: &str) -> Option<&CommandSpec> {
        self.by_twitch.get(alias).map(|&i| &self.commands[i])
    }

    /// The commands on `surface` that `role` may run.
    pub fn available(&self, surface: Surface, role: Role) -> impl Iterator<Item = &CommandSpec> {
        self.commands
            .iter()
            .filter(move |c| c.on(surface) && c.role <= role)
    }

    /// A short help text for `surface` and `role`; Twitch aliases are shown
    /// with `prefix`. Kept on one line for chat.
    pub fn help_line(&self, surface: Surface, role: Role, prefix: &str) -> String {
        let names: Vec<String> = self
            .available(surface, role)
            .map(|c| match (surface, &c.twitch) {
                (Surface::Twitch, Some(alias)) => format!("{prefix}{alias}"),
                _ => format!("/{}", c.name),
            })
            .collect();
        format!("Commands: {}", names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_catalog_is_valid_and_complete() {
        let c = Catalog::embedded().unwrap();
        for ws in crate::core::command::COMMAND_NAMES {
            assert!(c.get(ws).is_some(), "{ws} missing from the catalog");
        }
        assert_eq!(c.by_twitch_alias("tasks").unwrap().ws_type(), "task.list");
        assert_eq!(c.by_twitch_alias("task").unwrap().ws_type(), "task.get");
    }

    fn one(text: &str) -> Result<Catalog, CatalogError> {
        Catalog::from_files(vec![("x.toml".into(), text.into())])
    }

    #[test]
    fn errors_name_the_file_the_command_and_the_problem() {
        let e = one(r#"[[command]]
name = "Bad Name"
description = "d"
role = "viewer"
rate_class = "requests"
platforms = ["ws"]"#)
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("x.toml") && msg.contains("Bad Name") && msg.contains("lowercase"),
            "{msg}"
        );
    }

    #[test]
    fn required_options_must_come_first() {
        let e = one(r#"[[command]]
name = "x"
description = "d"
role = "viewer"
rate_class = "requests"
platforms = ["ws"]
[[command.options]]
name = "a"
type = "string"
description = "a"
[[command.options]]
name = "b"
type = "string"
description = "b"
required = true"#)
        .unwrap_err();
        assert!(e.problem.contains("required options"), "{e}");
    }

    #[test]
    fn a_twitch_command_needs_an_alias_and_aliases_are_unique() {
        let base = |name: &str, alias: &str| {
            format!(
                "[[command]]\nname = \"{name}\"\ndescription = \"d\"\nrole = \"viewer\"\nrate_class = \"requests\"\nplatforms = [\"twitch\"]\ntwitch = \"{alias}\"\n"
            )
        };
        let e = one(&(base("a", "x") + &base("b", "x"))).unwrap_err();
        assert!(e.problem.contains("used twice"), "{e}");
        let e = one("[[command]]\nname = \"a\"\ndescription = \"d\"\nrole = \"viewer\"\nrate_class = \"requests\"\nplatforms = [\"twitch\"]\n").unwrap_err();
        assert!(e.problem.contains("twitch"), "{e}");
    }

    #[test]
    fn help_lists_what_a_role_may_run() {
        let c = Catalog::embedded().unwrap();
        let viewer = c.help_line(Surface::Twitch, Role::Viewer, "!");
        assert!(
            viewer.contains("!status") && viewer.contains("!task"),
            "{viewer}"
        );
        assert!(!viewer.contains("!broadcast"), "{viewer}");
        let op = c.help_line(Surface::Twitch, Role::Operator, "!");
        assert!(op.contains("!broadcast"), "{op}");
    }
}
