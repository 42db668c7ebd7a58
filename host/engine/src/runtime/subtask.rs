//! One subtask's thread: builds its fused nodes, then runs the source loop
//! ([`SubtaskContext::run_source`]) or the input loop
//! ([`SubtaskContext::run_input`], [`SubtaskContext::receive`]) carrying out
//! the barrier aligner's decisions, and takes its part of each checkpoint.

use super::chain::*;
use super::*;
use crate::checkpoint::SnapshotError;

pub(super) struct SubtaskContext {
    pub(super) hooks: Option<CheckpointHooks>,
    pub(super) sources_ending: Arc<AtomicBool>,
    pub(super) flow: Arc<Dataflow>,
    pub(super) nodes: Vec<usize>,
    pub(super) subtask: usize,
    pub(super) parallelism: usize,
    pub(super) metrics: Arc<JobMetrics>,
    pub(super) control: Arc<JobControl>,
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

/// How long an input loop sleeps at most while a processing-time timer is
/// pending, so a timer (or a manual clock moved by a test) is seen promptly.
const TIMER_POLL: Duration = Duration::from_millis(10);

/// How often a sink task waiting for a checkpoint to complete (to commit)
/// looks for the completion when no message arrives.
const COMMIT_POLL: Duration = Duration::from_millis(5);

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
        let ack = |node: usize, state: Result<SubtaskState, SnapshotError>| {
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
                            let state = task(&target).map_err(SnapshotError::from);
                            let _ = acks.send(Ack {
                                id,
                                node,
                                subtask,
                                state,
                                kind: AckKind::State,
                            });
                        });
                    if let Err(e) = spawned {
                        ack(c.node, Err(SnapshotError::WriterThread(e)));
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
                swaps.done(name, pause, result.as_ref().map(|_| ()));
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
    pub(super) fn run(self, input: Option<TaskInput>, edges: Vec<EdgeSender>) {
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
