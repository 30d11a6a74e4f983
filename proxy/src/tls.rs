//! TLS termination: SNI certificate selection fed from the applied certificates, and the
//! listener settings.
//!
//! Pingora's rustls listener does the handshake (TLS 1.2 and 1.3 only, ALPN `h2` then
//! `http/1.1`) and hands the decrypted stream to the same [`crate::server::HttpApp`] the
//! plaintext listeners use. The certificate comes from an [`SniResolver`]: one for the external
//! HTTPS listeners, one for the cluster-local ones. Each holds an immutable [`SniTable`] in an
//! `ArcSwap`, so a handshake takes no lock, and a certificate change replaces the table in one
//! store: new handshakes see the new certificate, established connections keep theirs.
//!
//! Selection: the exact SNI name (normalised like every host, [`sluice_xds::host`]), then
//! `*.<rest>` for the name minus its first label, then the default certificate
//! (`--default-certificate`). No match (or no SNI and no default) fails the handshake.
//!
//! A PEM pair is parsed once, when its Certificate resource arrives (its name carries a hash of
//! its content, so new content is a new resource); tables are rebuilt only when certificates
//! change, from the parsed keys, in O(certificates).

use crate::catalog::ServedCertificate;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::TlsAccept;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, ResolvesServerCert};
use sluice_xds::host;
use std::collections::HashMap;
use std::sync::Arc;
use tracing::info;

/// Picks a certificate by SNI from the current [`SniTable`].
#[derive(Debug, Default)]
pub struct SniResolver {
    table: ArcSwap<SniTable>,
}

/// One immutable generation of SNI → certificate.
#[derive(Debug, Default)]
pub struct SniTable {
    exact: HashMap<Box<str>, Arc<CertifiedKey>>,
    /// Keyed by the part after `*.`.
    wildcard: HashMap<Box<str>, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl SniTable {
    /// The certificate for `server_name` (`None`: the client sent no SNI).
    pub fn lookup(&self, server_name: Option<&str>) -> Option<&Arc<CertifiedKey>> {
        let Some(name) = server_name else {
            return self.default.as_ref();
        };
        let mut buf = [0u8; host::MAX_HOST];
        let name = host::normalize(name, &mut buf)?;
        if let Some(key) = self.exact.get(name) {
            return Some(key);
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(key) = self.wildcard.get(parent) {
                return Some(key);
            }
        }
        self.default.as_ref()
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SniResolver {
    /// The table new handshakes use.
    pub fn table(&self) -> arc_swap::Guard<Arc<SniTable>> {
        self.table.load()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.table.load().lookup(hello.server_name()).cloned()
    }
}

/// The certificates of both listener sets, kept in step with the applied config.
#[derive(Debug, Default)]
pub struct Certificates {
    pub external: Arc<SniResolver>,
    pub internal: Arc<SniResolver>,
    default: Option<Arc<CertifiedKey>>,
}

impl Certificates {
    /// `default` answers handshakes whose SNI matches nothing (and those without SNI).
    pub fn new(default: Option<Arc<CertifiedKey>>) -> Self {
        let certificates = Certificates {
            default,
            ..Certificates::default()
        };
        certificates.apply(&[]);
        certificates
    }

    /// Replaces both tables. On a name several certificates claim, the first wins (the
    /// controller gives every name to one certificate; this only orders a moment of overlap).
    pub fn apply(&self, certificates: &[ServedCertificate<'_>]) {
        let mut external = SniTable {
            default: self.default.clone(),
            ..SniTable::default()
        };
        let mut internal = SniTable {
            default: self.default.clone(),
            ..SniTable::default()
        };
        for certificate in certificates {
            external.insert(certificate.external_hosts, certificate.key);
            internal.insert(certificate.internal_hosts, certificate.key);
        }
        info!(
            certificates = certificates.len(),
            external_names = external.len(),
            internal_names = internal.len(),
            "applied certificates"
        );
        self.external.table.store(Arc::new(external));
        self.internal.table.store(Arc::new(internal));
    }
}

impl SniTable {
    fn insert(&mut self, hosts: &[String], key: &Arc<CertifiedKey>) {
        for name in hosts {
            let name = host::normalized(name);
            let (map, name) = match name.strip_prefix("*.") {
                Some(parent) => (&mut self.wildcard, parent.to_string()),
                None => (&mut self.exact, name),
            };
            map.entry(name.into_boxed_str())
                .or_insert_with(|| key.clone());
        }
    }
}

/// Reads the default certificate and key files (PEM), validated like a Secret.
pub fn load_default(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<CertifiedKey> {
    use anyhow::Context as _;
    let cert_pem = std::fs::read_to_string(cert)
        .with_context(|| format!("reading default certificate {}", cert.display()))?;
    let key_pem = std::fs::read_to_string(key)
        .with_context(|| format!("reading default key {}", key.display()))?;
    sluice_xds::tls::certified_key(&cert_pem, &key_pem).with_context(|| {
        format!(
            "default certificate {} with key {}",
            cert.display(),
            key.display()
        )
    })
}

/// No per-handshake callbacks: the certificate comes from the resolver.
struct NoCallbacks;

#[async_trait]
impl TlsAccept for NoCallbacks {}

/// Listener settings: rustls with `resolver`, TLS 1.2 and 1.3, ALPN h2 and http/1.1.
pub fn listener_settings(resolver: Arc<SniResolver>) -> anyhow::Result<TlsSettings> {
    let mut settings = TlsSettings::with_callbacks(Box::new(NoCallbacks))
        .map_err(|e| anyhow::anyhow!("tls settings: {e}"))?;
    settings.set_cert_resolver(resolver);
    settings.enable_h2();
    Ok(settings)
}

#[cfg(test)]
mod tests;
