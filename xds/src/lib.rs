//! sluice's canonical configuration model: the [`Snapshot`].
//!
//! The controller's pure `translate()` produces a `Snapshot`; the proxy compiles it into its
//! routing table. It is plain Rust: no Kubernetes, Pingora or protobuf types live here, so the
//! same value can travel in-process (standalone mode) or over the xDS wire (cluster mode).
//!
//! Invariants:
//! - Every `Split::backend` names a key of `Snapshot::backends`.
//! - All collections are ordered deterministically (Vec in meaning order, BTreeMap for sets),
//!   so the same input always serialises to the same bytes.
//! - `Snapshot::version` is a hash of the content, so an unchanged config is never re-applied.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// The complete data-plane configuration at one point in time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Hex sha256 of the content (everything below). Set by [`Snapshot::new`].
    pub version: String,
    /// Routes served on the external (public) listeners: ExternalIP rules only.
    pub external: RouteTable,
    /// Routes served on the cluster-local listeners: every rule.
    pub internal: RouteTable,
    /// Upstreams by display id `ns/svc:port`.
    pub backends: BTreeMap<String, Backend>,
    /// Server certificates for the HTTPS listeners, chosen by SNI. When two name the same host,
    /// the earlier one wins (translation orders them oldest ingress first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<Certificate>,
}

impl Snapshot {
    /// Builds a snapshot from route tables and backends and stamps its version.
    pub fn new(
        external: RouteTable,
        internal: RouteTable,
        backends: BTreeMap<String, Backend>,
    ) -> Self {
        Snapshot {
            external,
            internal,
            backends,
            ..Snapshot::default()
        }
        .sealed()
    }

    /// Stamps `version` with the content hash. Call after building or changing a snapshot
    /// field by field (`Snapshot { .., ..Default::default() }.sealed()`).
    pub fn sealed(mut self) -> Self {
        self.version = self.content_hash();
        self
    }

    /// Hash of everything except `version`.
    pub fn content_hash(&self) -> String {
        let mut content = self.clone();
        content.version.clear();
        let bytes = serde_json::to_vec(&content).expect("snapshot content always serialises");
        hex::encode(Sha256::digest(bytes))
    }
}

/// The virtual hosts of one listener kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteTable {
    pub virtual_hosts: Vec<VirtualHost>,
}

/// A set of domains sharing one ordered route list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualHost {
    /// Lower-case host names without port. `"*"` matches any host not named elsewhere.
    pub domains: Vec<String>,
    /// Tried in order; the first match wins. Translation orders them longest prefix first.
    pub routes: Vec<Route>,
}

