//! Firing panes: adding rows to their contents or accumulators, the guest
//! calls for the panes that fire together, timers, and clearing a pane.

use super::pane::*;
use super::*;

impl WindowOperator {
    /// Deletes a pane's state and timers: those its trigger and window
    /// set, except `fired` (event time?, time), already taken off.
    pub(super) fn clear_pane(&mut self, key: &[u8], w: &Window, fired: Option<(bool, i64)>) {
        self.set_key(key);
        let space = ns(w);
        let continuous = self.continuous();
        let mut timers: Vec<(bool, i64)> = Vec::with_capacity(3);
        match self.spec.trigger {
            Trigger::EventTime | Trigger::ContinuousEventTime { .. } => {
                timers.push((true, w.max_timestamp()));
            }
            Trigger::ProcessingTime => timers.push((false, w.max_timestamp())),
            Trigger::Count { .. } | Trigger::ContinuousProcessingTime { .. } => {}
        }
        timers.push((self.event_time(), self.cleanup_at(w)));
        if continuous && let Some(at) = decode_i64(self.state.value_get(self.ids.fire_at, &space)) {
            let event = matches!(self.spec.trigger, Trigger::ContinuousEventTime { .. });
            timers.push((event, at));
        }
        timers.sort_unstable();
        timers.dedup();
        for (event, t) in timers {
            if Some((event, t)) != fired {
                self.state.delete_timer(event, t, &space);
            }
        }
        // The states this operator's panes use.
        let acc = self.incremental || self.spec.assigner.is_merging();
        for (id, used) in [
            (self.ids.acc, acc),
            (self.ids.contents, !self.incremental),
            (
                self.ids.count,
                matches!(self.spec.trigger, Trigger::Count { .. }),
            ),
            (self.ids.fire_at, continuous),
        ] {
            if used {
                self.state.clear(id, &space);
            }
        }
    }

    /// Adds the rows of a round to their panes' state.
    pub(super) fn add_rows(
        &mut self,
        batch: &RecordBatch,
        segments: &[(usize, Vec<u32>)],
        touched: &[Touched],
    ) -> Result<(), EngineError> {
        if segments.is_empty() {
            return Ok(());
        }
        if self.incremental {
            let mut accs = BytesColumn::new();
            let mut groups = Vec::new();
            let mut rows = Vec::new();
            for (g, (pane, seg)) in segments.iter().enumerate() {
                let t = &touched[*pane];
                self.set_key(&t.key);
                let empty = self.empty_acc.as_deref().unwrap_or_default();
                let existed = self
                    .state
                    .value_with(self.ids.acc, &ns(&t.window), |a| match a {
                        Some(a) => {
                            accs.push(a);
                            true
                        }
                        None => {
                            accs.push(empty);
                            false
                        }
                    });
                if !existed {
                    self.register_pane_timers(&t.window);
                }
                rows.extend_from_slice(seg);
                groups.extend(std::iter::repeat_n(g as u32, seg.len()));
            }
            let records = batch.select(&rows);
            let updated = self
                .instance
                .add_to_accumulators(accs, groups, records)
                .map_err(|e| self.guest(e))?;
            for (g, (pane, _)) in segments.iter().enumerate() {
                let t = &touched[*pane];
                self.set_key(&t.key);
                self.state
                    .value_set(self.ids.acc, &ns(&t.window), updated.get(g));
            }
        } else {
            let mut buf = Vec::new();
            for (pane, seg) in segments {
                let t = &touched[*pane];
                self.set_key(&t.key);
                let space = ns(&t.window);
                if !self.has_contents(&t.window) {
                    self.register_pane_timers(&t.window);
                }
                self.set_key(&t.key);
                for &row in seg {
                    buf.clear();
                    encode_record(batch, row as usize, &mut buf);
                    self.state.list_add(self.ids.contents, &space, &buf);
                }
            }
        }
        Ok(())
    }

