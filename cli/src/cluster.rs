//! `weir worker` (a TaskManager: offers task slots and a data port, as a
//! member of the cluster in etcd) and `weir cluster` (what the cluster
//! holds).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use weir_cluster::{Membership, Part, PartState, SlotPolicy, WorkerInfo};
use weir_job::ModulePath;
use weir_network::{DataServer, SocketSettings, SpreadPlacement};

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
    /// Extra directories where the modules jobs name are looked up (before
    /// `WEIR_MODULE_PATH` and `target/udfs`).
    #[arg(long = "module-dir", value_name = "DIR")]
    module_dirs: Vec<PathBuf>,
}

/// `weir cluster …`.
#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Run a job file on the cluster's workers and wait for it to end: its
    /// slots are placed on free worker slots (slot sharing: one slice of
    /// the pipeline per slot), each worker runs its part, and keyed and
    /// rebalanced edges between workers go over the network.
    Run {
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

/// `weir worker`.
pub fn worker(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let id = args.id.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
        format!("{host}-{}", std::process::id())
    });
    let data = Arc::new(
        DataServer::bind(&args.data_listen, SocketSettings::default())
            .with_context(|| format!("worker `{id}`: data port"))?,
    );
    let sandbox = Arc::new(weir_job::launch::sandbox(None, crate::run::compiler())?);
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
        let mut started: HashSet<(String, u64)> = HashSet::new();
        // The parts running here, each with the way to stop it.
        let mut running: HashMap<(String, u64), Stopper> = HashMap::new();
        let mut poll = tokio::time::interval(Duration::from_millis(250));
        // A poll that waited on an unreachable etcd must not be followed by
        // a burst of the ticks it missed.
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Stopping and a lost lease come first: a poll may wait on etcd
            // for its whole timeout, and must not keep them waiting.
            tokio::select! {
                biased;
                () = &mut stop => {
                    for stopper in running.values() {
                        stopper.stop();
                    }
                    let leaving = lease.revoke().await;
                    if let Err(e) = leaving {
                        eprintln!("weir worker: `{id}` could not leave cleanly ({e}); its record expires with its lease");
                    }
                    eprintln!("weir worker: `{id}` stopped");
                    return Ok(ExitCode::SUCCESS);
                }
                why = lease.lost() => {
                    // The cluster no longer counts this worker: what it ran
                    // may be run elsewhere, so it stops (a zombie must not
                    // go on). Join again as a new member.
                    eprintln!("weir worker: `{id}` lost its membership: {why}; stopping its parts and joining again");
                    for stopper in running.values() {
                        stopper.stop();
                    }
                    running.clear();
                    let Some(again) = rejoin(&members, &info, args.lease_ttl, &mut stop).await else {
                        eprintln!("weir worker: `{id}` stopped");
                        return Ok(ExitCode::SUCCESS);
                    };
                    println!("weir worker: `{id}` joined the cluster again");
                    lease = again;
                }
                _ = poll.tick() => {
                    // Bounded well under the lease's time, so that a lost
                    // lease is acted on promptly.
                    let Ok(Ok(parts)) =
                        tokio::time::timeout(Duration::from_secs(1), members.parts()).await
                    else {
                        continue;
                    };
                    let mine: HashSet<(String, u64)> = parts
                        .iter()
                        .filter(|(worker, _)| *worker == id)
                        .map(|(_, p)| (p.job.clone(), p.attempt))
                        .collect();
                    // Parts no longer assigned are forgotten (the set stays
                    // as small as what is assigned).
                    started.retain(|run| mine.contains(run));
                    // A part taken back (the job was cancelled, or failed
                    // elsewhere) stops without draining.
                    running.retain(|run, stopper| {
                        if mine.contains(run) {
                            return !stopper.finished();
                        }
                        if stopper.stop() {
                            println!("weir worker: `{id}` stops its part of job `{}`: taken back", run.0);
                        }
                        false
                    });
                    // New parts of jobs handed to this worker.
                    for (worker, part) in parts {
                        if worker != id || started.contains(&(part.job.clone(), part.attempt)) {
                            continue;
                        }
                        started.insert((part.job.clone(), part.attempt));
                        if part.incarnation != lease.id() {
                            // Placed on an earlier incarnation of this id
                            // (before a restart or a lost lease): its job
                            // has written this worker off.
                            eprintln!(
                                "weir worker: `{id}` ignores its part of job `{}` (attempt {}): placed on an earlier incarnation",
                                part.job, part.attempt
                            );
                            continue;
                        }
                        let stopper = Stopper::default();
                        running.insert((part.job.clone(), part.attempt), stopper.clone());
                        let run = PartRun {
                            worker: id.clone(),
                            members: members.clone(),
                            server: data.clone(),
                            sandbox: sandbox.clone(),
                            module_dirs: args.module_dirs.clone(),
                            stopper,
                        };
                        tokio::spawn(run.run(part));
                    }
                }
            }
        }
    })
}

