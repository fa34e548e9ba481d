//! The command line: clap definitions and the glue that runs each
//! subcommand against the library. Names here are relied on outside.

use crate::bus::Bus;
use crate::config::{Config, ConfigError};
use crate::core::command::{Command, Reply};
use crate::core::model::{Caller, NewTask, Platform, Role, TaskState};
use crate::core::Core;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Prints a line to stdout, ignoring a closed pipe (`swarmbridge task list | head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
use std::process::ExitCode;
use std::sync::Arc;

mod schedule;
pub use schedule::ScheduleCmd;

/// swarmbridge: Discord operators, Twitch viewers and WebSocket agents on one coordination core.
#[derive(Debug, Parser)]
#[command(name = "swarmbridge", version, about)]
pub struct Cli {
    /// A TOML config file layered over the built-in defaults.
    #[arg(long, global = true, env = "SWARMBRIDGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database URL or SQLite path (default: swarmbridge.db in the working directory).
    #[arg(long, global = true, env = "SWARMBRIDGE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Log format: text or json.
    #[arg(long, global = true, value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the bot: WebSocket gateway, HTTP, and every configured platform.
    Serve {
        /// Listen address, e.g. 127.0.0.1:7878 (env SWARMBRIDGE_LISTEN).
        #[arg(long, env = "SWARMBRIDGE_LISTEN")]
        listen: Option<String>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Manage agents.
    #[command(subcommand)]
    Agent(AgentCmd),
    /// Manage tasks.
    #[command(subcommand)]
    Task(TaskCmd),
    /// Send a direct message to an agent.
    Send {
        /// The agent.
        #[arg(long)]
        to: String,
        /// The text.
        text: String,
    },
    /// Broadcast to every agent.
    Broadcast {
        /// The text.
        text: String,
        /// Optional topic.
        #[arg(long)]
        topic: Option<String>,
    },
    /// Manage schedules: tasks or broadcasts on a cron expression or every N minutes.
    #[command(subcommand)]
    Schedule(ScheduleCmd),
    /// Semantic search.
    #[command(subcommand)]
    Search(SearchCmd),
    /// Configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Discord.
    #[command(subcommand)]
    Discord(DiscordCmd),
    /// Speak MCP on stdin/stdout, forwarding to a running server's `/mcp`
    /// (for clients that launch MCP servers as a process).
    Mcp {
        /// The server, e.g. http://127.0.0.1:7878 (env SWARMBRIDGE_MCP_URL).
        #[arg(long, env = "SWARMBRIDGE_MCP_URL")]
        url: String,
        /// The agent token (env SWARMBRIDGE_MCP_TOKEN; never logged).
        #[arg(long, env = "SWARMBRIDGE_MCP_TOKEN", hide_env_values = true)]
        token: String,
    },
}

/// `swarmbridge search ...`
#[derive(Debug, Subcommand)]
pub enum SearchCmd {
    /// Rebuild the vectors: remove them all, then embed every task and
    /// message with the configured `[embeddings]` model.
    Reindex,
}

/// `swarmbridge discord ...`
#[derive(Debug, Subcommand)]
pub enum DiscordCmd {
    /// Register the catalog's slash commands (bulk overwrite; needs
    /// SWARMBRIDGE_DISCORD_TOKEN).
    Register {
        /// Register in this guild only (takes effect at once) instead of globally.
        #[arg(long)]
        guild: Option<u64>,
    },
}

/// `swarmbridge agent ...`
#[derive(Debug, Subcommand)]
pub enum AgentCmd {
    /// Register an agent; prints its token (alone, on one line) once.
    Add {
        /// Agent name (letters, digits, - _ .).
        name: String,
        /// A capability (repeat for several).
        #[arg(long = "capability", short = 'c')]
        capabilities: Vec<String>,
        /// agent, operator or admin.
        #[arg(long, default_value = "agent")]
        role: String,
    },
    /// List agents.
    List,
    /// Revoke an agent's token; its connections are closed.
    Revoke {
        /// Agent name.
        name: String,
    },
}

/// `swarmbridge task ...`
#[derive(Debug, Subcommand)]
pub enum TaskCmd {
    /// Create a task.
    Add {
        /// Title.
        title: String,
        /// Body.
        #[arg(long, default_value = "")]
        body: String,
        /// Priority (higher first).
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        priority: i64,
        /// A required capability (repeat for several).
        #[arg(long)]
        requires: Vec<String>,
        /// A tag (repeat for several).
        #[arg(long)]
        tag: Vec<String>,
    },
    /// List tasks, newest first.
    List {
        /// Only this state.
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

/// `swarmbridge config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Validate the configuration and print what is on.
    Check,
}

