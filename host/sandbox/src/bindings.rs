//! Host bindings generated from `wit/`, and the moves between them and
//! [`RecordBatch`].
//!
//! Each operator world gets its own `bindgen!`; the shared interfaces
//! (`types`, `log`) are generated once, in the filter world, and reused by the
//! others through `with`, so there is one Rust type per WIT type.

use crate::error::OutputError;
use weir_record::{BytesColumn, Headers, RecordBatch};

/// The filter world, and the shared `types` and `log` interfaces.
pub(crate) mod filter {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "filter-operator",
    });
}

/// The map world.
pub(crate) mod map {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "map-operator",
        with: {
            "weir:udf/types": super::filter::weir::udf::types,
            "weir:udf/log": super::filter::weir::udf::log,
        },
    });
}

/// The flat-map world.
pub(crate) mod flat_map {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "flat-map-operator",
        with: {
            "weir:udf/types": super::filter::weir::udf::types,
            "weir:udf/log": super::filter::weir::udf::log,
        },
    });
}

/// The aggregate world, and the shared `window-types` interface.
pub(crate) mod aggregate {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "aggregate-operator",
        with: {
            "weir:udf/types": super::filter::weir::udf::types,
            "weir:udf/log": super::filter::weir::udf::log,
        },
    });
}

/// The process-window world.
pub(crate) mod process_window {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "process-window-operator",
        with: {
            "weir:udf/types": super::filter::weir::udf::types,
            "weir:udf/log": super::filter::weir::udf::log,
            "weir:udf/window-types": super::aggregate::weir::udf::window_types,
        },
    });
}

/// The state-migration export, which a stateful module may add to its
/// operator world.
pub(crate) mod migration {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "state-migrator",
        with: {
            "weir:udf/types": super::filter::weir::udf::types,
            "weir:udf/log": super::filter::weir::udf::log,
        },
    });
}

/// The keyed-process world, with the keyed-state and timers imports. State
/// calls can fail (a name used for two kinds of state, a backend error), so
/// they are trappable: the failure stops the guest call and is reported.
pub(crate) mod keyed {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "keyed-process-operator",
        imports: { default: trappable },
        with: {
            "weir:udf/types": super::filter::weir::udf::types,
            "weir:udf/log": super::filter::weir::udf::log,
        },
    });
}

pub(crate) use aggregate::weir::udf::window_types::Window as WitWindow;
pub(crate) use filter::weir::udf::log;
pub(crate) use filter::weir::udf::types as wit;

/// Moves the columns of `batch` into the WIT type; no bytes are copied.
pub(crate) fn batch_to_wit(batch: RecordBatch) -> wit::Batch {
    wit::Batch {
        keys: column_to_wit(batch.keys),
        values: column_to_wit(batch.values),
        timestamps: batch.timestamps,
        headers: headers_to_wit(batch.headers),
    }
}

/// Moves the columns back; no bytes are copied.
pub(crate) fn batch_from_wit(batch: wit::Batch) -> RecordBatch {
    RecordBatch {
        keys: column_from_wit(batch.keys),
        values: column_from_wit(batch.values),
        timestamps: batch.timestamps,
        headers: headers_from_wit(batch.headers),
    }
}

pub(crate) fn column_to_wit(c: BytesColumn) -> wit::BytesColumn {
    wit::BytesColumn {
        data: c.data,
        offsets: c.offsets,
    }
}

pub(crate) fn column_from_wit(c: wit::BytesColumn) -> BytesColumn {
    BytesColumn {
        data: c.data,
        offsets: c.offsets,
    }
}

pub(crate) fn headers_to_wit(h: Headers) -> wit::Headers {
    wit::Headers {
        row_offsets: h.row_offsets,
        names: column_to_wit(h.names),
        values: column_to_wit(h.values),
    }
}

pub(crate) fn headers_from_wit(h: wit::Headers) -> Headers {
    Headers {
        row_offsets: h.row_offsets,
        names: column_from_wit(h.names),
        values: column_from_wit(h.values),
    }
}

/// The text of a guest's error value.
pub(crate) fn error_message(e: &wit::Error) -> String {
    match e {
        wit::Error::InvalidConfig(m) => format!("invalid config: {m}"),
        wit::Error::InvalidRecord(m) => format!("invalid record: {m}"),
        wit::Error::Failed(m) => m.clone(),
    }
}

