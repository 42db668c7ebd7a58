//! Checkpoints, Chandy-Lamport style, as Flink takes them.
//!
//! The [`coordinator`] asks the sources for checkpoint `n` every interval.
//! Each source subtask records its position, snapshots the operators fused
//! behind it and sends a barrier down every channel, in order with the data.
//! A task with several inputs *aligns*: once a barrier arrived on an input,
//! that input's later messages wait until the barrier arrived on every input;
//! then the task snapshots its operators and passes the barrier on. In
//! *unaligned* mode it does not wait: it snapshots and passes the barrier on
//! at the first barrier, and the records that arrive on the other inputs
//! before their barriers are saved with the checkpoint as in-flight data,
//! replayed first on restore. Sinks snapshot when the barrier reaches them.
//!
//! A snapshot has a synchronous part at the barrier, which only freezes the
//! state (see [`weir_state::frozen`]), and an asynchronous part on a writer
//! thread, which encodes or uploads it while processing goes on. Every node
//! subtask then acknowledges; when all have, the coordinator writes the
//! checkpoint's metadata and the checkpoint is complete. A checkpoint that
//! does not complete within the timeout is abandoned.
//!
//! Storage ([`storage`]) is an interface (implemented over `object_store`
//! by `weir-storage`: a local directory or S3-compatible object storage). Checkpoint `n` is `chk-<n>/` holding one object per node subtask
//! and `_metadata` (JSON), written last: a checkpoint without `_metadata` is
//! not complete. RocksDB state is checkpointed *incrementally*: its SST files
//! never change, so each is uploaded once to `shared/` and referenced by
//! every checkpoint that needs it; a shared file no retained checkpoint
//! references is deleted. Savepoints (`sp-<n>/`) are always self-contained,
//! in the portable format, whatever the backend.

pub mod aligner;
pub mod coordinator;
pub mod remote;
pub mod storage;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use weir_record::RecordBatch;
use weir_record::codec::{Reader, Truncated, Writer};
use weir_state::KeyedSnapshot;

use crate::key_group::groups_of_subtask;
pub use coordinator::{Abandoned, CheckpointStats, Mode};
pub(crate) use coordinator::{Ack, AckKind, CheckpointHooks, Coordinator};
pub use remote::{
    AckReceiver, Command, CommandSender, JobCoordinator, PartAck, PartAnswer, PartLink,
};
pub use storage::{CheckpointStorage, ObjectStorage, StorageError};

/// A checkpoint's number, increasing from 1.
pub type CheckpointId = u64;

/// A RocksDB file of an incremental checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeFile {
    /// Its name in the database directory.
    pub name: String,
    /// The object holding it, relative to the checkpoint storage.
    pub object: String,
    /// Its size in bytes.
    pub size: u64,
    /// Whether this checkpoint uploaded it (else an earlier one did).
    pub uploaded: bool,
}

/// The module that wrote an operator's state, kept with the state in every
/// checkpoint and savepoint: a job that restores the state with another
/// module (an upgrade) lets the new module migrate it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateWriter {
    /// The module's version: its registry version, or its digest for a
    /// module run from a file.
    pub version: String,
    /// The module's digest, `sha256:…`.
    pub digest: String,
}

impl StateWriter {
    /// The module whose digest is `digest`, named `version` (`None`: by
    /// its digest).
    pub fn new(digest: &str, version: Option<&str>) -> Self {
        let digest = digest.to_string();
        Self {
            version: version.map_or_else(|| digest.clone(), str::to_string),
            digest,
        }
    }
}

