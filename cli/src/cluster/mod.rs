//! weir on several machines, from the command line: `weir worker` (a
//! TaskManager, [`worker`]), `weir cluster run` (one job's controller,
//! [`controller`]) and `weir cluster workers|jobs` (what the cluster
//! holds). The checkpoint links between them go through etcd ([`links`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use weir_cluster::checkpoints::{Answer, Request, answer_key, request_key};
use weir_cluster::{Membership, PartState};

mod controller;
mod links;
mod worker;

pub use worker::run as worker;

/// Where etcd is, for every cluster command.
#[derive(Args)]
pub struct EtcdArgs {
    /// etcd endpoints, comma separated (`http://10.0.0.5:2379,…`).
    #[arg(
        long,
        value_name = "URLS",
        env = "WEIR_ETCD",
        value_delimiter = ',',
        required = true
    )]
    etcd: Vec<String>,
    /// How long to wait for etcd to answer.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    etcd_timeout: Duration,
}

/// Arguments of `weir worker`.
#[derive(Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    etcd: EtcdArgs,
    /// Task slots this worker offers (one slice of a job's pipeline each).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    slots: u32,
    /// The worker's id, unique among live workers [default: HOST-PID].
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// Where the data port listens (other workers send it records); `:0`
    /// picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    data_listen: String,
    /// The data port's address as other workers reach it [default: the
    /// address it listens on].
    #[arg(long, value_name = "ADDR")]
    advertise: Option<String>,
    /// The membership lease's time to live: a worker that stops renewing
    /// it (killed, or cut off from etcd) leaves the cluster after this long.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    lease_ttl: Duration,
    /// A file holding the cluster's secret (at least 16 bytes; every worker
    /// has the same): the data port accepts only producers that prove they
    /// hold it, and this worker proves it to the others. Needed for a data
    /// port beyond loopback.
    #[arg(long, value_name = "FILE", env = "WEIR_CLUSTER_SECRET_FILE")]
    cluster_secret_file: Option<PathBuf>,
    /// Let a data port beyond loopback take connections without a cluster
    /// secret (only on a network nothing but the cluster reaches).
    #[arg(long)]
    insecure_data_port: bool,
    /// Serve Prometheus metrics of the parts running here at
    /// `http://ADDR/metrics` (per job, worker and operator; no token: keep
    /// it on loopback or a network only the monitoring reaches).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Extra directories where the modules jobs name are looked up (before
    /// `WEIR_MODULE_PATH` and `target/udfs`).
    #[arg(long = "module-dir", value_name = "DIR")]
    module_dirs: Vec<PathBuf>,
}

/// Arguments of `weir cluster run`.
#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    etcd: EtcdArgs,
    /// The job file.
    job: PathBuf,
    /// Spread the slots over the workers (`spread`) or fill one worker
    /// first (`pack`).
    #[arg(long, value_name = "POLICY", default_value = "spread", value_parser = ["spread", "pack"])]
    policy: String,
    /// Extra directories where named modules are looked up.
    #[arg(long = "module-dir", value_name = "DIR")]
    module_dirs: Vec<PathBuf>,
    /// When the job does not fit, wait for slots to free up instead of
    /// refusing it.
    #[arg(long)]
    queue: bool,
    /// Checkpoint into this location, which every worker writes to:
    /// `s3://bucket/prefix` (S3-compatible storage, set up by the `AWS_*`
    /// variables on every machine) or a directory every worker sees. A job
    /// that checkpoints restarts from its latest checkpoint when a part
    /// fails or a worker is lost.
    #[arg(long, value_name = "LOCATION")]
    checkpoint_storage: Option<String>,
    /// Time between checkpoints.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    checkpoint_interval: Duration,
    /// A checkpoint not complete after this long is abandoned (the next
    /// one is triggered).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
    checkpoint_timeout: Duration,
    /// Aligned or unaligned checkpoint barriers.
    #[arg(long, value_name = "MODE", default_value = "aligned", value_parser = ["aligned", "unaligned"])]
    checkpoint_mode: String,
    /// Start from this checkpoint or savepoint (a `chk-N` or `sp-N`
    /// location).
    #[arg(long, value_name = "LOCATION", requires = "checkpoint_storage")]
    from_checkpoint: Option<String>,
    /// Restarts after failures, each from the latest checkpoint, on the
    /// slots there are then [default: 3 with --checkpoint-storage, else 0].
    #[arg(long, value_name = "N")]
    restarts: Option<u32>,
    /// Where savepoints go (taken to rescale the job) [default:
    /// CHECKPOINT-STORAGE/savepoints].
    #[arg(long, value_name = "LOCATION", requires = "checkpoint_storage")]
    savepoint_storage: Option<String>,
}

