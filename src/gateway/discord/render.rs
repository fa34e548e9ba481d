//! Replies as Discord embeds: one function per thing shown, shared by the
//! interaction responses, the follow-up edits and the announcements.

use crate::core::command::Reply;
use crate::core::error::CoreError;
use crate::core::events::{CommittedEvent, EventKind};
use crate::core::model::{Task, TaskState};
use crate::reason::ReasonAnswer;
use serenity::builder::{
    CreateActionRow, CreateButton, CreateEmbed, CreateEmbedFooter, CreateInteractionResponseMessage,
};
use serenity::model::application::ButtonStyle;
use serenity::model::Colour;

/// Discord's limit on an embed description.
pub const DESCRIPTION_MAX: usize = 4096;
/// Lines listed in one embed before "… and N more".
const LIST_MAX: usize = 20;

const BLUE: Colour = Colour(0x3498db);
const GREEN: Colour = Colour(0x2ecc71);
const RED: Colour = Colour(0xe74c3c);
const GREY: Colour = Colour(0x95a5a6);
const ORANGE: Colour = Colour(0xe67e22);

/// Cuts `s` to at most `max` characters, marking the cut with `…`.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn state_colour(state: TaskState) -> Colour {
    match state {
        TaskState::Open => BLUE,
        TaskState::Claimed => ORANGE,
        TaskState::Done => GREEN,
        TaskState::Failed => RED,
        TaskState::Cancelled => GREY,
    }
}

/// One task: title, body, state, priority, assignee, tags.
pub fn task_embed(t: &Task) -> CreateEmbed {
    let mut e = CreateEmbed::new()
        .title(clip(&format!("#{} {}", t.id, t.title), 256))
        .colour(state_colour(t.state))
        .field("State", t.state.as_str(), true)
        .field("Priority", t.priority.to_string(), true)
        .field("Assignee", t.assignee.as_deref().unwrap_or("-"), true);
    if !t.body.is_empty() {
        e = e.description(clip(&t.body, DESCRIPTION_MAX));
    }
    if !t.tags.is_empty() {
        e = e.field("Tags", clip(&t.tags.join(", "), 1024), false);
    }
    if !t.requires.is_empty() {
        e = e.field("Requires", clip(&t.requires.join(", "), 1024), false);
    }
    if let Some(p) = &t.progress {
        e = e.field("Progress", clip(p, 1024), false);
    }
    if let Some(err) = &t.error {
        e = e.field("Error", clip(err, 1024), false);
    }
    e
}

/// The custom id of a task button: `task:<action>:<id>`.
pub fn button_id(action: &str, task_id: i64) -> String {
    format!("task:{action}:{task_id}")
}

/// Claim (open tasks), Done and Release (claimed tasks); none for final ones.
pub fn task_buttons(t: &Task) -> Vec<CreateActionRow> {
    let buttons = match t.state {
        TaskState::Open => vec![CreateButton::new(button_id("claim", t.id))
            .label("Claim")
            .style(ButtonStyle::Primary)],
        TaskState::Claimed => vec![
            CreateButton::new(button_id("done", t.id))
                .label("Done")
                .style(ButtonStyle::Success),
            CreateButton::new(button_id("release", t.id))
                .label("Release")
                .style(ButtonStyle::Secondary),
        ],
        _ => return vec![],
    };
    vec![CreateActionRow::Buttons(buttons)]
}

fn task_line(t: &Task) -> String {
    format!(
        "`#{}` **{}** · {}{}",
        t.id,
        clip(&t.title, 80),
        t.state,
        t.assignee
            .as_deref()
            .map(|a| format!(" · {a}"))
            .unwrap_or_default()
    )
}

