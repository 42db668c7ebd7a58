//! weir's checkpoint and savepoint storage over the `object_store` crate:
//! a local directory by default, or S3-compatible object storage.
//!
//! A location is a directory path (`/var/lib/weir/checkpoints`) or a URL:
//! `s3://bucket/prefix` (credentials, region and endpoint from the usual
//! `AWS_*` environment variables; `AWS_ENDPOINT` and `AWS_ALLOW_HTTP=true`
//! for MinIO or any other S3-compatible server), `file:///abs/path`, or
//! `memory://` (tests). Objects are named by paths relative to the location.
//!
//! [`open`] returns the engine's [`CheckpointStorage`] handle: the dataflow
//! core only sees [`ObjectStorage`]. Calls block the calling thread
//! (checkpoint writer and coordinator threads, never the task threads) on a
//! small shared Tokio runtime.

use std::sync::{Arc, OnceLock};

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use weir_engine::checkpoint::{
    self, CheckpointError, CheckpointStorage, ObjectStorage, RestoredJob, StorageError,
};

/// The runtime that drives object-store requests for every job.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("weir-storage")
            .enable_all()
            .build()
            .expect("cannot start the checkpoint storage runtime")
    })
}

/// Opens a location: a directory (created if missing) or a URL.
///
/// # Errors
/// A bad URL, an unsupported scheme, missing S3 settings or a directory
/// that cannot be created, naming the location.
pub fn open(location: &str) -> Result<CheckpointStorage, StorageError> {
    Ok(CheckpointStorage::new(Arc::new(ObjectStoreStorage::open(
        location,
    )?)))
}

/// Opens the storage holding `location`'s last path segment, and returns
/// that segment: `/x/chk-7` is `chk-7` in `/x`.
///
/// # Errors
/// As [`open`].
pub fn open_parent(location: &str) -> Result<(CheckpointStorage, String), StorageError> {
    let trimmed = location.trim_end_matches('/');
    let Some((parent, name)) = trimmed.rsplit_once('/') else {
        // A bare name: relative to the working directory.
        return Ok((open(".")?, trimmed.to_string()));
    };
    let parent = if parent.is_empty() || parent.ends_with(':') || parent.ends_with(":/") {
        format!("{parent}/")
    } else {
        parent.to_string()
    };
    Ok((open(&parent)?, name.to_string()))
}

/// Reads the checkpoint or savepoint at `location`: a directory or a URL
/// (`s3://b/p/chk-7`).
///
/// # Errors
/// A location that cannot be opened, a missing or unreadable object, or
/// malformed contents, naming it.
pub fn read_checkpoint(location: &str) -> Result<RestoredJob, CheckpointError> {
    let (storage, name) = open_parent(location)?;
    checkpoint::read(&storage, &name)
}

/// An [`ObjectStorage`] over an `object_store` store.
pub struct ObjectStoreStorage {
    store: Arc<dyn ObjectStore>,
    root: ObjectPath,
    location: String,
    /// The directory, for a local location (whose emptied directories are
    /// removed too).
    local: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for ObjectStoreStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.location)
    }
}

