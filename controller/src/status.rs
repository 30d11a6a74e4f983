//! Object statuses in Knative's shape, and the [`StatusBoard`] that turns "translated" into
//! "ready" once the data plane has applied the snapshot.
//!
//! Translation emits, per class-matching KIngress, `NetworkConfigured` (True, or False with
//! the error), `LoadBalancerReady` (Unknown `Uninitialized` while waiting, False
//! `DomainConflict` when rejected) and the derived `Ready`. It knows no clock, so it leaves
//! `lastTransitionTime` empty. The board adds the time dimension:
//! - [`StatusBoard::update`] records a translation's statuses against its snapshot version;
//! - [`StatusBoard::applied`] marks `LoadBalancerReady=True` (with the load-balancer
//!   addresses) for every waiting ingress whose current translation is contained in the applied
//!   version, so `Ready=True` is only ever shown once the data plane serves that generation;
//! - `lastTransitionTime` changes only when a condition's status changes.
//!
//! sluice Routes follow the same pattern with Knative Route's conditions: `AllTrafficAssigned`
//! (False when the Route or a Revision it names is unusable), `IngressReady` (Unknown
//! `Uninitialized` until the board sees the snapshot applied, False `DomainConflict`) and
//! `Ready`. Revisions get `Ready` only, plus `desiredScale`/`actualScale` from
//! [`StatusBoard::set_scale`]; the statuses are built in [`crate::translate::routes`].
//!
//! Manifest file problems are `ManifestFile` entries (apiVersion `sluice.dev/v1alpha1`) with a
//! `Ready=False` condition; files without problems have no entry.

use crate::translate::StatusChange;
use crate::TranslateConfig;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub const CONDITION_READY: &str = "Ready";
pub const CONDITION_NETWORK_CONFIGURED: &str = "NetworkConfigured";
pub const CONDITION_LOAD_BALANCER_READY: &str = "LoadBalancerReady";
pub const CONDITION_ALL_TRAFFIC_ASSIGNED: &str = "AllTrafficAssigned";
pub const CONDITION_INGRESS_READY: &str = "IngressReady";
pub const CONDITION_RESOURCES_AVAILABLE: &str = "ResourcesAvailable";
/// Why a Revision's instances could not be started (or stopped).
pub const REASON_SCALE_FAILED: &str = "ScaleFailed";

/// What a KIngress's `Ready` is derived from.
pub const INGRESS_READY_DEPENDENTS: &[&str] =
    &[CONDITION_NETWORK_CONFIGURED, CONDITION_LOAD_BALANCER_READY];
/// What a sluice Route's `Ready` is derived from.
pub const ROUTE_READY_DEPENDENTS: &[&str] =
    &[CONDITION_ALL_TRAFFIC_ASSIGNED, CONDITION_INGRESS_READY];

pub const STATUS_TRUE: &str = "True";
pub const STATUS_FALSE: &str = "False";
pub const STATUS_UNKNOWN: &str = "Unknown";

pub const REASON_UNINITIALIZED: &str = "Uninitialized";
pub const MESSAGE_UNINITIALIZED: &str = "Waiting for load balancer to be ready";
pub const REASON_DOMAIN_CONFLICT: &str = "DomainConflict";
pub const MESSAGE_DOMAIN_CONFLICT: &str =
    "Ingress rejected: ingress has a conflicting domain with another ingress";

/// apiVersion and kind of the status entries that report manifest file problems.
pub const MANIFEST_FILE_API_VERSION: &str = "sluice.dev/v1alpha1";
pub const MANIFEST_FILE_KIND: &str = "ManifestFile";

/// The status of one object, with enough identity to write it back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub generation: i64,
    pub status: Status,
}

