//! Key groups: how keyed state and keyed streams are split across subtasks.
//!
//! Every key hashes into one of `max_parallelism` key groups (128 by default,
//! fixed for a job's life, like Flink's). Subtask `i` of `p` owns a contiguous
//! range of key groups. Records travel to the owner of their key's group, so
//! all records of a key meet in one subtask, in the order each producer sent
//! them; state will be stored and checkpointed by key group so it can move
//! when the parallelism changes.
//!
//! The hash is XXH3-64 of the key bytes: stable across platforms and
//! versions, which matters because saved state is organized by it.

use std::ops::Range;

/// Default number of key groups.
pub const DEFAULT_MAX_PARALLELISM: u32 = 128;

/// The key group of `key` among `max_parallelism` groups.
#[inline]
pub fn key_group(key: &[u8], max_parallelism: u32) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(key) % u64::from(max_parallelism.max(1))) as u32
}

/// The subtask of `parallelism` that owns `group` (Flink's assignment:
/// `group * parallelism / max_parallelism`).
#[inline]
pub fn subtask_for_group(group: u32, max_parallelism: u32, parallelism: usize) -> usize {
    (u64::from(group) * parallelism as u64 / u64::from(max_parallelism.max(1))) as usize
}

/// The key groups owned by `subtask` of `parallelism`.
pub fn groups_of_subtask(subtask: usize, max_parallelism: u32, parallelism: usize) -> Range<u32> {
    let p = parallelism as u64;
    let m = u64::from(max_parallelism);
    let start = (subtask as u64 * m).div_ceil(p);
    let end = ((subtask as u64 + 1) * m).div_ceil(p);
    start as u32..end as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_has_exactly_one_owner_whose_range_contains_it() {
        for m in [1u32, 7, 128, 1000] {
            for p in 1..=9usize {
                if p > m as usize {
                    continue;
                }
                let mut covered = 0;
                for s in 0..p {
                    let r = groups_of_subtask(s, m, p);
                    for g in r.clone() {
                        assert_eq!(subtask_for_group(g, m, p), s, "m={m} p={p} g={g}");
                    }
                    covered += r.len();
                }
                assert_eq!(covered, m as usize);
            }
        }
    }

    #[test]
    fn the_hash_is_stable() {
        // Saved state depends on these values never changing: literal
        // values (xxh3-64, computed independently with Python's `xxhash`),
        // not the hash function called again.
        for (key, of_128, of_32768) in [
            (&b""[..], 66, 5314),
            (b"user-1", 73, 26057),
            (b"k0", 51, 4275),
            (b"auction-1007", 16, 23440),
        ] {
            assert_eq!(key_group(key, 128), of_128, "{key:?}");
            assert_eq!(key_group(key, 32768), of_32768, "{key:?}");
        }
        let spread: std::collections::HashSet<u32> = (0..1000)
            .map(|i| key_group(format!("k{i}").as_bytes(), 128))
            .collect();
        assert!(spread.len() > 100, "keys spread over the groups");
    }
}
