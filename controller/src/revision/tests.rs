use super::*;
use crate::manifest::parse_file;
use crate::object::{Kind, Object, ObjectKey};
use crate::translate::test_support::{addrs, revision_output};
use crate::translate::Translator;
use crate::TranslateConfig;
use sluice_xds::{Backend, Endpoints, Protocol, Target};

fn revision(extra_meta: &str, spec: &str) -> Revision {
    let yaml = format!("metadata: {{name: r, namespace: ns{extra_meta}}}\nspec: {spec}\n");
    serde_yaml::from_str(&yaml).expect("test revision decodes")
}

fn spec_error(spec: &str) -> String {
    match validate(&revision("", spec), &AutoscalerConfig::default()) {
        Ok(valid) => panic!("{spec}: unexpectedly valid: {valid:?}"),
        Err(e) => {
            assert_eq!(e.reason(), REASON_INVALID_REVISION, "{spec}");
            e.to_string()
        }
    }
}

fn store_of(yaml: &str) -> Store {
    let file = parse_file("test.yaml".to_string(), yaml);
    assert!(file.problems.is_empty(), "test yaml: {:?}", file.problems);
    let mut store = Store::new();
    for object in file.objects {
        store.upsert(object);
    }
    store
}

fn revision_doc(name: &str, annotations: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: sluice.dev/v1alpha1\nkind: Revision\nmetadata: {{name: {name}, namespace: ns, annotations: {{{annotations}}}}}\nspec: {spec}\n"
    )
}

fn labelled_slice(name: &str, label: &str, value: &str, ports: &str, endpoints: &str) -> String {
    format!(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}, namespace: ns, labels: {{{label}: {value}}}}}\naddressType: IPv4\nports: {ports}\nendpoints: {endpoints}\n"
    )
}

fn translator(store: &Store, system_namespace: &str) -> Translator {
    let mut translator = Translator::new(TranslateConfig {
        system_namespace: system_namespace.to_string(),
        ..TranslateConfig::default()
    });
    translator.update(store, &store.all_as_changes());
    translator
}

/// A Revision's backend and endpoints as translation resolves them (whether or not a Route
/// uses it), or its error message. Its policy is the validated one.
fn backend_of(store: &Store, name: &str) -> Result<(Backend, Option<Endpoints>), String> {
    let translator = translator(store, "knative-serving");
    revision_output(&translator, "ns", name).map(|(backend, endpoints, policy)| {
        let key = ObjectKey::new(Kind::Revision, "ns", name);
        let Some(Object::Revision(stored)) = store.get(&key).map(|e| &*e.object) else {
            panic!("no revision {name}");
        };
        let (valid, _) = validate(stored, &AutoscalerConfig::default()).expect("valid revision");
        assert_eq!(policy, valid.policy, "{name}: the validated policy");
        (backend, endpoints)
    })
}

fn scaling_targets(store: &Store, system_namespace: &str) -> Vec<ScalingTarget> {
    translator(store, system_namespace)
        .scaling_targets()
        .cloned()
        .collect()
}

#[test]
fn defaults_fill_the_policy() {
    let (valid, scaling) = validate(
        &revision("", "{responder: {}}"),
        &AutoscalerConfig::default(),
    )
    .expect("valid");
    assert_eq!(
        valid.policy,
        RevisionPolicy {
            container_concurrency: 0,
            max_buffered: 10_000,
            timeout_seconds: 300,
            response_start_timeout_seconds: None,
            idle_timeout_seconds: None,
        }
    );
    assert_eq!(
        valid.backend,
        RevisionBackend::Responder(ResponderSpec {
            status: 200,
            body_bytes: 0,
            latency_ms: 0,
            message: String::new(),
        })
    );
    assert_eq!(scaling.container_concurrency, 0);
}

#[test]
fn spec_fields_reach_the_policy() {
    let (valid, _) = validate(
        &revision(
            ", annotations: {sluice.dev/max-buffered-requests: '7'}",
            "{containerConcurrency: 2, timeoutSeconds: 60, responseStartTimeoutSeconds: 10, \
             idleTimeoutSeconds: 0, process: {command: [srv, --flag], env: {A: b}}}",
        ),
        &AutoscalerConfig::default(),
    )
    .expect("valid");
    assert_eq!(
        valid.policy,
        RevisionPolicy {
            container_concurrency: 2,
            max_buffered: 7,
            timeout_seconds: 60,
            response_start_timeout_seconds: Some(10),
            idle_timeout_seconds: None,
        },
        "an idle timeout of 0 means none, as in Knative"
    );
    assert_eq!(
        valid.backend,
        RevisionBackend::Process {
            command: vec!["srv".to_string(), "--flag".to_string()],
            env: BTreeMap::from([("A".to_string(), "b".to_string())]),
        }
    );
}

