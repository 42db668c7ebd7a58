//! The consumer's side: a worker's data port, which hands what remote
//! producers send to the exchanges of the consumer subtasks it hosts and
//! grants credit back as it does.

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use weir_engine::Message;
use weir_engine::Signal;
use weir_engine::channel::ExchangeSender;

use crate::{ChannelKey, NetError, SocketSettings, frame, read_frame, tune};

/// Called when a remote producer's connection breaks before it sent the end
/// of its data: the consumer cannot go on without it.
pub type OnBroken = Arc<dyn Fn(&NetError) + Send + Sync>;

/// What a hosted consumer exchange takes from each connection.
#[derive(Clone, Copy, Debug)]
pub struct Inbound {
    /// Buffers granted to each connection (at least 1).
    pub credits: u32,
    /// The consumer's producer slots, `0..producers`: a message for another
    /// slot breaks the connection.
    pub producers: u32,
}

struct Hosted {
    /// The consumer subtask's exchange (its local sender side).
    into: Arc<dyn ExchangeSender>,
    inbound: Inbound,
    on_broken: OnBroken,
}

type Hosts = Arc<Mutex<HashMap<ChannelKey, Hosted>>>;

/// A worker's data port: accepts producers' connections and feeds the
/// consumer exchanges registered on it.
pub struct DataServer {
    addr: SocketAddr,
    hosted: Hosts,
    stop: Arc<AtomicBool>,
    received: Arc<Received>,
}

/// What a data port has received from remote producers.
#[derive(Debug, Default)]
pub struct Received {
    /// Messages (batches and signals).
    pub messages: AtomicU64,
    /// Records in those batches.
    pub records: AtomicU64,
    /// Key and value bytes of those batches.
    pub bytes: AtomicU64,
}

/// A consumer exchange open to remote producers; dropping it closes it to
/// new connections.
pub struct Registration {
    key: ChannelKey,
    hosted: Hosts,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hosted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

impl DataServer {
    /// Listens on `addr` (port 0: any free port).
    ///
    /// # Errors
    /// The address cannot be bound.
    pub fn bind(addr: &str, settings: SocketSettings) -> Result<Self, NetError> {
        let io = |op: &'static str| {
            let addr = addr.to_string();
            move |source| NetError::Io { op, addr, source }
        };
        let listener = TcpListener::bind(addr).map_err(io("listen on"))?;
        let local = listener.local_addr().map_err(io("listen on"))?;
        let hosted: Hosts = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(Received::default());
        let (h, s, r) = (hosted.clone(), stop.clone(), received.clone());
        std::thread::Builder::new()
            .name("weir-data-accept".into())
            .spawn(move || accept(listener, &h, &s, &r, settings))
            .map_err(io("start the acceptor of"))?;
        Ok(Self {
            addr: local,
            hosted,
            stop,
            received,
        })
    }

    /// The address producers connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// What this port has received so far.
    pub fn received(&self) -> &Received {
        &self.received
    }

    /// Opens consumer exchange `key` to remote producers: what they send goes
    /// into `into`, as `inbound` allows. `on_broken` hears of a connection
    /// that broke before its producers ended their data, or that broke the
    /// protocol.
    pub fn register(
        &self,
        key: ChannelKey,
        into: Arc<dyn ExchangeSender>,
        inbound: Inbound,
        on_broken: OnBroken,
    ) -> Registration {
        self.hosted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                key.clone(),
                Hosted {
                    into,
                    inbound: Inbound {
                        credits: inbound.credits.max(1),
                        ..inbound
                    },
                    on_broken,
                },
            );
        Registration {
            key,
            hosted: self.hosted.clone(),
        }
    }
}

