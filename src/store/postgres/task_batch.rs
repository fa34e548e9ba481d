//! The task changes and claims of one write batch, made set-based: a
//! handful of statements for the whole batch instead of three or four per
//! request. Each statement is a round trip and a wake-up of the server
//! process, which on a busy machine costs more than the statement itself.
//!
//! In order, on the batch's connection, inside its transaction:
//!
//! 1. the claim locks of every agent with a guard (`max_claims`), in key
//!    order, then their claim counts (a statement of its own, so the count
//!    sees every claim another instance committed before the lock was ours);
//! 2. the tasks changed by id, locked `FOR UPDATE` in id order;
//! 3. for each set of capabilities among the claim-nexts, that many open
//!    tasks, best first, `FOR UPDATE SKIP LOCKED` (never a task changed by
//!    id in this batch);
//! 4. the core's rules run on the loaded tasks in arrival order, each on a
//!    copy that is kept only if the rule accepts; counts of held claims
//!    follow each accepted change, so a guard sees the batch's own claims;
//! 5. every changed task and its run record are written in one statement
//!    (a task changed twice in the batch is written change by change).
//!
//! A request the rules refuse is answered with its error and leaves no
//! trace; a failed statement fails the phase, which the writer rolls back
//! to its savepoint and answers for every request of the phase.

use super::tasks::{
    run_decision, save_task_and_run, task_from_row, RunDecision, AGENT_CLAIMS_LOCK, TASK_COLS,
};
use crate::clock::Millis;
use crate::core::error::CoreError;
use crate::core::events::NewEvent;
use crate::core::model::{Task, TaskState};
use crate::core::store::{count_delta, ClaimGuard, CountDelta, StoreError, TaskChange};
use sqlx::{PgConnection, Row};
use std::any::Any;
use std::collections::{BTreeMap, HashMap, HashSet};

/// A task request the writer batches set-based.
pub(in crate::store::postgres) enum TaskOp {
    /// Change task `id` (a claim by id carries the claimant's guard).
    Change {
        id: i64,
        guard: Option<ClaimGuard>,
        change: TaskChange,
    },
    /// Claim the best open task `capabilities` cover.
    ClaimNext {
        capabilities: Vec<String>,
        guard: ClaimGuard,
        claim: TaskChange,
    },
}

/// What one request of the phase produced: its value (a `Task` for a
/// change, an `Option<Task>` for a claim-next) and count delta, or its
/// refusal; and its events.
pub(in crate::store::postgres) type Outcome = (
    Result<(Box<dyn Any + Send>, CountDelta), StoreError>,
    Vec<NewEvent>,
);

/// An accepted change, as it is written.
struct Change {
    task: Task,
    runs: RunDecision,
}

/// The open tasks picked for one set of capabilities.
struct Picked {
    tasks: Vec<Task>,
    /// The pick returned as many rows as it asked for: more may be open.
    full: bool,
}

/// Claims held per agent, as the batch's accepted changes leave them.
#[derive(Default)]
struct Held(HashMap<String, i64>);

impl Held {
    fn of(&self, agent: &str) -> i64 {
        self.0.get(agent).copied().unwrap_or(0)
    }

    fn apply(&mut self, before: TaskState, holder: Option<&str>, after: &Task) {
        if before == TaskState::Claimed {
            if let Some(h) = holder {
                *self.0.entry(h.to_string()).or_default() -= 1;
            }
        }
        if after.state == TaskState::Claimed {
            if let Some(a) = &after.assignee {
                *self.0.entry(a.clone()).or_default() += 1;
            }
        }
    }
}

