//! Protobuf at the crate's edge: conversions between the plain model and protocol types and
//! the messages of `xds/proto/` ([`proto`]), so no protobuf type reaches [`crate::model`] or
//! [`crate::protocol`] and the in-process transport never serialises anything.
//!
//! - Resources travel inside `google.protobuf.Any` whose type URL is
//!   [`ResourceType::type_url`]; it must equal the response's `type_url`.
//! - Decoding a response never fails because of one resource: a resource that does not decode
//!   or convert lands in [`DeltaResponse::invalid`] and the client NACKs it with the rest.
//! - A NACK is a request with `error_detail` present: `google.rpc.Status` with code 3
//!   (INVALID_ARGUMENT), the message, and the rejected resources as one
//!   `sluice.v1.RejectedResources` in `details`.
//! - A request for an unknown type URL decodes to [`DeltaRequest::type_`] `None`, so the session
//!   decides what to do with it.

pub mod proto;

use crate::load::{LoadReport, Poke, RevisionLoad};
use crate::model::{self, Resource, ResourceType};
use crate::protocol::{
    ControllerMessage, DeltaRequest, DeltaResponse, NamedResource, Node, ProxyMessage,
    RejectedResource, Rejection,
};
use prost::Message;
use prost_types::Any;
use proto::envoy::service::discovery::v3 as envoy;
use proto::google::rpc;
use proto::sluice::v1 as pb;
use std::net::SocketAddr;
use std::sync::Arc;

/// The `google.rpc.Code` of a NACK: INVALID_ARGUMENT.
pub const NACK_CODE: i32 = 3;

/// The type URL of the `details` entry that lists a NACK's rejected resources.
pub const REJECTED_RESOURCES_TYPE_URL: &str = "type.googleapis.com/sluice.v1.RejectedResources";

