//! `weir worker`: a TaskManager. It offers task slots and a data port as a
//! member of the cluster in etcd, runs the parts of jobs handed to it, and
//! stops them when they are taken back or when it loses its membership.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use weir_cluster::{Membership, Part, PartState, WorkerInfo};
use weir_job::ModulePath;
use weir_network::{DataServer, SocketSettings, SpreadPlacement};

use super::{WorkerArgs, links, runtime};

/// `weir worker`.
pub fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let id = args.id.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
        format!("{host}-{}", std::process::id())
    });
    let secret = args
        .cluster_secret_file
        .as_deref()
        .map(weir_network::ClusterSecret::read)
        .transpose()
        .map_err(|e| anyhow::anyhow!("worker `{id}`: {e}"))?;
    let settings = SocketSettings {
        secret,
        ..SocketSettings::default()
    };
    let data = Arc::new(
        DataServer::bind(&args.data_listen, settings.clone())
            .with_context(|| format!("worker `{id}`: data port"))?,
    );
    // A data port others can reach takes records into any job on this
    // worker: beyond loopback it asks for the cluster's secret.
    if settings.secret.is_none()
        && !data.local_addr().ip().is_loopback()
        && !args.insecure_data_port
    {
        anyhow::bail!(
            "worker `{id}`: the data port listens on {} beyond loopback without a cluster secret; \
             give every worker the same --cluster-secret-file (or --insecure-data-port on a \
             network only the cluster reaches)",
            data.local_addr()
        );
    }
    let sandbox = Arc::new(weir_job::launch::sandbox(None, crate::run::compiler())?);
    let live: LiveParts = Arc::default();
    let env = PartEnv {
        server: data.clone(),
        sandbox,
        module_dirs: args.module_dirs.clone(),
        settings: settings.clone(),
        live: live.clone(),
    };
    let data_addr = args
        .advertise
        .clone()
        .unwrap_or_else(|| data.local_addr().to_string());
    let info = WorkerInfo::new(&id, args.slots, &data_addr);
    runtime()?.block_on(async move {
        if let Some(addr) = &args.metrics_listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("worker `{id}`: cannot listen on {addr} for metrics"))?;
            let bound = listener.local_addr()?;
            let (worker, live) = (id.clone(), live.clone());
            let render: weir_server::metrics::Render = Arc::new(move || {
                let parts = live.lock().unwrap_or_else(PoisonError::into_inner);
                weir_server::metrics::render_parts(&worker, &parts)
            });
            tokio::spawn(weir_server::metrics::serve_text(
                listener,
                None,
                weir_server::tls::HttpAccess::Open,
                render,
            ));
            println!("weir worker: `{id}` serves its metrics at http://{bound}/metrics");
        }
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
                        stopper.stop("its worker was stopped");
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
                        stopper.stop("its worker lost its membership in the cluster");
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
                        if stopper.stop("taken back by its controller") {
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
                            env: env.clone(),
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
    env: PartEnv,
    stopper: Stopper,
}

/// What every part on a worker shares.
#[derive(Clone)]
struct PartEnv {
    server: Arc<DataServer>,
    sandbox: Arc<weir_sandbox::Sandbox>,
    module_dirs: Vec<PathBuf>,
    /// The data port's socket settings (the cluster's secret), for the
    /// exchanges this worker opens.
    settings: SocketSettings,
    /// The parts running here, for the metrics endpoint.
    live: LiveParts,
}

/// The metrics of the parts running on a worker, by job and attempt.
type LiveParts = Arc<Mutex<Vec<weir_server::metrics::PartMetrics>>>;

/// Stops a running part: its job's canceller once it has started, or a
/// flag it checks before it starts.
#[derive(Clone, Default)]
struct Stopper(Arc<Mutex<StopState>>);

#[derive(Default)]
struct StopState {
    canceller: Option<weir_engine::Canceller>,
    /// Why it was stopped, if it was.
    stopped: Option<&'static str>,
    finished: bool,
}

