//! The logical dataflow: named nodes and their inputs.

use std::sync::Arc;
use std::time::Duration;

use crate::watermark::WatermarkStrategy;

use crate::error::EngineError;
use crate::node::{OperatorFactory, SinkFactory, SourceFactory};

/// Index of a node in its [`Dataflow`].
pub type NodeId = usize;

/// An input of a node: a node and one of its outputs (0 is the main output,
/// `i` is side output `i - 1` of the producer's `side_outputs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Input {
    /// The producing node.
    pub node: NodeId,
    /// Which of its outputs.
    pub port: usize,
}

impl From<NodeId> for Input {
    fn from(node: NodeId) -> Self {
        Self { node, port: 0 }
    }
}

/// What a node does.
#[derive(Clone)]
pub enum NodeKind {
    /// Produces records.
    Source(Arc<dyn SourceFactory>),
    /// Transforms records.
    Operator(Arc<dyn OperatorFactory>),
    /// Consumes records.
    Sink(Arc<dyn SinkFactory>),
}

/// One node of a dataflow.
#[derive(Clone)]
pub struct NodeSpec {
    /// Unique name (from the job file).
    pub name: String,
    /// Role and factory.
    pub kind: NodeKind,
    /// Number of parallel subtasks, at least 1.
    pub parallelism: usize,
    /// The outputs this one reads from; empty for sources. Several inputs
    /// are a union.
    pub inputs: Vec<Input>,
    /// Names of the node's side outputs (ports `1..`), such as a window's
    /// late records. A side output nobody reads is dropped.
    pub side_outputs: Vec<String>,
    /// Whether this node may be fused into its input's task (Flink's
    /// chaining); `false` starts a new task, for example to put a slow
    /// operator on its own thread.
    pub chain: bool,
    /// Whether the input is partitioned by key (every record goes to the
    /// subtask owning its key's group). Breaks the chain.
    pub key_by: bool,
    /// Sources only: how watermarks are derived from record timestamps.
    pub watermarks: WatermarkStrategy,
    /// Sources only: after this long without records a split is idle and
    /// stops holding event time back.
    pub idle_timeout: Option<Duration>,
}

impl NodeSpec {
    /// A node with defaults: chained, not keyed, no watermarks.
    pub fn new(
        name: impl Into<String>,
        kind: NodeKind,
        parallelism: usize,
        inputs: Vec<NodeId>,
    ) -> Self {
        Self {
            name: name.into(),
            kind,
            parallelism,
            inputs: inputs.into_iter().map(Input::from).collect(),
            side_outputs: Vec::new(),
            chain: true,
            key_by: false,
            watermarks: WatermarkStrategy::None,
            idle_timeout: None,
        }
    }
}

impl NodeSpec {
    /// The node's role.
    pub fn role(&self) -> crate::NodeRole {
        match self.kind {
            NodeKind::Source(_) => crate::NodeRole::Source,
            NodeKind::Operator(_) => crate::NodeRole::Operator,
            NodeKind::Sink(_) => crate::NodeRole::Sink,
        }
    }
}

/// A job's logical graph, nodes in an order where every input comes before
/// the nodes reading it.
#[derive(Clone)]
pub struct Dataflow {
    /// Job name.
    pub name: String,
    /// The nodes.
    pub nodes: Vec<NodeSpec>,
    /// Capacity of each channel between tasks, in batches: how much a fast
    /// producer may run ahead before it is held back.
    pub channel_capacity: usize,
    /// Number of key groups, fixed for the job's life.
    pub max_parallelism: u32,
    /// The processing-time clock of windows and timers.
    pub clock: Arc<dyn crate::time::Clock>,
    /// Periodic checkpoints, if enabled.
    pub checkpoints: Option<crate::checkpoint::CheckpointConfig>,
    /// State to start from (a checkpoint or savepoint).
    pub restore: Option<Arc<crate::checkpoint::RestoredJob>>,
    /// Where keyed state lives.
    pub state_backend: weir_state::Backend,
    /// The CPU share its subtasks run under (a server's tenant); `None`:
    /// not gated.
    pub cpu_share: Option<crate::share::Share>,
}

impl Dataflow {
    /// An empty dataflow.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            nodes: Vec::new(),
            channel_capacity: 16,
            max_parallelism: crate::key_group::DEFAULT_MAX_PARALLELISM,
            clock: crate::time::system_clock(),
            checkpoints: None,
            restore: None,
            state_backend: weir_state::Backend::Heap,
            cpu_share: None,
        }
    }

    /// Adds a node and returns its id.
    pub fn add(&mut self, node: NodeSpec) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Lowers every parallelism above `max` to `max` (at least 1): the job
    /// on fewer slots, as when a spread job restarts on the slots left
    /// after losing a worker. Keyed state follows by key group when it is
    /// restored; nodes joined by forward edges keep equal parallelism.
    pub fn cap_parallelism(&mut self, max: usize) {
        let max = max.max(1);
        for n in &mut self.nodes {
            n.parallelism = n.parallelism.min(max);
        }
    }

    /// The ids of the nodes that read from `id`.
    pub fn consumers(&self, id: NodeId) -> Vec<NodeId> {
        (0..self.nodes.len())
            .filter(|&n| self.nodes[n].inputs.iter().any(|i| i.node == id))
            .collect()
    }

    /// Checks the structure: names unique, inputs earlier in the list,
    /// sources without inputs, others with, sinks without consumers, every
    /// parallelism at least 1.
    ///
    /// # Errors
    /// [`EngineError::InvalidDataflow`] describing the first problem.
    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |m: String| Err(EngineError::InvalidDataflow(m));
        if self.nodes.is_empty() {
            return bad("no nodes".into());
        }
        for (id, n) in self.nodes.iter().enumerate() {
            if self.nodes[..id].iter().any(|m| m.name == n.name) {
                return bad(format!("two nodes are called `{}`", n.name));
            }
            if n.parallelism == 0 {
                return bad(format!("`{}` has parallelism 0", n.name));
            }
            if n.key_by && n.parallelism > self.max_parallelism as usize {
                return bad(format!(
                    "`{}` has parallelism {} above the job's max parallelism {}",
                    n.name, n.parallelism, self.max_parallelism
                ));
            }
            if let Some(i) = n.inputs.iter().find(|i| i.node >= id) {
                return bad(format!(
                    "`{}` reads from node {}, which does not come before it",
                    n.name, i.node
                ));
            }
            if let Some(i) = n
                .inputs
                .iter()
                .find(|i| i.port > self.nodes[i.node].side_outputs.len())
            {
                return bad(format!(
                    "`{}` reads output {} of `{}`, which has {} side outputs",
                    n.name,
                    i.port,
                    self.nodes[i.node].name,
                    self.nodes[i.node].side_outputs.len()
                ));
            }
            match n.kind {
                NodeKind::Source(_) if !n.inputs.is_empty() => {
                    return bad(format!("source `{}` has inputs", n.name));
                }
                NodeKind::Operator(_) | NodeKind::Sink(_) if n.inputs.is_empty() => {
                    return bad(format!("`{}` has no input", n.name));
                }
                NodeKind::Sink(_) if !self.consumers(id).is_empty() => {
                    return bad(format!("sink `{}` cannot be read from", n.name));
                }
                _ => {}
            }
        }
        Ok(())
    }
}
