//! Conformance `filter` in Rust (udfs/conformance/README.md).

use weir_udf::{Config, Error, Filter, Record};

/// Keeps records whose amount is at least `min`.
pub struct MinAmount {
    min: i64,
}

/// The amount at the start of a conformance value.
fn amount(record: &Record<'_>) -> Result<i64, Error> {
    let text = record.value_str()?;
    text.split(' ').next().unwrap_or("").parse().map_err(|_| {
        Error::InvalidRecord(format!("record {}: `{text}` has no amount", record.index()))
    })
}

impl Filter for MinAmount {
    fn init(config: &Config) -> Result<Self, Error> {
        Ok(Self {
            min: config.get_or("min", 50)?,
        })
    }

    fn keep(&mut self, record: &Record<'_>) -> Result<bool, Error> {
        Ok(amount(record)? >= self.min)
    }
}

weir_udf::export_filter!(MinAmount);
