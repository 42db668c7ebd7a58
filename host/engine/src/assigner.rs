//! Windows: which windows a record belongs to, when a window is complete, and
//! when it may be forgotten. Pure types and decision functions; the window
//! operator (which holds contents and accumulators per key and window) is
//! built on them.
//!
//! Semantics follow Flink's:
//! * a window is `[start, end)`; its last instant is `end - 1`;
//! * an event-time window is complete when the watermark reaches `end - 1`;
//! * with allowed lateness `L`, records for a complete window still count
//!   (and cause an updated result) until the watermark passes `end - 1 + L`;
//!   after that they are late and go to the late side output, and the
//!   window's state is dropped;
//! * session windows start as `[t, t + gap)` per record and merge when they
//!   overlap.

use std::time::Duration;

/// A window of event time, `[start, end)` in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    /// First instant in the window.
    pub start: i64,
    /// First instant after the window.
    pub end: i64,
}

impl Window {
    /// The global window: all of time.
    pub const GLOBAL: Window = Window {
        start: i64::MIN,
        end: i64::MAX,
    };

    /// The last instant in the window.
    pub fn max_timestamp(&self) -> i64 {
        self.end.saturating_sub(1)
    }

    /// Whether two windows overlap or touch (sessions merge then).
    pub fn intersects(&self, other: &Window) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    /// The smallest window covering both.
    pub fn cover(&self, other: &Window) -> Window {
        Window {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// How records are assigned to windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowAssigner {
    /// Fixed-size, non-overlapping windows aligned to `offset`.
    Tumbling {
        /// Window length.
        size: Duration,
        /// Alignment offset (for example, to align days to a time zone).
        offset: Duration,
    },
    /// Fixed-size windows starting every `slide`; a record is in
    /// `size / slide` of them.
    Sliding {
        /// Window length.
        size: Duration,
        /// Distance between window starts.
        slide: Duration,
        /// Alignment offset.
        offset: Duration,
    },
    /// Per-key windows that close after `gap` without records.
    Session {
        /// Inactivity gap.
        gap: Duration,
    },
    /// One window for all time; results come from a non-time trigger.
    Global,
}

/// Why an assigner cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid window: {0}")]
pub struct InvalidWindow(pub String);

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The start of the window of length `size` (aligned to `offset`) that holds
/// `ts`; correct for negative timestamps too.
fn window_start(ts: i64, offset: i64, size: i64) -> i64 {
    ts - (ts - offset).rem_euclid(size)
}

impl WindowAssigner {
    /// Checks sizes: positive, a slide no longer than the size, an offset
    /// smaller than the slide or size.
    ///
    /// # Errors
    /// [`InvalidWindow`] naming the problem.
    pub fn validate(&self) -> Result<(), InvalidWindow> {
        let bad = |m: &str| Err(InvalidWindow(m.into()));
        match *self {
            Self::Tumbling { size, offset } => {
                if size.is_zero() {
                    return bad("a tumbling window needs a positive size");
                }
                if offset >= size {
                    return bad("the offset must be smaller than the size");
                }
            }
            Self::Sliding {
                size,
                slide,
                offset,
            } => {
                if size.is_zero() || slide.is_zero() {
                    return bad("a sliding window needs a positive size and slide");
                }
                if slide > size {
                    return bad("the slide must not exceed the size");
                }
                if offset >= slide {
                    return bad("the offset must be smaller than the slide");
                }
            }
            Self::Session { gap } => {
                if gap.is_zero() {
                    return bad("a session window needs a positive gap");
                }
            }
            Self::Global => {}
        }
        Ok(())
    }

    /// The windows a record at `ts` belongs to, earliest start first.
    pub fn assign(&self, ts: i64) -> Vec<Window> {
        match *self {
            Self::Tumbling { size, offset } => {
                let (size, offset) = (ms(size), ms(offset));
                let start = window_start(ts, offset, size);
                vec![Window {
                    start,
                    end: start.saturating_add(size),
                }]
            }
            Self::Sliding {
                size,
                slide,
                offset,
            } => {
                let (size, slide, offset) = (ms(size), ms(slide), ms(offset));
                let last = window_start(ts, offset, slide);
                let mut out = Vec::with_capacity((size / slide) as usize + 1);
                let mut start = last;
                while start > ts - size {
                    out.push(Window {
                        start,
                        end: start.saturating_add(size),
                    });
                    start -= slide;
                }
                out.reverse();
                out
            }
            Self::Session { gap } => vec![Window {
                start: ts,
                end: ts.saturating_add(ms(gap)),
            }],
            Self::Global => vec![Window::GLOBAL],
        }
    }

    /// Whether windows of this assigner merge (sessions do).
    pub fn is_merging(&self) -> bool {
        matches!(self, Self::Session { .. })
    }
}

/// Merges a new session window into a key's existing ones.
///
/// `existing` is sorted and disjoint (as this function leaves it). Returns the
/// window the new one ended up in and the existing windows that were absorbed
/// into it (whose state the operator must merge into the result's), in order.
pub fn merge_session(existing: &mut Vec<Window>, new: Window) -> (Window, Vec<Window>) {
    let mut merged = new;
    let mut absorbed = Vec::new();
    // Covering one window can make the result reach a neighbour it did not
    // touch before; repeat until stable.
    loop {
        let before = absorbed.len();
        existing.retain(|w| {
            if w.intersects(&merged) {
                merged = merged.cover(w);
                absorbed.push(*w);
                false
            } else {
                true
            }
        });
        if absorbed.len() == before {
            break;
        }
    }
    let at = existing.partition_point(|w| w.start < merged.start);
    existing.insert(at, merged);
    absorbed.sort();
    (merged, absorbed)
}

/// Where a record stands relative to its window and the watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lateness {
    /// The window is still open: the record is on time.
    OnTime,
    /// The window has fired but is within its allowed lateness: the record
    /// counts and the window fires again with the update.
    LateButAllowed,
    /// Beyond the allowed lateness: the record goes to the late side output.
    TooLate,
}

/// Classifies a record for `window` given the current `watermark` and the
/// allowed lateness.
pub fn lateness(window: &Window, watermark: i64, allowed: Duration) -> Lateness {
    if window.max_timestamp() > watermark {
        Lateness::OnTime
    } else if cleanup_time(window, allowed) > watermark {
        Lateness::LateButAllowed
    } else {
        Lateness::TooLate
    }
}

/// The event time at which the window's state can be dropped: its last
/// instant plus the allowed lateness.
pub fn cleanup_time(window: &Window, allowed: Duration) -> i64 {
    window.max_timestamp().saturating_add(ms(allowed))
}

/// Whether the event-time trigger fires `window` at `watermark`.
pub fn is_complete(window: &Window, watermark: i64) -> bool {
    window.max_timestamp() <= watermark
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn w(start: i64, end: i64) -> Window {
        Window { start, end }
    }

    #[test]
    fn tumbling_windows_hold_each_timestamp_once_even_before_the_epoch() {
        let a = WindowAssigner::Tumbling {
            size: MIN,
            offset: Duration::ZERO,
        };
        assert_eq!(a.assign(0), vec![w(0, 60_000)]);
        assert_eq!(a.assign(59_999), vec![w(0, 60_000)]);
        assert_eq!(a.assign(60_000), vec![w(60_000, 120_000)]);
        assert_eq!(a.assign(-1), vec![w(-60_000, 0)]);
        let shifted = WindowAssigner::Tumbling {
            size: MIN,
            offset: Duration::from_secs(15),
        };
        assert_eq!(shifted.assign(10_000), vec![w(-45_000, 15_000)]);
        for ts in [-123_456i64, -1, 0, 1, 59_999, 987_654_321] {
            let win = a.assign(ts)[0];
            assert!(win.start <= ts && ts < win.end);
        }
    }

    #[test]
    fn sliding_windows_hold_each_timestamp_size_over_slide_times() {
        let a = WindowAssigner::Sliding {
            size: Duration::from_secs(10),
            slide: Duration::from_secs(5),
            offset: Duration::ZERO,
        };
        assert_eq!(a.assign(7_000), vec![w(0, 10_000), w(5_000, 15_000)]);
        assert_eq!(a.assign(5_000), vec![w(0, 10_000), w(5_000, 15_000)]);
        assert_eq!(a.assign(4_999), vec![w(-5_000, 5_000), w(0, 10_000)]);
        let thirds = WindowAssigner::Sliding {
            size: Duration::from_secs(3),
            slide: Duration::from_secs(1),
            offset: Duration::ZERO,
        };
        for ts in [-2_500i64, 0, 1, 999, 1_000, 12_345] {
            let ws = thirds.assign(ts);
            assert_eq!(ws.len(), 3, "ts {ts}: {ws:?}");
            assert!(ws.iter().all(|win| win.start <= ts && ts < win.end));
        }
    }

    #[test]
    fn sessions_merge_when_they_touch_and_report_what_they_absorbed() {
        let gap = Duration::from_secs(30 * 60);
        let a = WindowAssigner::Session { gap };
        assert!(a.is_merging());
        let mut sessions = Vec::new();
        let (s1, absorbed) = merge_session(&mut sessions, a.assign(0)[0]);
        assert_eq!((s1, absorbed.len()), (w(0, 1_800_000), 0));
        // Far away: a second session.
        merge_session(&mut sessions, a.assign(10_000_000)[0]);
        assert_eq!(sessions.len(), 2);
        // A record between them, within the gap of the first: extends it.
        let (s, absorbed) = merge_session(&mut sessions, a.assign(1_000_000)[0]);
        assert_eq!(s, w(0, 2_800_000));
        assert_eq!(absorbed, vec![w(0, 1_800_000)]);
        // A record bridging both sessions merges all three.
        let (s, absorbed) = merge_session(&mut sessions, w(2_700_000, 10_000_001));
        assert_eq!(s, w(0, 11_800_000));
        assert_eq!(absorbed, vec![w(0, 2_800_000), w(10_000_000, 11_800_000)]);
        assert_eq!(sessions, vec![w(0, 11_800_000)]);
    }

    #[test]
    fn lateness_and_cleanup_follow_the_watermark() {
        let win = w(0, 60_000);
        let allowed = Duration::from_secs(60);
        assert!(!is_complete(&win, 59_998));
        assert!(is_complete(&win, 59_999));
        assert_eq!(lateness(&win, 10_000, allowed), Lateness::OnTime);
        assert_eq!(lateness(&win, 59_999, allowed), Lateness::LateButAllowed);
        assert_eq!(lateness(&win, 119_998, allowed), Lateness::LateButAllowed);
        assert_eq!(lateness(&win, 119_999, allowed), Lateness::TooLate);
        assert_eq!(lateness(&win, 59_999, Duration::ZERO), Lateness::TooLate);
        assert_eq!(cleanup_time(&win, allowed), 119_999);
        assert_eq!(WindowAssigner::Global.assign(42), vec![Window::GLOBAL]);
        assert!(!is_complete(&Window::GLOBAL, i64::MAX - 2));
    }

    #[test]
    fn invalid_assigners_are_refused() {
        let zero = WindowAssigner::Tumbling {
            size: Duration::ZERO,
            offset: Duration::ZERO,
        };
        assert!(zero.validate().is_err());
        let wide = WindowAssigner::Sliding {
            size: MIN,
            slide: Duration::from_secs(120),
            offset: Duration::ZERO,
        };
        assert!(
            wide.validate()
                .unwrap_err()
                .to_string()
                .contains("slide must not exceed")
        );
        assert!(
            WindowAssigner::Session {
                gap: Duration::ZERO
            }
            .validate()
            .is_err()
        );
        assert!(WindowAssigner::Global.validate().is_ok());
    }
}
