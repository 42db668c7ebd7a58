//! Keyed state for weir operators.
//!
//! State is bytes in a [`StateStore`], an ordered key-value store with
//! prefix scans and appends; [`HeapStore`] keeps it in memory (a RocksDB
//! store is the other backend). Above the store, [`KeyedState`] gives an
//! operator Flink's state kinds — value, list, map — for the *current key* and
//! an optional namespace (a window), laid out so that everything of one key
//! group is one contiguous key range:
//!
//! ```text
//! [key group: u16 BE][state id: u16 BE][key length: u32 BE][key][namespace][user key]
//! ```
//!
//! Splitting state by key group is what lets a job restore with another
//! parallelism: each subtask takes the ranges of the groups it now owns.
//! [`TimerService`] holds event- and processing-time timers per key and
//! namespace, ordered by time.

pub mod keyed;
pub mod snapshot;
pub mod store;
pub mod timers;

pub use keyed::{KeyedState, StateError, StateId, StateKind};
pub use snapshot::KeyedSnapshot;
pub use store::{HeapStore, StateStore};
pub use timers::TimerService;