/// Runs `ops` on `conn` at `now`; one outcome per op, in order.
pub(in crate::store::postgres) async fn run(
    conn: &mut PgConnection,
    now: Millis,
    ops: Vec<TaskOp>,
) -> Result<Vec<Outcome>, StoreError> {
    let mut agents: Vec<String> = Vec::new();
    let mut groups: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
    for op in &ops {
        match op {
            TaskOp::Change { guard, .. } => agents.extend(guard.as_ref().map(|g| g.agent.clone())),
            TaskOp::ClaimNext {
                capabilities,
                guard,
                ..
            } => {
                agents.push(guard.agent.clone());
                groups
                    .entry(caps_key(capabilities))
                    .or_default()
                    .push(guard.agent.clone());
            }
        }
    }
    let mut held = lock_and_count_claims(conn, agents).await?;
    let change_ids: Vec<i64> = {
        let mut ids: Vec<i64> = ops
            .iter()
            .filter_map(|op| match op {
                TaskOp::Change { id, .. } => Some(*id),
                TaskOp::ClaimNext { .. } => None,
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let mut current: HashMap<i64, Task> = lock_by_id(conn, &change_ids).await?;
    let picks = pick_open(conn, now, groups, &change_ids).await?;
    // every row this transaction holds: a fallback pick must pass them over
    let mut held_rows: Vec<i64> = change_ids.clone();
    for p in picks.values() {
        held_rows.extend(p.tasks.iter().map(|t| t.id));
    }

    let mut taken: HashSet<i64> = HashSet::new();
    let mut changes: Vec<Change> = Vec::new();
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(ops.len());
    for op in ops {
        let outcome = match op {
            TaskOp::Change { id, guard, change } => match current.get(&id).cloned() {
                None => outcome::<Task>(Err(CoreError::NotFound(format!(
                    "task {id} does not exist"
                ))
                .into())),
                Some(task) => {
                    let refused = match &guard {
                        Some(g) if task.state == TaskState::Open => {
                            g.check(held.of(&g.agent)).err()
                        }
                        _ => None,
                    };
                    match refused {
                        Some(e) => outcome::<Task>(Err(e.into())),
                        None => outcome(apply(task, now, change, &mut held, &mut changes).map(
                            |(task, delta, events)| {
                                current.insert(id, task.clone());
                                (task, delta, events)
                            },
                        )),
                    }
                }
            },
            TaskOp::ClaimNext {
                capabilities,
                guard,
                claim,
            } => {
                if let Err(e) = guard.check(held.of(&guard.agent)) {
                    outcome::<Option<Task>>(Err(e.into()))
                } else {
                    let key = caps_key(&capabilities);
                    let picked = picks.get(&key).expect("a pick per capability set");
                    let mut found = picked
                        .tasks
                        .iter()
                        .find(|t| !taken.contains(&t.id) && !t.offered_to_other(&guard.agent, now))
                        .cloned();
                    if found.is_none() && picked.full {
                        found =
                            pick_one(conn, now, &capabilities, &guard.agent, &held_rows).await?;
                        if let Some(t) = &found {
                            held_rows.push(t.id);
                        }
                    }
                    match found {
                        None => outcome(Ok((None::<Task>, vec![], vec![]))),
                        Some(task) => {
                            taken.insert(task.id);
                            outcome(
                                apply(task, now, claim, &mut held, &mut changes)
                                    .map(|(task, delta, events)| (Some(task), delta, events)),
                            )
                        }
                    }
                }
            }
        };
        outcomes.push(outcome);
    }
    save_all(conn, changes).await?;
    Ok(outcomes)
}

/// A request's outcome from its rule's result: the value (boxed, as the
/// writer answers it) with its count delta and events, or the refusal.
fn outcome<T: Send + 'static>(r: Result<(T, CountDelta, Vec<NewEvent>), StoreError>) -> Outcome {
    match r {
        Ok((value, delta, events)) => (Ok((Box::new(value), delta)), events),
        Err(e) => (Err(e), vec![]),
    }
}

/// Runs `change` on `task` (a copy of the batch's current version); keeps
/// the result (in `changes` and the held counts) only if the rule accepts.
fn apply(
    mut t: Task,
    now: Millis,
    change: TaskChange,
    held: &mut Held,
    changes: &mut Vec<Change>,
) -> Result<(Task, CountDelta, Vec<NewEvent>), StoreError> {
    let before = t.state;
    let holder = t.assignee.clone();
    t.updated_at = now;
    let events = change(&mut t, now)?;
    held.apply(before, holder.as_deref(), &t);
    let delta = count_delta(Some(before), t.state);
    changes.push(Change {
        task: t.clone(),
        runs: run_decision(before, holder.as_deref(), &t, &events),
    });
    Ok((t, delta, events))
}

/// A capability set as a map key (order and repeats do not matter).
fn caps_key(caps: &[String]) -> Vec<String> {
    let mut k = caps.to_vec();
    k.sort();
    k.dedup();
    k
}

/// Takes the claim lock of every guarded agent (in key order, so two
/// batches never wait on each other crosswise), then counts their claims.
async fn lock_and_count_claims(
    conn: &mut PgConnection,
    mut agents: Vec<String>,
) -> Result<Held, StoreError> {
    if agents.is_empty() {
        return Ok(Held::default());
    }
    agents.sort_unstable();
    agents.dedup();
    sqlx::query(
        "SELECT pg_advisory_xact_lock($1, k) FROM \
         (SELECT DISTINCT hashtext(a) AS k FROM unnest($2::text[]) AS a ORDER BY k) s",
    )
    .bind(AGENT_CLAIMS_LOCK)
    .bind(&agents)
    .execute(&mut *conn)
    .await?;
    let rows = sqlx::query(
        "SELECT assignee, count(*) AS n FROM tasks WHERE assignee = ANY($1) \
         AND state = 'claimed' GROUP BY assignee",
    )
    .bind(&agents)
    .fetch_all(&mut *conn)
    .await?;
    let mut held = Held::default();
    for r in rows {
        held.0.insert(r.try_get("assignee")?, r.try_get("n")?);
    }
    Ok(held)
}

/// Loads and locks the tasks `ids` (sorted), in id order.
async fn lock_by_id(
    conn: &mut PgConnection,
    ids: &[i64],
) -> Result<HashMap<i64, Task>, StoreError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query(&format!(
        "SELECT {TASK_COLS} FROM tasks WHERE id = ANY($1) ORDER BY id FOR UPDATE"
    ))
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| task_from_row(r).map(|t| (t.id, t)))
        .collect()
}

