//! Checkpoints and recovery: a job stopped after a checkpoint and restored
//! from it produces exactly the output of a run without interruption —
//! nothing missing, nothing twice — also when the restored job runs the
//! window at another parallelism.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::Ordering;

use weir_engine::checkpoint::{self, CheckpointConfig, CheckpointStorage, Mode};
use weir_job::{ModulePath, prepare, read_job};
use weir_tests::{canonical, sandbox, sorted_lines, udf_dir};

fn job_file(dir: &Path, window_parallelism: usize, rate: Option<u64>) -> std::path::PathBuf {
    job_file_with(dir, 1, window_parallelism, rate)
}

fn job_file_with(
    dir: &Path,
    source_parallelism: usize,
    window_parallelism: usize,
    rate: Option<u64>,
) -> std::path::PathBuf {
    let rate = rate.map_or(String::new(), |r| format!("rate = {r}"));
    let text = format!(
        r#"
[job]
name = "ckpt"

[source.gen]
kind = "generator"
count = 60_000
keys = 37
interval_ms = 3
batch_size = 256
parallelism = {source_parallelism}
{rate}
watermark = {{ strategy = "monotonous" }}

[operator.count]
input = "gen"
module = "bid-count"
parallelism = {window_parallelism}
window = {{ type = "tumbling", size = "1s" }}

[sink.out]
input = "count"
kind = "file"
path = "out.jsonl"
format = "envelope"
"#
    );
    let f = dir.join(format!("job-{window_parallelism}.toml"));
    std::fs::write(&f, text).unwrap();
    f
}

fn dataflow(file: &Path) -> weir_engine::Dataflow {
    let spec = read_job(file).unwrap();
    prepare(spec, sandbox(), &ModulePath::new(vec![udf_dir()]))
        .unwrap()
        .dataflow
}

/// How one restore scenario runs.
struct Scenario {
    name: &'static str,
    /// Backend of the checkpointed run and of the restored run.
    backends: (Backend, Backend),
    /// Source parallelism (2 makes the window align two inputs).
    sources: usize,
    /// Window parallelism of the restored run (the first runs at 1).
    restored_parallelism: usize,
    mode: Mode,
    /// Where checkpoints go.
    storage: Storage,
}

/// Where a scenario's checkpoints go.
enum Storage {
    /// A local directory.
    Dir,
    /// The same as a `file://` URL.
    FileUrl,
    /// An S3 URL.
    S3(String),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    Heap,
    RocksDb,
}

fn backend(b: Backend, dir: &Path, run: &str) -> weir_state::Backend {
    match b {
        Backend::Heap => weir_state::Backend::Heap,
        Backend::RocksDb => weir_state::Backend::RocksDb {
            dir: dir.join(format!("rocksdb-{run}")),
        },
    }
}

/// Records the generator produced in a run.
fn generated(metrics: &[weir_engine::NodeSnapshot]) -> u64 {
    metrics
        .iter()
        .filter(|m| m.name == "gen")
        .map(|m| m.records_out)
        .sum()
}

/// Stops a paced run after five checkpoints, restores the latest, runs to
/// the end and compares with an uninterrupted run.
/// Whether checkpoint `name` saved records in flight to the window's
/// second input.
fn holds_inflight(storage: &CheckpointStorage, name: &str) -> bool {
    let r = checkpoint::read(storage, name).unwrap();
    r.inflight("count", 0, 1)
        .unwrap()
        .is_some_and(|b| !b.is_empty())
}