#[test]
fn spec_validation_messages_name_the_revision_and_every_problem() {
    let cases = [
        (
            "{}",
            "revision ns/r: no backend: set exactly one of spec.service, spec.process, spec.responder",
        ),
        (
            "{responder: {}, process: {command: [x]}}",
            "revision ns/r: spec.process, spec.responder are all set, want exactly one backend",
        ),
        (
            "{timeoutSeconds: 0, responder: {}}",
            "revision ns/r: spec.timeoutSeconds is 0, want 1..=3600",
        ),
        (
            "{timeoutSeconds: 3601, responder: {}}",
            "revision ns/r: spec.timeoutSeconds is 3601, want 1..=3600",
        ),
        (
            "{timeoutSeconds: 30, idleTimeoutSeconds: 31, responseStartTimeoutSeconds: -1, responder: {}}",
            "revision ns/r: spec.responseStartTimeoutSeconds is -1, want 0..=30 (at most timeoutSeconds); \
             spec.idleTimeoutSeconds is 31, want 0..=30 (at most timeoutSeconds)",
        ),
        (
            "{containerConcurrency: -1, responder: {}}",
            "revision ns/r: spec.containerConcurrency is -1, want 0 (unlimited) or more",
        ),
        (
            "{service: {}}",
            "revision ns/r: spec.service.name is missing; spec.service.port is missing",
        ),
        (
            "{service: {name: s, port: 70000}}",
            "revision ns/r: spec.service.port is 70000, want 1..=65535 or a port name",
        ),
        (
            "{scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: d}, responder: {}}",
            "revision ns/r: spec.scaleTargetRef is set without spec.service",
        ),
        (
            "{process: {command: []}}",
            "revision ns/r: spec.process.command is empty, want a program to run",
        ),
        (
            "{responder: {status: 42, bodyBytes: -1, latencyMs: -5}}",
            "revision ns/r: spec.responder.status is 42, want 100..=599; \
             spec.responder.bodyBytes is -1, want 0..=4294967295; \
             spec.responder.latencyMs is -5, want 0 or more",
        ),
    ];
    for (spec, want) in cases {
        assert_eq!(spec_error(spec), want, "{spec}");
    }
}

#[test]
fn annotation_problems_are_invalid_annotation() {
    let cases = [
        (
            ", annotations: {sluice.dev/max-buffered-requests: '0'}",
            "revision ns/r: annotation sluice.dev/max-buffered-requests: \"0\" is not an integer in 1..=4294967295",
        ),
        (
            ", annotations: {sluice.dev/max-buffered-requests: lots}",
            "revision ns/r: annotation sluice.dev/max-buffered-requests: \"lots\" is not an integer in 1..=4294967295",
        ),
    ];
    for (meta, want) in cases {
        let error = validate(
            &revision(meta, "{responder: {}}"),
            &AutoscalerConfig::default(),
        )
        .expect_err("invalid annotation");
        assert_eq!(error.reason(), REASON_INVALID_ANNOTATION, "{meta}");
        assert_eq!(error.to_string(), want, "{meta}");
    }

    let error = validate(
        &revision(
            ", annotations: {autoscaling.knative.dev/min-scale: nope}",
            "{responder: {}}",
        ),
        &AutoscalerConfig::default(),
    )
    .expect_err("invalid autoscaling annotation");
    assert_eq!(error.reason(), REASON_INVALID_ANNOTATION);
    let message = error.to_string();
    assert!(
        message.starts_with("revision ns/r: annotation autoscaling.knative.dev/min-scale"),
        "{message}"
    );
}

#[test]
fn responder_backend_is_served_in_process() {
    let store = store_of(&revision_doc(
        "echo",
        "",
        "{responder: {status: 503, bodyBytes: 1024, latencyMs: 20, message: hi}}",
    ));
    let (backend, endpoints) = backend_of(&store, "echo").expect("resolves");
    assert_eq!(endpoints, None, "a responder has no endpoints");
    assert_eq!(backend.protocol, Protocol::Http1);
    assert_eq!(
        backend.target,
        Target::Responder(ResponderSpec {
            status: 503,
            body_bytes: 1024,
            latency_ms: 20,
            message: "hi".to_string(),
        })
    );
    assert_eq!(backend.revision, Some("ns/echo".to_string()));
}

