use super::*;
use crate::router::Listener;
use http::{HeaderMap, HeaderValue};
use prometheus::Registry;
use sluice_xds::{
    Backend as BackendResource, Certificate, Endpoints, Forward, HeaderMatch, Protocol,
    RevisionPolicy, RouteAction, Split, Target,
};
use std::sync::atomic::Ordering;

fn catalog() -> Catalog {
    Catalog::new(
        Arc::new(Metrics::new(Registry::new()).expect("fresh registry")),
        10,
        HeldTotal::new(usize::MAX),
    )
}

fn response(
    type_: ResourceType,
    resources: Vec<(&str, Resource)>,
    removed: &[&str],
) -> DeltaResponse {
    DeltaResponse {
        type_,
        nonce: "n".into(),
        system_version: "1".into(),
        resources: resources
            .into_iter()
            .map(|(name, r)| NamedResource::new(name, r))
            .collect(),
        removed: removed.iter().map(|n| n.to_string()).collect(),
        invalid: vec![],
        push_continues: false,
    }
}

fn route(
    id: &str,
    prefix: &str,
    headers: &[(&str, &str)],
    splits: &[(&str, u32)],
) -> sluice_xds::Route {
    sluice_xds::Route {
        id: id.into(),
        path_prefix: prefix.into(),
        headers: headers
            .iter()
            .map(|(n, v)| HeaderMatch {
                name: n.to_string(),
                exact: v.to_string(),
            })
            .collect(),
        action: RouteAction::Forward(Forward {
            rewrite_host: None,
            set_headers: vec![],
            splits: splits
                .iter()
                .map(|(b, w)| Split {
                    backend: b.to_string(),
                    weight: *w,
                    set_headers: vec![],
                })
                .collect(),
        }),
        https_redirect: false,
        probe_hash: None,
    }
}

fn vhost(domains: &[&str], routes: Vec<sluice_xds::Route>) -> VirtualHost {
    VirtualHost {
        domains: domains.iter().map(|d| d.to_string()).collect(),
        routes,
    }
}

fn config(owner: &str, external: Vec<VirtualHost>, internal: Vec<VirtualHost>) -> Resource {
    Resource::RouteConfig(RouteConfig {
        owner: owner.into(),
        external,
        internal,
    })
}

/// `owner`'s config: `host` on the internal table only, all of it to `backend`.
fn internal_to(owner: &str, host: &str, backend: &str) -> Resource {
    config(
        owner,
        vec![],
        vec![vhost(
            &[host],
            vec![route("r", "/", &[], &[(backend, 100)])],
        )],
    )
}

fn plain_backend() -> Resource {
    Resource::Backend(BackendResource {
        protocol: Protocol::Http1,
        target: Target::Endpoints,
        revision: None,
    })
}

fn endpoints(addrs: &[&str]) -> Resource {
    Resource::Endpoints(Endpoints {
        addresses: addrs.iter().map(|a| a.parse().expect("addr")).collect(),
    })
}

/// Backends `names`, each with one endpoint, then `configs`: one batch, in push order.
fn batch(names: &[&str], configs: Vec<(&str, Resource)>) -> Vec<DeltaResponse> {
    let addrs: Vec<String> = (0..names.len())
        .map(|i| format!("127.0.0.1:{}", 9000 + i))
        .collect();
    vec![
        response(
            ResourceType::Backend,
            names.iter().map(|n| (*n, plain_backend())).collect(),
            &[],
        ),
        response(
            ResourceType::Endpoints,
            names
                .iter()
                .zip(&addrs)
                .map(|(n, a)| (*n, endpoints(&[a.as_str()])))
                .collect(),
            &[],
        ),
        response(ResourceType::RouteConfig, configs, &[]),
    ]
}

fn applied(catalog: &mut Catalog, responses: &[DeltaResponse]) -> Router {
    let outcome = catalog.apply(responses);
    for result in &outcome.results {
        assert!(result.is_ok(), "{result:?}");
    }
    catalog.router()
}

