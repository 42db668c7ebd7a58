//! RocksDB left out of this build (the `rocksdb` feature is off, as in the
//! README's demo build, which uses the heap only): the same types as
//! [`crate::rocks`] so that everything above compiles, none of which can be
//! made — opening a store says how to get a build with RocksDB.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::StateError;
use crate::store::StateStore;

/// Which of a database's SST files are in checkpoint storage.
pub type SharedFiles = Arc<Mutex<SharedIndex>>;

/// See [`SharedFiles`].
#[derive(Debug, Default)]
pub struct SharedIndex {
    /// Files uploaded for a checkpoint known complete: file name → object.
    pub confirmed: HashMap<String, String>,
    /// Files uploaded for a checkpoint not yet known complete.
    pub pending: Vec<(u64, String, String)>,
}

/// A RocksDB state store: cannot exist in this build.
#[derive(Debug)]
pub struct RocksStore {
    never: Infallible,
}

impl RocksStore {
    /// Always [`StateError::RocksDbUnavailable`].
    ///
    /// # Errors
    /// Always.
    pub fn open(_path: &Path, _remove_on_drop: bool) -> Result<Self, StateError> {
        Err(StateError::RocksDbUnavailable)
    }

    /// Unreachable: no store exists.
    pub fn shared_files(&self) -> &SharedFiles {
        match self.never {}
    }

    /// Unreachable: no store exists.
    pub fn path(&self) -> &Path {
        match self.never {}
    }
}

impl StateStore for RocksStore {
    fn get(&self, _key: &[u8]) -> Option<Vec<u8>> {
        match self.never {}
    }
    fn with_value(&self, _key: &[u8], _f: &mut dyn FnMut(Option<&[u8]>)) {
        match self.never {}
    }
    fn put(&mut self, _key: &[u8], _value: &[u8]) {
        match self.never {}
    }
    fn append(&mut self, _key: &[u8], _bytes: &[u8]) {
        match self.never {}
    }
    fn delete(&mut self, _key: &[u8]) {
        match self.never {}
    }
    fn scan_prefix(&self, _prefix: &[u8], _f: &mut dyn FnMut(&[u8], &[u8])) {
        match self.never {}
    }
    fn delete_prefix(&mut self, _prefix: &[u8]) {
        match self.never {}
    }
    fn seek(&self, _from: &[u8], _prefix: &[u8]) -> Option<Vec<u8>> {
        match self.never {}
    }
    fn len(&self) -> usize {
        match self.never {}
    }
    fn freeze(&mut self) -> Result<crate::Frozen, StateError> {
        match self.never {}
    }
}

/// A RocksDB checkpoint: cannot exist in this build.
#[derive(Debug)]
pub struct RocksCheckpoint {
    never: Infallible,
    /// As [`crate::rocks`]'s.
    pub shared: SharedFiles,
    /// As [`crate::rocks`]'s.
    pub instance: String,
}

impl RocksCheckpoint {
    /// Unreachable: no checkpoint exists.
    pub fn dir(&self) -> &Path {
        match self.never {}
    }

    /// Unreachable: no checkpoint exists.
    ///
    /// # Errors
    /// None.
    pub fn files(&self) -> Result<Vec<(String, u64)>, StateError> {
        match self.never {}
    }

    /// Unreachable: no checkpoint exists.
    ///
    /// # Errors
    /// None.
    pub fn scan(&self, _f: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), StateError> {
        match self.never {}
    }
}
