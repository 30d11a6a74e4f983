use super::*;
use crate::manifest::parse_file;
use crate::object::Kind;
use crate::status::CONDITION_READY;
use std::net::SocketAddr;

const CLASS: &str = "sluice.ingress.networking.knative.dev";

fn objects(yaml: &str) -> Vec<crate::object::Object> {
    let file = parse_file("test.yaml".to_string(), yaml);
    assert!(file.problems.is_empty(), "test yaml: {:?}", file.problems);
    file.objects
}

fn store_of(yaml: &str) -> Store {
    let mut store = Store::new();
    for object in objects(yaml) {
        store.upsert(object);
    }
    store
}

fn run(store: &Store, last_good: &mut LastGood) -> Translation {
    translate(store, &TranslateConfig::default(), last_good)
}

fn ingress(name: &str, extra_meta: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: networking.internal.knative.dev/v1alpha1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: ns\n  annotations: {{networking.knative.dev/ingress.class: {CLASS}}}\n{extra_meta}spec: {spec}\n"
    )
}

fn simple_ingress(name: &str, host: &str, service: &str) -> String {
    ingress(
        name,
        "",
        &format!("{{rules: [{{hosts: [{host}], http: {{paths: [{{splits: [{{serviceNamespace: ns, serviceName: {service}, servicePort: 80}}]}}]}}}}]}}"),
    )
}

fn service(name: &str, ports: &str) -> String {
    format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: ns}}\nspec: {{ports: {ports}}}\n")
}

fn slice(name: &str, service: &str, ports: &str, endpoints: &str) -> String {
    format!(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}, namespace: ns, labels: {{kubernetes.io/service-name: {service}}}}}\naddressType: IPv4\nports: {ports}\nendpoints: {endpoints}\n"
    )
}

fn condition<'a>(status: &'a ObjectStatus, type_: &str) -> &'a Condition {
    status
        .status
        .condition(type_)
        .unwrap_or_else(|| panic!("{} has no {type_}", status.name))
}

fn status_of<'a>(t: &'a Translation, name: &str) -> &'a ObjectStatus {
    t.statuses
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no status for {name}"))
}

fn domains(table: &RouteTable) -> Vec<Vec<String>> {
    table
        .virtual_hosts
        .iter()
        .map(|v| v.domains.clone())
        .collect()
}

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|a| a.parse().expect("test addr")).collect()
}

