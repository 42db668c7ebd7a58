//! Barrier alignment as a pure state machine: what a subtask with several
//! inputs does with each message, as far as checkpoints care.
//!
//! The [`BarrierAligner`] sees every message a subtask receives, reduced to
//! an [`Event`], and decides: process it, hold it back (its input's barrier
//! has come and the others' have not: *aligned* mode), ignore it (a barrier
//! of an abandoned checkpoint, or one already counted), snapshot now and
//! forward the barrier, and — in *unaligned* mode — capture it as in-flight
//! data of the checkpoint being taken, until every input's barrier has
//! come. It owns the held messages and gives them back, in order, once the
//! alignment ends. It does no I/O and reads no clock but the `now` it is
//! given, so each decision is a function of its state and the event
//! (table-tested below); the run loop only carries them out.
//!
//! Savepoints are always aligned, even in unaligned mode: they are portable
//! and hold no in-flight data.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::CheckpointId;

/// A message, as the aligner sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A batch of records.
    Data,
    /// A watermark or an idleness signal.
    Signal,
    /// Checkpoint barrier `id`; `savepoint` says whether it is one.
    Barrier {
        /// The checkpoint.
        id: CheckpointId,
        /// Whether the checkpoint is a savepoint (always aligned).
        savepoint: bool,
    },
    /// The input has no more data.
    End,
}

/// What to do with one message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Hold it back ([`BarrierAligner::hold`]): its input is blocked until
    /// the alignment in progress ends.
    pub hold: bool,
    /// Process it (data, watermark, idleness, end of data).
    pub process: bool,
    /// Also keep a copy of it as in-flight data of the unaligned
    /// checkpoint being taken.
    pub capture: bool,
    /// Snapshot now and forward the barrier (after processing the
    /// message, if `process`).
    pub snapshot: Option<Snapshot>,
    /// Every input's barrier (or end) of this unaligned checkpoint has
    /// come: its captured in-flight data is complete (after `snapshot`).
    pub inflight_complete: Option<CheckpointId>,
}

/// A snapshot to take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The checkpoint.
    pub id: CheckpointId,
    /// Unaligned: in-flight data follows ([`Decision::inflight_complete`]).
    pub unaligned: bool,
    /// How long inputs were blocked for it (aligned snapshots).
    pub aligned_for: Duration,
}

struct Aligning {
    id: CheckpointId,
    started: Instant,
    blocked: Vec<bool>,
}

struct Capturing {
    id: CheckpointId,
    done: Vec<bool>,
}

/// The barrier aligner of one subtask with `inputs` inputs, holding
/// messages of type `T`.
pub struct BarrierAligner<T> {
    unaligned: bool,
    ended: Vec<bool>,
    aligning: Option<Aligning>,
    capturing: Option<Capturing>,
    held: VecDeque<(usize, T)>,
    replay: VecDeque<(usize, T)>,
}

impl<T> BarrierAligner<T> {
    /// An aligner for `inputs` inputs; `unaligned` selects unaligned
    /// checkpoints (savepoints stay aligned).
    pub fn new(inputs: usize, unaligned: bool) -> Self {
        Self {
            unaligned,
            ended: vec![false; inputs],
            aligning: None,
            capturing: None,
            held: VecDeque::new(),
            replay: VecDeque::new(),
        }
    }

    /// The next held message to process again, oldest first, once the
    /// alignment that held it has ended.
    pub fn replayed(&mut self) -> Option<(usize, T)> {
        self.replay.pop_front()
    }

    /// Keeps a message its decision said to hold.
    pub fn hold(&mut self, input: usize, message: T) {
        self.held.push_back((input, message));
    }

    /// Whether every input has ended and nothing is left to replay.
    pub fn finished(&self) -> bool {
        self.ended.iter().all(|e| *e) && self.replay.is_empty()
    }

