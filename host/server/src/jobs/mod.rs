//! Hosting tenants' jobs in the server process.
//!
//! A submitted job file is checked as for `weir run`, then against the
//! server's rules: modules come from the tenant's registry (never a path),
//! files stay inside the tenant's area (`DATA/tenants/T/files`), no `stdout`
//! sink, and the tenant's quotas (jobs, parallelism, memory and CPU per
//! guest call). Module versions are pinned at submission, so a restart runs
//! what was submitted even after newer uploads.
//!
//! Each job runs under [`weir_job::supervise`] on its own thread, with
//! checkpoints in `DATA/tenants/T/jobs/ID/checkpoints`; its record in the
//! metadata store follows its state, and a server that restarts resumes the
//! jobs that were running from their latest checkpoints.
//!
//! `policy` checks a job file against the tenant's rules; `upgrade`
//! swaps an operator's module in a running job, with probation and
//! rollback.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_engine::checkpoint::{self, CheckpointStats};
use weir_engine::swap::ModuleSwaps;
use weir_engine::{Dataflow, JobMetrics, NodeSnapshot};
use weir_job::spec::SinkKind;
use weir_job::{Ended, Event, JobSpec, ModuleLookupError, ModuleSource, Supervision};
use weir_sandbox::{InstanceLimits, OperatorKind};

use crate::credentials::Credentials;
use crate::egress::Egress;
use crate::error::ServerError;
use crate::meta::key;
use crate::registry::Registry;
use crate::tenants::{Grants, Quotas, new_token};
use crate::{Inner, Server, now_ms};

mod policy;
mod upgrade;

use policy::parse;

/// A job's lifecycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Running.
    Running,
    /// Failed and waiting to restart from its latest checkpoint.
    Restarting,
    /// Its sources ended and its sinks finished.
    Finished,
    /// Failed more often than allowed, or broke a quota.
    Failed,
    /// Cancelled by its tenant.
    Cancelled,
}

impl JobState {
    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Restarting => "restarting",
            Self::Finished => "finished",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Running or about to run again.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Running | Self::Restarting)
    }
}

/// A stored job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobRecord {
    /// Id, unique within the tenant.
    pub id: String,
    /// Owner.
    pub tenant: String,
    /// The job's name (`[job] name`).
    pub name: String,
    /// The job file as submitted.
    pub job_file: String,
    /// State.
    pub state: JobState,
    /// Why it failed, or the last failure it restarted from.
    pub error: String,
    /// Submission time, ms since the epoch.
    pub submitted_ms: i64,
    /// The savepoint it started from (a location).
    pub from_savepoint: Option<String>,
    /// The savepoint taken when it was cancelled with one (an id).
    pub savepoint: String,
    /// Module reference as written → `name@version` it was pinned to.
    pub modules: BTreeMap<String, String>,
    /// Operator name → `name@version`.
    pub operators: BTreeMap<String, String>,
    /// Subtasks of all its nodes.
    pub parallelism: u32,
    /// Restarts after failures.
    pub restarts: u32,
    /// Operator → module (`name@version`) replacing what the job file
    /// names: the upgrades in force.
    #[serde(default)]
    pub overrides: BTreeMap<String, String>,
    /// Every upgrade, oldest first.
    #[serde(default)]
    pub history: Vec<Upgrade>,
}

/// One module swap of a running job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Upgrade {
    /// When it was asked for, ms since the epoch.
    pub at_ms: i64,
    /// The operator.
    pub operator: String,
    /// Module before (`name@version`).
    pub from: String,
    /// Module after.
    pub to: String,
    /// The savepoint the new version started from (`JOB/sp-N`).
    pub savepoint: String,
    /// From the savepoint request to the new version running, ms.
    pub pause_ms: u64,
    /// Who asked for it (the name the client gave, and the tenant).
    #[serde(default)]
    pub by: String,
    /// `kept`: the new version passed its probation; `rolled back`: it
    /// failed during it and the job went back to the savepoint with the
    /// previous module (`reason` says why).
    #[serde(default)]
    pub outcome: String,
    /// Why it was rolled back.
    #[serde(default)]
    pub reason: String,
    /// Whether `to` is a version this operator ran before (going back).
    #[serde(default)]
    pub rollback: bool,
}

