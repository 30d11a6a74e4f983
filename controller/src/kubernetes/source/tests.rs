use super::*;
use serde_json::json;

const CLASS: &str = "sluice.ingress.networking.knative.dev";

fn ingress(class: &str) -> Value {
    json!({
        "apiVersion": "networking.internal.knative.dev/v1alpha1",
        "kind": "Ingress",
        "metadata": {
            "name": "hello", "namespace": "ns", "generation": 3, "resourceVersion": "17",
            "annotations": {
                "networking.knative.dev/ingress.class": class,
                "kubectl.kubernetes.io/last-applied-configuration": "{\"big\": \"copy\"}"
            }
        },
        "spec": {"rules": [{"hosts": ["hello.example.com"]}]},
        "status": {"observedGeneration": 2}
    })
}

#[test]
fn ingresses_of_our_class_are_kept_without_the_applied_copy() {
    let Ok(Decoded::Keep(object)) = decode(Kind::Ingress, ingress(CLASS), CLASS) else {
        panic!("not kept");
    };
    assert_eq!(object.key(), ObjectKey::new(Kind::Ingress, "ns", "hello"));
    assert_eq!(object.metadata().generation, Some(3));
    assert!(!object.metadata().annotations.contains_key(LAST_APPLIED));
    assert_eq!(
        object
            .metadata()
            .annotations
            .get(INGRESS_CLASS_ANNOTATION)
            .map(String::as_str),
        Some(CLASS)
    );
}

#[test]
fn ingresses_of_another_class_are_skipped() {
    for other in ["istio.ingress.networking.knative.dev", ""] {
        let decoded = decode(Kind::Ingress, ingress(other), CLASS).expect("decodes");
        assert!(
            matches!(&decoded, Decoded::Skip(key) if key.id() == "ns/hello"),
            "{other:?}: {decoded:?}"
        );
    }
    let mut unannotated = ingress(CLASS);
    unannotated["metadata"]["annotations"] = json!(null);
    assert!(matches!(
        decode(Kind::Ingress, unannotated, CLASS),
        Ok(Decoded::Skip(_))
    ));
}

#[test]
fn only_the_system_config_maps_sluice_reads_are_kept() {
    let config_map = |name: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": name, "namespace": "knative-serving"},
               "data": {"k": "v"}})
    };
    for name in SYSTEM_CONFIG_MAPS {
        assert!(matches!(
            decode(Kind::ConfigMap, config_map(name), CLASS),
            Ok(Decoded::Keep(_))
        ));
    }
    assert!(matches!(
        decode(Kind::ConfigMap, config_map("kube-root-ca.crt"), CLASS),
        Ok(Decoded::Skip(_))
    ));
}

#[test]
fn secrets_keep_only_the_values_sluice_reads_but_every_key() {
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "tls", "namespace": "ns"},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5", "token": "c2VjcmV0"}});
    let Ok(Decoded::Keep(Object::Secret(secret))) = decode(Kind::Secret, secret, CLASS) else {
        panic!("not kept");
    };
    assert_eq!(
        secret.data.get("tls.crt").map(String::as_str),
        Some("Y2VydA==")
    );
    assert_eq!(secret.data.get("tls.key").map(String::as_str), Some("a2V5"));
    assert_eq!(secret.data.get("token").map(String::as_str), Some(""));
}

#[test]
fn an_object_that_does_not_decode_is_an_error_naming_it() {
    let mut broken = ingress(CLASS);
    broken["spec"]["rules"] = json!("not a list");
    let error = decode(Kind::Ingress, broken, CLASS).expect_err("fails");
    assert!(error.contains("Ingress ns/hello"), "{error}");
}

#[test]
fn every_kind_is_watched_and_config_maps_only_in_the_system_namespace() {
    let kinds = watched_kinds(Some("team"), "knative-serving");
    assert_eq!(kinds.len(), 7);
    for watched in &kinds {
        let expected = if watched.kind == Kind::ConfigMap {
            "knative-serving"
        } else {
            "team"
        };
        assert_eq!(
            watched.namespace.as_deref(),
            Some(expected),
            "{}",
            watched.name()
        );
        assert_eq!(watched.resource.kind, watched.kind.as_str());
        assert_eq!(watched.resource.api_version, watched.kind.api_version());
    }
    let all = watched_kinds(None, "knative-serving");
    assert!(all
        .iter()
        .all(|w| w.namespace.is_none() || w.kind == Kind::ConfigMap));
    assert_eq!(
        all.iter().map(WatchedKind::name).collect::<Vec<_>>(),
        [
            "networking.internal.knative.dev/v1alpha1/ingresses",
            "v1/services",
            "discovery.k8s.io/v1/endpointslices",
            "v1/secrets",
            "v1/configmaps",
            "sluice.dev/v1alpha1/routes",
            "sluice.dev/v1alpha1/revisions",
        ]
    );
}
