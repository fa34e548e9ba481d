//! Task operations: the rules of the life cycle (who may do what, in which
//! state) and the events each change emits. The store runs each rule inside
//! the transaction that writes its result.

use super::error::CoreError;
use super::events::{Audience, EventKind, NewEvent};
use super::model::{Caller, NewTask, Role, Task, TaskState};
use super::store::{timed, ClaimGuard};
use super::Core;
use crate::clock::Millis;
use serde_json::json;

/// Longest lease a claim may ask for: one day.
pub const MAX_LEASE_S: i64 = 86_400;
/// Most tasks one `task.list` returns.
pub const MAX_LIST: i64 = 500;
/// Most expired leases one sweep handles in one transaction (the store's
/// `expire_due` limit).
pub const EXPIRE_BATCH: usize = 500;

/// The event every task change emits: `{"task": {...}}` to `audience`.
fn task_event(kind: EventKind, task: &Task, audience: Audience) -> NewEvent {
    NewEvent {
        kind,
        data: json!({ "task": task }),
        audience,
    }
}

/// The creator (when an agent) and an assignee (when an agent).
fn creator_and(task: &Task, assignee: Option<&str>) -> Audience {
    let mut names = vec![task.created_by.as_str()];
    names.extend(assignee);
    Audience::agents(names)
}

fn not_claimed(task: &Task) -> CoreError {
    CoreError::Conflict(format!("task {} is {}, not claimed", task.id, task.state))
}

/// Refuses unless the task is claimed by the caller.
fn must_hold(task: &Task, caller: &Caller) -> Result<(), CoreError> {
    if task.state != TaskState::Claimed {
        return Err(not_claimed(task));
    }
    if task.assignee.as_deref() != Some(caller.identity.as_str()) {
        return Err(CoreError::Forbidden(format!(
            "task {} is claimed by {}; only the assignee may do that",
            task.id,
            task.assignee.as_deref().unwrap_or("nobody")
        )));
    }
    Ok(())
}

/// The events a new task emits: `task.created` to its creator (when an
/// agent) and to every agent whose capabilities cover its `requires`.
///
/// Learned allocation: a task offered to an agent is announced to its
/// creator and that agent only (`task.created`, then `task.offered` to the
/// agent); the others hear of it when the offer lapses ([`lapsed_events`]).
pub(crate) fn created_events(task: &Task) -> Vec<NewEvent> {
    match &task.offered_to {
        Some(agent) => vec![
            task_event(
                EventKind::TaskCreated,
                task,
                Audience::agents([task.created_by.as_str(), agent.as_str()]),
            ),
            task_event(EventKind::TaskOffered, task, Audience::agents([agent])),
        ],
        None => {
            let mut audience = Audience::agents([task.created_by.as_str()]);
            audience.requires = Some(task.requires.clone());
            vec![task_event(EventKind::TaskCreated, task, audience)]
        }
    }
}

/// The events of an offer that lapsed: the offer is cleared and, while the
/// task is still open, every capable agent gets `task.created` (it may
/// claim the task now).
fn lapsed_events(task: &mut Task) -> Vec<NewEvent> {
    task.offered_to = None;
    task.offer_expires_at = None;
    if task.state != TaskState::Open {
        return vec![];
    }
    let audience = Audience {
        requires: Some(task.requires.clone()),
        ..Audience::default()
    };
    vec![task_event(EventKind::TaskCreated, task, audience)]
}

/// Starts a claim of an open task by `who` with a lease of `lease_ms`.
fn start_claim(task: &mut Task, who: &str, now: Millis, lease_ms: i64) {
    task.state = TaskState::Claimed;
    task.assignee = Some(who.to_string());
    task.lease_expires_at = Some(now + lease_ms);
    task.attempts += 1;
    task.progress = None;
    task.percent = None;
}

/// Ends a claim: back to open, or failed for good once attempts are used up
/// (or `retry` is false).
fn end_claim_unsuccessfully(task: &mut Task, retry: bool) {
    task.state = if retry && task.attempts < task.max_attempts {
        TaskState::Open
    } else {
        TaskState::Failed
    };
    task.assignee = if task.state == TaskState::Open {
        None
    } else {
        task.assignee.take()
    };
    task.lease_expires_at = None;
}

