//! The Discord front door. One handler ([`interactions::InteractionHandler`])
//! answers every interaction; two transports feed it: the gateway client
//! (serenity, when `SWARMBRIDGE_DISCORD_TOKEN` is set) and the signed HTTP
//! endpoint `POST /discord/interactions` (when
//! `SWARMBRIDGE_DISCORD_PUBLIC_KEY` is set). Announcements of task and
//! broadcast events go to `SWARMBRIDGE_DISCORD_ANNOUNCE_CHANNEL`.
//! Commands go through the dispatcher; reads for autocomplete call the core.

pub mod announce;
pub mod config;
pub mod http_endpoint;
pub mod interactions;
pub mod register;
pub mod render;

use crate::config::DiscordConfig;
use crate::core::command::Reply;
use crate::core::error::CoreError;
use crate::core::Core;
use crate::dispatch::Dispatcher;
use interactions::{FollowUp, InteractionHandler, Outcome};
use serenity::all::{Context, EventHandler, GatewayIntents, Interaction, Ready};
use serenity::builder::EditInteractionResponse;
use serenity::http::{Http, HttpBuilder};
use serenity::interactions_endpoint::Verifier;
use serenity::model::id::ApplicationId;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Streaming edits of one message are at least this far apart.
pub const EDIT_INTERVAL: Duration = Duration::from_secs(1);

/// Why the Discord front door could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DiscordError {
    /// `discord.public_key` is not a valid Ed25519 key.
    #[error("discord.public_key: {0}")]
    PublicKey(String),
}

/// A REST client for `cfg` (token may be empty in HTTP-interactions-only
/// mode; follow-up webhooks need none). `api_base` replaces
/// `https://discord.com` for every REST call and hands Discord's rate-limit
/// buckets to that proxy; without it serenity's bucket handling applies.
pub fn build_http(cfg: &DiscordConfig) -> Http {
    let token = cfg.token.as_deref().unwrap_or("").trim().to_string();
    let mut b = HttpBuilder::new(token);
    if let Some(base) = cfg.api_base.as_deref().filter(|b| !b.trim().is_empty()) {
        // serenity 0.12 sends requests through its own ratelimiter without
        // the proxy base; a proxy is expected to do the bucket handling
        // itself (as twilight-http-proxy does), so ours is switched off.
        b = b.proxy(base.trim().to_string()).ratelimiter_disabled(true);
    }
    if let Some(app) = cfg.application_id.filter(|a| *a != 0) {
        b = b.application_id(ApplicationId::new(app));
    }
    b.build()
}

/// Everything both transports share.
pub struct Discord {
    /// Runs interactions through the core.
    pub handler: InteractionHandler,
    /// REST for the HTTP endpoint's follow-ups and for announcements.
    pub http: Arc<Http>,
    /// Checks signatures on `POST /discord/interactions` (None: endpoint off).
    pub verifier: Option<Verifier>,
    core: Arc<Core>,
    dispatch: Arc<Dispatcher>,
    follow_ups: TaskTracker,
    shutdown: CancellationToken,
}

impl Discord {
    /// Sets up the front door. Follow-ups run on `follow_ups` (waited for at
    /// shutdown) and stop when `shutdown` fires.
    pub fn new(
        cfg: &DiscordConfig,
        dispatch: Arc<Dispatcher>,
        follow_ups: TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Self, DiscordError> {
        let verifier = match cfg.public_key.as_deref().map(str::trim) {
            Some(k) if !k.is_empty() => {
                let bytes: [u8; 32] = hex::decode(k)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| DiscordError::PublicKey("expected 64 hex digits".into()))?;
                Some(Verifier::try_new(bytes).map_err(|e| DiscordError::PublicKey(e.to_string()))?)
            }
            _ => None,
        };
        Ok(Discord {
            handler: InteractionHandler::new(dispatch.clone(), cfg),
            http: Arc::new(build_http(cfg)),
            verifier,
            core: dispatch.core().clone(),
            dispatch,
            follow_ups,
            shutdown,
        })
    }

    /// Runs a follow-up in the background with `http` (the transport's REST client).
    pub fn spawn_follow_up(&self, http: Arc<Http>, follow_up: FollowUp) {
        let stop = self.shutdown.clone();
        self.follow_ups.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = run_follow_up(http, follow_up) => {}
            }
        });
    }

    /// Answers an interaction over the gateway: the callback goes by REST.
    async fn answer_over_rest(&self, http: Arc<Http>, interaction: Interaction) {
        if let Some(app) = application_of(&interaction) {
            if http.application_id().is_none() {
                http.set_application_id(app);
            }
        }
        let id = interaction.id();
        let token = interaction.token().to_string();
        let (response, follow_up) = match self.handler.handle(interaction).await {
            Outcome::Respond(r) => (r, None),
            Outcome::Deferred {
                response,
                follow_up,
            } => (response, Some(follow_up)),
            Outcome::Silent => return,
        };
        if let Err(e) = http
            .create_interaction_response(id, &token, &response, vec![])
            .await
        {
            tracing::warn!(platform = "discord", error = %e, "interaction response failed");
            return;
        }
        if let Some(f) = follow_up {
            self.spawn_follow_up(http, f);
        }
    }
}

