//! `weir worker` and `weir cluster` against a real etcd on loopback.

#![allow(clippy::unwrap_used)]

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use weir_tests::etcd::EtcdServer;

/// `weir` with the test module cache and the built UDFs.
fn weir() -> Command {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir"));
    c.env("WEIR_CACHE_DIR", root.join("target/test-module-cache"))
        .env("WEIR_MODULE_PATH", root.join("target/udfs"));
    c
}

/// A `weir` process whose output lines (stdout and stderr) are collected.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        Running::start_with(args, &[])
    }

    /// Started with these environment variables.
    fn start_with(args: &[&str], env: &[(&str, String)]) -> Running {
        let mut child = weir()
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("weir starts");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for pipe in [
            Box::new(out) as Box<dyn std::io::Read + Send>,
            Box::new(err),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `text`; panics with what was seen.
    fn wait_for(&mut self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        if let Some(l) = self.seen.iter().find(|l| l.contains(text)) {
            return l.clone();
        }
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no line with `{text}` within {within:?}; saw:\n{}",
            self.seen.join("\n")
        );
    }

    /// Waits until `n` lines contain `text`; returns the `n`th.
    fn wait_for_nth(&mut self, text: &str, n: usize, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let found: Vec<&String> = self.seen.iter().filter(|l| l.contains(text)).collect();
            if found.len() >= n {
                return found[n - 1].clone();
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => break,
            }
        }
        panic!(
            "fewer than {n} lines with `{text}` within {within:?}; saw:\n{}",
            self.seen.join("\n")
        );
    }

    /// Everything the process printed, once it has exited.
    fn drain(&mut self) -> String {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "weir did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn workers(etcd: &str) -> String {
    let out = weir()
        .args(["cluster", "workers", "--etcd", etcd])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn worker(etcd: &str, id: &str, slots: &str) -> Running {
    worker_with(etcd, id, slots, &[])
}

fn worker_with(etcd: &str, id: &str, slots: &str, env: &[(&str, String)]) -> Running {
    let mut w = Running::start_with(
        &[
            "worker",
            "--etcd",
            etcd,
            "--id",
            id,
            "--slots",
            slots,
            "--lease-ttl",
            "2s",
        ],
        env,
    );
    w.wait_for(
        &format!("`{id}` joined the cluster"),
        Duration::from_secs(30),
    );
    w
}

#[test]
fn workers_join_leave_and_expire_with_their_lease() {
    let etcd = EtcdServer::start();
    let url = etcd.url.as_str();
    let mut w1 = worker(url, "w1", "2");
    let w2 = worker(url, "w2", "3");
    let list = workers(url);
    assert!(list.contains("w1") && list.contains("w2"), "{list}");
    assert!(list.contains("2 worker(s), 5 slot(s), 5 free"), "{list}");
    assert!(list.contains("ready"), "{list}");

    // A second worker with a live worker's id is refused, naming it.
    let out = weir()
        .args(["worker", "--etcd", url, "--id", "w1", "--lease-ttl", "2s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`w1` is registered already"), "{err}");

    // SIGTERM: the worker leaves at once (its lease is revoked).
    w1.signal("TERM");
    assert!(w1.wait(Duration::from_secs(10)).success());
    let list = workers(url);
    assert!(!list.contains("w1") && list.contains("w2"), "{list}");

    // SIGKILL: nothing leaves on its behalf; the lease expires.
    w2.signal("KILL");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let list = workers(url);
        if list.contains("no workers registered") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a killed worker is still listed after 15 s:\n{list}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_worker_cut_off_from_etcd_leaves_and_joins_again() {
    let etcd = EtcdServer::start();
    let mut w = worker(&etcd.url, "lonely", "1");
    etcd.pause();
    w.wait_for("lost its membership", Duration::from_secs(20));
    etcd.resume();
    w.wait_for("joined the cluster again", Duration::from_secs(30));
    assert!(workers(&etcd.url).contains("lonely"));
}

#[test]
fn an_unreachable_etcd_is_a_clear_error_not_a_hang() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let out = weir()
        .args([
            "worker",
            "--etcd",
            &url,
            "--etcd-timeout",
            "2s",
            "--id",
            "w",
        ])
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("worker `w` cannot join the cluster"), "{err}");
    assert!(err.contains(&url), "{err}");
    let out = weir()
        .args(["cluster", "workers", "--etcd", &url, "--etcd-timeout", "2s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&url));
}

fn nexmark_job(
    dir: &std::path::Path,
    query: weir_job::nexmark::Query,
    parallelism: usize,
) -> String {
    let job = weir_job::nexmark::NexmarkJob {
        query,
        events: 100_000,
        parallelism,
        rate: None,
        sink: "kind = \"file\"\npath = \"out.jsonl\"\nformat = \"value\"".into(),
    };
    let file = dir.join("job.toml");
    std::fs::write(&file, job.toml()).unwrap();
    file.display().to_string()
}

/// Nexmark q5's rows from a single-process `weir run` at `parallelism`.
fn single_process_rows(query: weir_job::nexmark::Query, parallelism: usize) -> Vec<String> {
    let single = tempfile::tempdir().unwrap();
    let job = nexmark_job(single.path(), query, parallelism);
    let out = weir().args(["run", &job]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = sorted_lines(&single.path().join("out.jsonl"));
    assert!(!rows.is_empty());
    rows
}

/// The Nexmark q5 job of [`nexmark_job`] paced at `rate` events/s (event
/// times unchanged), so that a cluster run is still going when a test
/// acts on it.
fn paced_q5(dir: &std::path::Path, parallelism: usize, rate: u64) -> String {
    let job = nexmark_job(dir, weir_job::nexmark::Query::Q5, parallelism);
    let text = std::fs::read_to_string(&job).unwrap().replace(
        "events = 100000",
        &format!("events = 100000\nrate = {rate}"),
    );
    assert!(text.contains("rate = "), "{text}");
    std::fs::write(&job, text).unwrap();
    job
}

fn sorted_lines(path: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    v.sort();
    v
}

#[test]
fn a_job_runs_over_three_worker_processes_and_gives_the_single_process_rows() {
    use weir_job::nexmark::Query;
    let etcd = EtcdServer::start();
    let url = etcd.url.as_str();
    let _workers: Vec<Running> = ["w1", "w2", "w3"]
        .iter()
        .map(|id| worker(url, id, "1"))
        .collect();

    let want = single_process_rows(Query::Q5, 3);

    let spread = tempfile::tempdir().unwrap();
    let job = nexmark_job(spread.path(), Query::Q5, 3);
    let out = weir()
        .args(["cluster", "run", "--etcd", url, &job])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("placed on w1 (1 slot(s)), w2 (1 slot(s)), w3 (1 slot(s))"),
        "{stdout}"
    );
    assert!(stdout.contains("finished on 3 worker(s)"), "{stdout}");
    assert_eq!(sorted_lines(&spread.path().join("out.jsonl")), want);

    // The slots are free again; a job needing more than there are is
    // refused, naming what it needs and what is free.
    let big = tempfile::tempdir().unwrap();
    let job = nexmark_job(big.path(), Query::Q5, 4);
    let out = weir()
        .args(["cluster", "run", "--etcd", url, &job])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs 4 slot(s) (its largest parallelism) and the cluster has 3 free of 3 on 3 worker(s)"),
        "{err}"
    );
}

#[test]
fn a_worker_killed_mid_job_fails_the_job_with_a_clear_error_not_a_hang() {
    use weir_job::nexmark::Query;
    let etcd = EtcdServer::start();
    let url = etcd.url.as_str();
    let mut workers: Vec<Running> = ["k1", "k2"].iter().map(|id| worker(url, id, "1")).collect();
    let dir = tempfile::tempdir().unwrap();
    // Paced: about a minute of events, so the job is surely running when
    // the worker dies.
    let job = weir_job::nexmark::NexmarkJob {
        query: Query::Q5,
        events: 3_000_000,
        parallelism: 2,
        rate: Some(50_000),
        sink: "kind = \"discard\"".into(),
    };
    let file = dir.path().join("job.toml");
    std::fs::write(&file, job.toml()).unwrap();
    let mut run = Running::start(&["cluster", "run", "--etcd", url, &file.display().to_string()]);
    run.wait_for("placed on", Duration::from_secs(60));
    workers[1].wait_for("runs its part of job", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(1));
    workers[1].signal("KILL");
    let status = run.wait(Duration::from_secs(60));
    assert_eq!(status.code(), Some(1));
    let failed = run.wait_for("failed:", Duration::from_secs(5));
    assert!(
        failed.contains("k2") || failed.contains("lost a remote producer"),
        "{failed}"
    );
    // The surviving worker's part ended too: its slot is free again.
    let ended = workers[0].wait_for(": its part of job", Duration::from_secs(30));
    eprintln!("controller: {failed}\nsurviving worker: {ended}");
}

/// A Nexmark q5 job over three of four workers, checkpointing into
/// `storage` (with `env` for every process); once a checkpoint is complete
/// one of its workers is killed with SIGKILL. The job restarts from the
/// checkpoint on the three left and gives exactly the single-process rows.
fn restarts_from_its_latest_checkpoint_when_a_worker_is_killed(
    storage: &str,
    env: &[(&str, String)],
) {
    use weir_job::nexmark::Query;
    let etcd = EtcdServer::start();
    let url = etcd.url.as_str();
    // Three slots for the job and a spare for its restart.
    let workers: Vec<Running> = ["f1", "f2", "f3", "f4"]
        .iter()
        .map(|id| worker_with(url, id, "1", env))
        .collect();

    let want = single_process_rows(Query::Q5, 3);

    let dir = tempfile::tempdir().unwrap();
    // Paced (about 5 s), so that the worker dies mid-job.
    let job = paced_q5(dir.path(), 3, 20000);
    let mut env = env.to_vec();
    env.push(("RUST_LOG", "warn,weir_engine::checkpoint=info".into()));
    let mut run = Running::start_with(
        &[
            "cluster",
            "run",
            "--etcd",
            url,
            &job,
            "--checkpoint-storage",
            storage,
            "--checkpoint-interval",
            "300ms",
        ],
        &env,
    );
    let placed = run.wait_for("placed on", Duration::from_secs(60));
    assert!(placed.contains("f2"), "{placed}");
    let first = run.wait_for(
        "checkpoint completed across 3 worker(s)",
        Duration::from_secs(60),
    );
    workers[1].signal("KILL");
    let status = run.wait(Duration::from_secs(180));
    let output = run.drain();
    assert!(status.success(), "{output}");
    let restarted = run.wait_for("restarting job", Duration::from_secs(1));
    assert!(
        restarted.contains(&format!("from {}/chk-", storage.trim_end_matches('/'))),
        "{restarted}"
    );
    run.wait_for("finished on 3 worker(s)", Duration::from_secs(1));
    // Placed again on the workers left, the spare included.
    let placements: Vec<&String> = run
        .seen
        .iter()
        .filter(|l| l.contains("placed on"))
        .collect();
    assert_eq!(placements.len(), 2, "{placements:?}");
    assert!(
        placements[1].contains("f4") && !placements[1].contains("f2"),
        "{placements:?}"
    );
    eprintln!("{first}\n{restarted}");
    // Every row exactly once: the restart resumed from the checkpoint, the
    // file sink cut back what followed it.
    let got = sorted_lines(&dir.path().join("out.jsonl"));
    assert_eq!(got.len(), want.len(), "row count");
    assert!(got == want, "the rows differ from a single-process run");
}

#[test]
fn a_checkpointing_job_restarts_from_its_latest_checkpoint_when_a_worker_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("checkpoints");
    restarts_from_its_latest_checkpoint_when_a_worker_is_killed(
        &storage.display().to_string(),
        &[],
    );
    // What the restart came from is in the directory, complete.
    assert!(last_checkpoint(&storage) > 0);
}

