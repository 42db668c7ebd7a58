//! The checkpoint coordinator: triggers checkpoints and savepoints,
//! collects the acknowledgements, writes the metadata, retains the last N
//! and removes the shared files no retained checkpoint needs.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::{
    CheckpointConfig, CheckpointId, CheckpointStorage, SnapshotError, SubtaskState, Written, prune,
    write,
};

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
    pub state: Result<SubtaskState, SnapshotError>,
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

impl CheckpointStats {
    /// Counts checkpoint `id`, triggered at `started`, as complete.
    pub(crate) fn record_completed(&self, id: CheckpointId, started: Instant, written: &Written) {
        self.last_completed.store(id, Ordering::Relaxed);
        self.last_duration_ms
            .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.last_size.store(written.full, Ordering::Relaxed);
        self.last_incremental_size
            .store(written.written, Ordering::Relaxed);
        self.completed.fetch_add(1, Ordering::Relaxed);
    }
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
pub(crate) type States = HashMap<(usize, usize), SubtaskState>;

/// What the protocol collects from each acknowledger: a node subtask's
/// state in one process, a part's [`Written`] at a spread job's controller.
pub(crate) trait Payload: Default + Send {
    /// Sets the in-flight records of an unaligned checkpoint.
    fn set_inflight(&mut self, records: Vec<u8>);
    /// Takes them out.
    fn take_inflight(&mut self) -> Vec<u8>;
}

impl Payload for SubtaskState {
    fn set_inflight(&mut self, records: Vec<u8>) {
        self.inflight = records;
    }
    fn take_inflight(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.inflight)
    }
}

impl Payload for Written {
    fn set_inflight(&mut self, _: Vec<u8>) {}
    fn take_inflight(&mut self) -> Vec<u8> {
        Vec::new()
    }
}

/// What the coordinator must do, as decided by [`Protocol`].
#[derive(Debug)]
pub(crate) enum Action<T = SubtaskState> {
    /// Ask the sources for checkpoint `id` (a savepoint if `savepoint`).
    Trigger {
        /// The checkpoint.
        id: CheckpointId,
        /// Whether it is a savepoint.
        savepoint: bool,
    },
    /// Every subtask has acknowledged: write the checkpoint (or savepoint).
    Complete {
        /// The checkpoint.
        id: CheckpointId,
        /// Whether it is a savepoint.
        savepoint: bool,
        /// When it was triggered.
        started: Instant,
        /// The subtasks' states, in-flight records included.
        states: HashMap<(usize, usize), T>,
    },
    /// Give the checkpoint up.
    Abandon {
        /// The checkpoint.
        id: CheckpointId,
        /// Whether it is a savepoint (its requester gets `reason`).
        savepoint: bool,
        /// Why.
        reason: Box<Abandoned>,
    },
}

/// Why a checkpoint was given up.
#[derive(Debug, thiserror::Error)]
pub enum Abandoned {
    /// A subtask could not take its part.
    #[error("`{node}` subtask {subtask}: {source}")]
    Declined {
        /// The node.
        node: String,
        /// The subtask.
        subtask: usize,
        /// Why.
        source: SnapshotError,
    },
    /// A part of a job spread over several workers could not take its
    /// part (its message names the node subtask).
    #[error("worker `{worker}`: {reason}")]
    OnWorker {
        /// The worker.
        worker: String,
        /// Why, as the worker said.
        reason: String,
    },
    /// A source has ended: no checkpoint can complete after that.
    #[error("a source has ended")]
    SourcesEnded,
    /// Not every subtask answered within the checkpoint timeout.
    #[error("the {} timed out", if *.savepoint { "savepoint" } else { "checkpoint" })]
    TimedOut {
        /// Whether it was a savepoint.
        savepoint: bool,
    },
}

struct Pending<T> {
    id: CheckpointId,
    started: Instant,
    states: HashMap<(usize, usize), T>,
    savepoint: bool,
    /// In-flight records still expected (unaligned mode).
    awaiting: usize,
    inflight: HashMap<(usize, usize), Vec<u8>>,
}