fn id_of(
    router: &Router,
    listener: Listener,
    host: &str,
    path: &str,
    headers: &HeaderMap,
) -> Option<String> {
    router
        .route(listener, host, path, headers)
        .map(|r| r.id.to_string())
}

fn route_of(router: &Router, host: &str) -> Arc<Route> {
    router
        .route(Listener::Internal, host, "/", &HeaderMap::new())
        .expect("routed")
        .clone()
}

fn endpoint_count(route: &Route) -> usize {
    route.splits[0]
        .backend
        .upstream()
        .map_or(0, |u| u.endpoint_count())
}

#[test]
fn host_lookup_is_exact_and_falls_back_to_wildcard() {
    let mut c = catalog();
    let router = applied(
        &mut c,
        &batch(
            &["b1"],
            vec![
                (
                    "a",
                    config(
                        "ns/a",
                        vec![vhost(
                            &["a.example.com"],
                            vec![route("a", "/", &[], &[("b1", 100)])],
                        )],
                        vec![],
                    ),
                ),
                (
                    "any",
                    config(
                        "ns/any",
                        vec![vhost(&["*"], vec![route("any", "/", &[], &[("b1", 100)])])],
                        vec![],
                    ),
                ),
            ],
        ),
    );
    let h = HeaderMap::new();
    assert_eq!(
        id_of(&router, Listener::External, "a.example.com", "/", &h).as_deref(),
        Some("a")
    );
    assert_eq!(
        id_of(&router, Listener::External, "b.example.com", "/", &h).as_deref(),
        Some("any")
    );
}

#[test]
fn listeners_use_their_own_tables() {
    let mut c = catalog();
    let router = applied(
        &mut c,
        &batch(
            &["b1"],
            vec![(
                "local",
                config(
                    "ns/local",
                    vec![],
                    vec![vhost(
                        &["svc.ns"],
                        vec![route("local", "/", &[], &[("b1", 100)])],
                    )],
                ),
            )],
        ),
    );
    let h = HeaderMap::new();
    assert_eq!(id_of(&router, Listener::External, "svc.ns", "/", &h), None);
    assert_eq!(
        id_of(&router, Listener::Internal, "svc.ns", "/", &h).as_deref(),
        Some("local")
    );
}

#[test]
fn routes_match_in_order_by_prefix_and_all_headers() {
    let routes = vec![
        route(
            "tagged",
            "/",
            &[("knative-serving-tag", "v1"), ("x-b", "2")],
            &[("b1", 100)],
        ),
        route("foo", "/foo", &[], &[("b1", 100)]),
        route("root", "/", &[], &[("b1", 100)]),
    ];
    let mut c = catalog();
    let router = applied(
        &mut c,
        &batch(
            &["b1"],
            vec![("h", config("ns/h", vec![vhost(&["h"], routes)], vec![]))],
        ),
    );
    let mut both = HeaderMap::new();
    both.insert("knative-serving-tag", HeaderValue::from_static("v1"));
    let only_tag = both.clone();
    both.insert("x-b", HeaderValue::from_static("2"));
    let mut wrong_case_value = HeaderMap::new();
    wrong_case_value.insert("knative-serving-tag", HeaderValue::from_static("V1"));
    wrong_case_value.insert("x-b", HeaderValue::from_static("2"));
    let none = HeaderMap::new();
    let cases: &[(&str, &HeaderMap, Option<&str>)] = &[
        ("/", &both, Some("tagged")),
        ("/", &only_tag, Some("root")),
        ("/", &wrong_case_value, Some("root")),
        ("/foo", &none, Some("foo")),
        ("/foobar", &none, Some("foo")),
        ("/fo", &none, Some("root")),
        ("/other", &none, Some("root")),
    ];
    for (path, headers, want) in cases {
        assert_eq!(
            id_of(&router, Listener::External, "h", path, headers).as_deref(),
            *want,
            "path {path}"
        );
    }
    let foo_only = vec![route("foo", "/foo", &[], &[("b1", 100)])];
    let router = applied(
        &mut c,
        &batch(
            &["b1"],
            vec![("h", config("ns/h", vec![vhost(&["h"], foo_only)], vec![]))],
        ),
    );
    assert_eq!(
        id_of(&router, Listener::External, "h", "/bar", &none),
        None,
        "unmatched path"
    );
}

