use crate::object::Kind;
use crate::status::{
    ObjectStatus, StatusBoard, CONDITION_ALL_TRAFFIC_ASSIGNED, CONDITION_INGRESS_READY,
    CONDITION_READY, STATUS_FALSE, STATUS_TRUE, STATUS_UNKNOWN,
};
use crate::translate::test_support::{
    condition, state, store_of, translate_store, Harness, Output, CLASS,
};
use crate::translate::StatusChange;
use sluice_xds::{
    Backend, Forward, HeaderMatch, HeaderValue, ResourceType, Route, RouteAction, Split, Target,
    VirtualHost,
};

fn run(store: &crate::store::Store) -> Output {
    translate_store(store)
}

fn route(name: &str, extra_meta: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: sluice.dev/v1alpha1\nkind: Route\nmetadata:\n  name: {name}\n  namespace: ns\n{extra_meta}spec: {spec}\n"
    )
}

fn responder(name: &str) -> String {
    revision(name, "{responder: {message: hi}}")
}

fn revision(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: sluice.dev/v1alpha1\nkind: Revision\nmetadata: {{name: {name}, namespace: ns}}\nspec: {spec}\n"
    )
}

fn ingress(name: &str, extra_meta: &str, host: &str) -> String {
    format!(
        "---\napiVersion: networking.internal.knative.dev/v1alpha1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: ns\n  annotations: {{networking.knative.dev/ingress.class: {CLASS}}}\n{extra_meta}spec: {{rules: [{{hosts: [{host}], http: {{paths: [{{splits: [{{serviceNamespace: ns, serviceName: s, servicePort: 80}}]}}]}}}}]}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: s, namespace: ns}}\nspec: {{ports: [{{port: 80}}]}}\n"
    )
}

fn created(timestamp: &str) -> String {
    format!("  creationTimestamp: \"{timestamp}\"\n")
}

fn status<'a>(t: &'a Output, kind: &str, name: &str) -> &'a ObjectStatus {
    t.status(kind, name)
}

fn routes_of(table: &[VirtualHost], host: &str) -> Vec<Route> {
    table
        .iter()
        .find(|v| v.domains.iter().any(|d| d == host))
        .map_or(Vec::new(), |v| v.routes.clone())
}

fn hosts_of(table: &[VirtualHost]) -> Vec<String> {
    let mut hosts: Vec<String> = table.iter().flat_map(|v| v.domains.clone()).collect();
    hosts.sort();
    hosts
}

fn ids(routes: &[Route]) -> Vec<String> {
    routes.iter().map(|r| r.id.clone()).collect()
}

fn forward(route: &Route) -> &Forward {
    match &route.action {
        RouteAction::Forward(f) => f,
    }
}

fn header(name: &str, value: &str) -> HeaderValue {
    HeaderValue {
        name: name.to_string(),
        value: value.to_string(),
    }
}

fn revision_split(revision: &str, weight: u32) -> Split {
    Split {
        backend: format!("ns/{revision}"),
        weight,
        set_headers: vec![
            header("knative-serving-namespace", "ns"),
            header("knative-serving-revision", revision),
        ],
    }
}

