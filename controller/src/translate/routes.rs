//! sluice Routes and Revisions (`sluice.dev/v1alpha1`) → routes and backends of the same
//! [`sluice_xds::Snapshot`] the KIngresses go to, plus their statuses.
//!
//! Per valid Route whose Revisions are all usable (see [`crate::route`] for what it serves):
//! - on each host, one route per tag (sorted by tag), id `ns/route#tag/<tag>`, matching
//!   `knative-serving-tag: <tag>` → the tag's Revision at 100%; then the default route, id
//!   `ns/route#default`, → the default splits;
//! - on each tag host, id `ns/route#tag/<tag>/host`, → the tag's Revision at 100%, setting
//!   `knative-serving-tag: <tag>` on the request;
//! - every split sets `knative-serving-revision` and `knative-serving-namespace`; every route
//!   matches the path prefix `/` and is owned by `ns/route`;
//! - ExternalIP Routes go to both tables, ClusterLocal ones to the internal table only.
//!
//! Each Revision a split names becomes one backend, id `ns/<revision>`, carrying its
//! [`sluice_xds::RevisionPolicy`] ([`crate::revision`]).
//!
//! A Route that is invalid, or names a Revision that is missing or cannot serve (invalid, or
//! its Service or Service port missing), contributes nothing, so its hosts answer 404: there is
//! no last-good fallback as for KIngresses. Its `AllTrafficAssigned` (and so `Ready`) is False
//! with reason `InvalidRoute`, `RevisionMissing` or `RevisionInvalid`.
//!
//! **Domain conflicts.** Routes and KIngresses claim hosts (a Route's tag hosts included) in one
//! age order, the KIngress one: earlier `creationTimestamp` (present before absent), then
//! first-seen sequence, then kind and `ns/name`. A Route sharing a host with an older claimant
//! is excluded whole and gets `IngressReady=False` reason `DomainConflict`. Only Routes and
//! KIngresses that translate claim hosts.
//!
//! Every Revision in the store gets a status, referenced or not: `Ready` True, or False with
//! `InvalidRevision`, `InvalidAnnotation` (validated against `config-autoscaler`, or Knative's
//! defaults while that ConfigMap is invalid), `ServiceNotFound` or `ServicePortNotFound`.

use crate::object::{Kind, ObjectKey, SLUICE_API_VERSION};
use crate::revision::{self, autoscaler_config};
use crate::route::{self, InvalidRoute, ValidRoute, NAMESPACE_HEADER, REVISION_HEADER, TAG_HEADER};
use crate::status::{
    Condition, ObjectStatus, Status, CONDITION_ALL_TRAFFIC_ASSIGNED, CONDITION_INGRESS_READY,
    CONDITION_READY, MESSAGE_UNINITIALIZED, REASON_DOMAIN_CONFLICT, REASON_UNINITIALIZED,
    ROUTE_READY_DEPENDENTS, STATUS_FALSE, STATUS_TRUE, STATUS_UNKNOWN,
};
use crate::store::{Store, StoredRoute};
use crate::TranslateConfig;
use sluice_xds::{Backend, Forward, HeaderMatch, HeaderValue, Route, RouteAction, Split};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

pub const REASON_INVALID_ROUTE: &str = "InvalidRoute";
pub const REASON_REVISION_MISSING: &str = "RevisionMissing";
pub const REASON_REVISION_INVALID: &str = "RevisionInvalid";

/// Why a Route serves nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error(transparent)]
    Invalid(#[from] InvalidRoute),
    #[error("route {route}: {} {} not found", plural("revision", .revisions.len()), .revisions.join(", "))]
    RevisionMissing {
        route: String,
        /// `ns/name`, sorted.
        revisions: Vec<String>,
    },
    /// `messages` are the Revisions' own errors, which name them.
    #[error("route {route}: {}", .messages.join("; "))]
    RevisionInvalid {
        route: String,
        messages: Vec<String>,
    },
}

fn plural(noun: &str, n: usize) -> String {
    if n == 1 {
        noun.to_string()
    } else {
        format!("{noun}s")
    }
}

