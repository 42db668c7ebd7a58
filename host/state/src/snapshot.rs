//! Snapshots of keyed state, portable across backends and parallelism.
//!
//! A snapshot is organized by key group: each group's blob holds that group's
//! state entries and timers, with states named (not numbered), so a subtask
//! that owns other groups after a rescale, or a job whose state ids were
//! assigned in another order, restores exactly what it owns.
//!
//! Blob layout, a sequence of entries:
//!
//! ```text
//! 0 [state: u16 index into the names][rest: len u32 + bytes][value: len u32 + bytes]
//! 1 [time: i64][key: len u32 + bytes][namespace: len u32 + bytes]   event-time timer
//! 2 (same)                                                          processing-time timer
//! ```
//!
//! `rest` is the state key after the key group and state id: key length,
//! key, namespace, user key.

use std::collections::BTreeMap;

use weir_record::codec::{Reader, Writer};

use crate::keyed::{StateError, StateKind};

/// The keyed state of one operator subtask (or of several, merged).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyedSnapshot {
    /// State names and kinds; entries refer to them by index.
    pub states: Vec<(String, StateKind)>,
    /// Per key group, its encoded entries.
    pub groups: BTreeMap<u16, Vec<u8>>,
}

/// One decoded entry of a group blob.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry<'a> {
    /// A state entry.
    State {
        /// Index into [`KeyedSnapshot::states`].
        state: u16,
        /// The key after group and id.
        rest: &'a [u8],
        /// The value.
        value: &'a [u8],
    },
    /// A timer.
    Timer {
        /// Event time (`true`) or processing time.
        event: bool,
        /// When.
        time: i64,
        /// For which key.
        key: &'a [u8],
        /// In which namespace.
        namespace: &'a [u8],
    },
}

/// Appends a state entry to a group blob.
pub fn push_state(out: &mut Vec<u8>, state: u16, rest: &[u8], value: &[u8]) {
    out.push(0);
    out.put_u16(state);
    out.put_bytes(rest);
    out.put_bytes(value);
}

/// Appends a timer to a group blob.
pub fn push_timer(out: &mut Vec<u8>, event: bool, time: i64, key: &[u8], namespace: &[u8]) {
    out.push(if event { 1 } else { 2 });
    out.put_i64(time);
    out.put_bytes(key);
    out.put_bytes(namespace);
}

/// Calls `f` on each element of a stored list (`[len u32][bytes]`…).
fn list_elements<'a>(v: &'a [u8], mut f: impl FnMut(&'a [u8])) -> Result<(), StateError> {
    let mut r = Reader::new("list state", v);
    while !r.is_empty() {
        f(r.bytes("element")?);
    }
    Ok(())
}

fn corrupt() -> StateError {
    StateError::Corrupt("snapshot entry".into())
}

/// Decodes a group blob.
///
/// # Errors
/// [`StateError::Corrupt`] for a malformed blob.
pub fn entries(blob: &[u8]) -> Result<Vec<Entry<'_>>, StateError> {
    let mut r = Reader::new("key group snapshot", blob);
    let mut out = Vec::new();
    while !r.is_empty() {
        let tag = r.u8("entry tag")?;
        match tag {
            0 => {
                let state = r.u16("state index")?;
                let rest = r.bytes("state key")?;
                let value = r.bytes("state value")?;
                out.push(Entry::State { state, rest, value });
            }
            1 | 2 => {
                let time = r.i64("timer time")?;
                let key = r.bytes("timer key")?;
                let namespace = r.bytes("timer namespace")?;
                out.push(Entry::Timer {
                    event: tag == 1,
                    time,
                    key,
                    namespace,
                });
            }
            _ => return Err(corrupt()),
        }
    }
    Ok(out)
}