fn init_logging(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.log.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::secrets::RedactingStderr::new(
            crate::secrets::configured(cfg),
        ));
    let _ = if cfg.log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

fn load_config(cli: &Cli) -> Result<Config, ConfigError> {
    let mut cfg = Config::load(cli.config.as_deref())?;
    if let Some(url) = &cli.database_url {
        cfg.database.url = url.clone();
    }
    if let Some(f) = &cli.log_format {
        cfg.log.format = f.clone();
    }
    if let Cmd::Serve {
        listen: Some(listen),
    } = &cli.command
    {
        cfg.server.listen = listen.clone();
    }
    cfg.validate()?;
    Ok(cfg)
}

/// The process entry point: parses arguments, runs, maps errors to exit codes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match load_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&cfg);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command, cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn cli_caller() -> Caller {
    let user = std::env::var("USER").unwrap_or_else(|_| "local".into());
    Caller {
        identity: format!("cli:{user}"),
        role: Role::Admin,
        capabilities: vec![],
        platform: Platform::Cli,
    }
}

async fn open(cfg: &Config) -> anyhow::Result<Arc<Core>> {
    // The CLI publishes nothing itself: a running server picks up its
    // writes (events, revocations) within `sync.poll_interval_ms`.
    Ok(crate::server::open_core(cfg, Arc::new(Bus::new())).await?)
}

/// `swarmbridge mcp`: speaks MCP on stdin/stdout and forwards to a running
/// server's `/mcp`.
async fn mcp_bridge(url: &str, token: &str) -> anyhow::Result<()> {
    crate::gateway::mcp::bridge::run_stdio_bridge(url, token).await?;
    Ok(())
}

async fn run(cmd: Cmd, cfg: Config) -> anyhow::Result<()> {
    match cmd {
        Cmd::Serve { .. } => serve(cfg).await,
        Cmd::Mcp { url, token } => mcp_bridge(&url, &token).await,
        Cmd::Migrate => migrate(&cfg).await,
        Cmd::Agent(AgentCmd::Add {
            name,
            capabilities,
            role,
        }) => agent_add(&cfg, &name, capabilities, &role).await,
        Cmd::Agent(AgentCmd::List) => agent_list(&cfg).await,
        Cmd::Agent(AgentCmd::Revoke { name }) => agent_revoke(&cfg, &name).await,
        Cmd::Task(TaskCmd::Add {
            title,
            body,
            priority,
            requires,
            tag,
        }) => {
            let new = NewTask {
                title,
                body,
                priority,
                requires,
                tags: tag,
                max_attempts: None,
                ..NewTask::default()
            };
            task_add(&cfg, new).await
        }
        Cmd::Task(TaskCmd::List { state, limit }) => task_list(&cfg, state, limit).await,
        Cmd::Send { to, text } => send(&cfg, to, text).await,
        Cmd::Broadcast { text, topic } => broadcast(&cfg, text, topic).await,
        Cmd::Discord(DiscordCmd::Register { guild }) => discord_register(&cfg, guild).await,
        Cmd::Config(ConfigCmd::Check) => config_check(&cfg),
        Cmd::Search(SearchCmd::Reindex) => search_reindex(&cfg).await,
        Cmd::Schedule(cmd) => schedule::run(&cfg, cmd).await,
    }
}

