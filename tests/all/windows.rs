//! Window and keyed-process semantics through whole jobs and through the
//! operators directly (with a manual clock), compared with independent
//! computations of what Flink's documented semantics give.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use weir_engine::assigner::WindowAssigner;
use weir_engine::time::ManualClock;
use weir_engine::{Collector, EngineError, OperatorFactory, SubtaskInfo};
use weir_job::{JobError, ModulePath};
use weir_operators::{KeyedProcessFactory, TimeMode, Trigger, WindowOperatorFactory, WindowSpec};
use weir_record::RecordBatch;
use weir_sandbox::InstanceLimits;
use weir_tests::{batch, read_jsonl, sandbox, udf, udf_dir};

struct Job {
    dir: tempfile::TempDir,
    file: PathBuf,
}

fn job(toml: &str, input: &[String]) -> Job {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.toml");
    std::fs::write(&file, toml).unwrap();
    std::fs::write(dir.path().join("in.jsonl"), input.join("\n") + "\n").unwrap();
    Job { dir, file }
}

fn run(job: &Job) -> Result<weir_engine::JobOutcome, JobError> {
    weir_tests::run_job(&job.file)
}

fn output(job: &Job, name: &str) -> Vec<Value> {
    read_jsonl(&job.dir.path().join(name))
}

/// A deterministic out-of-order stream: `n` events over `keys` keys, each
/// displaced by up to `disorder` ms from an increasing clock.
fn events(n: usize, keys: usize, step: i64, disorder: i64) -> Vec<(String, i64)> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = format!("k{}", x % keys as u64);
            let jitter = (x >> 20) as i64 % (disorder + 1);
            (key, 100_000 + i as i64 * step - jitter)
        })
        .collect()
}