impl RouteError {
    /// The `AllTrafficAssigned=False` reason.
    pub fn reason(&self) -> &'static str {
        match self {
            RouteError::Invalid(_) => REASON_INVALID_ROUTE,
            RouteError::RevisionMissing { .. } => REASON_REVISION_MISSING,
            RouteError::RevisionInvalid { .. } => REASON_REVISION_INVALID,
        }
    }
}

/// An object claiming hosts, for the domain-conflict check shared with KIngresses.
#[derive(Clone, Debug)]
pub(crate) struct Claim {
    pub key: ObjectKey,
    pub creation_timestamp: Option<String>,
    pub sequence: u64,
    pub hosts: BTreeSet<String>,
}

impl Claim {
    /// Oldest first, exactly as KIngresses are ordered among themselves.
    fn age_order(&self, other: &Claim) -> Ordering {
        let stamp = |c: &Claim| (c.creation_timestamp.is_none(), c.creation_timestamp.clone());
        stamp(self)
            .cmp(&stamp(other))
            .then(self.sequence.cmp(&other.sequence))
            .then_with(|| self.key.cmp(&other.key))
    }
}

/// The Routes' and Revisions' share of one translation.
#[derive(Debug, Default)]
pub(crate) struct Routed {
    /// Accepted Routes, by key.
    plans: BTreeMap<ObjectKey, RoutePlan>,
    statuses: BTreeMap<ObjectKey, ObjectStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct RoutePlan {
    external: bool,
    /// Every host the Route claims (tag hosts included) → its routes, in match order.
    hosts: BTreeMap<String, Vec<Route>>,
    backends: BTreeMap<String, Backend>,
}

/// A Revision as the Routes see it: its backend, or its error message.
type RevisionTable = BTreeMap<(String, String), Result<Backend, String>>;

/// Translates every Route and Revision in `store`. `ingresses` are the KIngresses that
/// translated, for the shared domain-conflict check.
pub(crate) fn translate_routes(
    store: &Store,
    config: &TranslateConfig,
    ingresses: Vec<Claim>,
) -> Routed {
    let autoscaler = autoscaler_config(store, &config.system_namespace).unwrap_or_default();
    let mut statuses = BTreeMap::new();

    let mut revisions = RevisionTable::new();
    for stored in store.revisions() {
        let meta = &stored.revision.metadata;
        let (namespace, name) = (meta.namespace.as_str(), meta.name.as_str());
        let result = revision::validate(stored.revision, &autoscaler)
            .map_err(|e| (e.reason(), e.to_string()))
            .and_then(|(valid, _)| {
                valid
                    .backend(store, namespace, name)
                    .map_err(|e| (e.reason(), format!("revision {namespace}/{name}: {e}")))
            });
        let ready = match &result {
            Ok(_) => Condition::new(CONDITION_READY, STATUS_TRUE),
            Err((reason, message)) => {
                Condition::new(CONDITION_READY, STATUS_FALSE).with_reason(reason, message.clone())
            }
        };
        let key = ObjectKey::new(Kind::Revision, namespace, name);
        statuses.insert(
            key,
            sluice_status(
                "Revision",
                namespace,
                name,
                stored.generation,
                vec![ready],
                None,
            ),
        );
        revisions.insert(
            (namespace.to_string(), name.to_string()),
            result.map_err(|(_, message)| message),
        );
    }

    let mut candidates = Vec::new();
    for stored in store.routes() {
        let meta = &stored.route.metadata;
        let key = ObjectKey::new(Kind::Route, &meta.namespace, &meta.name);
        match plan_route(stored, &revisions) {
            Ok(plan) => candidates.push((stored, plan)),
            Err(error) => {
                let traffic = Condition::new(CONDITION_ALL_TRAFFIC_ASSIGNED, STATUS_FALSE)
                    .with_reason(error.reason(), error.to_string());
                let ingress = Condition::new(CONDITION_INGRESS_READY, STATUS_UNKNOWN);
                statuses.insert(key, route_status(stored, traffic, ingress));
            }
        }
    }

    let mut claims = ingresses;
    claims.extend(candidates.iter().map(|(stored, plan)| {
        let meta = &stored.route.metadata;
        Claim {
            key: ObjectKey::new(Kind::Route, &meta.namespace, &meta.name),
            creation_timestamp: meta.creation_timestamp.clone(),
            sequence: stored.sequence,
            hosts: plan.hosts.keys().cloned().collect(),
        }
    }));
    let rejected = resolve_claims(claims);

    let mut plans = BTreeMap::new();
    for (stored, plan) in candidates {
        let meta = &stored.route.metadata;
        let key = ObjectKey::new(Kind::Route, &meta.namespace, &meta.name);
        let traffic = Condition::new(CONDITION_ALL_TRAFFIC_ASSIGNED, STATUS_TRUE);
        let ingress = match rejected.get(&key) {
            Some((host, holder)) => Condition::new(CONDITION_INGRESS_READY, STATUS_FALSE)
                .with_reason(
                    REASON_DOMAIN_CONFLICT,
                    format!(
                        "route {}: host {host:?} is already served by {} {}",
                        key.id(),
                        holder.kind.as_str().to_ascii_lowercase(),
                        holder.id()
                    ),
                ),
            None => Condition::new(CONDITION_INGRESS_READY, STATUS_UNKNOWN)
                .with_reason(REASON_UNINITIALIZED, MESSAGE_UNINITIALIZED),
        };
        statuses.insert(key.clone(), route_status(stored, traffic, ingress));
        if !rejected.contains_key(&key) {
            plans.insert(key, plan);
        }
    }
    Routed { plans, statuses }
}

impl Routed {
    /// The hosts of accepted Routes, each with its holder as conflict messages name it
    /// (`route ns/name`).
    pub(crate) fn claimed_hosts(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.plans.iter().flat_map(|(key, plan)| {
            plan.hosts
                .keys()
                .map(move |host| (host.clone(), format!("route {}", key.id())))
        })
    }

