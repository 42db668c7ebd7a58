//! Generated bindings and export glue. Not a stable API: use the export
//! macros.
//!
//! Each world is generated in its own module with a public export macro;
//! wit-bindgen only embeds a world's exports in the component when its export
//! macro is expanded, so one SDK crate serves every world and a component
//! still exports exactly the one interface its macro names.

#![allow(missing_docs, clippy::all, unsafe_op_in_unsafe_fn)]

use std::any::Any;
use std::cell::RefCell;

use crate::{Batch, Config, Error, Output, OutputColumns};

pub mod filter {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "filter-operator",
        pub_export_macro: true,
        export_macro_name: "__weir_export_filter_world",
        default_bindings_module: "weir_udf::__private::filter",
    });
}

pub mod map {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "map-operator",
        pub_export_macro: true,
        export_macro_name: "__weir_export_map_world",
        default_bindings_module: "weir_udf::__private::map",
        with: {
            "weir:udf/types@0.1.0": crate::__private::filter::weir::udf::types,
            "weir:udf/log@0.1.0": crate::__private::filter::weir::udf::log,
        },
    });
}

pub mod flat_map {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "flat-map-operator",
        pub_export_macro: true,
        export_macro_name: "__weir_export_flat_map_world",
        default_bindings_module: "weir_udf::__private::flat_map",
        with: {
            "weir:udf/types@0.1.0": crate::__private::filter::weir::udf::types,
            "weir:udf/log@0.1.0": crate::__private::filter::weir::udf::log,
        },
    });
}

pub mod aggregate {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "aggregate-operator",
        pub_export_macro: true,
        export_macro_name: "__weir_export_aggregate_world",
        default_bindings_module: "weir_udf::__private::aggregate",
        with: {
            "weir:udf/types@0.1.0": crate::__private::filter::weir::udf::types,
            "weir:udf/log@0.1.0": crate::__private::filter::weir::udf::log,
        },
    });
}

pub mod process_window {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "process-window-operator",
        pub_export_macro: true,
        export_macro_name: "__weir_export_process_window_world",
        default_bindings_module: "weir_udf::__private::process_window",
        with: {
            "weir:udf/types@0.1.0": crate::__private::filter::weir::udf::types,
            "weir:udf/log@0.1.0": crate::__private::filter::weir::udf::log,
            "weir:udf/window-types@0.1.0": crate::__private::aggregate::weir::udf::window_types,
        },
    });
}

pub mod keyed {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "keyed-process-operator",
        pub_export_macro: true,
        export_macro_name: "__weir_export_keyed_world",
        default_bindings_module: "weir_udf::__private::keyed",
        with: {
            "weir:udf/types@0.1.0": crate::__private::filter::weir::udf::types,
            "weir:udf/log@0.1.0": crate::__private::filter::weir::udf::log,
        },
    });
}

pub mod migration {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "state-migrator",
        pub_export_macro: true,
        export_macro_name: "__weir_export_migration_world",
        default_bindings_module: "weir_udf::__private::migration",
        with: {
            "weir:udf/types@0.1.0": crate::__private::filter::weir::udf::types,
            "weir:udf/log@0.1.0": crate::__private::filter::weir::udf::log,
        },
    });
}

#[cfg(feature = "json")]
pub use serde_json;

pub use aggregate::exports::weir::udf::aggregator::FiredPane;
pub use keyed::exports::weir::udf::keyed_processor::{Emitted, Timer as WitTimer};
pub use process_window::exports::weir::udf::window_processor::Pane;

pub use filter::weir::udf::types as wit;

thread_local! {
    /// The one operator of this component, created by `init`. A component is
    /// single-threaded, and the host calls one function at a time.
    static OPERATOR: RefCell<Option<Box<dyn Any>>> = RefCell::new(None);
}

fn with_operator<T: 'static, R>(
    f: impl FnOnce(&mut T) -> Result<R, Error>,
) -> Result<R, wit::Error> {
    OPERATOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let op = slot
            .as_mut()
            .and_then(|b| b.downcast_mut::<T>())
            .ok_or_else(|| wit::Error::Failed("operator called before init".into()))?;
        f(op).map_err(to_wit_error)
    })
}

fn install<T: 'static>(op: T) {
    OPERATOR.with(|cell| *cell.borrow_mut() = Some(Box::new(op)));
}

