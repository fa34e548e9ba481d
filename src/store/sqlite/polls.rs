//! Polls (`polls`, `poll_votes`): each change is one write with its event;
//! the tally is computed from `poll_votes` in the statement that reads the poll.

use super::row::Cols;
use super::{json_list, parse_list, SqliteStore};
use crate::clock::now_ms;
use crate::core::error::CoreError;
use crate::core::polls::{Ballot, NewPoll, Poll};
use crate::core::store::{BallotCheck, PollChange, PollClosing, PollEvents, StoreError};
use rusqlite::{params, Connection};

/// A poll with its tally, read in one statement (one snapshot).
const POLL_SELECT: &str = "SELECT p.id, p.question, p.options, p.voters, p.state, p.created_by, \
    p.created_at, p.closes_at, p.closed_at, \
    (SELECT json_group_array(json_array(v.option, v.w, v.n)) FROM \
      (SELECT option, SUM(weight) AS w, COUNT(*) AS n FROM poll_votes \
       WHERE poll_id = p.id GROUP BY option) v) AS votes \
    FROM polls p";

fn poll_from_row<R: Cols>(r: &R) -> Result<Poll, StoreError> {
    let options = parse_list(&r.text("options")?)?;
    let votes = r.text("votes")?;
    let votes: Vec<(i64, i64, i64)> = serde_json::from_str(&votes)
        .map_err(|e| StoreError::Corrupt(format!("poll votes {votes:?}: {e}")))?;
    let mut tally = vec![0; options.len()];
    let mut total_votes = 0;
    for (option, weight, ballots) in votes {
        if let Some(slot) = usize::try_from(option - 1)
            .ok()
            .and_then(|i| tally.get_mut(i))
        {
            *slot = weight;
        }
        total_votes += ballots;
    }
    Ok(Poll {
        id: r.int("id")?,
        question: r.text("question")?,
        options,
        state: r.parsed("state")?,
        closes_at: r.int("closes_at")?,
        tally,
        voters: r.parsed("voters")?,
        created_by: r.text("created_by")?,
        total_votes,
        created_at: r.int("created_at")?,
        closed_at: r.opt_int("closed_at")?,
    })
}

/// Every poll `sql` selects with `params`, decoded (writer thread).
fn select_polls(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Poll>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(poll_from_row(r)?);
    }
    Ok(out)
}

fn load_poll(conn: &Connection, id: i64) -> Result<Option<Poll>, StoreError> {
    Ok(
        select_polls(conn, &format!("{POLL_SELECT} WHERE p.id = ?1"), params![id])?
            .into_iter()
            .next(),
    )
}

/// Writes a poll's state and closing time back (the rest never changes).
fn save_poll(conn: &Connection, p: &Poll) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE polls SET state = ?2, closed_at = ?3 WHERE id = ?1")?
        .execute(params![p.id, p.state.as_str(), p.closed_at])?;
    Ok(())
}

impl SqliteStore {
    /// Inserts a poll closing `duration_s` from now, with the events
    /// `events_for` derives from it, in one transaction.
    pub(super) async fn create_poll(
        &self,
        new: NewPoll,
        created_by: String,
        events_for: PollEvents,
    ) -> Result<Poll, StoreError> {
        self.writer
            .write(move |conn, now| {
                let id: i64 = conn
                    .prepare_cached(
                        "INSERT INTO polls (question, options, voters, state, created_by, \
                         created_at, closes_at) VALUES (?1, ?2, ?3, 'open', ?4, ?5, ?6) RETURNING id",
                    )?
                    .query_row(
                        params![
                            new.question,
                            json_list(&new.options),
                            new.voters.as_str(),
                            created_by,
                            now,
                            now + new.duration_s.saturating_mul(1000)
                        ],
                        |r| r.get(0),
                    )?;
                let poll = load_poll(conn, id)?
                    .ok_or_else(|| StoreError::Corrupt(format!("poll {id} vanished")))?;
                let events = events_for(&poll);
                Ok((poll, events, vec![]))
            })
            .await
    }

    /// Records `ballot` in poll `poll_id` once `check` accepts it, replacing
    /// the voter's earlier ballot, in one transaction.
    pub(super) async fn cast_ballot(
        &self,
        poll_id: i64,
        ballot: Ballot,
        check: BallotCheck,
    ) -> Result<(), StoreError> {
        self.writer
            .write(move |conn, now| {
                let poll = load_poll(conn, poll_id)?
                    .ok_or_else(|| CoreError::NotFound(format!("poll {poll_id} does not exist")))?;
                check(&poll, now)?;
                conn.prepare_cached(
                    "INSERT INTO poll_votes (poll_id, voter, option, weight, voted_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (poll_id, voter) DO UPDATE SET \
                     option = excluded.option, weight = excluded.weight, \
                     voted_at = excluded.voted_at",
                )?
                .execute(params![
                    poll_id,
                    ballot.voter,
                    ballot.option,
                    ballot.weight,
                    now
                ])?;
                Ok(((), vec![], vec![]))
            })
            .await
    }

    /// Loads poll `id`, lets `change` edit its state (or refuse), and saves
    /// it with the events `change` returns, in one transaction.
    pub(super) async fn update_poll(
        &self,
        id: i64,
        change: PollChange,
    ) -> Result<Poll, StoreError> {
        self.writer
            .write(move |conn, now| {
                let mut poll = load_poll(conn, id)?
                    .ok_or_else(|| CoreError::NotFound(format!("poll {id} does not exist")))?;
                let events = change(&mut poll, now)?;
                save_poll(conn, &poll)?;
                Ok((poll, events, vec![]))
            })
            .await
    }

    /// Applies `close` to up to `limit` open polls whose `closes_at` has
    /// passed, in one transaction; returns them.
    pub(super) async fn close_due_polls(
        &self,
        limit: i64,
        close: PollClosing,
    ) -> Result<Vec<Poll>, StoreError> {
        self.writer
            .write(move |conn, now| {
                let due = select_polls(
                    conn,
                    &format!(
                        "{POLL_SELECT} WHERE p.state = 'open' AND p.closes_at <= ?1 \
                         ORDER BY p.closes_at LIMIT ?2"
                    ),
                    params![now, limit],
                )?;
                let mut polls = Vec::with_capacity(due.len());
                let mut events = Vec::new();
                for mut poll in due {
                    events.extend(close(&mut poll, now));
                    save_poll(conn, &poll)?;
                    polls.push(poll);
                }
                Ok((polls, events, vec![]))
            })
            .await
    }

    /// True when an open poll's `closes_at` has passed (a cheap read, so the
    /// sweeper takes the writer only when there is work).
    pub(super) async fn any_poll_due(&self) -> Result<bool, StoreError> {
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM polls WHERE state = 'open' AND closes_at <= ?1 LIMIT 1",
        )
        .bind(now_ms())
        .fetch_optional(&self.readers)
        .await?;
        Ok(due.is_some())
    }

    /// Up to `limit` open polls that have not reached `closes_at`, newest first.
    pub(super) async fn open_polls(&self, limit: i64) -> Result<Vec<Poll>, StoreError> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM polls WHERE state = 'open' AND closes_at > ?1 ORDER BY id DESC LIMIT ?2",
        )
        .bind(now_ms())
        .bind(limit)
        .fetch_all(&self.readers)
        .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(p) = self.poll(id).await? {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// One poll with its tally.
    pub(super) async fn poll(&self, id: i64) -> Result<Option<Poll>, StoreError> {
        let row = sqlx::query(&format!("{POLL_SELECT} WHERE p.id = ?1"))
            .bind(id)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(poll_from_row).transpose()
    }
}
