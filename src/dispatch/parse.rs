//! The one parser of command arguments, shared by every front door: the
//! WebSocket frame's fields, an HTTP body (with its path parameters), and
//! a chat command's options (already checked against the catalog) all
//! become a JSON object that [`command`] turns into a typed [`Command`].
//! Field names are the protocol's (`docs/protocol.md`); serde's messages
//! (`missing field `text``, `invalid type`) are the `bad_request` text.
//!
//! [`command_in`] first checks the JSON values against the catalog entry's
//! option limits (lengths, ranges, choices), as chat input is checked by
//! [`CommandSpec::validate`]; every JSON front door calls it.

use crate::catalog::{ArgValue, Args, Catalog, CommandSpec, OptionKind};
use crate::core::command::Command;
use crate::core::error::CoreError;
use crate::core::model::{NewTask, TaskState};
use crate::core::polls::{NewPoll, Voters};
use crate::core::schedules::NewSchedule;
use crate::core::search::{SearchMode, SearchRequest};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// Default `duration_s` of a poll opened without one (chat).
pub const DEFAULT_POLL_DURATION_S: i64 = 300;

/// A list given as a JSON array, or as one string separated by `|` (when
/// it holds one) or commas, as chat types it: `rust, review`.
#[derive(Debug, Default)]
struct Words(Vec<String>);

impl<'de> Deserialize<'de> for Words {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            List(Vec<String>),
            Text(String),
        }
        Ok(Words(
            match Either::deserialize(d).map_err(|_| {
                serde::de::Error::custom("invalid type: expected a list of strings or one string")
            })? {
                Either::List(l) => l,
                Either::Text(t) => {
                    let sep = if t.contains('|') { '|' } else { ',' };
                    t.split(sep)
                        .map(|x| x.trim().to_string())
                        .filter(|x| !x.is_empty())
                        .collect()
                }
            },
        ))
    }
}

fn default_true() -> bool {
    true
}

fn default_duration() -> i64 {
    DEFAULT_POLL_DURATION_S
}

fn default_mode() -> String {
    "simple".into()
}

