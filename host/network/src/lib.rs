//! Network exchanges: the edges of a dataflow between subtasks on different
//! workers.
//!
//! The dataflow core moves messages through the
//! [`ExchangeSender`](weir_engine::channel::ExchangeSender) /
//! [`ExchangeReceiver`](weir_engine::channel::ExchangeReceiver) interface;
//! in one process that is a bounded channel. This crate is the other
//! implementation: a consumer's worker runs a [`DataServer`] and
//! [registers](DataServer::register) each consumer subtask's exchange; a
//! producer's worker [`connect`]s to it and gets an `ExchangeSender` that
//! operators use exactly like a local one.
//!
//! # Flow control
//! Credit-based, as in Flink's network stack: the consumer grants a number
//! of buffers (one buffer is one message: a batch or a signal) when the
//! connection opens, and one more each time it has handed a received message
//! to the consumer subtask's exchange. The producer sends only against
//! credit; without credit it waits, and that wait is the backpressure the
//! engine measures, the same figure as a full local channel. So the socket
//! never holds more than the granted buffers, a slow consumer slows exactly
//! its producers, and memory stays bounded on both sides.
//!
//! # Order and signals
//! Data, watermarks, idleness, checkpoint barriers and end-of-data travel on
//! the same connection, in the order sent; each message carries its
//! producer's slot at the consumer, as on a local exchange. Unaligned
//! checkpoints need nothing more: the consumer's aligner captures what it
//! receives after a barrier, wherever it came from.
//!
//! # Failure and fencing
//! A connection names its channel (job, attempt, task, subtask) in its first
//! frame; the consumer refuses a channel it does not host, including one of
//! an earlier attempt of the job, so a producer left over from a failed
//! attempt (a zombie) cannot feed a new one. A broken connection disconnects
//! both sides: the producer's sends fail, the consumer's exchange loses that
//! producer; the job then fails over as it does for any disconnection. TCP
//! keepalive turns a peer that vanished without closing into a broken
//! connection.

use std::time::Duration;

mod frame;
pub mod placement;
mod receiver;
mod sender;

pub use placement::SpreadPlacement;
pub use receiver::{DataServer, Inbound, OnBroken, Received, Registration};
pub use sender::{NetworkSender, connect};

/// One consumer subtask's input exchange, as producers address it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChannelKey {
    /// The job (`tenant/job` on a server).
    pub job: String,
    /// The job's attempt: every restart makes a new one, and channels of
    /// older attempts are refused.
    pub attempt: u64,
    /// The consumer task's index in the job's plan (`weir_engine::plan`).
    pub task: u32,
    /// The consumer subtask.
    pub subtask: u32,
}

impl std::fmt::Display for ChannelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "job `{}` attempt {} task {} subtask {}",
            self.job, self.attempt, self.task, self.subtask
        )
    }
}

/// What went wrong on a network exchange.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The socket failed.
    #[error("{op} `{addr}`: {source}")]
    Io {
        /// What was done: `connect to`, `read from`, `write to`, `listen on`.
        op: &'static str,
        /// The peer or local address.
        addr: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// The consumer does not host the channel.
    #[error("`{addr}` refused {channel}: {reason}")]
    Refused {
        /// The consumer's address.
        addr: String,
        /// The channel asked for.
        channel: ChannelKey,
        /// Why.
        reason: String,
        /// Whether it may be hosted soon (its worker is still starting).
        retry: bool,
    },
    /// A producer's connection closed before its end of data (its worker
    /// died, or its part of the job failed).
    #[error("the producer at `{peer}` closed the connection with {open} producer(s) not ended")]
    ProducerLost {
        /// The producer's address.
        peer: String,
        /// Producer slots on it that had not ended.
        open: usize,
    },
    /// The peer broke the protocol (or is not weir).
    #[error("network exchange protocol: {0}")]
    Protocol(String),
    /// A frame whose fields run past its end.
    #[error(transparent)]
    Truncated(#[from] weir_record::codec::Truncated),
}

/// Settings of the sockets under an exchange.
#[derive(Clone, Debug)]
pub struct SocketSettings {
    /// Time to connect, and to get an answer to the hello.
    pub connect_timeout: Duration,
    /// TCP keepalive: idle time before the first probe, and between probes.
    pub keepalive: Duration,
    /// The cluster's secret: with it, a data port accepts only producers
    /// that prove they hold it, and producers prove it to every data port.
    pub secret: Option<ClusterSecret>,
}

impl Default for SocketSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(5),
            secret: None,
        }
    }
}

/// A secret every worker of a cluster holds (the admin's, from a file):
/// a producer connecting to a data port answers the port's random challenge
/// with an HMAC-SHA256 under it, so a peer without it cannot open an
/// exchange, and a recorded hello cannot be replayed. It authenticates
/// connections; it does not encrypt the records (keep data ports on a
/// private network).
#[derive(Clone)]
pub struct ClusterSecret(ring::hmac::Key);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(…)")
    }
}

/// The fewest bytes a cluster secret may have.
pub const MIN_SECRET: usize = 16;

impl ClusterSecret {
    /// A secret of `bytes`.
    ///
    /// # Errors
    /// Fewer than [`MIN_SECRET`] bytes.
    pub fn new(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < MIN_SECRET {
            return Err(format!(
                "a cluster secret needs at least {MIN_SECRET} bytes (it has {}); make one with \
                 `head -c 32 /dev/urandom | base64`",
                bytes.len()
            ));
        }
        Ok(Self(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes)))
    }

    /// The secret in file `path` (surrounding whitespace trimmed).
    ///
    /// # Errors
    /// The file cannot be read, or holds too short a secret; naming it.
    pub fn read(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read(path)
            .map_err(|e| format!("cannot read the cluster secret `{}`: {e}", path.display()))?;
        Self::new(text.trim_ascii()).map_err(|e| format!("`{}`: {e}", path.display()))
    }

    /// The MAC of `nonce` followed by `signed`.
    pub(crate) fn sign(&self, nonce: &[u8], signed: &[u8]) -> [u8; frame::NONCE] {
        let mut ctx = ring::hmac::Context::with_key(&self.0);
        ctx.update(nonce);
        ctx.update(signed);
        let tag = ctx.sign();
        let mut out = [0; frame::NONCE];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Whether `mac` is the MAC of `nonce` followed by `signed` (in
    /// constant time).
    pub(crate) fn verify(&self, nonce: &[u8], signed: &[u8], mac: &[u8]) -> bool {
        let mut message = Vec::with_capacity(nonce.len() + signed.len());
        message.extend_from_slice(nonce);
        message.extend_from_slice(signed);
        ring::hmac::verify(&self.0, &message, mac).is_ok()
    }
}

fn tune(stream: &std::net::TcpStream, settings: &SocketSettings) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(settings.keepalive)
        .with_interval(settings.keepalive);
    socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive)
}

/// Reads one control frame (hello, accept, refuse, credit) into `buf`:
/// returns its tag; `buf` holds the body. `Ok(None)` at a clean end of
/// stream before a frame. Control frames are small: a longer one is an
/// error, so a peer cannot make this side allocate.
fn read_frame(r: &mut impl std::io::Read, buf: &mut Vec<u8>) -> std::io::Result<Option<u8>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > frame::MAX_CONTROL_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes"),
        ));
    }
    let mut tag = [0u8; 1];
    r.read_exact(&mut tag)?;
    buf.clear();
    buf.resize(len - 1, 0);
    r.read_exact(buf)?;
    Ok(Some(tag[0]))
}

#[cfg(test)]
mod tests;
