//! The wire format of a network exchange: length-prefixed frames, little
//! endian, one per message.
//!
//! ```text
//! frame    = len:u32 tag:u8 body        (len counts tag and body)
//! challenge= nonce:32 bytes             consumer → producer, first frame
//! hello    = magic "WEIRNET2" channel mac:32 bytes
//!                                       producer → consumer: the channel,
//!            and HMAC-SHA256 under the cluster's secret of the nonce and
//!            the magic and channel bytes (zeros without a secret)
//! accept   = credits:u32                consumer → producer, the initial credit
//! refuse   = code:u8 reason:bytes       consumer → producer, then close
//! data     = slot:u32 head_len:u32 head keys values
//!            head: rows, key and value offsets, timestamps, headers, the
//!            lengths of the key and value bytes, which follow the head
//! watermark= slot:u32 time:i64
//! idle     = slot:u32
//! barrier  = slot:u32 checkpoint:u64
//! end      = slot:u32                   end of data
//! credit   = n:u32                      consumer → producer: n more buffers
//! ```
//!
//! A batch travels as its columns. The small ones (offsets, timestamps,
//! headers) are copied into the frame's head; the key and value bytes, the
//! bulk, go to the socket straight from the batch's buffers (a vectored
//! write) and are read straight into the new batch's buffers. No record is
//! re-encoded; the receiver checks the columns' layout before it builds a
//! batch from them, so a corrupt frame is an error, never a panic or an
//! out-of-bounds read.

use std::io::Read;

use weir_engine::Message;
use weir_engine::Signal;
use weir_engine::watermark::Watermark;
use weir_record::codec::{Reader, Truncated, Writer};
use weir_record::{BytesColumn, Headers, RecordBatch};

use crate::{ChannelKey, NetError};

/// The first bytes of every connection.
pub(crate) const MAGIC: &[u8; 8] = b"WEIRNET2";
/// The size of a challenge's nonce and of a hello's MAC.
pub(crate) const NONCE: usize = 32;
/// A frame larger than this is refused (a batch is far smaller).
pub(crate) const MAX_FRAME: usize = 256 << 20;
/// A control frame (hello, accept, refuse, credit) or a signal larger than
/// this is refused.
pub(crate) const MAX_CONTROL_FRAME: usize = 64 << 10;

pub(crate) const HELLO: u8 = 1;
pub(crate) const ACCEPT: u8 = 2;
pub(crate) const REFUSE: u8 = 3;
pub(crate) const CHALLENGE: u8 = 4;
pub(crate) const DATA: u8 = 10;
pub(crate) const WATERMARK: u8 = 11;
pub(crate) const IDLE: u8 = 12;
pub(crate) const BARRIER: u8 = 13;
pub(crate) const END: u8 = 14;
pub(crate) const CREDIT: u8 = 20;

/// Refusal codes: the channel is not hosted (it may be soon: its worker is
/// still starting its part of the job).
pub(crate) const NOT_HOSTED: u8 = 1;
/// Refusal codes: the channel belongs to an attempt that is over.
pub(crate) const STALE: u8 = 2;
/// Refusal codes: the producer did not prove it holds the cluster's secret.
pub(crate) const UNAUTHENTICATED: u8 = 3;

/// Starts a frame in `out` (cleared): room for the length, then the tag.
pub(crate) fn begin(out: &mut Vec<u8>, tag: u8) {
    out.clear();
    out.extend_from_slice(&[0; 4]);
    out.push(tag);
}

/// Writes the frame's length into its first four bytes.
pub(crate) fn finish(out: &mut [u8]) {
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_le_bytes());
}

/// Encodes the hello frame naming the channel, answering `nonce` with
/// `secret` (a MAC of zeros without one).
pub(crate) fn hello(
    key: &ChannelKey,
    nonce: &[u8],
    secret: Option<&crate::ClusterSecret>,
    out: &mut Vec<u8>,
) {
    begin(out, HELLO);
    out.extend_from_slice(MAGIC);
    out.put_bytes(key.job.as_bytes());
    out.put_u64(key.attempt);
    out.put_u32(key.task);
    out.put_u32(key.subtask);
    let mac = secret.map_or([0; NONCE], |s| s.sign(nonce, &out[5..]));
    out.extend_from_slice(&mac);
    finish(out);
}

