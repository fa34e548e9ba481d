//! Agents: registration with a token shown once and stored only as a hash,
//! authentication, revocation, presence.

use super::error::CoreError;
use super::model::{Agent, AgentView, Role, StatusReport};
use super::store::timed;
use super::Core;
use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};

/// Tokens start with this, so a leaked one is recognizable in a scan.
pub const TOKEN_PREFIX: &str = "sbt_";

/// A new random agent token (`sbt_` + 40 alphanumerics, ~238 bits).
pub fn new_token() -> String {
    format!(
        "{TOKEN_PREFIX}{}",
        Alphanumeric.sample_string(&mut rand::rng(), 40)
    )
}

/// The stored form of a token: hex SHA-256. Tokens are random and long, so a
/// fast hash is enough; it makes the database useless for logging in.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Checks an agent name: 1 to 64 characters of letters, digits, `-`, `_`, `.`.
pub fn validate_agent_name(name: &str) -> Result<(), CoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(CoreError::bad_request(format!(
            "agent name {name:?} must be 1 to 64 characters of letters, digits, '-', '_' or '.'"
        )))
    }
}

fn validate_capabilities(caps: &[String]) -> Result<(), CoreError> {
    if caps.len() > 64 || caps.iter().any(|c| c.is_empty() || c.chars().count() > 64) {
        return Err(CoreError::bad_request(
            "`capabilities` takes at most 64 non-empty entries of at most 64 characters",
        ));
    }
    Ok(())
}

impl Core {
    /// Registers an agent and returns it with its token, which is shown
    /// this once and stored only as a hash.
    pub async fn add_agent(
        &self,
        name: &str,
        role: Role,
        mut capabilities: Vec<String>,
    ) -> Result<(Agent, String), CoreError> {
        validate_agent_name(name)?;
        if role == Role::Viewer {
            return Err(CoreError::bad_request(
                "an agent's role is agent, operator or admin",
            ));
        }
        capabilities.dedup();
        validate_capabilities(&capabilities)?;
        let token = new_token();
        let agent = self
            .store
            .add_agent(name.to_string(), hash_token(&token), role, capabilities)
            .await?;
        Ok((agent, token))
    }

    /// The active agent a token belongs to; `unauthorized` otherwise.
    pub async fn authenticate(&self, token: &str) -> Result<Agent, CoreError> {
        if token.is_empty() || token.len() > 256 {
            return Err(CoreError::Unauthorized("invalid or revoked token".into()));
        }
        timed(
            "agent_by_token",
            self.store.agent_by_token_hash(&hash_token(token)),
        )
        .await?
        .ok_or_else(|| CoreError::Unauthorized("invalid or revoked token".into()))
    }

    /// Records a connection: new capabilities (when given) and last-seen.
    pub async fn agent_connected(
        &self,
        name: &str,
        capabilities: Option<Vec<String>>,
    ) -> Result<(), CoreError> {
        if let Some(c) = &capabilities {
            validate_capabilities(c)?;
        }
        Ok(self
            .store
            .agent_connected(name.to_string(), capabilities)
            .await?)
    }

    /// Marks an agent seen now (when its connection ends).
    pub async fn touch_agent(&self, name: &str) -> Result<(), CoreError> {
        Ok(self.store.agent_connected(name.to_string(), None).await?)
    }

    /// Every registered agent, revoked ones included, by name.
    pub async fn list_agents(&self) -> Result<Vec<Agent>, CoreError> {
        Ok(self.store.list_agents().await?)
    }

    /// Revokes an agent's token and closes its open connections (1008).
    pub async fn revoke_agent(&self, name: &str) -> Result<(), CoreError> {
        self.store.revoke_agent(name.to_string()).await?;
        self.bus.disconnect_agent(name, 1008, "token revoked");
        Ok(())
    }

    /// Every active agent with its presence and current task.
    pub async fn agent_views(&self) -> Result<Vec<AgentView>, CoreError> {
        let agents = self.store.list_agents().await?;
        let current = self.store.current_tasks().await?;
        Ok(agents
            .into_iter()
            .filter(|a| a.revoked_at.is_none())
            .map(|a| {
                let online = self.bus.is_online(&a.name);
                AgentView {
                    current_task: current.get(&a.name).copied(),
                    last_seen: if online {
                        Some(crate::clock::now_ms())
                    } else {
                        a.last_seen
                    },
                    online,
                    name: a.name,
                    role: a.role,
                    capabilities: a.capabilities,
                }
            })
            .collect())
    }

    /// Counts and uptime, from memory.
    pub fn status(&self) -> StatusReport {
        StatusReport {
            agents_online: self.bus.agents_online(),
            tasks: self.store.task_counts(),
            uptime_s: self.uptime_s(),
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_hash_stably() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
    }

    #[test]
    fn agent_names_are_checked() {
        assert!(validate_agent_name("agent-3").is_ok());
        assert!(validate_agent_name("").is_err());
        assert!(validate_agent_name("discord:alice").is_err());
        assert!(validate_agent_name(&"x".repeat(65)).is_err());
    }
}