/// Knative `IngressStatus` (duckv1.Status plus the load balancers).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub observed_generation: i64,
    /// Sorted by type, as Knative keeps them.
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_load_balancer: Option<LoadBalancerStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_load_balancer: Option<LoadBalancerStatus>,
    /// Revisions only: the autoscaler's latest decision (absent before its first one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_scale: Option<i32>,
    /// Revisions only: instances ready to take requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_scale: Option<i32>,
    /// Routes only: where the Route is served, `http://<first host>` (Knative Route's `url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Routes only: the traffic as assigned, in spec order (Knative Route's `traffic`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traffic: Vec<TrafficStatus>,
    /// `Proxy` entries only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyInfo>,
}

/// One `status.traffic` entry of a Route.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficStatus {
    /// The Revision this entry sends traffic to.
    pub revision_name: String,
    /// Its share of the Route's default traffic, 0..=100.
    pub percent: i64,
    /// The entry's tag, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Tagged entries: `http://<tag host of the first host>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// One aspect of an object's state, Knative's (and Kubernetes') condition shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// For example `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Why, in one CamelCase word.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// RFC 3339; filled in by the [`StatusBoard`] only.
    #[schemars(description = "When the status last changed (RFC 3339).")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// A sluice Route's `status`: the fields of [`Status`] that apply to Routes. Its schema is the
/// CRD's (see [`crate::crd`]), so the API server keeps all of a status written as this type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(description = "What sluice last observed of the Route.")]
pub struct RouteStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default)]
    pub observed_generation: i64,
    /// `AllTrafficAssigned`, `IngressReady` and `Ready` (True when both are), sorted by type.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Where the Route is served: `http://<first host>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The traffic as assigned, in spec order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traffic: Vec<TrafficStatus>,
}

impl From<&Status> for RouteStatus {
    fn from(status: &Status) -> Self {
        RouteStatus {
            observed_generation: status.observed_generation,
            conditions: status.conditions.clone(),
            url: status.url.clone(),
            traffic: status.traffic.clone(),
        }
    }
}

/// A sluice Revision's `status`: the fields of [`Status`] that apply to Revisions. Its schema
/// is the CRD's (see [`crate::crd`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(description = "What sluice last observed of the Revision.")]
pub struct RevisionStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default)]
    pub observed_generation: i64,
    /// `Ready`, and `ResourcesAvailable` (False, reason `ScaleFailed`) when scaling fails;
    /// sorted by type.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The autoscaler's latest decision (absent before its first one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_scale: Option<i32>,
    /// Instances ready to take requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_scale: Option<i32>,
}

impl From<&Status> for RevisionStatus {
    fn from(status: &Status) -> Self {
        RevisionStatus {
            observed_generation: status.observed_generation,
            conditions: status.conditions.clone(),
            desired_scale: status.desired_scale,
            actual_scale: status.actual_scale,
        }
    }
}

impl Condition {
    pub fn new(type_: &str, status: &str) -> Self {
        Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: None,
            message: None,
            last_transition_time: None,
        }
    }

    pub fn with_reason(mut self, reason: &str, message: impl Into<String>) -> Self {
        self.reason = Some(reason.to_string());
        self.message = Some(message.into());
        self
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<LoadBalancerIngressStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerIngressStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_internal: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mesh_only: bool,
}

impl LoadBalancerStatus {
    fn internal_domain(domain: &str) -> Self {
        LoadBalancerStatus {
            ingress: vec![LoadBalancerIngressStatus {
                domain_internal: Some(domain.to_string()),
                ..LoadBalancerIngressStatus::default()
            }],
        }
    }
}

impl Status {
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Replaces the condition of the same type, keeping the list sorted by type.
    pub fn set_condition(&mut self, condition: Condition) {
        match self
            .conditions
            .binary_search_by(|c| c.type_.as_str().cmp(&condition.type_))
        {
            Ok(i) => self.conditions[i] = condition,
            Err(i) => self.conditions.insert(i, condition),
        }
    }

    /// Knative's living condition set: `Ready` is True iff `NetworkConfigured` and
    /// `LoadBalancerReady` are both True, False (with that condition's reason and message) if
    /// either is False, otherwise Unknown. NetworkConfigured is consulted first.
    pub fn derive_ready(&mut self) {
        self.derive_ready_from(INGRESS_READY_DEPENDENTS);
    }