#[test]
fn zero_percent_split_is_never_picked() {
    let routes = vec![route(
        "r",
        "/",
        &[],
        &[("b0", 0), ("b1", 1), ("b2", 0), ("b3", 99), ("b4", 0)],
    )];
    let mut c = catalog();
    let router = applied(
        &mut c,
        &batch(
            &["b0", "b1", "b2", "b3", "b4"],
            vec![("h", config("ns/h", vec![vhost(&["h"], routes)], vec![]))],
        ),
    );
    let r = router
        .route(Listener::External, "h", "/", &HeaderMap::new())
        .expect("route");
    let mut counts = [0u32; 5];
    for roll in 0..10_000u32 {
        counts[r.pick_split(roll).expect("split")] += 1;
    }
    assert_eq!(counts, [0, 100, 0, 9900, 0]);
    for roll in [0, 1, u32::MAX - 1, u32::MAX] {
        let picked = r.pick_split(roll).expect("split");
        assert!(picked == 1 || picked == 3, "roll {roll} picked {picked}");
    }
}

#[test]
fn a_route_naming_a_backend_not_received_yet_waits_then_is_relinked() {
    let mut c = catalog();
    let only_routes = vec![response(
        ResourceType::RouteConfig,
        vec![(
            "h",
            config(
                "ns/h",
                vec![],
                vec![vhost(&["h"], vec![route("r", "/", &[], &[("late", 100)])])],
            ),
        )],
        &[],
    )];
    let router = applied(&mut c, &only_routes);
    assert_eq!(
        endpoint_count(&route_of(&router, "h")),
        0,
        "no endpoints: requests wait"
    );
    let router = applied(
        &mut c,
        &[
            response(ResourceType::Backend, vec![("late", plain_backend())], &[]),
            response(
                ResourceType::Endpoints,
                vec![("late", endpoints(&["127.0.0.1:1"]))],
                &[],
            ),
        ],
    );
    assert_eq!(
        endpoint_count(&route_of(&router, "h")),
        1,
        "relinked when the backend arrived"
    );
}

#[test]
fn endpoint_state_and_the_queue_survive_endpoint_changes() {
    let mut c = catalog();
    let router = applied(
        &mut c,
        &batch(&["b1"], vec![("h", internal_to("ns/h", "h", "b1"))]),
    );
    let first = route_of(&router, "h");
    let upstream = first.splits[0].backend.upstream().expect("upstream");
    let endpoint = upstream.endpoints()[0].clone();
    endpoint.in_flight.fetch_add(3, Ordering::Relaxed);
    let router = applied(
        &mut c,
        &[response(
            ResourceType::Endpoints,
            vec![("b1", endpoints(&["127.0.0.1:9000", "127.0.0.1:9999"]))],
            &[],
        )],
    );
    let second = route_of(&router, "h");
    let next = second.splits[0].backend.upstream().expect("upstream");
    assert_eq!(next.endpoint_count(), 2);
    assert!(
        Arc::ptr_eq(&next.endpoints()[0], &endpoint),
        "carried over by address"
    );
    assert_eq!(next.endpoints()[0].in_flight.load(Ordering::Relaxed), 3);
    assert!(Arc::ptr_eq(&upstream.queue, &next.queue));
}

