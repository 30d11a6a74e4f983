//! The resources that travel from the control plane to the data plane.
//!
//! Each resource is named and versioned on its own, so a change to one KIngress, one
//! EndpointSlice or one Secret produces, sends and compiles only what it touches:
//!
//! | type | name | what |
//! |---|---|---|
//! | [`RevisionPolicy`] | the Revision, `ns/name` | what the activator enforces for it |
//! | [`Backend`] | `ns/svc:port` or the Revision `ns/name` | protocol and where its endpoints come from |
//! | [`Endpoints`] | the backend's name | its ready addresses |
//! | [`Certificate`] | `ns/secret#<content hash>` | a PEM pair and the SNI names it won |
//! | [`RouteConfig`] | `ingress/ns/name` or `route/ns/name` | one owner's virtual hosts, both tables |
//!
//! [`ResourceType`]'s order is the push order (make before break): what a route names is sent
//! before the route, and removals of backends come last.
//!
//! Invariants the controller keeps: a host belongs to one [`RouteConfig`] per table, and an SNI
//! name to one [`Certificate`] per listener set (domain conflicts are resolved before anything
//! is sent); every collection is in a deterministic order, so equal content serialises to
//! equal bytes and gets an equal [`Resource::version`].

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;

/// The kinds of resource, in push order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ResourceType {
    RevisionPolicy,
    Backend,
    Endpoints,
    Certificate,
    RouteConfig,
}

impl ResourceType {
    /// Every type, in push order.
    pub const ALL: [ResourceType; 5] = [
        ResourceType::RevisionPolicy,
        ResourceType::Backend,
        ResourceType::Endpoints,
        ResourceType::Certificate,
        ResourceType::RouteConfig,
    ];

    /// The `Any` type URL of the resource on the wire.
    pub fn type_url(self) -> &'static str {
        match self {
            ResourceType::RevisionPolicy => "type.googleapis.com/sluice.v1.RevisionPolicy",
            ResourceType::Backend => "type.googleapis.com/sluice.v1.Backend",
            ResourceType::Endpoints => "type.googleapis.com/sluice.v1.Endpoints",
            ResourceType::Certificate => "type.googleapis.com/sluice.v1.Certificate",
            ResourceType::RouteConfig => "type.googleapis.com/sluice.v1.RouteConfig",
        }
    }

    pub fn from_type_url(url: &str) -> Option<ResourceType> {
        ResourceType::ALL.into_iter().find(|t| t.type_url() == url)
    }

    /// A short name for logs, metrics labels and `/config`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::RevisionPolicy => "revisionPolicy",
            ResourceType::Backend => "backend",
            ResourceType::Endpoints => "endpoints",
            ResourceType::Certificate => "certificate",
            ResourceType::RouteConfig => "routeConfig",
        }
    }

    /// Index into arrays of per-type state, in push order.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for ResourceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One resource of any type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Resource {
    RevisionPolicy(RevisionPolicy),
    Backend(Backend),
    Endpoints(Endpoints),
    Certificate(Certificate),
    RouteConfig(RouteConfig),
}

impl Resource {
    pub fn type_(&self) -> ResourceType {
        match self {
            Resource::RevisionPolicy(_) => ResourceType::RevisionPolicy,
            Resource::Backend(_) => ResourceType::Backend,
            Resource::Endpoints(_) => ResourceType::Endpoints,
            Resource::Certificate(_) => ResourceType::Certificate,
            Resource::RouteConfig(_) => ResourceType::RouteConfig,
        }
    }

    /// Hex sha256 of the content: equal content, equal version, in every process and after
    /// every restart, so a reconnecting proxy is sent only what changed.
    pub fn version(&self) -> String {
        let bytes = serde_json::to_vec(self).expect("resources always serialise");
        hex::encode(Sha256::digest(bytes))
    }
}

/// One owner's routes (a KIngress or a sluice Route): its virtual hosts in each table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteConfig {
    /// The owning object, `ns/name`: the metrics label of its routes.
    pub owner: String,
    /// Served on the external (public) listeners: ExternalIP rules only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external: Vec<VirtualHost>,
    /// Served on the cluster-local listeners: every rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub internal: Vec<VirtualHost>,
}

/// A set of domains sharing one ordered route list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualHost {
    /// Normalised host names (see [`crate::host`]). `"*"` matches any host not named elsewhere.
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
    /// Knative's readiness probe (its InsertProbe, folded into the route it copies): a request
    /// carrying `k-network-hash: override` gets `k-network-hash: <probe_hash>` set, after the
    /// route's and split's SETs. One route instead of a probe copy per path: the same answers
    /// for every request, half the routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_hash: Option<String>,
}

/// The header Knative's prober sends and the ingress answers with its hash.
pub const PROBE_HASH_HEADER: &str = "k-network-hash";
/// The value the prober sends to ask for the hash.
pub const PROBE_HASH_OVERRIDE: &str = "override";

fn is_false(b: &bool) -> bool {
    !*b
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
    /// The name of a [`Backend`].
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

/// An upstream: a Service port or a Revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    pub protocol: Protocol,
    pub target: Target,
    /// Set for a sluice Revision: the name of its [`RevisionPolicy`] (the Revision, `ns/name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Target {
    /// The addresses of the [`Endpoints`] resource of the same name. None (or none yet) means
    /// requests wait for one.
    Endpoints,
    /// An ExternalName Service: resolved by DNS when connecting.
    Dns { host: String, port: u16 },
    /// sluice's built-in synthetic responder, served in-process (no upstream).
    Responder(ResponderSpec),
}

/// A backend's ready addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// Sorted, without repeats.
    pub addresses: Vec<SocketAddr>,
}

/// What the activator enforces for one Revision (`sluice.dev/v1alpha1`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionPolicy {
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

/// One server certificate (PEM chain + key) and the SNI names it serves.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Certificate {
    /// The Secret it came from, `ns/name`.
    pub secret: String,
    /// `tls.crt`: the leaf certificate first, then its chain (PEM).
    pub cert_pem: String,
    /// `tls.key` (PEM: PKCS#8, PKCS#1 or SEC1). Never logged or shown (see `Debug`).
    pub key_pem: String,
    /// Normalised SNI names on the external HTTPS listeners: exact, or `*.suffix` for one
    /// extra leading label. Sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_hosts: Vec<String>,
    /// The same for the cluster-local HTTPS listeners.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub internal_hosts: Vec<String>,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("secret", &self.secret)
            .field("external_hosts", &self.external_hosts)
            .field("internal_hosts", &self.internal_hosts)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