impl Core {
    fn lease_ms(&self, lease_s: Option<i64>) -> Result<i64, CoreError> {
        let s = lease_s.unwrap_or(self.tasks_cfg.lease_s as i64);
        if !(1..=MAX_LEASE_S).contains(&s) {
            return Err(CoreError::bad_request(format!(
                "`lease_s` must be between 1 and {MAX_LEASE_S}, got {s}"
            )));
        }
        Ok(s * 1000)
    }

    fn guard(&self, agent: &str) -> ClaimGuard {
        ClaimGuard {
            agent: agent.to_string(),
            max_claims: self.limits.max_claims as i64,
        }
    }

    /// Checks (and trims) what a new task asks for: title, body, lists,
    /// attempts; each `bad_request` names the field.
    pub(crate) fn check_new_task(&self, new: &mut NewTask) -> Result<(), CoreError> {
        new.title = new.title.trim().to_string();
        self.check_text("title", &new.title, true)?;
        self.check_text("body", &new.body, false)?;
        for list in [&mut new.requires, &mut new.tags] {
            list.retain(|s| !s.trim().is_empty());
            list.dedup();
            if list.len() > 32 || list.iter().any(|s| s.chars().count() > 64) {
                return Err(CoreError::bad_request(
                    "`requires` and `tags` take at most 32 entries of at most 64 characters",
                ));
            }
        }
        if let Some(m) = new.max_attempts {
            if !(1..=100).contains(&m) {
                return Err(CoreError::bad_request(format!(
                    "`max_attempts` must be between 1 and 100, got {m}"
                )));
            }
        }
        Ok(())
    }

    /// Creates a task; `task.created` goes to the creator and to every agent
    /// whose capabilities cover its `requires`.
    pub async fn create_task(&self, caller: &Caller, mut new: NewTask) -> Result<Task, CoreError> {
        self.check_new_task(&mut new)?;
        new.offered_to = None;
        new.offer_expires_at = None;
        if let Some(agent) = self.offer_for(&new.requires).await? {
            new.offered_to = Some(agent);
            new.offer_expires_at =
                Some(crate::clock::now_ms() + self.tasks_cfg.offer_window_ms as i64);
        }
        let task = self
            .store
            .create_task(
                new,
                caller.identity.clone(),
                self.tasks_cfg.max_attempts as i64,
                Box::new(created_events),
            )
            .await?;
        Ok(task)
    }

    /// Claims task `task_id` (which must be open and whose `requires` the
    /// caller must cover), or the best open task the caller's capabilities
    /// cover; `Ok(None)` when nothing matches.
    pub async fn claim_task(
        &self,
        caller: &Caller,
        task_id: Option<i64>,
        lease_s: Option<i64>,
    ) -> Result<Option<Task>, CoreError> {
        let lease_ms = self.lease_ms(lease_s)?;
        let who = caller.identity.clone();
        let caps = caller.capabilities.clone();
        let check_caps = caller.is_agent();
        let claim = move |task: &mut Task, now: Millis| -> Result<Vec<NewEvent>, CoreError> {
            if task.state != TaskState::Open {
                return Err(CoreError::Conflict(match &task.assignee {
                    Some(a) if task.state == TaskState::Claimed => {
                        format!("task {} is claimed by {a}", task.id)
                    }
                    _ => format!("task {} is {}, not open", task.id, task.state),
                }));
            }
            if task.offered_to_other(&who, now) {
                return Err(CoreError::Conflict(format!(
                    "task {} is offered to {} until {}",
                    task.id,
                    task.offered_to.as_deref().unwrap_or("another agent"),
                    crate::clock::rfc3339(task.offer_expires_at.unwrap_or(now))
                )));
            }
            if check_caps && !super::events::covers(&caps, &task.requires) {
                return Err(CoreError::Forbidden(format!(
                    "task {} requires capabilities {:?}; {who} has {:?}",
                    task.id, task.requires, caps
                )));
            }
            start_claim(task, &who, now, lease_ms);
            Ok(vec![task_event(
                EventKind::TaskClaimed,
                task,
                creator_and(task, Some(&who)),
            )])
        };
        let guard = self.guard(&caller.identity);
        let task = match task_id {
            Some(id) => Some(
                self.store
                    .update_task(id, Some(guard), Box::new(claim))
                    .await?,
            ),
            None => {
                self.store
                    .claim_next(caller.capabilities.clone(), guard, Box::new(claim))
                    .await?
            }
        };
        Ok(task)
    }

