//! The four patch formats of `PATCH` requests, applied to plain JSON documents.
//!
//! - JSON merge patch (RFC 7386): [`merge_patch`].
//! - JSON patch (RFC 6902; add, remove, replace, move, copy, test): [`json_patch`].
//! - Strategic merge patch, a subset: [`strategic_merge`]. Maps merge recursively and `null`
//!   deletes a key. A map holding `$patch: replace` replaces the target map, `$patch: delete`
//!   removes it. `$setElementOrder/<list>` and `$retainKeys` are ignored (so merged lists keep
//!   the target's order, new elements go last). `$deleteFromPrimitiveList/<list>` removes values.
//!   Lists of objects merge element by element on the merge key Kubernetes declares for them
//!   ([`merge_key`]); an element with `$patch: delete` removes the element with its key, and a
//!   `{"$patch": "replace"}` element makes the rest of the patch list replace the target list.
//!   `metadata.finalizers` merges as a set. Every other list is replaced.
//! - Server-side apply is approximated by the same strategic merge of the applied configuration
//!   into the stored object (see `FakeApiServer` docs): one field manager, no field ownership.

use serde_json::{Map, Value};

/// A patch body that cannot be parsed or applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InvalidPatch {
    /// The body is not the shape its format requires: 400.
    #[error("{0}")]
    Malformed(String),
    /// The patch is well formed but does not apply to this document (failed `test`, missing
    /// path): 422.
    #[error("{0}")]
    Inapplicable(String),
}

/// The `PATCH` formats, by `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchKind {
    /// Every format, in the order the real server lists them in a 415.
    pub(crate) const CONTENT_TYPES: [&'static str; 4] = [
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    ];

    /// The format a `Content-Type` names; parameters (`; charset=utf-8`) are ignored.
    pub(crate) fn from_content_type(content_type: &str) -> Option<Self> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media.to_ascii_lowercase().as_str() {
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(PatchKind::Apply)
            }
            _ => None,
        }
    }
}

/// RFC 7386: objects merge recursively, `null` removes, anything else replaces.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else {
        return;
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// RFC 6901 pointer into reference tokens.
fn parse_pointer(pointer: &str) -> Result<Vec<String>, InvalidPatch> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let rest = pointer.strip_prefix('/').ok_or_else(|| {
        InvalidPatch::Malformed(format!("json pointer {pointer:?} does not start with /"))
    })?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn array_index(token: &str, len: usize, allow_end: bool) -> Option<usize> {
    if allow_end && token == "-" {
        return Some(len);
    }
    // RFC 6901: no leading zeros, no signs.
    if token.is_empty() || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    let index: usize = token.parse().ok()?;
    let bound = if allow_end {
        len
    } else {
        len.saturating_sub(1)
    };
    (index <= bound && (allow_end || len > 0)).then_some(index)
}

fn resolve<'a>(doc: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    tokens.iter().try_fold(doc, |node, token| match node {
        Value::Object(map) => map.get(token),
        Value::Array(items) => items.get(array_index(token, items.len(), false)?),
        _ => None,
    })
}

fn resolve_mut<'a>(doc: &'a mut Value, tokens: &[String]) -> Option<&'a mut Value> {
    tokens.iter().try_fold(doc, |node, token| match node {
        Value::Object(map) => map.get_mut(token),
        Value::Array(items) => {
            let index = array_index(token, items.len(), false)?;
            items.get_mut(index)
        }
        _ => None,
    })
}

fn missing(op: &str, path: &str) -> InvalidPatch {
    InvalidPatch::Inapplicable(format!(
        "{op} operation does not apply: doc is missing path: {path:?}"
    ))
}

