//! weir's built-in sources and sinks.
//!
//! Each connector has an options struct (deserialized from its table in the
//! job file, unknown fields refused) and a factory that builds one reader or
//! writer per subtask.
//!
//! Sources: [`nexmark`] (the Nexmark auction event generator), [`generator`]
//! (a simple keyed event generator), [`file`] (a JSON Lines file).
//! Sinks: [`file_sink`] (a JSON Lines file), [`stdout`], [`upsert`] (a table
//! keyed by key and window: idempotent, effectively exactly-once),
//! [`discard`] (drops everything: for benchmarks).
//!
//! Sources are bounded here (they end after a configured count, or at the end
//! of the file); Kafka, the unbounded one, comes with its own crate.

pub mod discard;
pub mod file;
pub mod file_sink;
pub mod generator;
pub mod nexmark;
pub mod stdout;
pub mod upsert;

mod pacing;

/// Default parallelism of a node whose table does not set one.
pub const DEFAULT_PARALLELISM: usize = 1;
