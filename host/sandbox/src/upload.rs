//! A module upload arriving in chunks (the server's streaming
//! `UploadModule` call): a header naming the module and announcing its
//! size, then chunks. Everything in it is the uploader's to choose, so each
//! step is checked before any memory is committed to it; the assembled
//! bytes then go through [`crate::budget::check`] before any compiling.

/// What was wrong with an upload.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UploadError {
    /// A name or version that is not 1 to 64 of `[A-Za-z0-9._-]`, starting
    /// with a letter or digit.
    #[error(
        "invalid module {what} `{value}`: use 1 to 64 letters, digits, `.`, `_` and `-`, starting with a letter or digit"
    )]
    BadName {
        /// `name` or `version`.
        what: &'static str,
        /// What was given (cut to 80 characters).
        value: String,
    },
    /// The announced size is over the server's limit.
    #[error("module `{id}` is {size} bytes; the server takes uploads of at most {limit} bytes")]
    TooLarge {
        /// `name@version`.
        id: String,
        /// The announced size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// More bytes than announced.
    #[error(
        "upload of module `{id}`: more bytes arrived than the {announced} the header announced"
    )]
    Overflow {
        /// `name@version`.
        id: String,
        /// The announced size.
        announced: u64,
    },
    /// A header after the first.
    #[error("upload of module `{id}`: a second header; send one header, then chunks")]
    SecondHeader {
        /// `name@version`.
        id: String,
    },
    /// The stream ended early.
    #[error("upload of module `{id}` ended after {got} of {announced} bytes")]
    Short {
        /// `name@version`.
        id: String,
        /// Bytes received.
        got: u64,
        /// The announced size.
        announced: u64,
    },
}

/// Checks a module name or version part.
///
/// # Errors
/// [`UploadError::BadName`].
pub fn check_part(what: &'static str, value: &str) -> Result<(), UploadError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && value.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(UploadError::BadName {
            what,
            value: value.chars().take(80).collect(),
        })
    }
}

/// Memory committed ahead of the chunks, whatever the header announces.
const INITIAL_CAPACITY: u64 = 1 << 20;

/// An upload in progress.
#[derive(Debug)]
pub struct Upload {
    id: String,
    announced: u64,
    bytes: Vec<u8>,
}

impl Upload {
    /// Starts an upload from its header.
    ///
    /// # Errors
    /// A bad name or version, or a size over `limit`.
    pub fn start(name: &str, version: &str, size: u64, limit: u64) -> Result<Self, UploadError> {
        check_part("name", name)?;
        check_part("version", version)?;
        let id = format!("{name}@{version}");
        if size > limit {
            return Err(UploadError::TooLarge { id, size, limit });
        }
        Ok(Self {
            id,
            announced: size,
            bytes: Vec::with_capacity(size.min(INITIAL_CAPACITY) as usize),
        })
    }

    /// `name@version`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Adds a chunk.
    ///
    /// # Errors
    /// More bytes than announced.
    pub fn chunk(&mut self, chunk: &[u8]) -> Result<(), UploadError> {
        if (self.bytes.len() as u64).saturating_add(chunk.len() as u64) > self.announced {
            return Err(UploadError::Overflow {
                id: self.id.clone(),
                announced: self.announced,
            });
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    /// The error for a second header.
    pub fn second_header(&self) -> UploadError {
        UploadError::SecondHeader {
            id: self.id.clone(),
        }
    }

    /// The module's bytes, once all announced bytes arrived.
    ///
    /// # Errors
    /// Fewer bytes than announced.
    pub fn finish(self) -> Result<Vec<u8>, UploadError> {
        if self.bytes.len() as u64 != self.announced {
            return Err(UploadError::Short {
                id: self.id,
                got: self.bytes.len() as u64,
                announced: self.announced,
            });
        }
        Ok(self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_gets_exactly_what_its_header_announced() {
        let mut u = Upload::start("count", "1.0.0", 5, 10).unwrap();
        u.chunk(b"ab").unwrap();
        u.chunk(b"cde").unwrap();
        assert_eq!(u.finish().unwrap(), b"abcde");

        let mut u = Upload::start("count", "1", 3, 10).unwrap();
        assert!(matches!(
            u.chunk(b"abcd"),
            Err(UploadError::Overflow { .. })
        ));
        let u = Upload::start("count", "1", 3, 10).unwrap();
        let e = u.finish().unwrap_err().to_string();
        assert_eq!(e, "upload of module `count@1` ended after 0 of 3 bytes");
        let e = Upload::start("count", "1", 11, 10).unwrap_err().to_string();
        assert!(e.contains("at most 10 bytes"), "{e}");
        let e = Upload::start("../x", "1", 1, 10).unwrap_err().to_string();
        assert!(e.starts_with("invalid module name `../x`"), "{e}");
    }

    #[test]
    fn a_large_announcement_commits_little_memory_up_front() {
        let u = Upload::start("big", "1", 60 << 20, 64 << 20).unwrap();
        assert!(u.bytes.capacity() <= INITIAL_CAPACITY as usize);
    }
}
