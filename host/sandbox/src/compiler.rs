//! Where a component is compiled: on a thread of this process, or in a
//! child process that the kernel bounds.
//!
//! Compiling untrusted code costs what its shape dictates, before any
//! per-instance limit applies. [`crate::budget`] refuses shapes that are
//! obviously too big; what remains is bounded while it runs:
//!
//! - [`Compiler::Thread`] compiles on a thread of this process under the
//!   budget's time limit. Past it the caller gets an error, but the thread
//!   cannot be stopped: it runs to its end and its memory is not bounded.
//!   The default for libraries and tests.
//! - [`Compiler::Process`] runs a compile helper (`weir` itself, started
//!   with a hidden subcommand that calls [`serve_helper`]): the component
//!   goes in on stdin, the serialized artifact comes out on stdout. The
//!   kernel caps the helper's data memory ([`CompileBudget::max_memory`],
//!   `RLIMIT_DATA`) and CPU time; the helper is killed at the time limit,
//!   so an abandoned compilation costs nothing after it; its environment is
//!   empty and it dies with its parent. `weir serve` and `weir run` use it.
//!
//! The helper runs the same wasmtime with the same compilation settings as
//! the parent, so its artifact deserializes into the parent's engine
//! (wasmtime checks the settings and version in the artifact's header).
//! Trusting the helper's native code is trusting the same compiler the
//! parent would otherwise run in process.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use wasmtime::Engine;

use crate::budget::CompileBudget;
use crate::error::SandboxError;

/// Where components are compiled; see the [module documentation](self).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Compiler {
    /// On a thread of this process, under the time limit only.
    #[default]
    Thread,
    /// In a child process: `program` with `args` and the component's size
    /// in bytes, which must call [`serve_helper`] (for `weir`:
    /// `weir __compile-helper`).
    Process {
        /// The helper program.
        program: PathBuf,
        /// Its arguments.
        args: Vec<String>,
    },
}

/// Exit code of a helper that found the component invalid (its message is
/// on stderr).
const EXIT_INVALID: i32 = 3;

/// The helper's side: reads one component from `input` (at most
/// `max_bytes`), compiles it with `engine` and writes the serialized
/// artifact to `output`. The parent has checked it against its budget.
///
/// # Errors
/// What the compiler reports, or an I/O error on the pipes.
pub fn serve_helper(
    engine: &Engine,
    max_bytes: usize,
    input: &mut impl Read,
    output: &mut impl Write,
) -> Result<(), SandboxError> {
    let io = |e: std::io::Error| SandboxError::Setup(format!("compile helper: {e}"));
    let mut bytes = Vec::new();
    input
        .take(max_bytes as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() > max_bytes {
        return Err(SandboxError::Setup(format!(
            "compile helper: more than {max_bytes} bytes on stdin"
        )));
    }
    crate::cache::check_header("component", &bytes)?;
    let artifact = engine
        .precompile_component(&bytes)
        .map_err(|e| SandboxError::Invalid {
            module: "component".into(),
            message: format!("{e:#}"),
        })?;
    output.write_all(&artifact).map_err(io)?;
    output.flush().map_err(io)
}

/// The exit code for the helper's `main` after [`serve_helper`] returned
/// `result`: 0, or [`EXIT_INVALID`] with the message on stderr.
pub fn helper_exit_code(result: &Result<(), SandboxError>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(SandboxError::Invalid { message, .. }) => {
            eprintln!("{message}");
            EXIT_INVALID
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// The parent's side: compiles `bytes` (module `name`) in a helper process
/// under `budget`, returning the serialized artifact.
pub(crate) fn compile_in_helper(
    program: &std::path::Path,
    args: &[String],
    name: &str,
    bytes: &[u8],
    budget: &CompileBudget,
    deadline: Instant,
) -> Result<Vec<u8>, SandboxError> {
    let setup = |what: &str, e: std::io::Error| {
        SandboxError::Setup(format!(
            "cannot {what} the compile helper `{}`: {e}",
            program.display()
        ))
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .arg(bytes.len().to_string())
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    limit_child(&mut cmd, budget);
    let mut child = cmd.spawn().map_err(|e| setup("start", e))?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    // The pipes are served on threads of their own so that neither side
    // blocks the other; a helper that dies early breaks the pipe (ignored).
    let (status, artifact, message) = std::thread::scope(|scope| {
        scope.spawn(move || {
            let _ = stdin.write_all(bytes);
        });
        let reader = scope.spawn(move || {
            let mut out = Vec::new();
            let _ = stdout.read_to_end(&mut out);
            out
        });
        let errors = scope.spawn(move || {
            let mut err = Vec::new();
            let _ = (&mut stderr).take(64 << 10).read_to_end(&mut err);
            String::from_utf8_lossy(&err).trim().to_string()
        });
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(Some(status)),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Ok(None);
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(e);
                }
            }
        };
        (
            status,
            reader.join().unwrap_or_default(),
            errors.join().unwrap_or_default(),
        )
    });
    let status = status.map_err(|e| setup("wait for", e))?;
    let Some(status) = status else {
        tracing::warn!(module = name, limit = ?budget.compile_timeout, "compile helper killed past its time limit");
        return Err(SandboxError::CompileTimeout {
            module: name.to_string(),
            limit: budget.compile_timeout,
        });
    };
    if status.success() {
        return Ok(artifact);
    }
    Err(failure(name, status, &message, budget))
}

/// What a helper that did not succeed means.
fn failure(name: &str, status: ExitStatus, message: &str, budget: &CompileBudget) -> SandboxError {
    use std::os::unix::process::ExitStatusExt;
    let out_of_memory = message.contains("memory allocation of")
        || message.contains("Cannot allocate memory")
        || message.contains("out of memory");
    if out_of_memory {
        return SandboxError::CompileMemory {
            module: name.to_string(),
            limit: budget.max_memory,
        };
    }
    // RLIMIT_CPU: the kernel's backstop behind the wall-clock limit.
    if status.signal() == Some(libc::SIGXCPU) {
        return SandboxError::CompileTimeout {
            module: name.to_string(),
            limit: budget.compile_timeout,
        };
    }
    if status.code() == Some(EXIT_INVALID) {
        return SandboxError::Invalid {
            module: name.to_string(),
            message: message.to_string(),
        };
    }
    SandboxError::Setup(format!(
        "the compile helper for module `{name}` failed ({status}): {message}"
    ))
}

/// The kernel's limits on the helper, set between fork and exec: data
/// memory, CPU time (the wall-clock limit on every core, as a backstop),
/// no core file, and death with the parent.
fn limit_child(cmd: &mut Command, budget: &CompileBudget) {
    use std::os::unix::process::CommandExt;
    let memory = budget.max_memory as libc::rlim_t;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as u64;
    let cpu = budget
        .compile_timeout
        .as_secs()
        .saturating_add(1)
        .saturating_mul(cores) as libc::rlim_t;
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes async-signal-safe system calls (setrlimit, prctl) on values
    // computed before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let set = |resource, soft: libc::rlim_t, hard: libc::rlim_t| {
                let limit = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                };
                if libc::setrlimit(resource, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            set(libc::RLIMIT_DATA, memory, memory)?;
            // SIGXCPU at the soft limit (reported as the time limit), SIGKILL
            // a second later if it is ignored.
            set(libc::RLIMIT_CPU, cpu, cpu.saturating_add(1))?;
            set(libc::RLIMIT_CORE, 0, 0)?;
            #[cfg(target_os = "linux")]
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
