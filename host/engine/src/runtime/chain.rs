//! A subtask's chain of fused operators and where its last node sends
//! output: batches, side outputs, watermarks and the end of input pushed
//! through the operators in order, to a sink or to the task's exchanges.

use super::*;

/// A fused operator and its counters.
pub(super) struct Chained {
    pub(super) op: Box<dyn Operator>,
    pub(super) metrics: Arc<NodeMetrics>,
    /// Node index, for checkpoint acknowledgements.
    pub(super) node: usize,
}

/// Where the last node of a chain sends its output.
pub(super) enum Tail {
    Sink {
        sink: Box<dyn Sink>,
        metrics: Arc<NodeMetrics>,
        node: String,
        subtask: usize,
        id: usize,
    },
    Output(TaskOutput),
}

pub(super) fn interrupted(task: &str) -> EngineError {
    EngineError::Task {
        task: task.to_string(),
        message: "stopped because a downstream task ended unexpectedly".into(),
    }
}

impl Tail {
    pub(super) fn emit(&mut self, batch: RecordBatch) -> Result<(), EngineError> {
        match self {
            Tail::Sink {
                sink,
                metrics,
                node,
                subtask,
                ..
            } => {
                metrics.add_in(batch.len());
                metrics.record_event_lag(&batch.timestamps);
                sink.write_batch(&batch)
                    .map_err(|source| EngineError::Node {
                        role: NodeRole::Sink,
                        node: node.clone(),
                        subtask: *subtask,
                        source,
                    })
            }
            Tail::Output(out) => out
                .send(batch)
                .map_err(|Disconnected| interrupted("output")),
        }
    }

    pub(super) fn emit_side(&mut self, port: usize, batch: RecordBatch) -> Result<(), EngineError> {
        match self {
            // A sink fused behind the node means nothing reads its side
            // outputs.
            Tail::Sink { .. } => Ok(()),
            Tail::Output(out) => out
                .send_port(port, batch)
                .map_err(|Disconnected| interrupted("output")),
        }
    }

    pub(super) fn watermark(&mut self, wm: Watermark, subtask: usize) -> Result<(), EngineError> {
        match self {
            Tail::Sink { metrics, .. } => {
                metrics.set_watermark(subtask, wm);
                Ok(())
            }
            Tail::Output(out) => out
                .signal(Signal::Watermark(wm))
                .map_err(|Disconnected| interrupted("output")),
        }
    }
}

pub(super) struct ChainCollector<'a> {
    pub(super) rest: &'a mut [Chained],
    pub(super) tail: &'a mut Tail,
    pub(super) metrics: &'a NodeMetrics,
}

impl Collector for ChainCollector<'_> {
    fn collect(&mut self, batch: RecordBatch) -> Result<(), EngineError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.metrics.add_out(batch.len());
        push(self.rest, self.tail, batch)
    }

    fn collect_side(&mut self, port: usize, batch: RecordBatch) -> Result<(), EngineError> {
        // Only the last node of a task can have side outputs that are read
        // (the planner never fuses behind such a node).
        if batch.is_empty() || !self.rest.is_empty() {
            return Ok(());
        }
        self.metrics.add_out(batch.len());
        self.tail.emit_side(port, batch)
    }
}

/// Pushes a batch through fused operators into the tail.
pub(super) fn push(
    ops: &mut [Chained],
    tail: &mut Tail,
    batch: RecordBatch,
) -> Result<(), EngineError> {
    match ops.split_first_mut() {
        None => tail.emit(batch),
        Some((first, rest)) => {
            first.metrics.add_in(batch.len());
            let start = Instant::now();
            let mut out = ChainCollector {
                rest,
                tail,
                metrics: &first.metrics,
            };
            let r = first.op.process_batch(batch, &mut out);
            first.metrics.add_busy(start.elapsed());
            r
        }
    }
}

/// Calls `hook` on every fused operator in order, each with a collector
/// into the rest of the chain: how signals walk a chain.
pub(super) fn walk_chain(
    ops: &mut [Chained],
    tail: &mut Tail,
    mut hook: impl FnMut(&mut Chained, &mut dyn Collector) -> Result<(), EngineError>,
) -> Result<(), EngineError> {
    for i in 0..ops.len() {
        let (head, rest) = ops[i..]
            .split_first_mut()
            .ok_or_else(|| interrupted("chain"))?;
        let metrics = head.metrics.clone();
        let mut out = ChainCollector {
            rest,
            tail,
            metrics: &metrics,
        };
        hook(head, &mut out)?;
    }
    Ok(())
}

/// Calls `end_of_input` down the chain, in order.
pub(super) fn end_chain(ops: &mut [Chained], tail: &mut Tail) -> Result<(), EngineError> {
    walk_chain(ops, tail, |c, out| c.op.end_of_input(out))
}

/// The earliest processing-time timer of any operator of the chain.
pub(super) fn next_processing_time(ops: &[Chained]) -> Option<i64> {
    ops.iter().filter_map(|c| c.op.next_processing_time()).min()
}

/// Fires the processing-time timers due at `now`, down the chain.
pub(super) fn fire_processing_time(
    ops: &mut [Chained],
    tail: &mut Tail,
    now: i64,
) -> Result<(), EngineError> {
    walk_chain(ops, tail, |c, out| {
        if c.op.next_processing_time().is_some_and(|t| t <= now) {
            let start = Instant::now();
            let r = c.op.on_processing_time(now, out);
            c.metrics.add_busy(start.elapsed());
            r
        } else {
            Ok(())
        }
    })
}

/// Advances event time down the chain: each operator sees the watermark
/// (and may emit what it completes) before the next one, then the tail.
pub(super) fn push_watermark(
    ops: &mut [Chained],
    tail: &mut Tail,
    wm: Watermark,
    subtask: usize,
) -> Result<(), EngineError> {
    walk_chain(ops, tail, |c, out| {
        c.op.on_watermark(wm, out)?;
        c.metrics.set_watermark(subtask, wm);
        Ok(())
    })?;
    tail.watermark(wm, subtask)
}
