//! Compile once: components cached by content hash, in memory and on disk.
//!
//! The key of a compiled artifact is the sha256 of the component's bytes; the
//! directory it lives in is named after the engine's compatibility hash
//! (wasmtime version, target, compiler settings), so an artifact is never
//! loaded into an engine that could not run it. Compiling a Python component
//! takes about 10 s; loading its artifact takes milliseconds.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::SandboxError;
use crate::module::ModuleDigest;

/// Counters of what the cache did, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Components compiled from scratch.
    pub compiled: u64,
    /// Artifacts loaded from disk.
    pub loaded_from_disk: u64,
    /// Components found already in memory.
    pub memory_hits: u64,
}

/// Compiled components by content hash.
pub struct ModuleCache {
    dir: Option<PathBuf>,
    memory: Mutex<HashMap<ModuleDigest, Component>>,
    compiled: AtomicU64,
    loaded_from_disk: AtomicU64,
    memory_hits: AtomicU64,
}

impl ModuleCache {
    pub(crate) fn new(engine: &Engine, dir: Option<&Path>) -> Result<Self, SandboxError> {
        let dir = match dir {
            None => None,
            Some(base) => {
                let mut h = DefaultHasher::new();
                engine.precompile_compatibility_hash().hash(&mut h);
                let dir = base.join(format!("{:016x}", h.finish()));
                std::fs::create_dir_all(&dir).map_err(|e| SandboxError::Cache {
                    dir: dir.clone(),
                    message: format!("cannot create: {e}"),
                })?;
                Some(dir)
            }
        };
        Ok(Self {
            dir,
            memory: Mutex::new(HashMap::new()),
            compiled: AtomicU64::new(0),
            loaded_from_disk: AtomicU64::new(0),
            memory_hits: AtomicU64::new(0),
        })
    }

    /// What the cache has done so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            compiled: self.compiled.load(Ordering::Relaxed),
            loaded_from_disk: self.loaded_from_disk.load(Ordering::Relaxed),
            memory_hits: self.memory_hits.load(Ordering::Relaxed),
        }
    }

    /// The directory artifacts are written to, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    pub(crate) fn get_or_compile(
        &self,
        engine: &Engine,
        name: &str,
        bytes: &[u8],
    ) -> Result<(ModuleDigest, Component), SandboxError> {
        check_header(name, bytes)?;
        let digest = ModuleDigest::of(bytes);
        if let Some(c) = self.lock().get(&digest) {
            self.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Ok((digest, c.clone()));
        }
        let component = match self.load_artifact(engine, &digest) {
            Some(c) => c,
            None => {
                let c = Component::new(engine, bytes).map_err(|e| SandboxError::Invalid {
                    module: name.to_string(),
                    message: format!("{e:#}"),
                })?;
                self.compiled.fetch_add(1, Ordering::Relaxed);
                self.store_artifact(&digest, &c)?;
                c
            }
        };
        self.lock().insert(digest, component.clone());
        Ok((digest, component))
    }

    /// Adds the artifact a compile helper made of the component with
    /// `digest` ([`crate::compiler`]), counted as compiled; the artifact's
    /// bytes are written to disk as they came.
    pub(crate) fn insert_artifact(
        &self,
        engine: &Engine,
        name: &str,
        digest: ModuleDigest,
        artifact: &[u8],
    ) -> Result<(ModuleDigest, Component), SandboxError> {
        // SAFETY: the artifact was made by a compile helper: this program's
        // own wasmtime with the same compilation settings
        // ([`crate::runtime::compile_engine`]), from a component that passed
        // the same checks; wasmtime checks its header, version and
        // settings against this engine and refuses a mismatch.
        let component = unsafe { Component::deserialize(engine, artifact) }.map_err(|e| {
            SandboxError::Setup(format!(
                "the compile helper's artifact for module `{name}` does not load: {e:#}"
            ))
        })?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        self.write_artifact(&digest, artifact)?;
        self.lock().insert(digest, component.clone());
        Ok((digest, component))
    }

    /// The compiled component of `digest` if it is in memory or on disk,
    /// without compiling.
    pub(crate) fn cached(
        &self,
        engine: &Engine,
        digest: ModuleDigest,
    ) -> Option<(ModuleDigest, Component)> {
        if let Some(c) = self.lock().get(&digest) {
            self.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Some((digest, c.clone()));
        }
        let c = self.load_artifact(engine, &digest)?;
        self.lock().insert(digest, c.clone());
        Some((digest, c))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ModuleDigest, Component>> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn artifact_path(&self, digest: &ModuleDigest) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{}.cwasm", digest.hex())))
    }

    fn load_artifact(&self, engine: &Engine, digest: &ModuleDigest) -> Option<Component> {
        let path = self.artifact_path(digest)?;
        if !path.exists() {
            return None;
        }
        // SAFETY: the file is one this cache wrote with `Component::serialize`
        // for an engine with the same compatibility hash (the directory name),
        // under a name that is the hash of the source it was compiled from;
        // wasmtime also checks the artifact's header and version. A corrupt or
        // foreign file is rejected by that check and recompiled below.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => {
                self.loaded_from_disk.fetch_add(1, Ordering::Relaxed);
                Some(c)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring unusable cached artifact: {e:#}");
                None
            }
        }
    }

    fn store_artifact(&self, digest: &ModuleDigest, c: &Component) -> Result<(), SandboxError> {
        if self.dir.is_none() {
            return Ok(());
        }
        let bytes = c.serialize().map_err(|e| SandboxError::Cache {
            dir: self.dir.clone().unwrap_or_default(),
            message: format!("cannot serialize: {e:#}"),
        })?;
        self.write_artifact(digest, &bytes)
    }

    /// Writes a serialized artifact under its digest (if the cache has a
    /// directory).
    fn write_artifact(&self, digest: &ModuleDigest, bytes: &[u8]) -> Result<(), SandboxError> {
        let (Some(dir), Some(path)) = (self.dir.as_ref(), self.artifact_path(digest)) else {
            return Ok(());
        };
        let err = |message: String| SandboxError::Cache {
            dir: dir.clone(),
            message,
        };
        // Write to a temporary file and rename, so a concurrent reader never
        // sees half an artifact.
        let mut tmp = tempfile::NamedTempFile::new_in(dir)
            .map_err(|e| err(format!("cannot create a temporary file: {e}")))?;
        tmp.write_all(bytes)
            .map_err(|e| err(format!("cannot write: {e}")))?;
        tmp.persist(&path)
            .map_err(|e| err(format!("cannot rename into place: {e}")))?;
        Ok(())
    }
}

/// Tells apart "not Wasm", "a core module" and "a component" from the 8-byte
/// preamble, so that the common mistakes get a precise message.
pub(crate) fn check_header(name: &str, bytes: &[u8]) -> Result<(), SandboxError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        let prefix = String::from_utf8_lossy(&bytes[..bytes.len().min(16)]).into_owned();
        return Err(SandboxError::NotWasm {
            module: name.to_string(),
            prefix,
        });
    }
    // Bytes 4..8: a u16 version and a u16 layer; layer 0 is a core module,
    // layer 1 a component.
    if bytes[6] == 0 && bytes[7] == 0 {
        return Err(SandboxError::CoreModule {
            module: name.to_string(),
        });
    }
    Ok(())
}
