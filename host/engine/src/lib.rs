//! The weir dataflow core.
//!
//! It knows nothing of Wasm, object stores or async runtimes: operators that
//! call guests (`weir-operators`), checkpoint storage (`weir-storage`) and
//! connectors are built on its traits, above or beside it.
//!
//! A job is a [`Dataflow`] of named nodes — sources, operators, sinks — joined
//! by their inputs. The engine turns it into tasks and runs them:
//!
//! 1. [`plan`] fuses chains of nodes with the same parallelism and a single
//!    forward connection into one task (Flink's operator chaining): records
//!    pass between fused operators as a moved [`weir_record::RecordBatch`],
//!    with no channel, no copy and no thread hop.
//! 2. [`runtime`] starts one thread per task subtask (`parallelism = N`), links
//!    tasks with bounded exchanges ([`channel`]: an interface, in-process
//!    channels today) — a full exchange blocks the sender, which is the
//!    backpressure — and reports [`metrics`] while it runs. Barriers are
//!    aligned by a pure state machine ([`checkpoint::aligner`]) and
//!    checkpoints coordinated by another ([`checkpoint::coordinator`]).
//! 3. Every node is built on its own thread by a factory: a [`Source`]
//!    reads its split, an [`Operator`] transforms batches, a [`Sink`] writes.
//!    [`operators`] holds native closures and what every keyed operator does
//!    with its state at checkpoints; a hot swap reaches an operator through
//!    [`swap`] as an opaque module handle.
//!
//! When tenants share a machine, [`share`] gates the subtask threads so that
//! each tenant gets CPU in proportion to its weight.
//!
//! Messages on channels are [`Message`]s: data, or a signal such as the end of
//! the input. Later signals (watermarks, checkpoint barriers) travel the same
//! way, in order with the data.

pub mod assigner;
pub mod channel;
pub mod checkpoint;
pub mod graph;
pub mod key_group;
pub mod metrics;
pub mod operators;
pub mod plan;
pub mod runtime;
pub mod share;
pub mod swap;
pub mod time;
pub mod watermark;

mod error;
mod message;
mod node;

pub use error::{BoxError, EngineError};
pub use graph::{Dataflow, Input, NodeId, NodeKind, NodeSpec};
pub use message::{Message, Signal};
pub use metrics::{JobMetrics, NodeMetrics, NodeRole, NodeSnapshot};
pub use node::{
    Collector, Operator, OperatorFactory, Sink, SinkFactory, Source, SourceFactory, SplitInfo,
    SubtaskInfo,
};
pub use runtime::{Canceller, JobHandle, JobOutcome, Placement, run, run_placed};
