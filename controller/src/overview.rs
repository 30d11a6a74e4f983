//! What `/ui` shows, as one JSON document (`GET /ui/data`) that the page and scripts share:
//! Routes and KIngresses (hosts, splits, tags, Ready) and, per Revision, its scale and the
//! autoscaler history of the last minutes ([`crate::history`]).
//!
//! Assembled on request from the store, the status board and the history: nothing is kept
//! for it, and nothing is read on the request path.

use crate::history::{DecisionView, Point, RevisionHistory};
use crate::object::IntOrString;
use crate::status::{ObjectStatus, TrafficStatus, CONDITION_READY, STATUS_UNKNOWN};
use crate::store::Store;
use serde::Serialize;
use std::collections::BTreeMap;

/// Seconds of history `/ui/data` returns per Revision.
pub const SHOWN_SECONDS: u64 = 300;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Overview {
    /// Wall clock when this was assembled, milliseconds since the Unix epoch.
    pub now_unix_ms: u64,
    /// Seconds of points per Revision (at most).
    pub seconds: u64,
    pub routes: Vec<RouteView>,
    pub ingresses: Vec<IngressView>,
    pub revisions: Vec<RevisionView>,
}

/// A condition's state for people: `True`, `False` or `Unknown`, and why when not `True`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Readiness {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Readiness {
    fn of(status: Option<&ObjectStatus>) -> Readiness {
        let ready = status.and_then(|s| {
            s.status
                .conditions
                .iter()
                .find(|c| c.type_ == CONDITION_READY)
        });
        match ready {
            Some(c) => Readiness {
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
            },
            None => Readiness {
                status: STATUS_UNKNOWN.to_string(),
                reason: None,
                message: None,
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteView {
    /// `ns/name`.
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub traffic: Vec<TrafficStatus>,
    pub ready: Readiness,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IngressView {
    /// `ns/name`.
    pub id: String,
    pub rules: Vec<RuleView>,
    pub ready: Readiness,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleView {
    pub hosts: Vec<String>,
    /// `ExternalIP` or `ClusterLocal`.
    pub visibility: String,
    pub paths: Vec<PathView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PathView {
    pub path: String,
    pub splits: Vec<SplitView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SplitView {
    /// `ns/svc:port`.
    pub backend: String,
    pub percent: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RevisionView {
    /// `ns/name`.
    pub id: String,
    pub ready: Readiness,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_scale: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual_scale: Option<i32>,
    /// `concurrency` or `rps`; absent for a Revision the autoscaler does not track.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<&'static str>,
    /// Wall clock of the history's second 0, milliseconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_unix_ms: Option<u64>,
    pub panicking: bool,
    pub points: Vec<Point>,
    pub decisions: Vec<DecisionView>,
}

fn id(status: &ObjectStatus) -> String {
    format!("{}/{}", status.namespace, status.name)
}

/// Puts the page's document together; `history` from [`crate::history::History::view`].
pub fn overview(
    store: &Store,
    statuses: &[ObjectStatus],
    history: Vec<RevisionHistory>,
    now_unix_ms: u64,
) -> Overview {
    let by_kind = |kind: &str| -> BTreeMap<String, &ObjectStatus> {
        statuses
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| (id(s), s))
            .collect()
    };
    let route_statuses = by_kind("Route");
    let ingress_statuses = by_kind("Ingress");
    let revision_statuses = by_kind("Revision");

    let routes = store
        .routes()
        .map(|stored| {
            let meta = &stored.route.metadata;
            let id = format!("{}/{}", meta.namespace, meta.name);
            let status = route_statuses.get(&id).copied();
            RouteView {
                url: status.and_then(|s| s.status.url.clone()),
                traffic: status.map(|s| s.status.traffic.clone()).unwrap_or_default(),
                ready: Readiness::of(status),
                id,
            }
        })
        .collect();

    // Only KIngresses with a status are ours (another class's are never stored, but keep to
    // what the board shows).
    let ingresses = store
        .ingresses()
        .filter_map(|stored| {
            let meta = &stored.ingress.metadata;
            let namespace = meta.namespace.as_str();
            let id = format!("{namespace}/{}", meta.name);
            let status = ingress_statuses.get(&id).copied()?;
            let rules = stored
                .ingress
                .spec
                .rules
                .iter()
                .map(|rule| RuleView {
                    hosts: rule.hosts.clone(),
                    visibility: rule.visibility.clone(),
                    paths: rule
                        .http
                        .iter()
                        .flat_map(|http| http.paths.iter().flatten())
                        .map(|path| PathView {
                            path: if path.path.is_empty() {
                                "/".to_string()
                            } else {
                                path.path.clone()
                            },
                            splits: path
                                .splits
                                .iter()
                                .flatten()
                                .map(|split| SplitView {
                                    backend: format!(
                                        "{}/{}:{}",
                                        if split.service_namespace.is_empty() {
                                            namespace
                                        } else {
                                            &split.service_namespace
                                        },
                                        split.service_name,
                                        match &split.service_port {
                                            IntOrString::Int(port) => port.to_string(),
                                            IntOrString::String(name) => name.clone(),
                                        }
                                    ),
                                    percent: split.percent,
                                })
                                .collect(),
                        })
                        .collect(),
                })
                .collect();
            Some(IngressView {
                id,
                rules,
                ready: Readiness::of(Some(status)),
            })
        })
        .collect();

    let mut tracked: BTreeMap<String, RevisionHistory> =
        history.into_iter().map(|h| (h.id.clone(), h)).collect();
    let mut revisions: Vec<RevisionView> = revision_statuses
        .iter()
        .map(|(id, status)| {
            let history = tracked.remove(id);
            revision_view(id.clone(), Some(status), history)
        })
        .collect();
    // Tracked but without a status entry (should not happen; shown rather than hidden).
    revisions.extend(
        tracked
            .into_iter()
            .map(|(id, history)| revision_view(id, None, Some(history))),
    );
    revisions.sort_by(|a, b| a.id.cmp(&b.id));

    Overview {
        now_unix_ms,
        seconds: SHOWN_SECONDS,
        routes,
        ingresses,
        revisions,
    }
}

fn revision_view(
    id: String,
    status: Option<&ObjectStatus>,
    history: Option<RevisionHistory>,
) -> RevisionView {
    let (metric, origin_unix_ms, panicking, points, decisions) = match history {
        Some(h) => (
            Some(h.metric),
            Some(h.origin_unix_ms),
            h.panicking,
            h.points,
            h.decisions,
        ),
        None => (None, None, false, Vec::new(), Vec::new()),
    };
    RevisionView {
        id,
        ready: Readiness::of(status),
        desired_scale: status.and_then(|s| s.status.desired_scale),
        actual_scale: status.and_then(|s| s.status.actual_scale),
        metric,
        origin_unix_ms,
        panicking,
        points,
        decisions,
    }
}

#[cfg(test)]
mod tests;
