//! The producer's side: an [`ExchangeSender`] over a TCP connection that
//! sends only against the credit its consumer granted.

use std::io::{IoSlice, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use weir_engine::channel::{Disconnected, Envelope, ExchangeSender, TrySend};

use crate::{ChannelKey, NetError, SocketSettings, frame, read_frame, tune};

/// Credit granted and not yet used, and whether the connection is gone.
#[derive(Default)]
struct Credit {
    available: u32,
    broken: bool,
}

/// A producer's end of a network exchange. Several producer subtasks of one
/// worker may share it (each message carries its producer's slot); each
/// producer's messages arrive in the order it sent them.
pub struct NetworkSender {
    /// The socket and a frame buffer, written under one lock so frames of
    /// different producers never interleave.
    out: Mutex<(TcpStream, Vec<u8>)>,
    credit: Arc<(Mutex<Credit>, Condvar)>,
    capacity: u32,
    channel: ChannelKey,
    addr: String,
}

/// Opens the exchange of consumer `channel` at `addr`, a worker's
/// [`DataServer`](crate::DataServer).
///
/// # Errors
/// The address cannot be reached in time, or the worker refuses the
/// channel (it does not host it, or it belongs to an earlier attempt).
pub fn connect(
    addr: &str,
    channel: ChannelKey,
    settings: &SocketSettings,
) -> Result<Arc<NetworkSender>, NetError> {
    let io = |op: &'static str| {
        let addr = addr.to_string();
        move |source| NetError::Io { op, addr, source }
    };
    let target = addr
        .to_socket_addrs()
        .map_err(io("resolve"))?
        .next()
        .ok_or_else(|| NetError::Protocol(format!("`{addr}` resolves to no address")))?;
    let mut stream =
        TcpStream::connect_timeout(&target, settings.connect_timeout).map_err(io("connect to"))?;
    tune(&stream, settings).map_err(io("configure"))?;
    stream
        .set_read_timeout(Some(settings.connect_timeout))
        .map_err(io("configure"))?;
    // The port's challenge, answered in the hello.
    let mut buf = Vec::new();
    let nonce = match read_frame(&mut stream, &mut buf).map_err(io("read from"))? {
        Some(frame::CHALLENGE) if buf.len() == frame::NONCE => buf.clone(),
        _ => {
            return Err(NetError::Protocol(format!(
                "`{addr}` is not a weir data port of this version (no challenge)"
            )));
        }
    };
    frame::hello(&channel, &nonce, settings.secret.as_ref(), &mut buf);
    stream.write_all(&buf).map_err(io("write to"))?;
    let tag = read_frame(&mut stream, &mut buf).map_err(io("read from"))?;
    let capacity = match tag {
        Some(frame::ACCEPT) if buf.len() == 4 => {
            u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]])
        }
        Some(frame::REFUSE) if !buf.is_empty() => {
            return Err(NetError::Refused {
                addr: addr.to_string(),
                channel,
                reason: String::from_utf8_lossy(&buf[1..]).into_owned(),
                retry: buf[0] == frame::NOT_HOSTED,
            });
        }
        Some(other) => {
            return Err(NetError::Protocol(format!(
                "`{addr}` answered the hello with frame {other}"
            )));
        }
        None => {
            return Err(NetError::Protocol(format!(
                "`{addr}` closed the connection without answering"
            )));
        }
    };
    stream.set_read_timeout(None).map_err(io("configure"))?;
    let credit = Arc::new((
        Mutex::new(Credit {
            available: capacity,
            broken: false,
        }),
        Condvar::new(),
    ));
    let reader = stream.try_clone().map_err(io("configure"))?;
    let grants = credit.clone();
    let label = channel.to_string();
    std::thread::Builder::new()
        .name(format!("weir-credit-{}-{}", channel.task, channel.subtask))
        .spawn(move || read_credits(reader, &grants, &label))
        .map_err(io("start a reader for"))?;
    Ok(Arc::new(NetworkSender {
        out: Mutex::new((stream, Vec::new())),
        credit,
        capacity,
        channel,
        addr: addr.to_string(),
    }))
}

