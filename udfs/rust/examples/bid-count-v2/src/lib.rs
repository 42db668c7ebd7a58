//! Version 2 of `bid-count`: the same accumulator (a `u64` count), so it
//! restores from a savepoint of version 1 (or replaces it by hot swap), and
//! a richer result: `{"key", "start", "end", "count", "per_second",
//! "version": 2}`.
//!
//! World: `aggregate-operator` (`wit/windows.wit`).

use serde::Serialize;
use weir_udf::{Aggregate, Config, Error, Record, Results, Window};

/// Count per window, with its rate.
pub struct CountV2;

#[derive(Serialize)]
struct Counted<'a> {
    key: &'a str,
    start: i64,
    end: i64,
    count: u64,
    per_second: f64,
    version: u32,
}

impl Aggregate for CountV2 {
    /// Unchanged from version 1: the state format is the contract between
    /// versions.
    type Acc = u64;

    fn init(_config: &Config) -> Result<Self, Error> {
        Ok(Self)
    }

    fn create_accumulator(&mut self) -> u64 {
        0
    }

    fn add(&mut self, acc: &mut u64, _record: &Record<'_>) -> Result<(), Error> {
        *acc += 1;
        Ok(())
    }

    fn merge(&mut self, acc: &mut u64, other: u64) -> Result<(), Error> {
        *acc += other;
        Ok(())
    }

    fn result(&mut self, key: &[u8], w: Window, acc: &u64, out: &mut Results) -> Result<(), Error> {
        let seconds = (w.end - w.start) as f64 / 1000.0;
        out.json(&Counted {
            key: &String::from_utf8_lossy(key),
            start: w.start,
            end: w.end,
            count: *acc,
            per_second: if seconds > 0.0 {
                *acc as f64 / seconds
            } else {
                0.0
            },
            version: 2,
        })
    }
}

weir_udf::export_aggregate!(CountV2);