#[test]
fn splits_and_tags_route_on_main_and_tag_hosts() {
    let yaml = [
        route(
            "hello",
            "",
            "{hosts: [Hello.Example.com, hello], traffic: [{revision: v1, percent: 90}, {revision: v2, percent: 10}, {revision: v2, tag: canary}]}",
        ),
        responder("v1"),
        responder("v2"),
    ]
    .concat();
    let t = run(&store_of(&yaml));

    let config = t.route_config("route/ns/hello");
    for (table, own) in [
        (t.external(), &config.external),
        (t.internal(), &config.internal),
    ] {
        // Every route of the table is the Route's own (its RouteConfig, owned by ns/hello).
        assert_eq!(&table, own);
        let table = &table;
        assert_eq!(
            hosts_of(table),
            [
                "canary-hello",
                "canary-hello.example.com",
                "hello",
                "hello.example.com"
            ]
        );
        for host in ["hello.example.com", "hello"] {
            let routes = routes_of(table, host);
            assert_eq!(
                ids(&routes),
                ["ns/hello#tag/canary", "ns/hello#default"],
                "{host}"
            );
            assert_eq!(
                routes[0].headers,
                [HeaderMatch {
                    name: "knative-serving-tag".to_string(),
                    exact: "canary".to_string()
                }]
            );
            assert_eq!(forward(&routes[0]).splits, [revision_split("v2", 100)]);
            assert!(routes[1].headers.is_empty());
            assert_eq!(
                forward(&routes[1]).splits,
                [revision_split("v1", 90), revision_split("v2", 10)]
            );
            assert!(routes.iter().all(|r| r.path_prefix == "/"));
            assert_eq!(config.owner, "ns/hello");
        }
        for host in ["canary-hello.example.com", "canary-hello"] {
            let routes = routes_of(table, host);
            assert_eq!(ids(&routes), ["ns/hello#tag/canary/host"], "{host}");
            assert_eq!(
                forward(&routes[0]).set_headers,
                [header("knative-serving-tag", "canary")]
            );
            assert_eq!(forward(&routes[0]).splits, [revision_split("v2", 100)]);
        }
    }

    let backends: Vec<&str> = t.backends().into_keys().collect();
    assert_eq!(backends, ["ns/v1", "ns/v2"]);
    let v1 = t.backend("ns/v1");
    assert!(matches!(v1.target, Target::Responder(_)));
    assert_eq!(v1.revision.as_deref(), Some("ns/v1"));
    assert!(t.policy("ns/v1").is_some(), "its policy, by the same name");
    assert_eq!(t.names(ResourceType::RevisionPolicy), ["ns/v1", "ns/v2"]);

    let hello = status(&t, "Route", "hello");
    assert_eq!(hello.api_version, "sluice.dev/v1alpha1");
    assert_eq!(state(hello, CONDITION_ALL_TRAFFIC_ASSIGNED).0, STATUS_TRUE);
    assert_eq!(
        state(hello, CONDITION_INGRESS_READY),
        (
            STATUS_UNKNOWN.to_string(),
            "Uninitialized".to_string(),
            "Waiting for load balancer to be ready".to_string()
        )
    );
    assert_eq!(state(hello, CONDITION_READY).0, STATUS_UNKNOWN);
    for name in ["v1", "v2"] {
        assert_eq!(
            state(status(&t, "Revision", name), CONDITION_READY).0,
            STATUS_TRUE
        );
    }
}

#[test]
fn cluster_local_route_is_internal_only() {
    let yaml = [
        route(
            "private",
            "",
            "{hosts: [private.ns], visibility: ClusterLocal, traffic: [{revision: v1, percent: 100, tag: t}]}",
        ),
        responder("v1"),
    ]
    .concat();
    let t = run(&store_of(&yaml));
    assert!(t.external().is_empty());
    assert_eq!(hosts_of(&t.internal()), ["private.ns", "t-private.ns"]);
}

#[test]
fn missing_revision_serves_nothing_and_names_it() {
    let yaml = [
        route(
            "hello",
            "",
            "{hosts: [hello.example.com], traffic: [{revision: v1, percent: 100}, {revision: v3}, {revision: v2}]}",
        ),
        responder("v1"),
    ]
    .concat();
    let t = run(&store_of(&yaml));
    assert!(t.external().is_empty(), "hosts answer 404");
    assert!(t.internal().is_empty());
    assert!(t.backends().is_empty());
    let hello = status(&t, "Route", "hello");
    let want = (
        STATUS_FALSE.to_string(),
        "RevisionMissing".to_string(),
        "route ns/hello: revisions ns/v2, ns/v3 not found".to_string(),
    );
    assert_eq!(state(hello, CONDITION_ALL_TRAFFIC_ASSIGNED), want);
    assert_eq!(state(hello, CONDITION_READY), want);
    assert_eq!(state(hello, CONDITION_INGRESS_READY).0, STATUS_UNKNOWN);
}

