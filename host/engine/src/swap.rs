//! Hot swap of a running operator's module, without restarting the job.
//!
//! The control plane posts a swap on the job's [`ModuleSwaps`] board. A
//! keyed operator (window, keyed process) swaps at the barrier of the next
//! savepoint: every subtask snapshots its state with the old module (the
//! savepoint is what a rollback returns to), then replaces its instance and
//! keeps the same state in the same backend — migrated first if the new
//! module exports `state-migration`. A stateless operator has nothing to
//! save: each subtask swaps before its next batch.
//!
//! The swap costs each subtask what creating a warm instance costs (plus a
//! migration, if any); the state is neither written out nor read back.
//!
//! The core does not know what a module is: the board carries an opaque
//! [`ModuleHandle`], which the operators that run modules (`weir-operators`)
//! open again.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::checkpoint::CheckpointId;

/// A module to swap in, opaque to the core: its name and digest for
/// messages and comparison, and the module itself for the operator that
/// knows its type.
#[derive(Clone)]
pub struct ModuleHandle {
    name: Arc<str>,
    digest: Arc<str>,
    module: Arc<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for ModuleHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.digest)
    }
}

impl ModuleHandle {
    /// `module`, named `name`, whose content digest is `digest`.
    pub fn new<M: Any + Send + Sync>(name: &str, digest: &str, module: Arc<M>) -> Self {
        Self {
            name: name.into(),
            digest: digest.into(),
            module,
        }
    }

    /// The module's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The module's digest (`sha256:…`).
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The module, if it is an `M`.
    pub fn get<M: Any + Send + Sync>(&self) -> Option<Arc<M>> {
        self.module.clone().downcast().ok()
    }
}

/// Why an operator subtask could not swap its module.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// The operator has no module to swap.
    #[error("this operator cannot swap its module for `{module}`")]
    Unsupported {
        /// The module posted.
        module: String,
    },
    /// The handle does not hold a module of the kind this operator runs.
    #[error("`{module}` is not a module this operator can run")]
    Foreign {
        /// The module posted.
        module: String,
    },
    /// The new module implements another operator world.
    #[error("it is a {new} operator, the running one a {running} operator")]
    Kind {
        /// The new module's kind.
        new: String,
        /// The running module's kind.
        running: String,
    },
    /// The new instance did not start (instantiation or `init`).
    #[error(transparent)]
    Instance(crate::BoxError),
    /// The live state could not be migrated to the new module.
    #[error(transparent)]
    Migration(#[from] weir_state::StateError),
    /// An operator that should hold keyed state has none to migrate (a
    /// fault of the host).
    #[error("the operator has no keyed state")]
    NoKeyedState,
}

/// Swaps posted for a job's operators, by node name.
#[derive(Debug, Default)]
pub struct ModuleSwaps {
    swaps: Mutex<HashMap<String, Swap>>,
    /// Bumped by every post: subtasks check it before each batch.
    generation: AtomicU64,
}

#[derive(Debug)]
struct Swap {
    module: ModuleHandle,
    version: String,
    /// The savepoint at whose barrier keyed subtasks swap (the first one
    /// after the post).
    at: Option<CheckpointId>,
    status: SwapStatus,
}

/// How far a posted swap has got.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SwapStatus {
    /// Subtasks running the new module.
    pub swapped: usize,
    /// The longest a subtask stopped processing for it, in µs: the
    /// snapshot at the barrier plus the swap itself.
    pub pause_us: u64,
    /// The first subtask's failure to swap, if any.
    pub error: Option<String>,
}

impl ModuleSwaps {
    /// Asks operator `node` to run `module` (named `version` in the state
    /// it writes), replacing any swap posted before.
    pub fn post(&self, node: &str, module: ModuleHandle, version: &str) {
        self.lock().insert(
            node.to_string(),
            Swap {
                module,
                version: version.to_string(),
                at: None,
                status: SwapStatus::default(),
            },
        );
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Where the swap of `node` stands, if one was posted.
    pub fn status(&self, node: &str) -> Option<SwapStatus> {
        self.lock().get(node).map(|s| s.status.clone())
    }

    /// Forgets the swap of `node` (the job restarts with its module in the
    /// plan, or it was rolled back).
    pub fn clear(&self, node: &str) {
        self.lock().remove(node);
    }

    /// The swap a keyed subtask of `node` makes at the barrier of savepoint
    /// `id`, if any: the first savepoint after the post, for every subtask.
    pub(crate) fn at_savepoint(
        &self,
        node: &str,
        id: CheckpointId,
    ) -> Option<(ModuleHandle, String)> {
        let mut swaps = self.lock();
        let s = swaps.get_mut(node)?;
        (*s.at.get_or_insert(id) == id).then(|| (s.module.clone(), s.version.clone()))
    }

    /// The swap a stateless subtask of `node` now running `digest` makes
    /// before its next batch, if any; `seen` is the generation it last
    /// checked (one atomic load when nothing changed).
    pub fn before_batch(
        &self,
        node: &str,
        digest: &str,
        seen: &mut u64,
    ) -> Option<(ModuleHandle, String)> {
        let now = self.generation.load(Ordering::Acquire);
        if now == *seen {
            return None;
        }
        *seen = now;
        let swaps = self.lock();
        let s = swaps.get(node)?;
        (s.module.digest() != digest).then(|| (s.module.clone(), s.version.clone()))
    }

    /// Records one subtask's swap.
    pub fn done(&self, node: &str, pause_us: u64, result: Result<(), &SwapError>) {
        if let Some(s) = self.lock().get_mut(node) {
            s.status.pause_us = s.status.pause_us.max(pause_us);
            match result {
                Ok(()) => s.status.swapped += 1,
                Err(e) => {
                    s.status.error.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Swap>> {
        self.swaps.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
