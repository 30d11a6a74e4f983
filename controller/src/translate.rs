//! KIngress → [`Snapshot`]: a pure function of the store, the config and the last-good cache.
//!
//! Per class-matching ingress (annotation `networking.knative.dev/ingress.class` equal to the
//! configured class; others are ignored entirely and get no status):
//! 1. Knative defaulting and validation ([`crate::ingress`]), then the Knative hash of the
//!    defaulted spec ([`crate::hash`]).
//! 2. InsertProbe: each path P of a rule gets a copy P′ that additionally matches
//!    `k-network-hash: override` and sets `k-network-hash: <hash>`; a rule's routes are
//!    `[P1′..Pn′, P1..Pn]`. Route ids are `ns/name#<rule>/<path>`, copies end in `/probe`.
//! 3. Every split's backend (`ns/svc:<servicePort as written>`) is resolved from the store
//!    ([`backend`]).
//!
//! A failing ingress (invalid, Service or Service port missing) gets `NetworkConfigured=False`.
//! If an earlier translation of it succeeded, that last good translation keeps serving, with
//! its backends re-resolved from the current store (a vanished Service serves no endpoints);
//! otherwise it contributes nothing. Other ingresses are unaffected. Deleted ingresses leave
//! the cache at once.
//!
//! **Hosts.** Lower-cased, `:port` stripped; an empty host list means `"*"`. ExternalIP rules
//! go to both the external and the internal table, every other visibility to internal only.
//!
//! **Domain conflicts.** A host may belong to one ingress only. Ingresses claim their hosts
//! oldest first: earlier `creationTimestamp`, then earlier first-seen sequence, then `ns/name`
//! (an object with a timestamp counts as older than one without, which keeps the order total).
//! An ingress that shares any host with an older one is excluded entirely and gets
//! `LoadBalancerReady=False` reason `DomainConflict`.
//!
//! **Route precedence.** Within a virtual host the routes of all rules naming that host are
//! concatenated in rule order and then stable-sorted by path prefix length, longest first (an
//! empty path is `"/"`). Equal prefixes keep spec order, so probe copies come before the routes
//! they copy and header-matched paths listed first keep winning over catch-alls. This is
//! net-kourier's order, under which ACME `/.well-known/...` paths beat `/`.
//!
//! **sluice Routes and Revisions** ([`routes`]) go into the same tables and backends, and take
//! part in the same domain-conflict check.
//!
//! Hosts of one table with identical route lists share one [`VirtualHost`]. All output is
//! sorted; nothing depends on hash-map order.
//!
//! **TLS** ([`tls`]). The `spec.tls` entries Knative's per-visibility selection picks become
//! [`sluice_xds::Certificate`]s, read and validated from their Secrets; a missing or bad Secret
//! fails the ingress like a missing Service (its last good translation, previous certificate
//! included, keeps serving). Certificates are listed oldest ingress first, then in spec order,
//! so on a shared SNI name the older ingress wins, as it does for hosts. `httpOption:
//! Redirected` sets `https_redirect` on the ingress's routes in the external table only.

use crate::hash::ingress_hash;
use crate::ingress::{set_defaults, validate, InvalidIngress};
use crate::object::{
    HttpIngressPath, Ingress, IntOrString, ObjectKey, INGRESS_CLASS_ANNOTATION,
    VISIBILITY_EXTERNAL_IP,
};
use crate::status::{
    Condition, ObjectStatus, CONDITION_LOAD_BALANCER_READY, CONDITION_NETWORK_CONFIGURED,
    MESSAGE_DOMAIN_CONFLICT, MESSAGE_UNINITIALIZED, REASON_DOMAIN_CONFLICT, REASON_UNINITIALIZED,
    STATUS_FALSE, STATUS_TRUE, STATUS_UNKNOWN,
};
use crate::store::{Store, StoredIngress};
use crate::{TranslateConfig, Translation};
use sluice_xds::{
    Backend, Certificate, Forward, HeaderMatch, HeaderValue, Protocol, Route, RouteAction,
    RouteTable, Snapshot, Split, Target, VirtualHost,
};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

pub mod backend;
pub mod routes;
pub mod tls;

pub use backend::ResolveError;
pub use tls::SecretError;

