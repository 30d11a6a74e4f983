//! Server certificate pairs: the one parser both planes use, so the controller accepts exactly
//! what the proxy can serve.

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// What is wrong with a `tls.crt` / `tls.key` pair.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidKeyPair {
    #[error("missing key {0}")]
    MissingKey(&'static str),
    #[error("key {0} is not valid base64")]
    Base64(&'static str),
    #[error("key {0} is not valid UTF-8 text")]
    Utf8(&'static str),
    #[error("tls.crt holds no PEM certificate")]
    NoCertificate,
    #[error("tls.crt: {0}")]
    Certificate(String),
    #[error("tls.key holds no PEM private key")]
    NoPrivateKey,
    #[error("tls.key: unsupported or invalid private key: {0}")]
    PrivateKey(String),
    #[error("tls.key does not match the certificate in tls.crt")]
    KeyMismatch,
}

/// Parses a PEM chain and key into what rustls serves (ring provider, as Pingora builds it),
/// checking that the key belongs to the leaf certificate.
pub fn certified_key(cert_pem: &str, key_pem: &str) -> Result<CertifiedKey, InvalidKeyPair> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| InvalidKeyPair::Certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(InvalidKeyPair::NoCertificate);
    }
    let key = match PrivateKeyDer::from_pem_slice(key_pem.as_bytes()) {
        Ok(key) => key,
        Err(rustls_pki_types::pem::Error::NoItemsFound) => {
            return Err(InvalidKeyPair::NoPrivateKey)
        }
        Err(e) => return Err(InvalidKeyPair::PrivateKey(e.to_string())),
    };
    let provider = rustls::crypto::ring::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| InvalidKeyPair::PrivateKey(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(InvalidKeyPair::KeyMismatch)
        }
        // A key type whose public half rustls cannot derive: nothing to compare.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(e) => Err(InvalidKeyPair::Certificate(e.to_string())),
    }
}
