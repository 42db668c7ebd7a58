//! Kafka, against a real Kafka-protocol broker (tansu) on loopback: the
//! broker's transactions as weir relies on them, Kafka → window → Kafka
//! with exactly-once delivery, and clear errors for a missing topic and an
//! unreachable cluster.

use std::path::Path;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use weir_engine::checkpoint::CheckpointConfig;
use weir_job::{ModulePath, prepare, read_job};
use weir_tests::kafka::{
    Broker, assert_same_windows, counted_windows, kafka_job, sample_input, window_counts,
};
use weir_tests::{sandbox, udf_dir};

fn txn_producer(b: &Broker, id: &str) -> BaseProducer {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("transactional.id", id)
        .create()
        .unwrap();
    p.init_transactions(Duration::from_secs(30)).unwrap();
    p
}

fn send(p: &BaseProducer, topic: &str, key: &str, value: &str) {
    p.send(BaseRecord::to(topic).key(key).payload(value))
        .map_err(|(e, _)| e)
        .unwrap();
}

/// What weir's exactly-once sink relies on, checked with an independent
/// client: committed records appear, aborted ones never do, and a second
/// producer with the same transactional id fences the first.
#[test]
fn the_broker_hides_aborted_transactions_and_fences_zombies() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::start(dir.path());
    b.create_topic("t", 2);

    let a = txn_producer(&b, "a");
    a.begin_transaction().unwrap();
    send(&a, "t", "k1", "aborted");
    a.flush(Duration::from_secs(30)).unwrap();
    a.abort_transaction(Duration::from_secs(30)).unwrap();
    a.begin_transaction().unwrap();
    send(&a, "t", "k1", "committed-a");
    a.commit_transaction(Duration::from_secs(30)).unwrap();

    // A transaction left open by a "crashed" producer, then fenced by its
    // successor with the same id, which aborts it.
    let zombie = txn_producer(&b, "z");
    zombie.begin_transaction().unwrap();
    send(&zombie, "t", "k2", "zombie");
    zombie.flush(Duration::from_secs(30)).unwrap();
    let successor = txn_producer(&b, "z");
    successor.begin_transaction().unwrap();
    send(&successor, "t", "k2", "committed-z");
    successor
        .commit_transaction(Duration::from_secs(30))
        .unwrap();
    // The zombie can no longer commit.
    assert!(
        zombie.commit_transaction(Duration::from_secs(10)).is_err(),
        "a fenced producer must not commit"
    );

    let mut seen = b.read_committed("t");
    seen.sort();
    assert_eq!(seen, vec!["k1\tcommitted-a", "k2\tcommitted-z"]);
}

fn run(file: &Path, checkpoints: Option<CheckpointConfig>) -> Result<(), String> {
    let spec = read_job(file).map_err(|e| e.to_string())?;
    let mut flow = prepare(spec, sandbox(), &ModulePath::new(vec![udf_dir()]))
        .map_err(|e| e.to_string())?
        .dataflow;
    flow.checkpoints = checkpoints;
    let handle = weir_engine::run(flow).map_err(|e| e.to_string())?;
    let out = handle.join();
    out.result.map(|_| ()).map_err(|e| e.to_string())
}

/// Kafka → keyed tumbling window → Kafka, exactly-once, with checkpoints
/// every 50 ms (the source paced to last about 1.5 s): every window's count is read once by a `read_committed`
/// consumer, and equals the count in the input.
#[test]
fn kafka_to_kafka_exactly_once_through_a_window() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::start(dir.path());
    // One partition per source subtask: windows fire (and transactions
    // commit) while the job runs.
    b.create_topic("in", 2);
    b.create_topic("out", 3);
    let records = sample_input(6_000, 17);
    b.produce("in", &records);

    let job = kafka_job(
        dir.path(),
        &b.bootstrap(),
        "exactly-once",
        Some(2_000),
        1_000,
    );
    let chk = dir.path().join("chk");
    let storage = weir_storage::open(chk.to_str().unwrap()).unwrap();
    let config = CheckpointConfig::new(storage.clone(), Duration::from_millis(50));
    run(&job, Some(config)).unwrap();

    let out = b.read_committed("out");
    assert_same_windows(
        &counted_windows(&out),
        &window_counts(&records),
        "no failures",
    );
    let completed = weir_engine::checkpoint::completed(&storage);
    assert!(!completed.is_empty(), "the job took checkpoints");
}

/// Each source subtask reads two partitions, which librdkafka delivers in
/// large runs (one partition far ahead of the other); watermarks per
/// partition keep the other's records on time, with a 1 s bound: every
/// window's count is exact.
#[test]
fn partitions_read_unevenly_lose_nothing_with_watermarks_per_partition() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::start(dir.path());
    b.create_topic("in", 4);
    b.create_topic("out", 2);
    let records = sample_input(8_000, 19);
    b.produce("in", &records);
    let job = kafka_job(dir.path(), &b.bootstrap(), "at-least-once", None, 1_000);
    run(&job, None).unwrap();
    assert_same_windows(
        &counted_windows(&b.read_committed("out")),
        &window_counts(&records),
        "four partitions, two subtasks",
    );
}

