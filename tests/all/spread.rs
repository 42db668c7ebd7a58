//! Jobs spread over several workers: each worker runs its slots' subtasks,
//! keyed and rebalanced edges between workers go over network exchanges
//! (loopback TCP, credit-based), and the output equals a single-process
//! run's, row for row.
//!
//! The workers here are parts of this test process, each with its own data
//! port and its own copy of the job, so that only the network joins them;
//! what `weir worker` processes add (membership in etcd) is tested in
//! `cli/tests/cluster.rs`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use weir_engine::checkpoint::{
    self, CheckpointConfig, CheckpointStats, JobCoordinator, Mode, remote,
};
use weir_job::nexmark::{NexmarkJob, Query};
use weir_network::placement::slot_sharing;
use weir_network::{DataServer, SocketSettings, SpreadPlacement};
use weir_tests::{read_jsonl, sandbox, udf_dir};

const EVENTS: u64 = 100_000;
const WORKERS: usize = 3;

fn job_file(dir: &std::path::Path, query: Query) -> std::path::PathBuf {
    let job = NexmarkJob {
        query,
        events: EVENTS,
        parallelism: 3,
        rate: None,
        sink: "kind = \"file\"\npath = \"out.jsonl\"\nformat = \"value\"".into(),
    };
    let file = dir.join("job.toml");
    std::fs::write(&file, job.toml()).unwrap();
    file
}

fn sorted(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by_key(|x| x.to_string());
    v
}

fn single_process(query: Query) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let file = job_file(dir.path(), query);
    weir_tests::run_job(&file)
        .unwrap()
        .result
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    sorted(read_jsonl(&dir.path().join("out.jsonl")))
}

/// Runs `query` as `WORKERS` workers; returns the output and how many
/// subtasks each worker ran.
fn spread(query: Query, attempt: u64) -> (Vec<Value>, Vec<(usize, u64)>) {
    let dir = tempfile::tempdir().unwrap();
    let file = job_file(dir.path(), query);
    let modules = weir_job::ModulePath::new(vec![udf_dir()]);
    let servers: Vec<Arc<DataServer>> = (0..WORKERS)
        .map(|_| Arc::new(DataServer::bind("127.0.0.1:0", SocketSettings::default()).unwrap()))
        .collect();
    let addrs: Vec<String> = servers.iter().map(|s| s.local_addr().to_string()).collect();
    let parts: Vec<_> = servers
        .into_iter()
        .enumerate()
        .map(|(here, server)| {
            let port = server.clone();
            // Every worker builds the job from the same file, as a worker
            // given the job by its controller would.
            let spec = weir_job::read_job(&file).unwrap();
            let flow = weir_job::prepare(spec, sandbox(), &modules)
                .unwrap()
                .dataflow;
            let plan = weir_engine::plan::plan(&flow);
            let assignment = slot_sharing(&plan, WORKERS);
            let local = assignment.iter().flatten().filter(|&&w| w == here).count();
            let placement = SpreadPlacement {
                job: format!("spread/{query}"),
                attempt,
                here,
                workers: addrs.clone(),
                assignment,
                server,
                credits: 8,
                settings: SocketSettings::default(),
            };
            let worker = std::thread::spawn(move || {
                weir_engine::run_placed(flow, Arc::new(placement), None)
                    .unwrap_or_else(|e| panic!("worker {here}: {e}"))
                    .join()
            });
            (worker, local, port)
        })
        .collect();
    let mut ran = Vec::new();
    for (i, (worker, local, port)) in parts.into_iter().enumerate() {
        let outcome = worker.join().unwrap();
        outcome
            .result
            .unwrap_or_else(|e| panic!("{query}: worker {i} failed: {e}"));
        let records = port
            .received()
            .records
            .load(std::sync::atomic::Ordering::Relaxed);
        ran.push((local, records));
    }
    (sorted(read_jsonl(&dir.path().join("out.jsonl"))), ran)
}

fn same_rows_spread_as_in_one_process(query: Query) {
    let want = single_process(query);
    assert!(!want.is_empty(), "{query}: the input exercises the query");
    let (got, ran) = spread(query, 1);
    // Every worker ran a part of the job, and records reached each one
    // over the network.
    assert!(
        ran.iter()
            .all(|&(subtasks, records)| subtasks > 0 && records > 0),
        "{ran:?}"
    );
    assert_eq!(got.len(), want.len(), "{query}: row count");
    assert!(
        got == want,
        "{query}: the rows differ from a single-process run"
    );
}

