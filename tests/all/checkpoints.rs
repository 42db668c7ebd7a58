//! Checkpoints and recovery: a job stopped after a checkpoint and restored
//! from it produces exactly the output of a run without interruption —
//! nothing missing, nothing twice — also when the restored job runs the
//! window at another parallelism.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_engine::checkpoint::{self, CheckpointConfig};
use weir_job::{ModulePath, prepare, read_job};
use weir_tests::{sandbox, udf_dir};

fn job_file(dir: &Path, window_parallelism: usize, rate: Option<u64>) -> std::path::PathBuf {
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

fn sorted_lines(path: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn dataflow(file: &Path) -> weir_engine::Dataflow {
    let spec = read_job(file).unwrap();
    prepare(spec, sandbox(), &ModulePath::new(vec![udf_dir()]))
        .unwrap()
        .dataflow
}

#[test]
fn a_job_restored_from_a_checkpoint_finishes_exactly_once() {
    // Reference: one uninterrupted run.
    let reference = tempfile::tempdir().unwrap();
    let flow = dataflow(&job_file(reference.path(), 1, None));
    weir_engine::run(flow).unwrap().join().result.unwrap();
    let expected = sorted_lines(&reference.path().join("out.jsonl"));
    assert!(expected.len() > 100, "{} results", expected.len());

    for restored_parallelism in [1, 3] {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = dir.path().join("checkpoints");
        // First run: paced, checkpointing every 50 ms; stopped once five
        // checkpoints completed (what it wrote after the last one is cut
        // off at restore, as after a crash).
        let mut flow = dataflow(&job_file(dir.path(), 1, Some(20_000)));
        flow.checkpoints = Some(CheckpointConfig::new(
            &checkpoints,
            Duration::from_millis(50),
        ));
        let handle = weir_engine::run(flow).unwrap();
        let stats = handle.checkpoints().clone();
        let deadline = Instant::now() + Duration::from_secs(60);
        while stats.completed.load(std::sync::atomic::Ordering::SeqCst) < 5
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        handle.cancel();
        let first = handle.join();
        first.result.unwrap();
        let read = first.metrics[0].records_out;
        assert!(read < 60_000, "stopped before the end: read {read}");

        // Only the last 3 completed checkpoints are kept, and nothing
        // half-written looks complete.
        let kept = checkpoint::completed(&checkpoints);
        assert_eq!(kept.len(), 3, "{kept:?}");

        // Restore from the latest checkpoint and run to the end.
        let latest = checkpoint::latest(&checkpoints).expect("a completed checkpoint");
        let restored = checkpoint::read(&latest).unwrap();
        assert!(restored.id >= 2);
        let mut flow = dataflow(&job_file(dir.path(), restored_parallelism, None));
        flow.restore = Some(Arc::new(restored));
        // The checkpoint was taken on the heap; the rescaled run restores it
        // into RocksDB: snapshots do not depend on the backend.
        if restored_parallelism != 1 {
            flow.state_backend = weir_state::Backend::RocksDb {
                dir: dir.path().join("rocksdb"),
            };
        }
        let second = weir_engine::run(flow).unwrap().join();
        second.result.unwrap();
        // The source resumed from its checkpointed position instead of
        // starting over (window state and the sink's length did the rest).
        let resumed = second.metrics[0].records_out;
        assert!(
            resumed > 0 && resumed < 60_000,
            "the restored run read {resumed} of 60000"
        );

        assert_eq!(
            sorted_lines(&dir.path().join("out.jsonl")),
            expected,
            "restored at window parallelism {restored_parallelism}"
        );
    }
}