/// Why a checkpoint cannot be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The storage refused a call.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Checkpoint metadata that cannot be encoded.
    #[error("cannot encode checkpoint metadata: {0}")]
    Encode(serde_json::Error),
    /// A subtask's state object cannot be decoded.
    #[error("`{object}`: {source}")]
    Decode {
        /// The object's full name.
        object: String,
        /// Why.
        source: DecodeError,
    },
    /// `_metadata` is not what a checkpoint writes.
    #[error("`{object}` is not checkpoint metadata: {source}")]
    Metadata {
        /// The object's full name.
        object: String,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// A node's non-keyed state cannot follow a change of parallelism.
    #[error(
        "`{node}` ran with parallelism {was} in checkpoint {id} and has state that cannot be \
         split to parallelism {now} (only keyed state rescales)"
    )]
    Rescale {
        /// The node.
        node: String,
        /// The checkpoint.
        id: CheckpointId,
        /// Its parallelism then.
        was: usize,
        /// Its parallelism now.
        now: usize,
    },
    /// In-flight records of an unaligned checkpoint at another parallelism.
    #[error(
        "`{node}` has in-flight records in unaligned checkpoint {id} taken at parallelism \
         {was}; it restores only at that parallelism (take a savepoint to rescale)"
    )]
    InflightRescale {
        /// The node.
        node: String,
        /// The checkpoint.
        id: CheckpointId,
        /// Its parallelism then.
        was: usize,
    },
    /// In-flight records that cannot be decoded.
    #[error("in-flight records of `{node}`: {source}")]
    Inflight {
        /// The node.
        node: String,
        /// Why.
        source: Truncated,
    },
    /// Keyed state that cannot be frozen, read or merged.
    #[error(transparent)]
    State(#[from] weir_state::StateError),
    /// Restored state that the new module version could not convert.
    #[error(transparent)]
    Migration(Box<MigrationError>),
    /// A local directory for restored files that cannot be made.
    #[error("cannot create `{}`: {source}", path.display())]
    Directory {
        /// The directory.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Restored state that the module running now could not convert.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot migrate the state of `{node}` written by version {} ({}) to version {} ({}): {source}",
    from.version, from.digest, to.version, to.digest
)]
pub struct MigrationError {
    /// The node.
    pub node: String,
    /// The module that wrote the state.
    pub from: StateWriter,
    /// The module running now.
    pub to: StateWriter,
    /// Why.
    pub source: weir_state::StateError,
}

