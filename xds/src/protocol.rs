//! The messages of a proxy's stream, independent of the transport: in-process they travel as
//! these values (resources by `Arc`, never serialised); over gRPC they are converted to and from
//! Envoy's delta discovery messages at the crate's edge ([`crate::wire`]).
//!
//! Delta-xDS semantics (see `shared/reference/xds-protocol.md`): the proxy subscribes per type;
//! the controller answers with versioned updates and removals, each response with its own
//! nonce; the proxy ACKs or NACKs every response. A NACK ([`Rejection`]) names the rejected
//! resources; the proxy keeps its last good version of those and applies the rest.
//!
//! Two messages beyond xDS ride the same stream, proxy → controller: per-second
//! [`LoadReport`]s and [`Poke`]s.

use crate::load::{LoadReport, Poke};
use crate::model::{Resource, ResourceType};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Who is on the other end of a stream (sent once, in the first request).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    /// The proxy's name (`--node-id`, the pod name in a cluster).
    pub id: String,
    /// Free-form, for humans: version, listeners.
    pub metadata: BTreeMap<String, String>,
}

/// One named resource at one version. Equal when name and version are: the version is the
/// content's hash.
#[derive(Clone, Debug)]
pub struct NamedResource {
    pub name: String,
    /// [`Resource::version`] of `resource`.
    pub version: String,
    pub resource: Arc<Resource>,
}

impl PartialEq for NamedResource {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.version == other.version
    }
}

impl Eq for NamedResource {}

impl NamedResource {
    pub fn new(name: impl Into<String>, resource: Resource) -> NamedResource {
        NamedResource {
            name: name.into(),
            version: resource.version(),
            resource: Arc::new(resource),
        }
    }
}

/// The resources a NACK rejects, each with why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rejection {
    /// For humans: every `name: reason`, joined by `; `.
    pub message: String,
    pub resources: Vec<RejectedResource>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedResource {
    pub name: String,
    pub reason: String,
}

impl Rejection {
    pub fn new(resources: Vec<RejectedResource>) -> Rejection {
        let message = resources
            .iter()
            .map(|r| format!("{}: {}", r.name, r.reason))
            .collect::<Vec<_>>()
            .join("; ");
        Rejection { message, resources }
    }
}

/// Proxy → controller: a delta discovery request for one type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeltaRequest {
    pub type_: Option<ResourceType>,
    /// Only in the first request of a stream.
    pub node: Option<Node>,
    pub subscribe: Vec<String>,
    pub unsubscribe: Vec<String>,
    /// On a (re)connect: what the proxy already holds, so only what changed is sent.
    pub initial_versions: BTreeMap<String, String>,
    /// Set on an ACK or NACK: the nonce of the response it answers.
    pub response_nonce: Option<String>,
    /// Set on a NACK.
    pub error: Option<Rejection>,
}

/// Controller → proxy: the changes of one type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaResponse {
    pub type_: ResourceType,
    /// Unique within the stream.
    pub nonce: String,
    /// For humans: the controller's cache sequence this response brings the proxy to.
    pub system_version: String,
    pub resources: Vec<NamedResource>,
    pub removed: Vec<String>,
    /// Resources the transport could not decode (gRPC only): the proxy NACKs them with the rest.
    pub invalid: Vec<RejectedResource>,
    /// More responses of the same push follow: a push is cut into responses of at most
    /// [`crate::session::MAX_PER_RESPONSE`] resources, and a proxy becomes ready only after a
    /// push's last one, so it never serves half of its first config.
    pub push_continues: bool,
}

/// Everything a proxy sends.
#[derive(Clone, Debug, PartialEq)]
pub enum ProxyMessage {
    Request(DeltaRequest),
    Load(LoadReport),
    Poke(Poke),
}

/// Everything the controller sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControllerMessage {
    Response(DeltaResponse),
}
