//! Checkpoints of a job spread over several processes (Flink's
//! JobManager and TaskManagers).
//!
//! The job's *controller* runs the [`JobCoordinator`]: it triggers
//! checkpoint `n` by sending [`Command::Trigger`] to every *part* (one
//! process's share of the job). Each part runs a part coordinator in
//! [`crate::run_placed`]: it sets the trigger for its local sources, collects
//! the acknowledgements of its local node subtasks as a one-process job
//! does, writes their state objects straight to the shared checkpoint
//! storage, and answers with a [`PartAck`] holding only what it wrote (sizes
//! and the shared files referenced), never the state itself. When every part
//! has answered, the controller writes `_metadata` (the checkpoint is
//! complete) and sends [`Command::Completed`]: only then do the parts' sinks
//! commit (Kafka transactions). A part that cannot write declines, and the
//! controller abandons the checkpoint, naming the worker and the reason.
//!
//! How commands and acknowledgements travel (etcd, for `weir worker`) is not
//! the core's business: a part gets a [`PartLink`], the controller a
//! function that broadcasts commands and a channel of acknowledgements.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde::{Deserialize, Serialize};

use super::coordinator::{
    Abandoned, Action, Protocol, Shared, answer_savepoint, held, next_wait, savepoint_requested,
};
use super::{
    Ack, CheckpointConfig, CheckpointId, CheckpointStats, Written, prune, write_metadata,
    write_states,
};

/// What a controller tells every part of its job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Take checkpoint (or savepoint) `id`.
    Trigger {
        /// The checkpoint.
        id: CheckpointId,
        /// Whether it is a savepoint.
        savepoint: bool,
    },
    /// Checkpoint `id` is complete: its output may be committed.
    Completed {
        /// The checkpoint.
        id: CheckpointId,
    },
}

/// A part's answer to a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartAnswer {
    /// Its node subtasks' states are written.
    Written(Written),
    /// It could not take its part, and why (naming the node subtask).
    Declined(String),
    /// One of its sources has ended: no checkpoint can complete any more.
    SourcesEnded,
}

/// One part's acknowledgement of checkpoint `id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartAck {
    /// The checkpoint.
    pub id: CheckpointId,
    /// The part (its index among the job's parts).
    pub part: usize,
    /// Its answer.
    pub answer: PartAnswer,
}

/// How one part of a spread job hears its controller and answers it.
pub struct PartLink {
    /// This part's index among the job's parts.
    pub part: usize,
    /// The controller's commands, in order.
    pub commands: Receiver<Command>,
    /// Sends an acknowledgement to the controller (must not block long).
    pub acks: Box<dyn Fn(PartAck) + Send + Sync>,
}

impl PartLink {
    /// A link for part `part` answering through `acks`, and the sender its
    /// controller's commands are to be given to.
    pub fn new(part: usize, acks: Box<dyn Fn(PartAck) + Send + Sync>) -> (Self, CommandSender) {
        let (tx, commands) = crossbeam_channel::unbounded();
        (
            Self {
                part,
                commands,
                acks,
            },
            CommandSender(tx),
        )
    }
}

/// Hands a controller's commands to a part's coordinator.
#[derive(Clone, Debug)]
pub struct CommandSender(crossbeam_channel::Sender<Command>);

impl CommandSender {
    /// Passes `command` on; false once the part has ended.
    pub fn send(&self, command: Command) -> bool {
        self.0.send(command).is_ok()
    }
}

/// Hands the parts' acknowledgements to a [`JobCoordinator`].
#[derive(Clone, Debug)]
pub struct AckSender(crossbeam_channel::Sender<PartAck>);

impl AckSender {
    /// Passes `ack` on; false once the coordinator has ended.
    pub fn send(&self, ack: PartAck) -> bool {
        self.0.send(ack).is_ok()
    }
}

/// Where a [`JobCoordinator`] hears the parts' acknowledgements.
pub type AckReceiver = Receiver<PartAck>;

/// A channel of acknowledgements for [`JobCoordinator::run`], which runs
/// until every sender is dropped.
pub fn acks() -> (AckSender, AckReceiver) {
    let (tx, rx) = crossbeam_channel::unbounded();
    (AckSender(tx), rx)
}

impl std::fmt::Debug for PartLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartLink")
            .field("part", &self.part)
            .finish()
    }
}

/// A part's checkpoint coordinator: takes its share of the checkpoints its
/// controller triggers.
pub(crate) struct PartCoordinator {
    pub config: CheckpointConfig,
    pub nodes: Vec<(String, usize)>,
    /// Node subtasks running in this part (each acknowledges).
    pub local: usize,
    pub shared: Shared,
    pub acks: Receiver<Ack>,
    pub sources_ending: Arc<AtomicBool>,
    pub link: PartLink,
    pub first_id: CheckpointId,
}

