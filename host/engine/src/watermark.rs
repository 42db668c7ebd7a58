//! Event-time progress: watermarks, generated at the sources and combined
//! wherever streams meet.
//!
//! A watermark `t` says "no record with a timestamp ≤ `t` is still to come".
//! Each source split generates its own (see [`WatermarkStrategy`]); a task
//! with several input producers holds the minimum of their watermarks, leaving
//! out producers that declared themselves idle, so a quiet split does not
//! stall event time. At the end of a bounded input, [`Watermark::MAX`] flushes
//! everything that waits for time.
//!
//! Pure types: the runtime feeds them and sends what they decide.

use std::time::{Duration, Instant};

/// A point in event time, milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Watermark(pub i64);

impl Watermark {
    /// Before all time: nothing is known yet.
    pub const MIN: Watermark = Watermark(i64::MIN);
    /// After all time: the input has ended.
    pub const MAX: Watermark = Watermark(i64::MAX);
}

/// How a source split derives watermarks from the timestamps it reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WatermarkStrategy {
    /// No watermarks (processing-time jobs); only the end of input is
    /// signalled.
    #[default]
    None,
    /// Timestamps never decrease: the watermark is the largest timestamp
    /// seen minus one.
    Monotonous,
    /// Records may arrive up to the bound later than a record with a larger
    /// timestamp: the watermark is the largest timestamp seen minus the bound
    /// minus one.
    BoundedOutOfOrderness(Duration),
}

/// Watermark generation for one source split.
#[derive(Debug)]
pub struct WatermarkGenerator {
    strategy: WatermarkStrategy,
    idle_timeout: Option<Duration>,
    max_timestamp: i64,
    emitted: Watermark,
    last_data: Instant,
    idle: bool,
}

/// What a generator wants sent downstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    /// A new, larger watermark.
    Watermark(Watermark),
    /// The split has had no data for the idle timeout.
    Idle,
}

impl WatermarkGenerator {
    /// A generator; `idle_timeout` marks the split idle after that long
    /// without records.
    pub fn new(strategy: WatermarkStrategy, idle_timeout: Option<Duration>) -> Self {
        Self {
            strategy,
            idle_timeout,
            max_timestamp: i64::MIN,
            emitted: Watermark::MIN,
            last_data: Instant::now(),
            idle: false,
        }
    }

    /// Accounts for a batch with these timestamps; returns a watermark to send
    /// if it advanced. Records make an idle split active again.
    pub fn on_batch(&mut self, timestamps: &[i64], now: Instant) -> Option<Emit> {
        if timestamps.is_empty() {
            return None;
        }
        self.last_data = now;
        let was_idle = std::mem::replace(&mut self.idle, false);
        if let Some(&max) = timestamps.iter().max() {
            self.max_timestamp = self.max_timestamp.max(max);
        }
        let wm = match self.strategy {
            WatermarkStrategy::None => return None,
            WatermarkStrategy::Monotonous => Watermark(self.max_timestamp.saturating_sub(1)),
            WatermarkStrategy::BoundedOutOfOrderness(bound) => Watermark(
                self.max_timestamp
                    .saturating_sub(bound.as_millis() as i64)
                    .saturating_sub(1),
            ),
        };
        if wm > self.emitted || (was_idle && self.emitted > Watermark::MIN) {
            self.emitted = self.emitted.max(wm);
            return Some(Emit::Watermark(self.emitted));
        }
        None
    }

    /// Called when the split had nothing to read; returns [`Emit::Idle`] once
    /// when the idle timeout passes.
    pub fn on_no_data(&mut self, now: Instant) -> Option<Emit> {
        let timeout = self.idle_timeout?;
        if !self.idle && now.duration_since(self.last_data) >= timeout {
            self.idle = true;
            return Some(Emit::Idle);
        }
        None
    }

    /// The last watermark emitted.
    pub fn current(&self) -> Watermark {
        self.emitted
    }

    /// Whether the split is idle (no records for the idle timeout).
    pub fn is_idle(&self) -> bool {
        self.idle
    }
}

/// Watermarks of a source subtask that reads several splits (the partitions
/// of a Kafka topic), as Flink's per-partition watermarks: one generator per
/// split, and the subtask's watermark the minimum over its splits that are
/// not idle. A split assigned but not yet heard from holds time back, so a
/// partition read later than another does not find its records late; a
/// finished split (removed from the assignment) stops holding it back.
#[derive(Debug)]
pub struct SplitWatermarks {
    strategy: WatermarkStrategy,
    idle_timeout: Option<Duration>,
    splits: std::collections::BTreeMap<u32, WatermarkGenerator>,
    emitted: Watermark,
    idle: bool,
}

impl SplitWatermarks {
    /// No splits yet.
    pub fn new(strategy: WatermarkStrategy, idle_timeout: Option<Duration>) -> Self {
        Self {
            strategy,
            idle_timeout,
            splits: std::collections::BTreeMap::new(),
            emitted: Watermark::MIN,
            idle: false,
        }
    }

