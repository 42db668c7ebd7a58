//! Timers per key and namespace, ordered by time, Flink's
//! `InternalTimerService`: at most one timer per (time, key, namespace).
//!
//! Two implementations, picked by the state backend as Flink does:
//!
//! * on the heap, a persistent ordered set: freezing it for a checkpoint
//!   is a constant-time clone, written out on another thread;
//! * in the state store itself ([`crate::RocksStore`]), so timers are as
//!   large as the disk allows, travel in incremental checkpoints with the
//!   rest of the state, and are restored with the database's files. Each
//!   key group's timers are one ordered key range
//!
//!   ```text
//!   [key group: u16 BE][domain: u16 BE, 0xFFFF event / 0xFFFE processing]
//!   [time: u64 BE, sign bit flipped][key length: u32 BE][key][namespace]
//!   ```
//!
//!   and only the earliest timer of each group (its *head*) is held in
//!   memory — Flink's key-group-partitioned priority queue. Popping the
//!   earliest timer deletes it and seeks to the next from its own key, so
//!   the tombstones of fired timers are never scanned again.

use std::collections::{BTreeSet, HashMap};

use imbl::OrdSet;

use crate::store::StateStore;

/// The state id reserved for event-time timers in the store layout.
pub const EVENT_TIMERS: u16 = 0xFFFF;
/// The state id reserved for processing-time timers in the store layout.
pub const PROCESSING_TIMERS: u16 = 0xFFFE;
/// State ids at and above this one are reserved for timers.
pub const FIRST_RESERVED_ID: u16 = PROCESSING_TIMERS;

/// One timer: when, for which key, in which namespace, and the key's group.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timer {
    /// When it fires.
    pub time: i64,
    /// For which key.
    pub key: Vec<u8>,
    /// In which namespace (a window, or empty).
    pub namespace: Vec<u8>,
    /// The key's key group.
    pub group: u16,
}

/// Timers of one domain (event or processing time) of one operator subtask.
#[derive(Debug, Clone)]
pub enum TimerService {
    /// On the heap.
    Heap(OrdSet<Timer>),
    /// In the state store, with each key group's head in memory.
    Store(StoreTimers),
}

/// Timers kept in the state store: see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct StoreTimers {
    /// The reserved state id of this domain.
    id: u16,
    /// (time, group) of each group's earliest timer.
    heads: BTreeSet<(i64, u16)>,
    /// Each group's earliest timer, as its store key.
    head: HashMap<u16, Vec<u8>>,
}

