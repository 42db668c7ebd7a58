//! One warm guest instance per operator subtask.
//!
//! An instance lives as long as its subtask: it is created (and `init`ed) once,
//! then called once per batch. Each call gets a fresh CPU deadline; the memory
//! cap holds for the instance's whole life. After a trap the instance is
//! poisoned: wasmtime cannot re-enter it, and its memory may be inconsistent.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Store, Trap};
use weir_record::RecordBatch;

use weir_record::{BatchBuilder, BytesColumn};

use crate::bindings::{
    self, WitWindow, aggregate, filter, flat_map, keyed, map, migration, process_window, wit,
};
use crate::error::{GuestFailure, OutputError, SandboxError};
use crate::guest::GuestState;
use crate::keyed::{KeyedContext, TimeDomain};
use crate::module::{KindPre, OperatorKind, OperatorModule};

/// Limits of one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstanceLimits {
    /// Cap on each linear memory, in bytes.
    pub memory_bytes: usize,
    /// How long one batch call may run before it is interrupted.
    pub call_deadline: Duration,
    /// How long instantiation plus `init` may run (language runtimes such as
    /// Python start slower than a batch call).
    pub init_deadline: Duration,
}

impl Default for InstanceLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 256 << 20,
            call_deadline: Duration::from_secs(1),
            init_deadline: Duration::from_secs(10),
        }
    }
}

/// Who an instance works for; tags its log lines.
#[derive(Clone, Debug)]
pub struct InstanceLabel {
    /// Job name.
    pub job: String,
    /// Operator name in the job.
    pub operator: String,
    /// Subtask index.
    pub subtask: usize,
}

impl std::fmt::Display for InstanceLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}#{}", self.job, self.operator, self.subtask)
    }
}

enum Bound {
    Filter(filter::FilterOperator),
    Map(map::MapOperator),
    FlatMap(flat_map::FlatMapOperator),
    Aggregate(aggregate::AggregateOperator),
    ProcessWindow(process_window::ProcessWindowOperator),
    KeyedProcess(keyed::KeyedProcessOperator),
}

/// One pane of a window function: a window of a key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WindowPane {
    /// The key.
    pub key: Vec<u8>,
    /// Window start (inclusive), ms.
    pub start: i64,
    /// Window end (exclusive), ms.
    pub end: i64,
}

impl WindowPane {
    fn wit_window(&self) -> WitWindow {
        WitWindow {
            start: self.start,
            end: self.end,
        }
    }
}

/// What a keyed-process call emitted, checked against the contract.
#[derive(Debug, Default)]
pub struct Emitted {
    /// Values of the emitted rows.
    pub values: BytesColumn,
    /// Their event timestamps.
    pub timestamps: Vec<i64>,
    /// Per row: 0 for the main output, `i` for `side_outputs[i - 1]`; empty
    /// when every row goes to the main output.
    pub outputs: Vec<u8>,
    /// Side output names used.
    pub side_outputs: Vec<String>,
}

/// A live guest instance with its own store: the bindings of its world
/// over one [`CallCore`]. Each kind's functions reach their bindings
/// through a typed accessor ([`OperatorInstance::aggregator`] and its
/// siblings), which refuses a call the world does not have.
pub struct OperatorInstance {
    core: CallCore,
    bound: Bound,
    /// The `state-migration` export, for a module that has it.
    migrator: Option<migration::StateMigrator>,
}

/// What every call into a guest shares, whatever its world: the store, the
/// deadline and memory cap, and the poisoning after a trap.
struct CallCore {
    module: Arc<OperatorModule>,
    store: Store<GuestState>,
    limits: InstanceLimits,
    /// The memory cap in force: the instance's, at most the sandbox's.
    memory_cap: usize,
    poisoned: bool,
}

impl std::fmt::Debug for OperatorInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorInstance")
            .field("module", &self.core.module)
            .field("limits", &self.core.limits)
            .field("poisoned", &self.core.poisoned)
            .finish_non_exhaustive()
    }
}

