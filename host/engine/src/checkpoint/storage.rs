//! Where checkpoints and savepoints are kept, as the checkpoint code sees
//! it: named objects under one location, read and written by blocking
//! calls (from checkpoint writer and coordinator threads, never from task
//! threads).
//!
//! The core defines only the interface. `weir-storage` implements it over
//! the `object_store` crate (a local directory, S3-compatible storage) and
//! opens locations by name; a cluster's workers and controller share one.

use std::path::Path;
use std::sync::Arc;

use crate::BoxError;

/// A failed storage call, naming the object or location.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A location that cannot be opened (bad URL, unsupported scheme,
    /// missing settings).
    #[error("checkpoint storage `{location}`: {reason}")]
    Open {
        /// The location as given.
        location: String,
        /// Why.
        reason: String,
    },
    /// Object `object` is not there.
    #[error("cannot read `{object}`: not found")]
    NotFound {
        /// The object's full name.
        object: String,
    },
    /// The store refused a call on `object`.
    #[error("cannot {op} `{object}`: {source}")]
    Store {
        /// `read`, `write`, `list` or `delete`.
        op: &'static str,
        /// The object or prefix's full name.
        object: String,
        /// The store's error.
        source: BoxError,
    },
    /// A local file that cannot be read or written.
    #[error("cannot {op} `{}`: {source}", path.display())]
    File {
        /// `read`, `write` or `create`.
        op: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Blocking object storage under one location. Object names are paths
/// relative to it (`chk-3/_metadata`).
pub trait ObjectStorage: Send + Sync {
    /// The location, as given when opened.
    fn location(&self) -> &str;

    /// Writes `bytes` as object `rel`, atomically.
    ///
    /// # Errors
    /// The store's error.
    fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<(), StorageError>;

    /// Reads object `rel`.
    ///
    /// # Errors
    /// [`StorageError::NotFound`], or the store's error.
    fn get(&self, rel: &str) -> Result<Vec<u8>, StorageError>;

    /// Whether object `rel` exists.
    fn exists(&self, rel: &str) -> bool;

    /// The "directories" directly under `rel` (`""` for the top).
    ///
    /// # Errors
    /// The store's error.
    fn list_dirs(&self, rel: &str) -> Result<Vec<String>, StorageError>;

    /// Every object under `rel`, with its size, named relative to the
    /// location.
    ///
    /// # Errors
    /// The store's error.
    fn list(&self, rel: &str) -> Result<Vec<(String, u64)>, StorageError>;

    /// Deletes object `rel` (no error if it is missing).
    ///
    /// # Errors
    /// The store's error.
    fn delete(&self, rel: &str) -> Result<(), StorageError>;

    /// Deletes every object under `rel`.
    ///
    /// # Errors
    /// The store's error.
    fn delete_prefix(&self, rel: &str) -> Result<(), StorageError> {
        for (name, _) in self.list(rel)? {
            self.delete(&name)?;
        }
        Ok(())
    }
}

/// A checkpoint storage location: a shared handle on an [`ObjectStorage`].
#[derive(Clone)]
pub struct CheckpointStorage(Arc<dyn ObjectStorage>);

impl std::fmt::Debug for CheckpointStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.location())
    }
}

impl CheckpointStorage {
    /// Checkpoints kept in `store`.
    pub fn new(store: Arc<dyn ObjectStorage>) -> Self {
        Self(store)
    }

    /// The location, as given.
    pub fn location(&self) -> &str {
        self.0.location()
    }

    /// The full name of object or prefix `rel`, for messages.
    pub fn display(&self, rel: &str) -> String {
        format!("{}/{rel}", self.location().trim_end_matches('/'))
    }

    /// Uploads local file `file` as object `rel`.
    ///
    /// # Errors
    /// The file cannot be read or the store fails, naming it.
    pub fn put_file(&self, rel: &str, file: &Path) -> Result<(), StorageError> {
        let bytes = std::fs::read(file).map_err(|source| StorageError::File {
            op: "read",
            path: file.to_path_buf(),
            source,
        })?;
        self.put(rel, bytes)
    }

    /// Downloads object `rel` into local file `file`.
    ///
    /// # Errors
    /// As [`ObjectStorage::get`], or the file cannot be written.
    pub fn get_file(&self, rel: &str, file: &Path) -> Result<(), StorageError> {
        let bytes = self.get(rel)?;
        std::fs::write(file, bytes).map_err(|source| StorageError::File {
            op: "write",
            path: file.to_path_buf(),
            source,
        })
    }
}

impl std::ops::Deref for CheckpointStorage {
    type Target = dyn ObjectStorage;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

/// A process-local map of objects, for the core's own tests.
#[cfg(test)]
pub(crate) mod memory {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use super::{CheckpointStorage, ObjectStorage, StorageError};

    #[derive(Default)]
    pub(crate) struct Memory(Mutex<BTreeMap<String, Vec<u8>>>);

    pub(crate) fn storage() -> CheckpointStorage {
        CheckpointStorage::new(Arc::new(Memory::default()))
    }

    impl Memory {
        fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
            self.0.lock().unwrap()
        }
    }

    fn under(rel: &str) -> String {
        if rel.is_empty() {
            String::new()
        } else {
            format!("{}/", rel.trim_end_matches('/'))
        }
    }

    impl ObjectStorage for Memory {
        fn location(&self) -> &str {
            "memory:///test"
        }
        fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
            self.map().insert(rel.to_string(), bytes);
            Ok(())
        }
        fn get(&self, rel: &str) -> Result<Vec<u8>, StorageError> {
            self.map()
                .get(rel)
                .cloned()
                .ok_or_else(|| StorageError::NotFound {
                    object: format!("memory:///test/{rel}"),
                })
        }
        fn exists(&self, rel: &str) -> bool {
            self.map().contains_key(rel)
        }
        fn list_dirs(&self, rel: &str) -> Result<Vec<String>, StorageError> {
            let prefix = under(rel);
            let mut dirs: Vec<String> = self
                .map()
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix)?.split_once('/'))
                .map(|(d, _)| d.to_string())
                .collect();
            dirs.dedup();
            Ok(dirs)
        }
        fn list(&self, rel: &str) -> Result<Vec<(String, u64)>, StorageError> {
            let prefix = under(rel);
            Ok(self
                .map()
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .map(|(k, v)| (k.clone(), v.len() as u64))
                .collect())
        }
        fn delete(&self, rel: &str) -> Result<(), StorageError> {
            self.map().remove(rel);
            Ok(())
        }
    }
}
