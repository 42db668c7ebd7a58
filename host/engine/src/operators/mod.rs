//! Built-in operator kinds, one file each.
//!
//! * [`wasm_udf`] — a stateless user operator (filter, map or flat-map) run as
//!   a sandboxed Wasm component, one warm instance per subtask.
//! * [`window`] — windows per key (tumbling, sliding, session, global) with
//!   triggers, evictors, allowed lateness and a late side output; the window
//!   function (incremental aggregate or process-window) is a component.
//! * [`keyed_process`] — a keyed process function component with keyed state
//!   and timers held by the host.
//! * [`native`] — a Rust closure over batches: for benchmarks and tests that
//!   compare with the Wasm path, and for host-side plumbing.

pub mod keyed_process;
pub mod native;
pub mod wasm_udf;
pub mod window;

/// Snapshots keyed state with its timers, each timer in its key's group.
pub(crate) fn snapshot_keyed(
    state: &weir_state::KeyedState,
    event: &weir_state::TimerService,
    processing: &weir_state::TimerService,
    max_parallelism: u32,
) -> weir_state::KeyedSnapshot {
    let mut snap = state.snapshot();
    for (timers, is_event) in [(event, true), (processing, false)] {
        for (time, key, namespace) in timers.iter() {
            let group = crate::key_group::key_group(key, max_parallelism) as u16;
            weir_state::snapshot::push_timer(
                snap.groups.entry(group).or_default(),
                is_event,
                *time,
                key,
                namespace,
            );
        }
    }
    snap
}

/// The keyed state and timers of one operator subtask: its store and its
/// event- and processing-time timer services.
pub(crate) type KeyedParts = (
    weir_state::KeyedState,
    weir_state::TimerService,
    weir_state::TimerService,
);

/// Opens a keyed operator subtask's state store and timers, restored from
/// the job's checkpoint if it has one (what [`snapshot_keyed`] took).
pub(crate) fn open_keyed(info: &crate::SubtaskInfo) -> Result<KeyedParts, crate::BoxError> {
    let mut state = weir_state::KeyedState::new(info.open_state_store()?);
    let mut event = weir_state::TimerService::new();
    let mut processing = weir_state::TimerService::new();
    if let Some(restored) = info.restored_state()?
        && let Some(snap) = &restored.keyed
    {
        for (is_event, time, key, namespace) in state.restore(snap)? {
            let timers = if is_event {
                &mut event
            } else {
                &mut processing
            };
            timers.register(time, &key, &namespace);
        }
    }
    Ok((state, event, processing))
}

pub use keyed_process::KeyedProcessFactory;
pub use native::NativeOperatorFactory;
pub use wasm_udf::WasmUdfFactory;
pub use window::{Evictor, TimeMode, Trigger, WindowOperatorFactory, WindowSpec};
