//! The conformance suite (udfs/conformance/README.md): the same five
//! operators — filter, map, flat-map, windowed aggregate, keyed process with
//! state and timers — in every language, run through the same golden
//! pipeline. Each language's outputs must equal an independent computation
//! here, and so each other's.

use std::collections::BTreeMap;
use std::path::Path;

use weir_tests::{read_jsonl, sandbox, udf_dir};

/// One output record: key, value, event time.
type Row = (String, String, i64);

/// One input record: key, amount, words, event time.
struct Event {
    key: String,
    amount: i64,
    words: Vec<&'static str>,
    t: i64,
}

impl Event {
    fn value(&self) -> String {
        let mut v = self.amount.to_string();
        for w in &self.words {
            v.push(' ');
            v.push_str(w);
        }
        v
    }
}

/// A deterministic input: 12 keys, amounts 0..99, 0 to 3 words, times
/// increasing, with now and then a gap longer than the session gap.
fn events() -> Vec<Event> {
    const WORDS: [&str; 6] = ["red", "green", "blue", "amber", "teal", "red"];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut t = 1_700_000_000_000i64;
    (0..600)
        .map(|_| {
            let r = next();
            t += if r % 29 == 0 { 4_000 } else { (r % 300) as i64 };
            let words = (0..(r >> 8) % 4)
                .map(|i| WORDS[((r >> (12 + 4 * i)) % 6) as usize])
                .collect();
            Event {
                key: format!("u{}", (r >> 32) % 12),
                amount: ((r >> 40) % 100) as i64,
                words,
                t,
            }
        })
        .collect()
}

/// What every operator must output for `events`, computed here.
struct Expected {
    map: Vec<Row>,
    flat_map: Vec<Row>,
    tumbling: Vec<Row>,
    session: Vec<Row>,
    keyed: Vec<Row>,
    small: Vec<Row>,
}

const MIN: i64 = 40;
const SESSION_GAP: i64 = 3_000;

fn expected(events: &[Event]) -> Expected {
    let mut e = Expected {
        map: Vec::new(),
        flat_map: Vec::new(),
        tumbling: Vec::new(),
        session: Vec::new(),
        keyed: Vec::new(),
        small: Vec::new(),
    };
    for ev in events {
        if ev.amount >= MIN {
            let upper = ev.words.join(" ").to_uppercase();
            e.map.push((
                ev.key.clone(),
                format!("{}|{}|{upper}", ev.key, 2 * ev.amount),
                ev.t,
            ));
        }
        for (i, w) in ev.words.iter().enumerate() {
            e.flat_map
                .push((w.to_string(), w.to_string(), ev.t + i as i64));
        }
    }
    let stats = |key: &str, start: i64, end: i64, amounts: &[i64]| -> Row {
        let line = format!(
            "{key} {start} {end} count={} sum={} max={}",
            amounts.len(),
            amounts.iter().sum::<i64>(),
            amounts.iter().max().unwrap()
        );
        (key.to_string(), line, end - 1)
    };
    let mut by_key: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for ev in events {
        by_key.entry(&ev.key).or_default().push(ev);
    }
    for (key, evs) in &by_key {
        // Tumbling 10 s windows.
        let mut windows: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for ev in evs {
            windows
                .entry(ev.t.div_euclid(10_000) * 10_000)
                .or_default()
                .push(ev.amount);
        }
        for (start, amounts) in windows {
            e.tumbling.push(stats(key, start, start + 10_000, &amounts));
        }
        // Session windows: a record opens [t, t + gap); overlapping ones merge.
        let mut session: Option<(i64, i64, Vec<i64>)> = None;
        for ev in evs {
            match &mut session {
                Some((_, end, amounts)) if ev.t < *end => {
                    *end = (*end).max(ev.t + SESSION_GAP);
                    amounts.push(ev.amount);
                }
                _ => {
                    if let Some((s, end, amounts)) = session.take() {
                        e.session.push(stats(key, s, end, &amounts));
                    }
                    session = Some((ev.t, ev.t + SESSION_GAP, vec![ev.amount]));
                }
            }
        }
        if let Some((s, end, amounts)) = session {
            e.session.push(stats(key, s, end, &amounts));
        }
        // Keyed process: running total, per-bucket amounts and word counts.
        let mut total = 0;
        let mut buckets: BTreeMap<i64, (Vec<i64>, BTreeMap<&str, u32>)> = BTreeMap::new();
        for ev in evs {
            total += ev.amount;
            let bucket = ev.t - ev.t.rem_euclid(10_000) + 9_999;
            let (amounts, words) = buckets.entry(bucket).or_default();
            amounts.push(ev.amount);
            for w in &ev.words {
                *words.entry(w).or_default() += 1;
            }
            if ev.amount >= 90 {
                e.keyed.push((
                    key.to_string(),
                    format!("big {} total={total}", ev.amount),
                    ev.t,
                ));
            }
            if ev.amount < 10 {
                e.small
                    .push((key.to_string(), format!("small {}", ev.amount), ev.t));
            }
        }
        for (bucket, (amounts, words)) in buckets {
            let amounts: Vec<String> = amounts.iter().map(i64::to_string).collect();
            let words: Vec<String> = words.iter().map(|(w, c)| format!("{w}:{c}")).collect();
            e.keyed.push((
                key.to_string(),
                format!(
                    "bucket {bucket} amounts={} words={}",
                    amounts.join(","),
                    words.join(",")
                ),
                bucket,
            ));
        }
    }
    for rows in [
        &mut e.map,
        &mut e.flat_map,
        &mut e.tumbling,
        &mut e.session,
        &mut e.keyed,
        &mut e.small,
    ] {
        rows.sort();
    }
    e
}