/// Decodes a hello frame's body: the channel, the signed bytes and the MAC.
pub(crate) fn decode_hello(body: &[u8]) -> Result<(ChannelKey, &[u8], &[u8]), NetError> {
    let Some(signed_len) = body.len().checked_sub(NONCE) else {
        return Err(NetError::Protocol("hello too short".into()));
    };
    let (signed, mac) = body.split_at(signed_len);
    let mut r = Reader::new("network hello", signed);
    if r.take("magic", MAGIC.len())? != MAGIC {
        return Err(NetError::Protocol(
            "not a weir network exchange of this version (bad magic)".into(),
        ));
    }
    let job = String::from_utf8(r.bytes("job")?.to_vec())
        .map_err(|_| NetError::Protocol("job id is not UTF-8".into()))?;
    let key = ChannelKey {
        job,
        attempt: r.u64("attempt")?,
        task: r.u32("task")?,
        subtask: r.u32("subtask")?,
    };
    Ok((key, signed, mac))
}

/// Encodes a message of producer `slot`: the frame is `out` followed by the
/// returned byte slices (a batch's key and value bytes, written as they
/// are; empty for a signal).
pub(crate) fn message<'a>(slot: u32, msg: &'a Message, out: &mut Vec<u8>) -> [&'a [u8]; 2] {
    match msg {
        Message::Data(batch) => {
            begin(out, DATA);
            out.put_u32(slot);
            let at = out.len();
            out.put_u32(0);
            put_head(batch, out);
            let head_len = (out.len() - at - 4) as u32;
            out[at..at + 4].copy_from_slice(&head_len.to_le_bytes());
            let tail = [&batch.keys.data[..], &batch.values.data[..]];
            let len = (out.len() - 4 + tail[0].len() + tail[1].len()) as u32;
            out[..4].copy_from_slice(&len.to_le_bytes());
            return tail;
        }
        Message::Signal(Signal::Watermark(w)) => {
            begin(out, WATERMARK);
            out.put_u32(slot);
            out.put_i64(w.0);
        }
        Message::Signal(Signal::Idle) => {
            begin(out, IDLE);
            out.put_u32(slot);
        }
        Message::Signal(Signal::Barrier(id)) => {
            begin(out, BARRIER);
            out.put_u32(slot);
            out.put_u64(*id);
        }
        Message::Signal(Signal::EndOfData) => {
            begin(out, END);
            out.put_u32(slot);
        }
    }
    finish(out);
    [&[], &[]]
}

/// Decodes a message frame (`tag`, `body`) into the producer's slot and the
/// message.
pub(crate) fn decode_message(tag: u8, body: &[u8]) -> Result<(u32, Message), NetError> {
    let mut r = Reader::new("network message", body);
    let slot = r.u32("slot")?;
    let msg = match tag {
        DATA => {
            let head_len = r.u32("head length")? as usize;
            let head = r.take("head", head_len)?;
            let head = parse_head(head)?;
            let keys = r.take("key bytes", head.key_bytes)?.to_vec();
            let values = r.take("value bytes", head.value_bytes)?.to_vec();
            Message::Data(head.into_batch(keys, values)?)
        }
        WATERMARK => Message::Signal(Signal::Watermark(Watermark(r.i64("watermark")?))),
        IDLE => Message::Signal(Signal::Idle),
        BARRIER => Message::Signal(Signal::Barrier(r.u64("checkpoint")?)),
        END => Message::Signal(Signal::EndOfData),
        other => return Err(NetError::Protocol(format!("unknown frame tag {other}"))),
    };
    if !r.is_empty() {
        return Err(NetError::Protocol(format!(
            "{} bytes after a message frame",
            r.left()
        )));
    }
    Ok((slot, msg))
}

