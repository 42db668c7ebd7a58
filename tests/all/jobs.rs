//! Whole jobs from job files: real sources, real components, real sinks, with
//! results checked against an independent computation.

use std::path::PathBuf;

use nexmark::EventGenerator;
use nexmark::config::NexmarkConfig;
use nexmark::event::{Event, EventType};
use weir_job::JobError;
use weir_tests::read_jsonl;

struct Job {
    dir: tempfile::TempDir,
    file: PathBuf,
}

fn job(toml: &str) -> Job {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.toml");
    std::fs::write(&file, toml).unwrap();
    Job { dir, file }
}

fn run(job: &Job) -> Result<weir_engine::JobOutcome, JobError> {
    weir_tests::run_job(&job.file)
}

fn bid_json(auction: u64, bidder: u64, price: u64, channel: &str, t: i64) -> String {
    format!(
        r#"{{"auction":{auction},"bidder":{bidder},"price":{price},"channel":"{channel}","url":"u","date_time":{t},"extra":"x"}}"#
    )
}

#[test]
fn file_to_filter_to_map_to_file_matches_an_independent_computation() {
    let j = job(r#"
[source.bids]
kind = "file"
path = "bids.jsonl"
timestamp_field = "date_time"
batch_size = 7

[operator.expensive]
input = "bids"
module = "bid-filter"
config = { min_price = 500 }

[operator.euros]
input = "expensive"
module = "bid-projection"
config = { rate = 0.5 }

[sink.out]
input = "euros"
kind = "file"
path = "out/result.jsonl"
format = "envelope"
"#);
    let mut lines = String::new();
    let mut expected = Vec::new();
    for i in 0..100u64 {
        let price = (i * 37) % 1000;
        lines.push_str(&bid_json(i, 1000 + i % 9, price, "Apple", 10 * i as i64));
        lines.push('\n');
        if price >= 500 {
            expected.push((
                1000 + i % 9,
                i,
                (price as f64 * 0.5).round() / 100.0,
                10 * i as i64,
            ));
        }
    }
    std::fs::write(j.dir.path().join("bids.jsonl"), lines).unwrap();
    let outcome = run(&j).unwrap();
    outcome.result.unwrap();
    let got = read_jsonl(&j.dir.path().join("out/result.jsonl"));
    assert_eq!(got.len(), expected.len());
    assert!(!expected.is_empty());
    for (g, (bidder, auction, eur, t)) in got.iter().zip(&expected) {
        assert_eq!(g["key"], bidder.to_string());
        assert_eq!(g["timestamp"], *t);
        assert_eq!(g["value"]["auction"], *auction);
        assert_eq!(g["value"]["price_eur"], *eur);
        assert!(g["value"].get("url").is_none());
    }
    let sink = outcome.metrics.iter().find(|m| m.name == "out").unwrap();
    assert_eq!(sink.records_in as usize, expected.len());
}

#[test]
fn nexmark_through_rust_and_python_at_parallelism_two() {
    const EVENTS: u64 = 20_000;
    let j = job(&format!(
        r#"
[job]
parallelism = 2

[source.bids]
kind = "nexmark"
event_type = "bid"
events = {EVENTS}

[operator.expensive]
input = "bids"
module = "bid-filter"
kind = "filter"
config = {{ min_price = 1_000_000 }}

[operator.euros]
input = "expensive"
module = "bid-projection"
kind = "map"

[operator.band]
input = "euros"
module = "price-band"
kind = "map"
config = {{ low = 20_000, high = 200_000 }}

[sink.out]
input = "band"
kind = "file"
path = "out.jsonl"
"#
    ));
    let outcome = run(&j).unwrap();
    outcome.result.unwrap();

    // The same bids, generated and transformed here without weir.
    let config = NexmarkConfig {
        base_time: 1_767_225_600_000,
        ..NexmarkConfig::default()
    };
    let mut expected: Vec<(u64, u64, i64, String, String)> = Vec::new();
    for e in EventGenerator::new(config)
        .with_type_filter(EventType::Bid)
        .take(EVENTS as usize)
    {
        let Event::Bid(b) = e else {
            panic!("not a bid")
        };
        if b.price >= 1_000_000 {
            let eur = (b.price as f64 * 0.908).round() / 100.0;
            let band = if eur < 20_000.0 {
                "low"
            } else if eur >= 200_000.0 {
                "high"
            } else {
                "mid"
            };
            expected.push((
                b.auction as u64,
                b.bidder as u64,
                b.date_time as i64,
                eur.to_string(),
                band.into(),
            ));
        }
    }
    expected.sort();
    let mut got: Vec<_> = read_jsonl(&j.dir.path().join("out.jsonl"))
        .iter()
        .map(|g| {
            (
                g["auction"].as_u64().unwrap(),
                g["bidder"].as_u64().unwrap(),
                g["date_time"].as_i64().unwrap(),
                g["price_eur"].as_f64().unwrap().to_string(),
                g["band"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    assert!(expected.len() > 1_000);
    assert_eq!(got.len(), expected.len(), "every expensive bid, once");
    assert_eq!(got, expected);
}

#[test]
fn flat_map_splits_lines_into_keyed_words() {
    let j = job(r#"
[source.lines]
kind = "file"
path = "lines.jsonl"

[operator.words]
input = "lines"
module = "split-words"
config = { min_len = 3 }

[sink.out]
input = "words"
kind = "file"
path = "words.jsonl"
format = "envelope"
"#);
    std::fs::write(
        j.dir.path().join("lines.jsonl"),
        "{\"text\":\"The quick brown fox\"}\n{\"text\":\"is a fox\"}\n",
    )
    .unwrap();
    run(&j).unwrap().result.unwrap();
    let keys: Vec<String> = read_jsonl(&j.dir.path().join("words.jsonl"))
        .iter()
        .map(|v| v["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, vec!["the", "quick", "brown", "fox", "fox"]);
}

fn prepare_err(j: &Job) -> String {
    match run(j) {
        Err(e) => e.to_string(),
        Ok(o) => panic!("expected a job error, the job ran: {:?}", o.result),
    }
}

const BASE: &str = r#"[source.nums]
kind = "generator"
count = 100

[operator.op]
input = "nums"
module = "misbehave"

[sink.out]
input = "op"
kind = "stdout"
every = 1000000
"#;

fn file_name(j: &Job) -> String {
    j.file.display().to_string()
}

#[test]
fn a_job_file_with_an_unknown_field_names_file_line_and_field() {
    let j = job(&BASE.replace("count = 100", "count = 100\nrate_limit = 5"));
    let e = prepare_err(&j);
    assert!(
        e.starts_with(&format!("{}:4: source `nums`", file_name(&j))),
        "{e}"
    );
    assert!(e.contains("unknown field `rate_limit`"), "{e}");
}

#[test]
fn a_job_with_a_missing_udf_names_the_operator_and_module() {
    let j = job(&BASE.replace("module = \"misbehave\"", "module = \"no-such-udf\""));
    let e = prepare_err(&j);
    assert!(
        e.starts_with(&format!("{}:7: operator `op`", file_name(&j))),
        "{e}"
    );
    assert!(e.contains("module `no-such-udf` not found"), "{e}");
}

#[test]
fn a_job_with_a_bad_input_or_kind_is_refused_before_running() {
    let j = job(&BASE.replace("input = \"nums\"", "input = \"numz\""));
    let e = prepare_err(&j);
    assert!(
        e.starts_with(&format!("{}:6: operator `op`", file_name(&j))),
        "{e}"
    );
    assert!(
        e.contains("input `numz` is not a source or operator"),
        "{e}"
    );

    let j = job(&BASE.replace(
        "module = \"misbehave\"",
        "module = \"misbehave\"\nkind = \"filter\"",
    ));
    let e = prepare_err(&j);
    assert!(
        e.starts_with(&format!("{}:8: operator `op`", file_name(&j))),
        "{e}"
    );
    assert!(
        e.contains("kind is `filter` but module `misbehave.wasm` implements `map`"),
        "{e}"
    );

    let not_wasm = j.dir.path().join("fake.wasm");
    std::fs::write(&not_wasm, "not wasm").unwrap();
    let j2 = job(&BASE.replace(
        "module = \"misbehave\"",
        &format!("module = \"{}\"", not_wasm.display()),
    ));
    let e = prepare_err(&j2);
    assert!(
        e.contains("operator `op`: module `fake.wasm` is not a WebAssembly file"),
        "{e}"
    );
}

fn failing_job(mode: &str, extra: &str) -> String {
    let j = job(&BASE.replace(
        "module = \"misbehave\"",
        &format!("module = \"misbehave\"\nconfig = {{ mode = \"{mode}\", trigger = \"\\\"seq\\\":42,\" }}\n{extra}"),
    ));
    let outcome = run(&j).unwrap();
    outcome.result.unwrap_err().to_string()
}

#[test]
fn a_trapping_guest_fails_the_job_with_operator_module_and_message() {
    let e = failing_job("trap", "");
    assert!(e.starts_with("operator `op` (subtask 0): module `misbehave.wasm` failed in `map-batch`: guest trapped"), "{e}");
    assert!(e.contains("refusing record 42 on purpose"), "{e}");
}

#[test]
fn a_runaway_guest_fails_the_job_at_its_deadline() {
    let e = failing_job("spin", "limits = { cpu_deadline_ms = 100 }");
    assert!(e.contains("operator `op`"), "{e}");
    assert!(e.contains("exceeded its CPU deadline of 100ms"), "{e}");
}

#[test]
fn a_memory_hungry_guest_fails_the_job_at_its_cap() {
    let e = failing_job("hog", "limits = { memory_mb = 16 }");
    assert!(e.contains("operator `op`"), "{e}");
    assert!(e.contains("over its cap of 16777216 bytes"), "{e}");
}