pub fn to_wit_error(e: Error) -> wit::Error {
    match e {
        Error::InvalidConfig(m) => wit::Error::InvalidConfig(m),
        Error::InvalidRecord(m) => wit::Error::InvalidRecord(m),
        Error::Failed(m) => wit::Error::Failed(m),
    }
}

pub fn view(b: &wit::Batch) -> Batch<'_> {
    let h = &b.headers;
    Batch::from_columns(
        (&b.keys.data, &b.keys.offsets),
        (&b.values.data, &b.values.offsets),
        &b.timestamps,
        &h.row_offsets,
        (&h.names.data, &h.names.offsets),
        (&h.values.data, &h.values.offsets),
    )
}

fn column((data, offsets): (Vec<u8>, Vec<u32>)) -> wit::BytesColumn {
    wit::BytesColumn { data, offsets }
}

pub fn to_wit_output(o: OutputColumns) -> wit::Output {
    wit::Output {
        parents: o.parents,
        values: column(o.values),
        keys: o.keys.map(column),
        timestamps: o.timestamps,
        headers: o.headers.map(|(row_offsets, names, values)| wit::Headers {
            row_offsets,
            names: column(names),
            values: column(values),
        }),
    }
}

pub fn filter_init<T: crate::Filter>(config: Vec<(String, String)>) -> Result<(), wit::Error> {
    install(T::init(&Config::new(config)).map_err(to_wit_error)?);
    Ok(())
}

pub fn filter_call<T: crate::Filter>(input: wit::Batch) -> Result<Vec<u32>, wit::Error> {
    with_operator::<T, _>(|op| {
        let mut keep = Vec::with_capacity(input.timestamps.len());
        op.filter_batch(&view(&input), &mut keep)?;
        Ok(keep)
    })
}

pub fn map_init<T: crate::Map>(config: Vec<(String, String)>) -> Result<(), wit::Error> {
    install(T::init(&Config::new(config)).map_err(to_wit_error)?);
    Ok(())
}

pub fn map_call<T: crate::Map>(input: wit::Batch) -> Result<wit::Output, wit::Error> {
    with_operator::<T, _>(|op| {
        let mut out = Output::new(view(&input));
        op.map_batch(&view(&input), &mut out)?;
        Ok(to_wit_output(out.finish()))
    })
}

pub fn flat_map_init<T: crate::FlatMap>(config: Vec<(String, String)>) -> Result<(), wit::Error> {
    install(T::init(&Config::new(config)).map_err(to_wit_error)?);
    Ok(())
}

pub fn flat_map_call<T: crate::FlatMap>(input: wit::Batch) -> Result<wit::Output, wit::Error> {
    with_operator::<T, _>(|op| {
        let mut out = Output::new(view(&input));
        op.flat_map_batch(&view(&input), &mut out)?;
        Ok(to_wit_output(out.finish()))
    })
}

/// Exports a [`crate::Filter`] implementation as the component's operator
/// (world `filter-operator`).
#[macro_export]
macro_rules! export_filter {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __WeirFilter;
            impl $crate::__private::filter::exports::weir::udf::filter::Guest for __WeirFilter {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), $crate::__private::wit::Error> {
                    $crate::__private::filter_init::<$ty>(config)
                }
                fn filter(
                    input: $crate::__private::wit::Batch,
                ) -> ::std::result::Result<::std::vec::Vec<u32>, $crate::__private::wit::Error>
                {
                    $crate::__private::filter_call::<$ty>(input)
                }
            }
            $crate::__private::filter::__weir_export_filter_world!(
                __WeirFilter with_types_in $crate::__private::filter
            );
        };
    };
}

/// Exports a [`crate::Map`] implementation as the component's operator
/// (world `map-operator`).
#[macro_export]
macro_rules! export_map {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __WeirMap;
            impl $crate::__private::map::exports::weir::udf::mapper::Guest for __WeirMap {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), $crate::__private::wit::Error> {
                    $crate::__private::map_init::<$ty>(config)
                }
                fn map_batch(
                    input: $crate::__private::wit::Batch,
                ) -> ::std::result::Result<
                    $crate::__private::wit::Output,
                    $crate::__private::wit::Error,
                > {
                    $crate::__private::map_call::<$ty>(input)
                }
            }
            $crate::__private::map::__weir_export_map_world!(
                __WeirMap with_types_in $crate::__private::map
            );
        };
    };
}

