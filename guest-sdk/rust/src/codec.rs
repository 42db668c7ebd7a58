//! How accumulators and state values become bytes.
//!
//! The host stores accumulators and keyed state as bytes; [`Codec`] is how a
//! Rust value gets there and back. It is implemented for integers, floats,
//! `bool`, `String`, `Vec<u8>`, `Option`s and tuples of these; for your own
//! types either implement it or, with serde, use [`crate::json_codec!`].

use crate::Error;

/// A value that can be stored by the host as bytes.
pub trait Codec: Sized {
    /// Appends the encoding of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Decodes a value from the front of `bytes`, advancing it.
    ///
    /// # Errors
    /// [`Error::Failed`] for bytes this codec did not write.
    fn decode(bytes: &mut &[u8]) -> Result<Self, Error>;

    /// The encoding as a new vector.
    fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }

    /// Decodes a whole buffer.
    ///
    /// # Errors
    /// As [`Codec::decode`].
    fn from_bytes(mut bytes: &[u8]) -> Result<Self, Error> {
        Self::decode(&mut bytes)
    }
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], Error> {
    if bytes.len() < n {
        return Err(Error::failed("stored state is shorter than expected"));
    }
    let (head, tail) = bytes.split_at(n);
    *bytes = tail;
    Ok(head)
}

macro_rules! fixed {
    ($($t:ty),*) => {$(
        impl Codec for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn decode(bytes: &mut &[u8]) -> Result<Self, Error> {
                let b = take(bytes, std::mem::size_of::<$t>())?;
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(b);
                Ok(<$t>::from_le_bytes(a))
            }
        }
    )*};
}
fixed!(i8, u8, i16, u16, i32, u32, i64, u64, i128, u128, f32, f64);

impl Codec for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
    fn decode(bytes: &mut &[u8]) -> Result<Self, Error> {
        Ok(take(bytes, 1)?[0] != 0)
    }
}

impl Codec for Vec<u8> {
    fn encode(&self, out: &mut Vec<u8>) {
        (self.len() as u32).encode(out);
        out.extend_from_slice(self);
    }
    fn decode(bytes: &mut &[u8]) -> Result<Self, Error> {
        let n = u32::decode(bytes)? as usize;
        Ok(take(bytes, n)?.to_vec())
    }
}

impl Codec for String {
    fn encode(&self, out: &mut Vec<u8>) {
        (self.len() as u32).encode(out);
        out.extend_from_slice(self.as_bytes());
    }
    fn decode(bytes: &mut &[u8]) -> Result<Self, Error> {
        let n = u32::decode(bytes)? as usize;
        String::from_utf8(take(bytes, n)?.to_vec())
            .map_err(|_| Error::failed("stored string is not UTF-8"))
    }
}

impl<T: Codec> Codec for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.encode(out);
            }
        }
    }
    fn decode(bytes: &mut &[u8]) -> Result<Self, Error> {
        match take(bytes, 1)?[0] {
            0 => Ok(None),
            _ => Ok(Some(T::decode(bytes)?)),
        }
    }
}

macro_rules! tuple {
    ($($n:tt $t:ident),*) => {
        impl<$($t: Codec),*> Codec for ($($t,)*) {
            fn encode(&self, out: &mut Vec<u8>) {
                $(self.$n.encode(out);)*
            }
            fn decode(bytes: &mut &[u8]) -> Result<Self, Error> {
                Ok(($($t::decode(bytes)?,)*))
            }
        }
    };
}
tuple!(0 A, 1 B);
tuple!(0 A, 1 B, 2 C);
tuple!(0 A, 1 B, 2 C, 3 D);
tuple!(0 A, 1 B, 2 C, 3 D, 4 E);

/// Implements [`Codec`] for a serde type by way of JSON.
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Txn { amount: f64, country: String }
/// weir_udf::json_codec!(Txn);
/// ```
#[cfg(feature = "json")]
#[macro_export]
macro_rules! json_codec {
    ($ty:ty) => {
        impl $crate::Codec for $ty {
            fn encode(&self, out: &mut ::std::vec::Vec<u8>) {
                let json = $crate::__private::serde_json::to_vec(self).unwrap_or_default();
                <::std::vec::Vec<u8> as $crate::Codec>::encode(&json, out);
            }
            fn decode(bytes: &mut &[u8]) -> ::std::result::Result<Self, $crate::Error> {
                let json = <::std::vec::Vec<u8> as $crate::Codec>::decode(bytes)?;
                $crate::__private::serde_json::from_slice(&json)
                    .map_err(|e| $crate::Error::failed(e.to_string()))
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let v = (42i64, 2.5f64, String::from("de"), Some(7u32), true);
        assert_eq!(
            <(i64, f64, String, Option<u32>, bool)>::from_bytes(&v.to_bytes()).unwrap(),
            v
        );
        assert!(u64::from_bytes(&[1, 2]).is_err());
    }
}
