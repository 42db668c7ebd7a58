//! Frozen state: what a checkpoint writes out while processing goes on.
//!
//! A checkpoint has a synchronous part, at the barrier, and an asynchronous
//! part, on another thread. The synchronous part only *freezes* the store:
//! on the heap, a constant-time copy-on-write clone; in RocksDB, a RocksDB
//! checkpoint (a memtable flush and hard links to the immutable SST files).
//! The asynchronous part encodes the frozen copy into the portable format
//! ([`FrozenKeyed::canonical`], for savepoints and heap checkpoints) or
//! uploads RocksDB's files (incremental checkpoints, in the engine).

use std::path::Path;
#[cfg(feature = "rocksdb")]
use std::path::PathBuf;

use crate::keyed::{StateError, StateKind};
use crate::rocks::RocksCheckpoint;
use crate::snapshot::{KeyedSnapshot, push_state, push_timer};

/// A store frozen at a barrier.
#[derive(Debug)]
pub enum Frozen {
    /// A heap store's map, sharing structure with the live one.
    Heap(crate::store::HeapMap),
    /// A RocksDB checkpoint: hard links to the database's files.
    Rocks(RocksCheckpoint),
}

impl Frozen {
    /// Calls `f` for every entry (in no particular order on the heap).
    ///
    /// # Errors
    /// RocksDB's error reading the checkpoint.
    pub fn scan(&self, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), StateError> {
        match self {
            Self::Heap(map) => {
                for (k, v) in map {
                    f(k, v);
                }
                Ok(())
            }
            Self::Rocks(c) => c.scan(f),
        }
    }
}

/// A subtask's keyed state frozen at a barrier: its store and state names.
#[derive(Debug)]
pub struct FrozenKeyed {
    /// State names and kinds, by state id.
    pub states: Vec<(String, StateKind)>,
    /// Timers held on the heap: (event time?, timers). Timers held in the
    /// store are part of it.
    pub timers: Vec<(bool, imbl::OrdSet<crate::timers::Timer>)>,
    /// The frozen store.
    pub store: Frozen,
    /// Time-to-live (ms) by state id.
    pub ttl: Vec<Option<i64>>,
    /// The processing time at the freeze: entries expired by then are
    /// left out of the snapshot.
    pub now: i64,
}

impl FrozenKeyed {
    /// Encodes the frozen state and timers into the portable snapshot
    /// format, by key group.
    ///
    /// # Errors
    /// RocksDB's error reading the checkpoint.
    pub fn canonical(&self) -> Result<KeyedSnapshot, StateError> {
        // Values and map entries of states with TTL that have expired.
        let drop: Vec<bool> = self
            .states
            .iter()
            .zip(self.ttl.iter().chain(std::iter::repeat(&None)))
            .map(|((_, kind), ttl)| ttl.is_some() && *kind != StateKind::List)
            .collect();
        let now = self.now;
        let mut snap = canonical(self.states.clone(), |f| {
            self.store.scan(&mut |k, v| {
                let id = k
                    .get(2..4)
                    .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
                if drop.get(id).copied().unwrap_or(false) && crate::keyed::expired(v, now) {
                    return;
                }
                f(k, v);
            })
        })?;
        add_heap_timers(&mut snap, &self.timers);
        Ok(snap)
    }
}

/// Adds timers held on the heap to a snapshot, each in its key's group.
pub(crate) fn add_heap_timers(
    snap: &mut KeyedSnapshot,
    timers: &[(bool, imbl::OrdSet<crate::timers::Timer>)],
) {
    for (event, set) in timers {
        for t in set {
            let blob = snap.groups.entry(t.group).or_default();
            push_timer(blob, *event, t.time, &t.key, &t.namespace);
        }
    }
}

/// Builds a portable snapshot from every `(key, value)` that `scan` yields,
/// keys in [`crate::KeyedState`]'s layout (timers held in the store in
/// [`crate::timers`]' layout).
pub(crate) fn canonical(
    states: Vec<(String, StateKind)>,
    scan: impl FnOnce(&mut dyn FnMut(&[u8], &[u8])) -> Result<(), StateError>,
) -> Result<KeyedSnapshot, StateError> {
    let mut snap = KeyedSnapshot {
        states,
        ..Default::default()
    };
    scan(&mut |k, v| {
        if k.len() < 4 {
            return;
        }
        let group = u16::from_be_bytes([k[0], k[1]]);
        let id = u16::from_be_bytes([k[2], k[3]]);
        let blob = snap.groups.entry(group).or_default();
        if id < crate::timers::FIRST_RESERVED_ID {
            push_state(blob, id, &k[4..], v);
        } else if let Some((event, t)) = crate::timers::decode_timer_key(k) {
            push_timer(blob, event, t.time, &t.key, &t.namespace);
        }
    })?;
    Ok(snap)
}

/// Reads a RocksDB database restored from a checkpoint's files (at `dir`)
/// into the portable format: the path to another parallelism or backend.
///
/// # Errors
/// RocksDB's error opening or reading it, with the path.
pub fn canonical_from_rocksdb(
    dir: &Path,
    states: Vec<(String, StateKind)>,
) -> Result<KeyedSnapshot, StateError> {
    #[cfg(feature = "rocksdb")]
    {
        let c = RocksCheckpoint::adopt(PathBuf::from(dir), false);
        canonical(states, |f| c.scan(f))
    }
    #[cfg(not(feature = "rocksdb"))]
    {
        let _ = (dir, states);
        Err(StateError::RocksDbUnavailable)
    }
}
