//! Flink's keyed state kinds over a [`StateStore`], for the current key.

use std::collections::HashMap;

use crate::store::StateStore;
use crate::timers::{
    EVENT_TIMERS, FIRST_RESERVED_ID, PROCESSING_TIMERS, StoreTimers, Timer, TimerService,
};

/// Index of a registered state.
pub type StateId = u16;

/// The kind of a named state. Reducing and aggregating state are value state
/// whose update function runs where the data is (the guest SDK folds, the
/// host stores).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateKind {
    /// One value per key.
    Value,
    /// A list per key, appended to without reading it back.
    List,
    /// A map per key.
    Map,
}

impl StateKind {
    fn name(self) -> &'static str {
        match self {
            Self::Value => "value",
            Self::List => "list",
            Self::Map => "map",
        }
    }
}

/// A misuse of state, reported to the operator that made it.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A name used with two kinds.
    #[error("state `{name}` is {was} state and cannot be used as {now} state")]
    KindMismatch {
        /// The state name.
        name: String,
        /// Kind it was registered with.
        was: &'static str,
        /// Kind it was used as.
        now: &'static str,
    },
    /// Too many distinct state names.
    #[error("too many state names (at most {0})")]
    TooMany(usize),
    /// Stored bytes are not what this layer wrote.
    #[error("corrupt list state `{0}`")]
    Corrupt(String),
    /// Stored bytes end inside a field.
    #[error(transparent)]
    Truncated(#[from] weir_record::codec::Truncated),
    /// RocksDB refused an operation on the database or checkpoint at
    /// `path`.
    #[error("cannot {op} RocksDB state at `{}`: {message}", path.display())]
    Rocks {
        /// What was done: `open`, `checkpoint`, `read`.
        op: &'static str,
        /// The database or checkpoint directory.
        path: std::path::PathBuf,
        /// RocksDB's message.
        message: String,
    },
    /// A state directory that cannot be created or listed.
    #[error("cannot {op} `{}`: {message}", path.display())]
    Io {
        /// `create` or `list`.
        op: &'static str,
        /// The directory.
        path: std::path::PathBuf,
        /// The system's message.
        message: String,
    },
    /// This build has no RocksDB.
    #[error("{}", crate::ROCKSDB_UNAVAILABLE)]
    RocksDbUnavailable,
    /// The values of a state that a migration could not convert.
    #[error("state `{state}`: {source}")]
    Migration {
        /// The state.
        state: String,
        /// The converter's error.
        source: crate::BoxError,
    },
    /// A migration that returned another number of values than it was
    /// given.
    #[error("state `{state}`: {given} values converted into {returned}")]
    MigrationCount {
        /// The state.
        state: String,
        /// Values given.
        given: usize,
        /// Values returned.
        returned: usize,
    },
}

/// Keyed state of one operator subtask: named states, each scoped to the
/// current key and a namespace.
pub struct KeyedState {
    store: Box<dyn StateStore>,
    names: HashMap<String, (StateId, StateKind)>,
    /// Kind of each state id.
    kinds: Vec<StateKind>,
    key: Vec<u8>,
    key_group: u16,
    /// Scratch buffer for composite keys.
    buf: Vec<u8>,
    /// Time-to-live by state name (ms), and by state id once registered.
    ttl_by_name: HashMap<String, i64>,
    ttl: Vec<Option<i64>>,
    /// The current processing time (ms), for TTL.
    now: i64,
    /// Event-time and processing-time timers.
    timers: [TimerService; 2],
}

impl std::fmt::Debug for KeyedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedState")
            .field("states", &self.names.len())
            .field("entries", &self.store.len())
            .finish()
    }
}

