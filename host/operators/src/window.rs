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
use weir_engine::swap::ModuleHandle;
use weir_engine::time::Clock;
use weir_engine::watermark::Watermark;
use weir_engine::{Collector, Operator, OperatorFactory, SubtaskInfo};

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
    ) -> Result<Self, String> {
        match module.kind() {
            OperatorKind::Aggregate | OperatorKind::ProcessWindow => {}
            other => {
                return Err(format!(
                    "module `{}` is a {other} operator; a window needs an aggregate or \
                     process-window module",
                    module.name()
                ));
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

/// The namespace of a pane's state: the window, 16 bytes.
fn ns(w: &Window) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&w.start.to_be_bytes());
    b[8..].copy_from_slice(&w.end.to_be_bytes());
    b
}

fn window_of(ns: &[u8]) -> Window {
    let mut s = [0u8; 8];
    let mut e = [0u8; 8];
    s.copy_from_slice(&ns[..8]);
    e.copy_from_slice(&ns[8..16]);
    Window {
        start: i64::from_be_bytes(s),
        end: i64::from_be_bytes(e),
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn encode_i64(v: i64) -> [u8; 8] {
    v.to_le_bytes()
}

fn decode_i64(b: Option<Vec<u8>>) -> Option<i64> {
    let b = b?;
    Some(i64::from_le_bytes(b.get(..8)?.try_into().ok()?))
}

/// A record kept in a pane's contents: timestamp, value, headers (the key is
/// the pane's).
fn encode_record(batch: &RecordBatch, row: usize, out: &mut Vec<u8>) {
    let r = batch.record(row);
    out.put_i64(r.timestamp());
    out.put_bytes(r.value());
    let headers: Vec<_> = r.headers().collect();
    out.put_u32(headers.len() as u32);
    for (n, v) in headers {
        out.put_bytes(n);
        out.put_bytes(v);
    }
}

/// A decoded kept record.
struct Kept {
    ts: i64,
    value: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    raw: Vec<u8>,
}

fn decode_record(raw: &[u8]) -> Result<Kept, Truncated> {
    let mut r = Reader::new("window contents", raw);
    let ts = r.i64("timestamp")?;
    let value = r.bytes("value")?.to_vec();
    let (n, capacity) = r.count("header count", 8)?;
    let mut headers = Vec::with_capacity(capacity);
    for _ in 0..n {
        headers.push((
            r.bytes("header name")?.to_vec(),
            r.bytes("header value")?.to_vec(),
        ));
    }
    Ok(Kept {
        ts,
        value,
        headers,
        raw: raw.to_vec(),
    })
}

fn encode_windows(ws: &[Window]) -> Vec<u8> {
    ws.iter().flat_map(ns).collect()
}

fn decode_windows(b: Option<Vec<u8>>) -> Vec<Window> {
    b.map(|b| b.chunks_exact(16).map(window_of).collect())
        .unwrap_or_default()
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

    /// The trigger's `onElement` for the rows of one pane: registers its
    /// timers and marks the rows after which the pane fires.
    fn on_elements(&mut self, t: &mut Touched, batch: &RecordBatch) {
        let w = t.window;
        let space = ns(&w);
        if !matches!(
            self.spec.trigger,
            Trigger::EventTime | Trigger::ProcessingTime
        ) {
            self.set_key(&t.key);
        }
        let late = self.event_time() && w.max_timestamp() <= self.watermark;
        match self.spec.trigger {
            // The end-of-window and cleanup timers are set when a pane
            // gets its first record (`add_rows`), not for every batch.
            Trigger::EventTime => {
                if late {
                    t.rows.iter_mut().for_each(|r| r.1 = true);
                }
            }
            Trigger::ProcessingTime => {}
            Trigger::Count { count } => {
                let mut c = decode_i64(self.state.value_get(self.ids.count, &space)).unwrap_or(0);
                for r in &mut t.rows {
                    c += 1;
                    if c as u64 >= count {
                        r.1 = true;
                        c = 0;
                    }
                }
                self.state.value_set(self.ids.count, &space, &encode_i64(c));
            }
            Trigger::ContinuousEventTime { interval } => {
                if late {
                    t.rows.iter_mut().for_each(|r| r.1 = true);
                }
                if self.state.value_get(self.ids.fire_at, &space).is_none()
                    && let Some(&(row, _)) = t.rows.first()
                {
                    let i = ms(interval).max(1);
                    let ts = batch.timestamps[row as usize];
                    let next = ts - ts.rem_euclid(i) + i;
                    self.state
                        .value_set(self.ids.fire_at, &space, &encode_i64(next));
                    self.state.register_timer(true, next, &space);
                }
            }
            Trigger::ContinuousProcessingTime { interval } => {
                if self.state.value_get(self.ids.fire_at, &space).is_none() {
                    let i = ms(interval).max(1);
                    let now = self.clock.now_ms();
                    let next = now - now.rem_euclid(i) + i;
                    self.state
                        .value_set(self.ids.fire_at, &space, &encode_i64(next));
                    self.state.register_timer(false, next, &space);
                }
            }
        }
    }

    /// Sets a new pane's timers (of the current key): the trigger's
    /// end-of-window timer and the cleanup timer (the same one when there
    /// is no lateness).
    fn register_pane_timers(&mut self, w: &Window) {
        let space = ns(w);
        match self.spec.trigger {
            Trigger::EventTime | Trigger::ContinuousEventTime { .. } => {
                if w.max_timestamp() > self.watermark {
                    self.state.register_timer(true, w.max_timestamp(), &space);
                }
            }
            Trigger::ProcessingTime => {
                self.state.register_timer(false, w.max_timestamp(), &space);
            }
            Trigger::Count { .. } | Trigger::ContinuousProcessingTime { .. } => {}
        }
        self.register_cleanup(w);
    }

    /// Assigns the rows of `batch` to panes; returns the panes and the rows
    /// too late for any window.
    fn assign(&mut self, batch: &RecordBatch) -> (Vec<Touched>, Vec<u32>) {
        let now = self.clock.now_ms();
        let mut index: FastMap<(&[u8], Window), usize> = FastMap::default();
        let mut touched: Vec<Touched> = Vec::new();
        let mut late = Vec::new();
        for row in 0..batch.len() {
            let key = batch.keys.get(row);
            let ts = if self.event_time() {
                batch.timestamps[row]
            } else {
                now
            };
            let mut any = false;
            for w in self.spec.assigner.assign(ts) {
                if self.is_window_late(&w) {
                    continue;
                }
                any = true;
                let i = *index.entry((key, w)).or_insert_with(|| {
                    touched.push(Touched {
                        key: key.to_vec(),
                        window: w,
                        rows: Vec::new(),
                    });
                    touched.len() - 1
                });
                touched[i].rows.push((row as u32, false));
            }
            if !any {
                late.push(row as u32);
            }
        }
        (touched, late)
    }

    /// Session windows: merges each key's new windows into its existing
    /// sessions, moves the state of sessions that grew or merged, and
    /// returns the panes the rows end up in.
    fn assign_sessions(
        &mut self,
        batch: &RecordBatch,
    ) -> Result<(Vec<Touched>, Vec<u32>), EngineError> {
        let now = self.clock.now_ms();
        // Rows per key, in order.
        let mut keys: Vec<&[u8]> = Vec::new();
        let mut rows_of: HashMap<&[u8], Vec<u32>> = HashMap::new();
        for row in 0..batch.len() {
            let key = batch.keys.get(row);
            rows_of
                .entry(key)
                .or_insert_with(|| {
                    keys.push(key);
                    Vec::new()
                })
                .push(row as u32);
        }
        let mut touched = Vec::new();
        let mut late = Vec::new();
        // Moves of existing panes into merged ones: (key, from, into).
        let mut moves: Vec<(Vec<u8>, Window, Window)> = Vec::new();
        for key in keys {
            self.set_key(key);
            let before = decode_windows(self.state.value_get(self.ids.sessions, b""));
            let mut sessions = before.clone();
            let mut row_windows = Vec::new();
            for &row in &rows_of[key] {
                let ts = if self.event_time() {
                    batch.timestamps[row as usize]
                } else {
                    now
                };
                let w = self.spec.assigner.assign(ts)[0];
                merge_session(&mut sessions, w);
                row_windows.push((row, w));
            }
            let container = |w: &Window, sessions: &[Window]| -> Window {
                sessions
                    .iter()
                    .find(|s| s.start <= w.start && w.end <= s.end)
                    .copied()
                    .unwrap_or(*w)
            };
            for old in &before {
                let into = container(old, &sessions);
                if into != *old {
                    moves.push((key.to_vec(), *old, into));
                }
            }
            let mut by_window: Vec<Touched> = Vec::new();
            for (row, w) in row_windows {
                let into = container(&w, &sessions);
                if self.is_window_late(&into) {
                    late.push(row);
                    continue;
                }
                match by_window.iter_mut().find(|t| t.window == into) {
                    Some(t) => t.rows.push((row, false)),
                    None => by_window.push(Touched {
                        key: key.to_vec(),
                        window: into,
                        rows: vec![(row, false)],
                    }),
                }
            }
            self.state
                .value_set(self.ids.sessions, b"", &encode_windows(&sessions));
            touched.extend(by_window);
        }
        self.move_panes(moves)?;
        Ok((touched, late))
    }

    /// Moves the state of panes whose session window grew or merged into
    /// their new window: accumulators merged by the guest, contents
    /// concatenated, counts summed, timers moved.
    fn move_panes(&mut self, moves: Vec<(Vec<u8>, Window, Window)>) -> Result<(), EngineError> {
        if moves.is_empty() {
            return Ok(());
        }
        // Group sources by target.
        let mut targets: Vec<(Vec<u8>, Window, Vec<Window>)> = Vec::new();
        for (key, from, into) in moves {
            match targets.iter_mut().find(|(k, w, _)| *k == key && *w == into) {
                Some(t) => t.2.push(from),
                None => targets.push((key, into, vec![from])),
            }
        }
        let mut merge_accs = BytesColumn::new();
        let mut merge_groups = Vec::new();
        let mut merged_targets = Vec::new();
        for (key, into, froms) in &targets {
            self.set_key(key);
            let into_ns = ns(into);
            let mut count = 0i64;
            let mut fire_at: Option<i64> = None;
            let mut contents: Vec<Vec<u8>> = Vec::new();
            let mut accs: Vec<Vec<u8>> = Vec::new();
            for from in froms {
                let from_ns = ns(from);
                if self.incremental {
                    if let Some(a) = self.state.value_get(self.ids.acc, &from_ns) {
                        accs.push(a);
                    }
                } else {
                    let mut items = Vec::new();
                    self.state
                        .list_for_each(self.ids.contents, &from_ns, |e| items.push(e.to_vec()))
                        .map_err(|e| self.err(e))?;
                    contents.extend(items);
                }
                count += decode_i64(self.state.value_get(self.ids.count, &from_ns)).unwrap_or(0);
                if let Some(f) = decode_i64(self.state.value_get(self.ids.fire_at, &from_ns)) {
                    fire_at = Some(fire_at.map_or(f, |g: i64| g.min(f)));
                }
                self.clear_pane(key, from, None);
            }
            if self.incremental {
                match accs.len() {
                    0 => {}
                    1 => self.state.value_set(self.ids.acc, &into_ns, &accs[0]),
                    _ => {
                        let g = merged_targets.len() as u32;
                        for a in &accs {
                            merge_accs.push(a);
                            merge_groups.push(g);
                        }
                        merged_targets.push((key.clone(), *into));
                    }
                }
            } else if !contents.is_empty() {
                self.state.list_set(
                    self.ids.contents,
                    &into_ns,
                    contents.iter().map(Vec::as_slice),
                );
            }
            if count > 0 {
                self.state
                    .value_set(self.ids.count, &into_ns, &encode_i64(count));
            }
            self.register_pane_timers(into);
            if let Some(f) = fire_at {
                self.state
                    .value_set(self.ids.fire_at, &into_ns, &encode_i64(f));
                if self.event_time() {
                    self.state.register_timer(true, f, &into_ns);
                } else {
                    self.state.register_timer(false, f, &into_ns);
                }
            }
        }
        if !merged_targets.is_empty() {
            let merged = self
                .instance
                .merge_accumulators(merge_accs, merge_groups)
                .map_err(|e| self.guest(e))?;
            for (i, (key, into)) in merged_targets.iter().enumerate() {
                self.set_key(key);
                self.state.value_set(self.ids.acc, &ns(into), merged.get(i));
            }
        }
        Ok(())
    }

    /// Deletes a pane's state and timers: those its trigger and window
    /// set, except `fired` (event time?, time), already taken off.
    fn clear_pane(&mut self, key: &[u8], w: &Window, fired: Option<(bool, i64)>) {
        self.set_key(key);
        let space = ns(w);
        let continuous = self.continuous();
        let mut timers: Vec<(bool, i64)> = Vec::with_capacity(3);
        match self.spec.trigger {
            Trigger::EventTime | Trigger::ContinuousEventTime { .. } => {
                timers.push((true, w.max_timestamp()));
            }
            Trigger::ProcessingTime => timers.push((false, w.max_timestamp())),
            Trigger::Count { .. } | Trigger::ContinuousProcessingTime { .. } => {}
        }
        timers.push((self.event_time(), self.cleanup_at(w)));
        if continuous && let Some(at) = decode_i64(self.state.value_get(self.ids.fire_at, &space)) {
            let event = matches!(self.spec.trigger, Trigger::ContinuousEventTime { .. });
            timers.push((event, at));
        }
        timers.sort_unstable();
        timers.dedup();
        for (event, t) in timers {
            if Some((event, t)) != fired {
                self.state.delete_timer(event, t, &space);
            }
        }
        // The states this operator's panes use.
        let acc = self.incremental || self.spec.assigner.is_merging();
        for (id, used) in [
            (self.ids.acc, acc),
            (self.ids.contents, !self.incremental),
            (
                self.ids.count,
                matches!(self.spec.trigger, Trigger::Count { .. }),
            ),
            (self.ids.fire_at, continuous),
        ] {
            if used {
                self.state.clear(id, &space);
            }
        }
    }

    /// Adds the rows of a round to their panes' state.
    fn add_rows(
        &mut self,
        batch: &RecordBatch,
        segments: &[(usize, Vec<u32>)],
        touched: &[Touched],
    ) -> Result<(), EngineError> {
        if segments.is_empty() {
            return Ok(());
        }
        if self.incremental {
            let mut accs = BytesColumn::new();
            let mut groups = Vec::new();
            let mut rows = Vec::new();
            for (g, (pane, seg)) in segments.iter().enumerate() {
                let t = &touched[*pane];
                self.set_key(&t.key);
                let empty = self.empty_acc.as_deref().unwrap_or_default();
                let existed = self
                    .state
                    .value_with(self.ids.acc, &ns(&t.window), |a| match a {
                        Some(a) => {
                            accs.push(a);
                            true
                        }
                        None => {
                            accs.push(empty);
                            false
                        }
                    });
                if !existed {
                    self.register_pane_timers(&t.window);
                }
                rows.extend_from_slice(seg);
                groups.extend(std::iter::repeat_n(g as u32, seg.len()));
            }
            let records = batch.select(&rows);
            let updated = self
                .instance
                .add_to_accumulators(accs, groups, records)
                .map_err(|e| self.guest(e))?;
            for (g, (pane, _)) in segments.iter().enumerate() {
                let t = &touched[*pane];
                self.set_key(&t.key);
                self.state
                    .value_set(self.ids.acc, &ns(&t.window), updated.get(g));
            }
        } else {
            let mut buf = Vec::new();
            for (pane, seg) in segments {
                let t = &touched[*pane];
                self.set_key(&t.key);
                let space = ns(&t.window);
                if !self.has_contents(&t.window) {
                    self.register_pane_timers(&t.window);
                }
                self.set_key(&t.key);
                for &row in seg {
                    buf.clear();
                    encode_record(batch, row as usize, &mut buf);
                    self.state.list_add(self.ids.contents, &space, &buf);
                }
            }
        }
        Ok(())
    }

    /// Fires panes, in order, a bounded number per guest call (the end of
    /// a window over millions of keys must not need a guest memory the size
    /// of all their results); clears them if the trigger purges.
    fn fire(
        &mut self,
        panes: &[(Vec<u8>, Window)],
        out: &mut dyn Collector,
    ) -> Result<(), EngineError> {
        for chunk in panes.chunks(FIRE_CHUNK) {
            self.fire_chunk(chunk, out)?;
        }
        Ok(())
    }

    fn fire_chunk(
        &mut self,
        panes: &[(Vec<u8>, Window)],
        out: &mut dyn Collector,
    ) -> Result<(), EngineError> {
        if panes.is_empty() {
            return Ok(());
        }
        let results = if self.incremental {
            let mut fired = Vec::with_capacity(panes.len());
            for (key, w) in panes {
                self.set_key(key);
                let acc = self
                    .state
                    .value_get(self.ids.acc, &ns(w))
                    .or_else(|| self.empty_acc.clone())
                    .unwrap_or_default();
                fired.push((pane(key, w), acc));
            }
            self.instance
                .aggregate_results(fired)
                .map_err(|e| self.guest(e))?
        } else {
            self.fire_buffered(panes)?
        };
        if self.spec.purge {
            for (key, w) in panes {
                self.set_key(key);
                let space = ns(w);
                self.state.clear(self.ids.acc, &space);
                self.state.clear(self.ids.contents, &space);
            }
        }
        out.collect(results)
    }

    /// Fires panes whose records are kept: evicts, then runs the function
    /// over what remains.
    fn fire_buffered(&mut self, panes: &[(Vec<u8>, Window)]) -> Result<RecordBatch, EngineError> {
        let mut b = BatchBuilder::default();
        let mut spans = Vec::with_capacity(panes.len());
        for (key, w) in panes {
            self.set_key(key);
            let space = ns(w);
            let mut kept: Vec<Kept> = Vec::new();
            let mut corrupt = None;
            self.state
                .list_for_each(self.ids.contents, &space, |raw| match decode_record(raw) {
                    Ok(k) => kept.push(k),
                    Err(e) => corrupt = Some(e),
                })
                .map_err(|e| self.err(e))?;
            if let Some(e) = corrupt {
                return Err(self.err(e));
            }
            let before = kept.len();
            match self.spec.evictor {
                Some(Evictor::Count(n)) if kept.len() > n => {
                    kept.drain(..kept.len() - n);
                }
                Some(Evictor::Time(keep)) => {
                    if let Some(newest) = kept.iter().map(|k| k.ts).max() {
                        let cutoff = newest - ms(keep);
                        kept.retain(|k| k.ts > cutoff);
                    }
                }
                _ => {}
            }
            if kept.len() != before {
                self.state.list_set(
                    self.ids.contents,
                    &space,
                    kept.iter().map(|k| k.raw.as_slice()),
                );
            }
            let first = b.len() as u32;
            for k in &kept {
                b.push_with_headers(
                    key,
                    &k.value,
                    k.ts,
                    k.headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())),
                );
            }
            spans.push((pane(key, w), first, kept.len() as u32));
        }
        let records = b.finish();
        if self.instance.kind() == OperatorKind::ProcessWindow {
            return self
                .instance
                .process_windows(spans, records)
                .map_err(|e| self.guest(e));
        }
        // An aggregate over kept records (an evictor is set): fold each
        // pane's records into a fresh accumulator, then take the results.
        let empty = self.empty_acc.clone().unwrap_or_default();
        let mut accs = BytesColumn::new();
        let mut groups = Vec::with_capacity(records.len());
        for (g, (_, _, count)) in spans.iter().enumerate() {
            accs.push(&empty);
            groups.extend(std::iter::repeat_n(g as u32, *count as usize));
        }
        let accs = self
            .instance
            .add_to_accumulators(accs, groups, records)
            .map_err(|e| self.guest(e))?;
        let fired = spans
            .into_iter()
            .enumerate()
            .map(|(g, (p, _, _))| (p, accs.get(g).to_vec()))
            .collect();
        self.instance
            .aggregate_results(fired)
            .map_err(|e| self.guest(e))
    }

    /// Fires the timers of one domain due at `time`: trigger firings first
    /// (one guest call for all panes), then cleanups; repeated while firing
    /// sets new due timers (continuous triggers).
    fn on_timers(
        &mut self,
        event: bool,
        time: i64,
        out: &mut dyn Collector,
    ) -> Result<(), EngineError> {
        loop {
            let mut fires: Vec<(Vec<u8>, Window)> = Vec::new();
            let mut cleanups: Vec<(i64, Vec<u8>, Window)> = Vec::new();
            // Panes cleaned up at an earlier time of this pass: their later
            // timers were deleted by the cleanup (as Flink's `clear` does).
            // Only a continuous trigger sets timers after the cleanup's.
            let track = self.continuous();
            let mut cleaned: std::collections::HashSet<(Vec<u8>, Window)> =
                std::collections::HashSet::new();
            while let Some((ts, key, space)) = self.state.pop_due_timer(event, time) {
                let w = window_of(&space);
                if track && cleaned.contains(&(key.clone(), w)) {
                    continue;
                }
                self.set_key(&key);
                let fire = match (self.spec.trigger, event) {
                    (Trigger::EventTime, true) | (Trigger::ProcessingTime, false) => {
                        ts == w.max_timestamp()
                    }
                    (Trigger::ContinuousEventTime { interval }, true)
                    | (Trigger::ContinuousProcessingTime { interval }, false) => {
                        let at = decode_i64(self.state.value_get(self.ids.fire_at, &space));
                        let periodic = at == Some(ts);
                        if periodic {
                            let next = ts.saturating_add(ms(interval).max(1));
                            if self.ending {
                                self.state.clear(self.ids.fire_at, &space);
                            } else {
                                self.state
                                    .value_set(self.ids.fire_at, &space, &encode_i64(next));
                                if event {
                                    self.state.register_timer(true, next, &space);
                                } else {
                                    self.state.register_timer(false, next, &space);
                                }
                            }
                        }
                        let at_end =
                            matches!(self.spec.trigger, Trigger::ContinuousEventTime { .. })
                                && ts == w.max_timestamp();
                        periodic || at_end
                    }
                    _ => false,
                };
                // A pane with nothing in it (purged) does not fire.
                if fire && self.has_contents(&w) {
                    fires.push((key.clone(), w));
                }
                if event == self.event_time() && ts == self.cleanup_at(&w) {
                    if track {
                        cleaned.insert((key.clone(), w));
                    }
                    cleanups.push((ts, key, w));
                }
            }
            if fires.is_empty() && cleanups.is_empty() {
                return Ok(());
            }
            self.fire(&fires, out)?;
            for (ts, key, w) in cleanups {
                self.clear_pane(&key, &w, Some((event, ts)));
                if self.spec.assigner.is_merging() {
                    let mut sessions = decode_windows(self.state.value_get(self.ids.sessions, b""));
                    sessions.retain(|s| *s != w);
                    if sessions.is_empty() {
                        self.state.clear(self.ids.sessions, b"");
                    } else {
                        self.state
                            .value_set(self.ids.sessions, b"", &encode_windows(&sessions));
                    }
                }
            }
        }
    }

    /// Whether the current key's pane `w` holds anything.
    fn has_contents(&mut self, w: &Window) -> bool {
        let space = ns(w);
        if self.incremental {
            self.state.value_with(self.ids.acc, &space, |a| a.is_some())
        } else {
            let mut any = false;
            let _ = self
                .state
                .list_for_each(self.ids.contents, &space, |_| any = true);
            any
        }
    }
}

fn pane(key: &[u8], w: &Window) -> WindowPane {
    WindowPane {
        key: key.to_vec(),
        start: w.start,
        end: w.end,
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

    fn swap_module(&mut self, module: &ModuleHandle, version: &str) -> Result<(), String> {
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
            self.empty_acc = Some(instance.create_accumulator().map_err(|e| e.to_string())?);
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
