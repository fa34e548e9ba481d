//! Reasoning requests: validation, per-caller budget, and the mapping of the
//! engine's errors to the protocol's codes. The engine is [`crate::reason`].

use super::error::CoreError;
use super::model::Caller;
use super::Core;
use crate::reason::{Mode, ReasonAnswer, ReasonError};
use tokio::sync::mpsc;

impl From<ReasonError> for CoreError {
    fn from(e: ReasonError) -> Self {
        match (e.code(), e.retry_after_ms()) {
            ("bad_request", _) => CoreError::BadRequest(e.to_string()),
            // an open breaker says when it lets a call through again
            (_, Some(retry_after_ms)) => CoreError::StoreUnavailable {
                message: e.to_string(),
                retry_after_ms,
            },
            _ => CoreError::Unavailable(e.to_string()),
        }
    }
}

impl Core {
    /// Checks a reasoning request before anything is sent: a backend is
    /// configured, the mode exists, the prompt fits, the caller has budget.
    pub fn check_reason(
        &self,
        caller: &Caller,
        prompt: &str,
        mode: &str,
    ) -> Result<Mode, CoreError> {
        if !self.reasoner.is_configured() {
            return Err(ReasonError::NotConfigured.into());
        }
        let mode: Mode = mode
            .parse()
            .map_err(|e: crate::reason::UnknownMode| CoreError::BadRequest(e.to_string()))?;
        let n = prompt.chars().count();
        if prompt.trim().is_empty() {
            return Err(CoreError::bad_request("`prompt` must not be empty"));
        }
        if n > self.limits.max_prompt_chars {
            return Err(CoreError::bad_request(format!(
                "`prompt` has {n} characters; the limit is {} (limits.max_prompt_chars)",
                self.limits.max_prompt_chars
            )));
        }
        if let Err(retry_after_ms) = self.reasoner.check_budget(&caller.identity) {
            return Err(CoreError::RateLimited {
                message: format!(
                    "reasoning budget of {} used up; retry in {retry_after_ms} ms",
                    caller.identity
                ),
                retry_after_ms,
            });
        }
        Ok(mode)
    }

    /// Asks the reasoning backend (after [`Core::check_reason`]); with
    /// `deltas`, streams the answer's pieces there as they arrive.
    pub async fn reason(
        &self,
        prompt: &str,
        mode: Mode,
        deltas: Option<mpsc::Sender<String>>,
    ) -> Result<ReasonAnswer, CoreError> {
        let started = std::time::Instant::now();
        let answer = match deltas {
            Some(tx) => self.reasoner.ask_streaming(prompt, mode, tx).await,
            None => self.reasoner.ask(prompt, mode).await,
        };
        let answer = answer.map_err(CoreError::from);
        let outcome = match &answer {
            Ok(_) => "ok",
            Err(e) => e.code(),
        };
        crate::observe::reasoning(started.elapsed(), outcome);
        answer
    }
}
