//! Polls (`polls`, `poll_votes`): each change is one write with its event;
//! the tally is computed from `poll_votes` in the statement that reads the
//! poll. A poll being changed is locked, and the closing sweep skips
//! locked rows, so a poll closes once across instances.

use super::PgStore;
use crate::clock::now_ms;
use crate::core::error::CoreError;
use crate::core::polls::{Ballot, NewPoll, Poll, PollState, Voters};
use crate::core::store::{BallotCheck, PollChange, PollClosing, PollEvents, StoreError};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use std::str::FromStr;

/// A poll with its tally, read in one statement (one snapshot).
const POLL_SELECT: &str = "SELECT p.id, p.question, p.options, p.voters, p.state, p.created_by, \
    p.created_at, p.closes_at, p.closed_at, \
    (SELECT COALESCE(json_agg(json_build_array(v.option, v.w, v.n)), '[]')::text FROM \
      (SELECT option, SUM(weight)::bigint AS w, COUNT(*) AS n FROM poll_votes \
       WHERE poll_id = p.id GROUP BY option) v) AS votes \
    FROM polls p";

fn poll_from_row(r: &PgRow) -> Result<Poll, StoreError> {
    let voters: String = r.try_get("voters")?;
    let state: String = r.try_get("state")?;
    let options: Vec<String> = r.try_get("options")?;
    let votes: String = r.try_get("votes")?;
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
        id: r.try_get("id")?,
        question: r.try_get("question")?,
        options,
        state: PollState::from_str(&state).map_err(StoreError::Corrupt)?,
        closes_at: r.try_get("closes_at")?,
        tally,
        voters: Voters::from_str(&voters).map_err(StoreError::Corrupt)?,
        created_by: r.try_get("created_by")?,
        total_votes,
        created_at: r.try_get("created_at")?,
        closed_at: r.try_get("closed_at")?,
    })
}

