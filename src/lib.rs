//! swarmbridge: one coordination core for Discord operators, Twitch viewers
//! and WebSocket agents. `README.md` and `docs/` describe what it does; the
//! modules below are its map.

/// In-process fan-out of committed events to connections.
pub mod bus;
/// The command catalog (`commands/*.toml`): roles, rate classes, platforms, options.
pub mod catalog;
/// The command line: clap definitions and one function per subcommand.
pub mod cli;
/// Time as milliseconds and RFC 3339.
pub mod clock;
/// Layered configuration: embedded default, file, environment.
pub mod config;
/// The coordination core: tasks, agents, events, messages, polls, search.
pub mod core;
/// The one path every front door takes: platform, rate, role, execute, count.
pub mod dispatch;
/// Embeddings for semantic search: OpenAI-compatible client, local model, ranking.
pub mod embed;
/// The front doors: WebSocket, HTTP, dashboard, MCP, A2A, Discord, Twitch.
pub mod gateway;
/// Rate limits per caller and class (governor).
pub mod limits;
/// Prometheus metrics and the hooks the store, sweeper and reasoner call.
pub mod observe;
/// The one helper every periodic loop runs on (sweepers, ack flush, sync, metrics).
pub mod periodic;
/// The OpenAI-compatible reasoning client, its cache and circuit breaker.
pub mod reason;
/// `swarmbridge serve`: start-up in named steps, and shutdown.
pub mod server;
/// The storage adapters (SQLite, PostgreSQL).
pub mod store;
