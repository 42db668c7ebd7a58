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
use crate::checkpoint::remote::PartCoordinator;
use crate::checkpoint::{
    Ack, AckKind, CheckpointHooks, CheckpointId, CheckpointStats, Coordinator, PartLink,
    PendingState, SnapshotTarget, SubtaskState,
};
use crate::error::{BoxError, EngineError};
use crate::graph::{Dataflow, NodeKind, NodeSpec};
use crate::message::{Message, Signal};
use crate::metrics::{JobMetrics, NodeMetrics, NodeRole, NodeSnapshot};
use crate::node::{Collector, Operator, Sink, Source, SubtaskInfo};
use crate::plan::{Partitioning, TaskPlan, plan};
use crate::watermark::{Emit, Watermark, WatermarkCombiner, WatermarkGenerator};

mod chain;
mod subtask;

use subtask::SubtaskContext;

/// A running job.
pub struct JobHandle {
    checkpoints: Arc<CheckpointStats>,
    metrics: Arc<JobMetrics>,
    control: Arc<JobControl>,
    threads: Vec<(String, JoinHandle<()>)>,
    plan: TaskPlan,
    /// Inputs open to other processes (a spread job), until the job ends.
    _hosted: Vec<Box<dyn Send>>,
    /// The placement of a spread job (its data port serves until the job
    /// ends).
    _placement: Option<Arc<dyn Placement>>,
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
    /// How a part of a spread job ends its inputs when it fails (set once).
    teardown: std::sync::OnceLock<Teardown>,
}

/// The inputs of a spread job's local consumers. In one process a failure
/// winds a job down by disconnection: a failed task's channels close, and a
/// consumer whose producers are all gone ends. A consumer fed from other
/// workers cannot count on that (its exchange stays open to them), so when
/// the part fails, every local input is ended here instead: an end of data
/// for every producer slot, without draining, as a stop does.
struct Teardown {
    inputs: Vec<(Arc<dyn ExchangeSender>, u32)>,
    started: AtomicBool,
}