/// Why a subtask could not take its part of a checkpoint (it declines it).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Writing the state failed.
    #[error(transparent)]
    Write(#[from] CheckpointError),
    /// The thread that writes the state asynchronously could not start.
    #[error("cannot start a snapshot writer: {0}")]
    WriterThread(#[source] std::io::Error),
}

/// Why [`request_savepoint`] got no savepoint.
#[derive(Debug, thiserror::Error)]
pub enum SavepointError {
    /// The request file could not be written.
    #[error("cannot write `{}`: {source}", path.display())]
    Request {
        /// The request file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The job answered that the savepoint failed, and why.
    #[error("savepoint failed: {0}")]
    Failed(String),
    /// No job answered in time.
    #[error("no savepoint within {} ms: is the job running?", .0.as_millis())]
    NoAnswer(std::time::Duration),
}

/// A subtask's state object that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// It ends inside a field.
    #[error(transparent)]
    Truncated(#[from] Truncated),
    /// Its format byte is not one this version writes.
    #[error("unknown subtask state format {0}")]
    Format(u8),
    /// Its keyed state is malformed.
    #[error("keyed state: {0}")]
    Keyed(#[from] weir_state::StateError),
    /// A JSON part is malformed.
    #[error("{part}: {source}")]
    Json {
        /// Which part.
        part: &'static str,
        /// The parser's error.
        source: serde_json::Error,
    },
}

/// What one node subtask contributes to a checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubtaskState {
    /// Keyed state by key group (windows, keyed process functions). With
    /// `native` files, only the state names and the timers.
    pub keyed: Option<KeyedSnapshot>,
    /// The RocksDB files holding the keyed state entries, for an
    /// incremental checkpoint.
    pub native: Vec<NativeFile>,
    /// Non-keyed state of the subtask: a source's position, a sink's
    /// committed length.
    pub operator: Vec<u8>,
    /// Records in flight to this subtask when it took an unaligned
    /// checkpoint (see [`encode_records`]), replayed first on restore.
    pub inflight: Vec<u8>,
    /// The module that wrote the keyed state (for Wasm operators).
    pub writer: Option<StateWriter>,
}

impl SubtaskState {
    /// Non-keyed state only.
    pub fn operator(operator: Vec<u8>) -> Self {
        Self {
            operator,
            ..Self::default()
        }
    }

    /// The bytes of one subtask's state object in a checkpoint.
    pub fn encode(&self) -> Vec<u8> {
        let flags = u8::from(self.keyed.is_some())
            | (u8::from(!self.native.is_empty()) << 1)
            | (u8::from(!self.inflight.is_empty()) << 2)
            | (u8::from(self.writer.is_some()) << 3);
        let mut out = vec![flags];
        if let Some(k) = &self.keyed {
            out.put_long_bytes(&k.encode());
        }
        if !self.native.is_empty() {
            out.put_long_bytes(&serde_json::to_vec(&self.native).unwrap_or_default());
        }
        if !self.inflight.is_empty() {
            out.put_long_bytes(&self.inflight);
        }
        if let Some(w) = &self.writer {
            out.put_long_bytes(&serde_json::to_vec(w).unwrap_or_default());
        }
        out.extend_from_slice(&self.operator);
        out
    }

    /// Reads what [`SubtaskState::encode`] wrote.
    ///
    /// # Errors
    /// Truncated or malformed bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new("subtask state", bytes);
        let flags = r.u8("format")?;
        if flags > 15 {
            return Err(DecodeError::Format(flags));
        }
        let mut out = Self::default();
        if flags & 1 != 0 {
            let keyed = r.long_bytes("keyed state")?;
            out.keyed = Some(KeyedSnapshot::decode(keyed)?);
        }
        if flags & 2 != 0 {
            let files = r.long_bytes("RocksDB files")?;
            out.native = serde_json::from_slice(files).map_err(|e| DecodeError::Json {
                part: "RocksDB files",
                source: e,
            })?;
        }
        if flags & 4 != 0 {
            out.inflight = r.long_bytes("in-flight records")?.to_vec();
        }
        if flags & 8 != 0 {
            let writer = r.long_bytes("state writer")?;
            out.writer = Some(
                serde_json::from_slice(writer).map_err(|e| DecodeError::Json {
                    part: "state writer",
                    source: e,
                })?,
            );
        }
        out.operator = r.rest().to_vec();
        Ok(out)
    }
}

/// Encodes records (in-flight data of an unaligned checkpoint): per record
/// key, value, timestamp and headers.
pub fn encode_records(batches: &[RecordBatch]) -> Vec<u8> {
    let mut out = Vec::new();
    for batch in batches {
        for r in batch.records() {
            out.put_bytes(r.key());
            out.put_bytes(r.value());
            out.put_i64(r.timestamp());
            let headers: Vec<_> = r.headers().collect();
            out.put_u32(headers.len() as u32);
            for (k, v) in headers {
                out.put_bytes(k);
                out.put_bytes(v);
            }
        }
    }
    out
}

/// Decodes what [`encode_records`] wrote, as one batch.
///
/// # Errors
/// Truncated bytes.
pub fn decode_records(bytes: &[u8]) -> Result<RecordBatch, Truncated> {
    let mut r = Reader::new("in-flight records", bytes);
    let mut out = weir_record::BatchBuilder::default();
    while !r.is_empty() {
        let key = r.bytes("key")?;
        let value = r.bytes("value")?;
        let ts = r.i64("timestamp")?;
        // A count read from the bytes: at most what the bytes can hold (a
        // header is at least 8 bytes) is reserved, whatever it claims.
        let (n, capacity) = r.count("header count", 8)?;
        let mut headers = Vec::with_capacity(capacity);
        for _ in 0..n {
            headers.push((r.bytes("header name")?, r.bytes("header value")?));
        }
        out.push_with_headers(key, value, ts, headers);
    }
    Ok(out.finish())
}

/// How a job checkpoints.
#[derive(Clone, Debug)]
pub struct CheckpointConfig {
    /// Time between checkpoints.
    pub interval: Duration,
    /// Where checkpoints are written.
    pub storage: CheckpointStorage,
    /// How many completed checkpoints to keep.
    pub retain: usize,
    /// A checkpoint not complete after this long is abandoned.
    pub timeout: Duration,
    /// Aligned (the default) or unaligned barriers.
    pub mode: Mode,
    /// Where savepoints go (`sp-<id>`), if the job takes them.
    pub savepoints: Option<CheckpointStorage>,
    /// A file whose appearance asks for a savepoint (`weir savepoint`
    /// creates it); when the savepoint is written, its location is put in
    /// `<file>.done` and the request is removed.
    pub savepoint_request: Option<std::path::PathBuf>,
    /// While set, no periodic checkpoint starts (savepoints still do): a
    /// module on probation after an upgrade must not commit output before
    /// it is kept, so that rolling back to the savepoint neither loses nor
    /// repeats a record.
    pub hold: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Module swaps posted while the job runs: keyed operators swap at the
    /// next savepoint's barrier, stateless ones before their next batch.
    pub swaps: Option<std::sync::Arc<crate::swap::ModuleSwaps>>,
}

use std::time::Duration;

impl CheckpointConfig {
    /// Checkpoints every `interval` into `storage`, aligned, keeping 3,
    /// abandoned after 10 minutes.
    pub fn new(storage: CheckpointStorage, interval: Duration) -> Self {
        Self {
            interval,
            storage,
            retain: 3,
            timeout: Duration::from_secs(600),
            mode: Mode::Aligned,
            savepoints: None,
            savepoint_request: None,
            hold: None,
            swaps: None,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Metadata {
    id: CheckpointId,
    job: String,
    /// Unix ms at which it completed.
    completed_at: i64,
    nodes: Vec<NodeMeta>,
    /// Objects under `shared/` that this checkpoint needs.
    #[serde(default)]
    shared: Vec<String>,
    /// Whether it is a savepoint (self-contained).
    #[serde(default)]
    savepoint: bool,
}

#[derive(Serialize, Deserialize)]
struct NodeMeta {
    name: String,
    parallelism: usize,
}

/// The state of a job read back from a checkpoint (or savepoint).
#[derive(Debug)]
pub struct RestoredJob {
    /// The checkpoint's number.
    pub id: CheckpointId,
    /// Where it was read from.
    pub location: String,
    /// The storage it is in (incremental state is downloaded from it).
    pub storage: CheckpointStorage,
    nodes: HashMap<String, Vec<SubtaskState>>,
}

impl RestoredJob {
    /// The non-keyed state of every old subtask of node `name`, whatever the
    /// parallelism then and now: Flink's union list state, for state that
    /// each new subtask filters itself (a Kafka source's offsets per
    /// partition).
    pub fn operator_union(&self, name: &str) -> Vec<Vec<u8>> {
        self.nodes
            .get(name)
            .map(|old| old.iter().map(|s| s.operator.clone()).collect())
            .unwrap_or_default()
    }

    /// The state of node `name`'s subtask `subtask` of `parallelism`, for a
    /// job with `max_parallelism` key groups: its own non-keyed state (only
    /// when the parallelism is unchanged) and the keyed state of the key
    /// groups it now owns, gathered from every old subtask. RocksDB files of
    /// an incremental checkpoint are passed on as they are when the subtask
    /// is unchanged and `native` (it runs on RocksDB); otherwise they are
    /// read into the portable format first.
    ///
    /// # Errors
    /// Non-keyed state that cannot be split across another parallelism (a
    /// source's positions), unreadable files or malformed keyed state.
    pub fn subtask(
        &self,
        name: &str,
        subtask: usize,
        parallelism: usize,
        max_parallelism: u32,
        native: bool,
    ) -> Result<Option<SubtaskState>, CheckpointError> {
        let Some(old) = self.nodes.get(name) else {
            return Ok(None);
        };
        if old.len() == parallelism && native && !old[subtask].native.is_empty() {
            return Ok(Some(old[subtask].clone()));
        }
        let operator = if old.len() == parallelism {
            old[subtask].operator.clone()
        } else if old
            .iter()
            .all(|s| s.operator.is_empty() && s.inflight.is_empty())
        {
            Vec::new()
        } else {
            return Err(CheckpointError::Rescale {
                node: name.to_string(),
                id: self.id,
                was: old.len(),
                now: parallelism,
            });
        };
        let owned = groups_of_subtask(subtask, max_parallelism, parallelism);
        let mut parts = Vec::new();
        for (i, s) in old.iter().enumerate() {
            let Some(k) = &s.keyed else { continue };
            if s.native.is_empty() {
                parts.push(k.clone());
                continue;
            }
            // Only old subtasks whose key groups overlap this one's.
            let had = groups_of_subtask(i, max_parallelism, old.len());
            if had.start < owned.end && owned.start < had.end {
                parts.push(self.read_native(s, k)?);
            }
        }
        let keyed = if parts.is_empty() {
            None
        } else {
            Some(KeyedSnapshot::merge(parts.iter(), owned)?)
        };
        Ok(Some(SubtaskState {
            keyed,
            operator,
            writer: self.writer(name).cloned(),
            ..SubtaskState::default()
        }))
    }

    /// The module that wrote node `name`'s keyed state, if recorded.
    pub fn writer(&self, name: &str) -> Option<&StateWriter> {
        self.nodes.get(name)?.iter().find_map(|s| s.writer.as_ref())
    }

    /// The in-flight records saved for node `name`'s subtask by an unaligned
    /// checkpoint, if any.
    ///
    /// # Errors
    /// In-flight records at another parallelism (they belong to one
    /// subtask's channels: take a savepoint, always aligned, to rescale), or
    /// malformed.
    pub fn inflight(
        &self,
        name: &str,
        subtask: usize,
        parallelism: usize,
    ) -> Result<Option<RecordBatch>, CheckpointError> {
        let Some(old) = self.nodes.get(name) else {
            return Ok(None);
        };
        if old.iter().all(|s| s.inflight.is_empty()) {
            return Ok(None);
        }
        if old.len() != parallelism {
            return Err(CheckpointError::InflightRescale {
                node: name.to_string(),
                id: self.id,
                was: old.len(),
            });
        }
        decode_records(&old[subtask].inflight)
            .map(Some)
            .map_err(|source| CheckpointError::Inflight {
                node: name.to_string(),
                source,
            })
    }

    /// Reads an incremental RocksDB checkpoint into the portable format,
    /// its timers included.
    fn read_native(
        &self,
        s: &SubtaskState,
        keyed: &KeyedSnapshot,
    ) -> Result<KeyedSnapshot, CheckpointError> {
        let dir = tempfile::Builder::new()
            .prefix("weir-restore-")
            .tempdir()
            .map_err(|source| CheckpointError::Directory {
                path: std::env::temp_dir(),
                source,
            })?;
        self.download(&s.native, dir.path())?;
        let entries = weir_state::frozen::canonical_from_rocksdb(dir.path(), keyed.states.clone())?;
        let all = 0..u32::from(u16::MAX) + 1;
        Ok(KeyedSnapshot::merge([&entries, keyed], all)?)
    }

    /// Downloads the files of an incremental checkpoint into `dir`.
    ///
    /// # Errors
    /// A missing or unreadable object, naming it.
    pub fn download(
        &self,
        files: &[NativeFile],
        dir: &std::path::Path,
    ) -> Result<(), CheckpointError> {
        std::fs::create_dir_all(dir).map_err(|source| CheckpointError::Directory {
            path: dir.to_path_buf(),
            source,
        })?;
        for f in files {
            self.storage.get_file(&f.object, &dir.join(&f.name))?;
        }
        Ok(())
    }

    /// Names of the nodes with state.
    pub fn nodes(&self) -> impl Iterator<Item = &str> + '_ {
        self.nodes.keys().map(String::as_str)
    }
}

/// Where and for what a snapshot's asynchronous part writes.
#[derive(Clone, Debug)]
pub struct SnapshotTarget {
    /// The checkpoint.
    pub id: CheckpointId,
    /// A savepoint (self-contained, portable) rather than a checkpoint.
    pub savepoint: bool,
    /// The checkpoint storage (incremental files go to its `shared/`).
    pub storage: CheckpointStorage,
    /// The node subtask's name in storage.
    pub label: String,
    pub(crate) hooks: Option<CheckpointHooks>,
}

impl SnapshotTarget {
    /// Whether an earlier checkpoint completed (its uploads may be reused).
    pub fn is_complete(&self, id: CheckpointId) -> bool {
        self.hooks.as_ref().is_some_and(|h| h.is_complete(id))
    }
}

/// The asynchronous part of a snapshot, run on a writer thread.
pub type SnapshotTask =
    Box<dyn FnOnce(&SnapshotTarget) -> Result<SubtaskState, CheckpointError> + Send>;

/// What an operator's snapshot returns at the barrier.
pub enum PendingState {
    /// State already complete (small: positions, offsets).
    Ready(SubtaskState),
    /// Frozen state to be written out while processing goes on.
    Deferred(SnapshotTask),
}

impl std::fmt::Debug for PendingState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ready(s) => f.debug_tuple("Ready").field(s).finish(),
            Self::Deferred(_) => f.write_str("Deferred"),
        }
    }
}

