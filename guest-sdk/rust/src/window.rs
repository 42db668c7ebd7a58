//! Window functions: the host windows the stream, you compute per window.

use crate::{Batch, Config, Error, Record};

/// A window `[start, end)` in milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    /// First millisecond in the window.
    pub start: i64,
    /// First millisecond after the window.
    pub end: i64,
}

/// Collects the result rows of a window function. Each row's key is the
/// pane's key and its timestamp the window's last millisecond, unless set;
/// the host adds `window.start` and `window.end` headers.
#[derive(Debug, Default)]
pub struct Results {
    pub(crate) parents: Vec<u32>,
    pub(crate) data: Vec<u8>,
    pub(crate) offsets: Vec<u32>,
    pub(crate) timestamps: Vec<i64>,
    pub(crate) explicit_timestamps: bool,
    pub(crate) current: u32,
    /// The default timestamp of the current pane: its window's last ms.
    pub(crate) current_ts: i64,
}

impl Results {
    pub(crate) fn new() -> Self {
        Self {
            offsets: vec![0],
            ..Self::default()
        }
    }

    /// Emits a result row with `value`.
    pub fn emit(&mut self, value: &[u8]) {
        self.data.extend_from_slice(value);
        self.push_row(None);
    }

    /// Emits a result row with `value` and an explicit event timestamp.
    pub fn emit_at(&mut self, value: &[u8], timestamp: i64) {
        self.data.extend_from_slice(value);
        self.push_row(Some(timestamp));
    }

    /// Emits a result row whose value is `value` as JSON.
    ///
    /// # Errors
    /// A value serde cannot serialize.
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        serde_json::to_writer(&mut self.data, value)
            .map_err(|e| Error::failed(format!("cannot write JSON: {e}")))?;
        self.push_row(None);
        Ok(())
    }

    fn push_row(&mut self, ts: Option<i64>) {
        self.offsets.push(self.data.len() as u32);
        self.parents.push(self.current);
        self.explicit_timestamps |= ts.is_some();
        self.timestamps.push(ts.unwrap_or(self.current_ts));
    }
}

/// An incremental window aggregate, Flink's `AggregateFunction` (world
/// `aggregate-operator`). Export it with [`crate::export_aggregate!`].
///
/// The host keeps one accumulator per key and window, as bytes (through
/// [`crate::Codec`]), and calls `add` once per batch for all of them.
pub trait Aggregate: Sized + 'static {
    /// The accumulator.
    type Acc: crate::Codec;

    /// Creates the operator from its configuration.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the configuration is unusable.
    fn init(config: &Config) -> Result<Self, Error>;

    /// The accumulator of an empty window.
    fn create_accumulator(&mut self) -> Self::Acc;

    /// Folds one record into an accumulator.
    ///
    /// # Errors
    /// Any [`Error`]; it fails the job.
    fn add(&mut self, acc: &mut Self::Acc, record: &Record<'_>) -> Result<(), Error>;

    /// Merges `other` into `acc` (when session windows merge).
    ///
    /// # Errors
    /// Any [`Error`]; it fails the job.
    fn merge(&mut self, acc: &mut Self::Acc, other: Self::Acc) -> Result<(), Error>;

    /// Emits the result of a fired window (usually one row).
    ///
    /// # Errors
    /// Any [`Error`]; it fails the job.
    fn result(
        &mut self,
        key: &[u8],
        window: Window,
        acc: &Self::Acc,
        out: &mut Results,
    ) -> Result<(), Error>;
}

/// The records of one fired window.
#[derive(Clone, Copy, Debug)]
pub struct PaneRecords<'a> {
    batch: Batch<'a>,
    first: usize,
    count: usize,
}

impl<'a> PaneRecords<'a> {
    pub(crate) fn new(batch: Batch<'a>, first: usize, count: usize) -> Self {
        Self {
            batch,
            first,
            count,
        }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The records, in arrival order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Record<'a>> + 'a {
        let batch = self.batch;
        (self.first..self.first + self.count).map(move |r| batch.record(r))
    }
}

/// A full window function, Flink's `ProcessWindowFunction` (world
/// `process-window-operator`): sees every record of a fired window at once.
/// Export it with [`crate::export_process_window!`].
pub trait ProcessWindow: Sized + 'static {
    /// Creates the operator from its configuration.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the configuration is unusable.
    fn init(config: &Config) -> Result<Self, Error>;

    /// Emits the results of one fired window of `key`.
    ///
    /// # Errors
    /// Any [`Error`]; it fails the job.
    fn process(
        &mut self,
        key: &[u8],
        window: Window,
        records: PaneRecords<'_>,
        out: &mut Results,
    ) -> Result<(), Error>;
}
