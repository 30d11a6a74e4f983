use super::*;
use crate::history::History;
use crate::hub::{Hub, HubMetrics};
use crate::manifest::parse_file;
use crate::TranslateConfig;
use prometheus::Registry;
use std::time::{Duration, UNIX_EPOCH};

const CONFIG: &str = "---
apiVersion: networking.internal.knative.dev/v1alpha1
kind: Ingress
metadata:
  name: shop
  namespace: ns
  annotations: {networking.knative.dev/ingress.class: sluice.ingress.networking.knative.dev}
spec:
  rules:
  - hosts: [shop.example.com]
    visibility: ExternalIP
    http:
      paths:
      - splits:
        - {serviceName: blue, serviceNamespace: ns, servicePort: 80, percent: 90}
        - {serviceName: green, serviceNamespace: ns, servicePort: 80, percent: 10}
---
apiVersion: sluice.dev/v1alpha1
kind: Revision
metadata: {name: hello-1, namespace: ns}
spec:
  responder: {}
---
apiVersion: sluice.dev/v1alpha1
kind: Route
metadata: {name: hello, namespace: ns}
spec:
  hosts: [hello.example.com]
  traffic:
  - {revisionName: hello-1, percent: 100, tag: current}
";

#[test]
fn the_overview_shows_routes_ingresses_and_revisions_with_their_history() {
    let hub = Hub::new(
        TranslateConfig::default(),
        HubMetrics::new(&Registry::new()).expect("fresh registry"),
    );
    let file = parse_file("all.yaml".to_string(), CONFIG);
    assert!(file.problems.is_empty(), "{:?}", file.problems);
    hub.edit(|c| c.apply_manifest_files(vec![file], &[]));
    let history = History::new(Duration::from_secs(60));
    history.start(
        "ns/hello-1",
        crate::autoscaler::config::Metric::Concurrency,
        0,
        UNIX_EPOCH,
        0,
    );
    let overview = hub.overview(history.view(SHOWN_SECONDS), 42);
    let json = serde_json::to_value(&overview).expect("serialisable");

    assert_eq!(json["now_unix_ms"], 42);
    assert_eq!(json["routes"][0]["id"], "ns/hello");
    assert_eq!(json["routes"][0]["url"], "http://hello.example.com");
    assert_eq!(json["routes"][0]["traffic"][0]["tag"], "current");
    assert_eq!(json["routes"][0]["traffic"][0]["percent"], 100);
    // No proxy has applied anything: not ready yet, and it says why.
    assert_eq!(json["routes"][0]["ready"]["status"], "Unknown");

    let ingress = &json["ingresses"][0];
    assert_eq!(ingress["id"], "ns/shop");
    assert_eq!(ingress["rules"][0]["hosts"][0], "shop.example.com");
    assert_eq!(ingress["rules"][0]["visibility"], "ExternalIP");
    let splits = &ingress["rules"][0]["paths"][0]["splits"];
    assert_eq!(splits[0]["backend"], "ns/blue:80");
    assert_eq!(splits[0]["percent"], 90);
    assert_eq!(splits[1]["backend"], "ns/green:80");

    let revision = &json["revisions"][0];
    assert_eq!(revision["id"], "ns/hello-1");
    assert_eq!(revision["metric"], "concurrency");
    assert_eq!(
        revision["origin_unix_ms"], 0,
        "the page places points by it"
    );
    assert_eq!(
        revision["decisions"][0]["text"], "autoscaling starts at 0",
        "{revision}"
    );
}