#[test]
fn unusable_revisions_fail_the_route_and_report_themselves() {
    let yaml = [
        route(
            "hello",
            "",
            "{hosts: [hello.example.com], traffic: [{revision: bad, percent: 50}, {revision: gone-svc, percent: 50}]}",
        ),
        revision("bad", "{timeoutSeconds: 0, responder: {}}"),
        revision("gone-svc", "{service: {name: gone, port: 80}}"),
        "---\napiVersion: sluice.dev/v1alpha1\nkind: Revision\nmetadata: {name: annotated, namespace: ns, annotations: {sluice.dev/max-buffered-requests: '-1'}}\nspec: {responder: {}}\n".to_string(),
    ]
    .concat();
    let t = run(&store_of(&yaml));
    assert!(t.external().is_empty());
    assert_eq!(
        state(status(&t, "Route", "hello"), CONDITION_ALL_TRAFFIC_ASSIGNED),
        (
            STATUS_FALSE.to_string(),
            "RevisionInvalid".to_string(),
            "route ns/hello: revision ns/bad: spec.timeoutSeconds is 0, want 1..=3600; \
             revision ns/gone-svc: service ns/gone not found"
                .to_string()
        )
    );
    let reasons: Vec<(String, String)> = ["annotated", "bad", "gone-svc"]
        .iter()
        .map(|name| {
            let (s, reason, _) = state(status(&t, "Revision", name), CONDITION_READY);
            (s, reason)
        })
        .collect();
    assert_eq!(
        reasons,
        [
            (STATUS_FALSE.to_string(), "InvalidAnnotation".to_string()),
            (STATUS_FALSE.to_string(), "InvalidRevision".to_string()),
            (STATUS_FALSE.to_string(), "ServiceNotFound".to_string()),
        ]
    );
}

#[test]
fn invalid_route_is_reported_and_serves_nothing() {
    let yaml = [
        route(
            "hello",
            "",
            "{hosts: [hello.example.com], traffic: [{revision: v1, percent: 90}]}",
        ),
        responder("v1"),
    ]
    .concat();
    let t = run(&store_of(&yaml));
    assert!(t.external().is_empty());
    assert_eq!(
        state(status(&t, "Route", "hello"), CONDITION_READY),
        (
            STATUS_FALSE.to_string(),
            "InvalidRoute".to_string(),
            "route ns/hello: traffic percentages sum to 90, want 100".to_string()
        )
    );
}

#[test]
fn zero_percent_revision_without_tag_gets_no_backend() {
    let yaml = [
        route(
            "hello",
            "",
            "{hosts: [h], traffic: [{revision: v1, percent: 100}, {revision: v2, percent: 0}]}",
        ),
        responder("v1"),
        responder("v2"),
    ]
    .concat();
    let t = run(&store_of(&yaml));
    let backends: Vec<&str> = t.backends().into_keys().collect();
    assert_eq!(backends, ["ns/v1"]);
    assert_eq!(
        forward(&routes_of(&t.external(), "h")[0]).splits,
        [revision_split("v1", 100)]
    );
}

#[test]
fn routes_sharing_a_revision_share_its_backend() {
    let yaml = [
        route(
            "a",
            "",
            "{hosts: [a], traffic: [{revision: v1, percent: 100}]}",
        ),
        route(
            "b",
            "",
            "{hosts: [b], traffic: [{revision: v1, percent: 100}]}",
        ),
        responder("v1"),
    ]
    .concat();
    let t = run(&store_of(&yaml));
    assert_eq!(t.backends().len(), 1);
    assert_eq!(hosts_of(&t.external()), ["a", "b"]);
    assert_eq!(ids(&routes_of(&t.external(), "b")), ["ns/b#default"]);
}

#[test]
fn revision_backend_carries_its_policy() {
    let yaml = [
        route("hello", "", "{hosts: [h], traffic: [{revision: p, percent: 100}]}"),
        "---\napiVersion: sluice.dev/v1alpha1\nkind: Revision\nmetadata: {name: p, namespace: ns, annotations: {sluice.dev/max-buffered-requests: '5'}}\nspec: {containerConcurrency: 1, timeoutSeconds: 20, idleTimeoutSeconds: 5, process: {command: [srv]}}\n".to_string(),
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: p-1, namespace: ns, labels: {sluice.dev/revision: p}}\naddressType: IPv4\nports: [{port: 41000}]\nendpoints: [{addresses: [127.0.0.1]}]\n".to_string(),
    ]
    .concat();
    let t = run(&store_of(&yaml));
    let backend: &Backend = t.backend("ns/p");
    assert_eq!(backend.revision.as_deref(), Some("ns/p"));
    let policy = t.policy("ns/p").expect("revision policy");
    assert_eq!(
        (
            policy.container_concurrency,
            policy.max_buffered,
            policy.timeout_seconds,
            policy.response_start_timeout_seconds,
            policy.idle_timeout_seconds
        ),
        (1, 5, 20, None, Some(5))
    );
    assert_eq!(backend.target, Target::Endpoints);
    assert_eq!(
        t.addresses("ns/p"),
        vec!["127.0.0.1:41000"
            .parse::<std::net::SocketAddr>()
            .expect("addr")]
    );
}

