//! Assigning a batch's records to panes: the windows of each record, the
//! panes a batch touches, session merging and the late records.

use super::pane::*;
use super::*;

impl WindowOperator {
    /// The trigger's `onElement` for the rows of one pane: registers its
    /// timers and marks the rows after which the pane fires.
    pub(super) fn on_elements(&mut self, t: &mut Touched, batch: &RecordBatch) {
        let w = t.window;
        let space = ns(&w);
        if !matches!(
            self.spec.trigger,
            Trigger::EventTime | Trigger::ProcessingTime
        ) {
            self.set_key(&t.key);
        }
        let late = self.event_time() && w.max_timestamp() <= self.watermark;
        match self.spec.trigger {
            // The end-of-window and cleanup timers are set when a pane
            // gets its first record (`add_rows`), not for every batch.
            Trigger::EventTime => {
                if late {
                    t.rows.iter_mut().for_each(|r| r.1 = true);
                }
            }
            Trigger::ProcessingTime => {}
            Trigger::Count { count } => {
                let mut c = decode_i64(self.state.value_get(self.ids.count, &space)).unwrap_or(0);
                for r in &mut t.rows {
                    c += 1;
                    if c as u64 >= count {
                        r.1 = true;
                        c = 0;
                    }
                }
                self.state.value_set(self.ids.count, &space, &encode_i64(c));
            }
            Trigger::ContinuousEventTime { interval } => {
                if late {
                    t.rows.iter_mut().for_each(|r| r.1 = true);
                }
                if self.state.value_get(self.ids.fire_at, &space).is_none()
                    && let Some(&(row, _)) = t.rows.first()
                {
                    let i = ms(interval).max(1);
                    let ts = batch.timestamps[row as usize];
                    let next = ts - ts.rem_euclid(i) + i;
                    self.state
                        .value_set(self.ids.fire_at, &space, &encode_i64(next));
                    self.state.register_timer(true, next, &space);
                }
            }
            Trigger::ContinuousProcessingTime { interval } => {
                if self.state.value_get(self.ids.fire_at, &space).is_none() {
                    let i = ms(interval).max(1);
                    let now = self.clock.now_ms();
                    let next = now - now.rem_euclid(i) + i;
                    self.state
                        .value_set(self.ids.fire_at, &space, &encode_i64(next));
                    self.state.register_timer(false, next, &space);
                }
            }
        }
    }

    /// Sets a new pane's timers (of the current key): the trigger's
    /// end-of-window timer and the cleanup timer (the same one when there
    /// is no lateness).
    pub(super) fn register_pane_timers(&mut self, w: &Window) {
        let space = ns(w);
        match self.spec.trigger {
            Trigger::EventTime | Trigger::ContinuousEventTime { .. } => {
                if w.max_timestamp() > self.watermark {
                    self.state.register_timer(true, w.max_timestamp(), &space);
                }
            }
            Trigger::ProcessingTime => {
                self.state.register_timer(false, w.max_timestamp(), &space);
            }
            Trigger::Count { .. } | Trigger::ContinuousProcessingTime { .. } => {}
        }
        self.register_cleanup(w);
    }

    /// Assigns the rows of `batch` to panes; returns the panes and the rows
    /// too late for any window.
    pub(super) fn assign(&mut self, batch: &RecordBatch) -> (Vec<Touched>, Vec<u32>) {
        let now = self.clock.now_ms();
        let mut index: FastMap<(&[u8], Window), usize> = FastMap::default();
        let mut touched: Vec<Touched> = Vec::new();
        let mut late = Vec::new();
        for row in 0..batch.len() {
            let key = batch.keys.get(row);
            let ts = if self.event_time() {
                batch.timestamps[row]
            } else {
                now
            };
            let mut any = false;
            for w in self.spec.assigner.assign(ts) {
                if self.is_window_late(&w) {
                    continue;
                }
                any = true;
                let i = *index.entry((key, w)).or_insert_with(|| {
                    touched.push(Touched {
                        key: key.to_vec(),
                        window: w,
                        rows: Vec::new(),
                    });
                    touched.len() - 1
                });
                touched[i].rows.push((row as u32, false));
            }
            if !any {
                late.push(row as u32);
            }
        }
        (touched, late)
    }

