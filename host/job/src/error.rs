//! Job file errors: every one says where.

use std::path::PathBuf;

/// A job file that cannot be run, and where it is wrong.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The file cannot be read.
    #[error("cannot read job file `{}`: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Something in the file is wrong.
    #[error("{}:{line}: {message}", file.display())]
    At {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong, naming the node and field.
        message: String,
    },
    /// A job's state directory cannot be used.
    #[error("state directory `{}`: {message}", path.display())]
    State {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The Wasm sandbox cannot start.
    #[error("cannot start the Wasm sandbox: {0}")]
    Sandbox(String),
    /// A checkpoint or savepoint location cannot be opened.
    #[error("{source}")]
    Storage {
        /// The location, as given.
        location: String,
        /// What is wrong (it names the location).
        source: weir_engine::checkpoint::StorageError,
    },
    /// A launcher could not build the job for an attempt.
    #[error("{0}")]
    Build(weir_engine::BoxError),
    /// The checkpoint or savepoint to start from cannot be read.
    #[error("cannot restore job `{job}` from `{location}`: {source}")]
    Restore {
        /// Job name.
        job: String,
        /// The checkpoint's location.
        location: String,
        /// Why.
        #[source]
        source: Box<weir_engine::checkpoint::CheckpointError>,
    },
    /// The engine would not start the job's dataflow.
    #[error("cannot start job `{job}`: {source}")]
    Start {
        /// Job name.
        job: String,
        /// The engine's error.
        #[source]
        source: weir_engine::EngineError,
    },
    /// The engine refused the job once it was built.
    #[error("job `{job}`: {source}")]
    Engine {
        /// Job name.
        job: String,
        /// The engine's error.
        #[source]
        source: weir_engine::EngineError,
    },
}