    /// The living condition set over `dependents`, consulted in order.
    pub fn derive_ready_from(&mut self, dependents: &[&str]) {
        let state = |status: &str| {
            dependents
                .iter()
                .filter_map(|t| self.condition(t))
                .find(|c| c.status == status)
                .cloned()
        };
        let missing = dependents.iter().any(|t| self.condition(t).is_none());
        let ready = if let Some(failed) = state(STATUS_FALSE) {
            ready_like(STATUS_FALSE, &failed)
        } else if let Some(waiting) = state(STATUS_UNKNOWN) {
            ready_like(STATUS_UNKNOWN, &waiting)
        } else if missing {
            Condition::new(CONDITION_READY, STATUS_UNKNOWN)
        } else {
            Condition::new(CONDITION_READY, STATUS_TRUE)
        };
        self.set_condition(ready);
    }
}

fn ready_like(status: &str, cause: &Condition) -> Condition {
    Condition {
        reason: cause.reason.clone(),
        message: cause.message.clone(),
        ..Condition::new(CONDITION_READY, status)
    }
}

impl ObjectStatus {
    /// A KIngress status with `observedGeneration = generation` and `Ready` derived.
    pub fn ingress(
        namespace: &str,
        name: &str,
        generation: i64,
        conditions: Vec<Condition>,
    ) -> Self {
        let mut status = Status {
            observed_generation: generation,
            ..Status::default()
        };
        for condition in conditions {
            status.set_condition(condition);
        }
        status.derive_ready();
        ObjectStatus {
            api_version: crate::object::INGRESS_API_VERSION.to_string(),
            kind: "Ingress".to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            generation,
            status,
        }
    }

    /// A manifest file entry: `Ready=False` with the reason and message.
    pub fn manifest_file(file: &str, reason: &str, message: String) -> Self {
        ObjectStatus {
            api_version: MANIFEST_FILE_API_VERSION.to_string(),
            kind: MANIFEST_FILE_KIND.to_string(),
            namespace: String::new(),
            name: file.to_string(),
            generation: 0,
            // observedGeneration stays 0: a file has no generation.
            status: Status {
                conditions: vec![
                    Condition::new(CONDITION_READY, STATUS_FALSE).with_reason(reason, message)
                ],
                ..Status::default()
            },
        }
    }

    pub fn key(&self) -> (String, String, String) {
        (self.kind.clone(), self.namespace.clone(), self.name.clone())
    }

    /// Translated, and waiting only for the data plane.
    fn awaits_load_balancer(&self) -> bool {
        let is = |t: &str, s: &str| self.status.condition(t).is_some_and(|c| c.status == s);
        match self.kind.as_str() {
            "Ingress" => {
                is(CONDITION_NETWORK_CONFIGURED, STATUS_TRUE)
                    && is(CONDITION_LOAD_BALANCER_READY, STATUS_UNKNOWN)
            }
            "Route" => {
                is(CONDITION_ALL_TRAFFIC_ASSIGNED, STATUS_TRUE)
                    && is(CONDITION_INGRESS_READY, STATUS_UNKNOWN)
            }
            _ => false,
        }
    }
}

const REVISION_KIND: &str = "Revision";

/// The reason shown when a proxy refused a resource an object needs.
pub const REASON_PROXY_REJECTED: &str = "ProxyRejected";
/// apiVersion and kind of the `/status` entries that describe connected proxies.
pub const PROXY_KIND: &str = "Proxy";
/// A problem entry's reason when the API server refused sluice (RBAC).
pub const REASON_FORBIDDEN: &str = "Forbidden";
/// A problem entry's reason for any other API error.
pub const REASON_API_ERROR: &str = "APIError";

/// One connected proxy, as `/status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyInfo {
    /// Where it connects from, and how it authenticated.
    pub address: String,
    pub identity: String,
    /// The controller's config sequence the proxy has applied, and the current one.
    pub applied_sequence: u64,
    pub current_sequence: u64,
    /// The digest of the config (`/config`'s `version`) once the proxy is up to date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `type/name: reason` of every resource it refuses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<String>,
}