impl Drop for DataServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the acceptor so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn accept(
    listener: TcpListener,
    hosted: &Hosts,
    stop: &AtomicBool,
    received: &Arc<Received>,
    settings: SocketSettings,
) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("data port: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let hosted = hosted.clone();
        let received = received.clone();
        let settings = settings.clone();
        let spawned = std::thread::Builder::new()
            .name("weir-data-in".into())
            .spawn(move || {
                let peer = stream
                    .peer_addr()
                    .map_or_else(|_| "?".to_string(), |a| a.to_string());
                if let Err(e) = serve(stream, &hosted, &received, &settings) {
                    tracing::debug!(peer, "data connection: {e}");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("data port: cannot start a connection thread: {e}");
        }
    }
}

/// One producer connection: the hello, then messages forwarded against
/// credit until the producer closes.
fn serve(
    stream: TcpStream,
    hosted: &Hosts,
    received: &Received,
    settings: &SocketSettings,
) -> Result<(), NetError> {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let io = |op: &'static str| {
        let addr = peer.clone();
        move |source| NetError::Io { op, addr, source }
    };
    tune(&stream, settings).map_err(io("configure"))?;
    stream
        .set_read_timeout(Some(settings.connect_timeout))
        .map_err(io("configure"))?;
    let mut out = stream.try_clone().map_err(io("configure"))?;
    let mut input = BufReader::with_capacity(256 << 10, stream);
    let mut buf = Vec::new();
    let mut reply = Vec::new();
    // A fresh challenge: the producer proves it holds the cluster's secret
    // for this connection (a recorded hello does not open another).
    let mut nonce = [0u8; frame::NONCE];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| NetError::Protocol("no system randomness for a challenge".into()))?;
    frame::begin(&mut reply, frame::CHALLENGE);
    reply.extend_from_slice(&nonce);
    frame::finish(&mut reply);
    out.write_all(&reply).map_err(io("write to"))?;
    let (key, proven) = match read_frame(&mut input, &mut buf).map_err(io("read from"))? {
        Some(frame::HELLO) => {
            let (key, signed, mac) = frame::decode_hello(&buf)?;
            let proven = settings
                .secret
                .as_ref()
                .is_none_or(|s| s.verify(&nonce, signed, mac));
            (key, proven)
        }
        Some(other) => return Err(NetError::Protocol(format!("frame {other} before hello"))),
        None => return Ok(()),
    };
    if !proven {
        let reason = "the producer does not hold this worker's cluster secret".to_string();
        tracing::warn!(peer, channel = %key, "data port: refused a connection: {reason}");
        return Err(refuse(&mut out, frame::UNAUTHENTICATED, reason, peer, key));
    }
    let found = {
        let hosts = hosted.lock().unwrap_or_else(PoisonError::into_inner);
        match hosts.get(&key) {
            Some(h) => Ok((h.into.clone(), h.inbound, h.on_broken.clone())),
            None => Err(refusal(&hosts, &key)),
        }
    };
    let (into, Inbound { credits, producers }, on_broken) = match found {
        Ok(f) => f,
        Err((code, reason)) => return Err(refuse(&mut out, code, reason, peer, key)),
    };
    input
        .get_ref()
        .set_read_timeout(None)
        .map_err(io("configure"))?;
    grant(&mut out, frame::ACCEPT, credits, &mut reply).map_err(io("write to"))?;

    // Slots seen on this connection, and those that ended their data: a
    // connection that closes with a slot still open broke.
    let mut open: HashSet<u32> = HashSet::new();
    let mut owed = 0u32;
    let result = loop {
        let (slot, msg) = match frame::read_message(&mut input, &mut buf, &peer) {
            Ok(Some(m)) => m,
            Ok(None) if open.is_empty() => break Ok(()),
            Ok(None) => {
                break Err(NetError::ProducerLost {
                    peer: peer.clone(),
                    open: open.len(),
                });
            }
            Err(e) => break Err(e),
        };
        if slot >= producers {
            break Err(NetError::Protocol(format!(
                "a message for producer slot {slot} of a consumer with {producers}"
            )));
        }
        received.messages.fetch_add(1, Ordering::Relaxed);
        if let Message::Data(b) = &msg {
            received
                .records
                .fetch_add(b.len() as u64, Ordering::Relaxed);
            received.bytes.fetch_add(
                (b.keys.data.len() + b.values.data.len()) as u64,
                Ordering::Relaxed,
            );
        }
        if matches!(msg, Message::Signal(Signal::EndOfData)) {
            open.remove(&slot);
        } else {
            open.insert(slot);
        }
        if into.send((slot, msg)).is_err() {
            // The consumer is gone (the job is ending or failed): nothing
            // more to take.
            break Ok(());
        }
        owed += 1;
        // Credit goes back in bulk, half the window at a time. That cannot
        // stall the producer: while it waits for credit, every buffer of
        // the window is on the wire, buffered here or owed, so reading on
        // brings what is owed to half the window.
        if owed >= credits.div_ceil(2) && grant(&mut out, frame::CREDIT, owed, &mut reply).is_ok() {
            owed = 0;
        }
    };
    let _ = out.shutdown(std::net::Shutdown::Both);
    if let Err(e) = &result {
        tracing::warn!(channel = %key, "remote producer lost: {e}");
        on_broken(e);
    }
    result
}

fn grant(out: &mut TcpStream, tag: u8, n: u32, buf: &mut Vec<u8>) -> std::io::Result<()> {
    frame::begin(buf, tag);
    buf.extend_from_slice(&n.to_le_bytes());
    frame::finish(buf);
    out.write_all(buf)
}

/// Why `key` is not hosted here, as plainly as the registry can tell, with
/// its code: [`frame::NOT_HOSTED`] (maybe not yet) or [`frame::STALE`].
/// Tells the producer why its channel is refused (before the connection
/// closes), and returns that as the error.
fn refuse(
    out: &mut TcpStream,
    code: u8,
    reason: String,
    peer: String,
    channel: ChannelKey,
) -> NetError {
    let mut reply = Vec::new();
    frame::begin(&mut reply, frame::REFUSE);
    reply.push(code);
    reply.extend_from_slice(reason.as_bytes());
    frame::finish(&mut reply);
    let _ = out.write_all(&reply);
    NetError::Refused {
        addr: peer,
        channel,
        reason,
        retry: code == frame::NOT_HOSTED,
    }
}

fn refusal(hosts: &HashMap<ChannelKey, Hosted>, key: &ChannelKey) -> (u8, String) {
    let current = hosts
        .keys()
        .filter(|k| k.job == key.job && k.task == key.task && k.subtask == key.subtask)
        .map(|k| k.attempt)
        .max();
    match current {
        Some(a) if a > key.attempt => (
            frame::STALE,
            format!(
                "attempt {} of job `{}` is over (attempt {a} runs now)",
                key.attempt, key.job
            ),
        ),
        _ => (frame::NOT_HOSTED, format!("this worker hosts no {key}")),
    }
}
