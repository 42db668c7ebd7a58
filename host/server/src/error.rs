//! Control-plane errors, each mapped to the gRPC status a client expects.

/// Why a call failed. Every message names what was wrong (tenant, module,
/// job, field, quota).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// No token, or one the server does not know.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid token that may not make this call.
    #[error("{0}")]
    PermissionDenied(String),
    /// No such tenant, module, job or savepoint (for this tenant).
    #[error("{0}")]
    NotFound(String),
    /// A malformed request, job file or module.
    #[error("{0}")]
    InvalidArgument(String),
    /// A tenant or module version that exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// Over a quota or a size limit.
    #[error("{0}")]
    ResourceExhausted(String),
    /// Not possible in the current state (a module in use, a job not
    /// running).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The server's own failure.
    #[error("{0}")]
    Internal(String),
}

impl From<ServerError> for tonic::Status {
    fn from(e: ServerError) -> Self {
        use tonic::Status;
        match e {
            ServerError::Unauthenticated(m) => Status::unauthenticated(m),
            ServerError::PermissionDenied(m) => Status::permission_denied(m),
            ServerError::NotFound(m) => Status::not_found(m),
            ServerError::InvalidArgument(m) => Status::invalid_argument(m),
            ServerError::AlreadyExists(m) => Status::already_exists(m),
            ServerError::ResourceExhausted(m) => Status::resource_exhausted(m),
            ServerError::FailedPrecondition(m) => Status::failed_precondition(m),
            ServerError::Internal(m) => Status::internal(m),
        }
    }
}
