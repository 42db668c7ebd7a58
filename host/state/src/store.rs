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
    /// Says which states are read by prefix (map state: its entries, in
    /// order), by state id: the second `u16` (big-endian) of a key,
    /// `[key group][state id]…` ([`crate::KeyedState`]'s layout). The
    /// others (value, list and reducing state: one entry per key and
    /// namespace, read and written by their whole key) are only scanned
    /// whole, for a snapshot. A store that orders every key anyway ignores
    /// this; until it is called, every state counts as read by prefix.
    fn set_scanned_states(&mut self, ids: &[u16]) {
        let _ = ids;
    }
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
    fn freeze(&mut self) -> Result<crate::Frozen, crate::StateError>;
}

/// The heap store's map: keys and values behind reference counts, so that
/// the nodes a write copies after a freeze share the entries instead of
/// copying them, and a value not shared with a snapshot is changed in place.
/// Hashed with foldhash (randomly seeded per map): SipHash, the
/// standard library's, took a twentieth of a windowed job's time.
pub type HeapMap = imbl::GenericHashMap<
    std::sync::Arc<[u8]>,
    std::sync::Arc<Vec<u8>>,
    foldhash::fast::RandomState,
    imbl::shared_ptr::DefaultSharedPtr,
>;

/// State on the heap: a hash map for point reads and writes (the hot path:
/// an accumulator per key and window), plus an ordered index of the keys of
/// the states read by prefix (map state; see
/// [`StateStore::set_scanned_states`]). Updating an existing key touches
/// only the hash map, and so does creating and deleting a window's
/// accumulator: an index entry per window pane cost a windowed job a tenth
/// of its time.
///
/// The map is persistent (a hash array mapped trie): freezing it for a
/// checkpoint is a constant-time clone that shares structure, and later
/// writes copy only the nodes they change, as Flink's copy-on-write heap
/// state table does. The snapshot is then encoded on another thread.
#[derive(Debug, Default, Clone)]
pub struct HeapStore {
    map: HeapMap,
    /// The keys of the states read by prefix, in order.
    index: BTreeSet<Vec<u8>>,
    /// Whether each state id's keys are in `index`; all are if `None`.
    scanned: Option<Vec<bool>>,
}

