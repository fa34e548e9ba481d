//! The event log (`events`, `event_targets`) and the messages stored with
//! their events.

use super::{json_list, parse_list, SqliteStore};
use crate::clock::Millis;
use crate::core::events::{Audience, CommittedEvent, EventKind, NewEvent};
use crate::core::store::{EventTable, MessageRecord, Pruned, SeqRange, StoreError, StoredEvent};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqlitePool};

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

/// Events per multi-row insert (5 parameters each).
const EVENT_ROWS_PER_INSERT: usize = 200;
/// Targets per multi-row insert (2 parameters each).
const TARGET_ROWS_PER_INSERT: usize = 400;

fn event_from_row(r: &SqliteRow) -> Result<CommittedEvent, StoreError> {
    let kind: String = r.try_get("kind")?;
    let kind = EventKind::parse(&kind)
        .ok_or_else(|| StoreError::Corrupt(format!("event kind {kind:?}")))?;
    let requires: Option<String> = r.try_get("requires")?;
    let targets: String = r.try_get("targets")?;
    let to_all: i64 = r.try_get("to_all")?;
    let audience = Audience {
        all: to_all != 0,
        requires: requires.as_deref().map(parse_list).transpose()?,
        agents: parse_list(&targets)?,
    };
    let data: String = r.try_get("data")?;
    Ok(CommittedEvent::new(
        r.try_get("seq")?,
        kind,
        r.try_get("at")?,
        audience,
        &data,
    ))
}

/// `(?, ?, ...), (?, ?, ...)`: `rows` groups of `cols` placeholders.
fn placeholders(rows: usize, cols: usize) -> String {
    let one = format!("({})", vec!["?"; cols].join(", "));
    vec![one; rows].join(", ")
}

/// Appends `events` in order with consecutive `seq`s, a few statements for
/// the whole batch (multi-row inserts), and returns them committed-to-be.
/// An event no agent gets (a poll for chat voters only) is still recorded
/// and published: the platform announcers see it.
pub(super) async fn insert_events(
    conn: &mut SqliteConnection,
    now: Millis,
    events: Vec<NewEvent>,
) -> Result<Vec<CommittedEvent>, StoreError> {
    let mut out = Vec::with_capacity(events.len());
    let mut targets: Vec<(String, i64)> = Vec::new();
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let chunk: Vec<NewEvent> = events.by_ref().take(EVENT_ROWS_PER_INSERT).collect();
        let datas: Vec<String> = chunk.iter().map(|e| e.data.to_string()).collect();
        let sql = format!(
            "INSERT INTO events (kind, at, data, to_all, requires) VALUES {} RETURNING seq",
            placeholders(chunk.len(), 5)
        );
        let mut q = sqlx::query_scalar::<_, i64>(&sql);
        for (ev, data) in chunk.iter().zip(&datas) {
            q = q
                .bind(ev.kind.as_str())
                .bind(now)
                .bind(data)
                .bind(ev.audience.all as i64)
                .bind(ev.audience.requires.as_deref().map(json_list));
        }
        let mut seqs = q.fetch_all(&mut *conn).await?;
        // One writer and AUTOINCREMENT: the rows got consecutive seqs in
        // VALUES order; RETURNING may list them in any order.
        seqs.sort_unstable();
        if seqs.len() != chunk.len() {
            return Err(StoreError::Corrupt(format!(
                "{} events inserted, {} seqs returned",
                chunk.len(),
                seqs.len()
            )));
        }
        for ((ev, data), seq) in chunk.into_iter().zip(datas).zip(seqs) {
            targets.extend(ev.audience.agents.iter().map(|a| (a.clone(), seq)));
            out.push(CommittedEvent::new(seq, ev.kind, now, ev.audience, &data));
        }
    }
    for chunk in targets.chunks(TARGET_ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT OR IGNORE INTO event_targets (agent, seq) VALUES {}",
            placeholders(chunk.len(), 2)
        );
        let mut q = sqlx::query(&sql);
        for (agent, seq) in chunk {
            q = q.bind(agent).bind(seq);
        }
        q.execute(&mut *conn).await?;
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
pub(super) async fn insert_message(
    conn: &mut SqliteConnection,
    message: &MessageRecord,
    now: Millis,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO messages (sender, recipient, topic, text, at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(&message.sender)
    .bind(&message.recipient)
    .bind(&message.topic)
    .bind(&message.text)
    .bind(now)
    .execute(&mut *conn)
    .await?;
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
                Box::pin(async move {
                    insert_message(conn, &message, now).await?;
                    Ok(((), vec![event], vec![]))
                })
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
                Box::pin(async move {
                    let pruned_to: i64 = sqlx::query_scalar(
                        "SELECT COALESCE((SELECT pruned_to FROM event_retention WHERE id = 1), 0)",
                    )
                    .fetch_one(&mut *conn)
                    .await?;
                    // The newest event stays: it keeps the sequence's top.
                    // Every active agent must have acked (or predate) an event.
                    let upto: Option<i64> = sqlx::query_scalar(
                        "SELECT MAX(seq) FROM (SELECT seq, at FROM events WHERE seq > ?1 \
                           ORDER BY seq LIMIT ?2) \
                         WHERE at < ?3 \
                           AND seq < (SELECT MAX(seq) FROM events) \
                           AND seq <= COALESCE((SELECT MIN(MAX(acked_seq, base_seq)) FROM agents \
                                                WHERE revoked_at IS NULL), seq)",
                    )
                    .bind(pruned_to)
                    .bind(batch)
                    .bind(cutoff)
                    .fetch_one(&mut *conn)
                    .await?;
                    let Some(upto) = upto else {
                        return Ok((
                            Pruned {
                                removed: 0,
                                pruned_to,
                            },
                            vec![],
                            vec![],
                        ));
                    };
                    sqlx::query("DELETE FROM event_targets WHERE seq > ?1 AND seq <= ?2")
                        .bind(pruned_to)
                        .bind(upto)
                        .execute(&mut *conn)
                        .await?;
                    let removed = sqlx::query("DELETE FROM events WHERE seq > ?1 AND seq <= ?2")
                        .bind(pruned_to)
                        .bind(upto)
                        .execute(&mut *conn)
                        .await?
                        .rows_affected();
                    sqlx::query(
                        "UPDATE event_retention SET pruned_to = ?1, pruned_at = ?2 WHERE id = 1",
                    )
                    .bind(upto)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                    Ok((
                        Pruned {
                            removed,
                            pruned_to: upto,
                        },
                        vec![],
                        vec![],
                    ))
                })
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
