//! Agents (`agents`): tokens by hash, roles, capabilities, presence and acks.

use super::PgStore;
use crate::clock::Millis;
use crate::core::error::CoreError;
use crate::core::model::{Agent, Role};
use crate::core::store::StoreError;
use sqlx::postgres::PgRow;
use sqlx::Row;
use std::str::FromStr;

const AGENT_COLS: &str =
    "name, role, capabilities, created_at, revoked_at, last_seen, acked_seq, base_seq";

fn agent_from_row(r: &PgRow) -> Result<Agent, StoreError> {
    let role: String = r.try_get("role")?;
    Ok(Agent {
        name: r.try_get("name")?,
        role: Role::from_str(&role).map_err(StoreError::Corrupt)?,
        capabilities: r.try_get("capabilities")?,
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
        last_seen: r.try_get("last_seen")?,
        acked_seq: r.try_get("acked_seq")?,
        base_seq: r.try_get("base_seq")?,
    })
}

impl PgStore {
    /// Registers an agent with a token hash; a revoked agent of the same
    /// name is re-issued, an active one is a conflict.
    pub(super) async fn add_agent(
        &self,
        name: String,
        token_hash: String,
        role: Role,
        capabilities: Vec<String>,
    ) -> Result<Agent, StoreError> {
        self.writer
            .write(move |conn, now| {
                Box::pin(async move {
                    let existing: Option<Option<i64>> = sqlx::query_scalar(
                        "SELECT revoked_at FROM agents WHERE name = $1 FOR UPDATE",
                    )
                    .bind(&name)
                    .fetch_optional(&mut *conn)
                    .await?;
                    if let Some(None) = existing {
                        return Err(CoreError::Conflict(format!(
                            "agent {name} already exists (revoke it first to issue a new token)"
                        ))
                        .into());
                    }
                    let row = sqlx::query(&format!(
                        "INSERT INTO agents (name, token_hash, role, capabilities, created_at, \
                         acked_seq, base_seq) VALUES ($1, $2, $3, $4, $5, \
                         (SELECT COALESCE(MAX(seq), 0) FROM events), \
                         (SELECT COALESCE(MAX(seq), 0) FROM events)) \
                         ON CONFLICT (name) DO UPDATE SET token_hash = $2, role = $3, \
                         capabilities = $4, created_at = $5, revoked_at = NULL, \
                         acked_seq = excluded.acked_seq, base_seq = excluded.base_seq \
                         RETURNING {AGENT_COLS}"
                    ))
                    .bind(&name)
                    .bind(&token_hash)
                    .bind(role.as_str())
                    .bind(&capabilities)
                    .bind(now)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(|e| match &e {
                        sqlx::Error::Database(d) if d.is_unique_violation() => {
                            StoreError::Rejected(CoreError::Conflict(format!(
                                "agent {name} already exists"
                            )))
                        }
                        _ => e.into(),
                    })?;
                    Ok((agent_from_row(&row)?, vec![], vec![]))
                })
            })
            .await
    }

    /// The active (not revoked) agent holding this token hash.
    pub(super) async fn agent_by_token_hash(
        &self,
        hash: &str,
    ) -> Result<Option<Agent>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {AGENT_COLS} FROM agents WHERE token_hash = $1 AND revoked_at IS NULL"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(agent_from_row).transpose()
    }

    /// An agent by name, revoked or not.
    pub(super) async fn agent(&self, name: &str) -> Result<Option<Agent>, StoreError> {
        let row = sqlx::query(&format!("SELECT {AGENT_COLS} FROM agents WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(agent_from_row).transpose()
    }

    /// Every agent, revoked ones included, by name.
    pub(super) async fn list_agents(&self) -> Result<Vec<Agent>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {AGENT_COLS} FROM agents ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(agent_from_row).collect()
    }

    /// Revokes an agent's token; `not_found` when no active agent has that name.
    pub(super) async fn revoke_agent(&self, name: String) -> Result<(), StoreError> {
        self.writer
            .write(move |conn, now| {
                Box::pin(async move {
                    let n = sqlx::query(
                        "UPDATE agents SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
                    )
                    .bind(&name)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                    if n == 0 {
                        return Err(
                            CoreError::NotFound(format!("no active agent named {name}")).into()
                        );
                    }
                    Ok(((), vec![], vec![]))
                })
            })
            .await
    }

    /// Names of agents revoked at or after `since`.
    pub(super) async fn revoked_since(&self, since: Millis) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT name FROM agents WHERE revoked_at >= $1")
                .bind(since)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Replaces an agent's capabilities (when given) and marks it seen now.
    pub(super) async fn agent_connected(
        &self,
        name: String,
        capabilities: Option<Vec<String>>,
    ) -> Result<(), StoreError> {
        self.writer
            .write(move |conn, now| {
                Box::pin(async move {
                    sqlx::query(
                        "UPDATE agents SET last_seen = $2, \
                         capabilities = COALESCE($3, capabilities) WHERE name = $1",
                    )
                    .bind(&name)
                    .bind(now)
                    .bind(capabilities)
                    .execute(&mut *conn)
                    .await?;
                    Ok(((), vec![], vec![]))
                })
            })
            .await
    }

    /// Records every `(agent, seq)` ack in one statement; never moves an
    /// ack back (so acks written through two instances cannot regress).
    pub(super) async fn record_acks(&self, acks: Vec<(String, i64)>) -> Result<(), StoreError> {
        if acks.is_empty() {
            return Ok(());
        }
        let (names, seqs): (Vec<String>, Vec<i64>) = acks.into_iter().unzip();
        self.writer
            .write(move |conn, _now| {
                Box::pin(async move {
                    sqlx::query(
                        "UPDATE agents AS a SET acked_seq = GREATEST(a.acked_seq, v.seq) \
                         FROM (SELECT name, MAX(seq) AS seq \
                               FROM UNNEST($1::text[], $2::bigint[]) AS u(name, seq) \
                               GROUP BY name) AS v \
                         WHERE a.name = v.name",
                    )
                    .bind(&names)
                    .bind(&seqs)
                    .execute(&mut *conn)
                    .await?;
                    Ok(((), vec![], vec![]))
                })
            })
            .await
    }
}
