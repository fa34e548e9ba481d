//! The HTTP surface: probes (`/health`, `/ready`, `/metrics`) and the JSON
//! API under `/api`, one file per resource. Every `/api` request is the
//! protocol command of the same name, parsed by [`crate::dispatch::parse`]
//! and run through the dispatcher, so roles, rate classes and metrics are
//! the WebSocket's; every `/api` route is in `/api/openapi.json`.

pub mod agents;
pub mod ai;
pub mod allocation;
pub mod caller;
pub mod events;
pub mod inbox;
pub mod insights;
pub mod openapi;
pub mod polls;
pub mod probe;
pub mod reason;
pub mod schedules;
pub mod search;
pub mod status;
pub mod tasks;

use super::AppState;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The `/api` routes (except `/api/openapi.json`), the `/ai` routes, and
/// the document describing them.
pub fn api_router() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(tasks::list_tasks, tasks::create_task))
        .routes(routes!(tasks::get_task))
        .routes(routes!(tasks::cancel_task))
        .routes(routes!(tasks::assign_task))
        .routes(routes!(agents::list_agents))
        .routes(routes!(agents::agent_stats))
        .routes(routes!(agents::send_message))
        .routes(routes!(agents::broadcast))
        .routes(routes!(inbox::read_inbox))
        .routes(routes!(status::status))
        .routes(routes!(events::events))
        .routes(routes!(polls::poll_open))
        .routes(routes!(polls::poll_get))
        .routes(routes!(polls::poll_vote))
        .routes(routes!(polls::poll_close))
        .routes(routes!(search::search))
        .routes(routes!(reason::reason))
        .routes(routes!(reason::reason_stream))
        .routes(routes!(insights::insights))
        .routes(routes!(insights::alerts))
        .routes(routes!(insights::recommend))
        .routes(routes!(ai::ai_reason))
        .routes(routes!(ai::ai_reason_stream))
        .routes(routes!(search::semantic_search))
        .routes(routes!(schedules::schedule_list, schedules::schedule_add))
        .routes(routes!(schedules::schedule_pause))
        .routes(routes!(schedules::schedule_resume))
        .routes(routes!(schedules::schedule_delete))
        .routes(routes!(allocation::recommend))
        .split_for_parts()
}