impl OperatorInstance {
    pub(crate) fn new(
        module: Arc<OperatorModule>,
        label: InstanceLabel,
        limits: InstanceLimits,
        config: &[(String, String)],
    ) -> Result<Self, SandboxError> {
        let sandbox = &module.sandbox;
        let cap = limits.memory_bytes.min(sandbox.config().max_memory_bytes);
        let state = GuestState::new(Arc::from(label.to_string()), cap);
        let mut store = Store::new(&sandbox.inner.engine, state);
        store.limiter(|s| s);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(sandbox.ticks_for(limits.init_deadline));

        let fail = |store: &Store<GuestState>, call, e: wasmtime::Error, deadline| {
            guest_error(module.name(), call, classify(store, e, deadline, cap))
        };
        let instantiated = match (&module.migrator, &module.pre) {
            // A module with `state-migration`: instantiated once, both
            // exports loaded from the same instance.
            (Some((pre, indices)), kind) => (|| {
                let instance = pre.instantiate(&mut store)?;
                let bound = match kind {
                    KindPre::Aggregate(_) => {
                        Bound::Aggregate(aggregate::AggregateOperator::new(&mut store, &instance)?)
                    }
                    KindPre::KeyedProcess(_) => Bound::KeyedProcess(
                        keyed::KeyedProcessOperator::new(&mut store, &instance)?,
                    ),
                    _ => return Err(wasmtime::format_err!("no state to migrate")),
                };
                Ok((bound, Some(indices.load(&mut store, &instance)?)))
            })(),
            (None, kind) => Self::bind(kind, &mut store).map(|b| (b, None)),
        };
        let (bound, migrator) =
            instantiated.map_err(|e| fail(&store, "instantiate", e, limits.init_deadline))?;
        Self::init(module, store, bound, migrator, limits, cap, config)
    }

    fn bind(pre: &KindPre, store: &mut Store<GuestState>) -> wasmtime::Result<Bound> {
        match pre {
            KindPre::Filter(p) => p.instantiate(&mut *store).map(Bound::Filter),
            KindPre::Map(p) => p.instantiate(&mut *store).map(Bound::Map),
            KindPre::FlatMap(p) => p.instantiate(&mut *store).map(Bound::FlatMap),
            KindPre::Aggregate(p) => p.instantiate(&mut *store).map(Bound::Aggregate),
            KindPre::ProcessWindow(p) => p.instantiate(&mut *store).map(Bound::ProcessWindow),
            KindPre::KeyedProcess(p) => p.instantiate(&mut *store).map(Bound::KeyedProcess),
        }
    }

    fn init(
        module: Arc<OperatorModule>,
        mut store: Store<GuestState>,
        bound: Bound,
        migrator: Option<migration::StateMigrator>,
        limits: InstanceLimits,
        cap: usize,
        config: &[(String, String)],
    ) -> Result<Self, SandboxError> {
        let fail = |store: &Store<GuestState>, call, e: wasmtime::Error, deadline| {
            guest_error(module.name(), call, classify(store, e, deadline, cap))
        };
        let config = config.to_vec();
        let result = match &bound {
            Bound::Filter(b) => b.weir_udf_filter().call_init(&mut store, &config),
            Bound::Map(b) => b.weir_udf_mapper().call_init(&mut store, &config),
            Bound::FlatMap(b) => b.weir_udf_flat_mapper().call_init(&mut store, &config),
            Bound::Aggregate(b) => b.weir_udf_aggregator().call_init(&mut store, &config),
            Bound::ProcessWindow(b) => b.weir_udf_window_processor().call_init(&mut store, &config),
            Bound::KeyedProcess(b) => b.weir_udf_keyed_processor().call_init(&mut store, &config),
        };
        match result {
            Err(e) => return Err(fail(&store, "init", e, limits.init_deadline)),
            Ok(Err(e)) => {
                return Err(guest_error(
                    module.name(),
                    "init",
                    GuestFailure::Returned(bindings::error_message(&e)),
                ));
            }
            Ok(Ok(())) => {}
        }
        Ok(Self {
            core: CallCore {
                module,
                store,
                limits,
                memory_cap: cap,
                poisoned: false,
            },
            bound,
            migrator,
        })
    }