/// `spec.httpOption` value that redirects plain HTTP on ExternalIP rules to HTTPS.
pub const HTTP_OPTION_REDIRECTED: &str = "Redirected";

/// The header the readiness prober uses (lower-case, as it appears in the snapshot).
pub const PROBE_HASH_HEADER: &str = "k-network-hash";
/// The value the prober sends, which the probe route replaces with the ingress hash.
pub const PROBE_HASH_OVERRIDE: &str = "override";

/// Why one ingress could not be translated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    #[error(transparent)]
    Invalid(#[from] InvalidIngress),
    #[error("ingress {ingress}: {error}")]
    Backend {
        ingress: String,
        error: ResolveError,
    },
    #[error("ingress {ingress}: {error}")]
    Secret { ingress: String, error: SecretError },
}

impl TranslateError {
    /// The `NetworkConfigured=False` reason.
    pub fn reason(&self) -> &'static str {
        match self {
            TranslateError::Invalid(_) => "InvalidIngress",
            TranslateError::Backend { error, .. } => error.reason(),
            TranslateError::Secret { error, .. } => error.reason(),
        }
    }
}

/// The last successful translation of each ingress, so that a bad update keeps the old
/// routes serving.
#[derive(Clone, Debug, Default)]
pub struct LastGood {
    plans: BTreeMap<ObjectKey, Plan>,
    key_pairs: tls::KeyPairChecks,
}

impl LastGood {
    pub fn len(&self) -> usize {
        self.plans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.plans.is_empty()
    }

    pub fn contains(&self, key: &ObjectKey) -> bool {
        self.plans.contains_key(key)
    }
}

/// One ingress's routes before backend resolution.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Plan {
    rules: Vec<PlannedRule>,
    /// Backend id → what it refers to.
    backends: BTreeMap<String, BackendRef>,
    /// With their PEM content, so that a Secret turned bad keeps serving the old one.
    certificates: Vec<Certificate>,
    /// `httpOption: Redirected`: the external table's routes redirect plain HTTP.
    https_redirect: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct PlannedRule {
    external: bool,
    /// Normalised, deduplicated, in spec order.
    hosts: Vec<String>,
    /// Probe copies first, then the paths, in spec order (not yet precedence-sorted).
    routes: Vec<Route>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct BackendRef {
    namespace: String,
    service: String,
    port: IntOrString,
    /// From the last successful resolution: used when the Service has since vanished.
    protocol: Protocol,
}

/// An ingress with something to serve.
struct Candidate<'a> {
    key: ObjectKey,
    stored: StoredIngress<'a>,
    plan: Plan,
    backends: BTreeMap<String, Backend>,
    /// Set when `plan` is the last good one because the current spec failed.
    error: Option<TranslateError>,
}