fn state_object(dir: &str, node: &str, subtask: usize) -> String {
    format!("{dir}/{}.state", subtask_label(node, subtask))
}

/// A node subtask's name in storage: the node's name made safe, and the
/// subtask.
pub(crate) fn subtask_label(node: &str, subtask: usize) -> String {
    let safe: String = node
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}-{subtask}")
}

/// Completed checkpoints in `storage`, oldest first, with their names
/// (`chk-<n>`).
pub fn completed(storage: &CheckpointStorage) -> Vec<(CheckpointId, String)> {
    let mut out: Vec<(CheckpointId, String)> = storage
        .list_dirs("")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|name| {
            let id = name.strip_prefix("chk-")?.parse().ok()?;
            storage
                .exists(&format!("{name}/_metadata"))
                .then_some((id, name))
        })
        .collect();
    out.sort();
    out
}

/// The highest checkpoint number in `storage`, complete or not (0 for
/// none): a job that starts again over the same storage numbers its
/// checkpoints after it, so that it never writes into what an earlier run
/// left half done.
pub fn highest_id(storage: &CheckpointStorage) -> CheckpointId {
    storage
        .list_dirs("")
        .unwrap_or_default()
        .iter()
        .filter_map(|name| name.strip_prefix("chk-")?.parse().ok())
        .max()
        .unwrap_or(0)
}

