//! Incrementality: the translator updated with only what changed shows exactly what one that
//! recomputes everything shows, and its deltas are exactly the differences.

use crate::object::{Kind, ObjectKey};
use crate::revision::ScalingTarget;
use crate::status::{CONDITION_LOAD_BALANCER_READY, CONDITION_NETWORK_CONFIGURED, STATUS_FALSE};
use crate::store::Store;
use crate::translate::test_support::{objects, state, translate_store, Harness, Mirror, Output};
use crate::translate::{StatusChange, Translator};
use crate::TranslateConfig;
use sluice_xds::cache::Change;
use sluice_xds::ResourceType;

const ECDSA_CRT: &str = include_str!("../../../tests/fixtures/ecdsa.crt");
const ECDSA_KEY: &str = include_str!("../../../tests/fixtures/ecdsa.key");
const RSA_CRT: &str = include_str!("../../../tests/fixtures/rsa.crt");
const RSA_KEY: &str = include_str!("../../../tests/fixtures/rsa.key");
const RSA_OTHER_KEY: &str = include_str!("../../../tests/fixtures/rsa-other.key");
const CLASS: &str = crate::translate::test_support::CLASS;

// ---------------------------------------------------------------------------------------------
// Random histories.

/// splitmix64: small, seeded, good enough to pick test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent`%.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const SERVICES: [&str; 3] = ["s0", "s1", "s2"];
const REVISIONS: [&str; 4] = ["v0", "v1", "v2", "v3"];
const SECRETS: [&str; 3] = ["t0", "t1", "t2"];
const HOSTS: [&str; 6] = [
    "a.example.com",
    "b.example.com",
    "B.example.com:80",
    "c.example.com",
    "x.ns.svc.cluster.local",
    "",
];
const ROUTE_HOSTS: [&str; 4] = ["a.example.com", "b.example.com", "r.example.com", "hello"];

fn service(rng: &mut Rng, name: &str) -> String {
    let spec = match rng.below(5) {
        0 => "{ports: [{name: http, port: 80, targetPort: 8080}]}",
        1 => "{ports: [{name: http2, port: 80, targetPort: 8080}]}",
        2 => "{ports: [{name: http, port: 80}, {name: h2c, port: 81, targetPort: 9090}]}",
        3 => "{type: ExternalName, externalName: ext.example.internal, ports: [{name: http, port: 80}]}",
        _ => "{ports: [{name: other, port: 90}]}",
    };
    format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: ns}}\nspec: {spec}\n")
}

fn endpoint_slice(rng: &mut Rng, name: &str) -> String {
    let label = if rng.chance(25) {
        format!("sluice.dev/revision: {}", rng.pick(&REVISIONS))
    } else {
        format!("kubernetes.io/service-name: {}", rng.pick(&SERVICES))
    };
    let ports = match rng.below(3) {
        0 => "[{name: http, port: 8080}]",
        1 => "[{name: h2c, port: 9090}, {name: http, port: 8081}]",
        _ => "[{port: 41000}]",
    };
    let mut endpoints = Vec::new();
    for i in 0..rng.below(3) {
        let ready = match rng.below(3) {
            0 => ", conditions: {ready: false}",
            1 => ", conditions: {ready: true}",
            _ => "",
        };
        endpoints.push(format!(
            "{{addresses: [10.0.{}.{}]{ready}}}",
            rng.below(2),
            i + 1
        ));
    }
    format!(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}, namespace: ns, labels: {{{label}}}}}\naddressType: IPv4\nports: {ports}\nendpoints: [{}]\n",
        endpoints.join(", ")
    )
}

fn secret(rng: &mut Rng, name: &str) -> String {
    let (crt, key) = match rng.below(8) {
        0..=2 => (ECDSA_CRT, ECDSA_KEY),
        3..=5 => (RSA_CRT, RSA_KEY),
        6 => (RSA_CRT, RSA_OTHER_KEY),
        _ => ("not a certificate", ECDSA_KEY),
    };
    let quoted = |s: &str| serde_json::to_string(s).expect("strings serialise");
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: ns}}\nstringData: {{tls.crt: {}, tls.key: {}}}\n",
        quoted(crt),
        quoted(key)
    )
}

