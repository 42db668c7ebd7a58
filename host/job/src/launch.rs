//! What every launcher of a job shares — `weir run`, `weir bench` and
//! `weir serve` — so that a job is built and its state laid out one way:
//! the sandbox its modules compile in ([`sandbox`]), the [`Launcher`] that
//! turns a job file into a dataflow on every attempt (modules looked up and
//! compiled, the state backend applied, RocksDB working copies placed), the
//! state directory and its checkpoint storage, the savepoint request file,
//! and a state backend named on a command line, parsed once into a typed
//! value.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use weir_engine::Dataflow;
use weir_engine::checkpoint::{self, CheckpointConfig};
use weir_sandbox::{Compiler, Sandbox, SandboxConfig};

use crate::{JobError, JobSpec, ModuleSource, PreparedJob};

/// The default directory of compiled modules: `$WEIR_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/weir/modules`, else `~/.cache/weir/modules`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WEIR_CACHE_DIR") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("weir").join("modules")
}

/// The sandbox of a job launched from the command line: compiled modules
/// cached in `cache_dir` (default [`default_cache_dir`]), compiled by
/// `compiler`, the other limits at their defaults.
///
/// # Errors
/// [`JobError::Sandbox`] when the Wasm runtime cannot start.
pub fn sandbox(cache_dir: Option<PathBuf>, compiler: Compiler) -> Result<Sandbox, JobError> {
    Sandbox::new(SandboxConfig {
        cache_dir: Some(cache_dir.unwrap_or_else(default_cache_dir)),
        compiler,
        ..SandboxConfig::default()
    })
    .map_err(|e| JobError::Sandbox(e.to_string()))
}

/// Opens checkpoint or savepoint storage at `location` (a directory or an
/// `s3://` URL).
///
/// # Errors
/// [`JobError::Storage`] naming a location that cannot be opened.
pub fn open_storage(location: &str) -> Result<checkpoint::CheckpointStorage, JobError> {
    weir_storage::open(location).map_err(|source| JobError::Storage {
        location: location.to_string(),
        source,
    })
}

/// Reads the checkpoint or savepoint at `location` for job `job`.
///
/// # Errors
/// [`JobError::Restore`] naming the location and what is wrong.
pub fn read_checkpoint(job: &str, location: &str) -> Result<checkpoint::RestoredJob, JobError> {
    weir_storage::read_checkpoint(location).map_err(|source| JobError::Restore {
        job: job.to_string(),
        location: location.to_string(),
        source: Box::new(source),
    })
}

/// Builds a job's dataflow for each attempt of its supervision.
pub struct Launcher<'a> {
    /// Where its modules compile and run.
    pub sandbox: &'a Sandbox,
    /// Where the modules a job file names are found.
    pub modules: &'a dyn ModuleSource,
    /// The job's state directory, if it keeps state across runs.
    pub state: Option<&'a StateDir>,
    /// A state backend chosen on the command line (else the job file's).
    pub backend: Option<BackendChoice>,
}

impl Launcher<'_> {
    /// `spec` prepared to run: its modules compiled (or loaded from the
    /// cache), its graph built, the chosen state backend applied, and
    /// RocksDB's working copies under the state directory (else under the
    /// system's temporary directory).
    ///
    /// # Errors
    /// As [`crate::prepare`].
    pub fn prepare(&self, spec: JobSpec) -> Result<PreparedJob, JobError> {
        let mut prepared = crate::prepare(spec, self.sandbox, self.modules)?;
        let flow = &mut prepared.dataflow;
        if let Some(backend) = self.backend {
            let dir = self.state.map_or_else(
                || std::env::temp_dir().join("weir-rocksdb"),
                |s| s.path().to_path_buf(),
            );
            backend.apply(flow, &dir);
        }
        if let Some(state) = self.state {
            state.working_copy(flow);
        }
        Ok(prepared)
    }
}

