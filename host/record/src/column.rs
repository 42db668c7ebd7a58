//! Flat columns of byte strings and of headers.

/// A column or header list from untrusted code that breaks its layout.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ColumnError {
    /// Not one offset more than rows.
    #[error("has {offsets} offsets for {rows} rows (expected {})", rows + 1)]
    OffsetCount {
        /// Offsets given.
        offsets: usize,
        /// Rows expected.
        rows: usize,
    },
    /// The first offset is not 0.
    #[error("first offset is {0}, not 0")]
    FirstOffset(u32),
    /// Offsets go back at this row.
    #[error("offsets decrease at row {0}")]
    Decreasing(usize),
    /// The last offset is not the data's length.
    #[error("last offset is {end} but the data has {bytes} bytes")]
    End {
        /// The last offset.
        end: usize,
        /// The data's length.
        bytes: usize,
    },
    /// Header entries with no row offsets.
    #[error("has header entries but no row offsets")]
    EntriesWithoutRows,
    /// Not one row offset more than rows.
    #[error("has {offsets} row offsets for {rows} rows")]
    RowOffsetCount {
        /// Row offsets given.
        offsets: usize,
        /// Rows expected.
        rows: usize,
    },
    /// The header names column is malformed.
    #[error("names {0}")]
    Names(Box<ColumnError>),
    /// The header values column is malformed.
    #[error("values {0}")]
    Values(Box<ColumnError>),
    /// Row offsets that do not split the entries into rows.
    #[error("row offsets are not a partition of the header entries")]
    NotAPartition,
}

/// A column of variable-length byte strings: one buffer plus `rows + 1`
/// offsets, the layout of the WIT `bytes-column` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BytesColumn {
    /// All values back to back.
    pub data: Vec<u8>,
    /// Row boundaries into `data`: `rows + 1` entries, starting at 0.
    pub offsets: Vec<u32>,
}

impl Default for BytesColumn {
    fn default() -> Self {
        Self::new()
    }
}

impl BytesColumn {
    /// An empty column (zero rows).
    pub fn new() -> Self {
        Self {
            data: Vec::new(),
            offsets: vec![0],
        }
    }

    /// An empty column with room for `rows` values of `bytes` bytes in total.
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Self {
            data: Vec::with_capacity(bytes),
            offsets,
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Whether the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of row `i`.
    ///
    /// # Panics
    /// If `i` is out of range or the offsets are not valid; a column that came
    /// from a guest is checked with [`BytesColumn::validate`] first.
    #[inline]
    pub fn get(&self, i: usize) -> &[u8] {
        &self.data[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// Appends one value.
    #[inline]
    pub fn push(&mut self, value: &[u8]) {
        self.data.extend_from_slice(value);
        self.offsets.push(self.data.len() as u32);
    }

    /// Iterates over the values.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        (0..self.len()).map(move |i| self.get(i))
    }

    /// Checks the invariants a column received from untrusted code must hold:
    /// offsets start at 0, never decrease and end at `data.len()`, and the
    /// column has `rows` rows. Returns a description of the first violation.
    pub fn validate(&self, rows: usize) -> Result<(), ColumnError> {
        if self.offsets.len() != rows + 1 {
            return Err(ColumnError::OffsetCount {
                offsets: self.offsets.len(),
                rows,
            });
        }
        if self.offsets[0] != 0 {
            return Err(ColumnError::FirstOffset(self.offsets[0]));
        }
        if let Some(w) = self.offsets.windows(2).position(|w| w[1] < w[0]) {
            return Err(ColumnError::Decreasing(w));
        }
        let end = *self.offsets.last().unwrap_or(&0) as usize;
        if end != self.data.len() {
            return Err(ColumnError::End {
                end,
                bytes: self.data.len(),
            });
        }
        Ok(())
    }

    /// Appends the rows of `other` selected by `rows` (in that order).
    pub fn extend_from_rows(&mut self, other: &BytesColumn, rows: &[u32]) {
        for &r in rows {
            self.push(other.get(r as usize));
        }
    }
}

/// Headers of the rows of a batch, flattened as in the WIT `headers` record.
///
/// `row_offsets` is empty when no row has headers, so batches without headers
/// carry no per-row cost for them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    /// `rows + 1` boundaries into the header entries, or empty for "none".
    pub row_offsets: Vec<u32>,
    /// Header names.
    pub names: BytesColumn,
    /// Header values.
    pub values: BytesColumn,
}

impl Headers {
    /// Whether no row has any header.
    pub fn is_none(&self) -> bool {
        self.row_offsets.is_empty()
    }

    /// The headers of row `i` as (name, value) pairs.
    pub fn row(&self, i: usize) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let range = if self.row_offsets.is_empty() {
            0..0
        } else {
            self.row_offsets[i] as usize..self.row_offsets[i + 1] as usize
        };
        range.map(move |h| (self.names.get(h), self.values.get(h)))
    }

    /// Appends row headers for a batch being built with `rows_before` rows
    /// already present; materializes the offsets on first use.
    pub(crate) fn push_row<'a>(
        &mut self,
        rows_before: usize,
        headers: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) {
        let mut any = false;
        for (name, value) in headers {
            if self.row_offsets.is_empty() {
                self.row_offsets = vec![0; rows_before + 1];
            }
            self.names.push(name);
            self.values.push(value);
            any = true;
        }
        if any || !self.row_offsets.is_empty() {
            self.row_offsets.push(self.names.len() as u32);
        }
    }

    /// Checks the invariants headers from untrusted code must hold.
    pub fn validate(&self, rows: usize) -> Result<(), ColumnError> {
        if self.row_offsets.is_empty() {
            return if self.names.is_empty() && self.values.is_empty() {
                Ok(())
            } else {
                Err(ColumnError::EntriesWithoutRows)
            };
        }
        if self.row_offsets.len() != rows + 1 {
            return Err(ColumnError::RowOffsetCount {
                offsets: self.row_offsets.len(),
                rows,
            });
        }
        let entries = self.names.len();
        self.names
            .validate(entries)
            .map_err(|e| ColumnError::Names(Box::new(e)))?;
        self.values
            .validate(entries)
            .map_err(|e| ColumnError::Values(Box::new(e)))?;
        if self.row_offsets[0] != 0
            || self.row_offsets.windows(2).any(|w| w[1] < w[0])
            || *self.row_offsets.last().unwrap_or(&0) as usize != entries
        {
            return Err(ColumnError::NotAPartition);
        }
        Ok(())
    }
}