/// The location of the latest completed checkpoint in `storage`, if any.
pub fn latest(storage: &CheckpointStorage) -> Option<String> {
    completed(storage).pop().map(|(_, n)| storage.display(&n))
}

/// Reads checkpoint or savepoint `name` (`chk-7`, `sp-3`) from `storage`.
///
/// # Errors
/// A missing or unreadable object, or malformed contents, naming it.
pub fn read(storage: &CheckpointStorage, name: &str) -> Result<RestoredJob, CheckpointError> {
    let meta_bytes = storage.get(&format!("{name}/_metadata"))?;
    let meta: Metadata =
        serde_json::from_slice(&meta_bytes).map_err(|source| CheckpointError::Metadata {
            object: storage.display(&format!("{name}/_metadata")),
            source,
        })?;
    let mut nodes = HashMap::new();
    for n in meta.nodes {
        // (The parallelism is read from the metadata: no reservation for it.)
        let mut subtasks = Vec::new();
        for s in 0..n.parallelism {
            let object = state_object(name, &n.name, s);
            let bytes = storage.get(&object)?;
            subtasks.push(SubtaskState::decode(&bytes).map_err(|source| {
                CheckpointError::Decode {
                    object: storage.display(&object),
                    source,
                }
            })?);
        }
        nodes.insert(n.name, subtasks);
    }
    Ok(RestoredJob {
        id: meta.id,
        location: storage.display(name),
        storage: storage.clone(),
        nodes,
    })
}

