//! Built-in operator kinds, one file each.
//!
//! * [`wasm_udf`] — a stateless user operator (filter, map or flat-map) run as
//!   a sandboxed Wasm component, one warm instance per subtask.
//! * [`window`] — windows per key (tumbling, sliding, session, global) with
//!   triggers, evictors, allowed lateness and a late side output; the window
//!   function (incremental aggregate or process-window) is a component.
//! * [`keyed_process`] — a keyed process function component with keyed state
//!   and timers held by the host.
//! * [`native`] — a Rust closure over batches: for benchmarks and tests that
//!   compare with the Wasm path, and for host-side plumbing.

pub mod keyed_process;
pub mod native;
pub mod wasm_udf;
pub mod window;

/// The synchronous part of a keyed operator's snapshot: freezes its state
/// and timers (constant time on the heap, a RocksDB checkpoint of hard
/// links) and defers the writing: the portable format for heap state and
/// savepoints, an incremental upload of RocksDB's files (timers included)
/// for checkpoints.
pub(crate) fn freeze_keyed(
    state: &mut weir_state::KeyedState,
    writer: &StateWriter,
) -> Result<PendingState, String> {
    let frozen = state.freeze()?;
    let writer = Some(writer.clone());
    Ok(PendingState::Deferred(Box::new(
        move |target| match &frozen.store {
            weir_state::Frozen::Rocks(c) if !target.savepoint => Ok(SubtaskState {
                keyed: Some(weir_state::KeyedSnapshot {
                    states: frozen.states.clone(),
                    ..Default::default()
                }),
                native: upload_incremental(c, target)?,
                writer,
                ..SubtaskState::default()
            }),
            _ => Ok(SubtaskState {
                keyed: Some(frozen.canonical()?),
                writer,
                ..SubtaskState::default()
            }),
        },
    )))
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
) -> Result<(), String> {
    if !migration.applies(from) {
        return Ok(());
    }
    let mut snap = state.snapshot();
    let guest_state = migration.guest_state;
    let keep: Vec<bool> = snap.states.iter().map(|(n, _)| guest_state(n)).collect();
    migration.run(from, &mut snap)?;
    for blob in snap.groups.values_mut() {
        let mut only = Vec::new();
        for e in weir_state::snapshot::entries(blob).map_err(|e| e.to_string())? {
            if let weir_state::snapshot::Entry::State { state, rest, value } = e
                && keep.get(usize::from(state)) == Some(&true)
            {
                weir_state::snapshot::push_state(&mut only, state, rest, value);
            }
        }
        *blob = only;
    }
    state.restore(&snap).map_err(|e| e.to_string())
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
        module: &std::sync::Arc<weir_sandbox::OperatorModule>,
        version: &str,
        running: weir_sandbox::OperatorKind,
    ) -> Result<(weir_sandbox::OperatorInstance, StateWriter), String> {
        if module.kind() != running {
            return Err(format!(
                "it is a {} operator, the running one a {running} operator",
                module.kind()
            ));
        }
        let instance = module
            .instantiate(self.label.clone(), self.limits, &self.config)
            .map_err(|e| e.to_string())?;
        Ok((instance, StateWriter::new(module, Some(version))))
    }
}

/// Values per `migrate` call: bounded so that a guest's memory holds them.
const MIGRATE_BATCH: usize = 4096;

impl Migration<'_> {
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
    ) -> Result<(), String> {
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
                    let converted = instance
                        .migrate_state(&from.version, name, column)
                        .map_err(|e| e.to_string())?;
                    for (v, new) in chunk.iter().zip(converted.iter()) {
                        out.push([v.get(..stamp).unwrap_or_default(), new].concat());
                    }
                }
                Ok(out)
            },
        )
    }
}

