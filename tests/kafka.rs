//! A real Kafka-protocol broker for the tests: tansu, started on loopback.
//!
//! The binary is built by `.ci/tansu/build` (tansu 0.6.0 from crates.io
//! with weir's small transaction patch; cached), which the README's test
//! command runs first; `WEIR_TANSU` may point at one. A test that needs the
//! broker and cannot get it fails, it is never skipped.
//!
//! What topics hold is read with `kcat`, an independent client (librdkafka's
//! own command-line tool, not weir's code), with `read_committed` isolation.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// The broker binary: `WEIR_TANSU`, else what `.ci/tansu/build` prints.
pub fn tansu() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("WEIR_TANSU") {
            return PathBuf::from(p);
        }
        let script = crate::root().join(".ci/tansu/build");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed: the Kafka tests need the tansu broker",
            script.display()
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
    .clone()
}

/// `kcat`, which the README's test command installs.
pub fn kcat() -> &'static str {
    let ok = Command::new("kcat")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kcat is missing: run `bash .ci/setup` (it installs it)");
    "kcat"
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A running broker; killed when dropped.
pub struct Broker {
    child: Option<Child>,
    port: u16,
    storage: String,
    env: Vec<(&'static str, String)>,
    log: PathBuf,
    /// Whether clients must sign in (SASL/SCRAM).
    authenticating: bool,
}

impl Broker {
    /// A broker keeping its data in memory.
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, "memory://tansu/", Vec::new())
    }

    /// A broker over storage `url` (`memory://…`, `s3://bucket/` with the
    /// `AWS_*` variables in `env`): with S3 it keeps its data across
    /// restarts.
    pub fn start_with(dir: &Path, url: &str, env: Vec<(&'static str, String)>) -> Self {
        let mut b = Self {
            child: None,
            port: free_port(),
            storage: url.to_string(),
            env,
            log: dir.join("tansu.log"),
            authenticating: false,
        };
        b.spawn();
        b
    }

    /// A client configuration for this broker.
    pub fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap());
        c
    }

    fn spawn(&mut self) {
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("broker log");
        let child = Command::new(tansu())
            .args([
                "broker",
                "--listener-url",
                &listener,
                "--advertised-listener-url",
                &listener,
                "--storage-engine",
                &self.storage,
            ])
            .args(self.authenticating.then_some("--authentication"))
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (*k, v)))
            .stdout(log.try_clone().expect("broker log"))
            .stderr(log)
            .spawn()
            .expect("tansu starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {} within 30 s; see {}",
                self.port,
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the broker (SIGKILL) and starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Adds a SCRAM-SHA-512 user (with `tansu user create`, before the
    /// broker requires authentication: it is then the only way in).
    pub fn create_user(&self, name: &str, password: &str) {
        let out = Command::new(tansu())
            .args(["user", "create", "--broker"])
            .arg(format!("tcp://{}", self.bootstrap()))
            .args([name, password])
            .output()
            .expect("tansu user create runs");
        assert!(
            out.status.success(),
            "tansu user create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Restarts the broker requiring clients to sign in with SASL/SCRAM
    /// (its storage must outlive a restart: `s3://`).
    pub fn require_authentication(&mut self) {
        self.authenticating = true;
        self.restart();
    }

    /// Stops the broker.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> =
            self.client().create().expect("admin client");
        let t = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let res = futures::executor::block_on(admin.create_topics([&t], &AdminOptions::new()))
            .expect("create topics");
        for r in res {
            r.unwrap_or_else(|(t, e)| panic!("cannot create topic {t}: {e}"));
        }
    }

    /// Writes `(key, value, timestamp ms)` records to `topic` and waits for
    /// every acknowledgement.
    pub fn produce(&self, topic: &str, records: &[(String, String, i64)]) {
        self.send(topic, None, records);
    }

    /// Writes `(key, value, timestamp ms)` records to partition
    /// `partition` of `topic`.
    pub fn produce_to(&self, topic: &str, partition: i32, records: &[(String, String, i64)]) {
        self.send(topic, Some(partition), records);
    }

    fn send(&self, topic: &str, partition: Option<i32>, records: &[(String, String, i64)]) {
        let producer: BaseProducer = self
            .client()
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()
            .expect("producer");
        for (k, v, ts) in records {
            let mut r = BaseRecord::to(topic).key(k).payload(v).timestamp(*ts);
            r.partition = partition;
            loop {
                match producer.send(r) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        producer.poll(Duration::from_millis(10));
                        r = back;
                    }
                }
            }
        }
        producer
            .flush(Duration::from_secs(60))
            .expect("every input record is acknowledged");
    }

    /// Grows `topic` to `total` partitions.
    pub fn add_partitions(&self, topic: &str, total: usize) {
        let admin: AdminClient<DefaultClientContext> = self.client().create().expect("admin");
        let p = rdkafka::admin::NewPartitions::new(topic, total);
        let res = futures::executor::block_on(admin.create_partitions([&p], &AdminOptions::new()))
            .expect("create partitions");
        for r in res {
            r.unwrap_or_else(|(t, e)| panic!("cannot add partitions to {t}: {e}"));
        }
    }

    /// Every record of `topic` a `read_committed` consumer sees, as
    /// `key\tvalue` lines, read by kcat up to the end of each partition.
    pub fn read_committed(&self, topic: &str) -> Vec<String> {
        let out = Command::new(kcat())
            .args([
                "-C",
                "-b",
                &self.bootstrap(),
                "-t",
                topic,
                "-X",
                "isolation.level=read_committed",
                "-o",
                "beginning",
                "-e",
                "-q",
                "-f",
                "%k\t%s\n",
            ])
            .output()
            .expect("kcat runs");
        assert!(
            out.status.success(),
            "kcat failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sample input: `n` records over `keys` keys, one per 10 ms of event time.
pub fn sample_input(n: usize, keys: usize) -> Vec<(String, String, i64)> {
    (0..n)
        .map(|i| {
            (
                format!("key-{}", i % keys),
                format!("{{\"i\":{i}}}"),
                1_700_000_000_000 + i as i64 * 10,
            )
        })
        .collect()
}

/// (key, window start) → count of the 1 s tumbling windows of `records`.
pub fn window_counts(records: &[(String, String, i64)]) -> BTreeMap<(String, i64), u64> {
    let mut m = BTreeMap::new();
    for (k, _, ts) in records {
        *m.entry((k.clone(), ts - ts.rem_euclid(1000))).or_default() += 1;
    }
    m
}

/// (key, window start) → count, from the sink's JSON values; panics on a
/// window seen twice.
pub fn counted_windows(lines: &[String]) -> BTreeMap<(String, i64), u64> {
    let mut m = BTreeMap::new();
    for l in lines {
        let (_, value) = l.split_once('\t').unwrap();
        let v: serde_json::Value = serde_json::from_str(value).unwrap();
        let k = (
            v["key"].as_str().unwrap().to_string(),
            v["start"].as_i64().unwrap(),
        );
        let dup = m.insert(k.clone(), v["count"].as_u64().unwrap());
        assert!(dup.is_none(), "window {k:?} written twice");
    }
    m
}

/// A job reading topic `in`, counting per key in 1 s tumbling windows
/// (`bid-count`) and writing to topic `out` with `guarantee`; the source
/// ends at the end of the topic. Watermarks trail the newest record a
/// source subtask read by `out_of_orderness_ms`; with one partition per
/// subtask, records arrive in order and windows fire as the job runs.
pub fn kafka_job(
    dir: &Path,
    bootstrap: &str,
    guarantee: &str,
    rate_limit: Option<u64>,
    out_of_orderness_ms: u64,
) -> PathBuf {
    let rate = rate_limit.map_or(String::new(), |r| format!("rate_limit = {r}"));
    let text = format!(
        r#"
[job]
name = "kafka-eos"

[source.in]
kind = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "in"
stop_at_end = true
batch_size = 200
parallelism = 2
{rate}
watermark = {{ strategy = "bounded-out-of-orderness", max_out_of_orderness_ms = {out_of_orderness_ms} }}

[operator.count]
input = "in"
module = "bid-count"
parallelism = 2
window = {{ type = "tumbling", size = "1s" }}

[sink.out]
input = "count"
kind = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "out"
guarantee = "{guarantee}"
parallelism = 2
"#
    );
    let f = dir.join("kafka-job.toml");
    std::fs::write(&f, text).unwrap();
    f
}

/// A job named `name` reading topic `in`, counting per key in 1 s tumbling
/// windows (`bid-count`) and writing to topic `out` exactly once: the
/// source and the window at the job's default `parallelism` (which a
/// rescale changes), the sink at its own `sink_parallelism`; each source
/// subtask reads at most 500 records/s and ends at the end of the topic.
pub fn elastic_kafka_job(
    dir: &Path,
    name: &str,
    bootstrap: &str,
    parallelism: usize,
    sink_parallelism: usize,
) -> PathBuf {
    let text = format!(
        r#"
[job]
name = "{name}"
parallelism = {parallelism}

[source.in]
kind = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "in"
stop_at_end = true
batch_size = 100
rate_limit = 500
watermark = {{ strategy = "bounded-out-of-orderness", max_out_of_orderness_ms = 1000 }}

[operator.count]
input = "in"
module = "bid-count"
window = {{ type = "tumbling", size = "1s" }}

[sink.out]
input = "count"
kind = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "out"
guarantee = "exactly-once"
parallelism = {sink_parallelism}
"#
    );
    let f = dir.join(format!("{name}.toml"));
    std::fs::write(&f, text).unwrap();
    f
}

/// Asserts two window-count maps are equal, listing (at most 20 of) the
/// windows that differ instead of both maps.
pub fn assert_same_windows(
    actual: &BTreeMap<(String, i64), u64>,
    expected: &BTreeMap<(String, i64), u64>,
    context: &str,
) {
    let mut diff = Vec::new();
    for (k, v) in expected {
        match actual.get(k) {
            Some(a) if a == v => {}
            other => diff.push(format!("{k:?}: expected {v}, got {other:?}")),
        }
    }
    for (k, a) in actual {
        if !expected.contains_key(k) {
            diff.push(format!("{k:?}: unexpected window with {a}"));
        }
    }
    assert!(
        diff.is_empty(),
        "{} of {} windows differ ({context}):\n{}",
        diff.len(),
        expected.len(),
        diff.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
}
