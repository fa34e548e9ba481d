//! swarmbridge: one coordination core for Discord operators, Twitch viewers
//! and WebSocket agents. See `docs/` and the design notes for the shape.

pub mod bus;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod config;
pub mod core;
pub mod embed;
pub mod gateway;
pub mod limits;
pub mod observe;
pub mod reason;
pub mod server;
pub mod store;
