//! Built-in operator kinds, one file each.
//!
//! * [`wasm_udf`] — a stateless user operator (filter, map or flat-map) run as
//!   a sandboxed Wasm component, one warm instance per subtask.
//! * [`native`] — a Rust closure over batches: for benchmarks and tests that
//!   compare with the Wasm path, and for host-side plumbing.

pub mod native;
pub mod wasm_udf;

pub use native::NativeOperatorFactory;
pub use wasm_udf::WasmUdfFactory;
