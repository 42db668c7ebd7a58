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

/// Every folder under `udfs/examples/` with a `job.toml`: a new example is
/// tested without being listed here.
fn examples() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("udfs/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("job.toml").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_example_gives_its_golden_output_with_state_on_the_heap() {
    let names = examples();
    assert!(names.len() >= 4, "{names:?}");
    for name in &names {
        let out = run_example(name);
        check(name, out.path());
    }
}

#[test]
fn every_example_gives_the_same_results_with_state_in_rocksdb() {
    for name in &examples() {
        let out = run_example_on(
            name,
            weir_state::Backend::RocksDb {
                dir: std::path::PathBuf::new(),
            },
        );
        check(name, out.path());
    }
}