#[test]
fn kafka_errors_name_the_topic_and_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::start(dir.path());
    b.create_topic("out", 1);
    // The input topic does not exist.
    let job = kafka_job(dir.path(), &b.bootstrap(), "at-least-once", None, 1_000);
    let e = run(&job, None).unwrap_err();
    assert!(
        e.contains("topic `in` does not exist at `127.0.0.1:"),
        "{e}"
    );
    assert!(e.contains("`in`"), "names the node: {e}");

    // Nothing listens there.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let job = kafka_job(
        dir.path(),
        &format!("127.0.0.1:{closed}"),
        "at-least-once",
        None,
        1_000,
    );
    let e = run(&job, None).unwrap_err();
    assert!(
        e.contains(&format!("cannot reach Kafka at `127.0.0.1:{closed}`")),
        "{e}"
    );
}

/// Where a partition ends (its high watermark, for both isolation levels)
/// is one past its last record, and reading resumes at any offset: the
/// source's `stop_at_end` and its restored positions rely on both.
#[test]
fn the_broker_reports_partition_ends_and_resumes_at_any_offset() {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::start(dir.path());
    b.create_topic("in", 3);
    b.produce("in", &sample_input(9_000, 23));
    let mut total = 0;
    for p in 0..3 {
        let mut ends = Vec::new();
        for isolation in ["read_uncommitted", "read_committed"] {
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", b.bootstrap())
                .set("group.id", "ends")
                .set("isolation.level", isolation)
                .create()
                .unwrap();
            let (start, end) = c
                .fetch_watermarks("in", p, Duration::from_secs(10))
                .unwrap();
            assert_eq!(start, 0, "partition {p} starts at 0 ({isolation})");
            ends.push(end);
        }
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", b.bootstrap())
            .set("group.id", "ends")
            .create()
            .unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset("in", p, rdkafka::Offset::Beginning)
            .unwrap();
        c.assign(&tpl).unwrap();
        // Everything the partition holds: read until a second passes
        // without a record.
        let (mut last, mut quiet) = (-1, 0);
        while quiet < 10 {
            match c.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    last = m.offset();
                    quiet = 0;
                }
                _ => quiet += 1,
            }
        }
        assert_eq!(ends, vec![last + 1, last + 1], "partition {p}");
        total += last + 1;

        // Resuming from an offset inside a batch (a checkpointed position)
        // reads on from exactly there.
        let from = (last + 1) / 2 + 1;
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset("in", p, rdkafka::Offset::Offset(from))
            .unwrap();
        c.assign(&tpl).unwrap();
        let (mut offsets, mut quiet) = (Vec::new(), 0);
        while quiet < 10 {
            match c.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    offsets.push(m.offset());
                    quiet = 0;
                }
                _ => quiet += 1,
            }
        }
        assert_eq!(
            offsets,
            (from..=last).collect::<Vec<_>>(),
            "partition {p} from {from}"
        );
    }
    assert_eq!(total, 9_000);
}

/// Where a source starts when the job does not restore: `earliest` reads
/// everything, `latest` nothing that was there, `committed` from the
/// group's committed offsets.
#[test]
fn the_source_starts_where_it_is_told() {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::start(dir.path());
    b.create_topic("in", 2);
    b.produce("in", &sample_input(1_000, 7));
    // The group `g` has read the first 100 records of each partition.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("group.id", "g")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset("in", p, rdkafka::Offset::Offset(100))
            .unwrap();
    }
    c.commit(&tpl, CommitMode::Sync).unwrap();
    let read = |start: &str| {
        let text = format!(
            r#"
[job]
name = "start-{start}"

[source.in]
kind = "kafka"
bootstrap_servers = "{}"
topic = "in"
group_id = "g"
start = "{start}"
stop_at_end = true

[sink.out]
input = "in"
kind = "file"
path = "out-{start}.jsonl"
"#,
            b.bootstrap()
        );
        let f = dir.path().join(format!("start-{start}.toml"));
        std::fs::write(&f, text).unwrap();
        run(&f, None).unwrap();
        std::fs::read_to_string(dir.path().join(format!("out-{start}.jsonl")))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(read("earliest"), 1_000);
    assert_eq!(read("latest"), 0);
    assert_eq!(read("committed"), 1_000 - 2 * 100);
}

/// A job reading topic `in` of `b` into topic `out` (no delivery
/// guarantee needed here), with further source settings `source`.
fn copy_job(dir: &Path, b: &Broker, name: &str, source: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
[job]
name = "{name}"

[source.in]
kind = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "in"
{source}

[sink.out]
input = "in"
kind = "file"
path = "out-{name}.jsonl"
"#,
        bootstrap = b.bootstrap()
    );
    let f = dir.join(format!("{name}.toml"));
    std::fs::write(&f, text).unwrap();
    f
}

