//! The event log (`events`, `event_targets`) and the messages stored with
//! their events.

use super::PgStore;
use crate::clock::Millis;
use crate::core::events::{Audience, CommittedEvent, EventKind, NewEvent};
use crate::core::store::{MessageRecord, StoreError};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};

/// The channel on which a committed batch announces `first last` seqs.
pub(super) const CHANNEL: &str = "swarmbridge_events";

/// An event row with its targets.
pub(super) const EVENT_COLS: &str = "e.seq, e.kind, e.at, e.data, e.to_all, e.requires, \
    ARRAY(SELECT t.agent FROM event_targets t WHERE t.seq = e.seq) AS targets";

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
/// committed one, and notifies the other instances of the range. The
/// caller holds [`super::writer::EVENT_LOCK`] (so nobody else numbers
/// events until it commits) and commits right after.
pub(super) async fn insert_events(
    conn: &mut PgConnection,
    now: Millis,
    events: Vec<NewEvent>,
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
    let first: i64 = sqlx::query_scalar(
        "WITH base AS (SELECT COALESCE(MAX(seq), 0) AS top FROM events), \
         ins AS (INSERT INTO events (seq, kind, at, data, to_all, requires) \
           SELECT base.top + u.n, u.kind, $1, u.data, u.to_all, \
             CASE WHEN u.req IS NULL THEN NULL \
             ELSE ARRAY(SELECT jsonb_array_elements_text(u.req::jsonb)) END \
           FROM base, UNNEST($2::text[], $3::text[], $4::bool[], $5::text[]) \
             WITH ORDINALITY AS u(kind, data, to_all, req, n) \
           RETURNING seq) \
         SELECT MIN(seq) FROM ins",
    )
    .bind(now)
    .bind(&kinds)
    .bind(&datas)
    .bind(&to_all)
    .bind(&requires)
    .fetch_one(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(events.len());
    let mut target_agents: Vec<String> = Vec::new();
    let mut target_seqs: Vec<i64> = Vec::new();
    for (i, (ev, data)) in events.into_iter().zip(datas).enumerate() {
        let seq = first + i as i64;
        for a in &ev.audience.agents {
            target_agents.push(a.clone());
            target_seqs.push(seq);
        }
        out.push(CommittedEvent::new(seq, ev.kind, now, ev.audience, &data));
    }
    let last = first + out.len() as i64 - 1;
    sqlx::query(
        "WITH t AS (INSERT INTO event_targets (agent, seq) \
           SELECT * FROM UNNEST($1::text[], $2::bigint[]) ON CONFLICT DO NOTHING) \
         SELECT pg_notify($3, $4)",
    )
    .bind(&target_agents)
    .bind(&target_seqs)
    .bind(CHANNEL)
    .bind(format!("{first} {last}"))
    .execute(&mut *conn)
    .await?;
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
}