/// What is wrong with a message that arrived over the wire.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidWire {
    #[error("{what}: {error}")]
    Decode { what: &'static str, error: String },
    #[error("{what}: missing {field}")]
    Missing { what: String, field: &'static str },
    #[error("endpoints: address {0:?} is not ip:port")]
    Address(String),
    #[error("backend: protocol {0} is neither http1 nor h2c")]
    Protocol(i32),
    #[error("backend: dns port {0} is not in 1..=65535")]
    Port(u32),
    #[error("backend: responder status {0} is above 65535")]
    Status(u32),
    #[error("resource: type url {found:?} where {want:?} was expected")]
    TypeUrl { found: String, want: &'static str },
    #[error("response: unknown type url {0:?}")]
    UnknownType(String),
    #[error("{0}: no message set")]
    Empty(&'static str),
}

fn decode<M: Message + Default>(bytes: &[u8], what: &'static str) -> Result<M, InvalidWire> {
    M::decode(bytes).map_err(|e| InvalidWire::Decode {
        what,
        error: e.to_string(),
    })
}

// ---- resources ----

/// Packs a resource into the `Any` that carries it.
pub fn encode_resource(resource: &Resource) -> Any {
    let value = match resource {
        Resource::RevisionPolicy(r) => pb::RevisionPolicy::from(r).encode_to_vec(),
        Resource::Backend(r) => pb::Backend::from(r).encode_to_vec(),
        Resource::Endpoints(r) => pb::Endpoints::from(r).encode_to_vec(),
        Resource::Certificate(r) => pb::Certificate::from(r).encode_to_vec(),
        Resource::RouteConfig(r) => pb::RouteConfig::from(r).encode_to_vec(),
    };
    Any {
        type_url: resource.type_().type_url().to_string(),
        value,
    }
}

/// Unpacks a resource of type `type_`; the `Any` must carry exactly that type.
pub fn decode_resource(type_: ResourceType, any: &Any) -> Result<Resource, InvalidWire> {
    if any.type_url != type_.type_url() {
        return Err(InvalidWire::TypeUrl {
            found: any.type_url.clone(),
            want: type_.type_url(),
        });
    }
    let bytes = any.value.as_slice();
    Ok(match type_ {
        ResourceType::RevisionPolicy => {
            Resource::RevisionPolicy(decode::<pb::RevisionPolicy>(bytes, "revisionPolicy")?.into())
        }
        ResourceType::Backend => {
            Resource::Backend(decode::<pb::Backend>(bytes, "backend")?.try_into()?)
        }
        ResourceType::Endpoints => {
            Resource::Endpoints(decode::<pb::Endpoints>(bytes, "endpoints")?.try_into()?)
        }
        ResourceType::Certificate => {
            Resource::Certificate(decode::<pb::Certificate>(bytes, "certificate")?.into())
        }
        ResourceType::RouteConfig => {
            Resource::RouteConfig(decode::<pb::RouteConfig>(bytes, "routeConfig")?.try_into()?)
        }
    })
}

impl From<&model::RouteConfig> for pb::RouteConfig {
    fn from(r: &model::RouteConfig) -> Self {
        pb::RouteConfig {
            owner: r.owner.clone(),
            external: r.external.iter().map(Into::into).collect(),
            internal: r.internal.iter().map(Into::into).collect(),
        }
    }
}

impl TryFrom<pb::RouteConfig> for model::RouteConfig {
    type Error = InvalidWire;
    fn try_from(r: pb::RouteConfig) -> Result<Self, InvalidWire> {
        Ok(model::RouteConfig {
            owner: r.owner,
            external: convert_all(r.external)?,
            internal: convert_all(r.internal)?,
        })
    }
}

fn convert_all<P, M: TryFrom<P, Error = InvalidWire>>(
    items: Vec<P>,
) -> Result<Vec<M>, InvalidWire> {
    items.into_iter().map(M::try_from).collect()
}

impl From<&model::VirtualHost> for pb::VirtualHost {
    fn from(v: &model::VirtualHost) -> Self {
        pb::VirtualHost {
            domains: v.domains.clone(),
            routes: v.routes.iter().map(Into::into).collect(),
        }
    }
}

impl TryFrom<pb::VirtualHost> for model::VirtualHost {
    type Error = InvalidWire;
    fn try_from(v: pb::VirtualHost) -> Result<Self, InvalidWire> {
        Ok(model::VirtualHost {
            domains: v.domains,
            routes: convert_all(v.routes)?,
        })
    }
}

impl From<&model::Route> for pb::Route {
    fn from(r: &model::Route) -> Self {
        let model::RouteAction::Forward(forward) = &r.action;
        pb::Route {
            id: r.id.clone(),
            path_prefix: r.path_prefix.clone(),
            headers: r.headers.iter().map(Into::into).collect(),
            action: Some(pb::route::Action::Forward(forward.into())),
            https_redirect: r.https_redirect,
            probe_hash: r.probe_hash.clone(),
        }
    }
}

impl TryFrom<pb::Route> for model::Route {
    type Error = InvalidWire;
    fn try_from(r: pb::Route) -> Result<Self, InvalidWire> {
        let action = match r.action {
            Some(pb::route::Action::Forward(forward)) => {
                model::RouteAction::Forward(forward.into())
            }
            None => {
                return Err(InvalidWire::Missing {
                    what: format!("route {}", r.id),
                    field: "action",
                })
            }
        };
        Ok(model::Route {
            id: r.id,
            path_prefix: r.path_prefix,
            headers: r.headers.into_iter().map(Into::into).collect(),
            action,
            https_redirect: r.https_redirect,
            probe_hash: r.probe_hash,
        })
    }
}

impl From<&model::HeaderMatch> for pb::HeaderMatch {
    fn from(h: &model::HeaderMatch) -> Self {
        pb::HeaderMatch {
            name: h.name.clone(),
            exact: h.exact.clone(),
        }
    }
}

impl From<pb::HeaderMatch> for model::HeaderMatch {
    fn from(h: pb::HeaderMatch) -> Self {
        model::HeaderMatch {
            name: h.name,
            exact: h.exact,
        }
    }
}

impl From<&model::HeaderValue> for pb::HeaderValue {
    fn from(h: &model::HeaderValue) -> Self {
        pb::HeaderValue {
            name: h.name.clone(),
            value: h.value.clone(),
        }
    }
}

impl From<pb::HeaderValue> for model::HeaderValue {
    fn from(h: pb::HeaderValue) -> Self {
        model::HeaderValue {
            name: h.name,
            value: h.value,
        }
    }
}

impl From<&model::Forward> for pb::Forward {
    fn from(f: &model::Forward) -> Self {
        pb::Forward {
            rewrite_host: f.rewrite_host.clone(),
            set_headers: f.set_headers.iter().map(Into::into).collect(),
            splits: f.splits.iter().map(Into::into).collect(),
        }
    }
}

impl From<pb::Forward> for model::Forward {
    fn from(f: pb::Forward) -> Self {
        model::Forward {
            rewrite_host: f.rewrite_host,
            set_headers: f.set_headers.into_iter().map(Into::into).collect(),
            splits: f.splits.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<&model::Split> for pb::Split {
    fn from(s: &model::Split) -> Self {
        pb::Split {
            backend: s.backend.clone(),
            weight: s.weight,
            set_headers: s.set_headers.iter().map(Into::into).collect(),
        }
    }
}

impl From<pb::Split> for model::Split {
    fn from(s: pb::Split) -> Self {
        model::Split {
            backend: s.backend,
            weight: s.weight,
            set_headers: s.set_headers.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<model::Protocol> for pb::Protocol {
    fn from(p: model::Protocol) -> Self {
        match p {
            model::Protocol::Http1 => pb::Protocol::Http1,
            model::Protocol::H2c => pb::Protocol::H2c,
        }
    }
}

impl From<&model::Backend> for pb::Backend {
    fn from(b: &model::Backend) -> Self {
        let target = match &b.target {
            model::Target::Endpoints => pb::backend::Target::Endpoints(pb::EndpointsTarget {}),
            model::Target::Dns { host, port } => pb::backend::Target::Dns(pb::Dns {
                host: host.clone(),
                port: u32::from(*port),
            }),
            model::Target::Responder(spec) => pb::backend::Target::Responder(spec.into()),
        };
        pb::Backend {
            protocol: pb::Protocol::from(b.protocol).into(),
            target: Some(target),
            revision: b.revision.clone(),
        }
    }
}

impl TryFrom<pb::Backend> for model::Backend {
    type Error = InvalidWire;
    fn try_from(b: pb::Backend) -> Result<Self, InvalidWire> {
        let protocol = match pb::Protocol::try_from(b.protocol) {
            Ok(pb::Protocol::Http1) => model::Protocol::Http1,
            Ok(pb::Protocol::H2c) => model::Protocol::H2c,
            Ok(pb::Protocol::Unspecified) | Err(_) => {
                return Err(InvalidWire::Protocol(b.protocol))
            }
        };
        let target = match b.target {
            Some(pb::backend::Target::Endpoints(pb::EndpointsTarget {})) => {
                model::Target::Endpoints
            }
            Some(pb::backend::Target::Dns(dns)) => model::Target::Dns {
                port: u16::try_from(dns.port)
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or(InvalidWire::Port(dns.port))?,
                host: dns.host,
            },
            Some(pb::backend::Target::Responder(spec)) => {
                model::Target::Responder(spec.try_into()?)
            }
            None => {
                return Err(InvalidWire::Missing {
                    what: "backend".to_string(),
                    field: "target",
                })
            }
        };
        Ok(model::Backend {
            protocol,
            target,
            revision: b.revision,
        })
    }
}

impl From<&model::ResponderSpec> for pb::ResponderSpec {
    fn from(r: &model::ResponderSpec) -> Self {
        pb::ResponderSpec {
            status: u32::from(r.status),
            body_bytes: r.body_bytes,
            latency_ms: r.latency_ms,
            message: r.message.clone(),
        }
    }
}

impl TryFrom<pb::ResponderSpec> for model::ResponderSpec {
    type Error = InvalidWire;
    fn try_from(r: pb::ResponderSpec) -> Result<Self, InvalidWire> {
        Ok(model::ResponderSpec {
            status: u16::try_from(r.status).map_err(|_| InvalidWire::Status(r.status))?,
            body_bytes: r.body_bytes,
            latency_ms: r.latency_ms,
            message: r.message,
        })
    }
}

impl From<&model::Endpoints> for pb::Endpoints {
    fn from(e: &model::Endpoints) -> Self {
        pb::Endpoints {
            addresses: e.addresses.iter().map(ToString::to_string).collect(),
        }
    }
}

impl TryFrom<pb::Endpoints> for model::Endpoints {
    type Error = InvalidWire;
    fn try_from(e: pb::Endpoints) -> Result<Self, InvalidWire> {
        let addresses = e
            .addresses
            .into_iter()
            .map(|a| a.parse::<SocketAddr>().map_err(|_| InvalidWire::Address(a)))
            .collect::<Result<_, _>>()?;
        Ok(model::Endpoints { addresses })
    }
}

impl From<&model::RevisionPolicy> for pb::RevisionPolicy {
    fn from(r: &model::RevisionPolicy) -> Self {
        pb::RevisionPolicy {
            container_concurrency: r.container_concurrency,
            max_buffered: r.max_buffered,
            timeout_seconds: r.timeout_seconds,
            response_start_timeout_seconds: r.response_start_timeout_seconds,
            idle_timeout_seconds: r.idle_timeout_seconds,
        }
    }
}

impl From<pb::RevisionPolicy> for model::RevisionPolicy {
    fn from(r: pb::RevisionPolicy) -> Self {
        model::RevisionPolicy {
            container_concurrency: r.container_concurrency,
            max_buffered: r.max_buffered,
            timeout_seconds: r.timeout_seconds,
            response_start_timeout_seconds: r.response_start_timeout_seconds,
            idle_timeout_seconds: r.idle_timeout_seconds,
        }
    }
}

impl From<&model::Certificate> for pb::Certificate {
    fn from(c: &model::Certificate) -> Self {
        pb::Certificate {
            secret: c.secret.clone(),
            cert_pem: c.cert_pem.clone(),
            key_pem: c.key_pem.clone(),
            external_hosts: c.external_hosts.clone(),
            internal_hosts: c.internal_hosts.clone(),
        }
    }
}

impl From<pb::Certificate> for model::Certificate {
    fn from(c: pb::Certificate) -> Self {
        model::Certificate {
            secret: c.secret,
            cert_pem: c.cert_pem,
            key_pem: c.key_pem,
            external_hosts: c.external_hosts,
            internal_hosts: c.internal_hosts,
        }
    }
}

// ---- load reports and pokes ----

impl From<RevisionLoad> for pb::RevisionLoad {
    fn from(r: RevisionLoad) -> Self {
        pb::RevisionLoad {
            revision: r.revision,
            concurrency: r.concurrency,
            requests: r.requests,
            held: r.held,
        }
    }
}

impl From<pb::RevisionLoad> for RevisionLoad {
    fn from(r: pb::RevisionLoad) -> Self {
        RevisionLoad {
            revision: r.revision,
            concurrency: r.concurrency,
            requests: r.requests,
            held: r.held,
        }
    }
}

impl From<LoadReport> for pb::LoadReport {
    fn from(r: LoadReport) -> Self {
        pb::LoadReport {
            interval_ms: r.interval_ms,
            revisions: r.revisions.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<pb::LoadReport> for LoadReport {
    fn from(r: pb::LoadReport) -> Self {
        LoadReport {
            interval_ms: r.interval_ms,
            revisions: r.revisions.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<Poke> for pb::Poke {
    fn from(p: Poke) -> Self {
        pb::Poke {
            revisions: p.revisions.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<pb::Poke> for Poke {
    fn from(p: pb::Poke) -> Self {
        Poke {
            revisions: p.revisions.into_iter().map(Into::into).collect(),
        }
    }
}

// ---- requests ----

impl From<Node> for envoy::Node {
    fn from(n: Node) -> Self {
        envoy::Node {
            id: n.id,
            cluster: String::new(),
            sluice_metadata: n.metadata,
        }
    }
}

/// `cluster` has no place in sluice's node and is dropped.
impl From<envoy::Node> for Node {
    fn from(n: envoy::Node) -> Self {
        Node {
            id: n.id,
            metadata: n.sluice_metadata,
        }
    }
}

impl From<RejectedResource> for pb::RejectedResource {
    fn from(r: RejectedResource) -> Self {
        pb::RejectedResource {
            name: r.name,
            reason: r.reason,
        }
    }
}

impl From<pb::RejectedResource> for RejectedResource {
    fn from(r: pb::RejectedResource) -> Self {
        RejectedResource {
            name: r.name,
            reason: r.reason,
        }
    }
}

impl From<Rejection> for rpc::Status {
    fn from(r: Rejection) -> Self {
        let details = if r.resources.is_empty() {
            Vec::new()
        } else {
            let list = pb::RejectedResources {
                resources: r.resources.into_iter().map(Into::into).collect(),
            };
            vec![Any {
                type_url: REJECTED_RESOURCES_TYPE_URL.to_string(),
                value: list.encode_to_vec(),
            }]
        };
        rpc::Status {
            code: NACK_CODE,
            message: r.message,
            details,
        }
    }
}

/// Details of other types are skipped: another client may attach its own.
impl TryFrom<rpc::Status> for Rejection {
    type Error = InvalidWire;
    fn try_from(s: rpc::Status) -> Result<Self, InvalidWire> {
        let mut resources = Vec::new();
        for detail in s
            .details
            .iter()
            .filter(|d| d.type_url == REJECTED_RESOURCES_TYPE_URL)
        {
            let list: pb::RejectedResources = decode(&detail.value, "nack: rejected resources")?;
            resources.extend(list.resources.into_iter().map(RejectedResource::from));
        }
        Ok(Rejection {
            message: s.message,
            resources,
        })
    }
}

impl From<DeltaRequest> for envoy::DeltaDiscoveryRequest {
    fn from(r: DeltaRequest) -> Self {
        envoy::DeltaDiscoveryRequest {
            node: r.node.map(Into::into),
            type_url: r
                .type_
                .map(ResourceType::type_url)
                .unwrap_or_default()
                .to_string(),
            resource_names_subscribe: r.subscribe,
            resource_names_unsubscribe: r.unsubscribe,
            initial_resource_versions: r.initial_versions,
            response_nonce: r.response_nonce.unwrap_or_default(),
            error_detail: r.error.map(Into::into),
        }
    }
}

impl TryFrom<envoy::DeltaDiscoveryRequest> for DeltaRequest {
    type Error = InvalidWire;
    fn try_from(r: envoy::DeltaDiscoveryRequest) -> Result<Self, InvalidWire> {
        Ok(DeltaRequest {
            type_: ResourceType::from_type_url(&r.type_url),
            node: r.node.map(Into::into),
            subscribe: r.resource_names_subscribe,
            unsubscribe: r.resource_names_unsubscribe,
            initial_versions: r.initial_resource_versions,
            // An empty nonce is proto3's "unset": a request that answers no response.
            response_nonce: Some(r.response_nonce).filter(|n| !n.is_empty()),
            // The presence of error_detail is what makes a NACK, details or not.
            error: r.error_detail.map(Rejection::try_from).transpose()?,
        })
    }
}

// ---- responses ----

impl From<DeltaResponse> for envoy::DeltaDiscoveryResponse {
    /// [`DeltaResponse::invalid`] is a receiving-side notion and is not sent;
    /// [`DeltaResponse::push_continues`] travels in the [`pb::ControllerMessage`] around it.
    fn from(r: DeltaResponse) -> Self {
        envoy::DeltaDiscoveryResponse {
            system_version_info: r.system_version,
            resources: r
                .resources
                .iter()
                .map(|named| envoy::Resource {
                    version: named.version.clone(),
                    resource: Some(encode_resource(&named.resource)),
                    name: named.name.clone(),
                })
                .collect(),
            type_url: r.type_.type_url().to_string(),
            nonce: r.nonce,
            removed_resources: r.removed,
        }
    }
}

/// Fails only for a type URL sluice does not know; a bad resource lands in `invalid`.
impl TryFrom<envoy::DeltaDiscoveryResponse> for DeltaResponse {
    type Error = InvalidWire;
    fn try_from(r: envoy::DeltaDiscoveryResponse) -> Result<Self, InvalidWire> {
        let type_ = ResourceType::from_type_url(&r.type_url)
            .ok_or_else(|| InvalidWire::UnknownType(r.type_url.clone()))?;
        let mut resources = Vec::with_capacity(r.resources.len());
        let mut invalid = Vec::new();
        for wire in r.resources {
            let decoded = match &wire.resource {
                Some(any) => decode_resource(type_, any),
                None => Err(InvalidWire::Missing {
                    what: "resource".to_string(),
                    field: "content",
                }),
            };
            match decoded {
                Ok(resource) => {
                    // The controller's version is what the proxy echoes on reconnect, so keep
                    // it rather than recomputing; compute only if it was left out.
                    let version = if wire.version.is_empty() {
                        resource.version()
                    } else {
                        wire.version
                    };
                    resources.push(NamedResource {
                        name: wire.name,
                        version,
                        resource: Arc::new(resource),
                    });
                }
                Err(error) => invalid.push(RejectedResource {
                    name: wire.name,
                    reason: error.to_string(),
                }),
            }
        }
        Ok(DeltaResponse {
            type_,
            nonce: r.nonce,
            system_version: r.system_version_info,
            resources,
            removed: r.removed_resources,
            invalid,
            push_continues: false,
        })
    }
}

// ---- stream messages ----

impl From<ProxyMessage> for pb::ProxyMessage {
    fn from(m: ProxyMessage) -> Self {
        let message = match m {
            ProxyMessage::Request(r) => pb::proxy_message::Message::Request(r.into()),
            ProxyMessage::Load(l) => pb::proxy_message::Message::Load(l.into()),
            ProxyMessage::Poke(p) => pb::proxy_message::Message::Poke(p.into()),
        };
        pb::ProxyMessage {
            message: Some(message),
        }
    }
}

impl TryFrom<pb::ProxyMessage> for ProxyMessage {
    type Error = InvalidWire;
    fn try_from(m: pb::ProxyMessage) -> Result<Self, InvalidWire> {
        match m.message {
            Some(pb::proxy_message::Message::Request(r)) => {
                Ok(ProxyMessage::Request(r.try_into()?))
            }
            Some(pb::proxy_message::Message::Load(l)) => Ok(ProxyMessage::Load(l.into())),
            Some(pb::proxy_message::Message::Poke(p)) => Ok(ProxyMessage::Poke(p.into())),
            None => Err(InvalidWire::Empty("proxy message")),
        }
    }
}

impl From<ControllerMessage> for pb::ControllerMessage {
    fn from(m: ControllerMessage) -> Self {
        match m {
            ControllerMessage::Response(r) => pb::ControllerMessage {
                push_continues: r.push_continues,
                message: Some(pb::controller_message::Message::Response(r.into())),
            },
        }
    }
}

impl TryFrom<pb::ControllerMessage> for ControllerMessage {
    type Error = InvalidWire;
    fn try_from(m: pb::ControllerMessage) -> Result<Self, InvalidWire> {
        match m.message {
            Some(pb::controller_message::Message::Response(r)) => {
                let mut response = DeltaResponse::try_from(r)?;
                response.push_continues = m.push_continues;
                Ok(ControllerMessage::Response(response))
            }
            None => Err(InvalidWire::Empty("controller message")),
        }
    }
}

#[cfg(test)]
mod tests;
