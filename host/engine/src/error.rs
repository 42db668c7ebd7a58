//! Engine errors: each names the node and subtask where it happened.

/// Any error from a user-facing component (a source, a sink, a guest).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A node failed while building or running.
    #[error("{role} `{node}` (subtask {subtask}): {source}")]
    Node {
        /// Source, operator or sink.
        role: crate::NodeRole,
        /// Node name from the job.
        node: String,
        /// Subtask index.
        subtask: usize,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
    /// The dataflow itself is malformed (a bug of whoever built it: job files
    /// are validated before they get here).
    #[error("invalid dataflow: {0}")]
    InvalidDataflow(String),
    /// A task thread could not be started, or died without reporting.
    #[error("task `{task}`: {message}")]
    Task {
        /// Task name.
        task: String,
        /// What went wrong.
        message: String,
    },
}
