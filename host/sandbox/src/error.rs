//! What can go wrong when loading or running a guest.

use std::path::PathBuf;
use std::time::Duration;

/// An error of the sandbox. Every variant names the module it concerns.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The sandbox itself could not be set up (a configuration error of the
    /// host, not of a guest).
    #[error("cannot configure the Wasm sandbox: {0}")]
    Setup(String),

    /// The module file could not be read.
    #[error("cannot read module `{}`: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// The bytes are not WebAssembly at all.
    #[error("module `{module}` is not a WebAssembly file (it starts with {prefix:?})")]
    NotWasm {
        /// Module name.
        module: String,
        /// The first bytes, for diagnosis.
        prefix: String,
    },

    /// A core module where a component was expected.
    #[error(
        "module `{module}` is a core WebAssembly module, not a component; build it for \
         `wasm32-wasip2` (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule {
        /// Module name.
        module: String,
    },

    /// The component does not compile or validate.
    #[error("module `{module}` is not a valid component: {message}")]
    Invalid {
        /// Module name.
        module: String,
        /// wasmtime's message.
        message: String,
    },

    /// The component is over a limit of the compile budget
    /// ([`crate::CompileBudget`]); it was not compiled.
    #[error("module `{module}` is over the compile budget: {value} {limit}, at most {max}")]
    OverBudget {
        /// Module name.
        module: String,
        /// The limit broken (`functions`, `size in bytes`, …).
        limit: &'static str,
        /// The module's figure.
        value: u64,
        /// The budget's.
        max: u64,
    },

    /// Compiling the component took longer than the budget allows; it was
    /// abandoned.
    #[error("module `{module}` took longer than {limit:?} to compile and was abandoned")]
    CompileTimeout {
        /// Module name.
        module: String,
        /// The time limit.
        limit: Duration,
    },

    /// Compiling the component needed more memory than the budget allows
    /// (in a compile helper process, [`crate::compiler::Compiler::Process`]).
    #[error(
        "module `{module}` needed more than {} MiB of memory to compile and was refused",
        limit >> 20
    )]
    CompileMemory {
        /// Module name.
        module: String,
        /// The memory limit, in bytes.
        limit: usize,
    },

    /// The component implements no operator world of the supported package.
    #[error("module `{module}` is for another world: {message}")]
    WrongWorld {
        /// Module name.
        module: String,
        /// What it exports instead, and what would be expected.
        message: String,
    },

    /// The component imports something the sandbox does not grant.
    #[error("module `{module}` needs an import the weir sandbox does not grant: {message}")]
    ForbiddenImport {
        /// Module name.
        module: String,
        /// wasmtime's message, naming the import.
        message: String,
    },

    /// A call into the guest failed.
    #[error("module `{module}` failed in `{call}`: {failure}")]
    Guest {
        /// Module name.
        module: String,
        /// The guest function that was called (`init`, `filter`, …).
        call: &'static str,
        /// What happened.
        failure: GuestFailure,
    },

    /// The on-disk compilation cache could not be used.
    #[error("module cache at `{}`: {message}", dir.display())]
    Cache {
        /// Cache directory.
        dir: PathBuf,
        /// What failed.
        message: String,
    },
}

/// How a call into a guest failed.
#[derive(Debug, thiserror::Error)]
pub enum GuestFailure {
    /// The guest trapped (a panic, an `unreachable`, an out-of-bounds access…).
    #[error("guest trapped: {message}{}", console_suffix(.console))]
    Trap {
        /// The trap and, when available, the guest's backtrace.
        message: String,
        /// The last lines the guest wrote to stdout/stderr (a panic message,
        /// a Python traceback), if any.
        console: String,
    },
    /// The call ran past its CPU deadline and was interrupted.
    #[error("guest exceeded its CPU deadline of {deadline:?} per call and was stopped")]
    DeadlineExceeded {
        /// The deadline.
        deadline: Duration,
    },
    /// The guest tried to grow its memory beyond the cap.
    #[error(
        "guest tried to grow its memory to {requested} bytes, over its cap of {cap} bytes, \
         and was stopped"
    )]
    MemoryCapExceeded {
        /// Bytes requested.
        requested: usize,
        /// The cap.
        cap: usize,
    },
    /// The guest returned an error value.
    #[error("guest returned an error: {0}")]
    Returned(String),
    /// The guest returned a batch that breaks the contract of its world.
    #[error("guest returned an invalid result: {0}")]
    InvalidOutput(#[from] OutputError),
    /// A host service the guest called (keyed state, timers) failed.
    #[error("a state or timer call failed: {0}")]
    Host(String),
    /// The instance trapped earlier and cannot be called again.
    #[error("the instance failed earlier and cannot be used again")]
    Poisoned,
}

