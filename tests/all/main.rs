//! weir's workspace integration tests, one binary, one module per area.

mod bad_input;
mod cache;
mod engine;
mod jobs;
mod sandbox;
