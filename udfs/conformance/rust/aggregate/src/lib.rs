//! Conformance `aggregate` in Rust (udfs/conformance/README.md).

use weir_udf::{Aggregate, Config, Error, Record, Results, Window};

/// Count, sum and max of the amounts.
pub struct Stats;

/// count, sum, max: three little-endian i64, as in every language.
type Acc = (i64, i64, i64);

impl Aggregate for Stats {
    type Acc = Acc;

    fn init(_config: &Config) -> Result<Self, Error> {
        Ok(Self)
    }

    fn create_accumulator(&mut self) -> Acc {
        (0, 0, 0)
    }

    fn add(&mut self, acc: &mut Acc, record: &Record<'_>) -> Result<(), Error> {
        let text = record.value_str()?;
        let amount: i64 = text.split(' ').next().unwrap_or("").parse().map_err(|_| {
            Error::InvalidRecord(format!("record {}: `{text}` has no amount", record.index()))
        })?;
        acc.0 += 1;
        acc.1 += amount;
        acc.2 = acc.2.max(amount);
        Ok(())
    }

    fn merge(&mut self, acc: &mut Acc, other: Acc) -> Result<(), Error> {
        acc.0 += other.0;
        acc.1 += other.1;
        acc.2 = acc.2.max(other.2);
        Ok(())
    }

    fn result(&mut self, key: &[u8], w: Window, acc: &Acc, out: &mut Results) -> Result<(), Error> {
        let line = format!(
            "{} {} {} count={} sum={} max={}",
            String::from_utf8_lossy(key),
            w.start,
            w.end,
            acc.0,
            acc.1,
            acc.2
        );
        out.emit(line.as_bytes());
        Ok(())
    }
}

weir_udf::export_aggregate!(Stats);