fn console_suffix(console: &str) -> String {
    if console.trim().is_empty() {
        String::new()
    } else {
        format!("\n--- guest output ---\n{}", console.trim_end())
    }
}

/// A result a guest returned that breaks the contract of its world
/// (`wit/types.wit`): the host refuses it instead of building a batch from
/// it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    /// A column (`values`, `keys`, `headers`, `accumulators`…) is malformed.
    #[error("{column} {source}")]
    Column {
        /// Which column.
        column: &'static str,
        /// How it is malformed.
        source: weir_record::ColumnError,
    },
    /// No `parents` but not one row per input row (or pane).
    #[error("{rows} {output} rows for {inputs} {input} without `parents`")]
    RowsWithoutParents {
        /// Rows returned.
        rows: usize,
        /// `output` or `result`.
        output: &'static str,
        /// Input rows or panes.
        inputs: usize,
        /// `input rows` or `panes`.
        input: &'static str,
    },
    /// `parents` is not one entry per output row.
    #[error("{parents} parents for {rows} output rows")]
    ParentCount {
        /// Parents given.
        parents: usize,
        /// Rows returned.
        rows: usize,
    },
    /// A parent names no input row (or pane).
    #[error("parent {parent} is out of range for {inputs} {input}")]
    ParentOutOfRange {
        /// The parent.
        parent: u32,
        /// Input rows or panes.
        inputs: usize,
        /// `input rows` or `panes`.
        input: &'static str,
    },
    /// Parents go back: the input's order was not kept.
    #[error("parents decrease: the order of the input must be kept")]
    ParentsDecrease,
    /// A map returned rows for other parents than its own input row.
    #[error("a map must return exactly one row per input row, in order")]
    MapReorders,
    /// A map returned more or fewer rows than it was given.
    #[error("a map must return one row per input row: got {rows} for {inputs}")]
    MapRowCount {
        /// Rows returned.
        rows: usize,
        /// Rows given.
        inputs: usize,
    },
    /// A per-row list (`timestamps`, output tags) of the wrong length.
    #[error("{got} {list} for {rows} rows")]
    ListLength {
        /// Which list.
        list: &'static str,
        /// Its length.
        got: usize,
        /// Rows returned.
        rows: usize,
    },
    /// An output tag past the listed side outputs.
    #[error("output {tag} names no side output (only {listed} are listed)")]
    UnknownSideOutput {
        /// The tag.
        tag: u32,
        /// Side outputs listed.
        listed: usize,
    },
    /// A filter's selection goes back or repeats a row.
    #[error("selected rows must be strictly increasing, found {0} then {1}")]
    SelectionNotIncreasing(u32, u32),
    /// A filter selected a row past its input.
    #[error("selected row {row} is out of range for {rows} rows")]
    SelectionOutOfRange {
        /// The row.
        row: u32,
        /// Input rows.
        rows: usize,
    },
    /// Not one value back per value given (accumulators, migrated state).
    #[error("returned {got} {what} for {expected}")]
    Count {
        /// `accumulators` or `state values`.
        what: &'static str,
        /// Values returned.
        got: usize,
        /// Values given.
        expected: usize,
    },
    /// The job calls the module as a kind it is not.
    #[error(
        "a {kind} operator has no `{call}` function (the job uses the module as the wrong kind)"
    )]
    WrongKind {
        /// The module's kind.
        kind: crate::OperatorKind,
        /// The call.
        call: &'static str,
    },
    /// A state migration was asked of a module without the export.
    #[error("the module does not export `state-migration`")]
    NoStateMigration,
}

impl OutputError {
    /// A mapper from a column's layout error to this error naming it.
    pub(crate) fn column(column: &'static str) -> impl FnOnce(weir_record::ColumnError) -> Self {
        move |source| Self::Column { column, source }
    }
}
