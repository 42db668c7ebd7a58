//! The window operator: Flink's `WindowOperator` with the window function in a
//! Wasm component.
//!
//! The host does all the windowing: it assigns each record to windows (per
//! key), keeps each pane's contents in keyed state — an accumulator for an
//! incremental aggregate, the records themselves for a process-window
//! function or when an evictor is set — runs the trigger, and drops a pane
//! once the watermark passes its end plus the allowed lateness. The guest is
//! called a batch at a time: one `add` per input batch for all panes it
//! touches, one `get-results` or `process` for all panes that fire together.
//!
//! Semantics, as Flink documents them:
//! * the event-time trigger fires a pane when the watermark reaches the
//!   window's last millisecond, and again for every record that arrives
//!   within the allowed lateness (each such firing includes the record);
//! * a record whose every window is past its allowed lateness goes to the
//!   late side output (or is dropped when there is none);
//! * the count trigger fires every `n` records of a pane; continuous triggers
//!   fire every interval of event or processing time, and the event-time one
//!   also at the end of the window; a purging trigger clears the pane when it
//!   fires;
//! * evictors remove records before the function sees them, and the removal
//!   is kept;
//! * session windows merge per key when they overlap, merging accumulators
//!   (`merge`), contents, counts and timers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use weir_record::codec::{Reader, Truncated, Writer};
use weir_record::{BatchBuilder, BytesColumn, RecordBatch};
use weir_sandbox::{
    InstanceLimits, OperatorInstance, OperatorKind, OperatorModule, SandboxError, WindowPane,
};
use weir_state::{KeyedState, StateId, StateKind};

use weir_engine::BoxError;
use weir_engine::EngineError;
use weir_engine::NodeRole;
use weir_engine::assigner::{Window, WindowAssigner, cleanup_time, merge_session};
use weir_engine::checkpoint::StateWriter;
use weir_engine::key_group::key_group;
use weir_engine::swap::{ModuleHandle, SwapError};
use weir_engine::time::Clock;
use weir_engine::watermark::Watermark;
use weir_engine::{Collector, Operator, OperatorFactory, SubtaskInfo};

mod assign;
mod fire;
mod pane;

use pane::*;

/// A hash map with a fast hasher, for the per-batch indexes of panes.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// When a pane fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// When the watermark passes the window's end (the default for
    /// event-time windows); again for each record within the lateness.
    EventTime,
    /// When the processing-time clock passes the window's end (the default
    /// for processing-time windows).
    ProcessingTime,
    /// Every `count` records of the pane.
    Count {
        /// Records per firing.
        count: u64,
    },
    /// Every `interval` of event time, and at the window's end: early
    /// results for long windows.
    ContinuousEventTime {
        /// Firing interval.
        interval: Duration,
    },
    /// Every `interval` of processing time while the pane has records.
    ContinuousProcessingTime {
        /// Firing interval.
        interval: Duration,
    },
}

/// Which records an evictor removes before the function runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evictor {
    /// Keeps the last `n` records of the pane.
    Count(usize),
    /// Keeps the records within `keep` of the pane's newest record.
    Time(Duration),
}

/// Which clock assigns records to windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TimeMode {
    /// Record timestamps and watermarks.
    #[default]
    Event,
    /// The job's processing-time clock at arrival.
    Processing,
}

/// Everything about a window operator except its function.
#[derive(Clone, Debug)]
pub struct WindowSpec {
    /// Window assigner.
    pub assigner: WindowAssigner,
    /// Event or processing time.
    pub time: TimeMode,
    /// When panes fire.
    pub trigger: Trigger,
    /// Whether a firing clears the pane (Flink's `PurgingTrigger`).
    pub purge: bool,
    /// Optional evictor.
    pub evictor: Option<Evictor>,
    /// How long after the window's end records still count.
    pub allowed_lateness: Duration,
    /// Side output port for records later than that, if any.
    pub late_port: Option<usize>,
}

impl WindowSpec {
    /// Event-time windows of `assigner` with the default trigger, no
    /// lateness and no late output.
    pub fn new(assigner: WindowAssigner) -> Self {
        Self {
            assigner,
            time: TimeMode::Event,
            trigger: Trigger::EventTime,
            purge: false,
            evictor: None,
            allowed_lateness: Duration::ZERO,
            late_port: None,
        }
    }
}

/// Builds a window operator per subtask around an aggregate or
/// process-window component.
pub struct WindowOperatorFactory {
    module: Arc<OperatorModule>,
    config: Vec<(String, String)>,
    limits: InstanceLimits,
    spec: WindowSpec,
    writer: StateWriter,
}

