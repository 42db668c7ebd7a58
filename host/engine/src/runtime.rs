//! Running a job: one thread per task subtask, channels between them.
//!
//! A subtask thread builds its fused nodes (so Wasm instances are created on
//! the thread that calls them), then loops: read a batch from its source or
//! input channel, push it through the chain, route the result to its sink or
//! output channels. When every input has ended it calls `end_of_input` down
//! the chain, finishes its sink or passes the end on, and exits.
//!
//! The first failure cancels the job: sources stop, the channels of failed
//! tasks close, and the others wind down. The failure reported is the root
//! cause, not the disconnections it caused downstream.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use weir_record::RecordBatch;

use crate::channel::{
    Disconnected, EdgeSender, Envelope, ExchangeReceiver, ExchangeSender, Recv, TaskInput,
    TaskOutput,
};
use crate::checkpoint::{
    Ack, AckKind, CheckpointHooks, CheckpointId, CheckpointStats, Coordinator, PendingState,
    SnapshotTarget, SubtaskState,
};
use crate::error::EngineError;
use crate::graph::{Dataflow, NodeKind, NodeSpec};
use crate::message::{Message, Signal};
use crate::metrics::{JobMetrics, NodeMetrics, NodeRole, NodeSnapshot};
use crate::node::{Collector, Operator, Sink, Source, SubtaskInfo};
use crate::plan::{Partitioning, TaskPlan, plan};
use crate::watermark::{Emit, Watermark, WatermarkCombiner, WatermarkGenerator};

/// A running job.
pub struct JobHandle {
    checkpoints: Arc<CheckpointStats>,
    metrics: Arc<JobMetrics>,
    control: Arc<JobControl>,
    threads: Vec<(String, JoinHandle<()>)>,
    plan: TaskPlan,
}

/// Cancels a running job; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Canceller(Arc<JobControl>);

impl Canceller {
    /// Asks the sources to stop; the job then drains and ends normally.
    pub fn cancel(&self) {
        self.0.cancel.store(true, Ordering::SeqCst);
    }

    /// Stops the job without draining: the sources stop, event time does
    /// not advance to its end, so windows and timers still open do not
    /// fire, and sinks abort what they had not committed. For a job that
    /// took a final savepoint and will restart from it (an upgrade, a
    /// cancel with savepoint), Flink's stop-with-savepoint.
    pub fn stop(&self) {
        self.0.no_drain.store(true, Ordering::SeqCst);
        self.0.cancel.store(true, Ordering::SeqCst);
    }
}

/// How a job ended.
#[derive(Debug)]
pub struct JobOutcome {
    /// `Ok` if every source ended (or the job was cancelled) and every sink
    /// finished; the root-cause error otherwise.
    pub result: Result<(), EngineError>,
    /// Final counters.
    pub metrics: Vec<NodeSnapshot>,
    /// Wall time.
    pub elapsed: Duration,
}

#[derive(Default)]
struct JobControl {
    cancel: AtomicBool,
    /// Set by [`Canceller::stop`]: end without advancing event time.
    no_drain: AtomicBool,
    /// First primary error, first secondary (disconnection) error.
    errors: Mutex<(Option<EngineError>, Option<EngineError>)>,
}

impl JobControl {
    fn fail(&self, e: EngineError, secondary: bool) {
        let mut errors = self.errors.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = if secondary {
            &mut errors.1
        } else {
            &mut errors.0
        };
        if slot.is_none() {
            *slot = Some(e);
        }
        self.cancel.store(true, Ordering::SeqCst);
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Whether an end of input ends event time (not after a stop).
    fn draining(&self) -> bool {
        !self.no_drain.load(Ordering::SeqCst)
    }
}

impl JobHandle {
    /// Live counters.
    pub fn metrics(&self) -> &Arc<JobMetrics> {
        &self.metrics
    }

    /// Checkpoint figures.
    pub fn checkpoints(&self) -> &Arc<CheckpointStats> {
        &self.checkpoints
    }

    /// The tasks the job was fused into.
    pub fn plan(&self) -> &TaskPlan {
        &self.plan
    }

    /// Asks the sources to stop; the job then drains and ends normally.
    pub fn cancel(&self) {
        self.control.cancel.store(true, Ordering::SeqCst);
    }

