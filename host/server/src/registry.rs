//! Each tenant's module registry.
//!
//! A version is stored once per tenant under its SHA-256
//! (`DATA/tenants/T/modules/DIGEST.wasm`) and named `name@version`
//! (`module \0 T \0 name \0 version` in the metadata store). It is
//! validated and compiled (into the sandbox's cache) before it is recorded,
//! so a job never starts with a module that cannot load.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use weir_sandbox::Sandbox;

use crate::error::ServerError;
use crate::meta::{MetaStore, key};
use crate::tenants::Quotas;

/// A stored module version.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModuleRecord {
    /// Owner.
    pub tenant: String,
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// SHA-256 of the component, hex.
    pub digest: String,
    /// Bytes.
    pub size: u64,
    /// Operator kind (`filter`, `aggregate`, …).
    pub kind: String,
    /// The WIT world it targets.
    pub world: String,
    /// Imported interfaces.
    pub imports: Vec<String>,
    /// Exported interfaces.
    pub exports: Vec<String>,
    /// Upload time, ms since the epoch.
    pub uploaded_ms: i64,
}

impl ModuleRecord {
    /// `name@version`.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// Checks a module name or version: letters, digits, `.`, `_`, `-`.
///
/// # Errors
/// [`ServerError::InvalidArgument`] naming the rule broken.
pub fn check_part(what: &'static str, value: &str) -> Result<(), ServerError> {
    weir_sandbox::upload::check_part(what, value)
        .map_err(|e| ServerError::InvalidArgument(e.to_string()))
}

/// One tenant's view of the registry.
pub struct Registry<'a> {
    /// The metadata store.
    pub meta: &'a MetaStore,
    /// Where components are kept: `DATA/tenants`.
    pub tenants_dir: &'a std::path::Path,
    /// The tenant.
    pub tenant: &'a str,
}

impl Registry<'_> {
    /// Where the tenant's component with `digest` is kept.
    pub fn blob(&self, digest: &str) -> PathBuf {
        self.tenants_dir
            .join(self.tenant)
            .join("modules")
            .join(format!("{digest}.wasm"))
    }

    /// Every version, by name then upload order.
    ///
    /// # Errors
    /// A store error.
    pub fn list(&self) -> Result<Vec<ModuleRecord>, ServerError> {
        let mut all: Vec<ModuleRecord> = self.meta.scan(&key(&["module", self.tenant, ""]))?;
        all.sort_by(|a, b| {
            (a.name.as_str(), a.uploaded_ms, a.version.as_str()).cmp(&(
                b.name.as_str(),
                b.uploaded_ms,
                b.version.as_str(),
            ))
        });
        Ok(all)
    }

    /// `name@version`, or the newest (last uploaded) version of `name` when
    /// `version` is empty.
    ///
    /// # Errors
    /// [`ServerError::NotFound`] naming what was asked for.
    pub fn get(&self, name: &str, version: &str) -> Result<ModuleRecord, ServerError> {
        if version.is_empty() {
            return self
                .list()?
                .into_iter()
                .rfind(|m| m.name == name)
                .ok_or_else(|| ServerError::NotFound(format!("module `{name}` does not exist")));
        }
        self.meta
            .get(&key(&["module", self.tenant, name, version]))?
            .ok_or_else(|| {
                ServerError::NotFound(format!("module `{name}@{version}` does not exist"))
            })
    }

    /// The checks of [`Registry::add`] that need no compilation: names,
    /// an existing version, the tenant's module quotas.
    ///
    /// # Errors
    /// As [`Registry::add`].
    pub fn precheck(
        &self,
        quotas: &Quotas,
        name: &str,
        version: &str,
        size: u64,
    ) -> Result<(), ServerError> {
        check_part("name", name)?;
        check_part("version", version)?;
        let k = key(&["module", self.tenant, name, version]);
        if self.meta.get::<ModuleRecord>(&k)?.is_some() {
            return Err(ServerError::AlreadyExists(format!(
                "module `{name}@{version}` exists already; upload a new version"
            )));
        }
        let existing = self.list()?;
        let used: u64 = existing.iter().map(|m| m.size).sum();
        if existing.len() as u64 >= u64::from(quotas.max_modules) {
            return Err(ServerError::ResourceExhausted(format!(
                "tenant `{}` has {} module versions, its quota (max_modules); delete one first",
                self.tenant,
                existing.len()
            )));
        }
        if used + size > quotas.max_module_bytes {
            return Err(ServerError::ResourceExhausted(format!(
                "module `{name}@{version}` ({} bytes) would take tenant `{}` over its quota of {} module bytes ({used} used; max_module_bytes)",
                size, self.tenant, quotas.max_module_bytes
            )));
        }
        Ok(())
    }

    /// Validates, compiles and stores an upload.
    ///
    /// # Errors
    /// An invalid name or version, a version that exists, a quota, or a
    /// component the sandbox refuses (not Wasm, a core module, another
    /// world, a forbidden import) — named with `name@version`.
    pub fn add(
        &self,
        sandbox: &Sandbox,
        quotas: &Quotas,
        name: &str,
        version: &str,
        bytes: &[u8],
        now_ms: i64,
    ) -> Result<ModuleRecord, ServerError> {
        self.precheck(quotas, name, version, bytes.len() as u64)?;
        let id = format!("{name}@{version}");
        let module = sandbox
            .load_bytes(&id, bytes)
            .map_err(|e| ServerError::InvalidArgument(format!("module `{id}`: {e}")))?;
        let digest = hex::encode(Sha256::digest(bytes));
        let blob = self.blob(&digest);
        if !blob.is_file() {
            let dir = blob.parent().unwrap_or(self.tenants_dir);
            std::fs::create_dir_all(dir).map_err(|e| io(&blob, &e))?;
            let tmp = blob.with_extension("tmp");
            std::fs::write(&tmp, bytes).map_err(|e| io(&tmp, &e))?;
            std::fs::rename(&tmp, &blob).map_err(|e| io(&blob, &e))?;
        }
        let record = ModuleRecord {
            tenant: self.tenant.to_string(),
            name: name.to_string(),
            version: version.to_string(),
            digest,
            size: bytes.len() as u64,
            kind: module.kind().name().to_string(),
            world: world_id(module.kind().world()),
            imports: module.imports().to_vec(),
            exports: module.exports().to_vec(),
            uploaded_ms: now_ms,
        };
        self.meta
            .put(&key(&["module", self.tenant, name, version]), &record)?;
        Ok(record)
    }

    /// Removes a version (the caller checked no running job uses it); the
    /// file goes when no other version has the same content.
    ///
    /// # Errors
    /// A store error.
    pub fn remove(&self, m: &ModuleRecord) -> Result<(), ServerError> {
        self.meta
            .delete(&key(&["module", self.tenant, &m.name, &m.version]))?;
        if !self.list()?.iter().any(|o| o.digest == m.digest) {
            let _ = std::fs::remove_file(self.blob(&m.digest));
        }
        Ok(())
    }
}

/// `weir:udf/WORLD@VERSION`.
fn world_id(world: &str) -> String {
    match weir_sandbox::WIT_PACKAGE.split_once('@') {
        Some((package, version)) => format!("{package}/{world}@{version}"),
        None => format!("{}/{world}", weir_sandbox::WIT_PACKAGE),
    }
}

fn io(path: &std::path::Path, e: &std::io::Error) -> ServerError {
    ServerError::Internal(format!("cannot write `{}`: {e}", path.display()))
}