impl WindowOperatorFactory {
    /// A window operator running `module` (an `aggregate` or
    /// `process-window` component).
    ///
    /// # Errors
    /// A module of another kind.
    pub fn new(
        module: Arc<OperatorModule>,
        config: Vec<(String, String)>,
        limits: InstanceLimits,
        spec: WindowSpec,
    ) -> Result<Self, crate::WrongKind> {
        match module.kind() {
            OperatorKind::Aggregate | OperatorKind::ProcessWindow => {}
            kind => {
                return Err(crate::WrongKind {
                    module: module.name().to_string(),
                    kind,
                    needs: "a window needs an aggregate or process-window module",
                });
            }
        }
        Ok(Self {
            writer: crate::state_writer(&module, None),
            module,
            config,
            limits,
            spec,
        })
    }

    /// Names the module's version in the state it writes (its registry
    /// version; `None` keeps the digest), for a later version's migration.
    #[must_use]
    pub fn with_version(mut self, version: Option<&str>) -> Self {
        self.writer = crate::state_writer(&self.module, version);
        self
    }
}

impl OperatorFactory for WindowOperatorFactory {
    fn create(&self, info: &SubtaskInfo) -> Result<Box<dyn Operator>, BoxError> {
        let label = crate::instance_label(info);
        let mut instance = self.module.instantiate(label, self.limits, &self.config)?;
        let incremental =
            self.module.kind() == OperatorKind::Aggregate && self.spec.evictor.is_none();
        let empty_acc = if self.module.kind() == OperatorKind::Aggregate {
            Some(instance.create_accumulator()?)
        } else {
            None
        };
        let mut migration = crate::Migration {
            writer: &self.writer,
            instance: &mut instance,
            // Accumulators are the guest's; record lists, counts and
            // session bookkeeping are the host's.
            guest_state: &|name| name == "acc",
            stamped: &|_| false,
        };
        let mut state = weir_engine::operators::keyed::open_keyed(info, Some(&mut migration))?;
        let ids = StateIds {
            acc: state.register("acc", StateKind::Value)?,
            contents: state.register("contents", StateKind::List)?,
            count: state.register("count", StateKind::Value)?,
            fire_at: state.register("fire-at", StateKind::Value)?,
            sessions: state.register("sessions", StateKind::Value)?,
        };
        Ok(Box::new(WindowOperator {
            instance,
            incremental,
            empty_acc,
            spec: self.spec.clone(),
            state,
            ids,
            watermark: i64::MIN,
            ending: false,
            clock: info.clock.clone(),
            max_parallelism: info.max_parallelism,
            node: info.node.clone(),
            subtask: info.subtask,
            writer: self.writer.clone(),
            respawn: crate::Respawn {
                label: crate::instance_label(info),
                limits: self.limits,
                config: self.config.clone(),
            },
        }))
    }
}

struct StateIds {
    acc: StateId,
    contents: StateId,
    count: StateId,
    fire_at: StateId,
    sessions: StateId,
}

struct WindowOperator {
    instance: OperatorInstance,
    /// Accumulators in state (aggregate without evictor); otherwise the
    /// records are kept.
    incremental: bool,
    empty_acc: Option<Vec<u8>>,
    spec: WindowSpec,
    state: KeyedState,
    ids: StateIds,
    watermark: i64,
    /// Set at the end of the input: no new periodic timers.
    ending: bool,
    clock: Arc<dyn Clock>,
    max_parallelism: u32,
    node: String,
    subtask: usize,
    /// Recorded with the state in snapshots.
    writer: StateWriter,
    /// How a new instance is made (a hot swap).
    respawn: crate::Respawn,
}

/// Most panes fired in one guest call.
const FIRE_CHUNK: usize = 4096;

/// A pane touched by a batch.
struct Touched {
    key: Vec<u8>,
    window: Window,
    /// Rows of the batch, in order, each with whether the pane fires after it.
    rows: Vec<(u32, bool)>,
}

impl WindowOperator {
    fn err(&self, e: impl Into<BoxError>) -> EngineError {
        EngineError::Node {
            role: NodeRole::Operator,
            node: self.node.clone(),
            subtask: self.subtask,
            source: e.into(),
        }
    }

    fn guest(&self, e: SandboxError) -> EngineError {
        self.err(Box::new(e))
    }

    fn set_key(&mut self, key: &[u8]) {
        let kg = key_group(key, self.max_parallelism) as u16;
        self.state.set_current_key(key, kg);
    }

