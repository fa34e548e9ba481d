//! The one command model every front door parses into, and the reply the
//! core produces. Adding a command touches this enum, its arm in
//! [`Core::execute`], its wire form in `dispatch::parse` and its entry in
//! `commands/*.toml`; front doors only render the new [`Reply`] if it has one.

use super::alerts::Alert;
use super::allocation::Recommendation;
use super::error::CoreError;
use super::insights::Insights;
use super::messages::Inbox;
use super::model::{AgentView, Caller, NewTask, StatusReport, Task, TaskState};
use super::polls::{NewPoll, Poll};
use super::schedules::{NewSchedule, Schedule};
use super::search::{SearchRequest, SearchResults};
use super::Core;
use crate::reason::ReasonAnswer;
use tokio::sync::mpsc;

/// A request, already parsed and typed, from any front door.
#[derive(Debug, Clone)]
pub enum Command {
    /// Create a task.
    TaskCreate(NewTask),
    /// Claim a task by id, or the best open one matching the caller's capabilities.
    TaskClaim {
        /// The task to claim; None = next matching.
        task_id: Option<i64>,
        /// Lease length in seconds (default `tasks.lease_s`).
        lease_s: Option<i64>,
    },
    /// Extend the caller's lease.
    TaskRenew {
        /// The claimed task.
        task_id: i64,
        /// New lease length from now.
        lease_s: Option<i64>,
    },
    /// Report progress on a claimed task.
    TaskProgress {
        /// The claimed task.
        task_id: i64,
        /// What happened.
        note: String,
        /// 0 to 100.
        percent: Option<i64>,
    },
    /// Finish a claimed task.
    TaskComplete {
        /// The claimed task.
        task_id: i64,
        /// Any JSON result.
        result: Option<serde_json::Value>,
    },
    /// Fail a claimed task (retried until `max_attempts` when `retry`).
    TaskFail {
        /// The claimed task.
        task_id: i64,
        /// Why it failed.
        error: String,
        /// Whether it may be retried.
        retry: bool,
    },
    /// Give a claimed task back.
    TaskRelease {
        /// The claimed task.
        task_id: i64,
    },
    /// Show one task.
    TaskGet {
        /// The task.
        task_id: i64,
    },
    /// List tasks.
    TaskList {
        /// Only this state.
        state: Option<TaskState>,
        /// Only this assignee.
        assignee: Option<String>,
        /// At most this many (default 50, max 500).
        limit: Option<i64>,
    },
    /// Cancel a task that is not final.
    TaskCancel {
        /// The task.
        task_id: i64,
        /// Why.
        reason: Option<String>,
    },
    /// Claim a task on an agent's behalf (operator).
    TaskAssign {
        /// The task.
        task_id: i64,
        /// The agent that gets it.
        agent: String,
    },
    /// Send a direct message to an agent.
    MsgSend {
        /// Agent name.
        to: String,
        /// The text.
        text: String,
    },
    /// Read the caller's direct messages and broadcasts after a `seq`,
    /// acknowledging what was read.
    Inbox {
        /// Read what came after this `seq`; None: after the agent's last ack.
        seq: Option<i64>,
        /// At most this many messages (default [`super::messages::INBOX_DEFAULT_LIMIT`]).
        limit: Option<i64>,
    },
    /// Send to every agent (and the platforms' announcement channels).
    Broadcast {
        /// The text.
        text: String,
        /// An optional topic.
        topic: Option<String>,
    },
    /// Counts and uptime.
    Status,
    /// Every agent with presence.
    Agents,
    /// Open a poll (operator).
    PollOpen(NewPoll),
    /// Vote in a poll; a later vote by the same identity replaces the earlier.
    PollVote {
        /// The poll; None: the newest open poll the caller's platform may vote in.
        poll_id: Option<i64>,
        /// 1-based index into the poll's options.
        option: i64,
    },
    /// Close a poll now (operator).
    PollClose {
        /// The poll.
        poll_id: i64,
    },
    /// Show one poll with its tally.
    PollGet {
        /// The poll; None: the newest open poll the caller's platform may vote in.
        poll_id: Option<i64>,
    },
    /// Full-text search over tasks and messages.
    Search(SearchRequest),
    /// Ask the reasoning engine.
    Reason {
        /// The question.
        prompt: String,
        /// One of the five mode names.
        mode: String,
        /// Whether the front door streams the answer's pieces as they come.
        stream: bool,
    },
    /// Help on the commands (chat front doors render it from the catalog).
    Help {
        /// The command asked about; None: all the caller may run.
        command: Option<String>,
    },
    /// Performance analysis of agents, capabilities and queues.
    Insights {
        /// Only this agent's record (`not_found` for an unknown agent).
        agent: Option<String>,
    },
    /// The active bottleneck alerts.
    Alerts,
    /// Advice from the reasoning engine (strategic mode) on the insights
    /// and active alerts.
    Recommend {
        /// What the operator wants advice on, if anything in particular.
        question: Option<String>,
    },
    /// Create a schedule (operator).
    ScheduleAdd(Box<NewSchedule>),
    /// Every schedule.
    ScheduleList,
    /// Stop a schedule firing until resumed (operator).
    SchedulePause {
        /// The schedule.
        schedule_id: i64,
    },
    /// Let a paused schedule fire again from its next occurrence (operator).
    ScheduleResume {
        /// The schedule.
        schedule_id: i64,
    },
    /// Delete a schedule (operator).
    ScheduleDelete {
        /// The schedule.
        schedule_id: i64,
    },
    /// Rank the online agents that can do a task (operator).
    TaskRecommend {
        /// The task.
        task_id: i64,
    },
}

