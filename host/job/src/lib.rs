//! weir job files.
//!
//! A job file is TOML with one section for the job and one table per node:
//!
//! ```toml
//! [job]
//! name = "bids-demo"
//! parallelism = 2                  # default for every node
//!
//! [source.bids]
//! kind = "nexmark"                 # nexmark | generator | file
//! events = 200_000
//! event_type = "bid"
//!
//! [operator.expensive]
//! input = "bids"                   # one name, or a list (a union)
//! module = "bid-filter"            # a name in the module path, or a path to a .wasm
//! kind = "filter"                  # optional: checked against the module's world
//! config = { min_price = 1_000_000 }
//! limits = { memory_mb = 64, cpu_deadline_ms = 500 }
//!
//! [sink.console]
//! input = "expensive"
//! kind = "stdout"                  # stdout | file | kafka | upsert | discard
//! ```
//!
//! The tour: [`spec`] reads the file into typed node specs, refusing unknown
//! fields and bad values with the file, line and field; [`modules`] finds the
//! component a `module` names; [`prepare`] checks the references between
//! nodes, loads every module into the sandbox (compiling it once) and builds
//! the engine's [`weir_engine::Dataflow`]; [`supervise`] runs it, restarting
//! it from its latest checkpoint after a failure; [`launch`] is what every
//! launcher shares (state directory, checkpoint storage, backend choice).

pub mod launch;
pub mod modules;
pub mod nexmark;
pub mod prepare;
pub mod spec;
pub mod supervise;

mod error;
mod locate;

pub use error::JobError;
pub use launch::{BackendChoice, Launcher, StateDir};
pub use modules::{ModuleLookupError, ModulePath, ModuleSource};
pub use prepare::{PreparedJob, prepare};
pub use spec::{JobSpec, parse_job, read_job};
pub use supervise::{Ended, Event, Supervision, supervise};
