//! Schedules: operators say "create this task" or "post this
//! announcement" on a cron expression in an IANA time zone, or every N
//! minutes. The sweeper ([`super::sweeper::run_schedule_sweeper`]) fires
//! each due occurrence with [`Core::fire_due_schedules`].
//!
//! # Exactly once
//!
//! A schedule row holds `next_at`, its next occurrence. Firing it is one
//! store write ([`super::store::Store::fire_schedule`]) that moves `next_at`
//! on with a compare-and-set on its old value **and** creates the task (or
//! stores the broadcast) with its events, in the same transaction. Of two
//! instances (or a restarted one) that both saw the occurrence due, only
//! the one whose compare-and-set matched fires; the other's write changes
//! nothing.
//!
//! # Missed occurrences
//!
//! An occurrence is on time when it is due no more than `schedules.grace_s`
//! ago; it then fires. When every due occurrence is older than that (the
//! server was down), the schedule's `missed` policy decides: `skip` (the
//! default) fires nothing and waits for the next occurrence; `run_once`
//! fires once, however many were missed. Either way `next_at` moves to the
//! first occurrence after now, so a long outage never fires a burst.

use super::error::CoreError;
use super::events::{Audience, EventKind, NewEvent};
use super::messages::MAX_TOPIC_CHARS;
use super::model::{Caller, NewTask};
use super::store::{MessageRecord, StoreError};
use super::Core;
use crate::clock::{now_ms, rfc3339, serde_rfc3339, Millis};
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::CronParser;
use croner::Cron;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::fmt;
use std::str::FromStr;

/// Most schedules one `schedule.list` shows.
pub const MAX_LIST: i64 = 200;
/// Most due schedules one sweep fires in a row.
pub const DUE_BATCH: i64 = 100;
/// How many upcoming occurrences of a cron expression are looked at to find
/// its shortest gap (the floor check).
const FLOOR_SAMPLES: usize = 100;
/// Longest `every`: one year.
pub const MAX_EVERY_S: i64 = 366 * 86_400;

/// `[schedules]`: how often due schedules are looked for, the shortest
/// interval a schedule may have, and how late an occurrence may fire.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulesConfig {
    /// How often the sweeper looks for due occurrences.
    pub sweep_interval_ms: u64,
    /// The floor: a schedule whose occurrences may come closer together
    /// than this many seconds is refused (default 60).
    pub min_interval_s: u64,
    /// An occurrence due at most this many seconds ago is on time and
    /// fires; older ones are missed and follow the schedule's `missed` policy.
    pub grace_s: u64,
}

impl Default for SchedulesConfig {
    fn default() -> Self {
        SchedulesConfig {
            sweep_interval_ms: 1000,
            min_interval_s: 60,
            grace_s: 60,
        }
    }
}

/// What an occurrence does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleAction {
    /// Create a task (title, body, requires, priority).
    Task,
    /// Post a broadcast (text, topic) to every agent and the platforms.
    Broadcast,
}

/// What happens to occurrences missed while no server ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MissedPolicy {
    /// Fire none of them; wait for the next occurrence.
    Skip,
    /// Fire once for all of them, as soon as a server runs.
    RunOnce,
}

/// Whether a schedule fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleState {
    /// Fires at each occurrence.
    Active,
    /// Fires nothing until resumed.
    Paused,
}

macro_rules! named_enum {
    ($ty:ident, $what:literal, $($variant:ident => $name:literal),+) => {
        impl $ty {
            /// The name stored and sent.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    other => Err(format!(
                        concat!("unknown ", $what, " {:?} (expected {})"),
                        other,
                        [$($name),+].join(" or ")
                    )),
                }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum!(ScheduleAction, "action", Task => "task", Broadcast => "broadcast");
named_enum!(MissedPolicy, "missed policy", Skip => "skip", RunOnce => "run_once");
named_enum!(ScheduleState, "schedule state", Active => "active", Paused => "paused");