#[test]
fn host_normalisation() {
    let cases = [
        ("Hello.Example.COM", "hello.example.com"),
        ("hello.example.com:80", "hello.example.com"),
        ("hello.example.com:8080", "hello.example.com"),
        ("  spaced.example.com ", "spaced.example.com"),
        ("[::1]:80", "[::1]"),
        ("*", "*"),
        ("odd:name", "odd:name"),
    ];
    for (input, want) in cases {
        assert_eq!(normalize_host(input), want, "{input}");
    }
    let list =
        |hosts: &[&str]| normalize_hosts(&hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    assert_eq!(list(&[]), ["*"], "no hosts means any");
    assert_eq!(list(&[""]), ["*"], "only empty names means any");
    assert_eq!(
        list(&["B", "a", "b:80"]),
        ["b", "a"],
        "dedup keeps spec order"
    );
}

#[test]
fn backend_resolution() {
    let base = [
        service("num", "[{name: http, port: 80, targetPort: 8080}]"),
        slice("num-1", "num", "[{name: http, port: 8080}]", "[{addresses: [10.0.0.2, 10.0.0.1]}, {addresses: [10.0.0.3], conditions: {ready: false}}, {addresses: [10.0.0.4], conditions: {ready: true}}]"),
        slice("num-2", "num", "[{name: http, port: 8080}]", "[{addresses: [10.0.0.1, not-an-ip]}]"),
        service("named", "[{name: http, port: 80, targetPort: user-port}, {name: metrics, port: 9090, targetPort: 9091}]"),
        slice("named-1", "named", "[{name: metrics, port: 9091}, {name: http, port: 8012}]", "[{addresses: [10.1.0.1]}]"),
        service("unnamed", "[{port: 80, targetPort: 8080}]"),
        slice("unnamed-1", "unnamed", "[{port: 8123}]", "[{addresses: ['fd00::1']}]"),
        service("target-only", "[{name: http, port: 80, targetPort: 8081}]"),
        slice("target-only-1", "target-only", "[]", "[{addresses: [10.2.0.1]}]"),
        service("no-target", "[{name: http, port: 80}]"),
        slice("no-target-1", "no-target", "[]", "[{addresses: [10.3.0.1]}]"),
        service("h2c-app", "[{name: web, port: 81, appProtocol: kubernetes.io/h2c}]"),
        service("h2c-name", "[{name: http2, port: 81}, {name: h2c, port: 82}, {name: http, port: 80}]"),
        service("empty", "[{name: http, port: 80}]"),
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: ext, namespace: ns}\nspec: {type: ExternalName, externalName: gw.example.internal, ports: [{name: http2, port: 80}]}\n".to_string(),
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: ext-bare, namespace: ns}\nspec: {type: ExternalName, externalName: gw.example.internal}\n".to_string(),
    ]
    .concat();
    let store = store_of(&base);
    let int = IntOrString::Int;
    let name = |s: &str| IntOrString::String(s.to_string());
    let endpoints = |p: Protocol, list: &[&str]| {
        Ok(Backend {
            protocol: p,
            revision: None,
            target: Target::Endpoints(addrs(list)),
        })
    };
    let cases: Vec<(&str, &str, IntOrString, Result<Backend, ResolveError>)> = vec![
        (
            "by number; ready and unset-ready endpoints only, sorted and deduplicated",
            "num",
            int(80),
            endpoints(
                Protocol::Http1,
                &["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.4:8080"],
            ),
        ),
        (
            "by name",
            "num",
            name("http"),
            endpoints(
                Protocol::Http1,
                &["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.4:8080"],
            ),
        ),
        (
            "a named targetPort uses the slice port of the same name",
            "named",
            int(80),
            endpoints(Protocol::Http1, &["10.1.0.1:8012"]),
        ),
        (
            "an unnamed port uses the unnamed slice port",
            "unnamed",
            int(80),
            endpoints(Protocol::Http1, &["[fd00::1]:8123"]),
        ),
        (
            "without a slice port, the int targetPort",
            "target-only",
            int(80),
            endpoints(Protocol::Http1, &["10.2.0.1:8081"]),
        ),
        (
            "without either, the service port",
            "no-target",
            int(80),
            endpoints(Protocol::Http1, &["10.3.0.1:80"]),
        ),
        (
            "h2c by appProtocol",
            "h2c-app",
            int(81),
            endpoints(Protocol::H2c, &[]),
        ),
        (
            "h2c by the name http2",
            "h2c-name",
            int(81),
            endpoints(Protocol::H2c, &[]),
        ),
        (
            "h2c by the name h2c",
            "h2c-name",
            name("h2c"),
            endpoints(Protocol::H2c, &[]),
        ),
        (
            "http by the name http",
            "h2c-name",
            int(80),
            endpoints(Protocol::Http1, &[]),
        ),
        (
            "a service without endpoint slices has no endpoints",
            "empty",
            int(80),
            endpoints(Protocol::Http1, &[]),
        ),
        (
            "ExternalName is a DNS target on the service port",
            "ext",
            name("http2"),
            Ok(Backend {
                protocol: Protocol::H2c,
                revision: None,
                target: Target::Dns {
                    host: "gw.example.internal".into(),
                    port: 80,
                },
            }),
        ),
        (
            "ExternalName without ports takes an int servicePort as is",
            "ext-bare",
            int(8080),
            Ok(Backend {
                protocol: Protocol::Http1,
                revision: None,
                target: Target::Dns {
                    host: "gw.example.internal".into(),
                    port: 8080,
                },
            }),
        ),
        (
            "ExternalName without ports cannot resolve a port name",
            "ext-bare",
            name("http"),
            Err(ResolveError::ServicePortNotFound {
                namespace: "ns".into(),
                service: "ext-bare".into(),
                port: name("http"),
            }),
        ),
        (
            "a missing service",
            "nope",
            int(80),
            Err(ResolveError::ServiceNotFound {
                namespace: "ns".into(),
                service: "nope".into(),
            }),
        ),
        (
            "a missing port number",
            "num",
            int(81),
            Err(ResolveError::ServicePortNotFound {
                namespace: "ns".into(),
                service: "num".into(),
                port: int(81),
            }),
        ),
        (
            "a missing port name",
            "num",
            name("grpc"),
            Err(ResolveError::ServicePortNotFound {
                namespace: "ns".into(),
                service: "num".into(),
                port: name("grpc"),
            }),
        ),
    ];
    for (case, svc, port, want) in cases {
        assert_eq!(backend::resolve(&store, "ns", svc, &port), want, "{case}");
    }
}

