//! The three roles a node plays, and the factories that build them.
//!
//! Factories are shared by all subtasks of a node and are called on the
//! subtask's own thread, so a Wasm instance is created where it will run.

use weir_record::RecordBatch;

use crate::BoxError;
use crate::error::EngineError;

/// Where a node instance runs.
#[derive(Clone, Debug)]
pub struct SubtaskInfo {
    /// Job name.
    pub job: String,
    /// Node name.
    pub node: String,
    /// This subtask's index, `0..parallelism`.
    pub subtask: usize,
    /// Number of subtasks of the node.
    pub parallelism: usize,
    /// Number of key groups of the job.
    pub max_parallelism: u32,
    /// The job's processing-time clock.
    pub clock: std::sync::Arc<dyn crate::time::Clock>,
    /// The checkpoint the job restores from, if any.
    pub restored: Option<std::sync::Arc<crate::checkpoint::RestoredJob>>,
    /// Where keyed state lives.
    pub state_backend: weir_state::Backend,
    /// Module swaps posted for the running job (hot swap).
    pub swaps: Option<std::sync::Arc<crate::swap::ModuleSwaps>>,
}

impl SubtaskInfo {
    /// Subtask `subtask` of `parallelism` of node `node` in job `job`, with
    /// the default key groups and the system clock (for tests and tools).
    pub fn new(job: &str, node: &str, subtask: usize, parallelism: usize) -> Self {
        Self {
            job: job.to_string(),
            node: node.to_string(),
            subtask,
            parallelism,
            max_parallelism: crate::key_group::DEFAULT_MAX_PARALLELISM,
            clock: crate::time::system_clock(),
            restored: None,
            state_backend: weir_state::Backend::Heap,
            swaps: None,
        }
    }

    /// A fresh keyed-state store for this subtask, in the job's backend.
    ///
    /// # Errors
    /// A store that cannot be opened.
    pub fn open_state_store(&self) -> Result<Box<dyn weir_state::StateStore>, BoxError> {
        Ok(self
            .state_backend
            .open(&format!("{}-{}-{}", self.job, self.node, self.subtask))?)
    }

    /// This subtask's state in the checkpoint the job restores from: its own
    /// non-keyed state and the keyed state of the key groups it owns.
    ///
    /// # Errors
    /// State that cannot be restored at this parallelism, or malformed.
    pub fn restored_state(&self) -> Result<Option<crate::checkpoint::SubtaskState>, BoxError> {
        match &self.restored {
            None => Ok(None),
            Some(r) => Ok(r.subtask(
                &self.node,
                self.subtask,
                self.parallelism,
                self.max_parallelism,
                matches!(self.state_backend, weir_state::Backend::RocksDb { .. }),
            )?),
        }
    }
}

impl SubtaskInfo {
    /// The non-keyed state of every subtask of this node in the checkpoint
    /// the job restores from (any parallelism), for state that is split
    /// anew on restore; empty when not restoring.
    pub fn restored_union_state(&self) -> Vec<Vec<u8>> {
        self.restored
            .as_ref()
            .map(|r| r.operator_union(&self.node))
            .unwrap_or_default()
    }
}

/// Receives the output batches of an operator.
pub trait Collector {
    /// Passes one batch downstream.
    ///
    /// # Errors
    /// A downstream failure; the operator must return it unchanged.
    fn collect(&mut self, batch: RecordBatch) -> Result<(), EngineError>;

    /// Passes one batch to side output `port` (1 for the node's first
    /// `side_outputs` name, and so on). Dropped when nothing reads it.
    ///
    /// # Errors
    /// As [`Collector::collect`].
    fn collect_side(&mut self, port: usize, batch: RecordBatch) -> Result<(), EngineError> {
        let _ = (port, batch);
        Ok(())
    }
}

/// A stream operator: one instance per subtask, driven by one thread.
///
/// Ordering guarantees: `process_batch` is called once per input batch, in the
/// order the batches arrive from each input; `end_of_input` is called once,
/// after the last batch of every input, and never after an error.
pub trait Operator: Send {
    /// Processes one batch, handing results to `out`.
    ///
    /// # Errors
    /// The operator's own failure (made with [`EngineError::Node`] naming it),
    /// or a downstream error returned by `out`, passed on unchanged.
    fn process_batch(
        &mut self,
        batch: RecordBatch,
        out: &mut dyn Collector,
    ) -> Result<(), EngineError>;

    /// Called when event time advances to `watermark` at this operator,
    /// before the watermark is passed downstream: an operator that waits for
    /// time (a window) emits what the watermark completes. The default does
    /// nothing.
    ///
    /// # Errors
    /// As [`Operator::process_batch`].
    fn on_watermark(
        &mut self,
        watermark: crate::watermark::Watermark,
        out: &mut dyn Collector,
    ) -> Result<(), EngineError> {
        let _ = (watermark, out);
        Ok(())
    }

    /// The earliest processing time (ms, on the job's clock) at which the
    /// operator wants [`Operator::on_processing_time`]; `None` for no timer.
    fn next_processing_time(&self) -> Option<i64> {
        None
    }

    /// Called when the job's clock has reached the time returned by
    /// [`Operator::next_processing_time`]: fire processing-time triggers
    /// and timers due at `now`. The default does nothing.
    ///
    /// # Errors
    /// As [`Operator::process_batch`].
    fn on_processing_time(&mut self, now: i64, out: &mut dyn Collector) -> Result<(), EngineError> {
        let _ = (now, out);
        Ok(())
    }

