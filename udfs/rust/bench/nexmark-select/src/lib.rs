//! The first step of every Nexmark query (`weir bench nexmark`): from the
//! generator's mixed stream of people, auctions and bids, keep the events the
//! query reads, project the fields it uses and key them for the next step.
//! `query` (config) picks the query; the `nexmark.type` header says which
//! event a record is, so events a query ignores are never parsed.
//!
//! | query | keeps | key | value |
//! |---|---|---|---|
//! | `q0` | bids | auction | `{"auction","bidder","price","date_time","extra"}` (the q0 output) |
//! | `q1` | bids | auction | the same, the price in euros (`0.908 ×`, exact to 3 decimals) (the q1 output) |
//! | `q2` | bids of auctions `% 123 == 0` | auction | `{"auction","price"}` (the q2 output) |
//! | `q3` | people of `or`, `id`, `ca`; auctions of category 10 | person id / seller | `{"person":{"name","city","state"}}` / `{"auction":id}` |
//! | `q4` | auctions; bids | auction id | `a category opening expiry` / `b price time` |
//! | `q4-category` | `nexmark-join` q4-max results (`category price`) | category | unchanged |
//! | `q5` | bids | auction | empty (counted by `bid-count`) |
//! | `q5-windows` | sliding-window counts (`auction count`, at the window's last millisecond) | window end | unchanged |
//! | `q7` | bids | auction | `{"auction","price","bidder","date_time","extra"}` |
//! | `q7-global` | `nexmark-agg` q7 results | one key | unchanged |
//! | `q8` | people; auctions | person id / seller | `{"name":…}` / empty |
//! | `q11` | bids | bidder | empty (counted by `bid-count` in sessions) |
//!
//! World: `flat-map-operator` (`wit/stateless.wit`).

use std::borrow::Cow;
use std::io::Write;

use serde::{Deserialize, Serialize};
use weir_udf::{Config, Error, FlatMap, Output, Record};

/// Which query's selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Query {
    Q0,
    Q1,
    Q2,
    Q3,
    Q4,
    Q4Category,
    Q5,
    Q5Windows,
    Q7,
    Q7Global,
    Q8,
    Q11,
}

/// The selection step of a Nexmark query.
pub struct NexmarkSelect {
    query: Query,
}

#[derive(Deserialize)]
struct Bid<'a> {
    auction: u64,
    bidder: u64,
    price: u64,
    date_time: i64,
    #[serde(borrow)]
    extra: Cow<'a, str>,
}

#[derive(Serialize)]
struct BidOut<'a> {
    auction: u64,
    bidder: u64,
    price: u64,
    date_time: i64,
    extra: &'a str,
}

#[derive(Serialize)]
struct Q7Out<'a> {
    auction: u64,
    price: u64,
    bidder: u64,
    date_time: i64,
    extra: &'a str,
}

#[derive(Deserialize)]
struct Person<'a> {
    id: u64,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    city: Cow<'a, str>,
    #[serde(borrow)]
    state: Cow<'a, str>,
}

#[derive(Serialize)]
struct PersonOut<'a> {
    name: &'a str,
    city: &'a str,
    state: &'a str,
}

#[derive(Serialize)]
struct Q3Person<'a> {
    person: PersonOut<'a>,
}

#[derive(Serialize)]
struct Q8Person<'a> {
    name: &'a str,
}

#[derive(Deserialize)]
struct Auction {
    id: u64,
    seller: u64,
    category: u64,
    date_time: i64,
    expires: i64,
}

/// The three event types, from the `nexmark.type` header.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Person,
    Auction,
    Bid,
}

fn kind(record: &Record<'_>) -> Result<Kind, Error> {
    match record.header("nexmark.type") {
        Some(b"bid") => Ok(Kind::Bid),
        Some(b"auction") => Ok(Kind::Auction),
        Some(b"person") => Ok(Kind::Person),
        Some(other) => Err(Error::InvalidRecord(format!(
            "record {}: unknown nexmark.type `{}`",
            record.index(),
            String::from_utf8_lossy(other)
        ))),
        None => Err(Error::InvalidRecord(format!(
            "record {}: no nexmark.type header (is the input the nexmark source?)",
            record.index()
        ))),
    }
}

fn io(r: std::io::Result<()>) -> Result<(), Error> {
    r.map_err(|e| Error::failed(e.to_string()))
}

impl FlatMap for NexmarkSelect {
    fn init(config: &Config) -> Result<Self, Error> {
        let query = match config.get("query") {
            Some("q0") => Query::Q0,
            Some("q1") => Query::Q1,
            Some("q2") => Query::Q2,
            Some("q3") => Query::Q3,
            Some("q4") => Query::Q4,
            Some("q4-category") => Query::Q4Category,
            Some("q5") => Query::Q5,
            Some("q5-windows") => Query::Q5Windows,
            Some("q7") => Query::Q7,
            Some("q7-global") => Query::Q7Global,
            Some("q8") => Query::Q8,
            Some("q11") => Query::Q11,
            Some(other) => {
                return Err(Error::InvalidConfig(format!(
                    "unknown `query` = \"{other}\"; expected one of q0, q1, q2, q3, q4, q4-category, q5, q5-windows, q7, q7-global, q8, q11"
                )));
            }
            None => return Err(Error::InvalidConfig("missing `query` (q0, q1, …)".into())),
        };
        Ok(Self { query })
    }