/// The same with the checkpoints in S3-compatible object storage (a real
/// server on loopback), shared by the workers and the controller.
#[test]
fn a_job_checkpointing_to_s3_restarts_from_it_when_a_worker_is_killed() {
    let s3 = weir_tests::s3::S3Server::start("weir");
    restarts_from_its_latest_checkpoint_when_a_worker_is_killed("s3://weir/cluster/q5", &s3.env());
}

#[test]
fn checkpoint_storage_that_refuses_writes_declines_checkpoints_and_the_job_goes_on() {
    let etcd = EtcdServer::start();
    let url = etcd.url.as_str();
    let _workers: Vec<Running> = ["s1", "s2"].iter().map(|id| worker(url, id, "1")).collect();
    let dir = tempfile::tempdir().unwrap();
    let job = paced_q5(dir.path(), 2, 50000);
    // Where each checkpoint's directory would go stands a file: every
    // write under it fails.
    let storage = dir.path().join("checkpoints");
    std::fs::create_dir_all(&storage).unwrap();
    for n in 1..=200 {
        std::fs::write(storage.join(format!("chk-{n}")), "in the way").unwrap();
    }
    let out = weir()
        .args([
            "cluster",
            "run",
            "--etcd",
            url,
            &job,
            "--checkpoint-storage",
            &storage.display().to_string(),
            "--checkpoint-interval",
            "200ms",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    // The job ran to its end, saying why its checkpoints were declined.
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("finished on 2 worker(s)"), "{stdout}");
    let declined = stderr
        .lines()
        .find(|l| l.contains("checkpoint abandoned"))
        .unwrap_or_else(|| panic!("no declined checkpoint reported: {stderr}"));
    assert!(
        declined.contains("worker `s") && declined.contains("cannot write its state"),
        "{declined}"
    );
    assert!(sorted_lines(&dir.path().join("out.jsonl")).len() > 1);
}

/// The highest completed checkpoint's number in directory `storage`.
fn last_checkpoint(storage: &std::path::Path) -> u64 {
    std::fs::read_dir(storage)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("_metadata").exists())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
        .max()
        .unwrap_or(0)
}

