use super::test_support::{
    addrs, condition, objects, store_of, translate_store, Harness, Output, CLASS,
};
use super::*;
use crate::status::CONDITION_READY;

mod incremental;

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

fn status_of<'a>(t: &'a Output, name: &str) -> &'a ObjectStatus {
    t.statuses
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no status for {name}"))
}

fn domains(table: &[VirtualHost]) -> Vec<Vec<String>> {
    table.iter().map(|v| v.domains.clone()).collect()
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
        assert_eq!(sluice_xds::host::normalized(input), want, "{input}");
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
        Ok(backend::Resolved {
            backend: Backend {
                protocol: p,
                revision: None,
                target: Target::Endpoints,
            },
            endpoints: Some(Endpoints {
                addresses: addrs(list),
            }),
        })
    };
    let dns = |protocol: Protocol, port: u16| {
        Ok(backend::Resolved {
            backend: Backend {
                protocol,
                revision: None,
                target: Target::Dns {
                    host: "gw.example.internal".into(),
                    port,
                },
            },
            endpoints: None,
        })
    };
    let cases: Vec<(
        &str,
        &str,
        IntOrString,
        Result<backend::Resolved, ResolveError>,
    )> = vec![
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
            dns(Protocol::H2c, 80),
        ),
        (
            "ExternalName without ports takes an int servicePort as is",
            "ext-bare",
            int(8080),
            dns(Protocol::Http1, 8080),
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
    let t = translate_store(&store_of(&yaml));
    assert!(t.statuses.is_empty(), "{:?}", t.statuses);
    assert!(t.external().is_empty());
    assert!(t.internal().is_empty());
    assert!(t.backends().is_empty());

    let ours = with_annotations(
        "ours",
        &format!("  annotations: {{networking.knative.dev/ingress.class: {CLASS}}}\n"),
    );
    let t = translate_store(&store_of(&format!("{yaml}{ours}")));
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
    let t = translate_store(&store_of(&yaml));
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
    let t = translate_store(&store_of(&yaml));
    assert_eq!(
        domains(&t.external()),
        [vec!["default.example.com"], vec!["pub.example.com"]]
    );
    assert_eq!(
        domains(&t.internal()),
        [
            vec!["default.example.com"],
            vec!["priv.ns.svc.cluster.local"],
            vec!["pub.example.com"]
        ]
    );
}

#[test]
fn probe_hashes_and_route_precedence() {
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
    let t = translate_store(&store_of(&yaml));
    let hash = {
        let store = store_of(&yaml);
        let stored = store.ingresses().next().expect("one ingress");
        let mut spec = stored.ingress.spec.clone();
        set_defaults(&mut spec);
        ingress_hash("ns", "i", &spec)
    };
    // a.example.com has rules 0 and 1 merged; b.example.com only rule 0.
    assert_eq!(
        domains(&t.external()),
        [vec!["a.example.com"], vec!["b.example.com"]]
    );
    let ids = |vh: &VirtualHost| vh.routes.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&t.external()[0]),
        ["ns/i#0/2", "ns/i#1/0", "ns/i#0/0", "ns/i#0/1"]
    );
    assert_eq!(ids(&t.external()[1]), ["ns/i#0/2", "ns/i#0/0", "ns/i#0/1"]);
    let external = t.external();
    let routes = &external[0].routes;
    let find = |id: &str| routes.iter().find(|r| r.id == id).expect("route present");
    // Every path answers Knative's probe with the ingress hash, folded into its own route.
    for route in routes.iter() {
        assert_eq!(
            route.probe_hash.as_deref(),
            Some(hash.as_str()),
            "{}",
            route.id
        );
    }
    assert_eq!(
        find("ns/i#0/0").headers,
        [HeaderMatch {
            name: "knative-serving-tag".into(),
            exact: "v1".into()
        }]
    );
    assert_eq!(find("ns/i#0/0").path_prefix, "/");

    let RouteAction::Forward(forward) = &find("ns/i#0/1").action;
    assert_eq!(
        forward.set_headers,
        [HeaderValue {
            name: "knative-serving-default-route".into(),
            value: "true".into()
        }]
    );
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
    // Every route is the ingress's own: its RouteConfig, owned by ns/i, holds the table.
    let config = t.route_config("ingress/ns/i");
    assert_eq!(config.owner, "ns/i");
    assert_eq!(config.external, external);
    let backends: Vec<_> = t.backends().into_keys().collect();
    assert_eq!(backends, ["ns/s:80", "ns/t:http"]);
}

