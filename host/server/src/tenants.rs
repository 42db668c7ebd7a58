//! Tenants, their quotas and their API tokens.
//!
//! A token is 24 random bytes, shown once when the tenant is created; the
//! server keeps only its SHA-256 (`token \0 hash` → tenant name). The admin
//! token lives in `DATA/admin.token` (mode 0600), created at the first start.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ServerError;
use crate::meta::{MetaStore, key};

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// The holder of the admin token: manages tenants only.
    Admin,
    /// A tenant, by name.
    Tenant(String),
}

/// A tenant's limits. Zero in a request means "the server's default".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quotas {
    /// Module versions in the registry.
    pub max_modules: u32,
    /// Bytes of all module versions.
    pub max_module_bytes: u64,
    /// Jobs running at once.
    pub max_jobs: u32,
    /// Subtasks of all running jobs together.
    pub max_parallelism: u32,
    /// Linear memory of one guest instance, in MiB.
    pub max_memory_mb: u32,
    /// Time one guest call may run, in milliseconds.
    pub max_cpu_deadline_ms: u32,
    /// Size of one job's latest checkpoint, in bytes.
    pub max_state_bytes: u64,
    /// The tenant's weight in dividing the CPU among tenants whose subtasks
    /// outnumber the cores (relative; 100 is the default).
    #[serde(default = "default_cpu_shares")]
    pub cpu_shares: u32,
}

fn default_cpu_shares() -> u32 {
    weir_engine::share::DEFAULT_WEIGHT
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            max_modules: 100,
            max_module_bytes: 1 << 30,
            max_jobs: 10,
            max_parallelism: 32,
            max_memory_mb: 256,
            max_cpu_deadline_ms: 1000,
            max_state_bytes: 10 << 30,
            cpu_shares: default_cpu_shares(),
        }
    }
}

impl Quotas {
    /// `self` with every zero field taken from `defaults`.
    pub fn or(self, defaults: Quotas) -> Quotas {
        fn pick<T: PartialEq + Default>(v: T, d: T) -> T {
            if v == T::default() { d } else { v }
        }
        Quotas {
            max_modules: pick(self.max_modules, defaults.max_modules),
            max_module_bytes: pick(self.max_module_bytes, defaults.max_module_bytes),
            max_jobs: pick(self.max_jobs, defaults.max_jobs),
            max_parallelism: pick(self.max_parallelism, defaults.max_parallelism),
            max_memory_mb: pick(self.max_memory_mb, defaults.max_memory_mb),
            max_cpu_deadline_ms: pick(self.max_cpu_deadline_ms, defaults.max_cpu_deadline_ms),
            max_state_bytes: pick(self.max_state_bytes, defaults.max_state_bytes),
            cpu_shares: pick(self.cpu_shares, defaults.cpu_shares),
        }
    }
}

/// A stored tenant.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TenantRecord {
    /// Name: lowercase letters, digits and `-`.
    pub name: String,
    /// SHA-256 of its token, hex.
    pub token_sha256: String,
    /// Its limits.
    pub quotas: Quotas,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
    /// What the admin granted beyond the sandbox: addresses and credentials.
    #[serde(default)]
    pub grants: Grants,
}

/// What the admin grants a tenant's jobs beyond the sandbox. Nothing by
/// default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// Addresses its connectors may reach, as `HOST:PORT` patterns
    /// ([`crate::egress`]).
    #[serde(default)]
    pub egress: Vec<String>,
    /// Named credentials of the server's configuration that its connectors
    /// may use (`credential = "NAME"` in a job file).
    #[serde(default)]
    pub credentials: Vec<String>,
}

/// SHA-256 of a token, hex.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token.
///
/// # Errors
/// When the system's random source fails.
pub fn new_token() -> Result<String, ServerError> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)
        .map_err(|e| ServerError::Internal(format!("no random bytes for a token: {e}")))?;
    Ok(format!("weir_{}", hex::encode(bytes)))
}

/// Checks a tenant name: it becomes a directory and a key.
///
/// # Errors
/// [`ServerError::InvalidArgument`] naming the rule broken.
pub fn check_name(what: &str, name: &str) -> Result<(), ServerError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(ServerError::InvalidArgument(format!(
            "invalid {what} name `{name}`: use 1 to 63 lowercase letters, digits and `-`, not starting with `-`"
        )))
    }
}

/// The admin token in `data_dir`, created if missing. Returns the token and
/// whether it was created now.
///
/// # Errors
/// When the file cannot be read or written.
pub fn admin_token(data_dir: &Path) -> Result<(String, bool), ServerError> {
    let file = data_dir.join("admin.token");
    if let Ok(text) = std::fs::read_to_string(&file) {
        let token = text.trim().to_string();
        if !token.is_empty() {
            return Ok((token, false));
        }
    }
    let token = new_token()?;
    write_private(&file, format!("{token}\n").as_bytes())
        .map_err(|e| ServerError::Internal(format!("cannot write `{}`: {e}", file.display())))?;
    Ok((token, true))
}

#[cfg(unix)]
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// Tenants in the metadata store.
pub struct Tenants<'a> {
    /// The store.
    pub meta: &'a MetaStore,
}

impl Tenants<'_> {
    /// Creates a tenant; returns it and its token.
    ///
    /// # Errors
    /// An invalid or taken name.
    pub fn create(
        &self,
        name: &str,
        quotas: Quotas,
        grants: Grants,
        now_ms: i64,
    ) -> Result<(TenantRecord, String), ServerError> {
        check_name("tenant", name)?;
        let k = key(&["tenant", name]);
        if self.meta.get::<TenantRecord>(&k)?.is_some() {
            return Err(ServerError::AlreadyExists(format!(
                "tenant `{name}` exists already"
            )));
        }
        let token = new_token()?;
        let record = TenantRecord {
            name: name.to_string(),
            token_sha256: hash_token(&token),
            quotas,
            created_ms: now_ms,
            grants,
        };
        self.meta
            .put(&key(&["token", &record.token_sha256]), &record.name)?;
        self.meta.put(&k, &record)?;
        Ok((record, token))
    }

    /// Replaces a tenant's grants; returns the tenant as it is now.
    ///
    /// # Errors
    /// [`ServerError::NotFound`], or a store error.
    pub fn set_grants(&self, name: &str, grants: Grants) -> Result<TenantRecord, ServerError> {
        let mut record = self.get(name)?;
        record.grants = grants;
        self.meta.put(&key(&["tenant", name]), &record)?;
        Ok(record)
    }

    /// A tenant by name.
    ///
    /// # Errors
    /// [`ServerError::NotFound`].
    pub fn get(&self, name: &str) -> Result<TenantRecord, ServerError> {
        self.meta
            .get(&key(&["tenant", name]))?
            .ok_or_else(|| ServerError::NotFound(format!("tenant `{name}` does not exist")))
    }

    /// Every tenant, by name.
    ///
    /// # Errors
    /// A store error.
    pub fn list(&self) -> Result<Vec<TenantRecord>, ServerError> {
        self.meta.scan(&key(&["tenant", ""]))
    }

    /// The tenant a token belongs to.
    ///
    /// # Errors
    /// A store error.
    pub fn by_token(&self, token: &str) -> Result<Option<String>, ServerError> {
        self.meta.get(&key(&["token", &hash_token(token)]))
    }
}