/// Builds the output batch of a map or flat-map from what the guest returned
/// and the input it was given, enforcing the contract of `output` in
/// `wit/types.wit`. Columns the guest left out are taken from the parents;
/// when the parents are the identity they are moved, not copied.
pub(crate) fn assemble_output(
    input: RecordBatch,
    out: wit::Output,
    one_to_one: bool,
) -> Result<RecordBatch, OutputError> {
    let values = column_from_wit(out.values);
    let rows = values.len();
    values
        .validate(rows)
        .map_err(OutputError::column("values"))?;
    let in_rows = input.len();
    // No rows at all (a flat-map that dropped a whole batch) needs no
    // parents either: that is not the identity.
    let identity = out.parents.is_empty() && rows != 0;
    if identity {
        if rows != in_rows {
            return Err(OutputError::RowsWithoutParents {
                rows,
                output: "output",
                inputs: in_rows,
                input: "input rows",
            });
        }
    } else {
        if out.parents.len() != rows {
            return Err(OutputError::ParentCount {
                parents: out.parents.len(),
                rows,
            });
        }
        if let Some(p) = out.parents.iter().find(|&&p| p as usize >= in_rows) {
            return Err(OutputError::ParentOutOfRange {
                parent: *p,
                inputs: in_rows,
                input: "input rows",
            });
        }
        if out.parents.windows(2).any(|w| w[1] < w[0]) {
            return Err(OutputError::ParentsDecrease);
        }
        if one_to_one
            && out
                .parents
                .iter()
                .enumerate()
                .any(|(i, &p)| p as usize != i)
        {
            return Err(OutputError::MapReorders);
        }
    }
    if one_to_one && rows != in_rows {
        return Err(OutputError::MapRowCount {
            rows,
            inputs: in_rows,
        });
    }

    // Columns the guest did not send come from the parents: moved when the
    // mapping is the identity, gathered otherwise.
    let needs_gather =
        !identity && (out.keys.is_none() || out.timestamps.is_none() || out.headers.is_none());
    let gathered = needs_gather.then(|| input.select(&out.parents));
    let (parent_keys, parent_ts, parent_headers) = match gathered {
        Some(g) => (g.keys, g.timestamps, g.headers),
        None => (input.keys, input.timestamps, input.headers),
    };

    let keys = match out.keys {
        Some(k) => {
            let k = column_from_wit(k);
            k.validate(rows).map_err(OutputError::column("keys"))?;
            k
        }
        None => parent_keys,
    };
    let timestamps = match out.timestamps {
        Some(t) if t.len() != rows => {
            return Err(OutputError::ListLength {
                list: "timestamps",
                got: t.len(),
                rows,
            });
        }
        Some(t) => t,
        None => parent_ts,
    };
    let headers = match out.headers {
        Some(h) => {
            let h = headers_from_wit(h);
            h.validate(rows).map_err(OutputError::column("headers"))?;
            h
        }
        None => parent_headers,
    };
    Ok(RecordBatch {
        keys,
        values,
        timestamps,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_record::BatchBuilder;

    fn input() -> RecordBatch {
        let mut b = BatchBuilder::default();
        b.push(b"a", b"1", 10);
        b.push(b"b", b"2", 20);
        b.push(b"c", b"3", 30);
        b.finish()
    }

    fn values(vals: &[&[u8]]) -> wit::BytesColumn {
        let mut c = BytesColumn::new();
        for v in vals {
            c.push(v);
        }
        column_to_wit(c)
    }

    fn output(parents: Vec<u32>, vals: &[&[u8]]) -> wit::Output {
        wit::Output {
            parents,
            values: values(vals),
            keys: None,
            timestamps: None,
            headers: None,
        }
    }

    #[test]
    fn identity_output_keeps_parent_columns() {
        let out = assemble_output(input(), output(vec![], &[b"x", b"y", b"z"]), true).unwrap();
        assert_eq!(out.keys.get(2), b"c");
        assert_eq!(out.values.get(1), b"y");
        assert_eq!(out.timestamps, vec![10, 20, 30]);
    }

    #[test]
    fn flat_map_output_gathers_from_parents() {
        let out =
            assemble_output(input(), output(vec![0, 0, 2], &[b"p", b"q", b"r"]), false).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out.keys.get(1), b"a");
        assert_eq!(out.keys.get(2), b"c");
        assert_eq!(out.timestamps, vec![10, 10, 30]);
    }

    #[test]
    fn a_flat_map_may_drop_a_whole_batch_but_a_map_may_not() {
        let out = assemble_output(input(), output(vec![], &[]), false).unwrap();
        assert_eq!(out.len(), 0);
        let e = assemble_output(input(), output(vec![], &[]), true).unwrap_err();
        assert_eq!(e, OutputError::MapRowCount { rows: 0, inputs: 3 });
    }

    #[test]
    fn contract_violations_are_reported() {
        let e = assemble_output(input(), output(vec![], &[b"x"]), true).unwrap_err();
        assert!(
            matches!(
                e,
                OutputError::RowsWithoutParents {
                    rows: 1,
                    inputs: 3,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "1 output rows for 3 input rows without `parents`"
        );
        let e = assemble_output(input(), output(vec![5], &[b"x"]), false).unwrap_err();
        assert!(
            matches!(e, OutputError::ParentOutOfRange { parent: 5, .. }),
            "{e}"
        );
        let e = assemble_output(input(), output(vec![2, 1], &[b"x", b"y"]), false).unwrap_err();
        assert_eq!(e, OutputError::ParentsDecrease);
        let e =
            assemble_output(input(), output(vec![0, 0, 1], &[b"x", b"y", b"z"]), true).unwrap_err();
        assert_eq!(e, OutputError::MapReorders);
        let mut bad = output(vec![], &[b"x", b"y", b"z"]);
        bad.values.offsets[3] = 99;
        let e = assemble_output(input(), bad, true).unwrap_err();
        assert!(
            matches!(
                e,
                OutputError::Column {
                    column: "values",
                    ..
                }
            ),
            "{e}"
        );
    }
}