/// A schedule as the protocol shows it (`schedule` and `schedules` replies).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Schedule {
    /// Database id.
    pub id: i64,
    /// The cron expression (5 fields, or 6 with seconds first), or null
    /// for an `every` schedule.
    pub cron: Option<String>,
    /// The IANA time zone the cron expression is read in.
    pub timezone: String,
    /// The interval of an `every` schedule, in seconds; null for cron.
    pub every_s: Option<i64>,
    /// `every`: occurrences fall on `anchor_at + k * every_s`.
    #[serde(skip)]
    pub anchor_at: Option<Millis>,
    /// `task` or `broadcast`.
    pub action: ScheduleAction,
    /// The task's title, or the broadcast's text.
    pub title: String,
    /// The task's body.
    pub body: String,
    /// The task's required capabilities.
    pub requires: Vec<String>,
    /// The task's priority.
    pub priority: i64,
    /// The broadcast's topic.
    pub topic: Option<String>,
    /// `skip` or `run_once`.
    pub missed: MissedPolicy,
    /// `active` or `paused`.
    pub state: ScheduleState,
    /// The next occurrence (while paused: the one it had when paused).
    #[serde(with = "serde_rfc3339")]
    pub next_at: Millis,
    /// When it last fired.
    #[serde(with = "serde_rfc3339::option")]
    pub last_fired_at: Option<Millis>,
    /// How many times it has fired.
    pub fired: i64,
    /// Who created it.
    pub created_by: String,
    /// When it was created.
    #[serde(with = "serde_rfc3339")]
    pub created_at: Millis,
}

impl Schedule {
    /// When it fires, in words: `cron 0 9 * * 1-5 (Europe/Berlin)` or `every 15m`.
    pub fn when(&self) -> String {
        match (&self.cron, self.every_s) {
            (Some(c), _) => format!("cron {c} ({})", self.timezone),
            (None, Some(s)) if s % 86_400 == 0 => format!("every {}d", s / 86_400),
            (None, Some(s)) if s % 3600 == 0 => format!("every {}h", s / 3600),
            (None, Some(s)) if s % 60 == 0 => format!("every {}m", s / 60),
            (None, Some(s)) => format!("every {s}s"),
            (None, None) => "never".into(),
        }
    }

    /// One line for chat: `schedule #3: every 15m, task "Backup", next
    /// 2026-11-30T10:00:00.000Z (active, fired 4)`.
    pub fn summary(&self) -> String {
        let what = match self.action {
            ScheduleAction::Task => format!("task {:?}", self.title),
            ScheduleAction::Broadcast => format!("broadcast {:?}", self.title),
        };
        format!(
            "schedule #{}: {}, {what}, next {} ({}, fired {})",
            self.id,
            self.when(),
            rfc3339(self.next_at),
            self.state,
            self.fired
        )
    }
}

/// What `schedule.add` asks for, as given (checked by [`Core::add_schedule`],
/// whose errors name the field).
#[derive(Debug, Clone, Default)]
pub struct NewSchedule {
    /// A cron expression (exactly one of `cron` and `every`).
    pub cron: Option<String>,
    /// An interval: `15m`, `90s`, `2h`, `1d`, `every 15 minutes`, or a
    /// number of minutes.
    pub every: Option<String>,
    /// The IANA zone of `cron` (default UTC).
    pub timezone: Option<String>,
    /// `every`: the first occurrence, RFC 3339 (default: one interval from now).
    pub start_at: Option<String>,
    /// `task` (default) or `broadcast`.
    pub action: Option<String>,
    /// The task's title.
    pub title: Option<String>,
    /// The task's body.
    pub body: Option<String>,
    /// The task's required capabilities.
    pub requires: Vec<String>,
    /// The task's priority.
    pub priority: Option<i64>,
    /// The broadcast's text.
    pub text: Option<String>,
    /// The broadcast's topic.
    pub topic: Option<String>,
    /// `skip` (default) or `run_once`.
    pub missed: Option<String>,
}

/// When a schedule's occurrences fall, parsed.
#[derive(Debug, Clone)]
pub enum Recurrence {
    /// A cron expression read in a time zone.
    Cron {
        /// The parsed expression.
        cron: Box<Cron>,
        /// Its zone.
        tz: Tz,
    },
    /// A fixed interval from an anchor.
    Every {
        /// The interval in milliseconds.
        every_ms: i64,
        /// One occurrence; the others are whole intervals away.
        anchor_at: Millis,
    },
}

fn bad(message: impl Into<String>) -> CoreError {
    CoreError::BadRequest(message.into())
}

/// Parses a cron expression (5 fields, or 6 with seconds first; `@daily`
/// and the other aliases too); the error names the field `cron`.
pub fn parse_cron(expr: &str) -> Result<Cron, CoreError> {
    CronParser::new().parse(expr.trim()).map_err(|e| {
        bad(format!(
            "`cron` is not a valid cron expression ({expr:?}: {e}); \
             expected 5 fields (minute hour day-of-month month day-of-week), e.g. \"0 9 * * 1-5\""
        ))
    })
}

