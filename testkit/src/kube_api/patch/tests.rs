use serde_json::json;

use super::*;

#[test]
fn merge_patch_follows_rfc_7386_examples() {
    // The examples of RFC 7386 appendix A: (target, patch, result).
    let cases = [
        (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
        (
            json!({"a": "b"}),
            json!({"b": "c"}),
            json!({"a": "b", "b": "c"}),
        ),
        (json!({"a": "b"}), json!({"a": null}), json!({})),
        (
            json!({"a": "b", "b": "c"}),
            json!({"a": null}),
            json!({"b": "c"}),
        ),
        (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
        (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
        (
            json!({"a": {"b": "c"}}),
            json!({"a": {"b": "d", "c": null}}),
            json!({"a": {"b": "d"}}),
        ),
        (
            json!({"a": [{"b": "c"}]}),
            json!({"a": [1]}),
            json!({"a": [1]}),
        ),
        (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
        (json!({"a": "b"}), json!(["c"]), json!(["c"])),
        (json!({"a": "foo"}), json!(null), json!(null)),
        (json!({"a": "foo"}), json!("bar"), json!("bar")),
        (
            json!({"e": null}),
            json!({"a": 1}),
            json!({"e": null, "a": 1}),
        ),
        (
            json!([1, 2]),
            json!({"a": "b", "c": null}),
            json!({"a": "b"}),
        ),
        (
            json!({}),
            json!({"a": {"bb": {"ccc": null}}}),
            json!({"a": {"bb": {}}}),
        ),
    ];
    for (target, patch, want) in cases {
        let mut doc = target.clone();
        merge_patch(&mut doc, &patch);
        assert_eq!(doc, want, "{target} + {patch}");
    }
}

#[test]
fn json_patch_applies_every_operation() {
    let target =
        json!({"spec": {"replicas": 1, "ports": [80, 443]}, "metadata": {"labels": {"a/b": "x"}}});
    let cases = [
        (
            json!([{"op": "add", "path": "/spec/paused", "value": true}]),
            json!({"spec": {"replicas": 1, "ports": [80, 443], "paused": true}, "metadata": {"labels": {"a/b": "x"}}}),
        ),
        (
            json!([{"op": "add", "path": "/spec/ports/1", "value": 8080}]),
            json!({"spec": {"replicas": 1, "ports": [80, 8080, 443]}, "metadata": {"labels": {"a/b": "x"}}}),
        ),
        (
            json!([{"op": "add", "path": "/spec/ports/-", "value": 9090}]),
            json!({"spec": {"replicas": 1, "ports": [80, 443, 9090]}, "metadata": {"labels": {"a/b": "x"}}}),
        ),
        (
            json!([{"op": "remove", "path": "/metadata/labels/a~1b"}]),
            json!({"spec": {"replicas": 1, "ports": [80, 443]}, "metadata": {"labels": {}}}),
        ),
        (
            json!([{"op": "replace", "path": "/spec/replicas", "value": 3}]),
            json!({"spec": {"replicas": 3, "ports": [80, 443]}, "metadata": {"labels": {"a/b": "x"}}}),
        ),
        (
            json!([{"op": "move", "from": "/spec/replicas", "path": "/spec/count"}]),
            json!({"spec": {"count": 1, "ports": [80, 443]}, "metadata": {"labels": {"a/b": "x"}}}),
        ),
        (
            json!([{"op": "copy", "from": "/spec/ports/0", "path": "/spec/first"}]),
            json!({"spec": {"replicas": 1, "ports": [80, 443], "first": 80}, "metadata": {"labels": {"a/b": "x"}}}),
        ),
        (
            json!([
                {"op": "test", "path": "/spec/replicas", "value": 1},
                {"op": "replace", "path": "/spec/replicas", "value": 2}
            ]),
            json!({"spec": {"replicas": 2, "ports": [80, 443]}, "metadata": {"labels": {"a/b": "x"}}}),
        ),
        (
            json!([{"op": "replace", "path": "", "value": {"x": 1}}]),
            json!({"x": 1}),
        ),
    ];
    for (patch, want) in cases {
        assert_eq!(json_patch(&target, &patch), Ok(want), "{patch}");
    }
}

#[test]
fn json_patch_failures_are_inapplicable_or_malformed() {
    let target = json!({"spec": {"replicas": 1, "ports": [80]}});
    let inapplicable = [
        json!([{"op": "test", "path": "/spec/replicas", "value": 2}]),
        json!([{"op": "replace", "path": "/spec/missing", "value": 2}]),
        json!([{"op": "remove", "path": "/spec/ports/1"}]),
        json!([{"op": "add", "path": "/spec/ports/5", "value": 1}]),
        json!([{"op": "add", "path": "/nope/deeper", "value": 1}]),
        json!([{"op": "move", "from": "/spec", "path": "/spec/inner"}]),
        json!([{"op": "add", "path": "/spec/ports/01", "value": 1}]),
    ];
    for patch in inapplicable {
        assert!(
            matches!(
                json_patch(&target, &patch),
                Err(InvalidPatch::Inapplicable(_))
            ),
            "{patch}"
        );
    }
    let malformed = [
        json!({"op": "add"}),
        json!([{"op": "frobnicate", "path": "/spec"}]),
        json!([{"op": "add", "path": "/spec/x"}]),
        json!([{"op": "add", "path": "spec", "value": 1}]),
    ];
    for patch in malformed {
        assert!(
            matches!(json_patch(&target, &patch), Err(InvalidPatch::Malformed(_))),
            "{patch}"
        );
    }
}

#[test]
fn strategic_merge_merges_known_lists_by_key() {
    let deployment = json!({
        "metadata": {"labels": {"app": "web", "tier": "front"}, "finalizers": ["a"]},
        "spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
             "ports": [{"containerPort": 80, "name": "http"}]},
            {"name": "sidecar", "image": "side:1"}
        ], "tolerations": [{"key": "x"}]}}}
    });
    let cases = [
        (
            "maps merge and null deletes",
            json!({"metadata": {"labels": {"tier": null, "new": "y"}}}),
            json!({"labels": {"app": "web", "new": "y"}, "finalizers": ["a"]}),
            "/metadata",
        ),
        (
            "containers merge by name, env by name",
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "image": "app:2", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}
            ]}}}}),
            json!([
                {"name": "app", "image": "app:2", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
                 "ports": [{"containerPort": 80, "name": "http"}]},
                {"name": "sidecar", "image": "side:1"}
            ]),
            "/spec/template/spec/containers",
        ),
        (
            "$patch delete removes one element",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}}),
            json!([
                {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                 "ports": [{"containerPort": 80, "name": "http"}]}
            ]),
            "/spec/template/spec/containers",
        ),
        (
            "$patch replace in a list replaces it",
            json!({"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "o:1"}]}}}}),
            json!([{"name": "only", "image": "o:1"}]),
            "/spec/template/spec/containers",
        ),
        (
            "container ports merge by containerPort",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "ports": [{"containerPort": 9090}]}]}}}}),
            json!([{"containerPort": 80, "name": "http"}, {"containerPort": 9090}]),
            "/spec/template/spec/containers/0/ports",
        ),
        (
            "lists without a strategy are replaced",
            json!({"spec": {"template": {"spec": {"tolerations": [{"key": "y"}]}}}}),
            json!([{"key": "y"}]),
            "/spec/template/spec/tolerations",
        ),
        (
            "finalizers merge as a set",
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!(["a", "b"]),
            "/metadata/finalizers",
        ),
        (
            "$deleteFromPrimitiveList removes values",
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
            json!([]),
            "/metadata/finalizers",
        ),
        (
            "$patch replace on a map replaces it",
            json!({"metadata": {"labels": {"$patch": "replace", "only": "z"}}}),
            json!({"only": "z"}),
            "/metadata/labels",
        ),
        (
            "$patch delete on a map removes it",
            json!({"metadata": {"labels": {"$patch": "delete"}}}),
            json!(null),
            "/metadata/labels",
        ),
        (
            "$setElementOrder and $retainKeys are ignored",
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
                "$retainKeys": ["containers"],
                "containers": [{"name": "sidecar", "image": "side:2"}]}}}}),
            json!(["app:1", "side:2"]),
            "/spec/template/spec/containers/*/image",
        ),
    ];
    for (what, patch, want, pointer) in cases {
        let merged = strategic_merge(&deployment, &patch).expect(what);
        let got = match pointer.strip_suffix("/*/image") {
            Some(list) => json!(merged
                .pointer(list)
                .and_then(Value::as_array)
                .map(|items| items.iter().map(|c| c["image"].clone()).collect::<Vec<_>>())),
            None => merged.pointer(pointer).cloned().unwrap_or(Value::Null),
        };
        assert_eq!(got, want, "{what}");
    }
}