/// `weir cluster …`.
#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Run a job file on the cluster's workers and wait for it to end: its
    /// slots are placed on free worker slots (slot sharing: one slice of
    /// the pipeline per slot), each worker runs its part, and keyed and
    /// rebalanced edges between workers go over the network.
    Run(RunArgs),
    /// Rescale a job that `weir cluster run` runs with checkpoints: its
    /// controller takes a savepoint, stops the job there and starts it
    /// again from the savepoint at the new default parallelism (nodes
    /// whose job file sets their own keep it), keyed state following by
    /// key group, on the slots it needs then (a worker added since
    /// included).
    Rescale {
        #[command(flatten)]
        etcd: EtcdArgs,
        /// The job's name.
        job: String,
        /// The new default parallelism.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=32768))]
        parallelism: u32,
        /// How long to wait for the controller's answer.
        #[arg(long, value_name = "DURATION", default_value = "3m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// List the jobs running on the workers: which worker runs which slice
    /// (subtask `i` of every task) and how each part is doing.
    Jobs {
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// List the workers registered in etcd, with their slots.
    Workers {
        #[command(flatten)]
        etcd: EtcdArgs,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `weir cluster …`.
pub fn cluster(cmd: ClusterCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ClusterCommand::Run(args) => runtime()?.block_on(async move {
            let members = Membership::connect(&args.etcd.etcd, args.etcd.etcd_timeout).await?;
            controller::run_job(&members, &args).await
        }),
        ClusterCommand::Rescale {
            etcd,
            job,
            parallelism,
            timeout,
        } => runtime()?.block_on(async move {
            let members = Membership::connect(&etcd.etcd, etcd.etcd_timeout).await?;
            rescale(&members, &job, parallelism as usize, timeout).await
        }),
        ClusterCommand::Jobs { etcd } => runtime()?.block_on(async move {
            let members = Membership::connect(&etcd.etcd, etcd.etcd_timeout).await?;
            let mut parts = members.parts().await?;
            if parts.is_empty() {
                println!("no jobs running at {}", members.endpoints());
                return Ok(ExitCode::SUCCESS);
            }
            parts.sort_by(|a, b| {
                (&a.1.job, a.1.attempt, a.1.here).cmp(&(&b.1.job, b.1.attempt, b.1.here))
            });
            println!(
                "{:<24} {:<14} {:<16} {:>5}  {:<12} STATE",
                "JOB", "ATTEMPT", "WORKER", "SLOTS", "SLICES"
            );
            for (worker, part) in &parts {
                let states = members.states(&part.job, part.attempt).await?;
                let state = match states.get(worker) {
                    None => "assigned".to_string(),
                    Some(PartState::Running) => "running".to_string(),
                    Some(PartState::Finished) => "finished".to_string(),
                    Some(PartState::Failed(why)) => format!("failed: {why}"),
                };
                // Slot sharing: slice `s` is subtask `s` of every task.
                let width = part.assignment.iter().map(Vec::len).max().unwrap_or(0);
                let slices: Vec<String> = (0..width)
                    .filter(|&s| part.assignment.iter().any(|t| t.get(s) == Some(&part.here)))
                    .map(|s| s.to_string())
                    .collect();
                println!(
                    "{:<24} {:<14} {:<16} {:>5}  {:<12} {state}",
                    part.job,
                    part.attempt,
                    worker,
                    part.slots,
                    slices.join(",")
                );
            }
            Ok(ExitCode::SUCCESS)
        }),
        ClusterCommand::Workers { etcd, json } => runtime()?.block_on(async move {
            let members = Membership::connect(&etcd.etcd, etcd.etcd_timeout).await?;
            let workers = members.workers().await?;
            if json {
                for w in &workers {
                    println!("{}", serde_json::to_string(w)?);
                }
                return Ok(ExitCode::SUCCESS);
            }
            if workers.is_empty() {
                println!("no workers registered at {}", members.endpoints());
                return Ok(ExitCode::SUCCESS);
            }
            let used = members.used_slots().await?;
            println!(
                "{:<24} {:>5} {:>5}  {:<22} {:<8} STATUS",
                "WORKER", "SLOTS", "USED", "DATA PORT", "VERSION"
            );
            for w in &workers {
                let status = if w.compatible() {
                    "ready".to_string()
                } else {
                    format!(
                        "incompatible: protocol {} (this build speaks {})",
                        w.protocol,
                        weir_cluster::PROTOCOL
                    )
                };
                println!(
                    "{:<24} {:>5} {:>5}  {:<22} {:<8} {status}",
                    w.id,
                    w.slots,
                    used.get(&w.id).copied().unwrap_or(0),
                    w.data_addr,
                    w.version
                );
            }
            let compatible = workers.iter().filter(|w| w.compatible());
            let slots: u32 = compatible.clone().map(|w| w.slots).sum();
            let busy: u32 = compatible
                .map(|w| used.get(&w.id).copied().unwrap_or(0).min(w.slots))
                .sum();
            println!(
                "{} worker(s), {slots} slot(s), {} free",
                workers.len(),
                slots - busy
            );
            Ok(ExitCode::SUCCESS)
        }),
    }
}

/// `weir cluster rescale`: asks the job's controller through etcd and waits
/// for its answer.
async fn rescale(
    members: &Membership,
    job: &str,
    parallelism: usize,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let running = members
        .parts()
        .await?
        .into_iter()
        .any(|(_, p)| p.job == job);
    if !running {
        anyhow::bail!(
            "no job `{job}` runs on the cluster at {}",
            members.endpoints()
        );
    }
    let id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    members
        .put_json(request_key(job), &Request::Rescale { parallelism, id })
        .await?;
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        match members.get_json::<Answer>(&answer_key(job)).await? {
            Some(a) if a.id == id => {
                return match a.outcome {
                    Ok(done) => {
                        println!("weir cluster: {done}");
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(why) => {
                        eprintln!("weir cluster: cannot rescale job `{job}`: {why}");
                        Ok(ExitCode::from(1))
                    }
                };
            }
            _ => {}
        }
    }
    anyhow::bail!(
        "job `{job}`'s controller did not answer within {}s (is `weir cluster run` still running it?)",
        timeout.as_secs()
    )
}