    /// The splits read now: new ones start holding time back, those gone
    /// (finished) stop. Returns a watermark if that lets time advance.
    pub fn set_splits(&mut self, assigned: &[u32]) -> Option<Emit> {
        let known = self.splits.len();
        self.splits.retain(|s, _| assigned.contains(s));
        let removed = known != self.splits.len();
        for &s in assigned {
            self.splits
                .entry(s)
                .or_insert_with(|| WatermarkGenerator::new(self.strategy, self.idle_timeout));
        }
        if removed { self.combine() } else { None }
    }

    /// Accounts for a batch whose row `i` has timestamp `timestamps[i]` and
    /// came from split `splits[i]`.
    pub fn on_batch(&mut self, timestamps: &[i64], splits: &[u32], now: Instant) -> Option<Emit> {
        let mut by_split: std::collections::BTreeMap<u32, i64> = std::collections::BTreeMap::new();
        for (t, s) in timestamps.iter().zip(splits) {
            let max = by_split.entry(*s).or_insert(i64::MIN);
            *max = (*max).max(*t);
        }
        for (s, max) in by_split {
            let (strategy, idle_timeout) = (self.strategy, self.idle_timeout);
            self.splits
                .entry(s)
                .or_insert_with(|| WatermarkGenerator::new(strategy, idle_timeout))
                .on_batch(&[max], now);
        }
        self.combine()
    }

    /// Called when nothing was read: splits quiet for the idle timeout stop
    /// holding time back; all of them quiet make the subtask idle.
    pub fn on_no_data(&mut self, now: Instant) -> Option<Emit> {
        let mut changed = false;
        for g in self.splits.values_mut() {
            changed |= g.on_no_data(now).is_some();
        }
        if changed { self.combine() } else { None }
    }

    /// The last watermark emitted.
    pub fn current(&self) -> Watermark {
        self.emitted
    }

    fn combine(&mut self) -> Option<Emit> {
        if self.strategy == WatermarkStrategy::None {
            return None;
        }
        let active = self.splits.values().filter(|g| !g.is_idle());
        let Some(wm) = active.map(WatermarkGenerator::current).min() else {
            if self.splits.is_empty() || self.idle {
                return None;
            }
            self.idle = true;
            return Some(Emit::Idle);
        };
        let was_idle = std::mem::replace(&mut self.idle, false);
        if wm > self.emitted || (was_idle && self.emitted > Watermark::MIN) {
            self.emitted = self.emitted.max(wm);
            return Some(Emit::Watermark(self.emitted));
        }
        None
    }
}

/// The combined watermark of a task's input producers.
#[derive(Debug)]
pub struct WatermarkCombiner {
    inputs: Vec<InputState>,
    combined: Watermark,
}

#[derive(Clone, Copy, Debug)]
struct InputState {
    watermark: Watermark,
    idle: bool,
    ended: bool,
}

impl WatermarkCombiner {
    /// A combiner over `producers` inputs, none heard from yet.
    pub fn new(producers: usize) -> Self {
        Self {
            inputs: vec![
                InputState {
                    watermark: Watermark::MIN,
                    idle: false,
                    ended: false,
                };
                producers
            ],
            combined: Watermark::MIN,
        }
    }

    /// Input `i` sent `wm`; returns the combined watermark if it advanced.
    pub fn on_watermark(&mut self, i: usize, wm: Watermark) -> Option<Watermark> {
        let s = self.inputs.get_mut(i)?;
        s.idle = false;
        s.watermark = s.watermark.max(wm);
        self.recompute()
    }

    /// Input `i` went idle; returns the combined watermark if that lets it
    /// advance.
    pub fn on_idle(&mut self, i: usize) -> Option<Watermark> {
        self.inputs.get_mut(i)?.idle = true;
        self.recompute()
    }

    /// Input `i` sent data: it is active again (its watermark counts).
    pub fn on_data(&mut self, i: usize) {
        if let Some(s) = self.inputs.get_mut(i) {
            s.idle = false;
        }
    }

    /// Input `i` ended: it no longer holds time back.
    pub fn on_end(&mut self, i: usize) -> Option<Watermark> {
        self.inputs.get_mut(i)?.ended = true;
        self.recompute()
    }

    /// Whether every input that has not ended is idle (and at least one is):
    /// then this task's output is idle too.
    pub fn all_idle(&self) -> bool {
        let mut live = self.inputs.iter().filter(|s| !s.ended).peekable();
        live.peek().is_some() && live.all(|s| s.idle)
    }

    /// The current combined watermark.
    pub fn current(&self) -> Watermark {
        self.combined
    }

