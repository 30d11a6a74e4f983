use super::*;
use crate::manifest;
use crate::object::Kind;
use crate::status::{Condition, Status, TrafficStatus};
use crate::{Controller, TranslateConfig};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Deserialize;
use std::path::{Path, PathBuf};

mod validate;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the controller crate is a directory of the repository")
        .to_path_buf()
}

/// The `openAPIV3Schema` of the CRD of `kind`.
fn schema_of(kind: &str) -> Value {
    let crd = custom_resource_definitions()
        .into_iter()
        .find(|crd| crd["spec"]["names"]["kind"] == kind)
        .expect("a CRD for every sluice kind");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn every_crd_is_a_kubernetes_crd_that_round_trips_unchanged() {
    for crd in custom_resource_definitions() {
        let typed: CustomResourceDefinition =
            serde_json::from_value(crd.clone()).expect("k8s-openapi reads the CRD");
        let name = typed.metadata.name.clone().unwrap_or_default();
        // k8s-openapi skips keys it does not know, so an equal round trip means every key is a
        // real CRD field with the right type.
        let again = serde_json::to_value(&typed).expect("k8s-openapi writes the CRD");
        assert_eq!(
            again, crd,
            "{name} loses or changes something in k8s-openapi"
        );
    }
}

#[test]
fn crds_name_group_version_scope_and_subresources() {
    let crds = custom_resource_definitions();
    let names: Vec<&str> = crds
        .iter()
        .map(|crd| crd["metadata"]["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["routes.sluice.dev", "revisions.sluice.dev"]);
    for crd in &crds {
        let spec = &crd["spec"];
        assert_eq!(spec["group"], GROUP);
        assert_eq!(spec["scope"], "Namespaced");
        assert_eq!(spec["names"]["categories"], json!([CATEGORY]));
        let versions = spec["versions"].as_array().expect("versions is a list");
        assert_eq!(versions.len(), 1);
        let version = &versions[0];
        assert_eq!(
            (&version["name"], &version["served"], &version["storage"]),
            (&json!(VERSION), &json!(true), &json!(true))
        );
        assert_eq!(version["subresources"], json!({"status": {}}), "no scale");
    }
    assert_eq!(crds[0]["spec"]["names"]["shortNames"], json!(["slr"]));
    assert_eq!(crds[1]["spec"]["names"]["shortNames"], json!(["slrev"]));
}

#[test]
fn printer_columns_show_readiness_and_the_kind_s_own_status() {
    let columns = |crd: &Value| -> Vec<(String, String)> {
        crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .expect("columns are a list")
            .iter()
            .map(|c| {
                let field = |k: &str| c[k].as_str().unwrap_or_default().to_string();
                (field("name"), field("jsonPath"))
            })
            .collect()
    };
    let ready = ".status.conditions[?(@.type==\"Ready\")].status";
    let reason = ".status.conditions[?(@.type==\"Ready\")].reason";
    let age = ".metadata.creationTimestamp";
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(n, p)| (n.to_string(), p.to_string()))
            .collect()
    };
    assert_eq!(
        columns(&route_crd()),
        pairs(&[
            ("URL", ".status.url"),
            ("Ready", ready),
            ("Reason", reason),
            ("Age", age)
        ])
    );
    assert_eq!(
        columns(&revision_crd()),
        pairs(&[
            ("Ready", ready),
            ("Reason", reason),
            ("Desired", ".status.desiredScale"),
            ("Actual", ".status.actualScale"),
            ("Age", age),
        ])
    );
}

#[test]
fn schemas_are_structural() {
    for kind in ["Route", "Revision"] {
        let problems = validate::structural_problems(&schema_of(kind));
        assert!(
            problems.is_empty(),
            "{kind} schema:\n{}",
            problems.join("\n")
        );
    }
}

#[test]
fn the_structural_check_refuses_what_kubernetes_refuses() {
    let bad = json!({
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
            "spec": {
                "type": "object",
                "properties": {
                    "untyped": {"description": "no type"},
                    "union": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
                    "nullUnion": {"type": ["string", "null"]},
                    "ref": {"$ref": "#/$defs/Other"},
                    "both": {
                        "type": "object",
                        "properties": {"a": {"type": "string"}},
                        "additionalProperties": {"type": "string"},
                    },
                    "format": {"type": "integer", "format": "uint32"},
                    "list": {"type": "array"},
                    "undescribed": {"type": "string"},
                },
                "required": ["missing"],
            },
        },
    });
    let problems = validate::structural_problems(&bad);
    for expected in [
        ".metadata: the API server allows only `type: object`",
        ".spec.untyped: no type",
        ".spec.union: anyOf",
        ".spec.nullUnion: type is not one type",
        ".spec.ref: $ref",
        ".spec.both: properties and additionalProperties",
        ".spec.format: format uint32",
        ".spec.list: an array without items",
        ".spec.undescribed: no description",
        ".spec: requires missing, which it does not name",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{expected:?} not among {problems:#?}"
        );
    }
}

