//! What a guest returns at the Wasm boundary, as hostile as it likes:
//! columns with offsets out of range or out of order, wrong lengths, parents
//! past the input. The host builds a valid batch or an error; never a panic,
//! never a batch that does not validate.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use weir_record::{BatchBuilder, BytesColumn, Headers};
use weir_sandbox::WindowPane;
use weir_sandbox::lift::{self, Output};

#[derive(Arbitrary, Debug)]
struct Column {
    data: Vec<u8>,
    offsets: Vec<u32>,
}

impl From<Column> for BytesColumn {
    fn from(c: Column) -> Self {
        BytesColumn {
            data: c.data,
            offsets: c.offsets,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct GuestHeaders {
    row_offsets: Vec<u32>,
    names: Column,
    values: Column,
}

#[derive(Arbitrary, Debug)]
struct Case {
    /// The input batch (the host builds it, so it is valid).
    input: Vec<(Vec<u8>, Vec<u8>, i64)>,
    parents: Vec<u32>,
    values: Column,
    keys: Option<Column>,
    timestamps: Option<Vec<i64>>,
    headers: Option<GuestHeaders>,
    one_to_one: bool,
    selection: Vec<u32>,
    panes: Vec<(Vec<u8>, i64, i64)>,
}

fuzz_target!(|case: Case| {
    let mut b = BatchBuilder::default();
    for (k, v, t) in &case.input {
        b.push(k, v, *t);
    }
    let input = b.finish();
    let out = Output {
        parents: case.parents,
        values: case.values.into(),
        keys: case.keys.map(Into::into),
        timestamps: case.timestamps,
        headers: case.headers.map(|h| Headers {
            row_offsets: h.row_offsets,
            names: h.names.into(),
            values: h.values.into(),
        }),
    };
    if let Ok(batch) = lift::output(input.clone(), out.clone(), case.one_to_one) {
        batch.validate().expect("a lifted output validates");
        if case.one_to_one {
            assert!(batch.is_empty() || batch.len() == input.len());
        }
    }
    if let Ok(batch) = lift::selection(input.clone(), &case.selection) {
        batch.validate().expect("a selection validates");
        assert_eq!(batch.len(), case.selection.len());
    }
    let panes: Vec<WindowPane> = case
        .panes
        .into_iter()
        .map(|(key, start, end)| WindowPane { key, start, end })
        .collect();
    if let Ok(batch) = lift::window(&panes, out) {
        batch.validate().expect("a window result validates");
    }
});
