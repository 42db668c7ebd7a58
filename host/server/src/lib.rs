//! The weir control plane: `weir serve`.
//!
//! One server process hosts many tenants. Each has an API token, a module
//! registry and jobs, and sees nothing of the others.
//!
//! * [`tenants`] — tenants, quotas, tokens (kept hashed), the admin token;
//! * [`registry`] — uploaded components: validated, compiled once,
//!   content-addressed, named `name@version`;
//! * [`jobs`] — submitted jobs run under supervision in this process, with
//!   checkpoints and savepoints in the tenant's area, resumed when the
//!   server restarts;
//! * [`meta`] — the durable metadata (an embedded RocksDB);
//! * [`api`] — the gRPC services (`proto/weir/v1/control.proto`, with
//!   server reflection); [`metrics`] — the Prometheus endpoint.
//!
//! The data directory:
//! ```text
//! DATA/admin.token            the admin token (0600)
//! DATA/meta/                  metadata store
//! DATA/cache/                 compiled modules
//! DATA/tenants/T/modules/     T's components, by sha256
//! DATA/tenants/T/files/       T's job input and output files
//! DATA/tenants/T/jobs/ID/     checkpoints/, savepoints/, rocksdb/
//! ```

pub mod api;
pub mod error;
pub mod jobs;
pub mod meta;
pub mod metrics;
pub mod registry;
pub mod tenants;

/// The generated gRPC code (server and client).
pub mod proto {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("weir.v1");

    /// For server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("weir_v1_descriptor");
}

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use weir_sandbox::{Sandbox, SandboxConfig};

pub use error::ServerError;
pub use jobs::{JobRecord, JobState, LiveJob, Probation, Upgrade};
pub use registry::ModuleRecord;
pub use tenants::{Principal, Quotas, TenantRecord};

use crate::meta::MetaStore;
use crate::registry::Registry;
use crate::tenants::Tenants;

/// How a server runs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where everything is kept.
    pub data_dir: PathBuf,
    /// Quotas of tenants created without their own.
    pub default_quotas: Quotas,
    /// The largest module upload, in bytes.
    pub max_upload_bytes: u64,
    /// Time between a job's checkpoints.
    pub checkpoint_interval: Duration,
    /// Restarts of a failing job before it is failed.
    pub max_restarts: u32,
    /// Guest instances that may exist at once, over all tenants.
    pub max_instances: u32,
}

impl ServerConfig {
    /// Defaults for `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            default_quotas: Quotas::default(),
            max_upload_bytes: 64 << 20,
            checkpoint_interval: Duration::from_secs(10),
            max_restarts: 3,
            max_instances: 1024,
        }
    }
}

