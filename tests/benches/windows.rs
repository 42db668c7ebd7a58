//! Keyed windows over Nexmark bids, per core.
//!
//! Bids (keyed by auction) go through the window operator on one thread:
//! batches of 1,024 rows, a watermark after every batch (bounded
//! out-of-orderness of 1 s), results collected and dropped. The window
//! function is the `bid-count` component (an incremental aggregate); the host
//! does the assignment, the per-pane accumulators in keyed state, the timers
//! and the firing, one guest call per batch for all panes it touches and one
//! per firing watermark for all panes that fire.
//!
//! * `tumbling-10s` — a keyed 10 s tumbling count;
//! * `sliding-10s-2s` — a keyed 10 s / 2 s sliding count (each bid in 5
//!   windows).
//!
//! Run: `cargo bench -p weir-tests --bench windows` (after `bash .ci/setup`).
//! Figures go to docs/benchmarks.md.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use weir_connectors::nexmark::{NexmarkEventType, NexmarkOptions, NexmarkSourceFactory};
use weir_engine::assigner::WindowAssigner;
use weir_engine::watermark::Watermark;
use weir_engine::{Collector, EngineError, Operator, OperatorFactory, SourceFactory, SubtaskInfo};
use weir_operators::{WindowOperatorFactory, WindowSpec};
use weir_record::RecordBatch;
use weir_sandbox::InstanceLimits;

const ROWS: usize = 1024;
const EVENTS: usize = 200 * ROWS;

fn bids() -> Vec<RecordBatch> {
    let f = NexmarkSourceFactory::new(NexmarkOptions {
        events: EVENTS as u64,
        event_type: Some(NexmarkEventType::Bid),
        rate: None,
        base_time: 1_767_225_600_000,
        real_time: false,
        batch_size: ROWS,
        parallelism: None,
    })
    .expect("valid options");
    let mut s = f.create(&SubtaskInfo::new("bench", "bids", 0, 1)).unwrap();
    let mut out = Vec::new();
    while let Some(b) = s.next_batch().unwrap() {
        out.push(b);
    }
    out
}

#[derive(Default)]
struct Count(u64);

impl Collector for Count {
    fn collect(&mut self, batch: RecordBatch) -> Result<(), EngineError> {
        self.0 += batch.len() as u64;
        Ok(())
    }
}

fn operator(assigner: WindowAssigner) -> Box<dyn Operator> {
    let sandbox = weir_tests::sandbox();
    let module = sandbox.load_file(&weir_tests::udf("bid-count")).unwrap();
    let f = WindowOperatorFactory::new(
        module,
        vec![],
        InstanceLimits::default(),
        WindowSpec::new(assigner),
    )
    .unwrap();
    f.create(&SubtaskInfo::new("bench", "count", 0, 1)).unwrap()
}

/// Runs all batches through a fresh operator; returns the results emitted.
fn run(op: &mut dyn Operator, batches: Vec<RecordBatch>) -> u64 {
    let mut out = Count::default();
    let mut max = i64::MIN;
    for b in batches {
        max = max.max(b.timestamps.iter().copied().max().unwrap_or(i64::MIN));
        op.process_batch(b, &mut out).unwrap();
        op.on_watermark(Watermark(max - 1_001), &mut out).unwrap();
    }
    op.on_watermark(Watermark::MAX, &mut out).unwrap();
    out.0
}

fn bench(c: &mut Criterion) {
    let input = bids();
    let span = input.last().unwrap().timestamps.last().unwrap() - input[0].timestamps[0];
    eprintln!(
        "{EVENTS} bids over {:.1} s of event time",
        span as f64 / 1000.0
    );
    let cases = [
        (
            "tumbling-10s",
            WindowAssigner::Tumbling {
                size: Duration::from_secs(10),
                offset: Duration::ZERO,
            },
        ),
        (
            "sliding-10s-2s",
            WindowAssigner::Sliding {
                size: Duration::from_secs(10),
                slide: Duration::from_secs(2),
                offset: Duration::ZERO,
            },
        ),
    ];
    let mut g = c.benchmark_group("keyed-window-count");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.sample_size(10);
    for (name, assigner) in cases {
        let results = run(&mut *operator(assigner), input.clone());
        eprintln!("{name}: {results} window results");
        g.bench_function(name, |b| {
            b.iter_batched(
                || (operator(assigner), input.clone()),
                |(mut op, batches)| run(&mut *op, batches),
                BatchSize::PerIteration,
            );
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