/// One match → action entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// Display id: `ns/name#rule/path`.
    pub id: String,
    /// The owning object, `ns/name`; the metrics label.
    pub owner: String,
    /// Literal prefix of the request path; `"/"` matches everything.
    pub path_prefix: String,
    /// All must match: header name (lower-case) equals the exact value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
    pub action: RouteAction,
    /// On a plaintext listener, answer 301 to `https://<host><path?query>` instead of
    /// forwarding (`httpOption: Redirected`; only ever set in the external table).
    #[serde(default, skip_serializing_if = "is_false")]
    pub https_redirect: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One server certificate (PEM chain + key) and the SNI names it answers for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Certificate {
    /// Lower-case SNI names: exact, or `*.suffix` for one extra leading label.
    pub hosts: Vec<String>,
    /// Served on the external HTTPS listeners.
    pub external: bool,
    /// Served on the cluster-local HTTPS listeners.
    pub internal: bool,
    /// The Secret it came from, `ns/name`.
    pub secret: String,
    /// `tls.crt`: the leaf certificate first, then its chain (PEM).
    pub cert_pem: String,
    /// `tls.key` (PEM: PKCS#8, PKCS#1 or SEC1). Redacted wherever the snapshot is shown.
    pub key_pem: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RouteAction {
    /// Proxy to one of the splits.
    Forward(Forward),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Forward {
    /// Replaces Host / :authority before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_host: Option<String>,
    /// Request headers SET (overwritten) before the split is chosen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_headers: Vec<HeaderValue>,
    /// Weighted targets; weights are integer percents, 0 never receives traffic.
    pub splits: Vec<Split>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Split {
    /// Key into `Snapshot::backends`.
    pub backend: String,
    pub weight: u32,
    /// Request headers SET after the split is chosen (they win over route-level ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_headers: Vec<HeaderValue>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderMatch {
    /// Lower-case header name.
    pub name: String,
    pub exact: String,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderValue {
    /// Lower-case header name.
    pub name: String,
    pub value: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Protocol {
    Http1,
    /// HTTP/2 with prior knowledge over cleartext.
    H2c,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    pub protocol: Protocol,
    pub target: Target,
    /// Set when the backend is a sluice Revision: the activator's per-revision policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<RevisionPolicy>,
}

/// What the activator enforces for one Revision (`sluice.dev/v1alpha1`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionPolicy {
    /// The Revision, `ns/name`.
    pub id: String,
    /// Most requests in flight per instance; 0 means unlimited.
    pub container_concurrency: u32,
    /// Most requests waiting for an instance; more are answered 503 at once.
    pub max_buffered: u32,
    /// Whole-request bound in seconds, queue time included (Knative `timeoutSeconds`).
    pub timeout_seconds: u64,
    /// Bound from arrival to the response head, queue time included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_start_timeout_seconds: Option<u64>,
    /// Longest gap between response body chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_seconds: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Target {
    /// Ready endpoint addresses, sorted. Empty means "none ready yet": requests are held.
    Endpoints(Vec<SocketAddr>),
    /// An ExternalName Service: resolved by DNS when connecting.
    Dns { host: String, port: u16 },
    /// sluice's built-in synthetic responder, served in-process (no upstream).
    Responder(ResponderSpec),
}

/// A synthetic response: for demos and as a load-test target.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponderSpec {
    /// Response status; 200 when absent.
    #[serde(default = "ResponderSpec::default_status")]
    pub status: u16,
    /// Body size in bytes; when 0 the body is `message` plus a newline.
    #[serde(default)]
    pub body_bytes: u32,
    /// Delay before the response head, in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default)]
    pub message: String,
}

impl ResponderSpec {
    fn default_status() -> u16 {
        200
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_content_hash_and_ignores_nothing_else() {
        let a = Snapshot::new(
            RouteTable::default(),
            RouteTable::default(),
            BTreeMap::new(),
        );
        let b = Snapshot::new(
            RouteTable::default(),
            RouteTable::default(),
            BTreeMap::new(),
        );
        assert_eq!(a.version, b.version);
        assert_eq!(a.version.len(), 64);
        let mut backends = BTreeMap::new();
        backends.insert(
            "ns/svc:80".to_string(),
            Backend {
                protocol: Protocol::Http1,
                revision: None,
                target: Target::Endpoints(vec!["127.0.0.1:8080".parse().expect("valid addr")]),
            },
        );
        let c = Snapshot::new(RouteTable::default(), RouteTable::default(), backends);
        assert_ne!(a.version, c.version);
    }

    #[test]
    fn snapshot_round_trips_through_json() {
        let route = Route {
            id: "default/hello#0/0".into(),
            owner: "default/hello".into(),
            path_prefix: "/".into(),
            headers: vec![HeaderMatch {
                name: "knative-serving-tag".into(),
                exact: "v1".into(),
            }],
            action: RouteAction::Forward(Forward {
                rewrite_host: None,
                set_headers: vec![],
                splits: vec![Split {
                    backend: "default/hello:80".into(),
                    weight: 100,
                    set_headers: vec![],
                }],
            }),
            https_redirect: true,
        };
        let table = RouteTable {
            virtual_hosts: vec![VirtualHost {
                domains: vec!["hello.example.com".into()],
                routes: vec![route],
            }],
        };
        let snap = Snapshot {
            external: table.clone(),
            internal: table,
            certificates: vec![Certificate {
                hosts: vec!["hello.example.com".into(), "*.example.com".into()],
                external: true,
                internal: false,
                secret: "default/hello-tls".into(),
                cert_pem: "-----BEGIN CERTIFICATE-----\n".into(),
                key_pem: "-----BEGIN PRIVATE KEY-----\n".into(),
            }],
            ..Snapshot::default()
        }
        .sealed();
        let json = serde_json::to_string(&snap).expect("serialises");
        let back: Snapshot = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, snap);
        assert_eq!(back.content_hash(), snap.version);
    }
}
