//! `weir worker` (a TaskManager: offers task slots and a data port, as a
//! member of the cluster in etcd) and `weir cluster` (what the cluster
//! holds).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use weir_cluster::{Membership, WorkerInfo};

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
}

/// `weir cluster …`.
#[derive(Subcommand)]
pub enum ClusterCommand {
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

/// `weir worker`.
pub fn worker(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let id = args.id.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
        format!("{host}-{}", std::process::id())
    });
    let data = weir_network::DataServer::bind(&args.data_listen, Default::default())
        .with_context(|| format!("worker `{id}`: data port"))?;
    let data_addr = args
        .advertise
        .clone()
        .unwrap_or_else(|| data.local_addr().to_string());
    let info = WorkerInfo::new(&id, args.slots, &data_addr);
    runtime()?.block_on(async move {
        let members = Membership::connect(&args.etcd.etcd, args.etcd.etcd_timeout)
            .await
            .with_context(|| format!("worker `{id}` cannot join the cluster"))?;
        let mut lease = members
            .register(&info, args.lease_ttl)
            .await
            .with_context(|| format!("worker `{id}` cannot join the cluster"))?;
        println!(
            "weir worker: `{id}` joined the cluster at {} with {} slot(s); data port {data_addr}",
            members.endpoints(),
            args.slots
        );
        let stop = crate::serve::shutdown();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => {
                    let leaving = lease.revoke().await;
                    if let Err(e) = leaving {
                        eprintln!("weir worker: `{id}` could not leave cleanly ({e}); its record expires with its lease");
                    }
                    eprintln!("weir worker: `{id}` stopped");
                    drop(data);
                    return Ok(ExitCode::SUCCESS);
                }
                why = lease.lost() => {
                    // The cluster no longer counts this worker: what it ran
                    // is being run elsewhere. Join again as a new member.
                    eprintln!("weir worker: `{id}` lost its membership: {why}; joining again");
                    let Some(again) = rejoin(&members, &info, args.lease_ttl, &mut stop).await else {
                        eprintln!("weir worker: `{id}` stopped");
                        return Ok(ExitCode::SUCCESS);
                    };
                    println!("weir worker: `{id}` joined the cluster again");
                    lease = again;
                }
            }
        }
    })
}

/// Registers again after a lost lease, retrying every second while etcd is
/// away; `None` if the worker is asked to stop meanwhile.
async fn rejoin(
    members: &Membership,
    info: &WorkerInfo,
    ttl: Duration,
    stop: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Option<weir_cluster::WorkerLease> {
    let mut last = String::new();
    loop {
        match members.register(info, ttl).await {
            Ok(lease) => return Some(lease),
            Err(e) => {
                let e = e.to_string();
                if e != last {
                    eprintln!("weir worker: `{}` cannot join yet: {e}", info.id);
                    last = e;
                }
            }
        }
        tokio::select! {
            () = stop.as_mut() => return None,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// `weir cluster …`.
pub fn cluster(cmd: ClusterCommand) -> anyhow::Result<ExitCode> {
    match cmd {
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
            println!(
                "{:<24} {:>5}  {:<22} {:<8} STATUS",
                "WORKER", "SLOTS", "DATA PORT", "VERSION"
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
                    "{:<24} {:>5}  {:<22} {:<8} {status}",
                    w.id, w.slots, w.data_addr, w.version
                );
            }
            let slots: u32 = workers
                .iter()
                .filter(|w| w.compatible())
                .map(|w| w.slots)
                .sum();
            println!("{} worker(s), {slots} slot(s)", workers.len());
            Ok(ExitCode::SUCCESS)
        }),
    }
}