#[test]
fn a_path_matching_the_probe_header_itself_keeps_an_explicit_probe_copy() {
    let spec = "{rules: [{hosts: [a.example.com], http: {paths: [\
        {headers: {K-Network-Hash: {exact: mine}}, splits: [{serviceNamespace: ns, serviceName: s, servicePort: 80}]}]}}]}";
    let yaml = [
        service("s", "[{name: http, port: 80}]"),
        ingress("i", "", spec),
    ]
    .concat();
    let t = translate_store(&store_of(&yaml));
    let external = t.external();
    let routes = &external[0].routes;
    let ids: Vec<&str> = routes.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["ns/i#0/0/probe", "ns/i#0/0"]);
    // The copy's `override` match replaces the path's own; the original keeps `mine`.
    assert_eq!(
        routes[0].headers,
        [HeaderMatch {
            name: "k-network-hash".into(),
            exact: "override".into()
        }]
    );
    let RouteAction::Forward(forward) = &routes[0].action;
    assert_eq!(forward.set_headers[0].name, "k-network-hash");
    assert_eq!(
        routes[1].headers,
        [HeaderMatch {
            name: "k-network-hash".into(),
            exact: "mine".into()
        }]
    );
    assert!(routes.iter().all(|r| r.probe_hash.is_none()));
}

