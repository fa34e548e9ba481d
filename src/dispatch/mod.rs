//! The one path every front door takes. A front door authenticates its
//! caller, parses its input into a [`Command`] (with [`parse`]), hands both
//! to [`Dispatcher::dispatch`] and renders the [`Reply`] or the error. The
//! policy is written once, here, in this order:
//!
//! 1. the command must exist on the caller's platform (the catalog's
//!    `platforms`; the CLI, writing to its own database, is not a platform
//!    the catalog lists);
//! 2. the rate limit of the catalog's class, keyed per (platform, identity);
//! 3. the catalog's least role;
//! 4. execution in the core, inside a tracing span carrying `platform`,
//!    `identity`, `command` and `task_id`;
//! 5. metrics: every outcome is counted by command, platform and outcome,
//!    timed, and counted per front door (refusals at any step included).
//!
//! A new front door (MCP, A2A) is then a parser and a renderer.

pub mod parse;
pub mod stats;

pub use stats::{FrontDoorStats, PlatformCommands};

use crate::catalog::{Catalog, CommandSpec, Surface};
use crate::core::command::{Command, Reply, COMMAND_NAMES};
use crate::core::error::CoreError;
use crate::core::model::{Caller, Platform, TaskState};
use crate::core::Core;
use crate::limits::RateLimits;
use crate::reason::Mode;
use metrics::{counter, histogram};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tracing::Instrument;

/// The catalog surface of a platform; None for the CLI.
pub fn surface_of(platform: Platform) -> Option<Surface> {
    match platform {
        Platform::Ws => Some(Surface::Ws),
        Platform::Discord => Some(Surface::Discord),
        Platform::Twitch => Some(Surface::Twitch),
        Platform::Http => Some(Surface::Http),
        Platform::Mcp => Some(Surface::Mcp),
        Platform::A2a => Some(Surface::A2a),
        Platform::Cli => None,
    }
}

/// A catalog that does not match the commands this build implements.
#[derive(Debug, thiserror::Error)]
pub enum CatalogMismatch {
    /// A command the core implements is not declared.
    #[error("the command catalog does not declare `{0}` (every command must be declared; see commands/*.toml)")]
    Missing(String),
    /// A declared command is not one the core implements.
    #[error("the command catalog declares `{0}`, which this build does not implement")]
    Unknown(String),
}

/// Checks at start-up that the catalog declares exactly the commands this
/// build implements, so a `catalog.dir` that leaves one out fails now with
/// its name instead of answering `internal` later.
pub fn check_catalog(catalog: &Catalog) -> Result<(), CatalogMismatch> {
    for name in COMMAND_NAMES {
        if catalog.get(name).is_none() {
            return Err(CatalogMismatch::Missing((*name).to_string()));
        }
    }
    for spec in catalog.commands() {
        if !COMMAND_NAMES.contains(&spec.ws_type()) {
            return Err(CatalogMismatch::Unknown(spec.ws_type().to_string()));
        }
    }
    Ok(())
}

/// Applies the policy and runs commands for every front door; one per
/// server, shared behind an `Arc`.
pub struct Dispatcher {
    core: Arc<Core>,
    rate_limits: Arc<RateLimits>,
    stats: Arc<FrontDoorStats>,
}

/// A command that passed the policy (platform, rate, role, cheap checks)
/// and may run now or later (a front door that answers at once and
/// streams afterwards runs it in the background).
pub struct Admitted {
    dispatcher: Arc<Dispatcher>,
    caller: Caller,
    cmd: Command,
    /// The checked mode of a `reason` (its budget is spent at admission).
    mode: Option<Mode>,
    span: tracing::Span,
}

impl std::fmt::Debug for Admitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admitted")
            .field("caller", &self.caller.identity)
            .field("command", &self.cmd.name())
            .finish()
    }
}

impl Dispatcher {
    /// A dispatcher over the core and the shared rate limits.
    pub fn new(core: Arc<Core>, rate_limits: Arc<RateLimits>) -> Arc<Self> {
        Arc::new(Dispatcher {
            core,
            rate_limits,
            stats: Arc::new(FrontDoorStats::default()),
        })
    }

    /// The core (for reads that are not commands: presence, snapshots).
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// The rate limits (for `welcome.limits.rates`).
    pub fn rate_limits(&self) -> &Arc<RateLimits> {
        &self.rate_limits
    }

    /// Commands served and refused per front door, links, open streams.
    pub fn stats(&self) -> &Arc<FrontDoorStats> {
        &self.stats
    }

    /// Runs `cmd` for `caller` through the whole policy and returns the
    /// reply (or the error) for the front door to render.
    pub async fn dispatch(
        self: &Arc<Self>,
        caller: &Caller,
        cmd: Command,
    ) -> Result<Reply, CoreError> {
        self.admit(caller, cmd)?.run(None).await
    }

