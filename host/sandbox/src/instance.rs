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

use crate::bindings::{self, filter, flat_map, map, wit};
use crate::error::{GuestFailure, SandboxError};
use crate::guest::GuestState;
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
}

/// A live guest instance with its own store.
pub struct OperatorInstance {
    module: Arc<OperatorModule>,
    store: Store<GuestState>,
    bound: Bound,
    limits: InstanceLimits,
    /// The memory cap in force: the instance's, at most the sandbox's.
    memory_cap: usize,
    poisoned: bool,
}

impl std::fmt::Debug for OperatorInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorInstance")
            .field("module", &self.module)
            .field("limits", &self.limits)
            .field("poisoned", &self.poisoned)
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
        let bound = match &module.pre {
            KindPre::Filter(p) => p.instantiate(&mut store).map(Bound::Filter),
            KindPre::Map(p) => p.instantiate(&mut store).map(Bound::Map),
            KindPre::FlatMap(p) => p.instantiate(&mut store).map(Bound::FlatMap),
        }
        .map_err(|e| fail(&store, "instantiate", e, limits.init_deadline))?;

        let config = config.to_vec();
        let result = match &bound {
            Bound::Filter(b) => b.weir_udf_filter().call_init(&mut store, &config),
            Bound::Map(b) => b.weir_udf_mapper().call_init(&mut store, &config),
            Bound::FlatMap(b) => b.weir_udf_flat_mapper().call_init(&mut store, &config),
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
            module,
            store,
            bound,
            limits,
            memory_cap: cap,
            poisoned: false,
        })
    }

    /// The module this instance runs.
    pub fn module(&self) -> &Arc<OperatorModule> {
        &self.module
    }

    /// The operator kind.
    pub fn kind(&self) -> OperatorKind {
        self.module.kind()
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
        };
        if self.poisoned {
            return Err(guest_error(
                self.module.name(),
                call,
                GuestFailure::Poisoned,
            ));
        }
        if batch.is_empty() {
            return Ok(batch);
        }
        let ticks = self.module.sandbox.ticks_for(self.limits.call_deadline);
        self.store.set_epoch_deadline(ticks);
        let input = bindings::batch_to_wit(batch);
        let store = &mut self.store;
        let result = match &self.bound {
            Bound::Filter(b) => b
                .weir_udf_filter()
                .call_filter(&mut *store, &input)
                .map(|r| r.map(Returned::Selection)),
            Bound::Map(b) => b
                .weir_udf_mapper()
                .call_map_batch(&mut *store, &input)
                .map(|r| r.map(|o| Returned::Output(Box::new(o)))),
            Bound::FlatMap(b) => b
                .weir_udf_flat_mapper()
                .call_flat_map_batch(&mut *store, &input)
                .map(|r| r.map(|o| Returned::Output(Box::new(o)))),
        };
        let returned = match result {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                return Err(self.fail(call, GuestFailure::Returned(bindings::error_message(&e))));
            }
            Err(e) => {
                self.poisoned = true;
                let failure = classify(&self.store, e, self.limits.call_deadline, self.memory_cap);
                return Err(self.fail(call, failure));
            }
        };
        let input = bindings::batch_from_wit(input);
        let output = match returned {
            Returned::Selection(rows) => select(input, &rows),
            Returned::Output(out) => {
                bindings::assemble_output(input, *out, self.kind() == OperatorKind::Map)
            }
        };
        output.map_err(|m| self.fail(call, GuestFailure::InvalidOutput(m)))
    }

    fn fail(&self, call: &'static str, failure: GuestFailure) -> SandboxError {
        guest_error(self.module.name(), call, failure)
    }
}

enum Returned {
    Selection(Vec<u32>),
    Output(Box<wit::Output>),
}

/// Applies a filter's selection, which must be strictly increasing indices.
fn select(input: RecordBatch, rows: &[u32]) -> Result<RecordBatch, String> {
    if let Some(w) = rows.windows(2).find(|w| w[1] <= w[0]) {
        return Err(format!(
            "selected rows must be strictly increasing, found {} then {}",
            w[0], w[1]
        ));
    }
    if let Some(&last) = rows.last()
        && last as usize >= input.len()
    {
        return Err(format!(
            "selected row {last} is out of range for {} rows",
            input.len()
        ));
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