#[test]
fn hosts_with_identical_routes_share_a_virtual_host() {
    let spec = "{rules: [{hosts: [x.ns.svc.cluster.local, x.ns, x.ns.svc], visibility: ClusterLocal, http: {paths: [{splits: [{serviceNamespace: ns, serviceName: s, servicePort: 80}]}]}}]}";
    let yaml = [
        service("s", "[{name: http, port: 80}]"),
        ingress("i", "", spec),
    ]
    .concat();
    let t = translate_store(&store_of(&yaml));
    assert_eq!(
        domains(&t.internal()),
        [vec!["x.ns", "x.ns.svc", "x.ns.svc.cluster.local"]]
    );
    assert!(t.external().is_empty());
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
        let t = translate_store(&store);
        // Owners serving routes: every RouteConfig with a virtual host.
        let owners: BTreeSet<_> = t
            .route_configs()
            .values()
            .filter(|c| !c.internal.is_empty())
            .map(|c| c.owner.clone())
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
    let mut h = Harness::of(&good);
    let before = h.run();
    let key = ObjectKey::new(Kind::Ingress, "ns", "i");
    assert!(h.translator.ingresses[&key].last_good.is_some());

    let bad = ingress(
        "i",
        "",
        "{rules: [{hosts: [changed.example.com], http: {paths: [{splits: [{serviceNamespace: ns, serviceName: s, servicePort: 80, percent: 50}, {serviceNamespace: ns, serviceName: s, servicePort: 80, percent: 40}]}]}}]}",
    );
    h.apply(&bad);
    let delta = h.update();
    assert!(delta.resources.is_empty(), "no resource changes");
    let after = Output::of(&h.translator);
    assert_eq!(
        after.resources, before.resources,
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
    let t = translate_store(&h.store);
    assert_eq!(domains(&t.external()), [vec!["o.example.com"]]);
    assert_eq!(
        condition(status_of(&t, "i"), CONDITION_NETWORK_CONFIGURED).status,
        STATUS_FALSE
    );
}

/// Found by fuzzing (`fuzz/fuzz_targets/manifest.rs`): header names and values the proxies
/// cannot parse reached the snapshot, and every proxy NACKed the whole RouteConfig. Such an
/// ingress is refused at translation with a status that names the field; the rest serves.
#[test]
fn headers_the_proxies_cannot_parse_are_refused_at_translation() {
    let path = |extra: &str| {
        format!("{{rules: [{{hosts: [bad.example.com], http: {{paths: [{{{extra}splits: [{{serviceNamespace: ns, serviceName: s, servicePort: 80}}]}}]}}}}]}}")
    };
    let cases = [
        (
            path("headers: {K-Original/Host: {exact: a}}, "),
            "ingress ns/bad: invalid header name: \"K-Original/Host\": spec.rules[0].http.paths[0].headers",
        ),
        (
            path("appendHeaders: {K-Original/Host: a}, "),
            "ingress ns/bad: invalid header name: \"K-Original/Host\": spec.rules[0].http.paths[0].appendHeaders",
        ),
        (
            path("appendHeaders: {x-ok: \"a\\nb\"}, "),
            "ingress ns/bad: invalid header value: \"a\\nb\": spec.rules[0].http.paths[0].appendHeaders[x-ok]",
        ),
        (
            "{rules: [{hosts: [bad.example.com], http: {paths: [{splits: [{serviceNamespace: ns, serviceName: s, servicePort: 80, appendHeaders: {\"a b\": c}}]}]}}]}".to_string(),
            "ingress ns/bad: invalid header name: \"a b\": spec.rules[0].http.paths[0].splits[0].appendHeaders",
        ),
        (
            path("rewriteHost: \"a\\u0000b\", "),
            "ingress ns/bad: invalid value: \"a\\0b\": spec.rules[0].http.paths[0].rewriteHost",
        ),
    ];
    for (spec, message) in cases {
        let yaml = [
            service("s", "[{name: http, port: 80}]"),
            simple_ingress("good", "good.example.com", "s"),
            ingress("bad", "", &spec),
        ]
        .concat();
        let t = translate_store(&store_of(&yaml));
        let network = condition(status_of(&t, "bad"), CONDITION_NETWORK_CONFIGURED);
        assert_eq!(network.status, STATUS_FALSE, "{spec}");
        assert_eq!(network.reason.as_deref(), Some("InvalidIngress"), "{spec}");
        assert_eq!(network.message.as_deref(), Some(message), "{spec}");
        assert_eq!(
            domains(&t.external()),
            [vec!["good.example.com"]],
            "only the good ingress serves: {spec}"
        );
        assert_eq!(
            condition(status_of(&t, "good"), CONDITION_NETWORK_CONFIGURED).status,
            STATUS_TRUE
        );
    }
}

#[test]
fn dangling_service_keeps_routes_with_no_endpoints() {
    let yaml = [
        service("s", "[{name: http2, port: 81}]"),
        slice("s-1", "s", "[{name: http2, port: 8013}]", "[{addresses: [10.0.0.1]}]"),
        ingress("i", "", "{rules: [{hosts: [a.example.com], http: {paths: [{splits: [{serviceNamespace: ns, serviceName: s, servicePort: 81}]}]}}]}"),
    ]
    .concat();
    let mut h = Harness::of(&yaml);
    let before = h.run();
    let endpoints_backend = |protocol| Backend {
        protocol,
        revision: None,
        target: Target::Endpoints,
    };
    assert_eq!(before.backend("ns/s:81"), &endpoints_backend(Protocol::H2c));
    assert_eq!(before.addresses("ns/s:81"), addrs(&["10.0.0.1:8013"]));

    assert!(h.delete(Kind::Service, "ns", "s"));
    let after = h.run();
    assert_eq!(after.external(), before.external(), "routes stay");
    assert_eq!(
        (after.backend("ns/s:81"), after.addresses("ns/s:81")),
        (&endpoints_backend(Protocol::H2c), vec![]),
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
    h.apply(&service("s", "[{name: http, port: 80}]"));
    let again = h.run();
    let network = condition(status_of(&again, "i"), CONDITION_NETWORK_CONFIGURED);
    assert_eq!(network.reason.as_deref(), Some("ServicePortNotFound"));
    assert_eq!(
        network.message.as_deref(),
        Some("ingress ns/i: service ns/s has no port 81")
    );
    assert_eq!(again.backend("ns/s:81").target, Target::Endpoints);
    assert_eq!(again.addresses("ns/s:81"), vec![]);
}

#[test]
fn deleted_ingresses_disappear_with_their_cache() {
    let yaml = [
        service("s", "[{name: http, port: 80}]"),
        simple_ingress("i", "a.example.com", "s"),
    ]
    .concat();
    let mut h = Harness::of(&yaml);
    h.run();
    let key = ObjectKey::new(Kind::Ingress, "ns", "i");
    assert!(h.translator.ingresses.contains_key(&key));
    h.store.delete(&key);
    let t = h.run();
    assert!(t.statuses.is_empty());
    assert!(t.external().is_empty());
    assert!(t.backends().is_empty());
    assert!(t.resources.is_empty());
    assert!(h.translator.ingresses.is_empty());
    assert!(h.translator.contributions.is_empty());
}

#[test]
fn translation_is_deterministic() {
    let yaml = [
        service("s", "[{name: http, port: 80}]"),
        simple_ingress("b", "b.example.com", "s"),
        simple_ingress("a", "a.example.com", "s"),
    ]
    .concat();
    let first = translate_store(&store_of(&yaml));
    let second = translate_store(&store_of(&yaml));
    assert_eq!(first, second);
    // Every resource's version is the hash of its content.
    let translator = {
        let store = store_of(&yaml);
        let mut t = Translator::new(TranslateConfig::default());
        t.update(&store, &store.all_as_changes());
        t
    };
    for (_, named) in translator.resources() {
        assert_eq!(named.version, named.resource.version(), "{}", named.name);
    }
}

#[test]
fn a_new_generation_failing_the_same_way_shows_in_the_status() {
    let invalid = |host: &str| {
        ingress(
            "i",
            "",
            &format!("{{rules: [{{hosts: [{host}], http: {{paths: [{{splits: [{{serviceNamespace: ns, serviceName: s, servicePort: 80, percent: 90}}]}}]}}}}]}}"),
        )
    };
    let route = |host: &str| {
        format!("---\napiVersion: sluice.dev/v1alpha1\nkind: Route\nmetadata: {{name: r, namespace: ns}}\nspec: {{hosts: [{host}], traffic: [{{revision: v, percent: 90}}]}}\n")
    };
    let mut h = Harness::of(&[invalid("a.example.com"), route("r.example.com")].concat());
    let first = h.run();
    for (kind, name) in [("Ingress", "i"), ("Route", "r")] {
        assert_eq!(first.status(kind, name).generation, 1, "{kind}");
    }
    // Another spec, the same error.
    h.apply(&[invalid("b.example.com"), route("q.example.com")].concat());
    let delta = h.update();
    let generations: Vec<(String, i64, i64)> = delta
        .statuses
        .iter()
        .map(|c| match c {
            StatusChange::Set(s) => (s.kind.clone(), s.generation, s.status.observed_generation),
            StatusChange::Remove { name, .. } => panic!("{name} removed"),
        })
        .collect();
    assert_eq!(
        generations,
        [("Ingress".to_string(), 2, 2), ("Route".to_string(), 2, 2)]
    );
}

#[test]
fn a_last_good_plan_accepted_again_resolves_its_backends_from_the_store() {
    let young = ingress(
        "young",
        "  creationTimestamp: '2024-02-01T00:00:00Z'\n",
        "{rules: [{hosts: [h.example.com], http: {paths: [{splits: [{serviceNamespace: ns, serviceName: s, servicePort: 80}]}]}}]}",
    );
    let mut h = Harness::of(
        &[
            service("s", "[{name: http, port: 80}]"),
            slice(
                "s-1",
                "s",
                "[{name: http, port: 8080}]",
                "[{addresses: [10.0.0.1]}]",
            ),
            young,
        ]
        .concat(),
    );
    assert_eq!(h.run().addresses("ns/s:80"), addrs(&["10.0.0.1:8080"]));
    // It turns invalid: its last good plan serves on.
    h.apply(&ingress(
        "young",
        "  creationTimestamp: '2024-02-01T00:00:00Z'\n",
        "{rules: [{hosts: [h.example.com], http: {paths: [{splits: [{serviceNamespace: ns, serviceName: s, servicePort: 80, percent: 90}]}]}}]}",
    ));
    assert!(h.run().route_configs().contains_key("ingress/ns/young"));
    // An older ingress takes the host; meanwhile the Service's endpoints move.
    h.apply(&[
        service("t", "[{name: http, port: 80}]"),
        ingress(
            "old",
            "  creationTimestamp: '2024-01-01T00:00:00Z'\n",
            "{rules: [{hosts: [h.example.com], http: {paths: [{splits: [{serviceNamespace: ns, serviceName: t, servicePort: 80}]}]}}]}",
        ),
    ]
    .concat());
    assert!(h.run().endpoints("ns/s:80").is_none(), "nobody uses it");
    h.apply(&slice(
        "s-1",
        "s",
        "[{name: http, port: 8080}]",
        "[{addresses: [10.0.0.2]}]",
    ));
    h.run();
    // The older one goes: the last good plan serves again, with today's endpoints.
    assert!(h.delete(Kind::Ingress, "ns", "old"));
    let t = h.run();
    assert!(t.route_configs().contains_key("ingress/ns/young"));
    assert_eq!(t.addresses("ns/s:80"), addrs(&["10.0.0.2:8080"]));
}

#[test]
fn which_ingress_is_older_decides_hosts_and_sni_names_as_it_changes() {
    const ECDSA_CRT: &str = include_str!("../../tests/fixtures/ecdsa.crt");
    const ECDSA_KEY: &str = include_str!("../../tests/fixtures/ecdsa.key");
    const RSA_CRT: &str = include_str!("../../tests/fixtures/rsa.crt");
    const RSA_KEY: &str = include_str!("../../tests/fixtures/rsa.key");
    let secret = |name: &str, crt: &str, key: &str| {
        let quoted = |s: &str| serde_json::to_string(s).expect("strings serialise");
        format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: ns}}\nstringData: {{tls.crt: {}, tls.key: {}}}\n",
            quoted(crt),
            quoted(key)
        )
    };
    // Distinct route hosts, one shared SNI name; and one shared route host.
    let with_tls = |name: &str, created: &str, host: &str, secret: &str| {
        ingress(
            name,
            &format!("  creationTimestamp: '{created}'\n"),
            &format!("{{tls: [{{hosts: [{host}, shared.example.com], secretName: {secret}, secretNamespace: ns}}], rules: [{{hosts: [{host}], http: {{paths: [{{splits: [{{serviceNamespace: ns, serviceName: s, servicePort: 80}}]}}]}}}}]}}"),
        )
    };
    let plain = |name: &str, created: &str| {
        ingress(
            name,
            &format!("  creationTimestamp: '{created}'\n"),
            "{rules: [{hosts: [h.example.com], http: {paths: [{splits: [{serviceNamespace: ns, serviceName: s, servicePort: 80}]}]}}]}",
        )
    };
    let (jan, feb) = ("2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z");
    let mut h = Harness::of(
        &[
            service("s", "[{name: http, port: 80}]"),
            secret("ecdsa", ECDSA_CRT, ECDSA_KEY),
            secret("rsa", RSA_CRT, RSA_KEY),
            with_tls("a", jan, "a.example.com", "ecdsa"),
            with_tls("b", feb, "b.example.com", "rsa"),
            plain("p", jan),
            plain("q", feb),
        ]
        .concat(),
    );
    // (secret, external SNI names) of every certificate, and who serves h.example.com.
    let view = |t: &Output| {
        let certificates: Vec<(String, Vec<String>)> = t
            .certificates()
            .values()
            .map(|c| (c.secret.clone(), c.external_hosts.clone()))
            .collect();
        let holder: Vec<&str> = t
            .route_configs()
            .iter()
            .filter(|(_, c)| c.external.iter().any(|v| v.domains == ["h.example.com"]))
            .map(|(name, _)| *name)
            .collect();
        (certificates, holder.join(","))
    };
    let owned = |list: &[(&str, &[&str])]| -> Vec<(String, Vec<String>)> {
        list.iter()
            .map(|(s, hosts)| (s.to_string(), hosts.iter().map(|h| h.to_string()).collect()))
            .collect()
    };
    assert_eq!(
        view(&h.run()),
        (
            owned(&[
                ("ns/ecdsa", &["a.example.com", "shared.example.com"]),
                ("ns/rsa", &["b.example.com"]),
            ]),
            "ingress/ns/p".to_string()
        )
    );
    // Only the timestamps change: b and q become the older ones.
    h.apply(
        &[
            with_tls("b", "2023-12-01T00:00:00Z", "b.example.com", "rsa"),
            plain("q", "2023-12-01T00:00:00Z"),
        ]
        .concat(),
    );
    let t = h.run();
    assert_eq!(
        view(&t),
        (
            owned(&[
                ("ns/ecdsa", &["a.example.com"]),
                ("ns/rsa", &["b.example.com", "shared.example.com"]),
            ]),
            "ingress/ns/q".to_string()
        )
    );
    assert_eq!(
        t,
        translate_store(&h.store),
        "as a fresh translation sees it"
    );
    // And back, by making a and p older still.
    h.apply(
        &[
            with_tls("a", "2023-01-01T00:00:00Z", "a.example.com", "ecdsa"),
            plain("p", "2023-01-01T00:00:00Z"),
        ]
        .concat(),
    );
    let t = h.run();
    assert_eq!(view(&t).1, "ingress/ns/p");
    assert_eq!(view(&t).0[0].1, ["a.example.com", "shared.example.com"]);
}

