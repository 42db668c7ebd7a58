//! The checkpoint coordinator: triggers checkpoints and savepoints,
//! collects the acknowledgements, writes the metadata, retains the last N
//! and removes the shared files no retained checkpoint needs.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::{CheckpointConfig, CheckpointId, CheckpointStorage, SubtaskState, prune, write};

/// How barriers are handled at tasks with several inputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Wait for the barrier on every input, holding back the inputs whose
    /// barrier came first: the snapshot holds no in-flight data.
    #[default]
    Aligned,
    /// Snapshot at the first barrier and save the records still in flight
    /// on the other inputs with the checkpoint: no waiting, for jobs under
    /// backpressure. Savepoints are always aligned.
    Unaligned,
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
    /// Its state, or why it could not be written.
    pub state: Result<SubtaskState, String>,
    /// What this message is.
    pub kind: AckKind,
}

/// What an [`Ack`] carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckKind {
    /// The subtask's state (exactly one per node subtask).
    State,
    /// The subtask will also send in-flight records (unaligned mode).
    ExpectInflight,
    /// In-flight records, in the state's `inflight`.
    Inflight,
}

/// Checkpoint figures, for the progress line and the metrics endpoint.
#[derive(Debug, Default)]
pub struct CheckpointStats {
    /// Last completed checkpoint (0 for none).
    pub last_completed: AtomicU64,
    /// Its duration, from trigger to written, in ms.
    pub last_duration_ms: AtomicU64,
    /// Its full size in bytes: everything it references.
    pub last_size: AtomicU64,
    /// What it wrote: its own objects and newly uploaded shared files (the
    /// incremental size; equal to the full size for heap state).
    pub last_incremental_size: AtomicU64,
    /// The longest synchronous part of a snapshot seen (the pause at the
    /// barrier: freezing the state), in µs.
    pub max_sync_us: AtomicU64,
    /// Checkpoints completed.
    pub completed: AtomicU64,
    /// Checkpoints abandoned (timed out or failed).
    pub abandoned: AtomicU64,
    /// The longest alignment seen (ms).
    pub max_alignment_ms: AtomicU64,
    /// Last savepoint taken (its checkpoint number; 0 for none).
    pub last_savepoint: AtomicU64,
    /// Time taken to restore the job's state at start, in ms (0 when it
    /// started empty): the longest any subtask took.
    pub restore_ms: AtomicU64,
}

/// What subtasks share with the coordinator.
#[derive(Debug, Clone)]
pub(crate) struct CheckpointHooks {
    /// The latest checkpoint asked for; sources compare with their last.
    pub trigger: Arc<AtomicU64>,
    /// The checkpoint number of the savepoint being taken (0 for none).
    pub savepoint: Arc<AtomicU64>,
    pub acks: crossbeam_channel::Sender<Ack>,
    pub stats: Arc<CheckpointStats>,
    /// Checkpoints known complete: an incremental snapshot reuses only
    /// shared files uploaded for these.
    pub completed: Arc<Mutex<BTreeSet<CheckpointId>>>,
    pub storage: CheckpointStorage,
    pub mode: Mode,
}

impl CheckpointHooks {
    /// Whether checkpoint `id` completed.
    pub fn is_complete(&self, id: CheckpointId) -> bool {
        self.completed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&id)
    }
}

/// The parts of [`CheckpointHooks`] the coordinator uses.
pub(crate) struct Shared {
    pub trigger: Arc<AtomicU64>,
    pub savepoint: Arc<AtomicU64>,
    pub stats: Arc<CheckpointStats>,
    pub completed: Arc<Mutex<BTreeSet<CheckpointId>>>,
}

impl From<&CheckpointHooks> for Shared {
    fn from(h: &CheckpointHooks) -> Self {
        Self {
            trigger: h.trigger.clone(),
            savepoint: h.savepoint.clone(),
            stats: h.stats.clone(),
            completed: h.completed.clone(),
        }
    }
}

/// The states collected for a checkpoint, by (node, subtask).
type States = HashMap<(usize, usize), SubtaskState>;

struct Pending {
    id: CheckpointId,
    started: Instant,
    states: States,
    savepoint: bool,
    /// In-flight records still expected (unaligned mode).
    awaiting: usize,
    inflight: HashMap<(usize, usize), Vec<u8>>,
}

