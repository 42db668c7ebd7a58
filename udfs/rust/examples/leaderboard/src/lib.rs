//! A live top-N leaderboard (default top 10) of users by total score.
//!
//! Input values are `{"user": …, "score": n}`, all under one key (the job
//! reads them unkeyed), so one keyed-process instance holds the totals in map
//! state (user → total). Scores wait in list state until the watermark
//! passes the end of their interval (`every_ms` of event time, default one
//! minute); an event-time timer then adds them to the totals and publishes
//! the board as of that instant: `{"as_of", "top": [{"rank", "user",
//! "score"}, …]}`, ties broken by user name. So each board counts exactly the
//! scores up to `as_of`, however out of order they arrived, and a board is
//! published for every interval that had scores.
//!
//! World: `keyed-process-operator` (`wit/keyed.wit`).

use serde::{Deserialize, Serialize};
use weir_udf::state::{ListState, MapState};
use weir_udf::{Config, Context, Error, KeyedProcess, Record, Timer};

#[derive(Deserialize)]
struct Score<'a> {
    user: &'a str,
    score: i64,
}

#[derive(Serialize)]
struct Entry {
    rank: usize,
    user: String,
    score: i64,
}

#[derive(Serialize)]
struct Board {
    as_of: i64,
    top: Vec<Entry>,
}

/// The leaderboard.
pub struct Leaderboard {
    size: usize,
    every_ms: i64,
    totals: MapState<String, i64>,
    /// Scores not yet counted: (user, score, timestamp).
    pending: ListState<(String, i64, i64)>,
}

impl KeyedProcess for Leaderboard {
    fn init(config: &Config) -> Result<Self, Error> {
        let every_ms: i64 = config.get_or("every_ms", 60_000)?;
        if every_ms <= 0 {
            return Err(Error::InvalidConfig("`every_ms` must be positive".into()));
        }
        Ok(Self {
            size: config.get_or("size", 10)?,
            every_ms,
            totals: MapState::new("totals"),
            pending: ListState::new("pending"),
        })
    }

    fn process(&mut self, ctx: &mut Context<'_>, record: &Record<'_>) -> Result<(), Error> {
        let s: Score<'_> = record.json()?;
        let ts = record.timestamp();
        self.pending.add(&(s.user.to_string(), s.score, ts));
        // Publish at the last instant of the interval the score falls in.
        ctx.register_event_timer(ts - ts.rem_euclid(self.every_ms) + self.every_ms - 1);
        Ok(())
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>, timer: Timer) -> Result<(), Error> {
        let (due, rest): (Vec<_>, Vec<_>) = self
            .pending
            .get()?
            .into_iter()
            .partition(|(_, _, ts)| *ts <= timer.timestamp);
        self.pending.set(&rest);
        for (user, score, _) in due {
            let total = self.totals.get(&user)?.unwrap_or(0) + score;
            self.totals.put(&user, &total);
        }
        let mut all = self.totals.entries()?;
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let top = all
            .into_iter()
            .take(self.size)
            .enumerate()
            .map(|(i, (user, score))| Entry {
                rank: i + 1,
                user,
                score,
            })
            .collect();
        ctx.emit_json(
            &Board {
                as_of: timer.timestamp,
                top,
            },
            timer.timestamp,
        )
    }
}

weir_udf::export_keyed_process!(Leaderboard);