impl KeyedState {
    /// Keyed state over `store`.
    pub fn new(mut store: Box<dyn StateStore>) -> Self {
        let timers = if store.holds_timers() {
            [
                TimerService::Store(StoreTimers::recover(&*store, EVENT_TIMERS)),
                TimerService::Store(StoreTimers::recover(&*store, PROCESSING_TIMERS)),
            ]
        } else {
            [TimerService::heap(), TimerService::heap()]
        };
        store.set_scanned_states(&[]);
        Self {
            timers,
            store,
            names: HashMap::new(),
            kinds: Vec::new(),
            key: Vec::new(),
            key_group: 0,
            buf: Vec::with_capacity(64),
            ttl_by_name: HashMap::new(),
            ttl: Vec::new(),
            now: 0,
        }
    }

    /// Gives state `name` (`*`: every state without its own setting) a
    /// time-to-live, as Flink's state TTL does: each value, list element
    /// and map entry expires `ttl` after it was last written (processing
    /// time, see [`Self::set_time`]); an expired entry is never returned
    /// and is dropped when read and from snapshots.
    pub fn set_ttl(&mut self, name: &str, ttl: std::time::Duration) {
        self.ttl_by_name.insert(
            name.to_string(),
            ttl.as_millis().min(i64::MAX as u128) as i64,
        );
        for (n, &(id, _)) in &self.names {
            self.ttl[id as usize] = self.ttl_of(n);
        }
    }

    fn ttl_of(&self, name: &str) -> Option<i64> {
        self.ttl_by_name
            .get(name)
            .or_else(|| self.ttl_by_name.get("*"))
            .copied()
    }

    /// Sets the current processing time (ms) that TTL is measured against.
    pub fn set_time(&mut self, now_ms: i64) {
        self.now = now_ms;
    }

    /// The expiry stamp that a write of state `id` now carries, if it has a
    /// TTL.
    fn stamp(&self, id: StateId) -> Option<[u8; 8]> {
        let ttl = (*self.ttl.get(id as usize)?)?;
        Some(self.now.saturating_add(ttl).to_le_bytes())
    }

    /// The time-to-live (ms) of state `id`, if it has one.
    fn ttl_of_id(&self, id: StateId) -> Option<i64> {
        self.ttl.get(id as usize).copied().flatten()
    }

    /// The live value at the composite key in the scratch buffer: without
    /// its expiry stamp, and deleted (`None`) if it has expired.
    fn get_live(&mut self, id: StateId) -> Option<Vec<u8>> {
        let v = self.store.get(&self.buf)?;
        match self.live(id, &v) {
            Some(live) if live.len() == v.len() => Some(v),
            Some(live) => Some(live.to_vec()),
            None => {
                self.store.delete(&self.buf);
                None
            }
        }
    }

    /// Writes `value` at the composite key in the scratch buffer, behind
    /// `stamp` if the state has a TTL.
    fn put_stamped(&mut self, stamp: Option<[u8; 8]>, value: &[u8]) {
        match stamp {
            None => self.store.put(&self.buf, value),
            Some(stamp) => {
                let mut v = Vec::with_capacity(8 + value.len());
                v.extend_from_slice(&stamp);
                v.extend_from_slice(value);
                self.store.put(&self.buf, &v);
            }
        }
    }