/// The best open tasks: `$1` capabilities, `$2` claimants (a task offered
/// to one of them is theirs to take), `$3` now, `$4` rows to pass over,
/// `$5` how many.
const PICK_OPEN: &str = "FROM tasks WHERE state = 'open' AND requires <@ $1::text[] \
    AND (offered_to IS NULL OR offered_to = ANY($2) OR offer_expires_at <= $3) \
    AND id <> ALL($4) ORDER BY priority DESC, id LIMIT $5 FOR UPDATE SKIP LOCKED";

/// For each capability set among the claim-nexts, as many open tasks as
/// it has claimants, locked.
async fn pick_open(
    conn: &mut PgConnection,
    now: Millis,
    groups: BTreeMap<Vec<String>, Vec<String>>,
    pass_over: &[i64],
) -> Result<BTreeMap<Vec<String>, Picked>, StoreError> {
    let mut out = BTreeMap::new();
    for (caps, claimants) in groups {
        let want = claimants.len() as i64;
        let rows = sqlx::query(&format!("SELECT {TASK_COLS} {PICK_OPEN}"))
            .bind(&caps)
            .bind(&claimants)
            .bind(now)
            .bind(pass_over)
            .bind(want)
            .fetch_all(&mut *conn)
            .await?;
        let tasks = rows
            .iter()
            .map(task_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let full = tasks.len() as i64 == want;
        out.insert(caps, Picked { tasks, full });
    }
    Ok(out)
}

/// One more open task for `agent`, passing over the rows already held.
async fn pick_one(
    conn: &mut PgConnection,
    now: Millis,
    caps: &[String],
    agent: &str,
    pass_over: &[i64],
) -> Result<Option<Task>, StoreError> {
    let row = sqlx::query(&format!("SELECT {TASK_COLS} {PICK_OPEN}"))
        .bind(caps)
        .bind(vec![agent])
        .bind(now)
        .bind(pass_over)
        .bind(1_i64)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(task_from_row).transpose()
}

/// Writes every task changed once, with its run record, in one statement
/// (the set-based form of `tasks::SAVE_TASK_AND_RUN`).
const SAVE_TASKS_AND_RUNS: &str = "\
    WITH v AS ( \
        SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], \
            $6::bigint[], $7::text[], $8::text[], $9::text[], $10::bigint[], $11::text[], \
            $12::text[], $13::text[]) \
        AS v(id, state, assignee, lease, attempts, at, result, error, progress, percent, \
            close_outcome, close_holder, open_agent)), \
    saved AS ( \
        UPDATE tasks t SET state = v.state, assignee = v.assignee, lease_expires_at = v.lease, \
            attempts = v.attempts, updated_at = v.at, result = v.result, error = v.error, \
            progress = v.progress, percent = v.percent, \
            claimed_at = CASE WHEN v.state = 'claimed' AND t.state <> 'claimed' THEN v.at \
                ELSE t.claimed_at END \
        FROM v WHERE t.id = v.id), \
    closed AS ( \
        UPDATE task_runs r SET ended_at = v.at, outcome = v.close_outcome FROM v \
        WHERE v.close_outcome IS NOT NULL AND r.task_id = v.id AND r.ended_at IS NULL \
        RETURNING r.task_id), \
    closed_unopened AS ( \
        INSERT INTO task_runs (task_id, agent, claimed_at, ended_at, outcome) \
        SELECT v.id, v.close_holder, COALESCE(t.claimed_at, v.at), v.at, v.close_outcome \
        FROM v JOIN tasks t ON t.id = v.id \
        WHERE v.close_outcome IS NOT NULL AND v.id NOT IN (SELECT task_id FROM closed)), \
    opened AS ( \
        INSERT INTO task_runs (task_id, agent, claimed_at) \
        SELECT v.id, v.open_agent, v.at FROM v WHERE v.open_agent IS NOT NULL) \
    SELECT 1";

/// Writes `changes`: tasks changed once in one statement, a task changed
/// more than once change by change, in order.
async fn save_all(conn: &mut PgConnection, changes: Vec<Change>) -> Result<(), StoreError> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut times: HashMap<i64, usize> = HashMap::new();
    for c in &changes {
        *times.entry(c.task.id).or_default() += 1;
    }
    let (once, repeated): (Vec<Change>, Vec<Change>) =
        changes.into_iter().partition(|c| times[&c.task.id] == 1);
    for c in repeated {
        let (close, open) = c.runs;
        save_task_and_run(conn, &c.task, close, open).await?;
    }
    if once.is_empty() {
        return Ok(());
    }
    let n = once.len();
    let mut id = Vec::with_capacity(n);
    let mut state = Vec::with_capacity(n);
    let mut assignee = Vec::with_capacity(n);
    let mut lease = Vec::with_capacity(n);
    let mut attempts = Vec::with_capacity(n);
    let mut at = Vec::with_capacity(n);
    let mut result = Vec::with_capacity(n);
    let mut error = Vec::with_capacity(n);
    let mut progress = Vec::with_capacity(n);
    let mut percent = Vec::with_capacity(n);
    let mut close_outcome: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut close_holder: Vec<Option<String>> = Vec::with_capacity(n);
    let mut open_agent: Vec<Option<String>> = Vec::with_capacity(n);
    for c in once {
        let t = c.task;
        let (close, open) = c.runs;
        id.push(t.id);
        state.push(t.state.as_str());
        assignee.push(t.assignee);
        lease.push(t.lease_expires_at);
        attempts.push(t.attempts);
        at.push(t.updated_at);
        result.push(t.result.as_ref().map(|v| v.to_string()));
        error.push(t.error);
        progress.push(t.progress);
        percent.push(t.percent);
        close_outcome.push(close.as_ref().map(|(o, _)| *o));
        close_holder.push(close.map(|(_, h)| h));
        open_agent.push(open);
    }
    sqlx::query(SAVE_TASKS_AND_RUNS)
        .bind(&id)
        .bind(&state)
        .bind(&assignee)
        .bind(&lease)
        .bind(&attempts)
        .bind(&at)
        .bind(&result)
        .bind(&error)
        .bind(&progress)
        .bind(&percent)
        .bind(&close_outcome)
        .bind(&close_holder)
        .bind(&open_agent)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