#[test]
fn class_filtering() {
    let spec = "{rules: [{hosts: [a.example.com], http: {paths: [{splits: [{serviceNamespace: ns, serviceName: s, servicePort: 80}]}]}}]}";
    let with_annotations = |name: &str, annotations: &str| {
        format!(
            "---\napiVersion: networking.internal.knative.dev/v1alpha1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: ns\n{annotations}spec: {spec}\n"
        )
    };
    let yaml = [
        service("s", "[{name: http, port: 80}]"),
        with_annotations("none", ""),
        with_annotations("empty-map", "  annotations: {}\n"),
        with_annotations("other", "  annotations: {networking.knative.dev/ingress.class: istio.ingress.networking.knative.dev}\n"),
        with_annotations("empty-class", "  annotations: {networking.knative.dev/ingress.class: ''}\n"),
        with_annotations("alternative-key", &format!("  annotations: {{networking.knative.dev/ingress-class: {CLASS}}}\n")),
        with_annotations("prefix", &format!("  annotations: {{networking.knative.dev/ingress.class: {CLASS}x}}\n")),
    ]
    .concat();
    let t = run(&store_of(&yaml), &mut LastGood::default());
    assert!(t.statuses.is_empty(), "{:?}", t.statuses);
    assert!(t.snapshot.external.virtual_hosts.is_empty());
    assert!(t.snapshot.internal.virtual_hosts.is_empty());
    assert!(t.snapshot.backends.is_empty());

    let ours = with_annotations(
        "ours",
        &format!("  annotations: {{networking.knative.dev/ingress.class: {CLASS}}}\n"),
    );
    let t = run(
        &store_of(&format!("{yaml}{ours}")),
        &mut LastGood::default(),
    );
    let names: Vec<_> = t.statuses.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["ours"]);
}

#[test]
fn successful_translation_status_waits_for_the_load_balancer() {
    let yaml = [
        service("s", "[{name: http, port: 80}]"),
        simple_ingress("i", "a.example.com", "s"),
    ]
    .concat();
    let t = run(&store_of(&yaml), &mut LastGood::default());
    let status = status_of(&t, "i");
    assert_eq!(status.generation, 1);
    assert_eq!(status.status.observed_generation, 1);
    assert_eq!(
        condition(status, CONDITION_NETWORK_CONFIGURED).status,
        STATUS_TRUE
    );
    let lb = condition(status, CONDITION_LOAD_BALANCER_READY);
    assert_eq!(
        (lb.status.as_str(), lb.reason.as_deref()),
        (STATUS_UNKNOWN, Some(REASON_UNINITIALIZED))
    );
    let ready = condition(status, CONDITION_READY);
    assert_eq!(
        (
            ready.status.as_str(),
            ready.reason.as_deref(),
            ready.message.as_deref()
        ),
        (
            STATUS_UNKNOWN,
            Some(REASON_UNINITIALIZED),
            Some(MESSAGE_UNINITIALIZED)
        )
    );
}

