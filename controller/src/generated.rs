//! Files generated from Rust types and committed (the CRDs, the RBAC rules): one YAML writer, so
//! that every such file has the same header and a key order that does not depend on how
//! `serde_json` was compiled, and the drift tests can compare bytes.

use serde_json::{Map, Value};

/// A generated file: its name in the directory it is written to, and its contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedFile {
    pub name: String,
    pub contents: String,
}

/// `header` (comment lines, each ending in a newline) and then `value` as one YAML document.
pub fn yaml_document(header: &str, value: &Value) -> String {
    let mut out = String::from(header);
    out.push_str(&to_yaml(value));
    out
}

/// `header`, then every value as a document of one multi-document stream.
pub fn yaml_stream(header: &str, values: &[Value]) -> String {
    let mut out = String::from(header);
    for value in values {
        out.push_str("---\n");
        out.push_str(&to_yaml(value));
    }
    out
}

fn to_yaml(value: &Value) -> String {
    serde_yaml::to_string(&sorted(value))
        .expect("a JSON value has string keys only, so it always renders as YAML")
}

/// `value` with every object's keys in sorted order. Rebuilding the maps sorts them whether or
/// not `serde_json`'s `preserve_order` feature is on somewhere in the build.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for key in keys {
                out.insert(key.clone(), sorted(&map[key]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_come_out_sorted_at_every_depth() {
        let value = json!({"b": 1, "a": {"d": [{"z": 1, "y": 2}], "c": true}});
        assert_eq!(
            yaml_document("# header\n", &value),
            "# header\na:\n  c: true\n  d:\n  - y: 2\n    z: 1\nb: 1\n"
        );
    }

    #[test]
    fn a_stream_separates_every_document() {
        let stream = yaml_stream("# header\n", &[json!({"a": 1}), json!({"b": 2})]);
        assert_eq!(stream, "# header\n---\na: 1\n---\nb: 2\n");
    }
}
