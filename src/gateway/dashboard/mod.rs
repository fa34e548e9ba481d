//! The live dashboard at `/`: one HTML page with its script and style
//! embedded in the binary (no CDN, works offline), reading its own
//! read-only endpoints `/dashboard/snapshot` (JSON) and `/dashboard/events`
//! (Server-Sent Events). With `dashboard.public = false` those two need an
//! agent token like `/api`; the page's actions (create, cancel, broadcast)
//! always call `/api` with the operator token the user enters.

use super::http::caller::{ApiCaller, ApiError};
use super::http::events::{self as rest, EventView};
use super::http::status::{platforms, PlatformsView};
use super::AppState;
use crate::clock::{now_ms, rfc3339};
use crate::core::model::{AgentStats, AgentView, StatusReport, Task, TaskState};
use crate::core::stats::THROUGHPUT_MINUTES;
use crate::dispatch::PlatformCommands;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::collections::BTreeMap;

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");

/// Tasks per state the snapshot carries for the board (open and claimed
/// are what operators act on, so they get the most room).
fn board_limit(state: TaskState) -> i64 {
    match state {
        TaskState::Open | TaskState::Claimed => 200,
        _ => 50,
    }
}

/// Events the snapshot carries to fill the feed on load.
const FEED_EVENTS: i64 = 50;

/// `GET /`: the page.
pub async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX_HTML,
    )
        .into_response()
}

/// `GET /dashboard/app.js`
pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP_JS,
    )
        .into_response()
}

/// `GET /dashboard/app.css`
pub async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP_CSS,
    )
        .into_response()
}

/// Lets the request through when the dashboard is public or it carries a
/// valid agent token.
fn check_access(app: &AppState, caller: Result<ApiCaller, ApiError>) -> Result<(), ApiError> {
    if app.cfg.dashboard.public {
        return Ok(());
    }
    caller.map(|_| ())
}

/// Throughput history: completions per minute, oldest first.
#[derive(Debug, Serialize)]
pub struct Throughput {
    /// Minutes covered (the last one is the current, partial minute).
    pub minutes: usize,
    /// Completions in each minute.
    pub done: Vec<i64>,
}

/// `GET /dashboard/snapshot`: everything the page shows, at once.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// Counts and uptime.
    pub status: StatusReport,
    /// Front doors and the reasoning backend.
    pub platforms: PlatformsView,
    /// Commands served and refused per platform.
    pub commands: Vec<PlatformCommands>,
    /// Active agents with presence and current task.
    pub agents: Vec<AgentView>,
    /// The board: the newest tasks of each state.
    pub tasks: Vec<Task>,
    /// Per-agent statistics by name.
    pub stats: BTreeMap<String, AgentStats>,
    /// Completions per minute.
    pub throughput: Throughput,
    /// The latest events (direct messages without their text), oldest first.
    pub events: Vec<serde_json::Value>,
    /// The performance analysis (the panel shows the slowest queues and
    /// the least reliable agents).
    pub insights: crate::core::insights::Insights,
    /// Active bottleneck alerts, oldest first.
    pub alerts: Vec<crate::core::alerts::Alert>,
    /// The semantic-search indexer: backlog, throughput, errors.
    pub search_index: crate::embed::indexer::IndexerSnapshot,
    /// Whether the read-only view is open without a token.
    pub public: bool,
    /// Server time.
    pub now: String,
}

/// `GET /dashboard/snapshot`
pub async fn snapshot(
    State(app): State<AppState>,
    caller: Result<ApiCaller, ApiError>,
) -> Result<Json<Snapshot>, ApiError> {
    check_access(&app, caller)?;
    let core = &app.core;
    let mut tasks = Vec::new();
    for st in TaskState::ALL {
        tasks.extend(
            core.list_tasks(Some(st), None, Some(board_limit(st)))
                .await?,
        );
    }
    let events = core
        .recent_events(FEED_EVENTS)
        .await?
        .iter()
        .filter_map(|ev| {
            let frame = rest::view_frame(ev, EventView::Redacted);
            serde_json::from_str(&frame).ok()
        })
        .collect();
    Ok(Json(Snapshot {
        status: core.status(),
        platforms: platforms(&app),
        commands: app.dispatch.stats().snapshot(),
        agents: core.agent_views().await?,
        tasks,
        stats: core.all_agent_stats().await?,
        throughput: Throughput {
            minutes: THROUGHPUT_MINUTES,
            done: core.throughput().await?,
        },
        events,
        insights: (*core.insights().await?).clone(),
        alerts: core.active_alerts().await?,
        search_index: core.indexer.snapshot(),
        public: app.cfg.dashboard.public,
        now: rfc3339(now_ms()),
    }))
}

/// `GET /dashboard/events`: the live feed (see [`rest::event_stream`]),
/// with direct messages' text left out.
pub async fn events(
    State(app): State<AppState>,
    caller: Result<ApiCaller, ApiError>,
) -> Result<Response, ApiError> {
    check_access(&app, caller)?;
    rest::event_stream(&app, EventView::Redacted)
}
