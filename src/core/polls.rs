//! Polls: an operator asks a question with 2 to 10 options; agents, Discord
//! members and Twitch viewers vote (as the poll's `voters` allow) until the
//! poll is closed by hand or by the sweeper at `closes_at`. Every change is
//! one store write that appends its `poll.opened` / `poll.closed` event in
//! the same transaction.

use super::error::CoreError;
use super::events::{Audience, EventKind, NewEvent};
use super::model::{Caller, Platform};
use super::Core;
use crate::clock::{serde_rfc3339, Millis};
use serde::Serialize;
use serde_json::json;
use std::fmt;
use std::str::FromStr;

/// Longest poll: seven days.
pub const MAX_DURATION_S: i64 = 7 * 86_400;
/// Fewest options a poll may have.
pub const MIN_OPTIONS: usize = 2;
/// Most options a poll may have.
pub const MAX_OPTIONS: usize = 10;
/// Longest option text.
pub const MAX_OPTION_CHARS: usize = 100;
/// Longest question.
pub const MAX_QUESTION_CHARS: usize = 300;
/// Largest weight config may give one vote.
pub const MAX_WEIGHT: u32 = 1000;
/// Most due polls one sweep closes in one transaction.
pub const CLOSE_BATCH: i64 = 500;

/// Who may vote in a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Voters {
    /// Agents (WebSocket and HTTP API callers).
    Agents,
    /// People on Discord.
    Discord,
    /// People in Twitch chat.
    Twitch,
    /// Everyone.
    All,
}

impl Voters {
    /// The lowercase name stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Voters::Agents => "agents",
            Voters::Discord => "discord",
            Voters::Twitch => "twitch",
            Voters::All => "all",
        }
    }

    /// Whether a caller who came through `platform` may vote. Agents vote
    /// over the WebSocket or the HTTP API.
    pub fn admit(self, platform: Platform) -> bool {
        match self {
            Voters::All => true,
            Voters::Agents => matches!(
                platform,
                Platform::Ws | Platform::Http | Platform::Mcp | Platform::A2a
            ),
            Voters::Discord => platform == Platform::Discord,
            Voters::Twitch => platform == Platform::Twitch,
        }
    }

    /// Who gets `poll.opened` and `poll.closed`: every agent when agents may
    /// vote, nobody otherwise (people see polls on their own platform).
    pub fn audience(self) -> Audience {
        match self {
            Voters::Agents | Voters::All => Audience::everyone(),
            Voters::Discord | Voters::Twitch => Audience::default(),
        }
    }
}

impl fmt::Display for Voters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Voters {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "agents" => Ok(Voters::Agents),
            "discord" => Ok(Voters::Discord),
            "twitch" => Ok(Voters::Twitch),
            "all" => Ok(Voters::All),
            other => Err(format!(
                "unknown voters {other:?} (expected agents, discord, twitch or all)"
            )),
        }
    }
}

/// Whether a poll still takes votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PollState {
    /// Taking votes until `closes_at`.
    Open,
    /// Final; the tally no longer changes.
    Closed,
}

impl PollState {
    /// The lowercase name stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            PollState::Open => "open",
            PollState::Closed => "closed",
        }
    }
}

impl FromStr for PollState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(PollState::Open),
            "closed" => Ok(PollState::Closed),
            other => Err(format!("unknown poll state {other:?}")),
        }
    }
}

/// A poll as the protocol shows it (`poll` frames and events).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Poll {
    /// Database id.
    pub id: i64,
    /// The question.
    pub question: String,
    /// The options; votes name them 1-based.
    pub options: Vec<String>,
    /// `open` or `closed`.
    pub state: PollState,
    /// When it closes (or closed) by itself.
    #[serde(with = "serde_rfc3339")]
    pub closes_at: Millis,
    /// Weighted vote counts, in the order of `options`.
    pub tally: Vec<i64>,
    /// Who may vote.
    pub voters: Voters,
    /// Identity of the operator who opened it.
    pub created_by: String,
    /// Number of ballots cast (one per voter, whatever the weights).
    pub total_votes: i64,
    /// When it opened.
    #[serde(with = "serde_rfc3339")]
    pub created_at: Millis,
    /// When it was closed, by hand or at `closes_at`.
    #[serde(with = "serde_rfc3339::option")]
    pub closed_at: Option<Millis>,
}

/// What `poll.open` asks for.
#[derive(Debug, Clone)]
pub struct NewPoll {
    /// The question (1 to 300 characters).
    pub question: String,
    /// 2 to 10 non-empty options of at most 100 characters.
    pub options: Vec<String>,
    /// Seconds until it closes by itself.
    pub duration_s: i64,
    /// Who may vote (default `all`).
    pub voters: Voters,
}

