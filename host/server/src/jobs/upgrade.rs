//! Upgrading an operator of a running job (hot swap): a savepoint, the new
//! module checked against the old state, the swap, then a probation that
//! rolls back on failure.

use super::*;

/// How a run on probation ended.
enum Verdict {
    /// It took its records or its time without failing.
    Passed,
    /// It failed (and has stopped), for the reason recorded in the job.
    Failed(String),
}

/// Watches a run on probation until it passes or fails and has stopped.
fn watch_probation(live: &LiveJob, operator: &str, probation: Probation, baseline: u64) -> Verdict {
    let started = std::time::Instant::now();
    loop {
        // `finished` first: a failure is recorded before the run's thread
        // ends, so a finished run's failure is always seen.
        let finished = live.finished();
        if let Some(why) = live.probation_failure() {
            while !live.finished() {
                std::thread::sleep(Duration::from_millis(5));
            }
            return Verdict::Failed(why);
        }
        if finished && live.pass_probation() {
            // Ended on probation without failing (its input ended).
            return Verdict::Passed;
        }
        let taken = records_into(live, operator).saturating_sub(baseline);
        if (taken >= probation.records || started.elapsed() >= probation.time)
            && live.pass_probation()
        {
            return Verdict::Passed;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Records into `operator` (all subtasks) in the current run.
fn records_into(live: &LiveJob, operator: &str) -> u64 {
    live.snapshot()
        .map(|(nodes, _, _)| {
            nodes
                .iter()
                .filter(|n| n.name == operator)
                .map(|n| n.records_in)
                .sum()
        })
        .unwrap_or(0)
}

impl Server {
    /// Swaps operator `operator` of a running job to `module`
    /// (`name@version`, or `name` for the newest): checks the new version
    /// first (same kind and world, the job still builds), then takes a
    /// final savepoint, stops the job, and starts it again from the
    /// savepoint with the new module. Returns the job and the upgrade, with
    /// the pause it caused.
    ///
    /// # Errors
    /// An unknown job, operator or module, or an incompatible module: the
    /// job then keeps running untouched. A failed savepoint: likewise.
    pub fn upgrade_job(
        &self,
        tenant: &str,
        id: &str,
        operator: &str,
        module: &str,
        by: &str,
        probation: Probation,
    ) -> Result<(JobView, Upgrade), ServerError> {
        let (record, live) = self.job(tenant, id)?;
        let Some(live) = live.filter(|l| !l.finished() && record.state == JobState::Running) else {
            return Err(ServerError::FailedPrecondition(format!(
                "job `{id}` is {}, not running: nothing to upgrade",
                record.state.name()
            )));
        };
        let from = record.operators.get(operator).cloned().ok_or_else(|| {
            ServerError::NotFound(format!(
                "job `{id}` has no operator `{operator}` (it has: {})",
                record
                    .operators
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let registry = self.registry(tenant);
        let split = |m: &str| {
            let (n, v) = m.split_once('@').unwrap_or((m, ""));
            (n.to_string(), v.to_string())
        };
        let (name, version) = split(module);
        let new = registry.get(&name, &version)?;
        let (old_name, old_version) = split(&from);
        let old = registry.get(&old_name, &old_version)?;
        if new.id() == old.id() {
            return Err(ServerError::FailedPrecondition(format!(
                "operator `{operator}` of job `{id}` runs `{from}` already"
            )));
        }
        if new.kind != old.kind || new.world != old.world {
            return Err(ServerError::FailedPrecondition(format!(
                "cannot swap operator `{operator}` of job `{id}` to `{}`: it is a {} operator ({}), the running `{from}` a {} operator ({}); the job keeps running",
                new.id(),
                new.kind,
                new.world,
                old.kind,
                old.world
            )));
        }
        // The job must still build with the new module before anything
        // stops.
        let mut overrides = record.overrides.clone();
        overrides.insert(operator.to_string(), new.id());
        let rules = self.rules(tenant)?;
        let files = self.tenant_dir(tenant).join("files");
        let spec = parse(&record.job_file, &files, tenant, &rules, &overrides)?;
        let resolver = TenantModules {
            registry: self.registry(tenant),
            pinned: RefCell::new(record.modules.clone()),
        };
        let prepared = weir_job::prepare(spec, &self.inner.sandbox, &resolver).map_err(|e| {
            ServerError::InvalidArgument(format!(
                "job `{id}` with `{}`: {e}; the job keeps running",
                new.id()
            ))
        })?;
        let module = prepared
            .modules
            .iter()
            .find(|(n, _)| n == operator)
            .map(|(_, m)| m.clone())
            .ok_or_else(|| ServerError::Internal(format!("operator `{operator}` not prepared")))?;
        let stateless = matches!(
            module.kind(),
            OperatorKind::Filter | OperatorKind::Map | OperatorKind::FlatMap
        );
        let before = live.record();
        let rollback = before
            .history
            .iter()
            .any(|u| u.operator == operator && u.from == new.id());
        let mut upgrade = Upgrade {
            at_ms: now_ms(),
            operator: operator.to_string(),
            from,
            to: new.id(),
            savepoint: String::new(),
            pause_ms: 0,
            by: if by.is_empty() {
                format!("tenant {tenant}")
            } else {
                format!("{by} (tenant {tenant})")
            },
            outcome: "on probation".into(),
            reason: String::new(),
            rollback,
        };
        // From here on periodic checkpoints are held back and a failure
        // ends the run for a rollback instead of restarting it.
        live.begin_probation();
        let started = std::time::Instant::now();
        live.swaps.post(
            operator,
            weir_operators::module_handle(module),
            &new.version,
        );
        // A keyed operator swaps in place at a savepoint's barrier: the
        // savepoint keeps the old module's state for a rollback. A
        // stateless one swaps before its next batch, with no savepoint.
        let location = if stateless {
            None
        } else {
            let taken = self
                .savepoint(tenant, id, false)
                .and_then(|sp| Ok((self.savepoint_location(tenant, &sp)?, sp)));
            match taken {
                Ok((location, sp)) => {
                    upgrade.savepoint = sp;
                    Some(location)
                }
                Err(e) => {
                    live.swaps.clear(operator);
                    live.pass_probation();
                    return Err(ServerError::FailedPrecondition(format!(
                        "upgrade of `{operator}` to `{}`: {e}; the job keeps running `{}`",
                        upgrade.to, upgrade.from
                    )));
                }
            }
        };
        let subtasks = live
            .snapshot()
            .and_then(|(nodes, _, _)| {
                nodes
                    .iter()
                    .find(|n| n.name == operator)
                    .map(|n| n.parallelism)
            })
            .unwrap_or(1);
        // Keyed subtasks swap at the barrier, right after the savepoint;
        // stateless ones at their next batch (an idle one may take its
        // time: the probation's time is the most it is waited for).
        let deadline = std::time::Instant::now()
            + if stateless {
                probation.time
            } else {
                Duration::from_secs(60)
            };
        let status = loop {
            let status = live.swaps.status(operator).unwrap_or_default();
            if status.swapped >= subtasks
                || status.error.is_some()
                || live.finished()
                || std::time::Instant::now() > deadline
            {
                break status;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        upgrade.pause_ms = status.pause_us.div_ceil(1000);
        // Probation counts records the new module took.
        let baseline = records_into(&live, operator);
        tracing::info!(
            tenant,
            job = id,
            operator,
            pause_us = status.pause_us,
            swapped = status.swapped,
            total_ms = started.elapsed().as_millis() as u64,
            "upgrade: module swapped in place"
        );
        {
            // The running job's record: a restart now builds the new module.
            let mut r = live.record.lock().unwrap_or_else(PoisonError::into_inner);
            r.overrides = overrides;
            r.operators.insert(operator.to_string(), new.id());
            r.modules.insert(new.id(), new.id());
            r.history.push(upgrade.clone());
            self.inner.meta.put(&key(&["job", tenant, id]), &*r)?;
        }
        let Verdict::Failed(why) = watch_probation(&live, operator, probation, baseline) else {
            upgrade.outcome = "kept".into();
            let mut r = live.record.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(last) = r.history.last_mut() {
                *last = upgrade.clone();
            }
            self.inner.meta.put(&key(&["job", tenant, id]), &*r)?;
            drop(r);
            live.swaps.clear(operator);
            tracing::info!(tenant, job = id, operator, from = %upgrade.from, to = %upgrade.to, pause_ms = upgrade.pause_ms, "job upgraded");
            return Ok(((live.record(), Some(live)), upgrade));
        };
        // Rolled back: the previous modules, from the upgrade's savepoint
        // (or, for a stateless operator, from the latest checkpoint, taken
        // before the swap). No checkpoint completed on probation, so the
        // failed module's output was never committed.
        tracing::warn!(tenant, job = id, operator, to = %upgrade.to, "upgrade rolled back: {why}");
        upgrade.outcome = "rolled back".into();
        upgrade.reason = why;
        live.detach.store(true, Ordering::SeqCst);
        live.stop.store(true, Ordering::SeqCst);
        while !live.finished() {
            std::thread::sleep(Duration::from_millis(5));
        }
        if location.is_some() {
            // Checkpoints older than the savepoint must not win over it.
            let _ = std::fs::remove_dir_all(self.job_dir(tenant, id).join("checkpoints"));
        }
        let mut back = before;
        back.from_savepoint.clone_from(&location);
        back.state = JobState::Running;
        back.history.push(upgrade.clone());
        self.inner.meta.put(&key(&["job", tenant, id]), &back)?;
        let live = match self.start(back.clone(), location, false) {
            Ok(live) => live,
            Err(e) => {
                back.state = JobState::Failed;
                back.error = format!("rollback to `{}`: {e}", upgrade.from);
                self.inner.meta.put(&key(&["job", tenant, id]), &back)?;
                return Err(e);
            }
        };
        Ok(((live.record(), Some(live)), upgrade))
    }
}