fn pick_hosts<'a>(rng: &mut Rng, pool: &[&'a str], most: usize) -> Vec<&'a str> {
    let n = 1 + rng.below(most);
    (0..n).map(|_| *rng.pick(pool)).collect()
}

fn host_list(hosts: &[&str]) -> String {
    let quoted: Vec<String> = hosts.iter().map(|h| format!("'{h}'")).collect();
    format!("[{}]", quoted.join(", "))
}

fn hosts(rng: &mut Rng, pool: &[&str], most: usize) -> String {
    host_list(&pick_hosts(rng, pool, most))
}

fn timestamp(rng: &mut Rng) -> String {
    if rng.chance(40) {
        format!(
            ", creationTimestamp: '2024-0{}-01T00:00:00Z'",
            1 + rng.below(3)
        )
    } else {
        String::new()
    }
}

fn ingress(rng: &mut Rng, name: &str) -> String {
    let class = if rng.chance(10) {
        "istio.ingress.networking.knative.dev"
    } else {
        CLASS
    };
    let mut rules = Vec::new();
    let mut rule_hosts = Vec::new();
    for _ in 0..1 + rng.below(2) {
        let visibility = if rng.chance(60) {
            "ExternalIP"
        } else {
            "ClusterLocal"
        };
        let mut paths = Vec::new();
        for _ in 0..1 + rng.below(2) {
            let path = *rng.pick(&["", "/", "/api", "/.well-known/x"]);
            let headers = if rng.chance(30) {
                format!(", headers: {{X-Tag: {{exact: h{}}}}}", rng.below(3))
            } else {
                String::new()
            };
            let append = if rng.chance(30) {
                format!(", appendHeaders: {{X-Set: v{}}}", rng.below(3))
            } else {
                String::new()
            };
            let split = |rng: &mut Rng, percent: u32| {
                let port = *rng.pick(&["80", "81", "http"]);
                format!(
                    "{{serviceNamespace: ns, serviceName: {}, servicePort: {port}, percent: {percent}}}",
                    rng.pick(&SERVICES)
                )
            };
            let splits = match rng.below(4) {
                0 => format!("[{}, {}]", split(rng, 60), split(rng, 40)),
                // Invalid: the percents do not sum to 100.
                1 if rng.chance(30) => format!("[{}, {}]", split(rng, 50), split(rng, 40)),
                _ => format!("[{}]", split(rng, 100)),
            };
            paths.push(format!(
                "{{path: '{path}'{headers}{append}, splits: {splits}}}"
            ));
        }
        let hosts = pick_hosts(rng, &HOSTS, 2);
        rules.push(format!(
            "{{hosts: {}, visibility: {visibility}, http: {{paths: [{}]}}}}",
            host_list(&hosts),
            paths.join(", ")
        ));
        rule_hosts.push(hosts);
    }
    let tls = if rng.chance(50) {
        let entries: Vec<String> = (0..1 + rng.below(2))
            .map(|_| {
                // Mostly a rule's hosts (so Knative's selection picks it), sometimes plus
                // names other ingresses serve.
                let mut hosts = if rng.chance(80) {
                    rng.pick(&rule_hosts).clone()
                } else {
                    Vec::new()
                };
                hosts.extend(
                    pick_hosts(rng, &HOSTS[..5], 2)
                        .into_iter()
                        .take(rng.below(3)),
                );
                format!(
                    "{{hosts: {}, secretName: {}, secretNamespace: ns}}",
                    host_list(&hosts),
                    rng.pick(&SECRETS)
                )
            })
            .collect();
        format!("tls: [{}], ", entries.join(", "))
    } else {
        String::new()
    };
    let option = if rng.chance(30) {
        "httpOption: Redirected, "
    } else {
        ""
    };
    format!(
        "---\napiVersion: networking.internal.knative.dev/v1alpha1\nkind: Ingress\nmetadata: {{name: {name}, namespace: ns, annotations: {{networking.knative.dev/ingress.class: {class}}}{}}}\nspec: {{{option}{tls}rules: [{}]}}\n",
        timestamp(rng),
        rules.join(", ")
    )
}

