//! The wire format of a network exchange: length-prefixed frames, little
//! endian, one per message.
//!
//! ```text
//! frame    = len:u32 tag:u8 body        (len counts tag and body)
//! hello    = magic "WEIRNET1" channel   producer → consumer, first frame
//! accept   = credits:u32                consumer → producer, the initial credit
//! refuse   = code:u8 reason:bytes       consumer → producer, then close
//! data     = slot:u32 batch             a record batch, as its columns
//! watermark= slot:u32 time:i64
//! idle     = slot:u32
//! barrier  = slot:u32 checkpoint:u64
//! end      = slot:u32                   end of data
//! credit   = n:u32                      consumer → producer: n more buffers
//! ```
//!
//! A batch travels as its four columns, each written with one copy of its
//! buffer: keys and values (`rows + 1` offsets, then the bytes), timestamps,
//! and headers (row offsets, names, values). No record is re-encoded; the
//! receiver checks the columns' layout before it builds a batch from them,
//! so a corrupt frame is an error, never a panic or an out-of-bounds read.

use weir_engine::Message;
use weir_engine::Signal;
use weir_engine::watermark::Watermark;
use weir_record::codec::{Reader, Truncated, Writer};
use weir_record::{BytesColumn, Headers, RecordBatch};

use crate::{ChannelKey, NetError};

/// The first bytes of every connection.
pub(crate) const MAGIC: &[u8; 8] = b"WEIRNET1";
/// A frame larger than this is refused (a batch is far smaller).
pub(crate) const MAX_FRAME: usize = 256 << 20;

pub(crate) const HELLO: u8 = 1;
pub(crate) const ACCEPT: u8 = 2;
pub(crate) const REFUSE: u8 = 3;
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

/// Encodes the hello frame naming the channel.
pub(crate) fn hello(key: &ChannelKey, out: &mut Vec<u8>) {
    begin(out, HELLO);
    out.extend_from_slice(MAGIC);
    out.put_bytes(key.job.as_bytes());
    out.put_u64(key.attempt);
    out.put_u32(key.task);
    out.put_u32(key.subtask);
    finish(out);
}

/// Decodes a hello frame's body.
pub(crate) fn decode_hello(body: &[u8]) -> Result<ChannelKey, NetError> {
    let mut r = Reader::new("network hello", body);
    if r.take("magic", MAGIC.len())? != MAGIC {
        return Err(NetError::Protocol(
            "not a weir network exchange (bad magic)".into(),
        ));
    }
    let job = String::from_utf8(r.bytes("job")?.to_vec())
        .map_err(|_| NetError::Protocol("job id is not UTF-8".into()))?;
    Ok(ChannelKey {
        job,
        attempt: r.u64("attempt")?,
        task: r.u32("task")?,
        subtask: r.u32("subtask")?,
    })
}

/// Encodes a message of producer `slot`.
pub(crate) fn message(slot: u32, msg: &Message, out: &mut Vec<u8>) {
    match msg {
        Message::Data(batch) => {
            begin(out, DATA);
            out.put_u32(slot);
            put_batch(batch, out);
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
}

/// Decodes a message frame (`tag`, `body`) into the producer's slot and the
/// message.
pub(crate) fn decode_message(tag: u8, body: &[u8]) -> Result<(u32, Message), NetError> {
    let mut r = Reader::new("network message", body);
    let slot = r.u32("slot")?;
    let msg = match tag {
        DATA => Message::Data(get_batch(&mut r)?),
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

fn put_column(c: &BytesColumn, out: &mut Vec<u8>) {
    out.put_u32(c.offsets.len() as u32);
    for o in &c.offsets {
        out.put_u32(*o);
    }
    out.put_long_bytes(&c.data);
}

fn get_column(r: &mut Reader<'_>, name: &'static str) -> Result<BytesColumn, Truncated> {
    let (n, _) = r.count(name, 4)?;
    let raw = r.take(name, n * 4)?;
    let offsets = raw
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let data = r.long_bytes(name)?.to_vec();
    Ok(BytesColumn { data, offsets })
}

fn put_batch(b: &RecordBatch, out: &mut Vec<u8>) {
    let rows = b.timestamps.len();
    out.reserve(
        32 + b.keys.data.len()
            + b.values.data.len()
            + 4 * (b.keys.offsets.len() + b.values.offsets.len())
            + 8 * rows,
    );
    out.put_u32(rows as u32);
    put_column(&b.keys, out);
    put_column(&b.values, out);
    for t in &b.timestamps {
        out.put_i64(*t);
    }
    out.put_u32(b.headers.row_offsets.len() as u32);
    for o in &b.headers.row_offsets {
        out.put_u32(*o);
    }
    put_column(&b.headers.names, out);
    put_column(&b.headers.values, out);
}

fn get_batch(r: &mut Reader<'_>) -> Result<RecordBatch, NetError> {
    let (rows, _) = r.count("rows", 8)?;
    let keys = get_column(r, "keys")?;
    let values = get_column(r, "values")?;
    let raw = r.take("timestamps", rows * 8)?;
    let timestamps = raw
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .collect();
    let (n, _) = r.count("header rows", 4)?;
    let raw = r.take("header rows", n * 4)?;
    let row_offsets = raw
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let names = get_column(r, "header names")?;
    let header_values = get_column(r, "header values")?;
    let batch = RecordBatch {
        keys,
        values,
        timestamps,
        headers: Headers {
            row_offsets,
            names,
            values: header_values,
        },
    };
    batch
        .validate()
        .map_err(|e| NetError::Protocol(format!("a malformed batch: {e}")))?;
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_record::BatchBuilder;

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
        let mut out = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            message(i as u32, m, &mut out);
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
        let mut out = Vec::new();
        message(3, &Message::Data(b.finish()), &mut out);
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
        let e = decode_hello(b"NOTWEIR!rest").unwrap_err();
        assert!(e.to_string().contains("bad magic"), "{e}");
    }

    #[test]
    fn hello_names_the_channel() {
        let key = ChannelKey {
            job: "acme/clicks".into(),
            attempt: 3,
            task: 2,
            subtask: 5,
        };
        let mut out = Vec::new();
        hello(&key, &mut out);
        let (tag, body) = body(&out);
        assert_eq!(tag, HELLO);
        assert_eq!(decode_hello(body).unwrap(), key);
    }
}
