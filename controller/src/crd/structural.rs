//! Rewrites what schemars generates into a Kubernetes structural schema.
//!
//! The generator inlines every subschema (no `$ref`), so what is left to rewrite is small:
//! - `Option<T>`: schemars says `type: [T, "null"]`, or `anyOf: [T, {type: null}]` when `T`
//!   has subschemas of its own (a struct). Kubernetes wants the `T` schema with
//!   `nullable: true` (serde takes `null` for every `Option` here, as absent).
//! - `default`: dropped. Defaults are applied by sluice when it reads an object (in file mode
//!   too), not stored by the API server, so a newer sluice's defaults reach old objects.
//! - `title` (the Rust type's name) and `$schema`: dropped; they mean nothing to a user, and
//!   Kubernetes refuses `$schema`.
//!
//! Anything else that is not structural is left alone for the tests to find, rather than
//! guessed at here.

use schemars::transform::{transform_subschemas, Transform};
use schemars::Schema;
use serde_json::{Map, Value};

/// The schemars [`Transform`] doing the rewrite, on every subschema.
#[derive(Clone, Copy, Debug, Default)]
pub struct Structural;

impl Transform for Structural {
    fn transform(&mut self, schema: &mut Schema) {
        transform_subschemas(self, schema);
        let Some(node) = schema.as_object_mut() else {
            return;
        };
        for key in ["$schema", "title", "default"] {
            node.remove(key);
        }
        collapse_nullable_any_of(node);
        drop_null_type(node);
    }
}

/// `{description, anyOf: [T, null]}` → `T` with the outer keys (the field's description wins
/// over the type's) and `nullable: true`.
fn collapse_nullable_any_of(node: &mut Map<String, Value>) {
    let Some(Value::Array(variants)) = node.get("anyOf") else {
        return;
    };
    let (nulls, others): (Vec<&Value>, Vec<&Value>) = variants.iter().partition(|v| is_null(v));
    let ([_], [Value::Object(inner)]) = (nulls.as_slice(), others.as_slice()) else {
        return;
    };
    let inner = inner.clone();
    node.remove("anyOf");
    for (key, value) in inner {
        node.entry(key).or_insert(value);
    }
    node.insert("nullable".to_string(), Value::Bool(true));
}

/// `type: [T, "null"]` → `type: T, nullable: true`.
fn drop_null_type(node: &mut Map<String, Value>) {
    let Some(Value::Array(types)) = node.get_mut("type") else {
        return;
    };
    let before = types.len();
    types.retain(|t| t != "null");
    if types.len() == before {
        return;
    }
    if let [only] = types.as_slice() {
        let only = only.clone();
        node.insert("type".to_string(), only);
    }
    node.insert("nullable".to_string(), Value::Bool(true));
}

/// The schema of `()`: schemars's `{type: null}`, or `{const: null}` after other transforms.
fn is_null(schema: &Value) -> bool {
    schema.get("type").is_some_and(|t| t == "null")
        || schema.get("const").is_some_and(Value::is_null)
        || schema.get("enum") == Some(&Value::Array(vec![Value::Null]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rewritten(value: Value) -> Value {
        let mut schema = Schema::try_from(value).expect("an object is a schema");
        Structural.transform(&mut schema);
        schema.to_value()
    }

    #[test]
    fn optional_scalar_becomes_nullable_scalar() {
        assert_eq!(
            rewritten(json!({"type": ["integer", "null"], "format": "int64"})),
            json!({"type": "integer", "format": "int64", "nullable": true})
        );
    }

    #[test]
    fn optional_struct_becomes_nullable_object_keeping_the_field_description() {
        let schema = json!({
            "description": "the field",
            "anyOf": [
                {"description": "the type", "type": "object", "properties": {"a": {"type": "string"}}},
                {"type": "null"},
            ],
        });
        assert_eq!(
            rewritten(schema),
            json!({
                "description": "the field",
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "nullable": true,
            })
        );
    }

    #[test]
    fn a_union_of_two_real_types_is_left_for_the_tests_to_refuse() {
        let union = json!({"anyOf": [{"type": "integer"}, {"type": "string"}]});
        assert_eq!(rewritten(union.clone()), union);
    }

    #[test]
    fn defaults_titles_and_meta_schema_are_dropped_at_every_depth() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Spec",
            "type": "object",
            "properties": {"n": {"type": "integer", "default": 0, "title": "N"}},
        });
        assert_eq!(
            rewritten(schema),
            json!({"type": "object", "properties": {"n": {"type": "integer"}}})
        );
    }
}
