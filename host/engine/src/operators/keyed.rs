//! What every keyed operator does with its state at checkpoints and on
//! restore, whatever computes it.

use std::sync::PoisonError;

use weir_state::KeyedSnapshot;

use crate::checkpoint::{
    CheckpointError, NativeFile, PendingState, SnapshotTarget, StateWriter, SubtaskState,
};

/// Converts keyed state that another module wrote into what the running
/// one reads (an upgrade whose new module exports `state-migration`).
/// Implemented by the operators that run modules.
pub trait StateMigration {
    /// The module running now, as recorded in the state it writes.
    fn writer(&self) -> &StateWriter;

    /// Whether state written by `from` must be converted.
    fn applies(&self, from: &StateWriter) -> bool;

    /// Converts every value of `snap`, written by `from`, in place.
    ///
    /// # Errors
    /// Why the running module could not convert it.
    fn run(
        &mut self,
        from: &StateWriter,
        snap: &mut KeyedSnapshot,
    ) -> Result<(), weir_state::StateError>;
}

/// The synchronous part of a keyed operator's snapshot: freezes its state
/// and timers (constant time on the heap, a RocksDB checkpoint of hard
/// links) and defers the writing: the portable format for heap state and
/// savepoints, an incremental upload of RocksDB's files (timers included)
/// for checkpoints.
pub fn freeze_keyed(
    state: &mut weir_state::KeyedState,
    writer: &StateWriter,
) -> Result<PendingState, CheckpointError> {
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

/// Uploads a RocksDB checkpoint incrementally: SST (and options) files not
/// yet in storage go to `shared/<checkpoint>-<instance>-<file>`, the others
/// are referenced; the small mutable files (manifest, current) go with the
/// checkpoint.
fn upload_incremental(
    c: &weir_state::RocksCheckpoint,
    target: &SnapshotTarget,
) -> Result<Vec<NativeFile>, CheckpointError> {
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
pub fn open_keyed(
    info: &crate::SubtaskInfo,
    mut migration: Option<&mut dyn StateMigration>,
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
            m.run(from, &mut snap).map_err(|source| {
                CheckpointError::Migration(Box::new(crate::checkpoint::MigrationError {
                    node: info.node.clone(),
                    from: from.clone(),
                    to: m.writer().clone(),
                    source,
                }))
            })?;
            tracing::info!(
                node = %info.node,
                subtask = info.subtask,
                from = %from.version,
                to = %m.writer().version,
                "state migrated"
            );
        }
        state.restore(&snap)?;
    }
    Ok(state)
}
