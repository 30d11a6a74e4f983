use super::*;

fn object(yaml: &str) -> Object {
    let value: serde_json::Value = serde_yaml::from_str(yaml).expect("test object parses");
    let kind = Kind::from_type(
        value["apiVersion"].as_str().expect("apiVersion"),
        value["kind"].as_str().expect("kind"),
    )
    .expect("supported kind");
    Object::decode(kind, value).expect("decodes")
}

fn ingress(spec_host: &str, extra_meta: &str) -> Object {
    object(&format!(
        "{{apiVersion: networking.internal.knative.dev/v1alpha1, kind: Ingress, metadata: {{name: i{extra_meta}}}, spec: {{rules: [{{hosts: [{spec_host}]}}]}}}}"
    ))
}

/// (description, objects upserted in order, generation after each, changed after each)
type GenerationCase = (&'static str, Vec<Object>, Vec<i64>, Vec<bool>);

#[test]
fn generation_bumping() {
    let cases: Vec<GenerationCase> = vec![
        (
            "first sight is generation 1",
            vec![ingress("a", "")],
            vec![1],
            vec![true],
        ),
        (
            "an identical object changes nothing",
            vec![ingress("a", ""), ingress("a", "")],
            vec![1, 1],
            vec![true, false],
        ),
        (
            "a spec change bumps",
            vec![ingress("a", ""), ingress("b", ""), ingress("c", "")],
            vec![1, 2, 3],
            vec![true, true, true],
        ),
        (
            "a metadata-only change does not bump",
            vec![ingress("a", ""), ingress("a", ", labels: {x: y}")],
            vec![1, 1],
            vec![true, true],
        ),
        (
            "metadata.generation wins when present",
            vec![
                ingress("a", ", generation: 7"),
                ingress("b", ", generation: 9"),
                ingress("c", ""),
            ],
            vec![7, 9, 10],
            vec![true, true, true],
        ),
    ];
    for (name, objects, generations, changed) in cases {
        let mut store = Store::new();
        for (i, obj) in objects.into_iter().enumerate() {
            let key = obj.key();
            assert_eq!(store.upsert(obj), changed[i], "{name}: changed #{i}");
            let entry = store.get(&key).expect("stored");
            assert_eq!(entry.generation, generations[i], "{name}: generation #{i}");
        }
    }
}

#[test]
fn sequence_is_first_seen_order_and_survives_updates() {
    let mut store = Store::new();
    let a = ingress("a", "");
    let b = object("{apiVersion: v1, kind: Service, metadata: {name: s, namespace: ns}}");
    store.upsert(a.clone());
    store.upsert(b.clone());
    store.upsert(ingress("changed", ""));
    assert_eq!(store.get(&a.key()).map(|e| e.sequence), Some(1));
    assert_eq!(store.get(&b.key()).map(|e| e.sequence), Some(2));
    assert!(store.delete(&a.key()));
    assert!(!store.delete(&a.key()));
    store.upsert(a.clone());
    assert_eq!(store.get(&a.key()).map(|e| e.sequence), Some(3));
}

#[test]
fn endpoint_slices_are_found_by_service_label_within_the_namespace() {
    let mut store = Store::new();
    for yaml in [
        "{apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {name: s-1, namespace: ns, labels: {kubernetes.io/service-name: s}}}",
        "{apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {name: s-2, namespace: ns, labels: {kubernetes.io/service-name: s}}}",
        "{apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {name: t-1, namespace: ns, labels: {kubernetes.io/service-name: t}}}",
        "{apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {name: s-1, namespace: other, labels: {kubernetes.io/service-name: s}}}",
        "{apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {name: unlabelled, namespace: ns}}",
    ] {
        store.upsert(object(yaml));
    }
    let names: Vec<_> = store
        .endpoint_slices("ns", "s")
        .map(|s| s.metadata.name.as_str())
        .collect();
    assert_eq!(names, ["s-1", "s-2"]);
    assert_eq!(store.endpoint_slices("nope", "s").count(), 0);

    // A slice relabelled to another Service moves with its label; a deleted one is gone.
    store.upsert(object(
        "{apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {name: s-2, namespace: ns, labels: {kubernetes.io/service-name: t}}}",
    ));
    let names = |store: &Store, service| -> Vec<String> {
        store
            .endpoint_slices("ns", service)
            .map(|s| s.metadata.name.clone())
            .collect()
    };
    assert_eq!(names(&store, "s"), ["s-1"]);
    assert_eq!(names(&store, "t"), ["s-2", "t-1"]);
    store.delete(&ObjectKey::new(Kind::EndpointSlice, "ns", "t-1"));
    assert_eq!(names(&store, "t"), ["s-2"]);
}

#[test]
fn missing_namespace_defaults_to_default() {
    let obj = object("{apiVersion: v1, kind: ConfigMap, metadata: {name: c}}");
    assert_eq!(obj.key(), ObjectKey::new(Kind::ConfigMap, "default", "c"));
}

#[test]
fn changes_are_recorded_per_real_change_with_the_labels_before() {
    let slice = |service: &str| {
        object(&format!(
            "{{apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {{name: e, namespace: ns, labels: {{kubernetes.io/service-name: {service}}}}}}}"
        ))
    };
    let labels =
        |service: &str| BTreeMap::from([(SERVICE_NAME_LABEL.to_string(), service.to_string())]);
    let mut store = Store::new();
    let key = slice("a").key();
    assert!(store.upsert(slice("a")));
    assert!(!store.upsert(slice("a")), "identical: no change");
    assert!(store.upsert(slice("b")), "moved to another Service");
    let service = object("{apiVersion: v1, kind: Service, metadata: {name: s, namespace: ns}}");
    store.upsert(service.clone());
    assert_eq!(
        store.all_as_changes(),
        [
            StoreChange {
                key: service.key(),
                old_labels: BTreeMap::new(),
            },
            StoreChange {
                key: key.clone(),
                old_labels: labels("b"),
            },
        ],
        "every key with its labels now, sorted by key"
    );
    assert!(store.delete(&key));
    assert!(!store.delete(&key), "absent: no change");
    assert_eq!(
        store.take_changes(),
        [
            StoreChange {
                key: key.clone(),
                old_labels: BTreeMap::new(),
            },
            StoreChange {
                key: key.clone(),
                old_labels: labels("a"),
            },
            StoreChange {
                key: service.key(),
                old_labels: BTreeMap::new(),
            },
            StoreChange {
                key: key.clone(),
                old_labels: labels("b"),
            },
        ],
        "in order, each with the labels it had before"
    );
    assert!(store.take_changes().is_empty(), "taken");
    assert_eq!(
        store.all_as_changes().len(),
        1,
        "not consumed, deleted keys excluded"
    );
}