/// `swarmbridge search reindex`
async fn search_reindex(cfg: &Config) -> anyhow::Result<()> {
    let core = open(cfg).await?;
    let embedder = core.embedder();
    let started = std::time::Instant::now();
    let n = crate::embed::indexer::reindex(core.clone(), cfg.embeddings.batch_size)
        .await
        .map_err(anyhow::Error::msg)?;
    out!(
        "reindexed {n} item(s) with model {} ({} dimensions) in {:.1} s",
        embedder.model(),
        embedder.dimensions(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `swarmbridge serve`
async fn serve(cfg: Config) -> anyhow::Result<()> {
    crate::server::serve(cfg).await?;
    Ok(())
}

/// `swarmbridge migrate`
async fn migrate(cfg: &Config) -> anyhow::Result<()> {
    let n = crate::store::migrate_only(&cfg.database.url).await?;
    out!(
        "applied {n} migration(s) to {}",
        crate::server::redact_url(&cfg.database.url)
    );
    Ok(())
}

/// `swarmbridge agent add NAME [-c CAP]... [--role ROLE]`
async fn agent_add(
    cfg: &Config,
    name: &str,
    capabilities: Vec<String>,
    role: &str,
) -> anyhow::Result<()> {
    let role: Role = role.parse().map_err(anyhow::Error::msg)?;
    let core = open(cfg).await?;
    let (agent, token) = core.add_agent(name, role, capabilities).await?;
    eprintln!(
        "agent {} added (role {}, capabilities {:?}); its token follows and is shown only once:",
        agent.name, agent.role, agent.capabilities
    );
    out!("{token}");
    Ok(())
}

/// `swarmbridge agent list`
async fn agent_list(cfg: &Config) -> anyhow::Result<()> {
    let core = open(cfg).await?;
    let agents = core.list_agents().await?;
    out!(
        "{:<24} {:<9} {:<8} {:<25} CAPABILITIES",
        "NAME",
        "ROLE",
        "STATUS",
        "LAST SEEN"
    );
    for a in agents {
        out!(
            "{:<24} {:<9} {:<8} {:<25} {}",
            a.name,
            a.role,
            if a.revoked_at.is_some() {
                "revoked"
            } else {
                "active"
            },
            a.last_seen
                .map(crate::clock::rfc3339)
                .unwrap_or_else(|| "never".into()),
            a.capabilities.join(",")
        );
    }
    Ok(())
}

/// `swarmbridge agent revoke NAME`
async fn agent_revoke(cfg: &Config, name: &str) -> anyhow::Result<()> {
    let core = open(cfg).await?;
    core.revoke_agent(name).await?;
    out!("agent {name} revoked");
    Ok(())
}

/// `swarmbridge task add TITLE ...`: prints the new task's id on stdout.
async fn task_add(cfg: &Config, new: NewTask) -> anyhow::Result<()> {
    let core = open(cfg).await?;
    let reply = core
        .execute(&cli_caller(), Command::TaskCreate(new), None)
        .await?;
    if let Reply::Task(Some(t)) = reply {
        out!("{}", t.id);
        eprintln!("task {} created: {}", t.id, t.title);
    }
    Ok(())
}

/// `swarmbridge task list [--state S] [--limit N]`
async fn task_list(cfg: &Config, state: Option<String>, limit: i64) -> anyhow::Result<()> {
    let state = state
        .map(|s| s.parse::<TaskState>())
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let core = open(cfg).await?;
    let tasks = core.list_tasks(state, None, Some(limit)).await?;
    out!(
        "{:>6} {:<9} {:>4} {:<20} TITLE",
        "ID",
        "STATE",
        "PRIO",
        "ASSIGNEE"
    );
    for t in tasks {
        out!(
            "{:>6} {:<9} {:>4} {:<20} {}",
            t.id,
            t.state,
            t.priority,
            t.assignee.as_deref().unwrap_or("-"),
            t.title
        );
    }
    Ok(())
}

/// `swarmbridge send --to NAME TEXT`
async fn send(cfg: &Config, to: String, text: String) -> anyhow::Result<()> {
    let core = open(cfg).await?;
    core.execute(
        &cli_caller(),
        Command::MsgSend {
            to: to.clone(),
            text,
        },
        None,
    )
    .await?;
    out!("message to {to} stored; it is delivered now or when {to} reconnects");
    Ok(())
}

/// `swarmbridge broadcast TEXT [--topic T]`
async fn broadcast(cfg: &Config, text: String, topic: Option<String>) -> anyhow::Result<()> {
    let core = open(cfg).await?;
    core.execute(&cli_caller(), Command::Broadcast { text, topic }, None)
        .await?;
    out!("broadcast stored");
    Ok(())
}

/// `swarmbridge discord register [--guild ID]`
async fn discord_register(cfg: &Config, guild: Option<u64>) -> anyhow::Result<()> {
    if !cfg.discord.gateway_on() {
        anyhow::bail!("SWARMBRIDGE_DISCORD_TOKEN is not set");
    }
    let catalog = crate::server::load_catalog(cfg)?;
    let http = crate::gateway::discord::build_http(&cfg.discord);
    let guild = guild.or(cfg.discord.guild_id);
    let n = crate::gateway::discord::register::register_commands(&http, &catalog, guild).await?;
    match guild {
        Some(g) => println!("registered {n} slash command(s) in guild {g}"),
        None => {
            out!("registered {n} global slash command(s) (Discord may take a while to show them)")
        }
    }
    Ok(())
}

/// `swarmbridge config check`: validates the configuration and prints what is on.
fn config_check(cfg: &Config) -> anyhow::Result<()> {
    let catalog = crate::server::load_catalog(cfg)?;
    crate::reason::Reasoner::new(
        cfg.reasoning.clone(),
        Arc::new(crate::reason::MemoryCache::new()),
    )
    .map_err(|e| anyhow::anyhow!("reasoning: {e}"))?;
    out!("configuration OK");
    out!("  listen:     {}", cfg.server.listen);
    out!(
        "  database:   {}",
        crate::server::redact_url(&cfg.database.url)
    );
    out!(
        "  websocket:  on (/ws), heartbeat {} s",
        cfg.limits.heartbeat_s
    );
    out!(
        "  tasks:      lease {} s, {} attempts",
        cfg.tasks.lease_s,
        cfg.tasks.max_attempts
    );
    out!(
        "  discord:    {}",
        match crate::server::discord_mode(&cfg.discord) {
            "off" => "off (no SWARMBRIDGE_DISCORD_TOKEN or SWARMBRIDGE_DISCORD_PUBLIC_KEY)",
            on => on,
        }
    );
    if cfg.twitch.enabled() {
        out!(
            "  twitch:     {}",
            crate::gateway::twitch::describe(&cfg.twitch)
        );
    } else {
        out!("  twitch:     off (no SWARMBRIDGE_TWITCH_CHANNELS)");
    }
    out!(
        "  catalog:    {} commands ({})",
        catalog.commands().len(),
        cfg.catalog.dir.as_deref().unwrap_or("embedded")
    );
    match &cfg.reasoning.base_url {
        Some(url) => out!("  reasoning:  on ({url}, model {})", cfg.reasoning.model),
        None => out!("  reasoning:  off (no SWARMBRIDGE_REASONING_BASE_URL)"),
    }
    out!(
        "  dashboard:  on (/), {}; /api, /metrics",
        if cfg.dashboard.public {
            "public read-only view"
        } else {
            "token needed (dashboard.public = false)"
        }
    );
    if cfg.alerts.enabled {
        out!(
            "  alerts:     on, every {} ms, repeated every {} s (docs/insights.md)",
            cfg.alerts.interval_ms,
            cfg.alerts.repeat_s
        );
    } else {
        out!("  alerts:     off (alerts.enabled = false)");
    }
    Ok(())
}