/// The protocol name of every command variant, in declaration order: what
/// the catalog must declare (checked at start-up, see `dispatch::check_catalog`).
pub const COMMAND_NAMES: &[&str] = &[
    "task.create",
    "task.claim",
    "task.renew",
    "task.progress",
    "task.complete",
    "task.fail",
    "task.release",
    "task.get",
    "task.list",
    "task.cancel",
    "task.assign",
    "msg.send",
    "inbox",
    "broadcast",
    "status",
    "agents",
    "poll.open",
    "poll.vote",
    "poll.close",
    "poll.get",
    "search",
    "reason",
    "help",
    "insights",
    "alerts",
    "recommend",
    "schedule.add",
    "schedule.list",
    "schedule.pause",
    "schedule.resume",
    "schedule.delete",
    "task.recommend",
];

impl Command {
    /// The protocol name (`task.create`, ...), used for rate classes, metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::TaskCreate(_) => "task.create",
            Command::TaskClaim { .. } => "task.claim",
            Command::TaskRenew { .. } => "task.renew",
            Command::TaskProgress { .. } => "task.progress",
            Command::TaskComplete { .. } => "task.complete",
            Command::TaskFail { .. } => "task.fail",
            Command::TaskRelease { .. } => "task.release",
            Command::TaskGet { .. } => "task.get",
            Command::TaskList { .. } => "task.list",
            Command::TaskCancel { .. } => "task.cancel",
            Command::TaskAssign { .. } => "task.assign",
            Command::MsgSend { .. } => "msg.send",
            Command::Inbox { .. } => "inbox",
            Command::Broadcast { .. } => "broadcast",
            Command::Status => "status",
            Command::Agents => "agents",
            Command::PollOpen(_) => "poll.open",
            Command::PollVote { .. } => "poll.vote",
            Command::PollClose { .. } => "poll.close",
            Command::PollGet { .. } => "poll.get",
            Command::Search(_) => "search",
            Command::Reason { .. } => "reason",
            Command::Help { .. } => "help",
            Command::Insights { .. } => "insights",
            Command::Alerts => "alerts",
            Command::Recommend { .. } => "recommend",
            Command::ScheduleAdd(_) => "schedule.add",
            Command::ScheduleList => "schedule.list",
            Command::SchedulePause { .. } => "schedule.pause",
            Command::ScheduleResume { .. } => "schedule.resume",
            Command::ScheduleDelete { .. } => "schedule.delete",
            Command::TaskRecommend { .. } => "task.recommend",
        }
    }

    /// The task a command is about, for tracing spans.
    pub fn task_id(&self) -> Option<i64> {
        match self {
            Command::TaskClaim { task_id, .. } => *task_id,
            Command::TaskRenew { task_id, .. }
            | Command::TaskProgress { task_id, .. }
            | Command::TaskComplete { task_id, .. }
            | Command::TaskFail { task_id, .. }
            | Command::TaskRelease { task_id }
            | Command::TaskGet { task_id }
            | Command::TaskCancel { task_id, .. }
            | Command::TaskAssign { task_id, .. }
            | Command::TaskRecommend { task_id } => Some(*task_id),
            _ => None,
        }
    }
}

