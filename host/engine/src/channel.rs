//! Bounded channels between tasks, and the routing of batches over them.
//!
//! Each consumer subtask has one bounded input channel that all its producers
//! share (a union of its inputs). A producer blocks when the channel is full;
//! that is the backpressure, and the time spent blocked is counted per node so
//! an operator can see which stage holds the job back.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use weir_record::RecordBatch;

use crate::message::{Message, Signal};
use crate::metrics::NodeMetrics;
use crate::plan::Partitioning;

/// The consumer went away (it failed, or the job is being torn down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnected;

/// One outgoing edge of a producer subtask.
pub struct EdgeSender {
    senders: Vec<Sender<Message>>,
    partitioning: Partitioning,
    own_subtask: usize,
    next: usize,
}

impl EdgeSender {
    /// An edge to the consumer subtasks' input channels.
    pub fn new(
        senders: Vec<Sender<Message>>,
        partitioning: Partitioning,
        own_subtask: usize,
    ) -> Self {
        Self {
            senders,
            partitioning,
            own_subtask,
            next: own_subtask,
        }
    }

    fn target(&mut self) -> usize {
        match self.partitioning {
            Partitioning::Forward => self.own_subtask,
            Partitioning::Rebalance => {
                let t = self.next % self.senders.len();
                self.next = self.next.wrapping_add(1);
                t
            }
        }
    }

    fn targets_for_signal(&self) -> Vec<usize> {
        match self.partitioning {
            Partitioning::Forward => vec![self.own_subtask],
            Partitioning::Rebalance => (0..self.senders.len()).collect(),
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

    /// Sends a batch on every edge (cloned when there are several).
    ///
    /// # Errors
    /// [`Disconnected`] if a consumer is gone.
    pub fn send(&mut self, batch: RecordBatch) -> Result<(), Disconnected> {
        let n = self.edges.len();
        let mut batch = Some(batch);
        for i in 0..n {
            let b = if i + 1 == n {
                batch.take().ok_or(Disconnected)?
            } else {
                batch.as_ref().ok_or(Disconnected)?.clone()
            };
            let edge = &mut self.edges[i];
            let t = edge.target();
            send_counting(&edge.senders[t], Message::Data(b), &self.metrics)?;
        }
        Ok(())
    }

    /// Sends a signal to every consumer subtask this producer feeds.
    ///
    /// # Errors
    /// [`Disconnected`] if a consumer is gone.
    pub fn signal(&mut self, signal: Signal) -> Result<(), Disconnected> {
        for edge in &self.edges {
            for t in edge.targets_for_signal() {
                send_counting(&edge.senders[t], Message::Signal(signal), &self.metrics)?;
            }
        }
        Ok(())
    }
}

fn send_counting(
    tx: &Sender<Message>,
    msg: Message,
    metrics: &NodeMetrics,
) -> Result<(), Disconnected> {
    match tx.try_send(msg) {
        Ok(()) => Ok(()),
        Err(TrySendError::Disconnected(_)) => Err(Disconnected),
        Err(TrySendError::Full(msg)) => {
            let start = Instant::now();
            let r = tx.send(msg).map_err(|_| Disconnected);
            metrics.add_backpressure(start.elapsed());
            r
        }
    }
}

/// The input of a consumer subtask: its channel and how many producers must
/// say [`Signal::EndOfData`] before the input has ended.
pub struct TaskInput {
    /// The channel.
    pub receiver: Receiver<Message>,
    /// Producers feeding it.
    pub producers: usize,
}
