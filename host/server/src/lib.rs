//! The weir control plane: `weir serve`.
//!
//! One server process hosts many tenants. Each has an API token, a module
//! registry and jobs, and sees nothing of the others.
//!
//! * [`tenants`] — tenants, quotas, tokens (kept hashed), the admin token;
//! * [`egress`], [`credentials`] — what the admin grants a tenant beyond
//!   the sandbox: addresses its connectors may reach, and named secrets;
//! * [`registry`] — uploaded components: validated, compiled once,
//!   content-addressed, named `name@version`;
//! * [`jobs`] — submitted jobs run under supervision in this process, with
//!   checkpoints and savepoints in the tenant's area, resumed when the
//!   server restarts;
//! * [`tls`] — TLS for the API and the HTTP endpoints, and the metrics
//!   token;
//! * [`meta`] — the durable metadata (an embedded RocksDB);
//! * [`api`] — the gRPC services (`proto/weir/v1/control.proto`, with
//!   server reflection); [`metrics`] — the Prometheus endpoint.
//!
//! The data directory:
//! ```text
//! DATA/admin.token            the admin token (0600)
//! DATA/metrics.token          the token for /metrics off loopback (0600)
//! DATA/tls/                   a self-signed certificate (--tls-self-signed)
//! DATA/meta/                  metadata store
//! DATA/cache/                 compiled modules
//! DATA/tenants/T/modules/     T's components, by sha256
//! DATA/tenants/T/files/       T's job input and output files
//! DATA/tenants/T/jobs/ID/     checkpoints/, savepoints/, rocksdb/
//! ```

pub mod api;
pub mod credentials;
pub mod egress;
pub mod error;
pub mod jobs;
pub mod meta;
pub mod metrics;
pub mod registry;
pub mod tenants;
pub mod tls;

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

pub use credentials::Credentials;
pub use error::ServerError;
pub use jobs::{JobRecord, JobState, LiveJob, Probation, Upgrade};
pub use registry::ModuleRecord;
pub use tenants::{Grants, Principal, Quotas, TenantRecord};

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
    /// Named connector credentials the admin may grant to tenants.
    pub credentials: Credentials,
    /// Module uploads one tenant may have compiling at once.
    pub max_compiles_per_tenant: usize,
    /// What one module may cost to compile (all tenants).
    pub compile_budget: weir_sandbox::CompileBudget,
    /// Where modules are compiled: `weir serve` uses a helper process whose
    /// memory the kernel caps ([`weir_sandbox::compiler`]).
    pub compiler: weir_sandbox::Compiler,
    /// Subtask threads of all tenants that run at once, shared among
    /// tenants by their `cpu_shares` (two per core by default: with one,
    /// pipelines stall at each hand-over and the machine does a third less
    /// work, docs/benchmarks.md); 0 leaves the division of the CPU to the
    /// operating system.
    pub cpu_slots: usize,
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
            credentials: Credentials::default(),
            max_compiles_per_tenant: 1,
            compile_budget: weir_sandbox::CompileBudget::default(),
            compiler: weir_sandbox::Compiler::Thread,
            cpu_slots: 2 * std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
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
    /// Module uploads compiling now, by tenant.
    compiling: Mutex<HashMap<String, usize>>,
    /// The CPU divided among tenants (None: `cpu_slots` is 0).
    pub(crate) cpu: Option<Arc<weir_engine::share::CpuScheduler>>,
}

/// A tenant's compile slot ([`Server::compile_slot`]).
struct CompileSlot {
    server: Server,
    tenant: String,
}