/// Every command's arguments as they travel, tagged by the protocol name.
#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
enum Wire {
    #[serde(rename = "task.create")]
    TaskCreate {
        title: String,
        #[serde(default)]
        body: Option<String>,
        #[serde(default)]
        priority: Option<i64>,
        #[serde(default)]
        requires: Option<Words>,
        #[serde(default)]
        tags: Option<Words>,
        #[serde(default)]
        max_attempts: Option<i64>,
    },
    #[serde(rename = "task.claim")]
    TaskClaim {
        #[serde(default)]
        task_id: Option<i64>,
        #[serde(default)]
        lease_s: Option<i64>,
    },
    #[serde(rename = "task.renew")]
    TaskRenew {
        task_id: i64,
        #[serde(default)]
        lease_s: Option<i64>,
    },
    #[serde(rename = "task.progress")]
    TaskProgress {
        task_id: i64,
        note: String,
        #[serde(default)]
        percent: Option<i64>,
    },
    #[serde(rename = "task.complete")]
    TaskComplete {
        task_id: i64,
        #[serde(default)]
        result: Option<Value>,
    },
    #[serde(rename = "task.fail")]
    TaskFail {
        task_id: i64,
        error: String,
        #[serde(default = "default_true")]
        retry: bool,
    },
    #[serde(rename = "task.release")]
    TaskRelease { task_id: i64 },
    #[serde(rename = "task.get")]
    TaskGet { task_id: i64 },
    #[serde(rename = "task.list")]
    TaskList {
        #[serde(default)]
        state: Option<String>,
        #[serde(default)]
        assignee: Option<String>,
        #[serde(default)]
        limit: Option<i64>,
    },
    #[serde(rename = "task.cancel")]
    TaskCancel {
        task_id: i64,
        #[serde(default)]
        reason: Option<String>,
    },
    #[serde(rename = "task.assign")]
    TaskAssign { task_id: i64, agent: String },
    #[serde(rename = "msg.send")]
    MsgSend { to: String, text: String },
    #[serde(rename = "inbox")]
    Inbox {
        #[serde(default)]
        seq: Option<i64>,
        #[serde(default)]
        limit: Option<i64>,
    },
    #[serde(rename = "broadcast")]
    Broadcast {
        text: String,
        #[serde(default)]
        topic: Option<String>,
    },
    #[serde(rename = "status")]
    Status {},
    #[serde(rename = "agents")]
    Agents {},
    #[serde(rename = "poll.open")]
    PollOpen {
        question: String,
        options: Words,
        #[serde(default = "default_duration")]
        duration_s: i64,
        #[serde(default)]
        voters: Option<String>,
    },
    #[serde(rename = "poll.vote")]
    PollVote {
        #[serde(default)]
        poll_id: Option<i64>,
        option: i64,
    },
    #[serde(rename = "poll.close")]
    PollClose { poll_id: i64 },
    #[serde(rename = "poll.get")]
    PollGet {
        #[serde(default)]
        poll_id: Option<i64>,
    },
    #[serde(rename = "search")]
    Search {
        query: String,
        #[serde(default)]
        limit: Option<i64>,
        #[serde(default)]
        state: Option<String>,
        #[serde(default)]
        agent: Option<String>,
        #[serde(default)]
        since: Option<String>,
        #[serde(default)]
        mode: Option<String>,
    },
    #[serde(rename = "reason")]
    Reason {
        prompt: String,
        #[serde(default = "default_mode")]
        mode: String,
        #[serde(default)]
        stream: Option<bool>,
    },
    #[serde(rename = "help")]
    Help {
        #[serde(default)]
        command: Option<String>,
    },
    #[serde(rename = "insights")]
    Insights {
        #[serde(default)]
        agent: Option<String>,
    },
    #[serde(rename = "alerts")]
    Alerts {},
    #[serde(rename = "recommend")]
    Recommend {
        #[serde(default)]
        question: Option<String>,
    },
    #[serde(rename = "schedule.add")]
    ScheduleAdd {
        #[serde(default)]
        cron: Option<String>,
        #[serde(default)]
        every: Option<Every>,
        #[serde(default)]
        timezone: Option<String>,
        #[serde(default)]
        start_at: Option<String>,
        #[serde(default)]
        action: Option<String>,
        #[serde(default)]
        title: Option<String>,
        #[serde(default)]
        body: Option<String>,
        #[serde(default)]
        requires: Option<Words>,
        #[serde(default)]
        priority: Option<i64>,
        #[serde(default)]
        text: Option<String>,
        #[serde(default)]
        topic: Option<String>,
        #[serde(default)]
        missed: Option<String>,
    },
    #[serde(rename = "schedule.list")]
    ScheduleList {},
    #[serde(rename = "schedule.pause")]
    SchedulePause { schedule_id: i64 },
    #[serde(rename = "schedule.resume")]
    ScheduleResume { schedule_id: i64 },
    #[serde(rename = "schedule.delete")]
    ScheduleDelete { schedule_id: i64 },
    #[serde(rename = "task.recommend")]
    TaskRecommend { task_id: i64 },
}

/// A schedule's `every`: text (`15m`) or a number of minutes.
#[derive(Debug)]
struct Every(String);

impl<'de> Deserialize<'de> for Every {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Minutes(i64),
            Text(String),
        }
        Ok(Every(
            match Either::deserialize(d).map_err(|_| {
                serde::de::Error::custom(
                    "invalid type: `every` takes an interval such as \"15m\" or a number of minutes",
                )
            })? {
                Either::Minutes(n) => n.to_string(),
                Either::Text(t) => t,
            },
        ))
    }
}

fn bad(message: impl Into<String>) -> CoreError {
    CoreError::BadRequest(message.into())
}

/// Parses the arguments of command `name` (its protocol name, e.g.
/// `task.create`) from a JSON object; keys other than the command's fields
/// (such as a frame's `type` and `id`) are ignored. `bad_request` names the
/// missing or mistyped field, or the unknown command.
pub fn command(name: &str, mut fields: Map<String, Value>) -> Result<Command, CoreError> {
    if !crate::core::command::COMMAND_NAMES.contains(&name) {
        return Err(bad(format!("unknown type `{name}`")));
    }
    fields.insert("type".into(), Value::String(name.to_string()));
    let wire: Wire = serde_json::from_value(Value::Object(fields))
        .map_err(|e| bad(e.to_string().replace("unknown variant", "unknown type")))?;
    into_command(wire)
}