#[test]
fn owners_of_names_the_objects_serving_a_resource() {
    let mut h = Harness::of(
        &[
            service("s", "[{name: http, port: 80}]"),
            ingress(
                "a",
                "  creationTimestamp: '2024-01-01T00:00:00Z'\n",
                "{rules: [{hosts: [a.example.com], http: {paths: [{splits: [{serviceNamespace: ns, serviceName: s, servicePort: 80}]}]}}]}",
            ),
            ingress(
                "b",
                "  creationTimestamp: '2024-02-01T00:00:00Z'\n",
                "{rules: [{hosts: [b.example.com], http: {paths: [{splits: [{serviceNamespace: ns, serviceName: s, servicePort: 80}]}]}}]}",
            ),
            // Loses a.example.com to a: serves nothing.
            ingress(
                "c",
                "  creationTimestamp: '2024-03-01T00:00:00Z'\n",
                "{rules: [{hosts: [a.example.com], http: {paths: [{splits: [{serviceNamespace: ns, serviceName: s, servicePort: 80}]}]}}]}",
            ),
        ]
        .concat(),
    );
    h.run();
    let key = |name: &str| ObjectKey::new(Kind::Ingress, "ns", name);
    let t = &h.translator;
    assert_eq!(
        t.owners_of(ResourceType::RouteConfig, "ingress/ns/a"),
        [key("a")]
    );
    assert!(
        t.owners_of(ResourceType::RouteConfig, "ingress/ns/c")
            .is_empty(),
        "a rejected ingress serves no RouteConfig"
    );
    assert!(t
        .owners_of(ResourceType::RouteConfig, "ingress/ns/gone")
        .is_empty());
    for type_ in [ResourceType::Backend, ResourceType::Endpoints] {
        assert_eq!(
            t.owners_of(type_, "ns/s:80"),
            [key("a"), key("b")],
            "{type_}"
        );
    }
    assert!(t.owners_of(ResourceType::Certificate, "ns/x#0").is_empty());

    // Deleted owners are forgotten.
    h.delete(Kind::Ingress, "ns", "a");
    h.run();
    let t = &h.translator;
    assert!(t
        .owners_of(ResourceType::RouteConfig, "ingress/ns/a")
        .is_empty());
    assert_eq!(
        t.owners_of(ResourceType::RouteConfig, "ingress/ns/c"),
        [key("c")],
        "c took the host over"
    );
    assert_eq!(
        t.owners_of(ResourceType::Backend, "ns/s:80"),
        [key("b"), key("c")]
    );
}