/// The latest statuses, with readiness and transition times layered on top of translation.
///
/// Readiness is by config sequence: a status recorded with [`StatusBoard::update`] at sequence
/// `s` waits for the data plane; [`StatusBoard::applied`] with `s` or later (every connected
/// proxy has applied it) turns it ready, unless a proxy refuses a resource it needs
/// ([`StatusBoard::set_rejections`]).
#[derive(Clone, Debug)]
pub struct StatusBoard {
    public_lb: LoadBalancerStatus,
    private_lb: LoadBalancerStatus,
    entries: BTreeMap<(String, String, String), BoardEntry>,
    /// Entries waiting for the data plane: (sequence they wait for, key).
    waiting: BTreeSet<(u64, (String, String, String))>,
    /// The highest sequence reported applied.
    applied: u64,
    /// Revision `(namespace, name)` → (desired, actual) from [`StatusBoard::set_scale`].
    scales: BTreeMap<(String, String), (Option<i32>, u32)>,
    /// Objects a proxy refuses a resource of → the message.
    rejected: BTreeMap<(String, String, String), String>,
    /// Revision `(namespace, name)` → why its last scale write failed.
    scale_errors: BTreeMap<(String, String), String>,
    proxies: BTreeMap<String, ProxyInfo>,
    /// `(kind, name)` of a part of sluice that is failing (a watch, the status writer) → why.
    problems: BTreeMap<(String, String), String>,
    /// Keys whose shown status changed since [`StatusBoard::take_changed`] (removals too);
    /// `None` until its first call: without a status writer nothing is tracked.
    changed: Option<BTreeSet<(String, String, String)>>,
}

#[derive(Clone, Debug)]
struct BoardEntry {
    /// As translation produced it: what "this translation" means.
    translated: ObjectStatus,
    /// The sequence whose application makes it ready.
    pending_since: u64,
    lb_ready: bool,
    /// What [`StatusBoard::list`] shows.
    shown: ObjectStatus,
}

impl Default for StatusBoard {
    fn default() -> Self {
        StatusBoard::new(&TranslateConfig::default())
    }
}

impl StatusBoard {
    /// Takes the load-balancer domains to publish from the config.
    pub fn new(config: &TranslateConfig) -> Self {
        StatusBoard {
            public_lb: LoadBalancerStatus::internal_domain(&config.public_lb_domain),
            private_lb: LoadBalancerStatus::internal_domain(&config.private_lb_domain),
            entries: BTreeMap::new(),
            waiting: BTreeSet::new(),
            applied: 0,
            scales: BTreeMap::new(),
            rejected: BTreeMap::new(),
            scale_errors: BTreeMap::new(),
            proxies: BTreeMap::new(),
            problems: BTreeMap::new(),
            changed: None,
        }
    }

