//! The Twitch chat front door: viewers type `!status`, `!tasks`, `!agents`,
//! `!task 42`, `!help`, `!ask ...`; the broadcaster and moderators may
//! `!broadcast TEXT`. Commands come from the catalog (`twitch` aliases),
//! roles from badges and `twitch.operators`, answers are one line sent as a
//! reply to the asker's message. Everything the bot says goes through
//! [`outbound`], which keeps Twitch's limits; [`announce`] puts task events
//! and broadcasts in chat; [`transport`] connects with backoff.
//!
//! Without an OAuth token the bot joins anonymously and only reads.

pub mod announce;
pub mod config;
pub mod credentials;
pub mod outbound;
pub mod render;
pub mod tags;
pub mod transport;

use crate::catalog::{CommandSpec, Surface};
use crate::config::TwitchConfig;
use crate::core::command::{Command, Reply};
use crate::core::error::CoreError;
use crate::core::model::{Caller, Platform, Role};
use crate::core::Core;
use crate::dispatch::{parse, Admitted, Dispatcher};
use async_trait::async_trait;
use credentials::TwitchCredentials;
use outbound::{ChatSink, OutLine, Outbound};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use transport::{Link, PlainTransport, SlotTaken, TlsTransport};
use twitch_irc::message::{Badge, IRCMessage, IRCTags, PrivmsgMessage, ServerMessage};
use twitch_irc::transport::Transport;
use twitch_irc::{ClientConfig, TwitchIRCClient};

/// Reasoning questions answered at once; more get "busy".
const MAX_ASKS: usize = 4;
/// Viewers whose cooldown is remembered before old entries are forgotten.
const MAX_COOLDOWNS: usize = 10_000;
/// The longest argument text that still coalesces with equal questions.
const MAX_KEY_ARGS: usize = 100;

/// Why the Twitch front door could not start.
#[derive(Debug, thiserror::Error)]
pub enum TwitchError {
    /// One Twitch client per process.
    #[error(transparent)]
    SlotTaken(#[from] SlotTaken),
}

/// A one-line summary for the start-up log: `off`, or the channels and
/// whether the bot answers.
pub fn describe(cfg: &TwitchConfig) -> String {
    if !cfg.enabled() {
        return "off".into();
    }
    format!(
        "on ({} channel(s), {})",
        cfg.channels.0.len(),
        if cfg.token().is_some() {
            "answering"
        } else {
            "anonymous, read-only"
        }
    )
}

/// How announcing resumes when the front door starts.
#[derive(Debug, Clone, Default)]
pub struct AnnounceResume {
    /// Ownership of the Twitch login on a shared database, fencing the
    /// channels' announcement marks; None when this server alone uses it.
    pub fence: Option<crate::core::store::OwnerFence>,
    /// Events committed while nobody announced are announced when younger
    /// than this (`events.announce_backlog_s`).
    pub backlog: Duration,
}

/// Prepares the front door (claiming the process's Twitch slot) and returns
/// the task to spawn; it runs until `shutdown` and stops everything it started.
/// Nothing is said in chat for the first `quiet` (lines queue meanwhile): a
/// new owner of the login after a hand-over waits out the window whose
/// budget the previous owner may have spent.
///
/// Announcements resume from each channel's mark (events at most
/// `resume.backlog` old); marks are written fenced by `resume.fence`.
pub fn start(
    dispatch: Arc<Dispatcher>,
    cfg: Arc<TwitchConfig>,
    shutdown: CancellationToken,
    quiet: Duration,
    resume: AnnounceResume,
) -> Result<impl Future<Output = ()> + Send + 'static, TwitchError> {
    let stop = shutdown.child_token();
    let link = Link::new(
        cfg.server.clone(),
        cfg.reconnect.clone(),
        cfg.channels.0.len(),
        cfg.outbound.joins,
        Duration::from_millis(cfg.outbound.join_window_ms),
        stop.clone(),
    );
    let guard = transport::install(link.clone())?;
    Ok(async move {
        if cfg.server.is_some() {
            run::<PlainTransport>(dispatch, cfg, link, stop, quiet, resume).await;
        } else {
            run::<TlsTransport>(dispatch, cfg, link, stop, quiet, resume).await;
        }
        drop(guard);
    })
}

/// Writes lines through the twitch-irc client as PRIVMSGs, replies tagged
/// with `reply-parent-msg-id`. The text is ours (never starting with `/` or
/// `.`), so it goes out as it is, without twitch-irc's `. ` escape.
struct IrcSink<T: Transport>(TwitchIRCClient<T, TwitchCredentials>);

