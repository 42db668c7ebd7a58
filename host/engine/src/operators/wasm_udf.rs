//! A stateless user operator in a Wasm component.
//!
//! The kind (filter, map, flat-map) is the component's world; the sandbox
//! checks the guest's result against that world's contract, so this operator
//! only moves batches in and out and names the operator when a guest fails.

use std::sync::Arc;

use weir_record::RecordBatch;
use weir_sandbox::{InstanceLimits, OperatorInstance, OperatorModule};

use crate::BoxError;
use crate::error::EngineError;
use crate::metrics::NodeRole;
use crate::node::{Collector, Operator, OperatorFactory, SubtaskInfo};

/// Creates one warm instance of a module per subtask.
pub struct WasmUdfFactory {
    module: Arc<OperatorModule>,
    config: Vec<(String, String)>,
    limits: InstanceLimits,
}

impl WasmUdfFactory {
    /// A factory for `module`, initialized with `config` under `limits`.
    pub fn new(
        module: Arc<OperatorModule>,
        config: Vec<(String, String)>,
        limits: InstanceLimits,
    ) -> Self {
        Self {
            module,
            config,
            limits,
        }
    }
}

impl OperatorFactory for WasmUdfFactory {
    fn create(&self, info: &SubtaskInfo) -> Result<Box<dyn Operator>, BoxError> {
        let label = info.instance_label();
        let instance = self.module.instantiate(label, self.limits, &self.config)?;
        Ok(Box::new(WasmUdf {
            instance,
            node: info.node.clone(),
            subtask: info.subtask,
        }))
    }
}

/// A running Wasm operator subtask.
struct WasmUdf {
    instance: OperatorInstance,
    node: String,
    subtask: usize,
}

impl Operator for WasmUdf {
    fn process_batch(
        &mut self,
        batch: RecordBatch,
        out: &mut dyn Collector,
    ) -> Result<(), EngineError> {
        let result = self
            .instance
            .process(batch)
            .map_err(|e| EngineError::Node {
                role: NodeRole::Operator,
                node: self.node.clone(),
                subtask: self.subtask,
                source: Box::new(e),
            })?;
        out.collect(result)
    }
}