/// What a worker needs to run its part of a job.
struct PartRun {
    worker: String,
    members: Membership,
    server: Arc<DataServer>,
    sandbox: Arc<weir_sandbox::Sandbox>,
    module_dirs: Vec<PathBuf>,
    stopper: Stopper,
}

/// Stops a running part: its job's canceller once it has started, or a
/// flag it checks before it starts.
#[derive(Clone, Default)]
struct Stopper(Arc<Mutex<StopState>>);

#[derive(Default)]
struct StopState {
    canceller: Option<weir_engine::Canceller>,
    stopped: bool,
    finished: bool,
}

impl Stopper {
    /// Stops the part (without draining); whether it was still running.
    fn stop(&self) -> bool {
        let mut s = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let was_running = !s.stopped && !s.finished;
        s.stopped = true;
        if let Some(c) = &s.canceller {
            c.stop();
        }
        was_running
    }

    fn finished(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .finished
    }

    /// Hands over the running job's canceller; false if the part was
    /// stopped meanwhile (the caller stops it).
    fn started(&self, canceller: weir_engine::Canceller) -> bool {
        let mut s = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        s.canceller = Some(canceller);
        !s.stopped
    }

    fn done(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .finished = true;
    }
}

impl PartRun {
    /// Runs `part` to its end, reporting as it goes.
    async fn run(self, part: Part) {
        let (job, attempt) = (part.job.clone(), part.attempt);
        let report = |state: PartState| {
            let members = self.members.clone();
            let (worker, job) = (self.worker.clone(), job.clone());
            async move {
                if let Err(e) = members.report(&worker, &job, attempt, &state).await {
                    eprintln!("weir worker: `{worker}` cannot report on job `{job}`: {e}");
                }
            }
        };
        report(PartState::Running).await;
        println!(
            "weir worker: `{}` runs its part of job `{job}` (attempt {attempt})",
            self.worker
        );
        let (server, sandbox, dirs) = (
            self.server.clone(),
            self.sandbox.clone(),
            self.module_dirs.clone(),
        );
        let stopper = self.stopper.clone();
        let state =
            tokio::task::spawn_blocking(move || run_part(part, server, &sandbox, &dirs, &stopper))
                .await
                .unwrap_or_else(|e| PartState::Failed(format!("internal error: {e}")));
        self.stopper.done();
        match &state {
            PartState::Failed(why) => eprintln!(
                "weir worker: `{}`: its part of job `{job}` failed: {why}",
                self.worker
            ),
            _ => println!(
                "weir worker: `{}`: its part of job `{job}` ended",
                self.worker
            ),
        }
        report(state).await;
    }
}

fn run_part(
    part: Part,
    server: Arc<DataServer>,
    sandbox: &weir_sandbox::Sandbox,
    module_dirs: &[PathBuf],
    stopper: &Stopper,
) -> PartState {
    let path = PathBuf::from(&part.job_file);
    let prepared = weir_job::parse_job(&path, &part.job_toml).and_then(|spec| {
        weir_job::prepare(spec, sandbox, &ModulePath::for_job(&path, module_dirs))
    });
    let flow = match prepared {
        Ok(p) => p.dataflow,
        Err(e) => return PartState::Failed(e.to_string()),
    };
    let placement = SpreadPlacement {
        job: part.job,
        attempt: part.attempt,
        here: part.here,
        workers: part.workers,
        assignment: part.assignment,
        server,
        credits: 8,
        settings: SocketSettings::default(),
    };
    match weir_engine::run_placed(flow, Arc::new(placement)) {
        Err(e) => PartState::Failed(e.to_string()),
        Ok(handle) => {
            if !stopper.started(handle.canceller()) {
                handle.canceller().stop();
            }
            match handle.join().result {
                Ok(()) => PartState::Finished,
                Err(e) => PartState::Failed(e.to_string()),
            }
        }
    }
}

/// How long a worker may take to pick up its part (it polls every 250 ms;
/// compiling modules comes after).
const PART_START_TIMEOUT: Duration = Duration::from_secs(60);

