//! Reading state that an earlier version of the operator wrote.

use crate::Error;

/// Converts stored state from an earlier version's layout, when the job is
/// upgraded to this version (`weir job upgrade`) or restored from a
/// savepoint that another version wrote. Implement it on the operator type
/// and export it next to the operator:
///
/// ```ignore
/// weir_udf::export_aggregate!(Count);
/// weir_udf::export_state_migration!(Count);
/// ```
///
/// The host calls it after `init`, before any record, for every stored
/// value: each accumulator of an aggregate (state `acc`), each value of a
/// keyed process function's value and map states and each element of its
/// list states. Without it, a new version must read the old bytes as they
/// are.
pub trait MigrateState: 'static {
    /// Value `value` of state `state`, written by module version
    /// `from_version` (its registry version, such as `1`, or `sha256:…` for
    /// a module run from a file), in this version's encoding.
    ///
    /// # Errors
    /// Any [`Error`]: the job does not start (an upgrade rolls back).
    fn migrate(&mut self, from_version: &str, state: &str, value: &[u8]) -> Result<Vec<u8>, Error>;
}
