//! What the host makes of a guest's results, callable without a guest: for
//! the fuzz targets (`tests/fuzz`) and tests. Everything here takes columns
//! exactly as a hostile guest may return them (offsets out of range or out
//! of order, wrong lengths) and either builds a valid batch or says what
//! was wrong; it never panics.

use weir_record::{BytesColumn, Headers, RecordBatch};

use crate::bindings::{self, wit};
use crate::error::OutputError;
use crate::instance::WindowPane;

/// A map or flat-map result, as the `output` record of `wit/types.wit`.
#[derive(Clone, Debug, Default)]
pub struct Output {
    /// Input row of each output row.
    pub parents: Vec<u32>,
    /// Values.
    pub values: BytesColumn,
    /// Keys (`None`: the parents').
    pub keys: Option<BytesColumn>,
    /// Timestamps (`None`: the parents').
    pub timestamps: Option<Vec<i64>>,
    /// Headers (`None`: the parents').
    pub headers: Option<Headers>,
}

impl Output {
    fn into_wit(self) -> wit::Output {
        wit::Output {
            parents: self.parents,
            values: bindings::column_to_wit(self.values),
            keys: self.keys.map(bindings::column_to_wit),
            timestamps: self.timestamps,
            headers: self.headers.map(bindings::headers_to_wit),
        }
    }
}

/// The batch a map (`one_to_one`) or flat-map call's output makes of
/// `input`.
///
/// # Errors
/// An output that is inconsistent with itself or with the input.
pub fn output(
    input: RecordBatch,
    out: Output,
    one_to_one: bool,
) -> Result<RecordBatch, OutputError> {
    bindings::assemble_output(input, out.into_wit(), one_to_one)
}

/// The batch a filter's selection makes of `input`.
///
/// # Errors
/// Rows not strictly increasing or out of range.
pub fn selection(input: RecordBatch, rows: &[u32]) -> Result<RecordBatch, OutputError> {
    crate::instance::select(input, rows)
}

/// The batch a window function's output makes for `panes`.
///
/// # Errors
/// An output inconsistent with itself or with the panes.
pub fn window(panes: &[WindowPane], out: Output) -> Result<RecordBatch, OutputError> {
    crate::instance::window_output(panes, out.into_wit())
}