/// Parses an IANA time zone name; the error names the field `timezone`.
pub fn parse_timezone(name: &str) -> Result<Tz, CoreError> {
    name.trim().parse::<Tz>().map_err(|_| {
        bad(format!(
            "`timezone` must be an IANA time zone such as Europe/Berlin, America/New_York or UTC, got {name:?}"
        ))
    })
}

/// Parses an interval (`15m`, `90s`, `2h`, `1d`, `every 15 minutes`, or a
/// bare number of minutes) into seconds; the error names the field `every`.
pub fn parse_every(text: &str) -> Result<i64, CoreError> {
    let err = || {
        bad(format!(
            "`every` must be an interval such as 15m, 90s, 2h, 1d or \"every 15 minutes\", got {text:?}"
        ))
    };
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_prefix("every").unwrap_or(&t).trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: i64 = digits.parse().map_err(|_| err())?;
    let unit_s = match unit.trim() {
        "" | "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        _ => return Err(err()),
    };
    let s = n.checked_mul(unit_s).ok_or_else(err)?;
    if !(1..=MAX_EVERY_S).contains(&s) {
        return Err(bad(format!(
            "`every` must be between 1 second and 366 days, got {text:?}"
        )));
    }
    Ok(s)
}

fn utc(ms: Millis) -> Result<DateTime<Utc>, CoreError> {
    Utc.timestamp_opt(ms.div_euclid(1000), 0)
        .single()
        .ok_or_else(|| CoreError::Internal(format!("time {ms} out of range")))
}

fn cron_error(e: croner::errors::CronError) -> CoreError {
    bad(format!("`cron` has no occurrence to compute: {e}"))
}

impl Recurrence {
    /// The recurrence a stored schedule describes.
    pub fn of(s: &Schedule) -> Result<Recurrence, CoreError> {
        match (&s.cron, s.every_s) {
            (Some(expr), _) => Ok(Recurrence::Cron {
                cron: Box::new(parse_cron(expr)?),
                tz: parse_timezone(&s.timezone)?,
            }),
            (None, Some(every_s)) if every_s > 0 => Ok(Recurrence::Every {
                every_ms: every_s * 1000,
                anchor_at: s.anchor_at.unwrap_or(s.created_at),
            }),
            _ => Err(CoreError::Internal(format!(
                "schedule {} has neither a cron expression nor an interval",
                s.id
            ))),
        }
    }

    /// The first occurrence strictly after `t`.
    pub fn next_after(&self, t: Millis) -> Result<Millis, CoreError> {
        match self {
            Recurrence::Cron { cron, tz } => {
                let start = utc(t)?.with_timezone(tz);
                let next = cron
                    .find_next_occurrence(&start, false)
                    .map_err(cron_error)?;
                Ok(next.timestamp() * 1000)
            }
            Recurrence::Every {
                every_ms,
                anchor_at,
            } => Ok(if t < *anchor_at {
                *anchor_at
            } else {
                anchor_at + ((t - anchor_at) / every_ms + 1) * every_ms
            }),
        }
    }

    /// The last occurrence at or before `t`, if there is one.
    pub fn latest_at_or_before(&self, t: Millis) -> Option<Millis> {
        match self {
            Recurrence::Cron { cron, tz } => {
                let start = utc(t).ok()?.with_timezone(tz);
                cron.find_previous_occurrence(&start, true)
                    .ok()
                    .map(|p| p.timestamp() * 1000)
            }
            Recurrence::Every {
                every_ms,
                anchor_at,
            } => (t >= *anchor_at).then(|| anchor_at + (t - anchor_at) / every_ms * every_ms),
        }
    }

    /// The shortest time between two occurrences: the interval, or for a
    /// cron expression the smallest gap among its next occurrences.
    pub fn shortest_gap_ms(&self, from: Millis) -> Result<i64, CoreError> {
        match self {
            Recurrence::Every { every_ms, .. } => Ok(*every_ms),
            Recurrence::Cron { .. } => {
                let mut prev = self.next_after(from)?;
                let mut gap = i64::MAX;
                for _ in 0..FLOOR_SAMPLES {
                    let Ok(next) = self.next_after(prev) else {
                        break;
                    };
                    gap = gap.min(next - prev);
                    prev = next;
                }
                Ok(gap)
            }
        }
    }
}

