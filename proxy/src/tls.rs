//! TLS termination: SNI certificate selection fed from the snapshot, and the listener settings.
//!
//! Pingora's rustls listener does the handshake (TLS 1.2 and 1.3 only, ALPN `h2` then
//! `http/1.1`) and hands the decrypted stream to the same [`crate::server::HttpApp`] the
//! plaintext listeners use. The certificate comes from an [`SniResolver`]: one for the external
//! HTTPS listeners, one for the cluster-local ones. Each holds an immutable [`SniTable`] in an
//! `ArcSwap`, so a handshake takes no lock, and a new snapshot's certificates replace the table
//! in one store: new handshakes see the new certificate, established connections keep theirs.
//!
//! Selection: the exact SNI name (lower-cased, trailing dot dropped), then `*.<rest>` for the
//! name minus its first label, then the default certificate (`--default-certificate`). No match
//! (or no SNI and no default) fails the handshake.
//!
//! Parsing a PEM pair into a rustls `CertifiedKey` happens once per distinct content
//! ([`Certificates::apply`] keeps a cache keyed by Secret and content hash), never per handshake
//! and not again when a snapshot changes only routes.

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::TlsAccept;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, ResolvesServerCert};
use sha2::{Digest, Sha256};
use sluice_xds::Certificate;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tracing::{info, warn};

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
        let mut buf = [0u8; 256];
        let name = lower_case(name, &mut buf)?;
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

/// Lower-cases and drops a trailing dot, copying into `buf` only when needed.
fn lower_case<'a>(name: &'a str, buf: &'a mut [u8; 256]) -> Option<&'a str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if !name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Some(name);
    }
    let out = buf.get_mut(..name.len())?;
    out.copy_from_slice(name.as_bytes());
    out.make_ascii_lowercase();
    std::str::from_utf8(out).ok()
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

/// The certificates of both listener sets, kept in step with the applied snapshot.
#[derive(Debug, Default)]
pub struct Certificates {
    pub external: Arc<SniResolver>,
    pub internal: Arc<SniResolver>,
    default: Option<Arc<CertifiedKey>>,
    /// Parsed keys by Secret and content hash; only what the last apply used is kept.
    parsed: Mutex<ParsedKeys>,
}

/// `(secret, sha256 of the PEM pair)` → the parsed key.
type ParsedKeys = HashMap<(String, [u8; 32]), Arc<CertifiedKey>>;

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

    /// Replaces both tables with `certificates`. On a host named by several, the first wins.
    /// A certificate that fails to parse (the controller validates them, so this means a
    /// snapshot from elsewhere) is skipped with a warning; the others still apply.
    pub fn apply(&self, certificates: &[Certificate]) {
        let mut parsed = self.parsed.lock().unwrap_or_else(|p| p.into_inner());
        let mut kept = HashMap::with_capacity(certificates.len());
        let mut external = SniTable {
            default: self.default.clone(),
            ..SniTable::default()
        };
        let mut internal = SniTable {
            default: self.default.clone(),
            ..SniTable::default()
        };
        for certificate in certificates {
            let id = (certificate.secret.clone(), content_hash(certificate));
            let key = match kept.get(&id).or_else(|| parsed.get(&id)) {
                Some(key) => Arc::clone(key),
                None => match sluice_controller::translate::tls::certified_key(
                    &certificate.cert_pem,
                    &certificate.key_pem,
                ) {
                    Ok(key) => Arc::new(key),
                    Err(error) => {
                        warn!(secret = %certificate.secret, %error, "skipping certificate");
                        continue;
                    }
                },
            };
            kept.insert(id, key.clone());
            for (wanted, table) in [
                (certificate.external, &mut external),
                (certificate.internal, &mut internal),
            ] {
                if wanted {
                    table.insert(&certificate.hosts, &key);
                }
            }
        }
        info!(
            certificates = kept.len(),
            external_names = external.len(),
            internal_names = internal.len(),
            "applied certificates"
        );
        *parsed = kept;
        self.external.table.store(Arc::new(external));
        self.internal.table.store(Arc::new(internal));
    }
}

impl SniTable {
    fn insert(&mut self, hosts: &[String], key: &Arc<CertifiedKey>) {
        for host in hosts {
            let host = host.to_ascii_lowercase();
            let (map, name) = match host.strip_prefix("*.") {
                Some(parent) => (&mut self.wildcard, parent.to_string()),
                None => (&mut self.exact, host),
            };
            map.entry(name.into_boxed_str())
                .or_insert_with(|| key.clone());
        }
    }
}

fn content_hash(certificate: &Certificate) -> [u8; 32] {
    let mut digest = Sha256::new();
    digest.update((certificate.cert_pem.len() as u64).to_be_bytes());
    digest.update(certificate.cert_pem.as_bytes());
    digest.update(certificate.key_pem.as_bytes());
    digest.finalize().into()
}

/// Reads the default certificate and key files (PEM), validated like a Secret.
pub fn load_default(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<CertifiedKey> {
    use anyhow::Context as _;
    let cert_pem = std::fs::read_to_string(cert)
        .with_context(|| format!("reading default certificate {}", cert.display()))?;
    let key_pem = std::fs::read_to_string(key)
        .with_context(|| format!("reading default key {}", key.display()))?;
    sluice_controller::translate::tls::certified_key(&cert_pem, &key_pem).with_context(|| {
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