/// The checkpoint protocol as a state machine: which checkpoint to
/// trigger when, which acknowledgements complete or abandon it. One
/// checkpoint is pending at a time. It does no I/O and reads no clock but
/// the `now` it is given: each call returns the actions to carry out
/// ([`Coordinator`] does), and the table tests below drive it alone.
pub(crate) struct Protocol<T = SubtaskState> {
    /// Node subtasks that acknowledge each checkpoint.
    expected: usize,
    interval: Duration,
    timeout: Duration,
    next_id: CheckpointId,
    next_trigger: Instant,
    pending: Option<Pending<T>>,
    /// A savepoint asked for with `stop` is pending or taken: the job is
    /// about to be stopped (an upgrade, a cancel with savepoint), so no
    /// checkpoint may follow it and commit output past it.
    final_savepoint: bool,
}

impl<T: Payload> Protocol<T> {
    /// A protocol for `expected` node subtasks, continuing after
    /// checkpoint `last_id`, first triggering one `interval` after `now`.
    pub fn new(
        expected: usize,
        interval: Duration,
        timeout: Duration,
        last_id: CheckpointId,
        now: Instant,
    ) -> Self {
        Self {
            expected,
            interval,
            timeout,
            next_id: last_id + 1,
            next_trigger: now + interval,
            pending: None,
            final_savepoint: false,
        }
    }

    /// When [`Self::on_tick`] is next due.
    pub fn next_tick(&self) -> Instant {
        self.next_trigger
    }

    /// The pending checkpoint, if any.
    #[cfg(test)]
    pub fn pending(&self) -> Option<CheckpointId> {
        self.pending.as_ref().map(|p| p.id)
    }

    /// A subtask's acknowledgement (`Err`: it could not snapshot).
    pub fn on_ack(
        &mut self,
        id: CheckpointId,
        at: (usize, usize),
        kind: AckKind,
        state: Result<T, SnapshotError>,
        node_name: &str,
    ) -> Option<Action<T>> {
        let p = self.pending.as_mut().filter(|p| p.id == id)?;
        match (kind, state) {
            (AckKind::ExpectInflight, _) => p.awaiting += 1,
            (AckKind::Inflight, Ok(mut state)) => {
                p.awaiting = p.awaiting.saturating_sub(1);
                p.inflight.insert(at, state.take_inflight());
            }
            (AckKind::State, Ok(state)) => {
                p.states.insert(at, state);
            }
            (_, Err(e)) => {
                return self.on_decline(
                    id,
                    Abandoned::Declined {
                        node: node_name.to_string(),
                        subtask: at.1,
                        source: e,
                    },
                );
            }
        }
        if p.states.len() < self.expected || p.awaiting > 0 {
            return None;
        }
        let mut p = self.pending.take()?;
        for (at, records) in p.inflight.drain() {
            p.states.entry(at).or_default().set_inflight(records);
        }
        Some(Action::Complete {
            id: p.id,
            savepoint: p.savepoint,
            started: p.started,
            states: p.states,
        })
    }

    /// Checkpoint `id` is given up for `reason` (if it is the pending one).
    pub fn on_decline(&mut self, id: CheckpointId, reason: Abandoned) -> Option<Action<T>> {
        self.pending.as_ref().filter(|p| p.id == id)?;
        let p = self.pending.take()?;
        self.final_savepoint &= !p.savepoint;
        Some(Action::Abandon {
            id: p.id,
            savepoint: p.savepoint,
            reason: Box::new(reason),
        })
    }

    /// Checkpoint `id`, triggered elsewhere (by a spread job's controller),
    /// is the one pending now: an earlier one still pending is dropped
    /// (the controller gave it up).
    pub fn begin(&mut self, id: CheckpointId, savepoint: bool, now: Instant) {
        self.next_id = id;
        self.start(savepoint, now);
    }

    /// A savepoint was asked for (`stop`: the job stops after it). Taken
    /// when no checkpoint is pending and the sources have not ended;
    /// otherwise asked again later.
    pub fn on_savepoint_request(
        &mut self,
        stop: bool,
        sources_ending: bool,
        now: Instant,
    ) -> Option<Action<T>> {
        if self.pending.is_some() || sources_ending {
            return None;
        }
        self.final_savepoint = stop;
        Some(self.start(true, now))
    }

