//! The command catalog: every command declared once in `commands/*.toml`
//! (name, description, options, role, rate class, platforms, Twitch alias).
//! Discord registration, Twitch parsing, role checks, rate classes and help
//! texts all read it. It is embedded in the binary and can be replaced by a
//! directory (`catalog.dir`). An invalid catalog stops start-up with an
//! error naming the file, the command and the problem.

use crate::core::model::Role;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// The catalog files compiled into the binary.
pub const EMBEDDED: &[(&str, &str)] = &[
    ("status.toml", include_str!("../commands/status.toml")),
    ("task.toml", include_str!("../commands/task.toml")),
    ("messages.toml", include_str!("../commands/messages.toml")),
    ("polls.toml", include_str!("../commands/polls.toml")),
];

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

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn check_command(c: &CommandSpec) -> Result<(), String> {
    let parts: Vec<&str> = c.name.split(' ').collect();
    if parts.len() > 2 || !parts.iter().all(|p| valid_name(p)) {
        return Err("name must be one or two lowercase words of a-z, 0-9, _ or -".into());
    }
    if c.description.is_empty() || c.description.chars().count() > 100 {
        return Err("description must be 1 to 100 characters".into());
    }
    if c.platforms.is_empty() {
        return Err("platforms must name at least one of discord, twitch, ws, http".into());
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
        for ws in [
            "status",
            "agents",
            "task.create",
            "task.claim",
            "task.renew",
            "task.progress",
            "task.complete",
            "task.fail",
            "task.release",
            "task.get",
            "task.list",
            "task.cancel",
            "task.assign",
            "msg.send",
            "broadcast",
            "reason",
        ] {
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

/// A typed option value, as a chat front door collected it.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgValue {
    /// Text.
    Str(String),
    /// A whole number.
    Int(i64),
    /// A flag.
    Bool(bool),
}

impl ArgValue {
    fn as_str(&self) -> Option<&str> {
        match self {
            ArgValue::Str(s) => Some(s),
            _ => None,
        }
    }
    fn as_int(&self) -> Option<i64> {
        match self {
            ArgValue::Int(i) => Some(*i),
            _ => None,
        }
    }
    fn as_bool(&self) -> Option<bool> {
        match self {
            ArgValue::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

/// Option values by name.
pub type Args = BTreeMap<String, ArgValue>;

/// What a chat invocation asks for: a core command, or one of the two
/// requests the front doors answer with other parts (reasoning, help).
#[derive(Debug, Clone)]
pub enum Invocation {
    /// Run through `Core::execute`.
    Core(crate::core::command::Command),
    /// Ask the reasoning engine.
    Reason {
        /// The question.
        prompt: String,
        /// The mode name (default `simple`).
        mode: String,
    },
    /// Vote; without a poll id, in the newest open poll the caller may vote in.
    Vote {
        /// The poll, when named.
        poll_id: Option<i64>,
        /// 1-based option.
        option: i64,
    },
    /// Show a poll; without an id, the newest open one.
    ShowPoll {
        /// The poll, when named.
        poll_id: Option<i64>,
    },
    /// Show help, for one command or all.
    Help {
        /// The command asked about.
        command: Option<String>,
    },
}

fn bad(msg: String) -> crate::core::error::CoreError {
    crate::core::error::CoreError::BadRequest(msg)
}

fn parse_token(o: &OptionSpec, tok: &str) -> Result<ArgValue, crate::core::error::CoreError> {
    match o.kind {
        OptionKind::String | OptionKind::Agent => Ok(ArgValue::Str(tok.to_string())),
        OptionKind::Integer | OptionKind::Task => tok
            .trim_start_matches('#')
            .parse::<i64>()
            .map(ArgValue::Int)
            .map_err(|_| bad(format!("{} must be a whole number, got {tok:?}", o.name))),
        OptionKind::Boolean => match tok.to_ascii_lowercase().as_str() {
            "yes" | "true" | "1" | "on" => Ok(ArgValue::Bool(true)),
            "no" | "false" | "0" | "off" => Ok(ArgValue::Bool(false)),
            _ => Err(bad(format!("{} must be yes or no, got {tok:?}", o.name))),
        },
    }
}

impl CommandSpec {
    /// Parses chat text after the alias (`!task 42` → `42`): words fill the
    /// options in order; a text option after which nothing is required takes
    /// the rest of the line. Then validates.
    pub fn parse_positional(&self, text: &str) -> Result<Args, crate::core::error::CoreError> {
        let mut args = Args::new();
        let mut rest = text.trim();
        for (i, o) in self.options.iter().enumerate() {
            if rest.is_empty() {
                break;
            }
            let later_required = self.options[i + 1..].iter().any(|l| l.required);
            let takes_rest = !later_required && matches!(o.kind, OptionKind::String);
            let (tok, tail) = if takes_rest {
                (rest, "")
            } else {
                match rest.split_once(char::is_whitespace) {
                    Some((t, r)) => (t, r.trim_start()),
                    None => (rest, ""),
                }
            };
            args.insert(o.name.clone(), parse_token(o, tok)?);
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(bad(format!("too many arguments; usage: {}", self.usage())));
        }
        self.validate(&args)?;
        Ok(args)
    }

    /// Checks values against the declared options: required ones present,
    /// types, choices, ranges and lengths; unknown names refused.
    pub fn validate(&self, args: &Args) -> Result<(), crate::core::error::CoreError> {
        for name in args.keys() {
            if self.option(name).is_none() {
                return Err(bad(format!("{} has no option {name:?}", self.name)));
            }
        }
        for o in &self.options {
            let Some(v) = args.get(&o.name) else {
                if o.required {
                    return Err(bad(format!(
                        "{} is required; usage: {}",
                        o.name,
                        self.usage()
                    )));
                }
                continue;
            };
            match (o.kind, v) {
                (OptionKind::String | OptionKind::Agent, ArgValue::Str(s)) => {
                    let n = s.chars().count();
                    if let Some(max) = o.max_length {
                        if n > max as usize {
                            return Err(bad(format!("{} is limited to {max} characters", o.name)));
                        }
                    }
                    if o.required && s.trim().is_empty() {
                        return Err(bad(format!("{} must not be empty", o.name)));
                    }
                    if !o.choices.is_empty() && !o.choices.iter().any(|c| c == s) {
                        return Err(bad(format!(
                            "{} must be one of {}",
                            o.name,
                            o.choices.join(", ")
                        )));
                    }
                }
                (OptionKind::Integer | OptionKind::Task, ArgValue::Int(i)) => {
                    if o.min.is_some_and(|m| *i < m) || o.max.is_some_and(|m| *i > m) {
                        return Err(bad(format!(
                            "{} must be between {} and {}",
                            o.name,
                            o.min.map_or("-inf".into(), |m| m.to_string()),
                            o.max.map_or("inf".into(), |m| m.to_string())
                        )));
                    }
                }
                (OptionKind::Boolean, ArgValue::Bool(_)) => {}
                _ => return Err(bad(format!("{} has the wrong type", o.name))),
            }
        }
        Ok(())
    }

    /// Turns validated values into what the caller asked for.
    pub fn invocation(&self, args: &Args) -> Result<Invocation, crate::core::error::CoreError> {
        use crate::core::command::Command;
        use crate::core::model::{NewTask, TaskState};
        let s = |n: &str| args.get(n).and_then(ArgValue::as_str).map(str::to_string);
        let i = |n: &str| args.get(n).and_then(ArgValue::as_int);
        let list = |n: &str| -> Vec<String> {
            s(n).map(|v| {
                v.split(',')
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect()
            })
            .unwrap_or_default()
        };
        let id = || {
            i("task_id").ok_or_else(|| bad(format!("task_id is required; usage: {}", self.usage())))
        };
        let text =
            |n: &str| s(n).ok_or_else(|| bad(format!("{n} is required; usage: {}", self.usage())));
        let cmd = match self.ws_type() {
            "status" => Command::Status,
            "agents" => Command::Agents,
            "help" => {
                return Ok(Invocation::Help {
                    command: s("command"),
                })
            }
            "reason" => {
                return Ok(Invocation::Reason {
                    prompt: text("prompt")?,
                    mode: s("mode").unwrap_or_else(|| "simple".into()),
                })
            }
            "task.create" => Command::TaskCreate(NewTask {
                title: text("title")?,
                body: s("body").unwrap_or_default(),
                priority: i("priority").unwrap_or(0),
                requires: list("requires"),
                tags: list("tags"),
                max_attempts: None,
            }),
            "task.list" => Command::TaskList {
                state: s("state")
                    .map(|v| v.parse::<TaskState>())
                    .transpose()
                    .map_err(bad)?,
                assignee: s("assignee"),
                limit: i("limit"),
            },
            "task.get" => Command::TaskGet { task_id: id()? },
            "task.claim" => Command::TaskClaim {
                task_id: i("task_id"),
                lease_s: i("lease_s"),
            },
            "task.assign" => Command::TaskAssign {
                task_id: id()?,
                agent: text("agent")?,
            },
            "task.complete" => Command::TaskComplete {
                task_id: id()?,
                result: s("result").map(serde_json::Value::String),
            },
            "task.fail" => Command::TaskFail {
                task_id: id()?,
                error: text("error")?,
                retry: args
                    .get("retry")
                    .and_then(ArgValue::as_bool)
                    .unwrap_or(true),
            },
            "task.release" => Command::TaskRelease { task_id: id()? },
            "task.cancel" => Command::TaskCancel {
                task_id: id()?,
                reason: s("reason"),
            },
            "task.renew" => Command::TaskRenew {
                task_id: id()?,
                lease_s: i("lease_s"),
            },
            "task.progress" => Command::TaskProgress {
                task_id: id()?,
                note: text("note")?,
                percent: i("percent"),
            },
            "msg.send" => Command::MsgSend {
                to: text("to")?,
                text: text("text")?,
            },
            "broadcast" => Command::Broadcast {
                text: text("text")?,
                topic: s("topic"),
            },
            "poll.open" => {
                let raw = text("options")?;
                let sep = if raw.contains('|') { '|' } else { ',' };
                Command::PollOpen(crate::core::polls::NewPoll {
                    question: text("question")?,
                    options: raw.split(sep).map(|o| o.trim().to_string()).collect(),
                    duration_s: i("duration_s").unwrap_or(300),
                    voters: s("voters")
                        .map(|v| v.parse::<crate::core::polls::Voters>())
                        .transpose()
                        .map_err(bad)?
                        .unwrap_or(crate::core::polls::Voters::All),
                })
            }
            "poll.vote" => {
                return Ok(Invocation::Vote {
                    poll_id: i("poll_id"),
                    option: i("option").ok_or_else(|| {
                        bad(format!("option is required; usage: {}", self.usage()))
                    })?,
                })
            }
            "poll.close" => Command::PollClose {
                poll_id: i("poll_id").ok_or_else(|| bad("poll_id is required".into()))?,
            },
            "poll.get" => {
                return Ok(Invocation::ShowPoll {
                    poll_id: i("poll_id"),
                })
            }
            "search" => Command::Search(crate::core::search::SearchRequest {
                query: text("query")?,
                limit: i("limit"),
                state: s("state")
                    .map(|v| v.parse::<TaskState>())
                    .transpose()
                    .map_err(bad)?,
                agent: s("agent"),
                since: None,
            }),
            other => return Err(bad(format!("{other} cannot be run from chat"))),
        };
        Ok(Invocation::Core(cmd))
    }
}

#[cfg(test)]
mod arg_tests {
    use super::*;
    use crate::core::command::Command;

    #[test]
    fn positional_text_fills_options_and_the_last_takes_the_rest() {
        let c = Catalog::embedded().unwrap();
        let spec = c.by_twitch_alias("broadcast").unwrap();
        let args = spec.parse_positional("deploy is done, thanks all").unwrap();
        assert_eq!(
            args["text"],
            ArgValue::Str("deploy is done, thanks all".into())
        );
        let spec = c.by_twitch_alias("task").unwrap();
        let args = spec.parse_positional("#42").unwrap();
        match spec.invocation(&args).unwrap() {
            Invocation::Core(Command::TaskGet { task_id }) => assert_eq!(task_id, 42),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_values_get_clear_errors() {
        let c = Catalog::embedded().unwrap();
        let spec = c.by_twitch_alias("task").unwrap();
        assert!(spec
            .parse_positional("abc")
            .unwrap_err()
            .to_string()
            .contains("whole number"));
        assert!(spec
            .parse_positional("")
            .unwrap_err()
            .to_string()
            .contains("required"));
        assert!(spec
            .parse_positional("0")
            .unwrap_err()
            .to_string()
            .contains("between"));
        let list = c.by_twitch_alias("tasks").unwrap();
        assert!(list
            .parse_positional("sideways")
            .unwrap_err()
            .to_string()
            .contains("one of"));
    }
}
