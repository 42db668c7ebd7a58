//! Live counters of a running job, per node, summed over its subtasks.
//!
//! Counters are updated once per batch (never per record) with relaxed
//! atomics, and read by whoever reports progress: the CLI's progress line now,
//! the metrics endpoint later.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

/// The role of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeRole {
    /// Produces records.
    Source,
    /// Transforms records.
    Operator,
    /// Consumes records.
    Sink,
}

impl fmt::Display for NodeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Source => "source",
            Self::Operator => "operator",
            Self::Sink => "sink",
        })
    }
}

/// Counters of one node.
#[derive(Debug, Default)]
pub struct NodeMetrics {
    records_in: AtomicU64,
    records_out: AtomicU64,
    batches_in: AtomicU64,
    busy_ns: AtomicU64,
    pub(crate) backpressured_ns: AtomicU64,
    /// The watermark each subtask has reached.
    watermarks: Vec<AtomicI64>,
    /// Sinks: the event time lag of the records written, ms.
    event_lag: Mutex<Option<Histogram<u64>>>,
}

/// The largest event time lag told apart (longer ones count as this): a
/// week, in ms.
const MAX_LAG_MS: u64 = 7 * 24 * 3_600_000;

/// The event time lag of the records a sink wrote: how long after the
/// moment of its timestamp each record was written (Flink's event time
/// lag), in ms. For a source whose event time is the wall clock (Kafka's
/// create time, the Nexmark generator with `real_time`), the end-to-end
/// latency; a window's result is stamped with its end, so its lag includes
/// the wait for the watermark. Records stamped later than they were
/// written are not counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventLag {
    /// Records measured (those not stamped in the future).
    pub records: u64,
    /// Median, ms.
    pub p50_ms: u64,
    /// 99th percentile, ms.
    pub p99_ms: u64,
    /// Longest, ms (at most a week).
    pub max_ms: u64,
}

impl NodeMetrics {
    /// Counters for a node of `parallelism` subtasks.
    pub fn new(parallelism: usize) -> Self {
        Self {
            watermarks: (0..parallelism).map(|_| AtomicI64::new(i64::MIN)).collect(),
            ..Self::default()
        }
    }

    /// Records that `subtask` has reached watermark `wm`.
    pub fn set_watermark(&self, subtask: usize, wm: crate::watermark::Watermark) {
        if let Some(w) = self.watermarks.get(subtask) {
            w.fetch_max(wm.0, Ordering::Relaxed);
        }
    }

    /// The node's watermark: the minimum over its subtasks, `None` until
    /// every subtask has one.
    pub fn watermark(&self) -> Option<i64> {
        let min = self
            .watermarks
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .min()?;
        (min != i64::MIN).then_some(min)
    }

