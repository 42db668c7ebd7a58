//! Running an operator natively, without Wasm.
//!
//! The same operator type that is exported as a component can be driven here
//! directly over borrowed columns: unit tests of a UDF run with `cargo test`,
//! and the host's benchmark compares this native path with the component.

use crate::{Batch, Config, Error, Filter, FlatMap, Map, Output, OutputColumns};

/// A natively driven operator: `init` once, then one call per batch, exactly
/// as the host drives a component.
pub struct Native<T> {
    op: T,
}

impl<T> Native<T> {
    /// The operator itself.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.op
    }
}

impl<T: Filter> Native<T> {
    /// Initializes a filter from configuration pairs.
    ///
    /// # Errors
    /// Whatever the operator's `init` returns.
    pub fn filter(config: &[(&str, &str)]) -> Result<Self, Error> {
        Ok(Self {
            op: T::init(&config_of(config))?,
        })
    }

    /// Runs one batch; returns the kept row indices.
    ///
    /// # Errors
    /// Whatever the operator returns.
    pub fn run_filter(&mut self, batch: Batch<'_>) -> Result<Vec<u32>, Error> {
        let mut keep = Vec::with_capacity(batch.len());
        self.op.filter_batch(&batch, &mut keep)?;
        Ok(keep)
    }
}

impl<T: Map> Native<T> {
    /// Initializes a map from configuration pairs.
    ///
    /// # Errors
    /// Whatever the operator's `init` returns.
    pub fn map(config: &[(&str, &str)]) -> Result<Self, Error> {
        Ok(Self {
            op: T::init(&config_of(config))?,
        })
    }

    /// Runs one batch.
    ///
    /// # Errors
    /// Whatever the operator returns.
    pub fn run_map(&mut self, batch: Batch<'_>) -> Result<OutputColumns, Error> {
        let mut out = Output::new(batch);
        self.op.map_batch(&batch, &mut out)?;
        Ok(out.finish())
    }
}

/// Flat-maps need their own constructor name: a type could be both.
pub struct NativeFlatMap<T> {
    op: T,
}

impl<T: FlatMap> NativeFlatMap<T> {
    /// Initializes a flat-map from configuration pairs.
    ///
    /// # Errors
    /// Whatever the operator's `init` returns.
    pub fn new(config: &[(&str, &str)]) -> Result<Self, Error> {
        Ok(Self {
            op: T::init(&config_of(config))?,
        })
    }

    /// Runs one batch.
    ///
    /// # Errors
    /// Whatever the operator returns.
    pub fn run(&mut self, batch: Batch<'_>) -> Result<OutputColumns, Error> {
        let mut out = Output::new(batch);
        self.op.flat_map_batch(&batch, &mut out)?;
        Ok(out.finish())
    }
}

fn config_of(pairs: &[(&str, &str)]) -> Config {
    Config::new(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}