/// The directory one job keeps what outlives a run in:
///
/// ```text
/// DIR/checkpoints/        chk-N/ (unless given another location)
/// DIR/savepoints/         sp-N/  (unless given another location)
/// DIR/savepoint-request   how `weir savepoint` asks the running job
/// DIR/rocksdb/            RocksDB working copies, emptied at each start
/// ```
#[derive(Clone, Debug)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// The state directory `dir`, created if missing.
    ///
    /// # Errors
    /// [`JobError::State`] if it cannot be created.
    pub fn create(dir: &Path) -> Result<Self, JobError> {
        std::fs::create_dir_all(dir).map_err(|e| JobError::State {
            path: dir.to_path_buf(),
            message: format!("cannot create the state directory: {e}"),
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Checkpoints every `interval` into `checkpoints` (a directory or URL;
    /// default `DIR/checkpoints`), savepoints into `savepoints` (default
    /// `DIR/savepoints`), savepoint requests through
    /// `DIR/savepoint-request`.
    ///
    /// # Errors
    /// [`JobError::Storage`] naming a location that cannot be opened.
    pub fn checkpoints(
        &self,
        interval: Duration,
        checkpoints: Option<&str>,
        savepoints: Option<&str>,
    ) -> Result<CheckpointConfig, JobError> {
        let open = |given: Option<&str>, default: &str| {
            let location = given.map_or_else(
                || self.dir.join(default).display().to_string(),
                str::to_string,
            );
            weir_storage::open(&location).map_err(|source| JobError::Storage { location, source })
        };
        let mut config = CheckpointConfig::new(open(checkpoints, "checkpoints")?, interval);
        config.savepoints = Some(open(savepoints, "savepoints")?);
        config.savepoint_request = Some(checkpoint::savepoint_request_file(&self.dir));
        Ok(config)
    }

    /// Points a RocksDB state backend of `flow` at `DIR/rocksdb`, emptied:
    /// working copies only (a killed run leaves its databases behind, and
    /// state comes back from the checkpoint). A heap backend is left as is.
    pub fn working_copy(&self, flow: &mut Dataflow) {
        if let weir_state::Backend::RocksDb { dir } = &mut flow.state_backend {
            *dir = self.dir.join("rocksdb");
            let _ = std::fs::remove_dir_all(&*dir);
        }
    }
}

/// A state backend named on a command line (`--state-backend`), which
/// overrides the job file's `[job] state_backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    /// Keyed state on the heap.
    Heap,
    /// Keyed state in RocksDB.
    RocksDb,
}

impl FromStr for BackendChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "heap" => Ok(Self::Heap),
            "rocksdb" => Ok(Self::RocksDb),
            other => Err(format!(
                "unknown state backend `{other}`; expected `heap` or `rocksdb`"
            )),
        }
    }
}

impl std::fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Heap => "heap",
            Self::RocksDb => "rocksdb",
        })
    }
}

impl BackendChoice {
    /// Sets `flow`'s backend; RocksDB keeps its databases under
    /// `rocksdb_dir` (a [`StateDir`] moves them into itself).
    pub fn apply(self, flow: &mut Dataflow, rocksdb_dir: &Path) {
        flow.state_backend = match self {
            Self::Heap => weir_state::Backend::Heap,
            Self::RocksDb => weir_state::Backend::RocksDb {
                dir: rocksdb_dir.to_path_buf(),
            },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_dir_lays_out_checkpoints_savepoints_and_requests() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::create(&tmp.path().join("job")).unwrap();
        let c = state
            .checkpoints(Duration::from_secs(5), None, None)
            .unwrap();
        assert_eq!(c.interval, Duration::from_secs(5));
        assert_eq!(
            c.storage.location(),
            tmp.path().join("job/checkpoints").display().to_string()
        );
        assert_eq!(
            c.savepoints.as_ref().map(|s| s.location().to_string()),
            Some(tmp.path().join("job/savepoints").display().to_string())
        );
        assert_eq!(
            c.savepoint_request,
            Some(tmp.path().join("job/savepoint-request"))
        );
        // Given locations win.
        let elsewhere = tmp.path().join("elsewhere").display().to_string();
        let c = state
            .checkpoints(Duration::from_secs(1), Some(&elsewhere), None)
            .unwrap();
        assert_eq!(c.storage.location(), elsewhere);
        let e = state
            .checkpoints(Duration::from_secs(1), Some("ftp://x/y"), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ftp://x/y") && e.contains("unsupported scheme"),
            "{e}"
        );
    }

    #[test]
    fn rocksdb_working_copies_live_in_the_state_dir_and_start_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::create(tmp.path()).unwrap();
        let stale = tmp.path().join("rocksdb/old.sst");
        std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
        std::fs::write(&stale, b"x").unwrap();
        let mut flow = Dataflow::new("t");
        BackendChoice::RocksDb.apply(&mut flow, Path::new("/nowhere"));
        state.working_copy(&mut flow);
        assert_eq!(
            flow.state_backend,
            weir_state::Backend::RocksDb {
                dir: tmp.path().join("rocksdb")
            }
        );
        assert!(!stale.exists());
        BackendChoice::Heap.apply(&mut flow, Path::new("/nowhere"));
        state.working_copy(&mut flow);
        assert_eq!(flow.state_backend, weir_state::Backend::Heap);
    }

    #[test]
    fn a_backend_is_named_heap_or_rocksdb() {
        for b in [BackendChoice::Heap, BackendChoice::RocksDb] {
            assert_eq!(b.to_string().parse(), Ok(b));
        }
        assert_eq!("rocksdb".parse(), Ok(BackendChoice::RocksDb));
        assert_eq!(
            "redis".parse::<BackendChoice>(),
            Err("unknown state backend `redis`; expected `heap` or `rocksdb`".into())
        );
    }
}
