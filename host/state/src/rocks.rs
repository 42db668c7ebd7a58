//! State in RocksDB: for state larger than memory.
//!
//! Each operator subtask has its own database in a working directory that
//! lives as long as the subtask (state survives failures through checkpoints,
//! not through this directory). Keys are the [`crate::KeyedState`] layout,
//! which starts with the key group, so one key group is one contiguous range.
//! List appends are RocksDB merges (a concatenation), so adding to a list
//! never reads it back.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rocksdb::{DB, Direction, IteratorMode, MergeOperands, Options, ReadOptions, WriteBatch};

use crate::StateError;
use crate::store::StateStore;

/// Concatenates merge operands onto the existing value: list appends.
fn options() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.set_merge_operator_associative("concat", concat);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    // Checkpoints, not the write-ahead log, make state durable.
    opts.set_manual_wal_flush(true);
    opts
}

fn concat(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let mut out = existing.map(<[u8]>::to_vec).unwrap_or_default();
    for op in operands {
        out.extend_from_slice(op);
    }
    Some(out)
}

/// Which of a database's SST files are already in checkpoint storage, and
/// under which name: SST files never change, so an incremental checkpoint
/// uploads only those not listed here.
pub type SharedFiles = Arc<Mutex<SharedIndex>>;

/// See [`SharedFiles`].
#[derive(Debug, Default)]
pub struct SharedIndex {
    /// Files uploaded for a checkpoint known complete: file name → object.
    pub confirmed: HashMap<String, String>,
    /// Files uploaded for a checkpoint not yet known complete:
    /// (checkpoint, file name, object). Reused only once it completed; an
    /// abandoned checkpoint's uploads are forgotten (and removed from
    /// storage by the coordinator).
    pub pending: Vec<(u64, String, String)>,
}

/// A name unique to this database instance, for its uploaded files.
fn instance_name() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "{:x}",
        nanos ^ (u64::from(std::process::id()) << 40) ^ (n << 20)
    )
}

