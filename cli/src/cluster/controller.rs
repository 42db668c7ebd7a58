//! `weir cluster run`: the controller of one job (the JobManager role, in
//! the CLI until `weir serve` takes it over). It places the job's slots on
//! free worker slots, hands each worker its part through etcd, coordinates
//! the job's checkpoints once every part runs, and restarts the job from its
//! latest checkpoint when a part fails or a worker is lost.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use weir_cluster::checkpoints::{Answer, Request, answer_key, request_key};
use weir_cluster::{Membership, Part, PartCheckpoints, PartState, SlotPolicy};
use weir_engine::checkpoint::{
    CheckpointConfig, CheckpointStats, JobCoordinator, SavepointError, request_savepoint,
};
use weir_job::ModulePath;

use super::{RunArgs, links};

/// How long the controller of a running job waits for an unreachable etcd
/// before it counts the attempt as failed (its workers, cut off too, stop
/// their parts once their leases lapse).
const ETCD_PATIENCE: Duration = Duration::from_secs(30);

/// How often a job running on fewer slots than it asks for looks for
/// slots to scale back up onto.
const SCALE_CHECK: Duration = Duration::from_secs(2);

/// How long a savepoint for a rescale may take.
const SAVEPOINT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a worker may take to pick up its part (it polls every 250 ms;
/// compiling modules comes after).
const PART_START_TIMEOUT: Duration = Duration::from_secs(60);

/// `weir cluster run`: places the job, hands out its parts, waits for them;
/// a job that checkpoints restarts from its latest checkpoint when a part
/// fails or a worker is lost.
pub async fn run_job(members: &Membership, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let file = &args.job;
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read `{}`", file.display()))?;
    let abs = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    // Built here once to check it and to plan its tasks, as every worker
    // will build it.
    let sandbox = weir_job::launch::sandbox(None, crate::run::compiler())?;
    let modules = ModulePath::for_job(&abs, &args.module_dirs);
    // The job at the default parallelism the user rescaled it to, if any.
    let build = |parallelism: Option<usize>| -> anyhow::Result<weir_engine::Dataflow> {
        let mut spec = weir_job::parse_job(&abs, &text)?;
        if let Some(p) = parallelism {
            spec.parallelism = p;
        }
        Ok(weir_job::prepare(spec, &sandbox, &modules)?.dataflow)
    };
    let mut job_parallelism: Option<usize> = None;
    let mut base = build(None)?;
    let name = base.name.clone();
    let mut full = slots_needed(&base);
    let storage = args
        .checkpoint_storage
        .as_deref()
        .map(weir_job::launch::open_storage)
        .transpose()?;
    // Savepoints (for rescaling): where the user says, else under the
    // checkpoints.
    let savepoints = args.checkpoint_storage.as_ref().map(|c| {
        args.savepoint_storage
            .clone()
            .unwrap_or_else(|| format!("{}/savepoints", c.trim_end_matches('/')))
    });
    let savepoint_storage = savepoints
        .as_deref()
        .map(weir_job::launch::open_storage)
        .transpose()?;
    // Requests to this job (`weir cluster rescale`), heard from now on.
    let (requests_tx, mut requests) = tokio::sync::mpsc::unbounded_channel();
    let _requests = members
        .follow(request_key(&name), false, move |_, r: Request| {
            requests_tx.send(r).is_ok()
        })
        .await?;
    let scratch = tempfile::tempdir().context("cannot create a scratch directory")?;
    let mut restore = args.from_checkpoint.clone();
    if let Some(r) = &restore {
        // Checked before anything is placed.
        blocking(|| weir_job::launch::read_checkpoint(&name, r))?;
    }
    let mut restarts_left = args
        .restarts
        .unwrap_or(if storage.is_some() { 3 } else { 0 });
    let policy = if args.policy == "pack" {
        SlotPolicy::Pack
    } else {
        SlotPolicy::Spread
    };
    let stop = crate::serve::shutdown();
    tokio::pin!(stop);
    let mut cap: Option<usize> = None;
    let mut last_attempt = 0;
    let mut restarted = false;
    // When the last failure was noticed (for the recovery time).
    let mut failed_at: Option<std::time::Instant> = None;
    loop {
        let attempt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as u64)
            .max(last_attempt + 1);
        last_attempt = attempt;
        let mut flow = base.clone();
        if let Some(c) = cap {
            flow.cap_parallelism(c);
        }
        let job = JobToPlace {
            name: &name,
            attempt,
            text: &text,
            file: &abs,
            flow: &flow,
            cap,
            full: full as usize,
            job_parallelism,
            failed_at,
            checkpoints: args.checkpoint_storage.as_ref().map(|s| PartCheckpoints {
                storage: s.clone(),
                savepoints: savepoints.clone(),
                interval_ms: args.checkpoint_interval.as_millis() as u64,
                unaligned: args.checkpoint_mode == "unaligned",
                restore: restore.clone(),
            }),
        };
        // After a failure the job waits for slots, even if none are left:
        // what it lost may come back.
        let wait = if restarted {
            Wait::Always
        } else if args.queue {
            Wait::IfItCanFit
        } else {
            Wait::No
        };
        let Some(placed) = place(members, &job, policy, wait, &mut stop).await? else {
            eprintln!("weir cluster: job `{name}` cancelled while waiting for slots");
            return Ok(ExitCode::SUCCESS);
        };
        // The workers by part, and the incarnation of each that was given
        // its part.
        let (ids, leases): (Vec<String>, Vec<i64>) = placed.into_iter().unzip();
        let coordinator = storage.as_ref().map(|s| {
            let mut config = CheckpointConfig::new(s.clone(), args.checkpoint_interval);
            config.timeout = args.checkpoint_timeout;
            config.savepoints = savepoint_storage.clone();
            config.savepoint_request = Some(scratch.path().join("savepoint-request"));
            // After every checkpoint in the storage and after the one
            // restored (a savepoint's number is in another storage): the
            // restored sources only answer later triggers.
            let restored = restore.as_deref().map_or(0, |r| restored_id(&name, r));
            Checkpointing {
                config,
                first_id: blocking(|| weir_engine::checkpoint::highest_id(s)).max(restored),
            }
        });
        let outcome = supervise(
            members,
            &job,
            &ids,
            &leases,
            coordinator,
            &mut requests,
            &mut stop,
        )
        .await?;
        // Take the parts back: the workers stop what still runs.
        for id in &ids {
            let _ = members.unassign(id, &name, attempt).await;
        }
        if storage.is_some() {
            let _ = members.clear_checkpoints(&name, attempt).await;
        }
        let why = match outcome {
            Outcome::Finished => {
                println!(
                    "weir cluster: job `{name}` finished on {} worker(s)",
                    ids.len()
                );
                return Ok(ExitCode::SUCCESS);
            }
            Outcome::Cancelled => {
                eprintln!("weir cluster: job `{name}` cancelled; its workers stop their parts");
                return Ok(ExitCode::SUCCESS);
            }
            Outcome::Rescale {
                id,
                parallelism,
                savepoint,
            } => {
                // Stopped with a savepoint: start again from it at the new
                // parallelism (this is no failure, and no restart counts).
                wait_stopped(members, &name, attempt, &ids, &leases).await;
                job_parallelism = Some(parallelism);
                base = build(job_parallelism)?;
                full = slots_needed(&base);
                cap = None;
                restore = Some(savepoint.clone());
                restarted = true;
                let said =
                    format!("job `{name}` rescaled to parallelism {parallelism} from {savepoint}");
                println!("weir cluster: {said}");
                answer(members, &name, id, Ok(said)).await;
                continue;
            }
            Outcome::ScaleUp {
                cap: new_cap,
                savepoint,
            } => {
                wait_stopped(members, &name, attempt, &ids, &leases).await;
                cap = new_cap;
                restore = Some(savepoint);
                restarted = true;
                failed_at = None;
                continue;
            }
            Outcome::Failed(why) => why,
        };
        let Some(storage) = storage.as_ref().filter(|_| restarts_left > 0) else {
            eprintln!("weir cluster: job `{name}` failed: {why}");
            return Ok(ExitCode::from(1));
        };
        restarts_left -= 1;
        restarted = true;
        failed_at = Some(std::time::Instant::now());
        eprintln!("weir cluster: job `{name}` (attempt {attempt}) failed: {why}");
        // The new attempt must not run beside what is left of this one (a
        // sink writing the same output): wait for every part to stop, or
        // for its worker to leave the cluster.
        wait_stopped(members, &name, attempt, &ids, &leases).await;
        restore = blocking(|| weir_engine::checkpoint::latest(storage)).or(restore);
        let free = free_slots(members).await?;
        cap = (free < full).then_some(free.max(1) as usize);
        println!(
            "weir cluster: restarting job `{name}` from {} on {} slot(s); {restarts_left} restart(s) left",
            restore
                .as_deref()
                .unwrap_or("the start (no checkpoint completed)"),
            cap.map_or(full as usize, |c| c)
        );
    }
}

