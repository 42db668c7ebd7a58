//! The Nexmark joins that need keyed state, as keyed process functions
//! (`query` in the config picks one):
//!
//! - `q3` (local item suggestion): the streaming inner join of people (of
//!   Oregon, Idaho or California) with the auctions (of category 10) they
//!   sell, after `nexmark-select` keyed both by person id. Unbounded, as the
//!   SQL join is: a person is kept for every later auction; an auction that
//!   arrives before its seller waits in list state. Emits
//!   `{"name","city","state","id"}` (id: the auction's).
//! - `q4-max` (average price per category, first step): the winning bid of
//!   each auction, keyed by auction id: the highest price among its bids
//!   whose time is within `[opening, expiry]`. The auction is closed by an
//!   event-time timer at its expiry; then, if it had a bid, emits
//!   `category price` at the expiry. Bids that arrive before their auction
//!   wait in list state.
//! - `q4-avg` (second step, keyed by category): the average winning price of
//!   the category's closed auctions, updated with each: emits
//!   `{"category","avg","auctions"}`, `avg` rounded down as Flink's `AVG` of a
//!   `BIGINT` is.
//!
//! World: `keyed-process-operator` (`wit/keyed.wit`).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use weir_udf::state::{ListState, ValueState};
use weir_udf::{Config, Context, Error, KeyedProcess, Record, Timer};

/// How long (event time) an auction's key keeps its state after it closed,
/// so that bids still arriving for it are recognised as too late rather
/// than waiting for it; and how long a bid waits for an auction that never
/// comes.
const RETENTION_MS: i64 = 60_000;

#[derive(Deserialize)]
struct Person<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    city: Cow<'a, str>,
    #[serde(borrow)]
    state: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Input<'a> {
    #[serde(borrow)]
    person: Option<Person<'a>>,
    auction: Option<u64>,
}

#[derive(Serialize)]
struct Joined<'a> {
    name: &'a str,
    city: &'a str,
    state: &'a str,
    id: u64,
}

#[derive(Serialize)]
struct Average {
    category: u64,
    avg: u64,
    auctions: u64,
}

/// The state of one query.
enum Join {
    Q3 {
        /// The person: name, city, state.
        person: ValueState<(String, String, String)>,
        /// Auctions waiting for their seller.
        pending: ListState<u64>,
    },
    Q4Max {
        /// The auction: category, opening, expiry, closed.
        auction: ValueState<(u64, i64, i64, bool)>,
        /// The highest price of a bid in the auction's time.
        max: ValueState<u64>,
        /// Bids (price, time) waiting for their auction.
        pending: ListState<(u64, i64)>,
    },
    Q4Avg {
        /// Sum and number of winning prices.
        sum: ValueState<(u64, u64)>,
    },
}

/// A Nexmark join.
pub struct NexmarkJoin {
    join: Join,
}

/// The space-separated unsigned numbers of `text`.
fn numbers<const N: usize>(record: &Record<'_>, text: &str) -> Result<[i64; N], Error> {
    let mut out = [0; N];
    let mut it = text.split(' ');
    for slot in &mut out {
        *slot = it.next().and_then(|n| n.parse().ok()).ok_or_else(|| {
            Error::InvalidRecord(format!(
                "record {}: `{text}` is not {N} numbers",
                record.index()
            ))
        })?;
    }
    Ok(out)
}

fn q3_emit(
    ctx: &mut Context<'_>,
    p: &(String, String, String),
    id: u64,
    ts: i64,
) -> Result<(), Error> {
    ctx.emit_json(
        &Joined {
            name: &p.0,
            city: &p.1,
            state: &p.2,
            id,
        },
        ts,
    )
}

impl KeyedProcess for NexmarkJoin {
    fn init(config: &Config) -> Result<Self, Error> {
        let join = match config.get("query") {
            Some("q3") => Join::Q3 {
                person: ValueState::new("person"),
                pending: ListState::new("pending"),
            },
            Some("q4-max") => Join::Q4Max {
                auction: ValueState::new("auction"),
                max: ValueState::new("max"),
                pending: ListState::new("pending"),
            },
            Some("q4-avg") => Join::Q4Avg {
                sum: ValueState::new("sum"),
            },
            Some(other) => {
                return Err(Error::InvalidConfig(format!(
                    "unknown `query` = \"{other}\"; expected q3, q4-max or q4-avg"
                )));
            }
            None => {
                return Err(Error::InvalidConfig(
                    "missing `query` (q3, q4-max or q4-avg)".into(),
                ));
            }
        };
        Ok(Self { join })
    }

