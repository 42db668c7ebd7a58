//! Building output rows.
//!
//! Every output row has a *parent*, the input record it came from. Only the
//! value must be written; the key, timestamp and headers are the parent's
//! unless set. A column no row sets is not sent back to the host at all.

use crate::Batch;

type Column = (Vec<u8>, Vec<u32>);
/// The headers of one row.
type RowHeaders = Vec<(Vec<u8>, Vec<u8>)>;

/// The output rows of one batch, being built.
pub struct Output<'a> {
    input: Batch<'a>,
    parents: Vec<u32>,
    values: Vec<u8>,
    value_offsets: Vec<u32>,
    /// Per-row key overrides (ranges into `key_data`), once any row sets one.
    key_overrides: Option<Vec<Option<(u32, u32)>>>,
    key_data: Vec<u8>,
    /// All timestamps, once any row sets one.
    timestamps: Option<Vec<i64>>,
    /// All headers per row, once any row adds one.
    headers: Option<Vec<RowHeaders>>,
    open: bool,
}

/// The finished columns of an [`Output`], as they cross the boundary.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OutputColumns {
    /// Parent of each row; empty when row `i`'s parent is input row `i`.
    pub parents: Vec<u32>,
    /// Values.
    pub values: Column,
    /// Keys, if any row set one.
    pub keys: Option<Column>,
    /// Timestamps, if any row set one.
    pub timestamps: Option<Vec<i64>>,
    /// Headers (row offsets, names, values), if any row added one.
    pub headers: Option<(Vec<u32>, Column, Column)>,
}

impl<'a> Output<'a> {
    /// An empty output for rows derived from `input`.
    pub fn new(input: Batch<'a>) -> Self {
        Self {
            input,
            parents: Vec::with_capacity(input.len()),
            values: Vec::with_capacity(input.values.data().len()),
            value_offsets: {
                let mut v = Vec::with_capacity(input.len() + 1);
                v.push(0);
                v
            },
            key_overrides: None,
            key_data: Vec::new(),
            timestamps: None,
            headers: None,
            open: false,
        }
    }

    /// Starts a new output row derived from input row `parent`. Rows must be
    /// emitted in non-decreasing parent order (the input order is kept).
    #[inline]
    pub fn emit(&mut self, parent: usize) -> RowWriter<'_, 'a> {
        self.close_row();
        let p = parent as u32;
        self.parents.push(p);
        if let Some(k) = &mut self.key_overrides {
            k.push(None);
        }
        if let Some(t) = &mut self.timestamps {
            t.push(self.input.timestamps[parent]);
        }
        if let Some(h) = &mut self.headers {
            h.push(parent_headers(&self.input, parent));
        }
        self.open = true;
        RowWriter { out: self }
    }

    /// Number of rows emitted so far.
    pub fn len(&self) -> usize {
        self.parents.len()
    }

    /// Whether no row was emitted.
    pub fn is_empty(&self) -> bool {
        self.parents.is_empty()
    }

    #[inline]
    fn close_row(&mut self) {
        if self.open {
            self.value_offsets.push(self.values.len() as u32);
            self.open = false;
        }
    }

    #[inline]
    fn row_start(&self) -> usize {
        *self.value_offsets.last().unwrap_or(&0) as usize
    }

    /// The finished columns.
    pub fn finish(mut self) -> OutputColumns {
        self.close_row();
        let rows = self.parents.len();
        let keys = self.key_overrides.as_ref().map(|overrides| {
            let mut data = Vec::new();
            let mut offsets = Vec::with_capacity(rows + 1);
            offsets.push(0);
            for (i, o) in overrides.iter().enumerate() {
                match o {
                    Some((s, e)) => {
                        data.extend_from_slice(&self.key_data[*s as usize..*e as usize])
                    }
                    None => data.extend_from_slice(self.input.keys.get(self.parents[i] as usize)),
                }
                offsets.push(data.len() as u32);
            }
            (data, offsets)
        });
        let headers = self.headers.take().map(|rows_h| {
            let mut row_offsets = Vec::with_capacity(rows + 1);
            row_offsets.push(0);
            let (mut names, mut values) = ((Vec::new(), vec![0]), (Vec::new(), vec![0]));
            let mut n = 0u32;
            for row in rows_h {
                for (name, value) in row {
                    names.0.extend_from_slice(&name);
                    names.1.push(names.0.len() as u32);
                    values.0.extend_from_slice(&value);
                    values.1.push(values.0.len() as u32);
                    n += 1;
                }
                row_offsets.push(n);
            }
            (row_offsets, names, values)
        });
        let identity = rows == self.input.len()
            && self
                .parents
                .iter()
                .enumerate()
                .all(|(i, &p)| p as usize == i);
        OutputColumns {
            parents: if identity { Vec::new() } else { self.parents },
            values: (self.values, self.value_offsets),
            keys,
            timestamps: self.timestamps,
            headers,
        }
    }
}

