//! A simple, deterministic keyed event generator.
//!
//! Record `n` (counting over all subtasks) has key `k{n % keys}`, event time
//! `start_time + n * interval_ms`, and value
//! `{"seq": n, "key": "k…", "amount": a}` where `a` is a pseudo-random integer
//! in `0..1000` derived from `n` alone — so any run, at any parallelism,
//! produces the same records.

use serde::Deserialize;
use weir_engine::{BoxError, Source, SourceFactory, SubtaskInfo};
use weir_record::codec::Reader;
use weir_record::{BatchBuilder, DEFAULT_BATCH_ROWS, RecordBatch};

use crate::pacing::Pacer;

/// Options of `kind = "generator"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorOptions {
    /// Number of records.
    pub count: u64,
    /// Number of distinct keys.
    #[serde(default = "default_keys")]
    pub keys: u64,
    /// Event time of record 0, ms since the epoch.
    #[serde(default)]
    pub start_time: i64,
    /// Event-time step between consecutive records, ms.
    #[serde(default = "default_interval")]
    pub interval_ms: i64,
    /// Records per second over all subtasks; as fast as possible if unset.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Records per batch.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Parallel subtasks.
    #[serde(default)]
    pub parallelism: Option<usize>,
}

fn default_keys() -> u64 {
    100
}
fn default_interval() -> i64 {
    1
}
fn default_batch() -> usize {
    DEFAULT_BATCH_ROWS
}

/// The pseudo-random amount of record `n` (splitmix64).
pub fn amount_of(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) % 1000
}

/// Builds one split per subtask.
pub struct GeneratorSourceFactory {
    options: GeneratorOptions,
}

impl GeneratorSourceFactory {
    /// A factory for `options`.
    pub fn new(options: GeneratorOptions) -> Self {
        Self { options }
    }
}

impl SourceFactory for GeneratorSourceFactory {
    fn create(&self, info: &SubtaskInfo) -> Result<Box<dyn Source>, BoxError> {
        if self.options.keys == 0 {
            return Err("`keys` must be at least 1".into());
        }
        let next = match info.restored_state()? {
            Some(s) if !s.operator.is_empty() => {
                Reader::new("generator position", &s.operator).u64("next key")?
            }
            _ => info.subtask as u64,
        };
        Ok(Box::new(GeneratorSource {
            options: self.options.clone(),
            next,
            step: info.parallelism as u64,
            produced: 0,
            pacer: Pacer::new(self.options.rate.map(|r| r / info.parallelism as f64), None),
        }))
    }
}

struct GeneratorSource {
    options: GeneratorOptions,
    next: u64,
    step: u64,
    produced: u64,
    pacer: Pacer,
}

impl Source for GeneratorSource {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>, BoxError> {
        if self.next >= self.options.count {
            return Ok(None);
        }
        let o = &self.options;
        let mut b = BatchBuilder::with_capacity(o.batch_size, o.batch_size * 48);
        while b.len() < o.batch_size.max(1) && self.next < o.count {
            let n = self.next;
            let key = format!("k{}", n % o.keys);
            let ts = o.start_time + n as i64 * o.interval_ms;
            let value = format!(r#"{{"seq":{n},"key":"{key}","amount":{}}}"#, amount_of(n));
            b.push(key.as_bytes(), value.as_bytes(), ts);
            self.next += self.step;
        }
        self.produced += b.len() as u64;
        self.pacer.wait_for(self.produced);
        Ok(Some(b.finish()))
    }

    fn position(&self) -> Vec<u8> {
        self.next.to_le_bytes().to_vec()
    }
}
