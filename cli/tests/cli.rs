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

/// `weir ARGS` with the test module cache and the built UDFs, run from the
/// repository root.
fn command(args: &[&str]) -> Command {
    let root = root();
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir"));
    c.args(args)
        .env("WEIR_CACHE_DIR", root.join("target/test-module-cache"))
        .env("WEIR_MODULE_PATH", root.join("target/udfs"))
        .current_dir(&root);
    c
}

fn weir(args: &[&str]) -> Output {
    command(args).output().expect("weir runs")
}

/// Starts `weir ARGS` in the background, output discarded.
fn spawn_weir(args: &[&str]) -> std::process::Child {
    command(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("weir starts")
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

#[test]
fn sigint_stops_the_sources_drains_and_prints_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("long.toml");
    let out = dir.path().join("out.jsonl");
    std::fs::write(
        &job,
        format!(
            "[source.s]\nkind = \"generator\"\ncount = 100000000\nrate = 50000\n\n[sink.o]\ninput = \"s\"\nkind = \"file\"\npath = \"{}\"\n",
            out.display()
        ),
    )
    .unwrap();
    let root = root();
    let child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "--quiet", job.to_str().unwrap()])
        .env("WEIR_CACHE_DIR", root.join("target/test-module-cache"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("was stopped before its sources ended"),
        "{stderr}"
    );
    // The sink was finished (flushed), not killed mid-write; the exact
    // read-equals-written check is in the engine's cancellation test.
    let lines = std::fs::read_to_string(&out).unwrap().lines().count();
    assert!(lines > 0, "{stderr}");
    assert!(stderr.contains("finished in"), "{stderr}");
}

