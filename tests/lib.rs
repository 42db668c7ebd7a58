//! Shared helpers of the integration tests.
//!
//! The tests run real components built from `udfs/` by
//! `weir udf build udfs/rust/*/* udfs/python/*` (the README's test command does
//! it first); a missing component fails the test with that instruction.

#![allow(clippy::unwrap_used)]

pub mod etcd;
pub mod kafka;
pub mod s3;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use weir_record::RecordBatch;
use weir_sandbox::{Sandbox, SandboxConfig};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Where `weir udf build` puts components.
pub fn udf_dir() -> PathBuf {
    std::env::var_os("WEIR_TEST_UDF_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/udfs"))
}

/// The built component `name`; panics with the build command if missing.
pub fn udf(name: &str) -> PathBuf {
    let p = udf_dir().join(format!("{name}.wasm"));
    assert!(
        p.is_file(),
        "component `{}` is missing: run `weir udf build udfs/rust/*/* udfs/python/*` from the repository root first",
        p.display()
    );
    p
}

/// Runs the job file `file` to its end, with the test binary's sandbox and
/// the built components.
///
/// # Errors
/// The job file is invalid, or a module cannot be found or loaded.
pub fn run_job(file: &Path) -> Result<weir_engine::JobOutcome, weir_job::JobError> {
    let spec = weir_job::read_job(file)?;
    let modules = weir_job::ModulePath::new(vec![udf_dir()]);
    let prepared = weir_job::prepare(spec, sandbox(), &modules)?;
    Ok(weir_engine::run(prepared.dataflow)
        .expect("the job starts")
        .join())
}

/// One sandbox for the whole test binary (its instance pool reserves address
/// space, so tests share it), with a compilation cache under `target/`.
pub fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        Sandbox::new(SandboxConfig {
            cache_dir: Some(root().join("target/test-module-cache")),
            ..SandboxConfig::default()
        })
        .expect("the sandbox starts")
    })
}

/// A batch of `(key, value, timestamp)` rows.
pub fn batch(rows: &[(&str, &str, i64)]) -> RecordBatch {
    let mut b = weir_record::BatchBuilder::default();
    for (k, v, t) in rows {
        b.push(k.as_bytes(), v.as_bytes(), *t);
    }
    b.finish()
}

/// The lines of a JSON Lines file, parsed.
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

/// The lines of a file, sorted (none if it does not exist).
pub fn sorted_lines(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

/// JSON with object keys sorted, to compare values whatever their key order.
pub fn canonical(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(m) => {
            let sorted: std::collections::BTreeMap<&String, String> =
                m.iter().map(|(k, v)| (k, canonical(v))).collect();
            let parts: Vec<String> = sorted
                .iter()
                .map(|(k, v)| format!("{}:{v}", serde_json::Value::from(k.as_str())))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        other => other.to_string(),
    }
}

/// A component exporting the filter interface name whose one core module
/// defines `functions` empty functions.
pub fn many_functions(functions: usize) -> Vec<u8> {
    let mut text = String::with_capacity(functions * 8 + 256);
    text.push_str("(component (core module $m");
    for _ in 0..functions {
        text.push_str(" (func)");
    }
    text.push_str(
        r#") (core instance (instantiate $m)) (instance $e) (export "weir:udf/filter@0.1.0" (instance $e)))"#,
    );
    wat::parse_str(&text).expect("valid WAT")
}