/// Uploads a RocksDB checkpoint incrementally: SST (and options) files not
/// yet in storage go to `shared/<checkpoint>-<instance>-<file>`, the others
/// are referenced; the small mutable files (manifest, current) go with the
/// checkpoint.
fn upload_incremental(
    c: &weir_state::RocksCheckpoint,
    target: &SnapshotTarget,
) -> Result<Vec<NativeFile>, String> {
    let files = c.files()?;
    let lock = || c.shared.lock().unwrap_or_else(PoisonError::into_inner);
    {
        let mut index = lock();
        for (id, name, object) in std::mem::take(&mut index.pending) {
            if target.is_complete(id) {
                index.confirmed.insert(name, object);
            } else if id >= target.id {
                index.pending.push((id, name, object));
            }
        }
        // Files compacted away since are not needed any more.
        index
            .confirmed
            .retain(|name, _| files.iter().any(|(f, _)| f == name));
    }
    let mut out = Vec::with_capacity(files.len());
    for (name, size) in files {
        let path = c.dir().join(&name);
        // SST and options files never change once written: shared.
        if name.ends_with(".sst") || name.starts_with("OPTIONS-") {
            let known = lock().confirmed.get(&name).cloned();
            if let Some(object) = known {
                out.push(NativeFile {
                    name,
                    object,
                    size,
                    uploaded: false,
                });
                continue;
            }
            let object = format!("shared/{}-{}-{name}", target.id, c.instance);
            target.storage.put_file(&object, &path)?;
            lock()
                .pending
                .push((target.id, name.clone(), object.clone()));
            out.push(NativeFile {
                name,
                object,
                size,
                uploaded: true,
            });
        } else {
            let object = format!("chk-{}/{}/{name}", target.id, target.label);
            target.storage.put_file(&object, &path)?;
            out.push(NativeFile {
                name,
                object,
                size,
                uploaded: true,
            });
        }
    }
    Ok(out)
}

/// Opens a keyed operator subtask's state store and timers, restored from
/// the job's checkpoint if it has one (what [`freeze_keyed`] wrote): from
/// the RocksDB files themselves when the subtask is unchanged and runs on
/// RocksDB, else from the portable format.
///
/// State written by another module than `migration`'s is converted by that
/// module's `migrate` first, if it exports one (read in the portable format
/// for that, whatever the backend).
pub(crate) fn open_keyed(
    info: &crate::SubtaskInfo,
    mut migration: Option<Migration<'_>>,
) -> Result<weir_state::KeyedState, crate::BoxError> {
    let migrate_from = match (&migration, &info.restored) {
        (Some(m), Some(job)) => job.writer(&info.node).filter(|w| m.applies(w)).cloned(),
        _ => None,
    };
    let restored = match (&migrate_from, &info.restored) {
        (Some(_), Some(job)) => job.subtask(
            &info.node,
            info.subtask,
            info.parallelism,
            info.max_parallelism,
            false,
        )?,
        _ => info.restored_state()?,
    };
    let mut state = match (&restored, &info.restored) {
        (Some(r), Some(job)) if !r.native.is_empty() => {
            let label = format!("{}-{}-{}", info.job, info.node, info.subtask);
            let path = info
                .state_backend
                .fresh_path(&label)?
                .ok_or("incremental RocksDB state needs the RocksDB backend")?;
            job.download(&r.native, &path)?;
            let store = weir_state::RocksStore::open(&path, true)?;
            {
                let mut index = store
                    .shared_files()
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                for f in r.native.iter().filter(|f| f.object.starts_with("shared/")) {
                    index.confirmed.insert(f.name.clone(), f.object.clone());
                }
            }
            let states = r
                .keyed
                .as_ref()
                .map(|k| k.states.clone())
                .unwrap_or_default();
            weir_state::KeyedState::with_states(Box::new(store), &states)?
        }
        _ => weir_state::KeyedState::new(info.open_state_store()?),
    };
    if let Some(snap) = restored.and_then(|r| r.keyed) {
        let mut snap = snap;
        if let (Some(from), Some(m)) = (&migrate_from, migration.as_mut()) {
            m.run(from, &mut snap).map_err(|e| {
                format!(
                    "cannot migrate the state of `{}` written by version {} ({}) to version {} \
                     ({}): {e}",
                    info.node, from.version, from.digest, m.writer.version, m.writer.digest
                )
            })?;
            tracing::info!(
                node = %info.node,
                subtask = info.subtask,
                from = %from.version,
                to = %m.writer.version,
                "state migrated"
            );
        }
        state.restore(&snap)?;
    }
    Ok(state)
}

use std::sync::PoisonError;

use crate::checkpoint::{NativeFile, PendingState, SnapshotTarget, StateWriter, SubtaskState};

pub use keyed_process::KeyedProcessFactory;
pub use native::NativeOperatorFactory;
pub use wasm_udf::WasmUdfFactory;
pub use window::{Evictor, TimeMode, Trigger, WindowOperatorFactory, WindowSpec};
