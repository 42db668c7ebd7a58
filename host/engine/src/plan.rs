//! From a logical [`Dataflow`] to tasks: operator chaining as a pure function.
//!
//! A node is fused into the task of its input when
//! * it has exactly one input, and that input has no other consumer;
//! * both have the same parallelism (so subtask `i` feeds subtask `i`);
//! * it allows chaining (`chain = true`, the default).
//!
//! Everything else starts a new task, reached through channels: `Forward`
//! (subtask `i` to subtask `i`) when parallelisms match, `Rebalance`
//! (round-robin over the consumer's subtasks) otherwise.

use crate::graph::{Dataflow, NodeId};

/// How the batches of an edge are spread over the consumer's subtasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partitioning {
    /// Producer subtask `i` sends to consumer subtask `i`.
    Forward,
    /// Each producer subtask sends batches round-robin to all consumer
    /// subtasks.
    Rebalance,
    /// Each record goes to the consumer subtask owning its key's group
    /// (see [`crate::key_group`]).
    Hash {
        /// Number of key groups.
        max_parallelism: u32,
    },
}

/// A group of fused nodes run by one thread per subtask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskSpec {
    /// Names of the fused nodes joined with ` -> `.
    pub name: String,
    /// The fused nodes, head first.
    pub nodes: Vec<NodeId>,
    /// Subtasks.
    pub parallelism: usize,
}

/// A channel connection between two tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskEdge {
    /// Producing task.
    pub from: usize,
    /// Consuming task.
    pub to: usize,
    /// How batches are spread.
    pub partitioning: Partitioning,
    /// Which output of the producing task's last node feeds the edge (0 is
    /// the main output, `i` a side output).
    pub port: usize,
}

/// The physical plan of a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskPlan {
    /// Tasks, producers before consumers.
    pub tasks: Vec<TaskSpec>,
    /// Channel connections.
    pub edges: Vec<TaskEdge>,
}

impl TaskPlan {
    /// The edges into task `t`.
    pub fn inputs_of(&self, t: usize) -> impl Iterator<Item = &TaskEdge> {
        self.edges.iter().filter(move |e| e.to == t)
    }

    /// The edges out of task `t`.
    pub fn outputs_of(&self, t: usize) -> impl Iterator<Item = &TaskEdge> {
        self.edges.iter().filter(move |e| e.from == t)
    }
}

/// Fuses `flow` into tasks. `flow` must be valid ([`Dataflow::validate`]).
pub fn plan(flow: &Dataflow) -> TaskPlan {
    let mut task_of: Vec<usize> = Vec::with_capacity(flow.nodes.len());
    let mut tasks: Vec<TaskSpec> = Vec::new();
    for (id, node) in flow.nodes.iter().enumerate() {
        let fuse_into = match node.inputs.as_slice() {
            [input]
                if node.chain
                    && !node.key_by
                    && input.port == 0
                    && flow.consumers(input.node) == [id]
                    && flow.nodes[input.node].parallelism == node.parallelism =>
            {
                Some(task_of[input.node])
            }
            _ => None,
        };
        match fuse_into {
            Some(t) => {
                tasks[t].nodes.push(id);
                task_of.push(t);
            }
            None => {
                tasks.push(TaskSpec {
                    name: String::new(),
                    nodes: vec![id],
                    parallelism: node.parallelism,
                });
                task_of.push(tasks.len() - 1);
            }
        }
    }
    for t in &mut tasks {
        t.name = t
            .nodes
            .iter()
            .map(|&n| flow.nodes[n].name.as_str())
            .collect::<Vec<_>>()
            .join(" -> ");
    }
    let mut edges = Vec::new();
    for (t, task) in tasks.iter().enumerate() {
        let head = &flow.nodes[task.nodes[0]];
        for input in &head.inputs {
            let from = task_of[input.node];
            let partitioning = if head.key_by {
                Partitioning::Hash {
                    max_parallelism: flow.max_parallelism,
                }
            } else if tasks[from].parallelism == task.parallelism {
                Partitioning::Forward
            } else {
                Partitioning::Rebalance
            };
            edges.push(TaskEdge {
                from,
                to: t,
                partitioning,
                port: input.port,
            });
        }
    }
    TaskPlan { tasks, edges }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::BoxError;
    use crate::graph::{NodeKind, NodeSpec};
    use crate::node::{Operator, OperatorFactory, SubtaskInfo};

    struct NoOp;
    impl OperatorFactory for NoOp {
        fn create(&self, _: &SubtaskInfo) -> Result<Box<dyn Operator>, BoxError> {
            Err("not used".into())
        }
    }

    fn node(name: &str, inputs: Vec<NodeId>, parallelism: usize, chain: bool) -> NodeSpec {
        let mut n = NodeSpec::new(
            name,
            NodeKind::Operator(Arc::new(NoOp)),
            parallelism,
            inputs,
        );
        n.chain = chain;
        n
    }

    #[test]
    fn same_parallelism_single_consumer_chains() {
        let mut f = Dataflow::new("j");
        let a = f.add(node("a", vec![], 2, true));
        let b = f.add(node("b", vec![a], 2, true));
        f.add(node("c", vec![b], 2, true));
        let p = plan(&f);
        assert_eq!(p.tasks.len(), 1);
        assert_eq!(p.tasks[0].name, "a -> b -> c");
        assert!(p.edges.is_empty());
    }

    #[test]
    fn parallelism_change_fan_out_and_chain_false_break_chains() {
        let mut f = Dataflow::new("j");
        let a = f.add(node("a", vec![], 2, true));
        let b = f.add(node("b", vec![a], 1, true)); // parallelism differs
        let c = f.add(node("c", vec![b], 1, false)); // chaining disabled
        let d = f.add(node("d", vec![c], 1, true)); // fan-out of c
        let e = f.add(node("e", vec![c], 1, true));
        let p = plan(&f);
        let names: Vec<_> = p.tasks.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, vec!["a", "b", "c", "d", "e"]);
        assert_eq!(
            p.edges[0],
            TaskEdge {
                from: 0,
                to: 1,
                partitioning: Partitioning::Rebalance,
                port: 0,
            }
        );
        assert_eq!(p.edges[1].partitioning, Partitioning::Forward);
        assert_eq!(p.outputs_of(2).count(), 2);
        let _ = (d, e);
    }

    #[test]
    fn a_keyed_input_never_chains_and_hashes() {
        let mut f = Dataflow::new("j");
        let a = f.add(node("a", vec![], 2, true));
        let mut keyed = node("k", vec![a], 2, true);
        keyed.key_by = true;
        f.add(keyed);
        let p = plan(&f);
        assert_eq!(p.tasks.len(), 2);
        assert_eq!(
            p.edges[0].partitioning,
            Partitioning::Hash {
                max_parallelism: 128
            }
        );
    }
}
