//! Native vs Wasm: the same filter + projection, per core.
//!
//! The operators are the `bid-filter` and `bid-projection` UDF crates. The
//! native side runs them as plain Rust through the SDK's `native` driver; the
//! Wasm side runs the components built from the same source, through the
//! sandbox (one call per 1,024-row batch, warm instances). Both produce host
//! `RecordBatch`es, so the difference is exactly the cost of the sandbox:
//! crossing the boundary and running compiled Wasm instead of native code.
//!
//! Run: `cargo bench -p weir-tests --bench pipeline` (after `bash .ci/setup`,
//! which builds the components). Figures go to docs/benchmarks.md.

#![allow(clippy::unwrap_used, missing_docs)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use udf_bid_filter::BidFilter;
use udf_bid_projection::BidProjection;
use weir_connectors::nexmark::{NexmarkEventType, NexmarkOptions, NexmarkSourceFactory};
use weir_engine::{SourceFactory, SubtaskInfo};
use weir_record::{BytesColumn, RecordBatch};
use weir_sandbox::{InstanceLabel, InstanceLimits, OperatorInstance};
use weir_udf::native::Native;
use weir_udf::{Batch, OutputColumns};

const ROWS: usize = 1024;
const BATCHES: usize = 32;
/// Keeps about two thirds of the bids (prices are log-uniform in 1e2..1e8).
const MIN_PRICE: &str = "10000";

fn nexmark_batches() -> Vec<RecordBatch> {
    let f = NexmarkSourceFactory::new(NexmarkOptions {
        events: (ROWS * BATCHES) as u64,
        event_type: Some(NexmarkEventType::Bid),
        rate: None,
        base_time: 1_767_225_600_000,
        real_time: false,
        batch_size: ROWS,
        parallelism: None,
    })
    .expect("valid options");
    let info = SubtaskInfo::new("bench", "bids", 0, 1);
    let mut s = f.create(&info).expect("nexmark source");
    let mut out = Vec::new();
    while let Some(b) = s.next_batch().expect("batch") {
        out.push(b);
    }
    out
}

/// The same bids, small: only the fields the operators read (~90 bytes).
fn small_batches(full: &[RecordBatch]) -> Vec<RecordBatch> {
    full.iter()
        .map(|b| {
            let mut out = weir_record::BatchBuilder::with_capacity(b.len(), b.len() * 96);
            for r in b.records() {
                let v: serde_json::Value = serde_json::from_slice(r.value()).expect("json");
                let small = serde_json::json!({
                    "auction": v["auction"], "bidder": v["bidder"], "price": v["price"],
                    "channel": v["channel"], "date_time": v["date_time"],
                });
                out.push(r.key(), small.to_string().as_bytes(), r.timestamp());
            }
            out.finish()
        })
        .collect()
}

fn view(b: &RecordBatch) -> Batch<'_> {
    let h = &b.headers;
    Batch::from_columns(
        (&b.keys.data, &b.keys.offsets),
        (&b.values.data, &b.values.offsets),
        &b.timestamps,
        &h.row_offsets,
        (&h.names.data, &h.names.offsets),
        (&h.values.data, &h.values.offsets),
    )
}

/// Host-side assembly of a map's output, as the sandbox does it.
fn assemble(input: RecordBatch, out: OutputColumns) -> RecordBatch {
    let (data, offsets) = out.values;
    let keys = out
        .keys
        .map_or(input.keys, |(data, offsets)| BytesColumn { data, offsets });
    RecordBatch {
        keys,
        values: BytesColumn { data, offsets },
        timestamps: out.timestamps.unwrap_or(input.timestamps),
        headers: input.headers,
    }
}

struct NativePipeline {
    filter: Native<BidFilter>,
    map: Native<BidProjection>,
}

impl NativePipeline {
    fn new() -> Self {
        Self {
            filter: Native::filter(&[("min_price", MIN_PRICE)]).expect("filter"),
            map: Native::map(&[("rate", "0.908")]).expect("map"),
        }
    }
    fn run(&mut self, batch: RecordBatch) -> RecordBatch {
        let keep = self.filter.run_filter(view(&batch)).expect("filter");
        let kept = batch.take(&keep);
        let out = self.map.run_map(view(&kept)).expect("map");
        assemble(kept, out)
    }
}

struct WasmPipeline {
    filter: OperatorInstance,
    map: OperatorInstance,
}

impl WasmPipeline {
    fn new() -> Self {
        let sandbox = weir_tests::sandbox();
        let label = |op: &str| InstanceLabel {
            job: "bench".into(),
            operator: op.into(),
            subtask: 0,
        };
        let filter = sandbox
            .load_file(&weir_tests::udf("bid-filter"))
            .expect("bid-filter component")
            .instantiate(
                label("filter"),
                InstanceLimits::default(),
                &[("min_price".into(), MIN_PRICE.into())],
            )
            .expect("filter instance");
        let map = sandbox
            .load_file(&weir_tests::udf("bid-projection"))
            .expect("bid-projection component")
            .instantiate(
                label("map"),
                InstanceLimits::default(),
                &[("rate".into(), "0.908".into())],
            )
            .expect("map instance");
        Self { filter, map }
    }
    fn run(&mut self, batch: RecordBatch) -> RecordBatch {
        let kept = self.filter.process(batch).expect("filter");
        self.map.process(kept).expect("map")
    }
}

fn bench(c: &mut Criterion) {
    let full = nexmark_batches();
    let small = small_batches(&full);

    // Both pipelines must agree before they are timed.
    let (mut native, mut wasm) = (NativePipeline::new(), WasmPipeline::new());
    for b in full.iter().take(4) {
        assert_eq!(
            native.run(b.clone()),
            wasm.run(b.clone()),
            "native and Wasm disagree"
        );
    }

    for (name, data) in [
        ("small records (~90 B)", &small),
        ("nexmark bids (~200 B)", &full),
    ] {
        let mut g = c.benchmark_group(format!("filter+projection, 1024-row batches, {name}"));
        g.throughput(Throughput::Elements((ROWS * BATCHES) as u64));
        g.sample_size(30);
        g.bench_function("native", |bench| {
            bench.iter_batched(
                || data.clone(),
                |batches| {
                    batches
                        .into_iter()
                        .map(|b| native.run(b).len())
                        .sum::<usize>()
                },
                BatchSize::LargeInput,
            )
        });
        g.bench_function("wasm", |bench| {
            bench.iter_batched(
                || data.clone(),
                |batches| {
                    batches
                        .into_iter()
                        .map(|b| wasm.run(b).len())
                        .sum::<usize>()
                },
                BatchSize::LargeInput,
            )
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