    fn event_time(&self) -> bool {
        self.spec.time == TimeMode::Event
    }

    /// Whether the trigger fires periodically (and so sets timers after a
    /// pane's end).
    fn continuous(&self) -> bool {
        matches!(
            self.spec.trigger,
            Trigger::ContinuousEventTime { .. } | Trigger::ContinuousProcessingTime { .. }
        )
    }

    /// When the pane's state may be dropped.
    fn cleanup_at(&self, w: &Window) -> i64 {
        if self.event_time() {
            cleanup_time(w, self.spec.allowed_lateness)
        } else {
            w.max_timestamp()
        }
    }

    /// Whether a window is past its allowed lateness (event time only).
    fn is_window_late(&self, w: &Window) -> bool {
        self.event_time() && self.cleanup_at(w) <= self.watermark
    }

    fn register_cleanup(&mut self, w: &Window) {
        let at = self.cleanup_at(w);
        if self.event_time() {
            self.state.register_timer(true, at, &ns(w));
        } else {
            self.state.register_timer(false, at, &ns(w));
        }
    }
}

impl Operator for WindowOperator {
    fn process_batch(
        &mut self,
        batch: RecordBatch,
        out: &mut dyn Collector,
    ) -> Result<(), EngineError> {
        if batch.is_empty() {
            return Ok(());
        }
        let (mut touched, late) = if self.spec.assigner.is_merging() {
            self.assign_sessions(&batch)?
        } else {
            self.assign(&batch)
        };
        for t in &mut touched {
            self.on_elements(t, &batch);
        }
        // Rounds: each pane adds its rows up to its next firing point, then
        // the panes that reached one fire together. Firing points are rare
        // (late records, count triggers), so there is usually one round.
        let mut cursor = vec![0usize; touched.len()];
        loop {
            let mut segments: Vec<(usize, Vec<u32>)> = Vec::new();
            let mut firing: Vec<(Vec<u8>, Window)> = Vec::new();
            for (p, t) in touched.iter().enumerate() {
                let start = cursor[p];
                if start >= t.rows.len() {
                    continue;
                }
                let mut end = start;
                let mut fires = false;
                while end < t.rows.len() {
                    end += 1;
                    if t.rows[end - 1].1 {
                        fires = true;
                        break;
                    }
                }
                segments.push((p, t.rows[start..end].iter().map(|r| r.0).collect()));
                cursor[p] = end;
                if fires {
                    firing.push((t.key.clone(), t.window));
                }
            }
            if segments.is_empty() {
                break;
            }
            self.add_rows(&batch, &segments, &touched)?;
            self.fire(&firing, out)?;
        }
        if !late.is_empty()
            && let Some(port) = self.spec.late_port
        {
            out.collect_side(port, batch.select(&late))?;
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: Watermark,
        out: &mut dyn Collector,
    ) -> Result<(), EngineError> {
        self.watermark = watermark.0;
        self.on_timers(true, watermark.0, out)
    }

    fn next_processing_time(&self) -> Option<i64> {
        self.state.next_timer(false)
    }

    fn snapshot(&mut self) -> Result<weir_engine::checkpoint::PendingState, EngineError> {
        let pending = weir_engine::operators::keyed::freeze_keyed(&mut self.state, &self.writer);
        pending.map_err(|e| self.err(e))
    }

    fn swap_module(&mut self, module: &ModuleHandle, version: &str) -> Result<(), SwapError> {
        let (mut instance, writer) =
            self.respawn
                .instance(module, version, self.instance.kind())?;
        let migration = crate::Migration {
            writer: &writer,
            instance: &mut instance,
            guest_state: &|name| name == "acc",
            stamped: &|_| false,
        };
        crate::migrate_live(&mut self.state, &self.writer, migration)?;
        if self.empty_acc.is_some() {
            let acc = instance
                .create_accumulator()
                .map_err(|e| SwapError::Instance(Box::new(e)))?;
            self.empty_acc = Some(acc);
        }
        self.instance = instance;
        self.writer = writer;
        Ok(())
    }

    fn on_processing_time(&mut self, now: i64, out: &mut dyn Collector) -> Result<(), EngineError> {
        self.on_timers(false, now, out)
    }

    fn end_of_input(&mut self, out: &mut dyn Collector) -> Result<(), EngineError> {
        // Event time has already ended (the final watermark fired every
        // event-time timer). Processing-time panes still open fire now
        // rather than being lost with the job.
        self.ending = true;
        self.on_timers(false, i64::MAX, out)
    }
}
