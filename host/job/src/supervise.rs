//! Running a job until it ends: start it, restart it from its latest
//! checkpoint after a failure (a bounded number of times, with a fixed or
//! doubling delay), stop it on request.
//!
//! `weir run` and the control plane's job hosting share this loop; each
//! watches the job through [`Event`]s (the CLI follows the progress line,
//! the server keeps the handle for status and cancellation).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::JobError;
use weir_engine::checkpoint::{self, CheckpointConfig};
use weir_engine::{Dataflow, JobHandle, JobOutcome};

/// How a job is supervised.
#[derive(Clone)]
pub struct Supervision {
    /// Checkpointing; with it a failed job restarts from its latest
    /// checkpoint.
    pub checkpoints: Option<CheckpointConfig>,
    /// Where to start the first time: a checkpoint or savepoint location.
    /// `None`: the latest checkpoint in `checkpoints`, else the beginning.
    pub start_from: Option<String>,
    /// Restarts after a failure before the job is failed for good.
    pub max_restarts: u32,
    /// The delay before the first restart.
    pub restart_delay: Duration,
    /// Double the delay at every restart (at most one minute).
    pub exponential: bool,
    /// Whether a stop drains the job (its input ends, so event time ends
    /// and open windows fire: `weir run`'s Ctrl-C) or stops it where it is
    /// (a server job, which resumes from a savepoint or checkpoint).
    pub drain_on_stop: bool,
}

/// What happens to a supervised job, as it happens.
pub enum Event<'a> {
    /// A run started (`attempt` 0 is the first), restored from `restored`.
    Started {
        /// The running job.
        handle: &'a JobHandle,
        /// 0 for the first run.
        attempt: u32,
        /// The checkpoint or savepoint it restored from.
        restored: Option<&'a str>,
    },
    /// A run ended.
    Ended {
        /// How.
        outcome: &'a JobOutcome,
    },
    /// A run failed and the job will restart.
    Restarting {
        /// Why the run failed.
        error: &'a str,
        /// After this delay.
        delay: Duration,
        /// From this checkpoint, or the beginning.
        from: Option<&'a str>,
        /// 1 for the first restart.
        attempt: u32,
        /// The most restarts allowed.
        max: u32,
    },
}

/// How a supervised job ended.
#[derive(Debug)]
pub enum Ended {
    /// Every source ended and every sink finished.
    Finished,
    /// [`supervise`]'s `stop` was set; the job drained and stopped.
    Stopped,
    /// It failed more often than allowed (or was stopped while failing).
    Failed(String),
}

/// Runs the job built by `build` (called once per attempt with the attempt
/// number) until it finishes, fails for good, or `stop` is set.
///
/// # Errors
/// When a run cannot start: `build` failed, the checkpoint to restore cannot
/// be read, or the engine refused the dataflow.
pub fn supervise(
    sup: &Supervision,
    mut build: impl FnMut(u32) -> Result<Dataflow, weir_engine::BoxError>,
    stop: &Arc<AtomicBool>,
    mut on: impl FnMut(Event<'_>),
) -> Result<Ended, JobError> {
    let latest = || {
        sup.checkpoints
            .as_ref()
            .and_then(|c| checkpoint::latest(&c.storage))
    };
    let mut start_from = sup.start_from.clone().or_else(latest);
    let mut attempt = 0u32;
    loop {
        let mut flow = build(attempt).map_err(JobError::Build)?;
        let name = flow.name.clone();
        flow.checkpoints = sup.checkpoints.clone();
        if let Some(path) = &start_from {
            let restored =
                weir_storage::read_checkpoint(path).map_err(|source| JobError::Restore {
                    job: name.clone(),
                    location: path.clone(),
                    source: Box::new(source),
                })?;
            flow.restore = Some(Arc::new(restored));
        }
        let handle =
            weir_engine::run(flow).map_err(|source| JobError::Start { job: name, source })?;
        // A stop request reaches the job even while `on` blocks (the CLI
        // follows the progress line in it until the job ends).
        let canceller = handle.canceller();
        let ended = AtomicBool::new(false);
        let outcome = std::thread::scope(|s| {
            s.spawn(|| {
                while !ended.load(Ordering::SeqCst) {
                    if stop.load(Ordering::SeqCst) {
                        if sup.drain_on_stop {
                            canceller.cancel();
                        } else {
                            canceller.stop();
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
            on(Event::Started {
                handle: &handle,
                attempt,
                restored: start_from.as_deref(),
            });
            let outcome = handle.join();
            ended.store(true, Ordering::SeqCst);
            outcome
        });
        on(Event::Ended { outcome: &outcome });
        let stopped = stop.load(Ordering::SeqCst);
        match outcome.result {
            Ok(()) if stopped => return Ok(Ended::Stopped),
            Ok(()) => return Ok(Ended::Finished),
            Err(e) if attempt >= sup.max_restarts || stopped => {
                return Ok(Ended::Failed(e.to_string()));
            }
            Err(e) => {
                attempt += 1;
                let delay = if sup.exponential {
                    sup.restart_delay
                        .saturating_mul(1 << (attempt - 1).min(16))
                        .min(Duration::from_secs(60))
                } else {
                    sup.restart_delay
                };
                // No checkpoint yet: start over from the explicit start
                // point, or the beginning.
                start_from = latest().or_else(|| sup.start_from.clone());
                on(Event::Restarting {
                    error: &e.to_string(),
                    delay,
                    from: start_from.as_deref(),
                    attempt,
                    max: sup.max_restarts,
                });
                let until = Instant::now() + delay;
                while Instant::now() < until {
                    if stop.load(Ordering::SeqCst) {
                        return Ok(Ended::Failed(e.to_string()));
                    }
                    std::thread::sleep(Duration::from_millis(20).min(delay));
                }
            }
        }
    }
}
