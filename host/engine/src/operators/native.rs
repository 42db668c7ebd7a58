//! An operator that is a Rust closure over batches.

use std::sync::Arc;

use weir_record::RecordBatch;

use crate::BoxError;
use crate::error::EngineError;
use crate::metrics::NodeRole;
use crate::node::{Collector, Operator, OperatorFactory, SubtaskInfo};

type BatchFn = dyn FnMut(RecordBatch) -> Result<RecordBatch, BoxError> + Send;

/// Builds, per subtask, a closure from `make`.
pub struct NativeOperatorFactory {
    make: Arc<dyn Fn() -> Box<BatchFn> + Send + Sync>,
}

impl NativeOperatorFactory {
    /// `make` is called once per subtask to create that subtask's closure.
    pub fn new<F, G>(make: F) -> Self
    where
        F: Fn() -> G + Send + Sync + 'static,
        G: FnMut(RecordBatch) -> Result<RecordBatch, BoxError> + Send + 'static,
    {
        Self {
            make: Arc::new(move || Box::new(make())),
        }
    }
}

impl OperatorFactory for NativeOperatorFactory {
    fn create(&self, info: &SubtaskInfo) -> Result<Box<dyn Operator>, BoxError> {
        Ok(Box::new(NativeOperator {
            f: (self.make)(),
            node: info.node.clone(),
            subtask: info.subtask,
        }))
    }
}

struct NativeOperator {
    f: Box<BatchFn>,
    node: String,
    subtask: usize,
}

impl Operator for NativeOperator {
    fn process_batch(
        &mut self,
        batch: RecordBatch,
        out: &mut dyn Collector,
    ) -> Result<(), EngineError> {
        let result = (self.f)(batch).map_err(|source| EngineError::Node {
            role: NodeRole::Operator,
            node: self.node.clone(),
            subtask: self.subtask,
            source,
        })?;
        out.collect(result)
    }
}
