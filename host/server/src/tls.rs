//! TLS for the gRPC API and the HTTP endpoints, and who may read the HTTP
//! endpoints.
//!
//! The server's identity is a certificate chain and key in PEM files the
//! admin provides (`weir serve --tls-cert FILE --tls-key FILE`), or a
//! self-signed certificate generated at the first start for loopback use
//! (`--tls-self-signed`): kept in `DATA/tls/server.crt` and `server.key`
//! (0600) and reused afterwards, so clients can pin it with
//! `weir … --ca-cert DATA/tls/server.crt`.
//!
//! The HTTP endpoints (`/metrics`) answer anyone only when bound to
//! loopback; otherwise a request needs `Authorization: Bearer` with the
//! metrics token (`DATA/metrics.token`, 0600, created at the first start,
//! for a Prometheus `authorization.credentials_file`) or the admin token.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::ServerError;

/// A certificate chain and its private key, in PEM.
#[derive(Clone)]
pub struct Identity {
    /// The certificate chain (leaf first).
    pub cert_pem: Vec<u8>,
    /// The private key.
    pub key_pem: Vec<u8>,
    /// Where the certificate was read from or written to.
    pub cert_path: PathBuf,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cert_path", &self.cert_path)
            .field("key_pem", &"<hidden>")
            .finish()
    }
}

fn tls_error(message: String) -> ServerError {
    ServerError::Internal(message)
}

