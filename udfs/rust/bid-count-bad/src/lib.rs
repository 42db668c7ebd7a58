//! A faulty release of `bid-count`, for the rollback tests: the same world
//! and accumulator, so an upgrade to it passes every check made before the
//! job stops, but it panics (a Wasm trap) on the first record it counts.
//!
//! World: `aggregate-operator` (`wit/windows.wit`).

use weir_udf::{Aggregate, Config, Error, Record, Results, Window};

/// Count per window, broken.
pub struct BrokenCount;

impl Aggregate for BrokenCount {
    type Acc = u64;

    fn init(_config: &Config) -> Result<Self, Error> {
        Ok(Self)
    }

    fn create_accumulator(&mut self) -> u64 {
        0
    }

    fn add(&mut self, _acc: &mut u64, record: &Record<'_>) -> Result<(), Error> {
        panic!(
            "bid-count-bad: cannot count a record of {} bytes",
            record.value().len()
        );
    }

    fn merge(&mut self, acc: &mut u64, other: u64) -> Result<(), Error> {
        *acc += other;
        Ok(())
    }

    fn result(
        &mut self,
        _key: &[u8],
        _w: Window,
        _acc: &u64,
        _out: &mut Results,
    ) -> Result<(), Error> {
        Ok(())
    }
}

weir_udf::export_aggregate!(BrokenCount);