#[async_trait]
impl<T: Transport> ChatSink for IrcSink<T> {
    async fn send_line(&self, line: &OutLine) -> Result<(), String> {
        let mut tags = IRCTags::new();
        if let Some(id) = &line.reply_to {
            tags.0.insert("reply-parent-msg-id".into(), id.clone());
        }
        let msg = IRCMessage::new(
            tags,
            None,
            "PRIVMSG".into(),
            vec![format!("#{}", line.channel), line.text.clone()],
        );
        self.0.send_message(msg).await.map_err(|e| e.to_string())
    }
}

struct Cooldown {
    last: Instant,
    warned: bool,
}

/// The inbound side: turns chat lines into commands and replies.
struct Door {
    core: Arc<Core>,
    dispatch: Arc<Dispatcher>,
    cfg: Arc<TwitchConfig>,
    outbound: Arc<Outbound>,
    link: Arc<Link>,
    creds: TwitchCredentials,
    login: String,
    answering: bool,
    cooldowns: HashMap<String, Cooldown>,
    asks: Arc<Semaphore>,
    stop: CancellationToken,
}

async fn run<T: Transport>(
    dispatch: Arc<Dispatcher>,
    cfg: Arc<TwitchConfig>,
    link: Arc<Link>,
    stop: CancellationToken,
    quiet: Duration,
    resume: AnnounceResume,
) {
    let core = dispatch.core().clone();
    let creds = cfg.credentials();
    let answering = cfg.token().is_some() || creds.can_refresh();
    let login = creds.login().to_string();
    let mut client_cfg = ClientConfig::new_simple(creds.clone());
    client_cfg.new_connection_every = Duration::from_millis(cfg.reconnect.min_interval_ms);
    client_cfg.connect_timeout =
        Duration::from_millis(cfg.reconnect.max_ms) + Duration::from_secs(20);
    client_cfg.tracing_identifier = Some("twitch".into());
    // One connection carries every channel and every line: our sender paces
    // the lines, and a second connection would only split the JOIN state.
    client_cfg.max_channels_per_connection = cfg.channels.0.len().max(1);
    client_cfg.max_waiting_messages_per_connection = 1_000;
    let (mut incoming, client) = TwitchIRCClient::<T, TwitchCredentials>::new(client_cfg);
    tracing::info!(
        platform = "twitch",
        server = %link.target(),
        channels = ?cfg.channels.0,
        "twitch: starting"
    );
    if !answering {
        tracing::warn!(
            platform = "twitch",
            "twitch: no OAuth token (SWARMBRIDGE_TWITCH_OAUTH_TOKEN): joined anonymously, reading only; the bot cannot answer or announce"
        );
    }
    let wanted: HashSet<String> = cfg.channels.0.iter().cloned().collect();
    if let Err(e) = client.set_wanted_channels(wanted) {
        tracing::error!(platform = "twitch", error = %e, "twitch: invalid channel name; not joining");
        return;
    }
    let outbound = Outbound::new(cfg.outbound.clone());
    if !quiet.is_zero() {
        tracing::info!(
            platform = "twitch",
            quiet_ms = quiet.as_millis() as u64,
            "twitch: took the login over from another instance; quiet for one window (the account's line budget may be spent)"
        );
        outbound.quiet_until(Instant::now() + quiet);
    }
    let mut tasks = JoinSet::new();
    if answering {
        let sink: Arc<dyn ChatSink> = Arc::new(IrcSink(client.clone()));
        let marks = announce::marks(&core, &cfg, resume.fence);
        tasks.spawn(
            outbound
                .clone()
                .run_sender(sink, link.clone(), marks.clone(), stop.clone()),
        );
        tasks.spawn(announce::run_announcer(
            core.clone(),
            cfg.clone(),
            outbound.clone(),
            marks,
            resume.backlog,
            stop.clone(),
        ));
    }
    let mut door = Door {
        core,
        dispatch,
        cfg,
        outbound,
        link,
        creds,
        login,
        answering,
        cooldowns: HashMap::new(),
        asks: Arc::new(Semaphore::new(MAX_ASKS)),
        stop: stop.clone(),
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            msg = incoming.recv() => match msg {
                Some(m) => door.on_message(m, &mut tasks).await,
                None => break,
            },
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = done {
                    if e.is_panic() {
                        tracing::error!(platform = "twitch", error = %e, "twitch: a task panicked");
                    }
                }
            }
        }
    }
    stop.cancel();
    drop(client);
    drop(incoming);
    while tasks.join_next().await.is_some() {}
    tracing::info!(platform = "twitch", "twitch: stopped");
}

/// Twitch's NOTICEs for a refused login (`PASS` with an expired, revoked
/// or malformed token).
fn is_login_refusal(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("login authentication failed")
        || t.contains("improperly formatted auth")
        || t.contains("login unsuccessful")
}

