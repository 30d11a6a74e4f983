//! The `/scale` subresource: an `autoscaling/v1` Scale document made from the parent's fields.

use serde_json::{json, Map, Value};

use super::store::meta_str;
use super::ResourceType;

/// The Scale kind itself, for error messages about a Scale body.
pub(crate) fn scale_type() -> ResourceType {
    ResourceType {
        group: "autoscaling",
        version: "v1",
        kind: "Scale",
        plural: "scale",
        namespaced: true,
        status: false,
        scale: None,
    }
}

/// `".spec.replicas"` into `["spec", "replicas"]`.
fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('.').filter(|s| !s.is_empty())
}

pub(crate) fn get_path<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    segments(path).try_fold(object, |node, segment| node.get(segment))
}

/// Sets a value at a dotted path, making the maps on the way.
pub(crate) fn set_path(object: &mut Map<String, Value>, path: &str, value: Value) {
    let parts: Vec<&str> = segments(path).collect();
    let Some((last, parents)) = parts.split_last() else {
        return;
    };
    let mut node = object;
    for part in parents {
        let next = node
            .entry((*part).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        node = next.as_object_mut().expect("just made a map");
    }
    node.insert((*last).to_owned(), value);
}

/// Renders a selector the way `metav1.LabelSelectorAsSelector(...).String()` does: a string is
/// taken as is, a LabelSelector becomes `k=v,k2 in (a,b)` sorted by key.
pub(crate) fn render_selector(selector: &Value) -> String {
    if let Some(text) = selector.as_str() {
        return text.to_owned();
    }
    let mut terms: Vec<(String, String)> = Vec::new();
    if let Some(Value::Object(labels)) = selector.get("matchLabels") {
        for (key, value) in labels {
            terms.push((
                key.clone(),
                format!("{key}={}", value.as_str().unwrap_or("")),
            ));
        }
    }
    if let Some(Value::Array(expressions)) = selector.get("matchExpressions") {
        for expression in expressions {
            let key = expression.get("key").and_then(Value::as_str).unwrap_or("");
            let mut values: Vec<&str> = expression
                .get("values")
                .and_then(Value::as_array)
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            values.sort_unstable();
            let rendered = match expression.get("operator").and_then(Value::as_str) {
                Some("In") => format!("{key} in ({})", values.join(",")),
                Some("NotIn") => format!("{key} notin ({})", values.join(",")),
                Some("Exists") => key.to_owned(),
                Some("DoesNotExist") => format!("!{key}"),
                _ => continue,
            };
            terms.push((key.to_owned(), rendered));
        }
    }
    terms.sort();
    terms
        .into_iter()
        .map(|(_, term)| term)
        .collect::<Vec<_>>()
        .join(",")
}

/// The Scale of `parent`; its resourceVersion is the parent's.
pub(crate) fn scale_of(t: &ResourceType, parent: &Value) -> Value {
    let Some(paths) = t.scale else {
        return Value::Null;
    };
    let replicas = |path: &str| get_path(parent, path).and_then(Value::as_i64).unwrap_or(0);
    let mut metadata = Map::new();
    for field in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(value) = meta_str(parent, field) {
            metadata.insert(field.to_owned(), json!(value));
        }
    }
    let mut status = json!({"replicas": replicas(paths.status_replicas)});
    if let Some(selector) = paths.label_selector.and_then(|path| get_path(parent, path)) {
        status["selector"] = json!(render_selector(selector));
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": replicas(paths.spec_replicas)},
        "status": status,
    })
}