fn parent_headers(input: &Batch<'_>, parent: usize) -> RowHeaders {
    input
        .record(parent)
        .headers()
        .map(|(n, v)| (n.to_vec(), v.to_vec()))
        .collect()
}

/// The row being written. The value starts empty; write it with
/// [`RowWriter::value`], [`RowWriter::json`] or `std::io::Write`.
pub struct RowWriter<'o, 'a> {
    out: &'o mut Output<'a>,
}

impl RowWriter<'_, '_> {
    /// Sets the value, replacing what was written so far.
    #[inline]
    pub fn value(&mut self, bytes: &[u8]) -> &mut Self {
        let start = self.out.row_start();
        self.out.values.truncate(start);
        self.out.values.extend_from_slice(bytes);
        self
    }

    /// Serializes `value` as JSON into the value, replacing what was written.
    ///
    /// # Errors
    /// [`crate::Error::Failed`] if `value` cannot be serialized.
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<&mut Self, crate::Error> {
        let start = self.out.row_start();
        self.out.values.truncate(start);
        serde_json::to_writer(&mut self.out.values, value)
            .map_err(|e| crate::Error::Failed(format!("cannot serialize output value: {e}")))?;
        Ok(self)
    }

    /// Sets the key (otherwise the parent's).
    #[inline]
    pub fn key(&mut self, key: &[u8]) -> &mut Self {
        let rows = self.out.parents.len();
        let overrides = self
            .out
            .key_overrides
            .get_or_insert_with(|| vec![None; rows]);
        let s = self.out.key_data.len() as u32;
        self.out.key_data.extend_from_slice(key);
        let e = self.out.key_data.len() as u32;
        if let Some(last) = overrides.last_mut() {
            *last = Some((s, e));
        }
        self
    }

    /// Sets the event timestamp in milliseconds (otherwise the parent's).
    pub fn timestamp(&mut self, millis: i64) -> &mut Self {
        let out = &mut *self.out;
        let ts = out.timestamps.get_or_insert_with(|| {
            out.parents
                .iter()
                .map(|&p| out.input.timestamps[p as usize])
                .collect()
        });
        if let Some(last) = ts.last_mut() {
            *last = millis;
        }
        self
    }

    /// Adds a header to the parent's headers.
    pub fn header(&mut self, name: &[u8], value: &[u8]) -> &mut Self {
        let out = &mut *self.out;
        let h = out.headers.get_or_insert_with(|| {
            out.parents
                .iter()
                .map(|&p| parent_headers(&out.input, p as usize))
                .collect()
        });
        if let Some(last) = h.last_mut() {
            last.push((name.to_vec(), value.to_vec()));
        }
        self
    }
}

impl std::io::Write for RowWriter<'_, '_> {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.values.extend_from_slice(buf);
        Ok(buf.len())
    }

    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.out.values.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BytesColumnRef;

    fn with_input<R>(f: impl FnOnce(Batch<'_>) -> R) -> R {
        let keys = b"ab".to_vec();
        let key_offsets = vec![0, 1, 2];
        let values = b"xy".to_vec();
        let ts = vec![10, 20];
        f(Batch {
            keys: BytesColumnRef::new(&keys, &key_offsets),
            values: BytesColumnRef::new(&values, &key_offsets),
            timestamps: &ts,
            header_rows: &[],
            header_names: BytesColumnRef::new(&[], &[0]),
            header_values: BytesColumnRef::new(&[], &[0]),
        })
    }

    #[test]
    fn identity_rows_send_only_values() {
        let cols = with_input(|b| {
            let mut out = Output::new(b);
            out.emit(0).value(b"one");
            out.emit(1).value(b"two");
            out.finish()
        });
        assert!(cols.parents.is_empty());
        assert_eq!(cols.values, (b"onetwo".to_vec(), vec![0, 3, 6]));
        assert!(cols.keys.is_none() && cols.timestamps.is_none() && cols.headers.is_none());
    }

    #[test]
    fn overrides_materialize_columns_from_parents() {
        let cols = with_input(|b| {
            let mut out = Output::new(b);
            out.emit(0).value(b"p");
            out.emit(0).value(b"q").key(b"K").timestamp(99);
            out.emit(1).value(b"r").header(b"h", b"v");
            out.finish()
        });
        assert_eq!(cols.parents, vec![0, 0, 1]);
        assert_eq!(cols.keys, Some((b"aKb".to_vec(), vec![0, 1, 2, 3])));
        assert_eq!(cols.timestamps, Some(vec![10, 99, 20]));
        let (rows, names, values) = cols.headers.unwrap();
        assert_eq!(rows, vec![0, 0, 0, 1]);
        assert_eq!(names.0, b"h");
        assert_eq!(values.0, b"v");
    }
}