/// The `shared/` objects that the checkpoint `name` references.
fn shared_of(storage: &CheckpointStorage, name: &str) -> Result<Vec<String>, CheckpointError> {
    let object = format!("{name}/_metadata");
    let bytes = storage.get(&object)?;
    let meta: Metadata =
        serde_json::from_slice(&bytes).map_err(|source| CheckpointError::Metadata {
            object: storage.display(&object),
            source,
        })?;
    Ok(meta.shared)
}

/// What writing subtask states put in storage.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    /// Bytes written for it: its state objects and newly uploaded shared
    /// files (the incremental size).
    pub written: u64,
    /// Its full size, with the shared files it references.
    pub full: u64,
    /// The `shared/` objects it references.
    pub shared: Vec<String>,
}

impl Written {
    /// Adds what another part wrote for the same checkpoint.
    pub fn add(&mut self, other: Written) {
        self.written += other.written;
        self.full += other.full;
        self.shared.extend(other.shared);
    }
}

/// Writes the state objects of the node subtasks in `states` (keyed by
/// node index and subtask) under `name`: all of a job's in one process, or
/// one part's on each worker of a spread job.
pub(crate) fn write_states(
    storage: &CheckpointStorage,
    name: &str,
    nodes: &[(String, usize)],
    states: &HashMap<(usize, usize), SubtaskState>,
) -> Result<Written, CheckpointError> {
    let mut out = Written::default();
    let mut keys: Vec<&(usize, usize)> = states.keys().collect();
    keys.sort();
    for &(n, s) in keys {
        let Some((node, _)) = nodes.get(n) else {
            continue;
        };
        let state = &states[&(n, s)];
        let bytes = state.encode();
        out.written += bytes.len() as u64;
        out.full += bytes.len() as u64;
        for f in &state.native {
            out.full += f.size;
            if f.uploaded {
                out.written += f.size;
            }
            if f.object.starts_with("shared/") {
                out.shared.push(f.object.clone());
            }
        }
        storage.put(&state_object(name, node, s), bytes)?;
    }
    Ok(out)
}

/// Completes checkpoint (or savepoint) `name` once every node subtask's
/// state object is written: `_metadata`, whose presence marks it complete,
/// comes last.
pub(crate) fn write_metadata(
    storage: &CheckpointStorage,
    name: &str,
    id: CheckpointId,
    job: &str,
    nodes: &[(String, usize)],
    shared: Vec<String>,
    savepoint: bool,
) -> Result<(), CheckpointError> {
    let meta = Metadata {
        id,
        job: job.to_string(),
        completed_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
        nodes: nodes
            .iter()
            .map(|(name, parallelism)| NodeMeta {
                name: name.clone(),
                parallelism: *parallelism,
            })
            .collect(),
        shared,
        savepoint,
    };
    let meta = serde_json::to_vec_pretty(&meta).map_err(CheckpointError::Encode)?;
    storage
        .put(&format!("{name}/_metadata"), meta)
        .map_err(CheckpointError::from)
}