/// What the sweeper does with one due schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occurrence {
    /// The occurrence being handled (the latest one due).
    pub due_at: Millis,
    /// Where `next_at` moves: the first occurrence after now.
    pub next_at: Millis,
    /// Whether it fires (on time, or missed under `run_once`).
    pub fires: bool,
}

/// Decides what a schedule due at `next_at` does at `now` (see the module
/// doc: on time within `grace_ms` fires; missed ones follow `missed`).
pub fn plan_occurrence(
    rec: &Recurrence,
    next_at: Millis,
    missed: MissedPolicy,
    now: Millis,
    grace_ms: i64,
) -> Result<Occurrence, CoreError> {
    let next = rec.next_after(now)?;
    let due_at = rec
        .latest_at_or_before(now)
        .map_or(next_at, |l| l.max(next_at));
    let on_time = now - due_at <= grace_ms;
    Ok(Occurrence {
        due_at,
        next_at: next,
        fires: on_time || missed == MissedPolicy::RunOnce,
    })
}

/// What firing one occurrence writes, prepared by the core for the store.
pub enum Firing {
    /// Create this task; `events_for` names its events.
    Task {
        /// The task.
        new: NewTask,
        /// Its creator (the schedule's).
        created_by: String,
        /// Claims allowed (the configured default).
        max_attempts: i64,
        /// Its `task.created` event.
        events_for: super::store::TaskEvents,
    },
    /// Store this broadcast with its event.
    Broadcast {
        /// The message row.
        message: MessageRecord,
        /// Its `broadcast` event.
        event: NewEvent,
    },
    /// Fire nothing (a missed occurrence skipped): only move `next_at`.
    Nothing,
}

/// The claim of one occurrence: fire only while the schedule is active and
/// its `next_at` is still `due_next_at`, then move it to `next_at`.
#[derive(Debug, Clone, Copy)]
pub struct OccurrenceClaim {
    /// The schedule.
    pub schedule_id: i64,
    /// Its `next_at` as the sweeper read it (the compare-and-set's old value).
    pub due_next_at: Millis,
    /// Its new `next_at`.
    pub next_at: Millis,
}

/// How a claim of an occurrence came out.
#[derive(Debug, Clone, PartialEq)]
pub enum FireOutcome {
    /// Someone else fired it (or the schedule was paused or deleted): nothing written.
    Lost,
    /// This write claimed it; the id of the task it created, if any.
    Claimed(Option<i64>),
}

/// A rule that edits a schedule's state and `next_at` in its transaction (or refuses).
pub type ScheduleChange =
    Box<dyn FnOnce(&mut Schedule, Millis) -> Result<(), CoreError> + Send + 'static>;

/// What one sweep did to one schedule, for the log.
#[derive(Debug, Clone)]
pub struct SweptSchedule {
    /// The schedule.
    pub id: i64,
    /// The occurrence handled.
    pub due_at: Millis,
    /// Whether it fired (false: skipped as missed).
    pub fired: bool,
    /// The task it created.
    pub task_id: Option<i64>,
}

