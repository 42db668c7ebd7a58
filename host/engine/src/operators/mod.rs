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
pub(crate) fn freeze_keyed(state: &mut weir_state::KeyedState) -> Result<PendingState, String> {
    let frozen = state.freeze()?;
    Ok(PendingState::Deferred(Box::new(
        move |target| match &frozen.store {
            weir_state::Frozen::Rocks(c) if !target.savepoint => Ok(SubtaskState {
                keyed: Some(weir_state::KeyedSnapshot {
                    states: frozen.states.clone(),
                    ..Default::default()
                }),
                native: upload_incremental(c, target)?,
                ..SubtaskState::default()
            }),
            _ => Ok(SubtaskState {
                keyed: Some(frozen.canonical()?),
                ..SubtaskState::default()
            }),
        },
    )))
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
pub(crate) fn open_keyed(
    info: &crate::SubtaskInfo,
) -> Result<weir_state::KeyedState, crate::BoxError> {
    let restored = info.restored_state()?;
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
    if let Some(snap) = restored.as_ref().and_then(|r| r.keyed.as_ref()) {
        state.restore(snap)?;
    }
    Ok(state)
}

use std::sync::PoisonError;

use crate::checkpoint::{NativeFile, PendingState, SnapshotTarget, SubtaskState};

pub use keyed_process::KeyedProcessFactory;
pub use native::NativeOperatorFactory;
pub use wasm_udf::WasmUdfFactory;
pub use window::{Evictor, TimeMode, Trigger, WindowOperatorFactory, WindowSpec};
