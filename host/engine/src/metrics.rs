//! Live counters of a running job, per node, summed over its subtasks.
//!
//! Counters are updated once per batch (never per record) with relaxed
//! atomics, and read by whoever reports progress: the CLI's progress line now,
//! the metrics endpoint later.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
    backpressured_ns: AtomicU64,
    /// The watermark each subtask has reached.
    watermarks: Vec<AtomicI64>,
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
