//! The compile budget: what a component may cost before it is compiled.
//!
//! Compiling is the one step where an untrusted module costs the host
//! before any per-instance limit applies: Cranelift's time and memory grow
//! with the number and size of functions, so a small component made of very
//! many functions costs seconds of CPU and gigabytes of memory. Before a
//! component is compiled, one cheap pass over its sections (no validation,
//! no code generation) checks its shape against a [`CompileBudget`] and its
//! world (an operator export, imports only from `wasi:` and `weir:udf/`);
//! compilation then runs on a thread of its own under a time limit, and a
//! limited number of compilations run at once.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use wasmparser::{Parser, Payload};

use crate::error::SandboxError;
use crate::module::OperatorKind;

/// Limits of what a component may cost to compile. A component over any of
/// them is refused before compilation, naming the limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileBudget {
    /// Size of the component, in bytes.
    pub max_bytes: usize,
    /// Functions defined by all its core modules together.
    pub max_functions: u32,
    /// Size of the largest function body, in bytes.
    pub max_function_bytes: usize,
    /// Core modules it contains.
    pub max_modules: u32,
    /// Core instances and component instances it creates.
    pub max_instances: u32,
    /// Linear memories defined by all its core modules.
    pub max_memories: u32,
    /// Tables defined by all its core modules.
    pub max_tables: u32,
    /// Wall-clock time of one compilation; past it the caller gets an
    /// error. A compile helper process is killed then; a compile thread
    /// ([`crate::compiler::Compiler::Thread`]) cannot be, and finishes on
    /// its own, keeping its compile slot until then.
    pub compile_timeout: Duration,
    /// Compilations that may run at once in the process.
    pub max_concurrent: usize,
    /// Data memory of one compilation, in bytes: enforced by the kernel on
    /// a compile helper process ([`crate::compiler::Compiler::Process`]),
    /// not on a compile thread.
    pub max_memory: usize,
}

impl Default for CompileBudget {
    /// Twice what the largest operator built by weir's SDKs needs (a
    /// componentize-js component: about 40,000 functions, 12 MB); see
    /// docs/benchmarks.md for the measured shapes.
    fn default() -> Self {
        Self {
            max_bytes: 64 << 20,
            max_functions: 100_000,
            max_function_bytes: 2 << 20,
            max_modules: 32,
            max_instances: 128,
            max_memories: 8,
            max_tables: 32,
            compile_timeout: Duration::from_secs(120),
            max_concurrent: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_memory: 1 << 30,
        }
    }
}

/// What one pass over a component's sections found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ComponentShape {
    /// Size in bytes.
    pub bytes: usize,
    /// Functions defined by its core modules.
    pub functions: u32,
    /// The largest function body, in bytes.
    pub largest_function: usize,
    /// Core modules.
    pub modules: u32,
    /// Core and component instances.
    pub instances: u32,
    /// Defined linear memories.
    pub memories: u32,
    /// Defined tables.
    pub tables: u32,
    /// The top-level component's import names.
    pub imports: Vec<String>,
    /// The top-level component's export names.
    pub exports: Vec<String>,
}

