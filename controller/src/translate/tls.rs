//! KIngress `spec.tls` → [`Certificate`]s: which entries each listener set uses, the Secret
//! lookup, and key-pair validation.
//!
//! - **Selection** is Knative's `GetIngressTLSForVisibility`, verbatim: for each rule of a
//!   visibility (in order), every TLS entry whose `hosts` contain all of the rule's hosts (exact
//!   string comparison) is selected; a rule of that visibility without hosts ends the search,
//!   keeping what was selected so far. ExternalIP selections serve the external HTTPS listeners,
//!   ClusterLocal ones the cluster-local HTTPS listeners. An entry selected by neither is unused
//!   (its Secret is not read), as in net-kourier.
//! - **The Secret** holds `tls.crt` (leaf first, then the chain) and `tls.key` (PKCS#8, PKCS#1 or
//!   SEC1; RSA or ECDSA), base64 in `data` or plain in `stringData` (which wins, as the API
//!   server merges it).
//! - **Validation** is exactly what the proxy will do with it: [`certified_key`] (shared with the
//!   proxy through `sluice-xds`) parses the PEM, loads the key with rustls' ring provider and
//!   checks that it matches the leaf certificate. A failure fails the whole ingress, so its last
//!   good translation (with the previous certificate) keeps serving.
//! - **Resources.** A certificate becomes a resource named `<secret>#<12 hex of its content
//!   hash>` ([`PlannedCertificate::resource_name`]): new content is a new resource, parsed once
//!   by each proxy, and an old ingress still serving its last good certificate keeps its own.

use crate::object::{IngressSpec, Kind, Object, ObjectKey};
use crate::store::Store;
use base64::Engine as _;
use sha2::{Digest, Sha256};
pub use sluice_xds::tls::{certified_key, InvalidKeyPair};
use std::collections::BTreeMap;

/// The Secret key holding the certificate chain (`corev1.TLSCertKey`).
pub const TLS_CERT_KEY: &str = "tls.crt";
/// The Secret key holding the private key (`corev1.TLSPrivateKeyKey`).
pub const TLS_PRIVATE_KEY_KEY: &str = "tls.key";

/// Why a Secret cannot serve as a certificate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("secret {secret} not found")]
    NotFound { secret: String },
    #[error("secret {secret}: {problem}")]
    Invalid {
        secret: String,
        problem: InvalidKeyPair,
    },
}

impl SecretError {
    /// The `NetworkConfigured=False` reason.
    pub fn reason(&self) -> &'static str {
        match self {
            SecretError::NotFound { .. } => "SecretNotFound",
            SecretError::Invalid { .. } => "InvalidSecret",
        }
    }
}

/// The `tls.crt` and `tls.key` text of a Secret.
pub fn secret_key_pair(object: &Object) -> Result<(String, String), InvalidKeyPair> {
    let Object::Secret(secret) = object else {
        return Err(InvalidKeyPair::MissingKey(TLS_CERT_KEY));
    };
    let value = |key: &'static str| -> Result<String, InvalidKeyPair> {
        if let Some(text) = secret.string_data.get(key) {
            return Ok(text.clone());
        }
        let encoded = secret
            .data
            .get(key)
            .ok_or(InvalidKeyPair::MissingKey(key))?;
        let compact: Vec<u8> = encoded
            .bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|_| InvalidKeyPair::Base64(key))?;
        String::from_utf8(bytes).map_err(|_| InvalidKeyPair::Utf8(key))
    };
    Ok((value(TLS_CERT_KEY)?, value(TLS_PRIVATE_KEY_KEY)?))
}

/// Validation results by content, kept across translations so that an unchanged Secret is
/// not parsed again. Bounded: past [`KeyPairChecks::BOUND`] entries it starts afresh.
#[derive(Clone, Debug, Default)]
pub(crate) struct KeyPairChecks {
    checked: BTreeMap<[u8; 32], Result<(), InvalidKeyPair>>,
}

impl KeyPairChecks {
    fn check(&mut self, cert_pem: &str, key_pem: &str) -> Result<(), InvalidKeyPair> {
        let mut digest = Sha256::new();
        digest.update((cert_pem.len() as u64).to_be_bytes());
        digest.update(cert_pem.as_bytes());
        digest.update(key_pem.as_bytes());
        let id: [u8; 32] = digest.finalize().into();
        if self.checked.len() >= Self::BOUND && !self.checked.contains_key(&id) {
            self.checked.clear();
        }
        self.checked
            .entry(id)
            .or_insert_with(|| certified_key(cert_pem, key_pem).map(drop))
            .clone()
    }