#[test]
fn older_kingress_keeps_its_host_from_a_newer_route() {
    let yaml = [
        ingress("old", &created("2024-01-01T00:00:00Z"), "shared.example.com"),
        route(
            "new",
            &created("2024-02-01T00:00:00Z"),
            "{hosts: [only-new.example.com, shared.example.com], traffic: [{revision: v1, percent: 100}]}",
        ),
        responder("v1"),
    ]
    .concat();
    let t = run(&store_of(&yaml));
    assert_eq!(hosts_of(&t.external()), ["shared.example.com"]);
    assert_eq!(
        ids(&routes_of(&t.external(), "shared.example.com")),
        ["ns/old#0/0"]
    );
    assert!(!t.backends().contains_key("ns/v1"));
    let new = status(&t, "Route", "new");
    assert_eq!(state(new, CONDITION_ALL_TRAFFIC_ASSIGNED).0, STATUS_TRUE);
    let want = (
        STATUS_FALSE.to_string(),
        "DomainConflict".to_string(),
        "route ns/new: host \"shared.example.com\" is already served by ingress ns/old".to_string(),
    );
    assert_eq!(state(new, CONDITION_INGRESS_READY), want);
    assert_eq!(state(new, CONDITION_READY), want);
    assert_eq!(
        state(status(&t, "Ingress", "old"), "NetworkConfigured").0,
        STATUS_TRUE
    );
}

#[test]
fn older_route_keeps_its_host_from_a_newer_kingress() {
    let yaml = [
        ingress(
            "new",
            &created("2024-02-01T00:00:00Z"),
            "canary-hello.example.com",
        ),
        route(
            "hello",
            &created("2024-01-01T00:00:00Z"),
            "{hosts: [hello.example.com], traffic: [{revision: v1, percent: 100, tag: canary}]}",
        ),
        responder("v1"),
    ]
    .concat();
    let t = run(&store_of(&yaml));
    assert_eq!(
        hosts_of(&t.external()),
        ["canary-hello.example.com", "hello.example.com"]
    );
    assert_eq!(
        ids(&routes_of(&t.external(), "canary-hello.example.com")),
        ["ns/hello#tag/canary/host"]
    );
    let (s, reason, message) = state(status(&t, "Ingress", "new"), "LoadBalancerReady");
    assert_eq!(
        (s.as_str(), reason.as_str()),
        (STATUS_FALSE, "DomainConflict")
    );
    assert!(
        message.ends_with("host \"canary-hello.example.com\" is already served by route ns/hello"),
        "{message}"
    );
    assert_eq!(
        state(status(&t, "Route", "hello"), CONDITION_INGRESS_READY).1,
        "Uninitialized"
    );
}

#[test]
fn without_timestamps_the_first_seen_route_wins() {
    let yaml = [
        route(
            "first",
            "",
            "{hosts: [x], traffic: [{revision: v1, percent: 100}]}",
        ),
        ingress("second", "", "x"),
        route(
            "third",
            "",
            "{hosts: [x], traffic: [{revision: v1, percent: 100}]}",
        ),
        responder("v1"),
    ]
    .concat();
    let t = run(&store_of(&yaml));
    assert_eq!(ids(&routes_of(&t.external(), "x")), ["ns/first#default"]);
    assert_eq!(
        state(status(&t, "Route", "third"), CONDITION_INGRESS_READY).2,
        "route ns/third: host \"x\" is already served by route ns/first"
    );
    assert_eq!(
        state(status(&t, "Ingress", "second"), "LoadBalancerReady").1,
        "DomainConflict"
    );
}

