//! Legacy (unaggregated) discovery documents: `/api`, `/api/v1`, `/apis`, `/apis/<g>`,
//! `/apis/<g>/<v>`. kubectl 1.33 asks for aggregated discovery first but takes these when the
//! answer's Content-Type is plain `application/json`.
//!
//! And the OpenAPI v3 documents clients read before they apply (`kubectl apply`, `helm
//! install`): `/openapi/v3` and one document per group version. They carry no schemas, only
//! a PATCH operation per kind that accepts `fieldValidation`: that tells kubectl and Helm the
//! server validates fields itself, so they skip client-side schema checks and send
//! `fieldValidation=Strict` (which this fake does not enforce).

use serde_json::{json, Value};

use super::ResourceType;

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Short names the real server (or Knative's CRDs) declare, so `kubectl get deploy` works.
fn short_names(t: &ResourceType) -> &'static [&'static str] {
    match (t.group, t.plural) {
        ("", "namespaces") => &["ns"],
        ("", "services") => &["svc"],
        ("", "configmaps") => &["cm"],
        ("", "pods") => &["po"],
        ("apps", "deployments") => &["deploy"],
        ("networking.internal.knative.dev", "ingresses") => &["kingress", "king"],
        ("", "serviceaccounts") => &["sa"],
        ("policy", "poddisruptionbudgets") => &["pdb"],
        ("autoscaling", "horizontalpodautoscalers") => &["hpa"],
        ("apiextensions.k8s.io", "customresourcedefinitions") => &["crd", "crds"],
        _ => &[],
    }
}

pub(crate) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

pub(crate) fn core_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
}

/// Group names in first-seen order, each with its versions in first-seen order.
fn groups(types: &[ResourceType]) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for t in types.iter().filter(|t| !t.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == t.group) {
            Some((_, versions)) => {
                if !versions.contains(&t.version) {
                    versions.push(t.version);
                }
            }
            None => groups.push((t.group, vec![t.version])),
        }
    }
    groups
}

fn group_document(name: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({
        "name": name,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
        "versions": versions,
    })
}

pub(crate) fn group_list(types: &[ResourceType]) -> Value {
    let groups: Vec<Value> = groups(types)
        .iter()
        .map(|(name, versions)| group_document(name, versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`, or `None` for a group this server does not serve.
pub(crate) fn group(types: &[ResourceType], name: &str) -> Option<Value> {
    let groups = groups(types);
    let (name, versions) = groups.iter().find(|(g, _)| *g == name)?;
    let mut document = group_document(name, versions);
    document["kind"] = json!("APIGroup");
    document["apiVersion"] = json!("v1");
    Some(document)
}

/// `/api/v1` or `/apis/<group>/<version>`, or `None` when no type has that group version.
pub(crate) fn resource_list(types: &[ResourceType], group_version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for t in types.iter().filter(|t| t.group_version() == group_version) {
        resources.push(json!({
            "name": t.plural,
            "singularName": t.kind.to_ascii_lowercase(),
            "namespaced": t.namespaced,
            "kind": t.kind,
            "verbs": VERBS,
            "shortNames": short_names(t),
        }));
        if t.status {
            resources.push(json!({
                "name": format!("{}/status", t.plural),
                "singularName": "",
                "namespaced": t.namespaced,
                "kind": t.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        if t.scale.is_some() {
            resources.push(json!({
                "name": format!("{}/scale", t.plural),
                "singularName": "",
                "namespaced": t.namespaced,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    if resources.is_empty() {
        return None;
    }
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

/// `/openapi/v3`: where each group version's document is.
pub(crate) fn openapi_index(types: &[ResourceType]) -> Value {
    let mut paths = serde_json::Map::new();
    for t in types {
        let path = openapi_path(&t.group_version());
        let url = format!(
            "/openapi/v3/{path}?hash={}",
            openapi_hash(&t.group_version())
        );
        paths.insert(path, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

/// `/openapi/v3/api/v1` or `/openapi/v3/apis/<g>/<v>`, or `None` for an unserved one.
pub(crate) fn openapi_document(types: &[ResourceType], group_version: &str) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    for t in types.iter().filter(|t| t.group_version() == group_version) {
        let prefix = if t.group.is_empty() { "/api" } else { "/apis" };
        let scope = if t.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        paths.insert(
            format!("{prefix}/{group_version}{scope}/{}/{{name}}", t.plural),
            json!({"patch": {
                "x-kubernetes-group-version-kind":
                    {"group": t.group, "version": t.version, "kind": t.kind},
                "parameters": [{"name": "fieldValidation", "in": "query",
                                "schema": {"type": "string"}}],
                "responses": {},
            }}),
        );
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

fn openapi_path(group_version: &str) -> String {
    if group_version.contains('/') {
        format!("apis/{group_version}")
    } else {
        format!("api/{group_version}")
    }
}

/// A stable stand-in for the real server's content hash (clients cache by it).
fn openapi_hash(group_version: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in group_version.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016X}")
}