/// What a command produced; each front door renders it its own way.
#[allow(clippy::large_enum_variant)] // short-lived, never stored in bulk
#[derive(Debug, Clone)]
pub enum Reply {
    /// One task (None: `task.claim` found nothing).
    Task(Option<Task>),
    /// Several tasks.
    Tasks(Vec<Task>),
    /// Done, nothing to show.
    Ok,
    /// `status`.
    Status(StatusReport),
    /// `agents`.
    Agents(Vec<AgentView>),
    /// One poll (`poll.open`, `poll.close`, `poll.get`).
    Poll(Poll),
    /// `search`.
    Results(SearchResults),
    /// `inbox`: the messages read and the cursor to read on from.
    Inbox(Inbox),
    /// `poll.vote`: the vote was counted; the poll with its new tally
    /// (the WebSocket and HTTP answer `ok`, chat shows the tally).
    Voted(Poll),
    /// `reason`: the answer.
    Reason(ReasonAnswer),
    /// `help`: what was asked about (rendered per platform from the catalog).
    Help {
        /// The command asked about, if any.
        command: Option<String>,
    },
    /// `insights`: the performance analysis.
    Insights(Box<Insights>),
    /// `alerts`: the active alerts, oldest first.
    Alerts(Vec<Alert>),
    /// One schedule (`schedule.add`, `schedule.pause`, `schedule.resume`).
    Schedule(Schedule),
    /// `schedule.list`.
    Schedules(Vec<Schedule>),
    /// `task.recommend`.
    Recommendation(Recommendation),
}

