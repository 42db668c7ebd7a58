//! One reader and writer for weir's length-prefixed binary formats: state
//! snapshots, checkpoint objects, in-flight records, connector positions.
//!
//! Integers are little-endian. A byte string is a `u32` (or, for a whole
//! part of a checkpoint object, a `u64`) length and the bytes. Every read
//! checks the bytes left first: truncated or corrupt input is a
//! [`Truncated`] error naming the format, the field and the offset, never a
//! panic or an allocation the bytes cannot back.

/// Input that ended inside a field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("truncated {format}: {field} needs {needed} bytes at offset {offset}, {left} left")]
pub struct Truncated {
    /// What was being read (`subtask state`, `in-flight records`).
    pub format: &'static str,
    /// The field.
    pub field: &'static str,
    /// Where the field starts.
    pub offset: usize,
    /// The bytes it needs.
    pub needed: usize,
    /// The bytes there were.
    pub left: usize,
}

/// Reads fields from the front of a byte slice.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    format: &'static str,
    bytes: &'a [u8],
    offset: usize,
}

macro_rules! int_reader {
    ($($name:ident: $t:ty),*) => {$(
        #[doc = concat!("A little-endian `", stringify!($t), "`.")]
        ///
        /// # Errors
        /// [`Truncated`].
        pub fn $name(&mut self, field: &'static str) -> Result<$t, Truncated> {
            let mut raw = [0u8; size_of::<$t>()];
            raw.copy_from_slice(self.take(field, size_of::<$t>())?);
            Ok(<$t>::from_le_bytes(raw))
        }
    )*};
}

impl<'a> Reader<'a> {
    /// Reads `bytes`, which hold a `format` (named in errors).
    pub fn new(format: &'static str, bytes: &'a [u8]) -> Self {
        Self {
            format,
            bytes,
            offset: 0,
        }
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The bytes not read yet.
    pub fn left(&self) -> usize {
        self.bytes.len()
    }

    /// The offset of the next field.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The rest of the bytes, all read.
    pub fn rest(&mut self) -> &'a [u8] {
        let rest = self.bytes;
        self.offset += rest.len();
        self.bytes = &[];
        rest
    }

    /// The next `n` bytes.
    ///
    /// # Errors
    /// [`Truncated`] when fewer are left.
    pub fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], Truncated> {
        if self.bytes.len() < n {
            return Err(Truncated {
                format: self.format,
                field,
                offset: self.offset,
                needed: n,
                left: self.bytes.len(),
            });
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        self.offset += n;
        Ok(head)
    }

    int_reader!(u8: u8, u16: u16, u32: u32, u64: u64, i32: i32, i64: i64);

    /// A byte string with a `u32` length.
    ///
    /// # Errors
    /// [`Truncated`], for the length or the bytes.
    pub fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], Truncated> {
        let n = self.u32(field)?;
        self.take(field, n as usize)
    }

    /// A byte string with a `u64` length.
    ///
    /// # Errors
    /// [`Truncated`], for the length or the bytes.
    pub fn long_bytes(&mut self, field: &'static str) -> Result<&'a [u8], Truncated> {
        let n = self.u64(field)?;
        self.take(field, usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// A `u32` count of items of at least `min_size` bytes each, and the
    /// capacity to reserve for them: never more than the bytes left can
    /// hold, whatever the count claims.
    ///
    /// # Errors
    /// [`Truncated`].
    pub fn count(
        &mut self,
        field: &'static str,
        min_size: usize,
    ) -> Result<(usize, usize), Truncated> {
        let n = self.u32(field)? as usize;
        Ok((n, n.min(self.bytes.len() / min_size.max(1))))
    }
}

/// Appends fields in the layout [`Reader`] reads.
pub trait Writer {
    /// A byte string with a `u32` length.
    fn put_bytes(&mut self, bytes: &[u8]);
    /// A byte string with a `u64` length.
    fn put_long_bytes(&mut self, bytes: &[u8]);
    /// A little-endian `u16`.
    fn put_u16(&mut self, x: u16);
    /// A little-endian `u32`.
    fn put_u32(&mut self, x: u32);
    /// A little-endian `u64`.
    fn put_u64(&mut self, x: u64);
    /// A little-endian `i32`.
    fn put_i32(&mut self, x: i32);
    /// A little-endian `i64`.
    fn put_i64(&mut self, x: i64);
}

impl Writer for Vec<u8> {
    fn put_bytes(&mut self, bytes: &[u8]) {
        self.put_u32(bytes.len() as u32);
        self.extend_from_slice(bytes);
    }
    fn put_long_bytes(&mut self, bytes: &[u8]) {
        self.put_u64(bytes.len() as u64);
        self.extend_from_slice(bytes);
    }
    fn put_u16(&mut self, x: u16) {
        self.extend_from_slice(&x.to_le_bytes());
    }
    fn put_u32(&mut self, x: u32) {
        self.extend_from_slice(&x.to_le_bytes());
    }
    fn put_u64(&mut self, x: u64) {
        self.extend_from_slice(&x.to_le_bytes());
    }
    fn put_i32(&mut self, x: i32) {
        self.extend_from_slice(&x.to_le_bytes());
    }
    fn put_i64(&mut self, x: i64) {
        self.extend_from_slice(&x.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_truncation_names_format_field_and_offset() {
        let mut out = Vec::new();
        out.put_bytes(b"key");
        out.put_i64(-7);
        out.put_long_bytes(b"part");
        out.put_u16(513);
        out.put_i32(-2);
        let mut r = Reader::new("test format", &out);
        assert_eq!(r.bytes("key").unwrap(), b"key");
        assert_eq!(r.i64("time").unwrap(), -7);
        assert_eq!(r.long_bytes("part").unwrap(), b"part");
        assert_eq!(r.u16("state").unwrap(), 513);
        assert_eq!(r.i32("partition").unwrap(), -2);
        assert!(r.is_empty());

        // Cut inside the value of the first field: the error says where.
        let mut r = Reader::new("test format", &out[..5]);
        let e = r.bytes("key").unwrap_err();
        assert_eq!(
            (e.field, e.offset, e.needed, e.left),
            ("key", 4, 3, 1),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "truncated test format: key needs 3 bytes at offset 4, 1 left"
        );
        // A length claiming more than memory holds is an error, not an
        // allocation.
        let mut huge = Vec::new();
        huge.put_u64(u64::MAX);
        assert!(Reader::new("x", &huge).long_bytes("part").is_err());
        // A count is capped by what the bytes can hold.
        let mut counted = Vec::new();
        counted.put_u32(4_000_000_000);
        counted.extend_from_slice(&[0; 16]);
        assert_eq!(
            Reader::new("x", &counted).count("headers", 8).unwrap(),
            (4_000_000_000, 2)
        );
    }
}
