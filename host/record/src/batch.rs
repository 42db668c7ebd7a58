//! The record batch, its row view and its builder.

use crate::column::{BytesColumn, Headers};

/// A batch of records in columnar form: the unit the engine moves, the sandbox
/// hands to guests, and sources and sinks produce and consume.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordBatch {
    /// Record keys (empty for "no key").
    pub keys: BytesColumn,
    /// Record values.
    pub values: BytesColumn,
    /// Event timestamps, milliseconds since the Unix epoch.
    pub timestamps: Vec<i64>,
    /// Record headers.
    pub headers: Headers,
}

/// One record of a batch, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct RecordRef<'a> {
    batch: &'a RecordBatch,
    row: usize,
}

impl<'a> RecordRef<'a> {
    /// The key bytes (empty when the record has no key).
    pub fn key(&self) -> &'a [u8] {
        self.batch.keys.get(self.row)
    }
    /// The value bytes.
    pub fn value(&self) -> &'a [u8] {
        self.batch.values.get(self.row)
    }
    /// The event timestamp in milliseconds.
    pub fn timestamp(&self) -> i64 {
        self.batch.timestamps[self.row]
    }
    /// The headers as (name, value) pairs.
    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        self.batch.headers.row(self.row)
    }
}

/// A batch whose columns disagree with each other.
#[derive(Debug, thiserror::Error)]
#[error("invalid batch: {0}")]
pub struct BatchError(pub String);

impl RecordBatch {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// Whether the batch holds no records.
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// Total bytes of keys and values, a measure of the batch's size.
    pub fn payload_bytes(&self) -> usize {
        self.keys.data.len() + self.values.data.len()
    }

    /// Record `row`.
    pub fn record(&self, row: usize) -> RecordRef<'_> {
        RecordRef { batch: self, row }
    }

    /// Iterates over the records.
    pub fn records(&self) -> impl ExactSizeIterator<Item = RecordRef<'_>> + '_ {
        (0..self.len()).map(move |row| RecordRef { batch: self, row })
    }

    /// Checks that all columns are consistent with each other.
    pub fn validate(&self) -> Result<(), BatchError> {
        let rows = self.len();
        self.keys
            .validate(rows)
            .map_err(|e| BatchError(format!("keys {e}")))?;
        self.values
            .validate(rows)
            .map_err(|e| BatchError(format!("values {e}")))?;
        self.headers
            .validate(rows)
            .map_err(|e| BatchError(format!("headers {e}")))
    }

    /// A new batch with the rows selected by `rows` (indices, any order,
    /// repeats allowed). Returns `self` unchanged, without copying, when the
    /// selection is every row in order.
    pub fn take(self, rows: &[u32]) -> RecordBatch {
        if rows.len() == self.len() && rows.iter().enumerate().all(|(i, &r)| r as usize == i) {
            return self;
        }
        self.select(rows)
    }

    /// Copies the rows selected by `rows` into a new batch.
    pub fn select(&self, rows: &[u32]) -> RecordBatch {
        let mut out = BatchBuilder::with_capacity(rows.len(), self.payload_bytes());
        for &r in rows {
            let rec = self.record(r as usize);
            out.push_with_headers(rec.key(), rec.value(), rec.timestamp(), rec.headers());
        }
        out.finish()
    }
}

/// Builds a [`RecordBatch`] one record at a time.
#[derive(Debug, Default)]
pub struct BatchBuilder {
    batch: RecordBatch,
}

