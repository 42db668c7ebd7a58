//! weir's workspace integration tests, one binary, one module per area.

#![allow(clippy::unwrap_used)]

mod bad_input;
mod cache;
mod checkpoints;
mod cluster;
mod conformance;
mod engine;
mod event_time;
mod examples;
mod jobs;
mod kafka;
mod nexmark;
mod sandbox;
mod server;
mod setup;
mod spread;
mod windows;
