//! The event log (`events`, `event_targets`) and the messages stored with
//! their events.

use super::row::Cols;
use super::{json_list, parse_list, SqliteStore};
use crate::clock::Millis;
use crate::core::events::{Audience, CommittedEvent, EventKind, NewEvent};
use crate::core::store::{EventTable, MessageRecord, Pruned, SeqRange, StoreError, StoredEvent};
use rusqlite::{params, Connection};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

/// An event row with its targets as a JSON array.
pub(super) const EVENT_COLS: &str = "e.seq, e.kind, e.at, e.data, e.to_all, e.requires, \
    (SELECT json_group_array(t.agent) FROM event_targets t WHERE t.seq = e.seq) AS targets";

/// An agent's events in a `seq` range, `{dir}` order: the union of two
/// index range scans (its targets by (agent, seq), and the broadcast index
/// filtered by capability), each cut at the page size. Parameters: agent,
/// after, before, limit, capabilities (JSON).
const AGENT_EVENTS: &str = "SELECT e.seq, e.kind, e.at, e.data FROM events e WHERE e.seq IN ( \
    SELECT seq FROM (SELECT seq FROM event_targets WHERE agent = ?1 AND seq > ?2 AND seq < ?3 \
      ORDER BY seq {dir} LIMIT ?4) \
    UNION \
    SELECT seq FROM (SELECT b.seq FROM events b WHERE b.seq > ?2 AND b.seq < ?3 \
      AND (b.to_all = 1 OR b.requires IS NOT NULL) \
      AND (b.to_all = 1 OR NOT EXISTS (SELECT 1 FROM json_each(b.requires) r \
        WHERE r.value NOT IN (SELECT value FROM json_each(?5)))) \
      ORDER BY b.seq {dir} LIMIT ?4)) \
    ORDER BY e.seq {dir} LIMIT ?4";

fn event_from_row<R: Cols>(r: &R) -> Result<CommittedEvent, StoreError> {
    let kind = r.text("kind")?;
    let kind = EventKind::parse(&kind)
        .ok_or_else(|| StoreError::Corrupt(format!("event kind {kind:?}")))?;
    let requires = r.opt_text("requires")?;
    let targets = r.text("targets")?;
    let audience = Audience {
        all: r.int("to_all")? != 0,
        requires: requires.as_deref().map(parse_list).transpose()?,
        agents: parse_list(&targets)?,
    };
    Ok(CommittedEvent::new(
        r.int("seq")?,
        kind,
        r.int("at")?,
        audience,
        &r.text("data")?,
    ))
}

/// Appends `events` in order with consecutive `seq`s (one cached statement
/// per row, run back to back on the writer thread) and returns them
/// committed-to-be. An event no agent gets (a poll for chat voters only) is
/// still recorded and published: the platform announcers see it.
pub(super) fn insert_events(
    conn: &Connection,
    now: Millis,
    events: Vec<NewEvent>,
) -> Result<Vec<CommittedEvent>, StoreError> {
    let mut out = Vec::with_capacity(events.len());
    let mut insert = conn.prepare_cached(
        "INSERT INTO events (kind, at, data, to_all, requires) VALUES (?1, ?2, ?3, ?4, ?5) \
         RETURNING seq",
    )?;
    let mut target =
        conn.prepare_cached("INSERT OR IGNORE INTO event_targets (agent, seq) VALUES (?1, ?2)")?;
    for ev in events {
        let data = ev.data.to_string();
        let seq: i64 = insert.query_row(
            params![
                ev.kind.as_str(),
                now,
                data,
                ev.audience.all as i64,
                ev.audience.requires.as_deref().map(json_list)
            ],
            |r| r.get(0),
        )?;
        for agent in &ev.audience.agents {
            target.execute(params![agent, seq])?;
        }
        out.push(CommittedEvent::new(seq, ev.kind, now, ev.audience, &data));
    }
    Ok(out)
}

/// [`load_events_between`] on the writer's own connection (catching up
/// with another process's commits).
pub(super) fn load_events_between_on(
    conn: &Connection,
    after: i64,
    upto: i64,
    limit: i64,
) -> Result<Vec<CommittedEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {EVENT_COLS} FROM events e WHERE e.seq > ?1 AND e.seq <= ?2 \
         ORDER BY e.seq LIMIT ?3"
    ))?;
    let mut rows = stmt.query(params![after, upto, limit])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(event_from_row(r)?);
    }
    Ok(out)
}

/// Every event with `after < seq <= upto`, at most `limit`, in `seq` order.
pub(super) async fn load_events_between(
    readers: &SqlitePool,
    after: i64,
    upto: i64,
    limit: i64,
) -> Result<Vec<CommittedEvent>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {EVENT_COLS} FROM events e WHERE e.seq > ?1 AND e.seq <= ?2 \
         ORDER BY e.seq LIMIT ?3"
    ))
    .bind(after)
    .bind(upto)
    .bind(limit)
    .fetch_all(readers)
    .await?;
    rows.iter().map(event_from_row).collect()
}

/// Stores a direct message or broadcast (inside the caller's transaction).
pub(super) fn insert_message(
    conn: &Connection,
    message: &MessageRecord,
    now: Millis,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO messages (sender, recipient, topic, text, at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        message.sender,
        message.recipient,
        message.topic,
        message.text,
        now
    ])?;
    Ok(())
}

fn stored_from_row(r: &SqliteRow) -> Result<StoredEvent, StoreError> {
    let kind: String = r.try_get("kind")?;
    Ok(StoredEvent {
        seq: r.try_get("seq")?,
        kind: EventKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("event kind {kind:?}")))?,
        at: r.try_get("at")?,
        data: r.try_get("data")?,
    })
}