/// Reads the next message frame from a producer's connection, a batch's
/// key and value bytes straight into the batch's buffers; `Ok(None)` at a
/// clean end of the stream.
pub(crate) fn read_message(
    r: &mut impl Read,
    buf: &mut Vec<u8>,
    peer: &str,
) -> Result<Option<(u32, Message)>, NetError> {
    let io = |source| NetError::Io {
        op: "read from",
        addr: peer.to_string(),
        source,
    };
    let mut len = [0u8; 4];
    // The end of the stream is clean only between frames.
    loop {
        match r.read(&mut len[..1]) {
            Ok(0) => return Ok(None),
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    r.read_exact(&mut len[1..]).map_err(io)?;
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(NetError::Protocol(format!("a frame of {len} bytes")));
    }
    let mut tag = [0u8; 1];
    r.read_exact(&mut tag).map_err(io)?;
    let body = len - 1;
    if tag[0] != DATA {
        if len > MAX_CONTROL_FRAME {
            return Err(NetError::Protocol(format!(
                "a frame of {len} bytes with tag {}",
                tag[0]
            )));
        }
        buf.clear();
        buf.resize(body, 0);
        r.read_exact(buf).map_err(io)?;
        return decode_message(tag[0], buf).map(Some);
    }
    let mut fixed = [0u8; 8];
    if body < fixed.len() {
        return Err(NetError::Protocol(format!("a data frame of {len} bytes")));
    }
    r.read_exact(&mut fixed).map_err(io)?;
    let slot = u32::from_le_bytes([fixed[0], fixed[1], fixed[2], fixed[3]]);
    let head_len = u32::from_le_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]) as usize;
    if 8 + head_len > body {
        return Err(NetError::Protocol(format!(
            "a batch head of {head_len} bytes in a frame of {len}"
        )));
    }
    buf.clear();
    buf.resize(head_len, 0);
    r.read_exact(buf).map_err(io)?;
    let head = parse_head(buf)?;
    let total = head
        .key_bytes
        .checked_add(head.value_bytes)
        .and_then(|d| d.checked_add(8 + head_len));
    if total != Some(body) {
        return Err(NetError::Protocol(format!(
            "a batch of {} key and {} value bytes in a frame of {len}",
            head.key_bytes, head.value_bytes
        )));
    }
    let keys = read_vec(r, head.key_bytes).map_err(io)?;
    let values = read_vec(r, head.value_bytes).map_err(io)?;
    Ok(Some((slot, Message::Data(head.into_batch(keys, values)?))))
}

/// Exactly `n` bytes into a new vector (not zeroed first).
fn read_vec(r: &mut impl Read, n: usize) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::with_capacity(n);
    r.take(n as u64).read_to_end(&mut v)?;
    if v.len() != n {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(v)
}

fn put_offsets(offsets: &[u32], out: &mut Vec<u8>) {
    out.put_u32(offsets.len() as u32);
    for o in offsets {
        out.put_u32(*o);
    }
}