#[test]
fn a_failing_route_claims_no_hosts() {
    let yaml = [
        route(
            "broken",
            &created("2024-01-01T00:00:00Z"),
            "{hosts: [x], traffic: [{revision: missing, percent: 100}]}",
        ),
        ingress("later", &created("2024-02-01T00:00:00Z"), "x"),
    ]
    .concat();
    let t = run(&store_of(&yaml));
    assert_eq!(ids(&routes_of(&t.external(), "x")), ["ns/later#0/0"]);
    assert_eq!(
        state(status(&t, "Route", "broken"), CONDITION_READY).1,
        "RevisionMissing"
    );
}

#[test]
fn route_is_ready_once_applied_even_at_scale_zero() {
    let yaml = [
        route(
            "hello",
            "",
            "{hosts: [h], traffic: [{revision: p, percent: 100}]}",
        ),
        revision("p", "{process: {command: [srv]}}"),
    ]
    .concat();
    let mut h = Harness::of(&yaml);
    let first = h.update();
    let t = Output::of(&h.translator);
    assert_eq!(t.backend("ns/p").target, Target::Endpoints);
    assert_eq!(t.addresses("ns/p"), vec![]);

    // The board hears translation's status changes at the config sequence carrying them.
    let mut board = StatusBoard::default();
    board.update(1, first.statuses, "t1");
    let shown = |board: &StatusBoard| {
        board
            .get("Route", "ns", "hello")
            .expect("route status")
            .clone()
    };
    assert_eq!(state(&shown(&board), CONDITION_READY).0, STATUS_UNKNOWN);
    assert!(!board.applied(0, "t2"), "an earlier sequence is not enough");
    assert!(board.applied(1, "t2"));
    let ready = shown(&board);
    assert_eq!(state(&ready, CONDITION_INGRESS_READY).0, STATUS_TRUE);
    assert_eq!(state(&ready, CONDITION_READY).0, STATUS_TRUE);
    assert_eq!(
        condition(&ready, CONDITION_READY)
            .last_transition_time
            .as_deref(),
        Some("t2")
    );
    assert!(ready.status.public_load_balancer.is_none());

    // A failing Route never waits for the data plane.
    assert!(h.delete(Kind::Revision, "ns", "p"));
    let broken = h.update();
    assert!(broken
        .statuses
        .iter()
        .any(|c| matches!(c, StatusChange::Remove { kind, .. } if kind == "Revision")));
    board.update(2, broken.statuses, "t3");
    board.applied(2, "t4");
    assert_eq!(state(&shown(&board), CONDITION_READY).1, "RevisionMissing");
}

#[test]
fn every_revision_gets_a_status_referenced_or_not() {
    let yaml = [responder("lonely"), revision("broken", "{}")].concat();
    let t = run(&store_of(&yaml));
    assert!(t.backends().is_empty());
    let lonely = status(&t, "Revision", "lonely");
    assert_eq!(lonely.api_version, "sluice.dev/v1alpha1");
    assert_eq!(lonely.status.observed_generation, 1);
    assert_eq!(state(lonely, CONDITION_READY).0, STATUS_TRUE);
    assert_eq!(
        state(status(&t, "Revision", "broken"), CONDITION_READY),
        (
            STATUS_FALSE.to_string(),
            "InvalidRevision".to_string(),
            "revision ns/broken: no backend: set exactly one of spec.service, spec.process, spec.responder".to_string()
        )
    );
}

#[test]
fn annotations_are_validated_against_config_autoscaler() {
    let limit = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: config-autoscaler, namespace: knative-serving}\ndata: {max-scale-limit: '5', max-scale: '5'}\n";
    let rev = "---\napiVersion: sluice.dev/v1alpha1\nkind: Revision\nmetadata: {name: r, namespace: ns, annotations: {autoscaling.knative.dev/max-scale: '10'}}\nspec: {responder: {}}\n";
    let t = run(&store_of(&format!("{limit}{rev}")));
    assert_eq!(
        state(status(&t, "Revision", "r"), CONDITION_READY).1,
        "InvalidAnnotation"
    );
    // Without the ConfigMap (or with an invalid one), Knative's defaults apply.
    let t = run(&store_of(rev));
    assert_eq!(
        state(status(&t, "Revision", "r"), CONDITION_READY).0,
        STATUS_TRUE
    );
}