    /// Fires panes, in order, a bounded number per guest call (the end of
    /// a window over millions of keys must not need a guest memory the size
    /// of all their results); clears them if the trigger purges.
    pub(super) fn fire(
        &mut self,
        panes: &[(Vec<u8>, Window)],
        out: &mut dyn Collector,
    ) -> Result<(), EngineError> {
        for chunk in panes.chunks(FIRE_CHUNK) {
            self.fire_chunk(chunk, out)?;
        }
        Ok(())
    }

    pub(super) fn fire_chunk(
        &mut self,
        panes: &[(Vec<u8>, Window)],
        out: &mut dyn Collector,
    ) -> Result<(), EngineError> {
        if panes.is_empty() {
            return Ok(());
        }
        let results = if self.incremental {
            let mut fired = Vec::with_capacity(panes.len());
            for (key, w) in panes {
                self.set_key(key);
                let acc = self
                    .state
                    .value_get(self.ids.acc, &ns(w))
                    .or_else(|| self.empty_acc.clone())
                    .unwrap_or_default();
                fired.push((pane(key, w), acc));
            }
            self.instance
                .aggregate_results(fired)
                .map_err(|e| self.guest(e))?
        } else {
            self.fire_buffered(panes)?
        };
        if self.spec.purge {
            for (key, w) in panes {
                self.set_key(key);
                let space = ns(w);
                self.state.clear(self.ids.acc, &space);
                self.state.clear(self.ids.contents, &space);
            }
        }
        out.collect(results)
    }