    /// Time passes: at each interval, a pending checkpoint past its timeout
    /// is abandoned, and a new one is triggered unless one is pending, a
    /// final savepoint was taken, checkpoints are `held`, or the sources
    /// are ending (no checkpoint can complete then).
    pub fn on_tick(&mut self, now: Instant, held: bool, sources_ending: bool) -> Vec<Action<T>> {
        let mut actions = Vec::new();
        if now < self.next_trigger {
            return actions;
        }
        self.next_trigger = now + self.interval;
        if let Some(p) = &self.pending
            && now.saturating_duration_since(p.started) > self.timeout
        {
            let savepoint = p.savepoint;
            actions.push(Action::Abandon {
                id: p.id,
                savepoint,
                reason: Box::new(Abandoned::TimedOut { savepoint }),
            });
            self.final_savepoint &= !savepoint;
            self.pending = None;
        }
        if self.pending.is_none() && !self.final_savepoint && !held && !sources_ending {
            actions.push(self.start(false, now));
        }
        actions
    }

    fn start(&mut self, savepoint: bool, now: Instant) -> Action<T> {
        let id = self.next_id;
        self.next_id += 1;
        self.pending = Some(Pending {
            id,
            started: now,
            states: HashMap::new(),
            savepoint,
            awaiting: 0,
            inflight: HashMap::new(),
        });
        Action::Trigger { id, savepoint }
    }
}

/// How long a coordinator may wait for an acknowledgement: until the
/// protocol's next tick, and at most 100 ms while savepoint requests are
/// watched for.
pub(crate) fn next_wait<T: Payload>(protocol: &Protocol<T>, config: &CheckpointConfig) -> Duration {
    let wait = protocol
        .next_tick()
        .saturating_duration_since(Instant::now());
    if config.savepoint_request.is_some() {
        wait.min(Duration::from_millis(100))
    } else {
        wait
    }
}

/// Whether a savepoint is asked for (through the request file), and if so
/// whether the job stops after it.
pub(crate) fn savepoint_requested(config: &CheckpointConfig) -> Option<bool> {
    let request = config.savepoint_request.as_ref()?;
    let text = std::fs::read_to_string(request).ok()?;
    Some(text.split_whitespace().any(|w| w == "stop"))
}

/// Whether periodic checkpoints are held (a module on probation).
pub(crate) fn held(config: &CheckpointConfig) -> bool {
    config
        .hold
        .as_ref()
        .is_some_and(|h| h.load(Ordering::SeqCst))
}