fn route(rng: &mut Rng, name: &str) -> String {
    let visibility = if rng.chance(30) {
        ", visibility: ClusterLocal"
    } else {
        ""
    };
    let first = rng.pick(&REVISIONS);
    let mut traffic = match rng.below(3) {
        0 => vec![format!("{{revision: {first}, percent: 100}}")],
        1 => vec![
            format!("{{revision: {first}, percent: 70}}"),
            format!("{{revision: {}, percent: 30}}", rng.pick(&REVISIONS)),
        ],
        // Invalid: sums to 90.
        _ => vec![format!("{{revision: {first}, percent: 90}}")],
    };
    if rng.chance(40) {
        traffic.push(format!(
            "{{revision: {}, tag: {}}}",
            rng.pick(&REVISIONS),
            rng.pick(&["canary", "blue"])
        ));
    }
    format!(
        "---\napiVersion: sluice.dev/v1alpha1\nkind: Route\nmetadata: {{name: {name}, namespace: ns{}}}\nspec: {{hosts: {}{visibility}, traffic: [{}]}}\n",
        timestamp(rng),
        hosts(rng, &ROUTE_HOSTS, 2),
        traffic.join(", ")
    )
}

fn revision(rng: &mut Rng, name: &str) -> String {
    let annotations = match rng.below(4) {
        0 => ", annotations: {autoscaling.knative.dev/max-scale: '10'}",
        1 => ", annotations: {sluice.dev/max-buffered-requests: '0'}",
        _ => "",
    };
    let spec = match rng.below(6) {
        0 => format!("{{responder: {{message: m{}}}}}", rng.below(2)),
        1 => "{containerConcurrency: 2, process: {command: [srv]}}".to_string(),
        2 => format!(
            "{{service: {{name: {}, port: {}}}}}",
            rng.pick(&SERVICES),
            rng.pick(&["80", "http", "h2c"])
        ),
        3 => "{timeoutSeconds: 0, responder: {}}".to_string(),
        _ => "{responder: {}}".to_string(),
    };
    format!(
        "---\napiVersion: sluice.dev/v1alpha1\nkind: Revision\nmetadata: {{name: {name}, namespace: ns{annotations}}}\nspec: {spec}\n"
    )
}

fn config_autoscaler(rng: &mut Rng) -> String {
    let data = match rng.below(3) {
        0 => "{max-scale-limit: '5'}",
        1 => "{max-scale-up-rate: '0.5'}",
        _ => "{}",
    };
    format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: config-autoscaler, namespace: knative-serving}}\ndata: {data}\n")
}

/// One random edit of the store.
fn edit(rng: &mut Rng, store: &mut Store) {
    let (kind, yaml) = match rng.below(18) {
        0..=4 => {
            let name = format!("i{}", rng.below(5));
            (Kind::Ingress, ingress(rng, &name))
        }
        5 | 6 => {
            let name = *rng.pick(&SERVICES);
            (Kind::Service, service(rng, name))
        }
        7..=9 => {
            let name = format!("e{}", rng.below(5));
            (Kind::EndpointSlice, endpoint_slice(rng, &name))
        }
        10 | 11 => {
            let name = *rng.pick(&SECRETS);
            (Kind::Secret, secret(rng, name))
        }
        12 | 13 => {
            let name = format!("r{}", rng.below(3));
            (Kind::Route, route(rng, &name))
        }
        14..=16 => {
            let name = *rng.pick(&REVISIONS);
            (Kind::Revision, revision(rng, name))
        }
        _ => (Kind::ConfigMap, config_autoscaler(rng)),
    };
    let objects = objects(&yaml);
    if rng.chance(20) {
        // Delete instead: the object of that name, if any.
        for object in objects {
            store.delete(&object.key());
        }
    } else {
        assert!(objects.iter().all(|o| o.key().kind == kind));
        for object in objects {
            store.upsert(object);
        }
    }
}

fn full_output(translator: &Translator) -> Output {
    Output::of(translator)
}

fn scaling_targets(translator: &Translator) -> Vec<ScalingTarget> {
    translator.scaling_targets().cloned().collect()
}