/// The golden pipeline for one language's operators.
fn job(lang: &str) -> String {
    format!(
        r#"
[job]
name = "conformance-{lang}"
parallelism = 2

[source.events]
kind = "file"
path = "events.jsonl"
format = "envelope"
batch_size = 7
watermark = {{ strategy = "bounded-out-of-orderness", max_out_of_orderness_ms = 500 }}

[operator.filter]
input = "events"
module = "conf-filter-{lang}"
config = {{ min = {MIN} }}

[operator.map]
input = "filter"
module = "conf-map-{lang}"

[operator.flat_map]
input = "events"
module = "conf-flat-map-{lang}"

[operator.tumbling]
input = "events"
module = "conf-aggregate-{lang}"
window = {{ type = "tumbling", size = "10s" }}

[operator.session]
input = "events"
module = "conf-aggregate-{lang}"
window = {{ type = "session", gap = "{SESSION_GAP}ms" }}

[operator.keyed]
input = "events"
module = "conf-keyed-{lang}"
side_outputs = ["small"]

[sink.map_out]
input = "map"
kind = "file"
path = "out/map.jsonl"
format = "envelope"

[sink.flat_map_out]
input = "flat_map"
kind = "file"
path = "out/flat_map.jsonl"
format = "envelope"

[sink.tumbling_out]
input = "tumbling"
kind = "file"
path = "out/tumbling.jsonl"
format = "envelope"

[sink.session_out]
input = "session"
kind = "file"
path = "out/session.jsonl"
format = "envelope"

[sink.keyed_out]
input = "keyed"
kind = "file"
path = "out/keyed.jsonl"
format = "envelope"

[sink.small_out]
input = "keyed.small"
kind = "file"
path = "out/small.jsonl"
format = "envelope"
"#
    )
}

