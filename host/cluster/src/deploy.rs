//! Jobs onto workers: placing a job's slots, handing each worker its part
//! through etcd, and hearing how the parts end.
//!
//! Keys (under [`PREFIX`]):
//! - `parts/<worker>/<job>#<attempt>`: a [`Part`], the worker's share of a
//!   job; the worker polls its prefix and starts what is new.
//! - `placements`: its version counts placements; a job's parts are put in
//!   one transaction that holds only if no placement came between reading
//!   the free slots and committing.
//! - `status/<job>#<attempt>/<worker>`: a [`PartState`] the worker writes
//!   as its part runs and ends.
//!
//! Slots follow Flink's slot sharing: subtask `s` of every task runs in slot
//! `s`, so a job needs as many slots as its largest parallelism, and a slot
//! holds one slice of the whole pipeline.

use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use crate::{ClusterError, Membership, PREFIX, WorkerInfo};

/// How slots are spread over workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SlotPolicy {
    /// Round-robin over the workers with free slots: a job's slices on as
    /// many workers as possible.
    #[default]
    Spread,
    /// Fill one worker before the next: fewer network exchanges.
    Pack,
}

/// A job that does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "job `{job}` needs {needed} slot(s) (its largest parallelism) and the cluster has {free} free \
     of {total} on {workers} worker(s)"
)]
pub struct NotEnoughSlots {
    /// The job.
    pub job: String,
    /// Slots it needs.
    pub needed: u32,
    /// Free slots.
    pub free: u32,
    /// All slots of compatible workers.
    pub total: u32,
    /// Compatible workers.
    pub workers: usize,
}

/// Places `needed` slots of job `job` on `workers` (only compatible ones),
/// given the slots each already uses: the worker index of each slot.
///
/// # Errors
/// [`NotEnoughSlots`] naming the slots needed and free.
pub fn place_slots(
    job: &str,
    workers: &[WorkerInfo],
    used: &BTreeMap<String, u32>,
    needed: u32,
    policy: SlotPolicy,
) -> Result<Vec<usize>, NotEnoughSlots> {
    let mut free: Vec<(usize, u32)> = workers
        .iter()
        .enumerate()
        .filter(|(_, w)| w.compatible())
        .map(|(i, w)| (i, w.slots.saturating_sub(*used.get(&w.id).unwrap_or(&0))))
        .collect();
    let total_free: u32 = free.iter().map(|(_, f)| f).sum();
    if total_free < needed || needed == 0 {
        return Err(NotEnoughSlots {
            job: job.to_string(),
            needed,
            free: total_free,
            total: workers
                .iter()
                .filter(|w| w.compatible())
                .map(|w| w.slots)
                .sum(),
            workers: free.len(),
        });
    }
    let mut slots = Vec::with_capacity(needed as usize);
    match policy {
        SlotPolicy::Pack => {
            for (i, f) in &mut free {
                while *f > 0 && slots.len() < needed as usize {
                    slots.push(*i);
                    *f -= 1;
                }
            }
        }
        SlotPolicy::Spread => {
            while slots.len() < needed as usize {
                for (i, f) in free.iter_mut().filter(|(_, f)| *f > 0) {
                    if slots.len() == needed as usize {
                        break;
                    }
                    slots.push(*i);
                    *f -= 1;
                }
            }
        }
    }
    Ok(slots)
}

