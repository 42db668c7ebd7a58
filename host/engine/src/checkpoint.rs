//! Checkpoints, Chandy-Lamport style, as Flink takes them.
//!
//! The [`Coordinator`] asks the sources for checkpoint `n` every interval.
//! Each source subtask records its position, snapshots the operators fused
//! behind it and sends a barrier down every channel, in order with the data.
//! A task with several inputs *aligns*: once a barrier arrived on an input,
//! that input's later messages wait until the barrier arrived on every input;
//! then the task snapshots its operators and passes the barrier on. Sinks
//! snapshot when the barrier reaches them. Every node subtask acknowledges
//! with its state; when all have, the coordinator writes the checkpoint to
//! its directory (on its own thread: processing goes on meanwhile) and the
//! checkpoint is complete. A checkpoint that does not complete within the
//! timeout is abandoned.
//!
//! On disk, checkpoint `n` is the directory `chk-<n>` holding `_metadata`
//! (JSON) and one file per node subtask, written under a temporary name and
//! renamed when complete, so a crash never leaves a half checkpoint that
//! looks complete. The last `retain` checkpoints are kept.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde::{Deserialize, Serialize};
use weir_state::KeyedSnapshot;

use crate::key_group::groups_of_subtask;

/// A checkpoint's number, increasing from 1.
pub type CheckpointId = u64;

/// What one node subtask contributes to a checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubtaskState {
    /// Keyed state by key group (windows, keyed process functions).
    pub keyed: Option<KeyedSnapshot>,
    /// Non-keyed state of the subtask: a source's position, a sink's
    /// committed length.
    pub operator: Vec<u8>,
}

impl SubtaskState {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match &self.keyed {
            None => out.push(0),
            Some(k) => {
                out.push(1);
                let enc = k.encode();
                out.extend_from_slice(&(enc.len() as u64).to_le_bytes());
                out.extend_from_slice(&enc);
            }
        }
        out.extend_from_slice(&self.operator);
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let bad = || "truncated subtask state".to_string();
        let (&tag, rest) = bytes.split_first().ok_or_else(bad)?;
        if tag == 0 {
            return Ok(Self {
                keyed: None,
                operator: rest.to_vec(),
            });
        }
        let len = u64::from_le_bytes(
            rest.get(..8)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        ) as usize;
        let keyed = rest.get(8..8 + len).ok_or_else(bad)?;
        Ok(Self {
            keyed: Some(KeyedSnapshot::decode(keyed).map_err(|e| e.to_string())?),
            operator: rest[8 + len..].to_vec(),
        })
    }
}

/// How a job checkpoints.
#[derive(Clone, Debug)]
pub struct CheckpointConfig {
    /// Time between checkpoints.
    pub interval: Duration,
    /// Where checkpoints are written.
    pub dir: PathBuf,
    /// How many completed checkpoints to keep.
    pub retain: usize,
    /// A checkpoint not complete after this long is abandoned.
    pub timeout: Duration,
    /// Where savepoints go (`sp-<id>` directories), if the job takes them.
    pub savepoint_dir: Option<PathBuf>,
    /// A file whose appearance asks for a savepoint (`weir savepoint`
    /// creates it); when the savepoint is written, its path is put in
    /// `<file>.done` and the request is removed.
    pub savepoint_request: Option<PathBuf>,
}

