//! Timers per key and namespace, ordered by time, Flink's
//! `InternalTimerService`: at most one timer per (time, key, namespace).

use imbl::OrdSet;

/// One timer: when, for which key, in which namespace.
pub type Timer = (i64, Vec<u8>, Vec<u8>);

/// Timers of one domain (event or processing time) of one operator subtask.
///
/// The set is persistent: cloning it for a checkpoint takes constant time
/// and the copy is written out on another thread.
#[derive(Debug, Default, Clone)]
pub struct TimerService {
    timers: OrdSet<Timer>,
}

impl TimerService {
    /// No timers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a timer; setting an existing one again is a no-op.
    pub fn register(&mut self, time: i64, key: &[u8], namespace: &[u8]) {
        self.timers.insert((time, key.to_vec(), namespace.to_vec()));
    }

    /// Removes a timer if set.
    pub fn delete(&mut self, time: i64, key: &[u8], namespace: &[u8]) {
        self.timers
            .remove(&(time, key.to_vec(), namespace.to_vec()));
    }

    /// The earliest timer's time.
    pub fn next_time(&self) -> Option<i64> {
        self.timers.get_min().map(|t| t.0)
    }

    /// Removes and returns the earliest timer if it is due at `time`
    /// (its time is at most `time`).
    pub fn pop_due(&mut self, time: i64) -> Option<Timer> {
        if self.next_time()? <= time {
            self.timers.remove_min()
        } else {
            None
        }
    }

    /// Every timer, in time order.
    pub fn iter(&self) -> impl Iterator<Item = &Timer> + '_ {
        self.timers.iter()
    }

    /// Number of timers.
    pub fn len(&self) -> usize {
        self.timers.len()
    }

    /// Whether no timer is set.
    pub fn is_empty(&self) -> bool {
        self.timers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_time_order_once() {
        let mut t = TimerService::new();
        t.register(20, b"b", b"");
        t.register(10, b"a", b"");
        t.register(10, b"a", b"");
        t.register(30, b"a", b"");
        t.delete(30, b"a", b"");
        assert_eq!(t.len(), 2);
        assert_eq!(t.pop_due(15).map(|x| x.0), Some(10));
        assert_eq!(t.pop_due(15), None);
        assert_eq!(t.pop_due(20).map(|x| x.1), Some(b"b".to_vec()));
        assert!(t.is_empty());
    }
}
