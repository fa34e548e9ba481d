//! Every integration test in one binary (one link instead of one per file):
//! each module is one area, talking to a real server the way its peers do.
//! Shared fakes and the `TestServer` helper are in `tests/common/`.

#[path = "../common/mod.rs"]
mod common;

mod a2a;
mod abuse;
mod allocation;
mod api;
mod browser;
mod catalog_limits;
mod cli;
mod dashboard;
mod discord;
mod embeddings;
mod faults;
mod fuzz_corpus;
mod inbox;
mod insights;
mod mcp;
mod metrics;
mod multi_instance;
mod pg_failover;
mod polls;
mod postgres;
mod reason;
mod reason_surfaces;
mod schedules;
mod search;
mod search_quality;
mod secrets;
mod semantic;
mod smoke;
mod storage;
mod twitch;
mod twitch_login;
mod vectors;
mod ws_backpressure;
mod ws_bad_input;
mod ws_events;
mod ws_replay;
mod ws_session;
mod ws_tasks;