    /// A handle that can cancel the job from another thread (a signal
    /// handler, a control-plane call) without owning the job.
    pub fn canceller(&self) -> Canceller {
        Canceller(self.control.clone())
    }

    /// Whether every task has ended.
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(|(_, t)| t.is_finished())
    }

    /// Waits for every task and reports the outcome.
    pub fn join(self) -> JobOutcome {
        for (name, t) in self.threads {
            if let Err(panic) = t.join() {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                self.control.fail(
                    EngineError::Task {
                        task: name,
                        message: format!("internal error (panic): {message}"),
                    },
                    false,
                );
            }
        }
        let mut errors = self
            .control
            .errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let result = match (errors.0.take(), errors.1.take()) {
            (Some(e), _) | (None, Some(e)) => Err(e),
            (None, None) => Ok(()),
        };
        JobOutcome {
            result,
            metrics: self.metrics.snapshot(),
            elapsed: self.metrics.elapsed(),
        }
    }
}

/// Plans and starts `flow`; returns at once with a handle.
///
/// # Errors
/// [`EngineError::InvalidDataflow`] for a malformed graph,
/// [`EngineError::Task`] if a thread cannot be started.
pub fn run(flow: Dataflow) -> Result<JobHandle, EngineError> {
    flow.validate()?;
    let plan = plan(&flow);
    let metrics = Arc::new(JobMetrics::new(
        flow.name.clone(),
        flow.nodes
            .iter()
            .map(|n| (n.name.clone(), n.role(), n.parallelism))
            .collect(),
    ));
    let control = Arc::new(JobControl::default());

    // One input exchange per consumer subtask.
    type Exchange = (Arc<dyn ExchangeSender>, Box<dyn ExchangeReceiver>);
    let mut inputs: Vec<Vec<Option<Exchange>>> = plan
        .tasks
        .iter()
        .map(|t| {
            (0..t.parallelism)
                .map(|_| Some(crate::channel::local(flow.channel_capacity)))
                .collect()
        })
        .collect();
    let senders: Vec<Vec<Arc<dyn ExchangeSender>>> = inputs
        .iter()
        .map(|subs| subs.iter().flatten().map(|(s, _)| s.clone()).collect())
        .collect();

    // Producer slots at each consumer: the edges into a task, in order, each
    // with one slot (forward) or one per producer subtask.
    let slots_of = |e: &crate::plan::TaskEdge| match e.partitioning {
        Partitioning::Forward => 1,
        Partitioning::Rebalance | Partitioning::Hash { .. } => plan.tasks[e.from].parallelism,
    };
    let mut slot_base = vec![0u32; plan.edges.len()];
    let mut producers = vec![0usize; plan.tasks.len()];
    for (i, e) in plan.edges.iter().enumerate() {
        slot_base[i] = producers[e.to] as u32;
        producers[e.to] += slots_of(e);
    }

    // The checkpoint coordinator, if the job checkpoints.
    let sources_ending = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(CheckpointStats::default());
    let mut coordinator = None;
    let hooks = match &flow.checkpoints {
        None => None,
        Some(config) => {
            let first_id = flow.restore.as_ref().map_or(0, |r| r.id);
            let (acks, rx) = crossbeam_channel::unbounded();
            let hooks = CheckpointHooks {
                trigger: Arc::new(std::sync::atomic::AtomicU64::new(first_id)),
                savepoint: Arc::new(std::sync::atomic::AtomicU64::new(0)),
                acks,
                stats: stats.clone(),
                completed: Arc::new(std::sync::Mutex::new(
                    flow.restore.iter().map(|r| r.id).collect(),
                )),
                storage: config.storage.clone(),
                mode: config.mode,
            };
            let c = Coordinator {
                config: config.clone(),
                job: flow.name.clone(),
                nodes: flow
                    .nodes
                    .iter()
                    .map(|n| (n.name.clone(), n.parallelism))
                    .collect(),
                shared: (&hooks).into(),
                acks: rx,
                sources_ending: sources_ending.clone(),
                first_id,
            };
            coordinator = Some(
                std::thread::Builder::new()
                    .name("weir-checkpoints".into())
                    .spawn({
                        // The caller's span (a server's tenant and job) goes
                        // with every thread of the job.
                        let span = tracing::Span::current();
                        move || span.in_scope(|| c.run())
                    })
                    .map_err(|e| EngineError::Task {
                        task: "checkpoint coordinator".into(),
                        message: format!("cannot start thread: {e}"),
                    })?,
            );
            Some(hooks)
        }
    };

    let flow = Arc::new(flow);
    let mut threads = Vec::new();
    for (t, task) in plan.tasks.iter().enumerate() {
        let producers_per_subtask = producers[t];
        for (subtask, slot) in inputs[t].iter_mut().enumerate() {
            let (_, receiver) = slot.take().ok_or_else(|| EngineError::Task {
                task: task.name.clone(),
                message: "input channel taken twice".into(),
            })?;
            let input = (producers_per_subtask > 0).then(|| TaskInput {
                receiver,
                producers: producers_per_subtask,
            });
            let edges: Vec<EdgeSender> = plan
                .edges
                .iter()
                .enumerate()
                .filter(|(_, e)| e.from == t)
                .map(|(i, e)| {
                    let slot = match e.partitioning {
                        Partitioning::Forward => slot_base[i],
                        _ => slot_base[i] + subtask as u32,
                    };
                    EdgeSender::new(senders[e.to].clone(), e.partitioning, subtask, slot, e.port)
                })
                .collect();
            let ctx = SubtaskContext {
                hooks: hooks.clone(),
                sources_ending: sources_ending.clone(),
                flow: flow.clone(),
                nodes: task.nodes.clone(),
                subtask,
                parallelism: task.parallelism,
                metrics: metrics.clone(),
                control: control.clone(),
            };
            let name = format!("{}#{subtask}", task.name);
            let handle = std::thread::Builder::new()
                .name(format!(
                    "weir-{}",
                    task.name.chars().take(10).collect::<String>()
                ))
                .spawn({
                    let span = tracing::Span::current();
                    let share = flow.cpu_share.clone();
                    move || {
                        let _gate = share.map(crate::share::enter);
                        span.in_scope(|| ctx.run(input, edges))
                    }
                })
                .map_err(|e| EngineError::Task {
                    task: name.clone(),
                    message: format!("cannot start thread: {e}"),
                })?;
            threads.push((name, handle));
        }
    }
    drop(senders);
    drop(hooks);
    if let Some(c) = coordinator {
        threads.push(("checkpoint coordinator".into(), c));
    }
    Ok(JobHandle {
        metrics,
        control,
        threads,
        plan,
        checkpoints: stats,
    })
}