fn trimmed(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

impl Core {
    /// The floor and grace of `[schedules]`.
    pub fn schedules_cfg(&self) -> &SchedulesConfig {
        self.schedules_cfg.get_or_init(SchedulesConfig::default)
    }

    /// Sets `[schedules]` once, before the core serves (later calls are ignored).
    pub fn configure_schedules(&self, cfg: SchedulesConfig) {
        let _ = self.schedules_cfg.set(cfg);
    }

    /// Creates a schedule (operators); refuses an invalid cron expression,
    /// time zone or interval, and one that would fire more often than
    /// `schedules.min_interval_s`, naming the field.
    pub async fn add_schedule(
        &self,
        caller: &Caller,
        new: NewSchedule,
    ) -> Result<Schedule, CoreError> {
        let now = now_ms();
        let action = match trimmed(new.action) {
            None => ScheduleAction::Task,
            Some(a) => a
                .parse::<ScheduleAction>()
                .map_err(|e| bad(format!("`action`: {e}")))?,
        };
        let missed = match trimmed(new.missed) {
            None => MissedPolicy::Skip,
            Some(m) => m
                .parse::<MissedPolicy>()
                .map_err(|e| bad(format!("`missed`: {e}")))?,
        };
        let timezone = trimmed(new.timezone).unwrap_or_else(|| "UTC".into());
        let tz = parse_timezone(&timezone)?;
        let (cron, every_s, anchor_at) = match (trimmed(new.cron), trimmed(new.every)) {
            (Some(c), None) => {
                if new
                    .start_at
                    .as_deref()
                    .is_some_and(|s| !s.trim().is_empty())
                {
                    return Err(bad("`start_at` applies to `every` schedules only"));
                }
                parse_cron(&c)?;
                (Some(c), None, None)
            }
            (None, Some(e)) => {
                let every_s = parse_every(&e)?;
                let anchor = match trimmed(new.start_at) {
                    None => now + every_s * 1000,
                    Some(s) => crate::clock::parse_rfc3339(&s).ok_or_else(|| {
                        bad(format!(
                            "`start_at` must be an RFC 3339 time such as 2026-11-24T09:00:00Z, got {s:?}"
                        ))
                    })?,
                };
                (None, Some(every_s), Some(anchor))
            }
            (Some(_), Some(_)) => return Err(bad("give either `cron` or `every`, not both")),
            (None, None) => {
                return Err(bad(
                    "a schedule needs `cron` (e.g. \"0 9 * * 1-5\") or `every` (e.g. 15m)",
                ))
            }
        };
        let rec = match &cron {
            Some(c) => Recurrence::Cron {
                cron: Box::new(parse_cron(c)?),
                tz,
            },
            None => Recurrence::Every {
                every_ms: every_s.unwrap_or(60) * 1000,
                anchor_at: anchor_at.unwrap_or(now),
            },
        };
        let floor_s = self.schedules_cfg().min_interval_s as i64;
        let gap_ms = rec.shortest_gap_ms(now)?;
        if gap_ms < floor_s * 1000 {
            let field = if cron.is_some() { "cron" } else { "every" };
            return Err(bad(format!(
                "`{field}` would fire every {} s; the shortest interval allowed is {floor_s} s (schedules.min_interval_s)",
                gap_ms as f64 / 1000.0
            )));
        }
        let (title, body, requires, priority, topic) = match action {
            ScheduleAction::Task => {
                let title = trimmed(new.title).ok_or_else(|| {
                    bad("`title` is required for a schedule whose action is task")
                })?;
                let mut task = NewTask {
                    title,
                    body: new.body.unwrap_or_default(),
                    priority: new.priority.unwrap_or(0),
                    requires: new.requires,
                    ..NewTask::default()
                };
                self.check_new_task(&mut task)?;
                (task.title, task.body, task.requires, task.priority, None)
            }
            ScheduleAction::Broadcast => {
                let text = trimmed(new.text).ok_or_else(|| {
                    bad("`text` is required for a schedule whose action is broadcast")
                })?;
                self.check_text("text", &text, true)?;
                let topic = trimmed(new.topic);
                if topic
                    .as_ref()
                    .is_some_and(|t| t.chars().count() > MAX_TOPIC_CHARS)
                {
                    return Err(bad(format!(
                        "`topic` is limited to {MAX_TOPIC_CHARS} characters"
                    )));
                }
                (text, String::new(), vec![], 0, topic)
            }
        };
        let schedule = Schedule {
            id: 0,
            cron,
            timezone,
            every_s,
            anchor_at,
            action,
            title,
            body,
            requires,
            priority,
            topic,
            missed,
            state: ScheduleState::Active,
            next_at: rec.next_after(now - 1)?,
            last_fired_at: None,
            fired: 0,
            created_by: caller.identity.clone(),
            created_at: now,
        };
        Ok(self.store.create_schedule(schedule).await?)
    }

    /// Every schedule, oldest first (at most [`MAX_LIST`]).
    pub async fn list_schedules(&self) -> Result<Vec<Schedule>, CoreError> {
        Ok(self.store.schedules(MAX_LIST).await?)
    }

    /// Pauses a schedule (operators): it fires nothing until resumed.
    /// `conflict` when it is already paused.
    pub async fn pause_schedule(&self, schedule_id: i64) -> Result<Schedule, CoreError> {
        Ok(self
            .store
            .update_schedule(
                schedule_id,
                Box::new(|s: &mut Schedule, _now| {
                    if s.state == ScheduleState::Paused {
                        return Err(CoreError::Conflict(format!(
                            "schedule {} is already paused",
                            s.id
                        )));
                    }
                    s.state = ScheduleState::Paused;
                    Ok(())
                }),
            )
            .await?)
    }

    /// Resumes a paused schedule (operators) from its first occurrence after
    /// now: what fell due while it was paused is not fired. `conflict` when
    /// it is not paused.
    pub async fn resume_schedule(&self, schedule_id: i64) -> Result<Schedule, CoreError> {
        Ok(self
            .store
            .update_schedule(
                schedule_id,
                Box::new(|s: &mut Schedule, now| {
                    if s.state == ScheduleState::Active {
                        return Err(CoreError::Conflict(format!(
                            "schedule {} is not paused",
                            s.id
                        )));
                    }
                    s.next_at = Recurrence::of(s)?.next_after(now)?;
                    s.state = ScheduleState::Active;
                    Ok(())
                }),
            )
            .await?)
    }

    /// Deletes a schedule (operators); the tasks it created stay.
    pub async fn delete_schedule(&self, schedule_id: i64) -> Result<(), CoreError> {
        if self.store.delete_schedule(schedule_id).await? {
            Ok(())
        } else {
            Err(CoreError::NotFound(format!(
                "schedule {schedule_id} does not exist"
            )))
        }
    }

    /// What firing `s` for the occurrence at `due_at` writes.
    fn firing_for(&self, s: &Schedule, due_at: Millis) -> Firing {
        match s.action {
            ScheduleAction::Task => Firing::Task {
                new: NewTask {
                    title: s.title.clone(),
                    body: s.body.clone(),
                    priority: s.priority,
                    requires: s.requires.clone(),
                    tags: vec![
                        format!("schedule:{}", s.id),
                        format!("occurrence:{}", rfc3339(due_at)),
                    ],
                    max_attempts: None,
                    ..NewTask::default()
                },
                created_by: s.created_by.clone(),
                max_attempts: self.tasks_cfg.max_attempts as i64,
                events_for: Box::new(super::tasks::created_events),
            },
            ScheduleAction::Broadcast => Firing::Broadcast {
                message: MessageRecord {
                    sender: s.created_by.clone(),
                    recipient: None,
                    topic: s.topic.clone(),
                    text: s.title.clone(),
                },
                event: NewEvent {
                    kind: EventKind::Broadcast,
                    data: json!({
                        "from": s.created_by, "text": s.title, "topic": s.topic,
                        "schedule_id": s.id,
                    }),
                    audience: Audience::everyone(),
                },
            },
        }
    }

    /// Fires every active schedule whose `next_at` has come (at most
    /// [`DUE_BATCH`] per call), each occurrence at most once across
    /// instances (see the module doc). A schedule whose stored recurrence
    /// can no longer be read (a time zone a newer build dropped) is paused
    /// with a warning.
    pub async fn fire_due_schedules(&self) -> Result<Vec<SweptSchedule>, CoreError> {
        let now = now_ms();
        let grace_ms = self.schedules_cfg().grace_s as i64 * 1000;
        let due = self.store.due_schedules(now, DUE_BATCH).await?;
        let mut swept = Vec::with_capacity(due.len());
        for s in due {
            let plan = Recurrence::of(&s)
                .and_then(|rec| plan_occurrence(&rec, s.next_at, s.missed, now, grace_ms));
            let occurrence = match plan {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(schedule_id = s.id, error = %e, "schedule cannot be computed; pausing it");
                    if let Err(e) = self.pause_schedule(s.id).await {
                        tracing::warn!(schedule_id = s.id, error = %e, "could not pause schedule");
                    }
                    continue;
                }
            };
            let firing = if occurrence.fires {
                self.firing_for(&s, occurrence.due_at)
            } else {
                Firing::Nothing
            };
            let claim = OccurrenceClaim {
                schedule_id: s.id,
                due_next_at: s.next_at,
                next_at: occurrence.next_at,
            };
            match self.store.fire_schedule(claim, firing).await {
                Ok(FireOutcome::Claimed(task)) => swept.push(SweptSchedule {
                    id: s.id,
                    due_at: occurrence.due_at,
                    fired: occurrence.fires,
                    task_id: task,
                }),
                Ok(FireOutcome::Lost) => {}
                Err(StoreError::Rejected(e)) => {
                    tracing::warn!(schedule_id = s.id, error = %e, "schedule occurrence refused")
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(swept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn every(minutes: i64, anchor_at: Millis) -> Recurrence {
        Recurrence::Every {
            every_ms: minutes * MIN,
            anchor_at,
        }
    }

    #[test]
    fn intervals_parse_in_every_spelling_and_name_the_field_when_bad() {
        assert_eq!(parse_every("15m").unwrap(), 900);
        assert_eq!(parse_every("every 15 minutes").unwrap(), 900);
        assert_eq!(parse_every("90s").unwrap(), 90);
        assert_eq!(parse_every("2h").unwrap(), 7200);
        assert_eq!(parse_every("1 day").unwrap(), 86_400);
        assert_eq!(parse_every("30").unwrap(), 1800);
        for bad in ["", "soon", "15 fortnights", "0m", "-5m"] {
            let e = parse_every(bad).unwrap_err().to_string();
            assert!(e.contains("`every`"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn bad_cron_and_zones_name_their_field() {
        assert!(parse_cron("0 9 * * 1-5").is_ok());
        assert!(parse_cron("@daily").is_ok());
        let e = parse_cron("61 * * * *").unwrap_err().to_string();
        assert!(e.contains("`cron`"), "{e}");
        let e = parse_timezone("Mars/Olympus").unwrap_err().to_string();
        assert!(e.contains("`timezone`"), "{e}");
        assert!(parse_timezone("Europe/Berlin").is_ok());
    }

    #[test]
    fn cron_occurrences_follow_the_time_zone() {
        // 09:00 in Berlin on 2026-11-30 (CET, UTC+1) is 08:00 UTC.
        let rec = Recurrence::Cron {
            cron: Box::new(parse_cron("0 9 * * *").unwrap()),
            tz: parse_timezone("Europe/Berlin").unwrap(),
        };
        let midnight = crate::clock::parse_rfc3339("2026-11-30T00:00:00Z").unwrap();
        let next = rec.next_after(midnight).unwrap();
        assert_eq!(rfc3339(next), "2026-11-30T08:00:00Z");
        assert_eq!(rec.latest_at_or_before(next + 1), Some(next));
        assert_eq!(rec.shortest_gap_ms(midnight).unwrap(), 86_400_000);
    }

    #[test]
    fn interval_occurrences_fall_on_the_anchor_grid() {
        let rec = every(10, 1_000_000);
        assert_eq!(rec.next_after(0).unwrap(), 1_000_000);
        assert_eq!(rec.next_after(1_000_000).unwrap(), 1_000_000 + 10 * MIN);
        assert_eq!(rec.next_after(1_000_001).unwrap(), 1_000_000 + 10 * MIN);
        assert_eq!(rec.latest_at_or_before(999_999), None);
        assert_eq!(
            rec.latest_at_or_before(1_000_000 + 25 * MIN),
            Some(1_000_000 + 20 * MIN)
        );
    }

    #[test]
    fn an_occurrence_on_time_fires_under_either_policy() {
        let rec = every(10, 0);
        for policy in [MissedPolicy::Skip, MissedPolicy::RunOnce] {
            let o = plan_occurrence(&rec, 10 * MIN, policy, 10 * MIN + 500, MIN).unwrap();
            assert_eq!(
                o,
                Occurrence {
                    due_at: 10 * MIN,
                    next_at: 20 * MIN,
                    fires: true
                }
            );
        }
    }

    #[test]
    fn missed_occurrences_are_skipped_or_run_once_and_never_in_a_burst() {
        let rec = every(10, 0);
        // down from before 10 min until 55 min: five occurrences missed.
        let now = 55 * MIN;
        let skip = plan_occurrence(&rec, 10 * MIN, MissedPolicy::Skip, now, MIN).unwrap();
        assert!(!skip.fires);
        assert_eq!(skip.next_at, 60 * MIN);
        let once = plan_occurrence(&rec, 10 * MIN, MissedPolicy::RunOnce, now, MIN).unwrap();
        assert!(once.fires);
        assert_eq!((once.due_at, once.next_at), (50 * MIN, 60 * MIN));
        // back within the grace of the latest occurrence: it is on time
        let late =
            plan_occurrence(&rec, 10 * MIN, MissedPolicy::Skip, 50 * MIN + 30_000, MIN).unwrap();
        assert!(late.fires);
        assert_eq!(late.due_at, 50 * MIN);
    }
}
