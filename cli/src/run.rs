//! `weir run JOB`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::Args;
use weir_job::ModulePath;
use weir_sandbox::{Sandbox, SandboxConfig};

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
    /// Print the plan (fused tasks) before running.
    #[arg(long)]
    plan: bool,
}

/// The default compilation cache directory.
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

/// Runs the job; exit code 0 if it completed, 1 if it failed while running,
/// 2 if it could not start.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let spec = weir_job::read_job(&args.job)?;
    let sandbox = Sandbox::new(SandboxConfig {
        cache_dir: Some(args.cache_dir.unwrap_or_else(default_cache_dir)),
        ..SandboxConfig::default()
    })
    .context("cannot start the Wasm sandbox")?;
    let modules = ModulePath::for_job(&args.job, &args.module_dirs);
    let name = spec.name.clone();
    let prepared = weir_job::prepare(spec, &sandbox, &modules)?;
    for (op, m) in &prepared.modules {
        tracing::info!(operator = %op, module = m.name(), digest = %m.digest(), kind = %m.kind(), "module ready");
    }
    let handle = weir_engine::run(prepared.dataflow)
        .with_context(|| format!("cannot start job `{name}`"))?;
    if args.plan {
        for t in &handle.plan().tasks {
            eprintln!("task [{}] x{}", t.name, t.parallelism);
        }
    }
    // First Ctrl-C (or SIGTERM): stop the sources and let the job drain, so
    // sinks flush and the summary is printed. Second: leave at once.
    let cancel = handle.canceller();
    let stopped = Arc::new(AtomicBool::new(false));
    let flag = stopped.clone();
    let installed = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!(
            "\nstopping: sources end, in-flight records drain (press Ctrl-C again to quit now)"
        );
        cancel.cancel();
    });
    if let Err(e) = installed {
        tracing::warn!("cannot install the Ctrl-C handler: {e}");
    }
    progress::follow(&handle, args.quiet);
    let outcome = handle.join();
    eprint!(
        "{}",
        progress::summary(&name, &outcome.metrics, outcome.elapsed)
    );
    match outcome.result {
        Ok(()) if stopped.load(Ordering::SeqCst) => {
            eprintln!("job `{name}` was stopped before its sources ended");
            Ok(ExitCode::from(130))
        }
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("error: job `{name}` failed: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
