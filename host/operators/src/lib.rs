//! The operators that call guests, above the Wasm-free dataflow core.
//!
//! * [`wasm_udf`] — a stateless user operator (filter, map or flat-map) run as
//!   a sandboxed Wasm component, one warm instance per subtask.
//! * [`window`] — windows per key (tumbling, sliding, session, global) with
//!   triggers, evictors, allowed lateness and a late side output; the window
//!   function (incremental aggregate or process-window) is a component.
//! * [`keyed_process`] — a keyed process function component with keyed state
//!   and timers held by the host.
//!
//! Each implements the core's [`weir_engine::Operator`]; the core knows
//! modules only as opaque [`ModuleHandle`]s, which [`module_handle`] makes
//! and the operators here open again for a hot swap.

pub mod keyed_process;
pub mod wasm_udf;
pub mod window;

use std::sync::Arc;

use weir_engine::SubtaskInfo;
use weir_engine::checkpoint::StateWriter;
use weir_engine::operators::keyed::StateMigration;
use weir_engine::swap::{ModuleHandle, SwapError};
use weir_sandbox::OperatorModule;

pub use keyed_process::KeyedProcessFactory;
pub use wasm_udf::WasmUdfFactory;
pub use window::{Evictor, TimeMode, Trigger, WindowOperatorFactory, WindowSpec};

/// A module of another operator world than the operator needs.
#[derive(Debug, thiserror::Error)]
#[error("module `{module}` is a {kind} operator; {needs}")]
pub struct WrongKind {
    /// The module's name.
    pub module: String,
    /// Its world.
    pub kind: weir_sandbox::OperatorKind,
    /// What the operator needs.
    pub needs: &'static str,
}

/// `module` as the core carries it to a running operator (a hot swap).
pub fn module_handle(module: Arc<OperatorModule>) -> ModuleHandle {
    let (name, digest) = (module.name().to_string(), module.digest().to_string());
    ModuleHandle::new(&name, &digest, module)
}

/// The writer recorded in the state `module` writes, named `version`
/// (`None`: by its digest).
pub fn state_writer(module: &OperatorModule, version: Option<&str>) -> StateWriter {
    StateWriter::new(&module.digest().to_string(), version)
}

/// The label a Wasm instance of subtask `info` logs and fails under.
pub fn instance_label(info: &SubtaskInfo) -> weir_sandbox::InstanceLabel {
    weir_sandbox::InstanceLabel {
        job: info.job.clone(),
        operator: info.node.clone(),
        subtask: info.subtask,
    }
}

/// How a keyed Wasm operator takes state that another module wrote.
pub(crate) struct Migration<'a> {
    /// The module running now.
    pub writer: &'a StateWriter,
    /// Its instance, which converts the values if it exports
    /// `state-migration`.
    pub instance: &'a mut weir_sandbox::OperatorInstance,
    /// Whether a state (by name) belongs to the guest; the host's own
    /// bookkeeping states are not converted.
    pub guest_state: &'a dyn Fn(&str) -> bool,
    /// Whether a state's values carry an 8-byte expiry stamp (state TTL),
    /// which is kept and not shown to the guest.
    pub stamped: &'a dyn Fn(&str) -> bool,
}

/// Migrates the live state of a subtask in place (a hot swap to a module
/// that exports `state-migration`): reads the guest's values, converts
/// them and writes them back over the old ones. Timers are untouched.
pub(crate) fn migrate_live(
    state: &mut weir_state::KeyedState,
    from: &StateWriter,
    mut migration: Migration<'_>,
) -> Result<(), SwapError> {
    if !migration.applies(from) {
        return Ok(());
    }
    let mut snap = state.snapshot();
    let guest_state = migration.guest_state;
    let keep: Vec<bool> = snap.states.iter().map(|(n, _)| guest_state(n)).collect();
    migration.run(from, &mut snap)?;
    for blob in snap.groups.values_mut() {
        let mut only = Vec::new();
        let entries = weir_state::snapshot::entries(blob)?;
        for e in entries {
            if let weir_state::snapshot::Entry::State { state, rest, value } = e
                && keep.get(usize::from(state)) == Some(&true)
            {
                weir_state::snapshot::push_state(&mut only, state, rest, value);
            }
        }
        *blob = only;
    }
    Ok(state.restore(&snap)?)
}

/// What a running operator subtask needs to make a new instance of another
/// module (a hot swap): the same label, limits and configuration.
pub(crate) struct Respawn {
    pub label: weir_sandbox::InstanceLabel,
    pub limits: weir_sandbox::InstanceLimits,
    pub config: Vec<(String, String)>,
}

impl Respawn {
    /// A new, initialized instance of `module`, which must be of the kind
    /// `running` is; with the writer it will record in snapshots.
    pub fn instance(
        &self,
        module: &ModuleHandle,
        version: &str,
        running: weir_sandbox::OperatorKind,
    ) -> Result<(weir_sandbox::OperatorInstance, StateWriter), SwapError> {
        let module = module
            .get::<OperatorModule>()
            .ok_or_else(|| SwapError::Foreign {
                module: module.name().to_string(),
            })?;
        if module.kind() != running {
            return Err(SwapError::Kind {
                new: module.kind().to_string(),
                running: running.to_string(),
            });
        }
        let instance = module
            .instantiate(self.label.clone(), self.limits, &self.config)
            .map_err(|e| SwapError::Instance(Box::new(e)))?;
        Ok((instance, state_writer(&module, Some(version))))
    }
}

/// Values per `migrate` call: bounded so that a guest's memory holds them.
const MIGRATE_BATCH: usize = 4096;

impl StateMigration for Migration<'_> {
    fn writer(&self) -> &StateWriter {
        self.writer
    }

    /// Whether state written by `from` goes through the guest's `migrate`:
    /// another module wrote it, and this one exports the function.
    fn applies(&self, from: &StateWriter) -> bool {
        self.instance.migrates_state() && from.digest != self.writer.digest
    }

    /// Converts every guest value of `snap`, written by `from`.
    fn run(
        &mut self,
        from: &StateWriter,
        snap: &mut weir_state::KeyedSnapshot,
    ) -> Result<(), weir_state::StateError> {
        let (guest_state, stamped) = (self.guest_state, self.stamped);
        let instance = &mut *self.instance;
        snap.map_values(
            |name, _| guest_state(name),
            |name, values| {
                let stamp = if stamped(name) { 8 } else { 0 };
                let mut out = Vec::with_capacity(values.len());
                for chunk in values.chunks(MIGRATE_BATCH) {
                    let mut column = weir_record::BytesColumn::new();
                    for v in chunk {
                        column.push(v.get(stamp..).unwrap_or_default());
                    }
                    let converted = instance.migrate_state(&from.version, name, column)?;
                    for (v, new) in chunk.iter().zip(converted.iter()) {
                        out.push([v.get(..stamp).unwrap_or_default(), new].concat());
                    }
                }
                Ok(out)
            },
        )
    }
}
