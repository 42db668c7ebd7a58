//! Bounded channels between tasks, and the routing of batches over them.
//!
//! Each consumer subtask has one bounded input channel that all its producers
//! share (a union of its inputs). Every message carries the producer's *slot*
//! at that consumer, so the consumer can keep per-producer state: the
//! watermark each producer has reached, whether it is idle, whether it has
//! ended. A producer blocks when the channel is full; that is the
//! backpressure, and the time spent blocked is counted per node so an
//! operator can see which stage holds the job back.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use weir_record::RecordBatch;

use crate::key_group::{key_group, subtask_for_group};
use crate::message::{Message, Signal};
use crate::metrics::NodeMetrics;
use crate::plan::Partitioning;

/// A message and the sender's slot at the receiving subtask.
pub type Envelope = (u32, Message);

/// The consumer went away (it failed, or the job is being torn down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnected;

/// One outgoing edge of a producer subtask.
pub struct EdgeSender {
    senders: Vec<Sender<Envelope>>,
    partitioning: Partitioning,
    own_subtask: usize,
    /// This producer's slot at every consumer subtask of the edge.
    slot: u32,
    /// The producer output the edge carries.
    port: usize,
    next: usize,
}

impl EdgeSender {
    /// An edge to the consumer subtasks' input channels; `slot` is this
    /// producer's index among each consumer's producers.
    pub fn new(
        senders: Vec<Sender<Envelope>>,
        partitioning: Partitioning,
        own_subtask: usize,
        slot: u32,
        port: usize,
    ) -> Self {
        Self {
            senders,
            partitioning,
            own_subtask,
            slot,
            port,
            next: own_subtask,
        }
    }

    fn all_targets(&self) -> Vec<usize> {
        match self.partitioning {
            Partitioning::Forward => vec![self.own_subtask],
            Partitioning::Rebalance | Partitioning::Hash { .. } => {
                (0..self.senders.len()).collect()
            }
        }
    }

    fn send_batch(
        &mut self,
        batch: RecordBatch,
        metrics: &NodeMetrics,
    ) -> Result<(), Disconnected> {
        match self.partitioning {
            Partitioning::Forward => self.send_to(self.own_subtask, Message::Data(batch), metrics),
            Partitioning::Rebalance => {
                let t = self.next % self.senders.len();
                self.next = self.next.wrapping_add(1);
                self.send_to(t, Message::Data(batch), metrics)
            }
            Partitioning::Hash { max_parallelism } => {
                let n = self.senders.len();
                let mut rows: Vec<Vec<u32>> = vec![Vec::new(); n];
                for (i, key) in batch.keys.iter().enumerate() {
                    let t = subtask_for_group(key_group(key, max_parallelism), max_parallelism, n);
                    rows[t].push(i as u32);
                }
                // All rows to one subtask (common with few keys per batch):
                // send the batch as is.
                if let Some(only) = rows.iter().position(|r| r.len() == batch.len()) {
                    return self.send_to(only, Message::Data(batch), metrics);
                }
                for (t, r) in rows.iter().enumerate().filter(|(_, r)| !r.is_empty()) {
                    self.send_to(t, Message::Data(batch.select(r)), metrics)?;
                }
                Ok(())
            }
        }
    }

    fn send_to(
        &self,
        target: usize,
        msg: Message,
        metrics: &NodeMetrics,
    ) -> Result<(), Disconnected> {
        let tx = &self.senders[target];
        match tx.try_send((self.slot, msg)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Disconnected(_)) => Err(Disconnected),
            Err(TrySendError::Full(env)) => {
                let start = Instant::now();
                // Waiting on a full queue is not using the CPU: the turn
                // goes to others meanwhile.
                let r = crate::share::blocking(|| tx.send(env).map_err(|_| Disconnected));
                metrics.add_backpressure(start.elapsed());
                r
            }
        }
    }
}

/// All outgoing edges of a producer subtask.
pub struct TaskOutput {
    edges: Vec<EdgeSender>,
    metrics: Arc<NodeMetrics>,
}

impl TaskOutput {
    /// Outputs whose blocked time is charged to `metrics` (the task's tail).
    pub fn new(edges: Vec<EdgeSender>, metrics: Arc<NodeMetrics>) -> Self {
        Self { edges, metrics }
    }

    /// Sends a batch of the main output on every edge that carries it
    /// (cloned when there are several).
    ///
    /// # Errors
    /// [`Disconnected`] if a consumer is gone.
    pub fn send(&mut self, batch: RecordBatch) -> Result<(), Disconnected> {
        self.send_port(0, batch)
    }

    /// Sends a batch of output `port` (0 main, `i` side output `i - 1`) on
    /// the edges that carry it; dropped if none does.
    ///
    /// # Errors
    /// [`Disconnected`] if a consumer is gone.
    pub fn send_port(&mut self, port: usize, batch: RecordBatch) -> Result<(), Disconnected> {
        let targets: Vec<usize> = (0..self.edges.len())
            .filter(|&i| self.edges[i].port == port)
            .collect();
        let mut batch = Some(batch);
        for (n, &i) in targets.iter().enumerate() {
            let b = if n + 1 == targets.len() {
                batch.take().ok_or(Disconnected)?
            } else {
                batch.as_ref().ok_or(Disconnected)?.clone()
            };
            self.edges[i].send_batch(b, &self.metrics)?;
        }
        Ok(())
    }

    /// Sends a signal to every consumer subtask this producer feeds.
    ///
    /// # Errors
    /// [`Disconnected`] if a consumer is gone.
    pub fn signal(&mut self, signal: Signal) -> Result<(), Disconnected> {
        for edge in &self.edges {
            for t in edge.all_targets() {
                edge.send_to(t, Message::Signal(signal), &self.metrics)?;
            }
        }
        Ok(())
    }
}

/// The input of a consumer subtask: its channel and how many producers feed
/// it (each with its own slot, `0..producers`).
pub struct TaskInput {
    /// The channel.
    pub receiver: Receiver<Envelope>,
    /// Producers feeding it.
    pub producers: usize,
}