    /// The module this instance runs.
    pub fn module(&self) -> &Arc<OperatorModule> {
        &self.core.module
    }

    /// The operator kind.
    pub fn kind(&self) -> OperatorKind {
        self.core.module.kind()
    }

    /// Bytes of linear memory the guest holds now (every memory of the
    /// component, from instantiation on; Wasm memories never shrink).
    pub fn memory_bytes(&self) -> usize {
        self.core.store.data().memory_bytes
    }

    /// An aggregate's bindings and the call core, or the refusal of `call`.
    fn aggregator(
        &mut self,
        call: &'static str,
    ) -> Result<(&aggregate::AggregateOperator, &mut CallCore), SandboxError> {
        match &self.bound {
            Bound::Aggregate(b) => Ok((b, &mut self.core)),
            _ => Err(self.core.wrong_call(call)),
        }
    }

    /// A process-window function's bindings and the call core.
    fn window_processor(
        &mut self,
        call: &'static str,
    ) -> Result<(&process_window::ProcessWindowOperator, &mut CallCore), SandboxError> {
        match &self.bound {
            Bound::ProcessWindow(b) => Ok((b, &mut self.core)),
            _ => Err(self.core.wrong_call(call)),
        }
    }

    /// A keyed process function's bindings and the call core.
    fn keyed_processor(
        &mut self,
        call: &'static str,
    ) -> Result<(&keyed::KeyedProcessOperator, &mut CallCore), SandboxError> {
        match &self.bound {
            Bound::KeyedProcess(b) => Ok((b, &mut self.core)),
            _ => Err(self.core.wrong_call(call)),
        }
    }

    /// Runs one batch through the guest and returns the resulting batch.
    ///
    /// The input's columns move into the call and, where the guest keeps them
    /// (a filter's kept rows, a map's untouched keys and timestamps), move
    /// back out: the guest's copy is the only copy.
    ///
    /// # Errors
    /// [`SandboxError::Guest`] with the trap, deadline, memory cap, returned
    /// error or contract violation. After a trap the instance is poisoned.
    pub fn process(&mut self, batch: RecordBatch) -> Result<RecordBatch, SandboxError> {
        let call = match self.bound {
            Bound::Filter(_) => "filter",
            Bound::Map(_) => "map-batch",
            Bound::FlatMap(_) => "flat-map-batch",
            _ => return Err(self.core.wrong_call("process")),
        };
        if batch.is_empty() && !self.core.poisoned {
            return Ok(batch);
        }
        let input = bindings::batch_to_wit(batch);
        let core = &mut self.core;
        let returned = match &self.bound {
            Bound::Filter(b) => core.call(call, |store| {
                b.weir_udf_filter()
                    .call_filter(store, &input)
                    .map(|r| r.map(Returned::Selection))
            }),
            Bound::Map(b) => core.call(call, |store| {
                b.weir_udf_mapper()
                    .call_map_batch(store, &input)
                    .map(|r| r.map(|o| Returned::Output(Box::new(o))))
            }),
            Bound::FlatMap(b) => core.call(call, |store| {
                b.weir_udf_flat_mapper()
                    .call_flat_map_batch(store, &input)
                    .map(|r| r.map(|o| Returned::Output(Box::new(o))))
            }),
            _ => Err(core.wrong_call("process")),
        }?;
        let input = bindings::batch_from_wit(input);
        let output = match returned {
            Returned::Selection(rows) => select(input, &rows),
            Returned::Output(out) => {
                bindings::assemble_output(input, *out, self.kind() == OperatorKind::Map)
            }
        };
        output.map_err(|m| self.core.fail(call, GuestFailure::InvalidOutput(m)))
    }

    /// Whether this instance converts state written by other versions of
    /// its module (it exports `state-migration`).
    pub fn migrates_state(&self) -> bool {
        self.migrator.is_some()
    }

