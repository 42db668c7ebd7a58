//! The checkpoint links of a spread job through etcd: a part hears its
//! controller's commands and answers with what it wrote; the controller
//! hears the answers and sends the commands (`weir_cluster::checkpoints`
//! names the keys, the engine's `checkpoint::remote` does the protocol).

use std::sync::Arc;
use std::time::Duration;

use weir_cluster::checkpoints::{Follow, ack_key, acks_prefix, command_key};
use weir_cluster::{ClusterError, Membership, Part, PartCheckpoints};
use weir_engine::checkpoint::{
    AckReceiver, CheckpointConfig, Command, Mode, PartAck, PartLink, RestoredJob, remote,
};

/// A part's link to its controller: commands followed from etcd (in place
/// when this returns), acknowledgements put there. The link stops
/// following when the returned [`Follow`] is dropped.
///
/// # Errors
/// etcd failing when the watch is set up.
pub async fn part_link(
    members: &Membership,
    part: &Part,
) -> Result<(PartLink, Follow), ClusterError> {
    let writer = members.writer();
    let (job, attempt) = (part.job.clone(), part.attempt);
    let (link, commands) = PartLink::new(
        part.here,
        Box::new(move |ack: PartAck| {
            writer.put(ack_key(&job, attempt, ack.id, ack.part), &ack);
        }),
    );
    let following = members
        .follow(
            command_key(&part.job, part.attempt),
            false,
            move |_, command: Command| commands.send(command),
        )
        .await?;
    Ok((link, following))
}

/// A part's checkpoint settings opened: the storage every worker shares,
/// and the checkpoint to start from.
///
/// # Errors
/// A location that cannot be opened or a checkpoint that cannot be read,
/// naming it.
pub fn checkpointing(
    job: &str,
    c: &PartCheckpoints,
) -> anyhow::Result<(CheckpointConfig, Option<Arc<RestoredJob>>)> {
    let mut config = CheckpointConfig::new(
        weir_job::launch::open_storage(&c.storage)?,
        Duration::from_millis(c.interval_ms.max(1)),
    );
    if let Some(s) = &c.savepoints {
        config.savepoints = Some(weir_job::launch::open_storage(s)?);
    }
    if c.unaligned {
        config.mode = Mode::Unaligned;
    }
    let restore = match &c.restore {
        None => None,
        Some(location) => Some(Arc::new(weir_job::launch::read_checkpoint(job, location)?)),
    };
    Ok((config, restore))
}

/// The controller's side of a run's link: the parts' acknowledgements
/// (for `JobCoordinator::run`, which ends when the returned [`Follow`] is
/// dropped) and the function that sends every part a command. Once a
/// checkpoint is complete, its acknowledgements are removed from etcd.
///
/// # Errors
/// etcd failing when the watch is set up.
pub async fn job_link(
    members: &Membership,
    job: &str,
    attempt: u64,
) -> Result<(AckReceiver, impl Fn(Command) + Send + 'static, Follow), ClusterError> {
    let (tx, acks) = remote::acks();
    let following = members
        .follow(acks_prefix(job, attempt), true, move |_, ack: PartAck| {
            tx.send(ack)
        })
        .await?;
    let writer = members.writer();
    let (job, key) = (job.to_string(), command_key(job, attempt));
    let send = move |command: Command| {
        writer.put(key.clone(), &command);
        if let Command::Completed { id } = command {
            writer.delete_prefix(format!("{}{id}/", acks_prefix(&job, attempt)));
        }
    };
    Ok((acks, send, following))
}