impl Teardown {
    fn run(&self) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut pending: Vec<(Arc<dyn ExchangeSender>, u32)> = self
            .inputs
            .iter()
            .flat_map(|(tx, producers)| (0..*producers).map(move |slot| (tx.clone(), slot)))
            .collect();
        // Never blocks the failing thread: a full input is retried until its
        // consumer takes the end or is gone.
        let spawned = std::thread::Builder::new()
            .name("weir-teardown".into())
            .spawn(move || {
                while !pending.is_empty() {
                    pending.retain(|(tx, slot)| {
                        matches!(
                            tx.try_send((*slot, Message::Signal(Signal::EndOfData))),
                            Err(crate::channel::TrySend::Full(_))
                        )
                    });
                    if !pending.is_empty() {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the teardown of a failed job part: {e}");
        }
    }
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
        drop(errors);
        let teardown = self.teardown.get();
        if teardown.is_some() {
            // A failed part of a spread job commits nothing and fires
            // nothing: it stops, as a stop does.
            self.no_drain.store(true, Ordering::SeqCst);
        }
        self.cancel.store(true, Ordering::SeqCst);
        if let Some(t) = teardown {
            t.run();
        }
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

/// Where the subtasks of a job spread over several processes run, and how
/// this process reaches the others. Task and subtask indices are those of
/// [`plan`], which every process computes alike from the same dataflow.
pub trait Placement: Send + Sync {
    /// Whether subtask `subtask` of task `task` runs in this process.
    fn is_local(&self, task: usize, subtask: usize) -> bool;

    /// Opens the input exchange of a consumer subtask that runs elsewhere
    /// (waiting, within a bound, for its process to host it).
    ///
    /// # Errors
    /// The other process cannot be reached or refuses.
    fn connect(&self, task: usize, subtask: usize) -> Result<Arc<dyn ExchangeSender>, BoxError>;

    /// Opens the input exchange of a local consumer subtask to producers
    /// elsewhere: what they send goes into `exchange`, whose producers hold
    /// slots `0..producers` (a message for another slot is refused). `broken`
    /// hears of a remote producer lost before the end of its data. The
    /// returned guard keeps the exchange open until the job ends.
    ///
    /// # Errors
    /// The exchange cannot be opened.
    fn host(
        &self,
        task: usize,
        subtask: usize,
        producers: usize,
        exchange: Arc<dyn ExchangeSender>,
        broken: Box<dyn Fn(String) + Send + Sync>,
    ) -> Result<Box<dyn Send>, BoxError>;
}

/// Plans and starts `flow`; returns at once with a handle.
///
/// # Errors
/// [`EngineError::InvalidDataflow`] for a malformed graph,
/// [`EngineError::Task`] if a thread cannot be started.
pub fn run(flow: Dataflow) -> Result<JobHandle, EngineError> {
    start(flow, None)
}

/// Starts this process's part of `flow`, spread over several processes by
/// `placement`: the subtasks it places here, fed by local exchanges and by
/// network exchanges from the others. Each process of the job calls it
/// with the same dataflow; the job ends when every part has.
///
/// A dataflow that checkpoints needs `link` to its controller, which
/// triggers and completes checkpoints
/// ([`crate::checkpoint::JobCoordinator`]): this part writes its subtasks'
/// states to the shared checkpoint storage and acknowledges through it.
///
/// # Errors
/// As [`run`]; [`EngineError::Task`] when a remote exchange cannot be
/// opened; [`EngineError::InvalidDataflow`] for a checkpointed dataflow
/// without a link.
pub fn run_placed(
    flow: Dataflow,
    placement: Arc<dyn Placement>,
    link: Option<PartLink>,
) -> Result<JobHandle, EngineError> {
    if flow.checkpoints.is_some() && link.is_none() {
        return Err(EngineError::InvalidDataflow(format!(
            "job `{}`: a job spread over several workers checkpoints through its controller, \
             and none is linked",
            flow.name
        )));
    }
    start(flow, Some((placement, link)))
}

fn start(
    flow: Dataflow,
    placed: Option<(Arc<dyn Placement>, Option<PartLink>)>,
) -> Result<JobHandle, EngineError> {
    flow.validate()?;
    let (placement, link) = match placed {
        Some((p, link)) => (Some(p), link),
        None => (None, None),
    };
    let plan = plan(&flow);
    let local = |t: usize, s: usize| placement.as_ref().is_none_or(|p| p.is_local(t, s));
    let metrics = Arc::new(JobMetrics::new(
        flow.name.clone(),
        flow.nodes
            .iter()
            .map(|n| (n.name.clone(), n.role(), n.parallelism))
            .collect(),
    ));
    let control = Arc::new(JobControl::default());

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

    // One input exchange per consumer subtask of this process, open to
    // the producers elsewhere; a network exchange to each consumer subtask
    // elsewhere.
    type Exchange = (Arc<dyn ExchangeSender>, Box<dyn ExchangeReceiver>);
    let mut inputs: Vec<Vec<Option<Exchange>>> = plan
        .tasks
        .iter()
        .enumerate()
        .map(|(t, task)| {
            (0..task.parallelism)
                .map(|s| local(t, s).then(|| crate::channel::local(flow.channel_capacity)))
                .collect()
        })
        .collect();
    let mut hosted: Vec<Box<dyn Send>> = Vec::new();
    if let Some(p) = &placement {
        let _ = control.teardown.set(Teardown {
            inputs: inputs
                .iter()
                .enumerate()
                .flat_map(|(t, subs)| {
                    let n = producers[t] as u32;
                    subs.iter().flatten().map(move |(tx, _)| (tx.clone(), n))
                })
                .collect(),
            started: AtomicBool::new(false),
        });
        for (t, subs) in inputs.iter().enumerate() {
            for (s, exchange) in subs.iter().enumerate() {
                let Some((sender, _)) = exchange else {
                    continue;
                };
                let control = control.clone();
                let task = plan.tasks[t].name.clone();
                let broken = Box::new(move |why: String| {
                    control.fail(
                        EngineError::Task {
                            task: format!("{task}#{s}"),
                            message: format!("lost a remote producer: {why}"),
                        },
                        false,
                    );
                });
                hosted.push(
                    p.host(t, s, producers[t], sender.clone(), broken)
                        .map_err(|e| EngineError::Task {
                            task: format!("{}#{s}", plan.tasks[t].name),
                            message: format!("cannot open its input to other workers: {e}"),
                        })?,
                );
            }
        }
    }
    let mut senders: Vec<Vec<Arc<dyn ExchangeSender>>> = Vec::with_capacity(inputs.len());
    for (t, subs) in inputs.iter().enumerate() {
        let mut to_task = Vec::with_capacity(subs.len());
        for (s, exchange) in subs.iter().enumerate() {
            let sender = match (exchange, &placement) {
                (Some((sender, _)), _) => Ok(sender.clone()),
                (None, Some(p)) => p.connect(t, s),
                // Without a placement every subtask is local.
                (None, None) => Err("no exchange".into()),
            };
            to_task.push(sender.map_err(|e| EngineError::Task {
                task: format!("{}#{s}", plan.tasks[t].name),
                message: format!("cannot reach it on its worker: {e}"),
            })?);
        }
        senders.push(to_task);
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
            let nodes: Vec<(String, usize)> = flow
                .nodes
                .iter()
                .map(|n| (n.name.clone(), n.parallelism))
                .collect();
            let run: Box<dyn FnOnce() + Send> = match link {
                None => {
                    let c = Coordinator {
                        config: config.clone(),
                        job: flow.name.clone(),
                        nodes,
                        shared: (&hooks).into(),
                        acks: rx,
                        sources_ending: sources_ending.clone(),
                        first_id,
                    };
                    Box::new(move || c.run())
                }
                Some(link) => {
                    // Every node subtask placed here acknowledges.
                    let local_subtasks = plan
                        .tasks
                        .iter()
                        .enumerate()
                        .map(|(t, task)| {
                            (0..task.parallelism).filter(|&s| local(t, s)).count()
                                * task.nodes.len()
                        })
                        .sum();
                    let c = PartCoordinator {
                        config: config.clone(),
                        nodes,
                        local: local_subtasks,
                        shared: (&hooks).into(),
                        acks: rx,
                        sources_ending: sources_ending.clone(),
                        link,
                        first_id,
                    };
                    Box::new(move || c.run())
                }
            };
            coordinator = Some(
                std::thread::Builder::new()
                    .name("weir-checkpoints".into())
                    .spawn({
                        // The caller's span (a server's tenant and job) goes
                        // with every thread of the job.
                        let span = tracing::Span::current();
                        move || span.in_scope(run)
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
            if !local(t, subtask) {
                continue;
            }
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
        _hosted: hosted,
        _placement: placement,
    })
}
