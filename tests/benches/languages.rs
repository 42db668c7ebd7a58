//! UDF languages: the same operator in each SDK, side by side.
//!
//! The operator is the conformance `map` (udfs/conformance/README.md): parse
//! the amount, upper-case the words, format a new value; one call per
//! 1,024-row batch on one warm instance, one thread (records/s per core).
//! For each language: records/s, component size, the time wasmtime takes to
//! compile the component (no module cache; wasmtime compiles in parallel on
//! both cores), and the instance's linear memory after the run.
//!
//! Run: `cargo bench -p weir-tests --bench languages` (after `bash .ci/setup`,
//! which builds the components). Figures go to docs/benchmarks.md.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use weir_record::RecordBatch;
use weir_sandbox::{InstanceLabel, InstanceLimits, Sandbox, SandboxConfig};

const LANGS: [&str; 6] = ["rust", "c", "zig", "go", "js", "python"];
const ROWS: usize = 1024;
const BATCHES: usize = 64;

fn batches() -> Vec<RecordBatch> {
    const WORDS: [&str; 5] = ["red", "green", "blue", "amber", "teal"];
    (0..BATCHES)
        .map(|b| {
            let rows: Vec<(String, String, i64)> = (0..ROWS)
                .map(|i| {
                    let n = b * ROWS + i;
                    let words: Vec<&str> = (0..n % 4).map(|w| WORDS[(n + w) % 5]).collect();
                    (
                        format!("u{}", n % 100),
                        format!("{} {}", n % 100, words.join(" ")),
                        n as i64,
                    )
                })
                .collect();
            let refs: Vec<(&str, &str, i64)> = rows
                .iter()
                .map(|(k, v, t)| (k.as_str(), v.as_str(), *t))
                .collect();
            weir_tests::batch(&refs)
        })
        .collect()
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument picks languages.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let input = batches();
    println!("| language | records/s (1 core) | component | compile | instance memory |");
    println!("|---|---|---|---|---|");
    for lang in LANGS {
        if !only.is_empty() && !only.iter().any(|o| o == lang) {
            continue;
        }
        let path = weir_tests::udf(&format!("conf-map-{lang}"));
        let size = std::fs::metadata(&path).unwrap().len();
        let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
        let started = Instant::now();
        let module = sandbox.load_file(&path).unwrap();
        let compile = started.elapsed();
        let mut instance = module
            .instantiate(
                InstanceLabel {
                    job: "bench".into(),
                    operator: lang.into(),
                    subtask: 0,
                },
                InstanceLimits {
                    call_deadline: Duration::from_secs(30),
                    ..InstanceLimits::default()
                },
                &[],
            )
            .unwrap();
        for b in input.iter().take(8) {
            instance.process(b.clone()).unwrap();
        }
        // Median of five rounds over every batch.
        let mut rates = Vec::new();
        for _ in 0..5 {
            let round: Vec<RecordBatch> = input.clone();
            let started = Instant::now();
            let mut rows = 0;
            for b in round {
                rows += instance.process(b).unwrap().len();
            }
            rates.push(rows as f64 / started.elapsed().as_secs_f64());
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "| {lang} | {:.2} M | {:.0} KiB | {:.2} s | {:.1} MiB |",
            rates[2] / 1e6,
            size as f64 / 1024.0,
            compile.as_secs_f64(),
            instance.memory_bytes() as f64 / (1 << 20) as f64
        );
    }
}
