//! Built-in operator kinds, one file each.
//!
//! * [`wasm_udf`] — a stateless user operator (filter, map or flat-map) run as
//!   a sandboxed Wasm component, one warm instance per subtask.
//! * [`window`] — windows per key (tumbling, sliding, session, global) with
//!   triggers, evictors, allowed lateness and a late side output; the window
//!   function (incremental aggregate or process-window) is a component.
//! * [`keyed_process`] — a keyed process function component with keyed state
//!   and timers held by the host.
//! * [`native`] — a Rust closure over batches: for benchmarks and tests that
//!   compare with the Wasm path, and for host-side plumbing.

pub mod keyed_process;
pub mod native;
pub mod wasm_udf;
pub mod window;

pub use keyed_process::KeyedProcessFactory;
pub use native::NativeOperatorFactory;
pub use wasm_udf::WasmUdfFactory;
pub use window::{Evictor, TimeMode, Trigger, WindowOperatorFactory, WindowSpec};
