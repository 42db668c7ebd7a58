//! The golden examples in `udfs/examples/`: each folder holds a job file, an
//! out-of-order input and the expected output of every sink. A test runs the
//! job (its file sinks redirected to a temporary directory) and compares.
//!
//! Results are compared as multisets of records and, per key, in order: the
//! order of firings of one key is part of the semantics (a late update comes
//! after the first result), the interleaving of keys is not.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use weir_job::spec::SinkKind;
use weir_job::{ModulePath, prepare, read_job};
use weir_tests::{read_jsonl, root, sandbox, udf_dir};

/// Runs `udfs/examples/<name>/job.toml` with file sinks under a temp dir;
/// returns the temp dir.
fn run_example(name: &str) -> tempfile::TempDir {
    run_example_on(name, weir_state::Backend::Heap)
}

fn run_example_on(name: &str, backend: weir_state::Backend) -> tempfile::TempDir {
    let dir = root().join("udfs/examples").join(name);
    let mut spec = read_job(&dir.join("job.toml")).unwrap();
    let out = tempfile::tempdir().unwrap();
    spec.state_backend = match backend {
        weir_state::Backend::Heap => backend,
        weir_state::Backend::RocksDb { .. } => weir_state::Backend::RocksDb {
            dir: out.path().join("rocksdb"),
        },
    };
    for s in &mut spec.sinks {
        if let SinkKind::File(o) = &mut s.spec.kind {
            o.path = out.path().join(format!("{}.jsonl", s.name));
        }
    }
    let prepared = prepare(spec, sandbox(), &ModulePath::new(vec![udf_dir()])).unwrap();
    let outcome = weir_engine::run(prepared.dataflow).unwrap().join();
    outcome.result.unwrap();
    out
}

fn by_key(rows: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in rows {
        m.entry(r["key"].to_string())
            .or_default()
            .push(r.to_string());
    }
    m
}

/// Compares every `expected/<sink>.jsonl` of the example with the output.
fn check(name: &str, out: &Path) {
    let expected_dir = root().join("udfs/examples").join(name).join("expected");
    let mut checked = 0;
    for entry in std::fs::read_dir(&expected_dir).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let expected = read_jsonl(&path);
        let actual = read_jsonl(&out.join(&file));
        let sorted = |rows: &[Value]| {
            let mut v: Vec<String> = rows.iter().map(Value::to_string).collect();
            v.sort();
            v
        };
        assert_eq!(
            sorted(&actual),
            sorted(&expected),
            "{name}: {file} differs from the golden output"
        );
        assert_eq!(
            by_key(&actual),
            by_key(&expected),
            "{name}: {file} has the right records in the wrong order for some key"
        );
        checked += 1;
    }
    assert!(checked > 0, "{name} has no expected output");
}

#[test]
fn ad_ctr_tumbling_windows_with_lateness_and_a_late_side_output() {
    let out = run_example("ad-ctr");
    check("ad-ctr", out.path());
}

#[test]
fn sessions_merge_per_user_by_gap() {
    let out = run_example("sessions");
    check("sessions", out.path());
}

#[test]
fn fraud_detection_with_keyed_state_and_timers() {
    let out = run_example("fraud");
    check("fraud", out.path());
}

#[test]
fn every_example_gives_the_same_results_with_state_in_rocksdb() {
    for name in ["ad-ctr", "sessions", "fraud", "leaderboard"] {
        let out = run_example_on(
            name,
            weir_state::Backend::RocksDb {
                dir: std::path::PathBuf::new(),
            },
        );
        check(name, out.path());
    }
}

#[test]
fn leaderboard_top_ten_by_total_score() {
    let out = run_example("leaderboard");
    check("leaderboard", out.path());
}