/// A RocksDB state store.
pub struct RocksStore {
    /// The database; `None` only while being dropped (closed before its
    /// directory is removed).
    db: Option<DB>,
    path: PathBuf,
    /// Remove the directory when dropped (a subtask's working copy).
    remove_on_drop: bool,
    shared: SharedFiles,
    instance: String,
    checkpoints: u64,
    /// See [`write_options`].
    write: rocksdb::WriteOptions,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RocksStore {
    /// Opens (creating) a database at `path`. With `remove_on_drop`, the
    /// directory is deleted when the store is dropped.
    ///
    /// # Errors
    /// RocksDB's error opening the database, with the path.
    pub fn open(path: &Path, remove_on_drop: bool) -> Result<Self, StateError> {
        let db = DB::open(&options(), path)
            .map(Some)
            .map_err(|e| StateError::Rocks {
                op: "open",
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        Ok(Self {
            db,
            path: path.to_path_buf(),
            remove_on_drop,
            shared: SharedFiles::default(),
            instance: instance_name(),
            checkpoints: 0,
            write: write_options(),
        })
    }

    fn db(&self) -> &DB {
        self.db
            .as_ref()
            .expect("the database is open until the store is dropped")
    }

    /// The files of this database already in checkpoint storage (seeded when
    /// it was restored from an incremental checkpoint).
    pub fn shared_files(&self) -> &SharedFiles {
        &self.shared
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fail(&self, what: &str, e: rocksdb::Error) -> ! {
        // A failing local disk under the state store leaves nothing sane to
        // do in the subtask; the job fails and restarts from its checkpoint.
        panic!("RocksDB state at `{}`: {what}: {e}", self.path.display())
    }
}

impl Drop for RocksStore {
    fn drop(&mut self) {
        // Close before removing the directory: closing must not write into
        // a directory already gone.
        drop(self.db.take());
        if self.remove_on_drop {
            let _ = DB::destroy(&Options::default(), &self.path);
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The first key after every key starting with `prefix`, if any.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Writes skip the write-ahead log, as Flink's RocksDB backend does: a
/// checkpoint flushes the memtables into the files it links, and a failed
/// job restarts from a checkpoint, never from the log.
fn write_options() -> rocksdb::WriteOptions {
    let mut w = rocksdb::WriteOptions::default();
    w.disable_wal(true);
    w
}

impl StateStore for RocksStore {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        match self.db().get(key) {
            Ok(v) => v,
            Err(e) => self.fail("get", e),
        }
    }

    fn with_value(&self, key: &[u8], f: &mut dyn FnMut(Option<&[u8]>)) {
        match self.db().get_pinned(key) {
            Ok(v) => f(v.as_deref()),
            Err(e) => self.fail("get", e),
        }
    }

    fn put(&mut self, key: &[u8], value: &[u8]) {
        if let Err(e) = self.db().put_opt(key, value, &self.write) {
            self.fail("put", e);
        }
    }

    fn append(&mut self, key: &[u8], bytes: &[u8]) {
        if let Err(e) = self.db().merge_opt(key, bytes, &self.write) {
            self.fail("merge", e);
        }
    }

    fn delete(&mut self, key: &[u8]) {
        if let Err(e) = self.db().delete_opt(key, &self.write) {
            self.fail("delete", e);
        }
    }

    fn scan_prefix(&self, prefix: &[u8], f: &mut dyn FnMut(&[u8], &[u8])) {
        let mut ro = ReadOptions::default();
        if let Some(end) = prefix_end(prefix) {
            ro.set_iterate_upper_bound(end);
        }
        for item in self
            .db()
            .iterator_opt(IteratorMode::From(prefix, Direction::Forward), ro)
        {
            match item {
                Ok((k, v)) => f(&k, &v),
                Err(e) => self.fail("scan", e),
            }
        }
    }

    fn delete_prefix(&mut self, prefix: &[u8]) {
        let mut batch = WriteBatch::default();
        match prefix_end(prefix) {
            Some(end) => batch.delete_range(prefix, end.as_slice()),
            None => {
                let mut keys = Vec::new();
                self.scan_prefix(prefix, &mut |k, _| keys.push(k.to_vec()));
                for k in keys {
                    batch.delete(k);
                }
            }
        }
        if let Err(e) = self.db().write_opt(batch, &self.write) {
            self.fail("delete range", e);
        }
    }

    fn seek(&self, from: &[u8], prefix: &[u8]) -> Option<Vec<u8>> {
        let mut ro = ReadOptions::default();
        if let Some(end) = prefix_end(prefix) {
            ro.set_iterate_upper_bound(end);
        }
        let mut it = self
            .db()
            .iterator_opt(IteratorMode::From(from, Direction::Forward), ro);
        match it.next()? {
            Ok((k, _)) => k.starts_with(prefix).then(|| k.to_vec()),
            Err(e) => self.fail("seek", e),
        }
    }

    fn holds_timers(&self) -> bool {
        true
    }

    fn len(&self) -> usize {
        let mut n = 0;
        self.scan_prefix(b"", &mut |_, _| n += 1);
        n
    }

    fn freeze(&mut self) -> Result<crate::Frozen, StateError> {
        self.checkpoints += 1;
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".chk-{}", self.checkpoints));
        let dir = self.path.with_file_name(name);
        let _ = std::fs::remove_dir_all(&dir);
        // Flushes the memtable and hard-links the SST files: milliseconds,
        // whatever the size of the state.
        rocksdb::checkpoint::Checkpoint::new(self.db())
            .and_then(|c| c.create_checkpoint(&dir))
            .map_err(|e| StateError::Rocks {
                op: "checkpoint",
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        let mut c = RocksCheckpoint::adopt(dir, true);
        c.shared = self.shared.clone();
        c.instance = self.instance.clone();
        Ok(crate::Frozen::Rocks(c))
    }
}

/// A RocksDB checkpoint: a directory of hard links to a database's files
/// at one moment, removed when dropped (if owned).
#[derive(Debug)]
pub struct RocksCheckpoint {
    dir: PathBuf,
    owned: bool,
    /// The live database's record of files already in checkpoint storage.
    pub shared: SharedFiles,
    /// The live database's unique name.
    pub instance: String,
}

impl RocksCheckpoint {
    /// Wraps an existing directory; with `owned`, it is removed on drop.
    pub fn adopt(dir: PathBuf, owned: bool) -> Self {
        Self {
            dir,
            owned,
            shared: SharedFiles::default(),
            instance: instance_name(),
        }
    }

    /// The checkpoint's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its files: (name, size in bytes), SST files first.
    ///
    /// # Errors
    /// The directory cannot be listed.
    pub fn files(&self) -> Result<Vec<(String, u64)>, StateError> {
        let mut out = Vec::new();
        let list = |e: std::io::Error| StateError::Io {
            op: "list",
            path: self.dir.clone(),
            message: e.to_string(),
        };
        let entries = std::fs::read_dir(&self.dir).map_err(list)?;
        for e in entries {
            let e = e.map_err(list)?;
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            out.push((e.file_name().to_string_lossy().into_owned(), size));
        }
        out.sort_by_key(|(n, _)| (!n.ends_with(".sst"), n.clone()));
        Ok(out)
    }

    /// Calls `f` for every entry, in key order, reading the checkpoint as a
    /// read-only database.
    ///
    /// # Errors
    /// RocksDB's error, with the path.
    pub fn scan(&self, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), StateError> {
        let failed = |op, e: rocksdb::Error| StateError::Rocks {
            op,
            path: self.dir.clone(),
            message: e.to_string(),
        };
        let db =
            DB::open_for_read_only(&options(), &self.dir, false).map_err(|e| failed("open", e))?;
        for item in db.iterator(IteratorMode::Start) {
            let (k, v) = item.map_err(|e| failed("read", e))?;
            f(&k, &v);
        }
        Ok(())
    }
}

impl Drop for RocksCheckpoint {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeyedState, StateKind};

    #[test]
    fn rocksdb_serves_every_state_kind_and_snapshots_like_the_heap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut s = KeyedState::new(Box::new(RocksStore::open(&path, true).unwrap()));
        let v = s.register("v", StateKind::Value).unwrap();
        let l = s.register("l", StateKind::List).unwrap();
        let m = s.register("m", StateKind::Map).unwrap();
        s.set_current_key(b"k", 3);
        s.value_set(v, b"", b"1");
        s.list_add(l, b"", b"a");
        s.list_add(l, b"", b"bb");
        s.map_put(m, b"", b"x", b"9");
        s.map_put(m, b"", b"\xff\xff", b"8");
        assert_eq!(
            s.list_get(l, b"").unwrap(),
            vec![b"a".to_vec(), b"bb".to_vec()]
        );
        assert_eq!(s.map_entries(m, b"").len(), 2);
        s.clear(m, b"");
        assert!(s.map_entries(m, b"").is_empty());
        assert_eq!(s.value_get(v, b"").as_deref(), Some(&b"1"[..]));
        // Timers live in the database, beside the state.
        s.register_timer(true, 50, b"w");
        s.register_timer(false, -7, b"");
        s.set_current_key(b"k2", 900);
        s.register_timer(true, 40, b"w");
        assert_eq!(s.next_timer(true), Some(40));
        assert_eq!(s.store().len(), 2 + 3, "a value, a list and three timers");

        // A RocksDB snapshot restores into the heap store and back, timers
        // included.
        let snap = s.snapshot();
        let mut heap = KeyedState::new(Box::new(crate::HeapStore::new()));
        heap.restore(&snap).unwrap();
        let l2 = heap.register("l", StateKind::List).unwrap();
        heap.set_current_key(b"k", 3);
        assert_eq!(heap.list_get(l2, b"").unwrap().len(), 2);
        assert_eq!(heap.next_timer(false), Some(-7));
        let mut back = KeyedState::new(Box::new(
            RocksStore::open(&dir.path().join("db2"), true).unwrap(),
        ));
        back.restore(&heap.snapshot()).unwrap();
        assert_eq!(back.snapshot(), snap);
        assert_eq!(
            back.pop_due_timer(true, 45),
            Some((40, b"k2".to_vec(), b"w".to_vec()))
        );
        assert_eq!(back.pop_due_timer(true, 45), None);
        assert_eq!(back.next_timer(true), Some(50));
        drop(s);
        assert!(!path.exists(), "the working copy is removed");
    }

    #[test]
    fn a_frozen_store_keeps_the_state_of_its_moment() {
        let dir = tempfile::tempdir().unwrap();
        for rocks in [false, true] {
            let store: Box<dyn StateStore> = if rocks {
                Box::new(RocksStore::open(&dir.path().join("f"), true).unwrap())
            } else {
                Box::new(crate::HeapStore::new())
            };
            let mut s = KeyedState::new(store);
            let v = s.register("v", StateKind::Value).unwrap();
            s.set_current_key(b"k", 5);
            s.value_set(v, b"", b"before");
            s.register_timer(true, 10, b"");
            let live = s.snapshot();
            let frozen = s.freeze().unwrap();
            s.value_set(v, b"", b"after");
            s.register_timer(true, 5, b"");
            s.delete_timer(true, 10, b"");
            s.set_current_key(b"k2", 6);
            s.value_set(v, b"", b"new");
            assert_eq!(frozen.canonical().unwrap(), live, "rocks: {rocks}");
            if let crate::Frozen::Rocks(c) = &frozen.store {
                let files = c.files().unwrap();
                assert!(files[0].0.ends_with(".sst"), "{files:?}");
                let restored =
                    crate::frozen::canonical_from_rocksdb(c.dir(), frozen.states.clone()).unwrap();
                assert_eq!(restored, live);
            }
        }
    }
}