    /// Session windows: merges each key's new windows into its existing
    /// sessions, moves the state of sessions that grew or merged, and
    /// returns the panes the rows end up in.
    pub(super) fn assign_sessions(
        &mut self,
        batch: &RecordBatch,
    ) -> Result<(Vec<Touched>, Vec<u32>), EngineError> {
        let now = self.clock.now_ms();
        // Rows per key, in order.
        let mut keys: Vec<&[u8]> = Vec::new();
        let mut rows_of: HashMap<&[u8], Vec<u32>> = HashMap::new();
        for row in 0..batch.len() {
            let key = batch.keys.get(row);
            rows_of
                .entry(key)
                .or_insert_with(|| {
                    keys.push(key);
                    Vec::new()
                })
                .push(row as u32);
        }
        let mut touched = Vec::new();
        let mut late = Vec::new();
        // Moves of existing panes into merged ones: (key, from, into).
        let mut moves: Vec<(Vec<u8>, Window, Window)> = Vec::new();
        for key in keys {
            self.set_key(key);
            let before = decode_windows(self.state.value_get(self.ids.sessions, b""));
            let mut sessions = before.clone();
            let mut row_windows = Vec::new();
            for &row in &rows_of[key] {
                let ts = if self.event_time() {
                    batch.timestamps[row as usize]
                } else {
                    now
                };
                let w = self.spec.assigner.assign(ts)[0];
                merge_session(&mut sessions, w);
                row_windows.push((row, w));
            }
            let container = |w: &Window, sessions: &[Window]| -> Window {
                sessions
                    .iter()
                    .find(|s| s.start <= w.start && w.end <= s.end)
                    .copied()
                    .unwrap_or(*w)
            };
            for old in &before {
                let into = container(old, &sessions);
                if into != *old {
                    moves.push((key.to_vec(), *old, into));
                }
            }
            let mut by_window: Vec<Touched> = Vec::new();
            for (row, w) in row_windows {
                let into = container(&w, &sessions);
                if self.is_window_late(&into) {
                    late.push(row);
                    continue;
                }
                match by_window.iter_mut().find(|t| t.window == into) {
                    Some(t) => t.rows.push((row, false)),
                    None => by_window.push(Touched {
                        key: key.to_vec(),
                        window: into,
                        rows: vec![(row, false)],
                    }),
                }
            }
            self.state
                .value_set(self.ids.sessions, b"", &encode_windows(&sessions));
            touched.extend(by_window);
        }
        self.move_panes(moves)?;
        Ok((touched, late))
    }

    /// Moves the state of panes whose session window grew or merged into
    /// their new window: accumulators merged by the guest, contents
    /// concatenated, counts summed, timers moved.
    pub(super) fn move_panes(
        &mut self,
        moves: Vec<(Vec<u8>, Window, Window)>,
    ) -> Result<(), EngineError> {
        if moves.is_empty() {
            return Ok(());
        }
        // Group sources by target.
        let mut targets: Vec<(Vec<u8>, Window, Vec<Window>)> = Vec::new();
        for (key, from, into) in moves {
            match targets.iter_mut().find(|(k, w, _)| *k == key && *w == into) {
                Some(t) => t.2.push(from),
                None => targets.push((key, into, vec![from])),
            }
        }
        let mut merge_accs = BytesColumn::new();
        let mut merge_groups = Vec::new();
        let mut merged_targets = Vec::new();
        for (key, into, froms) in &targets {
            self.set_key(key);
            let into_ns = ns(into);
            let mut count = 0i64;
            let mut fire_at: Option<i64> = None;
            let mut contents: Vec<Vec<u8>> = Vec::new();
            let mut accs: Vec<Vec<u8>> = Vec::new();
            for from in froms {
                let from_ns = ns(from);
                if self.incremental {
                    if let Some(a) = self.state.value_get(self.ids.acc, &from_ns) {
                        accs.push(a);
                    }
                } else {
                    let mut items = Vec::new();
                    self.state
                        .list_for_each(self.ids.contents, &from_ns, |e| items.push(e.to_vec()))
                        .map_err(|e| self.err(e))?;
                    contents.extend(items);
                }
                count += decode_i64(self.state.value_get(self.ids.count, &from_ns)).unwrap_or(0);
                if let Some(f) = decode_i64(self.state.value_get(self.ids.fire_at, &from_ns)) {
                    fire_at = Some(fire_at.map_or(f, |g: i64| g.min(f)));
                }
                self.clear_pane(key, from, None);
            }
            if self.incremental {
                match accs.len() {
                    0 => {}
                    1 => self.state.value_set(self.ids.acc, &into_ns, &accs[0]),
                    _ => {
                        let g = merged_targets.len() as u32;
                        for a in &accs {
                            merge_accs.push(a);
                            merge_groups.push(g);
                        }
                        merged_targets.push((key.clone(), *into));
                    }
                }
            } else if !contents.is_empty() {
                self.state.list_set(
                    self.ids.contents,
                    &into_ns,
                    contents.iter().map(Vec::as_slice),
                );
            }
            if count > 0 {
                self.state
                    .value_set(self.ids.count, &into_ns, &encode_i64(count));
            }
            self.register_pane_timers(into);
            if let Some(f) = fire_at {
                self.state
                    .value_set(self.ids.fire_at, &into_ns, &encode_i64(f));
                if self.event_time() {
                    self.state.register_timer(true, f, &into_ns);
                } else {
                    self.state.register_timer(false, f, &into_ns);
                }
            }
        }
        if !merged_targets.is_empty() {
            let merged = self
                .instance
                .merge_accumulators(merge_accs, merge_groups)
                .map_err(|e| self.guest(e))?;
            for (i, (key, into)) in merged_targets.iter().enumerate() {
                self.set_key(key);
                self.state.value_set(self.ids.acc, &ns(into), merged.get(i));
            }
        }
        Ok(())
    }
}