async fn load_poll(conn: &mut PgConnection, id: i64) -> Result<Option<Poll>, StoreError> {
    let row = sqlx::query(&format!("{POLL_SELECT} WHERE p.id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(poll_from_row).transpose()
}

/// Locks poll `id`'s row until commit (`share`: against changes only).
async fn lock_poll(conn: &mut PgConnection, id: i64, share: bool) -> Result<(), StoreError> {
    let sql = if share {
        "SELECT id FROM polls WHERE id = $1 FOR SHARE"
    } else {
        "SELECT id FROM polls WHERE id = $1 FOR UPDATE"
    };
    sqlx::query(sql).bind(id).fetch_optional(&mut *conn).await?;
    Ok(())
}

/// Writes a poll's state and closing time back (the rest never changes).
async fn save_poll(conn: &mut PgConnection, p: &Poll) -> Result<(), StoreError> {
    sqlx::query("UPDATE polls SET state = $2, closed_at = $3 WHERE id = $1")
        .bind(p.id)
        .bind(p.state.as_str())
        .bind(p.closed_at)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl PgStore {
    /// Inserts a poll closing `duration_s` from now, with its events.
    pub(super) async fn create_poll(
        &self,
        new: NewPoll,
        created_by: String,
        events_for: PollEvents,
    ) -> Result<Poll, StoreError> {
        self.writer
            .write(move |conn, now| {
                Box::pin(async move {
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO polls (question, options, voters, state, created_by, \
                         created_at, closes_at) VALUES ($1, $2, $3, 'open', $4, $5, $6) \
                         RETURNING id",
                    )
                    .bind(&new.question)
                    .bind(&new.options)
                    .bind(new.voters.as_str())
                    .bind(&created_by)
                    .bind(now)
                    .bind(now + new.duration_s.saturating_mul(1000))
                    .fetch_one(&mut *conn)
                    .await?;
                    let poll = load_poll(conn, id)
                        .await?
                        .ok_or_else(|| StoreError::Corrupt(format!("poll {id} vanished")))?;
                    let events = events_for(&poll);
                    Ok((poll, events, vec![]))
                })
            })
            .await
    }

    /// Records `ballot` once `check` accepts the poll (held against a
    /// concurrent close), replacing the voter's earlier ballot.
    pub(super) async fn cast_ballot(
        &self,
        poll_id: i64,
        ballot: Ballot,
        check: BallotCheck,
    ) -> Result<(), StoreError> {
        self.writer
            .write(move |conn, now| {
                Box::pin(async move {
                    lock_poll(conn, poll_id, true).await?;
                    let poll = load_poll(conn, poll_id).await?.ok_or_else(|| {
                        CoreError::NotFound(format!("poll {poll_id} does not exist"))
                    })?;
                    check(&poll, now)?;
                    sqlx::query(
                        "INSERT INTO poll_votes (poll_id, voter, option, weight, voted_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (poll_id, voter) DO UPDATE SET \
                         option = excluded.option, weight = excluded.weight, \
                         voted_at = excluded.voted_at",
                    )
                    .bind(poll_id)
                    .bind(&ballot.voter)
                    .bind(ballot.option)
                    .bind(ballot.weight)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                    Ok(((), vec![], vec![]))
                })
            })
            .await
    }

    /// Locks poll `id`, lets `change` edit its state (or refuse), and saves
    /// it with the events `change` returns.
    pub(super) async fn update_poll(
        &self,
        id: i64,
        change: PollChange,
    ) -> Result<Poll, StoreError> {
        self.writer
            .write(move |conn, now| {
                Box::pin(async move {
                    lock_poll(conn, id, false).await?;
                    let mut poll = load_poll(conn, id)
                        .await?
                        .ok_or_else(|| CoreError::NotFound(format!("poll {id} does not exist")))?;
                    let events = change(&mut poll, now)?;
                    save_poll(conn, &poll).await?;
                    Ok((poll, events, vec![]))
                })
            })
            .await
    }

    /// Applies `close` to up to `limit` open polls past `closes_at`,
    /// skipping polls another instance is closing or changing.
    pub(super) async fn close_due_polls(
        &self,
        limit: i64,
        close: PollClosing,
    ) -> Result<Vec<Poll>, StoreError> {
        self.writer
            .write(move |conn, now| {
                Box::pin(async move {
                    let ids: Vec<i64> = sqlx::query_scalar(
                        "SELECT id FROM polls WHERE state = 'open' AND closes_at <= $1 \
                         ORDER BY closes_at LIMIT $2 FOR UPDATE SKIP LOCKED",
                    )
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&mut *conn)
                    .await?;
                    let mut polls = Vec::with_capacity(ids.len());
                    let mut events = Vec::new();
                    for id in ids {
                        let Some(mut poll) = load_poll(conn, id).await? else {
                            continue;
                        };
                        events.extend(close(&mut poll, now));
                        save_poll(conn, &poll).await?;
                        polls.push(poll);
                    }
                    Ok((polls, events, vec![]))
                })
            })
            .await
    }

    /// True when an open poll's `closes_at` has passed.
    pub(super) async fn any_poll_due(&self) -> Result<bool, StoreError> {
        let due: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM polls WHERE state = 'open' AND closes_at <= $1 LIMIT 1",
        )
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        Ok(due.is_some())
    }

    /// Up to `limit` open polls that have not reached `closes_at`, newest first.
    pub(super) async fn open_polls(&self, limit: i64) -> Result<Vec<Poll>, StoreError> {
        let rows = sqlx::query(&format!(
            "{POLL_SELECT} WHERE p.state = 'open' AND p.closes_at > $1 ORDER BY p.id DESC LIMIT $2"
        ))
        .bind(now_ms())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(poll_from_row).collect()
    }

    /// One poll with its tally.
    pub(super) async fn poll(&self, id: i64) -> Result<Option<Poll>, StoreError> {
        let row = sqlx::query(&format!("{POLL_SELECT} WHERE p.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(poll_from_row).transpose()
    }
}