/// How long a new module version is watched after an upgrade: until the
/// operator has taken `records` records or `time` has passed, whichever
/// comes first. No checkpoint completes meanwhile, so a failure sends the
/// job back to the upgrade's savepoint with nothing committed twice.
#[derive(Clone, Copy, Debug)]
pub struct Probation {
    /// Records into the upgraded operator (all subtasks).
    pub records: u64,
    /// Longest watch.
    pub time: Duration,
}

impl Default for Probation {
    fn default() -> Self {
        Self {
            records: 10_000,
            time: Duration::from_secs(10),
        }
    }
}

/// A job's record, with its live state when it runs (or ran) in this
/// process.
pub type JobView = (JobRecord, Option<Arc<LiveJob>>);

/// A job this server process runs (or ran).
pub struct LiveJob {
    pub(crate) record: Mutex<JobRecord>,
    stop: Arc<AtomicBool>,
    /// Set when the server stops: the job ends but stays `running` in the
    /// store, to resume at the next start.
    detach: AtomicBool,
    quota_error: Mutex<Option<String>>,
    pub(crate) metrics: Mutex<Option<(Arc<JobMetrics>, Arc<CheckpointStats>)>>,
    /// Failures of the job's runs by kind (`trap`, `deadline`, `memory`,
    /// `other`): each stopped a run.
    pub(crate) failures: Mutex<BTreeMap<&'static str, u64>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Set while the run is on probation after an upgrade: periodic
    /// checkpoints are held back, and a failure stops the run for the
    /// upgrade to roll back instead of restarting it.
    on_probation: Arc<AtomicBool>,
    /// Why the run failed on probation.
    probation_failed: Mutex<Option<String>>,
    /// Module swaps posted to the running job (hot swap).
    swaps: Arc<ModuleSwaps>,
}

/// What kind of failure ended a run: a guest trap, a CPU deadline
/// interrupt, the memory cap, or anything else (read off the sandbox's
/// messages, which every guest failure carries).
pub fn failure_kind(error: &str) -> &'static str {
    if error.contains("exceeded its CPU deadline") {
        "deadline"
    } else if error.contains("over its cap of") {
        "memory"
    } else if error.contains("guest trapped") {
        "trap"
    } else {
        "other"
    }
}

impl LiveJob {
    /// Puts the running job on probation (an upgrade begins): periodic
    /// checkpoints are held back, a failure is kept for the upgrade.
    fn begin_probation(&self) {
        let mut failed = self
            .probation_failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *failed = None;
        self.on_probation.store(true, Ordering::SeqCst);
    }

    /// The job's record as it is now.
    pub fn record(&self) -> JobRecord {
        self.record
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records the first failure of a run on probation; false if it is not
    /// on probation (any more). Under the same lock as
    /// [`LiveJob::pass_probation`], so a run either passes or fails.
    fn fail_probation(&self, error: &str) -> bool {
        let mut failed = self
            .probation_failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !self.on_probation.load(Ordering::SeqCst) {
            return false;
        }
        failed.get_or_insert_with(|| error.to_string());
        true
    }

    /// Ends the probation of a run that has not failed: checkpoints resume.
    fn pass_probation(&self) -> bool {
        let failed = self
            .probation_failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if failed.is_some() {
            return false;
        }
        self.on_probation.store(false, Ordering::SeqCst);
        true
    }

    fn probation_failure(&self) -> Option<String> {
        self.probation_failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn finished(&self) -> bool {
        self.thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_none_or(JoinHandle::is_finished)
    }

    /// The live counters, if the job ran in this process.
    pub fn snapshot(&self) -> Option<(Vec<NodeSnapshot>, u64, u64)> {
        let m = self.metrics.lock().unwrap_or_else(PoisonError::into_inner);
        m.as_ref().map(|(metrics, stats)| {
            (
                metrics.snapshot(),
                stats.last_completed.load(Ordering::Relaxed),
                stats.last_size.load(Ordering::Relaxed),
            )
        })
    }
}

/// Resolves a job's `module` references in one tenant's registry, pinning
/// each to the version it resolved to.
struct TenantModules<'a> {
    registry: Registry<'a>,
    pinned: RefCell<BTreeMap<String, String>>,
}

impl ModuleSource for TenantModules<'_> {
    fn version(&self, module: &str) -> Option<String> {
        let pinned = self.pinned.borrow().get(module).cloned()?;
        pinned.split_once('@').map(|(_, v)| v.to_string())
    }