/// One worker's share of a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// The job's name.
    pub job: String,
    /// Its attempt.
    pub attempt: u64,
    /// The job file's path on the submitting machine (relative paths in it
    /// resolve against its directory; named in errors).
    pub job_file: String,
    /// The job file's text.
    pub job_toml: String,
    /// The data ports of the job's workers, by index.
    pub workers: Vec<String>,
    /// The ids of the job's workers, by index.
    pub worker_ids: Vec<String>,
    /// This part's worker index.
    pub here: usize,
    /// `assignment[task][subtask]`: the worker index that runs it.
    pub assignment: Vec<Vec<usize>>,
    /// Slots this part takes on its worker.
    pub slots: u32,
    /// The incarnation of the worker it was placed on
    /// ([`WorkerInfo::lease`]): a later incarnation with the same id does
    /// not run it.
    #[serde(default)]
    pub incarnation: i64,
    /// Every parallelism above this is lowered to it (the job restarted on
    /// fewer slots than it asks for).
    #[serde(default)]
    pub parallelism: Option<usize>,
    /// The job's default parallelism (its `[job] parallelism`) as rescaled
    /// by the user, replacing the job file's.
    #[serde(default)]
    pub job_parallelism: Option<usize>,
    /// How the job checkpoints, if it does.
    #[serde(default)]
    pub checkpoints: Option<PartCheckpoints>,
}

/// How a spread job checkpoints, as each of its parts needs to know.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartCheckpoints {
    /// The checkpoint storage every worker writes to (`s3://bucket/prefix`,
    /// or a directory every worker sees).
    pub storage: String,
    /// Where savepoints go, if anywhere.
    pub savepoints: Option<String>,
    /// Time between checkpoints, in ms.
    pub interval_ms: u64,
    /// Unaligned barriers.
    pub unaligned: bool,
    /// The checkpoint or savepoint this attempt starts from.
    pub restore: Option<String>,
}

/// How a part is doing, as its worker reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartState {
    /// Started.
    Running,
    /// Its subtasks ended normally.
    Finished,
    /// It failed, and why.
    Failed(String),
}

fn run_id(job: &str, attempt: u64) -> String {
    format!("{job}#{attempt}")
}

fn part_key(worker: &str, job: &str, attempt: u64) -> String {
    format!("{PREFIX}parts/{worker}/{}", run_id(job, attempt))
}

/// The key whose version counts placements: a placement commits only if no
/// other committed since it read the slots in use.
fn placements_key() -> String {
    format!("{PREFIX}placements")
}

impl Membership {
    /// The slots in use on each worker, and the placement count they were
    /// read at (for [`Membership::assign_all`]).
    ///
    /// # Errors
    /// As [`Membership::parts`].
    pub async fn slots_in_use(&self) -> Result<(BTreeMap<String, u32>, i64), ClusterError> {
        let mut client = self.client();
        let answer = self.call(client.get(placements_key(), None)).await?;
        let seen = answer.kvs().first().map_or(0, |kv| kv.version());
        Ok((self.used_slots().await?, seen))
    }

    /// Hands out every part of a job at once, if no other placement
    /// committed since the slots were read at `seen`
    /// ([`Membership::slots_in_use`]): two jobs placed at the same time
    /// cannot both take the same free slots. `false`: another placement
    /// came first; read the slots again and retry.
    ///
    /// # Errors
    /// etcd failing.
    pub async fn assign_all(
        &self,
        parts: &[(String, Part)],
        seen: i64,
    ) -> Result<bool, ClusterError> {
        let mut puts = Vec::with_capacity(parts.len() + 1);
        for (worker, part) in parts {
            let key = part_key(worker, &part.job, part.attempt);
            let value = serde_json::to_vec(part).map_err(|e| ClusterError::BadRecord {
                key: key.clone(),
                reason: e.to_string(),
            })?;
            puts.push(TxnOp::put(key, value, None));
        }
        puts.push(TxnOp::put(placements_key(), "placed", None));
        let txn = Txn::new()
            .when([Compare::version(placements_key(), CompareOp::Equal, seen)])
            .and_then(puts);
        let mut client = self.client();
        Ok(self.call(client.txn(txn)).await?.succeeded())
    }

    /// Takes a part back (its job ended or is cancelled).
    ///
    /// # Errors
    /// etcd failing.
    pub async fn unassign(
        &self,
        worker: &str,
        job: &str,
        attempt: u64,
    ) -> Result<(), ClusterError> {
        let mut client = self.client();
        self.call(client.delete(part_key(worker, job, attempt), None))
            .await?;
        Ok(())
    }