fn restore_scenario(s: &Scenario, expected: &[String]) {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("checkpoints");
    let location = match &s.storage {
        Storage::Dir => local.display().to_string(),
        Storage::FileUrl => format!("file://{}", local.display()),
        Storage::S3(url) => url.clone(),
    };
    let storage = weir_storage::open(&location).unwrap();
    // First run: paced, checkpointing every 50 ms; stopped once five
    // checkpoints completed (what it wrote after the last one is cut off at
    // restore, as after a crash).
    let mut flow = dataflow(&job_file_with(dir.path(), s.sources, 1, Some(20_000)));
    let mut config = CheckpointConfig::new(storage.clone(), Duration::from_millis(50));
    config.mode = s.mode;
    flow.checkpoints = Some(config);
    flow.state_backend = backend(s.backends.0, dir.path(), "first");
    let handle = weir_engine::run(flow).unwrap();
    let stats = handle.checkpoints().clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Unaligned: whether a checkpoint holds in-flight records depends on
    // how the two sources' barriers happen to meet, so run on (up to 40
    // checkpoints) until the newest completed one holds some; it stays
    // among the three kept whatever completes before the cancel lands.
    let newest_holds_inflight = || {
        checkpoint::completed(&storage)
            .last()
            .is_some_and(|(_, name)| holds_inflight(&storage, name))
    };
    while Instant::now() < deadline {
        let completed = stats.completed.load(Ordering::SeqCst);
        let enough = completed >= 5
            && (s.mode != Mode::Unaligned || completed >= 40 || newest_holds_inflight());
        if enough {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    handle.cancel();
    let first = handle.join();
    first.result.unwrap();
    let read = generated(&first.metrics);
    assert!(
        read < 60_000,
        "{}: stopped before the end: read {read}",
        s.name
    );
    assert_eq!(stats.abandoned.load(Ordering::SeqCst), 0, "{}", s.name);
    assert!(stats.last_size.load(Ordering::SeqCst) > 0);

    // Only the last 3 completed checkpoints are kept, and nothing
    // half-written looks complete.
    let kept = checkpoint::completed(&storage);
    assert_eq!(kept.len(), 3, "{}: {kept:?}", s.name);
    let shared = storage.list("shared").unwrap();
    if s.backends.0 == Backend::RocksDb {
        // Incremental: SST files are shared between checkpoints, and the
        // last checkpoint wrote less than it references.
        assert!(!shared.is_empty(), "{}: no shared files", s.name);
        // Some retained checkpoint references a file an earlier one
        // uploaded (compactions may replace all files now and then).
        let reused = kept.iter().any(|(id, name)| {
            let meta: serde_json::Value =
                serde_json::from_slice(&storage.get(&format!("{name}/_metadata")).unwrap())
                    .unwrap();
            meta["shared"].as_array().unwrap().iter().any(|o| {
                let uploaded_for: u64 = o.as_str().unwrap()["shared/".len()..]
                    .split('-')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                uploaded_for < *id
            })
        });
        assert!(reused, "{}: no checkpoint reuses a shared file", s.name);
    } else {
        assert!(shared.is_empty(), "{}: {shared:?}", s.name);
    }

    if s.mode == Mode::Unaligned {
        // In-flight records were saved (the two sources' barriers rarely
        // reach the window together).
        let with_records = kept
            .iter()
            .filter(|(_, name)| holds_inflight(&storage, name))
            .count();
        eprintln!(
            "{}: {with_records} of 3 checkpoints hold in-flight records",
            s.name
        );
        assert!(with_records > 0, "{}: no in-flight records saved", s.name);
    }

    // Restore from the latest checkpoint and run to the end.
    let latest = checkpoint::latest(&storage).expect("a completed checkpoint");
    let restored = weir_storage::read_checkpoint(&latest).unwrap();
    assert!(restored.id >= 2);
    let mut flow = dataflow(&job_file_with(
        dir.path(),
        s.sources,
        s.restored_parallelism,
        None,
    ));
    flow.restore = Some(Arc::new(restored));
    flow.state_backend = backend(s.backends.1, dir.path(), "second");
    let second = weir_engine::run(flow).unwrap().join();
    second.result.unwrap();
    // The source resumed from its checkpointed position instead of
    // starting over (window state and the sink's length did the rest).
    let resumed = generated(&second.metrics);
    assert!(
        resumed > 0 && resumed < 60_000,
        "{}: the restored run read {resumed} of 60000",
        s.name
    );
    let got = sorted_lines(&dir.path().join("out.jsonl"));
    let first_difference = got.iter().zip(expected).position(|(a, b)| a != b);
    assert!(
        got.len() == expected.len() && first_difference.is_none(),
        "{}: {} results, expected {}; first difference at {first_difference:?}: {:?}",
        s.name,
        got.len(),
        expected.len(),
        first_difference.map(|i| (&got[i], &expected[i]))
    );
}

#[test]
fn a_job_restored_from_a_checkpoint_finishes_exactly_once() {
    // Reference: one uninterrupted run.
    let reference = tempfile::tempdir().unwrap();
    let flow = dataflow(&job_file(reference.path(), 1, None));
    weir_engine::run(flow).unwrap().join().result.unwrap();
    let expected = sorted_lines(&reference.path().join("out.jsonl"));
    assert!(expected.len() > 100, "{} results", expected.len());

    let scenarios = [
        Scenario {
            name: "heap",
            backends: (Backend::Heap, Backend::Heap),
            sources: 1,
            restored_parallelism: 1,
            mode: Mode::Aligned,
            storage: Storage::Dir,
        },
        // Heap snapshots restore into RocksDB at another parallelism:
        // snapshots do not depend on the backend.
        Scenario {
            name: "heap to RocksDB, rescaled to 3",
            backends: (Backend::Heap, Backend::RocksDb),
            sources: 1,
            restored_parallelism: 3,
            mode: Mode::Aligned,
            storage: Storage::FileUrl,
        },
        // Incremental RocksDB checkpoints restore from the files themselves.
        Scenario {
            name: "RocksDB incremental",
            backends: (Backend::RocksDb, Backend::RocksDb),
            sources: 2,
            restored_parallelism: 1,
            mode: Mode::Aligned,
            storage: Storage::Dir,
        },
        // ...and, read back into the portable format, into the heap at
        // another parallelism.
        Scenario {
            name: "RocksDB incremental to heap, rescaled to 3",
            backends: (Backend::RocksDb, Backend::Heap),
            sources: 1,
            restored_parallelism: 3,
            mode: Mode::Aligned,
            storage: Storage::Dir,
        },
        // Unaligned: the window (two inputs) snapshots at the first barrier
        // and saves what the other input sends before its barrier.
        Scenario {
            name: "unaligned",
            backends: (Backend::Heap, Backend::Heap),
            sources: 2,
            restored_parallelism: 1,
            mode: Mode::Unaligned,
            storage: Storage::Dir,
        },
    ];
    for s in &scenarios {
        restore_scenario(s, &expected);
    }
}

#[test]
fn incremental_checkpoints_go_to_s3_compatible_object_storage() {
    let server = weir_tests::s3::S3Server::start("weir");
    // SAFETY: only the object-storage client reads these variables, and
    // every test that sets them sets the same values.
    unsafe {
        std::env::set_var("AWS_ENDPOINT", format!("http://127.0.0.1:{}", server.port));
        std::env::set_var("AWS_ALLOW_HTTP", "true");
        std::env::set_var("AWS_ACCESS_KEY_ID", "weir");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "weir-secret");
        std::env::set_var("AWS_REGION", "us-east-1");
    }
    let reference = tempfile::tempdir().unwrap();
    let flow = dataflow(&job_file(reference.path(), 1, None));
    weir_engine::run(flow).unwrap().join().result.unwrap();
    let expected = sorted_lines(&reference.path().join("out.jsonl"));
    restore_scenario(
        &Scenario {
            name: "RocksDB incremental on S3",
            backends: (Backend::RocksDb, Backend::RocksDb),
            sources: 2,
            restored_parallelism: 1,
            mode: Mode::Aligned,
            storage: Storage::S3("s3://weir/jobs/ckpt".into()),
        },
        &expected,
    );
    // The checkpoints really are in the bucket, under the prefix.
    let storage = weir_storage::open("s3://weir/jobs/ckpt").unwrap();
    assert_eq!(checkpoint::completed(&storage).len(), 3);
    assert!(!storage.list("shared").unwrap().is_empty());
}

#[test]
fn a_savepoint_restores_with_the_window_module_replaced_by_a_new_version() {
    restore_with_another_window_module("bid-count-v2", &[]);
}

/// Version 3 keeps another accumulator layout and exports
/// `state-migration`: the savepoint records that version 1 wrote the
/// state, and version 3 converts it while restoring (at another
/// parallelism too). Without the migration it could not read 8-byte
/// accumulators.
#[test]
fn a_savepoint_restores_into_a_module_that_migrates_the_state_layout() {
    restore_with_another_window_module("bid-count-v3", &["latest"]);
}

/// Runs version 1 of the window module to a savepoint, finishes the job
/// from it with `module` at parallelism 2, and compares every window with
/// an uninterrupted run (`module`'s `version` and `extra` fields aside).
fn restore_with_another_window_module(module: &str, extra: &[&str]) {
    let reference = tempfile::tempdir().unwrap();
    let flow = dataflow(&job_file(reference.path(), 1, None));
    weir_engine::run(flow).unwrap().join().result.unwrap();
    let expected = sorted_lines(&reference.path().join("out.jsonl"));

    // Version 1 runs, paced; a savepoint is asked for as `weir savepoint`
    // does, and the job is stopped after it.
    let dir = tempfile::tempdir().unwrap();
    let mut flow = dataflow(&job_file(dir.path(), 1, Some(20_000)));
    let mut config = CheckpointConfig::new(
        weir_storage::open(&dir.path().join("checkpoints").display().to_string()).unwrap(),
        Duration::from_secs(3600),
    );
    config.savepoints =
        Some(weir_storage::open(&dir.path().join("savepoints").display().to_string()).unwrap());
    let request = dir.path().join("savepoint-request");
    config.savepoint_request = Some(request.clone());
    flow.checkpoints = Some(config);
    let handle = weir_engine::run(flow).unwrap();
    let m = handle.metrics().clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    while m.records_read() < 10_000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::write(&request, "").unwrap();
    let done = dir.path().join("savepoint-request.done");
    while !done.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    handle.cancel();
    handle.join().result.unwrap();
    let answer = std::fs::read_to_string(&done).unwrap();
    let location = answer.strip_prefix("ok ").expect(&answer).to_string();

    // Version 2 of the module, at window parallelism 2, from the savepoint.
    let file = job_file(dir.path(), 2, None);
    let text = std::fs::read_to_string(&file).unwrap().replace(
        r#"module = "bid-count""#,
        &format!(r#"module = "{module}""#),
    );
    std::fs::write(&file, text).unwrap();
    let mut flow = dataflow(&file);
    flow.restore = Some(Arc::new(weir_storage::read_checkpoint(&location).unwrap()));
    weir_engine::run(flow).unwrap().join().result.unwrap();

    // Every window counted once, whole: the windows open at the savepoint
    // were finished by version 2 from version 1's accumulators.
    let mut v2 = 0;
    let mut got: Vec<String> = sorted_lines(&dir.path().join("out.jsonl"))
        .into_iter()
        .map(|line| {
            let mut v: serde_json::Value = serde_json::from_str(&line).unwrap();
            let value = v["value"].as_object_mut().unwrap();
            if value.remove("version").is_some() {
                v2 += 1;
                if let Some(per_second) = value.remove("per_second") {
                    assert_eq!(per_second.as_f64(), value["count"].as_f64(), "1 s windows");
                }
                for field in extra {
                    assert!(value.remove(*field).is_some(), "no `{field}` in {line}");
                }
            }
            canonical(&v)
        })
        .collect();
    got.sort();
    let mut expected: Vec<String> = expected
        .iter()
        .map(|l| canonical(&serde_json::from_str(l).unwrap()))
        .collect();
    expected.sort();
    assert!(v2 > 100, "`{module}` wrote {v2} results");
    assert!(
        got.len() > v2,
        "version 1 wrote results before the savepoint"
    );
    assert_eq!(got.len(), expected.len());
    let diff: Vec<(&String, &String)> = got
        .iter()
        .zip(&expected)
        .filter(|(a, b)| a != b)
        .take(3)
        .collect();
    assert!(
        diff.is_empty(),
        "results differ from an uninterrupted run: {diff:?}"
    );
}

/// A drained cancel ends event time, so every window open at the stop
/// fires (its counts add up to every record read); a stop without
/// draining (how a server stops a job it will restart from a savepoint)
/// fires none of them.
#[test]
fn a_stop_without_draining_fires_no_open_window() {
    let counted = |drain: bool| {
        let dir = tempfile::tempdir().unwrap();
        let flow = dataflow(&job_file(dir.path(), 1, Some(20_000)));
        let handle = weir_engine::run(flow).unwrap();
        std::thread::sleep(Duration::from_millis(700));
        if drain {
            handle.canceller().cancel();
        } else {
            handle.canceller().stop();
        }
        let out = handle.join();
        out.result.unwrap();
        let read = generated(&out.metrics);
        let windows: u64 = weir_tests::read_jsonl(&dir.path().join("out.jsonl"))
            .iter()
            .map(|w| w["value"]["count"].as_u64().unwrap())
            .sum();
        (read, windows)
    };
    let (read, counted_all) = counted(true);
    assert!(read > 0 && read < 60_000, "read {read}");
    assert_eq!(
        counted_all, read,
        "drained: every record read is in a fired window"
    );
    let (read, counted_some) = counted(false);
    assert!(read > 0 && read < 60_000, "read {read}");
    // The open windows (one per key, at least) did not fire.
    assert!(
        counted_some + 37 <= read,
        "stopped: {counted_some} of {read} records in fired windows"
    );
}