    /// Converts stored values of state `state` written by module version
    /// `from_version` (`migrate`); returns one value per value given.
    ///
    /// # Errors
    /// As [`OperatorInstance::process`]; a module without the export, or a
    /// wrong number of values returned, is an invalid call or output.
    pub fn migrate_state(
        &mut self,
        from_version: &str,
        state: &str,
        values: BytesColumn,
    ) -> Result<BytesColumn, SandboxError> {
        let Some(migrator) = self.migrator.take() else {
            return Err(self.core.fail(
                "migrate",
                GuestFailure::InvalidOutput(OutputError::NoStateMigration),
            ));
        };
        let n = values.len();
        let values = bindings::column_to_wit(values);
        let out = self.core.call("migrate", |store| {
            migrator
                .weir_udf_state_migration()
                .call_migrate(store, from_version, state, &values)
        });
        self.migrator = Some(migrator);
        self.core.check_column("migrate", out?, n)
    }

    /// An aggregate's empty accumulator (`create-accumulator`).
    ///
    /// # Errors
    /// As [`OperatorInstance::process`].
    pub fn create_accumulator(&mut self) -> Result<Vec<u8>, SandboxError> {
        let (b, core) = self.aggregator("create-accumulator")?;
        core.call("create-accumulator", |store| {
            b.weir_udf_aggregator().call_create_accumulator(store)
        })
    }

    /// Folds `records` into `accumulators` (`add`): row `r` into accumulator
    /// `groups[r]`. Returns as many accumulators as given.
    ///
    /// # Errors
    /// As [`OperatorInstance::process`]; a wrong number of accumulators is an
    /// invalid output.
    pub fn add_to_accumulators(
        &mut self,
        accumulators: BytesColumn,
        groups: Vec<u32>,
        records: RecordBatch,
    ) -> Result<BytesColumn, SandboxError> {
        let n = accumulators.len();
        let accs = bindings::column_to_wit(accumulators);
        let records = bindings::batch_to_wit(records);
        let (b, core) = self.aggregator("add")?;
        let out = core.call("add", |store| {
            b.weir_udf_aggregator()
                .call_add(store, &accs, &groups, &records)
        })?;
        core.check_column("add", out, n)
    }

    /// Merges accumulators by group (`merge`); returns one per group.
    ///
    /// # Errors
    /// As [`OperatorInstance::add_to_accumulators`].
    pub fn merge_accumulators(
        &mut self,
        accumulators: BytesColumn,
        groups: Vec<u32>,
    ) -> Result<BytesColumn, SandboxError> {
        let n = groups.iter().map(|&g| g as usize + 1).max().unwrap_or(0);
        let accs = bindings::column_to_wit(accumulators);
        let (b, core) = self.aggregator("merge")?;
        let out = core.call("merge", |store| {
            b.weir_udf_aggregator().call_merge(store, &accs, &groups)
        })?;
        core.check_column("merge", out, n)
    }

    /// The results of fired panes (`get-results`), one batch naming each
    /// pane's window in `window.start` / `window.end` headers.
    ///
    /// # Errors
    /// As [`OperatorInstance::process`].
    pub fn aggregate_results(
        &mut self,
        panes: Vec<(WindowPane, Vec<u8>)>,
    ) -> Result<RecordBatch, SandboxError> {
        let fired: Vec<aggregate::exports::weir::udf::aggregator::FiredPane> = panes
            .iter()
            .map(
                |(p, acc)| aggregate::exports::weir::udf::aggregator::FiredPane {
                    key: p.key.clone(),
                    window: p.wit_window(),
                    accumulator: acc.clone(),
                },
            )
            .collect();
        let (b, core) = self.aggregator("get-results")?;
        let out = core.call("get-results", |store| {
            b.weir_udf_aggregator().call_get_results(store, &fired)
        })?;
        let panes: Vec<WindowPane> = panes.into_iter().map(|(p, _)| p).collect();
        window_output(&panes, out)
            .map_err(|m| core.fail("get-results", GuestFailure::InvalidOutput(m)))
    }

