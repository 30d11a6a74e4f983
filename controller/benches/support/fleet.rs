//! The Knative-shaped fleet the benches, `examples/xds_sizes.rs` and `perf/fleet` measure: one
//! manifest file per KIngress holding the ingress, its two revision Services and their
//! EndpointSlices. Each ingress has 4 hosts (rule 1 ClusterLocal: `svcN.bench`,
//! `svcN.bench.svc`, `svcN.bench.svc.cluster.local`; rule 2 ExternalIP:
//! `svcN.bench.example.com`) and one path splitting between `svcN-00001` and `svcN-00002`
//! (port 80, each split with Knative's `appendHeaders`). `perf/fleet` writes the same shape
//! (its `ingress_file`); keep the two in step.
//!
//! Shared by path (`#[path = ...]`) so the controller's and the proxy's benches build the same
//! objects; not part of any library.

#![allow(dead_code)]

use sluice_controller::manifest::{parse_file, ManifestFile, ManifestSet};
use sluice_controller::{Controller, TranslateConfig};

pub const NAMESPACE: &str = "bench";
pub const CLASS: &str = "sluice.ingress.networking.knative.dev";

/// Where the two revisions' endpoints point (any address: nothing connects in the benches).
pub const PORT_A: u16 = 18081;
pub const PORT_B: u16 = 18082;

/// The file name of ingress `i`.
pub fn file_name(i: usize) -> String {
    format!("svc{i:05}.yaml")
}

fn service(name: &str, port: u16, address: &str) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  ports: [{{name: http, port: 80, targetPort: {port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-abcde
  namespace: {NAMESPACE}
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: http, port: {port}}}]
endpoints: [{{addresses: [\"{address}\"], conditions: {{ready: true}}}}]
---
"
    )
}

fn split(ingress: &str, revision: u32, percent: u32) -> String {
    let svc = format!("{ingress}-{revision:05}");
    format!(
        "        - {{serviceName: {svc}, serviceNamespace: {NAMESPACE}, servicePort: 80, percent: {percent}, \
         appendHeaders: {{Knative-Serving-Namespace: {NAMESPACE}, Knative-Serving-Revision: {svc}}}}}\n"
    )
}

/// The manifest text of ingress `i`: `percent_a` of the traffic to revision 1, the rest to
/// revision 2 (50 in the fleet as generated; the benches move it to change one route), and
/// revision 1's endpoint at `address_a` (changing it changes one EndpointSlice).
pub fn ingress_text(i: usize, percent_a: u32, address_a: &str) -> String {
    let name = format!("svc{i}");
    // Both splits always, 0% included: moving the traffic changes the route alone.
    let splits = split(&name, 1, percent_a) + &split(&name, 2, 100 - percent_a);
    let mut text = service(&format!("{name}-00001"), PORT_A, address_a);
    text += &service(&format!("{name}-00002"), PORT_B, "127.0.0.1");
    text += &format!(
        "apiVersion: networking.internal.knative.dev/v1alpha1
kind: Ingress
metadata:
  name: {name}
  namespace: {NAMESPACE}
  annotations: {{networking.knative.dev/ingress.class: {CLASS}}}
spec:
  rules:
  - hosts: [{name}.{NAMESPACE}, {name}.{NAMESPACE}.svc, {name}.{NAMESPACE}.svc.cluster.local]
    visibility: ClusterLocal
    http:
      paths:
      - splits:
{splits}  - hosts: [{name}.{NAMESPACE}.example.com]
    visibility: ExternalIP
    http:
      paths:
      - splits:
{splits}"
    );
    text
}

/// Ingress `i` as a parsed manifest file.
pub fn ingress_file(i: usize, percent_a: u32, address_a: &str) -> ManifestFile {
    let file = parse_file(file_name(i), &ingress_text(i, percent_a, address_a));
    assert!(file.problems.is_empty(), "{:?}", file.problems);
    file
}

/// The whole fleet as the manifest source would read it.
pub fn manifest_set(n: usize) -> ManifestSet {
    ManifestSet {
        files: (0..n).map(|i| ingress_file(i, 50, "127.0.0.1")).collect(),
    }
}

/// A controller holding the fleet, not translated yet.
pub fn loaded_controller(set: ManifestSet) -> Controller {
    let mut controller = Controller::new(TranslateConfig::default());
    controller.apply_manifests(set);
    controller
}

/// The fleet size: `SLUICE_BENCH_N`, default 10,000.
pub fn fleet_size() -> usize {
    std::env::var("SLUICE_BENCH_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000)
}
