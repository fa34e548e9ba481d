//! The one interaction handler both transports share: it takes a parsed
//! interaction (from the gateway or from `POST /discord/interactions`),
//! resolves the caller's role, parses the command, hands it to the
//! dispatcher and says how to answer. It sends nothing itself.

use super::render;
use crate::catalog::{ArgValue, Args, Catalog, CommandSpec, OptionKind, Surface};
use crate::config::DiscordConfig;
use crate::core::command::{Command, Reply};
use crate::core::error::CoreError;
use crate::core::model::{Caller, Platform, Role, TaskState};
use crate::core::Core;
use crate::dispatch::{parse, Admitted, Dispatcher};
use dashmap::DashMap;
use serenity::builder::{
    CreateAutocompleteResponse, CreateInteractionResponse, CreateInteractionResponseMessage,
};
use serenity::model::application::{
    CommandData, CommandDataOption, CommandDataOptionValue, CommandInteraction,
    ComponentInteraction, Interaction,
};
use serenity::model::guild::Member;
use serenity::model::user::User;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Choices Discord accepts in one autocomplete answer.
const AUTOCOMPLETE_MAX: usize = 25;

/// How to answer an interaction.
#[allow(clippy::large_enum_variant)] // built once per interaction, sent at once
#[derive(Debug)]
pub enum Outcome {
    /// Answer with this response.
    Respond(CreateInteractionResponse),
    /// Answer with this deferred response, then run the follow-up, which
    /// edits the original response.
    Deferred {
        /// The type 5 response.
        response: CreateInteractionResponse,
        /// The slow part.
        follow_up: FollowUp,
    },
    /// Do not answer: a rate-limited user was already told in this window.
    Silent,
}

/// Work finished after a deferred response.
#[derive(Debug)]
pub enum FollowUp {
    /// Ask the reasoning engine and stream the answer into the message.
    Reason {
        /// The interaction token (valid for 15 minutes).
        token: String,
        /// The question.
        prompt: String,
        /// The admitted `reason` command (its budget already spent).
        admitted: Admitted,
    },
}

/// The Discord user behind an interaction, with their guild roles.
struct Who<'a> {
    user: &'a User,
    role_ids: Vec<String>,
}

impl<'a> Who<'a> {
    fn of(user: &'a User, member: Option<&'a Member>) -> Self {
        Who {
            user: member.map(|m| &m.user).unwrap_or(user),
            role_ids: member
                .map(|m| m.roles.iter().map(|r| r.get().to_string()).collect())
                .unwrap_or_default(),
        }
    }
}

/// Runs interactions through the core; one per process, shared by both transports.
pub struct InteractionHandler {
    core: Arc<Core>,
    dispatch: Arc<Dispatcher>,
    roles: std::collections::BTreeMap<String, Role>,
    users: std::collections::BTreeMap<String, Role>,
    /// When each limited user was last told, and until when that notice holds.
    told_limited: DashMap<u64, Instant>,
}

fn message(m: CreateInteractionResponseMessage) -> Outcome {
    Outcome::Respond(CreateInteractionResponse::Message(m))
}

fn error(e: &CoreError) -> Outcome {
    message(render::error_message(e))
}

/// The catalog name and values of an invoked slash command:
/// `task` + subcommand `create` → `task create`.
fn flatten(name: &str, options: &[CommandDataOption]) -> (String, Vec<CommandDataOption>) {
    if let [only] = options {
        if let CommandDataOptionValue::SubCommand(inner) = &only.value {
            return (format!("{name} {}", only.name), inner.clone());
        }
    }
    (name.to_string(), options.to_vec())
}

/// 2^63: whole numbers in `-I64_RANGE..I64_RANGE` convert to i64 exactly.
const I64_RANGE: f64 = 9_223_372_036_854_775_808.0;

