//! The core's error type: one variant per protocol error code, so every
//! front door converts it into its platform's reply in one place.

/// Why a command was refused or failed. The variants are the protocol's
/// error codes (`protocol.md`); the message is shown to the caller as is.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CoreError {
    /// The request is malformed or a value is out of range.
    #[error("{0}")]
    BadRequest(String),
    /// No valid credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// The caller's role or identity does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// The thing named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request clashes with the current state (task already claimed, ...).
    #[error("{0}")]
    Conflict(String),
    /// The caller exceeded a rate limit; nothing was executed.
    #[error("{message}")]
    RateLimited {
        /// What was limited, for the caller.
        message: String,
        /// How long until a retry can succeed.
        retry_after_ms: u64,
    },
    /// The request is larger than allowed.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A dependency is down, failing or not configured.
    #[error("{0}")]
    Unavailable(String),
    /// The database cannot be reached for now, or a backend is behind an
    /// open circuit breaker (code `unavailable`); nothing was executed and
    /// a retry after `retry_after_ms` may succeed.
    #[error("{message}")]
    StoreUnavailable {
        /// For the caller.
        message: String,
        /// How long until a retry may succeed.
        retry_after_ms: u64,
    },
    /// A fault on our side; details are logged, not shown.
    #[error("{0}")]
    Internal(String),
}

impl CoreError {
    /// The protocol error code (`bad_request`, `not_found`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::BadRequest(_) => "bad_request",
            CoreError::Unauthorized(_) => "unauthorized",
            CoreError::Forbidden(_) => "forbidden",
            CoreError::NotFound(_) => "not_found",
            CoreError::Conflict(_) => "conflict",
            CoreError::RateLimited { .. } => "rate_limited",
            CoreError::PayloadTooLarge(_) => "payload_too_large",
            CoreError::Unavailable(_) | CoreError::StoreUnavailable { .. } => "unavailable",
            CoreError::Internal(_) => "internal",
        }
    }

    /// The wait before a retry can succeed, for `rate_limited` (and `unavailable`
    /// while a circuit breaker is open).
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            CoreError::RateLimited { retry_after_ms, .. }
            | CoreError::StoreUnavailable { retry_after_ms, .. } => Some(*retry_after_ms),
            _ => None,
        }
    }

    /// Shorthand for [`CoreError::BadRequest`].
    pub fn bad_request(msg: impl Into<String>) -> Self {
        CoreError::BadRequest(msg.into())
    }
}