    /// Extends the caller's lease on a task it holds.
    pub async fn renew_task(
        &self,
        caller: &Caller,
        task_id: i64,
        lease_s: Option<i64>,
    ) -> Result<Task, CoreError> {
        let lease_ms = self.lease_ms(lease_s)?;
        let c = caller.clone();
        Ok(self
            .store
            .update_task(
                task_id,
                None,
                Box::new(move |task: &mut Task, now| {
                    must_hold(task, &c)?;
                    task.lease_expires_at = Some(now + lease_ms);
                    Ok(vec![])
                }),
            )
            .await?)
    }

    /// Records a progress note on a task the caller holds.
    pub async fn progress_task(
        &self,
        caller: &Caller,
        task_id: i64,
        note: String,
        percent: Option<i64>,
    ) -> Result<Task, CoreError> {
        self.check_text("note", &note, false)?;
        if let Some(p) = percent {
            if !(0..=100).contains(&p) {
                return Err(CoreError::bad_request(format!(
                    "`percent` must be between 0 and 100, got {p}"
                )));
            }
        }
        let c = caller.clone();
        Ok(self
            .store
            .update_task(
                task_id,
                None,
                Box::new(move |task: &mut Task, _now| {
                    must_hold(task, &c)?;
                    task.progress = Some(note);
                    task.percent = percent;
                    Ok(vec![])
                }),
            )
            .await?)
    }

    /// Completes a task the caller holds; `task.completed` goes to the
    /// creator and the assignee.
    pub async fn complete_task(
        &self,
        caller: &Caller,
        task_id: i64,
        result: Option<serde_json::Value>,
    ) -> Result<Task, CoreError> {
        let c = caller.clone();
        Ok(self
            .store
            .update_task(
                task_id,
                None,
                Box::new(move |task: &mut Task, _now| {
                    must_hold(task, &c)?;
                    task.state = TaskState::Done;
                    task.lease_expires_at = None;
                    task.result = result;
                    task.percent = Some(100);
                    Ok(vec![task_event(
                        EventKind::TaskCompleted,
                        task,
                        creator_and(task, Some(&c.identity)),
                    )])
                }),
            )
            .await?)
    }

    /// Fails a task the caller holds: back to open while attempts remain
    /// and `retry` is true, else failed for good.
    pub async fn fail_task(
        &self,
        caller: &Caller,
        task_id: i64,
        error: String,
        retry: bool,
    ) -> Result<Task, CoreError> {
        self.check_text("error", &error, false)?;
        let c = caller.clone();
        Ok(self
            .store
            .update_task(
                task_id,
                None,
                Box::new(move |task: &mut Task, _now| {
                    must_hold(task, &c)?;
                    task.error = Some(error);
                    end_claim_unsuccessfully(task, retry);
                    Ok(vec![task_event(
                        EventKind::TaskFailed,
                        task,
                        creator_and(task, Some(&c.identity)),
                    )])
                }),
            )
            .await?)
    }

    /// Gives a held task back (open again; the attempt still counts).
    pub async fn release_task(&self, caller: &Caller, task_id: i64) -> Result<Task, CoreError> {
        let c = caller.clone();
        Ok(self
            .store
            .update_task(
                task_id,
                None,
                Box::new(move |task: &mut Task, _now| {
                    must_hold(task, &c)?;
                    task.state = TaskState::Open;
                    task.assignee = None;
                    task.lease_expires_at = None;
                    Ok(vec![task_event(
                        EventKind::TaskReleased,
                        task,
                        creator_and(task, Some(&c.identity)),
                    )])
                }),
            )
            .await?)
    }

