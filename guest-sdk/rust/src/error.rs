//! Errors an operator returns to the host.

/// Why an operator call failed. Returning an error fails the job with the
/// message; it is the polite alternative to a panic (which the host survives
/// too, showing the panic message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The configuration is unusable; say which key and why.
    InvalidConfig(String),
    /// A record could not be processed; say which and why.
    InvalidRecord(String),
    /// Any other failure.
    Failed(String),
}

impl Error {
    /// A generic failure with a message.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::Failed(message.into())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidConfig(m) => write!(f, "invalid config: {m}"),
            Self::InvalidRecord(m) => write!(f, "invalid record: {m}"),
            Self::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(feature = "json")]
impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::InvalidRecord(e.to_string())
    }
}
