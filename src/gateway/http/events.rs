//! `GET /api/events`: every committed event as Server-Sent Events, and the
//! live stream the dashboard's feed shares.

use super::caller::{ApiCaller, ApiError};
use super::openapi::ErrorBody;
use crate::core::error::CoreError;
use crate::core::events::{CommittedEvent, EventKind};
use crate::dispatch::stats::{stream_opened, StreamGuard};
use crate::gateway::AppState;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::convert::Infallible;
use tokio::sync::broadcast;

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
    caller.check_rate(&app)?;
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
    if app.dispatch.stats().streams() >= MAX_EVENT_STREAMS {
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
        _open: StreamGuard,
    }
    let feed = Feed {
        rx: app.core.bus.observe(),
        stop: app.shutdown.clone(),
        _open: stream_opened(app.dispatch.stats()),
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
