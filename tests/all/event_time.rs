//! Keyed exchanges and watermarks through the engine.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_connectors::generator::{GeneratorOptions, GeneratorSourceFactory};
use weir_engine::key_group::{key_group, subtask_for_group};
use weir_engine::watermark::{Watermark, WatermarkStrategy};
use weir_engine::{
    BoxError, Collector, Dataflow, EngineError, NodeKind, NodeSpec, Operator, OperatorFactory,
    Sink, SinkFactory, Source, SourceFactory, SubtaskInfo,
};
use weir_record::RecordBatch;

/// What an observing operator saw, in order, per subtask.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Record { key: String, ts: i64 },
    Watermark(i64),
}

#[derive(Clone, Default)]
struct Observe {
    seen: Arc<Mutex<HashMap<usize, Vec<Seen>>>>,
    /// Set when the first final watermark arrives.
    saw_end_of_time: Arc<AtomicBool>,
    /// Read when the final watermark arrives: was the other source running?
    other_running: Arc<AtomicBool>,
    end_while_other_running: Arc<AtomicBool>,
}

struct ObserveOp {
    subtask: usize,
    shared: Observe,
}

impl OperatorFactory for Observe {
    fn create(&self, info: &SubtaskInfo) -> Result<Box<dyn Operator>, BoxError> {
        Ok(Box::new(ObserveOp {
            subtask: info.subtask,
            shared: self.clone(),
        }))
    }
}

impl Operator for ObserveOp {
    fn process_batch(
        &mut self,
        batch: RecordBatch,
        out: &mut dyn Collector,
    ) -> Result<(), EngineError> {
        let mut seen = self.shared.seen.lock().unwrap();
        let v = seen.entry(self.subtask).or_default();
        for r in batch.records() {
            v.push(Seen::Record {
                key: String::from_utf8_lossy(r.key()).into_owned(),
                ts: r.timestamp(),
            });
        }
        drop(seen);
        out.collect(batch)
    }

    fn on_watermark(&mut self, wm: Watermark, _out: &mut dyn Collector) -> Result<(), EngineError> {
        self.shared
            .seen
            .lock()
            .unwrap()
            .entry(self.subtask)
            .or_default()
            .push(Seen::Watermark(wm.0));
        if wm == Watermark::MAX && !self.shared.saw_end_of_time.swap(true, Ordering::SeqCst) {
            let running = self.shared.other_running.load(Ordering::SeqCst);
            self.shared
                .end_while_other_running
                .store(running, Ordering::SeqCst);
        }
        Ok(())
    }
}