/// What a history went through, to show the generators reach every case.
#[derive(Debug, Default)]
struct Coverage {
    certificates: usize,
    certificates_with_several_names: usize,
    several_certificates: usize,
    conflicts: usize,
    last_good_serving: usize,
    route_configs_of_routes: usize,
    revision_policies: usize,
    endpoints_with_addresses: usize,
    dns_backends: usize,
    invalid_autoscaler_config: usize,
    compared_with_fresh: usize,
}

impl Coverage {
    fn record(&mut self, output: &Output) {
        let count = |b: bool| usize::from(b);
        let certificates = output.certificates();
        self.certificates += count(!certificates.is_empty());
        self.certificates_with_several_names += count(
            certificates
                .values()
                .any(|c| c.external_hosts.len() + c.internal_hosts.len() > 1),
        );
        self.several_certificates += count(certificates.len() > 1);
        self.conflicts += count(output.statuses.iter().any(|s| {
            s.status
                .conditions
                .iter()
                .any(|c| c.reason.as_deref() == Some(crate::status::REASON_DOMAIN_CONFLICT))
        }));
        self.last_good_serving += count(output.statuses.iter().any(|s| {
            s.kind == "Ingress"
                && s.status
                    .condition(CONDITION_NETWORK_CONFIGURED)
                    .is_some_and(|c| c.status == STATUS_FALSE)
                && output
                    .route_configs()
                    .contains_key(format!("ingress/{}/{}", s.namespace, s.name).as_str())
        }));
        self.route_configs_of_routes += count(
            output
                .route_configs()
                .keys()
                .any(|name| name.starts_with("route/")),
        );
        self.revision_policies += count(!output.names(ResourceType::RevisionPolicy).is_empty());
        self.endpoints_with_addresses +=
            count(output.resources.values().any(
                |r| matches!(r, sluice_xds::Resource::Endpoints(e) if !e.addresses.is_empty()),
            ));
        self.dns_backends += count(
            output
                .backends()
                .values()
                .any(|b| matches!(b.target, sluice_xds::Target::Dns { .. })),
        );
    }

    fn record_targets(&mut self, targets: &[ScalingTarget]) {
        self.invalid_autoscaler_config += usize::from(targets.iter().any(|t| {
            t.scaling
                .as_ref()
                .is_err_and(|e| e.starts_with("configmap knative-serving/config-autoscaler"))
        }));
    }
}

fn any_ingress_failing(output: &Output) -> bool {
    output.statuses.iter().any(|s| {
        s.kind == "Ingress"
            && s.status
                .condition(CONDITION_NETWORK_CONFIGURED)
                .is_some_and(|c| c.status == STATUS_FALSE)
    })
}