    /// Runs a process-window function over fired panes whose rows are
    /// `records[first..first + count]`, back to back.
    ///
    /// # Errors
    /// As [`OperatorInstance::process`].
    pub fn process_windows(
        &mut self,
        panes: Vec<(WindowPane, u32, u32)>,
        records: RecordBatch,
    ) -> Result<RecordBatch, SandboxError> {
        use process_window::exports::weir::udf::window_processor::Pane;
        let wit_panes: Vec<Pane> = panes
            .iter()
            .map(|(p, first, count)| Pane {
                key: p.key.clone(),
                window: p.wit_window(),
                first: *first,
                count: *count,
            })
            .collect();
        let records = bindings::batch_to_wit(records);
        let (b, core) = self.window_processor("process")?;
        let out = core.call("process", |store| {
            b.weir_udf_window_processor()
                .call_process(store, &wit_panes, &records)
        })?;
        let panes: Vec<WindowPane> = panes.into_iter().map(|(p, _, _)| p).collect();
        window_output(&panes, out).map_err(|m| core.fail("process", GuestFailure::InvalidOutput(m)))
    }

    /// Gives a keyed-process instance its state and timers.
    pub fn set_keyed_context(&mut self, ctx: Box<dyn KeyedContext>) {
        self.core.store.data_mut().keyed = Some(ctx);
    }

    /// Takes the keyed context back (to hand it to another instance).
    pub fn take_keyed_context(&mut self) -> Option<Box<dyn KeyedContext>> {
        self.core.store.data_mut().keyed.take()
    }

    /// The keyed context set by [`OperatorInstance::set_keyed_context`].
    pub fn keyed_context(&mut self) -> Option<&mut dyn KeyedContext> {
        self.core.store.data_mut().keyed.as_deref_mut()
    }

    /// The keyed context, read-only.
    pub fn keyed_context_ref(&self) -> Option<&dyn KeyedContext> {
        self.core.store.data().keyed.as_deref()
    }

    /// Processes the records of one key (`process`).
    ///
    /// # Errors
    /// As [`OperatorInstance::process`], plus a failed state call.
    pub fn keyed_process(
        &mut self,
        key: &[u8],
        records: RecordBatch,
    ) -> Result<Emitted, SandboxError> {
        let records = bindings::batch_to_wit(records);
        let (b, core) = self.keyed_processor("process")?;
        let out = core.call("process", |store| {
            b.weir_udf_keyed_processor()
                .call_process(store, key, &records)
        })?;
        check_emitted(out).map_err(|m| core.fail("process", GuestFailure::InvalidOutput(m)))
    }

    /// Delivers fired timers of one key (`on-timer`).
    ///
    /// # Errors
    /// As [`OperatorInstance::keyed_process`].
    pub fn keyed_on_timer(
        &mut self,
        key: &[u8],
        timers: &[(i64, TimeDomain)],
    ) -> Result<Emitted, SandboxError> {
        use keyed::exports::weir::udf::keyed_processor::{TimeDomain as D, Timer};
        let timers: Vec<Timer> = timers
            .iter()
            .map(|&(timestamp, d)| Timer {
                timestamp,
                domain: match d {
                    TimeDomain::EventTime => D::EventTime,
                    TimeDomain::ProcessingTime => D::ProcessingTime,
                },
            })
            .collect();
        let (b, core) = self.keyed_processor("on-timer")?;
        let out = core.call("on-timer", |store| {
            b.weir_udf_keyed_processor()
                .call_on_timer(store, key, &timers)
        })?;
        check_emitted(out).map_err(|m| core.fail("on-timer", GuestFailure::InvalidOutput(m)))
    }
}

