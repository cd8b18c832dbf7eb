//! TLS for the listener: a server certificate chain and private key in PEM files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {what} from {path}: {reason}")]
    Pem {
        /// `certificate chain` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The certificate file contains no certificate.
    #[error("no certificate found in {0}")]
    NoCertificate(PathBuf),
    /// rustls refused the certificate/key pair.
    #[error("invalid TLS certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds a TLS acceptor from PEM files (certificate chain, leaf first; PKCS#8, PKCS#1 or
/// SEC1 key), using the `ring` provider and rustls's safe default protocol versions.
pub fn acceptor_from_pem_files(cert_path: &Path, key_path: &Path) -> Result<TlsAcceptor, TlsError> {
    let pem_err = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |e: rustls_pki_types::pem::Error| TlsError::Pem {
            what,
            path,
            reason: e.to_string(),
        }
    };
    let certs = CertificateDer::pem_file_iter(cert_path)
        .map_err(pem_err("certificate chain", cert_path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err("certificate chain", cert_path))?;
    // The key file is never echoed: only its path appears in errors.
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(pem_err("private key", key_path))?;
    acceptor(certs, key).map_err(|e| match e {
        TlsError::NoCertificate(_) => TlsError::NoCertificate(cert_path.to_path_buf()),
        other => other,
    })
}

/// Builds a TLS acceptor from DER certificates (leaf first) and a private key.
pub fn acceptor(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<TlsAcceptor, TlsError> {
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(PathBuf::new()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