    /// Strips the expiry stamp of a value of a state with TTL: `None` if it
    /// has expired.
    fn live<'v>(&self, id: StateId, v: &'v [u8]) -> Option<&'v [u8]> {
        if self.ttl_of_id(id).is_none() {
            return Some(v);
        }
        unstamp(v, self.now)
    }

    /// The underlying store.
    pub fn store(&self) -> &dyn StateStore {
        &*self.store
    }

    /// Registers (or looks up) state `name` of `kind`.
    ///
    /// # Errors
    /// [`StateError::KindMismatch`] if `name` exists with another kind.
    pub fn register(&mut self, name: &str, kind: StateKind) -> Result<StateId, StateError> {
        if let Some(&(id, k)) = self.names.get(name) {
            if k != kind {
                return Err(StateError::KindMismatch {
                    name: name.to_string(),
                    was: k.name(),
                    now: kind.name(),
                });
            }
            return Ok(id);
        }
        let id = self.names.len();
        if id >= usize::from(FIRST_RESERVED_ID) {
            return Err(StateError::TooMany(usize::from(FIRST_RESERVED_ID)));
        }
        self.names.insert(name.to_string(), (id as StateId, kind));
        self.kinds.push(kind);
        if kind == StateKind::Map {
            let maps: Vec<StateId> = (0..self.kinds.len() as StateId)
                .filter(|&i| self.kinds[usize::from(i)] == StateKind::Map)
                .collect();
            self.store.set_scanned_states(&maps);
        }
        self.ttl.push(self.ttl_of(name));
        Ok(id as StateId)
    }

    /// The id of state `name`, if it was registered.
    pub fn lookup(&self, name: &str) -> Option<StateId> {
        self.names.get(name).map(|&(id, _)| id)
    }

    /// Sets the key that the following calls act on, with its key group.
    pub fn set_current_key(&mut self, key: &[u8], key_group: u16) {
        self.key.clear();
        self.key.extend_from_slice(key);
        self.key_group = key_group;
    }

    /// The current key.
    pub fn current_key(&self) -> &[u8] {
        &self.key
    }

    /// Builds `[group][id][len][key][namespace]` into the scratch buffer.
    fn prefix(&mut self, id: StateId, namespace: &[u8]) -> &[u8] {
        self.buf.clear();
        self.buf.extend_from_slice(&self.key_group.to_be_bytes());
        self.buf.extend_from_slice(&id.to_be_bytes());
        self.buf
            .extend_from_slice(&(self.key.len() as u32).to_be_bytes());
        self.buf.extend_from_slice(&self.key);
        self.buf.extend_from_slice(namespace);
        &self.buf
    }

    /// The value of value state `id` in `namespace`.
    pub fn value_get(&mut self, id: StateId, namespace: &[u8]) -> Option<Vec<u8>> {
        self.prefix(id, namespace);
        self.get_live(id)
    }

    /// Calls `f` with value state `id` in `namespace`, without copying it.
    pub fn value_with<R>(
        &mut self,
        id: StateId,
        namespace: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> R {
        self.prefix(id, namespace);
        let mut f = Some(f);
        let mut out = None;
        let ttl = self.ttl_of_id(id);
        let now = self.now;
        self.store.with_value(&self.buf, &mut |v| {
            let v = match ttl {
                None => v,
                Some(_) => v.and_then(|v| unstamp(v, now)),
            };
            if let Some(f) = f.take() {
                out = Some(f(v));
            }
        });
        match (out, f) {
            (Some(r), _) => r,
            // A store always calls back; this only runs if one does not.
            (None, Some(f)) => f(None),
            (None, None) => unreachable!("the callback ran but produced nothing"),
        }
    }

    /// Sets value state `id` in `namespace`.
    pub fn value_set(&mut self, id: StateId, namespace: &[u8], value: &[u8]) {
        let stamp = self.stamp(id);
        self.prefix(id, namespace);
        self.put_stamped(stamp, value);
    }

    /// The elements of list state `id`.
    ///
    /// # Errors
    /// [`StateError::Corrupt`] if the stored bytes are malformed.
    pub fn list_get(&mut self, id: StateId, namespace: &[u8]) -> Result<Vec<Vec<u8>>, StateError> {
        let mut out = Vec::new();
        self.list_for_each(id, namespace, |e| out.push(e.to_vec()))?;
        Ok(out)
    }

    /// Calls `f` on every element of list state `id` without copying.
    ///
    /// # Errors
    /// [`StateError::Corrupt`] if the stored bytes are malformed.
    pub fn list_for_each(
        &mut self,
        id: StateId,
        namespace: &[u8],
        mut f: impl FnMut(&[u8]),
    ) -> Result<(), StateError> {
        self.prefix(id, namespace);
        let mut bad = false;
        let ttl = self.ttl_of_id(id);
        let now = self.now;
        self.store.with_value(&self.buf, &mut |v| {
            if let Some(v) = v {
                bad = match ttl {
                    None => decode_list(v, &mut f),
                    Some(_) => decode_list(v, |e| {
                        if let Some(e) = unstamp(e, now) {
                            f(e);
                        }
                    }),
                }
                .is_err();
            }
        });
        if bad {
            return Err(StateError::Corrupt(format!("#{id}")));
        }
        Ok(())
    }

    /// Appends to list state `id`.
    pub fn list_add(&mut self, id: StateId, namespace: &[u8], value: &[u8]) {
        let stamp = self.stamp(id);
        let stamp = stamp.as_ref().map_or(&[][..], |s| &s[..]);
        let mut entry = Vec::with_capacity(12 + value.len());
        entry.extend_from_slice(&((stamp.len() + value.len()) as u32).to_le_bytes());
        entry.extend_from_slice(stamp);
        entry.extend_from_slice(value);
        self.prefix(id, namespace);
        self.store.append(&self.buf, &entry);
    }

    /// Replaces list state `id`.
    pub fn list_set<'a>(
        &mut self,
        id: StateId,
        namespace: &[u8],
        values: impl IntoIterator<Item = &'a [u8]>,
    ) {
        let stamp = self.stamp(id);
        let stamp = stamp.as_ref().map_or(&[][..], |s| &s[..]);
        let mut all = Vec::new();
        for v in values {
            all.extend_from_slice(&((stamp.len() + v.len()) as u32).to_le_bytes());
            all.extend_from_slice(stamp);
            all.extend_from_slice(v);
        }
        self.prefix(id, namespace);
        if all.is_empty() {
            self.store.delete(&self.buf);
        } else {
            self.store.put(&self.buf, &all);
        }
    }

    /// The value of `user_key` in map state `id`.
    pub fn map_get(&mut self, id: StateId, namespace: &[u8], user_key: &[u8]) -> Option<Vec<u8>> {
        self.prefix(id, namespace);
        self.buf.extend_from_slice(user_key);
        self.get_live(id)
    }

    /// Sets `user_key` in map state `id`.
    pub fn map_put(&mut self, id: StateId, namespace: &[u8], user_key: &[u8], value: &[u8]) {
        let stamp = self.stamp(id);
        self.prefix(id, namespace);
        self.buf.extend_from_slice(user_key);
        self.put_stamped(stamp, value);
    }

    /// Removes `user_key` from map state `id`.
    pub fn map_remove(&mut self, id: StateId, namespace: &[u8], user_key: &[u8]) {
        self.prefix(id, namespace);
        self.buf.extend_from_slice(user_key);
        self.store.delete(&self.buf);
    }

    /// The entries of map state `id`, ordered by user key.
    pub fn map_entries(&mut self, id: StateId, namespace: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let at = self.prefix(id, namespace).len();
        let mut out = Vec::new();
        let mut expired = Vec::new();
        let ttl = self.ttl_of_id(id);
        let now = self.now;
        self.store.scan_prefix(&self.buf, &mut |k, v| match ttl {
            None => out.push((k[at..].to_vec(), v.to_vec())),
            Some(_) => match unstamp(v, now) {
                Some(v) => out.push((k[at..].to_vec(), v.to_vec())),
                None => expired.push(k.to_vec()),
            },
        });
        for k in expired {
            self.store.delete(&k);
        }
        out
    }

    /// Clears state `id` (any kind) of the current key in `namespace`.
    pub fn clear(&mut self, id: StateId, namespace: &[u8]) {
        self.prefix(id, namespace);
        // Value and list state are one entry: a point delete (a range
        // delete per cleared window would leave RocksDB a tombstone each).
        match self.kinds.get(id as usize) {
            Some(StateKind::Map) | None => self.store.delete_prefix(&self.buf),
            Some(_) => self.store.delete(&self.buf),
        }
    }

    /// Number of stored entries.
    pub fn entries(&self) -> usize {
        self.store.len()
    }

    /// State names and kinds, by state id.
    pub fn states(&self) -> Vec<(String, StateKind)> {
        let mut by_id: Vec<(String, StateKind)> =
            vec![(String::new(), StateKind::Value); self.names.len()];
        for (name, &(id, kind)) in &self.names {
            by_id[id as usize] = (name.clone(), kind);
        }
        by_id
    }

    /// Every state entry and timer, by key group.
    pub fn snapshot(&self) -> crate::KeyedSnapshot {
        let mut snap = crate::frozen::canonical(self.states(), |f| {
            self.store.scan_prefix(b"", f);
            Ok(())
        })
        .unwrap_or_default();
        crate::frozen::add_heap_timers(&mut snap, &self.heap_timers());
        snap
    }

    /// The heap's timer sets (constant-time copies): (event time?, timers).
    fn heap_timers(&self) -> Vec<(bool, imbl::OrdSet<Timer>)> {
        [true, false]
            .into_iter()
            .zip(&self.timers)
            .filter_map(|(event, t)| Some((event, t.frozen()?)))
            .collect()
    }

    /// Sets a timer for the current key in `namespace` (event time or
    /// processing time); setting it again is a no-op.
    pub fn register_timer(&mut self, event: bool, time: i64, namespace: &[u8]) {
        let (group, key) = (self.key_group, std::mem::take(&mut self.key));
        let store = &mut *self.store;
        self.timers[usize::from(!event)].register(store, group, time, &key, namespace);
        self.key = key;
    }

    /// Removes a timer of the current key, if set.
    pub fn delete_timer(&mut self, event: bool, time: i64, namespace: &[u8]) {
        let (group, key) = (self.key_group, std::mem::take(&mut self.key));
        let store = &mut *self.store;
        self.timers[usize::from(!event)].delete(store, group, time, &key, namespace);
        self.key = key;
    }

    /// The earliest timer's time in a domain.
    pub fn next_timer(&self, event: bool) -> Option<i64> {
        self.timers[usize::from(!event)].next_time()
    }

    /// Removes and returns the earliest timer of a domain if it is due at
    /// `time`: (time, key, namespace).
    pub fn pop_due_timer(&mut self, event: bool, time: i64) -> Option<(i64, Vec<u8>, Vec<u8>)> {
        let store = &mut *self.store;
        let t = self.timers[usize::from(!event)].pop_due(store, time)?;
        Some((t.time, t.key, t.namespace))
    }

    /// Freezes the state for a checkpoint written on another thread.
    ///
    /// # Errors
    /// The backend's error, as text.
    pub fn freeze(&mut self) -> Result<crate::FrozenKeyed, StateError> {
        Ok(crate::FrozenKeyed {
            states: self.states(),
            timers: self.heap_timers(),
            store: self.store.freeze()?,
            ttl: self.ttl.clone(),
            now: self.now,
        })
    }

    /// Keyed state over a store that already holds entries (a RocksDB
    /// database restored from its checkpoint files), with the state ids
    /// they were written with.
    ///
    /// # Errors
    /// A name listed twice.
    pub fn with_states(
        store: Box<dyn StateStore>,
        states: &[(String, StateKind)],
    ) -> Result<Self, StateError> {
        let mut s = Self::new(store);
        for (i, (name, kind)) in states.iter().enumerate() {
            if usize::from(s.register(name, *kind)?) != i {
                return Err(StateError::Corrupt(format!("state `{name}` listed twice")));
            }
        }
        Ok(s)
    }

    /// Loads the state entries and timers of `snap` (all of its groups:
    /// merge it down to the owned groups first).
    ///
    /// # Errors
    /// [`StateError`] for a malformed snapshot or a name whose kind differs
    /// from the one this operator registered.
    pub fn restore(&mut self, snap: &crate::KeyedSnapshot) -> Result<(), StateError> {
        let mut ids = Vec::with_capacity(snap.states.len());
        for (name, kind) in &snap.states {
            ids.push(self.register(name, *kind)?);
        }
        for (&group, blob) in &snap.groups {
            for e in crate::snapshot::entries(blob)? {
                match e {
                    crate::snapshot::Entry::State { state, rest, value } => {
                        let id = *ids
                            .get(state as usize)
                            .ok_or_else(|| StateError::Corrupt("state index".into()))?;
                        self.buf.clear();
                        self.buf.extend_from_slice(&group.to_be_bytes());
                        self.buf.extend_from_slice(&id.to_be_bytes());
                        self.buf.extend_from_slice(rest);
                        self.store.put(&self.buf, value);
                    }
                    crate::snapshot::Entry::Timer {
                        event,
                        time,
                        key,
                        namespace,
                    } => {
                        let store = &mut *self.store;
                        self.timers[usize::from(!event)]
                            .register(store, group, time, key, namespace);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The value after an expiry stamp, if it has not expired at `now`.
fn unstamp(v: &[u8], now: i64) -> Option<&[u8]> {
    let expires = i64::from_le_bytes(v.get(..8)?.try_into().ok()?);
    (expires > now).then(|| &v[8..])
}

/// Whether a stored value of a state with TTL has expired at `now` (whole
/// values and map entries; lists expire element by element).
pub(crate) fn expired(v: &[u8], now: i64) -> bool {
    unstamp(v, now).is_none()
}

fn decode_list(v: &[u8], mut f: impl FnMut(&[u8])) -> Result<(), weir_record::codec::Truncated> {
    let mut r = weir_record::codec::Reader::new("list state", v);
    while !r.is_empty() {
        f(r.bytes("element")?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::HeapStore;

    #[test]
    fn states_are_scoped_to_key_and_namespace() {
        let mut s = KeyedState::new(Box::new(HeapStore::new()));
        let v = s.register("total", StateKind::Value).unwrap();
        let l = s.register("seen", StateKind::List).unwrap();
        let m = s.register("by", StateKind::Map).unwrap();
        assert_eq!(s.register("total", StateKind::Value).unwrap(), v);
        assert_eq!(s.lookup("total"), Some(v));
        assert_eq!(s.lookup("never-used"), None);
        let e = s.register("total", StateKind::Map).unwrap_err();
        assert!(e.to_string().contains("`total` is value state"), "{e}");

        s.set_current_key(b"a", 3);
        s.value_set(v, b"", b"1");
        s.list_add(l, b"", b"x");
        s.list_add(l, b"", b"yy");
        s.map_put(m, b"", b"k2", b"2");
        s.map_put(m, b"", b"k1", b"1");
        s.set_current_key(b"ab", 3);
        assert_eq!(s.value_get(v, b""), None);
        assert!(s.list_get(l, b"").unwrap().is_empty());
        s.value_set(v, b"w1", b"9");

        s.set_current_key(b"a", 3);
        assert_eq!(s.value_get(v, b"").as_deref(), Some(&b"1"[..]));
        assert_eq!(
            s.list_get(l, b"").unwrap(),
            vec![b"x".to_vec(), b"yy".to_vec()]
        );
        let entries = s.map_entries(m, b"");
        assert_eq!(entries[0], (b"k1".to_vec(), b"1".to_vec()));
        assert_eq!(entries.len(), 2);
        s.map_remove(m, b"", b"k1");
        assert_eq!(s.map_get(m, b"", b"k1"), None);
        s.clear(l, b"");
        assert!(s.list_get(l, b"").unwrap().is_empty());
        s.list_set(l, b"", [&b"z"[..]]);
        assert_eq!(s.list_get(l, b"").unwrap(), vec![b"z".to_vec()]);

        s.set_current_key(b"ab", 3);
        assert_eq!(s.value_get(v, b"w1").as_deref(), Some(&b"9"[..]));
    }

    #[test]
    fn a_snapshot_restores_into_a_store_that_numbers_states_differently() {
        let mut s = KeyedState::new(Box::new(HeapStore::new()));
        let v = s.register("v", StateKind::Value).unwrap();
        let m = s.register("m", StateKind::Map).unwrap();
        s.set_current_key(b"k1", 7);
        s.value_set(v, b"", b"1");
        s.map_put(m, b"ns", b"u", b"2");
        s.set_current_key(b"k2", 9);
        s.value_set(v, b"", b"3");
        let snap = crate::KeyedSnapshot::decode(&s.snapshot().encode()).unwrap();
        assert_eq!(snap.groups.len(), 2);

        let mut r = KeyedState::new(Box::new(HeapStore::new()));
        // Another operator version registers in another order.
        let m2 = r.register("m", StateKind::Map).unwrap();
        let only_7 = crate::KeyedSnapshot::merge([&snap], 0..8).unwrap();
        r.restore(&only_7).unwrap();
        assert_eq!(r.next_timer(true), None);
        let v2 = r.register("v", StateKind::Value).unwrap();
        r.set_current_key(b"k1", 7);
        assert_eq!(r.value_get(v2, b"").as_deref(), Some(&b"1"[..]));
        assert_eq!(r.map_get(m2, b"ns", b"u").as_deref(), Some(&b"2"[..]));
        r.set_current_key(b"k2", 9);
        assert_eq!(
            r.value_get(v2, b""),
            None,
            "group 9 belongs to another subtask"
        );
    }

    #[test]
    fn entries_expire_after_their_time_to_live_and_leave_snapshots() {
        for rocks in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let store: Box<dyn StateStore> = if rocks {
                Box::new(crate::RocksStore::open(&dir.path().join("db"), true).unwrap())
            } else {
                Box::new(HeapStore::new())
            };
            let mut s = KeyedState::new(store);
            s.set_ttl("v", std::time::Duration::from_millis(100));
            s.set_ttl("*", std::time::Duration::from_millis(50));
            let v = s.register("v", StateKind::Value).unwrap();
            let l = s.register("l", StateKind::List).unwrap();
            let m = s.register("m", StateKind::Map).unwrap();
            let forever = s.register("forever", StateKind::Value).unwrap();
            s.set_ttl("forever", std::time::Duration::from_secs(3600));
            s.set_current_key(b"k", 1);
            s.set_time(1_000);
            s.value_set(v, b"", b"v1");
            s.value_set(forever, b"", b"f");
            s.list_add(l, b"", b"old");
            s.map_put(m, b"", b"a", b"1");
            s.set_time(1_040);
            s.list_add(l, b"", b"new");
            s.map_put(m, b"", b"b", b"2");
            // Nothing expired yet; stamps are invisible to readers.
            assert_eq!(s.value_get(v, b"").as_deref(), Some(&b"v1"[..]));
            assert_eq!(
                s.value_with(v, b"", |x| x.map(<[u8]>::to_vec)),
                Some(b"v1".to_vec())
            );
            assert_eq!(
                s.list_get(l, b"").unwrap(),
                vec![b"old".to_vec(), b"new".to_vec()]
            );
            assert_eq!(s.map_get(m, b"", b"a").as_deref(), Some(&b"1"[..]));
            // At 1_060, what was written at 1_000 with a 50 ms TTL is gone.
            s.set_time(1_060);
            assert_eq!(s.list_get(l, b"").unwrap(), vec![b"new".to_vec()]);
            assert_eq!(s.map_get(m, b"", b"a"), None);
            assert_eq!(s.map_entries(m, b"").len(), 1);
            assert_eq!(
                s.value_get(v, b"").as_deref(),
                Some(&b"v1"[..]),
                "100 ms TTL"
            );
            // A snapshot leaves out expired values and map entries.
            s.set_time(1_100);
            let snap = s.freeze().unwrap().canonical().unwrap();
            let mut states = 0;
            for blob in snap.groups.values() {
                states += crate::snapshot::entries(blob).unwrap().len();
            }
            // forever, and the list (elements expire one by one when read).
            assert_eq!(states, 2, "rocks: {rocks}");
            assert_eq!(s.value_get(v, b""), None);
            assert_eq!(s.value_get(forever, b"").as_deref(), Some(&b"f"[..]));
            // Writing again restarts the clock.
            s.value_set(v, b"", b"v2");
            s.set_time(1_150);
            assert_eq!(s.value_get(v, b"").as_deref(), Some(&b"v2"[..]));
        }
    }
}
