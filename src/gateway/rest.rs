//! The JSON API under `/api` for tasks, agents, messages, status and the
//! live event stream, and its OpenAPI document (`/api/openapi.json`).
//!
//! Every endpoint takes an agent token (`Authorization: Bearer`); reads are
//! open to any valid token, writes need role `operator` (cancel: the
//! creator or an operator, as the core rules). Each request is parsed into
//! the core's [`Command`] and run through [`observe::execute`], so the rules,
//! the metrics and the rate limits are the ones every other front door has.

use super::api::{body_error, ApiCaller, ApiError};
use super::AppState;
use crate::core::command::{Command, Reply};
use crate::core::error::CoreError;
use crate::core::events::{CommittedEvent, EventKind};
use crate::core::model::{AgentStats, AgentView, NewTask, Role, StatusReport, Task, TaskState};
use crate::observe::{self, PlatformCommands};
use crate::reason::CircuitState;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::broadcast;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The OpenAPI document's fixed parts; the paths come from the handlers'
/// `#[utoipa::path]` attributes as they are routed.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "swarmbridge API",
        description = "Tasks, agents, messages and live events of a swarmbridge server. \
            Send an agent token as `Authorization: Bearer <token>`; writes need role operator."
    ),
    paths(super::api::reason, super::api::reason_stream),
    components(schemas(ErrorBody, ErrorDetail, super::api::ReasonBody)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// Adds the `bearer` security scheme the paths refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The `/api` routes (except `/api/openapi.json`) and the document describing them.
pub fn router() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_tasks, create_task))
        .routes(routes!(get_task))
        .routes(routes!(cancel_task))
        .routes(routes!(assign_task))
        .routes(routes!(list_agents))
        .routes(routes!(agent_stats))
        .routes(routes!(send_message))
        .routes(routes!(broadcast))
        .routes(routes!(status))
        .routes(routes!(events))
        .split_for_parts()
}

// ---- bodies and replies -------------------------------------------------

/// Every error: `{"error":{"code","message"}}` with the matching status.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The error's protocol code and a message for people.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// `bad_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`,
    /// `rate_limited`, `payload_too_large`, `unavailable` or `internal`.
    pub code: String,
    /// Explanation.
    pub message: String,
}

/// Filters of `GET /api/tasks`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskQuery {
    /// Only tasks in this state (`open`, `claimed`, `done`, `failed`, `cancelled`).
    pub state: Option<String>,
    /// Only tasks held (or last held) by this agent.
    pub assignee: Option<String>,
    /// At most this many, newest first (default 50, at most 500).
    pub limit: Option<i64>,
}

/// `POST /api/tasks`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTaskBody {
    /// Short title.
    pub title: String,
    /// Longer description.
    #[serde(default)]
    pub body: Option<String>,
    /// Higher first (default 0).
    #[serde(default)]
    pub priority: Option<i64>,
    /// Capabilities an agent needs to claim it.
    #[serde(default)]
    pub requires: Option<Vec<String>>,
    /// Free labels.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Claims allowed before it fails for good.
    #[serde(default)]
    pub max_attempts: Option<i64>,
}