struct SubtaskContext {
    hooks: Option<CheckpointHooks>,
    sources_ending: Arc<AtomicBool>,
    flow: Arc<Dataflow>,
    nodes: Vec<usize>,
    subtask: usize,
    parallelism: usize,
    metrics: Arc<JobMetrics>,
    control: Arc<JobControl>,
}

/// A fused operator and its counters.
struct Chained {
    op: Box<dyn Operator>,
    metrics: Arc<NodeMetrics>,
    /// Node index, for checkpoint acknowledgements.
    node: usize,
}

/// Where the last node of a chain sends its output.
enum Tail {
    Sink {
        sink: Box<dyn Sink>,
        metrics: Arc<NodeMetrics>,
        node: String,
        subtask: usize,
        id: usize,
    },
    Output(TaskOutput),
}

/// The next message; the CPU turn is given back while waiting for one.
fn recv(rx: &dyn ExchangeReceiver) -> Result<Envelope, Recv> {
    match rx.try_recv() {
        Err(Recv::Empty) => {
            crate::share::blocking(|| rx.recv()).map_err(|Disconnected| Recv::Disconnected)
        }
        other => other,
    }
}

/// The next message within `wait`; the CPU turn is given back while waiting.
fn recv_timeout(rx: &dyn ExchangeReceiver, wait: Duration) -> Result<Envelope, Recv> {
    match rx.try_recv() {
        Err(Recv::Empty) => crate::share::blocking(|| rx.recv_timeout(wait)),
        other => other,
    }
}

fn interrupted(task: &str) -> EngineError {
    EngineError::Task {
        task: task.to_string(),
        message: "stopped because a downstream task ended unexpectedly".into(),
    }
}