/// Exports a [`crate::FlatMap`] implementation as the component's operator
/// (world `flat-map-operator`).
#[macro_export]
macro_rules! export_flat_map {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __WeirFlatMap;
            impl $crate::__private::flat_map::exports::weir::udf::flat_mapper::Guest for __WeirFlatMap {
                fn init(config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>)
                    -> ::std::result::Result<(), $crate::__private::wit::Error> {
                    $crate::__private::flat_map_init::<$ty>(config)
                }
                fn flat_map_batch(input: $crate::__private::wit::Batch)
                    -> ::std::result::Result<$crate::__private::wit::Output, $crate::__private::wit::Error> {
                    $crate::__private::flat_map_call::<$ty>(input)
                }
            }
            $crate::__private::flat_map::__weir_export_flat_map_world!(
                __WeirFlatMap with_types_in $crate::__private::flat_map
            );
        };
    };
}

// ---- window functions -------------------------------------------------

fn columns(c: &wit::BytesColumn) -> impl Iterator<Item = &[u8]> {
    c.offsets
        .windows(2)
        .map(|w| &c.data[w[0] as usize..w[1] as usize])
}

fn to_results(r: crate::Results) -> wit::Output {
    wit::Output {
        parents: r.parents,
        values: wit::BytesColumn {
            data: r.data,
            offsets: r.offsets,
        },
        keys: None,
        timestamps: r.explicit_timestamps.then_some(r.timestamps),
        headers: None,
    }
}

pub fn migrate_call<T: crate::MigrateState>(
    from_version: String,
    state: String,
    values: wit::BytesColumn,
) -> Result<wit::BytesColumn, wit::Error> {
    with_operator::<T, _>(|op| {
        let mut data = Vec::with_capacity(values.data.len());
        let mut offsets = Vec::with_capacity(values.offsets.len());
        offsets.push(0);
        for v in columns(&values) {
            data.extend_from_slice(&op.migrate(&from_version, &state, v)?);
            offsets.push(data.len() as u32);
        }
        Ok(wit::BytesColumn { data, offsets })
    })
}

pub fn aggregate_init<T: crate::Aggregate>(
    config: Vec<(String, String)>,
) -> Result<(), wit::Error> {
    install(T::init(&Config::new(config)).map_err(to_wit_error)?);
    Ok(())
}

pub fn aggregate_create<T: crate::Aggregate>() -> Result<Vec<u8>, wit::Error> {
    with_operator::<T, _>(|op| Ok(crate::Codec::to_bytes(&op.create_accumulator())))
}

fn encode_accs<A: crate::Codec>(accs: &[A]) -> wit::BytesColumn {
    let mut data = Vec::new();
    let mut offsets = Vec::with_capacity(accs.len() + 1);
    offsets.push(0);
    for a in accs {
        a.encode(&mut data);
        offsets.push(data.len() as u32);
    }
    wit::BytesColumn { data, offsets }
}

fn decode_accs<A: crate::Codec>(c: &wit::BytesColumn) -> Result<Vec<A>, Error> {
    columns(c).map(A::from_bytes).collect()
}

pub fn aggregate_add<T: crate::Aggregate>(
    accs: wit::BytesColumn,
    groups: Vec<u32>,
    input: wit::Batch,
) -> Result<wit::BytesColumn, wit::Error> {
    with_operator::<T, _>(|op| {
        let mut accs: Vec<T::Acc> = decode_accs(&accs)?;
        let batch = view(&input);
        for (row, &g) in groups.iter().enumerate() {
            let acc = accs
                .get_mut(g as usize)
                .ok_or_else(|| Error::failed(format!("group {g} has no accumulator")))?;
            op.add(acc, &batch.record(row))?;
        }
        Ok(encode_accs(&accs))
    })
}

pub fn aggregate_merge<T: crate::Aggregate>(
    accs: wit::BytesColumn,
    groups: Vec<u32>,
) -> Result<wit::BytesColumn, wit::Error> {
    with_operator::<T, _>(|op| {
        let accs: Vec<T::Acc> = decode_accs(&accs)?;
        let n = groups.iter().map(|&g| g as usize + 1).max().unwrap_or(0);
        let mut merged: Vec<Option<T::Acc>> = (0..n).map(|_| None).collect();
        for (acc, &g) in accs.into_iter().zip(&groups) {
            match merged[g as usize].as_mut() {
                None => merged[g as usize] = Some(acc),
                Some(m) => op.merge(m, acc)?,
            }
        }
        let merged: Vec<T::Acc> = merged
            .into_iter()
            .map(|m| m.unwrap_or_else(|| op.create_accumulator()))
            .collect();
        Ok(encode_accs(&merged))
    })
}