fn get_offsets(r: &mut Reader<'_>, name: &'static str) -> Result<Vec<u32>, Truncated> {
    let (n, _) = r.count(name, 4)?;
    let raw = r.take(name, n * 4)?;
    Ok(raw
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

fn put_column(c: &BytesColumn, out: &mut Vec<u8>) {
    put_offsets(&c.offsets, out);
    out.put_long_bytes(&c.data);
}

fn get_column(r: &mut Reader<'_>, name: &'static str) -> Result<BytesColumn, Truncated> {
    let offsets = get_offsets(r, name)?;
    let data = r.long_bytes(name)?.to_vec();
    Ok(BytesColumn { data, offsets })
}

/// A batch's head: everything but its key and value bytes.
fn put_head(b: &RecordBatch, out: &mut Vec<u8>) {
    let rows = b.timestamps.len();
    out.reserve(64 + 4 * (b.keys.offsets.len() + b.values.offsets.len()) + 8 * rows);
    out.put_u32(rows as u32);
    put_offsets(&b.keys.offsets, out);
    put_offsets(&b.values.offsets, out);
    for t in &b.timestamps {
        out.put_i64(*t);
    }
    put_offsets(&b.headers.row_offsets, out);
    put_column(&b.headers.names, out);
    put_column(&b.headers.values, out);
    out.put_u64(b.keys.data.len() as u64);
    out.put_u64(b.values.data.len() as u64);
}

/// A decoded head, waiting for its key and value bytes.
pub(crate) struct Head {
    key_offsets: Vec<u32>,
    value_offsets: Vec<u32>,
    timestamps: Vec<i64>,
    headers: Headers,
    /// Bytes of keys that follow the head.
    pub(crate) key_bytes: usize,
    /// Bytes of values that follow them.
    pub(crate) value_bytes: usize,
}

pub(crate) fn parse_head(head: &[u8]) -> Result<Head, NetError> {
    let mut r = Reader::new("batch head", head);
    let (rows, _) = r.count("rows", 8)?;
    let key_offsets = get_offsets(&mut r, "key offsets")?;
    let value_offsets = get_offsets(&mut r, "value offsets")?;
    let raw = r.take("timestamps", rows * 8)?;
    let timestamps = raw
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .collect();
    let row_offsets = get_offsets(&mut r, "header rows")?;
    let names = get_column(&mut r, "header names")?;
    let header_values = get_column(&mut r, "header values")?;
    let key_bytes = usize::try_from(r.u64("key bytes")?).unwrap_or(usize::MAX);
    let value_bytes = usize::try_from(r.u64("value bytes")?).unwrap_or(usize::MAX);
    if !r.is_empty() {
        return Err(NetError::Protocol(format!(
            "{} bytes after a batch head",
            r.left()
        )));
    }
    Ok(Head {
        key_offsets,
        value_offsets,
        timestamps,
        headers: Headers {
            row_offsets,
            names,
            values: header_values,
        },
        key_bytes,
        value_bytes,
    })
}

impl Head {
    /// The batch, with its key and value bytes; checked.
    pub(crate) fn into_batch(
        self,
        keys: Vec<u8>,
        values: Vec<u8>,
    ) -> Result<RecordBatch, NetError> {
        let batch = RecordBatch {
            keys: BytesColumn {
                data: keys,
                offsets: self.key_offsets,
            },
            values: BytesColumn {
                data: values,
                offsets: self.value_offsets,
            },
            timestamps: self.timestamps,
            headers: self.headers,
        };
        batch
            .validate()
            .map_err(|e| NetError::Protocol(format!("a malformed batch: {e}")))?;
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_record::BatchBuilder;

    /// The whole frame of a message.
    fn frame_of(slot: u32, m: &Message) -> Vec<u8> {
        let mut out = Vec::new();
        let tail = message(slot, m, &mut out);
        let mut whole = out.clone();
        whole.extend_from_slice(tail[0]);
        whole.extend_from_slice(tail[1]);
        whole
    }

    fn body(frame: &[u8]) -> (u8, &[u8]) {
        let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        assert_eq!(len, frame.len() - 4);
        (frame[4], &frame[5..])
    }

    #[test]
    fn messages_round_trip_with_their_slot() {
        let mut b = BatchBuilder::default();
        b.push(b"k1", b"v1", 10);
        b.push_with_headers(b"", b"v2", -3, [(&b"h"[..], &b"x"[..])]);
        b.push(b"k3", b"", i64::MAX);
        let batch = b.finish();
        let msgs = [
            Message::Data(batch.clone()),
            Message::Data(BatchBuilder::default().finish()),
            Message::Signal(Signal::Watermark(Watermark(-7))),
            Message::Signal(Signal::Idle),
            Message::Signal(Signal::Barrier(42)),
            Message::Signal(Signal::EndOfData),
        ];
        for (i, m) in msgs.iter().enumerate() {
            let out = frame_of(i as u32, m);
            let (tag, body) = body(&out);
            let (slot, back) = decode_message(tag, body).unwrap();
            assert_eq!(slot, i as u32);
            match (m, &back) {
                (Message::Data(a), Message::Data(b)) => assert_eq!(a, b),
                (Message::Signal(a), Message::Signal(b)) => assert_eq!(a, b),
                _ => panic!("{m:?} came back as {back:?}"),
            }
        }
    }

    #[test]
    fn corrupt_frames_are_errors_not_panics() {
        let mut b = BatchBuilder::default();
        b.push(b"key", b"value", 1);
        let out = frame_of(3, &Message::Data(b.finish()));
        let (tag, body) = body(&out);
        // Every truncation, and every single-byte change, decodes to an
        // error or to a batch that validates.
        for cut in 0..body.len() {
            assert!(decode_message(tag, &body[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..body.len() {
            let mut bad = body.to_vec();
            bad[i] ^= 0xff;
            if let Ok((_, Message::Data(batch))) = decode_message(tag, &bad) {
                batch.validate().unwrap();
            }
        }
        assert!(decode_message(99, &body[..4]).is_err());
        let e = decode_hello(&[b'x'; 64]).unwrap_err();
        assert!(e.to_string().contains("bad magic"), "{e}");
        assert!(decode_hello(b"short").is_err());
    }

    #[test]
    fn frames_read_from_a_stream_give_the_same_messages() {
        let mut b = BatchBuilder::default();
        b.push_with_headers(b"k", b"value", 5, [(&b"h"[..], &b"x"[..])]);
        let batch = b.finish();
        let mut stream = Vec::new();
        stream.extend(frame_of(1, &Message::Data(batch.clone())));
        stream.extend(frame_of(2, &Message::Signal(Signal::Barrier(9))));
        let mut r = &stream[..];
        let mut buf = Vec::new();
        match read_message(&mut r, &mut buf, "peer").unwrap() {
            Some((1, Message::Data(got))) => assert_eq!(got, batch),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read_message(&mut r, &mut buf, "peer").unwrap(),
            Some((2, Message::Signal(Signal::Barrier(9))))
        ));
        assert!(read_message(&mut r, &mut buf, "peer").unwrap().is_none());
        // A cut anywhere is an error (or, at a frame boundary, the end).
        let first = frame_of(1, &Message::Data(batch)).len();
        for cut in 1..first {
            let mut r = &stream[..cut];
            assert!(
                read_message(&mut r, &mut buf, "peer").is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_peer_cannot_make_this_side_allocate_a_huge_signal_or_control_frame() {
        let mut stream = Vec::new();
        stream.extend_from_slice(&(200u32 << 20).to_le_bytes());
        stream.push(IDLE);
        let e = read_message(&mut &stream[..], &mut Vec::new(), "peer").unwrap_err();
        assert!(
            e.to_string()
                .contains("a frame of 209715200 bytes with tag 12"),
            "{e}"
        );
        stream[4] = HELLO;
        assert!(crate::read_frame(&mut &stream[..], &mut Vec::new()).is_err());
    }

    #[test]
    fn hello_names_the_channel_and_proves_the_secret_for_this_nonce_only() {
        let key = ChannelKey {
            job: "acme/clicks".into(),
            attempt: 3,
            task: 2,
            subtask: 5,
        };
        let secret = crate::ClusterSecret::new(b"0123456789abcdef-cluster").unwrap();
        let other = crate::ClusterSecret::new(b"0123456789abcdef-another").unwrap();
        let nonce = [7u8; NONCE];
        let mut out = Vec::new();
        hello(&key, &nonce, Some(&secret), &mut out);
        let (tag, body) = body(&out);
        assert_eq!(tag, HELLO);
        let (got, signed, mac) = decode_hello(body).unwrap();
        assert_eq!(got, key);
        assert!(secret.verify(&nonce, signed, mac));
        // Another secret, another nonce (a replayed hello), another
        // channel under the same MAC: all refused.
        assert!(!other.verify(&nonce, signed, mac));
        assert!(!secret.verify(&[8u8; NONCE], signed, mac));
        let mut forged = body.to_vec();
        forged[12] ^= 1;
        let (_, signed, mac) = decode_hello(&forged).unwrap();
        assert!(!secret.verify(&nonce, signed, mac));
        // Without a secret the MAC is zeros, which proves nothing.
        hello(&key, &nonce, None, &mut out);
        let (_, body) = super::tests::body(&out);
        let (_, signed, mac) = decode_hello(body).unwrap();
        assert!(!secret.verify(&nonce, signed, mac));
    }
}
