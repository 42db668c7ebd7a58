//! Which worker runs which subtask of a spread job, and the network
//! exchanges between them: the engine's [`Placement`] over [`DataServer`]s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_engine::channel::ExchangeSender;
use weir_engine::plan::TaskPlan;
use weir_engine::{BoxError, Placement};

use crate::{ChannelKey, DataServer, Inbound, NetError, SocketSettings, connect};

/// Slot sharing, as Flink does it: subtask `s` of every task goes to slot
/// `s`, so one slot holds one slice of the whole pipeline; slots go to the
/// workers in turn (spread). `assignment[task][subtask]` is a worker index.
pub fn slot_sharing(plan: &TaskPlan, workers: usize) -> Vec<Vec<usize>> {
    plan.tasks
        .iter()
        .map(|t| (0..t.parallelism).map(|s| s % workers.max(1)).collect())
        .collect()
}

/// One worker's view of a job spread over several: what runs here, and the
/// data ports of the others.
pub struct SpreadPlacement {
    /// The job and its attempt, which every channel names.
    pub job: String,
    /// The attempt (a restart makes a new one; older channels are refused).
    pub attempt: u64,
    /// This worker's index in `workers`.
    pub here: usize,
    /// Every worker's data port, by index.
    pub workers: Vec<String>,
    /// `assignment[task][subtask]`: the worker index that runs it.
    pub assignment: Vec<Vec<usize>>,
    /// This worker's data port.
    pub server: Arc<DataServer>,
    /// Buffers granted to each remote producer connection.
    pub credits: u32,
    /// Socket settings; `connect_timeout` also bounds the wait for another
    /// worker to host a channel.
    pub settings: SocketSettings,
}

impl SpreadPlacement {
    fn key(&self, task: usize, subtask: usize) -> ChannelKey {
        ChannelKey {
            job: self.job.clone(),
            attempt: self.attempt,
            task: task as u32,
            subtask: subtask as u32,
        }
    }

    fn worker(&self, task: usize, subtask: usize) -> Option<usize> {
        self.assignment.get(task)?.get(subtask).copied()
    }
}

impl Placement for SpreadPlacement {
    fn is_local(&self, task: usize, subtask: usize) -> bool {
        self.worker(task, subtask) == Some(self.here)
    }

    fn connect(&self, task: usize, subtask: usize) -> Result<Arc<dyn ExchangeSender>, BoxError> {
        let w = self
            .worker(task, subtask)
            .ok_or_else(|| format!("task {task} subtask {subtask} is placed nowhere"))?;
        let addr = self
            .workers
            .get(w)
            .ok_or_else(|| format!("no worker {w} for task {task} subtask {subtask}"))?;
        let key = self.key(task, subtask);
        // The other worker may still be starting its part: a channel it does
        // not host yet is asked for again until the connect timeout.
        let deadline = Instant::now() + self.settings.connect_timeout;
        loop {
            match connect(addr, key.clone(), &self.settings) {
                Ok(sender) => return Ok(sender),
                Err(NetError::Refused { retry: true, .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn host(
        &self,
        task: usize,
        subtask: usize,
        producers: usize,
        exchange: Arc<dyn ExchangeSender>,
        broken: Box<dyn Fn(String) + Send + Sync>,
    ) -> Result<Box<dyn Send>, BoxError> {
        let registration = self.server.register(
            self.key(task, subtask),
            exchange,
            Inbound {
                credits: self.credits,
                producers: u32::try_from(producers)?,
            },
            Arc::new(move |e: &NetError| broken(e.to_string())),
        );
        Ok(Box::new(registration))
    }
}