fn add(doc: &mut Value, tokens: &[String], value: Value, path: &str) -> Result<(), InvalidPatch> {
    let Some((last, parent)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    match resolve_mut(doc, parent) {
        Some(Value::Object(map)) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Some(Value::Array(items)) => {
            let index = array_index(last, items.len(), true).ok_or_else(|| missing("add", path))?;
            items.insert(index, value);
            Ok(())
        }
        _ => Err(missing("add", path)),
    }
}

fn remove(doc: &mut Value, tokens: &[String], op: &str, path: &str) -> Result<Value, InvalidPatch> {
    let (last, parent) = tokens
        .split_last()
        .ok_or_else(|| InvalidPatch::Inapplicable(format!("{op} of the whole document")))?;
    match resolve_mut(doc, parent) {
        Some(Value::Object(map)) => map.remove(last).ok_or_else(|| missing(op, path)),
        Some(Value::Array(items)) => {
            let index = array_index(last, items.len(), false).ok_or_else(|| missing(op, path))?;
            Ok(items.remove(index))
        }
        _ => Err(missing(op, path)),
    }
}

/// RFC 6902 on a copy of `target`; the whole patch applies or none of it does.
pub(crate) fn json_patch(target: &Value, patch: &Value) -> Result<Value, InvalidPatch> {
    let ops = patch.as_array().ok_or_else(|| {
        InvalidPatch::Malformed("json patch must be an array of operations".to_owned())
    })?;
    let mut doc = target.clone();
    for op in ops {
        let field = |name: &str| {
            op.get(name).and_then(Value::as_str).ok_or_else(|| {
                InvalidPatch::Malformed(format!("json patch operation {op} has no string {name:?}"))
            })
        };
        let value = || {
            op.get("value").cloned().ok_or_else(|| {
                InvalidPatch::Malformed(format!("json patch operation {op} has no \"value\""))
            })
        };
        let name = field("op")?;
        let path = field("path")?;
        let tokens = parse_pointer(path)?;
        match name {
            "add" => add(&mut doc, &tokens, value()?, path)?,
            "remove" => {
                remove(&mut doc, &tokens, "remove", path)?;
            }
            "replace" => {
                let value = value()?;
                let slot =
                    resolve_mut(&mut doc, &tokens).ok_or_else(|| missing("replace", path))?;
                *slot = value;
            }
            "move" => {
                let from = field("from")?;
                let from_tokens = parse_pointer(from)?;
                if tokens.len() > from_tokens.len() && tokens.starts_with(&from_tokens) {
                    return Err(InvalidPatch::Inapplicable(format!(
                        "move operation cannot move {from:?} into its own child {path:?}"
                    )));
                }
                let moved = remove(&mut doc, &from_tokens, "move", from)?;
                add(&mut doc, &tokens, moved, path)?;
            }
            "copy" => {
                let from = field("from")?;
                let copied = resolve(&doc, &parse_pointer(from)?)
                    .cloned()
                    .ok_or_else(|| missing("copy", from))?;
                add(&mut doc, &tokens, copied, path)?;
            }
            "test" => {
                let expected = value()?;
                if resolve(&doc, &tokens) != Some(&expected) {
                    return Err(InvalidPatch::Inapplicable(format!(
                        "testing value {path} failed: test failed"
                    )));
                }
            }
            other => {
                return Err(InvalidPatch::Malformed(format!(
                    "unexpected json patch operation {other:?}"
                )))
            }
        }
    }
    Ok(doc)
}

/// How a list merges under a strategic merge patch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListMerge {
    /// Elements are objects matched on this key.
    Key(&'static str),
    /// Elements are scalars merged as a set (`finalizers`).
    Set,
    /// The patch's list replaces the target's.
    Replace,
}

/// The merge strategy Kubernetes' Go types declare (`patchStrategy:"merge"`, `patchMergeKey`)
/// for a list at `path` (field names from the root, list elements not counted).
pub(crate) fn merge_key(path: &[&str]) -> ListMerge {
    let Some((&field, parents)) = path.split_last() else {
        return ListMerge::Replace;
    };
    let parent = parents.last().copied().unwrap_or("");
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => ListMerge::Key("name"),
        "volumeMounts" => ListMerge::Key("mountPath"),
        "volumeDevices" => ListMerge::Key("devicePath"),
        "hostAliases" => ListMerge::Key("ip"),
        "ownerReferences" => ListMerge::Key("uid"),
        "conditions" => ListMerge::Key("type"),
        "ports"
            if matches!(
                parent,
                "containers" | "initContainers" | "ephemeralContainers"
            ) =>
        {
            ListMerge::Key("containerPort")
        }
        // A Service's ports; EndpointSlice ports (at the root) are atomic.
        "ports" if parents == ["spec"] => ListMerge::Key("port"),
        "finalizers" if parent == "metadata" => ListMerge::Set,
        _ => ListMerge::Replace,
    }
}

const DIRECTIVE: &str = "$patch";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const RETAIN_KEYS: &str = "$retainKeys";

fn is_directive_key(key: &str) -> bool {
    key == DIRECTIVE
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

/// A patch value with every directive removed, for when it lands where nothing was.
fn without_directives(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, v)| !is_directive_key(k) && !v.is_null())
                .map(|(k, v)| (k.clone(), without_directives(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter(|item| item.get(DIRECTIVE).is_none())
                .map(without_directives)
                .collect(),
        ),
        other => other.clone(),
    }
}

