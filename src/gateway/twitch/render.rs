//! Replies and errors as one chat line, and the rules every outgoing line
//! obeys: no control characters or line breaks, never starting with `/` or
//! `.` (which Twitch would run as a chat command), at most `max` characters.

use crate::core::command::Reply;
use crate::core::error::CoreError;
use crate::core::model::{AgentView, Task};

/// Characters a line may not start with: Twitch runs `/x` and `.x` as commands.
const COMMAND_STARTS: [char; 2] = ['/', '.'];

/// Removes control characters (newlines and tabs become spaces), format
/// characters that render as nothing, and collapses runs of blanks. Used on
/// everything echoed from outside (titles, names, broadcast texts, answers).
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = false;
    for c in text.chars() {
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if is_invisible(c) {
            continue;
        }
        if c == ' ' {
            if !blank && !out.is_empty() {
                out.push(' ');
            }
            blank = true;
        } else {
            out.push(c);
            blank = false;
        }
    }
    while out.ends_with(' ') {
        out.pop();
    }
    out
}

fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{E0000}'..='\u{E007F}')
}

/// Cuts `text` to at most `max` characters, ending in `…` when cut.
pub fn fit(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    while out.ends_with(' ') {
        out.pop();
    }
    out.push('…');
    out
}

/// Longest `!ask` answer: one chat line with room for the addressee.
pub const ASK_MAX_CHARS: usize = 450;

/// Like [`fit`], but cuts at the last word boundary before `max` (when one
/// is not too far back), so an answer never ends in half a word.
pub fn fit_words(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let head: String = text.chars().take(max.saturating_sub(1)).collect();
    let cut = match head.rfind(char::is_whitespace) {
        Some(i) if head[..i].chars().count() >= max / 2 => &head[..i],
        _ => head.as_str(),
    };
    let mut out = cut.trim_end().to_string();
    out.push('…');
    out
}

/// The final form of any line the bot sends: cleaned, not starting with a
/// command character, at most `max` characters.
pub fn chat_line(text: &str, max: usize) -> String {
    let mut line = clean(text);
    if line.starts_with(COMMAND_STARTS) {
        line.insert_str(0, "» ");
    }
    if line.is_empty() {
        line.push('…');
    }
    fit(&line, max)
}

/// A display form of an identity: `twitch:bob` → `bob`, agents as they are.
pub fn who(identity: &str) -> String {
    let name = identity.split_once(':').map_or(identity, |(_, n)| n);
    fit(&clean(name), 40)
}

