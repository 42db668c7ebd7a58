//! Records as weir moves them: in columnar batches.
//!
//! A [`RecordBatch`] has exactly the layout of the WIT `batch` type
//! (`wit/types.wit`): keys and values as [`BytesColumn`]s (one buffer plus
//! offsets), timestamps as one `Vec<i64>`, headers flattened into [`Headers`].
//! The sandbox moves these buffers into the generated bindings without copying
//! them, and the engine passes a batch from one fused operator to the next by
//! value. Nothing here knows about Wasm.
//!
//! A tour:
//! * [`BytesColumn`] — variable-length byte strings, Arrow-style.
//! * [`Headers`] — per-row header lists, flattened.
//! * [`RecordBatch`] — the unit of work everywhere in the engine.
//! * [`BatchBuilder`] — builds a batch row by row (sources, tests).
//! * [`json`] — the JSON Lines views used by file sources and sinks.
//! * [`codec`] — the one reader and writer of weir's length-prefixed
//!   binary formats, with a typed error on truncation.

pub mod codec;
pub mod json;

mod batch;
mod column;

pub use batch::{BatchBuilder, BatchError, RecordBatch, RecordRef};
pub use column::{BytesColumn, ColumnError, Headers};

/// Default number of rows a source puts in one batch: large enough that the
/// per-call cost of the Wasm boundary (≈0.3 µs) disappears per row, small enough
/// to keep latency and memory per in-flight batch low.
pub const DEFAULT_BATCH_ROWS: usize = 1024;
