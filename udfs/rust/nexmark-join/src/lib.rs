//! Nexmark q3 (local item suggestion) as a keyed process function: the
//! streaming inner join of people (of Oregon, Idaho or California) with the
//! auctions (of category 10) they sell, after `nexmark-select` keyed both by
//! person id. Unbounded, as the SQL join is: a person is kept for every later
//! auction; an auction that arrives before its seller waits in list state.
//! Emits `{"name","city","state","id"}` (id: the auction's).
//!
//! World: `keyed-process-operator` (`wit/keyed.wit`).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use weir_udf::state::{ListState, ValueState};
use weir_udf::{Config, Context, Error, KeyedProcess, Record};

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

/// The q3 join.
pub struct Q3Join {
    /// The person: name, city, state.
    person: ValueState<(String, String, String)>,
    /// Auctions waiting for their seller.
    pending: ListState<u64>,
}

impl Q3Join {
    fn emit(
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
}

impl KeyedProcess for Q3Join {
    fn init(_config: &Config) -> Result<Self, Error> {
        Ok(Self {
            person: ValueState::new("person"),
            pending: ListState::new("pending"),
        })
    }

    fn process(&mut self, ctx: &mut Context<'_>, record: &Record<'_>) -> Result<(), Error> {
        let input: Input<'_> = record.json()?;
        let ts = record.timestamp();
        match (input.person, input.auction) {
            (Some(p), _) => {
                let p = (
                    p.name.into_owned(),
                    p.city.into_owned(),
                    p.state.into_owned(),
                );
                for id in self.pending.get()? {
                    Self::emit(ctx, &p, id, ts)?;
                }
                self.pending.clear();
                self.person.set(&p);
            }
            (None, Some(id)) => match self.person.get()? {
                Some(p) => Self::emit(ctx, &p, id, ts)?,
                None => self.pending.add(&id),
            },
            (None, None) => {
                return Err(Error::InvalidRecord(format!(
                    "record {}: neither `person` nor `auction` (is the input nexmark-select q3?)",
                    record.index()
                )));
            }
        }
        Ok(())
    }
}

weir_udf::export_keyed_process!(Q3Join);