pub fn aggregate_results<T: crate::Aggregate>(
    panes: Vec<FiredPane>,
) -> Result<wit::Output, wit::Error> {
    with_operator::<T, _>(|op| {
        let mut out = crate::Results::new();
        for (i, p) in panes.iter().enumerate() {
            out.current = i as u32;
            out.current_ts = p.window.end.saturating_sub(1);
            let acc = <T::Acc as crate::Codec>::from_bytes(&p.accumulator)?;
            let w = crate::Window {
                start: p.window.start,
                end: p.window.end,
            };
            op.result(&p.key, w, &acc, &mut out)?;
        }
        Ok(to_results(out))
    })
}

pub fn process_window_init<T: crate::ProcessWindow>(
    config: Vec<(String, String)>,
) -> Result<(), wit::Error> {
    install(T::init(&Config::new(config)).map_err(to_wit_error)?);
    Ok(())
}

pub fn process_window_call<T: crate::ProcessWindow>(
    panes: Vec<Pane>,
    input: wit::Batch,
) -> Result<wit::Output, wit::Error> {
    with_operator::<T, _>(|op| {
        let batch = view(&input);
        let mut out = crate::Results::new();
        for (i, p) in panes.iter().enumerate() {
            out.current = i as u32;
            out.current_ts = p.window.end.saturating_sub(1);
            let (first, count) = (p.first as usize, p.count as usize);
            if first + count > batch.len() {
                return Err(Error::failed("pane rows out of range"));
            }
            let w = crate::Window {
                start: p.window.start,
                end: p.window.end,
            };
            op.process(
                &p.key,
                w,
                crate::PaneRecords::new(batch, first, count),
                &mut out,
            )?;
        }
        Ok(to_results(out))
    })
}

// ---- keyed process ------------------------------------------------------

fn to_emitted(c: crate::Context<'_>) -> Emitted {
    let all_main = c.outputs.iter().all(|&o| o == 0);
    Emitted {
        values: wit::BytesColumn {
            data: c.data,
            offsets: c.offsets,
        },
        timestamps: c.timestamps,
        outputs: if all_main { Vec::new() } else { c.outputs },
        side_outputs: c.side_names,
    }
}

pub fn keyed_init<T: crate::KeyedProcess>(config: Vec<(String, String)>) -> Result<(), wit::Error> {
    install(T::init(&Config::new(config)).map_err(to_wit_error)?);
    Ok(())
}

pub fn keyed_process<T: crate::KeyedProcess>(
    key: Vec<u8>,
    input: wit::Batch,
) -> Result<Emitted, wit::Error> {
    with_operator::<T, _>(|op| {
        let mut ctx = crate::Context::new(&key);
        op.process_batch(&mut ctx, &view(&input))?;
        Ok(to_emitted(ctx))
    })
}

pub fn keyed_on_timer<T: crate::KeyedProcess>(
    key: Vec<u8>,
    timers: Vec<WitTimer>,
) -> Result<Emitted, wit::Error> {
    use keyed::exports::weir::udf::keyed_processor::TimeDomain as D;
    with_operator::<T, _>(|op| {
        let mut ctx = crate::Context::new(&key);
        for t in timers {
            let timer = crate::Timer {
                timestamp: t.timestamp,
                domain: match t.domain {
                    D::EventTime => crate::TimeDomain::EventTime,
                    D::ProcessingTime => crate::TimeDomain::ProcessingTime,
                },
            };
            op.on_timer(&mut ctx, timer)?;
        }
        Ok(to_emitted(ctx))
    })
}

