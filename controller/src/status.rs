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

use crate::TranslateConfig;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub const CONDITION_READY: &str = "Ready";
pub const CONDITION_NETWORK_CONFIGURED: &str = "NetworkConfigured";
pub const CONDITION_LOAD_BALANCER_READY: &str = "LoadBalancerReady";
pub const CONDITION_ALL_TRAFFIC_ASSIGNED: &str = "AllTrafficAssigned";
pub const CONDITION_INGRESS_READY: &str = "IngressReady";

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
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// RFC 3339; filled in by the [`StatusBoard`] only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
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
            status: Status {
                observed_generation: 0,
                conditions: vec![
                    Condition::new(CONDITION_READY, STATUS_FALSE).with_reason(reason, message)
                ],
                ..Status::default()
            },
        }
    }

    fn key(&self) -> (String, String, String) {
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

/// How many snapshot versions the board remembers for [`StatusBoard::applied`].
const REMEMBERED_VERSIONS: usize = 256;

/// The latest statuses, with readiness and transition times layered on top of translation.
#[derive(Clone, Debug)]
pub struct StatusBoard {
    public_lb: LoadBalancerStatus,
    private_lb: LoadBalancerStatus,
    entries: BTreeMap<(String, String, String), BoardEntry>,
    /// Snapshot version → sequence number of the latest `update` that carried it.
    versions: BTreeMap<String, u64>,
    next_sequence: u64,
    /// Revision `(namespace, name)` → (desired, actual) from [`StatusBoard::set_scale`].
    scales: BTreeMap<(String, String), (Option<i32>, u32)>,
}

#[derive(Clone, Debug)]
struct BoardEntry {
    /// As translation produced it: what "this translation" means.
    translated: ObjectStatus,
    /// Sequence of the first update, in the current unbroken run, carrying `translated`.
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
            versions: BTreeMap::new(),
            next_sequence: 0,
            scales: BTreeMap::new(),
        }
    }

    /// Records the statuses of the translation that produced snapshot `version`; objects
    /// absent from `statuses` are dropped. Returns true if any shown status changed.
    pub fn update(&mut self, version: &str, statuses: Vec<ObjectStatus>, now: &str) -> bool {
        self.next_sequence += 1;
        let sequence = self.next_sequence;
        self.versions.insert(version.to_string(), sequence);
        if self.versions.len() > REMEMBERED_VERSIONS {
            if let Some(oldest) = self
                .versions
                .iter()
                .min_by_key(|(_, seq)| **seq)
                .map(|(v, _)| v.clone())
            {
                self.versions.remove(&oldest);
            }
        }

        let mut previous = std::mem::take(&mut self.entries);
        let revisions: BTreeSet<(&str, &str)> = statuses
            .iter()
            .filter(|s| s.kind == REVISION_KIND)
            .map(|s| (s.namespace.as_str(), s.name.as_str()))
            .collect();
        self.scales.retain(|(namespace, name), _| {
            revisions.contains(&(namespace.as_str(), name.as_str()))
        });
        let mut changed = false;
        for translated in statuses {
            let key = translated.key();
            let prev = previous.remove(&key);
            let (pending_since, lb_ready) = match &prev {
                Some(p) if p.translated == translated => (p.pending_since, p.lb_ready),
                _ => (sequence, false),
            };
            let shown = self.render(&translated, lb_ready, prev.as_ref().map(|p| &p.shown), now);
            changed |= prev.as_ref().map(|p| &p.shown) != Some(&shown);
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
        changed || !previous.is_empty()
    }

    /// The data plane now serves snapshot `version`: every ingress whose current translation
    /// it contains becomes LoadBalancerReady. Unknown versions are ignored. Returns true if any
    /// shown status changed.
    pub fn applied(&mut self, version: &str, now: &str) -> bool {
        let Some(&sequence) = self.versions.get(version) else {
            return false;
        };
        let mut changed = false;
        let keys: Vec<_> = self.entries.keys().cloned().collect();
        for key in keys {
            let Some(entry) = self.entries.get(&key) else {
                continue;
            };
            if entry.lb_ready
                || entry.pending_since > sequence
                || !entry.translated.awaits_load_balancer()
            {
                continue;
            }
            let shown = self.render(&entry.translated, true, Some(&entry.shown), now);
            if let Some(entry) = self.entries.get_mut(&key) {
                entry.lb_ready = true;
                changed |= entry.shown != shown;
                entry.shown = shown;
            }
        }
        changed
    }

    /// Records a Revision's scale as the autoscaler sees it: `desired` is its latest decision
    /// (None before the first), `actual` the ready instances. Kept across [`StatusBoard::update`]
    /// calls until an update no longer lists the Revision. Returns true if the shown status
    /// changed.
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
        changed
    }

    /// All statuses, sorted by kind, namespace and name.
    pub fn list(&self) -> Vec<ObjectStatus> {
        self.entries.values().map(|e| e.shown.clone()).collect()
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
        if lb_ready && translated.awaits_load_balancer() {
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
