//! Conformance `flat-map` in Rust (udfs/conformance/README.md).

use weir_udf::{Config, Error, FlatMap, Output, Record};

/// One record per word.
pub struct Words;

impl FlatMap for Words {
    fn init(_config: &Config) -> Result<Self, Error> {
        Ok(Self)
    }

    fn flat_map(&mut self, record: &Record<'_>, out: &mut Output<'_>) -> Result<(), Error> {
        for (i, word) in record.value_str()?.split(' ').skip(1).enumerate() {
            out.emit(record.index())
                .value(word.as_bytes())
                .key(word.as_bytes())
                .timestamp(record.timestamp() + i as i64);
        }
        Ok(())
    }
}

weir_udf::export_flat_map!(Words);