    /// Fires panes whose records are kept: evicts, then runs the function
    /// over what remains.
    pub(super) fn fire_buffered(
        &mut self,
        panes: &[(Vec<u8>, Window)],
    ) -> Result<RecordBatch, EngineError> {
        let mut b = BatchBuilder::default();
        let mut spans = Vec::with_capacity(panes.len());
        for (key, w) in panes {
            self.set_key(key);
            let space = ns(w);
            let mut kept: Vec<Kept> = Vec::new();
            let mut corrupt = None;
            self.state
                .list_for_each(self.ids.contents, &space, |raw| match decode_record(raw) {
                    Ok(k) => kept.push(k),
                    Err(e) => corrupt = Some(e),
                })
                .map_err(|e| self.err(e))?;
            if let Some(e) = corrupt {
                return Err(self.err(e));
            }
            let before = kept.len();
            match self.spec.evictor {
                Some(Evictor::Count(n)) if kept.len() > n => {
                    kept.drain(..kept.len() - n);
                }
                Some(Evictor::Time(keep)) => {
                    if let Some(newest) = kept.iter().map(|k| k.ts).max() {
                        let cutoff = newest - ms(keep);
                        kept.retain(|k| k.ts > cutoff);
                    }
                }
                _ => {}
            }
            if kept.len() != before {
                self.state.list_set(
                    self.ids.contents,
                    &space,
                    kept.iter().map(|k| k.raw.as_slice()),
                );
            }
            let first = b.len() as u32;
            for k in &kept {
                b.push_with_headers(
                    key,
                    &k.value,
                    k.ts,
                    k.headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())),
                );
            }
            spans.push((pane(key, w), first, kept.len() as u32));
        }
        let records = b.finish();
        if self.instance.kind() == OperatorKind::ProcessWindow {
            return self
                .instance
                .process_windows(spans, records)
                .map_err(|e| self.guest(e));
        }
        // An aggregate over kept records (an evictor is set): fold each
        // pane's records into a fresh accumulator, then take the results.
        let empty = self.empty_acc.clone().unwrap_or_default();
        let mut accs = BytesColumn::new();
        let mut groups = Vec::with_capacity(records.len());
        for (g, (_, _, count)) in spans.iter().enumerate() {
            accs.push(&empty);
            groups.extend(std::iter::repeat_n(g as u32, *count as usize));
        }
        let accs = self
            .instance
            .add_to_accumulators(accs, groups, records)
            .map_err(|e| self.guest(e))?;
        let fired = spans
            .into_iter()
            .enumerate()
            .map(|(g, (p, _, _))| (p, accs.get(g).to_vec()))
            .collect();
        self.instance
            .aggregate_results(fired)
            .map_err(|e| self.guest(e))
    }

    /// Fires the timers of one domain due at `time`: trigger firings first
    /// (one guest call for all panes), then cleanups; repeated while firing
    /// sets new due timers (continuous triggers).
    pub(super) fn on_timers(
        &mut self,
        event: bool,
        time: i64,
        out: &mut dyn Collector,
    ) -> Result<(), EngineError> {
        loop {
            let mut fires: Vec<(Vec<u8>, Window)> = Vec::new();
            let mut cleanups: Vec<(i64, Vec<u8>, Window)> = Vec::new();
            // Panes cleaned up at an earlier time of this pass: their later
            // timers were deleted by the cleanup (as Flink's `clear` does).
            // Only a continuous trigger sets timers after the cleanup's.
            let track = self.continuous();
            let mut cleaned: std::collections::HashSet<(Vec<u8>, Window)> =
                std::collections::HashSet::new();
            while let Some((ts, key, space)) = self.state.pop_due_timer(event, time) {
                let w = window_of(&space);
                if track && cleaned.contains(&(key.clone(), w)) {
                    continue;
                }
                self.set_key(&key);
                let fire = match (self.spec.trigger, event) {
                    (Trigger::EventTime, true) | (Trigger::ProcessingTime, false) => {
                        ts == w.max_timestamp()
                    }
                    (Trigger::ContinuousEventTime { interval }, true)
                    | (Trigger::ContinuousProcessingTime { interval }, false) => {
                        let at = decode_i64(self.state.value_get(self.ids.fire_at, &space));
                        let periodic = at == Some(ts);
                        if periodic {
                            let next = ts.saturating_add(ms(interval).max(1));
                            if self.ending {
                                self.state.clear(self.ids.fire_at, &space);
                            } else {
                                self.state
                                    .value_set(self.ids.fire_at, &space, &encode_i64(next));
                                if event {
                                    self.state.register_timer(true, next, &space);
                                } else {
                                    self.state.register_timer(false, next, &space);
                                }
                            }
                        }
                        let at_end =
                            matches!(self.spec.trigger, Trigger::ContinuousEventTime { .. })
                                && ts == w.max_timestamp();
                        periodic || at_end
                    }
                    _ => false,
                };
                // A pane with nothing in it (purged) does not fire.
                if fire && self.has_contents(&w) {
                    fires.push((key.clone(), w));
                }
                if event == self.event_time() && ts == self.cleanup_at(&w) {
                    if track {
                        cleaned.insert((key.clone(), w));
                    }
                    cleanups.push((ts, key, w));
                }
            }
            if fires.is_empty() && cleanups.is_empty() {
                return Ok(());
            }
            self.fire(&fires, out)?;
            for (ts, key, w) in cleanups {
                self.clear_pane(&key, &w, Some((event, ts)));
                if self.spec.assigner.is_merging() {
                    let mut sessions = decode_windows(self.state.value_get(self.ids.sessions, b""));
                    sessions.retain(|s| *s != w);
                    if sessions.is_empty() {
                        self.state.clear(self.ids.sessions, b"");
                    } else {
                        self.state
                            .value_set(self.ids.sessions, b"", &encode_windows(&sessions));
                    }
                }
            }
        }
    }

    /// Whether the current key's pane `w` holds anything.
    pub(super) fn has_contents(&mut self, w: &Window) -> bool {
        let space = ns(w);
        if self.incremental {
            self.state.value_with(self.ids.acc, &space, |a| a.is_some())
        } else {
            let mut any = false;
            let _ = self
                .state
                .list_for_each(self.ids.contents, &space, |_| any = true);
            any
        }
    }
}