impl Door {
    async fn on_message(&mut self, msg: ServerMessage, tasks: &mut JoinSet<()>) {
        if msg.source().command == "001" {
            self.link.welcomed();
            return;
        }
        match msg {
            ServerMessage::Join(j) if j.user_login == self.login => {
                tracing::debug!(platform = "twitch", channel = %j.channel_login, "twitch: joined");
                self.outbound
                    .set_joined(&j.channel_login, self.link.epoch());
            }
            ServerMessage::UserState(u) => {
                let moderator = u
                    .badges
                    .iter()
                    .any(|b| b.name == "moderator" || b.name == "broadcaster");
                self.outbound.set_moderator(&u.channel_login, moderator);
            }
            ServerMessage::Notice(n)
                if n.channel_login.is_none() && is_login_refusal(&n.message_text) =>
            {
                let why = render::fit(&render::clean(&n.message_text), 200);
                tracing::error!(
                    platform = "twitch",
                    login = %self.login,
                    refresh = self.creds.can_refresh(),
                    "twitch: login refused: {why}; {}",
                    if self.creds.can_refresh() {
                        "refreshing the OAuth token"
                    } else {
                        "set a new SWARMBRIDGE_TWITCH_OAUTH_TOKEN, or twitch.refresh_token with client_id and client_secret"
                    }
                );
                self.link.login_failed(&why);
                self.creds.refused().await;
            }
            ServerMessage::Notice(n) => {
                tracing::warn!(
                    platform = "twitch",
                    channel = ?n.channel_login,
                    notice = ?n.message_id,
                    text = %render::fit(&render::clean(&n.message_text), 200),
                    "twitch: server notice"
                );
            }
            ServerMessage::Reconnect(_) => {
                tracing::info!(platform = "twitch", "twitch: server asked us to reconnect");
            }
            ServerMessage::Privmsg(m) => self.on_privmsg(m, tasks).await,
            _ => {}
        }
    }

    fn role_of(&self, badges: &[Badge], login: &str) -> Role {
        let mut role = badges
            .iter()
            .filter_map(|b| self.cfg.badges.get(&b.name).copied())
            .max()
            .unwrap_or(Role::Viewer);
        if self
            .cfg
            .operators
            .iter()
            .any(|o| o.eq_ignore_ascii_case(login))
        {
            role = role.max(Role::Operator);
        }
        role
    }

    /// True when `viewer` may run a command now; the first refused command
    /// within a cooldown gets one short notice, later ones nothing.
    fn pass_cooldown(&mut self, m: &PrivmsgMessage) -> bool {
        let now = Instant::now();
        let cooldown = Duration::from_millis(self.cfg.cooldown_ms);
        let viewer = &m.sender.login;
        if let Some(c) = self.cooldowns.get_mut(viewer) {
            if now.duration_since(c.last) < cooldown {
                if !c.warned {
                    c.warned = true;
                    let wait = (cooldown - now.duration_since(c.last)).as_secs() + 1;
                    self.outbound.push_reply(
                        &m.channel_login,
                        Some("\u{0}cooldown"),
                        &m.message_id,
                        viewer,
                        format!(
                            "one command every {}s please (wait {wait}s)",
                            cooldown.as_secs().max(1)
                        ),
                    );
                }
                return false;
            }
        }
        if self.cooldowns.len() >= MAX_COOLDOWNS {
            self.cooldowns
                .retain(|_, c| now.duration_since(c.last) < cooldown);
        }
        self.cooldowns.insert(
            viewer.clone(),
            Cooldown {
                last: now,
                warned: false,
            },
        );
        true
    }

    async fn on_privmsg(&mut self, m: PrivmsgMessage, tasks: &mut JoinSet<()>) {
        if m.sender.login.eq_ignore_ascii_case(&self.login) {
            return; // our own line relayed back: never answer it
        }
        let Some((alias, args)) = split_command(&m.message_text, &self.cfg.prefix) else {
            return;
        };
        let core = self.core.clone();
        let Some(spec) = core
            .catalog
            .by_twitch_alias(&alias)
            .filter(|s| s.on(Surface::Twitch))
        else {
            return; // not ours (other bots share prefixes)
        };
        if !self.answering || !self.pass_cooldown(&m) {
            return;
        }
        let viewer = m.sender.login.clone();
        let channel = m.channel_login.clone();
        let role = self.role_of(&m.badges, &viewer);
        let key = query_key(spec, args, role);
        if let Some(k) = &key {
            if self.outbound.join_waiting(&channel, k, &viewer) {
                return;
            }
        }
        let caller = Caller {
            identity: format!("twitch:{viewer}"),
            role,
            capabilities: vec![],
            platform: Platform::Twitch,
        };
        let cmd = match spec
            .parse_positional(args)
            .and_then(|a| parse::chat_command(spec.ws_type(), &a))
        {
            Ok(cmd) => cmd,
            Err(e) => {
                let body = render::error(&e);
                return self
                    .outbound
                    .push_reply(&channel, None, &m.message_id, &viewer, body);
            }
        };
        let reply = if matches!(cmd, Command::Reason { .. }) {
            match self.ask(&caller, cmd, &channel, &m.message_id, tasks) {
                Ok(()) => return,
                Err(e) => Err(e),
            }
        } else {
            self.dispatch.dispatch(&caller, cmd).await
        };
        let body = match reply {
            Ok(Reply::Help { command }) => self.help(command.as_deref(), role),
            Ok(r) => render::reply(&r),
            Err(CoreError::RateLimited { retry_after_ms, .. }) => {
                return self.outbound.push_reply(
                    &channel,
                    Some("\u{0}limited"),
                    &m.message_id,
                    &viewer,
                    format!(
                        "slow down, try again in {}s",
                        retry_after_ms.div_ceil(1000).max(1)
                    ),
                );
            }
            Err(e) => render::error(&e),
        };
        self.outbound
            .push_reply(&channel, key.as_deref(), &m.message_id, &viewer, body);
    }