fn directive(value: &Value) -> Option<&str> {
    value.get(DIRECTIVE).and_then(Value::as_str)
}

/// The strategic merge patch subset described in the module docs, on a copy of `target`.
pub(crate) fn strategic_merge(target: &Value, patch: &Value) -> Result<Value, InvalidPatch> {
    let Value::Object(patch) = patch else {
        return Err(InvalidPatch::Malformed(
            "strategic merge patch must be a JSON object".to_owned(),
        ));
    };
    let mut doc = target.clone();
    if !doc.is_object() {
        doc = Value::Object(Map::new());
    }
    let mut path = Vec::new();
    if let Value::Object(map) = &mut doc {
        merge_map(map, patch, &mut path)?;
    }
    Ok(doc)
}

fn merge_map<'p>(
    target: &mut Map<String, Value>,
    patch: &'p Map<String, Value>,
    path: &mut Vec<&'p str>,
) -> Result<(), InvalidPatch> {
    match patch.get(DIRECTIVE).and_then(Value::as_str) {
        None | Some("merge") => {}
        Some("replace") => {
            if let Value::Object(replacement) = without_directives(&Value::Object(patch.clone())) {
                *target = replacement;
            }
            return Ok(());
        }
        // `delete` is handled by the caller, which owns the key; at the root it empties.
        Some("delete") => {
            target.clear();
            return Ok(());
        }
        Some(other) => {
            return Err(InvalidPatch::Malformed(format!(
                "unknown patch directive {other:?}"
            )))
        }
    }
    for (key, value) in patch {
        if let Some(list) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            let doomed = value.as_array().ok_or_else(|| {
                InvalidPatch::Malformed(format!("{key} must be a list of values"))
            })?;
            if let Some(Value::Array(items)) = target.get_mut(list) {
                items.retain(|item| !doomed.contains(item));
            }
            continue;
        }
        if is_directive_key(key) {
            continue;
        }
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(sub) => {
                if directive(value) == Some("delete") {
                    target.remove(key);
                    continue;
                }
                path.push(key);
                match target.get_mut(key) {
                    Some(Value::Object(existing)) => merge_map(existing, sub, path)?,
                    _ => {
                        target.insert(key.clone(), without_directives(value));
                    }
                }
                path.pop();
            }
            Value::Array(items) => {
                path.push(key);
                let strategy = merge_key(path);
                let merged = merge_list(target.get(key), items, strategy, path)?;
                path.pop();
                target.insert(key.clone(), merged);
            }
            scalar => {
                target.insert(key.clone(), scalar.clone());
            }
        }
    }
    Ok(())
}

fn merge_list<'p>(
    target: Option<&Value>,
    patch: &'p [Value],
    strategy: ListMerge,
    path: &mut Vec<&'p str>,
) -> Result<Value, InvalidPatch> {
    let replace_all = patch.iter().any(|item| directive(item) == Some("replace"));
    let existing = match target {
        Some(Value::Array(items)) if !replace_all => items.clone(),
        _ => Vec::new(),
    };
    match strategy {
        ListMerge::Replace => Ok(without_directives(&Value::Array(patch.to_vec()))),
        ListMerge::Set => {
            let mut merged = existing;
            for item in patch {
                if !merged.contains(item) {
                    merged.push(item.clone());
                }
            }
            Ok(Value::Array(merged))
        }
        ListMerge::Key(key) => {
            let mut merged = existing;
            for item in patch {
                if directive(item) == Some("replace") {
                    continue;
                }
                let Value::Object(item_map) = item else {
                    return Err(InvalidPatch::Malformed(format!(
                        "list {} is merged on {key:?} but holds {item}",
                        path.join(".")
                    )));
                };
                let Some(id) = item_map.get(key) else {
                    return Err(InvalidPatch::Malformed(format!(
                        "map: {item} does not contain declared merge key: {key}"
                    )));
                };
                let position = merged.iter().position(|e| e.get(key) == Some(id));
                match (directive(item), position) {
                    (Some("delete"), Some(index)) => {
                        merged.remove(index);
                    }
                    (Some("delete"), None) => {}
                    (_, Some(index)) => {
                        if let Some(Value::Object(element)) = merged.get_mut(index) {
                            merge_map(element, item_map, path)?;
                        }
                    }
                    (_, None) => merged.push(without_directives(item)),
                }
            }
            Ok(Value::Array(merged))
        }
    }
}

#[cfg(test)]
mod tests;
