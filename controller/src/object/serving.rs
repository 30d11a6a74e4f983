//! sluice's own serving kinds, `sluice.dev/v1alpha1` `Route` and `Revision`, as plain serde
//! structs.
//!
//! Like the other objects, unknown fields are ignored and `null` decodes like an absent field.
//! Numbers that validation range-checks are decoded as `i64`, so that a negative or oversized
//! value becomes a status message naming the field rather than a decode failure of the whole
//! document. Defaulting and validation live in [`crate::route`] and [`crate::revision`].
//!
//! The doc comments on these types and fields are also the descriptions in the
//! CustomResourceDefinitions ([`crate::crd`]), so they speak to whoever writes the YAML.

use super::{nullable, IntOrString, ObjectMeta};
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// `apiVersion` of sluice's own kinds.
pub const SLUICE_API_VERSION: &str = "sluice.dev/v1alpha1";
/// The EndpointSlice label naming the Revision whose (process) instances a slice lists.
pub const REVISION_LABEL: &str = "sluice.dev/revision";
/// The Revision annotation bounding the requests buffered while no instance can take them.
pub const MAX_BUFFERED_ANNOTATION: &str = "sluice.dev/max-buffered-requests";

/// A set of hosts and how their traffic splits over Revisions of the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Route {
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "nullable")]
    pub spec: RouteSpec,
}

/// The hosts a Route serves, where they are visible, and how their traffic splits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteSpec {
    /// Host names, at least one, each a DNS-1123 subdomain. Lower-cased and `:port`-stripped
    /// like KIngress hosts.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub hosts: Vec<String>,
    /// `ExternalIP` (the default when empty) or `ClusterLocal`.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub visibility: String,
    /// Revisions and their shares of the traffic; the percents sum to 100.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub traffic: Vec<TrafficTarget>,
}

/// One `spec.traffic` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = revision_name_alias)]
pub struct TrafficTarget {
    /// A Revision in the Route's namespace. Knative's `revisionName` is accepted too.
    #[serde(default, deserialize_with = "nullable", alias = "revisionName")]
    pub revision: String,
    /// 0..=100; absent means 0.
    #[serde(default, deserialize_with = "nullable")]
    pub percent: i64,
    /// Optional DNS-1035 label, unique within the Route. A tag reaches its Revision whatever
    /// the percent: on the hosts `<tag>-<first label>.<rest>` of the Route's hosts, and with
    /// the header `Knative-Serving-Tag: <tag>` on the Route's hosts.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub tag: String,
}

/// serde takes Knative's `revisionName` for `revision`, which schemars does not see. The schema
/// must list it too: the API server drops fields its schema does not name.
fn revision_name_alias(schema: &mut Schema) {
    let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(revision) = properties.get("revision") {
        let mut alias = revision.clone();
        if let Some(alias) = alias.as_object_mut() {
            alias.insert(
                "description".to_string(),
                Value::from("Knative's name for `revision`; set one of the two."),
            );
        }
        properties.insert("revisionName".to_string(), alias);
    }
}

/// One immutable-in-spirit version of a workload: how to reach it and how the activator and
/// autoscaler treat it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Revision {
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "nullable")]
    pub spec: RevisionSpec,
}

/// How to reach a Revision's instances and how requests for it are bounded. Exactly one of
/// `service`, `process` and `responder` is set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionSpec {
    /// Hard per-instance limit on requests in flight; 0 (the default) means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_concurrency: Option<i64>,
    /// Whole-request bound, queue time included: 1..=3600, default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// Bound from arrival to the response head: 0..=timeoutSeconds, 0 meaning none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_start_timeout_seconds: Option<i64>,
    /// Longest gap between response body chunks: 0..=timeoutSeconds, 0 meaning none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_seconds: Option<i64>,
    /// Backend: a Kubernetes Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<RevisionService>,
    /// With `service`: what the Kubernetes scaler scales (a Deployment, usually).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_target_ref: Option<ObjectRef>,
    /// Backend: local processes that sluice starts with `PORT` set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<RevisionProcess>,
    /// Backend: sluice's in-process synthetic responder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responder: Option<RevisionResponder>,
}

/// A Kubernetes Service in the Revision's namespace; its ready endpoints are the instances.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionService {
    /// The Service's name (required).
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    /// A Service port number or name (required).
    #[serde(default, deserialize_with = "nullable")]
    pub port: IntOrString,
}

/// Kubernetes `CrossVersionObjectReference`: an object with a `scale` subresource, in the
/// Revision's namespace.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// For example `apps/v1`.
    #[serde(default, deserialize_with = "nullable")]
    pub api_version: String,
    /// For example `Deployment`.
    #[serde(default, deserialize_with = "nullable")]
    pub kind: String,
    /// The object's name.
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
}

/// Local processes that sluice starts, one per instance, each with `PORT` set to the free
/// loopback port it must listen on and `K_REVISION` to the Revision's name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionProcess {
    /// Program and arguments; not run through a shell.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub command: Vec<String>,
    /// Environment variables, added to those sluice itself runs with.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub env: BTreeMap<String, String>,
}

/// sluice's in-process synthetic responder: every request gets the same response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionResponder {
    /// 100..=599, default 200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i64>,
    /// Body size; 0 (the default) means `message` plus a newline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_bytes: Option<i64>,
    /// Delay before the response head, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<i64>,
    /// Body text when `bodyBytes` is 0.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub message: String,
}
