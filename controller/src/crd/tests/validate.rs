//! Two small checkers for the OpenAPI v3 subset the CRDs use: Kubernetes' structural-schema
//! rules on a schema, and a value against a schema the way the API server treats it (unknown
//! fields are dropped, so they count as problems here).

use serde_json::{Map, Value};

const TYPES: &[&str] = &["object", "array", "string", "integer", "number", "boolean"];
/// Keywords a structural schema must not use, or that sluice's schemas leave out on purpose
/// (`default`: sluice applies defaults when it reads an object).
const REFUSED: &[&str] = &[
    "$ref",
    "$defs",
    "definitions",
    "$schema",
    "anyOf",
    "oneOf",
    "allOf",
    "not",
    "const",
    "default",
];

/// The formats the API server knows, by the type they apply to.
fn format_fits(type_: Option<&str>, format: &str) -> bool {
    match type_ {
        Some("integer") => matches!(format, "int32" | "int64"),
        Some("number") => matches!(format, "float" | "double"),
        Some("string") => matches!(
            format,
            "byte"
                | "password"
                | "date"
                | "date-time"
                | "datetime"
                | "duration"
                | "uri"
                | "email"
                | "hostname"
                | "ipv4"
                | "ipv6"
                | "cidr"
                | "mac"
                | "uuid"
        ),
        _ => false,
    }
}

/// What makes `root` (a CRD's `openAPIV3Schema`) not structural, one line each.
pub fn structural_problems(root: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if root["type"] != "object" {
        problems.push(": the root is not `type: object`".to_string());
    }
    let Some(properties) = root["properties"].as_object() else {
        problems.push(": the root names no properties".to_string());
        return problems;
    };
    for (name, schema) in properties {
        let path = format!(".{name}");
        match name.as_str() {
            "metadata" => {
                if schema.as_object().is_none_or(|m| m.len() != 1) || schema["type"] != "object" {
                    problems.push(format!(
                        "{path}: the API server allows only `type: object` here, got {schema}"
                    ));
                }
            }
            "apiVersion" | "kind" => structural_node(&path, schema, false, &mut problems),
            "spec" | "status" => structural_node(&path, schema, true, &mut problems),
            _ => problems.push(format!("{path}: not a top-level field of an object")),
        }
    }
    problems
}

/// `described`: this node is a field, whose description `kubectl explain` shows.
fn structural_node(path: &str, schema: &Value, described: bool, problems: &mut Vec<String>) {
    let Some(node) = schema.as_object() else {
        problems.push(format!("{path}: a schema must be an object, got {schema}"));
        return;
    };
    for keyword in REFUSED {
        if node.contains_key(*keyword) {
            problems.push(format!("{path}: {keyword}"));
        }
    }
    if node.get("uniqueItems") == Some(&Value::Bool(true)) {
        problems.push(format!("{path}: uniqueItems"));
    }
    if described
        && node
            .get("description")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        problems.push(format!("{path}: no description"));
    }
    let flag = |key: &str| node.get(key) == Some(&Value::Bool(true));
    let int_or_string = flag("x-kubernetes-int-or-string");
    let preserve_unknown = flag("x-kubernetes-preserve-unknown-fields");
    let type_ = match node.get("type") {
        None if int_or_string || preserve_unknown => None,
        None => {
            problems.push(format!("{path}: no type"));
            None
        }
        Some(Value::String(t)) if int_or_string => {
            problems.push(format!("{path}: type {t} with x-kubernetes-int-or-string"));
            None
        }
        Some(Value::String(t)) if TYPES.contains(&t.as_str()) => Some(t.as_str()),
        Some(other) => {
            problems.push(format!("{path}: type is not one type: {other}"));
            None
        }
    };
    if let Some(format) = node.get("format") {
        let fits = format.as_str().is_some_and(|f| format_fits(type_, f));
        if !fits {
            let shown = format
                .as_str()
                .map_or_else(|| format.to_string(), str::to_string);
            problems.push(format!(
                "{path}: format {shown} is not one the API server knows for {type_:?}"
            ));
        }
    }
    if let Some(nullable) = node.get("nullable") {
        if !nullable.is_boolean() {
            problems.push(format!("{path}: nullable is not a boolean"));
        }
    }

    let properties = node.get("properties").and_then(Value::as_object);
    let additional = node.get("additionalProperties");
    match type_ {
        Some("object") => {
            if properties.is_some() && additional.is_some() {
                problems.push(format!("{path}: properties and additionalProperties"));
            }
            if properties.is_none() && additional.is_none() && !preserve_unknown {
                problems.push(format!(
                    "{path}: an object that names no fields, so the API server drops them all"
                ));
            }
            if let Some(additional) = additional {
                structural_node(&format!("{path}.*"), additional, false, problems);
            }
        }
        Some("array") => match node.get("items") {
            Some(items) => structural_node(&format!("{path}[]"), items, false, problems),
            None => problems.push(format!("{path}: an array without items")),
        },
        _ => {
            for keyword in ["properties", "additionalProperties", "items"] {
                if node.contains_key(keyword) {
                    problems.push(format!("{path}: {keyword} on a {type_:?}"));
                }
            }
        }
    }
    if let Some(properties) = properties {
        for (name, child) in properties {
            structural_node(&format!("{path}.{name}"), child, true, problems);
        }
        for required in node
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match required.as_str() {
                Some(name) if properties.contains_key(name) => {}
                Some(name) => {
                    problems.push(format!("{path}: requires {name}, which it does not name"))
                }
                None => problems.push(format!("{path}: requires {required}, not a name")),
            }
        }
    } else if let Some(required) = node.get("required") {
        problems.push(format!(
            "{path}: requires {required}, which it does not name"
        ));
    }
}

