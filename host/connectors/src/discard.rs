//! A sink that drops what it is given (Flink's `blackhole`): for
//! benchmarks, where the job's cost and not the sink's is measured. The
//! engine's metrics still count the records it takes.

use serde::Deserialize;
use weir_engine::{BoxError, Sink, SinkFactory, SubtaskInfo};
use weir_record::RecordBatch;

/// Options of `kind = "discard"`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscardOptions {
    /// Parallel subtasks.
    #[serde(default)]
    pub parallelism: Option<usize>,
}

/// Builds sinks that drop their input.
pub struct DiscardSinkFactory;

impl SinkFactory for DiscardSinkFactory {
    fn create(&self, _info: &SubtaskInfo) -> Result<Box<dyn Sink>, BoxError> {
        Ok(Box::new(Discard))
    }
}

struct Discard;

impl Sink for Discard {
    fn write_batch(&mut self, _batch: &RecordBatch) -> Result<(), BoxError> {
        Ok(())
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
}