/// Adds the credits the consumer grants until the connection ends; then
/// marks it broken and wakes every waiting producer.
fn read_credits(mut stream: TcpStream, credit: &(Mutex<Credit>, Condvar), label: &str) {
    let mut buf = Vec::new();
    loop {
        match read_frame(&mut stream, &mut buf) {
            Ok(Some(frame::CREDIT)) if buf.len() == 4 => {
                let n = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
                let mut c = credit.0.lock().unwrap_or_else(PoisonError::into_inner);
                c.available = c.available.saturating_add(n);
                credit.1.notify_all();
            }
            Ok(None) => break,
            Ok(Some(other)) => {
                tracing::warn!(
                    channel = label,
                    "unexpected frame {other} from the consumer"
                );
                break;
            }
            Err(e) => {
                tracing::debug!(channel = label, "credit stream ended: {e}");
                break;
            }
        }
    }
    let mut c = credit.0.lock().unwrap_or_else(PoisonError::into_inner);
    c.broken = true;
    credit.1.notify_all();
}

impl NetworkSender {
    /// The consumer this sender feeds.
    pub fn channel(&self) -> &ChannelKey {
        &self.channel
    }

    /// The consumer's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Credit available now (for tests and metrics).
    pub fn credit(&self) -> u32 {
        self.credit
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .available
    }

    /// Closes the connection: the consumer sees this producer disconnect.
    pub fn close(&self) {
        let out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = out.0.shutdown(std::net::Shutdown::Both);
    }

    fn write(&self, envelope: &Envelope) -> Result<(), Disconnected> {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let (stream, buf) = &mut *out;
        let tail = frame::message(envelope.0, &envelope.1, buf);
        let mut parts = [
            IoSlice::new(buf),
            IoSlice::new(tail[0]),
            IoSlice::new(tail[1]),
        ];
        if let Err(e) = write_all_vectored(stream, &mut parts) {
            tracing::debug!(channel = %self.channel, "send failed: {e}");
            let _ = stream.shutdown(std::net::Shutdown::Both);
            drop(out);
            let mut c = self.credit.0.lock().unwrap_or_else(PoisonError::into_inner);
            c.broken = true;
            self.credit.1.notify_all();
            return Err(Disconnected);
        }
        Ok(())
    }
}

impl ExchangeSender for NetworkSender {
    fn try_send(&self, envelope: Envelope) -> Result<(), TrySend> {
        {
            let mut c = self.credit.0.lock().unwrap_or_else(PoisonError::into_inner);
            if c.broken {
                return Err(TrySend::Disconnected);
            }
            if c.available == 0 {
                return Err(TrySend::Full(envelope));
            }
            c.available -= 1;
        }
        self.write(&envelope)
            .map_err(|Disconnected| TrySend::Disconnected)
    }

    fn send(&self, envelope: Envelope) -> Result<(), Disconnected> {
        {
            let mut c = self.credit.0.lock().unwrap_or_else(PoisonError::into_inner);
            while c.available == 0 && !c.broken {
                c = self
                    .credit
                    .1
                    .wait(c)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if c.broken {
                return Err(Disconnected);
            }
            c.available -= 1;
        }
        self.write(&envelope)
    }

    fn capacity(&self) -> usize {
        self.capacity as usize
    }
}

impl Drop for NetworkSender {
    fn drop(&mut self) {
        self.close();
    }
}

/// Writes every slice, in order, with as few system calls as the socket
/// allows.
fn write_all_vectored(w: &mut impl Write, mut parts: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    IoSlice::advance_slices(&mut parts, 0);
    while !parts.is_empty() {
        match w.write_vectored(parts) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut parts, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