/// Why `value` is not what `schema` accepts, or would lose fields in the API server. Sorted.
pub fn value_problems(schema: &Value, value: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    check("", schema, value, &mut problems);
    problems.sort();
    problems
}

fn check(path: &str, schema: &Value, value: &Value, problems: &mut Vec<String>) {
    // The API server drops a null where the schema does not allow one, and serde reads both as
    // absent, so a null is never a problem (a required field's absence is, below).
    if value.is_null() {
        return;
    }
    if schema["x-kubernetes-int-or-string"] == true {
        if !(value.is_i64() || value.is_u64() || value.is_string()) {
            problems.push(format!("{path}: want an integer or a string, got {value}"));
        }
        return;
    }
    let type_ = schema["type"].as_str().unwrap_or_default();
    let fits = match type_ {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => false,
    };
    if !fits {
        problems.push(format!("{path}: want {type_}, got {value}"));
        return;
    }
    match value {
        Value::Object(fields) => check_object(path, schema, fields, problems),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check(&format!("{path}[{i}]"), &schema["items"], item, problems);
            }
        }
        Value::Number(n)
            if schema["format"] == "int32"
                && n.as_i64().and_then(|n| i32::try_from(n).ok()).is_none() =>
        {
            problems.push(format!("{path}: {n} is out of int32 range"));
        }
        _ => {}
    }
}

fn check_object(
    path: &str,
    schema: &Value,
    fields: &Map<String, Value>,
    problems: &mut Vec<String>,
) {
    if let Some(properties) = schema["properties"].as_object() {
        for (name, value) in fields {
            let at = format!("{path}.{name}");
            match properties.get(name) {
                Some(field) => check(&at, field, value, problems),
                None if schema["x-kubernetes-preserve-unknown-fields"] == true => {}
                None => problems.push(format!(
                    "{at}: not in the schema, so the API server would drop it"
                )),
            }
        }
        for required in schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().unwrap_or_default();
            if fields.get(name).is_none_or(Value::is_null) {
                problems.push(format!("{path}.{name}: required"));
            }
        }
    } else if schema.get("additionalProperties").is_some() {
        for (name, value) in fields {
            check(
                &format!("{path}.{name}"),
                &schema["additionalProperties"],
                value,
                problems,
            );
        }
    }
    // Neither: `metadata`, whose schema the API server owns.
}