/// Every `sluice.dev/v1alpha1` Route and Revision in the repository's example manifests: the
/// demo, the golden inputs and the README, as `(where, document)`.
fn sample_documents() -> Vec<(String, Value)> {
    let root = repo_root();
    let read = |path: PathBuf| {
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let name = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .display()
            .to_string();
        (name, text)
    };
    let (demo_name, demo) = read(root.join("sluice/src/demo/manifests.yaml"));
    // What `sluice demo` substitutes before use.
    let demo = demo
        .replace("${BLUE_PORT}", "40001")
        .replace("${GREEN_PORT}", "40002")
        .replace("${SLUICE}", "/usr/bin/sluice");
    let mut texts = vec![(demo_name, demo)];
    let mut cases: Vec<PathBuf> = std::fs::read_dir(root.join("controller/tests/golden"))
        .expect("the golden cases are readable")
        .map(|entry| entry.expect("a directory entry").path().join("input.yaml"))
        .filter(|path| path.exists())
        .collect();
    cases.sort();
    texts.extend(cases.into_iter().map(read));
    let (_, readme) = read(root.join("README.md"));
    for (i, block) in readme.split("```yaml\n").skip(1).enumerate() {
        let block = block.split("```").next().unwrap_or_default();
        texts.push((format!("README.md yaml block {}", i + 1), block.to_string()));
    }

    let mut documents = Vec::new();
    for (name, text) in texts {
        // The iterator keeps yielding the same error after a broken document, so stop there.
        let parsed: Result<Vec<Value>, _> = serde_yaml::Deserializer::from_str(&text)
            .map(Value::deserialize)
            .collect();
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(_) if !text.contains("sluice.dev/v1alpha1") => continue,
            Err(e) => panic!("{name}: {e}"),
        };
        for (i, value) in parsed.into_iter().enumerate() {
            let is_ours = value["apiVersion"] == format!("{GROUP}/{VERSION}")
                && matches!(value["kind"].as_str(), Some("Route" | "Revision"));
            if is_ours {
                documents.push((format!("{name} document {}", i + 1), value));
            }
        }
    }
    documents
}

#[test]
fn sample_manifests_validate_and_lose_no_field() {
    let documents = sample_documents();
    let count = |kind: &str| documents.iter().filter(|(_, d)| d["kind"] == kind).count();
    assert!(
        count("Route") >= 5 && count("Revision") >= 5,
        "found {} Routes and {} Revisions",
        count("Route"),
        count("Revision")
    );
    for (at, document) in &documents {
        let kind = document["kind"].as_str().unwrap_or_default();
        let problems = validate::value_problems(&schema_of(kind), document);
        assert!(problems.is_empty(), "{at}:\n{}", problems.join("\n"));
    }
}

#[test]
fn the_validator_catches_wrong_types_and_fields_the_server_would_drop() {
    let document = json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Revision",
        "metadata": {"name": "r"},
        "spec": {
            "timeoutSeconds": "300",
            "service": {"name": "s", "port": true},
            "proces": {"command": ["x"]},
        },
    });
    let problems = validate::value_problems(&schema_of("Revision"), &document);
    assert_eq!(
        problems,
        [
            ".spec.proces: not in the schema, so the API server would drop it",
            ".spec.service.port: want an integer or a string, got true",
            ".spec.timeoutSeconds: want integer, got \"300\"",
        ]
    );
}

#[test]
fn the_validator_catches_an_int32_out_of_range() {
    let status = json!({"desiredScale": 3_000_000_000_i64});
    assert_eq!(
        validate::value_problems(&schema_of("Revision")["properties"]["status"], &status),
        [".desiredScale: 3000000000 is out of int32 range"]
    );
}

#[test]
fn knative_revision_name_alias_is_kept_by_the_schema() {
    let route = json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Route",
        "metadata": {"name": "r"},
        "spec": {"hosts": ["a.example.com"], "traffic": [{"revisionName": "v1", "percent": 100}]},
    });
    assert_eq!(
        validate::value_problems(&schema_of("Route"), &route),
        Vec::<String>::new()
    );
}

