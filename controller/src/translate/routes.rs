//! sluice Routes and Revisions (`sluice.dev/v1alpha1`) → the same kinds of resources the
//! KIngresses produce, plus their statuses.
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
//! Each Revision a split names becomes one backend, id `ns/<revision>`, with a
//! [`sluice_xds::RevisionPolicy`] of the same name ([`crate::revision`]).
//!
//! A Route that is invalid, or names a Revision that is missing or cannot serve (invalid, or
//! its Service or Service port missing), contributes nothing, so its hosts answer 404: there is
//! no last-good fallback as for KIngresses. Its `AllTrafficAssigned` (and so `Ready`) is False
//! with reason `InvalidRoute`, `RevisionMissing` or `RevisionInvalid`.
//!
//! **Domain conflicts** ([`crate::claims`]). Routes and KIngresses claim hosts (a Route's tag
//! hosts included) in one age order. A Route sharing a host with an older accepted claimant is
//! excluded whole and gets `IngressReady=False` reason `DomainConflict`. Only Routes and
//! KIngresses that translate claim hosts.
//!
//! Every Revision in the store gets a status, referenced or not: `Ready` True, or False with
//! `InvalidRevision`, `InvalidAnnotation` (validated against `config-autoscaler`, or Knative's
//! defaults while that ConfigMap is invalid), `ServiceNotFound` or `ServicePortNotFound`.

use super::{BackendRef, OwnerPlan, RevisionOutput};
use crate::claims::Conflict;
use crate::object::{Kind, ObjectKey, Route as RouteObject, SLUICE_API_VERSION};
use crate::revision;
use crate::route::{self, InvalidRoute, ValidRoute, NAMESPACE_HEADER, REVISION_HEADER, TAG_HEADER};
use crate::status::{
    Condition, ObjectStatus, Status, TrafficStatus, CONDITION_ALL_TRAFFIC_ASSIGNED,
    CONDITION_INGRESS_READY, CONDITION_READY, MESSAGE_UNINITIALIZED, REASON_DOMAIN_CONFLICT,
    REASON_UNINITIALIZED, ROUTE_READY_DEPENDENTS, STATUS_FALSE, STATUS_TRUE, STATUS_UNKNOWN,
};
use sluice_xds::{Forward, HeaderMatch, HeaderValue, Route, RouteAction, RouteConfig, Split};
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