fn to_args(spec: &CommandSpec, options: &[CommandDataOption]) -> Result<Args, CoreError> {
    let mut args = Args::new();
    for o in options {
        let v = match &o.value {
            CommandDataOptionValue::String(s) => ArgValue::Str(s.clone()),
            CommandDataOptionValue::Integer(i) => ArgValue::Int(*i),
            CommandDataOptionValue::Boolean(b) => ArgValue::Bool(*b),
            CommandDataOptionValue::Number(n) if n.fract() == 0.0 => {
                // `as` would saturate 1e30 to i64::MAX and pass it on as if typed
                if !(-I64_RANGE..I64_RANGE).contains(n) {
                    return Err(CoreError::bad_request(format!(
                        "option {} is out of range: {n} is not a 64-bit integer",
                        o.name
                    )));
                }
                ArgValue::Int(*n as i64)
            }
            _ => {
                return Err(CoreError::bad_request(format!(
                    "option {} has a type {} does not take",
                    o.name, spec.name
                )))
            }
        };
        args.insert(o.name.clone(), v);
    }
    spec.validate(&args)?;
    Ok(args)
}

/// The command a slash command invocation asks for: its catalog entry
/// (group and subcommand flattened), its option values checked against
/// that entry, then the one command parser. `not_found` for a command the
/// catalog does not offer on Discord, `bad_request` for bad values.
pub fn slash_command(catalog: &Catalog, data: &CommandData) -> Result<Command, CoreError> {
    let (name, options) = flatten(&data.name, &data.options);
    let Some(spec) = catalog
        .commands()
        .iter()
        .find(|s| s.name == name && s.on(Surface::Discord))
    else {
        return Err(CoreError::NotFound(format!(
            "/{name} is not a command here; try /help"
        )));
    };
    to_args(spec, &options).and_then(|a| parse::chat_command(spec.ws_type(), &a))
}

impl InteractionHandler {
    /// A handler over the core, the shared rate limits and the role maps of `cfg`.
    pub fn new(dispatch: Arc<Dispatcher>, cfg: &DiscordConfig) -> Self {
        InteractionHandler {
            core: dispatch.core().clone(),
            dispatch,
            roles: cfg.roles.clone(),
            users: cfg.users.clone(),
            told_limited: DashMap::new(),
        }
    }

    /// The role of a Discord user: the highest of their user mapping and
    /// their guild roles' mappings; `viewer` when nothing matches.
    fn role_of(&self, who: &Who<'_>) -> Role {
        let by_user = self.users.get(&who.user.id.get().to_string()).copied();
        let by_roles = who
            .role_ids
            .iter()
            .filter_map(|r| self.roles.get(r).copied());
        by_user
            .into_iter()
            .chain(by_roles)
            .max()
            .unwrap_or(Role::Viewer)
    }

    fn caller(&self, who: &Who<'_>) -> Caller {
        Caller {
            identity: format!("discord:{}", who.user.name),
            role: self.role_of(who),
            capabilities: vec![],
            platform: Platform::Discord,
        }
    }

    /// Renders an error; a rate-limited user is told once per limited
    /// window, later refusals in the same window get no answer.
    fn refusal(&self, who: &Who<'_>, e: &CoreError) -> Outcome {
        let CoreError::RateLimited { retry_after_ms, .. } = e else {
            return error(e);
        };
        let user_id = who.user.id.get();
        let now = Instant::now();
        if self
            .told_limited
            .get(&user_id)
            .is_some_and(|until| *until > now)
        {
            tracing::debug!(
                platform = "discord",
                user = user_id,
                "limited again; not told twice"
            );
            return Outcome::Silent;
        }
        let wait = Duration::from_millis(*retry_after_ms);
        self.told_limited.insert(user_id, now + wait);
        if self.told_limited.len() > 10_000 {
            self.told_limited.retain(|_, until| *until > now);
        }
        let secs = retry_after_ms.div_ceil(1000).max(1);
        message(render::notice(&format!(
            "You are going too fast; try again in {secs} s. ({e})"
        )))
    }

    /// Answers any interaction. Pings are answered by the transports.
    pub async fn handle(&self, interaction: Interaction) -> Outcome {
        use tracing::Instrument;
        let span = tracing::info_span!("discord_interaction", platform = "discord");
        async move {
            match interaction {
                Interaction::Command(c) => self.command(c).await,
                Interaction::Autocomplete(c) => self.autocomplete(c).await,
                Interaction::Component(c) => self.component(c).await,
                Interaction::Ping(_) => Outcome::Respond(CreateInteractionResponse::Pong),
                _ => message(render::notice("This kind of interaction is not supported.")),
            }
        }
        .instrument(span)
        .await
    }

