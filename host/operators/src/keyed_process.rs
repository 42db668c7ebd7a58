//! The keyed process operator: Flink's `KeyedProcessFunction` in a Wasm
//! component.
//!
//! For each input batch the host groups rows by key (keeping their order) and
//! calls the guest once per key; during the call the guest's state and timer
//! imports act on that key. Timers fire when the watermark (event time) or the
//! job's clock (processing time) reaches them, one call per key with all of
//! its due timers in time order. What the guest emits carries the current key
//! and goes to the main output or to a declared side output.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use weir_record::{BatchBuilder, RecordBatch};
use weir_sandbox::{
    Emitted, InstanceLimits, KeyedContext, OperatorInstance, OperatorKind, OperatorModule,
    StateCallError, TimeDomain,
};
use weir_state::{KeyedState, StateError, StateId, StateKind};

use weir_engine::BoxError;
use weir_engine::EngineError;
use weir_engine::NodeRole;
use weir_engine::checkpoint::StateWriter;
use weir_engine::key_group::key_group;
use weir_engine::swap::{ModuleHandle, SwapError};
use weir_engine::time::Clock;
use weir_engine::watermark::Watermark;
use weir_engine::{Collector, Operator, OperatorFactory, SubtaskInfo};

/// Builds a keyed process operator per subtask.
pub struct KeyedProcessFactory {
    module: Arc<OperatorModule>,
    config: Vec<(String, String)>,
    limits: InstanceLimits,
    /// Declared side outputs; side output `i` is port `i + 1`.
    side_outputs: Vec<String>,
    /// Time-to-live by state name (`*` for all).
    state_ttl: Vec<(String, std::time::Duration)>,
    writer: StateWriter,
}

impl KeyedProcessFactory {
    /// A keyed process operator running `module`, which may emit to
    /// `side_outputs`.
    ///
    /// # Errors
    /// A module of another kind.
    pub fn new(
        module: Arc<OperatorModule>,
        config: Vec<(String, String)>,
        limits: InstanceLimits,
        side_outputs: Vec<String>,
    ) -> Result<Self, crate::WrongKind> {
        if module.kind() != OperatorKind::KeyedProcess {
            return Err(crate::WrongKind {
                module: module.name().to_string(),
                kind: module.kind(),
                needs: "a keyed process function needs a keyed-process module",
            });
        }
        Ok(Self {
            writer: crate::state_writer(&module, None),
            module,
            config,
            limits,
            side_outputs,
            state_ttl: Vec::new(),
        })
    }

    /// Names the module's version in the state it writes (its registry
    /// version; `None` keeps the digest), for a later version's migration.
    #[must_use]
    pub fn with_version(mut self, version: Option<&str>) -> Self {
        self.writer = crate::state_writer(&self.module, version);
        self
    }

    /// Gives keyed states a time-to-live, by name (`*` for every state
    /// without its own): see [`weir_state::KeyedState::set_ttl`].
    #[must_use]
    pub fn with_state_ttl(mut self, ttl: Vec<(String, std::time::Duration)>) -> Self {
        self.state_ttl = ttl;
        self
    }
}

impl OperatorFactory for KeyedProcessFactory {
    fn create(&self, info: &SubtaskInfo) -> Result<Box<dyn Operator>, BoxError> {
        let label = crate::instance_label(info);
        let mut instance = self.module.instantiate(label, self.limits, &self.config)?;
        let stamped = |name: &str| self.state_ttl.iter().any(|(n, _)| n == name || n == "*");
        let mut migration = crate::Migration {
            writer: &self.writer,
            instance: &mut instance,
            guest_state: &|_| true,
            stamped: &stamped,
        };
        let mut state = weir_engine::operators::keyed::open_keyed(info, Some(&mut migration))?;
        for (name, ttl) in &self.state_ttl {
            state.set_ttl(name, *ttl);
        }
        instance.set_keyed_context(Box::new(KeyedHost {
            state,
            watermark: i64::MIN,
            clock: info.clock.clone(),
            max_parallelism: info.max_parallelism,
        }));
        Ok(Box::new(KeyedProcess {
            instance,
            side_outputs: self.side_outputs.clone(),
            node: info.node.clone(),
            subtask: info.subtask,
            writer: self.writer.clone(),
            respawn: crate::Respawn {
                label: crate::instance_label(info),
                limits: self.limits,
                config: self.config.clone(),
            },
            state_ttl: self.state_ttl.clone(),
        }))
    }
}

/// The state and timers behind a guest's imports.
struct KeyedHost {
    state: KeyedState,
    watermark: i64,
    clock: Arc<dyn Clock>,
    max_parallelism: u32,
}

impl KeyedHost {
    fn set_key(&mut self, key: &[u8]) {
        let kg = key_group(key, self.max_parallelism) as u16;
        self.state.set_current_key(key, kg);
        // State TTL is measured in processing time.
        self.state.set_time(self.clock.now_ms());
    }

    fn id(&mut self, name: &str, kind: StateKind) -> Result<StateId, StateError> {
        self.state.register(name, kind)
    }
}

