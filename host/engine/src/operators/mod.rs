//! Operators the core provides itself, and what every keyed operator does
//! with its state.
//!
//! * [`native`] — a Rust closure over batches: for benchmarks and tests that
//!   compare with the Wasm path, and for host-side plumbing.
//! * [`keyed`] — a keyed operator's state at checkpoints (freeze, then write
//!   the portable format or upload RocksDB's files incrementally) and on
//!   restore (download, rescale by key group, let the running module
//!   migrate it).
//!
//! The operators that call guests (windows, keyed process functions, the
//! stateless UDF operators) are in `weir-operators`, above the core.

pub mod keyed;
pub mod native;

pub use native::NativeOperatorFactory;