/// Fields whose size the protocol defines itself, checked by the core:
/// the text fields of `limits.max_text_chars` (`title`, `body`, `note`,
/// `error`, `reason`, `text`), `prompt` (`limits.max_prompt_chars`), the
/// lists `requires`, `tags` (32 entries of 64 characters) and `options`
/// (2 to 10 of 100), and `result` (any JSON within the frame limit). The
/// catalog's `max_length` for them is what a Discord option allows, so
/// JSON input is not held to it: no documented protocol limit becomes
/// stricter, and raising a configured limit keeps working.
pub const PROTOCOL_SIZED_FIELDS: &[&str] = &[
    "title", "body", "note", "error", "reason", "text", "prompt", "requires", "tags", "options",
    "result",
];

/// Checks JSON argument values against `spec`'s declared options: string
/// lengths (`max_length`, except [`PROTOCOL_SIZED_FIELDS`]), choices, and
/// integer ranges (`min`, `max`). A value of another JSON type than the
/// option's is left to the parser, which names the mistyped field; keys
/// the catalog does not declare (protocol-only fields, `type`, `id`) are
/// not looked at. Each `bad_request` names the field.
pub fn check_json_args(spec: &CommandSpec, fields: &Map<String, Value>) -> Result<(), CoreError> {
    for o in &spec.options {
        let Some(value) = fields.get(&o.name) else {
            continue;
        };
        match (o.kind, value) {
            (OptionKind::String | OptionKind::Agent, Value::String(s)) => {
                let n = s.chars().count();
                if let Some(max) = o.max_length {
                    if n > max as usize && !PROTOCOL_SIZED_FIELDS.contains(&o.name.as_str()) {
                        return Err(bad(format!(
                            "`{}` is limited to {max} characters, got {n}",
                            o.name
                        )));
                    }
                }
                // An empty optional choice means "not given", as the parser reads it.
                let given = o.required || !s.is_empty();
                if given && !o.choices.is_empty() && !o.choices.iter().any(|c| c == s) {
                    return Err(bad(format!(
                        "`{}` must be one of {}, got {s:?}",
                        o.name,
                        o.choices.join(", ")
                    )));
                }
            }
            (OptionKind::Integer | OptionKind::Task, Value::Number(n)) => {
                let Some(i) = n.as_i64() else { continue };
                if o.min.is_some_and(|m| i < m) || o.max.is_some_and(|m| i > m) {
                    return Err(bad(format!(
                        "`{}` must be between {} and {}, got {i}",
                        o.name,
                        o.min.map_or("-inf".into(), |m| m.to_string()),
                        o.max.map_or("inf".into(), |m| m.to_string())
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Parses command `name` from JSON `fields` as every JSON front door
/// (WebSocket, HTTP) does: the values are checked against the catalog's
/// option limits ([`check_json_args`]), then parsed by [`command`].
pub fn command_in(
    catalog: &Catalog,
    name: &str,
    fields: Map<String, Value>,
) -> Result<Command, CoreError> {
    if let Some(spec) = catalog.get(name) {
        check_json_args(spec, &fields)?;
    }
    command(name, fields)
}

/// Parses a chat command's options, already validated against its catalog
/// entry, with the same parser as the JSON front doors.
pub fn chat_command(name: &str, args: &Args) -> Result<Command, CoreError> {
    command(name, args_json(args))
}

/// Chat option values as the JSON object the parser reads.
pub fn args_json(args: &Args) -> Map<String, Value> {
    args.iter()
        .map(|(k, v)| {
            let v = match v {
                ArgValue::Str(s) => Value::String(s.clone()),
                ArgValue::Int(i) => Value::from(*i),
                ArgValue::Bool(b) => Value::Bool(*b),
            };
            (k.clone(), v)
        })
        .collect()
}

fn task_state(s: Option<String>) -> Result<Option<TaskState>, CoreError> {
    s.filter(|s| !s.is_empty())
        .map(|s| s.parse::<TaskState>())
        .transpose()
        .map_err(CoreError::BadRequest)
}

/// `mode` of `search` (absent or empty: the server's default).
fn search_mode(s: Option<String>) -> Result<Option<SearchMode>, CoreError> {
    s.filter(|s| !s.is_empty())
        .map(|s| {
            SearchMode::parse(&s).ok_or_else(|| {
                CoreError::bad_request(format!(
                    "`mode` must be text, semantic or hybrid, got {s:?}"
                ))
            })
        })
        .transpose()
}

/// `voters` of `poll.open` (absent: `all`).
fn voters(v: Option<String>) -> Result<Voters, CoreError> {
    v.map(|s| s.parse::<Voters>())
        .transpose()
        .map(|v| v.unwrap_or(Voters::All))
        .map_err(CoreError::BadRequest)
}

fn into_command(wire: Wire) -> Result<Command, CoreError> {
    Ok(match wire {
        Wire::TaskCreate {
            title,
            body,
            priority,
            requires,
            tags,
            max_attempts,
        } => Command::TaskCreate(NewTask {
            title,
            body: body.unwrap_or_default(),
            priority: priority.unwrap_or(0),
            requires: requires.unwrap_or_default().0,
            tags: tags.unwrap_or_default().0,
            max_attempts,
            ..NewTask::default()
        }),
        Wire::TaskClaim { task_id, lease_s } => Command::TaskClaim { task_id, lease_s },
        Wire::TaskRenew { task_id, lease_s } => Command::TaskRenew { task_id, lease_s },
        Wire::TaskProgress {
            task_id,
            note,
            percent,
        } => Command::TaskProgress {
            task_id,
            note,
            percent,
        },
        Wire::TaskComplete { task_id, result } => Command::TaskComplete { task_id, result },
        Wire::TaskFail {
            task_id,
            error,
            retry,
        } => Command::TaskFail {
            task_id,
            error,
            retry,
        },
        Wire::TaskRelease { task_id } => Command::TaskRelease { task_id },
        Wire::TaskGet { task_id } => Command::TaskGet { task_id },
        Wire::TaskList {
            state,
            assignee,
            limit,
        } => Command::TaskList {
            state: task_state(state)?,
            assignee: assignee.filter(|a| !a.is_empty()),
            limit,
        },
        Wire::TaskCancel { task_id, reason } => Command::TaskCancel { task_id, reason },
        Wire::TaskAssign { task_id, agent } => Command::TaskAssign { task_id, agent },
        Wire::MsgSend { to, text } => Command::MsgSend { to, text },
        Wire::Inbox { seq, limit } => Command::Inbox { seq, limit },
        Wire::Broadcast { text, topic } => Command::Broadcast { text, topic },
        Wire::Status {} => Command::Status,
        Wire::Agents {} => Command::Agents,
        Wire::PollOpen {
            question,
            options,
            duration_s,
            voters: v,
        } => Command::PollOpen(NewPoll {
            question,
            options: options.0,
            duration_s,
            voters: voters(v)?,
        }),
        Wire::PollVote { poll_id, option } => Command::PollVote { poll_id, option },
        Wire::PollClose { poll_id } => Command::PollClose { poll_id },
        Wire::PollGet { poll_id } => Command::PollGet { poll_id },
        Wire::Search {
            query,
            limit,
            state,
            agent,
            since,
            mode,
        } => Command::Search(SearchRequest {
            mode: search_mode(mode)?,
            query,
            limit,
            state: task_state(state)?,
            agent: agent.filter(|a| !a.is_empty()),
            since: since
                .filter(|s| !s.is_empty())
                .map(|s| {
                    crate::clock::parse_rfc3339(&s).ok_or_else(|| {
                        bad(format!(
                    "`since` must be an RFC 3339 time such as 2026-11-24T12:00:00Z, got {s:?}"
                ))
                    })
                })
                .transpose()?,
        }),
        Wire::Reason {
            prompt,
            mode,
            stream,
        } => Command::Reason {
            prompt,
            mode,
            stream: stream.unwrap_or(false),
        },
        Wire::Help { command } => Command::Help { command },
        Wire::Insights { agent } => Command::Insights {
            agent: agent.filter(|a| !a.is_empty()),
        },
        Wire::Alerts {} => Command::Alerts,
        Wire::Recommend { question } => Command::Recommend {
            question: question.filter(|q| !q.trim().is_empty()),
        },
        Wire::ScheduleAdd {
            cron,
            every,
            timezone,
            start_at,
            action,
            title,
            body,
            requires,
            priority,
            text,
            topic,
            missed,
        } => Command::ScheduleAdd(Box::new(NewSchedule {
            cron,
            every: every.map(|e| e.0),
            timezone,
            start_at,
            action,
            title,
            body,
            requires: requires.unwrap_or_default().0,
            priority,
            text,
            topic,
            missed,
        })),
        Wire::ScheduleList {} => Command::ScheduleList,
        Wire::SchedulePause { schedule_id } => Command::SchedulePause { schedule_id },
        Wire::ScheduleResume { schedule_id } => Command::ScheduleResume { schedule_id },
        Wire::ScheduleDelete { schedule_id } => Command::ScheduleDelete { schedule_id },
        Wire::TaskRecommend { task_id } => Command::TaskRecommend { task_id },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::command::COMMAND_NAMES;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test input is an object"),
        }
    }

    #[test]
    fn every_command_name_parses_to_the_command_of_that_name() {
        // the smallest argument set each command takes
        let minimal = json!({
            "title": "t", "task_id": 1, "note": "n", "error": "e", "agent": "a",
            "to": "a", "text": "t", "question": "q", "options": ["a", "b"],
            "option": 1, "poll_id": 1, "query": "q", "prompt": "p",
            "schedule_id": 1,
        });
        for name in COMMAND_NAMES {
            let cmd = command(name, obj(minimal.clone())).unwrap();
            assert_eq!(cmd.name(), *name);
        }
    }

    #[test]
    fn lists_come_as_arrays_or_as_chat_text() {
        let a = command(
            "task.create",
            obj(json!({"title":"t","requires":["rust","review"]})),
        );
        let b = command(
            "task.create",
            obj(json!({"title":"t","requires":"rust, review"})),
        );
        for c in [a, b] {
            match c.unwrap() {
                Command::TaskCreate(t) => assert_eq!(t.requires, ["rust", "review"]),
                other => panic!("{other:?}"),
            }
        }
        match command(
            "poll.open",
            obj(json!({"question":"q","options":"a, b | c"})),
        )
        .unwrap()
        {
            Command::PollOpen(p) => {
                assert_eq!(p.options, ["a, b", "c"]);
                assert_eq!(p.duration_s, DEFAULT_POLL_DURATION_S);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_arguments_name_the_field_or_the_command() {
        let e = command("msg.send", obj(json!({"to":"a"}))).unwrap_err();
        assert!(e.to_string().contains("missing field `text`"), "{e}");
        let e = command("task.get", obj(json!({"task_id":"x"}))).unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
        let e = command("nope", Map::new()).unwrap_err();
        assert!(e.to_string().contains("unknown type"), "{e}");
        let e = command("search", obj(json!({"query":"x","since":"yesterday"}))).unwrap_err();
        assert_eq!(e.code(), "bad_request");
        let e = command(
            "poll.open",
            obj(json!({"question":"q","options":["a","b"],"voters":"nobody"})),
        )
        .unwrap_err();
        assert_eq!(e.code(), "bad_request");
    }

    #[test]
    fn json_values_are_held_to_the_catalogs_lengths_ranges_and_choices() {
        let catalog = Catalog::embedded().expect("embedded catalog");
        let refused = |name: &str, fields: Value| {
            command_in(&catalog, name, obj(fields))
                .expect_err("refused")
                .to_string()
        };
        let e = refused("msg.send", json!({"to": "a".repeat(65), "text": "hi"}));
        assert!(e.contains("`to` is limited to 64 characters"), "{e}");
        let e = refused("task.list", json!({"limit": 501}));
        assert!(e.contains("`limit` must be between 1 and 500"), "{e}");
        let e = refused("task.list", json!({"state": "sideways"}));
        assert!(e.contains("`state` must be one of"), "{e}");
        // an empty optional choice still means "any state"
        assert!(command_in(&catalog, "task.list", obj(json!({"state": ""}))).is_ok());
    }

    #[test]
    fn protocol_text_fields_are_not_held_to_the_catalogs_discord_lengths() {
        let catalog = Catalog::embedded().expect("embedded catalog");
        let prompt = "p".repeat(7000);
        assert!(command_in(
            &catalog,
            "reason",
            obj(json!({"prompt": prompt, "mode": "simple"}))
        )
        .is_ok());
        let title = "t".repeat(1000);
        assert!(command_in(&catalog, "task.create", obj(json!({"title": title}))).is_ok());
    }
}