#[test]
fn nexmark_q5_over_three_workers_gives_the_single_process_rows() {
    same_rows_spread_as_in_one_process(Query::Q5);
}

#[test]
fn nexmark_q8_over_three_workers_gives_the_single_process_rows() {
    same_rows_spread_as_in_one_process(Query::Q8);
}

#[test]
fn a_spread_job_that_checkpoints_without_a_controller_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = job_file(dir.path(), Query::Q0);
    let modules = weir_job::ModulePath::new(vec![udf_dir()]);
    let spec = weir_job::read_job(&file).unwrap();
    let mut flow = weir_job::prepare(spec, sandbox(), &modules)
        .unwrap()
        .dataflow;
    flow.checkpoints = Some(CheckpointConfig::new(
        weir_storage::open("memory:///spread").unwrap(),
        Duration::from_secs(1),
    ));
    let server = Arc::new(DataServer::bind("127.0.0.1:0", SocketSettings::default()).unwrap());
    let placement = SpreadPlacement {
        job: "refused".into(),
        attempt: 1,
        here: 0,
        workers: vec![server.local_addr().to_string()],
        assignment: vec![],
        server,
        credits: 8,
        settings: SocketSettings::default(),
    };
    let e = weir_engine::run_placed(flow, Arc::new(placement), None)
        .err()
        .expect("refused");
    assert!(e.to_string().contains("none is linked"), "{e}");
}

/// Runs the job in `file` as `WORKERS` parts in this process, checkpointing
/// every 200 ms into `storage` (shared by the parts, as object storage is
/// by workers) under a controller's [`JobCoordinator`] over in-process
/// links; restored from `restore` if given; stopped without draining, as
/// the parts of a killed job are, after `stop_after`. Returns the
/// checkpoints completed.
fn spread_checkpointed(
    file: &std::path::Path,
    attempt: u64,
    storage: &str,
    restore: Option<&str>,
    stop_after: Option<Duration>,
    mode: Mode,
) -> u64 {
    let modules = weir_job::ModulePath::new(vec![udf_dir()]);
    let build = || {
        weir_job::prepare(weir_job::read_job(file).unwrap(), sandbox(), &modules)
            .unwrap()
            .dataflow
    };
    let restored = restore.map(|l| Arc::new(weir_storage::read_checkpoint(l).unwrap()));
    let mut config = CheckpointConfig::new(
        weir_storage::open(storage).unwrap(),
        Duration::from_millis(200),
    );
    config.mode = mode;
    let (links, acks, send) = remote::in_process(WORKERS);
    let flow = build();
    let stats = Arc::new(CheckpointStats::default());
    let coordinator = JobCoordinator {
        config: config.clone(),
        job: flow.name.clone(),
        nodes: flow
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.parallelism))
            .collect(),
        workers: (0..WORKERS).map(|w| format!("w{w}")).collect(),
        first_id: restored.as_ref().map_or(0, |r| r.id),
        stats: stats.clone(),
    };
    let controller = std::thread::spawn(move || coordinator.run(&acks, &send));
    let servers: Vec<Arc<DataServer>> = (0..WORKERS)
        .map(|_| Arc::new(DataServer::bind("127.0.0.1:0", SocketSettings::default()).unwrap()))
        .collect();
    let addrs: Vec<String> = servers.iter().map(|s| s.local_addr().to_string()).collect();
    let parts: Vec<_> = servers
        .into_iter()
        .zip(links)
        .enumerate()
        .map(|(here, (server, link))| {
            let mut flow = build();
            flow.checkpoints = Some(config.clone());
            flow.restore = restored.clone();
            let assignment = slot_sharing(&weir_engine::plan::plan(&flow), WORKERS);
            let placement = SpreadPlacement {
                job: "spread/checkpointed".into(),
                attempt,
                here,
                workers: addrs.clone(),
                assignment,
                server,
                credits: 8,
                settings: SocketSettings::default(),
            };
            std::thread::spawn(move || {
                weir_engine::run_placed(flow, Arc::new(placement), Some(link))
                    .unwrap_or_else(|e| panic!("worker {here}: {e}"))
            })
        })
        .collect();
    let handles: Vec<_> = parts.into_iter().map(|p| p.join().unwrap()).collect();
    if let Some(after) = stop_after {
        std::thread::sleep(after);
        for h in &handles {
            h.canceller().stop();
        }
    }
    for (i, h) in handles.into_iter().enumerate() {
        h.join()
            .result
            .unwrap_or_else(|e| panic!("worker {i} failed: {e}"));
    }
    controller.join().unwrap();
    stats.completed.load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn a_spread_job_checkpoints_to_shared_storage_and_resumes_from_it_exactly_once() {
    resumes_exactly_once(Mode::Aligned);
}

