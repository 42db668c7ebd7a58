//! Keyed state for weir operators.
//!
//! State is bytes in a [`StateStore`], an ordered key-value store with
//! prefix scans and appends; [`HeapStore`] keeps it in memory,
//! [`RocksStore`] in an embedded RocksDB (for state larger than memory). Above the store, [`KeyedState`] gives an
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
//! namespace, ordered by time: on the heap, or in the store itself (RocksDB,
//! one key range per key group, see [`timers`]). [`KeyedState`] owns both
//! the states and the timers of an operator subtask.

pub mod frozen;
pub mod keyed;
#[cfg(feature = "rocksdb")]
pub mod rocks;
#[cfg(not(feature = "rocksdb"))]
#[path = "rocks_disabled.rs"]
pub mod rocks;
pub mod snapshot;
pub mod store;
pub mod timers;

/// A boxed error from code the state layer calls (a migration's converter).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub use frozen::{Frozen, FrozenKeyed};
pub use keyed::{KeyedState, StateError, StateId, StateKind};
pub use rocks::{RocksCheckpoint, RocksStore};
pub use snapshot::KeyedSnapshot;
pub use store::{HeapStore, StateStore};
pub use timers::{Timer, TimerService};

/// Whether this build has the RocksDB backend (the `rocksdb` feature).
pub const ROCKSDB_AVAILABLE: bool = cfg!(feature = "rocksdb");

/// Why a build without the `rocksdb` feature refuses the RocksDB backend.
pub const ROCKSDB_UNAVAILABLE: &str = "this weir was built without RocksDB (the `rocksdb` feature); the full build (`cargo build --release -p weir-cli`, run by `bash .ci/setup`) has it";

/// Which store keyed state lives in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// On the heap ([`HeapStore`]): fastest, bounded by memory.
    #[default]
    Heap,
    /// In RocksDB ([`RocksStore`]), each subtask's database under `dir`.
    RocksDb {
        /// Working directory for the databases.
        dir: std::path::PathBuf,
    },
}

impl Backend {
    /// A fresh working directory for one operator subtask's RocksDB
    /// database, named by `label` (`None` on the heap).
    ///
    /// # Errors
    /// The parent directory cannot be created.
    pub fn fresh_path(&self, label: &str) -> Result<Option<std::path::PathBuf>, StateError> {
        let Self::RocksDb { dir } = self else {
            return Ok(None);
        };
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let safe: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::fs::create_dir_all(dir).map_err(|e| StateError::Io {
            op: "create",
            path: dir.clone(),
            message: e.to_string(),
        })?;
        Ok(Some(dir.join(format!("{safe}-{}-{n}", std::process::id()))))
    }

    /// Opens a fresh store for one operator subtask, named by `label`.
    ///
    /// # Errors
    /// A RocksDB database that cannot be created, with its path.
    pub fn open(&self, label: &str) -> Result<Box<dyn StateStore>, StateError> {
        match self {
            Self::Heap => Ok(Box::new(HeapStore::new())),
            Self::RocksDb { .. } => {
                let path = self.fresh_path(label)?.unwrap_or_default();
                Ok(Box::new(RocksStore::open(&path, true)?))
            }
        }
    }

    /// The name used in job files.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Heap => "heap",
            Self::RocksDb { .. } => "rocksdb",
        }
    }
}
