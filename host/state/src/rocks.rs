//! State in RocksDB: for state larger than memory.
//!
//! Each operator subtask has its own database in a working directory that
//! lives as long as the subtask (state survives failures through checkpoints,
//! not through this directory). Keys are the [`crate::KeyedState`] layout,
//! which starts with the key group, so one key group is one contiguous range.
//! List appends are RocksDB merges (a concatenation), so adding to a list
//! never reads it back.

use std::path::{Path, PathBuf};

use rocksdb::{DB, Direction, IteratorMode, MergeOperands, Options, ReadOptions, WriteBatch};

use crate::store::StateStore;

/// Concatenates merge operands onto the existing value: list appends.
fn concat(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let mut out = existing.map(<[u8]>::to_vec).unwrap_or_default();
    for op in operands {
        out.extend_from_slice(op);
    }
    Some(out)
}

/// A RocksDB state store.
pub struct RocksStore {
    db: DB,
    path: PathBuf,
    /// Remove the directory when dropped (a subtask's working copy).
    remove_on_drop: bool,
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
    pub fn open(path: &Path, remove_on_drop: bool) -> Result<Self, String> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_merge_operator_associative("concat", concat);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // Checkpoints, not the write-ahead log, make state durable.
        opts.set_manual_wal_flush(true);
        let db = DB::open(&opts, path)
            .map_err(|e| format!("cannot open RocksDB state at `{}`: {e}", path.display()))?;
        Ok(Self {
            db,
            path: path.to_path_buf(),
            remove_on_drop,
        })
    }

    fn fail(&self, what: &str, e: rocksdb::Error) -> ! {
        // A failing local disk under the state store leaves nothing sane to
        // do in the subtask; the job fails and restarts from its checkpoint.
        panic!("RocksDB state at `{}`: {what}: {e}", self.path.display())
    }
}

impl Drop for RocksStore {
    fn drop(&mut self) {
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

impl StateStore for RocksStore {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        match self.db.get(key) {
            Ok(v) => v,
            Err(e) => self.fail("get", e),
        }
    }

    fn with_value(&self, key: &[u8], f: &mut dyn FnMut(Option<&[u8]>)) {
        match self.db.get_pinned(key) {
            Ok(v) => f(v.as_deref()),
            Err(e) => self.fail("get", e),
        }
    }

    fn put(&mut self, key: &[u8], value: &[u8]) {
        if let Err(e) = self.db.put(key, value) {
            self.fail("put", e);
        }
    }

    fn append(&mut self, key: &[u8], bytes: &[u8]) {
        if let Err(e) = self.db.merge(key, bytes) {
            self.fail("merge", e);
        }
    }

    fn delete(&mut self, key: &[u8]) {
        if let Err(e) = self.db.delete(key) {
            self.fail("delete", e);
        }
    }

    fn scan_prefix(&self, prefix: &[u8], f: &mut dyn FnMut(&[u8], &[u8])) {
        let mut ro = ReadOptions::default();
        if let Some(end) = prefix_end(prefix) {
            ro.set_iterate_upper_bound(end);
        }
        for item in self
            .db
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
        if let Err(e) = self.db.write(batch) {
            self.fail("delete range", e);
        }
    }

    fn len(&self) -> usize {
        let mut n = 0;
        self.scan_prefix(b"", &mut |_, _| n += 1);
        n
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

        // A RocksDB snapshot restores into the heap store and back.
        let snap = s.snapshot();
        let mut heap = KeyedState::new(Box::new(crate::HeapStore::new()));
        heap.restore(&snap).unwrap();
        let l2 = heap.register("l", StateKind::List).unwrap();
        heap.set_current_key(b"k", 3);
        assert_eq!(heap.list_get(l2, b"").unwrap().len(), 2);
        let mut back = KeyedState::new(Box::new(
            RocksStore::open(&dir.path().join("db2"), true).unwrap(),
        ));
        back.restore(&heap.snapshot()).unwrap();
        assert_eq!(back.snapshot().encode().len(), snap.encode().len());
        drop(s);
        assert!(!path.exists(), "the working copy is removed");
    }
}
