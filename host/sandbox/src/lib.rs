//! The weir sandbox: runs untrusted operator components, fast and contained.
//!
//! This crate is the only place in weir that configures wasmtime. A tour, in
//! the order a module is used:
//!
//! 1. [`Sandbox`] ([`runtime`]) owns the wasmtime `Engine` — component model,
//!    Cranelift, the pooling allocator, epoch interruption — the `Linker` that
//!    decides what a guest may import (WASI with no files, network or
//!    environment, plus `weir:udf/log`), and the thread that advances epochs.
//! 2. [`CompileBudget`] ([`budget`]) bounds what an untrusted component may
//!    cost to compile: its shape and world are checked in one cheap pass
//!    before compilation, which then runs under a time limit in a limited
//!    number of slots, in a helper process whose memory the kernel caps
//!    ([`compiler`]).
//! 3. [`ModuleCache`] ([`cache`]) compiles a component once and keeps the
//!    native artifact on disk by content hash, so later runs only map it in.
//! 4. [`OperatorModule`] ([`module`]) is a compiled, validated component: which
//!    operator world it implements, checked against the WIT package, with its
//!    imports resolved once (`InstancePre`).
//! 5. [`OperatorInstance`] ([`instance`]) is one warm instance for one operator
//!    subtask: its own store, memory cap and CPU deadline. Batches go in and
//!    come out as [`weir_record::RecordBatch`]es; the columns move into the
//!    generated bindings without copies.
//!
//! Everything a guest can do wrong — not being Wasm, targeting another world,
//! trapping, looping, eating memory, returning malformed batches — comes back
//! as a [`SandboxError`] that names the module, never as a host panic.

pub mod budget;
pub mod cache;
pub mod compiler;
pub mod instance;
pub mod keyed;
pub mod lift;
pub mod module;
pub mod runtime;
pub mod upload;

mod bindings;
mod error;
mod guest;

pub use budget::CompileBudget;
pub use cache::{CacheStats, ModuleCache};
pub use compiler::Compiler;
pub use error::{GuestFailure, OutputError, SandboxError};
pub use instance::{Emitted, InstanceLabel, InstanceLimits, OperatorInstance, WindowPane};
pub use keyed::{KeyedContext, StateCallError, TimeDomain};
pub use module::{ModuleDigest, OperatorKind, OperatorModule};
pub use runtime::{Sandbox, SandboxConfig};

/// The WIT package version this host implements.
pub const WIT_PACKAGE: &str = "weir:udf@0.1.0";