    /// The decision for `event` arriving on `input` at `now`.
    pub fn on_event(&mut self, input: usize, event: Event, now: Instant) -> Decision {
        let mut d = Decision::default();
        if self.aligning.as_ref().is_some_and(|a| a.blocked[input]) {
            d.hold = true;
            return d;
        }
        match event {
            Event::Data => {
                d.process = true;
                d.capture = self.capturing.as_ref().is_some_and(|c| !c.done[input]);
            }
            Event::Signal => d.process = true,
            Event::End => {
                d.process = true;
                self.ended[input] = true;
                if let Some(c) = &mut self.capturing {
                    c.done[input] = true;
                }
            }
            Event::Barrier { id, savepoint } if self.unaligned && !savepoint => {
                match &mut self.capturing {
                    Some(c) if c.id == id => c.done[input] = true,
                    // A barrier of an older checkpoint.
                    Some(c) if c.id > id => {}
                    _ => {
                        // The first barrier of a new checkpoint: snapshot
                        // and pass it on now, then capture what the other
                        // inputs send before theirs.
                        let mut done = self.ended.clone();
                        done[input] = true;
                        d.snapshot = Some(Snapshot {
                            id,
                            unaligned: true,
                            aligned_for: Duration::ZERO,
                        });
                        self.capturing = Some(Capturing { id, done });
                    }
                }
            }
            Event::Barrier { id, .. } => {
                match &self.aligning {
                    Some(a) if a.id == id => {}
                    // A barrier of an abandoned checkpoint.
                    Some(a) if a.id > id => return d,
                    _ => {
                        // A new checkpoint (a newer one abandons the
                        // alignment in progress and releases what it held).
                        self.release();
                        self.aligning = Some(Aligning {
                            id,
                            started: now,
                            blocked: vec![false; self.ended.len()],
                        });
                    }
                }
                if let Some(a) = &mut self.aligning {
                    a.blocked[input] = true;
                }
            }
        }
        if let Some(c) = &self.capturing
            && c.done.iter().all(|d| *d)
        {
            d.inflight_complete = Some(c.id);
            self.capturing = None;
        }
        if let Some(a) = &self.aligning
            && a.blocked.iter().zip(&self.ended).all(|(b, e)| *b || *e)
        {
            d.snapshot = Some(Snapshot {
                id: a.id,
                unaligned: false,
                aligned_for: now.saturating_duration_since(a.started),
            });
            self.aligning = None;
            self.release();
        }
        d
    }

