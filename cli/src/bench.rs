//! `weir bench nexmark`: the Nexmark queries (weir_job::nexmark) on the
//! built-in generator, with their cost: events/s, events per CPU-second and
//! peak RSS. With `--rate`, the generator is paced and stamps events with
//! the wall clock, and the latency is reported: p50 and p99 of the sink's
//! event time lag (weir_engine::metrics::EventLag).
//!
//! One query runs in this process. Several (`--query q0,q5` or `all`) run one
//! child process each, so that each peak RSS is that query's own.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use weir_job::nexmark::{NexmarkJob, Query};
use weir_job::{BackendChoice, Ended, Event, Launcher, ModulePath, StateDir, Supervision};

/// `weir bench …`.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Nexmark queries on the built-in generator, their logic in Wasm UDFs.
    Nexmark(NexmarkArgs),
    /// Write the generator's events as JSON lines (flink-nexmark's shape),
    /// for running the same events through another engine
    /// (bench/flink-nexmark).
    NexmarkEvents {
        /// Events to write.
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
        /// The file.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Arguments of `weir bench nexmark`.
#[derive(Args)]
pub struct NexmarkArgs {
    /// Queries: q0, q1, q2, q3, q4, q5, q7, q8, q11, comma-separated, or `all`.
    #[arg(long, default_value = "all")]
    query: String,
    /// Events generated (people, auctions and bids).
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Parallelism of every node.
    #[arg(long, default_value_t = 1)]
    parallelism: usize,
    /// Take checkpoints this often (into a temporary directory), as a
    /// production job would.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    checkpoint_interval: Option<Duration>,
    /// Generate this many events per second, stamped with the wall clock,
    /// and report the latency (the event time lag at the sink: p50 and p99);
    /// as fast as possible (and no latency) if unset.
    #[arg(long, value_name = "EVENTS_PER_SECOND")]
    rate: Option<u64>,
    /// Keyed state: `heap` or `rocksdb`.
    #[arg(long, default_value = "heap", value_parser = str::parse::<BackendChoice>)]
    state_backend: BackendChoice,
    /// Extra directories where the UDFs are looked up (before
    /// `WEIR_MODULE_PATH` and `target/udfs`).
    #[arg(long = "module-dir", value_name = "DIR")]
    module_dirs: Vec<PathBuf>,
    /// Where compiled modules are cached.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Print one JSON object per query instead of a table.
    #[arg(long)]
    json: bool,
    /// Print each query's job file (with a discarding sink) instead of
    /// running it: to run it elsewhere, e.g. `weir cluster run`.
    #[arg(long)]
    print_job: bool,
}

/// One query's figures.
#[derive(Debug, Serialize, Deserialize)]
pub struct Figures {
    /// The query.
    pub query: String,
    /// Events generated.
    pub events: u64,
    /// Records the query wrote.
    pub results: u64,
    /// Parallelism.
    pub parallelism: usize,
    /// Wall time of the run (modules already compiled).
    pub seconds: f64,
    /// CPU time of the process during the run (user + system).
    pub cpu_seconds: f64,
    /// Peak resident set of the process.
    pub peak_rss_mib: f64,
    /// Checkpoints completed.
    pub checkpoints: u64,
    /// With `--rate`: the median latency of the results, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_latency_ms: Option<u64>,
    /// With `--rate`: the 99th percentile latency of the results, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_latency_ms: Option<u64>,
}

impl Figures {
    fn events_per_second(&self) -> f64 {
        self.events as f64 / self.seconds
    }

    fn events_per_cpu_second(&self) -> f64 {
        self.events as f64 / self.cpu_seconds.max(1e-9)
    }
}

/// Runs `weir bench …`.
pub fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Nexmark(args) => nexmark(&args),
        BenchCommand::NexmarkEvents { events, out } => {
            let mut file = std::fs::File::create(&out)
                .with_context(|| format!("cannot create `{}`", out.display()))?;
            weir_connectors::nexmark::write_flink_events(events, &mut file)
                .with_context(|| format!("cannot write `{}`", out.display()))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The job `weir bench nexmark` runs for `query`.
fn nexmark_job(args: &NexmarkArgs, query: Query) -> NexmarkJob {
    NexmarkJob {
        query,
        events: args.events,
        parallelism: args.parallelism,
        rate: args.rate,
        sink: "kind = \"discard\"".into(),
    }
}

fn queries(list: &str) -> anyhow::Result<Vec<Query>> {
    if list == "all" {
        return Ok(Query::ALL.to_vec());
    }
    list.split(',')
        .map(|q| q.trim().parse::<Query>().map_err(anyhow::Error::msg))
        .collect()
}

fn nexmark(args: &NexmarkArgs) -> anyhow::Result<ExitCode> {
    let queries = queries(&args.query)?;
    if args.parallelism == 0 {
        bail!("--parallelism must be at least 1");
    }
    if args.print_job {
        for q in queries {
            print!("{}", nexmark_job(args, q).toml());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let figures = if let [q] = queries[..] {
        vec![run_query(args, q)?]
    } else {
        let exe = std::env::current_exe().context("cannot find the weir executable")?;
        let mut all = Vec::new();
        for q in queries {
            let mut cmd = Command::new(&exe);
            cmd.args(["bench", "nexmark", "--json", "--query", q.name()])
                .args(["--events", &args.events.to_string()])
                .args(["--parallelism", &args.parallelism.to_string()])
                .args(["--state-backend", &args.state_backend.to_string()]);
            if let Some(r) = args.rate {
                cmd.args(["--rate", &r.to_string()]);
            }
            if let Some(d) = args.checkpoint_interval {
                cmd.args(["--checkpoint-interval", &format!("{}ms", d.as_millis())]);
            }
            for d in &args.module_dirs {
                cmd.arg("--module-dir").arg(d);
            }
            if let Some(d) = &args.cache_dir {
                cmd.arg("--cache-dir").arg(d);
            }
            let out = cmd
                .stderr(std::process::Stdio::inherit())
                .output()
                .with_context(|| format!("cannot run {q}"))?;
            if !out.status.success() {
                bail!("{q} failed ({})", out.status);
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text.lines().last().unwrap_or_default();
            let f: Figures = serde_json::from_str(line)
                .with_context(|| format!("{q} printed no figures: {text}"))?;
            if !args.json {
                eprintln!("{q}: done");
            }
            all.push(f);
        }
        all
    };
    if args.json {
        for f in &figures {
            println!("{}", serde_json::to_string(f)?);
        }
    } else {
        println!(
            "| query | events | results | seconds | events/s | events/CPU-s | peak RSS | checkpoints | latency p50 / p99 |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for f in &figures {
            println!(
                "| {} | {} | {} | {:.2} | {} | {} | {:.0} MiB | {} | {} |",
                f.query,
                f.events,
                f.results,
                f.seconds,
                crate::progress::count(f.events_per_second()),
                crate::progress::count(f.events_per_cpu_second()),
                f.peak_rss_mib,
                f.checkpoints,
                match (f.p50_latency_ms, f.p99_latency_ms) {
                    (Some(a), Some(b)) => format!("{a} / {b} ms"),
                    _ => "–".into(),
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_query(args: &NexmarkArgs, query: Query) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let job = nexmark_job(args, query);
    let file = dir.path().join(format!("nexmark-{query}.toml"));
    std::fs::write(&file, job.toml())?;
    let sandbox = weir_job::launch::sandbox(args.cache_dir.clone(), crate::run::compiler())?;
    let modules = ModulePath::for_job(&file, &args.module_dirs);
    let state = StateDir::create(dir.path())?;
    // Build the dataflow (compiling the modules, or loading them from the
    // cache) before the clock starts; the run never restarts.
    let spec = weir_job::read_job(&file)?;
    let launcher = Launcher {
        sandbox: &sandbox,
        modules: &modules,
        state: Some(&state),
        backend: Some(args.state_backend),
    };
    let mut flow = Some(
        launcher
            .prepare(spec)
            .with_context(|| format!("{query}"))?
            .dataflow,
    );
    let checkpoints = args
        .checkpoint_interval
        .map(|interval| state.checkpoints(interval, None, None))
        .transpose()?;
    let sup = Supervision {
        drain_on_stop: true,
        checkpoints,
        start_from: None,
        max_restarts: 0,
        restart_delay: Duration::from_secs(1),
        exponential: false,
    };
    let build = |_attempt: u32| {
        flow.take()
            .ok_or_else(|| weir_engine::BoxError::from("no restarts in a benchmark"))
    };
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let cpu_before = cpu_seconds()?;
    let started = Instant::now();
    let mut results = 0;
    let mut lag = None;
    let mut stats = None;
    let ended = weir_job::supervise(&sup, build, &stop, |event| match event {
        Event::Started { handle, .. } => stats = Some(handle.checkpoints().clone()),
        Event::Ended { outcome } => {
            let sinks = || {
                outcome
                    .metrics
                    .iter()
                    .filter(|n| n.role == weir_engine::metrics::NodeRole::Sink)
            };
            results = sinks().map(|n| n.records_in).sum();
            // One sink.
            lag = sinks().find_map(|n| n.event_lag);
        }
        Event::Restarting { .. } => {}
    })
    .map_err(|e| anyhow::anyhow!(e))?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds()? - cpu_before;
    match ended {
        Ended::Finished => {}
        Ended::Stopped => bail!("{query} was stopped"),
        Ended::Failed(e) => bail!("{query} failed: {e}"),
    }
    Ok(Figures {
        query: query.name().into(),
        events: args.events,
        results,
        parallelism: args.parallelism,
        seconds,
        cpu_seconds: cpu,
        peak_rss_mib: peak_rss_kib()? as f64 / 1024.0,
        checkpoints: stats.map_or(0, |s| s.completed.load(Ordering::Relaxed)),
        p50_latency_ms: lag.filter(|_| args.rate.is_some()).map(|l| l.p50_ms),
        p99_latency_ms: lag.filter(|_| args.rate.is_some()).map(|l| l.p99_ms),
    })
}

/// User + system CPU time of this process (Linux `/proc/self/stat`, in
/// the kernel's 100 Hz user ticks).
fn cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("cannot read /proc/self/stat")?;
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("unexpected /proc/self/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .context("short /proc/self/stat")?
            .parse::<u64>()? as f64)
    };
    // utime and stime are fields 14 and 15: 11 and 12 after the name.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// The process's peak resident set (`VmHWM`), KiB.
fn peak_rss_kib() -> anyhow::Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")
}