impl KeyedSnapshot {
    /// Rewrites the stored values of the states `select` picks (by name and
    /// kind), a key group at a time: `f(name, values)` gets the values of one
    /// state in one group and returns as many new ones, in order. A value
    /// state's value and a map state's values (not their keys) are passed
    /// whole; a list state's elements one by one. Timers and other states
    /// are kept as they are.
    ///
    /// # Errors
    /// A malformed blob, `f`'s own error, or `f` returning the wrong number
    /// of values.
    pub fn map_values(
        &mut self,
        select: impl Fn(&str, StateKind) -> bool,
        mut f: impl FnMut(&str, Vec<&[u8]>) -> Result<Vec<Vec<u8>>, crate::BoxError>,
    ) -> Result<(), StateError> {
        let picked: Vec<bool> = self.states.iter().map(|(n, k)| select(n, *k)).collect();
        if !picked.contains(&true) {
            return Ok(());
        }
        for blob in self.groups.values_mut() {
            let entries = entries(blob)?;
            // Per state, the values to convert, in entry order.
            let mut inputs: Vec<Vec<&[u8]>> = vec![Vec::new(); self.states.len()];
            for e in &entries {
                if let Entry::State { state, value, .. } = e
                    && picked.get(usize::from(*state)) == Some(&true)
                {
                    let i = usize::from(*state);
                    if self.states[i].1 == StateKind::List {
                        list_elements(value, |x| inputs[i].push(x))?;
                    } else {
                        inputs[i].push(value);
                    }
                }
            }
            let mut outputs: Vec<std::vec::IntoIter<Vec<u8>>> = Vec::with_capacity(inputs.len());
            for (i, values) in inputs.into_iter().enumerate() {
                let n = values.len();
                let out = if n == 0 {
                    Vec::new()
                } else {
                    f(&self.states[i].0, values).map_err(|source| StateError::Migration {
                        state: self.states[i].0.clone(),
                        source,
                    })?
                };
                if out.len() != n {
                    return Err(StateError::MigrationCount {
                        state: self.states[i].0.clone(),
                        given: n,
                        returned: out.len(),
                    });
                }
                outputs.push(out.into_iter());
            }
            let mut rebuilt = Vec::with_capacity(blob.len());
            for e in &entries {
                match e {
                    Entry::State { state, rest, value } => {
                        let i = usize::from(*state);
                        if picked.get(i) != Some(&true) {
                            push_state(&mut rebuilt, *state, rest, value);
                            continue;
                        }
                        let mut next = || outputs[i].next().unwrap_or_default();
                        if self.states[i].1 == StateKind::List {
                            let mut list = Vec::new();
                            list_elements(value, |_| {
                                let x = next();
                                list.put_u32(x.len() as u32);
                                list.extend_from_slice(&x);
                            })?;
                            push_state(&mut rebuilt, *state, rest, &list);
                        } else {
                            push_state(&mut rebuilt, *state, rest, &next());
                        }
                    }
                    Entry::Timer {
                        event,
                        time,
                        key,
                        namespace,
                    } => push_timer(&mut rebuilt, *event, *time, key, namespace),
                }
            }
            *blob = rebuilt;
        }
        Ok(())
    }