/// Drives random histories through two translators on one store: `incremental` is told only
/// what changed; `everything` is also told every key in the store (so it recomputes all). They
/// must show the same thing after every step, and every delta must be exactly the difference.
#[test]
fn updating_with_only_the_changes_equals_recomputing_everything() {
    const SEEDS: u64 = 8;
    const STEPS: usize = 300;
    let mut coverage = Coverage::default();
    for seed in 0..SEEDS {
        let mut rng = Rng(seed);
        let mut store = Store::new();
        let mut incremental = Translator::new(TranslateConfig::default());
        let mut everything = Translator::new(TranslateConfig::default());
        let mut mirror = Mirror::default();
        let mut everything_mirror = Mirror::default();
        for step in 0..STEPS {
            let context = format!("seed {seed} step {step}");
            let unchanged = rng.chance(10);
            if unchanged {
                // Upsert an object exactly as stored: nothing changes.
                let keys: Vec<ObjectKey> = store.keys().cloned().collect();
                if !keys.is_empty() {
                    let key = &keys[rng.below(keys.len())];
                    let object = store.get(key).map(|e| e.object.clone());
                    if let Some(object) = object {
                        assert!(!store.upsert(object), "{context}: same object");
                    }
                }
            } else {
                for _ in 0..1 + rng.below(3) {
                    edit(&mut rng, &mut store);
                }
            }
            let changes = store.take_changes();
            let delta = incremental.update(&store, &changes);
            if changes.is_empty() {
                assert!(delta.is_empty(), "{context}: nothing changed, empty delta");
            }
            mirror.apply(delta);
            let output = Output::of(&incremental);
            assert_eq!(
                mirror.output(),
                output,
                "{context}: deltas add up to the view"
            );

            let mut all = changes;
            all.extend(store.all_as_changes());
            let delta = everything.update(&store, &all);
            everything_mirror.apply(delta);
            let recomputed = full_output(&everything);
            assert_eq!(
                everything_mirror.output(),
                recomputed,
                "{context}: deltas add up to the view (recomputing everything)"
            );
            assert_eq!(output, recomputed, "{context}: incremental == recomputed");
            let targets = scaling_targets(&incremental);
            assert_eq!(
                targets,
                scaling_targets(&everything),
                "{context}: scaling targets"
            );
            coverage.record_targets(&targets);

            // Without a failing ingress the last good plans play no part: a translator that
            // sees the store for the first time agrees.
            if !any_ingress_failing(&output) {
                assert_eq!(output, translate_store(&store), "{context}: == fresh");
                let mut fresh = Translator::new(TranslateConfig::default());
                fresh.update(&store, &store.all_as_changes());
                assert_eq!(
                    targets,
                    scaling_targets(&fresh),
                    "{context}: targets == fresh"
                );
                coverage.compared_with_fresh += 1;
            }
            coverage.record(&output);
            // A second update with nothing new changes nothing.
            assert!(
                incremental.update(&store, &[]).is_empty(),
                "{context}: an update without changes is empty"
            );
        }
    }
    // Every case came up, many times.
    let Coverage {
        certificates,
        certificates_with_several_names,
        several_certificates,
        conflicts,
        last_good_serving,
        route_configs_of_routes,
        revision_policies,
        endpoints_with_addresses,
        dns_backends,
        invalid_autoscaler_config,
        compared_with_fresh,
    } = coverage;
    for (case, steps) in [
        ("certificates", certificates),
        (
            "certificates with several names",
            certificates_with_several_names,
        ),
        ("several certificates", several_certificates),
        ("domain conflicts", conflicts),
        ("last good plans serving", last_good_serving),
        ("sluice Routes serving", route_configs_of_routes),
        ("revision policies", revision_policies),
        ("endpoints with addresses", endpoints_with_addresses),
        ("DNS backends", dns_backends),
        ("an invalid config-autoscaler", invalid_autoscaler_config),
        ("comparisons with a fresh translator", compared_with_fresh),
    ] {
        assert!(steps >= 20, "{case}: only {steps} steps: {coverage:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// One change, exactly its resources.

fn service_yaml(name: &str) -> String {
    format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: ns}}\nspec: {{ports: [{{name: http, port: 80}}]}}\n")
}

fn slice_yaml(name: &str, service: &str, addresses: &str) -> String {
    format!(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}, namespace: ns, labels: {{kubernetes.io/service-name: {service}}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints: [{{addresses: {addresses}}}]\n"
    )
}

fn ingress_yaml(name: &str, meta: &str, host: &str, service: &str, header: &str) -> String {
    format!(
        "---\napiVersion: networking.internal.knative.dev/v1alpha1\nkind: Ingress\nmetadata: {{name: {name}, namespace: ns, annotations: {{networking.knative.dev/ingress.class: {CLASS}}}{meta}}}\nspec: {{rules: [{{hosts: [{host}], http: {{paths: [{{appendHeaders: {{X-Version: '{header}'}}, splits: [{{serviceNamespace: ns, serviceName: {service}, servicePort: 80}}]}}]}}}}]}}\n"
    )
}

/// (type, name, put?) of each change.
fn changes(resources: &[Change]) -> Vec<(ResourceType, String, bool)> {
    let mut all: Vec<_> = resources
        .iter()
        .map(|c| match c {
            Change::Put(named) => (named.resource.type_(), named.name.clone(), true),
            Change::Remove(type_, name) => (*type_, name.clone(), false),
        })
        .collect();
    all.sort();
    all
}

#[test]
fn a_header_change_of_one_ingress_emits_only_its_route_config() {
    let mut h = Harness::of(
        &[
            service_yaml("s"),
            slice_yaml("s-1", "s", "[10.0.0.1]"),
            ingress_yaml("a", "", "a.example.com", "s", "1"),
            ingress_yaml("b", "", "b.example.com", "s", "1"),
        ]
        .concat(),
    );
    h.update();
    h.apply(&ingress_yaml("a", "", "a.example.com", "s", "2"));
    let delta = h.update();
    assert_eq!(
        changes(&delta.resources),
        [(ResourceType::RouteConfig, "ingress/ns/a".to_string(), true)]
    );
    // Its status changed too (a new generation), nobody else's.
    let statuses: Vec<_> = delta
        .statuses
        .iter()
        .map(|c| match c {
            StatusChange::Set(s) => (s.name.clone(), s.generation),
            StatusChange::Remove { name, .. } => panic!("{name} removed"),
        })
        .collect();
    assert_eq!(statuses, [("a".to_string(), 2)]);
}

#[test]
fn an_endpoint_slice_change_emits_only_the_endpoints_of_its_service() {
    let revision = "---\napiVersion: sluice.dev/v1alpha1\nkind: Revision\nmetadata: {name: v, namespace: ns}\nspec: {service: {name: s, port: 80}}\n---\napiVersion: sluice.dev/v1alpha1\nkind: Route\nmetadata: {name: r, namespace: ns}\nspec: {hosts: [r.example.com], traffic: [{revision: v, percent: 100}]}\n";
    let mut h = Harness::of(
        &[
            service_yaml("s"),
            service_yaml("t"),
            slice_yaml("s-1", "s", "[10.0.0.1]"),
            slice_yaml("t-1", "t", "[10.0.1.1]"),
            ingress_yaml("a", "", "a.example.com", "s", "1"),
            ingress_yaml("b", "", "b.example.com", "t", "1"),
            revision.to_string(),
        ]
        .concat(),
    );
    let first = h.run();
    assert_eq!(first.addresses("ns/v"), first.addresses("ns/s:80"));
    h.apply(&slice_yaml("s-1", "s", "[10.0.0.1, 10.0.0.2]"));
    let delta = h.update();
    // The Service's backend, and the Revision backed by the Service; nothing of `t`.
    assert_eq!(
        changes(&delta.resources),
        [
            (ResourceType::Endpoints, "ns/s:80".to_string(), true),
            (ResourceType::Endpoints, "ns/v".to_string(), true),
        ]
    );
    assert!(delta.statuses.is_empty(), "{:?}", delta.statuses);

    // A slice moving to another Service changes both, and only them.
    h.apply(&slice_yaml("s-1", "t", "[10.0.0.1, 10.0.0.2]"));
    let delta = h.update();
    assert_eq!(
        changes(&delta.resources),
        [
            (ResourceType::Endpoints, "ns/s:80".to_string(), true),
            (ResourceType::Endpoints, "ns/t:80".to_string(), true),
            (ResourceType::Endpoints, "ns/v".to_string(), true),
        ]
    );
    let after = Output::of(&h.translator);
    assert!(after.addresses("ns/s:80").is_empty());
    assert_eq!(after.addresses("ns/t:80").len(), 3);
}

fn tls_secret(crt: &str, key: &str) -> String {
    let quoted = |s: &str| serde_json::to_string(s).expect("strings serialise");
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: tls, namespace: ns}}\nstringData: {{tls.crt: {}, tls.key: {}}}\n",
        quoted(crt),
        quoted(key)
    )
}