impl SqliteStore {
    /// Stores a direct message or broadcast together with its event.
    pub(super) async fn record_message(
        &self,
        message: MessageRecord,
        event: NewEvent,
    ) -> Result<(), StoreError> {
        self.writer
            .write(move |conn, now| {
                insert_message(conn, &message, now)?;
                Ok(((), vec![event], vec![]))
            })
            .await
    }

    /// The newest event `seq` that `agent` (with these capabilities) gets.
    pub(super) async fn newest_seq_for(
        &self,
        agent: &str,
        capabilities: &[String],
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COALESCE(MAX(seq), 0) FROM ( \
               SELECT MAX(seq) AS seq FROM event_targets WHERE agent = ?1 \
               UNION ALL SELECT MAX(seq) FROM events WHERE to_all = 1 \
               UNION ALL SELECT seq FROM (SELECT e.seq FROM events e \
                 WHERE e.requires IS NOT NULL AND NOT EXISTS \
                 (SELECT 1 FROM json_each(e.requires) r WHERE r.value NOT IN \
                  (SELECT value FROM json_each(?2))) ORDER BY e.seq DESC LIMIT 1))",
        )
        .bind(agent)
        .bind(json_list(capabilities))
        .fetch_one(&self.readers)
        .await?)
    }

    /// The newest event sequence number.
    pub(super) async fn max_seq(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
                .fetch_one(&self.readers)
                .await?,
        )
    }

    /// Events after `after` that go to everyone, by capability, or to
    /// `agent` by name, in `seq` order.
    pub(super) async fn scan_events(
        &self,
        agent: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<CommittedEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLS} FROM events e WHERE e.seq > ?1 AND (e.to_all = 1 \
             OR e.requires IS NOT NULL OR e.seq IN \
             (SELECT seq FROM event_targets WHERE agent = ?2 AND seq > ?1)) \
             ORDER BY e.seq LIMIT ?3"
        ))
        .bind(after)
        .bind(agent)
        .bind(limit)
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// The newest `limit` events, oldest first.
    pub(super) async fn recent_events(
        &self,
        limit: i64,
    ) -> Result<Vec<CommittedEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT * FROM (SELECT {EVENT_COLS} FROM events e ORDER BY e.seq DESC LIMIT ?1) \
             ORDER BY seq"
        ))
        .bind(limit)
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Up to `limit` of `agent`'s events in `range` (see [`AGENT_EVENTS`]).
    pub(super) async fn agent_events(
        &self,
        agent: &str,
        capabilities: &[String],
        range: SeqRange,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let dir = if range.newest_first { "DESC" } else { "ASC" };
        let rows = sqlx::query(&AGENT_EVENTS.replace("{dir}", dir))
            .bind(agent)
            .bind(range.after)
            .bind(range.before)
            .bind(limit)
            .bind(json_list(capabilities))
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(stored_from_row).collect()
    }

    /// Events at or below this `seq` were removed by retention.
    pub(super) async fn pruned_to(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COALESCE((SELECT pruned_to FROM event_retention WHERE id = 1), 0)",
        )
        .fetch_one(&self.readers)
        .await?)
    }

    /// One pruning step through the writer (a short write that joins a
    /// group commit like any other), see [`crate::core::store::Store::prune_events`].
    pub(super) async fn prune_events(
        &self,
        cutoff: Millis,
        batch: i64,
    ) -> Result<Pruned, StoreError> {
        self.writer
            .write(move |conn, now| {
                let pruned_to: i64 = conn
                    .prepare_cached(
                        "SELECT COALESCE((SELECT pruned_to FROM event_retention WHERE id = 1), 0)",
                    )?
                    .query_row([], |r| r.get(0))?;
                // The newest event stays: it keeps the sequence's top.
                // Every active agent must have acked (or predate) an event.
                let upto: Option<i64> = conn
                    .prepare_cached(
                        "SELECT MAX(seq) FROM (SELECT seq, at FROM events WHERE seq > ?1 \
                           ORDER BY seq LIMIT ?2) \
                         WHERE at < ?3 \
                           AND seq < (SELECT MAX(seq) FROM events) \
                           AND seq <= COALESCE((SELECT MIN(MAX(acked_seq, base_seq)) FROM agents \
                                                WHERE revoked_at IS NULL), seq)",
                    )?
                    .query_row(params![pruned_to, batch, cutoff], |r| r.get(0))?;
                let Some(upto) = upto else {
                    let pruned = Pruned {
                        removed: 0,
                        pruned_to,
                    };
                    return Ok((pruned, vec![], vec![]));
                };
                conn.prepare_cached("DELETE FROM event_targets WHERE seq > ?1 AND seq <= ?2")?
                    .execute(params![pruned_to, upto])?;
                let removed = conn
                    .prepare_cached("DELETE FROM events WHERE seq > ?1 AND seq <= ?2")?
                    .execute(params![pruned_to, upto])? as u64;
                conn.prepare_cached(
                    "UPDATE event_retention SET pruned_to = ?1, pruned_at = ?2 WHERE id = 1",
                )?
                .execute(params![upto, now])?;
                let pruned = Pruned {
                    removed,
                    pruned_to: upto,
                };
                Ok((pruned, vec![], vec![]))
            })
            .await
    }

    /// How many events are stored and when the oldest was committed.
    pub(super) async fn event_table(&self) -> Result<EventTable, StoreError> {
        let (rows, oldest_at): (i64, Option<i64>) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM events), \
                    (SELECT at FROM events ORDER BY seq LIMIT 1)",
        )
        .fetch_one(&self.readers)
        .await?;
        Ok(EventTable { rows, oldest_at })
    }
}