fn listing(lines: Vec<String>, empty: &str) -> String {
    if lines.is_empty() {
        return empty.to_string();
    }
    let total = lines.len();
    let mut out = String::new();
    for (i, line) in lines.into_iter().enumerate() {
        if i == LIST_MAX || out.len() + line.len() + 40 > DESCRIPTION_MAX {
            out.push_str(&format!("… and {} more", total - i));
            break;
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// A poll with its tally, and one vote button per option while it is open
/// (custom id `poll:vote:<poll>:<option>`).
pub fn poll_message(p: &crate::core::polls::Poll) -> CreateInteractionResponseMessage {
    use crate::core::polls::PollState;
    let lines: Vec<String> = p
        .options
        .iter()
        .zip(p.tally.iter())
        .enumerate()
        .map(|(i, (o, n))| format!("**{}.** {} · {n}", i + 1, clip(o, 100)))
        .collect();
    let embed = CreateEmbed::new()
        .title(format!("Poll #{}: {}", p.id, clip(&p.question, 200)))
        .colour(if p.state == PollState::Open {
            BLUE
        } else {
            GREY
        })
        .description(lines.join("\n"))
        .footer(serenity::all::CreateEmbedFooter::new(format!(
            "{} · voters: {} · {} vote(s)",
            p.state.as_str(),
            p.voters,
            p.total_votes
        )));
    let mut msg = CreateInteractionResponseMessage::new().embed(embed);
    if p.state == PollState::Open {
        let buttons: Vec<CreateButton> = (1..=p.options.len())
            .map(|i| {
                CreateButton::new(format!("poll:vote:{}:{i}", p.id))
                    .label(i.to_string())
                    .style(ButtonStyle::Secondary)
            })
            .collect();
        // Discord allows five buttons per row.
        let rows = buttons
            .chunks(5)
            .map(|c| CreateActionRow::Buttons(c.to_vec()))
            .collect();
        msg = msg.components(rows);
    }
    msg
}

/// A command's reply as a visible message (embed plus task buttons).
pub fn reply_message(reply: &Reply) -> CreateInteractionResponseMessage {
    let msg = CreateInteractionResponseMessage::new();
    match reply {
        Reply::Poll(p) | Reply::Voted(p) => poll_message(p),
        Reply::Reason(a) => msg.embed(reason_embed("", &a.text, Some(a))),
        // the inbox is an agent's (WebSocket, HTTP, MCP); a summary if it ever shows here
        Reply::Inbox(i) => notice(&format!("{} message(s) read.", i.messages.len())),
        // the handler answers help from the catalog; this is the fallback
        Reply::Help { .. } => notice("Try /help."),
        Reply::Results(r) => {
            let embed = CreateEmbed::new()
                .title(format!(
                    "Search ({} found, {})",
                    r.results.len(),
                    r.mode.as_str()
                ))
                .colour(BLUE)
                .description(listing(
                    r.results
                        .iter()
                        .map(|h| format!("**{}** · {}", clip(&h.title, 80), clip(&h.snippet, 120)))
                        .collect(),
                    "Nothing found.",
                ));
            let embed = match &r.degraded_reason {
                Some(why) => embed.footer(CreateEmbedFooter::new(clip(
                    &format!("Degraded: {why}"),
                    2000,
                ))),
                None => embed,
            };
            msg.embed(embed)
        }
        Reply::Task(Some(t)) => msg.embed(task_embed(t)).components(task_buttons(t)),
        Reply::Task(None) => msg.embed(
            CreateEmbed::new()
                .colour(GREY)
                .description("No open task matches."),
        ),
        Reply::Tasks(tasks) => msg.embed(
            CreateEmbed::new()
                .title(format!("Tasks ({})", tasks.len()))
                .colour(BLUE)
                .description(listing(tasks.iter().map(task_line).collect(), "No tasks.")),
        ),
        Reply::Ok => msg.embed(CreateEmbed::new().colour(GREEN).description("Done.")),
        Reply::Insights(i) => msg.embed(insights_embed(i)),
        Reply::Alerts(alerts) => msg.embed(
            CreateEmbed::new()
                .title(format!("Alerts ({})", alerts.len()))
                .colour(if alerts.is_empty() { GREEN } else { ORANGE })
                .description(listing(
                    alerts
                        .iter()
                        .map(|a| format!("⚠️ **{}** · {}", a.rule, clip(&a.message, 200)))
                        .collect(),
                    "No active alerts.",
                )),
        ),
        Reply::Schedule(s) => msg.embed(
            CreateEmbed::new()
                .title(format!("Schedule #{}", s.id))
                .colour(BLUE)
                .description(clip(&s.summary(), 300)),
        ),
        Reply::Recommendation(r) => msg.embed(
            CreateEmbed::new()
                .title(format!("Who should do task #{}", r.task_id))
                .colour(BLUE)
                .description(listing(
                    r.candidates
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            format!("**{}. {}** · {}", i + 1, c.agent, clip(&c.reason, 180))
                        })
                        .collect(),
                    "No capable agent is online.",
                )),
        ),
        Reply::Schedules(list) => msg.embed(
            CreateEmbed::new()
                .title(format!("Schedules ({})", list.len()))
                .colour(BLUE)
                .description(listing(
                    list.iter().map(|s| clip(&s.summary(), 200)).collect(),
                    "No schedules.",
                )),
        ),
        Reply::Status(s) => {
            let counts = crate::core::model::TaskState::ALL
                .iter()
                .map(|st| format!("{} {}", st, s.tasks.get(*st)))
                .collect::<Vec<_>>()
                .join(" · ");
            msg.embed(
                CreateEmbed::new()
                    .title("Status")
                    .colour(BLUE)
                    .field("Agents online", s.agents_online.to_string(), true)
                    .field("Uptime", format!("{} s", s.uptime_s), true)
                    .field("Version", s.version, true)
                    .field("Tasks", counts, false),
            )
        }
        Reply::Agents(agents) => msg.embed(
            CreateEmbed::new()
                .title(format!("Agents ({})", agents.len()))
                .colour(BLUE)
                .description(listing(
                    agents
                        .iter()
                        .map(|a| {
                            format!(
                                "{} **{}** · {}{}{}",
                                if a.online { "🟢" } else { "⚪" },
                                a.name,
                                a.role,
                                if a.capabilities.is_empty() {
                                    String::new()
                                } else {
                                    format!(" · {}", a.capabilities.join(", "))
                                },
                                a.current_task
                                    .map(|t| format!(" · on #{t}"))
                                    .unwrap_or_default()
                            )
                        })
                        .collect(),
                    "No agents.",
                )),
        ),
    }
}

/// A refusal or failure, shown only to the caller.
pub fn error_message(e: &CoreError) -> CreateInteractionResponseMessage {
    notice(&e.to_string())
}

/// A short text shown only to the caller.
pub fn notice(text: &str) -> CreateInteractionResponseMessage {
    CreateInteractionResponseMessage::new()
        .ephemeral(true)
        .embed(
            CreateEmbed::new()
                .colour(RED)
                .description(clip(text, DESCRIPTION_MAX)),
        )
}

/// Help text, shown only to the caller.
pub fn help_message(text: &str) -> CreateInteractionResponseMessage {
    CreateInteractionResponseMessage::new()
        .ephemeral(true)
        .embed(
            CreateEmbed::new()
                .title("Help")
                .colour(BLUE)
                .description(clip(text, DESCRIPTION_MAX)),
        )
}

/// A reasoning answer (final or, with `partial`, while it streams).
pub fn reason_embed(prompt: &str, text: &str, answer: Option<&ReasonAnswer>) -> CreateEmbed {
    let body = if text.is_empty() { "…" } else { text };
    let mut e = CreateEmbed::new()
        .title(clip(prompt, 256))
        .colour(if answer.is_some() { GREEN } else { GREY })
        .description(clip(body, DESCRIPTION_MAX));
    if let Some(a) = answer {
        e = e
            .field("Mode", a.mode.to_string(), true)
            .field(
                "Confidence",
                a.confidence
                    .map(|c| format!("{c:.3}"))
                    .unwrap_or_else(|| "n/a".into()),
                true,
            )
            .field("Model", clip(&a.model, 256), true);
        if a.cached {
            e = e.footer(serenity::builder::CreateEmbedFooter::new("from cache"));
        }
    }
    e
}

/// The event kinds announced in the announcement channel.
pub fn announced(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::TaskCreated
            | EventKind::TaskClaimed
            | EventKind::TaskCompleted
            | EventKind::TaskFailed
            | EventKind::TaskExpired
            | EventKind::Broadcast
            | EventKind::PollOpened
            | EventKind::PollClosed
            | EventKind::AlertRaised
            | EventKind::AlertCleared
    )
}