impl Identity {
    /// Reads and checks a certificate chain and key the admin provides.
    ///
    /// # Errors
    /// A file that cannot be read, holds no certificate or no private key,
    /// or a key that does not match the certificate.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, ServerError> {
        let read = |p: &Path, what: &str| {
            std::fs::read(p).map_err(|e| {
                tls_error(format!("cannot read the TLS {what} `{}`: {e}", p.display()))
            })
        };
        let identity = Self {
            cert_pem: read(cert, "certificate")?,
            key_pem: read(key, "key")?,
            cert_path: cert.to_path_buf(),
        };
        identity.rustls_config().map_err(|e| {
            tls_error(format!(
                "unusable TLS certificate `{}` and key `{}`: {e}",
                cert.display(),
                key.display()
            ))
        })?;
        Ok(identity)
    }

    /// The self-signed identity in `DATA/tls/`, generated on first use for
    /// `localhost`, `127.0.0.1`, `::1` and `names`.
    ///
    /// # Errors
    /// A data directory that cannot be written, or stored files that are
    /// not a usable certificate and key.
    pub fn self_signed(data_dir: &Path, names: &[String]) -> Result<Self, ServerError> {
        let dir = data_dir.join("tls");
        let cert = dir.join("server.crt");
        let key = dir.join("server.key");
        if cert.exists() && key.exists() {
            return Self::from_files(&cert, &key);
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| tls_error(format!("cannot create `{}`: {e}", dir.display())))?;
        let mut sans: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        for n in names {
            if !sans.contains(n) {
                sans.push(n.clone());
            }
        }
        let generated = rcgen::generate_simple_self_signed(sans)
            .map_err(|e| tls_error(format!("cannot generate a TLS certificate: {e}")))?;
        let cert_pem = generated.cert.pem();
        let key_pem = generated.signing_key.serialize_pem();
        crate::tenants::write_private(&key, key_pem.as_bytes())
            .map_err(|e| tls_error(format!("cannot write `{}`: {e}", key.display())))?;
        std::fs::write(&cert, cert_pem.as_bytes())
            .map_err(|e| tls_error(format!("cannot write `{}`: {e}", cert.display())))?;
        Ok(Self {
            cert_pem: cert_pem.into_bytes(),
            key_pem: key_pem.into_bytes(),
            cert_path: cert,
        })
    }

    /// The SHA-256 fingerprint of the leaf certificate, as printed by
    /// `openssl x509 -fingerprint -sha256`.
    pub fn fingerprint(&self) -> String {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        use sha2::Digest;
        let Some(Ok(leaf)) = CertificateDer::pem_slice_iter(&self.cert_pem).next() else {
            return String::new();
        };
        let digest = sha2::Sha256::digest(&leaf);
        digest
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// A rustls server configuration (HTTP/1.1 and HTTP/2) for this
    /// identity.
    ///
    /// # Errors
    /// PEM without a certificate or a key, or a key that does not match.
    pub fn rustls_config(&self) -> Result<Arc<rustls::ServerConfig>, IdentityError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| IdentityError::CertificatePem(e.to_string()))?;
        if certs.is_empty() {
            return Err(IdentityError::NoCertificate);
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem)
            .map_err(|e| IdentityError::Key(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .map_err(IdentityError::Rustls)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(IdentityError::Rustls)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// A certificate and key that rustls cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The certificate file is not PEM.
    #[error("bad certificate PEM: {0}")]
    CertificatePem(String),
    /// The file holds no certificate.
    #[error("no certificate in the PEM file")]
    NoCertificate,
    /// The key file holds no usable private key.
    #[error("no usable private key: {0}")]
    Key(String),
    /// rustls refused them (a key that does not match, for one).
    #[error(transparent)]
    Rustls(rustls::Error),
}

/// The crypto provider weir uses (aws-lc-rs, which object storage already
/// links).
pub fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// Makes weir's provider the process default, for libraries that ask rustls
/// for one. Harmless when called again.
pub fn install_default_provider() {
    let _ = provider().install_default();
}

/// Whether an address is loopback only (127.0.0.0/8 or ::1).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// The metrics token (`DATA/metrics.token`), created at the first start.
///
/// # Errors
/// A data directory that cannot be written.
pub fn metrics_token(data_dir: &Path) -> Result<String, ServerError> {
    let file = data_dir.join("metrics.token");
    if let Ok(text) = std::fs::read_to_string(&file) {
        let token = text.trim().to_string();
        if !token.is_empty() {
            return Ok(token);
        }
    }
    let token = crate::tenants::new_token()?;
    crate::tenants::write_private(&file, format!("{token}\n").as_bytes())
        .map_err(|e| tls_error(format!("cannot write `{}`: {e}", file.display())))?;
    Ok(token)
}

/// Who may read the HTTP endpoints.
#[derive(Clone)]
pub enum HttpAccess {
    /// Anyone who can connect (the endpoint is bound to loopback).
    Open,
    /// Requests with `Authorization: Bearer T` for one of these tokens'
    /// SHA-256 hashes.
    Tokens(Vec<String>),
}

impl HttpAccess {
    /// Whether a request with this `Authorization` header value may read.
    pub fn allows(&self, authorization: Option<&[u8]>) -> bool {
        match self {
            Self::Open => true,
            Self::Tokens(hashes) => {
                let Some(token) = authorization
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                else {
                    return false;
                };
                let hash = crate::tenants::hash_token(token.trim());
                // Compare every hash in full, so timing says nothing.
                hashes.iter().fold(false, |found, h| {
                    found | constant_eq(h.as_bytes(), hash.as_bytes())
                })
            }
        }
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_identity_is_generated_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::self_signed(dir.path(), &["weir.internal".into()]).unwrap();
        assert!(first.rustls_config().is_ok());
        let again = Identity::self_signed(dir.path(), &[]).unwrap();
        assert_eq!(first.cert_pem, again.cert_pem);
        assert_eq!(first.fingerprint(), again.fingerprint());
        assert_eq!(first.fingerprint().len(), 32 * 3 - 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("tls/server.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the key is readable by others: {mode:o}");
        }
    }

    #[test]
    fn a_key_that_is_not_a_key_is_refused_naming_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let good = Identity::self_signed(dir.path(), &[]).unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        std::fs::write(&cert, &good.cert_pem).unwrap();
        std::fs::write(&key, b"not a key").unwrap();
        let e = Identity::from_files(&cert, &key).unwrap_err().to_string();
        assert!(e.contains("k.pem") && e.contains("private key"), "{e}");
        // A key of another certificate does not match.
        let other = tempfile::tempdir().unwrap();
        let other = Identity::self_signed(other.path(), &[]).unwrap();
        std::fs::write(&key, &other.key_pem).unwrap();
        assert!(Identity::from_files(&cert, &key).is_err());
    }

    #[test]
    fn http_access_needs_one_of_the_tokens_unless_open() {
        assert!(HttpAccess::Open.allows(None));
        let access = HttpAccess::Tokens(vec![crate::tenants::hash_token("s3cret")]);
        assert!(access.allows(Some(b"Bearer s3cret")));
        assert!(!access.allows(Some(b"Bearer s3cre")));
        assert!(!access.allows(Some(b"s3cret")));
        assert!(!access.allows(None));
    }
}
