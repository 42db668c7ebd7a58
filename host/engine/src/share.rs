//! CPU shares: a weighted fair scheduler of subtask threads.
//!
//! Every subtask runs on its own thread, so when runnable subtasks outnumber
//! cores the operating system divides the cores among *threads*: a tenant
//! with more (or hotter) subtasks takes more CPU. A [`CpuScheduler`] puts a
//! gate in front of the cores instead: a subtask thread of a job started
//! with a [`Share`] must hold one of `slots` turns to process, and a free
//! turn goes to the waiting group (tenant) that has used the least turn time
//! for its weight — start-time fair queueing over groups, as a hierarchical
//! CFS or Flink's slot sharing would divide a machine. A server gives two
//! turns per core: the operating system then interleaves the admitted
//! threads finely, while the gate bounds how many of each tenant's are
//! admitted (one turn per core makes pipelines stall at every hand-over).
//!
//! * A thread gives its turn back whenever it would block (a full output
//!   queue, an empty input, a paced source's sleep, a broker poll): see
//!   [`blocking`]. The fast paths (a queue that is not full or not empty)
//!   take no lock.
//! * A thread that keeps its turn longer than the quantum gives it up at its
//!   next [`checkpoint`] when another thread is waiting.
//! * A group that was idle does not bank CPU: its virtual time is moved up
//!   to the scheduler's clock when it becomes runnable again.
//!
//! Threads without a share (`weir run`, a job of a single-tenant process)
//! are not gated and pay one thread-local read per call.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a thread keeps its turn while others wait.
pub const QUANTUM: Duration = Duration::from_millis(5);

/// The default weight of a group.
pub const DEFAULT_WEIGHT: u32 = 100;

/// A scheduler of the CPU among groups of threads.
///
/// A turn that frees up is handed straight to one waiting thread (of the
/// group first in line), which alone is woken: no herd of waiters wakes to
/// find the turn taken.
pub struct CpuScheduler {
    slots: usize,
    state: Mutex<State>,
    /// Threads waiting for a turn (read without the lock).
    waiting: AtomicUsize,
}

#[derive(Default)]
struct State {
    running: usize,
    /// Virtual time: the virtual time of the last group granted a turn.
    clock: f64,
    groups: HashMap<Arc<str>, Group>,
}

struct Group {
    weight: f64,
    /// CPU used (ns) divided by weight.
    vtime: f64,
    /// Its threads waiting for a turn, in order.
    queue: VecDeque<Arc<Waiter>>,
    running: usize,
    used: Duration,
}

/// A parked thread waiting for a turn.
struct Waiter {
    granted: AtomicBool,
    thread: std::thread::Thread,
}

impl Group {
    fn new(weight: u32) -> Self {
        Self {
            weight: f64::from(weight.max(1)),
            vtime: 0.0,
            queue: VecDeque::new(),
            running: 0,
            used: Duration::ZERO,
        }
    }
}

impl State {
    /// Hands free turns to waiting threads, the group with the least
    /// virtual time first.
    fn grant(&mut self, slots: usize, waiting: &AtomicUsize) {
        while self.running < slots {
            let Some(g) = self
                .groups
                .values_mut()
                .filter(|g| !g.queue.is_empty())
                .min_by(|a, b| a.vtime.total_cmp(&b.vtime))
            else {
                return;
            };
            let Some(w) = g.queue.pop_front() else {
                return;
            };
            g.running += 1;
            let vtime = g.vtime;
            self.running += 1;
            self.clock = self.clock.max(vtime);
            waiting.fetch_sub(1, Ordering::Relaxed);
            w.granted.store(true, Ordering::Release);
            w.thread.unpark();
        }
    }
}

impl std::fmt::Debug for CpuScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuScheduler")
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

impl CpuScheduler {
    /// A scheduler of `slots` concurrent turns (at least one); usually the
    /// number of cores.
    pub fn new(slots: usize) -> Arc<Self> {
        Arc::new(Self {
            slots: slots.max(1),
            state: Mutex::new(State::default()),
            waiting: AtomicUsize::new(0),
        })
    }

