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
use crate::swap::ModuleSwaps;

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
        let instance = self
            .module
            .instantiate(label.clone(), self.limits, &self.config)?;
        Ok(Box::new(WasmUdf {
            instance,
            node: info.node.clone(),
            subtask: info.subtask,
            swaps: info.swaps.clone(),
            seen: 0,
            label,
            limits: self.limits,
            config: self.config.clone(),
        }))
    }
}

/// A running Wasm operator subtask.
struct WasmUdf {
    instance: OperatorInstance,
    node: String,
    subtask: usize,
    /// The job's swap board: a stateless operator swaps before its next
    /// batch, with no savepoint (it has no state to keep).
    swaps: Option<Arc<ModuleSwaps>>,
    /// The board's generation last looked at.
    seen: u64,
    label: weir_sandbox::InstanceLabel,
    limits: InstanceLimits,
    config: Vec<(String, String)>,
}

impl Operator for WasmUdf {
    fn process_batch(
        &mut self,
        batch: RecordBatch,
        out: &mut dyn Collector,
    ) -> Result<(), EngineError> {
        if let Some(swaps) = self.swaps.clone()
            && let Some((module, version)) =
                swaps.before_batch(&self.node, self.instance.module().digest(), &mut self.seen)
        {
            let started = std::time::Instant::now();
            let swapped = self.swap_module(&module, &version);
            swaps.done(
                &self.node,
                started.elapsed().as_micros() as u64,
                swapped.clone(),
            );
            swapped.map_err(|e| EngineError::Node {
                role: NodeRole::Operator,
                node: self.node.clone(),
                subtask: self.subtask,
                source: format!("hot swap to `{}`: {e}", module.name()).into(),
            })?;
        }
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

    fn swap_module(&mut self, module: &Arc<OperatorModule>, _version: &str) -> Result<(), String> {
        if module.kind() != self.instance.kind() {
            return Err(format!(
                "it is a {} operator, the running one a {} operator",
                module.kind(),
                self.instance.kind()
            ));
        }
        self.instance = module
            .instantiate(self.label.clone(), self.limits, &self.config)
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}
