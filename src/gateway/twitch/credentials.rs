//! The Twitch login: the configured OAuth token, refreshed when it has
//! expired or was refused. twitch-irc asks [`TwitchCredentials`] for the
//! login before every connection; with a refresh token, client id and
//! client secret configured, an expired (or refused) access token is
//! exchanged at `twitch.token_url` (Twitch's `grant_type=refresh_token`)
//! for a new one, without a restart. Twitch rotates refresh tokens: the
//! newest one is kept (in memory; a restart starts from the configured one).

use crate::config::Secret;
use async_trait::async_trait;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use twitch_irc::login::{CredentialsPair, LoginCredentials};

/// Refresh this long before the access token is due to expire.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// The longest a token request may take.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(15);

/// Why no login could be had.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The token endpoint could not be reached or answered garbage.
    #[error("twitch token refresh failed: {0}")]
    Refresh(String),
    /// The token endpoint refused the refresh token or the client.
    #[error("twitch token refresh refused ({status}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Twitch's message.
        message: String,
    },
}

/// What refreshing needs.
pub struct RefreshSettings {
    /// `twitch.token_url`.
    pub token_url: String,
    /// `twitch.client_id`.
    pub client_id: String,
    /// `twitch.client_secret`.
    pub client_secret: Secret,
    /// `twitch.refresh_token` (the first one; Twitch may hand out new ones).
    pub refresh_token: Secret,
}

struct TokenState {
    access: Option<String>,
    refresh: Option<Secret>,
    expires_at: Option<Instant>,
    /// The server refused `access` (set by the chat loop on a login NOTICE).
    refused: bool,
}

/// The bot's login for twitch-irc, refreshing its token when it can.
/// Clones share one token (the chat loop keeps one to report refusals).
#[derive(Clone)]
pub struct TwitchCredentials(Arc<Shared>);

struct Shared {
    login: String,
    refresh: Option<(RefreshSettings, reqwest::Client)>,
    state: Mutex<TokenState>,
}

impl std::fmt::Debug for TwitchCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwitchCredentials")
            .field("login", &self.0.login)
            .field("refreshing", &self.0.refresh.is_some())
            .finish()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl TwitchCredentials {
    /// A login as `login` with `token` (None: anonymous unless a refresh
    /// gets one), refreshing through `refresh` when given.
    pub fn new(login: String, token: Option<String>, refresh: Option<RefreshSettings>) -> Self {
        let refresh_token = refresh.as_ref().map(|r| r.refresh_token.clone());
        let refresh = refresh.map(|r| {
            let http = reqwest::Client::builder()
                .timeout(TOKEN_TIMEOUT)
                .build()
                .unwrap_or_default();
            (r, http)
        });
        TwitchCredentials(Arc::new(Shared {
            login,
            refresh,
            state: Mutex::new(TokenState {
                access: token,
                refresh: refresh_token,
                expires_at: None,
                refused: false,
            }),
        }))
    }

    /// The login name.
    pub fn login(&self) -> &str {
        &self.0.login
    }

    /// Whether a refused token can be replaced.
    pub fn can_refresh(&self) -> bool {
        self.0.refresh.is_some()
    }

    /// The server refused the current token: the next login refreshes it first.
    pub async fn refused(&self) {
        self.0.state.lock().await.refused = true;
    }

    async fn refresh_now(&self, st: &mut TokenState) -> Result<(), CredentialsError> {
        let Some((r, http)) = &self.0.refresh else {
            return Ok(());
        };
        let refresh_token = st
            .refresh
            .as_ref()
            .unwrap_or(&r.refresh_token)
            .expose()
            .to_string();
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
            ("client_id", r.client_id.as_str()),
            ("client_secret", r.client_secret.expose()),
        ];
        let resp = http
            .post(&r.token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| CredentialsError::Refresh(e.without_url().to_string()))?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .map_err(|e| CredentialsError::Refresh(e.without_url().to_string()))?;
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
            let message = crate::secrets::redact(
                &message,
                &[refresh_token.clone(), r.client_secret.expose().to_string()],
            );
            return Err(CredentialsError::Refused {
                status: status.as_u16(),
                message,
            });
        }
        let answer: TokenAnswer = serde_json::from_str(&body).map_err(|_| {
            CredentialsError::Refresh("the token endpoint's answer has no access_token".into())
        })?;
        st.access = Some(answer.access_token);
        if let Some(next) = answer.refresh_token.filter(|t| !t.is_empty()) {
            st.refresh = Some(Secret::new(next));
        }
        st.expires_at = answer
            .expires_in
            .map(|s| Instant::now() + Duration::from_secs(s));
        st.refused = false;
        tracing::info!(
            platform = "twitch",
            expires_in_s = answer.expires_in,
            "twitch: OAuth token refreshed"
        );
        Ok(())
    }
}

#[async_trait]
impl LoginCredentials for TwitchCredentials {
    type Error = CredentialsError;

    async fn get_credentials(&self) -> Result<CredentialsPair, CredentialsError> {
        let mut st = self.0.state.lock().await;
        let due = st
            .expires_at
            .is_some_and(|at| at.saturating_duration_since(Instant::now()) < REFRESH_MARGIN);
        if self.0.refresh.is_some() && (st.refused || st.access.is_none() || due) {
            if let Err(e) = self.refresh_now(&mut st).await {
                tracing::error!(platform = "twitch", error = %e, "twitch: cannot refresh the OAuth token");
                super::transport::report_login_problem(&e.to_string());
                return Err(e);
            }
        }
        Ok(CredentialsPair {
            login: self.0.login.clone(),
            token: st.access.clone(),
        })
    }
}