/// A ballot, as the store records it (one per poll and voter).
#[derive(Debug, Clone)]
pub struct Ballot {
    /// The voter's identity (`agent-3`, `discord:alice`, `twitch:bob`).
    pub voter: String,
    /// 1-based option.
    pub option: i64,
    /// What it counts for (by the voter's role).
    pub weight: i64,
}

/// The event a poll change emits, to every agent allowed to vote.
fn poll_event(kind: EventKind, poll: &Poll) -> NewEvent {
    NewEvent {
        kind,
        data: json!({ "poll": poll }),
        audience: poll.voters.audience(),
    }
}

/// One plain line announcing a `poll.opened` or `poll.closed` event from
/// its `data` (`{"poll": {...}}`), for the chat platforms: the options with
/// their tallies and, once closed, the winner or the tie.
pub fn announcement(kind: EventKind, data: &serde_json::Value) -> Option<String> {
    let p = &data["poll"];
    let id = p["id"].as_i64()?;
    let question = p["question"].as_str().unwrap_or("?");
    let options: Vec<&str> = p["options"]
        .as_array()?
        .iter()
        .map(|o| o.as_str().unwrap_or("?"))
        .collect();
    let tally: Vec<i64> = p["tally"]
        .as_array()
        .map(|t| t.iter().map(|n| n.as_i64().unwrap_or(0)).collect())
        .unwrap_or_default();
    let listed: Vec<String> = options
        .iter()
        .enumerate()
        .map(|(i, o)| match kind {
            EventKind::PollClosed => {
                format!("{}) {o}: {}", i + 1, tally.get(i).copied().unwrap_or(0))
            }
            _ => format!("{}) {o}", i + 1),
        })
        .collect();
    match kind {
        EventKind::PollOpened => Some(format!(
            "poll #{id} open: {question} {}",
            listed.join(" · ")
        )),
        EventKind::PollClosed => {
            let best = tally.iter().copied().max().unwrap_or(0);
            let leaders: Vec<&str> = options
                .iter()
                .zip(tally.iter())
                .filter(|(_, n)| **n == best)
                .map(|(o, _)| *o)
                .collect();
            let verdict = if best == 0 {
                "no votes".to_string()
            } else if leaders.len() == 1 {
                format!("{} wins", leaders[0])
            } else {
                format!("tie between {}", leaders.join(" and "))
            };
            Some(format!(
                "poll #{id} closed: {question} {verdict} ({})",
                listed.join(" · ")
            ))
        }
        _ => None,
    }
}

fn check_len(field: &str, text: &str, max: usize) -> Result<(), CoreError> {
    if text.is_empty() {
        return Err(CoreError::bad_request(format!(
            "`{field}` must not be empty"
        )));
    }
    let n = text.chars().count();
    if n > max {
        return Err(CoreError::bad_request(format!(
            "`{field}` has {n} characters; the limit is {max}"
        )));
    }
    Ok(())
}

/// Marks an open poll closed at `now`.
fn close(poll: &mut Poll, now: Millis) {
    poll.state = PollState::Closed;
    poll.closed_at = Some(now);
}

impl Core {
    /// Opens a poll (operators); `poll.opened` goes to every agent allowed to vote.
    pub async fn open_poll(&self, caller: &Caller, mut new: NewPoll) -> Result<Poll, CoreError> {
        new.question = new.question.trim().to_string();
        check_len("question", &new.question, MAX_QUESTION_CHARS)?;
        if !(MIN_OPTIONS..=MAX_OPTIONS).contains(&new.options.len()) {
            return Err(CoreError::bad_request(format!(
                "`options` takes {MIN_OPTIONS} to {MAX_OPTIONS} entries, got {}",
                new.options.len()
            )));
        }
        for o in &mut new.options {
            *o = o.trim().to_string();
            check_len("options", o, MAX_OPTION_CHARS)?;
        }
        let min = self.polls_cfg.min_duration_s as i64;
        if !(min..=MAX_DURATION_S).contains(&new.duration_s) {
            return Err(CoreError::bad_request(format!(
                "`duration_s` must be between {min} and {MAX_DURATION_S} (7 days), got {}",
                new.duration_s
            )));
        }
        Ok(self
            .store
            .create_poll(
                new,
                caller.identity.clone(),
                Box::new(|poll: &Poll| vec![poll_event(EventKind::PollOpened, poll)]),
            )
            .await?)
    }