    async fn command(&self, c: CommandInteraction) -> Outcome {
        let who = Who::of(&c.user, c.member.as_deref());
        let caller = self.caller(&who);
        tracing::debug!(command = %c.data.name, identity = %caller.identity, "slash command");
        let cmd = match slash_command(&self.core.catalog, &c.data) {
            Ok(cmd) => cmd,
            Err(e) => return error(&e),
        };
        // reasoning may take longer than Discord waits for an answer: defer
        let deferred = match &cmd {
            Command::Reason { prompt, .. } => Some(prompt.clone()),
            Command::Recommend { question } => Some(
                question
                    .clone()
                    .unwrap_or_else(|| "Recommendations for the swarm".into()),
            ),
            _ => None,
        };
        if let Some(prompt) = deferred {
            return match self.dispatch.admit(&caller, cmd) {
                Ok(admitted) => Outcome::Deferred {
                    response: CreateInteractionResponse::Defer(
                        CreateInteractionResponseMessage::new(),
                    ),
                    follow_up: FollowUp::Reason {
                        token: c.token.clone(),
                        prompt,
                        admitted,
                    },
                },
                Err(e) => self.refusal(&who, &e),
            };
        }
        // Search results can quote direct messages the caller may read:
        // only the caller sees them.
        let private = matches!(cmd, Command::Search(_));
        match self.dispatch.dispatch(&caller, cmd).await {
            Ok(Reply::Help { command }) => message(render::help_message(
                &self.help(caller.role, command.as_deref()),
            )),
            Ok(Reply::Voted(p)) => message(render::poll_message(&p)),
            Ok(reply) => message(render::reply_message(&reply).ephemeral(private)),
            Err(e) => self.refusal(&who, &e),
        }
    }

    fn help(&self, role: Role, command: Option<&str>) -> String {
        let catalog = &self.core.catalog;
        if let Some(name) = command {
            let name = name.trim().trim_start_matches('/');
            if let Some(spec) = catalog
                .commands()
                .iter()
                .find(|s| s.name == name && s.on(Surface::Discord))
            {
                let mut text = format!(
                    "`/{}`: {} (role {})",
                    spec.usage(),
                    spec.description,
                    spec.role
                );
                for o in &spec.options {
                    text.push_str(&format!("\n• `{}`: {}", o.name, o.description));
                }
                return text;
            }
            return format!("/{name} is not a command here.");
        }
        catalog.help_line(Surface::Discord, role, "/")
    }

    async fn component(&self, c: ComponentInteraction) -> Outcome {
        let who = Who::of(&c.user, c.member.as_ref());
        let caller = self.caller(&who);
        let cmd = match parse_vote_button(&c.data.custom_id) {
            Some((poll_id, option)) => Command::PollVote {
                poll_id: Some(poll_id),
                option,
            },
            None => match parse_button(&c.data.custom_id) {
                Some(cmd) => cmd,
                None => {
                    return error(&CoreError::bad_request(format!(
                        "unknown button {:?}",
                        c.data.custom_id
                    )))
                }
            },
        };
        match self.dispatch.dispatch(&caller, cmd).await {
            Ok(Reply::Voted(p)) => Outcome::Respond(CreateInteractionResponse::UpdateMessage(
                render::poll_message(&p),
            )),
            Ok(reply) => Outcome::Respond(CreateInteractionResponse::UpdateMessage(
                render::reply_message(&reply),
            )),
            Err(e) => self.refusal(&who, &e),
        }
    }