/// Translates every class-matching ingress, and every sluice Route and Revision ([`routes`]),
/// in `store`. Statuses cover exactly those objects, sorted by kind, namespace and name.
pub fn translate(store: &Store, config: &TranslateConfig, last_good: &mut LastGood) -> Translation {
    let mut resolved = Resolver::new(store);
    let mut candidates = Vec::new();
    let mut statuses = BTreeMap::new();
    let mut seen = BTreeSet::new();

    for stored in store.ingresses() {
        let meta = &stored.ingress.metadata;
        if meta.annotations.get(INGRESS_CLASS_ANNOTATION) != Some(&config.ingress_class) {
            continue;
        }
        let key = ObjectKey::new(crate::object::Kind::Ingress, &meta.namespace, &meta.name);
        seen.insert(key.clone());
        let fresh = plan_ingress(stored.ingress, &mut resolved, &mut last_good.key_pairs);
        match fresh {
            Ok((plan, backends)) => {
                last_good.plans.insert(key.clone(), plan.clone());
                candidates.push(Candidate {
                    key,
                    stored,
                    plan,
                    backends,
                    error: None,
                });
            }
            Err(error) => match last_good.plans.get(&key) {
                Some(plan) => {
                    let backends = resolved.lenient(&plan.backends);
                    candidates.push(Candidate {
                        key,
                        stored,
                        plan: plan.clone(),
                        backends,
                        error: Some(error),
                    });
                }
                None => {
                    let status = ingress_status(stored, Some(&error), None);
                    statuses.insert(key, status);
                }
            },
        }
    }
    last_good.plans.retain(|key, _| seen.contains(key));
    last_good.key_pairs.sweep();

    candidates.sort_by(|a, b| age_order(a, b));
    // sluice Routes claim hosts in the same age order; seeding `claimed` with the hosts of the
    // Routes that won rejects exactly the ingresses that lost to one (see `routes`).
    let claims = candidates.iter().map(|c| routes::Claim {
        key: c.key.clone(),
        creation_timestamp: c.stored.ingress.metadata.creation_timestamp.clone(),
        sequence: c.stored.sequence,
        hosts: c
            .plan
            .rules
            .iter()
            .flat_map(|r| r.hosts.iter().cloned())
            .collect(),
    });
    let routed = routes::translate_routes(store, config, claims.collect());
    let mut claimed: BTreeMap<String, String> = routed.claimed_hosts().collect();
    let mut external: BTreeMap<String, Vec<Route>> = BTreeMap::new();
    let mut internal: BTreeMap<String, Vec<Route>> = BTreeMap::new();
    let mut backends = BTreeMap::new();
    let mut certificates = Vec::new();
    for candidate in candidates {
        let owner = candidate.key.id();
        let hosts: BTreeSet<&String> = candidate.plan.rules.iter().flat_map(|r| &r.hosts).collect();
        let conflict = hosts
            .iter()
            .find_map(|h| claimed.get(*h).map(|holder| (*h, holder)));
        if let Some((host, holder)) = conflict {
            let message =
                format!("{MESSAGE_DOMAIN_CONFLICT}: host {host:?} is already served by {holder}");
            let status = ingress_status(candidate.stored, candidate.error.as_ref(), Some(message));
            statuses.insert(candidate.key, status);
            continue;
        }
        for host in hosts {
            claimed.insert(host.clone(), format!("ingress {owner}"));
        }
        for rule in &candidate.plan.rules {
            for host in &rule.hosts {
                if rule.external {
                    external
                        .entry(host.clone())
                        .or_default()
                        .extend(rule.routes.iter().map(|route| Route {
                            https_redirect: candidate.plan.https_redirect,
                            ..route.clone()
                        }));
                }
                internal
                    .entry(host.clone())
                    .or_default()
                    .extend(rule.routes.iter().cloned());
            }
        }
        for (id, backend) in candidate.backends {
            backends.entry(id).or_insert(backend);
        }
        certificates.extend(candidate.plan.certificates.iter().cloned());
        let status = ingress_status(candidate.stored, candidate.error.as_ref(), None);
        statuses.insert(candidate.key, status);
    }
    routed.emit(&mut external, &mut internal, &mut backends, &mut statuses);

    Translation {
        snapshot: Snapshot {
            external: route_table(external),
            internal: route_table(internal),
            backends,
            certificates,
            ..Snapshot::default()
        }
        .sealed(),
        statuses: statuses.into_values().collect(),
    }
}

/// Oldest first: `creationTimestamp` (present before absent), first-seen sequence, `ns/name`.
fn age_order(a: &Candidate<'_>, b: &Candidate<'_>) -> Ordering {
    let stamp = |c: &Candidate<'_>| {
        let ts = c.stored.ingress.metadata.creation_timestamp.as_deref();
        (ts.is_none(), ts.map(str::to_string))
    };
    stamp(a)
        .cmp(&stamp(b))
        .then(a.stored.sequence.cmp(&b.stored.sequence))
        .then_with(|| a.key.cmp(&b.key))
}

/// The status of a class-matching ingress. `error` is the current translation failure (the
/// ingress may still serve its last good plan); `conflict` the domain-conflict message.
///
/// Only a translated, unrejected ingress waits for the load balancer (`Uninitialized`); the
/// conditions that were not evaluated are Unknown without a reason.
fn ingress_status(
    stored: StoredIngress<'_>,
    error: Option<&TranslateError>,
    conflict: Option<String>,
) -> ObjectStatus {
    let network = match (error, &conflict) {
        (Some(error), _) => Condition::new(CONDITION_NETWORK_CONFIGURED, STATUS_FALSE)
            .with_reason(error.reason(), error.to_string()),
        (None, Some(_)) => Condition::new(CONDITION_NETWORK_CONFIGURED, STATUS_UNKNOWN),
        (None, None) => Condition::new(CONDITION_NETWORK_CONFIGURED, STATUS_TRUE),
    };
    let load_balancer = match (conflict, error) {
        (Some(message), _) => Condition::new(CONDITION_LOAD_BALANCER_READY, STATUS_FALSE)
            .with_reason(REASON_DOMAIN_CONFLICT, message),
        // Nothing of this generation is waiting for the data plane.
        (None, Some(_)) => Condition::new(CONDITION_LOAD_BALANCER_READY, STATUS_UNKNOWN),
        (None, None) => Condition::new(CONDITION_LOAD_BALANCER_READY, STATUS_UNKNOWN)
            .with_reason(REASON_UNINITIALIZED, MESSAGE_UNINITIALIZED),
    };
    let meta = &stored.ingress.metadata;
    ObjectStatus::ingress(
        &meta.namespace,
        &meta.name,
        stored.generation,
        vec![network, load_balancer],
    )
}