/// The insights as an embed: the swarm's last hour, the slowest queues
/// and the least reliable agents.
fn insights_embed(i: &crate::core::insights::Insights) -> CreateEmbed {
    let pct = |r: Option<f64>| r.map_or("n/a".to_string(), |r| format!("{:.0}%", r * 100.0));
    let secs = |ms: Option<i64>| {
        ms.map_or("n/a".to_string(), |ms| {
            format!("{:.1} s", ms as f64 / 1000.0)
        })
    };
    let queues = i
        .queues
        .iter()
        .take(5)
        .map(|q| {
            format!(
                "`{}` · {} open · wait p95 {} · {} capable online",
                clip(&q.queue, 60),
                q.backlog,
                secs(q.wait_p95_ms()),
                q.capable_online
            )
        })
        .collect();
    let agents = i
        .agents
        .iter()
        .take(5)
        .map(|a| {
            let d = &a.windows.day;
            format!(
                "**{}** · success {} · {} claims, {} failed, {} expired",
                a.agent,
                pct(d.success_rate),
                d.claims,
                d.failures,
                d.expiries
            )
        })
        .collect();
    let h = &i.swarm.hour;
    CreateEmbed::new()
        .title("Insights")
        .colour(BLUE)
        .description(format!(
            "Last hour: {} done, success {}, wait p95 {} · trend: success {}, wait {}",
            h.completions,
            pct(h.success_rate),
            secs(i.wait_hour.p95_ms),
            i.trend.success,
            i.trend.wait
        ))
        .field("Slowest queues", listing(queues, "No queues."), false)
        .field(
            "Least reliable agents",
            listing(agents, "No claims yet."),
            false,
        )
}

