//! What a keyed-process guest reaches through its imports: the keyed state
//! and timers of its current key, provided by the engine.
//!
//! The sandbox does not know how state is stored; the engine hands each
//! keyed instance a [`KeyedContext`] (its state backend view, timer service
//! and clocks) and the imports of `weir:udf/keyed-state` and `weir:udf/timers`
//! forward to it. A failing state call (a name used for two kinds of state, a
//! backend error) stops the guest call and is reported as
//! [`crate::GuestFailure::Host`].

use std::any::Any;

use crate::bindings::keyed::weir::udf::{keyed_state, timers};
use crate::guest::GuestState;

/// Which clock a timer belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimeDomain {
    /// Fires when the watermark reaches it.
    EventTime,
    /// Fires when the processing-time clock reaches it.
    ProcessingTime,
}

/// The entries of a map state: (user key, value) pairs.
pub type MapEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// Why a state or timer call failed, as the host reports it (the engine's
/// state error, kept with its type); its message is what the guest's
/// failure names.
pub type StateCallError = Box<dyn std::error::Error + Send + Sync>;

/// Keyed state and timers of the current key, as the host provides them.
/// Every method acts on the key set by the engine before the guest call.
#[allow(missing_docs)]
pub trait KeyedContext: Send + 'static {
    fn value_get(&mut self, name: &str) -> Result<Option<Vec<u8>>, StateCallError>;
    fn value_set(&mut self, name: &str, value: Vec<u8>) -> Result<(), StateCallError>;
    fn list_get(&mut self, name: &str) -> Result<Vec<Vec<u8>>, StateCallError>;
    fn list_add(&mut self, name: &str, value: Vec<u8>) -> Result<(), StateCallError>;
    fn list_set(&mut self, name: &str, values: Vec<Vec<u8>>) -> Result<(), StateCallError>;
    fn map_get(&mut self, name: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateCallError>;
    fn map_put(&mut self, name: &str, key: Vec<u8>, value: Vec<u8>) -> Result<(), StateCallError>;
    fn map_remove(&mut self, name: &str, key: &[u8]) -> Result<(), StateCallError>;
    fn map_entries(&mut self, name: &str) -> Result<MapEntries, StateCallError>;
    fn clear(&mut self, name: &str) -> Result<(), StateCallError>;
    fn register_timer(&mut self, domain: TimeDomain, timestamp: i64) -> Result<(), StateCallError>;
    fn delete_timer(&mut self, domain: TimeDomain, timestamp: i64) -> Result<(), StateCallError>;
    fn current_watermark(&self) -> i64;
    fn current_processing_time(&self) -> i64;
    /// For the engine to reach its concrete type again.
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// For the engine to read its concrete type.
    fn as_any(&self) -> &dyn Any;
}

impl GuestState {
    fn keyed(&mut self) -> wasmtime::Result<&mut dyn KeyedContext> {
        match self.keyed.as_deref_mut() {
            Some(k) => Ok(k),
            None => Err(wasmtime::format_err!(
                "keyed state used outside a keyed operator"
            )),
        }
    }

    /// Runs a state call; a failure is remembered (for the error message) and
    /// stops the guest.
    fn state<T>(
        &mut self,
        f: impl FnOnce(&mut dyn KeyedContext) -> Result<T, StateCallError>,
    ) -> wasmtime::Result<T> {
        let r = f(self.keyed()?);
        r.map_err(|e| {
            let message = e.to_string();
            let err = wasmtime::format_err!("{message}");
            self.host_failure = Some(message);
            err
        })
    }
}

type R<T> = wasmtime::Result<T>;

impl keyed_state::Host for GuestState {
    fn value_get(&mut self, name: String) -> R<Option<Vec<u8>>> {
        self.state(|k| k.value_get(&name))
    }
    fn value_set(&mut self, name: String, value: Vec<u8>) -> R<()> {
        self.state(|k| k.value_set(&name, value))
    }
    fn list_get(&mut self, name: String) -> R<Vec<Vec<u8>>> {
        self.state(|k| k.list_get(&name))
    }
    fn list_add(&mut self, name: String, value: Vec<u8>) -> R<()> {
        self.state(|k| k.list_add(&name, value))
    }
    fn list_set(&mut self, name: String, values: Vec<Vec<u8>>) -> R<()> {
        self.state(|k| k.list_set(&name, values))
    }
    fn map_get(&mut self, name: String, key: Vec<u8>) -> R<Option<Vec<u8>>> {
        self.state(|k| k.map_get(&name, &key))
    }
    fn map_put(&mut self, name: String, key: Vec<u8>, value: Vec<u8>) -> R<()> {
        self.state(|k| k.map_put(&name, key, value))
    }
    fn map_remove(&mut self, name: String, key: Vec<u8>) -> R<()> {
        self.state(|k| k.map_remove(&name, &key))
    }
    fn map_entries(&mut self, name: String) -> R<Vec<(Vec<u8>, Vec<u8>)>> {
        self.state(|k| k.map_entries(&name))
    }
    fn clear(&mut self, name: String) -> R<()> {
        self.state(|k| k.clear(&name))
    }
}

impl timers::Host for GuestState {
    fn register_event_timer(&mut self, timestamp: i64) -> R<()> {
        self.state(|k| k.register_timer(TimeDomain::EventTime, timestamp))
    }
    fn register_processing_timer(&mut self, timestamp: i64) -> R<()> {
        self.state(|k| k.register_timer(TimeDomain::ProcessingTime, timestamp))
    }
    fn delete_event_timer(&mut self, timestamp: i64) -> R<()> {
        self.state(|k| k.delete_timer(TimeDomain::EventTime, timestamp))
    }
    fn delete_processing_timer(&mut self, timestamp: i64) -> R<()> {
        self.state(|k| k.delete_timer(TimeDomain::ProcessingTime, timestamp))
    }
    fn current_watermark(&mut self) -> R<i64> {
        Ok(self.keyed()?.current_watermark())
    }
    fn current_processing_time(&mut self) -> R<i64> {
        Ok(self.keyed()?.current_processing_time())
    }
}
