//! The server's durable metadata: tenants, token hashes, modules and jobs,
//! as JSON values in an embedded RocksDB database (`DATA/meta`), every write
//! synced.
//!
//! Keys are `kind \0 tenant \0 name…`, so one tenant's records of one kind
//! are one prefix scan.

use std::path::Path;

use rocksdb::{DB, Direction, IteratorMode, Options, WriteOptions};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ServerError;

/// The metadata database.
pub struct MetaStore {
    db: DB,
}

/// A key from its parts.
pub fn key(parts: &[&str]) -> Vec<u8> {
    parts.join("\0").into_bytes()
}

impl MetaStore {
    /// Opens (or creates) the database in `dir`.
    ///
    /// # Errors
    /// When RocksDB cannot open it (another server holds its lock, a
    /// damaged file).
    pub fn open(dir: &Path) -> Result<Self, ServerError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        let db = DB::open(&opts, dir).map_err(|e| {
            ServerError::Internal(format!(
                "cannot open the metadata store `{}`: {e} (is another `weir serve` using this data directory?)",
                dir.display()
            ))
        })?;
        Ok(Self { db })
    }

    /// The value at `key`.
    ///
    /// # Errors
    /// A read error, or a value that is not what it should be.
    pub fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, ServerError> {
        let Some(bytes) = self.db.get(key).map_err(internal)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            ServerError::Internal(format!(
                "damaged metadata at `{}`: {e}",
                String::from_utf8_lossy(key).replace('\0', "/")
            ))
        })
    }

    /// Writes `value` at `key`, synced to disk.
    ///
    /// # Errors
    /// A write error.
    pub fn put<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), ServerError> {
        let bytes = serde_json::to_vec(value).map_err(|e| ServerError::Internal(e.to_string()))?;
        self.db.put_opt(key, bytes, &synced()).map_err(internal)
    }

    /// Removes `key`, synced to disk.
    ///
    /// # Errors
    /// A write error.
    pub fn delete(&self, key: &[u8]) -> Result<(), ServerError> {
        self.db.delete_opt(key, &synced()).map_err(internal)
    }

    /// Every value whose key starts with `prefix`, in key order.
    ///
    /// # Errors
    /// A read error or a damaged value.
    pub fn scan<T: DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>, ServerError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(prefix, Direction::Forward))
        {
            let (k, v) = item.map_err(internal)?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push(serde_json::from_slice(&v).map_err(|e| {
                ServerError::Internal(format!(
                    "damaged metadata at `{}`: {e}",
                    String::from_utf8_lossy(&k).replace('\0', "/")
                ))
            })?);
        }
        Ok(out)
    }
}

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

fn internal(e: rocksdb::Error) -> ServerError {
    ServerError::Internal(format!("metadata store: {e}"))
}