/// Answers the savepoint request (a location or why it failed).
pub(crate) fn answer_savepoint(
    config: &CheckpointConfig,
    answer: Result<&str, &dyn std::fmt::Display>,
) {
    let Some(request) = config.savepoint_request.as_ref() else {
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

/// The checkpoint coordinator: runs the [`Protocol`] against the
/// subtasks' acknowledgements and the clock, and does its I/O: triggers
/// through the shared counters, writes checkpoints and savepoints,
/// retains, answers savepoint requests.
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
        let mut protocol = Protocol::new(
            expected,
            self.config.interval,
            self.config.timeout,
            self.first_id,
            Instant::now(),
        );
        loop {
            match self.acks.recv_timeout(next_wait(&protocol, &self.config)) {
                Ok(ack) => {
                    let node = self.nodes.get(ack.node).map_or("?", |n| n.0.as_str());
                    let at = (ack.node, ack.subtask);
                    if let Some(action) = protocol.on_ack(ack.id, at, ack.kind, ack.state, node) {
                        self.act(action);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            let ending = self.sources_ending.load(Ordering::SeqCst);
            if let Some(stop) = savepoint_requested(&self.config)
                && let Some(action) = protocol.on_savepoint_request(stop, ending, Instant::now())
            {
                self.act(action);
            }
            let held = held(&self.config);
            for action in protocol.on_tick(Instant::now(), held, ending) {
                self.act(action);
            }
        }
    }

    fn act(&self, action: Action) {
        match action {
            Action::Trigger { id, savepoint } => {
                self.shared
                    .savepoint
                    .store(if savepoint { id } else { 0 }, Ordering::SeqCst);
                self.shared.trigger.store(id, Ordering::SeqCst);
            }
            Action::Complete {
                id,
                savepoint: true,
                states,
                ..
            } => self.complete_savepoint(id, &states),
            Action::Complete {
                id,
                started,
                states,
                ..
            } => self.complete(id, started, &states),
            Action::Abandon {
                id,
                savepoint,
                reason,
            } => {
                tracing::warn!(checkpoint = id, "checkpoint abandoned: {reason}");
                self.shared.stats.abandoned.fetch_add(1, Ordering::Relaxed);
                if savepoint {
                    self.answer_savepoint(Err(&reason));
                    self.shared.savepoint.store(0, Ordering::SeqCst);
                }
            }
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
        self.answer_savepoint(answer.as_ref().map(String::as_str).map_err(|e| e as _));
    }

    fn answer_savepoint(&self, answer: Result<&str, &dyn std::fmt::Display>) {
        answer_savepoint(&self.config, answer);
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
            Ok(written) => {
                self.shared
                    .completed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(id);
                self.shared.stats.record_completed(id, started, &written);
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

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    /// An action, in a few words, for tables.
    fn said(a: &Action) -> String {
        match a {
            Action::Trigger { id, savepoint } => {
                format!("trigger {}{id}", if *savepoint { "sp" } else { "" })
            }
            Action::Complete {
                id,
                savepoint,
                states,
                ..
            } => format!(
                "complete {}{id} ({} states)",
                if *savepoint { "sp" } else { "" },
                states.len()
            ),
            Action::Abandon { id, reason, .. } => format!("abandon {id}: {reason}"),
        }
    }

    fn all(actions: Vec<Action>) -> Vec<String> {
        actions.iter().map(said).collect()
    }

    fn one(action: Option<Action>) -> String {
        action.as_ref().map_or_else(|| "-".to_string(), said)
    }

    fn ok() -> Result<SubtaskState, SnapshotError> {
        Ok(SubtaskState::default())
    }

    fn disk_full() -> SnapshotError {
        SnapshotError::Write(
            crate::checkpoint::StorageError::Store {
                op: "write",
                object: "chk-1".into(),
                source: "disk full".into(),
            }
            .into(),
        )
    }

    /// Two node subtasks, a 10 s interval, a 60 s timeout.
    fn protocol(t0: Instant) -> Protocol {
        Protocol::new(2, 10 * S, 60 * S, 0, t0)
    }

    #[test]
    fn checkpoints_are_triggered_each_interval_one_at_a_time_and_complete_with_every_ack() {
        let t0 = Instant::now();
        let mut p = protocol(t0);
        let table: Vec<(u32, Vec<&str>)> = vec![
            (5, vec![]),
            (10, vec!["trigger 1"]),
            // Still pending at the next interval: nothing new.
            (20, vec![]),
        ];
        for (at, expected) in table {
            assert_eq!(
                all(p.on_tick(t0 + at * S, false, false)),
                expected,
                "at {at}s"
            );
        }
        assert_eq!(one(p.on_ack(1, (0, 0), AckKind::State, ok(), "a")), "-");
        // An ack of another checkpoint counts for nothing.
        assert_eq!(one(p.on_ack(7, (1, 0), AckKind::State, ok(), "b")), "-");
        assert_eq!(
            one(p.on_ack(1, (1, 0), AckKind::State, ok(), "b")),
            "complete 1 (2 states)"
        );
        assert_eq!(p.pending(), None);
        assert_eq!(
            all(p.on_tick(t0 + 25 * S, false, false)),
            Vec::<String>::new()
        );
        assert_eq!(all(p.on_tick(t0 + 30 * S, false, false)), vec!["trigger 2"]);
    }

    #[test]
    fn a_checkpoint_past_its_timeout_is_abandoned_and_the_next_one_triggered() {
        let t0 = Instant::now();
        let mut p = protocol(t0);
        assert_eq!(all(p.on_tick(t0 + 10 * S, false, false)), vec!["trigger 1"]);
        assert_eq!(one(p.on_ack(1, (0, 0), AckKind::State, ok(), "a")), "-");
        assert_eq!(
            all(p.on_tick(t0 + 70 * S, false, false)),
            Vec::<String>::new()
        );
        assert_eq!(
            all(p.on_tick(t0 + 80 * S, false, false)),
            vec!["abandon 1: the checkpoint timed out", "trigger 2"]
        );
        // A late ack of the abandoned checkpoint is ignored.
        assert_eq!(one(p.on_ack(1, (1, 0), AckKind::State, ok(), "b")), "-");
        assert_eq!(p.pending(), Some(2));
    }

    #[test]
    fn a_failed_snapshot_abandons_the_checkpoint_naming_node_and_subtask() {
        let t0 = Instant::now();
        let mut p = protocol(t0);
        p.on_tick(t0 + 10 * S, false, false);
        let failed = Err(disk_full());
        assert_eq!(
            one(p.on_ack(1, (1, 3), AckKind::State, failed, "window")),
            "abandon 1: `window` subtask 3: cannot write `chk-1`: disk full"
        );
        assert_eq!(one(p.on_ack(1, (0, 0), AckKind::State, ok(), "a")), "-");
        assert_eq!(all(p.on_tick(t0 + 20 * S, false, false)), vec!["trigger 2"]);
    }

    #[test]
    fn an_unaligned_checkpoint_waits_for_the_inflight_records_it_was_promised() {
        let t0 = Instant::now();
        let mut p = protocol(t0);
        p.on_tick(t0 + 10 * S, false, false);
        let inflight = |bytes: &[u8]| {
            Ok(SubtaskState {
                inflight: bytes.to_vec(),
                ..SubtaskState::default()
            })
        };
        let steps: Vec<(usize, AckKind, Result<SubtaskState, SnapshotError>, &str)> = vec![
            (1, AckKind::ExpectInflight, ok(), "-"),
            (0, AckKind::State, ok(), "-"),
            (1, AckKind::State, ok(), "-"),
            (
                1,
                AckKind::Inflight,
                inflight(b"rec"),
                "complete 1 (2 states)",
            ),
        ];
        let mut last = None;
        for (i, (node, kind, state, expected)) in steps.into_iter().enumerate() {
            let a = p.on_ack(1, (node, 0), kind, state, "n");
            let got = a.as_ref().map_or_else(|| "-".to_string(), said);
            assert_eq!(got, expected, "step {i}");
            last = a;
        }
        let Some(Action::Complete { states, .. }) = last else {
            panic!("not complete");
        };
        assert_eq!(states[&(1, 0)].inflight, b"rec");
        assert!(states[&(0, 0)].inflight.is_empty());
    }

    #[test]
    fn savepoints_wait_for_the_pending_checkpoint_and_a_final_one_stops_checkpoints() {
        let t0 = Instant::now();
        let mut p = protocol(t0);
        p.on_tick(t0 + 10 * S, false, false);
        // Asked while checkpoint 1 is pending: not yet.
        assert_eq!(one(p.on_savepoint_request(true, false, t0 + 11 * S)), "-");
        p.on_ack(1, (0, 0), AckKind::State, ok(), "a");
        p.on_ack(1, (1, 0), AckKind::State, ok(), "b");
        assert_eq!(
            one(p.on_savepoint_request(true, false, t0 + 12 * S)),
            "trigger sp2"
        );
        p.on_ack(2, (0, 0), AckKind::State, ok(), "a");
        assert_eq!(
            one(p.on_ack(2, (1, 0), AckKind::State, ok(), "b")),
            "complete sp2 (2 states)"
        );
        // The job stops after a final savepoint: no checkpoint may follow
        // it and commit output past it.
        assert_eq!(
            all(p.on_tick(t0 + 20 * S, false, false)),
            Vec::<String>::new()
        );
        assert_eq!(
            all(p.on_tick(t0 + 30 * S, false, false)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_failed_final_savepoint_lets_checkpoints_go_on() {
        let t0 = Instant::now();
        let mut p = protocol(t0);
        assert_eq!(one(p.on_savepoint_request(true, false, t0)), "trigger sp1");
        assert_eq!(
            one(p.on_ack(1, (0, 0), AckKind::State, Err(disk_full()), "a")),
            "abandon 1: `a` subtask 0: cannot write `chk-1`: disk full"
        );
        assert_eq!(all(p.on_tick(t0 + 10 * S, false, false)), vec!["trigger 2"]);
        // A savepoint that times out also lets them go on.
        let mut p = protocol(t0);
        assert_eq!(one(p.on_savepoint_request(true, false, t0)), "trigger sp1");
        assert_eq!(
            all(p.on_tick(t0 + 70 * S, false, false)),
            vec!["abandon 1: the savepoint timed out", "trigger 2"]
        );
    }

    #[test]
    fn nothing_is_triggered_while_held_or_once_the_sources_are_ending() {
        let t0 = Instant::now();
        let mut p = protocol(t0);
        assert_eq!(
            all(p.on_tick(t0 + 10 * S, true, false)),
            Vec::<String>::new()
        );
        assert_eq!(
            all(p.on_tick(t0 + 20 * S, false, true)),
            Vec::<String>::new()
        );
        assert_eq!(one(p.on_savepoint_request(false, true, t0 + 21 * S)), "-");
        assert_eq!(all(p.on_tick(t0 + 30 * S, false, false)), vec!["trigger 1"]);
    }
}