#[test]
fn process_endpoints_come_from_slices_labelled_with_the_revision() {
    let yaml = [
        revision_doc("p", "", "{process: {command: [srv]}}"),
        // One slice per instance, each on its own port.
        labelled_slice(
            "p-1",
            REVISION_LABEL,
            "p",
            "[{port: 40001}]",
            "[{addresses: [127.0.0.1]}]",
        ),
        labelled_slice(
            "p-2",
            REVISION_LABEL,
            "p",
            "[{port: 40002}]",
            "[{addresses: [127.0.0.1], conditions: {ready: true}}]",
        ),
        // Not ready yet: not routable.
        labelled_slice(
            "p-3",
            REVISION_LABEL,
            "p",
            "[{port: 40003}]",
            "[{addresses: [127.0.0.1], conditions: {ready: false}}]",
        ),
        // No port: skipped.
        labelled_slice(
            "p-4",
            REVISION_LABEL,
            "p",
            "[]",
            "[{addresses: [127.0.0.1]}]",
        ),
        // Another revision's instance, and a Service's slice of the same name.
        labelled_slice(
            "q-1",
            REVISION_LABEL,
            "q",
            "[{port: 40009}]",
            "[{addresses: [127.0.0.1]}]",
        ),
        labelled_slice(
            "svc-1",
            "kubernetes.io/service-name",
            "p",
            "[{port: 8080}]",
            "[{addresses: [10.0.0.1]}]",
        ),
    ]
    .concat();
    let store = store_of(&yaml);
    let (backend, endpoints) = backend_of(&store, "p").expect("resolves");
    assert_eq!(backend.protocol, Protocol::Http1);
    assert_eq!(backend.target, Target::Endpoints);
    assert_eq!(
        endpoints.map(|e| e.addresses),
        Some(addrs(&["127.0.0.1:40001", "127.0.0.1:40002"]))
    );
    // The process endpoints helper agrees.
    assert_eq!(
        process_endpoints(&store, "ns", "p"),
        addrs(&["127.0.0.1:40001", "127.0.0.1:40002"])
    );
}

#[test]
fn process_revision_without_instances_has_no_endpoints() {
    let store = store_of(&revision_doc("p", "", "{process: {command: [srv]}}"));
    let (backend, endpoints) = backend_of(&store, "p").expect("resolves");
    assert_eq!(backend.target, Target::Endpoints);
    assert_eq!(endpoints, Some(Endpoints::default()));
}

#[test]
fn service_backend_resolves_like_a_kingress_split() {
    let yaml = [
        revision_doc("by-name", "", "{service: {name: s, port: h2}}"),
        revision_doc("by-number", "", "{service: {name: s, port: 80}}"),
        revision_doc("no-port", "", "{service: {name: s, port: 81}}"),
        revision_doc("no-service", "", "{service: {name: gone, port: 80}}"),
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: ns}\nspec: {ports: [{name: http, port: 80, targetPort: 8080}, {name: h2, port: 82, targetPort: 9090, appProtocol: kubernetes.io/h2c}]}\n".to_string(),
        labelled_slice(
            "s-1",
            "kubernetes.io/service-name",
            "s",
            "[{name: http, port: 8080}, {name: h2, port: 9090}]",
            "[{addresses: [10.0.0.2]}, {addresses: [10.0.0.1]}, {addresses: [10.0.0.3], conditions: {ready: false}}]",
        ),
    ]
    .concat();
    let store = store_of(&yaml);

    let (by_number, endpoints) = backend_of(&store, "by-number").expect("resolves");
    assert_eq!(by_number.protocol, Protocol::Http1);
    assert_eq!(by_number.target, Target::Endpoints);
    assert_eq!(
        endpoints.map(|e| e.addresses),
        Some(addrs(&["10.0.0.1:8080", "10.0.0.2:8080"]))
    );
    assert_eq!(by_number.revision.as_deref(), Some("ns/by-number"));

    let (by_name, endpoints) = backend_of(&store, "by-name").expect("resolves");
    assert_eq!(by_name.protocol, Protocol::H2c);
    assert_eq!(by_name.target, Target::Endpoints);
    assert_eq!(
        endpoints.map(|e| e.addresses),
        Some(addrs(&["10.0.0.1:9090", "10.0.0.2:9090"]))
    );

    assert_eq!(
        backend_of(&store, "no-port").expect_err("no port 81"),
        "revision ns/no-port: service ns/s has no port 81"
    );
    // The reason shows on the Revision's status.
    let translator = translator(&store, "knative-serving");
    let reason = |name: &str| {
        translator
            .statuses()
            .find(|s| s.kind == "Revision" && s.name == name)
            .and_then(|s| s.status.condition("Ready"))
            .and_then(|c| c.reason.clone())
    };
    assert_eq!(reason("no-service").as_deref(), Some("ServiceNotFound"));
    assert_eq!(reason("no-port").as_deref(), Some("ServicePortNotFound"));
    assert_eq!(
        backend_of(&store, "no-service").expect_err("no service"),
        "revision ns/no-service: service ns/gone not found"
    );
}