    /// The statuses shown differently since the last call (removed ones are not returned),
    /// for whoever writes them back. The first call starts the tracking and returns nothing:
    /// a writer lists every status once, then takes the changes.
    pub fn take_changed(&mut self) -> Vec<ObjectStatus> {
        self.changed
            .replace(BTreeSet::new())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|key| self.entries.get(&key).map(|e| e.shown.clone()))
            .collect()
    }

    fn mark_changed(&mut self, key: (String, String, String)) {
        if let Some(changed) = &mut self.changed {
            changed.insert(key);
        }
    }

    /// True if [`StatusBoard::take_changed`] has something.
    pub fn has_changes(&self) -> bool {
        self.changed.as_ref().is_some_and(|c| !c.is_empty())
    }

    /// Shows (or, with `None`, clears) a problem of a part of sluice: `kind` is what it is
    /// (`Watch`, `Writer`), `name` which one. Returns true if it changed.
    pub fn set_problem(&mut self, kind: &str, name: &str, message: Option<String>) -> bool {
        let key = (kind.to_string(), name.to_string());
        let old = match message {
            Some(message) => self.problems.insert(key.clone(), message),
            None => self.problems.remove(&key),
        };
        old.as_ref() != self.problems.get(&key)
    }

    /// Replaces every problem of `kind`. Returns true if any changed.
    pub fn set_problems(&mut self, kind: &str, problems: BTreeMap<String, String>) -> bool {
        let old: BTreeMap<String, String> = self
            .problems
            .iter()
            .filter(|((k, _), _)| k == kind)
            .map(|((_, name), m)| (name.clone(), m.clone()))
            .collect();
        if old == problems {
            return false;
        }
        self.problems.retain(|(k, _), _| k != kind);
        for (name, message) in problems {
            self.problems.insert((kind.to_string(), name), message);
        }
        true
    }

    /// Records translation's status changes, made at config sequence `seq`. Returns true if
    /// any shown status changed.
    pub fn update(&mut self, seq: u64, changes: Vec<StatusChange>, now: &str) -> bool {
        let mut changed = false;
        for change in changes {
            match change {
                StatusChange::Remove {
                    kind,
                    namespace,
                    name,
                } => {
                    if kind == REVISION_KIND {
                        let revision = (namespace.clone(), name.clone());
                        self.scales.remove(&revision);
                        self.scale_errors.remove(&revision);
                    }
                    let key = (kind, namespace, name);
                    if let Some(old) = self.entries.remove(&key) {
                        self.waiting.remove(&(old.pending_since, key.clone()));
                        self.mark_changed(key);
                        changed = true;
                    }
                }
                StatusChange::Set(translated) => {
                    let key = translated.key();
                    let prev = self.entries.remove(&key);
                    let (pending_since, lb_ready) = match &prev {
                        Some(p) if p.translated == translated => (p.pending_since, p.lb_ready),
                        _ => (seq, false),
                    };
                    if let Some(p) = &prev {
                        self.waiting.remove(&(p.pending_since, key.clone()));
                    }
                    let lb_ready = lb_ready
                        || (pending_since <= self.applied && !self.rejected.contains_key(&key));
                    if !lb_ready && translated.awaits_load_balancer() {
                        self.waiting.insert((pending_since, key.clone()));
                    }
                    let shown =
                        self.render(&translated, lb_ready, prev.as_ref().map(|p| &p.shown), now);
                    if prev.as_ref().map(|p| &p.shown) != Some(&shown) {
                        self.mark_changed(key.clone());
                        changed = true;
                    }
                    self.entries.insert(
                        key,
                        BoardEntry {
                            translated,
                            pending_since,
                            lb_ready,
                            shown,
                        },
                    );
                }
            }
        }
        changed
    }

    /// Every connected proxy has applied sequence `seq`: what waited for it (or for an
    /// earlier one) becomes LoadBalancerReady. Returns true if any shown status changed.
    pub fn applied(&mut self, seq: u64, now: &str) -> bool {
        self.applied = self.applied.max(seq);
        let due: Vec<(u64, (String, String, String))> = self
            .waiting
            .iter()
            .take_while(|(s, _)| *s <= seq)
            .cloned()
            .collect();
        let mut changed = false;
        for item in due {
            if self.rejected.contains_key(&item.1) {
                continue;
            }
            self.waiting.remove(&item);
            changed |= self.rerender(&item.1, Some(true), now);
        }
        changed
    }

    /// The objects a proxy refuses a resource of, with the message to show. Replaces the
    /// previous set. Returns true if any shown status changed.
    pub fn set_rejections(
        &mut self,
        rejected: BTreeMap<(String, String, String), String>,
        now: &str,
    ) -> bool {
        let old = std::mem::replace(&mut self.rejected, rejected);
        let touched: BTreeSet<(String, String, String)> =
            old.keys().chain(self.rejected.keys()).cloned().collect();
        let mut changed = false;
        for key in touched {
            if old.get(&key) == self.rejected.get(&key) {
                continue;
            }
            let Some(entry) = self.entries.get(&key) else {
                continue;
            };
            if self.rejected.contains_key(&key) {
                // Refused now: not ready until a version is applied that nobody refuses.
                let (pending_since, was_ready) = (entry.pending_since, entry.lb_ready);
                if was_ready && entry.translated.awaits_load_balancer() {
                    self.waiting.insert((pending_since, key.clone()));
                }
                changed |= self.rerender(&key, Some(false), now);
            } else {
                let ready = entry.pending_since <= self.applied;
                if ready {
                    self.waiting.remove(&(entry.pending_since, key.clone()));
                }
                changed |= self.rerender(&key, Some(ready), now);
            }
        }
        changed
    }

    fn rerender(
        &mut self,
        key: &(String, String, String),
        lb_ready: Option<bool>,
        now: &str,
    ) -> bool {
        let Some(entry) = self.entries.get(key) else {
            return false;
        };
        let lb_ready = lb_ready.unwrap_or(entry.lb_ready);
        let shown = self.render(&entry.translated, lb_ready, Some(&entry.shown), now);
        let Some(entry) = self.entries.get_mut(key) else {
            return false;
        };
        entry.lb_ready = lb_ready;
        let changed = entry.shown != shown;
        entry.shown = shown;
        if changed {
            self.mark_changed(key.clone());
        }
        changed
    }

    /// Records a Revision's scale as the autoscaler sees it: `desired` is its latest decision
    /// (None before the first), `actual` the ready instances. Kept until the Revision's status
    /// is removed. Returns true if the shown status changed.
    pub fn set_scale(
        &mut self,
        namespace: &str,
        name: &str,
        desired: Option<i32>,
        actual: u32,
    ) -> bool {
        let key = (namespace.to_string(), name.to_string());
        if self.scales.get(&key) == Some(&(desired, actual)) {
            return false;
        }
        self.scales.insert(key, (desired, actual));
        let entry_key = (
            REVISION_KIND.to_string(),
            namespace.to_string(),
            name.to_string(),
        );
        let Some(entry) = self.entries.get_mut(&entry_key) else {
            return false;
        };
        let status = &mut entry.shown.status;
        let actual = Some(i32::try_from(actual).unwrap_or(i32::MAX));
        let changed = status.desired_scale != desired || status.actual_scale != actual;
        status.desired_scale = desired;
        status.actual_scale = actual;
        if changed {
            self.mark_changed(entry_key);
        }
        changed
    }

    /// Records why a Revision's last scale write failed (`None`: it succeeded). A failure shows
    /// as `ResourcesAvailable=False` reason `ScaleFailed`, and makes it not Ready; kept until it
    /// succeeds or the Revision's status is removed. Returns true
    /// if the shown status changed.
    pub fn set_scale_error(
        &mut self,
        namespace: &str,
        name: &str,
        error: Option<String>,
        now: &str,
    ) -> bool {
        let key = (namespace.to_string(), name.to_string());
        let old = match error {
            Some(error) => self.scale_errors.insert(key.clone(), error),
            None => self.scale_errors.remove(&key),
        };
        if old.as_ref() == self.scale_errors.get(&key) {
            return false;
        }
        self.rerender(&(REVISION_KIND.to_string(), key.0, key.1), None, now)
    }

    /// The connected proxies, by name, for `/status`.
    pub fn set_proxies(&mut self, proxies: BTreeMap<String, ProxyInfo>) {
        self.proxies = proxies;
    }

    /// All statuses, sorted by kind, namespace and name, then one entry per connected proxy,
    /// then one per problem of sluice itself.
    pub fn list(&self) -> Vec<ObjectStatus> {
        let mut all: Vec<ObjectStatus> = self.entries.values().map(|e| e.shown.clone()).collect();
        all.extend(self.proxies.iter().map(|(name, info)| {
            let ready = if !info.rejected.is_empty() {
                Condition::new(CONDITION_READY, STATUS_FALSE)
                    .with_reason(REASON_PROXY_REJECTED, info.rejected.join("; "))
            } else if info.applied_sequence < info.current_sequence {
                Condition::new(CONDITION_READY, STATUS_UNKNOWN)
                    .with_reason("Syncing", "applying the latest config")
            } else {
                Condition::new(CONDITION_READY, STATUS_TRUE)
            };
            ObjectStatus {
                api_version: MANIFEST_FILE_API_VERSION.to_string(),
                kind: PROXY_KIND.to_string(),
                namespace: String::new(),
                name: name.clone(),
                generation: 0,
                status: Status {
                    conditions: vec![ready],
                    proxy: Some(info.clone()),
                    ..Status::default()
                },
            }
        }));
        all.extend(self.problems.iter().map(|((kind, name), message)| {
            let reason = if message.contains("403") || message.contains("orbidden") {
                REASON_FORBIDDEN
            } else {
                REASON_API_ERROR
            };
            ObjectStatus {
                api_version: MANIFEST_FILE_API_VERSION.to_string(),
                kind: kind.clone(),
                namespace: String::new(),
                name: name.clone(),
                generation: 0,
                status: Status {
                    conditions: vec![Condition::new(CONDITION_READY, STATUS_FALSE)
                        .with_reason(reason, message.clone())],
                    ..Status::default()
                },
            }
        }));
        all
    }

    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<&ObjectStatus> {
        self.entries
            .get(&(kind.to_string(), namespace.to_string(), name.to_string()))
            .map(|e| &e.shown)
    }

    fn render(
        &self,
        translated: &ObjectStatus,
        lb_ready: bool,
        previous: Option<&ObjectStatus>,
        now: &str,
    ) -> ObjectStatus {
        let mut shown = translated.clone();
        let rejection = self.rejected.get(&translated.key());
        if let (Some(message), true) = (rejection, translated.awaits_load_balancer()) {
            let refused = |type_| {
                Condition::new(type_, STATUS_FALSE)
                    .with_reason(REASON_PROXY_REJECTED, message.clone())
            };
            if translated.kind == "Route" {
                shown.status.set_condition(refused(CONDITION_INGRESS_READY));
                shown.status.derive_ready_from(ROUTE_READY_DEPENDENTS);
            } else {
                shown
                    .status
                    .set_condition(refused(CONDITION_LOAD_BALANCER_READY));
                shown.status.derive_ready();
            }
        } else if lb_ready && translated.awaits_load_balancer() {
            if translated.kind == "Route" {
                shown
                    .status
                    .set_condition(Condition::new(CONDITION_INGRESS_READY, STATUS_TRUE));
                shown.status.derive_ready_from(ROUTE_READY_DEPENDENTS);
            } else {
                shown
                    .status
                    .set_condition(Condition::new(CONDITION_LOAD_BALANCER_READY, STATUS_TRUE));
                shown.status.public_load_balancer = Some(self.public_lb.clone());
                shown.status.private_load_balancer = Some(self.private_lb.clone());
                shown.status.derive_ready();
            }
        }
        if translated.kind == REVISION_KIND {
            let key = (translated.namespace.clone(), translated.name.clone());
            if let Some(&(desired, actual)) = self.scales.get(&key) {
                shown.status.desired_scale = desired;
                shown.status.actual_scale = Some(i32::try_from(actual).unwrap_or(i32::MAX));
            }
            if let Some(error) = self.scale_errors.get(&key) {
                shown.status.set_condition(
                    Condition::new(CONDITION_RESOURCES_AVAILABLE, STATUS_FALSE)
                        .with_reason(REASON_SCALE_FAILED, error.clone()),
                );
                if shown
                    .status
                    .condition(CONDITION_READY)
                    .is_some_and(|c| c.status == STATUS_TRUE)
                {
                    shown.status.set_condition(
                        Condition::new(CONDITION_READY, STATUS_FALSE)
                            .with_reason(REASON_SCALE_FAILED, error.clone()),
                    );
                }
            }
        }
        for condition in &mut shown.status.conditions {
            let before = previous.and_then(|p| p.status.condition(&condition.type_));
            condition.last_transition_time = match before {
                Some(b) if b.status == condition.status => b.last_transition_time.clone(),
                _ => Some(now.to_string()),
            };
        }
        shown
    }
}

#[cfg(test)]
mod tests;