fn lines(ev: &[(String, i64)]) -> Vec<String> {
    ev.iter()
        .map(|(k, t)| format!(r#"{{"k":"{k}","t":{t}}}"#))
        .collect()
}

fn count_job(window: &str, extra: &str, parallelism: usize, disorder_ms: u64) -> String {
    format!(
        r#"
[job]
parallelism = {parallelism}

[source.ev]
kind = "file"
path = "in.jsonl"
key_field = "k"
timestamp_field = "t"
batch_size = 7
watermark = {{ strategy = "bounded-out-of-orderness", max_out_of_orderness_ms = {disorder_ms} }}

[operator.count]
input = "ev"
module = "bid-count"
window = {window}
{extra}

[sink.out]
input = "count"
kind = "file"
path = "out.jsonl"
format = "envelope"
"#
    )
}

/// (key, start, end) → counts of each firing, in order.
fn firings(rows: &[Value]) -> BTreeMap<(String, i64, i64), Vec<u64>> {
    let mut m: BTreeMap<_, Vec<u64>> = BTreeMap::new();
    for r in rows {
        let v = &r["value"];
        let start = v["start"].as_i64().unwrap();
        let end = v["end"].as_i64().unwrap();
        assert_eq!(
            r["timestamp"].as_i64().unwrap(),
            end - 1,
            "result time is the window's end"
        );
        assert_eq!(r["headers"]["window.start"], start.to_string());
        assert_eq!(r["headers"]["window.end"], end.to_string());
        m.entry((v["key"].as_str().unwrap().to_string(), start, end))
            .or_default()
            .push(v["count"].as_u64().unwrap());
    }
    m
}

#[test]
fn sliding_windows_overlap_and_every_window_fires_once_with_its_exact_count() {
    let ev = events(3_000, 7, 40, 2_000);
    // Independent: every sliding window [s, s + 10 s) with s a multiple of 2 s
    // that holds the event.
    let mut expected: BTreeMap<(String, i64, i64), Vec<u64>> = BTreeMap::new();
    for (k, t) in &ev {
        let last = t - t.rem_euclid(2_000);
        let mut s = last;
        while s > t - 10_000 {
            expected
                .entry((k.clone(), s, s + 10_000))
                .or_insert_with(|| vec![0])[0] += 1;
            s -= 2_000;
        }
    }
    for parallelism in [1, 3] {
        let j = job(
            &count_job(
                r#"{ type = "sliding", size = "10s", slide = "2s" }"#,
                "",
                parallelism,
                2_000,
            ),
            &lines(&ev),
        );
        run(&j).unwrap().result.unwrap();
        assert_eq!(
            firings(&output(&j, "out.jsonl")),
            expected,
            "parallelism {parallelism}"
        );
    }
}

#[test]
fn a_window_over_many_keys_fires_in_bounded_guest_calls() {
    // 20,000 keys in one window, fired at the end of input: more panes than
    // one guest call takes (they are fired in chunks, each key once).
    let ev: Vec<(String, i64)> = (0..20_000)
        .map(|i| (format!("k{i}"), 100_000 + i))
        .collect();
    let j = job(
        &count_job(r#"{ type = "tumbling", size = "1h" }"#, "", 1, 0)
            .replace("batch_size = 7", "batch_size = 1024"),
        &lines(&ev),
    );
    run(&j).unwrap().result.unwrap();
    let f = firings(&output(&j, "out.jsonl"));
    assert_eq!(f.len(), 20_000);
    assert!(f.values().all(|c| c == &vec![1]), "each key counted once");
}

#[test]
fn late_records_update_within_the_lateness_and_go_to_the_side_output_after() {
    // Watermark = max - 1 (no disorder allowed); lateness 30 s.
    let ev: Vec<(String, i64)> = [
        ("a", 1_000),
        ("a", 61_000), // fires [0, 60 s) with 1
        ("a", 30_000), // late, allowed: fires again with 2
        ("a", 95_000), // watermark 94.999 s: [0,60 s) cleanup at 89.999 s passed
        ("a", 20_000), // too late: side output
        ("a", 59_999), // too late as well
    ]
    .iter()
    .map(|(k, t)| (k.to_string(), *t))
    .collect();
    let extra = r#"allowed_lateness = "30s"
late_output = "late"

[sink.late]
input = "count.late"
kind = "file"
path = "late.jsonl"
format = "envelope""#;
    let mut toml = count_job(r#"{ type = "tumbling", size = "1m" }"#, extra, 1, 0);
    toml = toml.replace("batch_size = 7", "batch_size = 1");
    let j = job(&toml, &lines(&ev));
    run(&j).unwrap().result.unwrap();
    let f = firings(&output(&j, "out.jsonl"));
    assert_eq!(f[&("a".into(), 0, 60_000)], vec![1, 2]);
    assert_eq!(f[&("a".into(), 60_000, 120_000)], vec![2]);
    let late: Vec<i64> = output(&j, "late.jsonl")
        .iter()
        .map(|r| r["timestamp"].as_i64().unwrap())
        .collect();
    assert_eq!(late, vec![20_000, 59_999]);
}

#[test]
fn count_triggers_fire_every_n_with_and_without_purging() {
    let ev: Vec<(String, i64)> = (0..7).map(|i| ("a".to_string(), i * 1_000)).collect();
    let run_with = |trigger: &str| {
        let toml = count_job(
            r#"{ type = "global" }"#,
            &format!("trigger = {trigger}"),
            1,
            0,
        );
        let j = job(&toml, &lines(&ev));
        run(&j).unwrap().result.unwrap();
        let f = firings(&output(&j, "out.jsonl"));
        f.into_values().next().unwrap_or_default()
    };
    // Flink's CountTrigger fires on the 3rd and 6th record; the 7th waits
    // (a global window never ends).
    assert_eq!(run_with(r#"{ type = "count", count = 3 }"#), vec![3, 6]);
    assert_eq!(
        run_with(r#"{ type = "count", count = 3, purge = true }"#),
        vec![3, 3]
    );
}

#[test]
fn continuous_event_time_trigger_fires_early_and_at_the_end() {
    let ev: Vec<(String, i64)> = [5, 15, 25, 35, 45, 55, 70]
        .iter()
        .map(|s| ("a".to_string(), s * 1_000))
        .collect();
    let mut toml = count_job(
        r#"{ type = "tumbling", size = "1m" }"#,
        r#"trigger = { type = "continuous-event-time", interval = "20s" }"#,
        1,
        0,
    );
    toml = toml.replace("batch_size = 7", "batch_size = 1");
    let j = job(&toml, &lines(&ev));
    run(&j).unwrap().result.unwrap();
    let f = firings(&output(&j, "out.jsonl"));
    // At 20 s (records 5, 15, 25 in), 40 s (5 in), then the end (6).
    assert_eq!(f[&("a".into(), 0, 60_000)], vec![3, 5, 6]);
    // The second window holds 70 s only. At the end of the input the final
    // watermark passes 80 s, 100 s and the window's end: three firings, as
    // Flink's timer service would run them.
    assert_eq!(f[&("a".into(), 60_000, 120_000)], vec![1, 1, 1]);
}

#[test]
fn evictors_remove_records_before_the_function() {
    let ev: Vec<(String, i64)> = [1, 2, 3, 20, 21]
        .iter()
        .map(|s| ("a".to_string(), s * 1_000))
        .collect();
    let run_with = |evictor: &str| {
        let toml = count_job(
            r#"{ type = "tumbling", size = "1m" }"#,
            &format!("evictor = {evictor}"),
            1,
            0,
        );
        let j = job(&toml, &lines(&ev));
        run(&j).unwrap().result.unwrap();
        firings(&output(&j, "out.jsonl"))[&("a".into(), 0, 60_000)].clone()
    };
    assert_eq!(run_with(r#"{ type = "count", count = 2 }"#), vec![2]);
    // Keep what is within 5 s of the newest (21 s): 20 s and 21 s.
    assert_eq!(run_with(r#"{ type = "time", keep = "5s" }"#), vec![2]);
    assert_eq!(run_with(r#"{ type = "time", keep = "30s" }"#), vec![5]);
}

#[test]
fn an_idle_keyed_input_does_not_hold_windows_back_at_higher_parallelism() {
    // Two keys land on the first of four window subtasks; the other three
    // subtasks get only watermarks. Every window still fires with its count.
    let ev: Vec<(String, i64)> = (0..100)
        .map(|i| (format!("k{}", i % 2), i * 1_000))
        .collect();
    let j = job(
        &count_job(
            r#"{ type = "tumbling", size = "10s" }"#,
            "parallelism = 4",
            1,
            0,
        ),
        &lines(&ev),
    );
    run(&j).unwrap().result.unwrap();
    let f = firings(&output(&j, "out.jsonl"));
    assert_eq!(f.len(), 20);
    assert!(f.values().all(|c| c == &vec![5]), "{f:?}");
}

/// Collects what an operator emits, main and side.
#[derive(Default)]
struct Sink {
    main: Vec<RecordBatch>,
    side: Vec<(usize, RecordBatch)>,
}

impl Collector for Sink {
    fn collect(&mut self, batch: RecordBatch) -> Result<(), EngineError> {
        if !batch.is_empty() {
            self.main.push(batch);
        }
        Ok(())
    }
    fn collect_side(&mut self, port: usize, batch: RecordBatch) -> Result<(), EngineError> {
        self.side.push((port, batch));
        Ok(())
    }
}

fn info(clock: &ManualClock) -> SubtaskInfo {
    let mut i = SubtaskInfo::new("j", "op", 0, 1);
    i.clock = Arc::new(clock.clone());
    i
}

#[test]
fn processing_time_windows_fire_when_the_test_clock_says() {
    let module = sandbox().load_file(&udf("bid-count")).unwrap();
    let mut spec = WindowSpec::new(WindowAssigner::Tumbling {
        size: Duration::from_secs(10),
        offset: Duration::ZERO,
    });
    spec.time = TimeMode::Processing;
    spec.trigger = Trigger::ProcessingTime;
    let f = WindowOperatorFactory::new(module, vec![], InstanceLimits::default(), spec).unwrap();
    let clock = ManualClock::new(1_000);
    let mut op = f.create(&info(&clock)).unwrap();
    let mut out = Sink::default();
    // Event timestamps do not matter: arrival time on the clock does.
    op.process_batch(batch(&[("a", "{}", 999_999), ("b", "{}", 5)]), &mut out)
        .unwrap();
    clock.set(12_000);
    op.process_batch(batch(&[("a", "{}", 0)]), &mut out)
        .unwrap();
    assert_eq!(op.next_processing_time(), Some(9_999));
    assert!(out.main.is_empty());
    op.on_processing_time(clock_now(&clock), &mut out).unwrap();
    let rows: Vec<String> = out
        .main
        .iter()
        .flat_map(|b| {
            b.records()
                .map(|r| String::from_utf8_lossy(r.value()).into_owned())
        })
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows.iter()
            .all(|r| r.contains(r#""start":0,"end":10000,"count":1"#)),
        "{rows:?}"
    );
    assert_eq!(op.next_processing_time(), Some(19_999));
    clock.set(20_000);
    op.on_processing_time(clock_now(&clock), &mut out).unwrap();
    assert_eq!(out.main.len(), 2);
    assert_eq!(op.next_processing_time(), None);
}

fn clock_now(c: &ManualClock) -> i64 {
    use weir_engine::time::Clock;
    c.now_ms()
}

#[test]
fn keyed_process_timers_fire_on_the_watermark_and_state_is_per_key() {
    let module = sandbox().load_file(&udf("leaderboard")).unwrap();
    let f = KeyedProcessFactory::new(
        module,
        vec![
            ("every_ms".into(), "1000".into()),
            ("size".into(), "2".into()),
        ],
        InstanceLimits::default(),
        vec![],
    )
    .unwrap();
    let clock = ManualClock::new(0);
    let mut op = f.create(&info(&clock)).unwrap();
    let mut out = Sink::default();
    let score = |u: &str, s: i64| format!(r#"{{"user":"{u}","score":{s}}}"#);
    // Two boards (keys) with their own totals.
    let (a1, a2, b1) = (score("x", 5), score("y", 7), score("x", 100));
    op.process_batch(
        batch(&[("A", &a1, 100), ("B", &b1, 200), ("A", &a2, 300)]),
        &mut out,
    )
    .unwrap();
    assert!(out.main.is_empty(), "nothing before the watermark");
    op.on_watermark(weir_engine::watermark::Watermark(998), &mut out)
        .unwrap();
    assert!(out.main.is_empty(), "the timer is at 999");
    op.on_watermark(weir_engine::watermark::Watermark(999), &mut out)
        .unwrap();
    let boards: BTreeMap<String, String> = out
        .main
        .iter()
        .flat_map(|b| {
            b.records().map(|r| {
                assert_eq!(r.timestamp(), 999);
                (
                    String::from_utf8_lossy(r.key()).into_owned(),
                    String::from_utf8_lossy(r.value()).into_owned(),
                )
            })
        })
        .collect();
    assert_eq!(
        boards["A"],
        r#"{"as_of":999,"top":[{"rank":1,"user":"y","score":7},{"rank":2,"user":"x","score":5}]}"#
    );
    assert_eq!(
        boards["B"],
        r#"{"as_of":999,"top":[{"rank":1,"user":"x","score":100}]}"#
    );
}

#[test]
fn keyed_state_with_a_time_to_live_expires_on_the_processing_clock() {
    let boards_after = |ttl: Option<Duration>| {
        let module = sandbox().load_file(&udf("leaderboard")).unwrap();
        let f = KeyedProcessFactory::new(
            module,
            vec![("every_ms".into(), "1000".into())],
            InstanceLimits::default(),
            vec![],
        )
        .unwrap()
        .with_state_ttl(ttl.map(|t| ("totals".to_string(), t)).into_iter().collect());
        let clock = ManualClock::new(0);
        let mut op = f.create(&info(&clock)).unwrap();
        let mut out = Sink::default();
        op.process_batch(batch(&[("A", r#"{"user":"x","score":5}"#, 100)]), &mut out)
            .unwrap();
        op.on_watermark(weir_engine::watermark::Watermark(999), &mut out)
            .unwrap();
        // 20 s later on the processing clock, a score for another user.
        clock.set(20_000);
        op.process_batch(
            batch(&[("A", r#"{"user":"y","score":7}"#, 1_100)]),
            &mut out,
        )
        .unwrap();
        op.on_watermark(weir_engine::watermark::Watermark(1_999), &mut out)
            .unwrap();
        out.main
            .iter()
            .flat_map(|b| {
                b.records()
                    .map(|r| String::from_utf8_lossy(r.value()).into_owned())
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    let kept = boards_after(None);
    assert_eq!(
        kept[1],
        r#"{"as_of":1999,"top":[{"rank":1,"user":"y","score":7},{"rank":2,"user":"x","score":5}]}"#
    );
    // With a 10 s TTL on `totals`, x's total (written at 0) is gone by 20 s.
    let expired = boards_after(Some(Duration::from_secs(10)));
    assert_eq!(
        expired[0],
        r#"{"as_of":999,"top":[{"rank":1,"user":"x","score":5}]}"#
    );
    assert_eq!(
        expired[1],
        r#"{"as_of":1999,"top":[{"rank":1,"user":"y","score":7}]}"#
    );
}

#[test]
fn state_ttl_in_a_job_file_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let job = |extra: &str| {
        let f = dir.path().join("ttl.toml");
        std::fs::write(
            &f,
            format!(
                r#"
[job]
name = "ttl"

[source.gen]
kind = "generator"
count = 10

[operator.board]
input = "gen"
module = "leaderboard"
{extra}

[sink.out]
input = "board"
kind = "stdout"
"#
            ),
        )
        .unwrap();
        weir_job::read_job(&f).and_then(|spec| {
            weir_job::prepare(spec, sandbox(), &ModulePath::new(vec![udf_dir()])).map(|_| ())
        })
    };
    job(r#"state_ttl = { totals = "1h", "*" = "1d" }"#).unwrap();
    let e = job(r#"state_ttl = { totals = "soon" }"#)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ttl.toml:") && e.contains("state_ttl") && e.contains("soon"),
        "{e}"
    );
    let e = job(r#"state_ttl = { totals = 5 }"#)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("state `totals`") && e.contains("duration string"),
        "{e}"
    );
    let e = job("module_x = 1").unwrap_err().to_string();
    assert!(e.contains("module_x"), "{e}");
}

#[test]
fn processing_time_timers_fire_in_a_running_job_on_the_manual_clock() {
    // A processing-time window job whose source stays open until the test
    // has seen the result: the runtime must fire the timer on its own.
    let spec = weir_job::parse_job(
        std::path::Path::new("/nonexistent/job.toml"),
        r#"
[source.gen]
kind = "generator"
count = 50
keys = 5

[operator.count]
input = "gen"
module = "bid-count"
window = { type = "tumbling", size = "10s", time = "processing" }

[sink.out]
input = "count"
kind = "stdout"
"#,
    )
    .unwrap();
    let mut prepared =
        weir_job::prepare(spec, sandbox(), &ModulePath::new(vec![udf_dir()])).unwrap();
    let clock = ManualClock::new(1_000);
    prepared.dataflow.clock = Arc::new(clock.clone());
    // Replace the stdout sink with one that records, and keep the source
    // open with a gate.
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let gate = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let n = prepared.dataflow.nodes.len();
    prepared.dataflow.nodes[n - 1].kind =
        weir_engine::NodeKind::Sink(Arc::new(RecordingSink(seen.clone())));
    let source = prepared.dataflow.nodes[0].kind.clone();
    prepared.dataflow.nodes[0].kind =
        weir_engine::NodeKind::Source(Arc::new(GatedSource(source, gate.clone())));
    let handle = weir_engine::run(prepared.dataflow).unwrap();
    // Wait until every record has reached the window (the source is then
    // parked on its gate), advance the clock past the window, and wait for
    // the results: bounded waits, not timing assertions.
    let m = handle.metrics().clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    while m.snapshot()[1].records_in < 50 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing fires before the clock moves"
    );
    clock.set(10_000);
    while seen.lock().unwrap().len() < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    gate.store(true, std::sync::atomic::Ordering::SeqCst);
    handle.join().result.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(
        seen.iter()
            .all(|v| v.contains(r#""start":0,"end":10000,"count":10"#)),
        "{seen:?}"
    );
}

struct RecordingSink(Arc<Mutex<Vec<String>>>);
struct RecordingWriter(Arc<Mutex<Vec<String>>>);

impl weir_engine::SinkFactory for RecordingSink {
    fn create(&self, _: &SubtaskInfo) -> Result<Box<dyn weir_engine::Sink>, weir_engine::BoxError> {
        Ok(Box::new(RecordingWriter(self.0.clone())))
    }
}

impl weir_engine::Sink for RecordingWriter {
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), weir_engine::BoxError> {
        let mut v = self.0.lock().unwrap();
        v.extend(
            batch
                .records()
                .map(|r| String::from_utf8_lossy(r.value()).into_owned()),
        );
        Ok(())
    }
    fn finish(&mut self) -> Result<(), weir_engine::BoxError> {
        Ok(())
    }
}

/// A source that, once its inner source ends, keeps returning empty batches
/// until the gate opens.
struct GatedSource(weir_engine::NodeKind, Arc<std::sync::atomic::AtomicBool>);
struct Gated(
    Box<dyn weir_engine::Source>,
    Arc<std::sync::atomic::AtomicBool>,
    bool,
);

impl weir_engine::SourceFactory for GatedSource {
    fn create(
        &self,
        info: &SubtaskInfo,
    ) -> Result<Box<dyn weir_engine::Source>, weir_engine::BoxError> {
        let weir_engine::NodeKind::Source(f) = &self.0 else {
            return Err("not a source".into());
        };
        Ok(Box::new(Gated(f.create(info)?, self.1.clone(), false)))
    }
}

impl weir_engine::Source for Gated {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>, weir_engine::BoxError> {
        if !self.2 {
            match self.0.next_batch()? {
                Some(b) => return Ok(Some(b)),
                None => self.2 = true,
            }
        }
        if self.1.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(2));
        Ok(Some(RecordBatch::default()))
    }
}

fn prepare_err(toml: &str) -> String {
    let j = job(toml, &[r#"{"k":"a","t":1}"#.to_string()]);
    match run(&j) {
        Err(e) => e.to_string(),
        Ok(o) => match o.result {
            Err(e) => e.to_string(),
            Ok(()) => panic!("the job should have failed"),
        },
    }
}

const SOURCE: &str = r#"
[source.ev]
kind = "file"
path = "in.jsonl"
key_field = "k"
timestamp_field = "t"
watermark = { strategy = "monotonous" }

[sink.out]
input = "w"
kind = "file"
path = "out.jsonl"
"#;

#[test]
fn bad_window_settings_name_the_operator_field_and_line() {
    let cases = [
        (
            "window = { type = \"hopping\", size = \"1m\" }",
            "unknown window type `hopping`",
        ),
        ("window = { type = \"tumbling\" }", "needs `size`"),
        (
            "window = { type = \"tumbling\", size = \"soon\" }",
            "is not a duration",
        ),
        (
            "window = { type = \"sliding\", size = \"1m\", slide = \"2m\" }",
            "slide must not exceed the size",
        ),
        (
            "window = { type = \"tumbling\", size = \"1m\" }\ntrigger = { type = \"count\" }",
            "needs `count`",
        ),
        (
            "window = { type = \"tumbling\", size = \"1m\" }\nevictor = { type = \"time\" }",
            "needs `keep`",
        ),
        ("allowed_lateness = \"1m\"", "applies to window operators"),
    ];
    for (fields, expected) in cases {
        let toml =
            format!("{SOURCE}\n[operator.w]\ninput = \"ev\"\nmodule = \"bid-count\"\n{fields}\n");
        let e = prepare_err(&toml);
        assert!(e.contains("operator `w`"), "{fields}: {e}");
        assert!(e.contains(expected), "{fields}: {e}");
        assert!(e.contains("job.toml:"), "{fields}: names the line: {e}");
    }
}

#[test]
fn window_modules_and_side_outputs_must_fit_together() {
    let with = |fields: &str| {
        prepare_err(&format!(
            "{SOURCE}\n[operator.w]\ninput = \"ev\"\n{fields}\n"
        ))
    };
    let e = with("module = \"bid-count\"");
    assert!(e.contains("needs a `window`"), "{e}");
    let e = with("module = \"split-words\"\nwindow = { type = \"global\" }");
    assert!(
        e.contains("needs an aggregate or process-window module"),
        "{e}"
    );
    let e = prepare_err(&format!(
        "{}\n[operator.w]\ninput = \"ev\"\nmodule = \"bid-count\"\nwindow = {{ type = \"global\" }}\nlate_output = \"late\"\n",
        SOURCE.replace("input = \"w\"", "input = \"w.lates\"")
    ));
    assert!(
        e.contains("`w` has no side output `lates` (it has: late)"),
        "{e}"
    );
}

#[test]
fn keyed_guest_misuse_fails_the_job_with_a_clear_error() {
    let with = |mode: &str, extra: &str| {
        prepare_err(&format!(
            "{SOURCE}\n[operator.w]\ninput = \"ev\"\nmodule = \"keyed-misbehave\"\nconfig = {{ mode = \"{mode}\" }}\n{extra}\n"
        ))
    };
    let e = with("kind-mismatch", "");
    assert!(e.contains("operator `w`"), "{e}");
    assert!(
        e.contains("state `x` is value state and cannot be used as list state"),
        "{e}"
    );
    let e = with("undeclared-side", "");
    assert!(
        e.contains("emitted to side output `nope`, which the job does not declare"),
        "{e}"
    );
    let e = with("undeclared-side", "side_outputs = [\"yes\"]");
    assert!(e.contains("(declared: yes)"), "{e}");
    let e = with("timer-trap", "");
    assert!(e.contains("on-timer"), "{e}");
    assert!(e.contains("timer at 1 went off"), "{e}");
}

#[test]
fn keyed_processing_time_timers_fire_on_the_test_clock() {
    let module = sandbox().load_file(&udf("keyed-misbehave")).unwrap();
    let f = KeyedProcessFactory::new(
        module,
        vec![("mode".into(), "processing-timer".into())],
        InstanceLimits::default(),
        vec![],
    )
    .unwrap();
    let clock = ManualClock::new(5_000);
    let mut op = f.create(&info(&clock)).unwrap();
    let mut out = Sink::default();
    op.process_batch(batch(&[("a", "x", 1), ("b", "y", 2)]), &mut out)
        .unwrap();
    assert_eq!(op.next_processing_time(), Some(6_000));
    // Event time does not fire processing-time timers.
    op.on_watermark(weir_engine::watermark::Watermark::MAX, &mut out)
        .unwrap();
    assert!(out.main.is_empty());
    clock.set(6_000);
    op.on_processing_time(6_000, &mut out).unwrap();
    let mut fired: Vec<(String, String)> = out
        .main
        .iter()
        .flat_map(|b| {
            b.records().map(|r| {
                (
                    String::from_utf8_lossy(r.key()).into_owned(),
                    String::from_utf8_lossy(r.value()).into_owned(),
                )
            })
        })
        .collect();
    fired.sort();
    assert_eq!(
        fired,
        vec![
            ("a".to_string(), "fired 6000 ProcessingTime".to_string()),
            ("b".to_string(), "fired 6000 ProcessingTime".to_string()),
        ]
    );
    assert_eq!(op.next_processing_time(), None);
}