impl CheckpointConfig {
    /// Checkpoints every `interval` into `dir`, keeping 3, abandoned after
    /// 10 minutes.
    pub fn new(dir: impl Into<PathBuf>, interval: Duration) -> Self {
        Self {
            interval,
            dir: dir.into(),
            retain: 3,
            timeout: Duration::from_secs(600),
            savepoint_dir: None,
            savepoint_request: None,
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
}

#[derive(Serialize, Deserialize)]
struct NodeMeta {
    name: String,
    parallelism: usize,
}

/// The state of a job read back from a checkpoint (or savepoint).
#[derive(Debug, Default)]
pub struct RestoredJob {
    /// The checkpoint's number.
    pub id: CheckpointId,
    /// Where it was read from.
    pub path: PathBuf,
    nodes: HashMap<String, Vec<SubtaskState>>,
}

impl RestoredJob {
    /// The state of node `name`'s subtask `subtask` of `parallelism`, for a
    /// job with `max_parallelism` key groups: its own non-keyed state (only
    /// when the parallelism is unchanged) and the keyed state of the key
    /// groups it now owns, gathered from every old subtask.
    ///
    /// # Errors
    /// Non-keyed state that cannot be split across another parallelism (a
    /// source's positions), or malformed keyed state.
    pub fn subtask(
        &self,
        name: &str,
        subtask: usize,
        parallelism: usize,
        max_parallelism: u32,
    ) -> Result<Option<SubtaskState>, String> {
        let Some(old) = self.nodes.get(name) else {
            return Ok(None);
        };
        let operator = if old.len() == parallelism {
            old[subtask].operator.clone()
        } else if old.iter().all(|s| s.operator.is_empty()) {
            Vec::new()
        } else {
            return Err(format!(
                "`{name}` ran with parallelism {} in checkpoint {} and has state that cannot be \
                 split to parallelism {parallelism} (only keyed state rescales)",
                old.len(),
                self.id
            ));
        };
        let parts: Vec<&KeyedSnapshot> = old.iter().filter_map(|s| s.keyed.as_ref()).collect();
        let keyed = if parts.is_empty() {
            None
        } else {
            let owned = groups_of_subtask(subtask, max_parallelism, parallelism);
            Some(KeyedSnapshot::merge(parts, owned).map_err(|e| e.to_string())?)
        };
        Ok(Some(SubtaskState { keyed, operator }))
    }

    /// Names of the nodes with state.
    pub fn nodes(&self) -> impl Iterator<Item = &str> + '_ {
        self.nodes.keys().map(String::as_str)
    }
}

fn state_file(node: &str, subtask: usize) -> String {
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
    format!("{safe}-{subtask}.state")
}

/// Completed checkpoints in `dir`, oldest first.
pub fn completed(dir: &Path) -> Vec<(CheckpointId, PathBuf)> {
    let mut out: Vec<(CheckpointId, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name.strip_prefix("chk-")?.parse().ok()?;
            e.path().join("_metadata").is_file().then(|| (id, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// The latest completed checkpoint in `dir`, if any.
pub fn latest(dir: &Path) -> Option<PathBuf> {
    completed(dir).pop().map(|(_, p)| p)
}

/// Reads a checkpoint or savepoint directory.
///
/// # Errors
/// A missing or unreadable directory or file, or malformed contents, with
/// the path.
pub fn read(path: &Path) -> Result<RestoredJob, String> {
    let meta_path = path.join("_metadata");
    let text = std::fs::read_to_string(&meta_path)
        .map_err(|e| format!("cannot read `{}`: {e}", meta_path.display()))?;
    let meta: Metadata = serde_json::from_str(&text)
        .map_err(|e| format!("`{}` is not checkpoint metadata: {e}", meta_path.display()))?;
    let mut nodes = HashMap::new();
    for n in meta.nodes {
        let mut subtasks = Vec::with_capacity(n.parallelism);
        for s in 0..n.parallelism {
            let f = path.join(state_file(&n.name, s));
            let bytes =
                std::fs::read(&f).map_err(|e| format!("cannot read `{}`: {e}", f.display()))?;
            subtasks
                .push(SubtaskState::decode(&bytes).map_err(|e| format!("`{}`: {e}", f.display()))?);
        }
        nodes.insert(n.name, subtasks);
    }
    Ok(RestoredJob {
        id: meta.id,
        path: path.to_path_buf(),
        nodes,
    })
}

/// Writes a complete checkpoint atomically: into a temporary directory,
/// synced, then renamed.
fn write(
    dir: &Path,
    name: &str,
    id: CheckpointId,
    job: &str,
    nodes: &[(String, usize)],
    states: &HashMap<(usize, usize), SubtaskState>,
) -> std::io::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let mut size = 0u64;
    for (n, (name, parallelism)) in nodes.iter().enumerate() {
        for s in 0..*parallelism {
            let bytes = states
                .get(&(n, s))
                .map(SubtaskState::encode)
                .unwrap_or_else(|| vec![0]);
            size += bytes.len() as u64;
            let mut f = std::fs::File::create(tmp.join(state_file(name, s)))?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
    }
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
    };
    let mut f = std::fs::File::create(tmp.join("_metadata"))?;
    f.write_all(serde_json::to_string_pretty(&meta)?.as_bytes())?;
    f.sync_all()?;
    let target = dir.join(name);
    let _ = std::fs::remove_dir_all(&target);
    std::fs::rename(&tmp, &target)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(size)
}

/// One node subtask's acknowledgement of a checkpoint.
#[derive(Debug)]
pub struct Ack {
    /// The checkpoint.
    pub id: CheckpointId,
    /// Node index in the dataflow.
    pub node: usize,
    /// Subtask.
    pub subtask: usize,
    /// Its state.
    pub state: SubtaskState,
}

/// Checkpoint figures, for the progress line and the metrics endpoint.
#[derive(Debug, Default)]
pub struct CheckpointStats {
    /// Last completed checkpoint (0 for none).
    pub last_completed: AtomicU64,
    /// Its duration, from trigger to written, in ms.
    pub last_duration_ms: AtomicU64,
    /// Its size in bytes.
    pub last_size: AtomicU64,
    /// Checkpoints completed.
    pub completed: AtomicU64,
    /// Checkpoints abandoned (timed out).
    pub abandoned: AtomicU64,
    /// The longest alignment seen (ms).
    pub max_alignment_ms: AtomicU64,
    /// Last savepoint taken (its checkpoint number; 0 for none).
    pub last_savepoint: AtomicU64,
}

/// The states collected for a checkpoint, by (node, subtask).
type States = HashMap<(usize, usize), SubtaskState>;

/// What subtasks share with the coordinator.
#[derive(Debug, Clone)]
pub(crate) struct CheckpointHooks {
    /// The latest checkpoint asked for; sources compare with their last.
    pub trigger: Arc<AtomicU64>,
    pub acks: crossbeam_channel::Sender<Ack>,
    pub stats: Arc<CheckpointStats>,
}

/// The checkpoint coordinator: triggers, collects, writes, retains.
pub(crate) struct Coordinator {
    pub config: CheckpointConfig,
    pub job: String,
    pub nodes: Vec<(String, usize)>,
    pub trigger: Arc<AtomicU64>,
    pub acks: Receiver<Ack>,
    pub stats: Arc<CheckpointStats>,
    /// Set when a source has ended: no checkpoint can complete after that.
    pub sources_ending: Arc<AtomicBool>,
    /// The number to continue from (the restored checkpoint's).
    pub first_id: CheckpointId,
}

impl Coordinator {
    /// Runs until every subtask has dropped its ack sender (the job ended).
    pub fn run(self) {
        let expected: usize = self.nodes.iter().map(|(_, p)| p).sum();
        let mut next_id = self.first_id + 1;
        let mut next_trigger = Instant::now() + self.config.interval;
        let mut pending: Option<(CheckpointId, Instant, States, bool)> = None;
        loop {
            let mut wait = next_trigger.saturating_duration_since(Instant::now());
            if self.config.savepoint_request.is_some() {
                wait = wait.min(Duration::from_millis(100));
            }
            match self.acks.recv_timeout(wait) {
                Ok(ack) => {
                    if let Some((id, started, states, savepoint)) = pending.as_mut()
                        && ack.id == *id
                    {
                        states.insert((ack.node, ack.subtask), ack.state);
                        if states.len() == expected {
                            let (id, started, states, savepoint) =
                                (*id, *started, std::mem::take(states), *savepoint);
                            pending = None;
                            if savepoint {
                                self.complete_savepoint(id, &states);
                            } else {
                                self.complete(id, started, &states);
                            }
                        }
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            let requested = self
                .config
                .savepoint_request
                .as_ref()
                .is_some_and(|r| r.is_file());
            if requested && pending.is_none() && !self.sources_ending.load(Ordering::SeqCst) {
                pending = Some((next_id, Instant::now(), HashMap::new(), true));
                self.trigger.store(next_id, Ordering::SeqCst);
                next_id += 1;
            }
            if Instant::now() >= next_trigger {
                next_trigger = Instant::now() + self.config.interval;
                if let Some((id, started, _, _)) = &pending
                    && started.elapsed() > self.config.timeout
                {
                    tracing::warn!(checkpoint = id, "checkpoint timed out and is abandoned");
                    self.stats.abandoned.fetch_add(1, Ordering::Relaxed);
                    pending = None;
                }
                if pending.is_none() && !self.sources_ending.load(Ordering::SeqCst) {
                    pending = Some((next_id, Instant::now(), HashMap::new(), false));
                    self.trigger.store(next_id, Ordering::SeqCst);
                    next_id += 1;
                }
            }
        }
    }

    /// Writes a savepoint and answers the request.
    fn complete_savepoint(&self, id: CheckpointId, states: &States) {
        let (Some(dir), Some(request)) = (
            self.config.savepoint_dir.as_ref(),
            self.config.savepoint_request.as_ref(),
        ) else {
            return;
        };
        let name = format!("sp-{id}");
        let answer = match write(dir, &name, id, &self.job, &self.nodes, states) {
            Ok(_) => {
                self.stats.last_savepoint.store(id, Ordering::Relaxed);
                format!("ok {}", dir.join(&name).display())
            }
            Err(e) => format!("error cannot write savepoint: {e}"),
        };
        let mut done = request.clone().into_os_string();
        done.push(".done");
        let _ = std::fs::write(&done, answer);
        let _ = std::fs::remove_file(request);
    }

    fn complete(
        &self,
        id: CheckpointId,
        started: Instant,
        states: &HashMap<(usize, usize), SubtaskState>,
    ) {
        match write(
            &self.config.dir,
            &format!("chk-{id}"),
            id,
            &self.job,
            &self.nodes,
            states,
        ) {
            Ok(size) => {
                self.stats.last_completed.store(id, Ordering::Relaxed);
                self.stats
                    .last_duration_ms
                    .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                self.stats.last_size.store(size, Ordering::Relaxed);
                self.stats.completed.fetch_add(1, Ordering::Relaxed);
                let all = completed(&self.config.dir);
                let keep = self.config.retain.max(1);
                for (_, path) in all.iter().take(all.len().saturating_sub(keep)) {
                    let _ = std::fs::remove_dir_all(path);
                }
            }
            Err(e) => {
                tracing::warn!(checkpoint = id, "cannot write checkpoint: {e}");
                self.stats.abandoned.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_state::snapshot::push_state;

    #[test]
    fn checkpoints_are_written_read_and_rescaled_by_key_group() {
        let dir = tempfile::tempdir().unwrap();
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
        states.insert(
            (0, 0),
            SubtaskState {
                keyed: None,
                operator: b"pos=7".to_vec(),
            },
        );
        states.insert(
            (1, 0),
            SubtaskState {
                keyed: Some(keyed.clone()),
                operator: Vec::new(),
            },
        );
        let nodes = vec![("src".to_string(), 1), ("win dow".to_string(), 1)];
        write(dir.path(), "chk-4", 4, "j", &nodes, &states).unwrap();
        write(dir.path(), "chk-5", 5, "j", &nodes, &states).unwrap();
        assert_eq!(latest(dir.path()).unwrap(), dir.path().join("chk-5"));

        let r = read(&dir.path().join("chk-4")).unwrap();
        assert_eq!(r.id, 4);
        let src = r.subtask("src", 0, 1, 128).unwrap().unwrap();
        assert_eq!(src.operator, b"pos=7");
        // Rescale the window to 2 subtasks: groups 0..64 and 64..128.
        let low = r.subtask("win dow", 0, 2, 128).unwrap().unwrap();
        let high = r.subtask("win dow", 1, 2, 128).unwrap().unwrap();
        assert_eq!(
            low.keyed.unwrap().groups.keys().collect::<Vec<_>>(),
            vec![&1]
        );
        assert_eq!(
            high.keyed.unwrap().groups.keys().collect::<Vec<_>>(),
            vec![&100]
        );
        // A source's position cannot be split.
        let e = r.subtask("src", 0, 2, 128).unwrap_err();
        assert!(e.contains("cannot be split"), "{e}");
        assert!(r.subtask("other", 0, 1, 128).unwrap().is_none());
    }
}
