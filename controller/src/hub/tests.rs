use super::*;
use crate::manifest::parse_file;
use sluice_xds::load::RevisionLoad;
use sluice_xds::server::SessionEvents;

const CLASS: &str = "sluice.ingress.networking.knative.dev";

fn hub() -> Arc<Hub> {
    Hub::new(
        TranslateConfig::default(),
        HubMetrics::new(&Registry::new()).expect("fresh registry"),
    )
}

fn ingress(name: &str, host: &str) -> String {
    format!(
        "---\napiVersion: networking.internal.knative.dev/v1alpha1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: ns\n  annotations: {{networking.knative.dev/ingress.class: {CLASS}}}\nspec: {{rules: [{{hosts: [{host}], http: {{paths: [{{splits: [{{serviceNamespace: ns, serviceName: s, servicePort: 80}}]}}]}}}}]}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: s, namespace: ns}}\nspec: {{ports: [{{port: 80}}]}}\n"
    )
}

/// Applies `yaml` as manifest file `file`; returns the sequence that carries it.
fn write(hub: &Hub, file: &str, yaml: &str) -> u64 {
    let parsed = parse_file(file.to_string(), yaml);
    let (_, seq) = hub.edit(|c| c.apply_manifest_files(vec![parsed], &[]));
    seq
}

fn node(id: &str) -> Node {
    Node {
        id: id.to_string(),
        ..Node::default()
    }
}

fn peer() -> Peer {
    Peer {
        address: "127.0.0.1:1".to_string(),
        identity: "token".to_string(),
    }
}

/// (status, reason) of `type_` on Ingress ns/`name`.
fn condition(hub: &Hub, name: &str, type_: &str) -> (String, Option<String>) {
    let statuses = hub.statuses();
    let status = statuses
        .iter()
        .find(|s| s.kind == "Ingress" && s.name == name)
        .unwrap_or_else(|| panic!("no status for ingress {name}"));
    let c = status
        .status
        .condition(type_)
        .unwrap_or_else(|| panic!("no {type_} on {name}"));
    (c.status.clone(), c.reason.clone())
}

fn lb_ready(hub: &Hub, name: &str) -> String {
    condition(hub, name, "LoadBalancerReady").0
}

#[test]
fn an_ingress_is_ready_only_once_every_connected_proxy_applied_it() {
    let hub = hub();
    let seq = write(&hub, "a.yaml", &ingress("a", "a.example.com"));
    assert_eq!(lb_ready(&hub, "a"), "Unknown", "no proxy yet");
    hub.connected(1, &node("p1"), &peer());
    hub.connected(2, &node("p2"), &peer());
    hub.applied(1, seq);
    assert_eq!(lb_ready(&hub, "a"), "Unknown", "p2 has not applied it");
    hub.applied(2, seq);
    assert_eq!(lb_ready(&hub, "a"), "True");

    // A new generation waits again; a laggard that disconnects no longer holds it back.
    let next = write(&hub, "a.yaml", &ingress("a", "b.example.com"));
    assert!(next > seq);
    hub.applied(1, next);
    assert_eq!(lb_ready(&hub, "a"), "Unknown");
    hub.disconnected(2);
    assert_eq!(lb_ready(&hub, "a"), "True");
}