impl PartCoordinator {
    /// Runs until every local subtask has dropped its ack sender.
    pub fn run(self) {
        let mut protocol: Protocol = Protocol::new(
            self.local,
            self.config.interval,
            self.config.timeout,
            self.first_id,
            Instant::now(),
        );
        let mut commands = self.link.commands.clone();
        loop {
            crossbeam_channel::select! {
                recv(self.acks) -> ack => {
                    let Ok(ack) = ack else { return };
                    let node = self.nodes.get(ack.node).map_or("?", |n| n.0.as_str());
                    let at = (ack.node, ack.subtask);
                    if let Some(action) = protocol.on_ack(ack.id, at, ack.kind, ack.state, node) {
                        self.act(action);
                    }
                }
                recv(commands) -> command => match command {
                    // The controller is gone: the part goes on until it is
                    // stopped, taking no more checkpoints.
                    Err(_) => commands = crossbeam_channel::never(),
                    Ok(Command::Trigger { id, savepoint }) => {
                        if self.sources_ending.load(Ordering::SeqCst) {
                            self.answer(id, PartAnswer::SourcesEnded);
                            continue;
                        }
                        protocol.begin(id, savepoint, Instant::now());
                        self.shared
                            .savepoint
                            .store(if savepoint { id } else { 0 }, Ordering::SeqCst);
                        self.shared.trigger.store(id, Ordering::SeqCst);
                    }
                    Ok(Command::Completed { id }) => {
                        self.shared
                            .completed
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(id);
                        let stats = &self.shared.stats;
                        stats.last_completed.store(id, Ordering::Relaxed);
                        stats.completed.fetch_add(1, Ordering::Relaxed);
                    }
                },
            }
        }
    }

    fn answer(&self, id: CheckpointId, answer: PartAnswer) {
        (self.link.acks)(PartAck {
            id,
            part: self.link.part,
            answer,
        });
    }

    fn act(&self, action: Action) {
        match action {
            // A part never triggers on its own.
            Action::Trigger { .. } => {}
            Action::Complete {
                id,
                savepoint,
                states,
                ..
            } => {
                let (storage, name) = if savepoint {
                    (self.config.savepoints.as_ref(), format!("sp-{id}"))
                } else {
                    (Some(&self.config.storage), format!("chk-{id}"))
                };
                let answer = match storage {
                    None => PartAnswer::Declined("no savepoint location is set".into()),
                    Some(storage) => match write_states(storage, &name, &self.nodes, &states) {
                        Ok(written) => PartAnswer::Written(written),
                        Err(e) => PartAnswer::Declined(format!("cannot write its state: {e}")),
                    },
                };
                self.answer(id, answer);
            }
            Action::Abandon { id, reason, .. } => {
                self.shared.stats.abandoned.fetch_add(1, Ordering::Relaxed);
                self.answer(id, PartAnswer::Declined(reason.to_string()));
            }
        }
    }
}

/// A spread job's checkpoint coordinator, run by its controller: triggers
/// checkpoints on every part, completes them when every part has written
/// its share, retains the last ones, answers savepoint requests.
pub struct JobCoordinator {
    /// Interval, storage, retention, timeout, savepoint requests.
    pub config: CheckpointConfig,
    /// The job's name.
    pub job: String,
    /// The job's nodes and their parallelism.
    pub nodes: Vec<(String, usize)>,
    /// The ids of the job's workers, by part index (named in errors).
    pub workers: Vec<String>,
    /// The number to continue from (the restored checkpoint's).
    pub first_id: CheckpointId,
    /// Its figures.
    pub stats: Arc<CheckpointStats>,
}