    async fn autocomplete(&self, c: CommandInteraction) -> Outcome {
        let (name, _) = flatten(&c.data.name, &c.data.options);
        let Some(focused) = c.data.autocomplete() else {
            return Outcome::Respond(CreateInteractionResponse::Autocomplete(
                CreateAutocompleteResponse::new(),
            ));
        };
        let kind = self
            .core
            .catalog
            .commands()
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.option(focused.name))
            .map(|o| o.kind);
        let typed = focused.value.trim();
        // Autocomplete fires per keystroke: it has its own budget, and a
        // limited user simply gets no suggestions.
        let who = Who::of(&c.user, c.member.as_deref());
        let key = format!("discord-autocomplete:{}", who.user.id.get());
        let allowed = self
            .dispatch
            .rate_limits()
            .check(&key, self.role_of(&who), crate::limits::REQUESTS)
            .is_ok();
        let mut resp = CreateAutocompleteResponse::new();
        if allowed {
            match kind {
                Some(OptionKind::Task) => {
                    for (id, label) in self.task_choices(typed).await {
                        resp = resp.add_int_choice(label, id);
                    }
                }
                Some(OptionKind::Agent) => {
                    for name in self.agent_choices(typed).await {
                        resp = resp.add_string_choice(name.clone(), name);
                    }
                }
                _ => {}
            }
        }
        Outcome::Respond(CreateInteractionResponse::Autocomplete(resp))
    }

    /// Open and claimed tasks whose id starts with what was typed.
    async fn task_choices(&self, typed: &str) -> Vec<(i64, String)> {
        let prefix = typed.trim_start_matches('#');
        let mut out = Vec::new();
        for state in [TaskState::Open, TaskState::Claimed] {
            let tasks = match self.core.list_tasks(Some(state), None, Some(500)).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "autocomplete: cannot list tasks");
                    return out;
                }
            };
            for t in tasks {
                if out.len() == AUTOCOMPLETE_MAX {
                    return out;
                }
                if t.id.to_string().starts_with(prefix) {
                    out.push((t.id, render::clip(&format!("#{} {}", t.id, t.title), 100)));
                }
            }
        }
        out
    }

    /// Agent names that start with what was typed (case-insensitive).
    async fn agent_choices(&self, typed: &str) -> Vec<String> {
        let typed = typed.to_lowercase();
        match self.core.agent_views().await {
            Ok(agents) => agents
                .into_iter()
                .filter(|a| a.name.to_lowercase().starts_with(&typed))
                .take(AUTOCOMPLETE_MAX)
                .map(|a| a.name)
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "autocomplete: cannot list agents");
                vec![]
            }
        }
    }
}

/// The command behind a task button (`task:claim:42`, `task:done:42`,
/// `task:release:42`).
/// `poll:vote:<poll>:<option>` → (poll, option); None for anything else.
pub fn parse_vote_button(custom_id: &str) -> Option<(i64, i64)> {
    let mut parts = custom_id.split(':');
    let (Some("poll"), Some("vote"), Some(poll), Some(option), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let poll: i64 = poll.parse().ok().filter(|i| *i > 0)?;
    let option: i64 = option.parse().ok().filter(|i| *i > 0)?;
    Some((poll, option))
}

/// Parses a task button's custom id into the command it runs.
pub fn parse_button(custom_id: &str) -> Option<Command> {
    let mut parts = custom_id.split(':');
    let (Some("task"), Some(action), Some(id), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let task_id: i64 = id.parse().ok().filter(|i| *i > 0)?;
    match action {
        "claim" => Some(Command::TaskClaim {
            task_id: Some(task_id),
            lease_s: None,
        }),
        "done" => Some(Command::TaskComplete {
            task_id,
            result: None,
        }),
        "release" => Some(Command::TaskRelease { task_id }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vote_buttons_parse_and_junk_is_refused() {
        assert_eq!(parse_vote_button("poll:vote:3:2"), Some((3, 2)));
        assert_eq!(parse_vote_button("poll:vote:0:2"), None);
        assert_eq!(parse_vote_button("poll:vote:3"), None);
        assert_eq!(parse_vote_button("task:claim:3"), None);
    }

    #[test]
    fn buttons_parse_into_task_commands_and_junk_is_refused() {
        assert!(matches!(
            parse_button("task:claim:42"),
            Some(Command::TaskClaim {
                task_id: Some(42),
                ..
            })
        ));
        assert!(matches!(
            parse_button("task:done:7"),
            Some(Command::TaskComplete { task_id: 7, .. })
        ));
        assert!(matches!(
            parse_button("task:release:7"),
            Some(Command::TaskRelease { task_id: 7 })
        ));
        for junk in [
            "task:claim",
            "task:claim:x",
            "task:nuke:1",
            "x:claim:1",
            "task:claim:1:2",
            "task:claim:-1",
        ] {
            assert!(parse_button(junk).is_none(), "{junk}");
        }
    }
}