/// Writes a complete checkpoint in one process: every subtask's state, then
/// `_metadata`. Returns what it wrote.
fn write(
    storage: &CheckpointStorage,
    name: &str,
    id: CheckpointId,
    job: &str,
    nodes: &[(String, usize)],
    states: &HashMap<(usize, usize), SubtaskState>,
    savepoint: bool,
) -> Result<Written, CheckpointError> {
    // Leftovers of an earlier attempt under this name.
    storage.delete(&format!("{name}/_metadata"))?;
    let mut written = write_states(storage, name, nodes, states)?;
    // A subtask that had nothing to say still has its (empty) object.
    for (n, (node, parallelism)) in nodes.iter().enumerate() {
        for s in (0..*parallelism).filter(|s| !states.contains_key(&(n, *s))) {
            let empty = SubtaskState::default().encode();
            written.written += empty.len() as u64;
            written.full += empty.len() as u64;
            storage.put(&state_object(name, node, s), empty)?;
        }
    }
    write_metadata(
        storage,
        name,
        id,
        job,
        nodes,
        written.shared.clone(),
        savepoint,
    )?;
    Ok(written)
}

/// Removes all but the newest `keep` completed checkpoints, then every
/// shared file that no remaining checkpoint references and that was
/// uploaded for a checkpoint up to `upto` (later uploads may belong to a
/// checkpoint in progress).
fn prune(
    storage: &CheckpointStorage,
    keep: usize,
    upto: CheckpointId,
) -> Result<(), CheckpointError> {
    let all = completed(storage);
    for (_, name) in all.iter().take(all.len().saturating_sub(keep)) {
        // Metadata first: a half-deleted checkpoint is never taken as
        // complete.
        storage.delete(&format!("{name}/_metadata"))?;
        storage.delete_prefix(name)?;
    }
    // Files of checkpoints that never completed (abandoned, or cut short
    // by a crash).
    for name in storage.list_dirs("")? {
        let abandoned = name
            .strip_prefix("chk-")
            .and_then(|id| id.parse::<CheckpointId>().ok())
            .is_some_and(|id| id < upto);
        if abandoned && !storage.exists(&format!("{name}/_metadata")) {
            storage.delete_prefix(&name)?;
        }
    }
    let mut referenced = std::collections::HashSet::new();
    for (_, name) in completed(storage) {
        referenced.extend(shared_of(storage, &name)?);
    }
    for (object, _) in storage.list("shared")? {
        let uploaded_for = object
            .strip_prefix("shared/")
            .and_then(|n| n.split('-').next())
            .and_then(|id| id.parse::<CheckpointId>().ok());
        if uploaded_for.is_some_and(|id| id <= upto) && !referenced.contains(&object) {
            storage.delete(&object)?;
        }
    }
    Ok(())
}

/// The file a job's checkpoint coordinator watches for savepoint requests
/// ([`CheckpointConfig::savepoint_request`]), in the job's state directory.
pub fn savepoint_request_file(state_dir: &std::path::Path) -> std::path::PathBuf {
    state_dir.join("savepoint-request")
}

