//! TLS to Cassandra (client encryption): the server's certificate is checked against a CA file,
//! or the public web roots, or (for test clusters only) not at all; a client certificate is
//! shown when the cluster requires one (`require_client_auth`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::CassandraError;

/// How essync checks a Cassandra node's certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CassandraTls {
    /// PEM file of the certificate authorities to trust; the public web roots when `None`.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (self-signed test clusters only).
    pub accept_invalid_certificates: bool,
    /// A client certificate (PEM: the certificate and its chain) and its private key (PEM), for
    /// clusters that require one.
    pub client_certificate: Option<(PathBuf, PathBuf)>,
}

/// The rustls configuration for `tls`.
pub(crate) fn client_config(tls: &CassandraTls) -> Result<Arc<ClientConfig>, CassandraError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("cannot set up TLS: {e}")))?;
    let builder = if tls.accept_invalid_certificates {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        match &tls.ca_file {
            Some(path) => {
                for certificate in certificates(path, "CA file")? {
                    roots.add(certificate).map_err(|e| {
                        invalid(format!(
                            "{}: not a usable CA certificate: {e}",
                            path.display()
                        ))
                    })?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots)
    };
    let config = match &tls.client_certificate {
        None => builder.with_no_client_auth(),
        Some((certificate, key)) => {
            let chain = certificates(certificate, "client certificate file")?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                invalid(format!(
                    "cannot read a private key from {}: {e}",
                    key.display()
                ))
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                invalid(format!(
                    "the client certificate {} does not go with its key: {e}",
                    certificate.display()
                ))
            })?
        }
    };
    Ok(Arc::new(config))
}

fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, CassandraError> {
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(format!("cannot read the {what} {}: {e}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(format!("the {what} {} is not PEM: {e}", path.display())))?;
    if certificates.is_empty() {
        return Err(invalid(format!(
            "the {what} {} holds no certificate",
            path.display()
        )));
    }
    Ok(certificates)
}

fn invalid(reason: String) -> CassandraError {
    CassandraError::Request {
        action: "to set up TLS".to_string(),
        reason,
        transient: false,
    }
}

/// Accepts every certificate but still checks the handshake's signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
