//! TLS for `wss://`: rustls with the *ring* provider, PEM files loaded with
//! rustls-pki-types.
//!
//! ```no_run
//! use tether_tokio::transport::tls;
//! let server = tls::server_config_from_pem_files("cert.pem", "key.pem")?;
//! let roots = tls::roots_from_pem_file("ca.pem")?;
//! let client = tls::client_config(roots)?;
//! # Ok::<(), tether_tokio::transport::tls::TlsError>(())
//! ```

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or holds no usable item.
    #[error("PEM: {0}")]
    Pem(String),
    /// rustls refused the certificate, key or roots.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server config from a certificate chain and a private key, both PEM.
pub fn server_config_from_pem(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(format!("certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(TlsError::Pem("no certificate in the chain".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| TlsError::Pem(format!("private key: {e}")))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// [`server_config_from_pem`] reading two files.
pub fn server_config_from_pem_files(
    cert_chain: impl AsRef<Path>,
    key: impl AsRef<Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let read =
        |p: &Path| std::fs::read(p).map_err(|e| TlsError::Pem(format!("{}: {e}", p.display())));
    server_config_from_pem(&read(cert_chain.as_ref())?, &read(key.as_ref())?)
}

/// Trust anchors from PEM certificates.
pub fn roots_from_pem(pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| TlsError::Pem(format!("root certificate: {e}")))?;
        roots.add(cert)?;
    }
    if roots.is_empty() {
        return Err(TlsError::Pem("no root certificate".into()));
    }
    Ok(roots)
}

/// [`roots_from_pem`] reading a file.
pub fn roots_from_pem_file(path: impl AsRef<Path>) -> Result<RootCertStore, TlsError> {
    let path = path.as_ref();
    let pem = std::fs::read(path).map_err(|e| TlsError::Pem(format!("{}: {e}", path.display())))?;
    roots_from_pem(&pem)
}

/// A client config trusting `roots`.
pub fn client_config(roots: RootCertStore) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