    /// Records the caller's vote for option `option` (1-based), replacing
    /// any earlier vote of the same identity. `conflict` once the poll is
    /// closed (or past `closes_at`), `bad_request` for an option out of
    /// range, `forbidden` when the poll's voters exclude the caller's platform.
    pub async fn vote_poll(
        &self,
        caller: &Caller,
        poll_id: i64,
        option: i64,
    ) -> Result<(), CoreError> {
        let ballot = Ballot {
            voter: caller.identity.clone(),
            option,
            weight: self.polls_cfg.weights.for_role(caller.role),
        };
        let platform = caller.platform;
        Ok(self
            .store
            .cast_ballot(
                poll_id,
                ballot,
                Box::new(move |poll: &Poll, now| {
                    if poll.state == PollState::Closed || now >= poll.closes_at {
                        return Err(CoreError::Conflict(format!("poll {} is closed", poll.id)));
                    }
                    if !poll.voters.admit(platform) {
                        return Err(CoreError::Forbidden(format!(
                            "poll {} is for {} voters; you are voting from {}",
                            poll.id,
                            poll.voters,
                            platform.as_str()
                        )));
                    }
                    let n = poll.options.len() as i64;
                    if !(1..=n).contains(&option) {
                        return Err(CoreError::bad_request(format!(
                            "`option` must be between 1 and {n} for poll {}, got {option}",
                            poll.id
                        )));
                    }
                    Ok(())
                }),
            )
            .await?)
    }

    /// The newest open poll that voters on `platform` may vote in; what
    /// chat means by `!vote 2` without a poll id.
    pub async fn newest_open_poll(&self, platform: Platform) -> Result<Poll, CoreError> {
        self.store
            .open_polls(20)
            .await?
            .into_iter()
            .find(|p| p.voters.admit(platform))
            .ok_or_else(|| CoreError::NotFound("there is no open poll to vote in".into()))
    }

    /// Closes an open poll (operators) with its final tally; `poll.closed`
    /// goes to the same agents as `poll.opened`. `conflict` when already closed.
    pub async fn close_poll(&self, _caller: &Caller, poll_id: i64) -> Result<Poll, CoreError> {
        Ok(self
            .store
            .update_poll(
                poll_id,
                Box::new(|poll: &mut Poll, now| {
                    if poll.state == PollState::Closed {
                        return Err(CoreError::Conflict(format!(
                            "poll {} is already closed",
                            poll.id
                        )));
                    }
                    close(poll, now);
                    Ok(vec![poll_event(EventKind::PollClosed, poll)])
                }),
            )
            .await?)
    }

    /// One poll with its current tally; `not_found` when it does not exist.
    pub async fn get_poll(&self, poll_id: i64) -> Result<Poll, CoreError> {
        self.store
            .poll(poll_id)
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("poll {poll_id} does not exist")))
    }

    /// Closes every open poll whose `closes_at` has passed (at most
    /// [`CLOSE_BATCH`] per call) and emits `poll.closed` for each.
    pub async fn close_due_polls(&self) -> Result<Vec<Poll>, CoreError> {
        if !self.store.any_poll_due().await? {
            return Ok(vec![]);
        }
        Ok(self
            .store
            .close_due_polls(
                CLOSE_BATCH,
                Box::new(|poll: &mut Poll, now| {
                    close(poll, now);
                    vec![poll_event(EventKind::PollClosed, poll)]
                }),
            )
            .await?)
    }
}

#[cfg(test)]
mod announcement_tests {
    use super::*;

    #[test]
    fn a_closed_poll_names_its_winner_or_the_tie() {
        let data = |tally: [i64; 3]| json!({"poll": {"id": 3, "question": "Ship?", "options": ["yes", "no", "later"], "tally": tally}});
        let line = announcement(EventKind::PollClosed, &data([4, 1, 0])).unwrap();
        assert!(
            line.contains("yes wins") && line.contains("1) yes: 4"),
            "{line}"
        );
        let tie = announcement(EventKind::PollClosed, &data([2, 2, 0])).unwrap();
        assert!(tie.contains("tie between yes and no"), "{tie}");
        let open = announcement(EventKind::PollOpened, &data([0, 0, 0])).unwrap();
        assert!(open.starts_with("poll #3 open: Ship?"), "{open}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_admit_only_their_platforms() {
        assert!(Voters::Agents.admit(Platform::Ws));
        assert!(Voters::Agents.admit(Platform::Http));
        assert!(!Voters::Agents.admit(Platform::Discord));
        assert!(Voters::Discord.admit(Platform::Discord));
        assert!(!Voters::Discord.admit(Platform::Ws));
        assert!(Voters::Twitch.admit(Platform::Twitch));
        assert!(!Voters::Twitch.admit(Platform::Http));
        assert!(Voters::All.admit(Platform::Twitch));
    }

    #[test]
    fn only_polls_agents_vote_in_reach_agents() {
        assert!(Voters::All.audience().all);
        assert!(Voters::Agents.audience().all);
        assert!(Voters::Discord.audience().is_empty());
        assert!(Voters::Twitch.audience().is_empty());
    }

    #[test]
    fn voters_parse_their_protocol_names() {
        for v in [Voters::Agents, Voters::Discord, Voters::Twitch, Voters::All] {
            assert_eq!(v.as_str().parse::<Voters>(), Ok(v));
        }
        assert!("everyone".parse::<Voters>().is_err());
    }
}
