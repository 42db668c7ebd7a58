//! The engine with native nodes: chaining, exchanges, backpressure, failure.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_connectors::generator::{GeneratorOptions, GeneratorSourceFactory};
use weir_engine::operators::NativeOperatorFactory;
use weir_engine::{BoxError, Dataflow, NodeKind, NodeSpec, Sink, SinkFactory, SubtaskInfo};
use weir_engine::{EngineError, NodeRole};
use weir_record::RecordBatch;

/// Collects every record value it receives, optionally slowly.
#[derive(Clone, Default)]
struct Collect {
    values: Arc<Mutex<Vec<String>>>,
    delay: Duration,
}

impl SinkFactory for Collect {
    fn create(&self, _: &SubtaskInfo) -> Result<Box<dyn Sink>, BoxError> {
        Ok(Box::new(self.clone()))
    }
}

impl Sink for Collect {
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), BoxError> {
        std::thread::sleep(self.delay);
        let mut v = self.values.lock().unwrap();
        v.extend(
            batch
                .records()
                .map(|r| String::from_utf8_lossy(r.value()).into_owned()),
        );
        Ok(())
    }
    fn finish(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
}

fn generator(count: u64, batch_size: usize) -> NodeKind {
    NodeKind::Source(Arc::new(GeneratorSourceFactory::new(GeneratorOptions {
        count,
        keys: 7,
        start_time: 0,
        interval_ms: 1,
        rate: None,
        batch_size,
        parallelism: None,
    })))
}

fn node(name: &str, kind: NodeKind, parallelism: usize, inputs: Vec<usize>) -> NodeSpec {
    NodeSpec::new(name, kind, parallelism, inputs)
}

fn identity() -> NodeKind {
    NodeKind::Operator(Arc::new(NativeOperatorFactory::new(|| {
        |b: RecordBatch| Ok(b)
    })))
}

fn expected_values(count: u64) -> Vec<String> {
    let mut v: Vec<String> = (0..count)
        .map(|n| {
            format!(
                r#"{{"seq":{n},"key":"k{}","amount":{}}}"#,
                n % 7,
                weir_connectors::generator::amount_of(n)
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn exchanges_between_parallelisms_lose_and_duplicate_nothing() {
    let sink = Collect::default();
    let mut f = Dataflow::new("exchange");
    let s = f.add(node("gen", generator(10_000, 100), 2, vec![]));
    let a = f.add(node("widen", identity(), 3, vec![s]));
    let b = f.add(node("narrow", identity(), 2, vec![a]));
    f.add(node(
        "sink",
        NodeKind::Sink(Arc::new(sink.clone())),
        1,
        vec![b],
    ));
    let handle = weir_engine::run(f).unwrap();
    assert_eq!(
        handle.plan().tasks.len(),
        4,
        "every parallelism change breaks the chain"
    );
    let outcome = handle.join();
    outcome.result.unwrap();
    let mut got = sink.values.lock().unwrap().clone();
    got.sort();
    assert_eq!(got, expected_values(10_000));
    let widen = outcome.metrics.iter().find(|m| m.name == "widen").unwrap();
    assert_eq!((widen.records_in, widen.records_out), (10_000, 10_000));
}

#[test]
fn a_slow_sink_backpressures_the_source_without_losing_records() {
    let sink = Collect {
        delay: Duration::from_millis(5),
        ..Collect::default()
    };
    let mut f = Dataflow::new("backpressure");
    f.channel_capacity = 1;
    let s = f.add(node("gen", generator(3_000, 50), 1, vec![]));
    let mut sink_node = node("slow", NodeKind::Sink(Arc::new(sink.clone())), 1, vec![s]);
    sink_node.chain = false;
    f.add(sink_node);
    let outcome = weir_engine::run(f).unwrap().join();
    outcome.result.unwrap();
    assert_eq!(sink.values.lock().unwrap().len(), 3_000);
    let gen_metrics = outcome
        .metrics
        .iter()
        .find(|m| m.role == NodeRole::Source)
        .unwrap();
    // 60 batches into a 1-slot channel drained at 5 ms per batch: the
    // producer must have waited.
    assert!(
        gen_metrics.backpressured > Duration::ZERO,
        "{gen_metrics:?}"
    );
}

#[test]
fn a_union_of_two_sources_and_a_fan_out_to_two_sinks() {
    let (left, right) = (Collect::default(), Collect::default());
    let mut f = Dataflow::new("union");
    let a = f.add(node("a", generator(500, 64), 1, vec![]));
    let b = f.add(node("b", generator(700, 64), 2, vec![]));
    let u = f.add(node("union", identity(), 1, vec![a, b]));
    f.add(node(
        "left",
        NodeKind::Sink(Arc::new(left.clone())),
        1,
        vec![u],
    ));
    f.add(node(
        "right",
        NodeKind::Sink(Arc::new(right.clone())),
        1,
        vec![u],
    ));
    weir_engine::run(f).unwrap().join().result.unwrap();
    assert_eq!(left.values.lock().unwrap().len(), 1_200);
    assert_eq!(right.values.lock().unwrap().len(), 1_200);
}

#[test]
fn the_root_cause_is_reported_not_the_disconnections_it_causes() {
    let mut f = Dataflow::new("fails");
    let s = f.add(node("gen", generator(100_000, 100), 2, vec![]));
    let failing = NodeKind::Operator(Arc::new(NativeOperatorFactory::new(|| {
        let mut seen = 0;
        move |b: RecordBatch| {
            seen += b.len();
            if seen > 2_000 {
                return Err::<RecordBatch, BoxError>("bad record".into());
            }
            Ok(b)
        }
    })));
    let mut op = node("picky", failing, 1, vec![s]);
    op.chain = false;
    let o = f.add(op);
    f.add(node(
        "sink",
        NodeKind::Sink(Arc::new(Collect::default())),
        1,
        vec![o],
    ));
    let outcome = weir_engine::run(f).unwrap().join();
    match outcome.result {
        Err(EngineError::Node {
            node, role, source, ..
        }) => {
            assert_eq!(node, "picky");
            assert_eq!(role, NodeRole::Operator);
            assert_eq!(source.to_string(), "bad record");
        }
        other => panic!("expected the operator's error, got {other:?}"),
    }
}

#[test]
fn cancelling_drains_what_was_read_and_ends_cleanly() {
    let sink = Collect::default();
    let mut f = Dataflow::new("cancel");
    let paced = NodeKind::Source(Arc::new(GeneratorSourceFactory::new(GeneratorOptions {
        count: 10_000_000,
        keys: 7,
        start_time: 0,
        interval_ms: 1,
        rate: Some(20_000.0),
        batch_size: 100,
        parallelism: None,
    })));
    let s = f.add(node("gen", paced, 2, vec![]));
    let o = f.add(node("op", identity(), 1, vec![s]));
    f.add(node(
        "sink",
        NodeKind::Sink(Arc::new(sink.clone())),
        1,
        vec![o],
    ));
    let handle = weir_engine::run(f).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    handle.canceller().cancel();
    let outcome = handle.join();
    outcome.result.unwrap();
    let read = outcome
        .metrics
        .iter()
        .find(|m| m.name == "gen")
        .unwrap()
        .records_out;
    let written = sink.values.lock().unwrap().len() as u64;
    assert!(read > 0 && read < 10_000_000, "read {read}");
    assert_eq!(
        written, read,
        "every record read before the stop reaches the sink"
    );
}