/// Statuses as the controller computes them for the samples, plus one of each kind with every
/// field it can carry set.
fn sample_statuses() -> Vec<(String, String, Status)> {
    let mut statuses = Vec::new();
    let root = repo_root();
    for case in [
        "revision-kinds",
        "route-split-and-tags",
        "route-missing-revision",
    ] {
        let dir = root.join("controller/tests/golden").join(case);
        let set = manifest::load_dir(&dir).expect("the golden case is readable");
        let mut controller = Controller::new(TranslateConfig::default());
        controller.apply_manifests(set);
        controller.translate();
        for status in controller.statuses() {
            statuses.push((
                status.kind.clone(),
                format!("{case}: {} {}", status.kind, status.name),
                status.status,
            ));
        }
    }
    let condition = |type_: &str, status: &str| Condition {
        last_transition_time: Some("2026-01-02T03:04:05Z".to_string()),
        ..Condition::new(type_, status).with_reason("Because", "a message")
    };
    statuses.push((
        "Route".to_string(),
        "a full Route status".to_string(),
        Status {
            observed_generation: 3,
            conditions: vec![condition("Ready", "True")],
            url: Some("http://a.example.com".to_string()),
            traffic: vec![TrafficStatus {
                revision_name: "v1".to_string(),
                percent: 100,
                tag: Some("canary".to_string()),
                url: Some("http://canary-a.example.com".to_string()),
            }],
            ..Status::default()
        },
    ));
    statuses.push((
        "Revision".to_string(),
        "a full Revision status".to_string(),
        Status {
            observed_generation: 3,
            conditions: vec![
                condition("Ready", "False"),
                condition("ResourcesAvailable", "False"),
            ],
            desired_scale: Some(2),
            actual_scale: Some(1),
            ..Status::default()
        },
    ));
    statuses
}

#[test]
fn statuses_sluice_writes_validate_and_lose_no_field() {
    let statuses = sample_statuses();
    for kind in [Kind::Route, Kind::Revision] {
        assert!(
            statuses.iter().any(|(k, _, _)| k == kind.as_str()),
            "no {kind} status among the samples"
        );
    }
    for (kind, at, status) in statuses {
        let written = serde_json::to_value(&status).expect("a status serialises");
        let projected = match kind.as_str() {
            "Route" => serde_json::to_value(RouteStatus::from(&status)),
            "Revision" => serde_json::to_value(RevisionStatus::from(&status)),
            _ => continue,
        }
        .expect("a status serialises");
        assert_eq!(
            projected, written,
            "{at}: the per-kind status drops a field"
        );
        let problems =
            validate::value_problems(&schema_of(&kind)["properties"]["status"], &written);
        assert!(problems.is_empty(), "{at}:\n{}", problems.join("\n"));
    }
}

#[test]
fn a_status_field_of_the_other_kind_is_not_in_the_schema() {
    let route_status = json!({"observedGeneration": 1, "desiredScale": 2});
    assert_eq!(
        validate::value_problems(&schema_of("Route")["properties"]["status"], &route_status),
        [".desiredScale: not in the schema, so the API server would drop it"]
    );
    let revision_status = json!({"url": "http://a"});
    assert_eq!(
        validate::value_problems(
            &schema_of("Revision")["properties"]["status"],
            &revision_status
        ),
        [".url: not in the schema, so the API server would drop it"]
    );
}

#[test]
fn yaml_output_reads_back_as_the_same_definitions() {
    let stream = yaml();
    assert!(stream.starts_with(HEADER));
    let read: Vec<Value> = serde_yaml::Deserializer::from_str(&stream)
        .map(|document| Value::deserialize(document).expect("each document is YAML"))
        .collect();
    assert_eq!(read, custom_resource_definitions());
    for file in files() {
        let value: Value = serde_yaml::from_str(&file.contents).expect("each file is YAML");
        assert!(file.contents.starts_with(HEADER), "{}", file.name);
        assert_eq!(
            file.name,
            format!(
                "{}.yaml",
                value["metadata"]["name"].as_str().unwrap_or_default()
            )
        );
    }
}

#[test]
fn committed_crds_match_the_types() {
    let dir = repo_root().join(COMMITTED_DIR);
    for file in files() {
        let path = dir.join(&file.name);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == file.contents,
            "{COMMITTED_DIR}/{} is missing or out of date with the Rust types: run `{WRITE_COMMAND}` \
             and commit the result",
            file.name
        );
    }
}