    /// Every part assigned now, by worker id.
    ///
    /// # Errors
    /// etcd failing, or a record that is not a part.
    pub async fn parts(&self) -> Result<Vec<(String, Part)>, ClusterError> {
        let parts = self.list_json::<Part>(&format!("{PREFIX}parts/")).await?;
        Ok(parts
            .into_iter()
            .map(|(rest, part)| {
                let worker = rest.split('/').next().unwrap_or_default().to_string();
                (worker, part)
            })
            .collect())
    }

    /// Slots in use on each worker (the parts assigned to it).
    ///
    /// # Errors
    /// As [`Membership::parts`].
    pub async fn used_slots(&self) -> Result<BTreeMap<String, u32>, ClusterError> {
        let mut used = BTreeMap::new();
        for (worker, part) in self.parts().await? {
            *used.entry(worker).or_insert(0) += part.slots;
        }
        Ok(used)
    }

    /// Reports how `worker`'s part of a job is doing.
    ///
    /// # Errors
    /// etcd failing.
    pub async fn report(
        &self,
        worker: &str,
        job: &str,
        attempt: u64,
        state: &PartState,
    ) -> Result<(), ClusterError> {
        let key = format!("{PREFIX}status/{}/{worker}", run_id(job, attempt));
        self.put_json(key, state).await
    }

    /// Writes `value` as JSON at `key`.
    ///
    /// # Errors
    /// etcd failing.
    pub async fn put_json(&self, key: String, value: &impl Serialize) -> Result<(), ClusterError> {
        let bytes = serde_json::to_vec(value).map_err(|e| ClusterError::BadRecord {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        let mut client = self.client();
        self.call(client.put(key, bytes, None)).await?;
        Ok(())
    }

    /// What the workers of a job's attempt reported, by worker id.
    ///
    /// # Errors
    /// etcd failing, or a record that is not a state.
    pub async fn states(
        &self,
        job: &str,
        attempt: u64,
    ) -> Result<BTreeMap<String, PartState>, ClusterError> {
        let prefix = format!("{PREFIX}status/{}/", run_id(job, attempt));
        Ok(self
            .list_json::<PartState>(&prefix)
            .await?
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(id: &str, slots: u32) -> WorkerInfo {
        WorkerInfo::new(id, slots, "127.0.0.1:1")
    }

    #[test]
    fn slots_are_spread_or_packed_over_free_slots() {
        let workers = [worker("a", 2), worker("b", 2), worker("c", 2)];
        let none = BTreeMap::new();
        let spread = place_slots("j", &workers, &none, 4, SlotPolicy::Spread).unwrap();
        assert_eq!(spread, vec![0, 1, 2, 0]);
        let pack = place_slots("j", &workers, &none, 3, SlotPolicy::Pack).unwrap();
        assert_eq!(pack, vec![0, 0, 1]);
        // Used slots are not offered again.
        let used = BTreeMap::from([("a".to_string(), 2), ("b".to_string(), 1)]);
        let spread = place_slots("j", &workers, &used, 3, SlotPolicy::Spread).unwrap();
        assert_eq!(spread, vec![1, 2, 2]);
    }

    #[test]
    fn a_job_that_does_not_fit_names_needed_and_free_slots() {
        let mut old = worker("old", 8);
        old.protocol = 0;
        let workers = [worker("a", 2), old];
        let used = BTreeMap::from([("a".to_string(), 1)]);
        let e = place_slots("acme/q5", &workers, &used, 3, SlotPolicy::Spread).unwrap_err();
        assert_eq!(
            e.to_string(),
            "job `acme/q5` needs 3 slot(s) (its largest parallelism) and the cluster has 1 free \
             of 2 on 1 worker(s)"
        );
    }
}
