//! The state-store interface and the in-memory backend.

use std::collections::BTreeSet;
use std::ops::Bound;

/// An ordered byte key-value store: what every state backend provides.
pub trait StateStore: Send {
    /// The value at `key`.
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;
    /// Calls `f` with the value at `key` without copying it out.
    fn with_value(&self, key: &[u8], f: &mut dyn FnMut(Option<&[u8]>));
    /// Sets `key` to `value`.
    fn put(&mut self, key: &[u8], value: &[u8]);
    /// Appends `bytes` to the value at `key` (creating it): list state without
    /// reading the list back (RocksDB does this with a merge operator).
    fn append(&mut self, key: &[u8], bytes: &[u8]);
    /// Removes `key`.
    fn delete(&mut self, key: &[u8]);
    /// Calls `f` for every entry whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8], f: &mut dyn FnMut(&[u8], &[u8]));
    /// Removes every entry whose key starts with `prefix`.
    fn delete_prefix(&mut self, prefix: &[u8]);
    /// The first key at or after `from` that starts with `prefix` (timers
    /// in the store: a key group's next timer).
    fn seek(&self, from: &[u8], prefix: &[u8]) -> Option<Vec<u8>>;
    /// Whether timers live in this store ([`crate::timers::StoreTimers`])
    /// rather than on the heap.
    fn holds_timers(&self) -> bool {
        false
    }
    /// Number of entries (for metrics and tests).
    fn len(&self) -> usize;
    /// Whether the store is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Freezes the store as it is now, for a snapshot that is written out
    /// on another thread while processing goes on (copy-on-write on the
    /// heap, a hard-linked RocksDB checkpoint).
    ///
    /// # Errors
    /// The backend's error, as text.
    fn freeze(&mut self) -> Result<crate::Frozen, String>;
}

/// The heap store's map: keys and values behind reference counts, so that
/// the nodes a write copies after a freeze share the entries instead of
/// copying them, and a value not shared with a snapshot is changed in place.
pub type HeapMap = imbl::HashMap<std::sync::Arc<[u8]>, std::sync::Arc<Vec<u8>>>;

/// State on the heap: a hash map for point reads and writes (the hot path:
/// an accumulator per key and window), plus an ordered index of the keys for
/// prefix scans (map state, clearing a key's state). Updating an existing
/// key touches only the hash map.
///
/// The map is persistent (a hash array mapped trie): freezing it for a
/// checkpoint is a constant-time clone that shares structure, and later
/// writes copy only the nodes they change, as Flink's copy-on-write heap
/// state table does. The snapshot is then encoded on another thread.
#[derive(Debug, Default, Clone)]
pub struct HeapStore {
    map: HeapMap,
    index: BTreeSet<Vec<u8>>,
}

impl HeapStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn prefix_keys<'a>(&'a self, prefix: &'a [u8]) -> impl Iterator<Item = &'a Vec<u8>> + 'a {
        self.index
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |k| k.starts_with(prefix))
    }
}

impl StateStore for HeapStore {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.map.get(key).map(|v| v.to_vec())
    }

    fn with_value(&self, key: &[u8], f: &mut dyn FnMut(Option<&[u8]>)) {
        f(self.map.get(key).map(|v| v.as_slice()));
    }

    fn put(&mut self, key: &[u8], value: &[u8]) {
        match self.map.get_mut(key) {
            Some(v) => {
                let v = std::sync::Arc::make_mut(v);
                v.clear();
                v.extend_from_slice(value);
            }
            None => {
                self.map
                    .insert(key.into(), std::sync::Arc::new(value.to_vec()));
                self.index.insert(key.to_vec());
            }
        }
    }

    fn append(&mut self, key: &[u8], bytes: &[u8]) {
        match self.map.get_mut(key) {
            Some(v) => std::sync::Arc::make_mut(v).extend_from_slice(bytes),
            None => {
                self.map
                    .insert(key.into(), std::sync::Arc::new(bytes.to_vec()));
                self.index.insert(key.to_vec());
            }
        }
    }

    fn delete(&mut self, key: &[u8]) {
        if self.map.remove(key).is_some() {
            self.index.remove(key);
        }
    }

    fn scan_prefix(&self, prefix: &[u8], f: &mut dyn FnMut(&[u8], &[u8])) {
        for k in self.prefix_keys(prefix) {
            if let Some(v) = self.map.get(k.as_slice()) {
                f(k, v);
            }
        }
    }

    fn delete_prefix(&mut self, prefix: &[u8]) {
        let keys: Vec<Vec<u8>> = self.prefix_keys(prefix).cloned().collect();
        for k in keys {
            self.map.remove(k.as_slice());
            self.index.remove(&k);
        }
    }

    fn seek(&self, from: &[u8], prefix: &[u8]) -> Option<Vec<u8>> {
        self.index
            .range::<[u8], _>((Bound::Included(from), Bound::Unbounded))
            .next()
            .filter(|k| k.starts_with(prefix))
            .cloned()
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn freeze(&mut self) -> Result<crate::Frozen, String> {
        Ok(crate::Frozen::Heap(self.map.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_store_puts_appends_scans_and_deletes_by_prefix() {
        let mut s = HeapStore::new();
        s.put(b"a/1", b"x");
        s.append(b"a/2", b"y");
        s.append(b"a/2", b"z");
        s.put(b"b/1", b"w");
        assert_eq!(s.get(b"a/2").as_deref(), Some(&b"yz"[..]));
        let mut seen = Vec::new();
        s.scan_prefix(b"a/", &mut |k, v| seen.push((k.to_vec(), v.to_vec())));
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].0, b"a/1");
        s.delete_prefix(b"a/");
        assert_eq!(s.len(), 1);
        s.delete(b"b/1");
        assert!(s.is_empty());
    }
}