#[test]
fn udf_wit_writes_the_whole_package_as_in_the_repository() {
    let dir = tempfile::tempdir().unwrap();
    let out = weir(&["udf", "wit", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut count = 0;
    for entry in std::fs::read_dir(root().join("wit")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        let written = std::fs::read_to_string(dir.path().join(name))
            .unwrap_or_else(|_| panic!("`weir udf wit` did not write {name:?}"));
        assert_eq!(written, std::fs::read_to_string(&path).unwrap(), "{name:?}");
        count += 1;
    }
    assert!(count >= 4);
}

#[test]
fn udf_inspect_names_the_event_time_worlds() {
    for (file, world) in [
        ("ad-ctr", "aggregate-operator"),
        ("fraud-detector", "keyed-process-operator"),
        ("session-stats", "process-window-operator"),
    ] {
        let out = weir(&["udf", "inspect", &format!("target/udfs/{file}.wasm")]);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(stdout.contains(world), "{stdout}");
    }
}

fn window_job(dir: &Path, rate: Option<u64>) -> PathBuf {
    window_job_with(dir, rate, 1)
}

fn window_job_with(dir: &Path, rate: Option<u64>, sources: usize) -> PathBuf {
    window_job_into(dir, rate, sources, "file")
}

fn window_job_into(dir: &Path, rate: Option<u64>, sources: usize, sink: &str) -> PathBuf {
    let rate = rate.map_or(String::new(), |r| format!("rate = {r}"));
    let format = if sink == "file" {
        "format = \"envelope\""
    } else {
        ""
    };
    let text = format!(
        r#"
[job]
name = "killed"

[source.gen]
kind = "generator"
count = 30_000
keys = 13
interval_ms = 7
batch_size = 100
parallelism = {sources}
{rate}
watermark = {{ strategy = "monotonous" }}

[operator.count]
input = "gen"
module = "bid-count"
parallelism = 2
window = {{ type = "tumbling", size = "2s" }}

[sink.out]
input = "count"
kind = "{sink}"
path = "out.jsonl"
{format}
"#
    );
    let f = dir.join("job.toml");
    std::fs::write(&f, text).unwrap();
    f
}

fn sorted_lines(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn latest_checkpoint(state: &Path) -> u64 {
    std::fs::read_dir(state.join("checkpoints"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let id: u64 = n.strip_prefix("chk-")?.parse().ok()?;
            e.path().join("_metadata").is_file().then_some(id)
        })
        .max()
        .unwrap_or(0)
}

/// Starts `weir ARGS` twice, each time SIGKILLing it a random
/// `min_ms..min_ms + spread_ms` after it wrote a new checkpoint; returns
/// the delays.
fn kill_twice_after_checkpoints(
    args: &[&str],
    state: &Path,
    min_ms: u64,
    spread_ms: u64,
) -> Vec<u64> {
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    let mut killed_after = Vec::new();
    for _ in 0..2 {
        let before = latest_checkpoint(state);
        let mut child = spawn_weir(args);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while latest_checkpoint(state) <= before && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(
            latest_checkpoint(state) > before,
            "a new checkpoint was written"
        );
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let ms = min_ms + seed % spread_ms;
        std::thread::sleep(std::time::Duration::from_millis(ms));
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job ended before it could be killed (killed after {killed_after:?} ms)"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        killed_after.push(ms);
    }
    killed_after
}

/// Waits up to `secs` for `child`; kills it then (`None`).
fn wait_or_kill(child: &mut std::process::Child, secs: u64) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn sigkill_at_random_moments_then_restart_gives_exactly_the_uninterrupted_results() {
    kill_and_restart("heap");
}

#[test]
fn sigkill_and_restart_with_state_in_rocksdb() {
    kill_and_restart("rocksdb");
}

#[test]
fn sigkill_and_restart_with_unaligned_checkpoints() {
    // Two sources feed each window subtask: in-flight records are saved.
    kill_and_restart_with("heap", 2, "unaligned");
}

#[test]
fn sigkill_and_restart_with_the_idempotent_upsert_sink() {
    // No transactions and no truncation: rows recomputed after a restart
    // overwrite themselves.
    kill_and_restart_into("heap", 1, "aligned", "upsert");
}

fn kill_and_restart(backend: &str) {
    kill_and_restart_with(backend, 1, "aligned");
}

fn kill_and_restart_with(backend: &str, sources: usize, mode: &str) {
    kill_and_restart_into(backend, sources, mode, "file");
}

fn kill_and_restart_into(backend: &str, sources: usize, mode: &str, sink: &str) {
    let reference = tempfile::tempdir().unwrap();
    let out = weir(&[
        "run",
        "-q",
        window_job_with(reference.path(), None, sources)
            .to_str()
            .unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let expected = sorted_lines(&reference.path().join("out.jsonl"));
    assert!(expected.len() > 50);

    let dir = tempfile::tempdir().unwrap();
    let job = window_job_into(dir.path(), Some(6_000), sources, sink);
    let state = dir.path().join("state");
    let args = [
        "run",
        "-q",
        job.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--checkpoint-interval",
        "100ms",
        "--state-backend",
        backend,
        "--checkpoint-mode",
        mode,
    ];
    let killed_after = kill_twice_after_checkpoints(&args, &state, 50, 700);
    // The third start resumes from the latest checkpoint and runs to the end.
    let out = weir(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("restoring from"),
        "{}",
        text(&out.stderr)
    );
    if backend == "rocksdb" {
        let left = std::fs::read_dir(state.join("rocksdb"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(left, 0, "killed runs' databases are cleaned up");
    }
    assert_eq!(
        sorted_lines(&dir.path().join("out.jsonl")),
        expected,
        "after SIGKILLs {killed_after:?} ms after a checkpoint"
    );
}

#[test]
fn a_savepoint_of_a_running_job_restores_at_another_parallelism() {
    let reference = tempfile::tempdir().unwrap();
    let out = weir(&[
        "run",
        "-q",
        window_job(reference.path(), None).to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let expected = sorted_lines(&reference.path().join("out.jsonl"));

    let dir = tempfile::tempdir().unwrap();
    let job = window_job(dir.path(), Some(6_000));
    let state = dir.path().join("state");
    let mut child = spawn_weir(&[
        "run",
        "-q",
        job.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--checkpoint-interval",
        "1h",
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !state.is_dir() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let sp = weir(&["savepoint", "--state-dir", state.to_str().unwrap()]);
    assert!(sp.status.success(), "{}", text(&sp.stderr));
    let path = text(&sp.stdout).trim().to_string();
    assert!(path.contains("savepoints/sp-"), "{path}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the job keeps running after a savepoint"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    // Restore with the window at parallelism 3 instead of 2, and the state
    // in RocksDB instead of on the heap.
    let text_job = std::fs::read_to_string(&job)
        .unwrap()
        .replace("parallelism = 2", "parallelism = 3");
    std::fs::write(&job, text_job).unwrap();
    let out = weir(&[
        "run",
        "-q",
        job.to_str().unwrap(),
        "--from-savepoint",
        &path,
        "--state-backend",
        "rocksdb",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(sorted_lines(&dir.path().join("out.jsonl")), expected);

    // Without a running job, a savepoint request times out with a clear error.
    let out = weir(&[
        "savepoint",
        "--state-dir",
        state.to_str().unwrap(),
        "--timeout",
        "200ms",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("is a job running with"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_failing_job_is_restarted_from_its_checkpoint_then_gives_up() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.jsonl"),
        "{\"v\":\"ok\"}\n{\"v\":\"boom\"}\n",
    )
    .unwrap();
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        r#"
[source.lines]
kind = "file"
path = "in.jsonl"

[operator.fail]
input = "lines"
module = "misbehave"
config = { mode = "error" }

[sink.out]
input = "fail"
kind = "file"
path = "out.jsonl"
"#,
    )
    .unwrap();
    let state = dir.path().join("state");
    let out = weir(&[
        "run",
        "-q",
        job.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--restart-attempts",
        "2",
        "--restart-delay",
        "10ms",
        "--restart-strategy",
        "exponential",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("(attempt 1 of 2)"), "{err}");
    assert!(err.contains("(attempt 2 of 2)"), "{err}");
    assert!(
        err.contains("restarting in 20ms"),
        "exponential backoff: {err}"
    );
    assert_eq!(err.matches("operator `fail`").count(), 3, "{err}");
}

/// The fault test of the Kafka pipeline: Kafka → keyed window → Kafka with
/// exactly-once delivery, killed with SIGKILL twice at random moments after
/// a checkpoint and restarted; a `read_committed` consumer (kcat) then
/// finds every window's count exactly once, equal to the input's.
#[test]
fn kafka_exactly_once_survives_sigkill_twice() {
    use weir_tests::kafka::{
        Broker, assert_same_windows, counted_windows, kafka_job, sample_input, window_counts,
    };
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    // One partition per source subtask: records arrive in order, windows
    // fire and transactions commit while the job runs, so killed runs have
    // committed output that the restarted ones must not repeat.
    broker.create_topic("in", 2);
    broker.create_topic("out", 3);
    let records = sample_input(40_000, 23);
    broker.produce("in", &records);
    // Two source subtasks at 5,000 records/s each: about 4 s per full run.
    let job = kafka_job(
        dir.path(),
        &broker.bootstrap(),
        "exactly-once",
        Some(5_000),
        1_000,
    );
    let state = dir.path().join("state");
    let args = [
        "run",
        "-q",
        job.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--checkpoint-interval",
        "100ms",
    ];
    let killed_after = kill_twice_after_checkpoints(&args, &state, 20, 900);
    // The last start resumes and reads to the end of the topic (killed
    // after two minutes, with its output shown, if it does not).
    let err = dir.path().join("final.err");
    let mut child = command(&args)
        .env("RUST_LOG", "warn,weir_kafka=debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let status = wait_or_kill(&mut child, 120);
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{stderr}");
    assert!(stderr.contains("restoring from"), "{stderr}");
    assert_same_windows(
        &counted_windows(&broker.read_committed("out")),
        &window_counts(&records),
        &format!("after SIGKILLs {killed_after:?} ms after a checkpoint"),
    );
}

/// The ad-CTR example on Kafka, as its job file documents it: topics
/// created, the sample events written and the results read with `weir
/// kafka`; results and late events equal the file example's golden output.
#[test]
fn the_ad_ctr_example_runs_on_kafka_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let broker = weir_tests::kafka::Broker::start(dir.path());
    let kafka = |args: &[&str]| {
        let out = command(args)
            .env("WEIR_KAFKA", broker.bootstrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "weir {args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    for topic in ["ad-events", "ad-ctr", "ad-late"] {
        kafka(&["kafka", "create-topic", topic]);
    }
    kafka(&[
        "kafka",
        "produce",
        "--topic",
        "ad-events",
        "udfs/examples/ad-ctr/input.jsonl",
        "--key-field",
        "campaign",
        "--timestamp-field",
        "ts",
    ]);
    let state = dir.path().join("state");
    kafka(&[
        "run",
        "-q",
        "udfs/examples/ad-ctr/kafka.toml",
        "--state-dir",
        state.to_str().unwrap(),
        "--checkpoint-interval",
        "100ms",
    ]);
    for (topic, golden) in [("ad-ctr", "results.jsonl"), ("ad-late", "late.jsonl")] {
        let got: Vec<serde_json::Value> = kafka(&["kafka", "consume", "--topic", topic])
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                let o = v.as_object_mut().unwrap();
                o.remove("partition");
                o.remove("offset");
                if o["headers"].as_object().is_some_and(|h| h.is_empty()) {
                    o.remove("headers");
                }
                v
            })
            .collect();
        let expected: Vec<serde_json::Value> =
            std::fs::read_to_string(root().join("udfs/examples/ad-ctr/expected").join(golden))
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
        assert_eq!(got, expected, "topic {topic}");
    }
}

/// The broker is killed and restarted (its data on S3-compatible storage,
/// so it keeps it) while a Kafka → window → Kafka exactly-once job runs:
/// the job fails over to its checkpoint and restarts as often as needed,
/// and a `read_committed` consumer then finds every window's count once.
#[test]
fn a_kafka_job_recovers_from_a_broker_restart() {
    use weir_tests::kafka::{
        Broker, assert_same_windows, counted_windows, kafka_job, sample_input, window_counts,
    };
    let s3 = weir_tests::s3::S3Server::start("tansu");
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start_with(dir.path(), "s3://tansu/", s3.env());
    broker.create_topic("in", 2);
    broker.create_topic("out", 2);
    let records = sample_input(20_000, 23);
    broker.produce("in", &records);
    let job = kafka_job(
        dir.path(),
        &broker.bootstrap(),
        "exactly-once",
        Some(4_000),
        1_000,
    );
    let state = dir.path().join("state");
    let err = dir.path().join("job.err");
    let mut child = command(&[
        "run",
        "-q",
        job.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--checkpoint-interval",
        "100ms",
        "--restart-attempts",
        "20",
        "--restart-delay",
        "500ms",
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::fs::File::create(&err).unwrap())
    .spawn()
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while latest_checkpoint(&state) < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(latest_checkpoint(&state) >= 3, "the job checkpoints");
    assert!(child.try_wait().unwrap().is_none(), "the job still runs");
    broker.restart();
    let status = wait_or_kill(&mut child, 180);
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{stderr}");
    assert_same_windows(
        &counted_windows(&broker.read_committed("out")),
        &window_counts(&records),
        &format!("after a broker restart\n{stderr}"),
    );
}

/// `weir serve` on free ports: (child, gRPC endpoint, metrics address).
fn start_server(data: &Path) -> (std::process::Child, String, String) {
    let (child, endpoint, metrics) = spawn_server(data, &["--metrics-listen", "127.0.0.1:0"]);
    let metrics = metrics
        .strip_prefix("http://")
        .and_then(|m| m.split('/').next())
        .expect("metrics over http")
        .to_string();
    (child, endpoint, metrics)
}

/// `weir serve` with the API on a free loopback port and `args`: (child,
/// gRPC endpoint, what it printed after "metrics on ").
fn spawn_server(data: &Path, args: &[&str]) -> (std::process::Child, String, String) {
    use std::io::BufRead;
    let mut all = vec![
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--checkpoint-interval",
        "200ms",
    ];
    all.extend_from_slice(args);
    let mut child = command(&all)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("weir serve starts");
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut endpoint, mut metrics) = (None, None);
    while endpoint.is_none() {
        let line = lines
            .next()
            .expect("weir serve prints where it listens")
            .unwrap();
        if let Some(rest) = line.strip_prefix("metrics on ") {
            metrics = Some(rest.to_string());
        }
        if let Some(rest) = line.strip_prefix("weir serve: listening on ") {
            endpoint = Some(rest.split(' ').next().unwrap().to_string());
        }
    }
    // Keep draining stderr so the server never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    (child, endpoint.unwrap(), metrics.unwrap_or_default())
}

/// `weir ARGS` against the server at `endpoint` with `token`.
fn remote_as(endpoint: &str, token: &str, args: &[&str]) -> Output {
    command(args)
        .env("WEIR_ENDPOINT", endpoint)
        .env("WEIR_TOKEN", token.trim())
        .output()
        .unwrap()
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

#[test]
fn a_tenant_uploads_a_module_and_runs_a_job_on_weir_serve() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut server, endpoint, metrics) = start_server(&data);
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let remote = |token: &str, args: &[&str]| remote_as(&endpoint, token, args);
    let ok = |out: Output| {
        assert!(
            out.status.success(),
            "stdout:\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    let created = ok(remote(
        &admin,
        &["tenant", "create", "acme", "--max-jobs", "2"],
    ));
    let token = created
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap()
        .to_string();
    let listed: serde_json::Value =
        serde_json::from_str(&ok(remote(&admin, &["tenant", "list", "--json"]))).unwrap();
    assert_eq!(listed[0]["name"], "acme");
    assert_eq!(listed[0]["quotas"]["max_jobs"], 2);

    let uploaded = ok(remote(
        &token,
        &[
            "udf",
            "upload",
            "target/udfs/bid-count.wasm",
            "--version",
            "1.0.0",
        ],
    ));
    assert!(
        uploaded.contains("uploaded bid-count@1.0.0: aggregate operator"),
        "{uploaded}"
    );
    let modules: serde_json::Value =
        serde_json::from_str(&ok(remote(&token, &["udf", "list", "--json"]))).unwrap();
    assert_eq!(modules[0]["name"], "bid-count");
    let inspected: serde_json::Value = serde_json::from_str(&ok(remote(
        &token,
        &["udf", "inspect", "bid-count", "--json"],
    )))
    .unwrap();
    assert_eq!(inspected["world"], "weir:udf/aggregate-operator@0.1.0");

    let job_file = dir.path().join("job.toml");
    std::fs::write(
        &job_file,
        r#"[job]
name = "served"

[source.gen]
kind = "generator"
count = 5_000_000
keys = 37
interval_ms = 3
rate = 20_000
watermark = { strategy = "monotonous" }

[operator.count]
input = "gen"
module = "bid-count@1.0.0"
window = { type = "tumbling", size = "1s" }

[sink.out]
input = "count"
kind = "file"
path = "out.jsonl"
"#,
    )
    .unwrap();
    let submitted: serde_json::Value = serde_json::from_str(&ok(remote(
        &token,
        &["job", "submit", job_file.to_str().unwrap(), "--json"],
    )))
    .unwrap();
    let id = submitted["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let status: serde_json::Value =
            serde_json::from_str(&ok(remote(&token, &["job", "status", &id, "--json"]))).unwrap();
        if status["records_read"].as_u64().unwrap() > 0
            && status["last_checkpoint"].as_u64().unwrap() > 0
        {
            assert_eq!(status["state"], "running");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let human = ok(remote(&token, &["job", "status", &id]));
    assert!(
        human.contains("count") && human.contains("module count: bid-count@1.0.0"),
        "{human}"
    );
    let scraped = http_get(&metrics, "/metrics");
    assert!(
        scraped.contains(&format!(
            "weir_records_in_total{{job=\"{id}\",operator=\"count\",tenant=\"acme\"}}"
        )),
        "{scraped}"
    );
    assert!(
        scraped.contains("weir_checkpoint_last_size_bytes"),
        "{scraped}"
    );
    assert!(
        scraped.contains(&format!(
            "weir_sink_event_lag_seconds{{job=\"{id}\",operator=\"out\",quantile=\"0.99\",tenant=\"acme\"}}"
        )),
        "{scraped}"
    );
    let sp = ok(remote(&token, &["job", "savepoint", &id]));
    assert!(sp.trim().starts_with(&format!("{id}/sp-")), "{sp}");
    assert!(ok(remote(&token, &["job", "savepoints", &id])).contains(sp.trim()));
    let cancelled: serde_json::Value =
        serde_json::from_str(&ok(remote(&token, &["job", "cancel", &id, "--json"]))).unwrap();
    assert_eq!(cancelled["state"], "cancelled");
    assert!(ok(remote(&token, &["job", "list"])).contains(&id));
    assert!(
        ok(remote(&token, &["udf", "rm", "bid-count@1.0.0"])).contains("deleted bid-count@1.0.0")
    );

    // Errors a user can act on, with exit code 2.
    let out = remote("weir_wrong", &["job", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not authenticated: unknown API token"),
        "{}",
        text(&out.stderr)
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[job]\nname = \"x\"\n\n[source.s]\nkind = \"nope\"\n").unwrap();
    let out = remote(&token, &["job", "submit", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("{}:5:", bad.display())) && err.contains("source `s`"),
        "{err}"
    );
    let out = command(&["job", "list", "--endpoint", "127.0.0.1:1", "--token", "x"])
        .output()
        .unwrap();
    assert!(
        text(&out.stderr).contains("cannot connect to the weir server at `http://127.0.0.1:1`"),
        "{}",
        text(&out.stderr)
    );

    // SIGTERM: a clean stop.
    std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    let status = wait_or_kill(&mut server, 60).expect("weir serve stops on SIGTERM");
    assert!(status.success(), "{status:?}");
}

/// `weir udf new` in every language gives a project that `weir udf build`
/// turns into a component of the chosen kind, as it is.
#[test]
fn a_new_udf_of_every_language_builds_into_a_component() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    for (lang, kind, world) in [
        ("c", "map", "map-operator"),
        ("zig", "filter", "filter-operator"),
        ("go", "keyed", "keyed-process-operator"),
        ("python", "aggregate", "aggregate-operator"),
        ("js", "flat-map", "flat-map-operator"),
        ("rust", "map", "map-operator"),
    ] {
        let name = format!("my-{lang}-op");
        let project = dir.path().join(&name);
        let o = weir(&[
            "udf",
            "new",
            project.to_str().unwrap(),
            "--lang",
            lang,
            "--kind",
            kind,
        ]);
        assert!(o.status.success(), "{lang}: {}", text(&o.stderr));
        let o = weir(&[
            "udf",
            "build",
            project.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{lang}: {}", text(&o.stderr));
        let wasm = out.join(format!("{name}.wasm"));
        let o = weir(&["udf", "inspect", "--json", wasm.to_str().unwrap()]);
        assert!(o.status.success(), "{lang}: {}", text(&o.stderr));
        let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            info["world"],
            format!("weir:udf/{world}@0.1.0"),
            "{lang}: {info}"
        );
    }
    // A second `new` into a project that exists is refused, naming it.
    let project = dir.path().join("my-c-op");
    let o = weir(&["udf", "new", project.to_str().unwrap(), "--lang", "c"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("exists and is not empty"),
        "{}",
        text(&o.stderr)
    );
    let o = weir(&[
        "udf",
        "new",
        dir.path().join("x").to_str().unwrap(),
        "--lang",
        "cobol",
    ]);
    assert!(
        text(&o.stderr).contains("no templates for language `cobol`"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn bench_nexmark_reports_cost_and_paced_latency() {
    // Paced: events stamped with the wall clock, so the sink's event time
    // lag is the latency.
    let out = weir(&[
        "bench", "nexmark", "--query", "q0,q3", "--events", "40000", "--rate", "40000", "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "one line per query");
    for (row, q) in rows.iter().zip(["q0", "q3"]) {
        assert_eq!(row["query"], q);
        assert_eq!(row["events"], 40_000);
        assert!(row["results"].as_u64().unwrap() > 0, "{row}");
        assert!(row["cpu_seconds"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["peak_rss_mib"].as_f64().unwrap() > 1.0, "{row}");
        let (p50, p99) = (
            row["p50_latency_ms"].as_u64().unwrap(),
            row["p99_latency_ms"].as_u64().unwrap(),
        );
        // Not a timing claim: the lag is measured from the wall clock, so
        // it cannot be a synthetic event time's months.
        assert!(p50 <= p99 && p99 < 600_000, "{row}");
    }
    // q0 keeps every bid: 46 of every 50 events.
    assert_eq!(rows[0]["results"], 36_800);

    // As fast as possible on fixed event times: no latency to tell.
    let out = weir(&[
        "bench", "nexmark", "--query", "q2", "--events", "20000", "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let row: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert!(row.get("p99_latency_ms").is_none(), "{row}");

    let out = weir(&["bench", "nexmark", "--query", "q6"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown Nexmark query `q6`"),
        "{}",
        text(&out.stderr)
    );
}

/// A GET over TLS that trusts only `ca` (PEM), with an optional bearer
/// token: the status line and body.
fn https_get(addr: &str, path: &str, ca: &[u8], token: Option<&str>) -> Result<String, String> {
    use rustls::pki_types::pem::PemObject;
    use std::io::{Read, Write};
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(tls, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n").map_err(|e| e.to_string())?;
    let mut body = String::new();
    match tls.read_to_string(&mut body) {
        Ok(_) => Ok(body),
        // A server that closes without close_notify still answered.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !body.is_empty() => Ok(body),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn weir_serve_over_tls_is_verified_and_its_metrics_need_a_token_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    // Off loopback without TLS, the server refuses to start.
    let out = weir(&[
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "0.0.0.0:0",
        "--metrics-listen",
        "none",
    ]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("without TLS"), "{stderr}");

    // With a self-signed certificate; metrics on every interface.
    let (mut child, endpoint, printed) = spawn_server(
        &data,
        &["--metrics-listen", "0.0.0.0:0", "--tls-self-signed"],
    );
    assert!(printed.contains("token"), "{printed}");
    let port = printed
        .strip_prefix("https://0.0.0.0:")
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("metrics over https on 0.0.0.0: {printed}"));
    let metrics = format!("127.0.0.1:{port}");
    assert!(endpoint.starts_with("https://127.0.0.1:"), "{endpoint}");
    let cert = data.join("tls/server.crt");
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let list = |endpoint: &str, ca: Option<&Path>| {
        let mut c = command(&["tenant", "list"]);
        c.env("WEIR_ENDPOINT", endpoint)
            .env("WEIR_TOKEN", admin.trim());
        match ca {
            Some(ca) => c.env("WEIR_CA_CERT", ca),
            None => c.env_remove("WEIR_CA_CERT"),
        };
        c.output().unwrap()
    };

    // Pinned to the server's certificate: the call goes through.
    let out = list(&endpoint, Some(&cert));
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Not trusted (the system's roots, or another self-signed certificate):
    // refused before any token is sent.
    let out = list(&endpoint, None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot connect"),
        "{}",
        text(&out.stderr)
    );
    let other = tempfile::tempdir().unwrap();
    weir_server::tls::Identity::self_signed(other.path(), &[]).unwrap();
    let out = list(&endpoint, Some(&other.path().join("tls/server.crt")));
    assert!(!out.status.success());
    // Plain HTTP to the TLS port fails; a token is never sent in the clear
    // to an address off loopback.
    let out = list(&endpoint.replace("https://", "http://"), None);
    assert!(!out.status.success());
    let out = list("http://192.0.2.1:7070", None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("in the clear"),
        "{}",
        text(&out.stderr)
    );

    // /metrics over TLS: 401 without a token, 200 with the metrics token or
    // the admin's.
    let ca = std::fs::read(&cert).unwrap();
    let metrics_token = std::fs::read_to_string(data.join("metrics.token")).unwrap();
    let anonymous = https_get(&metrics, "/metrics", &ca, None).unwrap();
    assert!(
        anonymous.starts_with("HTTP/1.0 401") || anonymous.starts_with("HTTP/1.1 401"),
        "{anonymous}"
    );
    let wrong = https_get(&metrics, "/metrics", &ca, Some("not-the-token")).unwrap();
    assert!(wrong.contains(" 401 "), "{wrong}");
    for token in [metrics_token.trim(), admin.trim()] {
        let ok = https_get(&metrics, "/metrics", &ca, Some(token)).unwrap();
        assert!(ok.contains(" 200 "), "{ok}");
    }
    // Plain HTTP on the metrics port gets no answer.
    let plain = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&metrics).unwrap();
        let _ = write!(s, "GET /metrics HTTP/1.0\r\n\r\n");
        let mut bytes = Vec::new();
        let _ = s.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    };
    assert!(!plain.contains("HTTP/"), "{plain}");
    // An untrusted certificate: the handshake fails.
    let other_ca = std::fs::read(other.path().join("tls/server.crt")).unwrap();
    assert!(https_get(&metrics, "/metrics", &other_ca, Some(metrics_token.trim())).is_err());

    child.kill().unwrap();
    child.wait().unwrap();
}

/// `weir serve`, `weir run` and `weir udf inspect` compile in a helper
/// process (`weir __compile-helper`) whose memory and CPU the kernel
/// bounds: its artifact loads into the parent's engine and runs; a
/// compilation over the memory limit is refused naming it; one past the
/// time limit is killed, so nothing of it is ever compiled or cached.
#[test]
fn the_compile_helper_process_bounds_a_compilations_memory_and_time() {
    use std::time::{Duration, Instant};
    use weir_sandbox::{
        CompileBudget, Compiler, InstanceLabel, InstanceLimits, Sandbox, SandboxConfig,
        SandboxError,
    };
    let sandbox = |dir: &Path, budget: CompileBudget| {
        Sandbox::new(SandboxConfig {
            cache_dir: Some(dir.to_path_buf()),
            max_instances: 4,
            budget,
            compiler: Compiler::Process {
                program: env!("CARGO_BIN_EXE_weir").into(),
                args: vec!["__compile-helper".into()],
            },
            ..SandboxConfig::default()
        })
        .unwrap()
    };
    let artifacts = |dir: &Path| -> usize {
        walk(dir)
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
            .count()
    };

    // A real operator, compiled by the helper, runs in this process.
    let cache = tempfile::tempdir().unwrap();
    let s = sandbox(cache.path(), CompileBudget::default());
    let m = s.load_file(&weir_tests::udf("misbehave")).unwrap();
    assert_eq!(s.cache().stats().compiled, 1);
    assert_eq!(artifacts(cache.path()), 1);
    let label = InstanceLabel {
        job: "test".into(),
        operator: "m".into(),
        subtask: 0,
    };
    let config = vec![("mode".to_string(), "trap".to_string())];
    let mut inst = m
        .instantiate(label, InstanceLimits::default(), &config)
        .unwrap();
    let out = inst
        .process(weir_tests::batch(&[("a", "fine", 1), ("b", "fine", 2)]))
        .unwrap();
    assert_eq!(out.len(), 2);

    // Over the memory limit: refused, naming the module and the limit. A
    // 240 KB component of 60,000 empty functions, within the shape budget,
    // needs about 450 MB to compile (docs/benchmarks.md); the operator
    // above needs under 96 MiB.
    let small = tempfile::tempdir().unwrap();
    let s = sandbox(
        small.path(),
        CompileBudget {
            max_memory: 192 << 20,
            ..CompileBudget::default()
        },
    );
    s.load_file(&weir_tests::udf("misbehave")).unwrap();
    assert_eq!(artifacts(small.path()), 1);
    let bytes = weir_tests::many_functions(60_000);
    let e = s.load_bytes("hungry.wasm", &bytes).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, SandboxError::CompileMemory { .. }), "{msg}");
    assert_eq!(
        msg,
        "module `hungry.wasm` needed more than 192 MiB of memory to compile and was refused"
    );
    assert_eq!(artifacts(small.path()), 1);

    // Past the time limit: the helper is killed at once, so the component
    // is never compiled, not even later.
    let slow = tempfile::tempdir().unwrap();
    let s = sandbox(
        slow.path(),
        CompileBudget {
            compile_timeout: Duration::from_millis(300),
            ..CompileBudget::default()
        },
    );
    let started = Instant::now();
    let e = s.load_bytes("slow.wasm", &bytes).unwrap_err();
    let waited = started.elapsed();
    let msg = e.to_string();
    assert!(matches!(e, SandboxError::CompileTimeout { .. }), "{msg}");
    assert!(
        msg.contains("module `slow.wasm` took longer than 300ms to compile"),
        "{msg}"
    );
    // Compiling it takes the helper seconds (below): had it not been
    // killed, it would have cached an artifact in that time.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(s.cache().stats().compiled, 0);
    assert_eq!(artifacts(slow.path()), 0);
    let full = tempfile::tempdir().unwrap();
    let s = sandbox(full.path(), CompileBudget::default());
    // (Compiled in full, it is then refused for its world: it exports an
    // empty instance.)
    let started = Instant::now();
    let e = s.load_bytes("slow.wasm", &bytes).unwrap_err();
    assert!(matches!(e, SandboxError::WrongWorld { .. }), "{e}");
    assert!(
        started.elapsed() > waited + Duration::from_secs(1),
        "compiling took {:?}, the time limit {waited:?}: not a test of the kill",
        started.elapsed()
    );
    assert_eq!(s.cache().stats().compiled, 1);
    assert_eq!(artifacts(full.path()), 1);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            found.extend(walk(&p));
        } else {
            found.push(p);
        }
    }
    found
}

/// `weir serve` compiles uploads in its compile helper under the limits
/// its flags set: an upload that needs more memory is refused naming the
/// module and the limit, and a small one is accepted by the same server.
#[test]
fn weir_serve_refuses_an_upload_over_its_compile_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut server, endpoint, _) = spawn_server(&data, &["--compile-memory-mb", "192"]);
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let remote = |token: &str, args: &[&str]| remote_as(&endpoint, token, args);
    let created = remote(&admin, &["tenant", "create", "acme"]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    let token = text(&created.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("token: ").map(str::to_string))
        .unwrap();
    let hungry = dir.path().join("hungry.wasm");
    std::fs::write(&hungry, weir_tests::many_functions(60_000)).unwrap();
    let out = remote(
        &token,
        &[
            "udf",
            "upload",
            hungry.to_str().unwrap(),
            "--version",
            "1.0.0",
        ],
    );
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(
        err.contains("needed more than 192 MiB of memory to compile and was refused"),
        "{err}"
    );
    assert!(err.contains("hungry"), "{err}");
    let out = remote(
        &token,
        &[
            "udf",
            "upload",
            "target/udfs/bid-count.wasm",
            "--version",
            "1.0.0",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    server.kill().unwrap();
    let _ = server.wait();
}
