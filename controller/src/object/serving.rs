//! sluice's own serving kinds, `sluice.dev/v1alpha1` `Route` and `Revision`, as plain serde
//! structs.
//!
//! Like the other objects, unknown fields are ignored and `null` decodes like an absent field.
//! Numbers that validation range-checks are decoded as `i64`, so that a negative or oversized
//! value becomes a status message naming the field rather than a decode failure of the whole
//! document. Defaulting and validation live in [`crate::route`] and [`crate::revision`].

use super::{nullable, IntOrString, ObjectMeta};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `apiVersion` of sluice's own kinds.
pub const SLUICE_API_VERSION: &str = "sluice.dev/v1alpha1";
/// The EndpointSlice label naming the Revision whose (process) instances a slice lists.
pub const REVISION_LABEL: &str = "sluice.dev/revision";
/// The Revision annotation bounding the requests buffered while no instance can take them.
pub const MAX_BUFFERED_ANNOTATION: &str = "sluice.dev/max-buffered-requests";

/// A set of hosts and how their traffic splits over Revisions of the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "nullable")]
    pub spec: RouteSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteSpec {
    /// At least one. Lower-cased and `:port`-stripped like KIngress hosts.
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
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub traffic: Vec<TrafficTarget>,
}

/// One `spec.traffic` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficTarget {
    /// A Revision in the Route's namespace. Knative's `revisionName` is accepted too.
    #[serde(default, deserialize_with = "nullable", alias = "revisionName")]
    pub revision: String,
    /// 0..=100; absent means 0.
    #[serde(default, deserialize_with = "nullable")]
    pub percent: i64,
    /// Optional DNS-1035 label, unique within the Route.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub tag: String,
}

/// One immutable-in-spirit version of a workload: how to reach it and how the activator and
/// autoscaler treat it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "nullable")]
    pub spec: RevisionSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionService {
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    /// A Service port number or name (required).
    #[serde(default, deserialize_with = "nullable")]
    pub port: IntOrString,
}

/// Kubernetes `CrossVersionObjectReference`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    #[serde(default, deserialize_with = "nullable")]
    pub api_version: String,
    #[serde(default, deserialize_with = "nullable")]
    pub kind: String,
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionProcess {
    /// Program and arguments; not run through a shell.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub command: Vec<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub env: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub message: String,
}