fn values(path: &Path) -> Vec<i64> {
    let mut v: Vec<i64> = weir_tests::read_jsonl(path)
        .iter()
        .map(|r| r["i"].as_i64().unwrap_or_else(|| panic!("{r}")))
        .collect();
    v.sort_unstable();
    v
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A cluster that requires SASL/SCRAM: a wrong password is reported as
/// refused credentials (librdkafka alone would only time out, which reads
/// as an unreachable cluster), naming the cluster and the node; the same
/// job with the right password reads everything.
#[test]
fn a_refused_login_is_named_and_a_signed_in_job_reads_everything() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = weir_tests::s3::S3Server::start("tansu");
    let mut b = Broker::start_with(dir.path(), "s3://tansu/", s3.env());
    b.create_topic("in", 2);
    b.produce("in", &sample_input(300, 3));
    b.create_user("alice", "secret");
    b.require_authentication();

    let login = |password: &str| {
        format!(
            "stop_at_end = true\nproperties = {{ \"security.protocol\" = \"SASL_PLAINTEXT\", \
             \"sasl.mechanism\" = \"SCRAM-SHA-512\", \"sasl.username\" = \"alice\", \
             \"sasl.password\" = \"{password}\" }}"
        )
    };
    let e = run(&copy_job(dir.path(), &b, "wrong", &login("guess")), None).unwrap_err();
    assert!(
        e.contains(&format!(
            "Kafka at `{}` refused the client's credentials",
            b.bootstrap()
        )),
        "{e}"
    );
    assert!(e.contains("`in`"), "names the node: {e}");

    run(&copy_job(dir.path(), &b, "right", &login("secret")), None).unwrap();
    assert_eq!(
        values(&dir.path().join("out-right.jsonl")),
        (0..300).collect::<Vec<_>>()
    );
}

/// `start = "timestamp"` starts each partition at its first record at or
/// after the time given; without `start_timestamp` the job is refused.
#[test]
fn the_source_starts_at_a_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::start(dir.path());
    b.create_topic("in", 2);
    let rows = |range: std::ops::Range<i64>| -> Vec<(String, String, i64)> {
        range
            .map(|i| (format!("key-{}", i % 5), format!("{{\"i\":{i}}}"), now_ms()))
            .collect()
    };
    b.produce("in", &rows(0..200));
    // tansu resolves a time to the first batch it stored after it (Kafka
    // to the first record stamped at or after it): a clear gap makes both
    // the same.
    std::thread::sleep(Duration::from_millis(200));
    let t = now_ms();
    std::thread::sleep(Duration::from_millis(200));
    b.produce("in", &rows(200..500));

    let job = copy_job(
        dir.path(),
        &b,
        "ts",
        &format!("stop_at_end = true\nstart = \"timestamp\"\nstart_timestamp = {t}"),
    );
    run(&job, None).unwrap();
    assert_eq!(
        values(&dir.path().join("out-ts.jsonl")),
        (200..500).collect::<Vec<_>>()
    );

    let job = copy_job(
        dir.path(),
        &b,
        "no-ts",
        "stop_at_end = true\nstart = \"timestamp\"",
    );
    let e = run(&job, None).unwrap_err();
    assert!(e.contains("start_timestamp"), "{e}");
}

/// Partitions added to the topic while the job runs are found and read
/// from their first record, beside the ones read from the start.
#[test]
fn partitions_added_while_the_job_runs_are_read_from_their_start() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::start(dir.path());
    b.create_topic("in", 1);
    let rows = |range: std::ops::Range<i64>| -> Vec<(String, String, i64)> {
        range
            .map(|i| {
                (
                    format!("key-{i}"),
                    format!("{{\"i\":{i}}}"),
                    1_700_000_000_000 + i,
                )
            })
            .collect()
    };
    b.produce_to("in", 0, &rows(0..300));
    let file = copy_job(
        dir.path(),
        &b,
        "grow",
        "parallelism = 2\npartition_discovery_ms = 100",
    );
    let spec = read_job(&file).unwrap();
    let mut flow = prepare(spec, sandbox(), &ModulePath::new(vec![udf_dir()]))
        .unwrap()
        .dataflow;
    // The file sink writes out at each checkpoint.
    let storage = weir_storage::open(dir.path().join("chk").to_str().unwrap()).unwrap();
    flow.checkpoints = Some(CheckpointConfig::new(storage, Duration::from_millis(100)));
    let handle = weir_engine::run(flow).unwrap();
    let out = dir.path().join("out-grow.jsonl");
    let wait_for = |n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let got = std::fs::read_to_string(&out)
                .unwrap_or_default()
                .lines()
                .count();
            if got >= n {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{got} of {n} records after 60 s"
            );
            assert!(!handle.is_finished(), "the job ended early");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for(300);
    // Partition 1 goes to subtask 1, which had nothing to read; 2 to
    // subtask 0, beside partition 0.
    b.add_partitions("in", 3);
    b.produce_to("in", 1, &rows(300..400));
    b.produce_to("in", 2, &rows(400..500));
    b.produce_to("in", 0, &rows(500..550));
    wait_for(550);
    handle.cancel();
    let outcome = handle.join();
    assert!(outcome.result.is_ok(), "{:?}", outcome.result.err());
    assert_eq!(values(&out), (0..550).collect::<Vec<_>>());
}