impl KeyedContext for KeyedHost {
    fn value_get(&mut self, name: &str) -> Result<Option<Vec<u8>>, StateCallError> {
        let id = self.id(name, StateKind::Value)?;
        Ok(self.state.value_get(id, b""))
    }
    fn value_set(&mut self, name: &str, value: Vec<u8>) -> Result<(), StateCallError> {
        let id = self.id(name, StateKind::Value)?;
        self.state.value_set(id, b"", &value);
        Ok(())
    }
    fn list_get(&mut self, name: &str) -> Result<Vec<Vec<u8>>, StateCallError> {
        let id = self.id(name, StateKind::List)?;
        Ok(self.state.list_get(id, b"")?)
    }
    fn list_add(&mut self, name: &str, value: Vec<u8>) -> Result<(), StateCallError> {
        let id = self.id(name, StateKind::List)?;
        self.state.list_add(id, b"", &value);
        Ok(())
    }
    fn list_set(&mut self, name: &str, values: Vec<Vec<u8>>) -> Result<(), StateCallError> {
        let id = self.id(name, StateKind::List)?;
        self.state
            .list_set(id, b"", values.iter().map(Vec::as_slice));
        Ok(())
    }
    fn map_get(&mut self, name: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateCallError> {
        let id = self.id(name, StateKind::Map)?;
        Ok(self.state.map_get(id, b"", key))
    }
    fn map_put(&mut self, name: &str, key: Vec<u8>, value: Vec<u8>) -> Result<(), StateCallError> {
        let id = self.id(name, StateKind::Map)?;
        self.state.map_put(id, b"", &key, &value);
        Ok(())
    }
    fn map_remove(&mut self, name: &str, key: &[u8]) -> Result<(), StateCallError> {
        let id = self.id(name, StateKind::Map)?;
        self.state.map_remove(id, b"", key);
        Ok(())
    }
    fn map_entries(&mut self, name: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StateCallError> {
        let id = self.id(name, StateKind::Map)?;
        Ok(self.state.map_entries(id, b""))
    }
    fn clear(&mut self, name: &str) -> Result<(), StateCallError> {
        // Clearing a name never used is a no-op, and does not fix its kind.
        if let Some(id) = self.state.lookup(name) {
            self.state.clear(id, b"");
        }
        Ok(())
    }
    fn register_timer(&mut self, domain: TimeDomain, timestamp: i64) -> Result<(), StateCallError> {
        self.state
            .register_timer(domain == TimeDomain::EventTime, timestamp, b"");
        Ok(())
    }
    fn delete_timer(&mut self, domain: TimeDomain, timestamp: i64) -> Result<(), StateCallError> {
        self.state
            .delete_timer(domain == TimeDomain::EventTime, timestamp, b"");
        Ok(())
    }
    fn current_watermark(&self) -> i64 {
        self.watermark
    }
    fn current_processing_time(&self) -> i64 {
        self.clock.now_ms()
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct KeyedProcess {
    instance: OperatorInstance,
    side_outputs: Vec<String>,
    node: String,
    subtask: usize,
    /// Recorded with the state in snapshots.
    writer: StateWriter,
    /// How a new instance is made (a hot swap).
    respawn: crate::Respawn,
    state_ttl: Vec<(String, std::time::Duration)>,
}

/// Output batches being built for one input batch or timer round.
struct Outputs {
    main: BatchBuilder,
    side: Vec<BatchBuilder>,
}

impl KeyedProcess {
    fn err(&self, e: impl Into<BoxError>) -> EngineError {
        EngineError::Node {
            role: NodeRole::Operator,
            node: self.node.clone(),
            subtask: self.subtask,
            source: e.into(),
        }
    }

    fn host(&mut self) -> Result<&mut KeyedHost, EngineError> {
        let (node, subtask) = (&self.node, self.subtask);
        self.instance
            .keyed_context()
            .and_then(|c| c.as_any_mut().downcast_mut::<KeyedHost>())
            .ok_or_else(|| EngineError::Node {
                role: NodeRole::Operator,
                node: node.clone(),
                subtask,
                source: "internal error: the keyed context is missing".into(),
            })
    }

    fn outputs(&self) -> Outputs {
        Outputs {
            main: BatchBuilder::default(),
            side: self
                .side_outputs
                .iter()
                .map(|_| BatchBuilder::default())
                .collect(),
        }
    }

    /// Routes what one call emitted; every row carries `key`.
    fn route(&self, key: &[u8], e: Emitted, outs: &mut Outputs) -> Result<(), EngineError> {
        // Map the call's side-output names to ports once.
        let mut ports = Vec::with_capacity(e.side_outputs.len());
        for name in &e.side_outputs {
            match self.side_outputs.iter().position(|s| s == name) {
                Some(i) => ports.push(i),
                None => {
                    return Err(self.err(format!(
                        "module `{}` emitted to side output `{name}`, which the job does not \
                         declare (declared: {}); add it to the operator's `side_outputs`",
                        self.instance.module().name(),
                        if self.side_outputs.is_empty() {
                            "none".to_string()
                        } else {
                            self.side_outputs.join(", ")
                        }
                    )));
                }
            }
        }
        for row in 0..e.values.len() {
            let value = e.values.get(row);
            let ts = e.timestamps[row];
            match e.outputs.get(row).copied().unwrap_or(0) {
                0 => outs.main.push(key, value, ts),
                o => outs.side[ports[o as usize - 1]].push(key, value, ts),
            }
        }
        Ok(())
    }

    fn flush(&self, mut outs: Outputs, out: &mut dyn Collector) -> Result<(), EngineError> {
        out.collect(outs.main.finish())?;
        for (i, mut b) in outs.side.into_iter().enumerate() {
            let batch = b.finish();
            if !batch.is_empty() {
                out.collect_side(i + 1, batch)?;
            }
        }
        Ok(())
    }

    /// Fires the timers of `domain` due at `time`, a call per key, until no
    /// timer is due (callbacks may set new ones).
    fn fire_timers(
        &mut self,
        domain: TimeDomain,
        time: i64,
        out: &mut dyn Collector,
    ) -> Result<(), EngineError> {
        loop {
            let mut order: Vec<Vec<u8>> = Vec::new();
            let mut due: HashMap<Vec<u8>, Vec<(i64, TimeDomain)>> = HashMap::new();
            {
                let host = self.host()?;
                let event = domain == TimeDomain::EventTime;
                while let Some((ts, key, _)) = host.state.pop_due_timer(event, time) {
                    let e = due.entry(key.clone()).or_insert_with(|| {
                        order.push(key);
                        Vec::new()
                    });
                    e.push((ts, domain));
                }
            }
            if order.is_empty() {
                return Ok(());
            }
            let mut outs = self.outputs();
            for key in order {
                self.host()?.set_key(&key);
                let timers = &due[&key];
                let e = self
                    .instance
                    .keyed_on_timer(&key, timers)
                    .map_err(|e| self.err(Box::new(e)))?;
                self.route(&key, e, &mut outs)?;
            }
            self.flush(outs, out)?;
        }
    }
}

impl Operator for KeyedProcess {
    fn process_batch(
        &mut self,
        batch: RecordBatch,
        out: &mut dyn Collector,
    ) -> Result<(), EngineError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut order: Vec<&[u8]> = Vec::new();
        let mut rows: HashMap<&[u8], Vec<u32>> = HashMap::new();
        for row in 0..batch.len() {
            let key = batch.keys.get(row);
            rows.entry(key)
                .or_insert_with(|| {
                    order.push(key);
                    Vec::new()
                })
                .push(row as u32);
        }
        let mut outs = self.outputs();
        for key in order {
            self.host()?.set_key(key);
            let records = if rows.len() == 1 {
                batch.clone()
            } else {
                batch.select(&rows[key])
            };
            let e = self
                .instance
                .keyed_process(key, records)
                .map_err(|e| self.err(Box::new(e)))?;
            self.route(key, e, &mut outs)?;
        }
        self.flush(outs, out)
    }

    fn on_watermark(
        &mut self,
        watermark: Watermark,
        out: &mut dyn Collector,
    ) -> Result<(), EngineError> {
        self.host()?.watermark = watermark.0;
        self.fire_timers(TimeDomain::EventTime, watermark.0, out)
    }

    fn next_processing_time(&self) -> Option<i64> {
        self.instance
            .keyed_context_ref()
            .and_then(|c| c.as_any().downcast_ref::<KeyedHost>())
            .and_then(|h| h.state.next_timer(false))
    }

    fn on_processing_time(&mut self, now: i64, out: &mut dyn Collector) -> Result<(), EngineError> {
        self.fire_timers(TimeDomain::ProcessingTime, now, out)
    }

    fn snapshot(&mut self) -> Result<weir_engine::checkpoint::PendingState, EngineError> {
        let writer = self.writer.clone();
        let host = self.host()?;
        let pending = weir_engine::operators::keyed::freeze_keyed(&mut host.state, &writer);
        pending.map_err(|e| self.err(e))
    }

    fn swap_module(&mut self, module: &ModuleHandle, version: &str) -> Result<(), SwapError> {
        let (mut instance, writer) =
            self.respawn
                .instance(module, version, OperatorKind::KeyedProcess)?;
        let no_state = || SwapError::NoKeyedState;
        let mut context = self.instance.take_keyed_context().ok_or_else(no_state)?;
        let host = context
            .as_any_mut()
            .downcast_mut::<KeyedHost>()
            .ok_or_else(no_state)?;
        let ttl = &self.state_ttl;
        let stamped = |name: &str| ttl.iter().any(|(n, _)| n == name || n == "*");
        let migration = crate::Migration {
            writer: &writer,
            instance: &mut instance,
            guest_state: &|_| true,
            stamped: &stamped,
        };
        let migrated = crate::migrate_live(&mut host.state, &self.writer, migration);
        if let Err(e) = migrated {
            // The old instance goes on (the subtask fails with the error).
            self.instance.set_keyed_context(context);
            return Err(e);
        }
        instance.set_keyed_context(context);
        self.instance = instance;
        self.writer = writer;
        Ok(())
    }
}
