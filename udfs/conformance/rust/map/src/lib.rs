//! Conformance `map` in Rust (udfs/conformance/README.md).

use weir_udf::{Config, Error, Map, Record, RowWriter};

/// `key|2 × amount|WORDS`.
pub struct Shout;

impl Map for Shout {
    fn init(_config: &Config) -> Result<Self, Error> {
        Ok(Self)
    }

    fn map(&mut self, record: &Record<'_>, row: &mut RowWriter<'_, '_>) -> Result<(), Error> {
        let text = record.value_str()?;
        let (amount, words) = text.split_once(' ').unwrap_or((text, ""));
        let amount: i64 = amount.parse().map_err(|_| {
            Error::InvalidRecord(format!("record {}: `{text}` has no amount", record.index()))
        })?;
        let key = String::from_utf8_lossy(record.key());
        let value = format!("{key}|{}|{}", 2 * amount, words.to_uppercase());
        row.value(value.as_bytes());
        Ok(())
    }
}

weir_udf::export_map!(Shout);