#[test]
fn an_invalid_route_config_is_rejected_and_its_last_good_version_keeps_serving() {
    let mut c = catalog();
    let good = config(
        "ns/h",
        vec![],
        vec![vhost(&["h"], vec![route("good", "/", &[], &[("b1", 100)])])],
    );
    let good_version = good.version();
    applied(&mut c, &batch(&["b1"], vec![("h", good)]));
    let mut bad_route = route("bad", "/", &[], &[("b1", 100)]);
    let RouteAction::Forward(forward) = &mut bad_route.action;
    forward.set_headers.push(sluice_xds::HeaderValue {
        name: "x-bad".into(),
        value: "a\u{1}b".into(),
    });
    let bad = config("ns/h", vec![], vec![vhost(&["h"], vec![bad_route])]);
    let other = config(
        "ns/o",
        vec![],
        vec![vhost(&["o"], vec![route("o", "/", &[], &[("b1", 100)])])],
    );
    let other_version = other.version();
    let outcome = c.apply(&[response(
        ResourceType::RouteConfig,
        vec![("h", bad), ("o", other)],
        &[],
    )]);
    let rejection = outcome.results[0].as_ref().expect_err("rejected");
    assert_eq!(rejected_names(rejection), ["h"]);
    assert!(rejection.message.contains("x-bad"), "{}", rejection.message);
    let router = c.router();
    assert_eq!(
        route_of(&router, "h").id.as_ref(),
        "good",
        "last good version serves"
    );
    assert_eq!(
        route_of(&router, "o").id.as_ref(),
        "o",
        "the rest of the response applied"
    );
    // What a reconnect reports as held: the refused one at its last good version.
    assert_eq!(
        c.versions(ResourceType::RouteConfig),
        BTreeMap::from([
            ("h".to_string(), good_version),
            ("o".to_string(), other_version)
        ])
    );
    let backends = c.versions(ResourceType::Backend);
    assert_eq!(backends.keys().collect::<Vec<_>>(), ["b1"]);
    assert_eq!(backends["b1"], plain_backend().version());
    assert_eq!(c.versions(ResourceType::Endpoints).len(), 1);
    assert!(c.versions(ResourceType::Certificate).is_empty());
    c.apply(&[response(ResourceType::RouteConfig, vec![], &["o"])]);
    assert_eq!(
        c.versions(ResourceType::RouteConfig)
            .keys()
            .collect::<Vec<_>>(),
        ["h"]
    );
}

#[test]
fn a_change_to_one_owner_leaves_the_others_compiled_pieces_alone() {
    let mut c = catalog();
    let configs: Vec<(String, Resource)> = (0..200)
        .map(|i| {
            let host = format!("h{i}.example.com");
            (
                format!("ingress/ns/{i}"),
                config(
                    &format!("ns/{i}"),
                    vec![],
                    vec![vhost(
                        &[host.as_str()],
                        vec![route("r", "/", &[], &[("b1", 100)])],
                    )],
                ),
            )
        })
        .collect();
    let router = applied(
        &mut c,
        &batch(
            &["b1"],
            configs
                .iter()
                .map(|(n, r)| (n.as_str(), r.clone()))
                .collect(),
        ),
    );
    let before: Vec<Arc<Route>> = (0..200)
        .map(|i| route_of(&router, &format!("h{i}.example.com")))
        .collect();
    let changed = config(
        "ns/7",
        vec![],
        vec![vhost(
            &["h7.example.com"],
            vec![route("r2", "/", &[], &[("b1", 100)])],
        )],
    );
    let router = applied(
        &mut c,
        &[response(
            ResourceType::RouteConfig,
            vec![("ingress/ns/7", changed)],
            &[],
        )],
    );
    for (i, old) in before.iter().enumerate() {
        let now = route_of(&router, &format!("h{i}.example.com"));
        assert_eq!(Arc::ptr_eq(old, &now), i != 7, "owner {i}");
    }
    assert_eq!(route_of(&router, "h7.example.com").id.as_ref(), "r2");
}