#[test]
fn a_refused_resource_shows_on_its_owner_until_a_version_is_accepted() {
    let hub = hub();
    let seq = write(
        &hub,
        "a.yaml",
        &(ingress("a", "a.example.com") + &ingress("b", "b.example.com")),
    );
    hub.connected(1, &node("p1"), &peer());
    hub.applied(1, seq);
    let refused = Rejected {
        type_: ResourceType::RouteConfig,
        name: "ingress/ns/a".to_string(),
        version: "v".to_string(),
        reason: "invalid header x-bad".to_string(),
    };
    hub.rejections(1, vec![refused]);
    let (status, reason) = condition(&hub, "a", "LoadBalancerReady");
    assert_eq!(
        (status.as_str(), reason.as_deref()),
        ("False", Some(crate::status::REASON_PROXY_REJECTED))
    );
    let message = hub
        .statuses()
        .into_iter()
        .find(|s| s.name == "a" && s.kind == "Ingress")
        .and_then(|s| {
            s.status
                .condition("LoadBalancerReady")
                .and_then(|c| c.message.clone())
        })
        .unwrap_or_default();
    assert!(
        message.contains("p1") && message.contains("invalid header x-bad"),
        "{message}"
    );
    assert_eq!(lb_ready(&hub, "b"), "True", "other objects are unaffected");
    assert_eq!(
        hub.metrics
            .rejected
            .with_label_values(&["routeConfig"])
            .get(),
        1
    );
    assert_eq!(hub.metrics.nacks.get(), 1);
    // The proxy's entry says what it refuses.
    let proxy = hub
        .statuses()
        .into_iter()
        .find(|s| s.kind == "Proxy")
        .expect("a proxy entry");
    assert_eq!(
        proxy.status.condition("Ready").map(|c| c.status.as_str()),
        Some("False")
    );

    hub.rejections(1, Vec::new());
    assert_eq!(
        lb_ready(&hub, "a"),
        "True",
        "refusal cleared, already applied"
    );
    assert_eq!(
        hub.metrics
            .rejected
            .with_label_values(&["routeConfig"])
            .get(),
        0
    );
    assert_eq!(
        hub.metrics.nacks.get(),
        1,
        "the counter counts refusals, never down"
    );
}

#[test]
fn a_disconnected_proxys_refusals_go_with_it() {
    let hub = hub();
    let seq = write(&hub, "a.yaml", &ingress("a", "a.example.com"));
    hub.connected(1, &node("p1"), &peer());
    hub.connected(2, &node("p2"), &peer());
    hub.applied(1, seq);
    hub.applied(2, seq);
    hub.rejections(
        2,
        vec![Rejected {
            type_: ResourceType::Backend,
            name: "ns/s:80".to_string(),
            version: "v".to_string(),
            reason: "bad".to_string(),
        }],
    );
    assert_eq!(
        lb_ready(&hub, "a"),
        "False",
        "a refused backend blocks its users"
    );
    hub.disconnected(2);
    assert_eq!(lb_ready(&hub, "a"), "True");
}

#[tokio::test(start_paused = true)]
async fn proxies_load_is_summed_and_pokes_are_collected() {
    let hub = hub();
    let load = |c: f64| LoadReport {
        interval_ms: 1000,
        revisions: vec![RevisionLoad {
            revision: "ns/r".to_string(),
            concurrency: c,
            requests: c,
            held: 0,
        }],
    };
    hub.connected(1, &node("p1"), &peer());
    hub.connected(2, &node("p2"), &peer());
    hub.load(1, load(2.0));
    hub.load(2, load(3.0));
    let (samples, proxies) = hub.collect_load(tokio::time::Instant::now());
    assert_eq!(proxies, 2);
    assert_eq!(samples["ns/r"].concurrency, 5.0);
    hub.disconnected(2);
    let (samples, proxies) = hub.collect_load(tokio::time::Instant::now());
    assert_eq!((proxies, samples["ns/r"].concurrency), (1, 2.0));

    let poke = Poke {
        revisions: vec![RevisionLoad {
            revision: "ns/r".to_string(),
            concurrency: 1.0,
            requests: 1.0,
            held: 0,
        }],
    };
    hub.poke(1, poke.clone());
    hub.poke(1, poke);
    tokio::time::timeout(Duration::from_secs(1), hub.poke_notify().notified())
        .await
        .expect("a poke wakes the autoscaler");
    let pokes = hub.take_pokes();
    assert_eq!(pokes["ns/r"].concurrency, 2.0);
    assert!(hub.take_pokes().is_empty());
}

#[tokio::test(start_paused = true)]
async fn waiting_for_the_fleet_returns_at_once_without_proxies_and_bounded_otherwise() {
    let hub = hub();
    assert!(
        hub.wait_applied(7, Duration::from_secs(1)).await,
        "nobody to wait for"
    );
    hub.connected(1, &node("p1"), &peer());
    assert!(
        !hub.wait_applied(7, Duration::from_secs(1)).await,
        "times out"
    );
    hub.applied(1, 7);
    assert!(hub.wait_applied(7, Duration::from_secs(1)).await);
}
