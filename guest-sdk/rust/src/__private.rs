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