/// The number of the checkpoint or savepoint at `location`: from its name
/// (`…/chk-7`, `…/sp-9`), else from its metadata (0 if unreadable: the
/// parts then fail to restore it, saying why).
fn restored_id(job: &str, location: &str) -> u64 {
    let last = location
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("");
    let named = last
        .strip_prefix("chk-")
        .or_else(|| last.strip_prefix("sp-"))
        .and_then(|n| n.parse().ok());
    named.unwrap_or_else(|| {
        blocking(|| weir_job::launch::read_checkpoint(job, location)).map_or(0, |r| r.id)
    })
}

/// Runs a blocking call (checkpoint storage) off the async threads.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// The slots a job needs: its largest parallelism (slot sharing).
fn slots_needed(flow: &weir_engine::Dataflow) -> u32 {
    weir_engine::plan::plan(flow)
        .tasks
        .iter()
        .map(|t| t.parallelism)
        .max()
        .unwrap_or(1) as u32
}

/// Free slots on compatible workers.
async fn free_slots(members: &Membership) -> anyhow::Result<u32> {
    let workers = members.workers().await?;
    let used = members.used_slots().await?;
    Ok(workers
        .iter()
        .filter(|w| w.compatible())
        .map(|w| {
            w.slots
                .saturating_sub(used.get(&w.id).copied().unwrap_or(0))
        })
        .sum())
}

