//! The Kubernetes objects the controller reads, as plain serde structs.
//!
//! Only the fields sluice uses are modelled; unknown fields are ignored so that old and new
//! objects both decode. A JSON/YAML `null` decodes like an absent field (as Go does), so
//! `hosts:` with no value is an empty list. The one place where absent and empty differ is the
//! KIngress `paths` and `splits` lists, which Go marshals as `null` vs `[]` and which feed the
//! ingress hash: those are `Option<Vec<_>>`.

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// `apiVersion` of the Knative KIngress.
pub const INGRESS_API_VERSION: &str = "networking.internal.knative.dev/v1alpha1";
/// The annotation that selects which implementation reconciles a KIngress.
pub const INGRESS_CLASS_ANNOTATION: &str = "networking.knative.dev/ingress.class";
/// The EndpointSlice label naming the Service the slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// `visibility` value for rules served on the public listeners.
pub const VISIBILITY_EXTERNAL_IP: &str = "ExternalIP";
/// `visibility` value for rules served only on the cluster-local listeners.
pub const VISIBILITY_CLUSTER_LOCAL: &str = "ClusterLocal";

mod serving;
pub use serving::{
    ObjectRef, Revision, RevisionProcess, RevisionResponder, RevisionService, RevisionSpec, Route,
    RouteSpec, TrafficTarget, MAX_BUFFERED_ANNOTATION, REVISION_LABEL, SLUICE_API_VERSION,
};

/// Decodes `null` like an absent field: the type's default.
pub(crate) fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// The kinds of object the store holds. The order is the order of status listings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    Ingress,
    Service,
    EndpointSlice,
    Secret,
    ConfigMap,
    Route,
    Revision,
}

impl Kind {
    /// Recognises a supported `apiVersion` + `kind` pair.
    pub fn from_type(api_version: &str, kind: &str) -> Option<Kind> {
        match (api_version, kind) {
            (INGRESS_API_VERSION, "Ingress") => Some(Kind::Ingress),
            ("v1", "Service") => Some(Kind::Service),
            ("discovery.k8s.io/v1", "EndpointSlice") => Some(Kind::EndpointSlice),
            ("v1", "Secret") => Some(Kind::Secret),
            ("v1", "ConfigMap") => Some(Kind::ConfigMap),
            (SLUICE_API_VERSION, "Route") => Some(Kind::Route),
            (SLUICE_API_VERSION, "Revision") => Some(Kind::Revision),
            _ => None,
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Ingress => INGRESS_API_VERSION,
            Kind::Service | Kind::Secret | Kind::ConfigMap => "v1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            Kind::Route | Kind::Revision => SLUICE_API_VERSION,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ingress => "Ingress",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
            Kind::Route => "Route",
            Kind::Revision => "Revision",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity of a stored object. Displays as `Kind ns/name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The display id `ns/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// The metadata sluice reads. `namespace` is `"default"` once decoded through [`Object::decode`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default, deserialize_with = "nullable")]
    pub namespace: String,
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

/// The API server owns `metadata`'s schema: a custom resource's may say no more than that it is
/// an object.
impl JsonSchema for ObjectMeta {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "ObjectMeta".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "object" })
    }
}

/// Kubernetes `intstr.IntOrString`. The zero value is `Int(0)`, as in Go.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i32),
    String(String),
}

impl Default for IntOrString {
    fn default() -> Self {
        IntOrString::Int(0)
    }
}

/// Kubernetes' own schema for the type: no `type`, which a structural schema allows only with
/// this extension (the API server then accepts an integer or a string).
impl JsonSchema for IntOrString {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "IntOrString".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "x-kubernetes-int-or-string": true })
    }
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrString::Int(n) => write!(f, "{n}"),
            IntOrString::String(s) => f.write_str(s),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// KIngress (networking.internal.knative.dev/v1alpha1). Field order is Go's marshalling order.

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ingress {
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "nullable")]
    pub spec: IngressSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tls: Vec<IngressTls>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub rules: Vec<IngressRule>,
    /// `Enabled`, `Redirected` or `""`; anything else fails validation.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub http_option: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressTls {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub hosts: Vec<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub secret_name: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub secret_namespace: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressRule {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub hosts: Vec<String>,
    /// `ExternalIP` or `ClusterLocal` (defaulted to `ExternalIP`). Kept as written: validation
    /// does not check it, and anything but `ExternalIP` is served cluster-locally only.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub visibility: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpIngressRuleValue>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpIngressRuleValue {
    /// `None` when absent or `null` (Go nil), `Some(vec![])` for `[]`.
    #[serde(default)]
    pub paths: Option<Vec<HttpIngressPath>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpIngressPath {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub path: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub rewrite_host: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub headers: BTreeMap<String, HeaderMatch>,
    /// `None` when absent or `null` (Go nil), `Some(vec![])` for `[]`.
    #[serde(default)]
    pub splits: Option<Vec<IngressBackendSplit>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub append_headers: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressBackendSplit {
    #[serde(default, deserialize_with = "nullable")]
    pub service_namespace: String,
    #[serde(default, deserialize_with = "nullable")]
    pub service_name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub service_port: IntOrString,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub percent: i64,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub append_headers: BTreeMap<String, String>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderMatch {
    #[serde(default, deserialize_with = "nullable")]
    pub exact: String,
}

// ---------------------------------------------------------------------------------------------
// Core and discovery objects.

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "nullable")]
    pub spec: ServiceSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// `ClusterIP` (default), `NodePort`, `LoadBalancer` or `ExternalName`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ports: Vec<ServicePort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_name: Option<String>,
}