impl Core {
    /// Applies a command for a caller: validates, runs it (one transaction
    /// for a state change) and returns the reply. It enforces no policy
    /// (role, rate, platform): front doors go through `dispatch`, which
    /// does; only `dispatch` and the CLI (an admin writing to its own
    /// database) call this. With `deltas`, a `reason` streams its pieces there.
    pub(crate) async fn execute(
        &self,
        caller: &Caller,
        cmd: Command,
        deltas: Option<mpsc::Sender<String>>,
    ) -> Result<Reply, CoreError> {
        match cmd {
            Command::TaskCreate(new) => Ok(Reply::Task(Some(self.create_task(caller, new).await?))),
            Command::TaskClaim { task_id, lease_s } => Ok(Reply::Task(
                self.claim_task(caller, task_id, lease_s).await?,
            )),
            Command::TaskRenew { task_id, lease_s } => Ok(Reply::Task(Some(
                self.renew_task(caller, task_id, lease_s).await?,
            ))),
            Command::TaskProgress {
                task_id,
                note,
                percent,
            } => {
                self.progress_task(caller, task_id, note, percent).await?;
                Ok(Reply::Ok)
            }
            Command::TaskComplete { task_id, result } => Ok(Reply::Task(Some(
                self.complete_task(caller, task_id, result).await?,
            ))),
            Command::TaskFail {
                task_id,
                error,
                retry,
            } => Ok(Reply::Task(Some(
                self.fail_task(caller, task_id, error, retry).await?,
            ))),
            Command::TaskRelease { task_id } => {
                Ok(Reply::Task(Some(self.release_task(caller, task_id).await?)))
            }
            Command::TaskGet { task_id } => Ok(Reply::Task(Some(self.get_task(task_id).await?))),
            Command::TaskList {
                state,
                assignee,
                limit,
            } => Ok(Reply::Tasks(
                self.list_tasks(state, assignee.as_deref(), limit).await?,
            )),
            Command::TaskCancel { task_id, reason } => Ok(Reply::Task(Some(
                self.cancel_task(caller, task_id, reason).await?,
            ))),
            Command::TaskAssign { task_id, agent } => Ok(Reply::Task(Some(
                self.assign_task(caller, task_id, agent).await?,
            ))),
            Command::MsgSend { to, text } => {
                self.send_message(caller, &to, text).await?;
                Ok(Reply::Ok)
            }
            Command::Inbox { seq, limit } => {
                Ok(Reply::Inbox(self.read_inbox(caller, seq, limit).await?))
            }
            Command::Broadcast { text, topic } => {
                self.broadcast(caller, text, topic).await?;
                Ok(Reply::Ok)
            }
            Command::Status => Ok(Reply::Status(self.status())),
            Command::Agents => Ok(Reply::Agents(self.agent_views().await?)),
            Command::PollOpen(new) => Ok(Reply::Poll(self.open_poll(caller, new).await?)),
            Command::PollVote { poll_id, option } => {
                let poll_id = match poll_id {
                    Some(id) => id,
                    None => self.newest_open_poll(caller.platform).await?.id,
                };
                self.vote_poll(caller, poll_id, option).await?;
                Ok(Reply::Voted(self.get_poll(poll_id).await?))
            }
            Command::PollClose { poll_id } => {
                Ok(Reply::Poll(self.close_poll(caller, poll_id).await?))
            }
            Command::PollGet { poll_id } => Ok(Reply::Poll(match poll_id {
                Some(id) => self.get_poll(id).await?,
                None => self.newest_open_poll(caller.platform).await?,
            })),
            Command::Search(req) => Ok(Reply::Results(self.search(caller, req).await?)),
            Command::Reason { prompt, mode, .. } => {
                let mode = self.check_reason(caller, &prompt, &mode)?;
                Ok(Reply::Reason(self.reason(&prompt, mode, deltas).await?))
            }
            Command::Help { command } => Ok(Reply::Help { command }),
            Command::Insights { agent } => Ok(Reply::Insights(Box::new(
                self.insights_for(agent.as_deref()).await?,
            ))),
            Command::Alerts => Ok(Reply::Alerts(self.active_alerts().await?)),
            Command::Recommend { question } => Ok(Reply::Reason(
                self.recommend(caller, question.as_deref()).await?,
            )),
            Command::ScheduleAdd(new) => {
                Ok(Reply::Schedule(self.add_schedule(caller, *new).await?))
            }
            Command::ScheduleList => Ok(Reply::Schedules(self.list_schedules().await?)),
            Command::SchedulePause { schedule_id } => {
                Ok(Reply::Schedule(self.pause_schedule(schedule_id).await?))
            }
            Command::ScheduleResume { schedule_id } => {
                Ok(Reply::Schedule(self.resume_schedule(schedule_id).await?))
            }
            Command::ScheduleDelete { schedule_id } => {
                self.delete_schedule(schedule_id).await?;
                Ok(Reply::Ok)
            }
            Command::TaskRecommend { task_id } => {
                Ok(Reply::Recommendation(self.recommend_task(task_id).await?))
            }
        }
    }
}