#[test]
fn a_secret_rotation_replaces_the_certificate_by_name() {
    let web = format!(
        "---\napiVersion: networking.internal.knative.dev/v1alpha1\nkind: Ingress\nmetadata: {{name: web, namespace: ns, annotations: {{networking.knative.dev/ingress.class: {CLASS}}}}}\nspec: {{tls: [{{hosts: [web.example.com], secretName: tls, secretNamespace: ns}}], rules: [{{hosts: [web.example.com], http: {{paths: [{{splits: [{{serviceNamespace: ns, serviceName: s, servicePort: 80}}]}}]}}}}]}}\n"
    );
    let mut h = Harness::of(&[service_yaml("s"), web, tls_secret(ECDSA_CRT, ECDSA_KEY)].concat());
    let before = h.run();
    let old: Vec<String> = before
        .names(ResourceType::Certificate)
        .into_iter()
        .map(str::to_string)
        .collect();
    assert_eq!(old.len(), 1);
    assert!(old[0].starts_with("ns/tls#"), "{}", old[0]);

    h.apply(&tls_secret(RSA_CRT, RSA_KEY));
    let delta = h.update();
    let changed = changes(&delta.resources);
    assert_eq!(changed.len(), 2, "{changed:?}");
    let new = &changed
        .iter()
        .find(|(_, _, put)| *put)
        .expect("a new certificate")
        .1;
    assert_ne!(new, &old[0]);
    assert!(new.starts_with("ns/tls#"), "{new}");
    assert!(changed.contains(&(ResourceType::Certificate, old[0].clone(), false)));
    let after = Output::of(&h.translator);
    let certificate = after.certificates()[new.as_str()].clone();
    assert_eq!(certificate.cert_pem, RSA_CRT);
    assert_eq!(certificate.external_hosts, ["web.example.com"]);
    assert!(
        after.route_configs() == before.route_configs(),
        "routes do not change"
    );
}

