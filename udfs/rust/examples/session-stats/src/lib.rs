//! Per-user sessions: a process-window function over session windows.
//!
//! For each session (the host merges a user's events into sessions by the
//! gap set in the job file), emits `{"user", "start", "end", "actions",
//! "duration_ms", "first_action", "last_action"}`, where `duration_ms` runs
//! from the first to the last event and actions are counted per session.
//!
//! World: `process-window-operator` (`wit/windows.wit`).

use serde::{Deserialize, Serialize};
use weir_udf::{Config, Error, PaneRecords, ProcessWindow, Results, Window};

/// Session statistics.
pub struct SessionStats;

#[derive(Deserialize)]
struct Action<'a> {
    action: &'a str,
}

#[derive(Serialize)]
struct Session<'a> {
    user: &'a str,
    start: i64,
    end: i64,
    actions: usize,
    duration_ms: i64,
    first_action: String,
    last_action: String,
}

impl ProcessWindow for SessionStats {
    fn init(_config: &Config) -> Result<Self, Error> {
        Ok(Self)
    }

    fn process(
        &mut self,
        key: &[u8],
        window: Window,
        records: PaneRecords<'_>,
        out: &mut Results,
    ) -> Result<(), Error> {
        // Records arrive in arrival order; order them by event time.
        let mut events: Vec<(i64, String)> = Vec::with_capacity(records.len());
        for r in records.iter() {
            let a: Action<'_> = r.json()?;
            events.push((r.timestamp(), a.action.to_string()));
        }
        events.sort();
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(());
        };
        out.json(&Session {
            user: &String::from_utf8_lossy(key),
            start: window.start,
            end: window.end,
            actions: events.len(),
            duration_ms: last.0 - first.0,
            first_action: first.1.clone(),
            last_action: last.1.clone(),
        })
    }
}

weir_udf::export_process_window!(SessionStats);