fn uptime(s: u64) -> String {
    match s {
        0..=59 => "<1m".into(),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `#42 build the thing`, the title cut to `title_max`.
pub fn task_ref(t: &Task, title_max: usize) -> String {
    format!("#{} {}", t.id, fit(&clean(&t.title), title_max))
}

fn task_line(t: &Task) -> String {
    let mut s = format!("{} [{}]", task_ref(t, 120), t.state);
    if let Some(a) = &t.assignee {
        s.push_str(&format!(" by {}", who(a)));
    }
    if let Some(p) = t.percent {
        s.push_str(&format!(" {p}%"));
    }
    if let Some(note) = &t.progress {
        s.push_str(&format!(" · {}", fit(&clean(note), 100)));
    }
    if let Some(e) = &t.error {
        s.push_str(&format!(" · error: {}", fit(&clean(e), 100)));
    }
    s
}

fn list<T>(items: &[T], max_shown: usize, show: impl Fn(&T) -> String) -> String {
    let mut parts: Vec<String> = items.iter().take(max_shown).map(show).collect();
    if items.len() > max_shown {
        parts.push(format!("+{} more", items.len() - max_shown));
    }
    parts.join(", ")
}

fn agent(a: &AgentView) -> String {
    let mut s = who(&a.name);
    if a.online {
        s.push_str(" (online");
        if let Some(t) = a.current_task {
            s.push_str(&format!(", on #{t}"));
        }
        s.push(')');
    }
    s
}

/// One line for a reply of the core (before the addressee is added).
pub fn reply(r: &Reply) -> String {
    match r {
        Reply::Status(s) => {
            let c = |st| s.tasks.get(st);
            use crate::core::model::TaskState::*;
            format!(
                "{} online · tasks: {} open, {} claimed, {} done, {} failed, {} cancelled · up {}",
                plural(s.agents_online, "agent", "agents"),
                c(Open),
                c(Claimed),
                c(Done),
                c(Failed),
                c(Cancelled),
                uptime(s.uptime_s)
            )
        }
        Reply::Task(Some(t)) => task_line(t),
        Reply::Task(None) => "no task".into(),
        Reply::Tasks(ts) if ts.is_empty() => "no tasks".into(),
        Reply::Tasks(ts) => format!(
            "{}: {}",
            plural(ts.len(), "task", "tasks"),
            list(ts, 10, |t| format!("{} [{}]", task_ref(t, 30), t.state))
        ),
        Reply::Agents(a) if a.is_empty() => "no agents".into(),
        Reply::Agents(a) => format!(
            "{}, {} online: {}",
            plural(a.len(), "agent", "agents"),
            a.iter().filter(|a| a.online).count(),
            list(a, 15, agent)
        ),
        Reply::Ok => "done".into(),
        // the inbox is an agent's; a summary if it ever shows here
        Reply::Inbox(i) => plural(i.messages.len(), "message", "messages"),
        Reply::Poll(p) => poll_line(p),
        Reply::Voted(p) => format!("vote counted: {}", poll_line(p)),
        Reply::Reason(a) => fit_words(&clean(&a.text), ASK_MAX_CHARS),
        // the door answers help from the catalog; this is the fallback
        Reply::Help { .. } => "try !help".into(),
        Reply::Insights(i) => i.summary_line(),
        Reply::Alerts(a) if a.is_empty() => "no active alerts".into(),
        Reply::Alerts(a) => format!(
            "{}: {}",
            plural(a.len(), "alert", "alerts"),
            list(a, 5, |a| a.message.clone())
        ),
        Reply::Results(r) if r.results.is_empty() => "nothing found".into(),
        Reply::Results(r) => format!(
            "{}: {}",
            plural(r.results.len(), "result", "results"),
            list(&r.results, 8, |h| h.title.clone())
        ),
    }
}

/// A poll on one line: `poll #3 (open): Ship it? 1) yes: 4 · 2) no: 1`.
pub fn poll_line(p: &crate::core::polls::Poll) -> String {
    let opts: Vec<String> = p
        .options
        .iter()
        .zip(p.tally.iter())
        .enumerate()
        .map(|(i, (o, n))| format!("{}) {}: {n}", i + 1, o))
        .collect();
    format!(
        "poll #{} ({}): {} {}",
        p.id,
        p.state.as_str(),
        p.question,
        opts.join(" · ")
    )
}

/// One line for a refusal or failure; internal details are not shown.
pub fn error(e: &CoreError) -> String {
    match e {
        CoreError::Forbidden(m) => format!("not allowed: {m}"),
        CoreError::NotFound(m) => format!("not found: {m}"),
        CoreError::RateLimited { retry_after_ms, .. } => {
            format!(
                "slow down, try again in {}s",
                retry_after_ms.div_ceil(1000).max(1)
            )
        }
        CoreError::Internal(_) => "something went wrong on our side".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ask_answers_are_cut_at_a_word_boundary_within_450_characters() {
        let long = "lorem ipsum dolor ".repeat(40);
        let out = fit_words(long.trim(), ASK_MAX_CHARS);
        assert!(
            out.chars().count() <= ASK_MAX_CHARS,
            "{}",
            out.chars().count()
        );
        let body = out.trim_end_matches('…');
        assert!(long.starts_with(body), "{out}");
        assert!(
            body.ends_with("lorem") || body.ends_with("ipsum") || body.ends_with("dolor"),
            "{out}"
        );
        assert_eq!(fit_words("short", ASK_MAX_CHARS), "short");
    }

    #[test]
    fn lines_never_start_with_a_command_character_or_hold_control_characters() {
        for evil in [
            "/ban someone",
            ".ban someone",
            "  /timeout x",
            "\u{200B}/clear",
            "\r\n/me hi",
            "\u{0001}ACTION x\u{0001}",
        ] {
            let l = chat_line(evil, 500);
            assert!(!l.starts_with(['/', '.']), "{l:?}");
            assert!(!l.chars().any(char::is_control), "{l:?}");
        }
        let long = "ü".repeat(2000);
        assert_eq!(chat_line(&long, 500).chars().count(), 500);
    }
}