#[test]
fn an_endpoints_change_relinks_only_the_owners_using_that_backend() {
    let mut c = catalog();
    let router = applied(
        &mut c,
        &batch(
            &["b1", "b2"],
            vec![
                ("one", internal_to("ns/one", "one", "b1")),
                ("two", internal_to("ns/two", "two", "b2")),
            ],
        ),
    );
    let (one, two) = (route_of(&router, "one"), route_of(&router, "two"));
    let outcome = c.apply(&[response(
        ResourceType::Endpoints,
        vec![("b1", endpoints(&["127.0.0.1:1", "127.0.0.1:2"]))],
        &[],
    )]);
    assert_eq!(outcome.rebuilt.len(), 1, "only b1 is rebuilt");
    let router = outcome.router.expect("a new router");
    assert!(!Arc::ptr_eq(&one, &route_of(&router, "one")));
    assert!(Arc::ptr_eq(&two, &route_of(&router, "two")));
    assert_eq!(endpoint_count(&route_of(&router, "one")), 2);
}

#[test]
fn removals_release_hosts_and_backends_nobody_uses_go() {
    let mut c = catalog();
    applied(
        &mut c,
        &batch(&["b1"], vec![("h", internal_to("ns/h", "h", "b1"))]),
    );
    let outcome = c.apply(&[
        response(ResourceType::RouteConfig, vec![], &["h"]),
        response(ResourceType::Backend, vec![], &["b1"]),
        response(ResourceType::Endpoints, vec![], &["b1"]),
    ]);
    assert_eq!(
        outcome.removed.len(),
        1,
        "b1 is gone: its waiters route again"
    );
    let router = outcome.router.expect("a new router");
    assert!(router
        .route(Listener::Internal, "h", "/", &HeaderMap::new())
        .is_none());
    assert!(c.backend("b1").is_none());
    assert_eq!(
        c.digest(),
        ConfigDigest::default(),
        "nothing applied any more"
    );
}

#[test]
fn a_host_moving_between_owners_belongs_to_the_new_owner() {
    let mut c = catalog();
    applied(
        &mut c,
        &batch(
            &["b1"],
            vec![(
                "old",
                config(
                    "ns/old",
                    vec![],
                    vec![vhost(&["h"], vec![route("old", "/", &[], &[("b1", 100)])])],
                ),
            )],
        ),
    );
    // The new owner's config arrives before the old one lets go.
    let router = applied(
        &mut c,
        &[response(
            ResourceType::RouteConfig,
            vec![(
                "new",
                config(
                    "ns/new",
                    vec![],
                    vec![vhost(&["h"], vec![route("new", "/", &[], &[("b1", 100)])])],
                ),
            )],
            &[],
        )],
    );
    assert_eq!(route_of(&router, "h").id.as_ref(), "new");
    let router = applied(
        &mut c,
        &[response(ResourceType::RouteConfig, vec![], &["old"])],
    );
    assert_eq!(route_of(&router, "h").id.as_ref(), "new");
}

#[test]
fn the_digest_is_that_of_the_resources_held() {
    let mut c = catalog();
    let responses = batch(&["b1"], vec![("h", internal_to("ns/h", "h", "b1"))]);
    applied(&mut c, &responses);
    let mut want = ConfigDigest::default();
    for response in &responses {
        for r in &response.resources {
            want.add(response.type_, &r.name, &r.version);
        }
    }
    assert_eq!(c.digest(), want);
    assert_eq!(c.router().version(), want.to_hex());
}

