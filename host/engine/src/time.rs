//! Time services: the processing-time clock that windows and timers read.
//!
//! Event time comes from the records and watermarks; processing time comes
//! from a [`Clock`]. Jobs use the [`SystemClock`]; tests use a [`ManualClock`]
//! they advance by hand, so processing-time triggers and timers fire exactly
//! when a test says.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A processing-time clock, in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current processing time.
    fn now_ms(&self) -> i64;
}

/// The machine's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

/// A clock that only moves when told to; clones share the time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock reading `start_ms`.
    pub fn new(start_ms: i64) -> Self {
        Self(Arc::new(AtomicI64::new(start_ms)))
    }

    /// Sets the time (it may not go backwards; earlier values are ignored).
    pub fn set(&self, ms: i64) {
        self.0.fetch_max(ms, Ordering::SeqCst);
    }

    /// Moves the time forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms.max(0), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The clock a job uses by default.
pub fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_forward_and_is_shared() {
        let c = ManualClock::new(100);
        let shared = c.clone();
        c.advance(50);
        assert_eq!(shared.now_ms(), 150);
        c.set(120);
        assert_eq!(shared.now_ms(), 150);
        c.set(1_000);
        assert_eq!(shared.now_ms(), 1_000);
        assert!(SystemClock.now_ms() > 1_700_000_000_000);
    }
}
