//! Write weir stream operators in Rust.
//!
//! A weir operator is a WebAssembly component that implements one world of the
//! `weir:udf` WIT package (`wit/` at the root of the weir repository). This
//! crate hides the raw bindings: you implement a plain trait over a borrowed
//! view of a record, and one macro exports it.
//!
//! ```
//! use weir_udf::{Config, Error, Filter, Record};
//!
//! /// Keeps bids at or above a minimum price (in cents).
//! pub struct MinPrice {
//!     min: u64,
//! }
//!
//! impl Filter for MinPrice {
//!     fn init(config: &Config) -> Result<Self, Error> {
//!         Ok(Self { min: config.get_or("min_price", 0)? })
//!     }
//!
//!     fn keep(&mut self, record: &Record<'_>) -> Result<bool, Error> {
//!         #[derive(serde::Deserialize)]
//!         struct Bid { price: u64 }
//!         let bid: Bid = record.json()?;
//!         Ok(bid.price >= self.min)
//!     }
//! }
//!
//! weir_udf::export_filter!(MinPrice);
//! # fn main() {}
//! ```
//!
//! Build it into a component with
//! `cargo build --release --target wasm32-wasip2` (crate type `cdylib`), or
//! `weir udf build path/to/crate`.
//!
//! A tour:
//! * [`Filter`], [`Map`], [`FlatMap`] — the stateless operator traits, one
//!   per world.
//! * [`Aggregate`] and [`ProcessWindow`] — window functions; the host assigns
//!   windows, keeps accumulators and contents, and fires.
//! * [`KeyedProcess`] — records of one key with keyed [`state`] (value, list,
//!   map, reducing, aggregating) and timers, through a [`Context`].
//! * [`Codec`] — how accumulators and state values are stored as bytes.
//!   Each has a per-record method to implement and a per-batch method whose
//!   default loops over the records; override it to work on whole columns.
//! * [`Batch`] and [`Record`] — borrowed views of the input columns.
//! * [`Output`] and [`RowWriter`] — build the output rows; keys, timestamps
//!   and headers you do not set are inherited from the input record, and then
//!   never cross the boundary again.
//! * [`Config`] — the operator's `config` table from the job file.
//! * [`log`] — write to the host's log.
//! * [`native`] — run an operator natively, without Wasm: for unit tests and
//!   for the host's native-vs-Wasm benchmark.
//!
//! One batch is one call across the Wasm boundary; the host keeps state,
//! time and I/O, and an operator keeps nothing between calls except as a cache.

#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod batch;
mod codec;
mod config;
mod error;
mod keyed;
mod migrate;
mod operator;
mod output;
mod window;

pub mod log;
pub mod native;
pub mod state;

pub use batch::{Batch, BytesColumnRef, Record};
pub use codec::Codec;
pub use config::Config;
pub use error::Error;
pub use keyed::{Context, KeyedProcess, TimeDomain, Timer};
pub use migrate::MigrateState;
pub use operator::{Filter, FlatMap, Map};
pub use output::{Output, OutputColumns, RowWriter};
pub use window::{Aggregate, PaneRecords, ProcessWindow, Results, Window};

/// The generated bindings and the glue the export macros expand to. Not a
/// stable API.
#[doc(hidden)]
pub mod __private;