#[test]
fn a_policy_change_rebuilds_the_revisions_backend_and_keeps_its_counters() {
    let policy = |cc| {
        Resource::RevisionPolicy(RevisionPolicy {
            container_concurrency: cc,
            max_buffered: 5,
            timeout_seconds: 30,
            response_start_timeout_seconds: None,
            idle_timeout_seconds: None,
        })
    };
    let revision_backend = Resource::Backend(BackendResource {
        protocol: Protocol::Http1,
        target: Target::Endpoints,
        revision: Some("ns/rev".into()),
    });
    let mut c = catalog();
    let router = applied(
        &mut c,
        &[
            response(
                ResourceType::RevisionPolicy,
                vec![("ns/rev", policy(1))],
                &[],
            ),
            response(
                ResourceType::Backend,
                vec![("ns/rev", revision_backend)],
                &[],
            ),
            response(
                ResourceType::RouteConfig,
                vec![(
                    "r",
                    config(
                        "ns/r",
                        vec![],
                        vec![vhost(
                            &["r"],
                            vec![route("r", "/", &[], &[("ns/rev", 100)])],
                        )],
                    ),
                )],
                &[],
            ),
        ],
    );
    let before = route_of(&router, "r");
    let stats = before.splits[0]
        .backend
        .revision
        .as_ref()
        .expect("revision")
        .stats
        .clone();
    assert_eq!(
        before.splits[0].backend.upstream().map(|u| u.concurrency),
        Some(1)
    );
    let router = applied(
        &mut c,
        &[response(
            ResourceType::RevisionPolicy,
            vec![("ns/rev", policy(4))],
            &[],
        )],
    );
    let after = route_of(&router, "r");
    assert_eq!(
        after.splits[0].backend.upstream().map(|u| u.concurrency),
        Some(4)
    );
    assert!(Arc::ptr_eq(
        &stats,
        &after.splits[0]
            .backend
            .revision
            .as_ref()
            .expect("revision")
            .stats
    ));
    assert_eq!(
        c.revisions().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        ["ns/rev"]
    );
}