#[test]
fn strategic_merge_uses_the_merge_key_kubernetes_declares() {
    let cases: &[(&[&str], ListMerge)] = &[
        (
            &["spec", "template", "spec", "containers"],
            ListMerge::Key("name"),
        ),
        (&["spec", "containers", "env"], ListMerge::Key("name")),
        (
            &["spec", "containers", "ports"],
            ListMerge::Key("containerPort"),
        ),
        (&["spec", "ports"], ListMerge::Key("port")),
        (&["ports"], ListMerge::Replace),
        (&["status", "conditions"], ListMerge::Key("type")),
        (&["metadata", "finalizers"], ListMerge::Set),
        (&["spec", "finalizers"], ListMerge::Replace),
        (&["endpoints"], ListMerge::Replace),
        (&["spec", "rules"], ListMerge::Replace),
    ];
    for (path, want) in cases {
        assert_eq!(merge_key(path), *want, "{path:?}");
    }
}

#[test]
fn service_ports_merge_by_port_and_conditions_by_type() {
    let service = json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]},
                         "status": {"conditions": [{"type": "Ready", "status": "False"}]}});
    let patch = json!({"spec": {"ports": [{"port": 443, "targetPort": 8443}]},
                       "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "True"}]}});
    let merged = strategic_merge(&service, &patch).expect("merges");
    assert_eq!(
        merged,
        json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https", "targetPort": 8443}]},
               "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "True"}]}})
    );
}

#[test]
fn strategic_merge_rejects_a_keyed_element_without_its_key() {
    let patch = json!({"spec": {"containers": [{"image": "x"}]}});
    let pod = json!({"spec": {"containers": [{"name": "app"}]}});
    assert!(matches!(
        strategic_merge(&pod, &patch),
        Err(InvalidPatch::Malformed(_))
    ));
    assert!(strategic_merge(&json!({}), &json!([1])).is_err());
}

#[test]
fn patch_kinds_come_from_the_content_type() {
    let cases = [
        ("application/json-patch+json", Some(PatchKind::Json)),
        ("application/merge-patch+json", Some(PatchKind::Merge)),
        (
            "application/merge-patch+json; charset=utf-8",
            Some(PatchKind::Merge),
        ),
        (
            "application/strategic-merge-patch+json",
            Some(PatchKind::Strategic),
        ),
        ("application/apply-patch+yaml", Some(PatchKind::Apply)),
        ("application/json", None),
        ("", None),
    ];
    for (content_type, want) in cases {
        assert_eq!(
            PatchKind::from_content_type(content_type),
            want,
            "{content_type}"
        );
    }
}
