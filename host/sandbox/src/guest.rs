//! What the host keeps per guest instance: the store data.
//!
//! A guest sees WASI with nothing behind it — no preopened directories, no
//! environment variables, no arguments, no sockets — plus `weir:udf/log`. Its
//! stdout and stderr go to a [`GuestConsole`], which forwards whole lines to the
//! host's log and keeps the last few for error messages (a Rust panic message
//! or a Python traceback ends up there just before the trap).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::log;

/// Store data of one guest instance.
pub(crate) struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Memory cap of the whole instance, in bytes: all its linear memories
    /// and tables together (components of some toolchains have several).
    memory_cap: usize,
    /// Set when the guest asked for more memory than the cap.
    pub(crate) memory_refused: Option<usize>,
    /// Bytes of linear memory the guest holds, all memories together.
    pub(crate) memory_bytes: usize,
    /// Bytes of table elements the guest holds, all tables together.
    pub(crate) table_bytes: usize,
    /// The guest's stdout and stderr.
    pub(crate) console: GuestConsole,
    /// Who this guest is, for log lines.
    label: Arc<str>,
    /// Keyed state and timers, for keyed-process guests.
    pub(crate) keyed: Option<Box<dyn crate::keyed::KeyedContext>>,
    /// Set when a host call (a state access) failed during a guest call.
    pub(crate) host_failure: Option<String>,
}

impl GuestState {
    pub(crate) fn new(label: Arc<str>, memory_cap: usize) -> Self {
        let console = GuestConsole::new(label.clone());
        let wasi = WasiCtxBuilder::new()
            .stdout(console.clone())
            .stderr(console.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            memory_cap,
            memory_refused: None,
            memory_bytes: 0,
            table_bytes: 0,
            console,
            label,
            keyed: None,
            host_failure: None,
        }
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// What one table element costs the host (a pointer).
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

impl GuestState {
    /// Admits growth of `more` bytes if the instance stays within its cap;
    /// otherwise records the refused total, for the error.
    fn admit(&mut self, more: usize) -> wasmtime::Result<()> {
        let total = self
            .memory_bytes
            .saturating_add(self.table_bytes)
            .saturating_add(more);
        if total > self.memory_cap {
            self.memory_refused = Some(total);
            // An error (rather than `Ok(false)`) traps the guest at once, so it
            // cannot limp on after a failed allocation.
            return Err(wasmtime::format_err!(
                "memory cap of {} bytes exceeded (memories and tables of the instance together)",
                self.memory_cap
            ));
        }
        Ok(())
    }
}

impl ResourceLimiter for GuestState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let more = desired.saturating_sub(current);
        self.admit(more)?;
        self.memory_bytes += more;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > 1 << 20 {
            return Ok(false);
        }
        let more = desired
            .saturating_sub(current)
            .saturating_mul(TABLE_ELEMENT_BYTES);
        self.admit(more)?;
        self.table_bytes += more;
        Ok(true)
    }
}

impl log::Host for GuestState {
    fn log(&mut self, level: log::Level, message: String) {
        let guest = &*self.label;
        match level {
            log::Level::Trace => tracing::trace!(target: "weir::guest", guest, "{message}"),
            log::Level::Debug => tracing::debug!(target: "weir::guest", guest, "{message}"),
            log::Level::Info => tracing::info!(target: "weir::guest", guest, "{message}"),
            log::Level::Warn => tracing::warn!(target: "weir::guest", guest, "{message}"),
            log::Level::Error => tracing::error!(target: "weir::guest", guest, "{message}"),
        }
    }
}

/// How many of the guest's last output lines are kept for error messages.
const CONSOLE_TAIL_LINES: usize = 40;
/// Longest line kept; longer ones are cut (a guest cannot make the host hoard).
const CONSOLE_MAX_LINE: usize = 2048;

/// A guest's stdout and stderr: lines go to the host log at debug level, the
/// last [`CONSOLE_TAIL_LINES`] are kept. Writes never fail and never block.
#[derive(Clone)]
pub(crate) struct GuestConsole {
    inner: Arc<Mutex<ConsoleBuffer>>,
}

struct ConsoleBuffer {
    label: Arc<str>,
    partial: Vec<u8>,
    tail: VecDeque<String>,
}

impl GuestConsole {
    fn new(label: Arc<str>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(ConsoleBuffer {
                label,
                partial: Vec::new(),
                tail: VecDeque::new(),
            })),
        }
    }

    fn write(&self, bytes: &[u8]) {
        let mut buf = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        for &b in bytes {
            if b == b'\n' {
                buf.end_line();
            } else if buf.partial.len() < CONSOLE_MAX_LINE {
                buf.partial.push(b);
            }
        }
    }

    /// The last lines the guest wrote, including an unterminated one.
    pub(crate) fn tail(&self) -> String {
        let buf = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut lines: Vec<String> = buf.tail.iter().cloned().collect();
        if !buf.partial.is_empty() {
            lines.push(String::from_utf8_lossy(&buf.partial).into_owned());
        }
        lines.join("\n")
    }
}

impl ConsoleBuffer {
    fn end_line(&mut self) {
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        tracing::debug!(target: "weir::guest", guest = &*self.label, "{line}");
        if self.tail.len() == CONSOLE_TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }
}

impl IsTerminal for GuestConsole {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestConsole {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestConsole {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestConsole {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        GuestConsole::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for GuestConsole {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_for_all_memories_and_tables_of_an_instance() {
        let mut g = GuestState::new("t".into(), 4 << 20);
        // Two memories of 1.5 MiB each: 3 MiB, within the cap.
        assert!(g.memory_growing(0, 3 << 19, None).unwrap());
        assert!(g.memory_growing(0, 3 << 19, None).unwrap());
        assert_eq!(g.memory_bytes, 3 << 20);
        // A table of 64 Ki elements: 512 KiB more, still within.
        assert!(g.table_growing(0, 1 << 16, None).unwrap());
        // A third memory of 1 MiB would make 4.5 MiB: refused, although
        // each memory alone is under the cap.
        assert!(g.memory_growing(0, 1 << 20, None).is_err());
        assert_eq!(g.memory_refused, Some((3 << 20) + (1 << 19) + (1 << 20)));
        // Growing an existing memory counts only the growth.
        let mut g = GuestState::new("t".into(), 4 << 20);
        assert!(g.memory_growing(0, 2 << 20, None).unwrap());
        assert!(g.memory_growing(2 << 20, 4 << 20, None).unwrap());
        assert!(g.memory_growing(4 << 20, (4 << 20) + 65536, None).is_err());
    }
}
