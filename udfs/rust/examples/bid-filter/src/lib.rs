//! A filter over Nexmark bids: keeps the bids priced at or above `min_price`
//! (cents), optionally only on one `channel`.
//!
//! World: `filter-operator` (`wit/stateless.wit`).
//! Build: `weir udf build udfs/rust/examples/bid-filter` (or
//! `cargo build --profile udf --target wasm32-wasip2 -p udf-bid-filter`).
//!
//! ```toml
//! [operator.big-bids]
//! module = "bid-filter"
//! config = { min_price = 1000000, channel = "Apple" }
//! ```

use std::borrow::Cow;

use serde::Deserialize;
use weir_udf::{Config, Error, Filter, Record};

/// The fields of a bid this filter reads; the rest of the JSON is skipped
/// (without UTF-8 validation) by the parser.
#[derive(Deserialize)]
struct Bid<'a> {
    price: u64,
    /// Borrowed unless the JSON string has escapes.
    #[serde(borrow)]
    channel: Cow<'a, str>,
}

/// Only the price, when no channel is asked for.
#[derive(Deserialize)]
struct Price {
    price: u64,
}

/// Keeps bids at or above a minimum price.
pub struct BidFilter {
    min_price: u64,
    channel: Option<String>,
}

impl Filter for BidFilter {
    fn init(config: &Config) -> Result<Self, Error> {
        Ok(Self {
            min_price: config.get_or("min_price", 0)?,
            channel: config.get("channel").map(str::to_string),
        })
    }

    fn keep(&mut self, record: &Record<'_>) -> Result<bool, Error> {
        match self.channel.as_deref() {
            None => Ok(record.json::<Price>()?.price >= self.min_price),
            Some(channel) => {
                let bid: Bid<'_> = record.json()?;
                Ok(bid.price >= self.min_price && bid.channel == channel)
            }
        }
    }
}

weir_udf::export_filter!(BidFilter);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_udf::{Batch, BytesColumnRef, native::Native};

    #[test]
    fn keeps_expensive_bids_on_the_channel() {
        let values = [
            r#"{"auction":1,"bidder":2,"price":5,"channel":"Apple","url":"u","date_time":1,"extra":""}"#,
            r#"{"auction":1,"bidder":2,"price":500,"channel":"Apple","url":"u","date_time":1,"extra":""}"#,
            r#"{"auction":1,"bidder":2,"price":900,"channel":"Google","url":"u","date_time":1,"extra":""}"#,
        ];
        let data: Vec<u8> = values.concat().into_bytes();
        let mut offsets = vec![0u32];
        for v in values {
            offsets.push(offsets.last().unwrap() + v.len() as u32);
        }
        let keys = vec![0u32; 4];
        let batch = Batch {
            keys: BytesColumnRef::new(&[], &keys),
            values: BytesColumnRef::new(&data, &offsets),
            timestamps: &[1, 2, 3],
            header_rows: &[],
            header_names: BytesColumnRef::new(&[], &[0]),
            header_values: BytesColumnRef::new(&[], &[0]),
        };
        let mut f =
            Native::<BidFilter>::filter(&[("min_price", "100"), ("channel", "Apple")]).unwrap();
        assert_eq!(f.run_filter(batch).unwrap(), vec![1]);
        let mut f = Native::<BidFilter>::filter(&[("min_price", "100")]).unwrap();
        assert_eq!(f.run_filter(batch).unwrap(), vec![1, 2]);
        assert!(Native::<BidFilter>::filter(&[("min_price", "lots")]).is_err());
    }
}