impl ServiceSpec {
    /// The DNS name of an `ExternalName` Service.
    pub fn external_name(&self) -> Option<&str> {
        if self.type_.as_deref() == Some("ExternalName") {
            self.external_name.as_deref()
        } else {
            None
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub port: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSlice {
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: ObjectMeta,
    /// `IPv4`, `IPv6` or `FQDN`.
    #[serde(default, deserialize_with = "nullable")]
    pub address_type: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub endpoints: Vec<Endpoint>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ports: Vec<EndpointPort>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    #[serde(default, deserialize_with = "nullable")]
    pub addresses: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub conditions: EndpointConditions,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointConditions {
    /// Absent means ready (the EndpointSlice API says consumers should assume so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// Stored as written; the data is read by the TLS support.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: ObjectMeta,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Base64-encoded values.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub data: BTreeMap<String, String>,
    /// Plain values (write-only in a real cluster, but allowed in manifests).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub string_data: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigMap {
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: ObjectMeta,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub data: BTreeMap<String, String>,
}

/// Any object the store holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Object {
    Ingress(Ingress),
    Service(Service),
    EndpointSlice(EndpointSlice),
    Secret(Secret),
    ConfigMap(ConfigMap),
    Route(Route),
    /// Boxed: by far the largest variant.
    Revision(Box<Revision>),
}

/// Why a document of a supported kind could not become an [`Object`].
#[derive(Debug, thiserror::Error)]
pub enum InvalidObject {
    #[error("{kind} has no metadata.name")]
    MissingName { kind: Kind },
    #[error("{key}: {source}")]
    Decode {
        key: ObjectKey,
        #[source]
        source: serde_json::Error,
    },
}

impl Object {
    /// Decodes a document already known to be of `kind`. A missing namespace becomes
    /// `"default"`.
    pub fn decode(kind: Kind, value: serde_json::Value) -> Result<Object, InvalidObject> {
        let key = peek_key(kind, &value).ok_or(InvalidObject::MissingName { kind })?;
        let decode_error = |source| InvalidObject::Decode {
            key: key.clone(),
            source,
        };
        let mut object = match kind {
            Kind::Ingress => Object::Ingress(serde_json::from_value(value).map_err(decode_error)?),
            Kind::Service => Object::Service(serde_json::from_value(value).map_err(decode_error)?),
            Kind::EndpointSlice => {
                Object::EndpointSlice(serde_json::from_value(value).map_err(decode_error)?)
            }
            Kind::Secret => Object::Secret(serde_json::from_value(value).map_err(decode_error)?),
            Kind::ConfigMap => {
                Object::ConfigMap(serde_json::from_value(value).map_err(decode_error)?)
            }
            Kind::Route => Object::Route(serde_json::from_value(value).map_err(decode_error)?),
            Kind::Revision => {
                Object::Revision(serde_json::from_value(value).map_err(decode_error)?)
            }
        };
        let meta = object.metadata_mut();
        if meta.namespace.is_empty() {
            meta.namespace = "default".to_string();
        }
        Ok(object)
    }

    pub fn kind(&self) -> Kind {
        match self {
            Object::Ingress(_) => Kind::Ingress,
            Object::Service(_) => Kind::Service,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::Secret(_) => Kind::Secret,
            Object::ConfigMap(_) => Kind::ConfigMap,
            Object::Route(_) => Kind::Route,
            Object::Revision(_) => Kind::Revision,
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Ingress(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::Route(o) => &o.metadata,
            Object::Revision(o) => &o.metadata,
        }
    }

    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::Ingress(o) => &mut o.metadata,
            Object::Service(o) => &mut o.metadata,
            Object::EndpointSlice(o) => &mut o.metadata,
            Object::Secret(o) => &mut o.metadata,
            Object::ConfigMap(o) => &mut o.metadata,
            Object::Route(o) => &mut o.metadata,
            Object::Revision(o) => &mut o.metadata,
        }
    }

    pub fn key(&self) -> ObjectKey {
        let meta = self.metadata();
        ObjectKey::new(self.kind(), &meta.namespace, &meta.name)
    }

    /// Whether everything but the metadata is equal: what "the spec changed" means when the
    /// object carries no `metadata.generation`.
    pub fn same_spec(&self, other: &Object) -> bool {
        match (self, other) {
            (Object::Ingress(a), Object::Ingress(b)) => a.spec == b.spec,
            (Object::Service(a), Object::Service(b)) => a.spec == b.spec,
            (Object::EndpointSlice(a), Object::EndpointSlice(b)) => {
                (&a.address_type, &a.endpoints, &a.ports)
                    == (&b.address_type, &b.endpoints, &b.ports)
            }
            (Object::Secret(a), Object::Secret(b)) => {
                (&a.type_, &a.data, &a.string_data) == (&b.type_, &b.data, &b.string_data)
            }
            (Object::ConfigMap(a), Object::ConfigMap(b)) => a.data == b.data,
            (Object::Route(a), Object::Route(b)) => a.spec == b.spec,
            (Object::Revision(a), Object::Revision(b)) => a.spec == b.spec,
            _ => false,
        }
    }
}

/// Reads `metadata.name`/`metadata.namespace` without decoding the rest, so that an object
/// whose body is broken can still be named.
pub(crate) fn peek_key(kind: Kind, value: &serde_json::Value) -> Option<ObjectKey> {
    let meta = value.get("metadata")?;
    let name = meta.get("name")?.as_str()?;
    if name.is_empty() {
        return None;
    }
    let namespace = match meta.get("namespace").and_then(|n| n.as_str()) {
        Some(ns) if !ns.is_empty() => ns,
        _ => "default",
    };
    Some(ObjectKey::new(kind, namespace, name))
}
