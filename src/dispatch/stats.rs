//! Commands served and refused per front door, the links' state and the
//! open event streams: the figures the dashboard, `/api/status` and
//! `/metrics` show per platform. Kept by the [`super::Dispatcher`], not by
//! the core.

use crate::core::model::Platform;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Every platform, in the order [`FrontDoorStats`] keeps them.
pub const PLATFORMS: [Platform; 7] = [
    Platform::Ws,
    Platform::Discord,
    Platform::Twitch,
    Platform::Http,
    Platform::Cli,
    Platform::Mcp,
    Platform::A2a,
];

fn platform_index(p: Platform) -> usize {
    match p {
        Platform::Ws => 0,
        Platform::Discord => 1,
        Platform::Twitch => 2,
        Platform::Http => 3,
        Platform::Cli => 4,
        Platform::Mcp => 5,
        Platform::A2a => 6,
    }
}

/// Commands served and refused per platform, and open event streams, kept
/// in memory by the dispatcher (reset at restart; `/metrics` has them as counters).
#[derive(Debug, Default)]
pub struct FrontDoorStats {
    served: [AtomicU64; 7],
    refused: [AtomicU64; 7],
    streams: AtomicUsize,
    /// Discord gateway link: 0 off, 1 configured but not connected, 2 up.
    discord_link: std::sync::atomic::AtomicU8,
    /// Whether the Twitch client runs in this process.
    twitch_on: std::sync::atomic::AtomicBool,
}

/// `off`, `down` or `up` from a link state.
fn link_word(state: u8) -> &'static str {
    match state {
        0 => "off",
        1 => "down",
        _ => "up",
    }
}

/// One platform's line in [`FrontDoorStats::snapshot`].
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PlatformCommands {
    /// `ws`, `discord`, `twitch`, `http`, `cli`, `mcp` or `a2a`.
    pub platform: &'static str,
    /// Commands that succeeded.
    pub served: u64,
    /// Commands refused with an error (any code, rate limits included).
    pub refused: u64,
}

impl FrontDoorStats {
    /// Records the Discord gateway link: configured (`down`) or connected (`up`).
    pub fn set_discord_link(&self, up: bool) {
        self.discord_link
            .store(if up { 2 } else { 1 }, Ordering::Relaxed);
    }

    /// Records that the Twitch client runs (its link state is read live).
    pub fn set_twitch_on(&self) {
        self.twitch_on.store(true, Ordering::Relaxed);
    }

    /// `off`, `down` or `up` for Discord's gateway.
    pub fn discord_link(&self) -> &'static str {
        link_word(self.discord_link.load(Ordering::Relaxed))
    }

    /// `off`, `down` or `up` for Twitch chat.
    pub fn twitch_link(&self) -> &'static str {
        if !self.twitch_on.load(Ordering::Relaxed) {
            "off"
        } else if crate::gateway::twitch::transport::link_connected() {
            "up"
        } else {
            "down"
        }
    }

    /// Counts one command outcome of `platform`.
    pub fn count(&self, platform: Platform, ok: bool) {
        let i = platform_index(platform);
        let c = if ok {
            &self.served[i]
        } else {
            &self.refused[i]
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Every platform's counts.
    pub fn snapshot(&self) -> Vec<PlatformCommands> {
        PLATFORMS
            .iter()
            .map(|&p| {
                let i = platform_index(p);
                PlatformCommands {
                    platform: p.as_str(),
                    served: self.served[i].load(Ordering::Relaxed),
                    refused: self.refused[i].load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Server-sent event streams open now (`/api/events`, `/dashboard/events`).
    pub fn streams(&self) -> usize {
        self.streams.load(Ordering::Relaxed)
    }
}

/// Counts an event stream as open until the guard is dropped.
pub fn stream_opened(stats: &Arc<FrontDoorStats>) -> StreamGuard {
    stats.streams.fetch_add(1, Ordering::Relaxed);
    StreamGuard(stats.clone())
}

/// Keeps an event stream counted in [`FrontDoorStats::streams`] while alive.
pub struct StreamGuard(Arc<FrontDoorStats>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}