    /// Applies the policy to `cmd` without running it: platform, rate
    /// limit, role and the checks that need no I/O (a `reason`'s prompt,
    /// mode and budget). A refusal is counted here.
    pub fn admit(self: &Arc<Self>, caller: &Caller, cmd: Command) -> Result<Admitted, CoreError> {
        let name = cmd.name();
        let spec = self.spec(caller, name)?;
        self.check_rate_class(caller, &spec.rate_class)?;
        if caller.role < spec.role {
            let err = CoreError::Forbidden(format!(
                "{name} needs role {} (you are {})",
                spec.role, caller.role
            ));
            self.refused(caller, name, &err);
            return Err(err);
        }
        let mode = match &cmd {
            Command::Reason { prompt, mode, .. } => {
                match self.core.check_reason(caller, prompt, mode) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        self.refused(caller, name, &e);
                        return Err(e);
                    }
                }
            }
            _ => None,
        };
        let span = tracing::info_span!(
            "command",
            platform = caller.platform.as_str(),
            identity = %caller.identity,
            command = name,
            task_id = cmd.task_id(),
        );
        Ok(Admitted {
            dispatcher: self.clone(),
            caller: caller.clone(),
            cmd,
            mode,
            span,
        })
    }

    /// Counts a request that is not a catalog command (a WebSocket `ping`,
    /// an event stream, agent statistics) against the caller's limit of
    /// `class`; a refusal is counted like a command's.
    pub fn check_rate_class(&self, caller: &Caller, class: &str) -> Result<(), CoreError> {
        let key = format!("{}:{}", caller.platform.as_str(), caller.identity);
        self.rate_limits
            .check(&key, caller.role, class)
            .map_err(|l| {
                counter!("swarmbridge_rate_limited_total",
                    "platform" => caller.platform.as_str(), "class" => l.class.clone())
                .increment(1);
                self.stats.count(caller.platform, false);
                CoreError::RateLimited {
                    message: format!(
                        "rate limit for {} exceeded; retry in {} ms",
                        l.class, l.retry_after_ms
                    ),
                    retry_after_ms: l.retry_after_ms,
                }
            })
    }

    /// The catalog entry of `name`, refused when the caller's platform is
    /// not among its `platforms`.
    fn spec(&self, caller: &Caller, name: &'static str) -> Result<&CommandSpec, CoreError> {
        let Some(spec) = self.core.catalog.get(name) else {
            // check_catalog at start-up makes this unreachable for a served catalog
            let err = CoreError::Internal(format!("{name} is not in the command catalog"));
            self.refused(caller, name, &err);
            return Err(err);
        };
        if let Some(surface) = surface_of(caller.platform) {
            if !spec.on(surface) {
                let err = CoreError::BadRequest(format!(
                    "{name} is not available over {} (the catalog offers it on {})",
                    caller.platform.as_str(),
                    spec.platforms
                        .iter()
                        .map(|p| format!("{p:?}").to_lowercase())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                self.refused(caller, name, &err);
                return Err(err);
            }
        }
        Ok(spec)
    }

    /// Counts a command refused before it reached the core.
    fn refused(&self, caller: &Caller, command: &'static str, err: &CoreError) {
        counter!("swarmbridge_commands_total", "command" => command,
            "platform" => caller.platform.as_str(), "outcome" => err.code())
        .increment(1);
        self.stats.count(caller.platform, false);
    }
}

impl Admitted {
    /// The command that was admitted.
    pub fn command(&self) -> &Command {
        &self.cmd
    }

    /// Runs the command in the core and counts its outcome; with
    /// `deltas`, a `reason` streams its pieces there as they arrive.
    pub async fn run(self, deltas: Option<mpsc::Sender<String>>) -> Result<Reply, CoreError> {
        let Admitted {
            dispatcher,
            caller,
            cmd,
            mode,
            span,
        } = self;
        let name = cmd.name();
        let assigning = matches!(cmd, Command::TaskAssign { .. });
        let started = Instant::now();
        let core = &dispatcher.core;
        let result = {
            let caller = &caller;
            async move {
                match (cmd, mode) {
                    (Command::Reason { prompt, .. }, Some(mode)) => {
                        Ok(Reply::Reason(core.reason(&prompt, mode, deltas).await?))
                    }
                    (cmd, _) => core.execute(caller, cmd, deltas).await,
                }
            }
        }
        .instrument(span)
        .await;
        let elapsed = started.elapsed();
        let platform = caller.platform.as_str();
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.code(),
        };
        counter!("swarmbridge_commands_total", "command" => name, "platform" => platform, "outcome" => outcome)
            .increment(1);
        histogram!("swarmbridge_command_duration_seconds", "command" => name, "platform" => platform)
            .record(elapsed.as_secs_f64());
        dispatcher.stats.count(caller.platform, result.is_ok());
        let claimed = match &result {
            Ok(Reply::Task(Some(t))) => {
                (name == "task.claim" || assigning) && t.state == TaskState::Claimed
            }
            _ => false,
        };
        if claimed {
            counter!("swarmbridge_task_claims_total", "platform" => platform).increment(1);
        }
        if let Err(e) = &result {
            tracing::debug!(platform, command = name, code = e.code(), "refused");
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_catalog_declares_exactly_the_implemented_commands() {
        check_catalog(&Catalog::embedded().unwrap()).unwrap();
    }

    #[test]
    fn a_catalog_that_leaves_a_command_out_is_refused_by_name() {
        let files: Vec<(String, String)> = crate::catalog::EMBEDDED
            .iter()
            .filter(|(f, _)| *f != "status.toml")
            .map(|(f, t)| (f.to_string(), t.to_string()))
            .collect();
        let partial = Catalog::from_files(files).unwrap();
        let err = check_catalog(&partial).unwrap_err().to_string();
        assert!(err.contains("does not declare `status`"), "{err}");
    }
}
