//! Holding a generator to a target rate.

use std::time::{Duration, Instant};

/// Paces a producer to `rate` records per second (no pacing when `None`).
pub(crate) struct Pacer {
    rate: Option<f64>,
    start: Instant,
}

impl Pacer {
    /// Record 0 is due at `start` (now if `None`).
    pub(crate) fn new(rate: Option<f64>, start: Option<Instant>) -> Self {
        Self {
            rate: rate.filter(|r| *r > 0.0),
            start: start.unwrap_or_else(Instant::now),
        }
    }

    /// Sleeps until `produced` records are due.
    pub(crate) fn wait_for(&self, produced: u64) {
        if let Some(rate) = self.rate {
            let due = self.start + Duration::from_secs_f64(produced as f64 / rate);
            let now = Instant::now();
            if due > now {
                weir_engine::share::blocking(|| std::thread::sleep(due - now));
            }
        }
    }
}
