//! A stateless user operator in a Wasm component.
//!
//! The kind (filter, map, flat-map) is the component's world; the sandbox
//! checks the guest's result against that world's contract, so this operator
//! only moves batches in and out and names the operator when a guest fails.

use std::sync::Arc;

use weir_record::RecordBatch;
use weir_sandbox::{InstanceLimits, OperatorInstance, OperatorModule};

use weir_engine::swap::{ModuleHandle, ModuleSwaps, SwapError};
use weir_engine::{
    BoxError, Collector, EngineError, NodeRole, Operator, OperatorFactory, SubtaskInfo,
};

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
        let label = crate::instance_label(info);
        let instance = self
            .module
            .instantiate(label.clone(), self.limits, &self.config)?;
        Ok(Box::new(WasmUdf {
            digest: self.module.digest().to_string(),
            instance,
            node: info.node.clone(),
            subtask: info.subtask,
            swaps: info.swaps.clone(),
            seen: 0,
            respawn: crate::Respawn {
                label,
                limits: self.limits,
                config: self.config.clone(),
            },
        }))
    }
}

/// A running Wasm operator subtask.
struct WasmUdf {
    instance: OperatorInstance,
    /// The digest of the module it runs.
    digest: String,
    node: String,
    subtask: usize,
    /// The job's swap board: a stateless operator swaps before its next
    /// batch, with no savepoint (it has no state to keep).
    swaps: Option<Arc<ModuleSwaps>>,
    /// The board's generation last looked at.
    seen: u64,
    /// How a new instance is made (a hot swap).
    respawn: crate::Respawn,
}

impl Operator for WasmUdf {
    fn process_batch(
        &mut self,
        batch: RecordBatch,
        out: &mut dyn Collector,
    ) -> Result<(), EngineError> {
        let posted = self
            .swaps
            .as_ref()
            .and_then(|swaps| swaps.before_batch(&self.node, &self.digest, &mut self.seen));
        if let Some((module, version)) = posted {
            let started = std::time::Instant::now();
            let swapped = self.swap_module(&module, &version);
            if let Some(swaps) = &self.swaps {
                let pause = started.elapsed().as_micros() as u64;
                swaps.done(&self.node, pause, swapped.as_ref().map(|_| ()));
            }
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

    fn swap_module(&mut self, module: &ModuleHandle, version: &str) -> Result<(), SwapError> {
        (self.instance, _) = self
            .respawn
            .instance(module, version, self.instance.kind())?;
        self.digest = module.digest().to_string();
        Ok(())
    }
}