/// The checkpoint coordinator: triggers, collects, writes, retains.
pub(crate) struct Coordinator {
    pub config: CheckpointConfig,
    pub job: String,
    pub nodes: Vec<(String, usize)>,
    /// What the coordinator shares with the subtasks (never their ack
    /// sender: the job has ended when every sender is gone).
    pub shared: Shared,
    pub acks: Receiver<Ack>,
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
        let mut pending: Option<Pending> = None;
        // A savepoint asked for with `stop`: the job is about to be stopped
        // (an upgrade, a cancel with savepoint), so no checkpoint may follow
        // it and commit output past it.
        let mut final_savepoint = false;
        loop {
            let mut wait = next_trigger.saturating_duration_since(Instant::now());
            if self.config.savepoint_request.is_some() {
                wait = wait.min(Duration::from_millis(100));
            }
            match self.acks.recv_timeout(wait) {
                Ok(ack) => {
                    if let Some(p) = pending.as_mut()
                        && ack.id == p.id
                    {
                        match (ack.kind, ack.state) {
                            (AckKind::ExpectInflight, _) => p.awaiting += 1,
                            (AckKind::Inflight, Ok(state)) => {
                                p.awaiting = p.awaiting.saturating_sub(1);
                                p.inflight.insert((ack.node, ack.subtask), state.inflight);
                            }
                            (AckKind::State, Ok(state)) => {
                                p.states.insert((ack.node, ack.subtask), state);
                            }
                            (_, Err(e)) => {
                                let node = &self.nodes[ack.node].0;
                                tracing::warn!(
                                    checkpoint = p.id,
                                    "checkpoint abandoned: `{node}` subtask {}: {e}",
                                    ack.subtask
                                );
                                self.shared.stats.abandoned.fetch_add(1, Ordering::Relaxed);
                                if p.savepoint {
                                    self.answer_savepoint(Err(format!(
                                        "`{node}` subtask {}: {e}",
                                        ack.subtask
                                    )));
                                    self.shared.savepoint.store(0, Ordering::SeqCst);
                                    final_savepoint = false;
                                }
                                pending = None;
                                continue;
                            }
                        }
                        if p.states.len() == expected && p.awaiting == 0 {
                            let mut p = pending.take().expect("pending checkpoint");
                            for (at, records) in p.inflight.drain() {
                                p.states.entry(at).or_default().inflight = records;
                            }
                            if p.savepoint {
                                self.complete_savepoint(p.id, &p.states);
                            } else {
                                self.complete(p.id, p.started, &p.states);
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
                .and_then(|r| std::fs::read_to_string(r).ok());
            if let Some(request) = requested
                && pending.is_none()
                && !self.sources_ending.load(Ordering::SeqCst)
            {
                final_savepoint = request.split_whitespace().any(|w| w == "stop");
                pending = Some(self.start(next_id, true));
                next_id += 1;
            }
            if Instant::now() >= next_trigger {
                next_trigger = Instant::now() + self.config.interval;
                if let Some(p) = &pending
                    && p.started.elapsed() > self.config.timeout
                {
                    tracing::warn!(checkpoint = p.id, "checkpoint timed out and is abandoned");
                    self.shared.stats.abandoned.fetch_add(1, Ordering::Relaxed);
                    if p.savepoint {
                        self.answer_savepoint(Err("the savepoint timed out".into()));
                        final_savepoint = false;
                    }
                    pending = None;
                }
                let held = self
                    .config
                    .hold
                    .as_ref()
                    .is_some_and(|h| h.load(Ordering::SeqCst));
                if pending.is_none()
                    && !final_savepoint
                    && !held
                    && !self.sources_ending.load(Ordering::SeqCst)
                {
                    pending = Some(self.start(next_id, false));
                    next_id += 1;
                }
            }
        }
    }

    fn start(&self, id: CheckpointId, savepoint: bool) -> Pending {
        self.shared
            .savepoint
            .store(if savepoint { id } else { 0 }, Ordering::SeqCst);
        self.shared.trigger.store(id, Ordering::SeqCst);
        Pending {
            id,
            started: Instant::now(),
            states: HashMap::new(),
            savepoint,
            awaiting: 0,
            inflight: HashMap::new(),
        }
    }

    /// Writes a savepoint and answers the request.
    fn complete_savepoint(&self, id: CheckpointId, states: &States) {
        let Some(storage) = self.config.savepoints.as_ref() else {
            return;
        };
        let name = format!("sp-{id}");
        let answer = write(storage, &name, id, &self.job, &self.nodes, states, true)
            .map(|_| {
                self.shared
                    .stats
                    .last_savepoint
                    .store(id, Ordering::Relaxed);
                storage.display(&name)
            })
            .map_err(|e| format!("cannot write savepoint: {e}"));
        self.answer_savepoint(answer);
    }

    fn answer_savepoint(&self, answer: Result<String, String>) {
        let Some(request) = self.config.savepoint_request.as_ref() else {
            return;
        };
        let text = match answer {
            Ok(location) => format!("ok {location}"),
            Err(e) => format!("error {e}"),
        };
        let mut done = request.clone().into_os_string();
        done.push(".done");
        let _ = std::fs::write(&done, text);
        let _ = std::fs::remove_file(request);
    }

    fn complete(&self, id: CheckpointId, started: Instant, states: &States) {
        let storage = &self.config.storage;
        match write(
            storage,
            &format!("chk-{id}"),
            id,
            &self.job,
            &self.nodes,
            states,
            false,
        ) {
            Ok((written, full)) => {
                self.shared
                    .completed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(id);
                let stats = &self.shared.stats;
                stats.last_completed.store(id, Ordering::Relaxed);
                stats
                    .last_duration_ms
                    .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                stats.last_size.store(full, Ordering::Relaxed);
                stats
                    .last_incremental_size
                    .store(written, Ordering::Relaxed);
                stats.completed.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = prune(storage, self.config.retain.max(1), id) {
                    tracing::warn!(checkpoint = id, "cannot remove old checkpoints: {e}");
                }
            }
            Err(e) => {
                tracing::warn!(checkpoint = id, "cannot write checkpoint: {e}");
                self.shared.stats.abandoned.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
