//! Exchanges between tasks, and the routing of batches over them.
//!
//! Each consumer subtask has one input *exchange* that all its producers
//! share (a union of its inputs): [`ExchangeSender`] on the producers'
//! side, [`ExchangeReceiver`] on the consumer's. In one process it is a
//! bounded channel ([`local`]); across processes it is a network stream
//! whose capacity is the credit the receiver granted; operators see
//! neither, only [`TaskOutput`] and the run loop's receive. Every message carries the producer's *slot*
//! at that consumer, so the consumer can keep per-producer state: the
//! watermark each producer has reached, whether it is idle, whether it has
//! ended. A producer blocks when the channel is full; that is the
//! backpressure, and the time spent blocked is counted per node so an
//! operator can see which stage holds the job back.

use std::sync::Arc;
use std::time::Instant;

use std::time::Duration;

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

/// Why a message was not taken without waiting. Like crossbeam's
/// `TrySendError`, it gives the message back by value: the full path is
/// taken under backpressure, where an allocation per message would add to
/// the cost.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum TrySend {
    /// No capacity (no credit) right now: the message comes back.
    Full(Envelope),
    /// The consumer is gone.
    Disconnected,
}

/// Why no message was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recv {
    /// Nothing arrived in time (or right now, for [`ExchangeReceiver::try_recv`]).
    Empty,
    /// Every producer is gone.
    Disconnected,
}

/// The producers' side of one consumer subtask's input exchange. Messages
/// of one producer arrive in the order sent, data and signals alike.
pub trait ExchangeSender: Send + Sync {
    /// Sends if there is capacity now.
    ///
    /// # Errors
    /// [`TrySend::Full`] with the message when there is none;
    /// [`TrySend::Disconnected`] when the consumer is gone.
    #[allow(clippy::result_large_err)]
    fn try_send(&self, envelope: Envelope) -> Result<(), TrySend>;

    /// Sends, waiting for capacity.
    ///
    /// # Errors
    /// [`Disconnected`] when the consumer is gone.
    fn send(&self, envelope: Envelope) -> Result<(), Disconnected>;

    /// How many messages may be in flight to the consumer at most.
    fn capacity(&self) -> usize;
}

/// The consumer's side of its input exchange.
pub trait ExchangeReceiver: Send {
    /// The next message if one is there.
    ///
    /// # Errors
    /// [`Recv::Empty`] or [`Recv::Disconnected`].
    fn try_recv(&self) -> Result<Envelope, Recv>;

    /// The next message, waiting at most `wait`.
    ///
    /// # Errors
    /// [`Recv::Empty`] after `wait`, or [`Recv::Disconnected`].
    fn recv_timeout(&self, wait: Duration) -> Result<Envelope, Recv>;

    /// The next message, waiting as long as it takes.
    ///
    /// # Errors
    /// [`Disconnected`] when every producer is gone and nothing is left.
    fn recv(&self) -> Result<Envelope, Disconnected>;
}

/// An in-process exchange: a bounded channel of `capacity` messages.
pub fn local(capacity: usize) -> (Arc<dyn ExchangeSender>, Box<dyn ExchangeReceiver>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    (Arc::new(LocalSender(tx)), Box::new(LocalReceiver(rx)))
}

struct LocalSender(Sender<Envelope>);

impl ExchangeSender for LocalSender {
    fn try_send(&self, envelope: Envelope) -> Result<(), TrySend> {
        self.0.try_send(envelope).map_err(|e| match e {
            TrySendError::Full(env) => TrySend::Full(env),
            TrySendError::Disconnected(_) => TrySend::Disconnected,
        })
    }

    fn send(&self, envelope: Envelope) -> Result<(), Disconnected> {
        self.0.send(envelope).map_err(|_| Disconnected)
    }

    fn capacity(&self) -> usize {
        self.0.capacity().unwrap_or(usize::MAX)
    }
}

struct LocalReceiver(Receiver<Envelope>);

