//! Legacy (unaggregated) discovery documents: `/api`, `/api/v1`, `/apis`, `/apis/<g>`,
//! `/apis/<g>/<v>`. kubectl 1.33 asks for aggregated discovery first but takes these when the
//! answer's Content-Type is plain `application/json`.

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
