//! From a parsed job to a runnable dataflow.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use weir_connectors::file::FileSourceFactory;
use weir_connectors::file_sink::FileSinkFactory;
use weir_connectors::generator::GeneratorSourceFactory;
use weir_connectors::nexmark::NexmarkSourceFactory;
use weir_connectors::stdout::StdoutSinkFactory;
use weir_engine::{Dataflow, Input, NodeKind, NodeSpec};
use weir_operators::{KeyedProcessFactory, WasmUdfFactory, WindowOperatorFactory};
use weir_sandbox::OperatorKind;
use weir_sandbox::{OperatorModule, Sandbox};

use crate::error::JobError;
use crate::modules::ModuleSource;
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
    modules: &dyn ModuleSource,
) -> Result<PreparedJob, JobError> {
    let ctx = |role: &'static str, name: &str, header: &std::ops::Range<usize>| NodeContext {
        path: &job.file,
        text: &job.text,
        role,
        name: name.to_string(),
        header: header.clone(),
    };

    // A named credential is a server's to resolve (it clears the field).
    let unresolved: Option<(&String, &String)> = job
        .sources
        .iter()
        .filter_map(|n| match &n.spec {
            #[cfg(feature = "kafka")]
            SourceSpec::Kafka(o) => o.credential.as_ref().map(|c| (&n.name, c)),
            _ => None,
        })
        .chain(job.sinks.iter().filter_map(|n| match &n.spec.kind {
            #[cfg(feature = "kafka")]
            SinkKind::Kafka(o) => o.credential.as_ref().map(|c| (&n.name, c)),
            _ => None,
        }))
        .next();
    if let Some((node, credential)) = unresolved {
        return Err(job.error_at(
            node,
            "credential",
            format!("credential `{credential}` names a secret of a server's configuration; outside `weir serve`, set the client's settings in `properties`"),
        ));
    }

    // Order: sources, then operators once their inputs are placed, then sinks.
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut flow = Dataflow::new(job.name.clone());
    flow.channel_capacity = job.channel_capacity;
    flow.max_parallelism = job.max_parallelism;
    flow.state_backend = job.state_backend.clone();
    let sinks: Vec<&str> = job.sinks.iter().map(|s| s.name.as_str()).collect();
    let check_inputs = |c: &NodeContext<'_>, inputs: &[String]| -> Result<(), JobError> {
        if inputs.is_empty() {
            return Err(c.error("input", "`input` is empty".into()));
        }
        let known = |n: &str| {
            job.sources.iter().any(|s| s.name == n) || job.operators.iter().any(|o| o.name == n)
        };
        for i in inputs {
            if !known(i)
                && let Some((node, side)) = i.rsplit_once('.')
                && let Some(o) = job.operators.iter().find(|o| o.name == node)
            {
                if o.spec.side_outputs.iter().any(|s| s == side) {
                    continue;
                }
                return Err(c.error(
                    "input",
                    format!(
                        "`{node}` has no side output `{side}` (it has: {})",
                        if o.spec.side_outputs.is_empty() {
                            "none".to_string()
                        } else {
                            o.spec.side_outputs.join(", ")
                        }
                    ),
                ));
            }
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
                Arc::new(NexmarkSourceFactory::new(o.clone()).map_err(|e| {
                    ctx("source", &s.name, &s.header).error("real_time", e.to_string())
                })?),
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
            #[cfg(feature = "kafka")]
            SourceSpec::Kafka(o) => (
                Arc::new(weir_kafka::KafkaSourceFactory::new(o.clone())),
                o.parallelism,
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
        let ready = pending.iter().position(|o| {
            o.spec
                .inputs
                .iter()
                .all(|i| ids.contains_key(input_node(i, &ids)))
        });
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
        let version = modules.version(&o.spec.module);
        let (config, limits) = (o.spec.config.clone(), o.spec.limits);
        if !o.spec.state_ttl.is_empty() && module.kind() != OperatorKind::KeyedProcess {
            return Err(c.error(
                "state_ttl",
                format!(
                    "module `{}` is a {} operator; `state_ttl` applies to keyed process operators \
                     (window state is cleaned up by the window's own timers)",
                    module.name(),
                    module.kind()
                ),
            ));
        }
        let factory: Arc<dyn weir_engine::OperatorFactory> = match (module.kind(), &o.spec.window) {
            (OperatorKind::Aggregate | OperatorKind::ProcessWindow, Some(w)) => Arc::new(
                WindowOperatorFactory::new(module.clone(), config, limits, w.clone())
                    .map_err(|m| c.error("module", m.to_string()))?
                    .with_version(version.as_deref()),
            ),
            (OperatorKind::Aggregate | OperatorKind::ProcessWindow, None) => {
                return Err(c.error(
                    "module",
                    format!(
                        "module `{}` is a {} function and needs a `window` (for example \
                         window = {{ type = \"tumbling\", size = \"1m\" }})",
                        module.name(),
                        module.kind()
                    ),
                ));
            }
            (kind, Some(_)) => {
                return Err(c.error(
                    "window",
                    format!(
                        "module `{}` is a {kind} operator; a `window` needs an aggregate or \
                         process-window module",
                        module.name()
                    ),
                ));
            }
            (OperatorKind::KeyedProcess, None) => Arc::new(
                KeyedProcessFactory::new(
                    module.clone(),
                    config,
                    limits,
                    o.spec.side_outputs.clone(),
                )
                .map_err(|m| c.error("module", m.to_string()))?
                .with_version(version.as_deref())
                .with_state_ttl(o.spec.state_ttl.clone()),
            ),
            (_, None) => {
                if !o.spec.side_outputs.is_empty() {
                    return Err(c.error(
                        "side_outputs",
                        format!(
                            "module `{}` is a {} operator, which has no side outputs",
                            module.name(),
                            module.kind()
                        ),
                    ));
                }
                Arc::new(WasmUdfFactory::new(module.clone(), config, limits))
            }
        };
        let mut node = NodeSpec::new(
            &o.name,
            NodeKind::Operator(factory),
            o.spec.parallelism.unwrap_or(job.parallelism),
            vec![],
        );
        node.inputs = resolve_inputs(&o.spec.inputs, &ids, &flow);
        node.side_outputs = o.spec.side_outputs.clone();
        node.chain = o.spec.chain;
        // Keyed operators are always fed by key.
        node.key_by = o.key_by || module.kind() == OperatorKind::KeyedProcess;
        let id = flow.add(node);
        ids.insert(&o.name, id);
        loaded.push((o.name.clone(), module));
    }

    for s in &job.sinks {
        check_inputs(&ctx("sink", &s.name, &s.header), &s.spec.inputs)?;
        let (factory, p): (Arc<dyn weir_engine::SinkFactory>, _) = match &s.spec.kind {
            SinkKind::Stdout(o) => (Arc::new(StdoutSinkFactory::new(o.clone())), o.parallelism),
            SinkKind::Discard(o) => (
                Arc::new(weir_connectors::discard::DiscardSinkFactory),
                o.parallelism,
            ),
            SinkKind::File(o) => (Arc::new(FileSinkFactory::new(o.clone())), o.parallelism),
            SinkKind::Upsert(o) => (
                Arc::new(weir_connectors::upsert::UpsertSinkFactory::new(o.clone())),
                o.parallelism,
            ),
            #[cfg(feature = "kafka")]
            SinkKind::Kafka(o) => (
                Arc::new(weir_kafka::KafkaSinkFactory::new(o.clone())),
                o.parallelism,
            ),
        };
        // Sinks default to one subtask: one output, in one order.
        let mut node = NodeSpec::new(&s.name, NodeKind::Sink(factory), p.unwrap_or(1), vec![]);
        node.inputs = resolve_inputs(&s.spec.inputs, &ids, &flow);
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

/// The node an input names: `NODE` or, for a side output, `NODE.OUTPUT`.
fn input_node<'a>(input: &'a str, ids: &HashMap<&str, usize>) -> &'a str {
    if ids.contains_key(input) {
        return input;
    }
    input.rsplit_once('.').map_or(input, |(node, _)| node)
}

/// Inputs as (node, port); names were checked by `check_inputs`.
fn resolve_inputs(inputs: &[String], ids: &HashMap<&str, usize>, flow: &Dataflow) -> Vec<Input> {
    inputs
        .iter()
        .filter_map(|i| {
            let node = *ids.get(input_node(i, ids))?;
            let port = if ids.contains_key(i.as_str()) {
                0
            } else {
                let side = i.rsplit_once('.').map_or("", |(_, s)| s);
                flow.nodes[node]
                    .side_outputs
                    .iter()
                    .position(|s| s == side)
                    .map_or(0, |p| p + 1)
            };
            Some(Input { node, port })
        })
        .collect()
}

fn load_module(
    c: &NodeContext<'_>,
    job_file: &Path,
    module: &str,
    sandbox: &Sandbox,
    modules: &dyn ModuleSource,
) -> Result<Arc<OperatorModule>, JobError> {
    let path = modules
        .resolve(job_file, module)
        .map_err(|m| c.error("module", m.to_string()))?;
    sandbox
        .load_file(&path)
        .map_err(|e| c.error("module", e.to_string()))
}
