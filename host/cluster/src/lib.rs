//! weir on several machines: who is in the cluster, through etcd.
//!
//! A worker (`weir worker`, Flink's TaskManager) registers itself in etcd
//! under a *lease* and keeps the lease alive; its key disappears when the
//! lease expires, so a worker killed with SIGKILL or cut off from etcd
//! leaves the cluster within the lease's time to live, with no failure
//! detector of weir's own. The controller (`weir serve`, the JobManager)
//! reads the members from the same keys. etcd does the consensus; weir only
//! names keys.
//!
//! Keys, all under [`PREFIX`]:
//! - `workers/<id>`: a [`WorkerInfo`] as JSON, attached to the worker's lease;
//! - `parts/…` and `status/…`: jobs' parts handed to workers and how they
//!   end ([`deploy`]);
//! - `checkpoints/…`: checkpoint commands and acknowledgements between a
//!   spread job's controller and its parts ([`checkpoints`]).

pub mod checkpoints;
pub mod deploy;
pub mod membership;

pub use deploy::{NotEnoughSlots, Part, PartCheckpoints, PartState, SlotPolicy, place_slots};
pub use membership::{LeaseEvent, Membership, WorkerInfo, WorkerLease};

/// The root of every key weir writes in etcd.
pub const PREFIX: &str = "/weir/v1/";

/// The version of the protocol between a controller and its workers (the
/// worker record, the data plane's frames). A worker with another one is
/// listed but given no work.
pub const PROTOCOL: u32 = 2;

/// What went wrong talking to the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// etcd cannot be reached (or answered with an error).
    #[error("etcd at {endpoints}: {message}")]
    Etcd {
        /// The endpoints tried.
        endpoints: String,
        /// What the client said, down to its root cause (`tcp connect
        /// error: Connection refused`).
        message: String,
    },
    /// etcd did not answer in time.
    #[error("etcd at {endpoints} did not answer within {timeout:?} (is it running?)")]
    Timeout {
        /// The endpoints tried.
        endpoints: String,
        /// How long we waited.
        timeout: std::time::Duration,
    },
    /// Another live worker has this id.
    #[error(
        "a worker with id `{id}` is registered already (at {data_addr}); give each worker its own --id"
    )]
    DuplicateWorker {
        /// The id.
        id: String,
        /// Where the live one listens.
        data_addr: String,
    },
    /// A record that is not what weir writes.
    #[error("etcd key `{key}` is not a weir record: {reason}")]
    BadRecord {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// An id that cannot be a key segment.
    #[error("worker id `{0}` must be 1 to 64 letters, digits, `-`, `_` or `.`")]
    BadId(String),
}