impl CallCore {
    /// Calls the guest under a fresh CPU deadline and turns every way the call
    /// can fail into a [`SandboxError`]; a trap poisons the instance.
    fn call<T>(
        &mut self,
        call: &'static str,
        f: impl FnOnce(&mut Store<GuestState>) -> wasmtime::Result<Result<T, wit::Error>>,
    ) -> Result<T, SandboxError> {
        if self.poisoned {
            return Err(self.fail(call, GuestFailure::Poisoned));
        }
        let ticks = self.module.sandbox.ticks_for(self.limits.call_deadline);
        self.store.set_epoch_deadline(ticks);
        self.store.data_mut().host_failure = None;
        match f(&mut self.store) {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(self.fail(call, GuestFailure::Returned(bindings::error_message(&e)))),
            Err(e) => {
                self.poisoned = true;
                let failure = match self.store.data_mut().host_failure.take() {
                    Some(m) => GuestFailure::Host(m),
                    None => classify(&self.store, e, self.limits.call_deadline, self.memory_cap),
                };
                Err(self.fail(call, failure))
            }
        }
    }

    fn check_column(
        &self,
        call: &'static str,
        out: wit::BytesColumn,
        expected: usize,
    ) -> Result<BytesColumn, SandboxError> {
        let out = bindings::column_from_wit(out);
        let rows = out.len();
        let what = if call == "migrate" {
            "state values"
        } else {
            "accumulators"
        };
        out.validate(rows)
            .map_err(|e| self.fail(call, OutputError::column(what)(e).into()))?;
        if rows != expected {
            return Err(self.fail(
                call,
                OutputError::Count {
                    what,
                    got: rows,
                    expected,
                }
                .into(),
            ));
        }
        Ok(out)
    }

    fn wrong_call(&self, call: &'static str) -> SandboxError {
        self.fail(
            call,
            OutputError::WrongKind {
                kind: self.module.kind(),
                call,
            }
            .into(),
        )
    }

    fn fail(&self, call: &'static str, failure: GuestFailure) -> SandboxError {
        guest_error(self.module.name(), call, failure)
    }
}

/// Builds the result batch of a window function: keys default to the pane's
/// key, timestamps to the window's last millisecond, and every row gets
/// `window.start` and `window.end` headers (after any the guest set).
pub(crate) fn window_output(
    panes: &[WindowPane],
    out: wit::Output,
) -> Result<RecordBatch, OutputError> {
    let values = bindings::column_from_wit(out.values);
    let rows = values.len();
    values
        .validate(rows)
        .map_err(OutputError::column("values"))?;
    // No rows needs no parents either (`output` in wit/types.wit).
    let parents: Vec<u32> = if out.parents.is_empty() && rows != 0 {
        if rows != panes.len() {
            return Err(OutputError::RowsWithoutParents {
                rows,
                output: "result",
                inputs: panes.len(),
                input: "panes",
            });
        }
        (0..rows as u32).collect()
    } else {
        if out.parents.len() != rows {
            return Err(OutputError::ParentCount {
                parents: out.parents.len(),
                rows,
            });
        }
        if let Some(p) = out.parents.iter().find(|&&p| p as usize >= panes.len()) {
            return Err(OutputError::ParentOutOfRange {
                parent: *p,
                inputs: panes.len(),
                input: "panes",
            });
        }
        out.parents
    };
    let keys = match out.keys {
        Some(k) => {
            let k = bindings::column_from_wit(k);
            k.validate(rows).map_err(OutputError::column("keys"))?;
            Some(k)
        }
        None => None,
    };
    if let Some(t) = &out.timestamps
        && t.len() != rows
    {
        return Err(OutputError::ListLength {
            list: "timestamps",
            got: t.len(),
            rows,
        });
    }
    let headers = match out.headers {
        Some(h) => {
            let h = bindings::headers_from_wit(h);
            h.validate(rows).map_err(OutputError::column("headers"))?;
            Some(h)
        }
        None => None,
    };
    let mut b = BatchBuilder::with_capacity(rows, values.data.len());
    for (row, &p) in parents.iter().enumerate() {
        let pane = &panes[p as usize];
        let key = keys.as_ref().map_or(pane.key.as_slice(), |k| k.get(row));
        let ts = out
            .timestamps
            .as_ref()
            .map_or(pane.end.saturating_sub(1), |t| t[row]);
        let start = pane.start.to_string();
        let end = pane.end.to_string();
        let window = [
            (&b"window.start"[..], start.as_bytes()),
            (&b"window.end"[..], end.as_bytes()),
        ];
        let guest = headers.iter().flat_map(|h| h.row(row));
        b.push_with_headers(key, values.get(row), ts, guest.chain(window));
    }
    Ok(b.finish())
}