/// Proof (b) of the cluster issue: Kafka → keyed window → Kafka with
/// exactly-once delivery over worker processes; ten times in a row, once
/// the running attempt has completed a checkpoint, a worker running a part
/// is killed with SIGKILL at a random moment (and a fresh worker joins).
/// The job restarts from its latest checkpoint each time, and a
/// `read_committed` consumer finds every window's count exactly once.
#[test]
fn kafka_exactly_once_across_workers_survives_a_worker_killed_ten_times() {
    use weir_tests::kafka::{
        Broker, assert_same_windows, counted_windows, kafka_job, sample_input, window_counts,
    };
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    broker.create_topic("in", 2);
    broker.create_topic("out", 3);
    let records = sample_input(40_000, 23);
    broker.produce("in", &records);
    // Two source subtasks at 400 records/s each: about 50 s without
    // failures, so the job is still running at the tenth kill.
    let job = kafka_job(
        dir.path(),
        &broker.bootstrap(),
        "exactly-once",
        Some(400),
        1_000,
    );
    let etcd = EtcdServer::start();
    let url = etcd.url.as_str();
    // The job needs two slots; a third worker stands by.
    let mut workers: std::collections::BTreeMap<String, Running> = ["k1", "k2", "k3"]
        .iter()
        .map(|id| (id.to_string(), worker(url, id, "1")))
        .collect();
    let storage = dir.path().join("checkpoints");
    let mut run = Running::start(&[
        "cluster",
        "run",
        "--etcd",
        url,
        job.to_str().unwrap(),
        "--checkpoint-storage",
        &storage.display().to_string(),
        "--checkpoint-interval",
        "200ms",
        "--restarts",
        "20",
    ]);
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    let mut random = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut killed = Vec::new();
    for kill in 1..=10 {
        let placed = run.wait_for_nth("placed on", kill, Duration::from_secs(120));
        let before = last_checkpoint(&storage);
        let deadline = Instant::now() + Duration::from_secs(60);
        while last_checkpoint(&storage) <= before {
            assert!(
                Instant::now() < deadline,
                "attempt {kill} completed no checkpoint: {placed}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let running: Vec<&String> = workers
            .keys()
            .filter(|id| placed.contains(&format!("{id} (")))
            .collect();
        assert!(!running.is_empty(), "{placed}");
        let victim = running[random(running.len() as u64) as usize].clone();
        let wait = random(400);
        std::thread::sleep(Duration::from_millis(wait));
        workers[&victim].signal("KILL");
        workers.remove(&victim);
        killed.push(format!(
            "{victim} {wait} ms after chk-{}",
            last_checkpoint(&storage)
        ));
        let fresh = format!("k{}", 3 + kill);
        workers.insert(fresh.clone(), worker(url, &fresh, "1"));
    }
    let status = run.wait(Duration::from_secs(240));
    let output = run.drain();
    assert!(status.success(), "{output}");
    let restarts = run
        .seen
        .iter()
        .filter(|l| l.contains("restarting job"))
        .count();
    assert!(restarts >= 10, "{output}");
    for line in output.lines().filter(|l| {
        l.contains("runs again") || l.contains("failed:") || l.contains("checkpoint(s)")
    }) {
        eprintln!("{line}");
    }
    assert_same_windows(
        &counted_windows(&broker.read_committed("out")),
        &window_counts(&records),
        &format!("after killing {killed:?}"),
    );
}

/// A paced job that runs for about a minute unless stopped.
fn long_job(dir: &std::path::Path) -> String {
    let job = weir_job::nexmark::NexmarkJob {
        query: weir_job::nexmark::Query::Q5,
        events: 3_000_000,
        parallelism: 2,
        rate: Some(50_000),
        sink: "kind = \"discard\"".into(),
    };
    let file = dir.join("job.toml");
    std::fs::write(&file, job.toml()).unwrap();
    file.display().to_string()
}

#[test]
fn cancelling_a_cluster_run_stops_the_parts_on_every_worker() {
    let etcd = EtcdServer::start();
    let url = etcd.url.as_str();
    let mut running: Vec<Running> = ["c1", "c2"].iter().map(|id| worker(url, id, "1")).collect();
    let dir = tempfile::tempdir().unwrap();
    let job = long_job(dir.path());
    let mut run = Running::start(&["cluster", "run", "--etcd", url, &job]);
    for w in &mut running {
        w.wait_for("runs its part of job", Duration::from_secs(60));
    }
    // Their slots are taken.
    let list = workers(url);
    assert!(list.contains("2 worker(s), 2 slot(s), 0 free"), "{list}");
    // Which worker runs which slice, and how.
    let jobs = weir()
        .args(["cluster", "jobs", "--etcd", url])
        .output()
        .unwrap();
    let jobs = String::from_utf8_lossy(&jobs.stdout).into_owned();
    let line = |w: &str| {
        jobs.lines()
            .find(|l| l.contains(w))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(
        line("c1")[..],
        ["nexmark-q5", line("c1")[1], "c1", "1", "0", "running"],
        "{jobs}"
    );
    assert_eq!(
        line("c2")[..],
        ["nexmark-q5", line("c2")[1], "c2", "1", "1", "running"],
        "{jobs}"
    );
    run.signal("INT");
    assert!(run.wait(Duration::from_secs(30)).success());
    run.wait_for("cancelled", Duration::from_secs(5));
    for w in &mut running {
        w.wait_for(
            "stops its part of job `nexmark-q5`: taken back",
            Duration::from_secs(20),
        );
        w.wait_for(": its part of job", Duration::from_secs(30));
    }
    let jobs = weir()
        .args(["cluster", "jobs", "--etcd", url])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&jobs.stdout).contains("no jobs running"));
    // The workers themselves go on.
    let list = workers(url);
    assert!(list.contains("c1") && list.contains("c2"), "{list}");
}

#[test]
fn a_worker_that_loses_its_lease_stops_its_parts() {
    let etcd = EtcdServer::start();
    let url = etcd.url.as_str();
    let mut w = worker(url, "z1", "2");
    let dir = tempfile::tempdir().unwrap();
    let job = long_job(dir.path());
    let _run = Running::start(&["cluster", "run", "--etcd", url, &job]);
    w.wait_for("runs its part of job", Duration::from_secs(60));
    // Cut off from etcd past its lease: the cluster no longer counts it,
    // so it must not go on running (another worker may take the part).
    etcd.pause();
    w.wait_for("stopping its parts", Duration::from_secs(20));
    w.wait_for(": its part of job", Duration::from_secs(30));
    etcd.resume();
}

#[test]
fn a_part_placed_on_an_earlier_incarnation_of_a_worker_is_not_run() {
    let etcd = EtcdServer::start();
    let url = etcd.url.as_str();
    let mut w = worker(url, "w1", "1");
    let dir = tempfile::tempdir().unwrap();
    let job = long_job(dir.path());
    // A part for `w1` placed before it restarted (another lease): as a
    // controller that has not yet seen the restart would have left it.
    let part = serde_json::json!({
        "job": "stale", "attempt": 7, "job_file": job,
        "job_toml": std::fs::read_to_string(&job).unwrap(),
        "workers": ["127.0.0.1:1"], "worker_ids": ["w1"], "here": 0,
        "assignment": [[0, 0]], "slots": 1, "incarnation": 42
    });
    etcd.put("/weir/v1/parts/w1/stale#7", part.to_string().as_bytes());
    w.wait_for(
        "ignores its part of job `stale` (attempt 7): placed on an earlier incarnation",
        Duration::from_secs(20),
    );
    assert!(
        !w.seen.iter().any(|l| l.contains("runs its part")),
        "{:?}",
        w.seen
    );
}

#[test]
fn a_queued_job_waits_for_slots_and_one_that_can_never_fit_is_refused() {
    use weir_job::nexmark::{NexmarkJob, Query};
    let etcd = EtcdServer::start();
    let url = etcd.url.as_str();
    let _w = worker(url, "q1", "1");
    let write = |name: &str, events: u64, parallelism: usize, rate: Option<u64>| {
        let dir = tempfile::tempdir().unwrap();
        let job = NexmarkJob {
            query: Query::Q0,
            events,
            parallelism,
            rate,
            sink: "kind = \"discard\"".into(),
        };
        let file = dir.path().join(format!("{name}.toml"));
        std::fs::write(&file, job.toml()).unwrap();
        (dir, file.display().to_string())
    };
    let (_a_dir, a) = write("a", 3_000_000, 1, Some(50_000));
    let (_b_dir, b) = write("b", 1_000, 1, None);
    let mut first = Running::start(&["cluster", "run", "--etcd", url, &a]);
    first.wait_for("placed on q1", Duration::from_secs(60));
    // The only slot is taken: the second job waits for it.
    let mut second = Running::start(&["cluster", "run", "--etcd", url, "--queue", &b]);
    second.wait_for(
        "needs 1 slot(s) (its largest parallelism) and the cluster has 0 free of 1 on 1 worker(s); waiting for slots",
        Duration::from_secs(60),
    );
    first.signal("INT");
    assert!(first.wait(Duration::from_secs(30)).success());
    second.wait_for("placed on q1", Duration::from_secs(30));
    second.wait_for("finished on 1 worker(s)", Duration::from_secs(60));
    assert!(second.wait(Duration::from_secs(10)).success());
    // More slots than the cluster has at all: refused even with --queue.
    let (_c_dir, c) = write("c", 1_000, 2, None);
    let out = weir()
        .args(["cluster", "run", "--etcd", url, "--queue", &c])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs 2 slot(s)"));
}

#[test]
fn a_worker_of_an_incompatible_version_is_listed_as_such_and_given_no_work() {
    use weir_job::nexmark::Query;
    let etcd = EtcdServer::start();
    let url = etcd.url.as_str();
    let _w = worker(url, "v1", "1");
    // A worker of a later weir, speaking another controller–worker
    // protocol, as it registers itself.
    let newer = serde_json::json!({
        "id": "v2",
        "slots": 8,
        "data_addr": "127.0.0.1:9",
        "version": "9.0.0",
        "protocol": 99,
        "started_ms": 0,
        "lease": 0,
    });
    etcd.put("/weir/v1/workers/v2", newer.to_string().as_bytes());
    let listed = workers(url);
    let line = listed
        .lines()
        .find(|l| l.starts_with("v2"))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(
        line.contains("incompatible: protocol 99 (this build speaks"),
        "{listed}"
    );
    // Only compatible workers' slots count.
    assert!(
        listed.contains("2 worker(s), 1 slot(s), 1 free"),
        "{listed}"
    );
    // Its 8 slots are not offered: a job needing 2 does not fit.
    let dir = tempfile::tempdir().unwrap();
    let job = nexmark_job(dir.path(), Query::Q0, 2);
    let out = weir()
        .args(["cluster", "run", "--etcd", url, &job])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs 2 slot(s) (its largest parallelism) and the cluster has 1 free of 1 on 1 worker(s)"),
        "{err}"
    );
}