/// The rows the sink `name` wrote, sorted.
fn rows(dir: &Path, name: &str) -> Vec<Row> {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut rows: Vec<Row> = read_jsonl(&dir.join(format!("out/{name}.jsonl")))
        .iter()
        .map(|v| {
            (
                text(&v["key"]),
                text(&v["value"]),
                v["timestamp"].as_i64().unwrap(),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn conformance(lang: &str) {
    let missing: Vec<String> = ["filter", "map", "flat-map", "aggregate", "keyed"]
        .iter()
        .map(|op| format!("conf-{op}-{lang}"))
        .filter(|m| !udf_dir().join(format!("{m}.wasm")).is_file())
        .collect();
    assert!(
        missing.is_empty(),
        "components {missing:?} are not built: run `weir udf build udfs/conformance/{lang}/*`"
    );
    let dir = tempfile::tempdir().unwrap();
    let events = events();
    let mut lines = String::new();
    for ev in &events {
        lines.push_str(
            &serde_json::json!({ "key": ev.key, "value": ev.value(), "timestamp": ev.t })
                .to_string(),
        );
        lines.push('\n');
    }
    std::fs::write(dir.path().join("events.jsonl"), lines).unwrap();
    let file = dir.path().join("job.toml");
    std::fs::write(&file, job(lang)).unwrap();
    let outcome = weir_tests::run_job(&file).unwrap_or_else(|e| panic!("{lang}: {e}"));
    outcome
        .result
        .unwrap_or_else(|e| panic!("{lang}: the job failed: {e}"));

    let want = expected(&events);
    for (name, want) in [
        ("map", &want.map),
        ("flat_map", &want.flat_map),
        ("tumbling", &want.tumbling),
        ("session", &want.session),
        ("keyed", &want.keyed),
        ("small", &want.small),
    ] {
        assert!(!want.is_empty(), "the input exercises `{name}`");
        let got = rows(dir.path(), name);
        if &got != want {
            let first = got
                .iter()
                .zip(want.iter())
                .position(|(g, w)| g != w)
                .unwrap_or(got.len().min(want.len()));
            panic!(
                "{lang}: `{name}` differs: {} rows, expected {}; first difference at {first}: got {:?}, expected {:?}",
                got.len(),
                want.len(),
                got.get(first),
                want.get(first)
            );
        }
    }
}

#[test]
fn rust() {
    conformance("rust");
}

#[test]
fn python() {
    conformance("python");
}

#[test]
fn js() {
    conformance("js");
}

/// The JS SDK's own tests (guest-sdk/js/test), in Node: what the ASCII
/// conformance input does not reach — non-ASCII text, `row(...)` from a map,
/// outputs that mix strings, bytes and JSON.
#[test]
fn js_sdk_handles_text_it_cannot_slice() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk/js/test");
    let out = std::process::Command::new("node")
        .arg("--test")
        .arg(&dir)
        .output()
        .expect("node (installed by .ci/setup)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn c() {
    conformance("c");
}

#[test]
fn go() {
    conformance("go");
}

#[test]
fn zig() {
    conformance("zig");
}

/// Go's collector once ran inside `cabi_realloc` under load (a collection
/// reads the wall clock, an import the component model forbids there) and
/// the guest trapped. 64 batches of 1,024 records through the Go map
/// allocate far more than one collection's worth; every one must come back.
#[test]
fn go_collects_garbage_between_calls_not_inside_them() {
    use weir_sandbox::{InstanceLabel, InstanceLimits};
    let module = sandbox()
        .load_file(&weir_tests::udf("conf-map-go"))
        .unwrap();
    let label = InstanceLabel {
        job: "gc".into(),
        operator: "map".into(),
        subtask: 0,
    };
    let mut instance = module
        .instantiate(label, InstanceLimits::default(), &[])
        .unwrap();
    let values: Vec<String> = (0..1024).map(|i| format!("{i} red green blue")).collect();
    let rows: Vec<(&str, &str, i64)> = values.iter().map(|v| ("u1", v.as_str(), 0)).collect();
    for round in 0..64 {
        let out = instance
            .process(weir_tests::batch(&rows))
            .unwrap_or_else(|e| panic!("batch {round}: {e}"));
        assert_eq!(out.len(), 1024);
    }
    assert!(
        instance.memory_bytes() < 256 << 20,
        "{} bytes",
        instance.memory_bytes()
    );
}
