//! `weir run JOB`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Args;
use weir_engine::checkpoint;
use weir_job::{BackendChoice, Ended, Event, Launcher, ModulePath, StateDir, Supervision};

use crate::progress;

/// Arguments of `weir run`.
#[derive(Args)]
pub struct RunArgs {
    /// The job file (TOML).
    job: PathBuf,
    /// Extra directories where named modules are looked up (before
    /// `WEIR_MODULE_PATH` and `target/udfs`).
    #[arg(long = "module-dir", value_name = "DIR")]
    module_dirs: Vec<PathBuf>,
    /// Where compiled modules are cached [default: $WEIR_CACHE_DIR, or
    /// ~/.cache/weir/modules].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// No progress line.
    #[arg(long, short)]
    quiet: bool,
    /// Where keyed state lives: `heap` or `rocksdb` [default: the job
    /// file's `[job] state_backend`, else heap]. RocksDB keeps its working
    /// files under `--state-dir` (or the temporary directory).
    #[arg(long, value_name = "BACKEND", value_parser = str::parse::<BackendChoice>)]
    state_backend: Option<BackendChoice>,
    /// Print the plan (fused tasks) before running.
    #[arg(long)]
    plan: bool,
    /// The job's state directory: checkpoints are written to
    /// `DIR/checkpoints`, and a job started again with the same directory
    /// resumes from its latest checkpoint.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Time between checkpoints (with --state-dir).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    checkpoint_interval: Duration,
    /// Completed checkpoints to keep.
    #[arg(long, value_name = "N", default_value_t = 3)]
    retain_checkpoints: usize,
    /// Where checkpoints are written: a directory or `s3://bucket/prefix`
    /// (S3 settings from the `AWS_*` environment variables)
    /// [default: DIR/checkpoints of --state-dir].
    #[arg(long, value_name = "LOCATION", requires = "state_dir")]
    checkpoint_storage: Option<String>,
    /// Where savepoints are written: a directory or `s3://bucket/prefix`
    /// [default: DIR/savepoints of --state-dir].
    #[arg(long, value_name = "LOCATION", requires = "state_dir")]
    savepoint_storage: Option<String>,
    /// How tasks with several inputs handle barriers: `aligned` (wait for
    /// the barrier on every input) or `unaligned` (snapshot at the first
    /// barrier and save the in-flight records: for backpressured jobs).
    #[arg(long, value_name = "MODE", default_value = "aligned", value_parser = ["aligned", "unaligned"])]
    checkpoint_mode: String,
    /// Start from this checkpoint (a `chk-N` directory or URL) instead of the
    /// latest.
    #[arg(long, value_name = "LOCATION", conflicts_with = "from_savepoint")]
    from_checkpoint: Option<String>,
    /// Start from this savepoint (an `sp-N` directory or URL).
    #[arg(long, value_name = "LOCATION")]
    from_savepoint: Option<String>,
    /// After a failure (a guest trap, an operator error), restart from the
    /// latest checkpoint at most this many times [default: 3 with
    /// --state-dir, else 0].
    #[arg(long, value_name = "N")]
    restart_attempts: Option<u32>,
    /// Delay before the first restart.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    restart_delay: Duration,
    /// `fixed` delay, or `exponential` (doubling, at most 1 minute).
    #[arg(long, value_name = "STRATEGY", default_value = "fixed")]
    restart_strategy: RestartStrategy,
}

/// How restarts are spaced.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum RestartStrategy {
    /// The same delay every time.
    Fixed,
    /// Doubling delays, at most one minute.
    Exponential,
}

/// Where `weir` compiles components: in a helper process (this program
/// again, `weir __compile-helper`) whose memory and time the kernel bounds.
pub(crate) fn compiler() -> weir_sandbox::Compiler {
    match std::env::current_exe() {
        Ok(program) => weir_sandbox::Compiler::Process {
            program,
            args: vec!["__compile-helper".into()],
        },
        Err(e) => {
            tracing::warn!("compiling in process: cannot find this program ({e})");
            weir_sandbox::Compiler::Thread
        }
    }
}