/// The application an interaction belongs to.
pub fn application_of(interaction: &Interaction) -> Option<ApplicationId> {
    match interaction {
        Interaction::Command(c) | Interaction::Autocomplete(c) => Some(c.application_id),
        Interaction::Component(c) => Some(c.application_id),
        Interaction::Ping(p) => Some(p.application_id),
        Interaction::Modal(m) => Some(m.application_id),
        _ => None,
    }
}

/// Finishes deferred work: for `reason`, streams the answer into the
/// original response (at most one edit per [`EDIT_INTERVAL`]) and ends
/// with the full answer or the error.
pub async fn run_follow_up(http: Arc<Http>, follow_up: FollowUp) {
    let FollowUp::Reason {
        token,
        prompt,
        admitted,
    } = follow_up;
    let (tx, mut rx) = mpsc::channel::<String>(64);
    let ask = async move {
        match admitted.run(Some(tx)).await {
            Ok(Reply::Reason(answer)) => Ok(answer),
            Ok(_) => Err(CoreError::Internal("unexpected reply".into())),
            Err(e) => Err(e),
        }
    };
    tokio::pin!(ask);
    let mut text = String::new();
    let mut last_edit = Instant::now();
    let mut dirty = false;
    let result = loop {
        let next_edit = last_edit + EDIT_INTERVAL;
        tokio::select! {
            r = &mut ask => break r,
            Some(delta) = rx.recv() => { text.push_str(&delta); dirty = true; }
            _ = tokio::time::sleep_until(next_edit), if dirty => {
                let edit = EditInteractionResponse::new()
                    .embed(render::reason_embed(&prompt, &text, None));
                if let Err(e) = http.edit_original_interaction_response(&token, &edit, vec![]).await {
                    tracing::warn!(platform = "discord", error = %e, "streaming edit failed");
                }
                last_edit = Instant::now();
                dirty = false;
            }
        }
    };
    let edit = match result {
        Ok(answer) => EditInteractionResponse::new().embed(render::reason_embed(
            &prompt,
            &answer.text,
            Some(&answer),
        )),
        Err(e) => EditInteractionResponse::new().embed(
            serenity::builder::CreateEmbed::new()
                .colour(serenity::model::Colour(0xe74c3c))
                .description(render::clip(&e.to_string(), render::DESCRIPTION_MAX)),
        ),
    };
    // Keep the one-edit-per-interval promise for the final edit too.
    tokio::time::sleep_until(last_edit + EDIT_INTERVAL).await;
    if let Err(e) = http
        .edit_original_interaction_response(&token, &edit, vec![])
        .await
    {
        tracing::warn!(platform = "discord", error = %e, "final edit failed");
    }
}

struct GatewayEvents {
    discord: Arc<Discord>,
}

#[serenity::async_trait]
impl EventHandler for GatewayEvents {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        self.discord.dispatch.stats().set_discord_link(true);
        tracing::info!(
            platform = "discord",
            user = %ready.user.name,
            guilds = ready.guilds.len(),
            "Discord gateway ready"
        );
    }

    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        self.discord
            .answer_over_rest(ctx.http.clone(), interaction)
            .await;
    }
}

/// Runs the gateway client until `stop` fires, reconnecting with backoff
/// when the client ends with an error. Registers the commands first when
/// `register_on_start` is set.
pub async fn run_gateway(discord: Arc<Discord>, cfg: DiscordConfig, stop: CancellationToken) {
    if cfg.register_on_start {
        let catalog = discord.core.catalog.clone();
        if let Err(e) = register::register_commands(&discord.http, &catalog, cfg.guild_id).await {
            tracing::error!(platform = "discord", error = %e, "command registration failed");
        }
    }
    let mut backoff = Duration::from_secs(1);
    loop {
        let handler = GatewayEvents {
            discord: discord.clone(),
        };
        let client = serenity::client::ClientBuilder::new_with_http(
            build_http(&cfg),
            GatewayIntents::GUILDS,
        )
        .event_handler(handler)
        .await;
        let mut client = match client {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(platform = "discord", error = %e, "cannot build the Discord client");
                return;
            }
        };
        let shards = client.shard_manager.clone();
        tokio::select! {
            _ = stop.cancelled() => {
                shards.shutdown_all().await;
                return;
            }
            r = client.start() => {
                discord.dispatch.stats().set_discord_link(false);
                match r {
                    Ok(()) => tracing::warn!(platform = "discord", "gateway client ended"),
                    Err(e) => tracing::error!(platform = "discord", error = %e, "gateway client failed"),
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}
