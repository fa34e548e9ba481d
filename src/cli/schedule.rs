//! `swarmbridge schedule ...`: schedules from the command line, through the
//! core like every front door (the CLI acts as an admin on its own
//! database; a running server fires what it wrote at its next sweep).

use super::{cli_caller, open};
use crate::config::Config;
use crate::core::command::{Command, Reply};
use crate::core::schedules::{NewSchedule, Schedule};
use clap::Subcommand;

/// `swarmbridge schedule ...`
#[allow(clippy::large_enum_variant)] // parsed once per process
#[derive(Debug, Subcommand)]
pub enum ScheduleCmd {
    /// Create a schedule that creates a task (TITLE) or posts a broadcast
    /// (--broadcast TEXT) on a cron expression or every N minutes.
    Add {
        /// The task's title (leave out with --broadcast).
        title: Option<String>,
        /// A cron expression, e.g. "0 9 * * 1-5".
        #[arg(long, conflicts_with = "every")]
        cron: Option<String>,
        /// An interval, e.g. 15m, 2h, 1d.
        #[arg(long)]
        every: Option<String>,
        /// The IANA time zone of --cron (default UTC).
        #[arg(long)]
        timezone: Option<String>,
        /// The first occurrence of an --every schedule (RFC 3339).
        #[arg(long)]
        start_at: Option<String>,
        /// The task's body.
        #[arg(long)]
        body: Option<String>,
        /// A capability the task needs (repeat for several).
        #[arg(long)]
        requires: Vec<String>,
        /// The task's priority.
        #[arg(long, allow_negative_numbers = true)]
        priority: Option<i64>,
        /// Post this broadcast instead of creating a task.
        #[arg(long, conflicts_with = "title")]
        broadcast: Option<String>,
        /// The broadcast's topic.
        #[arg(long)]
        topic: Option<String>,
        /// Occurrences missed while no server ran: skip (default) or run_once.
        #[arg(long, value_parser = ["skip", "run_once"])]
        missed: Option<String>,
    },
    /// List schedules.
    List,
    /// Stop a schedule firing until resumed.
    Pause {
        /// The schedule id.
        id: i64,
    },
    /// Let a paused schedule fire again from its next occurrence.
    Resume {
        /// The schedule id.
        id: i64,
    },
    /// Delete a schedule (the tasks it created stay).
    Delete {
        /// The schedule id.
        id: i64,
    },
}

/// Runs one `swarmbridge schedule` subcommand.
pub(super) async fn run(cfg: &Config, cmd: ScheduleCmd) -> anyhow::Result<()> {
    let command = match cmd {
        ScheduleCmd::Add {
            title,
            cron,
            every,
            timezone,
            start_at,
            body,
            requires,
            priority,
            broadcast,
            topic,
            missed,
        } => Command::ScheduleAdd(Box::new(NewSchedule {
            cron,
            every,
            timezone,
            start_at,
            action: Some(
                if broadcast.is_some() {
                    "broadcast"
                } else {
                    "task"
                }
                .into(),
            ),
            title,
            body,
            requires,
            priority,
            text: broadcast,
            topic,
            missed,
        })),
        ScheduleCmd::List => Command::ScheduleList,
        ScheduleCmd::Pause { id } => Command::SchedulePause { schedule_id: id },
        ScheduleCmd::Resume { id } => Command::ScheduleResume { schedule_id: id },
        ScheduleCmd::Delete { id } => Command::ScheduleDelete { schedule_id: id },
    };
    let core = open(cfg).await?;
    match core.execute(&cli_caller(), command, None).await? {
        Reply::Schedule(s) => {
            out!("{}", s.id);
            eprintln!("{}", s.summary());
        }
        Reply::Schedules(list) => print_table(&list),
        _ => eprintln!("done"),
    }
    Ok(())
}

fn print_table(list: &[Schedule]) {
    out!(
        "{:>4} {:<7} {:<9} {:<24} {:>5} WHEN / WHAT",
        "ID",
        "STATE",
        "ACTION",
        "NEXT",
        "FIRED"
    );
    for s in list {
        out!(
            "{:>4} {:<7} {:<9} {:<24} {:>5} {} / {}",
            s.id,
            s.state,
            s.action,
            crate::clock::rfc3339(s.next_at),
            s.fired,
            s.when(),
            s.title
        );
    }
}