/// `POST /api/tasks/{id}/cancel` (the body is optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    /// Why (kept as the task's `error`).
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /api/tasks/{id}/assign`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignBody {
    /// The agent that gets the task.
    pub agent: String,
}

/// `POST /api/messages`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageBody {
    /// Agent name.
    pub to: String,
    /// The text.
    pub text: String,
}

/// `POST /api/broadcast`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BroadcastBody {
    /// The text.
    pub text: String,
    /// An optional topic.
    #[serde(default)]
    pub topic: Option<String>,
}

/// `{"task": {...}}`
#[derive(Serialize, ToSchema)]
pub struct TaskReply {
    /// The task.
    pub task: Task,
}

/// `{"tasks": [...]}`
#[derive(Serialize, ToSchema)]
pub struct TasksReply {
    /// Newest first.
    pub tasks: Vec<Task>,
}

/// `{"agents": [...]}`
#[derive(Serialize, ToSchema)]
pub struct AgentsReply {
    /// Active agents by name, with presence.
    pub agents: Vec<AgentView>,
}

/// `{"ok": true}`
#[derive(Serialize, ToSchema)]
pub struct OkReply {
    /// Always true.
    pub ok: bool,
}

/// The front doors and the reasoning backend, as the dashboard shows them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlatformsView {
    /// Open agent WebSocket connections.
    pub ws_connections: usize,
    /// Open event streams (`/api/events`, `/dashboard/events`).
    pub event_streams: usize,
    /// `off` until the Discord front door exists and is configured.
    pub discord: &'static str,
    /// `off` until the Twitch front door exists and is configured.
    pub twitch: &'static str,
    /// `off` (not configured), `up` (circuit closed), `degraded` (half-open)
    /// or `down` (circuit open).
    pub reasoning: &'static str,
    /// The configured reasoning model.
    pub reasoning_model: String,
}

/// `GET /api/status`: the `status` reply plus the front doors.
#[derive(Serialize, ToSchema)]
pub struct StatusReply {
    /// Counts and uptime (the protocol's `status`).
    #[serde(flatten)]
    pub status: StatusReport,
    /// Front doors and the reasoning backend.
    pub platforms: PlatformsView,
    /// Commands served and refused per platform since start.
    pub commands: Vec<PlatformCommands>,
}

/// The platforms' state now.
pub fn platforms(app: &AppState) -> PlatformsView {
    let core = &app.core;
    let reasoning = if !core.reasoner.is_configured() {
        "off"
    } else {
        match core.reasoner.stats().circuit {
            CircuitState::Closed => "up",
            CircuitState::HalfOpen => "degraded",
            CircuitState::Open => "down",
        }
    };
    PlatformsView {
        ws_connections: core.bus.connections(),
        event_streams: core.front_doors.streams(),
        discord: core.front_doors.discord_link(),
        twitch: core.front_doors.twitch_link(),
        reasoning,
        reasoning_model: core.reasoner.model().to_string(),
    }
}

// ---- helpers ------------------------------------------------------------

/// Refuses callers below `operator` for HTTP writes; counted as a refusal.
fn require_operator(app: &AppState, caller: &ApiCaller, command: &str) -> Result<(), ApiError> {
    if caller.0.role >= Role::Operator {
        return Ok(());
    }
    let err = CoreError::Forbidden(format!(
        "{command} over HTTP needs role operator (you are {})",
        caller.0.role
    ));
    observe::refused(&app.core, &caller.0, command, &err);
    Err(err.into())
}

/// Checks the rate limit for `cmd`, then runs it through the one instrumented path.
async fn run(app: &AppState, caller: &ApiCaller, cmd: Command) -> Result<Reply, ApiError> {
    caller.check_rate(app, cmd.name())?;
    Ok(observe::execute(&app.core, &caller.0, cmd).await?)
}

/// Runs a write that answers `{"ok": true}` and needs an operator.
async fn run_as_operator(
    app: &AppState,
    caller: &ApiCaller,
    cmd: Command,
) -> Result<Json<OkReply>, ApiError> {
    require_operator(app, caller, cmd.name())?;
    run(app, caller, cmd).await?;
    Ok(Json(OkReply { ok: true }))
}

fn task_reply(reply: Reply) -> Result<Json<TaskReply>, ApiError> {
    match reply {
        Reply::Task(Some(task)) => Ok(Json(TaskReply { task })),
        _ => Err(CoreError::Internal("unexpected reply".into()).into()),
    }
}

fn path_id(p: Result<Path<i64>, PathRejection>) -> Result<i64, ApiError> {
    p.map(|Path(id)| id)
        .map_err(|e| CoreError::bad_request(format!("bad task id: {}", e.body_text())).into())
}

fn parse_state(s: Option<&str>) -> Result<Option<TaskState>, ApiError> {
    s.filter(|s| !s.is_empty())
        .map(|s| s.parse::<TaskState>().map_err(CoreError::BadRequest))
        .transpose()
        .map_err(ApiError)
}

// ---- handlers -----------------------------------------------------------

/// Lists tasks, newest first, optionally by state and assignee.
#[utoipa::path(
    get, path = "/api/tasks", tag = "tasks", params(TaskQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Tasks, newest first", body = TasksReply),
        (status = 400, description = "Bad filter", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
    )
)]
pub async fn list_tasks(
    State(app): State<AppState>,
    caller: ApiCaller,
    query: Result<Query<TaskQuery>, QueryRejection>,
) -> Result<Json<TasksReply>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError(CoreError::bad_request(e.body_text())))?;
    let cmd = Command::TaskList {
        state: parse_state(q.state.as_deref())?,
        assignee: q.assignee.filter(|a| !a.is_empty()),
        limit: q.limit,
    };
    match run(&app, &caller, cmd).await? {
        Reply::Tasks(tasks) => Ok(Json(TasksReply { tasks })),
        _ => Err(CoreError::Internal("unexpected reply".into()).into()),
    }
}

/// Creates a task (operator); `task.created` goes to the matching agents.
#[utoipa::path(
    post, path = "/api/tasks", tag = "tasks", request_body = CreateTaskBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = TaskReply),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not an operator", body = ErrorBody),
        (status = 413, description = "Body over server.max_body_bytes", body = ErrorBody),
    )
)]
pub async fn create_task(
    State(app): State<AppState>,
    caller: ApiCaller,
    body: Result<Json<CreateTaskBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body.map_err(body_error)?;
    require_operator(&app, &caller, "task.create")?;
    let cmd = Command::TaskCreate(NewTask {
        title: b.title,
        body: b.body.unwrap_or_default(),
        priority: b.priority.unwrap_or(0),
        requires: b.requires.unwrap_or_default(),
        tags: b.tags.unwrap_or_default(),
        max_attempts: b.max_attempts,
    });
    let reply = task_reply(run(&app, &caller, cmd).await?)?;
    Ok((StatusCode::CREATED, reply).into_response())
}

/// One task.
#[utoipa::path(
    get, path = "/api/tasks/{id}", tag = "tasks",
    params(("id" = i64, Path, description = "Task id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The task", body = TaskReply),
        (status = 404, description = "No such task", body = ErrorBody),
    )
)]
pub async fn get_task(
    State(app): State<AppState>,
    caller: ApiCaller,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<TaskReply>, ApiError> {
    let task_id = path_id(id)?;
    task_reply(run(&app, &caller, Command::TaskGet { task_id }).await?)
}

/// Cancels a task that is not final: its creator or an operator may.
#[utoipa::path(
    post, path = "/api/tasks/{id}/cancel", tag = "tasks",
    params(("id" = i64, Path, description = "Task id")),
    request_body(content = CancelBody, description = "Optional: a reason"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Cancelled", body = TaskReply),
        (status = 403, description = "Neither creator nor operator", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "Already final", body = ErrorBody),
    )
)]
pub async fn cancel_task(
    State(app): State<AppState>,
    caller: ApiCaller,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<CancelBody>, JsonRejection>,
) -> Result<Json<TaskReply>, ApiError> {
    let task_id = path_id(id)?;
    let body = match body {
        Ok(Json(b)) => b,
        // no body at all (no content type) is fine: no reason given
        Err(JsonRejection::MissingJsonContentType(_)) => CancelBody::default(),
        Err(e) => return Err(body_error(e)),
    };
    let cmd = Command::TaskCancel {
        task_id,
        reason: body.reason,
    };
    task_reply(run(&app, &caller, cmd).await?)
}

/// Claims an open task on an agent's behalf (operator); the agent gets `task.offered`.
#[utoipa::path(
    post, path = "/api/tasks/{id}/assign", tag = "tasks",
    params(("id" = i64, Path, description = "Task id")),
    request_body = AssignBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Assigned (claimed by the agent)", body = TaskReply),
        (status = 403, description = "Not an operator", body = ErrorBody),
        (status = 404, description = "No such task or agent", body = ErrorBody),
        (status = 409, description = "Task not open, or the agent holds too many", body = ErrorBody),
    )
)]
pub async fn assign_task(
    State(app): State<AppState>,
    caller: ApiCaller,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<AssignBody>, JsonRejection>,
) -> Result<Json<TaskReply>, ApiError> {
    let task_id = path_id(id)?;
    let Json(b) = body.map_err(body_error)?;
    require_operator(&app, &caller, "task.assign")?;
    let cmd = Command::TaskAssign {
        task_id,
        agent: b.agent,
    };
    task_reply(run(&app, &caller, cmd).await?)
}

/// Every active agent with presence and current task.
#[utoipa::path(
    get, path = "/api/agents", tag = "agents",
    security(("bearer" = [])),
    responses((status = 200, description = "Agents by name", body = AgentsReply))
)]
pub async fn list_agents(
    State(app): State<AppState>,
    caller: ApiCaller,
) -> Result<Json<AgentsReply>, ApiError> {
    match run(&app, &caller, Command::Agents).await? {
        Reply::Agents(agents) => Ok(Json(AgentsReply { agents })),
        _ => Err(CoreError::Internal("unexpected reply".into()).into()),
    }
}

/// One agent's work record: claims, outcomes, time from claim to done.
#[utoipa::path(
    get, path = "/api/agents/{name}/stats", tag = "agents",
    params(("name" = String, Path, description = "Agent name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Statistics (kept across restarts)", body = AgentStats),
        (status = 404, description = "No such agent", body = ErrorBody),
    )
)]
pub async fn agent_stats(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> Result<Json<AgentStats>, ApiError> {
    caller.check_rate(&app, "agents.stats")?;
    Ok(Json(app.core.agent_stats(&name).await?))
}

/// Sends a direct message to an agent (operator).
#[utoipa::path(
    post, path = "/api/messages", tag = "messages", request_body = MessageBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Stored; delivered now or on reconnect", body = OkReply),
        (status = 403, description = "Not an operator", body = ErrorBody),
        (status = 404, description = "No such agent", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    )
)]
pub async fn send_message(
    State(app): State<AppState>,
    caller: ApiCaller,
    body: Result<Json<MessageBody>, JsonRejection>,
) -> Result<Json<OkReply>, ApiError> {
    let Json(b) = body.map_err(body_error)?;
    let cmd = Command::MsgSend {
        to: b.to,
        text: b.text,
    };
    run_as_operator(&app, &caller, cmd).await
}

/// Sends a broadcast to every agent (operator).
#[utoipa::path(
    post, path = "/api/broadcast", tag = "messages", request_body = BroadcastBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Stored and fanned out", body = OkReply),
        (status = 403, description = "Not an operator", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    )
)]
pub async fn broadcast(
    State(app): State<AppState>,
    caller: ApiCaller,
    body: Result<Json<BroadcastBody>, JsonRejection>,
) -> Result<Json<OkReply>, ApiError> {
    let Json(b) = body.map_err(body_error)?;
    let cmd = Command::Broadcast {
        text: b.text,
        topic: b.topic,
    };
    run_as_operator(&app, &caller, cmd).await
}

/// Counts, uptime, front doors and commands per platform.
#[utoipa::path(
    get, path = "/api/status", tag = "status",
    security(("bearer" = [])),
    responses((status = 200, description = "Status", body = StatusReply))
)]
pub async fn status(
    State(app): State<AppState>,
    caller: ApiCaller,
) -> Result<Json<StatusReply>, ApiError> {
    match run(&app, &caller, Command::Status).await? {
        Reply::Status(status) => Ok(Json(StatusReply {
            status,
            platforms: platforms(&app),
            commands: app.core.front_doors.snapshot(),
        })),
        _ => Err(CoreError::Internal("unexpected reply".into()).into()),
    }
}

/// Every committed event as Server-Sent Events: `id:` the event's `seq`,
/// `event:` its kind, `data:` the protocol's event frame. A reader that
/// falls behind gets `event: lagged` with `{"missed": n}`.
#[utoipa::path(
    get, path = "/api/events", tag = "events",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "text/event-stream of event frames", content_type = "text/event-stream", body = String),
        (status = 401, description = "No or bad token", body = ErrorBody),
    )
)]
pub async fn events(State(app): State<AppState>, caller: ApiCaller) -> Result<Response, ApiError> {
    caller.check_rate(&app, "events")?;
    event_stream(&app, EventView::Full)
}

/// How much of each event a stream shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventView {
    /// The frame as agents get it.
    Full,
    /// Direct messages without their text (the public dashboard's feed);
    /// they name their addressee in `data.to` instead.
    Redacted,
}

/// The event frame as `view` shows it.
pub fn view_frame(ev: &CommittedEvent, view: EventView) -> String {
    if view == EventView::Redacted && ev.kind == EventKind::Message {
        redacted_frame(ev)
    } else {
        ev.frame.to_string()
    }
}

/// The SSE form of one committed event.
pub fn sse_event(ev: &CommittedEvent, view: EventView) -> Event {
    let data = view_frame(ev, view);
    Event::default()
        .id(ev.seq.to_string())
        .event(ev.kind.as_str())
        .data(data)
}

fn redacted_frame(ev: &CommittedEvent) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&ev.frame).unwrap_or_default();
    if let Some(d) = v.get_mut("data").and_then(|d| d.as_object_mut()) {
        d.insert("text".into(), serde_json::Value::Null);
        d.insert("to".into(), json!(ev.audience.agents.first()));
    }
    v.to_string()
}

/// Most event streams (`/api/events` and `/dashboard/events` together)
/// open at once; more are refused with `unavailable` (503), so an open
/// dashboard cannot be used to pile up receivers.
pub const MAX_EVENT_STREAMS: usize = 1024;

/// A live stream of every committed event from now on (subscribed before
/// this returns, so nothing committed after the response starts is
/// missed); ends at shutdown. Refused beyond [`MAX_EVENT_STREAMS`].
pub fn event_stream(app: &AppState, view: EventView) -> Result<Response, ApiError> {
    if app.core.front_doors.streams() >= MAX_EVENT_STREAMS {
        return Err(CoreError::Unavailable(format!(
            "{MAX_EVENT_STREAMS} event streams are open already; retry later"
        ))
        .into());
    }
    Ok(live_events(app, view).into_response())
}

fn live_events(
    app: &AppState,
    view: EventView,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>> + Send + 'static> {
    struct Feed {
        rx: broadcast::Receiver<CommittedEvent>,
        stop: tokio_util::sync::CancellationToken,
        _open: observe::StreamGuard,
    }
    let feed = Feed {
        rx: app.core.bus.observe(),
        stop: app.shutdown.clone(),
        _open: observe::stream_opened(&app.core),
    };
    let stream = futures_util::stream::unfold(feed, move |mut feed| async move {
        let ev = tokio::select! {
            _ = feed.stop.cancelled() => return None,
            r = feed.rx.recv() => match r {
                Ok(ev) => sse_event(&ev, view),
                Err(broadcast::error::RecvError::Lagged(n)) => Event::default()
                    .event("lagged")
                    .data(json!({ "missed": n }).to_string()),
                Err(broadcast::error::RecvError::Closed) => return None,
            },
        };
        Some((Ok(ev), feed))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Serves the OpenAPI document as JSON (public).
pub fn openapi_json(doc: &utoipa::openapi::OpenApi) -> Arc<str> {
    Arc::from(
        doc.to_pretty_json()
            .unwrap_or_else(|e| json!({ "error": e.to_string() }).to_string()),
    )
}