/// Validates a Route and plans what it serves, if every Revision it names can serve.
/// `revision` looks a Revision up: absent, or its output or error message. Also returns every
/// Revision the Route names (found or not), to be told when they change.
pub(crate) fn plan_route<'a>(
    route: &RouteObject,
    revision: impl Fn(&ObjectKey) -> Option<Result<&'a RevisionOutput, &'a String>>,
) -> (Result<OwnerPlan, RouteError>, BTreeSet<ObjectKey>) {
    let meta = &route.metadata;
    let (namespace, name) = (meta.namespace.as_str(), meta.name.as_str());
    let named: BTreeSet<ObjectKey> = route
        .spec
        .traffic
        .iter()
        .filter(|t| !t.revision.is_empty())
        .map(|t| ObjectKey::new(Kind::Revision, namespace, &t.revision))
        .collect();
    let valid = match route::validate(route) {
        Ok(valid) => valid,
        Err(error) => return (Err(error.into()), named),
    };
    let owner = format!("{namespace}/{name}");
    let mut missing = Vec::new();
    let mut invalid = Vec::new();
    let mut backends = BTreeMap::new();
    for name in &valid.revisions {
        let key = ObjectKey::new(Kind::Revision, namespace, name);
        match revision(&key) {
            None => missing.push(key.id()),
            Some(Err(message)) => invalid.push(message.clone()),
            Some(Ok(_)) => {
                backends.insert(
                    revision::backend_id(namespace, name),
                    BackendRef::Revision(key),
                );
            }
        }
    }
    if !missing.is_empty() {
        return (
            Err(RouteError::RevisionMissing {
                route: owner,
                revisions: missing,
            }),
            named,
        );
    }
    if !invalid.is_empty() {
        return (
            Err(RouteError::RevisionInvalid {
                route: owner,
                messages: invalid,
            }),
            named,
        );
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
    let claimed = hosts.keys().cloned().collect();
    let internal = super::route_table(hosts.clone());
    let external = if valid.external {
        super::route_table(hosts)
    } else {
        Vec::new()
    };
    (
        Ok(OwnerPlan {
            config: sluice_xds::protocol::NamedResource::new(
                super::owner_resource_name(&ObjectKey::new(Kind::Route, namespace, name)),
                sluice_xds::Resource::RouteConfig(RouteConfig {
                    owner,
                    external,
                    internal,
                }),
            ),
            hosts: claimed,
            backends,
            certificates: Vec::new(),
        }),
        named,
    )
}

/// A Route's status: `AllTrafficAssigned` from its plan, `IngressReady` from the claims, and
/// (once all traffic is assigned) its `url` and `traffic` from `route`.
pub(crate) fn route_status(
    key: &ObjectKey,
    route: Option<&RouteObject>,
    generation: i64,
    error: Option<&RouteError>,
    conflict: Option<&Conflict>,
) -> ObjectStatus {
    let (traffic, ingress) = match (error, conflict) {
        (Some(error), _) => (
            Condition::new(CONDITION_ALL_TRAFFIC_ASSIGNED, STATUS_FALSE)
                .with_reason(error.reason(), error.to_string()),
            Condition::new(CONDITION_INGRESS_READY, STATUS_UNKNOWN),
        ),
        (None, Some(conflict)) => (
            Condition::new(CONDITION_ALL_TRAFFIC_ASSIGNED, STATUS_TRUE),
            Condition::new(CONDITION_INGRESS_READY, STATUS_FALSE).with_reason(
                REASON_DOMAIN_CONFLICT,
                format!(
                    "route {}: host {:?} is already served by {} {}",
                    key.id(),
                    conflict.host,
                    conflict.holder.kind.as_str().to_ascii_lowercase(),
                    conflict.holder.id()
                ),
            ),
        ),
        (None, None) => (
            Condition::new(CONDITION_ALL_TRAFFIC_ASSIGNED, STATUS_TRUE),
            Condition::new(CONDITION_INGRESS_READY, STATUS_UNKNOWN)
                .with_reason(REASON_UNINITIALIZED, MESSAGE_UNINITIALIZED),
        ),
    };
    let mut status = sluice_status(
        "Route",
        &key.namespace,
        &key.name,
        generation,
        vec![traffic, ingress],
        Some(ROUTE_READY_DEPENDENTS),
    );
    if let (None, Some(route)) = (error, route) {
        if let Ok(valid) = route::validate(route) {
            assign_traffic(&mut status.status, route, &valid);
        }
    }
    status
}

/// Knative Route's `status.url` (`http://` + the first host) and `status.traffic` (the spec's
/// entries in order, with each tag's URL on the first host's tag host).
fn assign_traffic(status: &mut Status, route: &RouteObject, valid: &ValidRoute) {
    let first = valid.hosts.first();
    status.url = first.map(|host| format!("http://{host}"));
    status.traffic = route
        .spec
        .traffic
        .iter()
        .map(|target| TrafficStatus {
            revision_name: target.revision.clone(),
            percent: target.percent,
            tag: (!target.tag.is_empty()).then(|| target.tag.clone()),
            url: match (target.tag.is_empty(), first) {
                (false, Some(host)) => {
                    Some(format!("http://{}", route::tag_host(&target.tag, host)))
                }
                _ => None,
            },
        })
        .collect();
}

/// A Revision's status: `Ready`, or False with the reason and message of `error`.
pub(crate) fn revision_status(
    namespace: &str,
    name: &str,
    generation: i64,
    error: Option<&(&'static str, String)>,
) -> ObjectStatus {
    let ready = match error {
        None => Condition::new(CONDITION_READY, STATUS_TRUE),
        Some((reason, message)) => {
            Condition::new(CONDITION_READY, STATUS_FALSE).with_reason(reason, message.clone())
        }
    };
    sluice_status("Revision", namespace, name, generation, vec![ready], None)
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
    main.push(forward(format!("{owner}#default"), Vec::new(), splits));

    let mut hosts: BTreeMap<String, Vec<Route>> = valid
        .hosts
        .iter()
        .map(|host| (host.clone(), main.clone()))
        .collect();
    for (tag, tag_hosts) in valid.tag_hosts() {
        let revision = &valid.tags[tag];
        let route = forward(
            format!("{owner}#tag/{tag}/host"),
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

fn forward(id: String, set_headers: Vec<HeaderValue>, splits: Vec<Split>) -> Route {
    Route {
        id,
        path_prefix: "/".to_string(),
        headers: Vec::new(),
        action: RouteAction::Forward(Forward {
            rewrite_host: None,
            set_headers,
            splits,
        }),
        https_redirect: false,
        probe_hash: None,
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
