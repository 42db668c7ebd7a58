//! How a pane lives in keyed state: its namespace (the window), the
//! records kept in its contents, its session windows, and the pane as the
//! guest sees it.

use super::*;

/// The namespace of a pane's state: the window, 16 bytes.
pub(super) fn ns(w: &Window) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&w.start.to_be_bytes());
    b[8..].copy_from_slice(&w.end.to_be_bytes());
    b
}

pub(super) fn window_of(ns: &[u8]) -> Window {
    let mut s = [0u8; 8];
    let mut e = [0u8; 8];
    s.copy_from_slice(&ns[..8]);
    e.copy_from_slice(&ns[8..16]);
    Window {
        start: i64::from_be_bytes(s),
        end: i64::from_be_bytes(e),
    }
}

pub(super) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(super) fn encode_i64(v: i64) -> [u8; 8] {
    v.to_le_bytes()
}

pub(super) fn decode_i64(b: Option<Vec<u8>>) -> Option<i64> {
    let b = b?;
    Some(i64::from_le_bytes(b.get(..8)?.try_into().ok()?))
}

/// A record kept in a pane's contents: timestamp, value, headers (the key is
/// the pane's).
pub(super) fn encode_record(batch: &RecordBatch, row: usize, out: &mut Vec<u8>) {
    let r = batch.record(row);
    out.put_i64(r.timestamp());
    out.put_bytes(r.value());
    let headers: Vec<_> = r.headers().collect();
    out.put_u32(headers.len() as u32);
    for (n, v) in headers {
        out.put_bytes(n);
        out.put_bytes(v);
    }
}

/// A decoded kept record.
pub(super) struct Kept {
    pub(super) ts: i64,
    pub(super) value: Vec<u8>,
    pub(super) headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub(super) raw: Vec<u8>,
}

pub(super) fn decode_record(raw: &[u8]) -> Result<Kept, Truncated> {
    let mut r = Reader::new("window contents", raw);
    let ts = r.i64("timestamp")?;
    let value = r.bytes("value")?.to_vec();
    let (n, capacity) = r.count("header count", 8)?;
    let mut headers = Vec::with_capacity(capacity);
    for _ in 0..n {
        headers.push((
            r.bytes("header name")?.to_vec(),
            r.bytes("header value")?.to_vec(),
        ));
    }
    Ok(Kept {
        ts,
        value,
        headers,
        raw: raw.to_vec(),
    })
}

pub(super) fn encode_windows(ws: &[Window]) -> Vec<u8> {
    ws.iter().flat_map(ns).collect()
}

pub(super) fn decode_windows(b: Option<Vec<u8>>) -> Vec<Window> {
    b.map(|b| b.chunks_exact(16).map(window_of).collect())
        .unwrap_or_default()
}

/// The pane of `key` and window `w`, as the guest sees it.
pub(super) fn pane(key: &[u8], w: &Window) -> WindowPane {
    WindowPane {
        key: key.to_vec(),
        start: w.start,
        end: w.end,
    }
}