impl ExchangeReceiver for LocalReceiver {
    fn try_recv(&self) -> Result<Envelope, Recv> {
        self.0.try_recv().map_err(|e| match e {
            crossbeam_channel::TryRecvError::Empty => Recv::Empty,
            crossbeam_channel::TryRecvError::Disconnected => Recv::Disconnected,
        })
    }

    fn recv_timeout(&self, wait: Duration) -> Result<Envelope, Recv> {
        self.0.recv_timeout(wait).map_err(|e| match e {
            crossbeam_channel::RecvTimeoutError::Timeout => Recv::Empty,
            crossbeam_channel::RecvTimeoutError::Disconnected => Recv::Disconnected,
        })
    }

    fn recv(&self) -> Result<Envelope, Disconnected> {
        self.0.recv().map_err(|_| Disconnected)
    }
}

/// One outgoing edge of a producer subtask.
pub struct EdgeSender {
    senders: Vec<Arc<dyn ExchangeSender>>,
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
        senders: Vec<Arc<dyn ExchangeSender>>,
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
            Err(TrySend::Disconnected) => Err(Disconnected),
            Err(TrySend::Full(env)) => {
                let start = Instant::now();
                // Waiting for capacity is not using the CPU: the turn goes
                // to others meanwhile. The wait is the backpressure figure.
                let r = crate::share::blocking(|| tx.send(env));
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

/// The input of a consumer subtask: its exchange and how many producers
/// feed it (each with its own slot, `0..producers`).
pub struct TaskInput {
    /// The exchange.
    pub receiver: Box<dyn ExchangeReceiver>,
    /// Producers feeding it.
    pub producers: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_exchange_is_bounded_keeps_order_and_reports_disconnection() {
        let (tx, rx) = local(2);
        assert_eq!(tx.capacity(), 2);
        tx.try_send((0, Message::Signal(Signal::Idle))).unwrap();
        tx.send((1, Message::Signal(Signal::Barrier(4)))).unwrap();
        // Full: the message comes back.
        match tx.try_send((0, Message::Signal(Signal::EndOfData))) {
            Err(TrySend::Full((0, Message::Signal(Signal::EndOfData)))) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            rx.try_recv(),
            Ok((0, Message::Signal(Signal::Idle)))
        ));
        assert!(matches!(
            rx.recv_timeout(Duration::from_millis(1)),
            Ok((1, Message::Signal(Signal::Barrier(4))))
        ));
        assert!(matches!(rx.try_recv(), Err(Recv::Empty)));
        assert!(matches!(
            rx.recv_timeout(Duration::from_millis(1)),
            Err(Recv::Empty)
        ));
        drop(tx);
        assert!(matches!(rx.try_recv(), Err(Recv::Disconnected)));
        assert!(rx.recv().is_err());
        let (tx, rx) = local(1);
        drop(rx);
        assert!(matches!(
            tx.try_send((0, Message::Signal(Signal::Idle))),
            Err(TrySend::Disconnected)
        ));
        assert_eq!(
            tx.send((0, Message::Signal(Signal::Idle))),
            Err(Disconnected)
        );
    }

    #[test]
    fn time_waiting_for_capacity_is_backpressure() {
        let (tx, rx) = local(1);
        let metrics = NodeMetrics::new(1);
        let edge = EdgeSender::new(vec![tx], Partitioning::Forward, 0, 0, 0);
        edge.send_to(0, Message::Signal(Signal::Idle), &metrics)
            .unwrap();
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let first = rx.recv().unwrap();
            let second = rx.recv().unwrap();
            (first.0, second.0)
        });
        edge.send_to(0, Message::Signal(Signal::EndOfData), &metrics)
            .unwrap();
        assert_eq!(reader.join().unwrap(), (0, 0));
        // The send waited for the reader's first receive, 50 ms after it
        // started (a lower bound only).
        let blocked_ns = metrics
            .backpressured_ns
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(blocked_ns >= 40_000_000, "{blocked_ns}");
    }
}
