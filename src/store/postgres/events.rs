//! The event log (`events`, `event_targets`) and the messages stored with
//! their events.

use super::PgStore;
use crate::clock::Millis;
use crate::core::events::{Audience, CommittedEvent, EventKind, NewEvent};
use crate::core::store::{EventTable, MessageRecord, Pruned, SeqRange, StoreError, StoredEvent};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};

/// The channel on which a committed batch announces `first last` seqs.
pub(super) const CHANNEL: &str = "swarmbridge_events";

/// An event row with its targets.
pub(super) const EVENT_COLS: &str = "e.seq, e.kind, e.at, e.data, e.to_all, e.requires, \
    ARRAY(SELECT t.agent FROM event_targets t WHERE t.seq = e.seq) AS targets";

/// An agent's events in a `seq` range, `{dir}` order: the union of two
/// index range scans (its targets by (agent, seq), and the broadcast index
/// filtered by capability), each cut at the page size. Parameters: agent,
/// after, before, limit, capabilities.
const AGENT_EVENTS: &str = "SELECT e.seq, e.kind, e.at, e.data FROM events e WHERE e.seq IN ( \
    (SELECT seq FROM event_targets WHERE agent = $1 AND seq > $2 AND seq < $3 \
      ORDER BY seq {dir} LIMIT $4) \
    UNION \
    (SELECT seq FROM events WHERE seq > $2 AND seq < $3 AND (to_all OR requires IS NOT NULL) \
      AND (to_all OR requires <@ $5::text[]) ORDER BY seq {dir} LIMIT $4)) \
    ORDER BY e.seq {dir} LIMIT $4";

fn stored_from_row(r: &PgRow) -> Result<StoredEvent, StoreError> {
    let kind: String = r.try_get("kind")?;
    Ok(StoredEvent {
        seq: r.try_get("seq")?,
        kind: EventKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("event kind {kind:?}")))?,
        at: r.try_get("at")?,
        data: r.try_get("data")?,
    })
}

fn event_from_row(r: &PgRow) -> Result<CommittedEvent, StoreError> {
    let kind: String = r.try_get("kind")?;
    let kind = EventKind::parse(&kind)
        .ok_or_else(|| StoreError::Corrupt(format!("event kind {kind:?}")))?;
    let audience = Audience {
        all: r.try_get("to_all")?,
        requires: r.try_get("requires")?,
        agents: r.try_get("targets")?,
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

/// Appends `events` in order with consecutive `seq`s after the newest
/// committed one, with their targets, moves `task_counts` by the batch's
/// net changes `moved`, and notifies the other instances of the range, in
/// one round trip. The
/// caller holds [`super::writer::EVENT_LOCK`] (so nobody else numbers
/// events until it commits) and commits right after.
pub(super) async fn insert_events(
    conn: &mut PgConnection,
    now: Millis,
    events: Vec<NewEvent>,
    moved: &(Vec<&'static str>, Vec<i64>),
) -> Result<Vec<CommittedEvent>, StoreError> {
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let datas: Vec<String> = events.iter().map(|e| e.data.to_string()).collect();
    let to_all: Vec<bool> = events.iter().map(|e| e.audience.all).collect();
    // TEXT[] per row cannot be unnested from a 2-D array: pass JSON text
    let requires: Vec<Option<String>> = events
        .iter()
        .map(|e| {
            e.audience
                .requires
                .as_ref()
                .map(|r| serde_json::to_string(r).unwrap_or_else(|_| "[]".into()))
        })
        .collect();
    // each target as (agent, its event's 1-based place in the batch), an
    // agent named twice in one audience once
    let mut target_agents: Vec<&str> = Vec::new();
    let mut target_places: Vec<i64> = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        let mut agents: Vec<&str> = ev.audience.agents.iter().map(String::as_str).collect();
        agents.sort_unstable();
        agents.dedup();
        for a in agents {
            target_agents.push(a);
            target_places.push(i as i64 + 1);
        }
    }
    // one statement: number and insert the events, insert their targets,
    // move the task counts, notify the other instances of the range
    let first: i64 = sqlx::query_scalar(
        "WITH base AS (SELECT COALESCE(MAX(seq), 0) AS top FROM events), \
         ins AS (INSERT INTO events (seq, kind, at, data, to_all, requires) \
           SELECT base.top + u.n, u.kind, $1, u.data, u.to_all, \
             CASE WHEN u.req IS NULL THEN NULL \
             ELSE ARRAY(SELECT jsonb_array_elements_text(u.req::jsonb)) END \
           FROM base, UNNEST($2::text[], $3::text[], $4::bool[], $5::text[]) \
             WITH ORDINALITY AS u(kind, data, to_all, req, n)), \
         targets AS (INSERT INTO event_targets (agent, seq) \
           SELECT x.agent, base.top + x.n FROM base, UNNEST($6::text[], $7::bigint[]) AS x(agent, n)), \
         counts AS (UPDATE task_counts SET n = task_counts.n + d.n \
           FROM UNNEST($8::text[], $9::bigint[]) AS d(state, n) WHERE task_counts.state = d.state), \
         notified AS (SELECT pg_notify($10, (base.top + 1) || ' ' || (base.top + $11)) FROM base) \
         SELECT base.top + 1 FROM base, notified",
    )
    .bind(now)
    .bind(&kinds)
    .bind(&datas)
    .bind(&to_all)
    .bind(&requires)
    .bind(&target_agents)
    .bind(&target_places)
    .bind(&moved.0)
    .bind(&moved.1)
    .bind(CHANNEL)
    .bind(events.len() as i64)
    .fetch_one(&mut *conn)
    .await?;
    let out = events
        .into_iter()
        .zip(datas)
        .enumerate()
        .map(|(i, (ev, data))| {
            CommittedEvent::new(first + i as i64, ev.kind, now, ev.audience, &data)
        })
        .collect();
    Ok(out)
}

/// Every event with `after < seq <= upto`, at most `limit`, in `seq` order.
pub(super) async fn load_events_between(
    pool: &PgPool,
    after: i64,
    upto: i64,
    limit: i64,
) -> Result<Vec<CommittedEvent>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {EVENT_COLS} FROM events e WHERE e.seq > $1 AND e.seq <= $2 \
         ORDER BY e.seq LIMIT $3"
    ))
    .bind(after)
    .bind(upto)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(event_from_row).collect()
}

