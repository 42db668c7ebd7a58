//! Version 3 of `bid-count`, with a new state layout: the accumulator is
//! `(count, latest event time)` instead of a bare count, and the result adds
//! `"latest"`, the time of the window's newest record. Its
//! `state-migration` export converts the accumulators versions 1 and 2
//! wrote (a `u64` count) when a job is upgraded to it: the count is kept,
//! the latest time is unknown until a record arrives (`"latest": null`).
//!
//! World: `migrating-aggregate-operator` (`wit/migration.wit`).

use serde::Serialize;
use weir_udf::{Aggregate, Codec, Config, Error, MigrateState, Record, Results, Window};

/// Count per window, with the time of its newest record.
pub struct CountV3;

/// No record seen since the state was migrated.
const UNKNOWN: i64 = i64::MIN;

#[derive(Serialize)]
struct Counted<'a> {
    key: &'a str,
    start: i64,
    end: i64,
    count: u64,
    latest: Option<i64>,
    version: u32,
}

impl Aggregate for CountV3 {
    /// `(count, latest event time)`: 16 bytes, where versions 1 and 2
    /// stored 8.
    type Acc = (u64, i64);

    fn init(_config: &Config) -> Result<Self, Error> {
        Ok(Self)
    }

    fn create_accumulator(&mut self) -> (u64, i64) {
        (0, UNKNOWN)
    }

    fn add(&mut self, acc: &mut (u64, i64), record: &Record<'_>) -> Result<(), Error> {
        acc.0 += 1;
        acc.1 = acc.1.max(record.timestamp());
        Ok(())
    }

    fn merge(&mut self, acc: &mut (u64, i64), other: (u64, i64)) -> Result<(), Error> {
        acc.0 += other.0;
        acc.1 = acc.1.max(other.1);
        Ok(())
    }

    fn result(
        &mut self,
        key: &[u8],
        w: Window,
        acc: &(u64, i64),
        out: &mut Results,
    ) -> Result<(), Error> {
        out.json(&Counted {
            key: &String::from_utf8_lossy(key),
            start: w.start,
            end: w.end,
            count: acc.0,
            latest: (acc.1 != UNKNOWN).then_some(acc.1),
            version: 3,
        })
    }
}

impl MigrateState for CountV3 {
    fn migrate(&mut self, from_version: &str, state: &str, value: &[u8]) -> Result<Vec<u8>, Error> {
        match (state, value.len()) {
            // Versions 1 and 2: a bare count.
            ("acc", 8) => Ok((u64::from_bytes(value)?, UNKNOWN).to_bytes()),
            // Already this layout (another build of version 3).
            ("acc", 16) => Ok(value.to_vec()),
            _ => Err(Error::failed(format!(
                "cannot read {} bytes of state `{state}` written by version {from_version}",
                value.len()
            ))),
        }
    }
}

weir_udf::export_aggregate!(CountV3);
weir_udf::export_state_migration!(CountV3);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_count_becomes_a_count_with_no_latest_time() {
        let mut op = CountV3;
        let old = 41u64.to_bytes();
        let new = op.migrate("1", "acc", &old).unwrap();
        assert_eq!(<(u64, i64)>::from_bytes(&new).unwrap(), (41, UNKNOWN));
        assert_eq!(op.migrate("3", "acc", &new).unwrap(), new);
        let e = op.migrate("1", "acc", &[1, 2, 3]).unwrap_err();
        assert!(format!("{e:?}").contains("3 bytes"), "{e:?}");
    }
}