    /// Ends blocking: what was held is replayed first, then what was still
    /// waiting to be replayed from an earlier alignment (replayed messages
    /// are taken before new ones, so those held came out of the replay
    /// queue ahead of those still in it: each input keeps its order).
    fn release(&mut self) {
        if let Some(a) = &mut self.aligning {
            a.blocked.iter_mut().for_each(|b| *b = false);
        }
        let rest = std::mem::take(&mut self.replay);
        self.replay = std::mem::take(&mut self.held);
        self.replay.extend(rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Event = Event::Data;
    const S: Event = Event::Signal;
    const E: Event = Event::End;
    fn b(id: CheckpointId) -> Event {
        Event::Barrier {
            id,
            savepoint: false,
        }
    }
    fn sp(id: CheckpointId) -> Event {
        Event::Barrier {
            id,
            savepoint: true,
        }
    }

    /// What a decision says, in one word per field set, for tables.
    fn said(d: Decision) -> String {
        let mut w = Vec::new();
        if d.hold {
            w.push("hold".to_string());
        }
        if d.process {
            w.push("process".into());
        }
        if d.capture {
            w.push("capture".into());
        }
        if let Some(s) = d.snapshot {
            w.push(format!(
                "snapshot {}{}",
                s.id,
                if s.unaligned { " unaligned" } else { "" }
            ));
        }
        if let Some(id) = d.inflight_complete {
            w.push(format!("inflight {id}"));
        }
        if w.is_empty() {
            "ignore".into()
        } else {
            w.join(" + ")
        }
    }

    /// Feeds `steps` (input, event, expected decision) to an aligner of
    /// `inputs` inputs, holding what it says to hold and replaying what
    /// it gives back before each next step, as the run loop does.
    /// Returns the replayed messages in order, as (input, step index).
    fn table(
        inputs: usize,
        unaligned: bool,
        steps: &[(usize, Event, &str)],
    ) -> Vec<(usize, usize)> {
        let mut a = BarrierAligner::new(inputs, unaligned);
        let now = Instant::now();
        let mut replayed = Vec::new();
        for (i, &(input, event, expected)) in steps.iter().enumerate() {
            let d = a.on_event(input, event, now);
            assert_eq!(said(d), expected, "step {i}: input {input} {event:?}");
            if d.hold {
                a.hold(input, i);
            }
            while let Some(r) = a.replayed() {
                replayed.push(r);
            }
        }
        replayed
    }

    #[test]
    fn aligned_holds_the_inputs_whose_barrier_came_until_all_have() {
        let replayed = table(
            3,
            false,
            &[
                (0, D, "process"),
                (0, b(1), "ignore"),
                (0, D, "hold"),
                (1, D, "process"),
                (0, S, "hold"),
                (1, b(1), "ignore"),
                (2, S, "process"),
                (1, D, "hold"),
                (2, b(1), "snapshot 1"),
                (2, D, "process"),
            ],
        );
        // Held messages come back in arrival order when the snapshot is
        // taken.
        assert_eq!(replayed, vec![(0, 2), (0, 4), (1, 7)]);
    }

    #[test]
    fn an_ended_input_does_not_hold_an_alignment_back() {
        table(
            2,
            false,
            &[
                (1, E, "process"),
                (0, b(4), "snapshot 4"),
                (0, D, "process"),
            ],
        );
        table(
            2,
            false,
            &[
                (0, b(4), "ignore"),
                (1, D, "process"),
                (1, E, "process + snapshot 4"),
            ],
        );
    }

    #[test]
    fn a_newer_barrier_abandons_the_alignment_and_stale_barriers_are_ignored() {
        let replayed = table(
            2,
            false,
            &[
                (0, b(1), "ignore"),
                (0, D, "hold"),
                // Checkpoint 1 was abandoned; 2 starts: 0's held data is
                // released, and 1 is blocked now.
                (1, b(2), "ignore"),
                (1, D, "hold"),
                (1, b(1), "hold"),
                (0, b(2), "snapshot 2"),
            ],
        );
        assert_eq!(replayed, vec![(0, 1), (1, 3), (1, 4)]);
        // Replaying the stale barrier of 1 afterwards is ignored.
        let mut a = BarrierAligner::<()>::new(2, false);
        let now = Instant::now();
        a.on_event(0, b(2), now);
        assert_eq!(said(a.on_event(1, b(1), now)), "ignore");
    }

    #[test]
    fn unaligned_snapshots_at_the_first_barrier_and_captures_the_others_until_theirs() {
        let replayed = table(
            3,
            true,
            &[
                (0, D, "process"),
                (1, b(1), "snapshot 1 unaligned"),
                (1, D, "process"),
                (0, D, "process + capture"),
                (2, S, "process"),
                (2, D, "process + capture"),
                (0, b(1), "ignore"),
                (0, D, "process"),
                (2, D, "process + capture"),
                (2, b(1), "inflight 1"),
                (2, D, "process"),
            ],
        );
        assert!(replayed.is_empty(), "unaligned mode holds nothing");
    }

    #[test]
    fn unaligned_with_one_input_has_no_inflight_data_and_ends_count_as_barriers() {
        table(1, true, &[(0, b(3), "snapshot 3 unaligned + inflight 3")]);
        table(
            2,
            true,
            &[
                (0, b(3), "snapshot 3 unaligned"),
                (1, D, "process + capture"),
                (1, E, "process + inflight 3"),
            ],
        );
        table(
            2,
            true,
            &[
                (1, E, "process"),
                (0, b(5), "snapshot 5 unaligned + inflight 5"),
            ],
        );
    }

    #[test]
    fn unaligned_ignores_barriers_of_older_checkpoints_and_a_newer_one_starts_over() {
        table(
            2,
            true,
            &[
                (0, b(2), "snapshot 2 unaligned"),
                (1, b(1), "ignore"),
                (1, D, "process + capture"),
                (0, b(3), "snapshot 3 unaligned"),
                (1, D, "process + capture"),
                (1, b(3), "inflight 3"),
            ],
        );
    }

    #[test]
    fn savepoints_are_aligned_in_unaligned_mode() {
        let replayed = table(
            2,
            true,
            &[
                (0, sp(7), "ignore"),
                (0, D, "hold"),
                (1, D, "process"),
                (1, sp(7), "snapshot 7"),
            ],
        );
        assert_eq!(replayed, vec![(0, 1)]);
    }

    #[test]
    fn the_aligner_is_finished_when_every_input_ended_and_nothing_is_held() {
        let mut a = BarrierAligner::new(2, false);
        let now = Instant::now();
        assert_eq!(said(a.on_event(0, b(1), now)), "ignore");
        let d = a.on_event(0, E, now);
        assert!(d.hold);
        a.hold(0, "end of 0");
        assert!(!a.finished());
        // Input 1 ends: checkpoint 1 is aligned (0's barrier came, 1 has
        // ended), and 0's end is given back.
        assert_eq!(said(a.on_event(1, E, now)), "process + snapshot 1");
        assert!(!a.finished());
        assert_eq!(a.replayed(), Some((0, "end of 0")));
        assert_eq!(said(a.on_event(0, E, now)), "process");
        assert!(a.finished());
    }

    #[test]
    fn messages_held_again_while_replaying_keep_their_order_per_input() {
        let mut a = BarrierAligner::new(3, false);
        let now = Instant::now();
        // Checkpoint 1: inputs 0 and 1 are blocked and hold what follows.
        assert_eq!(said(a.on_event(0, b(1), now)), "ignore");
        for (input, event, m) in [(0, b(2), "0:b2"), (0, D, "0:d6")] {
            assert!(a.on_event(input, event, now).hold);
            a.hold(input, m);
        }
        assert_eq!(said(a.on_event(1, b(1), now)), "ignore");
        for (input, event, m) in [(1, b(2), "1:b2"), (0, D, "0:d8")] {
            assert!(a.on_event(input, event, now).hold);
            a.hold(input, m);
        }
        // Input 2 brings barrier 2: checkpoint 1 is abandoned, all that was
        // held is replayed, and 2 is aligning.
        assert_eq!(said(a.on_event(2, b(2), now)), "ignore");
        assert_eq!(a.replayed(), Some((0, "0:b2")));
        assert_eq!(said(a.on_event(0, b(2), now)), "ignore");
        assert_eq!(a.replayed(), Some((0, "0:d6")));
        assert!(a.on_event(0, D, now).hold);
        a.hold(0, "0:d6");
        assert_eq!(a.replayed(), Some((1, "1:b2")));
        assert_eq!(said(a.on_event(1, b(2), now)), "snapshot 2");
        // 0:d6, held again, comes back before 0:d8, which was still
        // waiting to be replayed.
        assert_eq!(a.replayed(), Some((0, "0:d6")));
        assert_eq!(a.replayed(), Some((0, "0:d8")));
        assert_eq!(a.replayed(), None);
    }

    #[test]
    fn alignment_time_is_measured_from_the_first_barrier() {
        let mut a = BarrierAligner::<()>::new(2, false);
        let t0 = Instant::now();
        a.on_event(0, b(1), t0);
        let d = a.on_event(1, b(1), t0 + Duration::from_millis(40));
        assert_eq!(
            d.snapshot.map(|s| s.aligned_for),
            Some(Duration::from_millis(40))
        );
    }
}
