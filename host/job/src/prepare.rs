//! From a parsed job to a runnable dataflow.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use weir_connectors::file::FileSourceFactory;
use weir_connectors::file_sink::FileSinkFactory;
use weir_connectors::generator::GeneratorSourceFactory;
use weir_connectors::nexmark::NexmarkSourceFactory;
use weir_connectors::stdout::StdoutSinkFactory;
use weir_engine::operators::WasmUdfFactory;
use weir_engine::{Dataflow, NodeKind, NodeSpec};
use weir_sandbox::{OperatorModule, Sandbox};

use crate::error::JobError;
use crate::modules::ModulePath;
use crate::spec::{JobSpec, NodeContext, SinkKind, SourceSpec};

/// A job ready to run: its dataflow and the modules it loaded.
pub struct PreparedJob {
    /// The engine's graph.
    pub dataflow: Dataflow,
    /// Each operator's module, by operator name.
    pub modules: Vec<(String, Arc<OperatorModule>)>,
}

/// Checks references between nodes, loads every module into `sandbox`, and
/// builds the dataflow.
///
/// # Errors
/// [`JobError::At`] for an input that names no node (or a sink), a cycle, a
/// module that cannot be found or loaded (not Wasm, another world, a kind
/// other than the one the job says).
pub fn prepare(
    job: JobSpec,
    sandbox: &Sandbox,
    modules: &ModulePath,
) -> Result<PreparedJob, JobError> {
    let ctx = |role: &'static str, name: &str, header: &std::ops::Range<usize>| NodeContext {
        path: &job.file,
        text: &job.text,
        role,
        name: name.to_string(),
        header: header.clone(),
    };

    // Order: sources, then operators once their inputs are placed, then sinks.
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut flow = Dataflow::new(job.name.clone());
    flow.channel_capacity = job.channel_capacity;
    flow.max_parallelism = job.max_parallelism;
    let sinks: Vec<&str> = job.sinks.iter().map(|s| s.name.as_str()).collect();
    let check_inputs = |c: &NodeContext<'_>, inputs: &[String]| -> Result<(), JobError> {
        if inputs.is_empty() {
            return Err(c.error("input", "`input` is empty".into()));
        }
        let known = |n: &str| {
            job.sources.iter().any(|s| s.name == n) || job.operators.iter().any(|o| o.name == n)
        };
        for i in inputs {
            if sinks.contains(&i.as_str()) {
                return Err(c.error(
                    "input",
                    format!("input `{i}` is a sink; sinks cannot be read from"),
                ));
            }
            if !known(i) {
                return Err(c.error(
                    "input",
                    format!("input `{i}` is not a source or operator of this job"),
                ));
            }
        }
        Ok(())
    };

    for s in &job.sources {
        let (factory, p): (Arc<dyn weir_engine::SourceFactory>, _) = match &s.spec {
            SourceSpec::Nexmark(o) => (
                Arc::new(NexmarkSourceFactory::new(o.clone())),
                o.parallelism,
            ),
            SourceSpec::Generator(o) => (
                Arc::new(GeneratorSourceFactory::new(o.clone())),
                o.parallelism,
            ),
            SourceSpec::File(o) => (
                Arc::new(FileSourceFactory::new(o.clone())),
                Some(o.parallelism.unwrap_or(1)),
            ),
        };
        let mut node = NodeSpec::new(
            &s.name,
            NodeKind::Source(factory),
            p.unwrap_or(job.parallelism),
            vec![],
        );
        node.watermarks = s.watermark.strategy;
        node.idle_timeout = s.watermark.idle_timeout;
        let id = flow.add(node);
        ids.insert(&s.name, id);
    }

    for o in &job.operators {
        check_inputs(&ctx("operator", &o.name, &o.header), &o.spec.inputs)?;
    }
    let mut pending: Vec<_> = job.operators.iter().collect();
    let mut loaded = Vec::new();
    while !pending.is_empty() {
        let ready = pending
            .iter()
            .position(|o| o.spec.inputs.iter().all(|i| ids.contains_key(i.as_str())));
        let Some(at) = ready else {
            let o = pending[0];
            return Err(ctx("operator", &o.name, &o.header).error(
                "input",
                format!(
                    "the inputs of {} form a cycle",
                    pending
                        .iter()
                        .map(|o| format!("`{}`", o.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        let o = pending.remove(at);
        let c = ctx("operator", &o.name, &o.header);
        let module = load_module(&c, &job.file, &o.spec.module, sandbox, modules)?;
        if let Some(kind) = o.spec.kind
            && kind != module.kind()
        {
            return Err(c.error(
                "kind",
                format!(
                    "kind is `{kind}` but module `{}` implements `{}` (world {})",
                    module.name(),
                    module.kind(),
                    module.kind().world()
                ),
            ));
        }
        let factory = WasmUdfFactory::new(module.clone(), o.spec.config.clone(), o.spec.limits);
        let mut node = NodeSpec::new(
            &o.name,
            NodeKind::Operator(Arc::new(factory)),
            o.spec.parallelism.unwrap_or(job.parallelism),
            o.spec.inputs.iter().map(|i| ids[i.as_str()]).collect(),
        );
        node.chain = o.spec.chain;
        node.key_by = o.key_by;
        let id = flow.add(node);
        ids.insert(&o.name, id);
        loaded.push((o.name.clone(), module));
    }

    for s in &job.sinks {
        check_inputs(&ctx("sink", &s.name, &s.header), &s.spec.inputs)?;
        let (factory, p): (Arc<dyn weir_engine::SinkFactory>, _) = match &s.spec.kind {
            SinkKind::Stdout(o) => (Arc::new(StdoutSinkFactory::new(o.clone())), o.parallelism),
            SinkKind::File(o) => (Arc::new(FileSinkFactory::new(o.clone())), o.parallelism),
        };
        // Sinks default to one subtask: one output, in one order.
        let mut node = NodeSpec::new(
            &s.name,
            NodeKind::Sink(factory),
            p.unwrap_or(1),
            s.spec.inputs.iter().map(|i| ids[i.as_str()]).collect(),
        );
        node.key_by = s.key_by;
        flow.add(node);
    }
    flow.validate().map_err(|source| JobError::Engine {
        job: job.name.clone(),
        source,
    })?;
    Ok(PreparedJob {
        dataflow: flow,
        modules: loaded,
    })
}

fn load_module(
    c: &NodeContext<'_>,
    job_file: &Path,
    module: &str,
    sandbox: &Sandbox,
    modules: &ModulePath,
) -> Result<Arc<OperatorModule>, JobError> {
    let path = modules
        .resolve(job_file, module)
        .map_err(|m| c.error("module", m))?;
    sandbox
        .load_file(&path)
        .map_err(|e| c.error("module", e.to_string()))
}