impl HeapStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `key` (or every key under the prefix `key`) is in the
    /// index.
    fn indexed(&self, key: &[u8]) -> bool {
        match (&self.scanned, key) {
            (None, _) => true,
            (Some(s), [_, _, hi, lo, ..]) => s
                .get(usize::from(u16::from_be_bytes([*hi, *lo])))
                .copied()
                // States not declared (timers' reserved ids): indexed.
                .unwrap_or(true),
            // A prefix shorter than a state id spans indexed and unindexed
            // states.
            (Some(_), _) => false,
        }
    }

    /// The keys under `prefix`, in order: from the index, or (a prefix of
    /// states not indexed, a whole scan for a snapshot) from the map,
    /// sorted.
    fn prefix_keys(&self, prefix: &[u8]) -> Vec<Vec<u8>> {
        if self.indexed(prefix) {
            return self
                .index
                .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
                .take_while(|k| k.starts_with(prefix))
                .cloned()
                .collect();
        }
        let mut keys: Vec<Vec<u8>> = self
            .map
            .keys()
            .filter(|k| k.starts_with(prefix))
            .map(|k| k.to_vec())
            .collect();
        keys.sort_unstable();
        keys
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
                if self.indexed(key) {
                    self.index.insert(key.to_vec());
                }
            }
        }
    }

    fn append(&mut self, key: &[u8], bytes: &[u8]) {
        match self.map.get_mut(key) {
            Some(v) => std::sync::Arc::make_mut(v).extend_from_slice(bytes),
            None => {
                self.map
                    .insert(key.into(), std::sync::Arc::new(bytes.to_vec()));
                if self.indexed(key) {
                    self.index.insert(key.to_vec());
                }
            }
        }
    }

    fn delete(&mut self, key: &[u8]) {
        if self.map.remove(key).is_some() && self.indexed(key) {
            self.index.remove(key);
        }
    }

    fn scan_prefix(&self, prefix: &[u8], f: &mut dyn FnMut(&[u8], &[u8])) {
        if self.indexed(prefix) {
            // In order already: no copies.
            let keys = self
                .index
                .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
                .take_while(|k| k.starts_with(prefix));
            for k in keys {
                if let Some(v) = self.map.get(k.as_slice()) {
                    f(k, v);
                }
            }
            return;
        }
        for k in self.prefix_keys(prefix) {
            if let Some(v) = self.map.get(k.as_slice()) {
                f(&k, v);
            }
        }
    }

    fn delete_prefix(&mut self, prefix: &[u8]) {
        for k in self.prefix_keys(prefix) {
            self.map.remove(k.as_slice());
            self.index.remove(&k);
        }
    }

    fn seek(&self, from: &[u8], prefix: &[u8]) -> Option<Vec<u8>> {
        if self.indexed(prefix) && self.indexed(from) {
            return self
                .index
                .range::<[u8], _>((Bound::Included(from), Bound::Unbounded))
                .next()
                .filter(|k| k.starts_with(prefix))
                .cloned();
        }
        self.map
            .keys()
            .filter(|k| k.starts_with(prefix) && &***k >= from)
            .min()
            .map(|k| k.to_vec())
    }

    fn set_scanned_states(&mut self, ids: &[u16]) {
        let mut scanned = Vec::new();
        for &id in ids {
            let i = usize::from(id);
            if scanned.len() <= i {
                scanned.resize(i + 1, false);
            }
            scanned[i] = true;
        }
        // Ids past the end are not scanned, unless reserved (timers).
        scanned.resize(usize::from(crate::timers::FIRST_RESERVED_ID), false);
        self.scanned = Some(scanned);
        self.index = self
            .map
            .keys()
            .filter(|k| self.indexed(k))
            .map(|k| k.to_vec())
            .collect();
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn freeze(&mut self) -> Result<crate::Frozen, crate::StateError> {
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

    /// `[group][state id][rest]`.
    fn key(id: u16, rest: &[u8]) -> Vec<u8> {
        let mut k = vec![0, 7];
        k.extend_from_slice(&id.to_be_bytes());
        k.extend_from_slice(rest);
        k
    }

    #[test]
    fn only_states_read_by_prefix_are_indexed_but_every_scan_sees_all() {
        let mut s = HeapStore::new();
        s.put(&key(0, b"early"), b"before");
        // State 1 is a map; 0 and 2 are not.
        s.set_scanned_states(&[1]);
        for (id, rest) in [(2, &b"b"[..]), (1, b"z"), (0, b"a"), (1, b"y"), (2, b"a")] {
            s.put(&key(id, rest), rest);
        }
        assert_eq!(s.index.len(), 2, "only the map's entries: {:?}", s.index);
        let scan = |s: &HeapStore, prefix: &[u8]| {
            let mut seen = Vec::new();
            s.scan_prefix(prefix, &mut |k, _| seen.push(k.to_vec()));
            seen
        };
        // In key order, indexed or not.
        assert_eq!(scan(&s, &key(1, b"")), vec![key(1, b"y"), key(1, b"z")]);
        assert_eq!(scan(&s, &key(2, b"")), vec![key(2, b"a"), key(2, b"b")]);
        let all = scan(&s, b"");
        assert_eq!(all.len(), 6);
        assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");
        assert_eq!(s.seek(&key(2, b"aa"), &key(2, b"")), Some(key(2, b"b")));
        assert_eq!(s.seek(&key(1, b"x"), &key(1, b"")), Some(key(1, b"y")));
        s.delete(&key(1, b"z"));
        s.delete(&key(2, b"a"));
        assert_eq!(s.index.len(), 1);
        s.delete_prefix(&key(0, b""));
        s.delete_prefix(&key(1, b""));
        assert_eq!(scan(&s, b""), vec![key(2, b"b")]);
        assert!(s.index.is_empty());
    }
}