impl BatchBuilder {
    /// A builder with room for `rows` records of `bytes` payload bytes.
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        Self {
            batch: RecordBatch {
                keys: BytesColumn::with_capacity(rows, bytes / 8),
                values: BytesColumn::with_capacity(rows, bytes),
                timestamps: Vec::with_capacity(rows),
                headers: Headers::default(),
            },
        }
    }

    /// Number of records pushed so far.
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    /// Whether nothing was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// Bytes of keys and values pushed so far.
    pub fn payload_bytes(&self) -> usize {
        self.batch.payload_bytes()
    }

    /// Appends a record without headers.
    #[inline]
    pub fn push(&mut self, key: &[u8], value: &[u8], timestamp: i64) {
        self.push_with_headers(key, value, timestamp, std::iter::empty())
    }

    /// Appends a record without headers whose value `write` appends straight
    /// into the value buffer (no intermediate allocation).
    #[inline]
    pub fn push_with(&mut self, key: &[u8], timestamp: i64, write: impl FnOnce(&mut Vec<u8>)) {
        self.push_with_headers_value(key, timestamp, std::iter::empty(), write)
    }

    /// Like [`BatchBuilder::push_with`], with headers.
    pub fn push_with_headers_value<'h>(
        &mut self,
        key: &[u8],
        timestamp: i64,
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        let rows_before = self.batch.len();
        self.batch.headers.push_row(rows_before, headers);
        self.batch.keys.push(key);
        write(&mut self.batch.values.data);
        let end = self.batch.values.data.len() as u32;
        self.batch.values.offsets.push(end);
        self.batch.timestamps.push(timestamp);
    }

    /// Appends a record with headers.
    pub fn push_with_headers<'h>(
        &mut self,
        key: &[u8],
        value: &[u8],
        timestamp: i64,
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
    ) {
        let rows_before = self.batch.len();
        self.batch.headers.push_row(rows_before, headers);
        self.batch.keys.push(key);
        self.batch.values.push(value);
        self.batch.timestamps.push(timestamp);
    }

    /// The finished batch; the builder is left empty.
    pub fn finish(&mut self) -> RecordBatch {
        std::mem::take(&mut self.batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_round_trips_rows_and_headers() {
        let mut b = BatchBuilder::default();
        b.push(b"k1", b"v1", 10);
        b.push_with_headers(b"", b"v2", 20, [(&b"h"[..], &b"x"[..])]);
        b.push(b"k3", b"", 30);
        let batch = b.finish();
        batch.validate().unwrap();
        assert_eq!(batch.len(), 3);
        assert_eq!(batch.record(1).key(), b"");
        assert_eq!(batch.record(1).value(), b"v2");
        assert_eq!(batch.record(2).timestamp(), 30);
        assert_eq!(batch.record(0).headers().count(), 0);
        let h: Vec<_> = batch.record(1).headers().collect();
        assert_eq!(h, vec![(&b"h"[..], &b"x"[..])]);
        assert_eq!(batch.headers.row_offsets, vec![0, 0, 1, 1]);
    }

    #[test]
    fn batches_without_headers_carry_no_header_offsets() {
        let mut b = BatchBuilder::default();
        b.push(b"a", b"b", 1);
        b.push(b"c", b"d", 2);
        assert!(b.finish().headers.row_offsets.is_empty());
    }

    #[test]
    fn take_keeps_identity_without_copy_and_selects_otherwise() {
        let mut b = BatchBuilder::default();
        for i in 0..4 {
            b.push(format!("k{i}").as_bytes(), format!("v{i}").as_bytes(), i);
        }
        let batch = b.finish();
        let ptr = batch.values.data.as_ptr();
        let same = batch.clone().take(&[0, 1, 2, 3]);
        assert_eq!(same, batch);
        let moved = batch.clone();
        let moved_ptr = moved.values.data.as_ptr();
        assert_eq!(moved.take(&[0, 1, 2, 3]).values.data.as_ptr(), moved_ptr);
        assert_ne!(ptr, moved_ptr);
        let some = batch.take(&[1, 3]);
        assert_eq!(some.len(), 2);
        assert_eq!(some.record(1).value(), b"v3");
        assert_eq!(some.timestamps, vec![1, 3]);
    }

    #[test]
    fn validate_names_the_broken_column() {
        let mut b = BatchBuilder::default();
        b.push(b"a", b"b", 1);
        let mut batch = b.finish();
        batch.values.offsets[1] = 7;
        let err = batch.validate().unwrap_err().to_string();
        assert!(err.contains("values"), "{err}");
        assert!(err.contains("last offset is 7"), "{err}");
    }
}