    /// Cancels a task that is not final; the creator or an operator may.
    pub async fn cancel_task(
        &self,
        caller: &Caller,
        task_id: i64,
        reason: Option<String>,
    ) -> Result<Task, CoreError> {
        if let Some(r) = &reason {
            self.check_text("reason", r, false)?;
        }
        let c = caller.clone();
        Ok(self
            .store
            .update_task(
                task_id,
                None,
                Box::new(move |task: &mut Task, _now| {
                    if task.created_by != c.identity && c.role < Role::Operator {
                        return Err(CoreError::Forbidden(format!(
                            "only the creator of task {} ({}) or an operator may cancel it",
                            task.id, task.created_by
                        )));
                    }
                    if task.state.is_final() {
                        return Err(CoreError::Conflict(format!(
                            "task {} is already {}",
                            task.id, task.state
                        )));
                    }
                    let holder = task.assignee.clone();
                    task.state = TaskState::Cancelled;
                    task.lease_expires_at = None;
                    task.error = reason.or_else(|| Some(format!("cancelled by {}", c.identity)));
                    Ok(vec![task_event(
                        EventKind::TaskCancelled,
                        task,
                        creator_and(task, holder.as_deref()),
                    )])
                }),
            )
            .await?)
    }

    /// Claims an open task on behalf of `agent` (operators); the agent gets
    /// `task.offered`.
    pub async fn assign_task(
        &self,
        _caller: &Caller,
        task_id: i64,
        agent: String,
    ) -> Result<Task, CoreError> {
        match self.store.agent(&agent).await? {
            Some(a) if a.revoked_at.is_none() => {}
            _ => return Err(CoreError::NotFound(format!("no agent named {agent}"))),
        }
        let lease_ms = self.lease_ms(None)?;
        let guard = self.guard(&agent);
        Ok(self
            .store
            .update_task(
                task_id,
                Some(guard),
                Box::new(move |task: &mut Task, now| {
                    if task.state != TaskState::Open {
                        return Err(CoreError::Conflict(format!(
                            "task {} is {}, not open",
                            task.id, task.state
                        )));
                    }
                    start_claim(task, &agent, now, lease_ms);
                    let mut events = vec![task_event(
                        EventKind::TaskOffered,
                        task,
                        Audience::agents([agent.as_str()]),
                    )];
                    if task.created_by != agent {
                        events.push(task_event(
                            EventKind::TaskClaimed,
                            task,
                            Audience::agents([task.created_by.as_str()]),
                        ));
                    }
                    Ok(events)
                }),
            )
            .await?)
    }

    /// One task; `not_found` when it does not exist.
    pub async fn get_task(&self, task_id: i64) -> Result<Task, CoreError> {
        timed("task", self.store.task(task_id))
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("task {task_id} does not exist")))
    }

    /// Tasks, newest first.
    pub async fn list_tasks(
        &self,
        state: Option<TaskState>,
        assignee: Option<&str>,
        limit: Option<i64>,
    ) -> Result<Vec<Task>, CoreError> {
        let limit = limit.unwrap_or(50);
        if !(1..=MAX_LIST).contains(&limit) {
            return Err(CoreError::bad_request(format!(
                "`limit` must be between 1 and {MAX_LIST}, got {limit}"
            )));
        }
        Ok(timed("list_tasks", self.store.list_tasks(state, assignee, limit)).await?)
    }

    /// Ends every offer whose window has passed (learned allocation): the
    /// task is then claimable by anyone, and capable agents get `task.created`.
    pub async fn lapse_offers(&self) -> Result<Vec<Task>, CoreError> {
        Ok(self
            .store
            .lapse_offers(
                EXPIRE_BATCH as i64,
                Box::new(|task: &mut Task, _now| lapsed_events(task)),
            )
            .await?)
    }

    /// Returns every claim whose lease ran out to open (or failed once its
    /// attempts are used up) and emits `task.expired` to creator and holder.
    pub async fn expire_leases(&self) -> Result<Vec<Task>, CoreError> {
        Ok(self
            .store
            .expire_due(
                EXPIRE_BATCH as i64,
                Box::new(|task: &mut Task, _now| {
                    let holder = task.assignee.clone();
                    task.error = Some(format!(
                        "lease of {} expired",
                        holder.as_deref().unwrap_or("its holder")
                    ));
                    end_claim_unsuccessfully(task, true);
                    vec![task_event(
                        EventKind::TaskExpired,
                        task,
                        creator_and(task, holder.as_deref()),
                    )]
                }),
            )
            .await?)
    }
}