    /// Snapshots the operator's state for a checkpoint, when the barrier
    /// passes it: only what must happen at the barrier (freezing the
    /// state); the writing is deferred to a writer thread. The default has
    /// no state.
    ///
    /// # Errors
    /// As [`Operator::process_batch`].
    fn snapshot(&mut self) -> Result<crate::checkpoint::PendingState, EngineError> {
        Ok(crate::checkpoint::PendingState::Ready(
            crate::checkpoint::SubtaskState::default(),
        ))
    }

    /// Called when all inputs have ended; may emit final results. The default
    /// does nothing.
    ///
    /// # Errors
    /// As [`Operator::process_batch`].
    fn end_of_input(&mut self, out: &mut dyn Collector) -> Result<(), EngineError> {
        let _ = out;
        Ok(())
    }

    /// Replaces the operator's module with `module` while the job runs (a
    /// hot swap, see [`crate::swap`]), keeping its state; `version` names
    /// the module in the state it writes. Called at a savepoint's barrier,
    /// after [`Operator::snapshot`]. The default cannot swap.
    ///
    /// # Errors
    /// Why the swap failed (the new instance did not start, its migration
    /// failed); the old module may be gone, so the subtask fails.
    fn swap_module(
        &mut self,
        module: &crate::swap::ModuleHandle,
        version: &str,
    ) -> Result<(), crate::swap::SwapError> {
        let _ = version;
        Err(crate::swap::SwapError::Unsupported {
            module: module.name().to_string(),
        })
    }
}

/// Builds the operator instance of each subtask.
pub trait OperatorFactory: Send + Sync {
    /// Creates the instance for `info.subtask`.
    ///
    /// # Errors
    /// Why the instance cannot be created (for a Wasm UDF: instantiation or
    /// `init` failed).
    fn create(&self, info: &SubtaskInfo) -> Result<Box<dyn Operator>, BoxError>;
}

/// A source of records; each subtask reads its own split.
pub trait Source: Send {
    /// The next batch, or `None` when the (bounded) input is exhausted.
    ///
    /// # Errors
    /// A failure to read, with enough context to find the bad input (file and
    /// line, for instance).
    fn next_batch(&mut self) -> Result<Option<RecordBatch>, BoxError>;

    /// Where the split stands, for a checkpoint: the factory restores from
    /// it ([`SubtaskInfo::restored_state`]). Empty for a source that cannot
    /// rewind (then a restored job starts it from the beginning).
    fn position(&self) -> Vec<u8> {
        Vec::new()
    }

    /// For a source that reads several splits (a topic's partitions): the
    /// splits it reads now, and the split of each row of the batch it last
    /// returned. Watermarks are then generated per split and combined
    /// ([`crate::watermark::SplitWatermarks`]). `None` (the default): one
    /// watermark for the subtask.
    fn splits(&self) -> Option<SplitInfo<'_>> {
        None
    }
}

/// See [`Source::splits`].
#[derive(Clone, Copy, Debug)]
pub struct SplitInfo<'a> {
    /// The splits read now (a finished one is left out).
    pub assigned: &'a [u32],
    /// The split of each row of the last batch.
    pub rows: &'a [u32],
}

/// Builds the source split of each subtask.
pub trait SourceFactory: Send + Sync {
    /// Creates the reader of split `info.subtask` of `info.parallelism`.
    ///
    /// # Errors
    /// Why the source cannot be opened.
    fn create(&self, info: &SubtaskInfo) -> Result<Box<dyn Source>, BoxError>;
}

/// A sink of records.
pub trait Sink: Send {
    /// Writes one batch.
    ///
    /// # Errors
    /// A failure to write.
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), BoxError>;

    /// Flushes everything; called once at the end of the input.
    ///
    /// # Errors
    /// A failure to flush.
    fn finish(&mut self) -> Result<(), BoxError>;

    /// Called when barrier `checkpoint` reaches the sink: makes everything
    /// written so far durable (or pre-commits it, for a transactional sink)
    /// and returns what a restore needs to go back to exactly this point.
    /// The default keeps nothing.
    ///
    /// # Errors
    /// A failure to flush.
    fn snapshot(
        &mut self,
        checkpoint: crate::checkpoint::CheckpointId,
    ) -> Result<Vec<u8>, BoxError> {
        let _ = checkpoint;
        Ok(Vec::new())
    }

    /// Checkpoint `checkpoint` completed (every subtask of the job
    /// acknowledged it and its metadata is written): a transactional sink
    /// commits what it pre-committed up to it. Called on the sink's thread,
    /// soon after completion, with the newest completed id (earlier ones may
    /// be skipped). The default does nothing.
    ///
    /// # Errors
    /// A failure to commit; the job fails and restarts from its checkpoint.
    fn checkpoint_complete(
        &mut self,
        checkpoint: crate::checkpoint::CheckpointId,
    ) -> Result<(), BoxError> {
        let _ = checkpoint;
        Ok(())
    }

    /// Called instead of [`Sink::finish`] when the job is cancelled before
    /// its input ended: what came after the last completed checkpoint will
    /// be written again by a restart, so a transactional sink aborts it.
    /// The default finishes.
    ///
    /// # Errors
    /// As [`Sink::finish`].
    fn cancel(&mut self) -> Result<(), BoxError> {
        self.finish()
    }

    /// Whether the sink holds pre-committed output waiting for
    /// [`Sink::checkpoint_complete`]: its task then wakes up often enough
    /// to deliver the notification even when no record arrives.
    fn awaiting_commit(&self) -> bool {
        false
    }
}

/// Builds the sink of each subtask.
pub trait SinkFactory: Send + Sync {
    /// Creates the writer of subtask `info.subtask`.
    ///
    /// # Errors
    /// Why the sink cannot be opened.
    fn create(&self, info: &SubtaskInfo) -> Result<Box<dyn Sink>, BoxError>;
}
