//! The sandbox runtime: the one place wasmtime is configured.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use crate::bindings;
use crate::budget::{CompileBudget, CompileSlots};
use crate::cache::ModuleCache;
use crate::compiler::Compiler;
use crate::error::SandboxError;
use crate::guest::GuestState;
use crate::module::OperatorModule;

/// Settings of a [`Sandbox`], fixed for its lifetime.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// Where compiled artifacts are kept; `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// How many guest instances may exist at once (the pooling allocator
    /// reserves their slots up front).
    pub max_instances: u32,
    /// The largest memory cap any instance may be given, in bytes; per-instance
    /// caps ([`crate::InstanceLimits`]) are at most this.
    pub max_memory_bytes: usize,
    /// How often the epoch advances: the resolution of CPU deadlines.
    pub epoch_tick: Duration,
    /// What a component may cost to compile.
    pub budget: CompileBudget,
    /// Where components are compiled ([`crate::compiler`]).
    pub compiler: Compiler,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            max_instances: 256,
            max_memory_bytes: 1 << 30,
            epoch_tick: Duration::from_millis(5),
            budget: CompileBudget::default(),
            compiler: Compiler::Thread,
        }
    }
}

/// wasmtime's configuration. `pooled` adds the pooling allocator, which
/// reserves address space for every instance slot: what runs guests needs
/// it, a compile helper (which only compiles) does not, and the artifacts
/// of both are interchangeable (allocation is not a compilation setting).
fn wasm_config(config: &SandboxConfig, pooled: bool) -> Config {
    let mut wasm = Config::new();
    wasm.wasm_component_model(true)
        .strategy(wasmtime::Strategy::Cranelift)
        .cranelift_opt_level(OptLevel::Speed)
        .epoch_interruption(true)
        // A 4 GiB reservation plus a guard region lets Cranelift drop
        // explicit bounds checks on 32-bit memories (out-of-bounds
        // accesses hit the guard and trap): ~2x on memory-heavy guests.
        // It is virtual address space only; the pool reserves it per slot.
        .memory_reservation(4 << 30)
        .memory_guard_size(32 << 20);
    if pooled {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(config.max_instances)
            // Python and JavaScript components hold a dozen core instances,
            // each with its memory and tables.
            .total_core_instances(config.max_instances.saturating_mul(16))
            .total_memories(config.max_instances.saturating_mul(4))
            .total_tables(config.max_instances.saturating_mul(16))
            .total_stacks(config.max_instances)
            .max_memories_per_module(1)
            .max_tables_per_module(4)
            .table_elements(200_000)
            .max_component_instance_size(4 << 20)
            .max_core_instance_size(4 << 20)
            .max_memory_size(config.max_memory_bytes);
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    // `WEIR_WASM_PROFILER=perfmap` lets `perf record` name guest functions.
    if std::env::var("WEIR_WASM_PROFILER").as_deref() == Ok("perfmap") {
        wasm.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    wasm
}

/// The engine of a compile helper process ([`crate::compiler`]): the
/// sandbox's compilation settings without its instance pool.
///
/// # Errors
/// [`SandboxError::Setup`] if wasmtime rejects the configuration.
pub fn compile_engine() -> Result<Engine, SandboxError> {
    Engine::new(&wasm_config(&SandboxConfig::default(), false))
        .map_err(|e| SandboxError::Setup(format!("{e:#}")))
}

/// The Wasm runtime shared by every operator of a process: one wasmtime
/// engine, one linker, one module cache, one epoch thread.
///
/// Cloning is cheap; all clones share the same engine.
#[derive(Clone)]
pub struct Sandbox {
    pub(crate) inner: Arc<SandboxInner>,
}

pub(crate) struct SandboxInner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<GuestState>,
    pub(crate) cache: ModuleCache,
    pub(crate) config: SandboxConfig,
    compile_slots: CompileSlots,
    /// Digests of components whose compilation ran past the time limit:
    /// refused again at once, even after the abandoned compilation ends and
    /// caches its result.
    over_time: std::sync::Mutex<std::collections::HashSet<crate::ModuleDigest>>,
    ticker: Option<EpochTicker>,
}

impl Sandbox {
    /// Creates the engine, the linker and the epoch thread.
    ///
    /// # Errors
    /// [`SandboxError::Setup`] if wasmtime rejects the configuration (for
    /// example, not enough virtual address space for the instance pool), or
    /// [`SandboxError::Cache`] if the cache directory cannot be created.
    pub fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        let setup = |e: wasmtime::Error| SandboxError::Setup(format!("{e:#}"));
        let engine = Engine::new(&wasm_config(&config, true)).map_err(setup)?;

        let mut linker = Linker::<GuestState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(setup)?;
        bindings::log::add_to_linker::<GuestState, HasSelf<GuestState>>(&mut linker, |s| s)
            .map_err(setup)?;
        bindings::keyed::weir::udf::keyed_state::add_to_linker::<GuestState, HasSelf<GuestState>>(
            &mut linker,
            |s| s,
        )
        .map_err(setup)?;
        bindings::keyed::weir::udf::timers::add_to_linker::<GuestState, HasSelf<GuestState>>(
            &mut linker,
            |s| s,
        )
        .map_err(setup)?;

        let cache = ModuleCache::new(&engine, config.cache_dir.as_deref())?;
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick)
            .map_err(|e| SandboxError::Setup(format!("cannot start the epoch thread: {e}")))?;
        let compile_slots = CompileSlots::new(config.budget.max_concurrent);
        Ok(Self {
            inner: Arc::new(SandboxInner {
                engine,
                linker,
                cache,
                compile_slots,
                over_time: std::sync::Mutex::default(),
                config,
                ticker: Some(ticker),
            }),
        })
    }

    /// Loads, validates and compiles (or fetches from the cache) the component
    /// at `path`. The module's display name is the file name.
    ///
    /// # Errors
    /// Every way a file can fail to be a usable operator: unreadable, not Wasm,
    /// a core module, invalid, for another world, importing what the sandbox
    /// does not grant.
    pub fn load_file(&self, path: &Path) -> Result<Arc<OperatorModule>, SandboxError> {
        let bytes = std::fs::read(path).map_err(|source| SandboxError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        self.load_bytes(&name, &bytes)
    }

    /// Like [`Sandbox::load_file`], for bytes already in memory (an upload).
    ///
    /// The component is checked against the compile budget and its world
    /// first ([`crate::budget`]); it is then compiled on a thread of its own
    /// under the budget's time limit, in one of a limited number of slots.
    ///
    /// # Errors
    /// As [`Sandbox::load_file`], and [`SandboxError::OverBudget`] or
    /// [`SandboxError::CompileTimeout`].
    pub fn load_bytes(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<Arc<OperatorModule>, SandboxError> {
        crate::cache::check_header(name, bytes)?;
        let budget = &self.inner.config.budget;
        crate::budget::check(name, bytes, budget)?;
        let digest = crate::ModuleDigest::of(bytes);
        let over_time = || {
            self.inner
                .over_time
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if over_time().contains(&digest) {
            return Err(SandboxError::CompileTimeout {
                module: name.to_string(),
                limit: budget.compile_timeout,
            });
        }
        let (digest, component) = match self.inner.cache.cached(&self.inner.engine, digest) {
            Some(found) => found,
            None => match self.compile_within_budget(name, bytes, digest) {
                Ok(found) => found,
                Err(e @ SandboxError::CompileTimeout { .. }) => {
                    over_time().insert(digest);
                    return Err(e);
                }
                Err(e) => return Err(e),
            },
        };
        OperatorModule::new(self.clone(), name, digest, component)
    }

    fn compile_within_budget(
        &self,
        name: &str,
        bytes: &[u8],
        digest: crate::ModuleDigest,
    ) -> Result<(crate::ModuleDigest, wasmtime::component::Component), SandboxError> {
        let limit = self.inner.config.budget.compile_timeout;
        let deadline = Instant::now() + limit;
        let timeout = || SandboxError::CompileTimeout {
            module: name.to_string(),
            limit,
        };
        let slot = self
            .inner
            .compile_slots
            .acquire(deadline)
            .ok_or_else(timeout)?;
        if let Compiler::Process { program, args } = &self.inner.config.compiler {
            let budget = &self.inner.config.budget;
            let artifact =
                crate::compiler::compile_in_helper(program, args, name, bytes, budget, deadline)?;
            drop(slot);
            return self
                .inner
                .cache
                .insert_artifact(&self.inner.engine, name, digest, &artifact);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let sandbox = self.clone();
        let (name_owned, bytes_owned) = (name.to_string(), bytes.to_vec());
        std::thread::Builder::new()
            .name("weir-compile".into())
            .spawn(move || {
                let result = sandbox.inner.cache.get_or_compile(
                    &sandbox.inner.engine,
                    &name_owned,
                    &bytes_owned,
                );
                // The slot is held until the compilation ends, even when
                // the caller has stopped waiting for it.
                drop(slot);
                let _ = tx.send(result);
            })
            .map_err(|e| SandboxError::Setup(format!("cannot start a compile thread: {e}")))?;
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(
                    module = name,
                    ?limit,
                    "compilation abandoned past its time limit"
                );
                Err(timeout())
            }
        }
    }

    /// The module cache, for statistics.
    pub fn cache(&self) -> &ModuleCache {
        &self.inner.cache
    }

    /// The configuration this sandbox was created with.
    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    pub(crate) fn ticks_for(&self, deadline: Duration) -> u64 {
        let tick = self.inner.config.epoch_tick.as_nanos().max(1);
        (deadline.as_nanos().div_ceil(tick) as u64).max(1)
    }
}

impl Drop for SandboxInner {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.stop();
        }
    }
}

/// The thread that advances the engine's epoch every tick: the clock of CPU
/// deadlines. Cheaper on the hot path than fuel metering.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl EpochTicker {
    fn start(engine: Engine, tick: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })?;
        Ok(Self { stop, thread })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}
