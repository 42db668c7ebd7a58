//! A projection over Nexmark bids (Nexmark q1): keeps auction, bidder, channel
//! and time, and converts the price from cents to euros at `rate`. The key
//! becomes the bidder id.
//!
//! World: `map-operator` (`wit/stateless.wit`).
//! Build: `weir udf build udfs/rust/examples/bid-projection`.
//!
//! ```toml
//! [operator.in-euros]
//! module = "bid-projection"
//! config = { rate = 0.908 }
//! ```
//!
//! Money is written with integer arithmetic (`12.30`, never through a float
//! formatter): exact, and cheap in Wasm, where 128-bit multiplies used by
//! float printing are library calls.

use std::io::Write;

use std::borrow::Cow;

use serde::Deserialize;
use weir_udf::{Config, Error, Map, Record, RowWriter};

#[derive(Deserialize)]
struct Bid<'a> {
    auction: u64,
    bidder: u64,
    price: u64,
    /// Borrowed unless the JSON string has escapes.
    #[serde(borrow)]
    channel: Cow<'a, str>,
    date_time: i64,
}

/// Projects bids and converts their price.
pub struct BidProjection {
    rate: f64,
}

impl Map for BidProjection {
    fn init(config: &Config) -> Result<Self, Error> {
        let rate: f64 = config.get_or("rate", 0.908)?;
        if !(rate.is_finite() && rate > 0.0) {
            return Err(Error::InvalidConfig(format!(
                "`rate` must be a positive number, got {rate}"
            )));
        }
        Ok(Self { rate })
    }

    fn map(&mut self, record: &Record<'_>, row: &mut RowWriter<'_, '_>) -> Result<(), Error> {
        let bid: Bid<'_> = record.json()?;
        let cents = (bid.price as f64 * self.rate).round() as u64;
        let mut n = itoa::Buffer::new();
        let out = &mut *row;
        let w = |r: std::io::Result<()>| r.map_err(|e| Error::failed(e.to_string()));
        w(out.write_all(b"{\"auction\":"))?;
        w(out.write_all(n.format(bid.auction).as_bytes()))?;
        w(out.write_all(b",\"bidder\":"))?;
        w(out.write_all(n.format(bid.bidder).as_bytes()))?;
        w(out.write_all(b",\"price_eur\":"))?;
        w(out.write_all(n.format(cents / 100).as_bytes()))?;
        let frac = (cents % 100) as u8;
        w(out.write_all(&[b'.', b'0' + frac / 10, b'0' + frac % 10]))?;
        w(out.write_all(b",\"channel\":"))?;
        serde_json::to_writer(&mut *out, &*bid.channel)?;
        w(out.write_all(b",\"date_time\":"))?;
        w(out.write_all(n.format(bid.date_time).as_bytes()))?;
        w(out.write_all(b"}"))?;
        row.key(n.format(bid.bidder).as_bytes());
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
        let v = r#"{"auction":7,"bidder":42,"price":1001,"channel":"Bai\"du","url":"u","date_time":5,"extra":"xx"}"#;
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
        let text = String::from_utf8(out.values.0).unwrap();
        assert_eq!(
            text,
            r#"{"auction":7,"bidder":42,"price_eur":5.01,"channel":"Bai\"du","date_time":5}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["price_eur"], 5.01);
        assert_eq!(out.keys.unwrap().0, b"42");
        assert!(Native::<BidProjection>::map(&[("rate", "-1")]).is_err());
    }
}