    fn flat_map(&mut self, record: &Record<'_>, out: &mut Output<'_>) -> Result<(), Error> {
        let i = record.index();
        // Numbers (keys, fields) are formatted on the stack.
        let mut n = itoa::Buffer::new();
        let mut k = itoa::Buffer::new();
        match self.query {
            Query::Q5Windows => {
                // A window result's timestamp is its window's last millisecond.
                let key = k.format(record.timestamp() + 1);
                out.emit(i).value(record.value()).key(key.as_bytes());
                return Ok(());
            }
            Query::Q7Global => {
                out.emit(i).value(record.value()).key(b"all");
                return Ok(());
            }
            Query::Q4Category => {
                let text = record.value_str()?;
                let category = text.split_once(' ').map(|(c, _)| c).ok_or_else(|| {
                    Error::InvalidRecord(format!(
                        "record {i}: `{text}` is not `category price` (is the input nexmark-join q4-max?)"
                    ))
                })?;
                out.emit(i).value(record.value()).key(category.as_bytes());
                return Ok(());
            }
            _ => {}
        }
        let kind = kind(record)?;
        match (self.query, kind) {
            (Query::Q0 | Query::Q1, Kind::Bid) => {
                let b: Bid<'_> = record.json()?;
                let mut row = out.emit(i);
                if self.query == Query::Q0 {
                    row.json(&BidOut {
                        auction: b.auction,
                        bidder: b.bidder,
                        price: b.price,
                        date_time: b.date_time,
                        extra: &b.extra,
                    })?;
                } else {
                    // 0.908 × price, exactly: price × 908 thousandths.
                    let milli = b.price * 908;
                    io(row.write_all(b"{\"auction\":"))?;
                    io(row.write_all(n.format(b.auction).as_bytes()))?;
                    io(row.write_all(b",\"bidder\":"))?;
                    io(row.write_all(n.format(b.bidder).as_bytes()))?;
                    io(row.write_all(b",\"price\":"))?;
                    io(row.write_all(n.format(milli / 1000).as_bytes()))?;
                    io(write!(row, ".{:03}", milli % 1000))?;
                    io(row.write_all(b",\"date_time\":"))?;
                    io(row.write_all(n.format(b.date_time).as_bytes()))?;
                    io(row.write_all(b",\"extra\":"))?;
                    io(serde_json::to_writer(&mut row, &*b.extra).map_err(std::io::Error::other))?;
                    io(row.write_all(b"}"))?;
                }
            }
            (Query::Q2, Kind::Bid) => {
                let b: Bid<'_> = record.json()?;
                if b.auction.is_multiple_of(123) {
                    let mut row = out.emit(i);
                    io(row.write_all(b"{\"auction\":"))?;
                    io(row.write_all(n.format(b.auction).as_bytes()))?;
                    io(row.write_all(b",\"price\":"))?;
                    io(row.write_all(n.format(b.price).as_bytes()))?;
                    io(row.write_all(b"}"))?;
                }
            }
            (Query::Q3, Kind::Person) => {
                let p: Person<'_> = record.json()?;
                if matches!(&*p.state, "or" | "id" | "ca") {
                    let key = k.format(p.id);
                    out.emit(i)
                        .json(&Q3Person {
                            person: PersonOut {
                                name: &p.name,
                                city: &p.city,
                                state: &p.state,
                            },
                        })?
                        .key(key.as_bytes());
                }
            }
            (Query::Q3, Kind::Auction) => {
                let a: Auction = record.json()?;
                if a.category == 10 {
                    let key = k.format(a.seller);
                    let mut row = out.emit(i);
                    io(row.write_all(b"{\"auction\":"))?;
                    io(row.write_all(n.format(a.id).as_bytes()))?;
                    io(row.write_all(b"}"))?;
                    row.key(key.as_bytes());
                }
            }
            (Query::Q4, Kind::Auction) => {
                // The source keys auctions by their id already.
                let a: Auction = record.json()?;
                let mut row = out.emit(i);
                io(row.write_all(b"a "))?;
                io(row.write_all(n.format(a.category).as_bytes()))?;
                io(row.write_all(b" "))?;
                io(row.write_all(n.format(a.date_time).as_bytes()))?;
                io(row.write_all(b" "))?;
                io(row.write_all(n.format(a.expires).as_bytes()))?;
            }
            (Query::Q4, Kind::Bid) => {
                // The source keys bids by auction already.
                let b: Bid<'_> = record.json()?;
                let mut row = out.emit(i);
                io(row.write_all(b"b "))?;
                io(row.write_all(n.format(b.price).as_bytes()))?;
                io(row.write_all(b" "))?;
                io(row.write_all(n.format(b.date_time).as_bytes()))?;
            }
            (Query::Q5, Kind::Bid) => {
                // The source keys bids by auction already.
                out.emit(i).value(b"");
            }
            (Query::Q7, Kind::Bid) => {
                let b: Bid<'_> = record.json()?;
                out.emit(i).json(&Q7Out {
                    auction: b.auction,
                    price: b.price,
                    bidder: b.bidder,
                    date_time: b.date_time,
                    extra: &b.extra,
                })?;
            }
            (Query::Q8, Kind::Person) => {
                let p: Person<'_> = record.json()?;
                let key = k.format(p.id);
                out.emit(i)
                    .json(&Q8Person { name: &p.name })?
                    .key(key.as_bytes());
            }
            (Query::Q8, Kind::Auction) => {
                let a: Auction = record.json()?;
                let key = k.format(a.seller);
                out.emit(i).value(b"").key(key.as_bytes());
            }
            (Query::Q11, Kind::Bid) => {
                let b: Bid<'_> = record.json()?;
                let key = k.format(b.bidder);
                out.emit(i).value(b"").key(key.as_bytes());
            }
            _ => {}
        }
        Ok(())
    }
}

weir_udf::export_flat_map!(NexmarkSelect);