/// Reads a component's shape without validating or compiling it.
///
/// # Errors
/// [`SandboxError::Invalid`] if the sections do not parse.
pub fn shape(name: &str, bytes: &[u8]) -> Result<ComponentShape, SandboxError> {
    let invalid = |e: wasmparser::BinaryReaderError| SandboxError::Invalid {
        module: name.to_string(),
        message: e.to_string(),
    };
    let mut s = ComponentShape {
        bytes: bytes.len(),
        ..ComponentShape::default()
    };
    // Nesting: the top-level component is depth 1 once its header is read.
    let mut depth = 0u32;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(invalid)? {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ModuleSection { .. } => s.modules += 1,
            Payload::FunctionSection(r) => s.functions = s.functions.saturating_add(r.count()),
            Payload::MemorySection(r) => s.memories = s.memories.saturating_add(r.count()),
            Payload::TableSection(r) => s.tables = s.tables.saturating_add(r.count()),
            Payload::InstanceSection(r) => s.instances = s.instances.saturating_add(r.count()),
            Payload::ComponentInstanceSection(r) => {
                s.instances = s.instances.saturating_add(r.count());
            }
            Payload::CodeSectionEntry(body) => {
                s.largest_function = s.largest_function.max(body.range().len());
            }
            Payload::ComponentImportSection(r) if depth == 1 => {
                for import in r {
                    s.imports
                        .push(import.map_err(invalid)?.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(r) if depth == 1 => {
                for export in r {
                    s.exports
                        .push(export.map_err(invalid)?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(s)
}

/// Checks a component against `budget` and against the operator worlds,
/// before anything is compiled.
///
/// # Errors
/// [`SandboxError::OverBudget`] naming the limit broken and by how much;
/// [`SandboxError::WrongWorld`] for a component with no operator export;
/// [`SandboxError::ForbiddenImport`] for an import from another package.
pub fn check(
    name: &str,
    bytes: &[u8],
    budget: &CompileBudget,
) -> Result<ComponentShape, SandboxError> {
    let over = |limit: &'static str, value: u64, max: u64| SandboxError::OverBudget {
        module: name.to_string(),
        limit,
        value,
        max,
    };
    if bytes.len() > budget.max_bytes {
        return Err(over(
            "size in bytes",
            bytes.len() as u64,
            budget.max_bytes as u64,
        ));
    }
    let s = shape(name, bytes)?;
    let checks: [(&'static str, u64, u64); 6] = [
        ("functions", s.functions.into(), budget.max_functions.into()),
        (
            "bytes of one function body",
            s.largest_function as u64,
            budget.max_function_bytes as u64,
        ),
        ("core modules", s.modules.into(), budget.max_modules.into()),
        ("instances", s.instances.into(), budget.max_instances.into()),
        ("memories", s.memories.into(), budget.max_memories.into()),
        ("tables", s.tables.into(), budget.max_tables.into()),
    ];
    for (limit, value, max) in checks {
        if value > max {
            return Err(over(limit, value, max));
        }
    }
    if !OperatorKind::ALL
        .iter()
        .any(|k| s.exports.iter().any(|e| e == k.export_name()))
    {
        return Err(SandboxError::WrongWorld {
            module: name.to_string(),
            message: format!(
                "it exports {} but no operator interface of {} ({})",
                if s.exports.is_empty() {
                    "nothing".to_string()
                } else {
                    s.exports
                        .iter()
                        .map(|e| format!("`{e}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                crate::WIT_PACKAGE,
                OperatorKind::ALL.map(|k| k.export_name()).join(", ")
            ),
        });
    }
    if let Some(i) = s
        .imports
        .iter()
        .find(|i| !(i.starts_with("wasi:") || i.starts_with("weir:udf/")))
    {
        return Err(SandboxError::ForbiddenImport {
            module: name.to_string(),
            message: format!("`{i}` (a guest may import only WASI and weir:udf interfaces)"),
        });
    }
    Ok(s)
}

/// Compile slots: at most `max` compilations at once.
#[derive(Clone)]
pub(crate) struct CompileSlots {
    inner: Arc<(Mutex<usize>, Condvar)>,
    max: usize,
}

/// A held slot, released when dropped (by an abandoned compilation, when
/// it finishes).
pub(crate) struct Slot {
    inner: Arc<(Mutex<usize>, Condvar)>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (lock, cv) = &*self.inner;
        let mut used = lock.lock().unwrap_or_else(PoisonError::into_inner);
        *used = used.saturating_sub(1);
        cv.notify_one();
    }
}

impl CompileSlots {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            inner: Arc::new((Mutex::new(0), Condvar::new())),
            max: max.max(1),
        }
    }

    /// Waits for a free slot until `deadline`.
    pub(crate) fn acquire(&self, deadline: Instant) -> Option<Slot> {
        let (lock, cv) = &*self.inner;
        let mut used = lock.lock().unwrap_or_else(PoisonError::into_inner);
        while *used >= self.max {
            let left = deadline.checked_duration_since(Instant::now())?;
            let (guard, timeout) = cv
                .wait_timeout(used, left)
                .unwrap_or_else(PoisonError::into_inner);
            used = guard;
            if timeout.timed_out() && *used >= self.max {
                return None;
            }
        }
        *used += 1;
        Some(Slot {
            inner: self.inner.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component (text format) exporting `export` and defining `funcs`
    /// functions in one core module.
    fn component(export: &str, funcs: usize, memories: usize) -> Vec<u8> {
        let mut core = String::from("(core module $m");
        for i in 0..memories {
            core.push_str(&format!(" (memory $mem{i} 1)"));
        }
        for _ in 0..funcs {
            core.push_str(" (func)");
        }
        core.push(')');
        let wat = format!(
            r#"(component
                {core}
                (core instance $i (instantiate $m))
                (instance $e)
                (export "{export}" (instance $e))
            )"#
        );
        wat::parse_str(wat).unwrap()
    }

    const FILTER: &str = "weir:udf/filter@0.1.0";

    #[test]
    fn a_small_operator_shaped_component_passes() {
        let s = check("ok", &component(FILTER, 3, 1), &CompileBudget::default()).unwrap();
        assert_eq!((s.functions, s.modules, s.memories), (3, 1, 1));
        assert_eq!(s.exports, [FILTER]);
        assert_eq!(s.instances, 2);
    }

    #[test]
    fn every_limit_is_named_when_broken() {
        let budget = CompileBudget {
            max_functions: 10,
            ..CompileBudget::default()
        };
        let e = check("many", &component(FILTER, 11, 0), &budget)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("module `many`") && e.contains("11 functions") && e.contains("at most 10"),
            "{e}"
        );

        let bytes = component(FILTER, 1, 0);
        let small = CompileBudget {
            max_bytes: bytes.len() - 1,
            ..CompileBudget::default()
        };
        let e = check("big", &bytes, &small).unwrap_err().to_string();
        assert!(e.contains("size in bytes"), "{e}");

        let one_memory = CompileBudget {
            max_memories: 1,
            ..CompileBudget::default()
        };
        let e = check("mems", &component(FILTER, 1, 2), &one_memory)
            .unwrap_err()
            .to_string();
        assert!(e.contains("2 memories"), "{e}");

        let no_instances = CompileBudget {
            max_instances: 1,
            ..CompileBudget::default()
        };
        let e = check("inst", &component(FILTER, 1, 0), &no_instances)
            .unwrap_err()
            .to_string();
        assert!(e.contains("2 instances"), "{e}");
    }

    #[test]
    fn a_large_function_body_is_refused() {
        let mut body = String::from("(core module $m (func");
        for _ in 0..2000 {
            body.push_str(" nop");
        }
        body.push_str("))");
        let wat = format!(
            r#"(component {body} (core instance (instantiate $m)) (instance $e) (export "{FILTER}" (instance $e)))"#
        );
        let budget = CompileBudget {
            max_function_bytes: 1000,
            ..CompileBudget::default()
        };
        let e = check("body", &wat::parse_str(wat).unwrap(), &budget)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bytes of one function body"), "{e}");
    }

    #[test]
    fn the_world_is_checked_before_compiling() {
        let e = check(
            "other",
            &component("wasi:cli/run@0.2.0", 1, 0),
            &CompileBudget::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("for another world") && e.contains("`wasi:cli/run@0.2.0`"),
            "{e}"
        );
        let wat = format!(
            r#"(component (import "evil:net/socket" (instance)) (instance $e) (export "{FILTER}" (instance $e)))"#
        );
        let e = check(
            "imp",
            &wat::parse_str(wat).unwrap(),
            &CompileBudget::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("`evil:net/socket`"), "{e}");
    }

    #[test]
    fn slots_bound_concurrent_compilations() {
        let slots = CompileSlots::new(1);
        let held = slots.acquire(Instant::now()).unwrap();
        assert!(
            slots
                .acquire(Instant::now() + Duration::from_millis(20))
                .is_none()
        );
        drop(held);
        assert!(slots.acquire(Instant::now()).is_some());
    }
}
