//! Borrowed views of an input batch.

/// A column of byte strings: one buffer plus `rows + 1` offsets.
#[derive(Clone, Copy, Debug)]
pub struct BytesColumnRef<'a> {
    data: &'a [u8],
    offsets: &'a [u32],
}

impl<'a> BytesColumnRef<'a> {
    /// A view over `data` with `offsets` (`rows + 1` entries, starting at 0).
    pub fn new(data: &'a [u8], offsets: &'a [u32]) -> Self {
        Self { data, offsets }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Whether the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of row `i`, or an empty slice if the host sent offsets out of
    /// range (it does not).
    #[inline]
    pub fn get(&self, i: usize) -> &'a [u8] {
        let (start, end) = (self.offsets[i] as usize, self.offsets[i + 1] as usize);
        self.data.get(start..end).unwrap_or_default()
    }

    /// The whole buffer, for operators that work on columns.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The offsets, for operators that work on columns.
    pub fn offsets(&self) -> &'a [u32] {
        self.offsets
    }
}

/// A batch of input records, as columns.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    /// Record keys (empty when a record has no key).
    pub keys: BytesColumnRef<'a>,
    /// Record values.
    pub values: BytesColumnRef<'a>,
    /// Event timestamps, milliseconds since the Unix epoch.
    pub timestamps: &'a [i64],
    /// Header row offsets (empty when no row has headers).
    pub header_rows: &'a [u32],
    /// Header names.
    pub header_names: BytesColumnRef<'a>,
    /// Header values.
    pub header_values: BytesColumnRef<'a>,
}

impl<'a> Batch<'a> {
    /// A view over the columns of a batch laid out as the WIT `batch` type:
    /// each byte column as `(data, offsets)`, the header rows' offsets (empty
    /// when no row has headers), header names and values.
    pub fn from_columns(
        keys: (&'a [u8], &'a [u32]),
        values: (&'a [u8], &'a [u32]),
        timestamps: &'a [i64],
        header_rows: &'a [u32],
        header_names: (&'a [u8], &'a [u32]),
        header_values: (&'a [u8], &'a [u32]),
    ) -> Self {
        Self {
            keys: BytesColumnRef::new(keys.0, keys.1),
            values: BytesColumnRef::new(values.0, values.1),
            timestamps,
            header_rows,
            header_names: BytesColumnRef::new(header_names.0, header_names.1),
            header_values: BytesColumnRef::new(header_values.0, header_values.1),
        }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// Record `row`.
    #[inline]
    pub fn record(&self, row: usize) -> Record<'a> {
        Record { batch: *self, row }
    }

    /// Iterates over the records.
    pub fn records(&self) -> impl ExactSizeIterator<Item = Record<'a>> + 'a {
        let batch = *self;
        (0..batch.len()).map(move |row| Record { batch, row })
    }
}

/// One input record.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    batch: Batch<'a>,
    row: usize,
}

impl<'a> Record<'a> {
    /// Position of the record in its batch.
    #[inline]
    pub fn index(&self) -> usize {
        self.row
    }

    /// Key bytes (empty when the record has no key).
    #[inline]
    pub fn key(&self) -> &'a [u8] {
        self.batch.keys.get(self.row)
    }

    /// Value bytes.
    #[inline]
    pub fn value(&self) -> &'a [u8] {
        self.batch.values.get(self.row)
    }

    /// Value as UTF-8 text.
    ///
    /// # Errors
    /// [`crate::Error::InvalidRecord`] if the value is not UTF-8.
    pub fn value_str(&self) -> Result<&'a str, crate::Error> {
        std::str::from_utf8(self.value())
            .map_err(|e| crate::Error::InvalidRecord(format!("value is not UTF-8: {e}")))
    }

    /// Event timestamp in milliseconds.
    #[inline]
    pub fn timestamp(&self) -> i64 {
        self.batch.timestamps[self.row]
    }

    /// Headers as (name, value) pairs.
    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let b = self.batch;
        let range = if b.header_rows.is_empty() {
            0..0
        } else {
            b.header_rows[self.row] as usize..b.header_rows[self.row + 1] as usize
        };
        range.map(move |h| (b.header_names.get(h), b.header_values.get(h)))
    }

    /// The first header called `name`, if any.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// Parses the value as JSON into `T` (which may borrow from the value).
    ///
    /// # Errors
    /// [`crate::Error::InvalidRecord`] naming the record's position.
    #[cfg(feature = "json")]
    #[inline]
    pub fn json<T: serde::Deserialize<'a>>(&self) -> Result<T, crate::Error> {
        serde_json::from_slice(self.value()).map_err(|e| {
            crate::Error::InvalidRecord(format!(
                "record {}: value is not the expected JSON: {e}",
                self.row
            ))
        })
    }
}