    /// Turns that may run at once.
    pub fn slots(&self) -> usize {
        self.slots
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets a group's weight (relative to the others'; default 100).
    pub fn set_weight(&self, group: &str, weight: u32) {
        let mut state = self.lock();
        match state.groups.get_mut(group) {
            Some(g) => g.weight = f64::from(weight.max(1)),
            None => {
                state.groups.insert(group.into(), Group::new(weight));
            }
        }
    }

    /// The handle a job of `group` runs its subtasks with.
    pub fn share(self: &Arc<Self>, group: &str) -> Share {
        {
            let mut state = self.lock();
            if !state.groups.contains_key(group) {
                state
                    .groups
                    .insert(group.into(), Group::new(DEFAULT_WEIGHT));
            }
        }
        Share {
            scheduler: self.clone(),
            group: group.into(),
        }
    }

    /// CPU time each group's threads held turns for, by group.
    pub fn usage(&self) -> Vec<(String, Duration)> {
        let state = self.lock();
        let mut v: Vec<_> = state
            .groups
            .iter()
            .map(|(k, g)| (k.to_string(), g.used))
            .collect();
        v.sort();
        v
    }

    fn acquire(&self, group: &Arc<str>) {
        let mut state = self.lock();
        let clock = state.clock;
        let free = state.running < self.slots;
        let g = state
            .groups
            .entry(group.clone())
            .or_insert_with(|| Group::new(DEFAULT_WEIGHT));
        if g.queue.is_empty() && g.running == 0 {
            // Back from idle: no credit for the time away.
            g.vtime = g.vtime.max(clock);
        }
        if free {
            // A free turn means nobody waits (turns are handed over as
            // they free up).
            g.running += 1;
            let vtime = g.vtime;
            state.running += 1;
            state.clock = state.clock.max(vtime);
            return;
        }
        let me = Arc::new(Waiter {
            granted: AtomicBool::new(false),
            thread: std::thread::current(),
        });
        g.queue.push_back(me.clone());
        self.waiting.fetch_add(1, Ordering::Relaxed);
        drop(state);
        while !me.granted.load(Ordering::Acquire) {
            std::thread::park();
        }
    }

    fn release(&self, group: &Arc<str>, held: Duration) {
        let mut state = self.lock();
        state.running = state.running.saturating_sub(1);
        if let Some(g) = state.groups.get_mut(group) {
            g.running = g.running.saturating_sub(1);
            g.used += held;
            g.vtime += held.as_nanos() as f64 / g.weight;
        }
        state.grant(self.slots, &self.waiting);
    }
}

/// A group's claim on a [`CpuScheduler`]: what a job's subtasks run with.
#[derive(Clone, Debug)]
pub struct Share {
    scheduler: Arc<CpuScheduler>,
    group: Arc<str>,
}

impl Share {
    /// The group.
    pub fn group(&self) -> &str {
        &self.group
    }
}

struct Turn {
    share: Share,
    /// Since when this thread holds a turn (None: it holds none).
    since: Option<Instant>,
}

thread_local! {
    static TURN: RefCell<Option<Turn>> = const { RefCell::new(None) };
}

/// Makes the calling thread a gated thread of `share` and waits for its
/// first turn; the turn is given back when the guard drops.
#[must_use = "the thread is gated while the guard lives"]
pub fn enter(share: Share) -> Entered {
    share.scheduler.acquire(&share.group);
    TURN.with(|t| {
        *t.borrow_mut() = Some(Turn {
            share,
            since: Some(Instant::now()),
        });
    });
    Entered(())
}

/// Ends [`enter`] on drop.
pub struct Entered(());

impl Drop for Entered {
    fn drop(&mut self) {
        if let Some(turn) = TURN.with(|t| t.borrow_mut().take())
            && let Some(since) = turn.since
        {
            turn.share
                .scheduler
                .release(&turn.share.group, since.elapsed());
        }
    }
}