impl Stopper {
    /// Stops the part (without draining) for `why`; whether it was still
    /// running.
    fn stop(&self, why: &'static str) -> bool {
        let mut s = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let was_running = s.stopped.is_none() && !s.finished;
        if !s.finished {
            s.stopped.get_or_insert(why);
        }
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
        s.stopped.is_none()
    }

    /// Why the part was stopped, if it was.
    fn stopped(&self) -> Option<&'static str> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stopped
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
                // Retried for a while: etcd may be away for a moment.
                for tries in 1.. {
                    match members.report(&worker, &job, attempt, &state).await {
                        Ok(()) => return,
                        Err(e) if tries >= 30 => {
                            eprintln!("weir worker: `{worker}` cannot report on job `{job}`: {e}");
                            return;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                    }
                }
            }
        };
        // A checkpointing part hears its controller before it says it
        // runs: the controller triggers nothing before every part does.
        let link = match &part.checkpoints {
            None => Ok(None),
            Some(_) => links::part_link(&self.members, &part).await.map(Some),
        };
        let (link, _following) = match link {
            Ok(Some((link, following))) => (Some(link), Some(following)),
            Ok(None) => (None, None),
            Err(e) => {
                let why = format!("cannot follow its controller's checkpoints: {e}");
                eprintln!("weir worker: `{}`: job `{job}`: {why}", self.worker);
                self.stopper.done();
                report(PartState::Failed(why)).await;
                return;
            }
        };
        report(PartState::Running).await;
        println!(
            "weir worker: `{}` runs its part of job `{job}` (attempt {attempt})",
            self.worker
        );
        let env = self.env.clone();
        let stopper = self.stopper.clone();
        let state = tokio::task::spawn_blocking(move || run_part(part, link, &env, &stopper))
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
    link: Option<weir_engine::checkpoint::PartLink>,
    env: &PartEnv,
    stopper: &Stopper,
) -> PartState {
    let (sandbox, module_dirs) = (&*env.sandbox, &env.module_dirs);
    let path = PathBuf::from(&part.job_file);
    let prepared = weir_job::parse_job(&path, &part.job_toml).and_then(|mut spec| {
        if let Some(p) = part.job_parallelism {
            spec.parallelism = p;
        }
        weir_job::prepare(spec, sandbox, &ModulePath::for_job(&path, module_dirs))
    });
    let mut flow = match prepared {
        Ok(p) => p.dataflow,
        Err(e) => return PartState::Failed(e.to_string()),
    };
    if let Some(cap) = part.parallelism {
        flow.cap_parallelism(cap);
    }
    if let Some(c) = &part.checkpoints {
        match links::checkpointing(&part.job, c) {
            Ok((config, restore)) => {
                flow.checkpoints = Some(config);
                flow.restore = restore;
            }
            Err(e) => return PartState::Failed(format!("{e:#}")),
        }
    }
    let placement = SpreadPlacement {
        job: part.job,
        attempt: part.attempt,
        here: part.here,
        workers: part.workers,
        assignment: part.assignment,
        server: env.server.clone(),
        credits: 8,
        settings: env.settings.clone(),
    };
    let (job, attempt) = (placement.job.clone(), placement.attempt);
    match weir_engine::run_placed(flow, Arc::new(placement), link) {
        Err(e) => PartState::Failed(e.to_string()),
        Ok(handle) => {
            if !stopper.started(handle.canceller()) {
                handle.canceller().stop();
            }
            let live = || env.live.lock().unwrap_or_else(PoisonError::into_inner);
            live().push(weir_server::metrics::PartMetrics {
                job: job.clone(),
                attempt,
                metrics: handle.metrics().clone(),
            });
            let result = handle.join().result;
            live().retain(|p| p.job != job || p.attempt != attempt);
            // A part stopped before the end of its input did not finish:
            // its controller must not take it for done.
            match (result, stopper.stopped()) {
                (_, Some(why)) => PartState::Failed(format!("stopped: {why}")),
                (Ok(()), None) => PartState::Finished,
                (Err(e), None) => PartState::Failed(e.to_string()),
            }
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
