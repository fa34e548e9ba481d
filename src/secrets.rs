//! The secrets a configuration holds, and a log writer that never prints
//! them. Code is written not to log secrets in the first place; this is
//! the second line: a library that logs a raw protocol line (twitch-irc
//! logs `PASS oauth:...` at trace level) or an error that echoes a key
//! still cannot put it in the log.

use crate::config::Config;
use std::io::Write;
use std::sync::Arc;
use tracing_subscriber::fmt::MakeWriter;

/// What replaces a secret in log output.
pub const REDACTED: &str = "<redacted>";

/// Secrets shorter than this are not searched for (they would match
/// ordinary text); no real token is this short.
const MIN_SECRET_LEN: usize = 8;

/// Every secret value in `cfg`: the Discord bot token, the Twitch OAuth
/// token (with and without its `oauth:` prefix), client secret and
/// refresh token, the reasoning and embeddings API keys, and the password
/// of the database URL. Agent tokens are not in the configuration (only
/// their hashes are stored) and never reach a log line.
pub fn configured(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |s: Option<&str>| {
        if let Some(s) = s.map(str::trim).filter(|s| s.len() >= MIN_SECRET_LEN) {
            out.push(s.to_string());
        }
    };
    add(cfg.discord.token.as_deref());
    if let Some(t) = &cfg.twitch.oauth_token {
        add(Some(t.expose()));
    }
    add(cfg.twitch.token());
    for s in cfg.twitch.refresh_secrets() {
        add(Some(s));
    }
    add(cfg.reasoning.api_key.as_deref());
    let embed_key = std::env::var(&cfg.embeddings.api_key_env).ok();
    add(embed_key.as_deref());
    add(database_password(&cfg.database.url));
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// The password in a `scheme://user:password@host/...` URL.
fn database_password(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let creds = &rest[..rest.rfind('@')?];
    creds.split_once(':').map(|(_, p)| p)
}

/// `text` with every one of `secrets` replaced by [`REDACTED`].
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), REDACTED);
        }
    }
    out
}

/// A `tracing` writer to stderr that replaces every configured secret in
/// each log record before it is written.
#[derive(Clone)]
pub struct RedactingStderr {
    secrets: Arc<Vec<String>>,
}

impl RedactingStderr {
    /// A writer hiding `secrets`.
    pub fn new(secrets: Vec<String>) -> RedactingStderr {
        RedactingStderr {
            secrets: Arc::new(secrets),
        }
    }
}

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = RecordWriter;

    fn make_writer(&'a self) -> RecordWriter {
        RecordWriter {
            buf: Vec::new(),
            secrets: self.secrets.clone(),
        }
    }
}

/// One log record, written to stderr (redacted) when dropped.
pub struct RecordWriter {
    buf: Vec<u8>,
    secrets: Arc<Vec<String>>,
}

impl Write for RecordWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RecordWriter {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buf);
        let line = if self.secrets.is_empty() {
            text.into_owned()
        } else {
            redact(&text, &self.secrets)
        };
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_and_short_values_ignored() {
        let secrets = vec!["sk-abcdefgh123".to_string()];
        assert_eq!(
            redact("key sk-abcdefgh123 refused", &secrets),
            "key <redacted> refused"
        );
        assert_eq!(
            database_password("postgres://u:pw123456@h/db"),
            Some("pw123456")
        );
        assert_eq!(database_password("swarmbridge.db"), None);
    }
}
