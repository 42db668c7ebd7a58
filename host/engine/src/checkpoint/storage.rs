//! Where checkpoints and savepoints are kept: a local directory by default,
//! or S3-compatible object storage, both through the `object_store` crate.
//!
//! A location is a directory path (`/var/lib/weir/checkpoints`) or a URL:
//! `s3://bucket/prefix` (credentials, region and endpoint from the usual
//! `AWS_*` environment variables; `AWS_ENDPOINT` and `AWS_ALLOW_HTTP=true`
//! for MinIO or any other S3-compatible server), `file:///abs/path`, or
//! `memory://` (tests). Objects are named by paths relative to the location.
//!
//! Calls block the calling thread (checkpoint writer and coordinator
//! threads, never the task threads) on a small shared Tokio runtime.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

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

/// A checkpoint storage location.
#[derive(Clone)]
pub struct CheckpointStorage {
    store: Arc<dyn ObjectStore>,
    root: ObjectPath,
    location: String,
    /// The directory, for a local location (whose emptied directories are
    /// removed too).
    local: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for CheckpointStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.location)
    }
}

impl CheckpointStorage {
    /// Opens a location: a directory (created if missing) or a URL.
    ///
    /// # Errors
    /// A bad URL, an unsupported scheme, missing S3 settings or a directory
    /// that cannot be created, naming the location.
    pub fn open(location: &str) -> Result<Self, String> {
        let bad = |e: &dyn std::fmt::Display| format!("checkpoint storage `{location}`: {e}");
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

    /// Opens the storage holding `location`'s last path segment, and
    /// returns that segment: `/x/chk-7` is `chk-7` in `/x`.
    ///
    /// # Errors
    /// As [`Self::open`], or a location without a parent.
    pub fn open_parent(location: &str) -> Result<(Self, String), String> {
        let trimmed = location.trim_end_matches('/');
        let Some((parent, name)) = trimmed.rsplit_once('/') else {
            // A bare name: relative to the working directory.
            return Ok((Self::open(".")?, trimmed.to_string()));
        };
        let parent = if parent.is_empty() || parent.ends_with(':') || parent.ends_with(":/") {
            format!("{parent}/")
        } else {
            parent.to_string()
        };
        Ok((Self::open(&parent)?, name.to_string()))
    }

    /// The location, as given.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The full name of object or prefix `rel`, for messages.
    pub fn display(&self, rel: &str) -> String {
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

    /// Writes `bytes` as object `rel`, atomically.
    ///
    /// # Errors
    /// The store's error, naming the object.
    pub fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<(), String> {
        let path = self.path(rel);
        runtime()
            .block_on(self.store.put(&path, PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(|e| format!("cannot write `{}`: {e}", self.display(rel)))
    }

    /// Uploads local file `file` as object `rel`.
    ///
    /// # Errors
    /// The file cannot be read or the store fails, naming both.
    pub fn put_file(&self, rel: &str, file: &Path) -> Result<(), String> {
        let bytes =
            std::fs::read(file).map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
        self.put(rel, bytes)
    }

    /// Reads object `rel`.
    ///
    /// # Errors
    /// A missing object or the store's error, naming it.
    pub fn get(&self, rel: &str) -> Result<Vec<u8>, String> {
        let path = self.path(rel);
        runtime()
            .block_on(async {
                let r = self.store.get(&path).await?;
                r.bytes().await
            })
            .map(|b| b.to_vec())
            .map_err(|e| format!("cannot read `{}`: {e}", self.display(rel)))
    }

    /// Downloads object `rel` into local file `file`.
    ///
    /// # Errors
    /// As [`Self::get`], or the file cannot be written.
    pub fn get_file(&self, rel: &str, file: &Path) -> Result<(), String> {
        let bytes = self.get(rel)?;
        std::fs::write(file, bytes).map_err(|e| format!("cannot write `{}`: {e}", file.display()))
    }

    /// Whether object `rel` exists.
    pub fn exists(&self, rel: &str) -> bool {
        let path = self.path(rel);
        runtime().block_on(self.store.head(&path)).is_ok()
    }

    /// The "directories" directly under `rel` (`""` for the top).
    ///
    /// # Errors
    /// The store's error.
    pub fn list_dirs(&self, rel: &str) -> Result<Vec<String>, String> {
        let path = self.path(rel);
        let r = runtime()
            .block_on(self.store.list_with_delimiter(Some(&path)))
            .map_err(|e| format!("cannot list `{}`: {e}", self.display(rel)))?;
        Ok(r.common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    /// Every object under `rel`, with its size, as paths relative to the
    /// location.
    ///
    /// # Errors
    /// The store's error.
    pub fn list(&self, rel: &str) -> Result<Vec<(String, u64)>, String> {
        let path = self.path(rel);
        runtime().block_on(async {
            let mut out = Vec::new();
            let mut s = self.store.list(Some(&path));
            while let Some(m) = s.next().await {
                let m = m.map_err(|e| format!("cannot list `{}`: {e}", self.display(rel)))?;
                out.push((self.relative(&m.location), m.size));
            }
            Ok(out)
        })
    }

    /// Deletes object `rel` (no error if it is missing).
    ///
    /// # Errors
    /// The store's error.
    pub fn delete(&self, rel: &str) -> Result<(), String> {
        let path = self.path(rel);
        match runtime().block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(format!("cannot delete `{}`: {e}", self.display(rel))),
        }
    }

    /// Deletes every object under `rel`.
    ///
    /// # Errors
    /// The store's error.
    pub fn delete_prefix(&self, rel: &str) -> Result<(), String> {
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
            let s = CheckpointStorage::open(location).unwrap();
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
            let e = s.get("chk-1/_metadata").unwrap_err();
            assert!(e.contains("chk-1/_metadata"), "{e}");
        }
        assert!(dir.path().join("cp/shared/1-x-000.sst").is_file());
        assert!(
            !dir.path().join("cp/chk-1").exists(),
            "no empty directory left"
        );
        let (s, name) = CheckpointStorage::open_parent(&format!("{local}/chk-9")).unwrap();
        assert_eq!((s.location(), name.as_str()), (local.as_str(), "chk-9"));
        let e = CheckpointStorage::open("ftp://x/y").unwrap_err();
        assert!(e.contains("unsupported scheme `ftp`"), "{e}");
    }
}