/// Exports a [`crate::Aggregate`] implementation as the component's operator
/// (world `aggregate-operator`).
#[macro_export]
macro_rules! export_aggregate {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __WeirAggregate;
            impl $crate::__private::aggregate::exports::weir::udf::aggregator::Guest
                for __WeirAggregate
            {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), $crate::__private::wit::Error> {
                    $crate::__private::aggregate_init::<$ty>(config)
                }
                fn create_accumulator()
                -> ::std::result::Result<::std::vec::Vec<u8>, $crate::__private::wit::Error>
                {
                    $crate::__private::aggregate_create::<$ty>()
                }
                fn add(
                    accumulators: $crate::__private::wit::BytesColumn,
                    groups: ::std::vec::Vec<u32>,
                    records: $crate::__private::wit::Batch,
                ) -> ::std::result::Result<
                    $crate::__private::wit::BytesColumn,
                    $crate::__private::wit::Error,
                > {
                    $crate::__private::aggregate_add::<$ty>(accumulators, groups, records)
                }
                fn merge(
                    accumulators: $crate::__private::wit::BytesColumn,
                    groups: ::std::vec::Vec<u32>,
                ) -> ::std::result::Result<
                    $crate::__private::wit::BytesColumn,
                    $crate::__private::wit::Error,
                > {
                    $crate::__private::aggregate_merge::<$ty>(accumulators, groups)
                }
                fn get_results(
                    panes: ::std::vec::Vec<$crate::__private::FiredPane>,
                ) -> ::std::result::Result<
                    $crate::__private::wit::Output,
                    $crate::__private::wit::Error,
                > {
                    $crate::__private::aggregate_results::<$ty>(panes)
                }
            }
            $crate::__private::aggregate::__weir_export_aggregate_world!(
                __WeirAggregate with_types_in $crate::__private::aggregate
            );
        };
    };
}

/// Exports a [`crate::MigrateState`] implementation (the same type as the
/// operator's) as the component's `state-migration`, next to the operator
/// world: `export_aggregate!(T); export_state_migration!(T);`.
#[macro_export]
macro_rules! export_state_migration {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __WeirMigration;
            impl $crate::__private::migration::exports::weir::udf::state_migration::Guest
                for __WeirMigration
            {
                fn migrate(
                    from_version: ::std::string::String,
                    state: ::std::string::String,
                    values: $crate::__private::wit::BytesColumn,
                ) -> ::std::result::Result<
                    $crate::__private::wit::BytesColumn,
                    $crate::__private::wit::Error,
                > {
                    $crate::__private::migrate_call::<$ty>(from_version, state, values)
                }
            }
            $crate::__private::migration::__weir_export_migration_world!(
                __WeirMigration with_types_in $crate::__private::migration
            );
        };
    };
}

/// Exports a [`crate::ProcessWindow`] implementation as the component's
/// operator (world `process-window-operator`).
#[macro_export]
macro_rules! export_process_window {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __WeirProcessWindow;
            impl $crate::__private::process_window::exports::weir::udf::window_processor::Guest
                for __WeirProcessWindow
            {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), $crate::__private::wit::Error> {
                    $crate::__private::process_window_init::<$ty>(config)
                }
                fn process(
                    panes: ::std::vec::Vec<$crate::__private::Pane>,
                    records: $crate::__private::wit::Batch,
                ) -> ::std::result::Result<
                    $crate::__private::wit::Output,
                    $crate::__private::wit::Error,
                > {
                    $crate::__private::process_window_call::<$ty>(panes, records)
                }
            }
            $crate::__private::process_window::__weir_export_process_window_world!(
                __WeirProcessWindow with_types_in $crate::__private::process_window
            );
        };
    };
}

/// Exports a [`crate::KeyedProcess`] implementation as the component's
/// operator (world `keyed-process-operator`).
#[macro_export]
macro_rules! export_keyed_process {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __WeirKeyed;
            impl $crate::__private::keyed::exports::weir::udf::keyed_processor::Guest
                for __WeirKeyed
            {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), $crate::__private::wit::Error> {
                    $crate::__private::keyed_init::<$ty>(config)
                }
                fn process(
                    key: ::std::vec::Vec<u8>,
                    records: $crate::__private::wit::Batch,
                ) -> ::std::result::Result<
                    $crate::__private::Emitted,
                    $crate::__private::wit::Error,
                > {
                    $crate::__private::keyed_process::<$ty>(key, records)
                }
                fn on_timer(
                    key: ::std::vec::Vec<u8>,
                    timers: ::std::vec::Vec<$crate::__private::WitTimer>,
                ) -> ::std::result::Result<
                    $crate::__private::Emitted,
                    $crate::__private::wit::Error,
                > {
                    $crate::__private::keyed_on_timer::<$ty>(key, timers)
                }
            }
            $crate::__private::keyed::__weir_export_keyed_world!(
                __WeirKeyed with_types_in $crate::__private::keyed
            );
        };
    };
}