/// Asks the job watching `request` for a savepoint and waits up to
/// `timeout` for its location. With `stop`, no checkpoint follows the
/// savepoint (the caller stops the job next), so no output is committed
/// past it.
///
/// # Errors
/// Why the savepoint failed, or that no job answered in time.
pub fn request_savepoint(
    request: &std::path::Path,
    timeout: std::time::Duration,
    stop: bool,
) -> Result<String, SavepointError> {
    let mut done = request.to_path_buf().into_os_string();
    done.push(".done");
    let done = std::path::PathBuf::from(done);
    let _ = std::fs::remove_file(&done);
    std::fs::write(
        request,
        if stop {
            "savepoint stop\n"
        } else {
            "savepoint\n"
        },
    )
    .map_err(|source| SavepointError::Request {
        path: request.to_path_buf(),
        source,
    })?;
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if let Ok(answer) = std::fs::read_to_string(&done) {
            let _ = std::fs::remove_file(&done);
            return match answer.strip_prefix("ok ") {
                Some(path) => Ok(path.to_string()),
                None => Err(SavepointError::Failed(
                    answer.trim_start_matches("error ").to_string(),
                )),
            };
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(request);
    Err(SavepointError::NoAnswer(timeout))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_state::snapshot::push_state;

    #[test]
    fn checkpoints_are_written_read_and_rescaled_by_key_group() {
        let mut keyed = KeyedSnapshot {
            states: vec![("s".into(), weir_state::StateKind::Value)],
            ..Default::default()
        };
        for g in [1u16, 100] {
            let mut blob = Vec::new();
            push_state(&mut blob, 0, &[g as u8], b"v");
            keyed.groups.insert(g, blob);
        }
        let mut states = HashMap::new();
        states.insert((0, 0), SubtaskState::operator(b"pos=7".to_vec()));
        let mut records = weir_record::BatchBuilder::default();
        records.push_with_headers(b"k", b"v", 42, [(&b"h"[..], &b"x"[..])]);
        records.push(b"", b"w", -1);
        let records = records.finish();
        states.insert(
            (1, 0),
            SubtaskState {
                keyed: Some(keyed.clone()),
                inflight: encode_records(std::slice::from_ref(&records)),
                ..SubtaskState::default()
            },
        );
        let nodes = vec![("src".to_string(), 1), ("win dow".to_string(), 1)];
        let storage = storage::memory::storage();
        write(&storage, "chk-4", 4, "j", &nodes, &states, false).unwrap();
        write(&storage, "chk-5", 5, "j", &nodes, &states, false).unwrap();
        assert_eq!(latest(&storage).unwrap(), "memory:///test/chk-5");

        let r = read(&storage, "chk-4").unwrap();
        assert_eq!(r.id, 4);
        let src = r.subtask("src", 0, 1, 128, false).unwrap().unwrap();
        assert_eq!(src.operator, b"pos=7");
        assert_eq!(r.inflight("win dow", 0, 1).unwrap(), Some(records));
        let e = r.inflight("win dow", 0, 2).unwrap_err().to_string();
        assert!(e.contains("only at that parallelism"), "{e}");
        // Rescale the window to 2 subtasks: groups 0..64 and 64..128 (the
        // in-flight records are dropped from this checkpoint first: they
        // cannot be split).
        states.get_mut(&(1, 0)).unwrap().inflight.clear();
        write(&storage, "chk-6", 6, "j", &nodes, &states, false).unwrap();
        let r = read(&storage, "chk-6").unwrap();
        let low = r.subtask("win dow", 0, 2, 128, false).unwrap().unwrap();
        let high = r.subtask("win dow", 1, 2, 128, false).unwrap().unwrap();
        assert_eq!(
            low.keyed.unwrap().groups.keys().collect::<Vec<_>>(),
            vec![&1]
        );
        assert_eq!(
            high.keyed.unwrap().groups.keys().collect::<Vec<_>>(),
            vec![&100]
        );
        // A source's position cannot be split.
        let e = r.subtask("src", 0, 2, 128, false).unwrap_err().to_string();
        assert!(e.contains("cannot be split"), "{e}");
        assert!(r.subtask("other", 0, 1, 128, false).unwrap().is_none());
    }

    #[test]
    fn in_flight_records_claiming_billions_of_headers_are_an_error_not_an_abort() {
        // Found by the checkpoint_state fuzz target: a header count of
        // 0x9b010000 made the reader reserve 83 GB.
        let bytes = b"\0\0\0\0\0\0\0\0\x0a\0\0\x02\0\0\xe3\x02\0\0\x01\x9b";
        assert!(decode_records(bytes).is_err());
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fuzz/regressions/checkpoint_state/header-count"
        ))
        .unwrap();
        assert!(decode_records(&bytes).is_err());
    }

    #[test]
    fn pruning_keeps_the_shared_files_that_retained_checkpoints_reference() {
        let storage = storage::memory::storage();
        let nodes = vec![("w".to_string(), 1)];
        let file = |object: &str| NativeFile {
            name: object.rsplit('-').next().unwrap().to_string(),
            object: object.to_string(),
            size: 3,
            uploaded: true,
        };
        // Checkpoint n references the shared files of n and n-1.
        for n in 1..=4u64 {
            let object = format!("shared/{n}-i-00000{n}.sst");
            storage.put(&object, b"sst".to_vec()).unwrap();
            let mut native = vec![file(&object)];
            if n > 1 {
                native.push(file(&format!("shared/{}-i-00000{}.sst", n - 1, n - 1)));
            }
            let state = SubtaskState {
                keyed: Some(KeyedSnapshot::default()),
                native,
                ..SubtaskState::default()
            };
            let states = HashMap::from([((0, 0), state)]);
            write(
                &storage,
                &format!("chk-{n}"),
                n,
                "j",
                &nodes,
                &states,
                false,
            )
            .unwrap();
            prune(&storage, 2, n).unwrap();
        }
        // An upload of a checkpoint still in progress is left alone.
        storage
            .put("shared/5-i-000005.sst", b"sst".to_vec())
            .unwrap();
        prune(&storage, 2, 4).unwrap();
        let kept: Vec<u64> = completed(&storage).iter().map(|(id, _)| *id).collect();
        assert_eq!(kept, vec![3, 4]);
        let mut shared: Vec<String> = storage
            .list("shared")
            .unwrap()
            .into_iter()
            .map(|(o, _)| o)
            .collect();
        shared.sort();
        assert_eq!(
            shared,
            vec![
                "shared/2-i-000002.sst",
                "shared/3-i-000003.sst",
                "shared/4-i-000004.sst",
                "shared/5-i-000005.sst"
            ]
        );
    }
}