    /// Serializes the whole snapshot.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.put_u32(self.states.len() as u32);
        for (name, kind) in &self.states {
            out.put_bytes(name.as_bytes());
            out.push(match kind {
                StateKind::Value => 0,
                StateKind::List => 1,
                StateKind::Map => 2,
            });
        }
        out.put_u32(self.groups.len() as u32);
        for (g, blob) in &self.groups {
            out.put_u16(*g);
            out.put_bytes(blob);
        }
        out
    }

    /// Reads what [`KeyedSnapshot::encode`] wrote.
    ///
    /// # Errors
    /// [`StateError::Corrupt`] for malformed bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let mut r = Reader::new("keyed state snapshot", bytes);
        let (n, _) = r.count("state count", 5)?;
        let mut states = Vec::new();
        for _ in 0..n {
            let name = String::from_utf8(r.bytes("state name")?.to_vec()).map_err(|_| corrupt())?;
            let kind = match r.u8("state kind")? {
                0 => StateKind::Value,
                1 => StateKind::List,
                2 => StateKind::Map,
                _ => return Err(corrupt()),
            };
            states.push((name, kind));
        }
        let (n, _) = r.count("group count", 6)?;
        let mut groups = BTreeMap::new();
        for _ in 0..n {
            let g = r.u16("key group")?;
            groups.insert(g, r.bytes("key group entries")?.to_vec());
        }
        Ok(Self { states, groups })
    }

    /// Merges snapshots (of several old subtasks), keeping the groups in
    /// `owned`. State names are unified; indices are rewritten.
    ///
    /// # Errors
    /// [`StateError`] for malformed blobs or a name with two kinds.
    pub fn merge<'a>(
        parts: impl IntoIterator<Item = &'a KeyedSnapshot>,
        owned: std::ops::Range<u32>,
    ) -> Result<Self, StateError> {
        let mut out = KeyedSnapshot::default();
        for part in parts {
            let mut map = Vec::with_capacity(part.states.len());
            for (name, kind) in &part.states {
                let i = match out.states.iter().position(|(n, _)| n == name) {
                    Some(i) => {
                        if out.states[i].1 != *kind {
                            return Err(StateError::Corrupt(format!(
                                "state `{name}` has two kinds in the snapshot"
                            )));
                        }
                        i
                    }
                    None => {
                        out.states.push((name.clone(), *kind));
                        out.states.len() - 1
                    }
                };
                map.push(i as u16);
            }
            for (&g, blob) in &part.groups {
                if !owned.contains(&u32::from(g)) {
                    continue;
                }
                let target = out.groups.entry(g).or_default();
                for e in entries(blob)? {
                    match e {
                        Entry::State { state, rest, value } => {
                            let s = *map.get(state as usize).ok_or_else(corrupt)?;
                            push_state(target, s, rest, value);
                        }
                        Entry::Timer {
                            event,
                            time,
                            key,
                            namespace,
                        } => push_timer(target, event, time, key, namespace),
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_round_trip_and_merge_by_group_with_renumbered_states() {
        let mut a = KeyedSnapshot {
            states: vec![
                ("x".into(), StateKind::Value),
                ("y".into(), StateKind::List),
            ],
            ..Default::default()
        };
        let mut blob = Vec::new();
        push_state(&mut blob, 1, b"rest", b"val");
        push_timer(&mut blob, true, 42, b"k", b"");
        a.groups.insert(3, blob);
        a.groups.insert(9, Vec::new());
        let b_states = vec![("y".to_string(), StateKind::List)];
        let mut b = KeyedSnapshot {
            states: b_states,
            ..Default::default()
        };
        let mut blob = Vec::new();
        push_state(&mut blob, 0, b"r2", b"v2");
        b.groups.insert(4, blob);

        assert_eq!(KeyedSnapshot::decode(&a.encode()).unwrap(), a);
        let m = KeyedSnapshot::merge([&a, &b], 0..5).unwrap();
        assert_eq!(m.groups.len(), 2, "group 9 is not owned");
        let e = entries(&m.groups[&4]).unwrap();
        // `y` is index 1 in the merged names.
        assert_eq!(
            e,
            vec![Entry::State {
                state: 1,
                rest: b"r2",
                value: b"v2"
            }]
        );
        assert!(matches!(
            entries(&m.groups[&3]).unwrap()[1],
            Entry::Timer { time: 42, .. }
        ));
    }

    #[test]
    fn map_values_converts_the_picked_states_element_by_element_and_keeps_the_rest() {
        let mut snap = KeyedSnapshot {
            states: vec![
                ("acc".into(), StateKind::Value),
                ("seen".into(), StateKind::List),
                ("other".into(), StateKind::Value),
            ],
            ..Default::default()
        };
        let mut list = Vec::new();
        for e in [&b"a"[..], b"bc"] {
            list.extend_from_slice(&(e.len() as u32).to_le_bytes());
            list.extend_from_slice(e);
        }
        let mut blob = Vec::new();
        push_state(&mut blob, 0, b"k1", b"1");
        push_timer(&mut blob, true, 7, b"k1", b"ns");
        push_state(&mut blob, 1, b"k1", &list);
        push_state(&mut blob, 2, b"k1", b"keep");
        push_state(&mut blob, 0, b"k2", b"22");
        snap.groups.insert(5, blob);

        let mut calls = Vec::new();
        snap.map_values(
            |name, _| name != "other",
            |name, values| {
                calls.push((name.to_string(), values.len()));
                Ok(values.iter().map(|v| [v, &b"!"[..]].concat()).collect())
            },
        )
        .unwrap();
        assert_eq!(calls, vec![("acc".into(), 2), ("seen".into(), 2)]);
        let mut want_list = Vec::new();
        for e in [&b"a!"[..], b"bc!"] {
            want_list.extend_from_slice(&(e.len() as u32).to_le_bytes());
            want_list.extend_from_slice(e);
        }
        let e = entries(&snap.groups[&5]).unwrap();
        assert_eq!(
            e,
            vec![
                Entry::State {
                    state: 0,
                    rest: b"k1",
                    value: b"1!"
                },
                Entry::Timer {
                    event: true,
                    time: 7,
                    key: b"k1",
                    namespace: b"ns"
                },
                Entry::State {
                    state: 1,
                    rest: b"k1",
                    value: &want_list
                },
                Entry::State {
                    state: 2,
                    rest: b"k1",
                    value: b"keep"
                },
                Entry::State {
                    state: 0,
                    rest: b"k2",
                    value: b"22!"
                },
            ]
        );
        let err = snap
            .map_values(|n, _| n == "acc", |_, _| Ok(Vec::new()))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "state `acc`: 2 values converted into 0");
    }
}