#[test]
fn revision_backend_ids_cannot_collide_with_service_backends() {
    assert_eq!(backend_id("ns", "hello"), "ns/hello");
    assert_ne!(
        backend_id("ns", "hello"),
        crate::translate::backend_id("ns", "hello", &IntOrString::Int(80))
    );
}

#[test]
fn autoscaler_config_comes_from_the_system_namespace() {
    let absent = store_of(&revision_doc("r", "", "{responder: {}}"));
    assert_eq!(
        autoscaler_config(&absent, "knative-serving"),
        Ok(AutoscalerConfig::default())
    );

    let yaml = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: config-autoscaler, namespace: knative-serving}\ndata: {stable-window: 90s}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: config-autoscaler, namespace: elsewhere}\ndata: {stable-window: bogus}\n";
    let store = store_of(yaml);
    let config = autoscaler_config(&store, "knative-serving").expect("valid config");
    assert_eq!(config.stable_window, std::time::Duration::from_secs(90));
    let error = autoscaler_config(&store, "elsewhere").expect_err("invalid config");
    assert!(
        error.starts_with("configmap elsewhere/config-autoscaler: stable-window"),
        "{error}"
    );
}

#[test]
fn scaling_targets_cover_valid_revisions_in_order() {
    let yaml = [
        revision_doc("b-process", "", "{containerConcurrency: 1, timeoutSeconds: 30, process: {command: [srv], env: {K: v}}}"),
        revision_doc("a-service", "", "{service: {name: s, port: 80}, scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: d}}"),
        revision_doc("c-responder", "autoscaling.knative.dev/min-scale: '2'", "{responder: {}}"),
        revision_doc("d-bad-annotation", "autoscaling.knative.dev/min-scale: nope", "{responder: {}}"),
        revision_doc("e-bad-spec", "", "{}"),
    ]
    .concat();
    let store = store_of(&yaml);
    let targets = scaling_targets(&store, "knative-serving");
    let ids: Vec<&str> = targets.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "ns/a-service",
            "ns/b-process",
            "ns/c-responder",
            "ns/d-bad-annotation"
        ],
        "an invalid spec has nothing to scale"
    );

    assert_eq!(
        targets[0].backend,
        ScalingBackend::Service {
            name: "s".to_string(),
            scale_target: Some(ObjectRef {
                api_version: "apps/v1".to_string(),
                kind: "Deployment".to_string(),
                name: "d".to_string(),
            }),
        }
    );
    assert_eq!(
        targets[1].backend,
        ScalingBackend::Process {
            command: vec!["srv".to_string()],
            env: BTreeMap::from([("K".to_string(), "v".to_string())]),
        }
    );
    assert_eq!(targets[1].container_concurrency, 1);
    assert_eq!(targets[1].timeout_seconds, 30);
    assert_eq!(
        (targets[1].namespace.as_str(), targets[1].name.as_str()),
        ("ns", "b-process")
    );
    assert_eq!(
        targets[1].scaling.as_ref().map(|s| s.container_concurrency),
        Ok(1)
    );
    assert_eq!(targets[2].backend, ScalingBackend::Responder);
    assert_eq!(targets[2].scaling.as_ref().map(|s| s.min_scale), Ok(2));
    let error = targets[3].scaling.as_ref().expect_err("bad annotation");
    assert!(
        error.starts_with(
            "revision ns/d-bad-annotation: annotation autoscaling.knative.dev/min-scale"
        ),
        "{error}"
    );
}

#[test]
fn invalid_autoscaler_config_fails_every_target() {
    let yaml = [
        revision_doc("a", "", "{responder: {}}"),
        revision_doc("b", "", "{process: {command: [srv]}}"),
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: config-autoscaler, namespace: sys}\ndata: {max-scale-up-rate: '0.5'}\n".to_string(),
    ]
    .concat();
    let store = store_of(&yaml);
    let targets = scaling_targets(&store, "sys");
    assert_eq!(targets.len(), 2);
    for target in &targets {
        let error = target.scaling.as_ref().expect_err("config is invalid");
        assert!(
            error.starts_with("configmap sys/config-autoscaler: max-scale-up-rate"),
            "{}: {error}",
            target.id
        );
    }
    // The same ConfigMap elsewhere does not apply.
    assert!(scaling_targets(&store, "knative-serving")
        .iter()
        .all(|t| t.scaling.is_ok()));
}