/// Proof (c) of the cluster issue: a worker added while a Kafka →
/// keyed window → Kafka exactly-once job runs, and the job rescaled onto
/// it from a savepoint when the user asks (`weir cluster rescale`): its
/// controller stops it at a savepoint and starts it again from there at
/// parallelism 3 (the sink keeps the 2 its job file sets), keyed state
/// following by key group. A `read_committed` consumer finds every
/// window's count exactly once.
#[test]
fn a_job_rescales_onto_an_added_worker_from_a_savepoint_exactly_once() {
    use weir_tests::kafka::{
        Broker, assert_same_windows, counted_windows, elastic_kafka_job, sample_input,
        window_counts,
    };
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    broker.create_topic("in", 2);
    broker.create_topic("out", 3);
    let records = sample_input(20_000, 23);
    broker.produce("in", &records);
    let bootstrap = broker.bootstrap();
    // About 20 s at parallelism 2 (500 records/s per source subtask).
    let job = elastic_kafka_job(dir.path(), "rescaled", &bootstrap, 2, 2);
    let etcd = EtcdServer::start();
    let url = etcd.url.as_str();
    let _r1 = worker(url, "r1", "1");
    let _r2 = worker(url, "r2", "1");
    let storage = dir.path().join("checkpoints");
    let mut run = Running::start(&[
        "cluster",
        "run",
        "--etcd",
        url,
        job.to_str().unwrap(),
        "--checkpoint-storage",
        &storage.display().to_string(),
        "--checkpoint-interval",
        "200ms",
    ]);
    run.wait_for("placed on", Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(60);
    while last_checkpoint(&storage) == 0 {
        assert!(Instant::now() < deadline, "no checkpoint completed");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A worker joins; the job does not move until asked.
    let _r3 = worker(url, "r3", "1");
    // More than the cluster could ever place: refused, the job runs on.
    let out = weir()
        .args([
            "cluster",
            "rescale",
            "--etcd",
            url,
            "rescaled",
            "--parallelism",
            "9",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("parallelism 9 needs 9 slot(s) and the cluster has 3 in all"),
        "{err}"
    );
    let out = weir()
        .args([
            "cluster",
            "rescale",
            "--etcd",
            url,
            "rescaled",
            "--parallelism",
            "3",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("job `rescaled` rescaled to parallelism 3 from") && said.contains("/sp-"),
        "{said}"
    );
    let again = run.wait_for_nth("placed on", 2, Duration::from_secs(60));
    assert!(
        ["r1", "r2", "r3"]
            .iter()
            .all(|w| again.contains(&format!("{w} (1 slot(s))"))),
        "{again}"
    );
    let status = run.wait(Duration::from_secs(120));
    let output = run.drain();
    assert!(status.success(), "{output}");
    assert!(output.contains("finished on 3 worker(s)"), "{output}");
    assert_same_windows(
        &counted_windows(&broker.read_committed("out")),
        &window_counts(&records),
        "after rescaling from 2 to 3",
    );
    // A job that is not running cannot be rescaled.
    let out = weir()
        .args([
            "cluster",
            "rescale",
            "--etcd",
            url,
            "rescaled",
            "--parallelism",
            "2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no job `rescaled` runs on the cluster"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// etcd goes away mid-job for longer than the workers' leases and comes
/// back: the controller waits for it, the workers stop their parts (the
/// cluster no longer counts them) and join again, and the job restarts from
/// its latest checkpoint and gives exactly the single-process rows.
#[test]
fn a_checkpointing_job_rides_out_etcd_going_away_and_coming_back() {
    use weir_job::nexmark::Query;
    let etcd = EtcdServer::start();
    let url = etcd.url.as_str();
    let _workers: Vec<Running> = ["e1", "e2"].iter().map(|id| worker(url, id, "1")).collect();
    let want = single_process_rows(Query::Q5, 2);

    let dir = tempfile::tempdir().unwrap();
    let job = paced_q5(dir.path(), 2, 10000);
    let storage = dir.path().join("checkpoints");
    let mut run = Running::start_with(
        &[
            "cluster",
            "run",
            "--etcd",
            url,
            &job,
            "--checkpoint-storage",
            &storage.display().to_string(),
            "--checkpoint-interval",
            "300ms",
            "--etcd-timeout",
            "1s",
        ],
        &[("RUST_LOG", "warn,weir_engine::checkpoint=info".into())],
    );
    run.wait_for(
        "checkpoint completed across 2 worker(s)",
        Duration::from_secs(60),
    );
    etcd.pause();
    run.wait_for("cannot reach etcd", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(4));
    etcd.resume();
    let status = run.wait(Duration::from_secs(180));
    let output = run.drain();
    assert!(status.success(), "{output}");
    assert!(output.contains("restarting job"), "{output}");
    let got = sorted_lines(&dir.path().join("out.jsonl"));
    assert_eq!(got.len(), want.len(), "row count\n{output}");
    assert!(got == want, "the rows differ from a single-process run");
}

/// Workers that hold the cluster's secret exchange records; a worker with
/// another secret cannot open an exchange to them, and the job fails naming
/// why; a data port beyond loopback without a secret is refused at start.
#[test]
fn data_ports_take_records_only_from_workers_that_hold_the_cluster_secret() {
    use weir_job::nexmark::Query;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "a shared secret of the cluster, 40 bytes\n").unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "another secret, not the cluster's one...\n").unwrap();
    let env =
        |file: &std::path::Path| vec![("WEIR_CLUSTER_SECRET_FILE", file.display().to_string())];
    let etcd = EtcdServer::start();
    let url = etcd.url.as_str();

    let a = worker_with(url, "s1", "1", &env(&secret));
    let b = worker_with(url, "s2", "1", &env(&secret));
    let job = nexmark_job(dir.path(), Query::Q5, 2);
    let out = weir()
        .args(["cluster", "run", "--etcd", url, &job])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    drop(b);
    // A worker with another secret: its exchanges are refused.
    let _c = worker_with(url, "s3", "1", &env(&wrong));
    let deadline = Instant::now() + Duration::from_secs(30);
    while workers(url).contains("s2 ") {
        assert!(Instant::now() < deadline, "s2 did not leave");
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = weir()
        .args(["cluster", "run", "--etcd", url, &job])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("does not hold this worker's cluster secret"),
        "{err}"
    );
    drop(a);

    // Beyond loopback without a secret: refused at start, naming the fix.
    let out = weir()
        .args([
            "worker",
            "--etcd",
            url,
            "--id",
            "open",
            "--data-listen",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("beyond loopback without a cluster secret"),
        "{err}"
    );
    assert!(err.contains("--cluster-secret-file"), "{err}");
}

/// `GET path` on `addr` (HTTP/1.1); the body.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    answer
}

/// Each worker's metrics endpoint shows the parts it runs: per job, worker
/// and operator.
#[test]
fn a_worker_serves_metrics_of_the_parts_it_runs() {
    let etcd = EtcdServer::start();
    let url = etcd.url.as_str();
    let mut w = Running::start(&[
        "worker",
        "--etcd",
        url,
        "--id",
        "m1",
        "--slots",
        "2",
        "--lease-ttl",
        "2s",
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    let line = w.wait_for("serves its metrics at", Duration::from_secs(30));
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.strip_suffix("/metrics"))
        .unwrap()
        .to_string();
    w.wait_for("joined the cluster", Duration::from_secs(30));
    assert!(!http_get(&addr, "/metrics").contains("weir_part_running{"));
    let dir = tempfile::tempdir().unwrap();
    let job = long_job(dir.path());
    let _run = Running::start(&["cluster", "run", "--etcd", url, &job]);
    w.wait_for("runs its part of job", Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = http_get(&addr, "/metrics");
        let flowing = text.lines().any(|l| {
            l.starts_with("weir_records_out_total{")
                && l.contains("job=\"nexmark-q5\"")
                && l.contains("worker=\"m1\"")
                && !l.ends_with(" 0")
        });
        if flowing && text.contains("weir_part_running{") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no records in the metrics:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Item 5 of the cluster issue: a job that loses a worker and finds no
/// spare slot restarts from its checkpoint at a lower parallelism (keyed
/// state split anew by key group, Kafka partitions dealt anew), and scales
/// back up from a savepoint when a worker joins; exactly once throughout.
#[test]
fn a_job_short_of_slots_runs_on_fewer_and_scales_back_up_when_a_worker_joins() {
    use weir_tests::kafka::{
        Broker, assert_same_windows, counted_windows, elastic_kafka_job, sample_input,
        window_counts,
    };
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    broker.create_topic("in", 2);
    broker.create_topic("out", 2);
    let records = sample_input(15_000, 23);
    broker.produce("in", &records);
    let bootstrap = broker.bootstrap();
    let job = elastic_kafka_job(dir.path(), "elastic", &bootstrap, 2, 1);
    let etcd = EtcdServer::start();
    let url = etcd.url.as_str();
    let _w1 = worker(url, "w1", "1");
    let w2 = worker(url, "w2", "1");
    let storage = dir.path().join("checkpoints");
    let mut run = Running::start_with(
        &[
            "cluster",
            "run",
            "--etcd",
            url,
            job.to_str().unwrap(),
            "--checkpoint-storage",
            &storage.display().to_string(),
            "--checkpoint-interval",
            "200ms",
        ],
        &[("RUST_LOG", "warn,weir_engine::checkpoint=info".into())],
    );
    run.wait_for(
        "checkpoint completed across 2 worker(s)",
        Duration::from_secs(60),
    );
    w2.signal("KILL");
    let restarted = run.wait_for("restarting job", Duration::from_secs(60));
    assert!(restarted.contains("on 1 slot(s)"), "{restarted}");
    run.wait_for(
        "checkpoint completed across 1 worker(s)",
        Duration::from_secs(60),
    );
    let _w3 = worker(url, "w3", "1");
    let up = run.wait_for("scales back up", Duration::from_secs(60));
    assert!(up.contains("to 2 slot(s)"), "{up}");
    let status = run.wait(Duration::from_secs(120));
    let output = run.drain();
    assert!(status.success(), "{output}");
    assert!(output.contains("finished on 2 worker(s)"), "{output}");
    assert_same_windows(
        &counted_windows(&broker.read_committed("out")),
        &window_counts(&records),
        "after running on one slot and scaling back up",
    );
}

/// A worker that stops answering for a while (SIGSTOP, within its lease):
/// the checkpoint it holds up times out after `--checkpoint-timeout`, the
/// next ones complete once it answers again, and the job ends with the
/// single-process rows.
#[test]
fn a_checkpoint_a_stalled_worker_holds_up_times_out_and_the_job_goes_on() {
    use weir_job::nexmark::Query;
    let etcd = EtcdServer::start();
    let url = etcd.url.as_str();
    let slow: Vec<Running> = ["t1", "t2"]
        .iter()
        .map(|id| {
            let mut w = Running::start(&[
                "worker",
                "--etcd",
                url,
                "--id",
                id,
                "--slots",
                "1",
                "--lease-ttl",
                "20s",
            ]);
            w.wait_for("joined the cluster", Duration::from_secs(30));
            w
        })
        .collect();
    let want = single_process_rows(Query::Q5, 2);

    let dir = tempfile::tempdir().unwrap();
    let job = paced_q5(dir.path(), 2, 10000);
    let storage = dir.path().join("checkpoints");
    let mut run = Running::start_with(
        &[
            "cluster",
            "run",
            "--etcd",
            url,
            &job,
            "--checkpoint-storage",
            &storage.display().to_string(),
            "--checkpoint-interval",
            "200ms",
            "--checkpoint-timeout",
            "1s",
        ],
        &[("RUST_LOG", "warn,weir_engine::checkpoint=info".into())],
    );
    run.wait_for(
        "checkpoint completed across 2 worker(s)",
        Duration::from_secs(60),
    );
    slow[1].signal("STOP");
    let timed_out = run.wait_for("timed out", Duration::from_secs(30));
    slow[1].signal("CONT");
    assert!(timed_out.contains("checkpoint abandoned"), "{timed_out}");
    let status = run.wait(Duration::from_secs(120));
    let output = run.drain();
    assert!(status.success(), "{output}");
    // Checkpoints completed again after the stall.
    let after = output.split("timed out").nth(1).unwrap_or_default();
    assert!(
        after.contains("checkpoint completed across 2 worker(s)"),
        "{output}"
    );
    let got = sorted_lines(&dir.path().join("out.jsonl"));
    assert!(
        got == want,
        "the rows differ from a single-process run\n{output}"
    );
}