impl ObjectStoreStorage {
    /// Opens a location: a directory (created if missing) or a URL.
    ///
    /// # Errors
    /// As [`open`].
    pub fn open(location: &str) -> Result<Self, StorageError> {
        let bad = |e: &dyn std::fmt::Display| StorageError::Open {
            location: location.to_string(),
            reason: e.to_string(),
        };
        let location = location.trim_end_matches('/').to_string();
        if location.contains("://") {
            let url = url::Url::parse(&location).map_err(|e| bad(&e))?;
            let (store, root): (Arc<dyn ObjectStore>, ObjectPath) = match url.scheme() {
                "s3" => {
                    let store = object_store::aws::AmazonS3Builder::from_env()
                        .with_url(location.as_str())
                        .build()
                        .map_err(|e| bad(&e))?;
                    let root = ObjectPath::from_url_path(url.path()).map_err(|e| bad(&e))?;
                    (Arc::new(store), root)
                }
                "file" => {
                    // A directory, named by URL.
                    let mut dir = Self::open(url.path())?;
                    dir.location = location;
                    return Ok(dir);
                }
                "memory" => {
                    let (store, root) = object_store::parse_url(&url).map_err(|e| bad(&e))?;
                    (Arc::from(store), root)
                }
                other => {
                    return Err(bad(&format!(
                        "unsupported scheme `{other}` (use a directory, file://, s3:// or memory://)"
                    )));
                }
            };
            return Ok(Self {
                store,
                root,
                location,
                local: None,
            });
        }
        let dir = if location.is_empty() { "/" } else { &location };
        std::fs::create_dir_all(dir).map_err(|e| bad(&e))?;
        // Synced writes: a checkpoint's `_metadata` must never be durable
        // before the state it describes.
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| bad(&e))?
            .with_fsync(true);
        Ok(Self {
            store: Arc::new(store),
            root: ObjectPath::default(),
            location: dir.to_string(),
            local: Some(dir.into()),
        })
    }

    fn display(&self, rel: &str) -> String {
        format!("{}/{rel}", self.location.trim_end_matches('/'))
    }

    fn path(&self, rel: &str) -> ObjectPath {
        rel.split('/')
            .filter(|p| !p.is_empty())
            .fold(self.root.clone(), |p, part| p.join(part))
    }

    fn relative(&self, p: &ObjectPath) -> String {
        p.prefix_match(&self.root)
            .map(|parts| {
                parts
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_else(|| p.to_string())
    }

    fn failed(&self, op: &'static str, rel: &str, e: object_store::Error) -> StorageError {
        match e {
            object_store::Error::NotFound { .. } => StorageError::NotFound {
                object: self.display(rel),
            },
            e => StorageError::Store {
                op,
                object: self.display(rel),
                source: Box::new(e),
            },
        }
    }
}

impl ObjectStorage for ObjectStoreStorage {
    fn location(&self) -> &str {
        &self.location
    }

    fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        let path = self.path(rel);
        runtime()
            .block_on(self.store.put(&path, PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(|e| self.failed("write", rel, e))
    }

    fn get(&self, rel: &str) -> Result<Vec<u8>, StorageError> {
        let path = self.path(rel);
        runtime()
            .block_on(async {
                let r = self.store.get(&path).await?;
                r.bytes().await
            })
            .map(|b| b.to_vec())
            .map_err(|e| self.failed("read", rel, e))
    }

    fn exists(&self, rel: &str) -> bool {
        let path = self.path(rel);
        runtime().block_on(self.store.head(&path)).is_ok()
    }

    fn list_dirs(&self, rel: &str) -> Result<Vec<String>, StorageError> {
        let path = self.path(rel);
        let r = runtime()
            .block_on(self.store.list_with_delimiter(Some(&path)))
            .map_err(|e| self.failed("list", rel, e))?;
        Ok(r.common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    fn list(&self, rel: &str) -> Result<Vec<(String, u64)>, StorageError> {
        let path = self.path(rel);
        runtime().block_on(async {
            let mut out = Vec::new();
            let mut s = self.store.list(Some(&path));
            while let Some(m) = s.next().await {
                let m = m.map_err(|e| self.failed("list", rel, e))?;
                out.push((self.relative(&m.location), m.size));
            }
            Ok(out)
        })
    }

    fn delete(&self, rel: &str) -> Result<(), StorageError> {
        let path = self.path(rel);
        match runtime().block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.failed("delete", rel, e)),
        }
    }

    fn delete_prefix(&self, rel: &str) -> Result<(), StorageError> {
        for (name, _) in self.list(rel)? {
            self.delete(&name)?;
        }
        if let Some(dir) = &self.local
            && !rel.is_empty()
        {
            // A directory has no objects left, but may have directories.
            let _ = std::fs::remove_dir_all(dir.join(rel));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_and_memory_storage_put_list_get_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("cp").display().to_string();
        for location in [local.as_str(), "memory:///storage-test"] {
            let s = open(location).unwrap();
            s.put("chk-1/_metadata", b"m".to_vec()).unwrap();
            s.put("chk-1/a-0.state", b"aa".to_vec()).unwrap();
            s.put("shared/1-x-000.sst", b"sst".to_vec()).unwrap();
            assert_eq!(
                s.list_dirs("").unwrap().len(),
                2,
                "{location}: {:?}",
                s.list_dirs("")
            );
            assert!(s.exists("chk-1/_metadata"));
            assert_eq!(s.get("chk-1/a-0.state").unwrap(), b"aa");
            let mut all = s.list("chk-1").unwrap();
            all.sort();
            assert_eq!(
                all,
                vec![("chk-1/_metadata".into(), 1), ("chk-1/a-0.state".into(), 2)]
            );
            s.delete_prefix("chk-1").unwrap();
            assert!(!s.exists("chk-1/_metadata"));
            let e = s.get("chk-1/_metadata").unwrap_err().to_string();
            assert!(e.contains("chk-1/_metadata"), "{e}");
        }
        assert!(dir.path().join("cp/shared/1-x-000.sst").is_file());
        assert!(
            !dir.path().join("cp/chk-1").exists(),
            "no empty directory left"
        );
        let (s, name) = open_parent(&format!("{local}/chk-9")).unwrap();
        assert_eq!((s.location(), name.as_str()), (local.as_str(), "chk-9"));
        let e = open("ftp://x/y").unwrap_err().to_string();
        assert!(e.contains("unsupported scheme `ftp`"), "{e}");
    }
}
