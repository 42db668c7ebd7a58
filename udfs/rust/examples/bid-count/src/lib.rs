//! Counts records per key and window: the smallest aggregate, used by the
//! window benchmarks and tests. Emits `{"key", "start", "end", "count"}`.
//!
//! World: `aggregate-operator` (`wit/windows.wit`).

use serde::Serialize;
use weir_udf::{Aggregate, Config, Error, Record, Results, Window};

/// Count per window.
pub struct Count;

#[derive(Serialize)]
struct Counted<'a> {
    key: &'a str,
    start: i64,
    end: i64,
    count: u64,
}

impl Aggregate for Count {
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
        out.json(&Counted {
            key: &String::from_utf8_lossy(key),
            start: w.start,
            end: w.end,
            count: *acc,
        })
    }
}

weir_udf::export_aggregate!(Count);