#[test]
fn visibility_selects_tables() {
    let spec = "{rules: [\
        {hosts: [pub.example.com], visibility: ExternalIP, http: {paths: [{splits: [{serviceNamespace: ns, serviceName: s, servicePort: 80}]}]}},\
        {hosts: [priv.ns.svc.cluster.local], visibility: ClusterLocal, http: {paths: [{splits: [{serviceNamespace: ns, serviceName: s, servicePort: 80}]}]}},\
        {hosts: [default.example.com], http: {paths: [{splits: [{serviceNamespace: ns, serviceName: s, servicePort: 80}]}]}}]}";
    let yaml = [
        service("s", "[{name: http, port: 80}]"),
        ingress("i", "", spec),
    ]
    .concat();
    let t = run(&store_of(&yaml), &mut LastGood::default());
    assert_eq!(
        domains(&t.snapshot.external),
        [vec!["default.example.com"], vec!["pub.example.com"]]
    );
    assert_eq!(
        domains(&t.snapshot.internal),
        [
            vec!["default.example.com"],
            vec!["priv.ns.svc.cluster.local"],
            vec!["pub.example.com"]
        ]
    );
}

#[test]
fn probe_copies_and_route_precedence() {
    let spec = "{rules: [\
        {hosts: [a.example.com, B.example.com:80], http: {paths: [\
            {headers: {Knative-Serving-Tag: {exact: v1}}, splits: [{serviceNamespace: ns, serviceName: s, servicePort: 80}]},\
            {appendHeaders: {Knative-Serving-Default-Route: 'true'}, splits: [{serviceNamespace: ns, serviceName: s, servicePort: 80, percent: 100}, {serviceNamespace: ns, serviceName: t, servicePort: http, percent: 0}]},\
            {path: /.well-known/acme-challenge/x, splits: [{serviceNamespace: ns, serviceName: t, servicePort: http}]}]}},\
        {hosts: [a.example.com], http: {paths: [{path: /foo, rewriteHost: other.example.com, splits: [{serviceNamespace: ns, serviceName: s, servicePort: 80, appendHeaders: {Z: '1', A: '2'}}]}]}}]}";
    let yaml = [
        service("s", "[{name: http, port: 80}]"),
        service("t", "[{name: http, port: 80}]"),
        ingress("i", "", spec),
    ]
    .concat();
    let t = run(&store_of(&yaml), &mut LastGood::default());
    let hash = {
        let store = store_of(&yaml);
        let stored = store.ingresses().next().expect("one ingress");
        let mut spec = stored.ingress.spec.clone();
        set_defaults(&mut spec);
        ingress_hash("ns", "i", &spec)
    };
    // a.example.com has rules 0 and 1 merged; b.example.com only rule 0.
    assert_eq!(
        domains(&t.snapshot.external),
        [vec!["a.example.com"], vec!["b.example.com"]]
    );
    let ids = |vh: &VirtualHost| vh.routes.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&t.snapshot.external.virtual_hosts[0]),
        [
            "ns/i#0/2/probe",
            "ns/i#0/2",
            "ns/i#1/0/probe",
            "ns/i#1/0",
            "ns/i#0/0/probe",
            "ns/i#0/1/probe",
            "ns/i#0/0",
            "ns/i#0/1",
        ]
    );
    assert_eq!(
        ids(&t.snapshot.external.virtual_hosts[1]),
        [
            "ns/i#0/2/probe",
            "ns/i#0/2",
            "ns/i#0/0/probe",
            "ns/i#0/1/probe",
            "ns/i#0/0",
            "ns/i#0/1"
        ]
    );
    let routes = &t.snapshot.external.virtual_hosts[0].routes;
    let find = |id: &str| routes.iter().find(|r| r.id == id).expect("route present");
    let RouteAction::Forward(forward) = &find("ns/i#0/0/probe").action;
    assert_eq!(
        find("ns/i#0/0/probe").headers,
        [
            HeaderMatch {
                name: "k-network-hash".into(),
                exact: "override".into()
            },
            HeaderMatch {
                name: "knative-serving-tag".into(),
                exact: "v1".into()
            },
        ]
    );
    assert_eq!(
        forward.set_headers,
        [HeaderValue {
            name: "k-network-hash".into(),
            value: hash.clone()
        }]
    );
    assert_eq!(
        find("ns/i#0/0").headers,
        [HeaderMatch {
            name: "knative-serving-tag".into(),
            exact: "v1".into()
        }]
    );
    assert_eq!(find("ns/i#0/0").path_prefix, "/");

    let RouteAction::Forward(forward) = &find("ns/i#0/1/probe").action;
    assert_eq!(
        forward.set_headers,
        [
            HeaderValue {
                name: "k-network-hash".into(),
                value: hash
            },
            HeaderValue {
                name: "knative-serving-default-route".into(),
                value: "true".into()
            },
        ]
    );
    let RouteAction::Forward(forward) = &find("ns/i#0/1").action;
    let weights: Vec<_> = forward
        .splits
        .iter()
        .map(|s| (s.backend.as_str(), s.weight))
        .collect();
    assert_eq!(
        weights,
        [("ns/s:80", 100), ("ns/t:http", 0)],
        "zero splits are kept with weight 0"
    );

    let RouteAction::Forward(forward) = &find("ns/i#1/0").action;
    assert_eq!(forward.rewrite_host.as_deref(), Some("other.example.com"));
    assert_eq!(
        forward.splits[0].set_headers,
        [
            HeaderValue {
                name: "a".into(),
                value: "2".into()
            },
            HeaderValue {
                name: "z".into(),
                value: "1".into()
            }
        ]
    );
    assert!(routes.iter().all(|r| r.owner == "ns/i"));
    let backends: Vec<_> = t.snapshot.backends.keys().map(String::as_str).collect();
    assert_eq!(backends, ["ns/s:80", "ns/t:http"]);
}

