//! Where a spread job's controller and parts exchange checkpoint commands
//! and acknowledgements in etcd, and how they follow them: watches that
//! resume from the last revision seen when a stream breaks, and one writer
//! per side that puts values in the order they were given.
//!
//! Keys, under [`PREFIX`]`checkpoints/<job>#<attempt>/`:
//! - `command`: each put is one command of the controller (trigger
//!   checkpoint `n`, checkpoint `n` complete), watched in order by every
//!   part;
//! - `acks/<n>/<part>`: a part's acknowledgement of checkpoint `n` (what it
//!   wrote to the shared storage, or why it declined), watched by the
//!   controller, and removed once `n` is complete.
//!
//! The records are the engine's own (`weir_engine::checkpoint::remote`);
//! this module moves JSON. Every key names the attempt, so a part of an
//! earlier attempt (a zombie on a worker cut off from etcd) can neither
//! hear the new attempt's commands nor answer for it.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use etcd_client::{DeleteOptions, EventType, GetOptions, WatchOptions};

use crate::{ClusterError, Membership, PREFIX};

fn run_prefix(job: &str, attempt: u64) -> String {
    format!("{PREFIX}checkpoints/{job}#{attempt}/")
}

/// The key of a run's commands.
pub fn command_key(job: &str, attempt: u64) -> String {
    format!("{}command", run_prefix(job, attempt))
}

/// The prefix of a run's acknowledgements.
pub fn acks_prefix(job: &str, attempt: u64) -> String {
    format!("{}acks/", run_prefix(job, attempt))
}

/// The key of part `part`'s acknowledgement of checkpoint `id`.
pub fn ack_key(job: &str, attempt: u64, id: u64, part: usize) -> String {
    format!("{}{id}/{part}", acks_prefix(job, attempt))
}

/// What a user asks of a running job's controller.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, Serialize)]
pub enum Request {
    /// Rescale it to this default parallelism, from a savepoint.
    Rescale {
        /// The new parallelism.
        parallelism: usize,
        /// Names the request (its answer carries it back).
        id: u64,
    },
}

/// A controller's answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, Serialize)]
pub struct Answer {
    /// The request's id.
    pub id: u64,
    /// What was done, or why it was not.
    pub outcome: Result<String, String>,
}

/// The key of requests to job `job`'s controller.
pub fn request_key(job: &str) -> String {
    format!("{PREFIX}requests/{job}")
}

/// The key of its answers.
pub fn answer_key(job: &str) -> String {
    format!("{PREFIX}answers/{job}")
}

/// A background task that ends when this is dropped.
#[derive(Debug)]
pub struct Follow(tokio::task::JoinHandle<()>);

impl Drop for Follow {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Puts values in etcd in the order they are given, from any thread.
#[derive(Clone, Debug)]
pub struct Writer(mpsc::UnboundedSender<WriteOp>);

#[derive(Debug)]
enum WriteOp {
    Put(String, Vec<u8>),
    DeletePrefix(String),
}

impl Writer {
    /// Puts `value` as JSON at `key` after what was given before.
    pub fn put(&self, key: String, value: &impl Serialize) {
        if let Ok(bytes) = serde_json::to_vec(value) {
            let _ = self.0.send(WriteOp::Put(key, bytes));
        }
    }

    /// Deletes every key under `prefix` after what was given before.
    pub fn delete_prefix(&self, prefix: String) {
        let _ = self.0.send(WriteOp::DeletePrefix(prefix));
    }
}

impl Membership {
    /// Removes what a run's checkpoint links left in etcd (its last
    /// command, the acknowledgements of checkpoints that did not complete).
    ///
    /// # Errors
    /// etcd failing.
    pub async fn clear_checkpoints(&self, job: &str, attempt: u64) -> Result<(), ClusterError> {
        let mut client = self.client();
        self.call(client.delete(
            run_prefix(job, attempt),
            Some(DeleteOptions::new().with_prefix()),
        ))
        .await?;
        Ok(())
    }

    /// A [`Writer`] over this connection; its task ends when every clone
    /// is dropped. A write that fails is retried for as long as the
    /// connection's timeout allows, then dropped with a warning: a lost
    /// command or acknowledgement costs one checkpoint, which times out.
    pub fn writer(&self) -> Writer {
        let (tx, mut rx) = mpsc::unbounded_channel::<WriteOp>();
        let members = self.clone();
        tokio::spawn(async move {
            while let Some(op) = rx.recv().await {
                let mut client = members.client();
                let done = match &op {
                    WriteOp::Put(key, bytes) => members
                        .call(client.put(key.as_str(), bytes.clone(), None))
                        .await
                        .map(drop),
                    WriteOp::DeletePrefix(prefix) => members
                        .call(
                            client
                                .delete(prefix.as_str(), Some(DeleteOptions::new().with_prefix())),
                        )
                        .await
                        .map(drop),
                };
                if let Err(e) = done {
                    tracing::warn!("cannot write to etcd: {e}");
                }
            }
        });
        Writer(tx)
    }

    /// Follows the values put at `key` (every key under it, with
    /// `prefix`) from now on, in order, decoded as `T`: each goes to
    /// `deliver` with its key, until `deliver` returns false or the
    /// returned [`Follow`] is dropped. The watch is in place when this
    /// returns; if its stream breaks (etcd restarting) it resumes after
    /// the last revision seen. A value that is not a `T` is skipped with
    /// a warning.
    ///
    /// # Errors
    /// etcd failing when the watch is set up.
    pub async fn follow<T, F>(
        &self,
        key: String,
        prefix: bool,
        mut deliver: F,
    ) -> Result<Follow, ClusterError>
    where
        T: DeserializeOwned,
        F: FnMut(&str, T) -> bool + Send + 'static,
    {
        // The revision to follow from: what is there now is history.
        let mut client = self.client();
        let now = self
            .call(client.get(key.as_str(), Some(GetOptions::new().with_count_only())))
            .await?
            .header()
            .map_or(0, |h| h.revision());
        let options = move |from: i64| {
            let o = WatchOptions::new().with_start_revision(from + 1);
            if prefix { o.with_prefix() } else { o }
        };
        let mut watching = self
            .call(client.watch(key.as_str(), Some(options(now))))
            .await?;
        let members = self.clone();
        let task = tokio::spawn(async move {
            let mut seen = now;
            loop {
                if let Ok(Some(answer)) = watching.message().await {
                    for event in answer.events() {
                        let Some(kv) = event.kv() else { continue };
                        seen = seen.max(kv.mod_revision());
                        if event.event_type() != EventType::Put {
                            continue;
                        }
                        let name = kv.key_str().unwrap_or_default();
                        match serde_json::from_slice::<T>(kv.value()) {
                            Ok(value) => {
                                if !deliver(name, value) {
                                    return;
                                }
                            }
                            Err(e) => {
                                tracing::warn!("etcd key `{name}` is not a weir record: {e}");
                            }
                        }
                    }
                    if answer.canceled() {
                        tracing::warn!("etcd cancelled the watch of `{key}`; watching again");
                    } else {
                        continue;
                    }
                }
                // Broken (the stream ended or failed): watch again after the last revision seen,
                // retrying while etcd is away.
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    let mut client = members.client();
                    if let Ok(again) = members
                        .call(client.watch(key.as_str(), Some(options(seen))))
                        .await
                    {
                        watching = again;
                        break;
                    }
                }
            }
        });
        Ok(Follow(task))
    }
}