    fn resolve(&self, _job_file: &Path, module: &str) -> Result<PathBuf, ModuleLookupError> {
        if module.contains('/') || module.ends_with(".wasm") {
            return Err(ModuleLookupError::Refused(format!(
                "`{module}` is a path; on a server, upload the component (`weir udf upload`) and name it `name` or `name@version`"
            )));
        }
        let pinned = self.pinned.borrow().get(module).cloned();
        let wanted = pinned.as_deref().unwrap_or(module);
        let (name, version) = wanted.split_once('@').unwrap_or((wanted, ""));
        let m = self.registry.get(name, version).map_err(|e| {
            ModuleLookupError::Refused(format!(
                "{e} in tenant `{}`'s registry",
                self.registry.tenant
            ))
        })?;
        self.pinned.borrow_mut().insert(module.to_string(), m.id());
        Ok(self.registry.blob(&m.digest))
    }
}

/// A path-safe job id from the job's name.
fn job_id(name: &str) -> Result<String, ServerError> {
    let mut base: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    if base.is_empty() {
        base = "job".into();
    }
    // The random part of a token is hex after `weir_`.
    let token = new_token()?;
    Ok(format!("{base}-{}", &token[5..13]))
}

impl Server {
    fn tenant_dir(&self, tenant: &str) -> PathBuf {
        self.inner.config.data_dir.join("tenants").join(tenant)
    }

    fn job_dir(&self, tenant: &str, id: &str) -> PathBuf {
        self.tenant_dir(tenant).join("jobs").join(id)
    }

    /// The tenant's job `id`, live or stored.
    fn job(&self, tenant: &str, id: &str) -> Result<JobView, ServerError> {
        let live = self.inner.live(tenant, id);
        if let Some(l) = &live {
            return Ok((l.record(), live.clone()));
        }
        let record: JobRecord = self
            .inner
            .meta
            .get(&key(&["job", tenant, id]))?
            .ok_or_else(|| ServerError::NotFound(format!("job `{id}` does not exist")))?;
        Ok((record, None))
    }