/// The server: cheap to clone, shared by the gRPC services, the job
/// threads and the metrics endpoint.
#[derive(Clone)]
pub struct Server {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: ServerConfig,
    pub(crate) meta: MetaStore,
    pub(crate) sandbox: Sandbox,
    tenants_dir: PathBuf,
    admin_hash: String,
    pub(crate) jobs: Mutex<HashMap<(String, String), Arc<LiveJob>>>,
    /// Serializes registry changes, so two uploads cannot both fit a quota.
    registry_lock: Mutex<()>,
    /// Serializes submissions, for the same reason.
    pub(crate) submit_lock: Mutex<()>,
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Server {
    /// Opens the data directory (creating it and the admin token on the
    /// first start) and resumes the jobs that were running. Returns the
    /// admin token when it was created now, to be shown once.
    ///
    /// # Errors
    /// An unusable data directory, a metadata store held by another server,
    /// a sandbox that cannot start.
    pub fn open(config: ServerConfig) -> Result<(Self, Option<String>), ServerError> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir.join("tenants")).map_err(|e| {
            ServerError::Internal(format!(
                "cannot create data directory `{}`: {e}",
                dir.display()
            ))
        })?;
        let meta = MetaStore::open(&dir.join("meta"))?;
        let (admin, created) = tenants::admin_token(dir)?;
        let tenants_dir = dir.join("tenants");
        let sandbox = Sandbox::new(SandboxConfig {
            cache_dir: Some(dir.join("cache")),
            max_instances: config.max_instances,
            ..SandboxConfig::default()
        })
        .map_err(|e| ServerError::Internal(format!("cannot start the Wasm sandbox: {e}")))?;
        let server = Self {
            inner: Arc::new(Inner {
                config,
                meta,
                sandbox,
                tenants_dir,
                admin_hash: tenants::hash_token(&admin),
                jobs: Mutex::new(HashMap::new()),
                registry_lock: Mutex::new(()),
                submit_lock: Mutex::new(()),
            }),
        };
        server.resume_jobs()?;
        Ok((server, created.then_some(admin)))
    }

    /// The server's configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// Who holds `token` (the value of `authorization: Bearer …`).
    ///
    /// # Errors
    /// [`ServerError::Unauthenticated`] for a missing or unknown token.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Principal, ServerError> {
        let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
            return Err(ServerError::Unauthenticated(
                "no API token: send `authorization: Bearer <token>` (weir: --token or WEIR_TOKEN)"
                    .into(),
            ));
        };
        if tenants::hash_token(token) == self.inner.admin_hash {
            return Ok(Principal::Admin);
        }
        match self.tenants().by_token(token)? {
            Some(tenant) => Ok(Principal::Tenant(tenant)),
            None => Err(ServerError::Unauthenticated(
                "unknown API token (it may belong to a deleted tenant, or to another server)"
                    .into(),
            )),
        }
    }

    fn tenants(&self) -> Tenants<'_> {
        Tenants {
            meta: &self.inner.meta,
        }
    }

    pub(crate) fn registry<'a>(&'a self, tenant: &'a str) -> Registry<'a> {
        Registry {
            meta: &self.inner.meta,
            tenants_dir: &self.inner.tenants_dir,
            tenant,
        }
    }

    /// A tenant's quotas.
    ///
    /// # Errors
    /// An unknown tenant.
    pub fn quotas(&self, tenant: &str) -> Result<Quotas, ServerError> {
        Ok(self.tenants().get(tenant)?.quotas)
    }

    /// Creates a tenant (admin); returns it and its token.
    ///
    /// # Errors
    /// An invalid or taken name.
    pub fn create_tenant(
        &self,
        name: &str,
        quotas: Quotas,
    ) -> Result<(TenantRecord, String), ServerError> {
        let quotas = quotas.or(self.inner.config.default_quotas);
        let created = self.tenants().create(name, quotas, now_ms())?;
        tracing::info!(tenant = name, "tenant created");
        Ok(created)
    }

    /// Every tenant (admin).
    ///
    /// # Errors
    /// A store error.
    pub fn list_tenants(&self) -> Result<Vec<TenantRecord>, ServerError> {
        self.tenants().list()
    }

    /// What a tenant uses now: modules, module bytes, active jobs, their
    /// subtasks.
    ///
    /// # Errors
    /// A store error.
    pub fn usage(&self, tenant: &str) -> Result<(u32, u64, u32, u32), ServerError> {
        let modules = self.registry(tenant).list()?;
        let active = self.inner.active(tenant);
        Ok((
            modules.len() as u32,
            modules.iter().map(|m| m.size).sum(),
            active.len() as u32,
            active.iter().map(|r| r.parallelism).sum(),
        ))
    }

    /// Stores an uploaded module for `tenant`.
    ///
    /// # Errors
    /// See [`Registry::add`].
    pub fn upload_module(
        &self,
        tenant: &str,
        name: &str,
        version: &str,
        bytes: &[u8],
    ) -> Result<ModuleRecord, ServerError> {
        let quotas = self.quotas(tenant)?;
        let _guard = self
            .inner
            .registry_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let m = self.registry(tenant).add(
            &self.inner.sandbox,
            &quotas,
            name,
            version,
            bytes,
            now_ms(),
        )?;
        tracing::info!(tenant, module = %m.id(), digest = %m.digest, "module uploaded");
        Ok(m)
    }

    /// The tenant's modules.
    ///
    /// # Errors
    /// A store error.
    pub fn list_modules(&self, tenant: &str) -> Result<Vec<ModuleRecord>, ServerError> {
        self.registry(tenant).list()
    }

    /// One module version (the newest when `version` is empty).
    ///
    /// # Errors
    /// [`ServerError::NotFound`].
    pub fn inspect_module(
        &self,
        tenant: &str,
        name: &str,
        version: &str,
    ) -> Result<ModuleRecord, ServerError> {
        self.registry(tenant).get(name, version)
    }

    /// Ids of the tenant's active jobs that use `module` (`name@version`).
    pub fn jobs_using(&self, tenant: &str, module: &str) -> Vec<String> {
        // The modules in force per operator (after upgrades), not every
        // version the job ever pinned.
        let mut ids: Vec<String> = self
            .inner
            .active(tenant)
            .into_iter()
            .filter(|r| r.operators.values().any(|m| m == module))
            .map(|r| r.id)
            .collect();
        ids.sort();
        ids
    }

    /// Deletes a module version unless an active job uses it.
    ///
    /// # Errors
    /// [`ServerError::NotFound`], or [`ServerError::FailedPrecondition`]
    /// naming the jobs that use it.
    pub fn delete_module(
        &self,
        tenant: &str,
        name: &str,
        version: &str,
    ) -> Result<ModuleRecord, ServerError> {
        let _guard = self
            .inner
            .registry_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let registry = self.registry(tenant);
        let m = registry.get(name, version)?;
        let users = self.jobs_using(tenant, &m.id());
        if !users.is_empty() {
            return Err(ServerError::FailedPrecondition(format!(
                "module `{}` is used by running job(s) {}; cancel them first",
                m.id(),
                users
                    .iter()
                    .map(|j| format!("`{j}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        registry.remove(&m)?;
        tracing::info!(tenant, module = %m.id(), "module deleted");
        Ok(m)
    }
}
