//! `[mcp]`: which `Host` and `Origin` values `/mcp` accepts.

use serde::{Deserialize, Serialize};

/// `[mcp]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    /// `Host` names (or `host:port`) `/mcp` answers; loopback by default,
    /// against DNS rebinding. `["*"]` accepts any (behind a proxy that checks).
    pub allowed_hosts: Vec<String>,
    /// Browser `Origin`s allowed (`scheme://host:port`, `:*` for any port);
    /// requests without an `Origin` (non-browser clients) always pass.
    /// `["*"]` accepts any.
    pub allowed_origins: Vec<String>,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            allowed_origins: vec![
                "http://localhost:*".into(),
                "http://127.0.0.1:*".into(),
                "http://[::1]:*".into(),
            ],
        }
    }
}