/// Stores a direct message or broadcast (inside the caller's transaction).
pub(super) async fn insert_message(
    conn: &mut PgConnection,
    message: &MessageRecord,
    now: Millis,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO messages (sender, recipient, topic, text, at) VALUES ($1, $2, $3, $4, $5)",
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

impl PgStore {
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
            "SELECT GREATEST( \
               (SELECT MAX(seq) FROM event_targets WHERE agent = $1), \
               (SELECT seq FROM events WHERE to_all ORDER BY seq DESC LIMIT 1), \
               (SELECT seq FROM events WHERE requires IS NOT NULL \
                  AND requires <@ $2::text[] ORDER BY seq DESC LIMIT 1), \
               0)",
        )
        .bind(agent)
        .bind(capabilities)
        .fetch_one(&self.pool)
        .await?)
    }

    /// The newest event sequence number.
    pub(super) async fn max_seq(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
                .fetch_one(&self.pool)
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
            "SELECT {EVENT_COLS} FROM events e WHERE e.seq > $1 AND (e.to_all \
             OR e.requires IS NOT NULL OR e.seq IN \
             (SELECT seq FROM event_targets WHERE agent = $2 AND seq > $1)) \
             ORDER BY e.seq LIMIT $3"
        ))
        .bind(after)
        .bind(agent)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// The newest `limit` events, oldest first.
    pub(super) async fn recent_events(
        &self,
        limit: i64,
    ) -> Result<Vec<CommittedEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT * FROM (SELECT {EVENT_COLS} FROM events e ORDER BY e.seq DESC LIMIT $1) r \
             ORDER BY seq"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
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
            .bind(capabilities)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(stored_from_row).collect()
    }

    /// Events at or below this `seq` were removed by retention.
    pub(super) async fn pruned_to(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COALESCE((SELECT pruned_to FROM event_retention WHERE id = 1), 0)",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// One pruning step in its own short transaction; the retention row is
    /// locked first, so instances sharing the database prune one at a time.
    /// Appends are not blocked: the newest event is never removed, so the
    /// sequence's top does not move.
    pub(super) async fn prune_events(
        &self,
        cutoff: Millis,
        batch: i64,
    ) -> Result<Pruned, StoreError> {
        let mut tx = self.pool.begin().await?;
        let pruned_to: i64 =
            sqlx::query_scalar("SELECT pruned_to FROM event_retention WHERE id = 1 FOR UPDATE")
                .fetch_optional(&mut *tx)
                .await?
                .unwrap_or(0);
        let upto: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(seq) FROM (SELECT seq, at FROM events WHERE seq > $1 \
               ORDER BY seq LIMIT $2) b \
             WHERE at < $3 \
               AND seq < (SELECT MAX(seq) FROM events) \
               AND seq <= COALESCE((SELECT MIN(GREATEST(acked_seq, base_seq)) FROM agents \
                                    WHERE revoked_at IS NULL), seq)",
        )
        .bind(pruned_to)
        .bind(batch)
        .bind(cutoff)
        .fetch_one(&mut *tx)
        .await?;
        let Some(upto) = upto else {
            return Ok(Pruned {
                removed: 0,
                pruned_to,
            });
        };
        sqlx::query("DELETE FROM event_targets WHERE seq > $1 AND seq <= $2")
            .bind(pruned_to)
            .bind(upto)
            .execute(&mut *tx)
            .await?;
        let removed = sqlx::query("DELETE FROM events WHERE seq > $1 AND seq <= $2")
            .bind(pruned_to)
            .bind(upto)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(
            "UPDATE event_retention SET pruned_to = GREATEST(pruned_to, $1), pruned_at = $2 \
             WHERE id = 1",
        )
        .bind(upto)
        .bind(crate::clock::now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Pruned {
            removed,
            pruned_to: upto,
        })
    }

    /// How many events are stored and when the oldest was committed.
    pub(super) async fn event_table(&self) -> Result<EventTable, StoreError> {
        let (rows, oldest_at): (i64, Option<i64>) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM events), \
                    (SELECT at FROM events ORDER BY seq LIMIT 1)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(EventTable { rows, oldest_at })
    }
}
