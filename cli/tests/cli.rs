//! The `weir` binary, as a user runs it.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn weir(args: &[&str]) -> Output {
    let root = root();
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .env("WEIR_CACHE_DIR", root.join("target/test-module-cache"))
        .env("WEIR_MODULE_PATH", root.join("target/udfs"))
        .current_dir(&root)
        .output()
        .expect("weir runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn the_demo_job_runs_to_completion_with_visible_output() {
    let out = weir(&["run", "udfs/jobs/bids-demo.toml"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    // Every 2,000th of the 100K-odd expensive bids is printed, as envelopes.
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= 40, "{} lines", lines.len());
    for l in &lines {
        assert!(
            ["low", "mid", "high"].contains(&l["value"]["band"].as_str().unwrap()),
            "{l}"
        );
        assert_eq!(l["headers"]["nexmark.type"], "bid");
    }
    assert!(stderr.contains("job `bids-demo` finished"), "{stderr}");
    assert!(stderr.contains("price-band"), "{stderr}");
}

#[test]
fn a_bad_job_file_exits_2_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("bad.toml");
    std::fs::write(&job, "[source.s]\nkind = \"generator\"\ncount = 1\nfrobnicate = true\n\n[sink.o]\ninput = \"s\"\nkind = \"stdout\"\n").unwrap();
    let out = weir(&["run", job.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("bad.toml:4: source `s`: unknown field `frobnicate`"),
        "{stderr}"
    );
}

#[test]
fn a_failing_guest_exits_1_naming_operator_and_module() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("trap.toml");
    std::fs::write(
        &job,
        "[source.s]\nkind = \"generator\"\ncount = 10\n\n[operator.bad]\ninput = \"s\"\nmodule = \"misbehave\"\nconfig = { trigger = \"k3\" }\n\n[sink.o]\ninput = \"bad\"\nkind = \"stdout\"\n",
    )
    .unwrap();
    let out = weir(&["run", "--quiet", job.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("operator `bad` (subtask 0): module `misbehave.wasm` failed in `map-batch`: guest trapped"), "{stderr}");
    assert!(stderr.contains("refusing record 3 on purpose"), "{stderr}");
}

#[test]
fn udf_inspect_reports_the_world() {
    let out = weir(&["udf", "inspect", "--json", "target/udfs/split-words.wasm"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "flat-map");
    assert!(v["digest"].as_str().unwrap().starts_with("sha256:"));
}