/// Runs `f`, which may block, without holding a turn: the turn is given
/// back first and taken again after. Ungated threads just run `f`.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    let released = TURN.with(|t| {
        let mut t = t.borrow_mut();
        let turn = t.as_mut()?;
        let since = turn.since.take()?;
        turn.share
            .scheduler
            .release(&turn.share.group, since.elapsed());
        Some(())
    });
    let r = f();
    if released.is_some() {
        TURN.with(|t| {
            if let Some(turn) = t.borrow_mut().as_mut() {
                turn.share.scheduler.acquire(&turn.share.group);
                turn.since = Some(Instant::now());
            }
        });
    }
    r
}

/// A point where the calling thread may give up its turn: when it has held
/// it for a quantum and another thread waits.
pub fn checkpoint() {
    let expired = TURN.with(|t| {
        let t = t.borrow();
        let turn = t.as_ref()?;
        let since = turn.since?;
        (since.elapsed() >= QUANTUM && turn.share.scheduler.waiting.load(Ordering::Relaxed) > 0)
            .then_some(())
    });
    if expired.is_some() {
        blocking(|| ());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Busy work for `d`, giving the scheduler a chance as a subtask does.
    fn spin_for(d: Duration) -> u64 {
        let end = Instant::now() + d;
        let mut n = 0u64;
        while Instant::now() < end {
            for _ in 0..1000 {
                n = std::hint::black_box(n.wrapping_mul(31).wrapping_add(7));
            }
            checkpoint();
        }
        n
    }

    /// Runs `threads` busy threads per group for `run`; the CPU time each
    /// group got.
    fn contend(
        slots: usize,
        groups: &[(&str, u32, usize)],
        run: Duration,
    ) -> Vec<(String, Duration)> {
        let scheduler = CpuScheduler::new(slots);
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for (name, weight, threads) in groups {
            scheduler.set_weight(name, *weight);
            for _ in 0..*threads {
                let share = scheduler.share(name);
                let stop = stop.clone();
                handles.push(std::thread::spawn(move || {
                    let _gate = enter(share);
                    while !stop.load(Ordering::Relaxed) {
                        spin_for(Duration::from_millis(1));
                    }
                }));
            }
        }
        std::thread::sleep(run);
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join().unwrap();
        }
        scheduler.usage()
    }

    #[test]
    fn a_group_with_more_threads_gets_no_more_cpu_than_its_share() {
        // One turn: the two groups alternate, whatever their thread counts.
        let usage = contend(
            1,
            &[("busy", 100, 6), ("quiet", 100, 1)],
            Duration::from_millis(600),
        );
        let (busy, quiet) = (usage[0].1.as_secs_f64(), usage[1].1.as_secs_f64());
        let ratio = quiet / busy;
        assert!(
            (0.7..1.4).contains(&ratio),
            "quiet {quiet:.3} s, busy {busy:.3} s"
        );
    }

    #[test]
    fn cpu_follows_the_weights() {
        let usage = contend(
            1,
            &[("a", 300, 2), ("b", 100, 2)],
            Duration::from_millis(600),
        );
        let (a, b) = (usage[0].1.as_secs_f64(), usage[1].1.as_secs_f64());
        let ratio = a / b;
        assert!((2.0..4.5).contains(&ratio), "a {a:.3} s, b {b:.3} s");
    }

    #[test]
    fn blocking_gives_the_turn_to_others() {
        // One turn; a thread that sleeps inside `blocking` lets the other in.
        let scheduler = CpuScheduler::new(1);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let a = {
            let share = scheduler.share("a");
            std::thread::spawn(move || {
                let _gate = enter(share);
                // Waits for b, which can only run while a blocks.
                blocking(|| rx.recv().unwrap());
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        let b = {
            let share = scheduler.share("b");
            std::thread::spawn(move || {
                let _gate = enter(share);
                tx.send(()).unwrap();
            })
        };
        a.join().unwrap();
        b.join().unwrap();
    }

    #[test]
    fn ungated_threads_are_not_affected() {
        assert_eq!(blocking(|| 7), 7);
        checkpoint();
    }
}