/// The store key of a timer.
pub(crate) fn timer_key(group: u16, id: u16, time: i64, key: &[u8], namespace: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(16 + key.len() + namespace.len());
    k.extend_from_slice(&group.to_be_bytes());
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(&((time as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(&(key.len() as u32).to_be_bytes());
    k.extend_from_slice(key);
    k.extend_from_slice(namespace);
    k
}

/// Reads a store key written by [`timer_key`]: (event time?, timer).
pub(crate) fn decode_timer_key(k: &[u8]) -> Option<(bool, Timer)> {
    let group = u16::from_be_bytes(k.get(0..2)?.try_into().ok()?);
    let id = u16::from_be_bytes(k.get(2..4)?.try_into().ok()?);
    if id < FIRST_RESERVED_ID {
        return None;
    }
    let time = (u64::from_be_bytes(k.get(4..12)?.try_into().ok()?) ^ (1 << 63)) as i64;
    let len = u32::from_be_bytes(k.get(12..16)?.try_into().ok()?) as usize;
    let key = k.get(16..16 + len)?.to_vec();
    let namespace = k.get(16 + len..)?.to_vec();
    Some((
        id == EVENT_TIMERS,
        Timer {
            time,
            key,
            namespace,
            group,
        },
    ))
}

fn group_prefix(group: u16, id: u16) -> [u8; 4] {
    let [a, b] = group.to_be_bytes();
    let [c, d] = id.to_be_bytes();
    [a, b, c, d]
}

impl StoreTimers {
    /// The timers of domain `id` already in `store` (a database restored
    /// from its checkpoint files): finds each key group's head with a seek
    /// per group that has timers.
    pub fn recover(store: &dyn StateStore, id: u16) -> Self {
        let mut t = Self {
            id,
            ..Self::default()
        };
        let mut group: u32 = 0;
        while group <= u32::from(u16::MAX) {
            let from = group_prefix(group as u16, id);
            let Some(k) = store.seek(&from, b"") else {
                break;
            };
            let (Some(&a), Some(&b)) = (k.first(), k.get(1)) else {
                break;
            };
            let g = u32::from(u16::from_be_bytes([a, b]));
            if g > group {
                group = g;
                continue;
            }
            if k.starts_with(&from) {
                t.set_head(group as u16, Some(k));
            }
            group += 1;
        }
        t
    }

    fn set_head(&mut self, group: u16, key: Option<Vec<u8>>) {
        if let Some(old) = self.head.remove(&group) {
            self.heads.remove(&(time_of(&old), group));
        }
        if let Some(k) = key {
            self.heads.insert((time_of(&k), group));
            self.head.insert(group, k);
        }
    }

    /// Re-reads a group's head from `from` on.
    fn refresh(&mut self, store: &dyn StateStore, group: u16, from: &[u8]) {
        let next = store.seek(from, &group_prefix(group, self.id));
        self.set_head(group, next);
    }
}

fn time_of(k: &[u8]) -> i64 {
    let b: [u8; 8] = k
        .get(4..12)
        .and_then(|b| b.try_into().ok())
        .unwrap_or_default();
    (u64::from_be_bytes(b) ^ (1 << 63)) as i64
}

impl TimerService {
    /// Timers on the heap.
    pub fn heap() -> Self {
        Self::Heap(OrdSet::new())
    }

    /// Sets a timer; setting an existing one again is a no-op.
    pub fn register(
        &mut self,
        store: &mut dyn StateStore,
        group: u16,
        time: i64,
        key: &[u8],
        namespace: &[u8],
    ) {
        match self {
            Self::Heap(set) => {
                set.insert(Timer {
                    time,
                    key: key.to_vec(),
                    namespace: namespace.to_vec(),
                    group,
                });
            }
            Self::Store(t) => {
                let k = timer_key(group, t.id, time, key, namespace);
                store.put(&k, b"");
                if t.head.get(&group).is_none_or(|h| k < *h) {
                    t.set_head(group, Some(k));
                }
            }
        }
    }

    /// Removes a timer if set.
    pub fn delete(
        &mut self,
        store: &mut dyn StateStore,
        group: u16,
        time: i64,
        key: &[u8],
        namespace: &[u8],
    ) {
        match self {
            Self::Heap(set) => {
                set.remove(&Timer {
                    time,
                    key: key.to_vec(),
                    namespace: namespace.to_vec(),
                    group,
                });
            }
            Self::Store(t) => {
                let k = timer_key(group, t.id, time, key, namespace);
                store.delete(&k);
                if t.head.get(&group) == Some(&k) {
                    t.refresh(store, group, &k);
                }
            }
        }
    }

    /// The earliest timer's time.
    pub fn next_time(&self) -> Option<i64> {
        match self {
            Self::Heap(set) => set.get_min().map(|t| t.time),
            Self::Store(t) => t.heads.first().map(|&(time, _)| time),
        }
    }

    /// Removes and returns the earliest timer if it is due at `time`
    /// (its time is at most `time`).
    pub fn pop_due(&mut self, store: &mut dyn StateStore, time: i64) -> Option<Timer> {
        if self.next_time()? > time {
            return None;
        }
        match self {
            Self::Heap(set) => set.remove_min(),
            Self::Store(t) => {
                let &(_, group) = t.heads.first()?;
                let k = t.head.get(&group)?.clone();
                store.delete(&k);
                t.refresh(store, group, &k);
                decode_timer_key(&k).map(|(_, timer)| timer)
            }
        }
    }

    /// The heap's timers (a constant-time copy), for a snapshot; `None`
    /// when they live in the store and are part of its snapshot.
    pub fn frozen(&self) -> Option<OrdSet<Timer>> {
        match self {
            Self::Heap(set) => Some(set.clone()),
            Self::Store(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services(dir: &std::path::Path) -> Vec<(TimerService, Box<dyn StateStore>)> {
        let rocks = crate::RocksStore::open(&dir.join("t"), true).unwrap();
        vec![
            (TimerService::heap(), Box::new(crate::HeapStore::new())),
            (
                TimerService::Store(StoreTimers::recover(&rocks, EVENT_TIMERS)),
                Box::new(rocks),
            ),
        ]
    }

    #[test]
    fn timers_fire_in_time_order_once_on_both_backends() {
        let dir = tempfile::tempdir().unwrap();
        for (mut t, mut store) in services(dir.path()) {
            let s = &mut *store;
            t.register(s, 2, 20, b"b", b"");
            t.register(s, 1, 10, b"a", b"");
            t.register(s, 1, 10, b"a", b"");
            t.register(s, 1, 30, b"a", b"");
            t.register(s, 7, -5, b"c", b"ns");
            t.delete(s, 1, 30, b"a", b"");
            assert_eq!(t.next_time(), Some(-5));
            assert_eq!(t.pop_due(s, 15).map(|x| (x.time, x.group)), Some((-5, 7)));
            assert_eq!(t.pop_due(s, 15).map(|x| x.time), Some(10));
            assert_eq!(t.pop_due(s, 15), None);
            let b = t.pop_due(s, 20).unwrap();
            assert_eq!((b.key.as_slice(), b.group), (&b"b"[..], 2));
            assert_eq!(t.next_time(), None);
            assert_eq!(t.pop_due(s, i64::MAX), None);
        }
    }

    #[test]
    fn store_timers_are_recovered_from_the_store_by_group() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = crate::RocksStore::open(&dir.path().join("r"), true).unwrap();
        let mut t = TimerService::Store(StoreTimers::recover(&store, EVENT_TIMERS));
        let mut p = TimerService::Store(StoreTimers::recover(&store, PROCESSING_TIMERS));
        // A state entry in between must not be taken for a timer.
        store.put(&[0, 3, 0, 0, 1], b"state");
        for g in [0u16, 3, 300, u16::MAX] {
            t.register(&mut store, g, i64::from(g) * 10, b"k", b"");
            t.register(&mut store, g, i64::from(g) * 10 + 1, b"k", b"");
        }
        p.register(&mut store, 3, 5, b"p", b"");
        let mut back = TimerService::Store(StoreTimers::recover(&store, EVENT_TIMERS));
        let back_p = TimerService::Store(StoreTimers::recover(&store, PROCESSING_TIMERS));
        assert_eq!(back_p.next_time(), Some(5));
        let mut fired = Vec::new();
        while let Some(x) = back.pop_due(&mut store, i64::MAX) {
            fired.push((x.group, x.time));
        }
        assert_eq!(fired.len(), 8);
        assert!(fired.windows(2).all(|w| w[0].1 <= w[1].1), "{fired:?}");
        assert_eq!(fired[7], (u16::MAX, i64::from(u16::MAX) * 10 + 1));
    }
}
