//! Keyed process functions: records of one key at a time, with keyed state
//! ([`crate::state`]) and timers.

use crate::__private::keyed::weir::udf::timers as host;
use crate::{Batch, Config, Error, Record};

/// Which clock a timer belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeDomain {
    /// Fires when the watermark reaches it.
    EventTime,
    /// Fires when the host's processing-time clock reaches it.
    ProcessingTime,
}

/// A timer that fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timer {
    /// Its time, ms.
    pub timestamp: i64,
    /// Its clock.
    pub domain: TimeDomain,
}

/// What a keyed call can do besides state: emit, and set timers, for the
/// current key.
#[derive(Debug)]
pub struct Context<'k> {
    key: &'k [u8],
    pub(crate) data: Vec<u8>,
    pub(crate) offsets: Vec<u32>,
    pub(crate) timestamps: Vec<i64>,
    pub(crate) outputs: Vec<u8>,
    pub(crate) side_names: Vec<String>,
}

impl<'k> Context<'k> {
    pub(crate) fn new(key: &'k [u8]) -> Self {
        Self {
            key,
            data: Vec::new(),
            offsets: vec![0],
            timestamps: Vec::new(),
            outputs: Vec::new(),
            side_names: Vec::new(),
        }
    }

    /// The current key.
    pub fn key(&self) -> &'k [u8] {
        self.key
    }

    /// The current key as UTF-8 text (lossy).
    pub fn key_str(&self) -> std::borrow::Cow<'k, str> {
        String::from_utf8_lossy(self.key)
    }

    fn push(&mut self, output: u8, timestamp: i64) {
        self.offsets.push(self.data.len() as u32);
        self.timestamps.push(timestamp);
        self.outputs.push(output);
    }

    fn side_index(&mut self, name: &str) -> u8 {
        match self.side_names.iter().position(|n| n == name) {
            Some(i) => i as u8 + 1,
            None => {
                self.side_names.push(name.to_string());
                self.side_names.len() as u8
            }
        }
    }

    /// Emits `value` to the main output with event time `timestamp`.
    pub fn emit(&mut self, value: &[u8], timestamp: i64) {
        self.data.extend_from_slice(value);
        self.push(0, timestamp);
    }

    /// Emits `value` to side output `name` (declared in the job file's
    /// `side_outputs`).
    pub fn emit_side(&mut self, name: &str, value: &[u8], timestamp: i64) {
        let o = self.side_index(name);
        self.data.extend_from_slice(value);
        self.push(o, timestamp);
    }

    /// Emits `value` as JSON to the main output.
    ///
    /// # Errors
    /// A value serde cannot serialize.
    #[cfg(feature = "json")]
    pub fn emit_json<T: serde::Serialize + ?Sized>(
        &mut self,
        value: &T,
        timestamp: i64,
    ) -> Result<(), Error> {
        serde_json::to_writer(&mut self.data, value)
            .map_err(|e| Error::failed(format!("cannot write JSON: {e}")))?;
        self.push(0, timestamp);
        Ok(())
    }

    /// Emits `value` as JSON to side output `name`.
    ///
    /// # Errors
    /// A value serde cannot serialize.
    #[cfg(feature = "json")]
    pub fn emit_side_json<T: serde::Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
        timestamp: i64,
    ) -> Result<(), Error> {
        let o = self.side_index(name);
        serde_json::to_writer(&mut self.data, value)
            .map_err(|e| Error::failed(format!("cannot write JSON: {e}")))?;
        self.push(o, timestamp);
        Ok(())
    }

    /// Calls `on_timer` for this key once the watermark reaches `timestamp`.
    pub fn register_event_timer(&self, timestamp: i64) {
        host::register_event_timer(timestamp);
    }

    /// Calls `on_timer` for this key once processing time reaches
    /// `timestamp`.
    pub fn register_processing_timer(&self, timestamp: i64) {
        host::register_processing_timer(timestamp);
    }

    /// Removes an event-time timer of this key.
    pub fn delete_event_timer(&self, timestamp: i64) {
        host::delete_event_timer(timestamp);
    }

    /// Removes a processing-time timer of this key.
    pub fn delete_processing_timer(&self, timestamp: i64) {
        host::delete_processing_timer(timestamp);
    }

    /// The operator's current watermark (`i64::MIN` before the first).
    pub fn current_watermark(&self) -> i64 {
        host::current_watermark()
    }

    /// The host's processing time, ms since the Unix epoch.
    pub fn current_processing_time(&self) -> i64 {
        host::current_processing_time()
    }
}

/// A keyed process function, Flink's `KeyedProcessFunction` (world
/// `keyed-process-operator`). Export it with
/// [`crate::export_keyed_process!`].
///
/// The host calls it once per key per batch with that key's records, and
/// once per key with the timers that fired. Keep state in
/// [`crate::state`] handles, not in fields: fields are only a cache.
pub trait KeyedProcess: Sized + 'static {
    /// Creates the operator from its configuration.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the configuration is unusable.
    fn init(config: &Config) -> Result<Self, Error>;

    /// Processes one record of the current key.
    ///
    /// # Errors
    /// Any [`Error`]; it fails the job.
    fn process(&mut self, ctx: &mut Context<'_>, record: &Record<'_>) -> Result<(), Error>;

    /// Processes the records of the current key, in order. The default calls
    /// [`KeyedProcess::process`] for each.
    ///
    /// # Errors
    /// As [`KeyedProcess::process`].
    fn process_batch(&mut self, ctx: &mut Context<'_>, batch: &Batch<'_>) -> Result<(), Error> {
        for r in batch.records() {
            self.process(ctx, &r)?;
        }
        Ok(())
    }

    /// A timer of the current key fired. The default does nothing.
    ///
    /// # Errors
    /// Any [`Error`]; it fails the job.
    fn on_timer(&mut self, ctx: &mut Context<'_>, timer: Timer) -> Result<(), Error> {
        let _ = (ctx, timer);
        Ok(())
    }
}