    fn process(&mut self, ctx: &mut Context<'_>, record: &Record<'_>) -> Result<(), Error> {
        let ts = record.timestamp();
        match &self.join {
            Join::Q3 { person, pending } => {
                let input: Input<'_> = record.json()?;
                match (input.person, input.auction) {
                    (Some(p), _) => {
                        let p = (
                            p.name.into_owned(),
                            p.city.into_owned(),
                            p.state.into_owned(),
                        );
                        for id in pending.get()? {
                            q3_emit(ctx, &p, id, ts)?;
                        }
                        pending.clear();
                        person.set(&p);
                    }
                    (None, Some(id)) => match person.get()? {
                        Some(p) => q3_emit(ctx, &p, id, ts)?,
                        None => pending.add(&id),
                    },
                    (None, None) => {
                        return Err(Error::InvalidRecord(format!(
                            "record {}: neither `person` nor `auction` (is the input nexmark-select q3?)",
                            record.index()
                        )));
                    }
                }
            }
            Join::Q4Max {
                auction,
                max,
                pending,
            } => {
                let text = record.value_str()?;
                if let Some(a) = text.strip_prefix("a ") {
                    let [category, opens, expires] = numbers::<3>(record, a)?;
                    let mut best = max.get()?;
                    for (price, at) in pending.get()? {
                        if (opens..=expires).contains(&at) {
                            best = best.max(Some(price));
                        }
                    }
                    pending.clear();
                    if let Some(b) = best {
                        max.set(&b);
                    }
                    auction.set(&(category as u64, opens, expires, false));
                    ctx.register_event_timer(expires);
                } else if let Some(b) = text.strip_prefix("b ") {
                    let [price, at] = numbers::<2>(record, b)?;
                    let price = price as u64;
                    match auction.get()? {
                        Some((_, opens, expires, false)) => {
                            if (opens..=expires).contains(&at) && max.get()? < Some(price) {
                                max.set(&price);
                            }
                        }
                        // Closed: the bid is after the expiry, or late.
                        Some((_, _, _, true)) => {}
                        None => {
                            pending.add(&(price, at));
                            ctx.register_event_timer(at + RETENTION_MS);
                        }
                    }
                } else {
                    return Err(Error::InvalidRecord(format!(
                        "record {}: `{text}` is neither `a …` nor `b …` (is the input nexmark-select q4?)",
                        record.index()
                    )));
                }
            }
            Join::Q4Avg { sum } => {
                let [category, price] = numbers::<2>(record, record.value_str()?)?;
                let (total, n) = sum.get()?.unwrap_or((0, 0));
                let (total, n) = (total + price as u64, n + 1);
                sum.set(&(total, n));
                ctx.emit_json(
                    &Average {
                        category: category as u64,
                        avg: total / n,
                        auctions: n,
                    },
                    ts,
                )?;
            }
        }
        Ok(())
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>, timer: Timer) -> Result<(), Error> {
        let Join::Q4Max {
            auction,
            max,
            pending,
        } = &self.join
        else {
            return Ok(());
        };
        match auction.get()? {
            Some((category, opens, expires, false)) if timer.timestamp >= expires => {
                if let Some(price) = max.get()? {
                    let mut n = itoa::Buffer::new();
                    let mut line = Vec::with_capacity(24);
                    line.extend_from_slice(n.format(category).as_bytes());
                    line.push(b' ');
                    line.extend_from_slice(n.format(price).as_bytes());
                    ctx.emit(&line, expires);
                }
                max.clear();
                auction.set(&(category, opens, expires, true));
                ctx.register_event_timer(expires + RETENTION_MS);
            }
            Some((_, _, expires, true)) if timer.timestamp >= expires + RETENTION_MS => {
                auction.clear();
            }
            Some(_) => {}
            // Bids whose auction never came.
            None => {
                let waiting = pending.get()?;
                let keep: Vec<(u64, i64)> = waiting
                    .iter()
                    .copied()
                    .filter(|(_, at)| at + RETENTION_MS > timer.timestamp)
                    .collect();
                if keep.len() != waiting.len() {
                    pending.set(&keep);
                }
            }
        }
        Ok(())
    }
}

weir_udf::export_keyed_process!(NexmarkJoin);
