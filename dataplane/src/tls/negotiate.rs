//! `client-auth = "negotiate"`: APIM's "negotiate client certificate". The handshake asks for a
//! certificate and accepts any that the client proves it holds the key of (the handshake
//! signature is verified); whether it is trusted, current and the right one is for the API's
//! policies to say (`validate-client-certificate`, `context.Request.Certificate`). A client
//! without a certificate is let in too.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

/// Accepts any client certificate whose handshake signature verifies.
#[derive(Debug)]
pub(super) struct AnyCertificate {
    /// The client CAs' subjects, sent as hints so that clients with several certificates pick
    /// one of those CAs'.
    hints: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl AnyCertificate {
    pub(super) fn new(client_cas: &[Vec<u8>], algorithms: WebPkiSupportedAlgorithms) -> Arc<Self> {
        let hints = client_cas
            .iter()
            .filter_map(|der| {
                let der = CertificateDer::from(der.as_slice());
                let anchor = webpki::anchor_from_trusted_cert(&der).ok()?;
                Some(DistinguishedName::from(anchor.subject.as_ref().to_vec()))
            })
            .collect();
        Arc::new(Self { hints, algorithms })
    }
}

impl ClientCertVerifier for AnyCertificate {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    /// Any certificate: the policies judge it.
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        Ok(ClientCertVerified::assertion())
    }

    /// Proof of possession: the client signed the handshake with the certificate's key.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