/// The compile helper's `main` (`weir __compile-helper BYTES`).
pub(crate) fn compile_helper(bytes: usize) -> ExitCode {
    let result = weir_sandbox::runtime::compile_engine().and_then(|engine| {
        weir_sandbox::compiler::serve_helper(
            &engine,
            bytes,
            &mut std::io::stdin().lock(),
            &mut std::io::stdout().lock(),
        )
    });
    ExitCode::from(weir_sandbox::compiler::helper_exit_code(&result) as u8)
}

/// Runs the job; exit code 0 if it completed, 1 if it failed while running,
/// 2 if it could not start.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let sandbox = weir_job::launch::sandbox(args.cache_dir.clone(), compiler())?;
    let modules = ModulePath::for_job(&args.job, &args.module_dirs);
    let state = args
        .state_dir
        .as_deref()
        .map(StateDir::create)
        .transpose()?;
    let checkpoints = match &state {
        None => None,
        Some(state) => {
            let mut c = state.checkpoints(
                args.checkpoint_interval,
                args.checkpoint_storage.as_deref(),
                args.savepoint_storage.as_deref(),
            )?;
            c.retain = args.retain_checkpoints;
            if args.checkpoint_mode == "unaligned" {
                c.mode = checkpoint::Mode::Unaligned;
            }
            Some(c)
        }
    };
    let max_restarts = args
        .restart_attempts
        .unwrap_or(if checkpoints.is_some() { 3 } else { 0 });
    let sup = Supervision {
        drain_on_stop: true,
        checkpoints,
        start_from: args.from_checkpoint.clone().or(args.from_savepoint.clone()),
        max_restarts,
        restart_delay: args.restart_delay,
        exponential: matches!(args.restart_strategy, RestartStrategy::Exponential),
    };

    // First Ctrl-C (or SIGTERM): stop the sources and let the job drain, so
    // sinks flush and the summary is printed. Second: leave at once.
    let stopped = Arc::new(AtomicBool::new(false));
    {
        let flag = stopped.clone();
        let installed = ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!(
                "\nstopping: sources end, in-flight records drain (press Ctrl-C again to quit now)"
            );
        });
        if let Err(e) = installed {
            tracing::warn!("cannot install the Ctrl-C handler: {e}");
        }
    }

    let launcher = Launcher {
        sandbox: &sandbox,
        modules: &modules,
        state: state.as_ref(),
        backend: args.state_backend,
    };
    let build = |attempt: u32| -> Result<weir_engine::Dataflow, weir_engine::BoxError> {
        let spec = weir_job::read_job(&args.job)?;
        let prepared = launcher.prepare(spec)?;
        if attempt == 0 {
            for (op, m) in &prepared.modules {
                tracing::info!(operator = %op, module = m.name(), digest = %m.digest(), kind = %m.kind(), "module ready");
            }
        }
        Ok(prepared.dataflow)
    };
    let mut name = String::new();
    let mut stats = None;
    let ended = weir_job::supervise(&sup, build, &stopped, |event| match event {
        Event::Started {
            handle,
            attempt,
            restored,
        } => {
            name.clone_from(&handle.metrics().job);
            if let Some(path) = restored {
                eprintln!("job `{name}`: restoring from {path}");
            }
            if args.plan && attempt == 0 {
                for t in &handle.plan().tasks {
                    eprintln!("task [{}] x{}", t.name, t.parallelism);
                }
            }
            stats = Some(handle.checkpoints().clone());
            progress::follow(handle, args.quiet);
        }
        Event::Ended { outcome } => {
            eprint!(
                "{}",
                progress::summary(&name, &outcome.metrics, outcome.elapsed)
            );
            if let Some(stats) = &stats {
                eprint!("{}", progress::checkpoint_summary(stats));
            }
        }
        Event::Restarting {
            error,
            delay,
            from,
            attempt,
            max,
        } => eprintln!(
            "error: job `{name}` failed: {error}\nrestarting in {} from {} (attempt {attempt} of {max})",
            humantime::format_duration(delay),
            from.unwrap_or("the beginning")
        ),
    })
    .map_err(|e| anyhow::anyhow!(e))?;
    Ok(match ended {
        Ended::Finished => ExitCode::SUCCESS,
        Ended::Stopped => {
            eprintln!("job `{name}` was stopped before its sources ended");
            ExitCode::from(130)
        }
        Ended::Failed(e) => {
            eprintln!("error: job `{name}` failed: {e}");
            ExitCode::from(1)
        }
    })
}