    /// Admits a reasoning question and answers it in the background; the
    /// error to answer now when it cannot start.
    fn ask(
        &self,
        caller: &Caller,
        cmd: Command,
        channel: &str,
        msg_id: &str,
        tasks: &mut JoinSet<()>,
    ) -> Result<(), CoreError> {
        if !self.core.reasoner.is_configured() {
            return Err(CoreError::Unavailable(format!(
                "{}ask is not configured on this bot",
                self.cfg.prefix
            )));
        }
        let Ok(permit) = self.asks.clone().try_acquire_owned() else {
            return Err(CoreError::Unavailable(
                "busy answering others, ask again in a moment".into(),
            ));
        };
        let admitted: Admitted = self.dispatch.admit(caller, cmd)?;
        let outbound = self.outbound.clone();
        let stop = self.stop.clone();
        let (channel, msg_id) = (channel.to_string(), msg_id.to_string());
        let viewer = caller
            .identity
            .strip_prefix("twitch:")
            .unwrap_or(&caller.identity)
            .to_string();
        let max = self.cfg.outbound.max_chars.min(render::ASK_MAX_CHARS);
        tasks.spawn(async move {
            let _permit = permit;
            let answer = tokio::select! {
                _ = stop.cancelled() => return,
                a = admitted.run(None) => a,
            };
            let body = match answer {
                Ok(Reply::Reason(a)) => render::fit_words(&render::clean(&a.text), max),
                Ok(other) => render::reply(&other),
                Err(e) => render::error(&e),
            };
            outbound.push_reply(&channel, None, &msg_id, &viewer, body);
        });
        Ok(())
    }

    fn help(&self, command: Option<&str>, role: Role) -> String {
        let prefix = &self.cfg.prefix;
        let catalog = &self.core.catalog;
        let Some(name) = command else {
            return catalog.help_line(Surface::Twitch, role, prefix);
        };
        let alias = name
            .trim_start_matches(prefix.as_str())
            .to_ascii_lowercase();
        match catalog.by_twitch_alias(&alias) {
            Some(spec) => {
                let mut usage = format!("{prefix}{alias}");
                for o in &spec.options {
                    if o.required {
                        usage.push_str(&format!(" <{}>", o.name));
                    } else {
                        usage.push_str(&format!(" [{}]", o.name));
                    }
                }
                format!("{usage}: {} (role {})", spec.description, spec.role)
            }
            None => format!(
                "no command {}; {}",
                render::fit(&render::clean(name), 32),
                catalog.help_line(Surface::Twitch, role, prefix)
            ),
        }
    }
}

/// A chat line that starts with `prefix` (after blanks) as its alias,
/// lowercased, and the argument text after it, trimmed: `!Task 42` →
/// (`task`, `42`). None for a line that is not a command.
pub fn split_command<'a>(text: &'a str, prefix: &str) -> Option<(String, &'a str)> {
    let rest = text.trim_start().strip_prefix(prefix)?;
    let (alias, args) = match rest.split_once(char::is_whitespace) {
        Some((a, r)) => (a, r.trim()),
        None => (rest, ""),
    };
    Some((alias.to_ascii_lowercase(), args))
}

/// The coalescing key of a read-only query (a viewer command of the
/// `requests` class): equal questions from the same role get one answer.
pub fn query_key(spec: &CommandSpec, args: &str, role: Role) -> Option<String> {
    if !spec.read_only || spec.role != Role::Viewer || args.chars().count() > MAX_KEY_ARGS {
        return None;
    }
    let args = args
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    Some(format!("{}\u{1}{args}\u{1}{role}", spec.ws_type()))
}