/// `weir cluster run`: places the job, hands out its parts, waits for them.
async fn run_job(
    members: &Membership,
    file: &std::path::Path,
    policy: SlotPolicy,
    module_dirs: &[PathBuf],
    queue: bool,
) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read `{}`", file.display()))?;
    let abs = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    // Built here once to check it and to plan its tasks, as every worker
    // will build it.
    let sandbox = weir_job::launch::sandbox(None, crate::run::compiler())?;
    let spec = weir_job::parse_job(&abs, &text)?;
    let name = spec.name.clone();
    let flow = weir_job::prepare(spec, &sandbox, &ModulePath::for_job(&abs, module_dirs))?.dataflow;
    let plan = weir_engine::plan::plan(&flow);
    let needed = plan.tasks.iter().map(|t| t.parallelism).max().unwrap_or(1) as u32;
    let stop = crate::serve::shutdown();
    tokio::pin!(stop);
    let mut waiting = false;
    let attempt = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64);
    // Place, and commit the placement only if no other job was placed
    // meanwhile (else place again on what is free then).
    let (workers, slots, involved, ids) = loop {
        let workers = members.workers().await?;
        let (used, seen) = members.slots_in_use().await?;
        let slots = match weir_cluster::place_slots(&name, &workers, &used, needed, policy) {
            Ok(slots) => slots,
            Err(e) if queue && e.total >= needed => {
                if !waiting {
                    println!("weir cluster: {e}; waiting for slots (--queue)");
                    waiting = true;
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = &mut stop => {
                        eprintln!("weir cluster: job `{name}` cancelled while waiting for slots");
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        // The job's workers, in order of their first slot.
        let mut involved: Vec<usize> = Vec::new();
        for &w in &slots {
            if !involved.contains(&w) {
                involved.push(w);
            }
        }
        let index = |w: usize| involved.iter().position(|&x| x == w).unwrap_or(0);
        let assignment: Vec<Vec<usize>> = plan
            .tasks
            .iter()
            .map(|t| (0..t.parallelism).map(|s| index(slots[s])).collect())
            .collect();
        let ids: Vec<String> = involved.iter().map(|&w| workers[w].id.clone()).collect();
        let parts: Vec<(String, Part)> = involved
            .iter()
            .enumerate()
            .map(|(here, &w)| {
                let part = Part {
                    job: name.clone(),
                    attempt,
                    job_file: abs.display().to_string(),
                    job_toml: text.clone(),
                    workers: involved
                        .iter()
                        .map(|&x| workers[x].data_addr.clone())
                        .collect(),
                    worker_ids: ids.clone(),
                    here,
                    assignment: assignment.clone(),
                    slots: slots.iter().filter(|&&x| x == w).count() as u32,
                    incarnation: workers[w].lease,
                };
                (workers[w].id.clone(), part)
            })
            .collect();
        if members.assign_all(&parts, seen).await? {
            break (workers, slots, involved, ids);
        }
    };
    let placed: Vec<String> = involved
        .iter()
        .map(|&w| {
            format!(
                "{} ({} slot(s))",
                workers[w].id,
                slots.iter().filter(|&&x| x == w).count()
            )
        })
        .collect();
    println!(
        "weir cluster: job `{name}` (attempt {attempt}) placed on {}",
        placed.join(", ")
    );
    // Wait for every part to end; the first failure is the job's. Ctrl-C
    // or SIGTERM takes the parts back: the workers stop them.
    let placed_at = std::time::Instant::now();
    let outcome = loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            () = &mut stop => break Err(None),
        }
        let states = members.states(&name, attempt).await?;
        if let Some((w, PartState::Failed(why))) = states
            .iter()
            .find(|(_, s)| matches!(s, PartState::Failed(_)))
        {
            break Err(Some(format!("worker `{w}`: {why}")));
        }
        if ids
            .iter()
            .all(|id| states.get(id) == Some(&PartState::Finished))
        {
            break Ok(());
        }
        if placed_at.elapsed() > PART_START_TIMEOUT
            && let Some(idle) = ids.iter().find(|id| !states.contains_key(*id))
        {
            break Err(Some(format!(
                "worker `{idle}` did not start its part within {}s",
                PART_START_TIMEOUT.as_secs()
            )));
        }
        if let Ok(live) = members.workers().await
            && let Some(gone) = ids.iter().find(|id| {
                !live.iter().any(|w| &w.id == *id) && states.get(*id) != Some(&PartState::Finished)
            })
        {
            break Err(Some(format!(
                "worker `{gone}` left the cluster while running its part"
            )));
        }
    };
    for id in &ids {
        let _ = members.unassign(id, &name, attempt).await;
    }
    match outcome {
        Ok(()) => {
            println!(
                "weir cluster: job `{name}` finished on {} worker(s)",
                ids.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(Some(why)) => {
            eprintln!("weir cluster: job `{name}` failed: {why}");
            Ok(ExitCode::from(1))
        }
        Err(None) => {
            eprintln!("weir cluster: job `{name}` cancelled; its workers stop their parts");
            Ok(ExitCode::SUCCESS)
        }
    }
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
        ClusterCommand::Run {
            etcd,
            job,
            policy,
            module_dirs,
            queue,
        } => runtime()?.block_on(async move {
            let members = Membership::connect(&etcd.etcd, etcd.etcd_timeout).await?;
            let policy = if policy == "pack" {
                SlotPolicy::Pack
            } else {
                SlotPolicy::Spread
            };
            run_job(&members, &job, policy, &module_dirs, queue).await
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