impl JobCoordinator {
    /// Runs until `acks` is closed (the controller drops its sender when the
    /// job's parts end), sending each command to every part with `send`.
    pub fn run(self, acks: &Receiver<PartAck>, send: &dyn Fn(Command)) {
        let mut protocol: Protocol<Written> = Protocol::new(
            self.workers.len(),
            self.config.interval,
            self.config.timeout,
            self.first_id,
            Instant::now(),
        );
        let mut ending = false;
        loop {
            match acks.recv_timeout(next_wait(&protocol, &self.config)) {
                Ok(ack) => {
                    // Only the job's parts count towards completion.
                    let Some(worker) = self.workers.get(ack.part).cloned() else {
                        tracing::warn!(job = %self.job, part = ack.part, "ignored an acknowledgement from a part the job does not have");
                        continue;
                    };
                    let action = match ack.answer {
                        PartAnswer::Written(w) => protocol.on_ack(
                            ack.id,
                            (ack.part, 0),
                            super::AckKind::State,
                            Ok(w),
                            &worker,
                        ),
                        PartAnswer::Declined(reason) => {
                            protocol.on_decline(ack.id, Abandoned::OnWorker { worker, reason })
                        }
                        PartAnswer::SourcesEnded => {
                            ending = true;
                            protocol.on_decline(ack.id, Abandoned::SourcesEnded)
                        }
                    };
                    if let Some(action) = action {
                        self.act(action, send);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            if let Some(stop) = savepoint_requested(&self.config)
                && let Some(action) = protocol.on_savepoint_request(stop, ending, Instant::now())
            {
                self.act(action, send);
            }
            for action in protocol.on_tick(Instant::now(), held(&self.config), ending) {
                self.act(action, send);
            }
        }
    }

    fn act(&self, action: Action<Written>, send: &dyn Fn(Command)) {
        match action {
            Action::Trigger { id, savepoint } => send(Command::Trigger { id, savepoint }),
            Action::Complete {
                id,
                savepoint,
                started,
                states,
            } => {
                let mut all = Written::default();
                let mut parts: Vec<_> = states.into_iter().collect();
                parts.sort_by_key(|(at, _)| *at);
                for (_, w) in parts {
                    all.add(w);
                }
                if savepoint {
                    self.complete_savepoint(id, all);
                } else {
                    self.complete(id, started, all, send);
                }
            }
            Action::Abandon {
                id,
                savepoint,
                reason,
            } => {
                if !matches!(*reason, Abandoned::SourcesEnded) {
                    tracing::warn!(job = %self.job, checkpoint = id, "checkpoint abandoned: {reason}");
                    self.stats.abandoned.fetch_add(1, Ordering::Relaxed);
                }
                if savepoint {
                    answer_savepoint(&self.config, Err(&reason));
                }
            }
        }
    }

    fn complete(
        &self,
        id: CheckpointId,
        started: Instant,
        written: Written,
        send: &dyn Fn(Command),
    ) {
        let storage = &self.config.storage;
        let name = format!("chk-{id}");
        let shared = written.shared.clone();
        match write_metadata(storage, &name, id, &self.job, &self.nodes, shared, false) {
            Ok(()) => {
                self.stats.record_completed(id, started, &written);
                tracing::info!(
                    job = %self.job,
                    checkpoint = id,
                    bytes = written.full,
                    "checkpoint completed across {} worker(s)",
                    self.workers.len()
                );
                send(Command::Completed { id });
                if let Err(e) = prune(storage, self.config.retain.max(1), id) {
                    tracing::warn!(job = %self.job, checkpoint = id, "cannot remove old checkpoints: {e}");
                }
            }
            Err(e) => {
                tracing::warn!(job = %self.job, checkpoint = id, "cannot complete the checkpoint: {e}");
                self.stats.abandoned.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn complete_savepoint(&self, id: CheckpointId, written: Written) {
        let Some(storage) = self.config.savepoints.as_ref() else {
            return;
        };
        let name = format!("sp-{id}");
        let answer = write_metadata(
            storage,
            &name,
            id,
            &self.job,
            &self.nodes,
            written.shared,
            true,
        )
        .map(|()| {
            self.stats.last_savepoint.store(id, Ordering::Relaxed);
            storage.display(&name)
        })
        .map_err(|e| format!("cannot write savepoint: {e}"));
        answer_savepoint(
            &self.config,
            answer.as_ref().map(String::as_str).map_err(|e| e as _),
        );
    }
}

/// Links between a controller and `parts` parts in one process (tests,
/// and jobs whose parts share a process): the parts' links, the
/// acknowledgements for [`JobCoordinator::run`], and the function that
/// sends a command to every part.
pub fn in_process(parts: usize) -> (Vec<PartLink>, Receiver<PartAck>, impl Fn(Command) + Send) {
    let (ack_tx, acks) = acks();
    let mut links = Vec::with_capacity(parts);
    let mut senders = Vec::with_capacity(parts);
    for part in 0..parts {
        let ack_tx = ack_tx.clone();
        let (link, commands) = PartLink::new(
            part,
            Box::new(move |ack| {
                ack_tx.send(ack);
            }),
        );
        links.push(link);
        senders.push(commands);
    }
    let send = move |command: Command| {
        for tx in &senders {
            tx.send(command.clone());
        }
    };
    (links, acks, send)
}
