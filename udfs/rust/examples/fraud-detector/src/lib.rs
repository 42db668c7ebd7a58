//! Fraud detection with keyed state and timers: per user, three transactions
//! over a threshold (default 1,000) within five minutes from at least two
//! countries raise an alert on the side output `fraud`.
//!
//! Every transaction passes through to the main output unchanged. Large ones
//! are also kept in list state and an event-time timer is set at their
//! timestamp: when the watermark passes it, every earlier transaction has
//! arrived, so the pending ones are examined in event-time order however they
//! arrived. A burst raises one alert, then starts over.
//!
//! State used: list (pending transactions), value (the recent large ones),
//! reducing (alerts so far), aggregating (average large amount).
//!
//! World: `keyed-process-operator` (`wit/keyed.wit`).

use serde::{Deserialize, Serialize};
use weir_udf::state::{AggregatingState, ListState, ReducingState, ValueState};
use weir_udf::{Config, Context, Error, KeyedProcess, Record, Timer};

/// A large transaction kept in state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Txn {
    id: String,
    amount: f64,
    country: String,
    ts: i64,
}
weir_udf::json_codec!(Txn);

/// The recent large transactions of a user, oldest first.
#[derive(Default, Serialize, Deserialize)]
pub struct Recent(Vec<Txn>);
weir_udf::json_codec!(Recent);

#[derive(Deserialize)]
struct Input<'a> {
    id: &'a str,
    amount: f64,
    country: &'a str,
}

#[derive(Serialize)]
struct Alert<'a> {
    user: &'a str,
    alert: u64,
    transactions: Vec<&'a str>,
    countries: Vec<&'a str>,
    first_ts: i64,
    last_ts: i64,
    average_large_amount: f64,
}

/// The detector.
pub struct FraudDetector {
    threshold: f64,
    within_ms: i64,
    count: usize,
    pending: ListState<Txn>,
    recent: ValueState<Recent>,
    alerts: ReducingState<u64>,
    average: AggregatingState<f64, (f64, u64), f64>,
}

impl KeyedProcess for FraudDetector {
    fn init(config: &Config) -> Result<Self, Error> {
        Ok(Self {
            threshold: config.get_or("threshold", 1_000.0)?,
            within_ms: config.get_or("within_ms", 300_000)?,
            count: config.get_or("count", 3)?,
            pending: ListState::new("pending"),
            recent: ValueState::new("recent"),
            alerts: ReducingState::new("alerts", |a, b| a + b),
            average: AggregatingState::new(
                "average",
                || (0.0, 0),
                |acc, x| {
                    acc.0 += x;
                    acc.1 += 1;
                },
                |acc| {
                    if acc.1 == 0 {
                        0.0
                    } else {
                        acc.0 / acc.1 as f64
                    }
                },
            ),
        })
    }

    fn process(&mut self, ctx: &mut Context<'_>, record: &Record<'_>) -> Result<(), Error> {
        ctx.emit(record.value(), record.timestamp());
        let t: Input<'_> = record.json()?;
        if t.amount > self.threshold {
            self.pending.add(&Txn {
                id: t.id.to_string(),
                amount: t.amount,
                country: t.country.to_string(),
                ts: record.timestamp(),
            });
            self.average.add(t.amount)?;
            ctx.register_event_timer(record.timestamp());
        }
        Ok(())
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>, timer: Timer) -> Result<(), Error> {
        let mut pending = self.pending.get()?;
        let (mut due, rest): (Vec<Txn>, Vec<Txn>) =
            pending.drain(..).partition(|t| t.ts <= timer.timestamp);
        self.pending.set(&rest);
        due.sort_by(|a, b| (a.ts, &a.id).cmp(&(b.ts, &b.id)));
        let Recent(mut recent) = self.recent.get()?.unwrap_or_default();
        let user = ctx.key_str().into_owned();
        for t in due {
            let ts = t.ts;
            recent.push(t);
            recent.retain(|r| r.ts > ts - self.within_ms);
            let mut countries: Vec<&str> = recent.iter().map(|r| r.country.as_str()).collect();
            countries.sort_unstable();
            countries.dedup();
            if recent.len() >= self.count && countries.len() >= 2 {
                self.alerts.add(1)?;
                let alert = Alert {
                    user: &user,
                    alert: self.alerts.get()?.unwrap_or(1),
                    transactions: recent.iter().map(|r| r.id.as_str()).collect(),
                    countries,
                    first_ts: recent.first().map_or(ts, |r| r.ts),
                    last_ts: ts,
                    average_large_amount: self.average.get()?.unwrap_or(0.0),
                };
                ctx.emit_side_json("fraud", &alert, ts)?;
                recent.clear();
            }
        }
        if recent.is_empty() {
            self.recent.clear();
        } else {
            self.recent.set(&Recent(recent));
        }
        Ok(())
    }
}

weir_udf::export_keyed_process!(FraudDetector);