    const BOUND: usize = 65_536;
}

/// Indexes of the TLS entries Knative's `GetIngressTLSForVisibility(visibility)` returns, in
/// its order, without repeats. `spec` must be defaulted.
pub fn tls_for_visibility(spec: &IngressSpec, visibility: &str) -> Vec<usize> {
    let mut selected = Vec::new();
    if spec.tls.is_empty() {
        return selected;
    }
    for rule in spec.rules.iter().filter(|r| r.visibility == visibility) {
        if rule.hosts.is_empty() {
            return selected;
        }
        for (i, tls) in spec.tls.iter().enumerate() {
            if rule.hosts.iter().all(|h| tls.hosts.contains(h)) && !selected.contains(&i) {
                selected.push(i);
            }
        }
    }
    selected
}

/// One TLS entry of an ingress, read from its Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedCertificate {
    /// `ns/name`.
    pub secret: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// Normalised, deduplicated, in spec order.
    pub hosts: Vec<String>,
    /// Selected for the external HTTPS listeners.
    pub external: bool,
    /// Selected for the cluster-local HTTPS listeners.
    pub internal: bool,
}

impl PlannedCertificate {
    /// `<secret>#<12 hex digits of the content hash>`.
    pub fn resource_name(&self) -> String {
        let mut digest = Sha256::new();
        digest.update((self.cert_pem.len() as u64).to_be_bytes());
        digest.update(self.cert_pem.as_bytes());
        digest.update(self.key_pem.as_bytes());
        let hash = hex::encode(digest.finalize());
        format!("{}#{}", self.secret, &hash[..12])
    }
}

/// The Secrets the TLS entries of a defaulted spec would read (found or not), for dependency
/// tracking.
pub fn secrets_read(spec: &IngressSpec) -> Vec<ObjectKey> {
    use crate::object::{VISIBILITY_CLUSTER_LOCAL, VISIBILITY_EXTERNAL_IP};
    let external = tls_for_visibility(spec, VISIBILITY_EXTERNAL_IP);
    let internal = tls_for_visibility(spec, VISIBILITY_CLUSTER_LOCAL);
    spec.tls
        .iter()
        .enumerate()
        .filter(|(i, _)| external.contains(i) || internal.contains(i))
        .map(|(_, tls)| ObjectKey::new(Kind::Secret, &tls.secret_namespace, &tls.secret_name))
        .collect()
}

/// The certificates of one defaulted, valid ingress spec, reading Secrets from `store`.
pub(crate) fn plan_certificates(
    store: &Store,
    spec: &IngressSpec,
    checks: &mut KeyPairChecks,
) -> Result<Vec<PlannedCertificate>, SecretError> {
    use crate::object::{VISIBILITY_CLUSTER_LOCAL, VISIBILITY_EXTERNAL_IP};
    let external = tls_for_visibility(spec, VISIBILITY_EXTERNAL_IP);
    let internal = tls_for_visibility(spec, VISIBILITY_CLUSTER_LOCAL);
    let mut certificates = Vec::new();
    for (i, tls) in spec.tls.iter().enumerate() {
        let (is_external, is_internal) = (external.contains(&i), internal.contains(&i));
        if !is_external && !is_internal {
            continue;
        }
        let secret = format!("{}/{}", tls.secret_namespace, tls.secret_name);
        let key = ObjectKey::new(Kind::Secret, &tls.secret_namespace, &tls.secret_name);
        let entry = store.get(&key).ok_or_else(|| SecretError::NotFound {
            secret: secret.clone(),
        })?;
        let invalid = |problem| SecretError::Invalid {
            secret: secret.clone(),
            problem,
        };
        let (cert_pem, key_pem) = secret_key_pair(&entry.object).map_err(invalid)?;
        checks.check(&cert_pem, &key_pem).map_err(invalid)?;
        let mut hosts = Vec::with_capacity(tls.hosts.len());
        for host in &tls.hosts {
            let host = sluice_xds::host::normalized(host);
            if !host.is_empty() && !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        certificates.push(PlannedCertificate {
            secret,
            cert_pem,
            key_pem,
            hosts,
            external: is_external,
            internal: is_internal,
        });
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests;