/// Defaults, validates, hashes and plans one ingress, resolving its backends strictly.
fn plan_ingress(
    ingress: &Ingress,
    resolver: &mut Resolver<'_>,
    key_pairs: &mut tls::KeyPairChecks,
) -> Result<(Plan, BTreeMap<String, Backend>), TranslateError> {
    let meta = &ingress.metadata;
    let owner = format!("{}/{}", meta.namespace, meta.name);
    let mut spec = ingress.spec.clone();
    set_defaults(&mut spec);
    validate(&meta.namespace, &meta.name, &spec)?;
    let hash = ingress_hash(&meta.namespace, &meta.name, &spec);

    let certificates =
        tls::plan_certificates(resolver.store, &spec, key_pairs).map_err(|error| {
            TranslateError::Secret {
                ingress: owner.clone(),
                error,
            }
        })?;
    let mut plan = Plan {
        rules: Vec::with_capacity(spec.rules.len()),
        backends: BTreeMap::new(),
        certificates,
        https_redirect: spec.http_option == HTTP_OPTION_REDIRECTED,
    };
    let mut resolved = BTreeMap::new();
    for (i, rule) in spec.rules.iter().enumerate() {
        let paths = rule
            .http
            .as_ref()
            .and_then(|http| http.paths.as_deref())
            .unwrap_or_default();
        let mut probes = Vec::with_capacity(paths.len());
        let mut routes = Vec::with_capacity(paths.len());
        for (j, path) in paths.iter().enumerate() {
            for split in path.splits.iter().flatten() {
                let id = backend_id(
                    &split.service_namespace,
                    &split.service_name,
                    &split.service_port,
                );
                if resolved.contains_key(&id) {
                    continue;
                }
                let backend = resolver
                    .strict(
                        &split.service_namespace,
                        &split.service_name,
                        &split.service_port,
                    )
                    .map_err(|error| TranslateError::Backend {
                        ingress: owner.clone(),
                        error,
                    })?;
                plan.backends.insert(
                    id.clone(),
                    BackendRef {
                        namespace: split.service_namespace.clone(),
                        service: split.service_name.clone(),
                        port: split.service_port.clone(),
                        protocol: backend.protocol,
                    },
                );
                resolved.insert(id, backend);
            }
            let id = format!("{owner}#{i}/{j}");
            probes.push(path_route(&owner, format!("{id}/probe"), path, Some(&hash)));
            routes.push(path_route(&owner, id, path, None));
        }
        probes.extend(routes);
        plan.rules.push(PlannedRule {
            external: rule.visibility == VISIBILITY_EXTERNAL_IP,
            hosts: normalize_hosts(&rule.hosts),
            routes: probes,
        });
    }
    Ok((plan, resolved))
}

