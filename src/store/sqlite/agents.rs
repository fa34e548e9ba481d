//! Agents (`agents`): tokens by hash, roles, capabilities, presence and acks.

use super::row::Cols;
use super::{json_list, parse_list, SqliteStore};
use crate::clock::Millis;
use crate::core::error::CoreError;
use crate::core::model::{Agent, Role};
use crate::core::store::StoreError;
use rusqlite::{params, OptionalExtension};

const AGENT_COLS: &str =
    "name, role, capabilities, created_at, revoked_at, last_seen, acked_seq, base_seq";

fn agent_from_row<R: Cols>(r: &R) -> Result<Agent, StoreError> {
    Ok(Agent {
        name: r.text("name")?,
        role: r.parsed("role")?,
        capabilities: parse_list(&r.text("capabilities")?)?,
        created_at: r.int("created_at")?,
        revoked_at: r.opt_int("revoked_at")?,
        last_seen: r.opt_int("last_seen")?,
        acked_seq: r.int("acked_seq")?,
        base_seq: r.int("base_seq")?,
    })
}

impl SqliteStore {
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
                let existing: Option<Option<i64>> = conn
                    .prepare_cached("SELECT revoked_at FROM agents WHERE name = ?1")?
                    .query_row(params![name], |r| r.get(0))
                    .optional()?;
                if let Some(None) = existing {
                    return Err(CoreError::Conflict(format!(
                        "agent {name} already exists (revoke it first to issue a new token)"
                    ))
                    .into());
                }
                let mut stmt = conn.prepare_cached(&format!(
                    "INSERT INTO agents (name, token_hash, role, capabilities, created_at, \
                     acked_seq, base_seq) VALUES (?1, ?2, ?3, ?4, ?5, \
                     (SELECT COALESCE(MAX(seq), 0) FROM events), \
                     (SELECT COALESCE(MAX(seq), 0) FROM events)) \
                     ON CONFLICT (name) DO UPDATE SET token_hash = ?2, role = ?3, \
                     capabilities = ?4, created_at = ?5, revoked_at = NULL, \
                     acked_seq = excluded.acked_seq, base_seq = excluded.base_seq \
                     RETURNING {AGENT_COLS}"
                ))?;
                let mut rows = stmt.query(params![
                    name,
                    token_hash,
                    role.as_str(),
                    json_list(&capabilities),
                    now
                ])?;
                let row = rows
                    .next()?
                    .ok_or_else(|| StoreError::Corrupt("agent insert returned no row".into()))?;
                Ok((agent_from_row(row)?, vec![], vec![]))
            })
            .await
    }

    /// The active (not revoked) agent holding this token hash.
    pub(super) async fn agent_by_token_hash(
        &self,
        hash: &str,
    ) -> Result<Option<Agent>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {AGENT_COLS} FROM agents WHERE token_hash = ?1 AND revoked_at IS NULL"
        ))
        .bind(hash)
        .fetch_optional(&self.readers)
        .await?;
        row.as_ref().map(agent_from_row).transpose()
    }

    /// An agent by name, revoked or not.
    pub(super) async fn agent(&self, name: &str) -> Result<Option<Agent>, StoreError> {
        let row = sqlx::query(&format!("SELECT {AGENT_COLS} FROM agents WHERE name = ?1"))
            .bind(name)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(agent_from_row).transpose()
    }

    /// Every agent, revoked ones included, by name.
    pub(super) async fn list_agents(&self) -> Result<Vec<Agent>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {AGENT_COLS} FROM agents ORDER BY name"))
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(agent_from_row).collect()
    }

    /// Revokes an agent's token; `not_found` when no active agent has that name.
    pub(super) async fn revoke_agent(&self, name: String) -> Result<(), StoreError> {
        self.writer
            .write(move |conn, now| {
                let n = conn
                    .prepare_cached(
                        "UPDATE agents SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                    )?
                    .execute(params![name, now])?;
                if n == 0 {
                    return Err(CoreError::NotFound(format!("no active agent named {name}")).into());
                }
                Ok(((), vec![], vec![]))
            })
            .await
    }

    /// Names of agents revoked at or after `since`.
    pub(super) async fn revoked_since(&self, since: Millis) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT name FROM agents WHERE revoked_at >= ?1")
                .bind(since)
                .fetch_all(&self.readers)
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
                conn.prepare_cached(
                    "UPDATE agents SET last_seen = ?2, \
                     capabilities = COALESCE(?3, capabilities) WHERE name = ?1",
                )?
                .execute(params![
                    name,
                    now,
                    capabilities.as_deref().map(json_list)
                ])?;
                Ok(((), vec![], vec![]))
            })
            .await
    }

    /// Records every `(agent, seq)` ack in one statement; never moves an ack back.
    pub(super) async fn record_acks(&self, acks: Vec<(String, i64)>) -> Result<(), StoreError> {
        if acks.is_empty() {
            return Ok(());
        }
        let pairs =
            serde_json::to_string(&acks).map_err(|e| StoreError::Corrupt(format!("acks: {e}")))?;
        self.writer
            .write(move |conn, _now| {
                conn.prepare_cached(
                    "UPDATE agents AS a SET acked_seq = MAX(a.acked_seq, v.seq) \
                     FROM (SELECT json_extract(value, '$[0]') AS name, \
                           MAX(json_extract(value, '$[1]')) AS seq \
                           FROM json_each(?1) GROUP BY name) AS v \
                     WHERE a.name = v.name",
                )?
                .execute(params![pairs])?;
                Ok(((), vec![], vec![]))
            })
            .await
    }
}