/// Checks what a keyed-process call emitted.
fn check_emitted(
    e: keyed::exports::weir::udf::keyed_processor::Emitted,
) -> Result<Emitted, OutputError> {
    let values = bindings::column_from_wit(e.values);
    let rows = values.len();
    values
        .validate(rows)
        .map_err(OutputError::column("values"))?;
    if e.timestamps.len() != rows {
        return Err(OutputError::ListLength {
            list: "timestamps",
            got: e.timestamps.len(),
            rows,
        });
    }
    if !e.outputs.is_empty() {
        if e.outputs.len() != rows {
            return Err(OutputError::ListLength {
                list: "output tags",
                got: e.outputs.len(),
                rows,
            });
        }
        if let Some(&o) = e
            .outputs
            .iter()
            .find(|&&o| o as usize > e.side_outputs.len())
        {
            return Err(OutputError::UnknownSideOutput {
                tag: u32::from(o),
                listed: e.side_outputs.len(),
            });
        }
    }
    Ok(Emitted {
        values,
        timestamps: e.timestamps,
        outputs: e.outputs,
        side_outputs: e.side_outputs,
    })
}

enum Returned {
    Selection(Vec<u32>),
    Output(Box<wit::Output>),
}

/// Applies a filter's selection, which must be strictly increasing indices.
pub(crate) fn select(input: RecordBatch, rows: &[u32]) -> Result<RecordBatch, OutputError> {
    if let Some(w) = rows.windows(2).find(|w| w[1] <= w[0]) {
        return Err(OutputError::SelectionNotIncreasing(w[0], w[1]));
    }
    if let Some(&last) = rows.last()
        && last as usize >= input.len()
    {
        return Err(OutputError::SelectionOutOfRange {
            row: last,
            rows: input.len(),
        });
    }
    Ok(input.take(rows))
}

fn guest_error(module: &str, call: &'static str, failure: GuestFailure) -> SandboxError {
    SandboxError::Guest {
        module: module.to_string(),
        call,
        failure,
    }
}

/// Turns a wasmtime error from a guest call into what the user should read.
fn classify(
    store: &Store<GuestState>,
    e: wasmtime::Error,
    deadline: Duration,
    cap: usize,
) -> GuestFailure {
    if let Some(requested) = store.data().memory_refused {
        return GuestFailure::MemoryCapExceeded { requested, cap };
    }
    if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return GuestFailure::DeadlineExceeded { deadline };
    }
    GuestFailure::Trap {
        message: format!("{e:?}"),
        console: store.data().console.tail(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(parents: Vec<u32>, vals: &[&[u8]]) -> wit::Output {
        let mut c = BytesColumn::new();
        for v in vals {
            c.push(v);
        }
        wit::Output {
            parents,
            values: bindings::column_to_wit(c),
            keys: None,
            timestamps: None,
            headers: None,
        }
    }

    #[test]
    fn window_results_may_be_none_without_parents_but_not_too_few() {
        let panes: Vec<WindowPane> = (0..3)
            .map(|i| WindowPane {
                key: vec![b'k', b'0' + i],
                start: 0,
                end: 10,
            })
            .collect();
        assert_eq!(window_output(&panes, output(vec![], &[])).unwrap().len(), 0);
        let e = window_output(&panes, output(vec![], &[b"x"])).unwrap_err();
        assert_eq!(e.to_string(), "1 result rows for 3 panes without `parents`");
        let out = window_output(&panes, output(vec![], &[b"a", b"b", b"c"])).unwrap();
        assert_eq!(out.len(), 3);
    }
}