#[test]
fn deleting_the_older_of_two_conflicting_ingresses_hands_the_host_over() {
    let mut h = Harness::of(
        &[
            service_yaml("s"),
            ingress_yaml(
                "old",
                ", creationTimestamp: '2024-01-01T00:00:00Z'",
                "h.example.com",
                "s",
                "1",
            ),
            ingress_yaml(
                "young",
                ", creationTimestamp: '2024-02-01T00:00:00Z'",
                "h.example.com",
                "s",
                "1",
            ),
        ]
        .concat(),
    );
    let before = h.run();
    assert_eq!(before.names(ResourceType::RouteConfig), ["ingress/ns/old"]);
    assert_eq!(
        state(
            before.status("Ingress", "young"),
            CONDITION_LOAD_BALANCER_READY
        )
        .1,
        "DomainConflict"
    );

    assert!(h.delete(Kind::Ingress, "ns", "old"));
    let delta = h.update();
    assert_eq!(
        changes(&delta.resources),
        [
            (
                ResourceType::RouteConfig,
                "ingress/ns/old".to_string(),
                false
            ),
            (
                ResourceType::RouteConfig,
                "ingress/ns/young".to_string(),
                true
            ),
        ],
        "the backend both use stays as it is"
    );
    let statuses: Vec<_> = delta
        .statuses
        .iter()
        .map(|c| match c {
            StatusChange::Set(s) => (s.name.clone(), state(s, CONDITION_LOAD_BALANCER_READY).1),
            StatusChange::Remove { name, .. } => (name.clone(), "removed".to_string()),
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("old".to_string(), "removed".to_string()),
            ("young".to_string(), "Uninitialized".to_string()),
        ]
    );
    let after = Output::of(&h.translator);
    assert_eq!(
        after.route_config("ingress/ns/young").external[0].domains,
        ["h.example.com"]
    );
}

#[test]
fn an_unchanged_store_gives_an_empty_delta() {
    let yaml = [
        service_yaml("s"),
        slice_yaml("s-1", "s", "[10.0.0.1]"),
        ingress_yaml("a", "", "a.example.com", "s", "1"),
    ]
    .concat();
    let mut h = Harness::of(&yaml);
    assert!(!h.update().is_empty());
    assert!(h.update().is_empty(), "no changes");
    // Upserting the same objects changes nothing stored.
    h.apply(&yaml);
    assert!(h.update().is_empty(), "the same objects again");
    // A change translation ignores (an unrelated label on the Service) yields nothing either.
    h.apply("---\napiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: ns, labels: {team: x}}\nspec: {ports: [{name: http, port: 80}]}\n");
    assert!(h.update().is_empty(), "an irrelevant change");
    assert!(!Output::of(&h.translator).resources.is_empty());
}
