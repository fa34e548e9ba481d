//! `swarmbridge serve`: opens the store, starts the background upkeep and
//! the HTTP/WebSocket listener, and shuts all of it down in order.

use crate::bus::Bus;
use crate::catalog::{Catalog, CatalogError};
use crate::config::Config;
use crate::core::announce::AnnounceMark;
use crate::core::{sweeper, Core};
use crate::dispatch::{check_catalog, CatalogMismatch, Dispatcher};
use crate::gateway::discord::announce::Announcer;
use crate::gateway::discord::Discord;
use crate::gateway::limits::AuthFailures;
use crate::gateway::{self, AppState};
use crate::limits::RateLimits;
use crate::reason::{ReasonCache, Reasoner};
use crate::store::{BatchPolicy, StoreError};
use futures_util::future::BoxFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The command catalog is invalid.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The command catalog does not declare exactly the implemented commands.
    #[error("{0}")]
    CatalogMismatch(#[from] CatalogMismatch),
    /// The Discord settings are not usable.
    #[error(transparent)]
    Discord(#[from] crate::gateway::discord::DiscordError),
    /// The reasoning settings are not usable.
    #[error("reasoning: {0}")]
    Reasoning(String),
    /// The embeddings settings are not usable.
    #[error("embeddings: {0}")]
    Embeddings(#[from] crate::embed::EmbedConfigError),
    /// The Twitch front door could not start.
    #[error("twitch: {0}")]
    Twitch(#[from] gateway::twitch::TwitchError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Opens the configured store with `bus` as its event sink and builds the
/// core, with the reasoning engine caching in that store.
pub async fn open_core(cfg: &Config, bus: Arc<Bus>) -> Result<Arc<Core>, ServerError> {
    let batch = BatchPolicy {
        max: cfg.database.batch_max.max(1),
        wait: Duration::from_micros(cfg.database.batch_wait_us),
        writers: cfg.database.writers.max(1),
        busy_timeout: Duration::from_millis(cfg.database.busy_timeout_ms),
    };
    let store = crate::store::open(
        &cfg.database.url,
        cfg.database.read_connections,
        cfg.database.pool_size,
        batch,
        bus.clone(),
    )
    .await?;
    let mut reasoning = cfg.reasoning.clone();
    reasoning.max_prompt_chars = cfg.limits.max_prompt_chars;
    let reasoner = Reasoner::new(reasoning, store.clone() as Arc<dyn ReasonCache>)
        .map_err(|e| ServerError::Reasoning(e.to_string()))?;
    let catalog = load_catalog(cfg)?;
    let core = Core::new(
        store,
        bus,
        Arc::new(reasoner),
        Arc::new(catalog),
        cfg.tasks.clone(),
        cfg.limits.clone(),
        cfg.polls.clone(),
    );
    core.configure_schedules(cfg.schedules.clone());
    core.configure_embeddings(crate::embed::from_config(&cfg.embeddings)?);
    Ok(core)
}

/// The configured command catalog (`catalog.dir`, or the embedded one),
/// checked to declare exactly the commands this build implements.
pub fn load_catalog(cfg: &Config) -> Result<Catalog, ServerError> {
    let catalog = match &cfg.catalog.dir {
        Some(dir) => Catalog::from_dir(std::path::Path::new(dir))?,
        None => Catalog::embedded()?,
    };
    check_catalog(&catalog)?;
    Ok(catalog)
}

/// A server that is listening; dropping it does not stop it, [`Running::shutdown`] does.
pub struct Running {
    addr: SocketAddr,
    /// The core, for tests and embedding.
    pub core: Arc<Core>,
    shutdown: CancellationToken,
    sessions: TaskTracker,
    tasks: JoinSet<()>,
    grace: Duration,
}

impl Running {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, closes WebSockets with 1001, lets requests in flight
    /// finish (up to the grace period), stops the upkeep and writes pending acks.
    pub async fn shutdown(mut self) {
        tracing::info!("shutting down");
        self.shutdown.cancel();
        self.sessions.close();
        if tokio::time::timeout(self.grace, self.sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!("some sessions did not close within the grace period");
        }
        while tokio::time::timeout(self.grace, self.tasks.join_next())
            .await
            .ok()
            .flatten()
            .is_some()
        {}
        self.tasks.abort_all();
        sweeper::flush_acks(&self.core).await;
        tracing::info!("stopped");
    }
}

/// Step 1: the background upkeep that needs only the core and the limits.
fn spawn_upkeep(
    tasks: &mut JoinSet<()>,
    cfg: &Config,
    core: &Arc<Core>,
    rate_limits: &Arc<RateLimits>,
    shutdown: &CancellationToken,
) {
    let ms = |v: u64| Duration::from_millis(v.max(10));
    let handle = crate::observe::prometheus();
    tasks.spawn(crate::periodic::every(
        Duration::from_secs(5),
        shutdown.clone(),
        move || {
            handle.run_upkeep();
            std::future::ready(())
        },
    ));
    let limits = rate_limits.clone();
    tasks.spawn(crate::periodic::every(
        Duration::from_secs(60),
        shutdown.clone(),
        move || {
            limits.retain_recent();
            std::future::ready(())
        },
    ));
    tasks.spawn(sweeper::run_lease_sweeper(
        core.clone(),
        ms(cfg.tasks.sweep_interval_ms),
        shutdown.clone(),
    ));
    tasks.spawn(sweeper::run_poll_sweeper(
        core.clone(),
        ms(cfg.polls.sweep_interval_ms),
        shutdown.clone(),
    ));
    if cfg.tasks.allocation == crate::core::allocation::AllocationMode::Learned {
        tasks.spawn(sweeper::run_offer_sweeper(
            core.clone(),
            ms(cfg.tasks.sweep_interval_ms),
            shutdown.clone(),
        ));
    }
    tasks.spawn(sweeper::run_schedule_sweeper(
        core.clone(),
        ms(cfg.schedules.sweep_interval_ms),
        shutdown.clone(),
    ));
    tasks.spawn(sweeper::run_external_watcher(
        core.clone(),
        ms(cfg.sync.poll_interval_ms),
        shutdown.clone(),
    ));
    tasks.spawn(sweeper::run_ack_flusher(
        core.clone(),
        ms(cfg.sync.ack_flush_ms),
        shutdown.clone(),
    ));
    tasks.spawn(crate::core::retention::run_retention(
        core.clone(),
        cfg.events.clone(),
        shutdown.clone(),
    ));
    if core.embedder().is_configured() {
        // On a shared (PostgreSQL) database one instance at a time embeds.
        let (core, batch) = (core.clone(), cfg.embeddings.batch_size);
        tasks.spawn(crate::store::while_platform_owner(
            cfg.database.url.clone(),
            "search-indexer",
            shutdown.clone(),
            move |ownership: crate::store::PlatformOwnership| {
                crate::embed::indexer::run_indexer(core.clone(), batch, ownership.stop)
            },
        ));
    }
}

/// Step 2: the Twitch front door, when configured (the task to spawn once
/// the listener is up). On a shared (PostgreSQL) database the task waits to
/// own the Twitch login first (see [`owned_twitch`]).
fn prepare_twitch(
    cfg: &Arc<Config>,
    dispatch: &Arc<Dispatcher>,
    shutdown: &CancellationToken,
) -> Result<Option<BoxFuture<'static, ()>>, ServerError> {
    if !cfg.twitch.enabled() {
        return Ok(None);
    }
    dispatch.stats().set_twitch_on();
    if crate::store::is_shared(&cfg.database.url) {
        return Ok(Some(Box::pin(owned_twitch(
            dispatch.clone(),
            cfg.clone(),
            shutdown.clone(),
        ))));
    }
    Ok(Some(Box::pin(gateway::twitch::start(
        dispatch.clone(),
        Arc::new(cfg.twitch.clone()),
        shutdown.clone(),
        Duration::ZERO,
        gateway::twitch::AnnounceResume {
            fence: None,
            backlog: Duration::from_secs(cfg.events.announce_backlog_s),
        },
    )?)))
}

/// Step 3: the Discord front door, when configured: its gateway client and
/// announcer are spawned; the handler is returned for the HTTP endpoint.
fn start_discord(
    tasks: &mut JoinSet<()>,
    cfg: &Arc<Config>,
    dispatch: &Arc<Dispatcher>,
    sessions: &TaskTracker,
    shutdown: &CancellationToken,
) -> Result<Option<Arc<Discord>>, ServerError> {
    let dcfg = &cfg.discord;
    if !dcfg.gateway_on() && !dcfg.interactions_on() {
        return Ok(None);
    }
    let d = Arc::new(Discord::new(
        dcfg,
        dispatch.clone(),
        sessions.clone(),
        shutdown.clone(),
    )?);
    if dcfg.gateway_on() && crate::store::is_shared(&cfg.database.url) {
        // several instances: only the owner holds the gateway (see `owned_discord_gateway`)
        dispatch.stats().set_discord_link(false);
        tasks.spawn(owned_discord_gateway(
            d.clone(),
            dispatch.clone(),
            cfg.clone(),
            shutdown.clone(),
        ));
    } else if dcfg.gateway_on() {
        dispatch.stats().set_discord_link(false);
        tasks.spawn(crate::gateway::discord::run_gateway(
            d.clone(),
            dcfg.clone(),
            shutdown.clone(),
        ));
        if let Some(channel) = dcfg.announce_channel.filter(|c| *c != 0) {
            let announcer = Announcer::new(
                d.http.clone(),
                channel,
                Duration::from_millis(dcfg.announce_coalesce_ms),
                dcfg.announce_burst,
                Duration::from_secs(dcfg.announce_period_s),
            );
            let core = dispatch.core();
            let mark = AnnounceMark::new(core.store.clone(), "discord".into(), None);
            tasks.spawn(announcer.run(
                core.bus.observe(),
                mark,
                Duration::from_secs(cfg.events.announce_backlog_s),
                shutdown.clone(),
            ));
        }
    }
    Ok(Some(d))
}

/// Step 3b: the bottleneck alert loop (`[alerts]`, docs/insights.md). On a
/// shared (PostgreSQL) database one instance at a time evaluates the rules
/// (ownership of `alerts`, like a platform connection), so instances do not
/// raise and clear the same alert in turn; its presence and queues are
/// the ones judged.
fn spawn_alerts(
    tasks: &mut JoinSet<()>,
    cfg: &Arc<Config>,
    dispatch: &Arc<Dispatcher>,
    shutdown: &CancellationToken,
) {
    if !cfg.alerts.enabled {
        return;
    }
    let (core, alerts_cfg, dispatch) = (
        dispatch.core().clone(),
        cfg.alerts.clone(),
        dispatch.clone(),
    );
    let url = cfg.database.url.clone();
    // on a shared database another instance may hold the platform
    // connections, so this one cannot tell whether they are down
    let judge_platforms = !crate::store::is_shared(&url);
    tasks.spawn(crate::store::while_platform_owner(
        url,
        "alerts",
        shutdown.clone(),
        move |ownership: crate::store::PlatformOwnership| {
            let dispatch = dispatch.clone();
            // a platform counts as down once two evaluations in a row saw it down
            let seen_down = Arc::new(std::sync::Mutex::new([false; 2]));
            let probe = move || {
                let core = dispatch.core();
                let stats = dispatch.stats();
                let mut seen = seen_down.lock().unwrap_or_else(|p| p.into_inner());
                let mut platforms_down = Vec::new();
                for (i, (name, link)) in [
                    ("discord", stats.discord_link()),
                    ("twitch", stats.twitch_link()),
                ]
                .into_iter()
                .enumerate()
                {
                    let down = judge_platforms && link == "down";
                    if down && seen[i] {
                        platforms_down.push(name);
                    }
                    seen[i] = down;
                }
                crate::core::alerts::Probes {
                    breaker_open: core.reasoner.is_configured()
                        && core.reasoner.stats().circuit == crate::reason::CircuitState::Open,
                    platforms_down,
                    event_backlog: core.bus.event_backlog(),
                    send_queues: core.bus.send_queue_fill(),
                }
            };
            crate::core::alerts::run_alert_loop(
                core.clone(),
                alerts_cfg.clone(),
                probe,
                ownership.stop,
            )
        },
    ));
}

/// Step 4: binds the listener (port 0 picks a free one).
async fn bind(cfg: &Config) -> Result<(tokio::net::TcpListener, SocketAddr), ServerError> {
    let addr = cfg.listen_addr();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;
    Ok((listener, addr))
}

/// Step 5: serves the HTTP surface (WebSocket, API, dashboard) until
/// shutdown, with the listener's abuse limits (`gateway::listener`).
fn spawn_http(
    tasks: &mut JoinSet<()>,
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: &CancellationToken,
) {
    let limits = gateway::listener::ListenerLimits {
        conns: gateway::limits::ConnLimits::new(&state.cfg.server),
        header_timeout: Duration::from_secs(state.cfg.server.header_timeout_s),
    };
    let app = gateway::router(state);
    tasks.spawn(gateway::listener::serve(
        listener,
        app,
        limits,
        shutdown.clone(),
    ));
}

/// Binds the listener and starts everything; returns once it is listening.
pub async fn start(cfg: Config) -> Result<Running, ServerError> {
    let cfg = Arc::new(cfg);
    let bus = Arc::new(Bus::with_fanout_window(Duration::from_micros(
        cfg.events.fanout_window_us,
    )));
    let core = open_core(&cfg, bus.clone()).await?;
    let shutdown = CancellationToken::new();
    let sessions = TaskTracker::new();
    let mut tasks = JoinSet::new();
    tasks.spawn(bus.run_pacer(shutdown.clone()));
    let rate_limits = Arc::new(RateLimits::new(&cfg.limits));
    let auth_failures = Arc::new(AuthFailures::new(cfg.server.auth_failures));
    let dispatch = Dispatcher::new(core.clone(), rate_limits.clone());

    spawn_upkeep(&mut tasks, &cfg, &core, &rate_limits, &shutdown);
    let failures = auth_failures.clone();
    tasks.spawn(crate::periodic::every(
        Duration::from_secs(60),
        shutdown.clone(),
        move || {
            failures.retain_recent();
            std::future::ready(())
        },
    ));
    let twitch = prepare_twitch(&cfg, &dispatch, &shutdown)?;
    let (listener, addr) = bind(&cfg).await?;
    let discord = start_discord(&mut tasks, &cfg, &dispatch, &sessions, &shutdown)?;
    spawn_alerts(&mut tasks, &cfg, &dispatch, &shutdown);
    let state = AppState {
        core: core.clone(),
        cfg: cfg.clone(),
        dispatch,
        shutdown: shutdown.clone(),
        sessions: sessions.clone(),
        discord,
        auth_failures,
        replay_reads: Arc::new(tokio::sync::Semaphore::new(cfg.events.replay_reads.max(1))),
    };
    spawn_http(&mut tasks, listener, state, &shutdown);
    if let Some(twitch) = twitch {
        tasks.spawn(twitch);
    }
    log_front_doors(&cfg, &core, addr);
    Ok(Running {
        addr,
        core,
        shutdown,
        sessions,
        tasks,
        grace: Duration::from_secs(cfg.server.shutdown_grace_s),
    })
}

/// The start-up lines: where it listens and which front doors are on.
fn log_front_doors(cfg: &Config, core: &Core, addr: SocketAddr) {
    tracing::info!(
        %addr,
        database = %redact_url(&cfg.database.url),
        "listening: WebSocket /ws, HTTP /api, /health, /ready, /metrics, dashboard /"
    );
    tracing::info!(
        reasoning = if core.reasoner.is_configured() {
            "on"
        } else {
            "off"
        },
        model = core.reasoner.model(),
        discord = discord_mode(&cfg.discord),
        twitch = %gateway::twitch::describe(&cfg.twitch),
        "front doors"
    );
}

// ---- platform ownership across instances ---------------------------------
// On a shared (PostgreSQL) database only one instance at a time holds the
// Twitch login and the Discord gateway (with its announcer); another takes
// over when it dies. Slash commands over HTTP interactions, the API and
// WebSocket agents run on every instance.

/// Runs the Twitch front door whenever this instance owns the Twitch login.
async fn owned_twitch(dispatch: Arc<Dispatcher>, cfg: Arc<Config>, shutdown: CancellationToken) {
    let twitch_cfg = Arc::new(cfg.twitch.clone());
    crate::store::while_platform_owner(cfg.database.url.clone(), "twitch", shutdown, |owned| {
        // after another owner, its lines of the last window count against
        // the account's budget too: send nothing for one window
        let quiet = if owned.taken_over {
            Duration::from_millis(twitch_cfg.outbound.window_ms)
        } else {
            Duration::ZERO
        };
        let resume = gateway::twitch::AnnounceResume {
            fence: owned.fence,
            backlog: Duration::from_secs(cfg.events.announce_backlog_s),
        };
        let started = gateway::twitch::start(
            dispatch.clone(),
            twitch_cfg.clone(),
            owned.stop,
            quiet,
            resume,
        );
        async move {
            match started {
                Ok(run) => run.await,
                Err(e) => tracing::error!(platform = "twitch", error = %e, "cannot start Twitch"),
            }
        }
    })
    .await
}

/// Runs the Discord gateway and announcer whenever this instance owns the
/// Discord gateway.
async fn owned_discord_gateway(
    discord: Arc<Discord>,
    dispatch: Arc<Dispatcher>,
    cfg: Arc<Config>,
    shutdown: CancellationToken,
) {
    let dcfg = cfg.discord.clone();
    crate::store::while_platform_owner(cfg.database.url.clone(), "discord", shutdown, |owned| {
        let term = owned.stop.clone();
        let gateway =
            crate::gateway::discord::run_gateway(discord.clone(), dcfg.clone(), term.clone());
        let announcer = dcfg.announce_channel.filter(|c| *c != 0).map(|channel| {
            Announcer::new(
                discord.http.clone(),
                channel,
                Duration::from_millis(dcfg.announce_coalesce_ms),
                dcfg.announce_burst,
                Duration::from_secs(dcfg.announce_period_s),
            )
            .run(
                dispatch.core().bus.observe(),
                AnnounceMark::new(
                    dispatch.core().store.clone(),
                    "discord".into(),
                    owned.fence.clone(),
                ),
                Duration::from_secs(cfg.events.announce_backlog_s),
                term,
            )
        });
        async move {
            match announcer {
                Some(announcer) => {
                    tokio::join!(gateway, announcer);
                }
                None => gateway.await,
            }
        }
    })
    .await
}

/// What of Discord runs, for the start-up line and `config check`.
pub fn discord_mode(d: &crate::config::DiscordConfig) -> &'static str {
    match (d.gateway_on(), d.interactions_on()) {
        (true, true) => "on (gateway + /discord/interactions)",
        (true, false) => "on (gateway)",
        (false, true) => "on (/discord/interactions)",
        (false, false) => "off",
    }
}

/// Hides a password in a database URL for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Runs until SIGINT or SIGTERM, then shuts down in order.
pub async fn serve(cfg: Config) -> Result<(), ServerError> {
    let running = start(cfg).await?;
    wait_for_signal().await;
    running.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_hidden_in_urls() {
        assert_eq!(
            super::redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact_url("swarmbridge.db"), "swarmbridge.db");
    }
}