    /// Submits a job file for `tenant`, optionally from one of its
    /// savepoints (`JOB/sp-N`).
    ///
    /// # Errors
    /// An invalid job file (with its line and node), a module the registry
    /// lacks, a quota, an unknown savepoint.
    pub fn submit_job(
        &self,
        tenant: &str,
        job_file: &str,
        from_savepoint: &str,
    ) -> Result<JobView, ServerError> {
        let rules = self.rules(tenant)?;
        let quotas = rules.quotas;
        let files = self.tenant_dir(tenant).join("files");
        let spec = parse(job_file, &files, tenant, &rules, &BTreeMap::new())?;
        let start = if from_savepoint.is_empty() {
            None
        } else {
            Some(self.savepoint_location(tenant, from_savepoint)?)
        };
        let name = spec.name.clone();
        let operators: Vec<(String, String)> = spec
            .operators
            .iter()
            .map(|n| (n.name.clone(), n.spec.module.clone()))
            .collect();
        let resolver = TenantModules {
            registry: self.registry(tenant),
            pinned: RefCell::new(BTreeMap::new()),
        };
        let prepared = weir_job::prepare(spec, &self.inner.sandbox, &resolver)
            .map_err(|e| ServerError::InvalidArgument(e.to_string()))?;
        let parallelism: u32 = prepared
            .dataflow
            .nodes
            .iter()
            .map(|n| n.parallelism as u32)
            .sum();
        let modules = resolver.pinned.into_inner();
        // One submission at a time, so two cannot both fit the quota.
        let _guard = self
            .inner
            .submit_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let active = self.inner.active(tenant);
        if active.len() as u32 >= quotas.max_jobs {
            return Err(ServerError::ResourceExhausted(format!(
                "tenant `{tenant}` runs {} jobs, its quota (max_jobs); cancel one first",
                active.len()
            )));
        }
        let used: u32 = active.iter().map(|r| r.parallelism).sum();
        if used + parallelism > quotas.max_parallelism {
            return Err(ServerError::ResourceExhausted(format!(
                "job `{name}` needs {parallelism} subtasks; tenant `{tenant}` runs {used} of its quota of {} (max_parallelism)",
                quotas.max_parallelism
            )));
        }
        let record = JobRecord {
            id: job_id(&name)?,
            tenant: tenant.to_string(),
            name,
            job_file: job_file.to_string(),
            state: JobState::Running,
            error: String::new(),
            submitted_ms: now_ms(),
            from_savepoint: start,
            savepoint: String::new(),
            operators: operators
                .into_iter()
                .map(|(op, m)| {
                    let pinned = modules.get(&m).cloned().unwrap_or(m);
                    (op, pinned)
                })
                .collect(),
            modules,
            parallelism,
            restarts: 0,
            overrides: BTreeMap::new(),
            history: Vec::new(),
        };
        self.inner
            .meta
            .put(&key(&["job", tenant, &record.id]), &record)?;
        tracing::info!(tenant, job = %record.id, "job submitted");
        let live = self.start(record.clone(), record.from_savepoint.clone(), false)?;
        Ok((record, Some(live)))
    }