    fn recompute(&mut self) -> Option<Watermark> {
        // An ended input is at the end of time; an idle one does not count.
        // If every input is idle, time stands still.
        let new = self
            .inputs
            .iter()
            .filter_map(|s| match (s.ended, s.idle) {
                (true, _) => Some(Watermark::MAX),
                (false, true) => None,
                (false, false) => Some(s.watermark),
            })
            .min()?;
        if new > self.combined {
            self.combined = new;
            Some(new)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_watermarks_hold_time_for_the_slowest_split_until_it_is_idle_or_done() {
        let t0 = Instant::now();
        let mut w = SplitWatermarks::new(
            WatermarkStrategy::Monotonous,
            Some(Duration::from_millis(100)),
        );
        assert_eq!(w.set_splits(&[0, 2]), None);
        // Split 0 far ahead; split 2 not heard from: time stays.
        assert_eq!(w.on_batch(&[1000, 5000], &[0, 0], t0), None);
        assert_eq!(
            w.on_batch(&[200], &[2], t0),
            Some(Emit::Watermark(Watermark(199)))
        );
        // Split 2 goes quiet past the timeout: split 0 alone counts.
        let later = t0 + Duration::from_millis(150);
        assert_eq!(w.on_batch(&[6000], &[0], later), None);
        assert_eq!(
            w.on_no_data(later + Duration::from_millis(10)),
            Some(Emit::Watermark(Watermark(5999)))
        );
        // Finished split: removed from the assignment.
        let mut w = SplitWatermarks::new(WatermarkStrategy::Monotonous, None);
        w.set_splits(&[0, 1]);
        w.on_batch(&[10, 50], &[0, 1], t0);
        assert_eq!(w.current(), Watermark(9));
        assert_eq!(w.set_splits(&[1]), Some(Emit::Watermark(Watermark(49))));
    }

    #[test]
    fn bounded_out_of_orderness_trails_the_max_by_the_bound() {
        let mut g = WatermarkGenerator::new(
            WatermarkStrategy::BoundedOutOfOrderness(Duration::from_secs(10)),
            None,
        );
        let now = Instant::now();
        assert_eq!(
            g.on_batch(&[20_000, 15_000], now),
            Some(Emit::Watermark(Watermark(9_999)))
        );
        // Late and out-of-order records never move it back.
        assert_eq!(g.on_batch(&[1_000], now), None);
        assert_eq!(
            g.on_batch(&[30_000], now),
            Some(Emit::Watermark(Watermark(19_999)))
        );
        let mut m = WatermarkGenerator::new(WatermarkStrategy::Monotonous, None);
        assert_eq!(
            m.on_batch(&[5, 7], now),
            Some(Emit::Watermark(Watermark(6)))
        );
        let mut n = WatermarkGenerator::new(WatermarkStrategy::None, None);
        assert_eq!(n.on_batch(&[5, 7], now), None);
    }

    #[test]
    fn idle_after_the_timeout_and_active_again_with_data() {
        let mut g = WatermarkGenerator::new(
            WatermarkStrategy::Monotonous,
            Some(Duration::from_millis(100)),
        );
        let t0 = Instant::now();
        g.on_batch(&[10], t0);
        assert_eq!(g.on_no_data(t0 + Duration::from_millis(50)), None);
        assert_eq!(
            g.on_no_data(t0 + Duration::from_millis(150)),
            Some(Emit::Idle)
        );
        assert_eq!(g.on_no_data(t0 + Duration::from_millis(250)), None, "once");
        // Data again: the current watermark is re-announced to end idleness.
        assert_eq!(
            g.on_batch(&[5], t0 + Duration::from_millis(300)),
            Some(Emit::Watermark(Watermark(9)))
        );
    }

    #[test]
    fn combined_is_the_minimum_of_active_inputs() {
        let mut c = WatermarkCombiner::new(3);
        assert_eq!(c.on_watermark(0, Watermark(10)), None);
        assert_eq!(c.on_watermark(1, Watermark(20)), None);
        assert_eq!(c.on_watermark(2, Watermark(5)), Some(Watermark(5)));
        assert_eq!(c.on_watermark(2, Watermark(30)), Some(Watermark(10)));
        // Input 0 goes quiet: it stops holding time back.
        assert_eq!(c.on_idle(0), Some(Watermark(20)));
        // It never moves backwards, even when the idle input returns behind.
        c.on_data(0);
        assert_eq!(c.current(), Watermark(20));
        assert_eq!(c.on_end(0), None);
        assert_eq!(c.on_end(1), Some(Watermark(30)));
        assert_eq!(c.on_end(2), Some(Watermark::MAX));
    }

    #[test]
    fn an_ended_input_and_an_idle_one_let_time_run_out() {
        let mut c = WatermarkCombiner::new(2);
        assert_eq!(c.on_end(0), None, "input 1 still holds time at MIN");
        assert_eq!(c.on_idle(1), Some(Watermark::MAX));
        let mut all_idle = WatermarkCombiner::new(2);
        all_idle.on_watermark(0, Watermark(5));
        all_idle.on_watermark(1, Watermark(7));
        all_idle.on_idle(0);
        assert!(!all_idle.all_idle());
        assert_eq!(
            all_idle.on_idle(1),
            None,
            "everyone idle: time stands still"
        );
        assert_eq!(all_idle.current(), Watermark(7));
        assert!(all_idle.all_idle());
        all_idle.on_data(0);
        assert!(!all_idle.all_idle());
    }
}
