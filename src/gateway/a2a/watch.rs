//! Follows one swarm task for an A2A stream (or a blocking `SendMessage`):
//! every state change arrives on the event bus (`task.claimed`,
//! `task.completed`, ...), and progress notes, which emit no event, are
//! seen by re-reading the task every [`PROGRESS_POLL`] while the stream is
//! open. Each change becomes a stream response: `statusUpdate`, with an
//! `artifactUpdate` carrying the result before a COMPLETED status. The
//! stream ends after the terminal status, when the client goes away, or at
//! shutdown.

use super::wire;
use crate::core::events::CommittedEvent;
use crate::core::model::{Task, TaskState};
use crate::gateway::AppState;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

/// How often an open stream re-reads its task for new progress notes.
pub const PROGRESS_POLL: Duration = Duration::from_millis(500);

/// What a stream has already told the client about its task.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    state: TaskState,
    assignee: Option<String>,
    progress: Option<String>,
    percent: Option<i64>,
    attempts: i64,
}

impl Seen {
    fn of(t: &Task) -> Self {
        Seen {
            state: t.state,
            assignee: t.assignee.clone(),
            progress: t.progress.clone(),
            percent: t.percent,
            attempts: t.attempts,
        }
    }
}

/// The task id inside a task event's `data` (`{"task": {"id": ...}}`).
#[derive(Deserialize)]
struct TaskEventData {
    task: TaskRef,
}

#[derive(Deserialize)]
struct TaskRef {
    id: i64,
}

/// True when `event` is about task `task_id`.
fn concerns(event: &CommittedEvent, task_id: i64) -> bool {
    event.kind.as_str().starts_with("task.")
        && serde_json::from_str::<TaskEventData>(&event.data).is_ok_and(|d| d.task.id == task_id)
}

/// Sends the stream responses for task `task_id` to `out`: the `Task`
/// itself first when `announce` is set, then one update per change, until
/// the task is terminal, `out` is closed, or the server shuts down.
pub async fn follow(app: AppState, task_id: i64, announce: bool, out: mpsc::Sender<Value>) {
    // Subscribed before the first read, so no change between them is missed.
    let mut events = app.core.bus.observe();
    let Ok(mut current) = app.core.get_task(task_id).await else {
        return;
    };
    if announce
        && out
            .send(serde_json::json!({ "task": wire::task(&current) }))
            .await
            .is_err()
    {
        return;
    }
    if wire::is_terminal(current.state) {
        return;
    }
    let mut seen = Seen::of(&current);
    let mut poll = tokio::time::interval(PROGRESS_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            _ = out.closed() => return,
            _ = poll.tick() => {}
            ev = events.recv() => match ev {
                Ok(ev) if concerns(&ev, task_id) => {}
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
        }
        current = match app.core.get_task(task_id).await {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(task_id, error = %e, "a2a stream: task read failed");
                continue;
            }
        };
        let now = Seen::of(&current);
        if now == seen {
            continue;
        }
        seen = now;
        if let Some(artifact) = wire::artifact(&current) {
            if out
                .send(wire::artifact_update(&current, artifact))
                .await
                .is_err()
            {
                return;
            }
        }
        if out.send(wire::status_update(&current)).await.is_err()
            || wire::is_terminal(current.state)
        {
            return;
        }
    }
}