impl Drop for CompileSlot {
    fn drop(&mut self) {
        let mut compiling = self
            .server
            .inner
            .compiling
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = compiling.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
        }
    }
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
            budget: config.compile_budget.clone(),
            compiler: config.compiler.clone(),
            ..SandboxConfig::default()
        })
        .map_err(|e| ServerError::Internal(format!("cannot start the Wasm sandbox: {e}")))?;
        let cpu =
            (config.cpu_slots > 0).then(|| weir_engine::share::CpuScheduler::new(config.cpu_slots));
        let server = Self {
            inner: Arc::new(Inner {
                cpu,
                config,
                meta,
                sandbox,
                tenants_dir,
                admin_hash: tenants::hash_token(&admin),
                jobs: Mutex::new(HashMap::new()),
                registry_lock: Mutex::new(()),
                submit_lock: Mutex::new(()),
                compiling: Mutex::new(HashMap::new()),
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

    /// The CPU share a job of `tenant` runs under, weighted by the tenant's
    /// `cpu_shares` as it is now; `None` when the server does not divide
    /// the CPU.
    pub fn cpu_share(&self, tenant: &str) -> Option<weir_engine::share::Share> {
        let cpu = self.inner.cpu.as_ref()?;
        let weight = self
            .quotas(tenant)
            .map_or(weir_engine::share::DEFAULT_WEIGHT, |q| q.cpu_shares);
        cpu.set_weight(tenant, weight);
        Some(cpu.share(tenant))
    }

    /// CPU time each tenant's subtasks held a turn for, since the start.
    pub fn cpu_usage(&self) -> Vec<(String, Duration)> {
        self.inner
            .cpu
            .as_ref()
            .map(|c| c.usage())
            .unwrap_or_default()
    }

    /// Creates a tenant (admin); returns it and its token.
    ///
    /// # Errors
    /// An invalid or taken name.
    pub fn create_tenant(
        &self,
        name: &str,
        quotas: Quotas,
        grants: Grants,
    ) -> Result<(TenantRecord, String), ServerError> {
        let quotas = quotas.or(self.inner.config.default_quotas);
        self.check_grants(&grants)?;
        let created = self.tenants().create(name, quotas, grants, now_ms())?;
        tracing::info!(tenant = name, "tenant created");
        Ok(created)
    }

    /// Replaces a tenant's grants (admin).
    ///
    /// # Errors
    /// An unknown tenant, a pattern that does not parse, a credential the
    /// server's configuration does not define.
    pub fn set_tenant_grants(
        &self,
        name: &str,
        grants: Grants,
    ) -> Result<TenantRecord, ServerError> {
        self.check_grants(&grants)?;
        let record = self.tenants().set_grants(name, grants)?;
        tracing::info!(tenant = name, egress = ?record.grants.egress, credentials = ?record.grants.credentials, "grants set");
        Ok(record)
    }

    fn check_grants(&self, grants: &Grants) -> Result<(), ServerError> {
        egress::Egress::parse(&grants.egress)
            .map_err(|e| ServerError::InvalidArgument(e.to_string()))?;
        for c in &grants.credentials {
            if self.inner.config.credentials.get(c).is_none() {
                return Err(ServerError::InvalidArgument(format!(
                    "credential `{c}` is not defined in the server's configuration (weir serve --credentials FILE)"
                )));
            }
        }
        Ok(())
    }

    /// A tenant's grants.
    ///
    /// # Errors
    /// An unknown tenant.
    pub fn grants(&self, tenant: &str) -> Result<Grants, ServerError> {
        Ok(self.tenants().get(tenant)?.grants)
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
        // Cheap refusals first; then compile outside the registry lock (a
        // slow compilation must not hold up other tenants' uploads), in one
        // of the tenant's compile slots; then check again and store under
        // the lock (the compiled module comes from the sandbox's cache).
        self.registry(tenant)
            .precheck(&quotas, name, version, bytes.len() as u64)?;
        {
            let _slot = self.compile_slot(tenant)?;
            let id = format!("{name}@{version}");
            self.inner
                .sandbox
                .load_bytes(&id, bytes)
                .map_err(|e| ServerError::InvalidArgument(format!("module `{id}`: {e}")))?;
        }
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

    /// One of `tenant`'s compile slots, released when dropped.
    fn compile_slot(&self, tenant: &str) -> Result<CompileSlot, ServerError> {
        let max = self.inner.config.max_compiles_per_tenant;
        let mut compiling = self
            .inner
            .compiling
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = compiling.entry(tenant.to_string()).or_default();
        if *n >= max {
            return Err(ServerError::ResourceExhausted(format!(
                "tenant `{tenant}` already has {n} module upload(s) compiling, at most {max} at once; retry when it ends"
            )));
        }
        *n += 1;
        Ok(CompileSlot {
            server: self.clone(),
            tenant: tenant.to_string(),
        })
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