struct Discard;
impl SinkFactory for Discard {
    fn create(&self, _: &SubtaskInfo) -> Result<Box<dyn Sink>, BoxError> {
        Ok(Box::new(Discard))
    }
}
impl Sink for Discard {
    fn write_batch(&mut self, _: &RecordBatch) -> Result<(), BoxError> {
        Ok(())
    }
    fn finish(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
}

fn generator(count: u64, keys: u64) -> NodeKind {
    NodeKind::Source(Arc::new(GeneratorSourceFactory::new(GeneratorOptions {
        count,
        keys,
        start_time: 1_000,
        interval_ms: 1,
        rate: None,
        batch_size: 64,
        parallelism: None,
    })))
}

#[test]
fn a_keyed_exchange_sends_every_key_to_the_owner_of_its_group() {
    let observe = Observe::default();
    let mut f = Dataflow::new("keyed");
    f.max_parallelism = 16;
    let s = f.add(NodeSpec::new("gen", generator(5_000, 97), 2, vec![]));
    let mut keyed = NodeSpec::new(
        "by-key",
        NodeKind::Operator(Arc::new(observe.clone())),
        3,
        vec![s],
    );
    keyed.key_by = true;
    let k = f.add(keyed);
    f.add(NodeSpec::new(
        "out",
        NodeKind::Sink(Arc::new(Discard)),
        1,
        vec![k],
    ));
    weir_engine::run(f).unwrap().join().result.unwrap();

    let seen = observe.seen.lock().unwrap();
    let mut total = 0;
    let mut owner: HashMap<String, usize> = HashMap::new();
    for (&subtask, events) in seen.iter() {
        for e in events {
            if let Seen::Record { key, .. } = e {
                total += 1;
                assert_eq!(
                    subtask_for_group(key_group(key.as_bytes(), 16), 16, 3),
                    subtask,
                    "key {key}"
                );
                assert_eq!(*owner.entry(key.clone()).or_insert(subtask), subtask);
            }
        }
    }
    assert_eq!(total, 5_000);
    assert_eq!(owner.len(), 97);
    // Per key, records from one producer keep their order: the generator's
    // split s produces records s, s+2, … so each key's timestamps from one
    // split increase.
    for events in seen.values() {
        let mut last: HashMap<(String, i64), i64> = HashMap::new();
        for e in events {
            if let Seen::Record { key, ts } = e {
                let split = (ts - 1_000) % 2;
                let prev = last.insert((key.clone(), split), *ts);
                assert!(prev.is_none_or(|p| p < *ts), "order of {key} broke");
            }
        }
    }
}

#[test]
fn watermarks_trail_the_data_and_never_overtake_it() {
    let observe = Observe::default();
    let mut f = Dataflow::new("watermarks");
    let mut src = NodeSpec::new("gen", generator(20_000, 10), 2, vec![]);
    src.watermarks = WatermarkStrategy::BoundedOutOfOrderness(Duration::from_millis(10));
    let s = f.add(src);
    // A parallelism change: watermarks of both splits combine downstream.
    let o = f.add(NodeSpec::new(
        "observe",
        NodeKind::Operator(Arc::new(observe.clone())),
        1,
        vec![s],
    ));
    f.add(NodeSpec::new(
        "out",
        NodeKind::Sink(Arc::new(Discard)),
        1,
        vec![o],
    ));
    let outcome = weir_engine::run(f).unwrap().join();
    outcome.result.unwrap();

    let seen = observe.seen.lock().unwrap();
    let events = &seen[&0];
    let marks: Vec<i64> = events
        .iter()
        .filter_map(|e| match e {
            Seen::Watermark(w) => Some(*w),
            _ => None,
        })
        .collect();
    assert!(marks.len() > 2, "intermediate watermarks flowed: {marks:?}");
    assert!(
        marks.windows(2).all(|w| w[0] < w[1]),
        "watermarks only advance"
    );
    assert_eq!(
        marks.last(),
        Some(&i64::MAX),
        "the end of input ends event time"
    );
    // No record arrives at or before a watermark already seen (the sources
    // are in order, within the 10 ms bound).
    let mut current = i64::MIN;
    for e in events.iter() {
        match e {
            Seen::Watermark(w) => current = *w,
            Seen::Record { ts, .. } => {
                assert!(*ts > current, "record at {ts} after watermark {current}")
            }
        }
    }
    // The sink's event time is reported in the metrics.
    let sink = outcome.metrics.iter().find(|m| m.name == "out").unwrap();
    assert_eq!(sink.watermark, Some(i64::MAX));
}

/// A source with nothing to say until told to stop (or until a long cap).
struct Quiet {
    stop: Arc<AtomicBool>,
    running: Arc<AtomicBool>,
}

impl SourceFactory for Quiet {
    fn create(&self, _: &SubtaskInfo) -> Result<Box<dyn Source>, BoxError> {
        Ok(Box::new(QuietSource {
            stop: self.stop.clone(),
            running: self.running.clone(),
            polls: 0,
        }))
    }
}

struct QuietSource {
    stop: Arc<AtomicBool>,
    running: Arc<AtomicBool>,
    polls: u32,
}

impl Source for QuietSource {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>, BoxError> {
        self.polls += 1;
        // Stop when told, or after ~30 s so a broken idleness fails the test
        // instead of hanging it.
        if self.stop.load(Ordering::SeqCst) || self.polls > 3_000 {
            self.running.store(false, Ordering::SeqCst);
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
        Ok(Some(RecordBatch::default()))
    }
}

#[test]
fn an_idle_source_does_not_hold_event_time_back() {
    let observe = Observe::default();
    observe.other_running.store(true, Ordering::SeqCst);
    let quiet = Quiet {
        stop: observe.saw_end_of_time.clone(),
        running: observe.other_running.clone(),
    };
    let mut f = Dataflow::new("idle");
    let mut busy = NodeSpec::new("busy", generator(1_000, 3), 1, vec![]);
    busy.watermarks = WatermarkStrategy::Monotonous;
    let a = f.add(busy);
    let mut idle = NodeSpec::new("quiet", NodeKind::Source(Arc::new(quiet)), 1, vec![]);
    idle.watermarks = WatermarkStrategy::Monotonous;
    idle.idle_timeout = Some(Duration::from_millis(50));
    let b = f.add(idle);
    let o = f.add(NodeSpec::new(
        "observe",
        NodeKind::Operator(Arc::new(observe.clone())),
        1,
        vec![a, b],
    ));
    f.add(NodeSpec::new(
        "out",
        NodeKind::Sink(Arc::new(Discard)),
        1,
        vec![o],
    ));
    weir_engine::run(f).unwrap().join().result.unwrap();
    assert!(
        observe.end_while_other_running.load(Ordering::SeqCst),
        "event time reached its end while the quiet source was still open: idleness released it"
    );
}