impl Tail {
    fn emit(&mut self, batch: RecordBatch) -> Result<(), EngineError> {
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

    fn emit_side(&mut self, port: usize, batch: RecordBatch) -> Result<(), EngineError> {
        match self {
            // A sink fused behind the node means nothing reads its side
            // outputs.
            Tail::Sink { .. } => Ok(()),
            Tail::Output(out) => out
                .send_port(port, batch)
                .map_err(|Disconnected| interrupted("output")),
        }
    }

    fn watermark(&mut self, wm: Watermark, subtask: usize) -> Result<(), EngineError> {
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

struct ChainCollector<'a> {
    rest: &'a mut [Chained],
    tail: &'a mut Tail,
    metrics: &'a NodeMetrics,
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
fn push(ops: &mut [Chained], tail: &mut Tail, batch: RecordBatch) -> Result<(), EngineError> {
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
fn walk_chain(
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
fn end_chain(ops: &mut [Chained], tail: &mut Tail) -> Result<(), EngineError> {
    walk_chain(ops, tail, |c, out| c.op.end_of_input(out))
}

/// The earliest processing-time timer of any operator of the chain.
fn next_processing_time(ops: &[Chained]) -> Option<i64> {
    ops.iter().filter_map(|c| c.op.next_processing_time()).min()
}

/// Fires the processing-time timers due at `now`, down the chain.
fn fire_processing_time(ops: &mut [Chained], tail: &mut Tail, now: i64) -> Result<(), EngineError> {
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

/// How long an input loop sleeps at most while a processing-time timer is
/// pending, so a timer (or a manual clock moved by a test) is seen promptly.
const TIMER_POLL: Duration = Duration::from_millis(10);

/// How often a sink task waiting for a checkpoint to complete (to commit)
/// looks for the completion when no message arrives.
const COMMIT_POLL: Duration = Duration::from_millis(5);

/// Advances event time down the chain: each operator sees the watermark
/// (and may emit what it completes) before the next one, then the tail.
fn push_watermark(
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

impl SubtaskContext {
    fn info(&self, node: &NodeSpec) -> SubtaskInfo {
        SubtaskInfo {
            job: self.flow.name.clone(),
            node: node.name.clone(),
            subtask: self.subtask,
            parallelism: self.parallelism,
            max_parallelism: self.flow.max_parallelism,
            clock: self.flow.clock.clone(),
            restored: self.flow.restore.clone(),
            state_backend: self.flow.state_backend.clone(),
            swaps: self.swaps().cloned(),
        }
    }

    /// The job's module swap board, if it checkpoints.
    fn swaps(&self) -> Option<&Arc<crate::swap::ModuleSwaps>> {
        self.flow.checkpoints.as_ref()?.swaps.as_ref()
    }

    /// Takes this subtask's part of checkpoint `id`: the source position (if
    /// any), each fused operator's state, the sink's; then passes the barrier
    /// on.
    fn checkpoint(
        &self,
        ops: &mut [Chained],
        tail: &mut Tail,
        id: CheckpointId,
        source: Option<(usize, Vec<u8>)>,
    ) -> Result<(), EngineError> {
        let Some(hooks) = &self.hooks else {
            return Ok(());
        };
        let ack = |node: usize, state: Result<SubtaskState, String>| {
            // The coordinator may be gone at shutdown; nothing to do then.
            let _ = hooks.acks.send(Ack {
                id,
                node,
                subtask: self.subtask,
                state,
                kind: AckKind::State,
            });
        };
        let savepoint = hooks.savepoint.load(std::sync::atomic::Ordering::SeqCst) == id;
        if let Some((node, position)) = source {
            ack(node, Ok(SubtaskState::operator(position)));
        }
        for c in ops.iter_mut() {
            let started = Instant::now();
            let pending = c.op.snapshot()?;
            hooks.stats.max_sync_us.fetch_max(
                started.elapsed().as_micros() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            match pending {
                PendingState::Ready(state) => ack(c.node, Ok(state)),
                PendingState::Deferred(task) => {
                    // The asynchronous part: written while processing goes on.
                    let node = &self.flow.nodes[c.node];
                    let target = SnapshotTarget {
                        id,
                        savepoint,
                        storage: hooks.storage.clone(),
                        label: crate::checkpoint::subtask_label(&node.name, self.subtask),
                        hooks: Some(hooks.clone()),
                    };
                    let (acks, node, subtask) = (hooks.acks.clone(), c.node, self.subtask);
                    let spawned = std::thread::Builder::new()
                        .name(format!("weir-snapshot-{}", target.label))
                        .spawn(move || {
                            let state = task(&target);
                            let _ = acks.send(Ack {
                                id,
                                node,
                                subtask,
                                state,
                                kind: AckKind::State,
                            });
                        });
                    if let Err(e) = spawned {
                        ack(c.node, Err(format!("cannot start a snapshot writer: {e}")));
                    }
                }
            }
            // A hot swap: the savepoint holds the old module's state; the
            // new module goes on from it, in place.
            let name = &self.flow.nodes[c.node].name;
            if let Some(swaps) = self.swaps().filter(|_| savepoint)
                && let Some((module, version)) = swaps.at_savepoint(name, id)
            {
                let result = c.op.swap_module(&module, &version);
                let pause = started.elapsed().as_micros() as u64;
                swaps.done(name, pause, result.clone());
                result.map_err(|e| EngineError::Node {
                    role: NodeRole::Operator,
                    node: name.clone(),
                    subtask: self.subtask,
                    source: format!("hot swap to `{}`: {e}", module.name()).into(),
                })?;
                tracing::info!(node = %name, subtask = self.subtask, to = %version, pause_us = pause, "module swapped at savepoint {id}");
            }
        }
        match tail {
            Tail::Sink {
                sink,
                node,
                subtask,
                id: node_id,
                ..
            } => {
                let position = sink.snapshot(id).map_err(|source| EngineError::Node {
                    role: NodeRole::Sink,
                    node: node.clone(),
                    subtask: *subtask,
                    source,
                })?;
                ack(*node_id, Ok(SubtaskState::operator(position)));
            }
            Tail::Output(out) => out
                .signal(Signal::Barrier(id))
                .map_err(|Disconnected| interrupted("output"))?,
        }
        Ok(())
    }

    /// Tells a sink at the end of this task about the newest checkpoint
    /// completed since it last heard (it commits what it pre-committed).
    fn notify_completed(
        &self,
        tail: &mut Tail,
        heard: &mut CheckpointId,
    ) -> Result<(), EngineError> {
        let (
            Some(h),
            Tail::Sink {
                sink,
                node,
                subtask,
                ..
            },
        ) = (&self.hooks, tail)
        else {
            return Ok(());
        };
        let last = h
            .stats
            .last_completed
            .load(std::sync::atomic::Ordering::SeqCst);
        if last <= *heard {
            return Ok(());
        }
        *heard = last;
        sink.checkpoint_complete(last)
            .map_err(|source| EngineError::Node {
                role: NodeRole::Sink,
                node: node.clone(),
                subtask: *subtask,
                source,
            })
    }

    /// Whether checkpoint `id` is a savepoint (always aligned).
    fn is_savepoint(&self, id: CheckpointId) -> bool {
        self.hooks
            .as_ref()
            .is_some_and(|h| h.savepoint.load(std::sync::atomic::Ordering::SeqCst) == id)
    }

    /// Tells the coordinator that checkpoint `id` waits for this subtask's
    /// in-flight records (sent before the snapshot, so it arrives first).
    fn expect_inflight(&self, id: CheckpointId, node: usize) {
        if let Some(h) = &self.hooks {
            let _ = h.acks.send(Ack {
                id,
                node,
                subtask: self.subtask,
                state: Ok(SubtaskState::default()),
                kind: AckKind::ExpectInflight,
            });
        }
    }

    /// Sends the in-flight records captured for unaligned checkpoint `id`.
    fn send_inflight(&self, id: CheckpointId, node: usize, captured: &[RecordBatch]) {
        if let Some(h) = &self.hooks {
            let _ = h.acks.send(Ack {
                id,
                node,
                subtask: self.subtask,
                state: Ok(SubtaskState {
                    inflight: crate::checkpoint::encode_records(captured),
                    ..SubtaskState::default()
                }),
                kind: AckKind::Inflight,
            });
        }
    }

    fn node_error(&self, node: &NodeSpec, source: crate::BoxError) -> EngineError {
        EngineError::Node {
            role: node.role(),
            node: node.name.clone(),
            subtask: self.subtask,
            source,
        }
    }

    /// Thread body: runs the subtask and records its failure before its
    /// channels close, so the root cause is recorded before the
    /// disconnections it causes.
    fn run(self, input: Option<TaskInput>, edges: Vec<EdgeSender>) {
        let mut source = None;
        let result = self.run_inner(input.as_ref(), edges, &mut source);
        if let Err((e, secondary)) = result {
            // A disconnection seen after the job was cancelled is a
            // consequence, not a cause.
            self.control.fail(e, secondary);
        }
        drop(source);
        drop(input);
    }

    /// An error of this subtask, marked secondary when the job was already
    /// being cancelled: a task stopped by another's failure is a
    /// consequence, not a cause.
    fn classify(&self, e: EngineError) -> (EngineError, bool) {
        let secondary = matches!(e, EngineError::Task { .. }) && self.control.cancelled();
        (e, secondary)
    }

    /// The loop of a source subtask: read a batch, stamp watermarks (per
    /// split for sources that read several), push it down the chain; take
    /// part in each checkpoint the coordinator triggers, with the source's
    /// position.
    fn run_source(
        &self,
        source: &mut dyn Source,
        ops: &mut [Chained],
        tail: &mut Tail,
        heard: &mut CheckpointId,
    ) -> Result<(), (EngineError, bool)> {
        let primary = |e| (e, false);
        let classify = |e| self.classify(e);
        let flow = &*self.flow;
        let head = &flow.nodes[self.nodes[0]];
        let subtask = self.subtask;
        let source_metrics = self.metrics.node(self.nodes[0]);
        let mut watermarks = WatermarkGenerator::new(head.watermarks, head.idle_timeout);
        // Per split (partition), for sources that read several.
        let mut split_watermarks =
            crate::watermark::SplitWatermarks::new(head.watermarks, head.idle_timeout);
        // The checkpoint restored from: a checkpoint triggered while
        // this source was still opening (a Kafka source takes a while)
        // is one it must take part in.
        let mut last_barrier = flow.restore.as_ref().map_or(0, |r| r.id);
        while !self.control.cancelled() {
            crate::share::checkpoint();
            self.notify_completed(tail, heard).map_err(primary)?;
            if let Some(h) = &self.hooks {
                let t = h.trigger.load(std::sync::atomic::Ordering::SeqCst);
                if t > last_barrier {
                    last_barrier = t;
                    let position = Some((self.nodes[0], source.position()));
                    self.checkpoint(ops, tail, t, position).map_err(classify)?;
                }
            }
            if let Some(t) = next_processing_time(ops) {
                let now = flow.clock.now_ms();
                if t <= now {
                    fire_processing_time(ops, tail, now).map_err(classify)?;
                }
            }
            let batch = match source.next_batch() {
                Ok(Some(b)) => b,
                Ok(None) => break,
                Err(e) => return Err(primary(self.node_error(head, e))),
            };
            let now = Instant::now();
            let splits = source.splits();
            let mut emit = splits.and_then(|s| split_watermarks.set_splits(s.assigned));
            if batch.is_empty() {
                // Nothing to read right now: perhaps idle.
                let quiet = match splits {
                    Some(_) => split_watermarks.on_no_data(now),
                    None => watermarks.on_no_data(now),
                };
                match (emit.or(quiet), &mut *tail) {
                    (Some(Emit::Idle), Tail::Output(out)) => {
                        out.signal(Signal::Idle)
                            .map_err(|Disconnected| (interrupted(&head.name), true))?;
                    }
                    (Some(Emit::Watermark(wm)), _) => {
                        source_metrics.set_watermark(subtask, wm);
                        push_watermark(ops, tail, wm, subtask).map_err(classify)?;
                    }
                    _ => {}
                }
                continue;
            }
            let advanced = match splits {
                Some(s) => split_watermarks.on_batch(&batch.timestamps, s.rows, now),
                None => watermarks.on_batch(&batch.timestamps, now),
            };
            emit = advanced.or(emit);
            source_metrics.add_out(batch.len());
            push(ops, tail, batch).map_err(classify)?;
            if let Some(Emit::Watermark(wm)) = emit {
                source_metrics.set_watermark(subtask, wm);
                push_watermark(ops, tail, wm, subtask).map_err(classify)?;
            }
        }
        // No checkpoint can complete once a source has ended.
        self.sources_ending
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // The input is exhausted (or stopped): all of event time has
        // passed, unless the job is stopped without draining.
        if self.control.draining() {
            source_metrics.set_watermark(subtask, Watermark::MAX);
            push_watermark(ops, tail, Watermark::MAX, subtask).map_err(classify)?;
        }
        Ok(())
    }

    /// The loop of a subtask fed by other subtasks: receive, let the
    /// barrier aligner decide ([`crate::checkpoint::aligner`]), carry the
    /// decision out.
    fn run_input(
        &self,
        input: &TaskInput,
        ops: &mut [Chained],
        tail: &mut Tail,
        heard: &mut CheckpointId,
    ) -> Result<(), (EngineError, bool)> {
        use crate::checkpoint::aligner::{BarrierAligner, Event};
        let primary = |e| (e, false);
        let classify = |e| self.classify(e);
        let flow = &*self.flow;
        let head = &flow.nodes[self.nodes[0]];
        let subtask = self.subtask;
        let mut time = WatermarkCombiner::new(input.producers);
        let unaligned = self
            .hooks
            .as_ref()
            .is_some_and(|h| h.mode == crate::checkpoint::Mode::Unaligned);
        let mut aligner = BarrierAligner::new(input.producers, unaligned);
        // The in-flight records of the unaligned checkpoint being taken.
        let mut captured: Vec<RecordBatch> = Vec::new();
        // In-flight records of the unaligned checkpoint restored from go
        // first.
        if let Some(restored) = &flow.restore {
            let batch = restored
                .inflight(&head.name, subtask, self.parallelism)
                .map_err(|e| primary(self.node_error(head, e.into())))?;
            if let Some(batch) = batch {
                push(ops, tail, batch).map_err(classify)?;
            }
        }
        while !aligner.finished() {
            crate::share::checkpoint();
            self.notify_completed(tail, heard).map_err(primary)?;
            let Some((slot, msg)) = self.receive(input, &mut aligner, ops, tail)? else {
                continue;
            };
            let event = match &msg {
                Message::Data(_) => Event::Data,
                Message::Signal(Signal::Barrier(id)) => Event::Barrier {
                    id: *id,
                    savepoint: self.is_savepoint(*id),
                },
                Message::Signal(Signal::EndOfData) => Event::End,
                Message::Signal(_) => Event::Signal,
            };
            let decision = aligner.on_event(slot, event, Instant::now());
            if decision.hold {
                aligner.hold(slot, msg);
                continue;
            }
            if decision.process {
                let advanced = match msg {
                    Message::Data(batch) => {
                        time.on_data(slot);
                        if decision.capture {
                            captured.push(batch.clone());
                        }
                        push(ops, tail, batch).map_err(classify)?;
                        None
                    }
                    Message::Signal(Signal::Watermark(wm)) => time.on_watermark(slot, wm),
                    Message::Signal(Signal::Idle) => {
                        let advanced = time.on_idle(slot);
                        // When every input is idle, so is this task's output.
                        if let (true, Tail::Output(out)) = (time.all_idle(), &mut *tail) {
                            out.signal(Signal::Idle)
                                .map_err(|Disconnected| (interrupted(&head.name), true))?;
                        }
                        advanced
                    }
                    Message::Signal(Signal::EndOfData) => {
                        time.on_end(slot).filter(|_| self.control.draining())
                    }
                    Message::Signal(Signal::Barrier(_)) => None,
                };
                if let Some(wm) = advanced {
                    push_watermark(ops, tail, wm, subtask).map_err(classify)?;
                }
            }
            if let Some(snapshot) = decision.snapshot {
                if snapshot.unaligned {
                    self.expect_inflight(snapshot.id, self.nodes[0]);
                    captured.clear();
                } else if let Some(h) = &self.hooks {
                    h.stats.max_alignment_ms.fetch_max(
                        snapshot.aligned_for.as_millis() as u64,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                }
                self.checkpoint(ops, tail, snapshot.id, None)
                    .map_err(classify)?;
            }
            if let Some(id) = decision.inflight_complete {
                self.send_inflight(id, self.nodes[0], &std::mem::take(&mut captured));
            }
        }
        Ok(())
    }

    /// The next message: one the aligner gives back, else one from the
    /// channel, waiting at most until the next processing-time timer (fired
    /// here) or, while the sink awaits a commit, a poll interval. `None`
    /// when the wait ended without a message.
    fn receive(
        &self,
        input: &TaskInput,
        aligner: &mut crate::checkpoint::aligner::BarrierAligner<Message>,
        ops: &mut [Chained],
        tail: &mut Tail,
    ) -> Result<Option<(usize, Message)>, (EngineError, bool)> {
        if let Some(m) = aligner.replayed() {
            return Ok(Some(m));
        }
        let classify = |e| self.classify(e);
        let awaiting = matches!(&*tail, Tail::Sink { sink, .. } if sink.awaiting_commit());
        let received = match next_processing_time(ops) {
            None if awaiting => recv_timeout(&*input.receiver, COMMIT_POLL),
            None => recv(&*input.receiver),
            Some(t) => {
                let now = self.flow.clock.now_ms();
                if t <= now {
                    fire_processing_time(ops, tail, now).map_err(classify)?;
                    return Ok(None);
                }
                let wait = Duration::from_millis((t - now) as u64).min(TIMER_POLL);
                recv_timeout(&*input.receiver, wait)
            }
        };
        match received {
            Ok((slot, msg)) => Ok(Some((slot as usize, msg))),
            Err(Recv::Empty) => Ok(None),
            Err(Recv::Disconnected) => Err((
                EngineError::Task {
                    task: self.flow.nodes[self.nodes[0]].name.clone(),
                    message: "an upstream task ended unexpectedly".into(),
                },
                true,
            )),
        }
    }

    fn run_inner(
        &self,
        input: Option<&TaskInput>,
        edges: Vec<EdgeSender>,
        source_slot: &mut Option<Box<dyn Source>>,
    ) -> Result<(), (EngineError, bool)> {
        let primary = |e| (e, false);
        let flow = &*self.flow;
        let tail_id = *self
            .nodes
            .last()
            .ok_or_else(|| primary(interrupted("empty chain")))?;
        let tail_node = &flow.nodes[tail_id];

        // Build the nodes of the chain, on this thread (restoring their state).
        let building = Instant::now();
        let mut ops = Vec::new();
        for &id in &self.nodes {
            let node = &flow.nodes[id];
            match &node.kind {
                NodeKind::Source(f) => {
                    // Opening a connector waits on the network, not the CPU.
                    let s = crate::share::blocking(|| f.create(&self.info(node)))
                        .map_err(|e| primary(self.node_error(node, e)))?;
                    *source_slot = Some(s);
                }
                NodeKind::Operator(f) => {
                    let op = f
                        .create(&self.info(node))
                        .map_err(|e| primary(self.node_error(node, e)))?;
                    ops.push(Chained {
                        op,
                        metrics: self.metrics.node(id),
                        node: id,
                    });
                }
                NodeKind::Sink(_) => {}
            }
        }
        let mut tail = match &tail_node.kind {
            NodeKind::Sink(f) => Tail::Sink {
                sink: crate::share::blocking(|| f.create(&self.info(tail_node)))
                    .map_err(|e| primary(self.node_error(tail_node, e)))?,
                metrics: self.metrics.node(tail_id),
                node: tail_node.name.clone(),
                subtask: self.subtask,
                id: tail_id,
            },
            _ => Tail::Output(TaskOutput::new(edges, self.metrics.node(tail_id))),
        };
        let classify = |e| self.classify(e);
        if let (Some(_), Some(h)) = (&flow.restore, &self.hooks) {
            h.stats.restore_ms.fetch_max(
                building.elapsed().as_millis() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }

        // The newest completed checkpoint the sink was told of.
        let mut heard = flow.restore.as_ref().map_or(0, |r| r.id);
        if let Some(source) = source_slot.as_mut() {
            self.run_source(&mut **source, &mut ops, &mut tail, &mut heard)?;
        } else if let Some(input) = input {
            self.run_input(input, &mut ops, &mut tail, &mut heard)?;
        }

        // End of input: drain the chain (unless stopped without draining),
        // then finish the sink or tell the consumers.
        if self.control.draining() {
            end_chain(&mut ops, &mut tail).map_err(classify)?;
        }
        let cancelled = self.control.cancelled();
        match &mut tail {
            Tail::Sink { sink, .. } => if cancelled {
                sink.cancel()
            } else {
                sink.finish()
            }
            .map_err(|e| primary(self.node_error(tail_node, e))),
            Tail::Output(out) => out
                .signal(Signal::EndOfData)
                .map_err(|Disconnected| (interrupted(&tail_node.name), true)),
        }
    }
}
