//! A projection over Nexmark bids (Nexmark q1): keeps auction, bidder, channel
//! and time, and converts the price from cents to euros at `rate`. The key
//! becomes the bidder id.
//!
//! World: `map-operator` (`wit/stateless.wit`).
//! Build: `weir udf build udfs/rust/bid-projection`.
//!
//! ```toml
//! [operator.in-euros]
//! module = "bid-projection"
//! config = { rate = 0.908 }
//! ```

use serde::{Deserialize, Serialize};
use weir_udf::{Config, Error, Map, Record, RowWriter};

#[derive(Deserialize)]
struct Bid<'a> {
    auction: u64,
    bidder: u64,
    price: u64,
    #[serde(borrow)]
    channel: &'a str,
    date_time: i64,
}

#[derive(Serialize)]
struct Projected<'a> {
    auction: u64,
    bidder: u64,
    price_eur: f64,
    channel: &'a str,
    date_time: i64,
}

/// Projects bids and converts their price.
pub struct BidProjection {
    rate: f64,
    key: Vec<u8>,
}

impl Map for BidProjection {
    fn init(config: &Config) -> Result<Self, Error> {
        let rate: f64 = config.get_or("rate", 0.908)?;
        if !(rate.is_finite() && rate > 0.0) {
            return Err(Error::InvalidConfig(format!(
                "`rate` must be a positive number, got {rate}"
            )));
        }
        Ok(Self {
            rate,
            key: Vec::with_capacity(20),
        })
    }

    fn map(&mut self, record: &Record<'_>, row: &mut RowWriter<'_, '_>) -> Result<(), Error> {
        let bid: Bid<'_> = record.json()?;
        let cents = (bid.price as f64 * self.rate).round();
        row.json(&Projected {
            auction: bid.auction,
            bidder: bid.bidder,
            price_eur: cents / 100.0,
            channel: bid.channel,
            date_time: bid.date_time,
        })?;
        self.key.clear();
        self.key
            .extend_from_slice(bid.bidder.to_string().as_bytes());
        row.key(&self.key);
        Ok(())
    }
}

weir_udf::export_map!(BidProjection);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_udf::{Batch, BytesColumnRef, native::Native};

    #[test]
    fn projects_and_converts() {
        let v = r#"{"auction":7,"bidder":42,"price":1000,"channel":"Baidu","url":"u","date_time":5,"extra":"xx"}"#;
        let offsets = [0, v.len() as u32];
        let batch = Batch {
            keys: BytesColumnRef::new(&[], &[0, 0]),
            values: BytesColumnRef::new(v.as_bytes(), &offsets),
            timestamps: &[5],
            header_rows: &[],
            header_names: BytesColumnRef::new(&[], &[0]),
            header_values: BytesColumnRef::new(&[], &[0]),
        };
        let mut m = Native::<BidProjection>::map(&[("rate", "0.5")]).unwrap();
        let out = m.run_map(batch).unwrap();
        assert_eq!(
            String::from_utf8(out.values.0).unwrap(),
            r#"{"auction":7,"bidder":42,"price_eur":5.0,"channel":"Baidu","date_time":5}"#
        );
        assert_eq!(out.keys.unwrap().0, b"42");
        assert!(Native::<BidProjection>::map(&[("rate", "-1")]).is_err());
    }
}