fn event_line(ev: &CommittedEvent) -> Option<String> {
    let data: serde_json::Value = serde_json::from_str(&ev.data).ok()?;
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_string();
    if matches!(ev.kind, EventKind::AlertRaised | EventKind::AlertCleared) {
        let a = &data["alert"];
        return Some(if ev.kind == EventKind::AlertRaised {
            format!(
                "🚨 **alert** {}: {}",
                s(&a["rule"]),
                clip(&s(&a["message"]), 300)
            )
        } else {
            format!(
                "✅ **alert cleared** {}: {}",
                s(&a["rule"]),
                clip(&s(&a["message"]), 300)
            )
        });
    }
    if ev.kind == EventKind::Broadcast {
        let topic = data["topic"]
            .as_str()
            .map(|t| format!(" [{t}]"))
            .unwrap_or_default();
        return Some(format!(
            "📢 **{}**{topic}: {}",
            s(&data["from"]),
            clip(&s(&data["text"]), 500)
        ));
    }
    if matches!(ev.kind, EventKind::PollOpened | EventKind::PollClosed) {
        let line = crate::core::polls::announcement(ev.kind, &data)?;
        let hint = if ev.kind == EventKind::PollOpened {
            " · vote with `/poll vote`"
        } else {
            ""
        };
        return Some(format!("🗳 {}{hint}", clip(&line, 900)));
    }
    let t = &data["task"];
    let id = t["id"].as_i64()?;
    let title = clip(&s(&t["title"]), 80);
    let who = t["assignee"].as_str().unwrap_or("-");
    Some(match ev.kind {
        EventKind::TaskCreated => {
            format!("🆕 `#{id}` **{title}** created by {}", s(&t["created_by"]))
        }
        EventKind::TaskClaimed => format!("✋ `#{id}` **{title}** claimed by {who}"),
        EventKind::TaskCompleted => format!("✅ `#{id}` **{title}** done by {who}"),
        EventKind::TaskFailed => format!(
            "❌ `#{id}` **{title}** failed ({}): {}",
            s(&t["state"]),
            clip(t["error"].as_str().unwrap_or(""), 200)
        ),
        EventKind::TaskExpired => format!("⌛ `#{id}` **{title}**: lease of {who} expired"),
        _ => return None,
    })
}

/// One embed listing a burst of events; `missed` counts events lost while
/// the announcer lagged.
pub fn announcement_embed(events: &[CommittedEvent], missed: u64) -> CreateEmbed {
    let mut lines: Vec<String> = events.iter().filter_map(event_line).collect();
    if missed > 0 {
        lines.push(format!("({missed} more events were not announced)"));
    }
    CreateEmbed::new()
        .colour(BLUE)
        .description(listing(lines, "Nothing new."))
}