fn certificate(hosts: &[&str]) -> Certificate {
    let pair =
        rcgen::generate_simple_self_signed(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
            .expect("rcgen");
    Certificate {
        secret: "ns/tls".into(),
        cert_pem: pair.cert.pem(),
        key_pem: pair.signing_key.serialize_pem(),
        external_hosts: hosts.iter().map(|h| h.to_string()).collect(),
        internal_hosts: vec![],
    }
}

#[test]
fn certificates_are_parsed_once_and_a_bad_one_is_rejected_alone() {
    let mut c = catalog();
    let good = certificate(&["a.example.com"]);
    let bad = Certificate {
        key_pem: "not a key".into(),
        ..certificate(&["b.example.com"])
    };
    let outcome = c.apply(&[response(
        ResourceType::Certificate,
        vec![
            ("ns/tls#1", Resource::Certificate(good)),
            ("ns/tls#2", Resource::Certificate(bad)),
        ],
        &[],
    )]);
    assert!(outcome.certificates_changed);
    let rejection = outcome.results[0]
        .as_ref()
        .expect_err("the bad one is refused");
    assert_eq!(rejected_names(rejection), ["ns/tls#2"]);
    let first = c.certificates()[0].key.clone();
    assert_eq!(c.certificates().len(), 1);
    // An unrelated change neither reparses nor touches the certificates.
    let outcome = c.apply(&batch(&["b1"], vec![]));
    assert!(!outcome.certificates_changed);
    assert!(Arc::ptr_eq(&first, c.certificates()[0].key));
    // The rendered config never shows the key.
    let shown = c.render().to_string();
    assert!(
        shown.contains("<redacted>") && !shown.contains("PRIVATE KEY"),
        "{shown}"
    );
}

#[test]
fn a_route_in_both_tables_is_compiled_once_and_relinked_once() {
    let mut c = catalog();
    let shared = route("r", "/", &[], &[("b1", 100)]);
    let router = applied(
        &mut c,
        &batch(
            &["b1"],
            vec![(
                "h",
                config(
                    "ns/h",
                    vec![vhost(&["h"], vec![shared.clone()])],
                    vec![vhost(&["h"], vec![shared])],
                ),
            )],
        ),
    );
    let external = router
        .route(Listener::External, "h", "/", &HeaderMap::new())
        .expect("routed")
        .clone();
    assert!(Arc::ptr_eq(&external, &route_of(&router, "h")));
    let router = applied(
        &mut c,
        &[response(
            ResourceType::Endpoints,
            vec![("b1", endpoints(&["127.0.0.1:1", "127.0.0.1:2"]))],
            &[],
        )],
    );
    let external = router
        .route(Listener::External, "h", "/", &HeaderMap::new())
        .expect("routed")
        .clone();
    assert!(
        Arc::ptr_eq(&external, &route_of(&router, "h")),
        "still shared"
    );
    assert_eq!(endpoint_count(&external), 2);
}

#[test]
fn metrics_series_exist_only_for_what_served_and_go_with_it() {
    let registry = Registry::new();
    let metrics = Arc::new(Metrics::new(registry.clone()).expect("fresh registry"));
    let mut c = Catalog::new(metrics, 10, HeldTotal::new(usize::MAX));
    let router = applied(
        &mut c,
        &batch(
            &["b1", "b2"],
            vec![
                ("one", internal_to("ns/one", "one", "b1")),
                ("two", internal_to("ns/two", "two", "b2")),
            ],
        ),
    );
    let series = |registry: &Registry| -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .expect("encodes")
    };
    assert!(
        !series(&registry).contains("ns/one"),
        "no series before a request"
    );
    let one = route_of(&router, "one");
    one.metrics.record(200, 0.001);
    let upstream = one.splits[0].backend.upstream().expect("upstream");
    drop(upstream.try_admit(&[]).expect("a slot"));
    let text = series(&registry);
    assert!(
        text.contains("sluice_requests_total{code=\"2xx\",ingress=\"ns/one\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("sluice_backend_in_flight_requests{backend=\"b1\"} 0"),
        "{text}"
    );
    assert!(
        !text.contains("ns/two") && !text.contains("backend=\"b2\""),
        "{text}"
    );
    applied(
        &mut c,
        &[
            response(ResourceType::RouteConfig, vec![], &["one"]),
            response(ResourceType::Backend, vec![], &["b1"]),
            response(ResourceType::Endpoints, vec![], &["b1"]),
        ],
    );
    let text = series(&registry);
    assert!(
        !text.contains("ns/one") && !text.contains("backend=\"b1\""),
        "{text}"
    );
}

#[test]
fn a_push_in_several_responses_is_served_only_whole() {
    let mut c = catalog();
    let one = |host: &str, id: &str| {
        config(
            &format!("ns/{id}"),
            vec![vhost(&[host], vec![route(id, "/", &[], &[("b1", 100)])])],
            vec![],
        )
    };
    let mut first = batch(&["b1"], vec![("a", one("a.example.com", "a"))]);
    for response in &mut first {
        response.push_continues = true;
    }
    let outcome = c.apply(&first);
    assert!(outcome.results.iter().all(Result::is_ok));
    assert!(!outcome.push_ended);
    assert!(
        outcome.router.is_none(),
        "half a push must not be swapped in"
    );
    assert!(outcome.rebuilt.is_empty());
    let h = HeaderMap::new();
    assert_eq!(
        id_of(&c.router(), Listener::External, "a.example.com", "/", &h),
        None,
        "the host indexes are published only when the push ends"
    );

    // The push ends with the second host and b1's endpoints changed a second time.
    let last = vec![
        response(
            ResourceType::Endpoints,
            vec![("b1", endpoints(&["127.0.0.1:9100", "127.0.0.1:9101"]))],
            &[],
        ),
        response(
            ResourceType::RouteConfig,
            vec![("b", one("b.example.com", "b"))],
            &[],
        ),
    ];
    let outcome = c.apply(&last);
    assert!(outcome.push_ended);
    let router = outcome.router.expect("the whole push is swapped in");
    for (host, id) in [("a.example.com", "a"), ("b.example.com", "b")] {
        assert_eq!(
            id_of(&router, Listener::External, host, "/", &h).as_deref(),
            Some(id)
        );
    }
    // b1 was rebuilt in both batches; it is told once, as built last.
    assert_eq!(outcome.rebuilt.len(), 1);
    assert_eq!(&*outcome.rebuilt[0].id, "b1");
    let route = router
        .route(Listener::External, "a.example.com", "/", &h)
        .expect("routed");
    assert!(Arc::ptr_eq(&route.splits[0].backend, &outcome.rebuilt[0]));
    assert_eq!(endpoint_count(route), 2);
}