/// The route for one KIngress path; with `probe_hash`, its InsertProbe copy.
fn path_route(owner: &str, id: String, path: &HttpIngressPath, probe_hash: Option<&str>) -> Route {
    let mut matches: BTreeMap<String, String> = path
        .headers
        .iter()
        .map(|(name, m)| (name.to_ascii_lowercase(), m.exact.clone()))
        .collect();
    let mut sets = lower_case_names(&path.append_headers);
    if let Some(hash) = probe_hash {
        matches.insert(
            PROBE_HASH_HEADER.to_string(),
            PROBE_HASH_OVERRIDE.to_string(),
        );
        sets.insert(PROBE_HASH_HEADER.to_string(), hash.to_string());
    }
    let splits = path
        .splits
        .iter()
        .flatten()
        .map(|split| Split {
            backend: backend_id(
                &split.service_namespace,
                &split.service_name,
                &split.service_port,
            ),
            weight: u32::try_from(split.percent).expect("validation keeps percents in 0..=100"),
            set_headers: header_values(lower_case_names(&split.append_headers)),
        })
        .collect();
    Route {
        id,
        owner: owner.to_string(),
        path_prefix: if path.path.is_empty() {
            "/".to_string()
        } else {
            path.path.clone()
        },
        headers: matches
            .into_iter()
            .map(|(name, exact)| HeaderMatch { name, exact })
            .collect(),
        action: RouteAction::Forward(Forward {
            rewrite_host: (!path.rewrite_host.is_empty()).then(|| path.rewrite_host.clone()),
            set_headers: header_values(sets),
            splits,
        }),
        https_redirect: false,
    }
}

/// Header names folded to lower case; of names equal but for case, the last in byte order wins.
fn lower_case_names(headers: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
        .collect()
}

fn header_values(headers: BTreeMap<String, String>) -> Vec<HeaderValue> {
    headers
        .into_iter()
        .map(|(name, value)| HeaderValue { name, value })
        .collect()
}

/// The display id of a backend: `ns/svc:<servicePort as written>`.
pub fn backend_id(namespace: &str, service: &str, port: &IntOrString) -> String {
    format!("{namespace}/{service}:{port}")
}

/// Lower-cases a host and strips a `:port` suffix (`[v6]:port` keeps the brackets).
pub fn normalize_host(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    if host.starts_with('[') {
        if let Some(end) = host.find(']') {
            return host[..=end].to_string();
        }
        return host;
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name.to_string(),
        _ => host,
    }
}

/// Normalised, deduplicated hosts in spec order; none (or only empty names) means `"*"`.
fn normalize_hosts(hosts: &[String]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let hosts: Vec<String> = hosts
        .iter()
        .map(|h| normalize_host(h))
        .filter(|h| !h.is_empty() && seen.insert(h.clone()))
        .collect();
    if hosts.is_empty() {
        vec!["*".to_string()]
    } else {
        hosts
    }
}

/// Sorts each host's routes by precedence and groups hosts with identical routes.
fn route_table(hosts: BTreeMap<String, Vec<Route>>) -> RouteTable {
    let mut groups: BTreeMap<Vec<String>, VirtualHost> = BTreeMap::new();
    for (host, mut routes) in hosts {
        routes.sort_by_key(|r| std::cmp::Reverse(prefix_len(r)));
        let ids = routes.iter().map(|r| r.id.clone()).collect();
        groups
            .entry(ids)
            .or_insert_with(|| VirtualHost {
                domains: Vec::new(),
                routes,
            })
            .domains
            .push(host);
    }
    let mut virtual_hosts: Vec<VirtualHost> = groups.into_values().collect();
    virtual_hosts.sort_by(|a, b| a.domains.cmp(&b.domains));
    RouteTable { virtual_hosts }
}

fn prefix_len(route: &Route) -> usize {
    route.path_prefix.len()
}

/// Resolves backends once per translation.
struct Resolver<'a> {
    store: &'a Store,
    cache: BTreeMap<String, Result<Backend, ResolveError>>,
}

impl<'a> Resolver<'a> {
    fn new(store: &'a Store) -> Self {
        Resolver {
            store,
            cache: BTreeMap::new(),
        }
    }

    fn strict(
        &mut self,
        namespace: &str,
        service: &str,
        port: &IntOrString,
    ) -> Result<Backend, ResolveError> {
        let id = backend_id(namespace, service, port);
        self.cache
            .entry(id)
            .or_insert_with(|| backend::resolve(self.store, namespace, service, port))
            .clone()
    }

    /// Resolves a last good plan's backends; what no longer resolves serves no endpoints.
    fn lenient(&mut self, refs: &BTreeMap<String, BackendRef>) -> BTreeMap<String, Backend> {
        refs.iter()
            .map(|(id, r)| {
                let backend = self
                    .strict(&r.namespace, &r.service, &r.port)
                    .unwrap_or(Backend {
                        protocol: r.protocol,
                        revision: None,
                        target: Target::Endpoints(Vec::new()),
                    });
                (id.clone(), backend)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
