//! The operator traits, one per world of `wit/stateless.wit`.
//!
//! The host creates one instance of your type per subtask by calling `init`
//! once, then calls the batch method once per batch, one batch at a time.

use crate::{Batch, Config, Error, Output, Record};

/// A filter keeps some records and drops the others, unchanged
/// (world `filter-operator`). Export it with [`crate::export_filter!`].
pub trait Filter: Sized + 'static {
    /// Creates the operator from its configuration.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the configuration is unusable.
    fn init(config: &Config) -> Result<Self, Error>;

    /// Whether to keep `record`.
    ///
    /// # Errors
    /// Any [`Error`]; it fails the job.
    fn keep(&mut self, record: &Record<'_>) -> Result<bool, Error>;

    /// Pushes the indices of the rows to keep, in increasing order. The
    /// default calls [`Filter::keep`] on every record.
    ///
    /// # Errors
    /// As [`Filter::keep`].
    fn filter_batch(&mut self, batch: &Batch<'_>, keep: &mut Vec<u32>) -> Result<(), Error> {
        for record in batch.records() {
            if self.keep(&record)? {
                keep.push(record.index() as u32);
            }
        }
        Ok(())
    }
}

/// A map turns each record into exactly one record (world `map-operator`).
/// Export it with [`crate::export_map!`].
pub trait Map: Sized + 'static {
    /// Creates the operator from its configuration.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the configuration is unusable.
    fn init(config: &Config) -> Result<Self, Error>;

    /// Writes the output record for `record` into `row`. The value starts
    /// empty; the key, timestamp and headers are the input's unless set.
    ///
    /// # Errors
    /// Any [`Error`]; it fails the job.
    fn map(&mut self, record: &Record<'_>, row: &mut crate::RowWriter<'_, '_>)
    -> Result<(), Error>;

    /// Maps a whole batch. The default calls [`Map::map`] on every record.
    ///
    /// # Errors
    /// As [`Map::map`].
    fn map_batch(&mut self, batch: &Batch<'_>, out: &mut Output<'_>) -> Result<(), Error> {
        for record in batch.records() {
            let mut row = out.emit(record.index());
            self.map(&record, &mut row)?;
        }
        Ok(())
    }
}

/// A flat-map turns each record into zero or more records (world
/// `flat-map-operator`). Export it with [`crate::export_flat_map!`].
pub trait FlatMap: Sized + 'static {
    /// Creates the operator from its configuration.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the configuration is unusable.
    fn init(config: &Config) -> Result<Self, Error>;

    /// Emits the records produced from `record` with `out.emit(record.index())`.
    ///
    /// # Errors
    /// Any [`Error`]; it fails the job.
    fn flat_map(&mut self, record: &Record<'_>, out: &mut Output<'_>) -> Result<(), Error>;

    /// Flat-maps a whole batch. The default calls [`FlatMap::flat_map`] on
    /// every record.
    ///
    /// # Errors
    /// As [`FlatMap::flat_map`].
    fn flat_map_batch(&mut self, batch: &Batch<'_>, out: &mut Output<'_>) -> Result<(), Error> {
        for record in batch.records() {
            self.flat_map(&record, out)?;
        }
        Ok(())
    }
}