    /// Adds the accepted Routes' routes, their backends and every Route and Revision status.
    pub(crate) fn emit(
        self,
        external: &mut BTreeMap<String, Vec<Route>>,
        internal: &mut BTreeMap<String, Vec<Route>>,
        backends: &mut BTreeMap<String, Backend>,
        statuses: &mut BTreeMap<ObjectKey, ObjectStatus>,
    ) {
        for plan in self.plans.into_values() {
            for (host, routes) in plan.hosts {
                if plan.external {
                    external
                        .entry(host.clone())
                        .or_default()
                        .extend(routes.iter().cloned());
                }
                internal.entry(host).or_default().extend(routes);
            }
            for (id, backend) in plan.backends {
                backends.entry(id).or_insert(backend);
            }
        }
        statuses.extend(self.statuses);
    }
}

/// Validates a Route and builds its routes, if every Revision it names can serve.
fn plan_route(stored: StoredRoute<'_>, revisions: &RevisionTable) -> Result<RoutePlan, RouteError> {
    let valid = route::validate(stored.route)?;
    let meta = &stored.route.metadata;
    let (namespace, name) = (meta.namespace.as_str(), meta.name.as_str());
    let owner = format!("{namespace}/{name}");

    let mut missing = Vec::new();
    let mut invalid = Vec::new();
    let mut backends = BTreeMap::new();
    for revision in &valid.revisions {
        match revisions.get(&(namespace.to_string(), revision.clone())) {
            None => missing.push(format!("{namespace}/{revision}")),
            Some(Err(message)) => invalid.push(message.clone()),
            Some(Ok(backend)) => {
                backends.insert(revision::backend_id(namespace, revision), backend.clone());
            }
        }
    }
    if !missing.is_empty() {
        return Err(RouteError::RevisionMissing {
            route: owner,
            revisions: missing,
        });
    }
    if !invalid.is_empty() {
        return Err(RouteError::RevisionInvalid {
            route: owner,
            messages: invalid,
        });
    }

    let hosts = routes_by_host(namespace, &owner, &valid);
    // Only what a split names: a Revision at 0% without a tag gets no backend.
    let used: BTreeSet<&str> = hosts
        .values()
        .flatten()
        .flat_map(|route| match &route.action {
            RouteAction::Forward(forward) => forward.splits.iter().map(|s| s.backend.as_str()),
        })
        .collect();
    backends.retain(|id, _| used.contains(id.as_str()));
    Ok(RoutePlan {
        external: valid.external,
        hosts,
        backends,
    })
}

fn routes_by_host(
    namespace: &str,
    owner: &str,
    valid: &ValidRoute,
) -> BTreeMap<String, Vec<Route>> {
    let mut main = Vec::with_capacity(valid.tags.len() + 1);
    for (tag, revision) in &valid.tags {
        main.push(Route {
            headers: vec![HeaderMatch {
                name: TAG_HEADER.to_string(),
                exact: tag.clone(),
            }],
            ..forward(
                format!("{owner}#tag/{tag}"),
                owner,
                Vec::new(),
                vec![split(namespace, revision, 100)],
            )
        });
    }
    let splits = valid
        .splits
        .iter()
        .map(|(revision, percent)| split(namespace, revision, *percent))
        .collect();
    main.push(forward(
        format!("{owner}#default"),
        owner,
        Vec::new(),
        splits,
    ));

    let mut hosts: BTreeMap<String, Vec<Route>> = valid
        .hosts
        .iter()
        .map(|host| (host.clone(), main.clone()))
        .collect();
    for (tag, tag_hosts) in valid.tag_hosts() {
        let revision = &valid.tags[tag];
        let route = forward(
            format!("{owner}#tag/{tag}/host"),
            owner,
            vec![HeaderValue {
                name: TAG_HEADER.to_string(),
                value: tag.to_string(),
            }],
            vec![split(namespace, revision, 100)],
        );
        for host in tag_hosts {
            hosts.insert(host, vec![route.clone()]);
        }
    }
    hosts
}

fn forward(id: String, owner: &str, set_headers: Vec<HeaderValue>, splits: Vec<Split>) -> Route {
    Route {
        id,
        owner: owner.to_string(),
        path_prefix: "/".to_string(),
        headers: Vec::new(),
        action: RouteAction::Forward(Forward {
            rewrite_host: None,
            set_headers,
            splits,
        }),
        https_redirect: false,
    }
}

fn split(namespace: &str, revision: &str, weight: u32) -> Split {
    Split {
        backend: revision::backend_id(namespace, revision),
        weight,
        // Sorted by name, like every header list in the snapshot.
        set_headers: vec![
            HeaderValue {
                name: NAMESPACE_HEADER.to_string(),
                value: namespace.to_string(),
            },
            HeaderValue {
                name: REVISION_HEADER.to_string(),
                value: revision.to_string(),
            },
        ],
    }
}

/// Claims hosts oldest first; returns each rejected claimant with the first host it lost and
/// who holds it.
fn resolve_claims(mut claims: Vec<Claim>) -> BTreeMap<ObjectKey, (String, ObjectKey)> {
    claims.sort_by(Claim::age_order);
    let mut claimed: BTreeMap<String, ObjectKey> = BTreeMap::new();
    let mut rejected = BTreeMap::new();
    for claim in claims {
        let conflict = claim
            .hosts
            .iter()
            .find_map(|h| claimed.get(h).map(|holder| (h.clone(), holder.clone())));
        match conflict {
            Some(conflict) => {
                rejected.insert(claim.key, conflict);
            }
            None => {
                for host in claim.hosts {
                    claimed.insert(host, claim.key.clone());
                }
            }
        }
    }
    rejected
}

fn route_status(stored: StoredRoute<'_>, traffic: Condition, ingress: Condition) -> ObjectStatus {
    let meta = &stored.route.metadata;
    sluice_status(
        "Route",
        &meta.namespace,
        &meta.name,
        stored.generation,
        vec![traffic, ingress],
        Some(ROUTE_READY_DEPENDENTS),
    )
}

/// A status of a `sluice.dev/v1alpha1` object; with `dependents`, `Ready` is derived from them.
fn sluice_status(
    kind: &str,
    namespace: &str,
    name: &str,
    generation: i64,
    conditions: Vec<Condition>,
    dependents: Option<&[&str]>,
) -> ObjectStatus {
    let mut status = Status {
        observed_generation: generation,
        ..Status::default()
    };
    for condition in conditions {
        status.set_condition(condition);
    }
    if let Some(dependents) = dependents {
        status.derive_ready_from(dependents);
    }
    ObjectStatus {
        api_version: SLUICE_API_VERSION.to_string(),
        kind: kind.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
        generation,
        status,
    }
}

#[cfg(test)]
mod tests;