/// Unaligned: the records in flight over the network exchanges when a
/// barrier overtook them are saved by the part that received them, and
/// replayed first on restore.
#[test]
fn a_spread_job_with_unaligned_checkpoints_resumes_exactly_once() {
    resumes_exactly_once(Mode::Unaligned);
}

fn resumes_exactly_once(mode: Mode) {
    let want = single_process(Query::Q5);
    let dir = tempfile::tempdir().unwrap();
    let file = job_file(dir.path(), Query::Q5);
    // Paced, so that the first run is stopped halfway.
    let text = std::fs::read_to_string(&file).unwrap().replace(
        &format!("events = {EVENTS}"),
        &format!("events = {EVENTS}\nrate = 25000"),
    );
    std::fs::write(&file, text).unwrap();
    let storage = dir.path().join("checkpoints").display().to_string();

    let completed =
        spread_checkpointed(&file, 1, &storage, None, Some(Duration::from_secs(2)), mode);
    assert!(completed >= 1, "no checkpoint completed across the workers");
    let cut_short = read_jsonl(&dir.path().join("out.jsonl")).len();
    assert!(
        cut_short < want.len(),
        "the first run was not stopped halfway"
    );
    let latest = checkpoint::latest(&weir_storage::open(&storage).unwrap())
        .expect("a completed checkpoint in the shared storage");
    // Each part wrote the state objects of the subtasks it ran; the
    // controller wrote the metadata naming all of them.
    let restored = weir_storage::read_checkpoint(&latest).unwrap();
    assert!(restored.nodes().count() >= 3, "{latest}");

    spread_checkpointed(&file, 2, &storage, Some(&latest), None, mode);
    let got = sorted(read_jsonl(&dir.path().join("out.jsonl")));
    assert_eq!(
        got.len(),
        want.len(),
        "row count after resuming from {latest}"
    );
    assert!(got == want, "the rows differ from a single-process run");
}

#[test]
fn a_worker_that_never_hosts_its_part_is_a_clear_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let file = job_file(dir.path(), Query::Q5);
    let modules = weir_job::ModulePath::new(vec![udf_dir()]);
    let spec = weir_job::read_job(&file).unwrap();
    let flow = weir_job::prepare(spec, sandbox(), &modules)
        .unwrap()
        .dataflow;
    let plan = weir_engine::plan::plan(&flow);
    // Worker 1 listens but runs nothing of the job.
    let here = Arc::new(DataServer::bind("127.0.0.1:0", SocketSettings::default()).unwrap());
    let absent = DataServer::bind("127.0.0.1:0", SocketSettings::default()).unwrap();
    let placement = SpreadPlacement {
        job: "absent".into(),
        attempt: 1,
        here: 0,
        workers: vec![
            here.local_addr().to_string(),
            absent.local_addr().to_string(),
        ],
        assignment: slot_sharing(&plan, 2),
        server: here,
        credits: 8,
        settings: SocketSettings {
            connect_timeout: Duration::from_secs(1),
            ..SocketSettings::default()
        },
    };
    let started = std::time::Instant::now();
    let e = weir_engine::run_placed(flow, Arc::new(placement), None)
        .err()
        .expect("the job cannot start");
    assert!(started.elapsed() < Duration::from_secs(30));
    let e = e.to_string();
    assert!(e.contains("cannot reach it on its worker"), "{e}");
    assert!(e.contains("hosts no job `absent` attempt 1"), "{e}");
}