/// One attempt of a job, as it is placed.
struct JobToPlace<'a> {
    name: &'a str,
    attempt: u64,
    text: &'a str,
    file: &'a std::path::Path,
    flow: &'a weir_engine::Dataflow,
    cap: Option<usize>,
    /// The slots the job asks for (its largest parallelism uncapped).
    full: usize,
    job_parallelism: Option<usize>,
    checkpoints: Option<PartCheckpoints>,
    /// When the failure this attempt recovers from was noticed.
    failed_at: Option<std::time::Instant>,
}

/// Whether a job that does not fit waits for slots.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// It is refused.
    No,
    /// It waits, unless the cluster has too few slots even when idle
    /// (`--queue`).
    IfItCanFit,
    /// It waits (a restart: lost workers may come back).
    Always,
}

/// Places an attempt on free slots, committing only if no other job was
/// placed meanwhile (else places again on what is free then), waiting for
/// slots as `wait` says. Returns the workers' ids by part index, or `None`
/// if stopped while waiting.
async fn place(
    members: &Membership,
    job: &JobToPlace<'_>,
    policy: SlotPolicy,
    wait: Wait,
    stop: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> anyhow::Result<Option<Vec<(String, i64)>>> {
    let plan = weir_engine::plan::plan(job.flow);
    let needed = slots_needed(job.flow);
    let name = job.name;
    let mut waiting = false;
    loop {
        let workers = members.workers().await?;
        let (used, seen) = members.slots_in_use().await?;
        let slots = match weir_cluster::place_slots(name, &workers, &used, needed, policy) {
            Ok(slots) => slots,
            Err(e) if wait == Wait::Always || (wait == Wait::IfItCanFit && e.total >= needed) => {
                if !waiting {
                    println!("weir cluster: {e}; waiting for slots");
                    waiting = true;
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = stop.as_mut() => return Ok(None),
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
        let count = |w: usize| slots.iter().filter(|&&x| x == w).count();
        let parts: Vec<(String, Part)> = involved
            .iter()
            .enumerate()
            .map(|(here, &w)| {
                let part = Part {
                    job: name.to_string(),
                    attempt: job.attempt,
                    job_file: job.file.display().to_string(),
                    job_toml: job.text.to_string(),
                    workers: involved
                        .iter()
                        .map(|&x| workers[x].data_addr.clone())
                        .collect(),
                    worker_ids: ids.clone(),
                    here,
                    assignment: assignment.clone(),
                    slots: count(w) as u32,
                    incarnation: workers[w].lease,
                    parallelism: job.cap,
                    job_parallelism: job.job_parallelism,
                    checkpoints: job.checkpoints.clone(),
                };
                (workers[w].id.clone(), part)
            })
            .collect();
        if members.assign_all(&parts, seen).await? {
            let placed: Vec<String> = involved
                .iter()
                .map(|&w| format!("{} ({} slot(s))", workers[w].id, count(w)))
                .collect();
            println!(
                "weir cluster: job `{name}` (attempt {}) placed on {}",
                job.attempt,
                placed.join(", ")
            );
            let leases = involved.iter().map(|&w| workers[w].lease);
            return Ok(Some(ids.into_iter().zip(leases).collect()));
        }
    }
}

/// What the controller needs to coordinate a spread job's checkpoints.
struct Checkpointing {
    /// Storage, interval, savepoints and the file savepoints are asked by.
    config: CheckpointConfig,
    /// The number to continue after.
    first_id: u64,
}

/// What a savepoint under way is for.
enum Target {
    /// A user's rescale request `id`, to this default parallelism.
    Parallelism { id: u64, parallelism: usize },
    /// Back up onto slots that returned: the new cap (`None`: all the job
    /// asks for).
    Slots(Option<usize>),
}

/// How an attempt ended.
enum Outcome {
    /// Every part finished.
    Finished,
    /// Ctrl-C or SIGTERM.
    Cancelled,
    /// A part failed or a worker was lost, and why.
    Failed(String),
    /// Stopped with a savepoint, to start again from it at another
    /// parallelism (request `id`).
    Rescale {
        id: u64,
        parallelism: usize,
        savepoint: String,
    },
    /// Stopped with a savepoint, to start again from it on more slots.
    ScaleUp {
        cap: Option<usize>,
        savepoint: String,
    },
}

/// Answers request `id`.
async fn answer(members: &Membership, job: &str, id: u64, outcome: Result<String, String>) {
    let answer = Answer { id, outcome };
    if let Err(e) = members.put_json(answer_key(job), &answer).await {
        eprintln!("weir cluster: cannot answer a request to job `{job}`: {e}");
    }
}

/// Waits for every part of an attempt to end; the first failure is the
/// attempt's (`Err(Some(why))`). Ctrl-C or SIGTERM gives `Err(None)`.
/// Once every part runs, the job's checkpoints are coordinated from here.
async fn supervise(
    members: &Membership,
    job: &JobToPlace<'_>,
    ids: &[String],
    leases: &[i64],
    checkpointing: Option<Checkpointing>,
    requests: &mut tokio::sync::mpsc::UnboundedReceiver<Request>,
    stop: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> anyhow::Result<Outcome> {
    let mut running = false;
    let request_file = checkpointing
        .as_ref()
        .and_then(|c| c.config.savepoint_request.clone());
    // A rescale under way: what it is for, and the wait for its savepoint.
    type Savepoint = tokio::task::JoinHandle<Result<String, SavepointError>>;
    let mut rescaling: Option<(Target, Savepoint)> = None;
    let take_savepoint = |file: &std::path::Path| {
        // A savepoint after which no checkpoint commits: the parts stop
        // there.
        let file = file.to_path_buf();
        tokio::task::spawn_blocking(move || request_savepoint(&file, SAVEPOINT_TIMEOUT, true))
    };
    // When to look again for slots to scale back up onto.
    let mut next_scale_check = std::time::Instant::now() + SCALE_CHECK;
    let (name, attempt) = (job.name, job.attempt);
    let placed_at = std::time::Instant::now();
    let mut checkpointing = checkpointing;
    // The coordinator's thread ends when the link is dropped.
    let mut coordinating: Option<(weir_cluster::checkpoints::Follow, Arc<CheckpointStats>)> = None;
    // Since when etcd has not answered.
    let mut unreachable: Option<std::time::Instant> = None;
    let outcome = loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            () = stop.as_mut() => break Outcome::Cancelled,
        }
        // etcd away: the parts run on (until their workers' leases lapse)
        // and the controller waits for it, up to a bound.
        let states = match members.states(name, attempt).await {
            Ok(states) => {
                if unreachable.take().is_some() {
                    eprintln!("weir cluster: etcd answers again");
                }
                states
            }
            Err(e) => {
                let since = *unreachable.get_or_insert_with(|| {
                    eprintln!(
                        "weir cluster: cannot reach etcd: {e}; job `{name}` goes on, retrying"
                    );
                    std::time::Instant::now()
                });
                if since.elapsed() > ETCD_PATIENCE {
                    break Outcome::Failed(format!(
                        "etcd unreachable for {}s: {e}",
                        ETCD_PATIENCE.as_secs()
                    ));
                }
                continue;
            }
        };
        if let Some((w, PartState::Failed(why))) = states
            .iter()
            .find(|(_, s)| matches!(s, PartState::Failed(_)))
        {
            break Outcome::Failed(format!("worker `{w}`: {why}"));
        }
        if ids
            .iter()
            .all(|id| states.get(id) == Some(&PartState::Finished))
        {
            break Outcome::Finished;
        }
        if !running && ids.iter().all(|id| states.contains_key(id)) {
            running = true;
            if let Some(at) = job.failed_at {
                println!(
                    "weir cluster: job `{name}` runs again (attempt {attempt}), {} ms after its failure was noticed",
                    at.elapsed().as_millis()
                );
            }
        }
        if running && let Some(c) = checkpointing.take() {
            let (acks, send, follow) = match links::job_link(members, name, attempt).await {
                Ok(link) => link,
                Err(e) => {
                    // Tried again at the next round.
                    eprintln!("weir cluster: cannot follow job `{name}`'s checkpoints yet: {e}");
                    checkpointing = Some(c);
                    continue;
                }
            };
            let stats = Arc::new(CheckpointStats::default());
            let coordinator = JobCoordinator {
                config: c.config,
                job: name.to_string(),
                nodes: job
                    .flow
                    .nodes
                    .iter()
                    .map(|n| (n.name.clone(), n.parallelism))
                    .collect(),
                workers: ids.to_vec(),
                first_id: c.first_id,
                stats: stats.clone(),
            };
            std::thread::Builder::new()
                .name("weir-checkpoints".into())
                .spawn(move || coordinator.run(&acks, &send))
                .context("cannot start the checkpoint coordinator")?;
            coordinating = Some((follow, stats));
        }
        if placed_at.elapsed() > PART_START_TIMEOUT
            && let Some(idle) = ids.iter().find(|id| !states.contains_key(*id))
        {
            break Outcome::Failed(format!(
                "worker `{idle}` did not start its part within {}s",
                PART_START_TIMEOUT.as_secs()
            ));
        }
        // A worker that left, or lost its membership and joined again as
        // another incarnation, no longer runs its part (whatever it last
        // reported).
        if let Ok(live) = members.workers().await
            && let Some((gone, _)) = ids.iter().zip(leases).find(|(id, lease)| {
                !live.iter().any(|w| &w.id == *id && w.lease == **lease)
                    && states.get(*id) != Some(&PartState::Finished)
            })
        {
            break Outcome::Failed(format!(
                "worker `{gone}` left the cluster while running its part"
            ));
        }
        while let Ok(Request::Rescale { parallelism, id }) = requests.try_recv() {
            // Refused before the job stops, if it could never run so: a job
            // stopped at a savepoint for a parallelism the cluster cannot
            // place would wait for slots for ever.
            let slots: u32 = members
                .workers()
                .await
                .map(|w| w.iter().filter(|w| w.compatible()).map(|w| w.slots).sum())
                .unwrap_or(0);
            let keys = job.flow.max_parallelism as usize;
            let refused = match (&rescaling, &coordinating, &request_file) {
                _ if parallelism == 0 => Some("the parallelism must be at least 1".to_string()),
                _ if parallelism > keys => Some(format!(
                    "job `{name}` has {keys} key groups (its max parallelism): it cannot run \
                     {parallelism} subtasks of a keyed operator"
                )),
                _ if parallelism > slots as usize => Some(format!(
                    "parallelism {parallelism} needs {parallelism} slot(s) and the cluster has \
                     {slots} in all; job `{name}` goes on as it is"
                )),
                (Some(_), _, _) => Some(format!("job `{name}` is being rescaled already")),
                (None, Some(_), Some(file)) => {
                    let target = Target::Parallelism { id, parallelism };
                    rescaling = Some((target, take_savepoint(file)));
                    None
                }
                (None, _, _) => Some(format!(
                    "job `{name}` cannot be rescaled: it does not checkpoint (run it with \
                     --checkpoint-storage) or is not running yet"
                )),
            };
            if let Some(why) = refused {
                answer(members, name, id, Err(why)).await;
            }
        }
        // Running on fewer slots than it asks for (restarted after losing
        // a worker): back up onto slots that return, from a savepoint.
        if let Some(cap) = job.cap
            && rescaling.is_none()
            && coordinating.is_some()
            && let Some(file) = &request_file
            && std::time::Instant::now() >= next_scale_check
        {
            next_scale_check = std::time::Instant::now() + SCALE_CHECK;
            if let Ok(free) = free_slots(members).await
                && free > 0
            {
                let want = cap + free as usize;
                let new_cap = (want < job.full).then_some(want);
                println!(
                    "weir cluster: {free} slot(s) free; job `{name}` scales back up to {} slot(s) from a savepoint",
                    new_cap.unwrap_or(job.full)
                );
                rescaling = Some((Target::Slots(new_cap), take_savepoint(file)));
            }
        }
        if rescaling.as_ref().is_some_and(|r| r.1.is_finished())
            && let Some((target, taking)) = rescaling.take()
        {
            let taken = taking
                .await
                .unwrap_or_else(|e| Err(SavepointError::Failed(format!("internal error: {e}"))));
            match (target, taken) {
                (Target::Parallelism { id, parallelism }, Ok(savepoint)) => {
                    break Outcome::Rescale {
                        id,
                        parallelism,
                        savepoint,
                    };
                }
                (Target::Slots(cap), Ok(savepoint)) => break Outcome::ScaleUp { cap, savepoint },
                (Target::Parallelism { id, .. }, Err(e)) => {
                    let why = format!("{e}; job `{name}` goes on at its parallelism");
                    answer(members, name, id, Err(why)).await;
                }
                (Target::Slots(_), Err(e)) => {
                    eprintln!("weir cluster: job `{name}` cannot scale back up: {e}; it goes on");
                    next_scale_check = std::time::Instant::now() + 10 * SCALE_CHECK;
                }
            }
        }
    };
    if let Some((Target::Parallelism { id, .. }, _)) = rescaling {
        let why = format!("job `{name}` (attempt {attempt}) ended before its savepoint was taken");
        answer(members, name, id, Err(why)).await;
    }
    if let Some((_, stats)) = &coordinating {
        let completed = stats.completed.load(std::sync::atomic::Ordering::Relaxed);
        if completed > 0 {
            let read =
                |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            println!(
                "weir cluster: job `{name}` (attempt {attempt}) completed {completed} checkpoint(s); the last, chk-{}, took {} ms and holds {} bytes",
                read(&stats.last_completed),
                read(&stats.last_duration_ms),
                read(&stats.last_size),
            );
        }
    }
    Ok(outcome)
}

/// Waits until every part of a failed attempt has stopped or its worker
/// has left the cluster (its lease expired), for at most a minute.
async fn wait_stopped(
    members: &Membership,
    name: &str,
    attempt: u64,
    ids: &[String],
    leases: &[i64],
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let running = match (members.states(name, attempt).await, members.workers().await) {
            (Ok(states), Ok(live)) => ids
                .iter()
                .zip(leases)
                .find(|(id, lease)| {
                    live.iter().any(|w| &w.id == *id && w.lease == **lease)
                        && !matches!(
                            states.get(*id),
                            Some(PartState::Finished | PartState::Failed(_))
                        )
                })
                .map(|(id, _)| id.clone()),
            // etcd away: nothing is known yet.
            _ => Some("?".to_string()),
        };
        let Some(id) = running else { return };
        if std::time::Instant::now() >= deadline {
            eprintln!(
                "weir cluster: worker `{id}` has not stopped its part of job `{name}` (attempt {attempt}) within a minute; restarting anyway"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