    /// Counts an input batch of `rows` records.
    pub fn add_in(&self, rows: usize) {
        self.records_in.fetch_add(rows as u64, Ordering::Relaxed);
        self.batches_in.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the event time lag of `timestamps`, written now (once per
    /// batch: one clock reading, one lock).
    pub fn record_event_lag(&self, timestamps: &[i64]) {
        if timestamps.is_empty() {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut lag = self
            .event_lag
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if lag.is_none() {
            // Valid bounds: never `None`.
            *lag = Histogram::new_with_bounds(1, MAX_LAG_MS, 2).ok();
        }
        let Some(h) = lag.as_mut() else {
            return;
        };
        for &ts in timestamps {
            // A record stamped later than now (a window the end of the input
            // closed early, or another clock) has no lag to tell.
            if ts <= now {
                h.saturating_record(now.saturating_sub(ts) as u64);
            }
        }
    }

    /// The event time lag of what was recorded, if anything was.
    pub fn event_lag(&self) -> Option<EventLag> {
        let lag = self
            .event_lag
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let h = lag.as_ref().filter(|h| !h.is_empty())?;
        Some(EventLag {
            records: h.len(),
            p50_ms: h.value_at_quantile(0.5),
            p99_ms: h.value_at_quantile(0.99),
            max_ms: h.max(),
        })
    }

    /// Counts `rows` output records.
    pub fn add_out(&self, rows: usize) {
        self.records_out.fetch_add(rows as u64, Ordering::Relaxed);
    }

    /// Adds time spent processing (including downstream fused nodes).
    pub fn add_busy(&self, d: Duration) {
        self.busy_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Adds time spent blocked on a full output channel.
    pub fn add_backpressure(&self, d: Duration) {
        self.backpressured_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Time spent blocked on full outputs (no capacity, or no credit on a
    /// network exchange) so far.
    pub fn backpressured(&self) -> Duration {
        Duration::from_nanos(self.backpressured_ns.load(Ordering::Relaxed))
    }

    fn snapshot(&self) -> (u64, u64, u64, u64, u64) {
        (
            self.records_in.load(Ordering::Relaxed),
            self.records_out.load(Ordering::Relaxed),
            self.batches_in.load(Ordering::Relaxed),
            self.busy_ns.load(Ordering::Relaxed),
            self.backpressured_ns.load(Ordering::Relaxed),
        )
    }
}

/// A point-in-time reading of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSnapshot {
    /// Node name.
    pub name: String,
    /// Role.
    pub role: NodeRole,
    /// Parallelism.
    pub parallelism: usize,
    /// Records received (for sources: produced).
    pub records_in: u64,
    /// Records emitted.
    pub records_out: u64,
    /// Batches received.
    pub batches_in: u64,
    /// Summed over subtasks: time spent processing.
    pub busy: Duration,
    /// Summed over subtasks: time blocked because downstream was full.
    pub backpressured: Duration,
    /// Event time reached by every subtask (ms since the epoch;
    /// `i64::MAX` once the input has ended), if known.
    pub watermark: Option<i64>,
    /// Sinks: the event time lag of what they wrote.
    pub event_lag: Option<EventLag>,
}

/// The counters of every node of a job.
#[derive(Debug)]
pub struct JobMetrics {
    /// Job name.
    pub job: String,
    started: Instant,
    nodes: Vec<(String, NodeRole, usize, Arc<NodeMetrics>)>,
}

impl JobMetrics {
    pub(crate) fn new(job: String, nodes: Vec<(String, NodeRole, usize)>) -> Self {
        Self {
            job,
            started: Instant::now(),
            nodes: nodes
                .into_iter()
                .map(|(n, r, p)| (n, r, p, Arc::new(NodeMetrics::new(p))))
                .collect(),
        }
    }

    pub(crate) fn node(&self, id: usize) -> Arc<NodeMetrics> {
        self.nodes[id].3.clone()
    }

    /// Time since the job started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Reads every node.
    pub fn snapshot(&self) -> Vec<NodeSnapshot> {
        self.nodes
            .iter()
            .map(|(name, role, parallelism, m)| {
                let (i, o, b, busy, bp) = m.snapshot();
                NodeSnapshot {
                    name: name.clone(),
                    role: *role,
                    parallelism: *parallelism,
                    records_in: i,
                    records_out: o,
                    batches_in: b,
                    busy: Duration::from_nanos(busy),
                    backpressured: Duration::from_nanos(bp),
                    watermark: m.watermark(),
                    event_lag: m.event_lag(),
                }
            })
            .collect()
    }

    /// Records produced by all sources so far.
    pub fn records_read(&self) -> u64 {
        self.sum(NodeRole::Source, |s| s.records_out)
    }

    /// The job's event time: the lowest watermark that reached a sink.
    pub fn watermark(&self) -> Option<i64> {
        self.nodes
            .iter()
            .filter(|(_, role, _, _)| *role == NodeRole::Sink)
            .map(|(_, _, _, m)| m.watermark())
            .min()
            .flatten()
    }

    /// Records received by all sinks so far.
    pub fn records_written(&self) -> u64 {
        self.sum(NodeRole::Sink, |s| s.records_in)
    }

    fn sum(&self, role: NodeRole, f: impl Fn(&NodeSnapshot) -> u64) -> u64 {
        self.snapshot()
            .iter()
            .filter(|s| s.role == role)
            .map(f)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now_ms() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default()
    }

    #[test]
    fn event_lag_is_the_time_since_each_record_was_stamped() {
        let m = NodeMetrics::new(1);
        assert_eq!(m.event_lag(), None, "nothing written, no lag");
        m.record_event_lag(&[]);
        assert_eq!(m.event_lag(), None);
        let now = now_ms();
        // 198 records stamped 1 s ago, one 10 s ago, one in the future.
        let mut ts = vec![now - 1_000; 198];
        ts.push(now - 10_000);
        ts.push(now + 60_000);
        m.record_event_lag(&ts);
        let lag = m.event_lag().unwrap();
        assert_eq!(lag.records, 199, "the future one is not counted");
        // Two significant digits, and the clock moved on a little since.
        assert!((990..1_100).contains(&lag.p50_ms), "{lag:?}");
        assert!((990..1_100).contains(&lag.p99_ms), "{lag:?}");
        assert!((9_900..11_000).contains(&lag.max_ms), "{lag:?}");
        // Records of the distant past count as a week.
        m.record_event_lag(&[0, 0]);
        assert_eq!(m.event_lag().unwrap().records, 201);
        assert!(m.event_lag().unwrap().max_ms >= MAX_LAG_MS, "saturated");
    }
}
