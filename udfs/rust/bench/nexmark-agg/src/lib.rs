//! The window aggregates of the Nexmark queries (`weir bench nexmark`),
//! after `nexmark-select`. `query` (config) picks one:
//!
//! - `q5-sum`: sums counts (`bid-count`'s `{"key","start","end","count"}`)
//!   and emits `auction count` (text; the window's end is the row's
//!   timestamp + 1): q5's 10 s sliding window over the 2 s slices
//!   `bid-count` counted, so that each bid is counted once, not in five
//!   overlapping windows.
//! - `q5`: over one slide (2 s tumbling) of those `auction count` rows,
//!   keyed by window end: the auctions with the most bids in that window.
//!   Emits `{"auction","num","end"}` per auction with the maximum.
//! - `q7`: the highest bids of a 10 s tumbling window. Input and output are
//!   bids (`{"auction","price","bidder","date_time","extra"}`), so it runs
//!   twice: per auction, then over those winners with one key.
//! - `q8`: people who opened an auction in the 10 s tumbling window they
//!   registered in, keyed by person id. Emits `{"id","name","start"}`.
//!
//! Accumulators are tuples of numbers and strings (weir's binary codec), not
//! JSON.
//!
//! World: `aggregate-operator` (`wit/windows.wit`).

use serde::{Deserialize, Serialize};
use weir_udf::{Aggregate, Config, Error, Record, Results, Window};

/// Which query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Query {
    Q5Sum,
    Q5,
    Q7,
    Q8,
}

/// The aggregate step of a Nexmark query.
pub struct NexmarkAgg {
    query: Query,
}

#[derive(Deserialize)]
struct Counted {
    count: u64,
}

#[derive(Deserialize)]
struct Priced {
    price: u64,
}

#[derive(Deserialize)]
struct Named<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
}

#[derive(Serialize)]
struct HotItem {
    auction: u64,
    num: u64,
    end: i64,
}

#[derive(Serialize)]
struct NewUser<'a> {
    id: u64,
    name: &'a str,
    start: i64,
}

/// q5 and q7: `(max, members, members' text)`, the maximum seen and the
/// members that reached it, newline-separated (q5: `auction count`; q7:
/// whole bids). q8: `(auction seen, person seen, name)`, 0 or 1 each.
type Acc = (u64, u64, String);

fn keep_max(acc: &mut Acc, value: u64, member: &str) {
    if acc.1 == 0 || value > acc.0 {
        acc.0 = value;
        acc.1 = 0;
        acc.2.clear();
    } else if value < acc.0 {
        return;
    }
    if acc.1 > 0 {
        acc.2.push('\n');
    }
    acc.2.push_str(member);
    acc.1 += 1;
}

fn parse_id(key: &[u8], what: &str) -> Result<u64, Error> {
    std::str::from_utf8(key)
        .ok()
        .and_then(|k| k.parse().ok())
        .ok_or_else(|| {
            Error::InvalidRecord(format!(
                "{what} key `{}` is not a number",
                String::from_utf8_lossy(key)
            ))
        })
}

impl Aggregate for NexmarkAgg {
    type Acc = Acc;

    fn init(config: &Config) -> Result<Self, Error> {
        let query = match config.get("query") {
            Some("q5-sum") => Query::Q5Sum,
            Some("q5") => Query::Q5,
            Some("q7") => Query::Q7,
            Some("q8") => Query::Q8,
            Some(other) => {
                return Err(Error::InvalidConfig(format!(
                    "unknown `query` = \"{other}\"; expected q5-sum, q5, q7 or q8"
                )));
            }
            None => {
                return Err(Error::InvalidConfig(
                    "missing `query` (q5-sum, q5, q7, q8)".into(),
                ));
            }
        };
        Ok(Self { query })
    }

    fn create_accumulator(&mut self) -> Acc {
        (0, 0, String::new())
    }

    fn add(&mut self, acc: &mut Acc, record: &Record<'_>) -> Result<(), Error> {
        match self.query {
            Query::Q5Sum => {
                let c: Counted = record.json()?;
                acc.0 += c.count;
            }
            Query::Q5 => {
                let member = record.value_str()?;
                let count = member
                    .split_once(' ')
                    .and_then(|(_, n)| n.parse().ok())
                    .ok_or_else(|| {
                        Error::InvalidRecord(format!(
                            "record {}: `{member}` is not `auction count` (is the input q5-sum?)",
                            record.index()
                        ))
                    })?;
                keep_max(acc, count, member);
            }
            Query::Q7 => {
                let b: Priced = record.json()?;
                keep_max(acc, b.price, record.value_str()?);
            }
            Query::Q8 => {
                if record.value().is_empty() {
                    acc.0 = 1; // an auction
                } else {
                    let p: Named<'_> = record.json()?;
                    acc.1 = 1;
                    acc.2 = p.name.into_owned();
                }
            }
        }
        Ok(())
    }

    fn merge(&mut self, acc: &mut Acc, other: Acc) -> Result<(), Error> {
        match self.query {
            Query::Q5Sum => acc.0 += other.0,
            Query::Q5 | Query::Q7 => {
                if other.1 > 0 {
                    for member in other.2.split('\n') {
                        keep_max(acc, other.0, member);
                    }
                }
            }
            Query::Q8 => {
                acc.0 |= other.0;
                if acc.1 == 0 {
                    acc.1 = other.1;
                    acc.2 = other.2;
                }
            }
        }
        Ok(())
    }

    fn result(&mut self, key: &[u8], w: Window, acc: &Acc, out: &mut Results) -> Result<(), Error> {
        match self.query {
            Query::Q5Sum => {
                let mut row = Vec::with_capacity(key.len() + 12);
                row.extend_from_slice(key);
                row.push(b' ');
                row.extend_from_slice(itoa::Buffer::new().format(acc.0).as_bytes());
                out.emit(&row);
            }
            Query::Q5 => {
                if acc.1 == 0 {
                    return Ok(());
                }
                for member in acc.2.split('\n') {
                    let (auction, num) = member.split_once(' ').unwrap_or((member, ""));
                    out.json(&HotItem {
                        auction: parse_id(auction.as_bytes(), "auction")?,
                        num: parse_id(num.as_bytes(), "count")?,
                        end: w.end,
                    })?;
                }
            }
            Query::Q7 => {
                if acc.1 == 0 {
                    return Ok(());
                }
                for bid in acc.2.split('\n') {
                    out.emit(bid.as_bytes());
                }
            }
            Query::Q8 => {
                if acc.0 == 1 && acc.1 == 1 {
                    out.json(&NewUser {
                        id: parse_id(key, "person")?,
                        name: &acc.2,
                        start: w.start,
                    })?;
                }
            }
        }
        Ok(())
    }
}

weir_udf::export_aggregate!(NexmarkAgg);
