//! Splits text into words (the classic word count's first step): one output
//! record per word of the input's `field` (default `text`), keyed by the
//! lower-cased word, value `{"word": …}`. Words shorter than `min_len` are
//! dropped.
//!
//! World: `flat-map-operator` (`wit/stateless.wit`).
//! Build: `weir udf build udfs/rust/examples/split-words`.

use serde::Serialize;
use weir_udf::{Config, Error, FlatMap, Output, Record};

/// Splits a text field into words.
pub struct SplitWords {
    field: String,
    min_len: usize,
}

#[derive(Serialize)]
struct Word<'a> {
    word: &'a str,
}

impl FlatMap for SplitWords {
    fn init(config: &Config) -> Result<Self, Error> {
        Ok(Self {
            field: config.get("field").unwrap_or("text").to_string(),
            min_len: config.get_or("min_len", 1)?,
        })
    }

    fn flat_map(&mut self, record: &Record<'_>, out: &mut Output<'_>) -> Result<(), Error> {
        let doc: serde_json::Value = record.json()?;
        let text = doc
            .get(&self.field)
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                Error::InvalidRecord(format!(
                    "record {} has no string field `{}`",
                    record.index(),
                    self.field
                ))
            })?;
        for word in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.chars().count() >= self.min_len)
        {
            let lower = word.to_lowercase();
            out.emit(record.index())
                .json(&Word { word: &lower })?
                .key(lower.as_bytes());
        }
        Ok(())
    }
}

weir_udf::export_flat_map!(SplitWords);