#[test]
fn hosts_with_identical_routes_share_a_virtual_host() {
    let spec = "{rules: [{hosts: [x.ns.svc.cluster.local, x.ns, x.ns.svc], visibility: ClusterLocal, http: {paths: [{splits: [{serviceNamespace: ns, serviceName: s, servicePort: 80}]}]}}]}";
    let yaml = [
        service("s", "[{name: http, port: 80}]"),
        ingress("i", "", spec),
    ]
    .concat();
    let t = run(&store_of(&yaml), &mut LastGood::default());
    assert_eq!(
        domains(&t.snapshot.internal),
        [vec!["x.ns", "x.ns.svc", "x.ns.svc.cluster.local"]]
    );
    assert!(t.snapshot.external.virtual_hosts.is_empty());
}

/// (case, ingresses in insertion order as (name, extra metadata, host), the ingresses served,
/// the rejected one with the host and holder named in its message)
type ConflictCase = (
    &'static str,
    Vec<(&'static str, String, &'static str)>,
    Vec<&'static str>,
    Option<(&'static str, &'static str, &'static str)>,
);

#[test]
fn domain_conflict_older_wins() {
    let ts = |t: &str| format!("  creationTimestamp: '{t}'\n");
    let spec = |host: &str| {
        format!("{{rules: [{{hosts: [{host}], http: {{paths: [{{splits: [{{serviceNamespace: ns, serviceName: s, servicePort: 80}}]}}]}}}}]}}")
    };
    let cases: Vec<ConflictCase> = vec![
        (
            "earlier creationTimestamp wins over insertion order",
            vec![
                ("b-new", ts("2024-02-01T00:00:00Z"), "h.example.com"),
                ("a-old", ts("2024-01-01T00:00:00Z"), "h.example.com"),
            ],
            vec!["a-old"],
            Some(("b-new", "h.example.com", "ns/a-old")),
        ),
        (
            "without timestamps the first seen wins",
            vec![
                ("z-first", String::new(), "h.example.com"),
                ("a-second", String::new(), "h.example.com"),
            ],
            vec!["z-first"],
            Some(("a-second", "h.example.com", "ns/z-first")),
        ),
        (
            "equal timestamps fall back to first seen",
            vec![
                ("z-first", ts("2024-01-01T00:00:00Z"), "h.example.com"),
                ("a-second", ts("2024-01-01T00:00:00Z"), "h.example.com"),
            ],
            vec!["z-first"],
            Some(("a-second", "h.example.com", "ns/z-first")),
        ),
        (
            "hosts compare after normalisation",
            vec![
                ("first", String::new(), "H.example.com"),
                ("second", String::new(), "h.example.com:80"),
            ],
            vec!["first"],
            Some(("second", "h.example.com", "ns/first")),
        ),
        (
            "no hosts means * which also conflicts",
            vec![("first", String::new(), ""), ("second", String::new(), "")],
            vec!["first"],
            Some(("second", "*", "ns/first")),
        ),
        (
            "distinct hosts do not conflict",
            vec![
                ("first", String::new(), "a.example.com"),
                ("second", String::new(), "b.example.com"),
            ],
            vec!["first", "second"],
            None,
        ),
    ];
    for (case, ingresses, winners, loser) in cases {
        let mut store = store_of(&service("s", "[{name: http, port: 80}]"));
        for (name, meta, host) in &ingresses {
            for object in objects(&ingress(name, meta, &spec(host))) {
                store.upsert(object);
            }
        }
        let t = run(&store, &mut LastGood::default());
        let owners: BTreeSet<_> = t
            .snapshot
            .internal
            .virtual_hosts
            .iter()
            .flat_map(|v| v.routes.iter().map(|r| r.owner.clone()))
            .collect();
        let want: BTreeSet<_> = winners.iter().map(|w| format!("ns/{w}")).collect();
        assert_eq!(owners, want, "{case}: served");
        for winner in &winners {
            let lb = condition(status_of(&t, winner), CONDITION_LOAD_BALANCER_READY);
            assert_eq!(lb.status, STATUS_UNKNOWN, "{case}: winner {winner}");
        }
        if let Some((loser, host, holder)) = loser {
            let status = status_of(&t, loser);
            let lb = condition(status, CONDITION_LOAD_BALANCER_READY);
            assert_eq!(
                (lb.status.as_str(), lb.reason.as_deref()),
                (STATUS_FALSE, Some(REASON_DOMAIN_CONFLICT)),
                "{case}"
            );
            assert_eq!(
                lb.message.as_deref(),
                Some(format!("Ingress rejected: ingress has a conflicting domain with another ingress: host \"{host}\" is already served by ingress {holder}").as_str()),
                "{case}"
            );
            assert_eq!(
                condition(status, CONDITION_READY).status,
                STATUS_FALSE,
                "{case}"
            );
        }
    }
}

#[test]
fn invalid_update_keeps_serving_the_last_good_translation() {
    let good = [
        service("s", "[{name: http, port: 80}]"),
        simple_ingress("i", "a.example.com", "s"),
        simple_ingress("other", "o.example.com", "s"),
    ]
    .concat();
    let mut store = store_of(&good);
    let mut last_good = LastGood::default();
    let before = run(&store, &mut last_good);
    assert!(last_good.contains(&ObjectKey::new(Kind::Ingress, "ns", "i")));

    let bad = ingress(
        "i",
        "",
        "{rules: [{hosts: [changed.example.com], http: {paths: [{splits: [{serviceNamespace: ns, serviceName: s, servicePort: 80, percent: 50}, {serviceNamespace: ns, serviceName: s, servicePort: 80, percent: 40}]}]}}]}",
    );
    for object in objects(&bad) {
        store.upsert(object);
    }
    let after = run(&store, &mut last_good);
    assert_eq!(
        after.snapshot, before.snapshot,
        "the old routes keep serving"
    );
    let status = status_of(&after, "i");
    assert_eq!(status.generation, 2);
    let network = condition(status, CONDITION_NETWORK_CONFIGURED);
    assert_eq!(network.status, STATUS_FALSE);
    assert_eq!(network.reason.as_deref(), Some("InvalidIngress"));
    assert_eq!(
        network.message.as_deref(),
        Some("ingress ns/i: traffic split percentage must total to 100, but was 90: spec.rules[0].http.paths[0].splits")
    );
    assert_eq!(condition(status, CONDITION_READY).status, STATUS_FALSE);
    assert_eq!(
        condition(status_of(&after, "other"), CONDITION_NETWORK_CONFIGURED).status,
        STATUS_TRUE
    );

    // Without a last good translation an invalid ingress contributes nothing.
    let t = run(&store, &mut LastGood::default());
    assert_eq!(domains(&t.snapshot.external), [vec!["o.example.com"]]);
    assert_eq!(
        condition(status_of(&t, "i"), CONDITION_NETWORK_CONFIGURED).status,
        STATUS_FALSE
    );
}

#[test]
fn dangling_service_keeps_routes_with_no_endpoints() {
    let yaml = [
        service("s", "[{name: http2, port: 81}]"),
        slice("s-1", "s", "[{name: http2, port: 8013}]", "[{addresses: [10.0.0.1]}]"),
        ingress("i", "", "{rules: [{hosts: [a.example.com], http: {paths: [{splits: [{serviceNamespace: ns, serviceName: s, servicePort: 81}]}]}}]}"),
    ]
    .concat();
    let mut store = store_of(&yaml);
    let mut last_good = LastGood::default();
    let before = run(&store, &mut last_good);
    assert_eq!(
        before.snapshot.backends["ns/s:81"],
        Backend {
            protocol: Protocol::H2c,
            revision: None,
            target: Target::Endpoints(addrs(&["10.0.0.1:8013"]))
        }
    );

    assert!(store.delete(&ObjectKey::new(Kind::Service, "ns", "s")));
    let after = run(&store, &mut last_good);
    assert_eq!(
        after.snapshot.external, before.snapshot.external,
        "routes stay"
    );
    assert_eq!(
        after.snapshot.backends["ns/s:81"],
        Backend {
            protocol: Protocol::H2c,
            revision: None,
            target: Target::Endpoints(vec![])
        },
        "the vanished service serves no endpoints, with its last known protocol"
    );
    let network = condition(status_of(&after, "i"), CONDITION_NETWORK_CONFIGURED);
    assert_eq!(
        (
            network.status.as_str(),
            network.reason.as_deref(),
            network.message.as_deref()
        ),
        (
            STATUS_FALSE,
            Some("ServiceNotFound"),
            Some("ingress ns/i: service ns/s not found")
        )
    );

    // The service comes back with another port: still failing, endpoints still empty.
    for object in objects(&service("s", "[{name: http, port: 80}]")) {
        store.upsert(object);
    }
    let again = run(&store, &mut last_good);
    let network = condition(status_of(&again, "i"), CONDITION_NETWORK_CONFIGURED);
    assert_eq!(network.reason.as_deref(), Some("ServicePortNotFound"));
    assert_eq!(
        network.message.as_deref(),
        Some("ingress ns/i: service ns/s has no port 81")
    );
    assert_eq!(
        again.snapshot.backends["ns/s:81"].target,
        Target::Endpoints(vec![])
    );
}

#[test]
fn deleted_ingresses_disappear_with_their_cache() {
    let yaml = [
        service("s", "[{name: http, port: 80}]"),
        simple_ingress("i", "a.example.com", "s"),
    ]
    .concat();
    let mut store = store_of(&yaml);
    let mut last_good = LastGood::default();
    run(&store, &mut last_good);
    let key = ObjectKey::new(Kind::Ingress, "ns", "i");
    assert!(last_good.contains(&key));
    store.delete(&key);
    let t = run(&store, &mut last_good);
    assert!(t.statuses.is_empty());
    assert!(t.snapshot.external.virtual_hosts.is_empty());
    assert!(t.snapshot.backends.is_empty());
    assert!(last_good.is_empty());
}

#[test]
fn translation_is_deterministic() {
    let yaml = [
        service("s", "[{name: http, port: 80}]"),
        simple_ingress("b", "b.example.com", "s"),
        simple_ingress("a", "a.example.com", "s"),
    ]
    .concat();
    let first = run(&store_of(&yaml), &mut LastGood::default());
    let second = run(&store_of(&yaml), &mut LastGood::default());
    assert_eq!(first, second);
    assert_eq!(first.snapshot.version, first.snapshot.content_hash());
}