    /// Starts (or resumes) a job's supervisor thread; `on_probation` holds
    /// its checkpoints back and sends a failure to the upgrade waiting on
    /// it instead of restarting.
    pub(crate) fn start(
        &self,
        record: JobRecord,
        start_from: Option<String>,
        on_probation: bool,
    ) -> Result<Arc<LiveJob>, ServerError> {
        let tenant = record.tenant.clone();
        let id = record.id.clone();
        let dir = self.job_dir(&tenant, &id);
        let state =
            weir_job::StateDir::create(&dir).map_err(|e| ServerError::Internal(e.to_string()))?;
        let mut checkpoints = state
            .checkpoints(self.inner.config.checkpoint_interval, None, None)
            .map_err(|e| ServerError::Internal(e.to_string()))?;
        let on_probation = Arc::new(AtomicBool::new(on_probation));
        checkpoints.hold = Some(on_probation.clone());
        let swaps = Arc::new(ModuleSwaps::default());
        checkpoints.swaps = Some(swaps.clone());
        let start_from = checkpoint::latest(&checkpoints.storage).or(start_from);
        let sup = Supervision {
            // Stopped jobs resume from a savepoint or checkpoint: nothing
            // fires on the way out.
            drain_on_stop: false,
            checkpoints: Some(checkpoints),
            start_from,
            max_restarts: self.inner.config.max_restarts,
            restart_delay: Duration::from_secs(1),
            exponential: true,
        };
        let live = Arc::new(LiveJob {
            record: Mutex::new(record),
            stop: Arc::new(AtomicBool::new(false)),
            detach: AtomicBool::new(false),
            quota_error: Mutex::new(None),
            metrics: Mutex::new(None),
            failures: Mutex::new(BTreeMap::new()),
            thread: Mutex::new(None),
            on_probation,
            probation_failed: Mutex::new(None),
            swaps,
        });
        self.inner
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((tenant.clone(), id.clone()), live.clone());
        let server = self.clone();
        let job = live.clone();
        let span = tracing::info_span!("job", tenant = %tenant, job = %id);
        let thread = std::thread::Builder::new()
            .name(format!("job {tenant}/{id}"))
            .spawn(move || {
                // Every log line of the job, from any of its threads, carries
                // the tenant and the job id.
                span.in_scope(|| server.supervise(&job, &sup, &state));
            })
            .map_err(|e| ServerError::Internal(format!("cannot start job `{id}`: {e}")))?;
        *live.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread);
        Ok(live)
    }

    /// The supervisor thread of one job.
    fn supervise(&self, job: &Arc<LiveJob>, sup: &Supervision, state: &weir_job::StateDir) {
        let record = job.record();
        let (tenant, id) = (record.tenant.clone(), record.id.clone());
        let files = self.tenant_dir(&tenant).join("files");
        let build = |_attempt: u32| -> Result<Dataflow, weir_engine::BoxError> {
            // The tenant's rules as they are now: a grant revoked since the
            // job started stops it at its next restart.
            let rules = self.rules(&tenant)?;
            // The record as it is now: a restart after a hot swap runs
            // the swapped module.
            let record = job.record();
            let spec = parse(&record.job_file, &files, &tenant, &rules, &record.overrides)?;
            let resolver = TenantModules {
                registry: self.registry(&tenant),
                pinned: RefCell::new(record.modules.clone()),
            };
            let launcher = weir_job::Launcher {
                sandbox: &self.inner.sandbox,
                modules: &resolver,
                state: Some(state),
                backend: None,
            };
            let mut flow = launcher.prepare(spec)?.dataflow;
            flow.cpu_share = self.cpu_share(&tenant);
            Ok(flow)
        };
        let update = |f: &dyn Fn(&mut JobRecord)| {
            let mut r = job.record.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut r);
            if let Err(e) = self.inner.meta.put(&key(&["job", &r.tenant, &r.id]), &*r) {
                tracing::error!(tenant = %r.tenant, job = %r.id, "cannot save the job's state: {e}");
            }
        };
        let ended = weir_job::supervise(sup, build, &job.stop, |event| match event {
            Event::Started { handle, .. } => {
                *job.metrics.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some((handle.metrics().clone(), handle.checkpoints().clone()));
                update(&|r| r.state = JobState::Running);
                tracing::info!(tenant = %tenant, job = %id, "job running");
            }
            Event::Ended { .. } => {}
            Event::Restarting { error, attempt, .. } => {
                *job.failures
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(failure_kind(error))
                    .or_default() += 1;
                if job.fail_probation(error) {
                    // The new module failed on probation: no restart; the
                    // upgrade rolls back.
                    job.stop.store(true, Ordering::SeqCst);
                    return;
                }
                tracing::warn!(tenant = %tenant, job = %id, attempt, "job failed, restarting: {error}");
                update(&|r| {
                    r.state = JobState::Restarting;
                    r.error = error.to_string();
                    r.restarts += 1;
                });
            }
        })
        .map_err(|e| e.to_string());
        if job.detach.load(Ordering::SeqCst) {
            return;
        }
        if let Ok(Ended::Failed(e)) | Err(e) = &ended {
            job.fail_probation(e);
        }
        if job.probation_failure().is_some() {
            // The upgrade waiting on it rolls the job back.
            return;
        }
        let quota = job
            .quota_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let (state, error) = match (ended, quota) {
            (_, Some(q)) => (JobState::Failed, q),
            (Ok(Ended::Finished), None) => (JobState::Finished, String::new()),
            (Ok(Ended::Stopped), None) => (JobState::Cancelled, String::new()),
            (Ok(Ended::Failed(e)) | Err(e), None) => (JobState::Failed, e),
        };
        if state == JobState::Failed {
            *job.failures
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(failure_kind(&error))
                .or_default() += 1;
        }
        tracing::info!(tenant = %tenant, job = %id, state = state.name(), "job ended");
        update(&|r| {
            r.state = state;
            if !error.is_empty() {
                r.error.clone_from(&error);
            }
        });
    }

    /// The tenant's jobs, newest first.
    ///
    /// # Errors
    /// A store error.
    pub fn list_jobs(&self, tenant: &str) -> Result<Vec<JobView>, ServerError> {
        let mut stored: Vec<JobRecord> = self.inner.meta.scan(&key(&["job", tenant, ""]))?;
        stored.sort_by(|a, b| b.submitted_ms.cmp(&a.submitted_ms).then(a.id.cmp(&b.id)));
        Ok(stored
            .into_iter()
            .map(|r| match self.inner.live(tenant, &r.id) {
                Some(l) => (l.record(), Some(l)),
                None => (r, None),
            })
            .collect())
    }

    /// One of the tenant's jobs.
    ///
    /// # Errors
    /// [`ServerError::NotFound`] for an id this tenant has no job with.
    pub fn get_job(&self, tenant: &str, id: &str) -> Result<JobView, ServerError> {
        self.job(tenant, id)
    }

    /// Cancels a job, after a savepoint if asked; waits for it to stop.
    ///
    /// # Errors
    /// An unknown job, a job not running, a failed savepoint (the job then
    /// keeps running).
    pub fn cancel_job(
        &self,
        tenant: &str,
        id: &str,
        savepoint: bool,
    ) -> Result<JobView, ServerError> {
        let (record, live) = self.job(tenant, id)?;
        let Some(live) = live.filter(|l| !l.finished() && record.state.is_active()) else {
            return Err(ServerError::FailedPrecondition(format!(
                "job `{id}` is {}, not running",
                record.state.name()
            )));
        };
        if savepoint {
            let sp = self.savepoint(tenant, id, true)?;
            live.record
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .savepoint = sp;
        }
        live.stop.store(true, Ordering::SeqCst);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !live.finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok((live.record(), Some(live)))
    }

    /// Takes a savepoint of a running job; returns its id (`JOB/sp-N`).
    ///
    /// # Errors
    /// An unknown or stopped job, a savepoint that failed.
    pub fn trigger_savepoint(&self, tenant: &str, id: &str) -> Result<String, ServerError> {
        self.savepoint(tenant, id, false)
    }

    /// A savepoint; with `stop`, the last thing the job does before it is
    /// stopped (no checkpoint follows it).
    fn savepoint(&self, tenant: &str, id: &str, stop: bool) -> Result<String, ServerError> {
        let (record, live) = self.job(tenant, id)?;
        if live.is_none_or(|l| l.finished()) || record.state != JobState::Running {
            return Err(ServerError::FailedPrecondition(format!(
                "job `{id}` is {}, not running: no savepoint",
                record.state.name()
            )));
        }
        let request = checkpoint::savepoint_request_file(&self.job_dir(tenant, id));
        let location = checkpoint::request_savepoint(&request, Duration::from_secs(120), stop)
            .map_err(|e| ServerError::FailedPrecondition(format!("job `{id}`: {e}")))?;
        let name = Path::new(&location)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        tracing::info!(tenant, job = id, savepoint = %name, "savepoint taken");
        Ok(format!("{id}/{name}"))
    }

    /// The savepoints of one of the tenant's jobs: (id, creation time).
    ///
    /// # Errors
    /// An unknown job.
    pub fn list_savepoints(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Vec<(String, i64)>, ServerError> {
        self.job(tenant, id)?;
        let dir = self.job_dir(tenant, id).join("savepoints");
        let mut out: Vec<(u64, String, i64)> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let n: u64 = name.strip_prefix("sp-")?.parse().ok()?;
                if !e.path().join("_metadata").is_file() {
                    return None;
                }
                let created = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_millis() as i64);
                Some((n, format!("{id}/{name}"), created))
            })
            .collect();
        out.sort();
        Ok(out.into_iter().map(|(_, id, t)| (id, t)).collect())
    }

    /// Where savepoint `JOB/sp-N` of the tenant is.
    fn savepoint_location(&self, tenant: &str, savepoint: &str) -> Result<String, ServerError> {
        let not_found = || ServerError::NotFound(format!("savepoint `{savepoint}` does not exist"));
        let (job, name) = savepoint.split_once('/').ok_or_else(|| {
            ServerError::InvalidArgument(format!(
                "savepoint `{savepoint}`: expected `JOB/sp-N` (see `weir job savepoints JOB`)"
            ))
        })?;
        let valid = name
            .strip_prefix("sp-")
            .is_some_and(|n| n.parse::<u64>().is_ok())
            && !job.is_empty()
            && job.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !valid {
            return Err(not_found());
        }
        self.job(tenant, job).map_err(|_| not_found())?;
        let dir = self.job_dir(tenant, job).join("savepoints").join(name);
        if !dir.join("_metadata").is_file() {
            return Err(not_found());
        }
        Ok(dir.display().to_string())
    }

    /// Resumes the jobs the store says were running (at server start).
    pub(crate) fn resume_jobs(&self) -> Result<(), ServerError> {
        let all: Vec<JobRecord> = self.inner.meta.scan(&key(&["job", ""]))?;
        for r in all.into_iter().filter(|r| r.state.is_active()) {
            tracing::info!(tenant = %r.tenant, job = %r.id, "resuming job from its latest checkpoint");
            let from = r.from_savepoint.clone();
            if let Err(e) = self.start(r.clone(), from, false) {
                tracing::error!(tenant = %r.tenant, job = %r.id, "cannot resume: {e}");
            }
        }
        Ok(())
    }

    /// Stops every job without changing its stored state (server shutdown):
    /// the next start resumes them.
    pub fn detach_jobs(&self) {
        let jobs = self.inner.all_live();
        for j in &jobs {
            j.detach.store(true, Ordering::SeqCst);
            j.stop.store(true, Ordering::SeqCst);
        }
        for j in &jobs {
            if let Some(t) = j
                .thread
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
            {
                let _ = t.join();
            }
        }
    }

    /// Fails jobs whose latest checkpoint is over their tenant's state
    /// quota (called periodically).
    pub(crate) fn enforce_state_quota(&self) {
        let jobs = self.inner.all_live();
        for j in jobs {
            if j.finished() {
                continue;
            }
            let r = j.record();
            let Ok(q) = self.quotas(&r.tenant) else {
                continue;
            };
            let size = j.snapshot().map_or(0, |(_, _, size)| size);
            if size > q.max_state_bytes && !j.stop.load(Ordering::SeqCst) {
                let message = format!(
                    "job `{}`: its state ({size} bytes in the latest checkpoint) is over tenant `{}`'s quota of {} bytes (max_state_bytes)",
                    r.id, r.tenant, q.max_state_bytes
                );
                tracing::warn!(tenant = %r.tenant, job = %r.id, "{message}");
                *j.quota_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(message);
                j.stop.store(true, Ordering::SeqCst);
            }
        }
    }
}

impl Inner {
    pub(crate) fn live(&self, tenant: &str, id: &str) -> Option<Arc<LiveJob>> {
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(tenant.to_string(), id.to_string()))
            .cloned()
    }

    /// Every job this process runs or ran, of all tenants.
    pub(crate) fn all_live(&self) -> Vec<Arc<LiveJob>> {
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// The records of the tenant's running (or restarting) jobs.
    pub(crate) fn active(&self, tenant: &str) -> Vec<JobRecord> {
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, j)| j.record())
            .filter(|r| r.state.is_active())
            .collect()
    }
}
