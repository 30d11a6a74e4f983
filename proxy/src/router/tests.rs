use super::*;
use crate::metrics::Metrics;
use prometheus::Registry;
use sluice_xds::{
    Backend as BackendSpec, Forward, HeaderMatch, Protocol, Split as SplitSpec, Target, VirtualHost,
};
use std::collections::BTreeMap;

fn metrics() -> Metrics {
    Metrics::new(Registry::new()).expect("fresh registry")
}

fn route(
    id: &str,
    prefix: &str,
    headers: &[(&str, &str)],
    splits: &[(&str, u32)],
) -> sluice_xds::Route {
    sluice_xds::Route {
        id: id.into(),
        owner: "ns/ing".into(),
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
                .map(|(b, w)| SplitSpec {
                    backend: b.to_string(),
                    weight: *w,
                    set_headers: vec![],
                })
                .collect(),
        }),
        https_redirect: false,
    }
}

fn backends(ids: &[&str]) -> BTreeMap<String, BackendSpec> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let addr = format!("127.0.0.1:{}", 9000 + i).parse().expect("addr");
            (
                id.to_string(),
                BackendSpec {
                    protocol: Protocol::Http1,
                    revision: None,
                    target: Target::Endpoints(vec![addr]),
                },
            )
        })
        .collect()
}

fn snapshot(external: Vec<VirtualHost>, internal: Vec<VirtualHost>, ids: &[&str]) -> Arc<Snapshot> {
    Arc::new(Snapshot::new(
        RouteTable {
            virtual_hosts: external,
        },
        RouteTable {
            virtual_hosts: internal,
        },
        backends(ids),
    ))
}

fn compile(s: Arc<Snapshot>) -> Router {
    Router::compile(s, &Router::empty(), &metrics(), 10).expect("valid snapshot")
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

#[test]
fn host_lookup_is_exact_and_falls_back_to_wildcard() {
    let router = compile(snapshot(
        vec![
            VirtualHost {
                domains: vec!["a.example.com".into()],
                routes: vec![route("a", "/", &[], &[("b1", 100)])],
            },
            VirtualHost {
                domains: vec!["*".into()],
                routes: vec![route("any", "/", &[], &[("b1", 100)])],
            },
        ],
        vec![],
        &["b1"],
    ));
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
    let local = VirtualHost {
        domains: vec!["svc.ns".into()],
        routes: vec![route("local", "/", &[], &[("b1", 100)])],
    };
    let router = compile(snapshot(vec![], vec![local], &["b1"]));
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
    let router = compile(snapshot(
        vec![VirtualHost {
            domains: vec!["h".into()],
            routes,
        }],
        vec![],
        &["b1"],
    ));
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
}

#[test]
fn unmatched_path_is_none() {
    let routes = vec![route("foo", "/foo", &[], &[("b1", 100)])];
    let router = compile(snapshot(
        vec![VirtualHost {
            domains: vec!["h".into()],
            routes,
        }],
        vec![],
        &["b1"],
    ));
    assert_eq!(
        id_of(&router, Listener::External, "h", "/bar", &HeaderMap::new()),
        None
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
    let router = compile(snapshot(
        vec![VirtualHost {
            domains: vec!["h".into()],
            routes,
        }],
        vec![],
        &["b0", "b1", "b2", "b3", "b4"],
    ));
    let r = router
        .route(Listener::External, "h", "/", &HeaderMap::new())
        .expect("route");
    let mut counts = [0u32; 5];
    for roll in 0..10_000u32 {
        counts[r.pick_split(roll).expect("split")] += 1;
    }
    assert_eq!(counts, [0, 100, 0, 9900, 0]);
    // Extremes of the roll range too.
    for roll in [0, 1, u32::MAX - 1, u32::MAX] {
        let picked = r.pick_split(roll).expect("split");
        assert!(picked == 1 || picked == 3, "roll {roll} picked {picked}");
    }
}

#[test]
fn unknown_backend_is_rejected() {
    let routes = vec![route("r", "/", &[], &[("missing", 100)])];
    let result = Router::compile(
        snapshot(
            vec![VirtualHost {
                domains: vec!["h".into()],
                routes,
            }],
            vec![],
            &["b1"],
        ),
        &Router::empty(),
        &metrics(),
        10,
    );
    assert!(matches!(
        result,
        Err(InvalidSnapshot::UnknownBackend { .. })
    ));
}

#[test]
fn backend_state_survives_recompile() {
    let m = metrics();
    let routes = vec![route("r", "/", &[], &[("b1", 100)])];
    let first = Router::compile(
        snapshot(
            vec![VirtualHost {
                domains: vec!["h".into()],
                routes: routes.clone(),
            }],
            vec![],
            &["b1"],
        ),
        &Router::empty(),
        &m,
        10,
    )
    .expect("valid");
    let endpoint = first.backend("b1").expect("b1").endpoints()[0].clone();
    endpoint
        .in_flight
        .fetch_add(3, std::sync::atomic::Ordering::Relaxed);
    let second = Router::compile(
        snapshot(
            vec![VirtualHost {
                domains: vec!["h2".into()],
                routes,
            }],
            vec![],
            &["b1"],
        ),
        &first,
        &m,
        10,
    )
    .expect("valid");
    let carried = second.backend("b1").expect("b1").endpoints()[0].clone();
    assert!(Arc::ptr_eq(&endpoint, &carried));
    // The wait line and its counters carry over too.
    assert!(Arc::ptr_eq(
        &first.backend("b1").expect("b1").queue,
        &second.backend("b1").expect("b1").queue
    ));
    assert_eq!(
        carried.in_flight.load(std::sync::atomic::Ordering::Relaxed),
        3
    );
}

#[test]
fn normalize_host_cases() {
    let cases = [
        ("Hello.Example.COM", Some("hello.example.com")),
        ("hello.example.com:80", Some("hello.example.com")),
        ("HELLO.example.com:8080", Some("hello.example.com")),
        ("hello.example.com.", Some("hello.example.com")),
        ("[::1]:80", Some("[::1]")),
        ("[::1]", Some("[::1]")),
        ("plain", Some("plain")),
        ("", Some("")),
    ];
    for (input, want) in cases {
        let mut buf = [0u8; 256];
        assert_eq!(normalize_host(input, &mut buf), want, "input {input:?}");
    }
    let long = "A".repeat(300);
    let mut buf = [0u8; 256];
    assert_eq!(normalize_host(&long, &mut buf), None);
}
