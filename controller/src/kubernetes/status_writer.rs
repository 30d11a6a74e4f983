//! Writes statuses back: KIngress, Route and Revision, to their `/status` subresource, by
//! the Lease holder only, and only where what the board shows differs from what the API
//! server has.
//!
//! - The board ([`crate::status::StatusBoard`]) says what each status should be; the watchers
//!   record what each object's status is ([`ObservedStatuses`]). A write is a JSON merge patch
//!   of `status` that sets every field the board shows and nulls every other field the object
//!   has, so the result is exactly the board's status.
//! - `lastTransitionTime` is kept from the object where a condition's status is unchanged: a
//!   new leader (whose board stamped its own times) rewrites nothing that did not change.
//! - A write that fails (403, 5xx, lost connection) is retried every second until it succeeds
//!   or the status changes; a 404 means the object is gone. Each failure is logged with the
//!   object's id, and RBAC problems show on `/status` as a `Writer` entry, not as a crash.
//! - On becoming leader the writer compares every status; after that only the ones the board
//!   reports changed.
//! - A new leader has heard from no proxy yet: only the leader serves them, and they are
//!   reconnecting to it. Until one has applied what it published (at most [`SETTLE`]), it
//!   does not turn a KIngress or Route that the API server shows served at the same
//!   generation back to not ready; everything else is written at once.

use super::source::api_resource;
use crate::hub::Hub;
use crate::object::{Kind, ObjectKey};
use crate::status::{
    ObjectStatus, RevisionStatus, RouteStatus, Status, CONDITION_INGRESS_READY,
    CONDITION_LOAD_BALANCER_READY, STATUS_TRUE, STATUS_UNKNOWN,
};
use futures_util::stream::{self, StreamExt};
use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, warn};

/// Writes in flight at once.
const CONCURRENT_WRITES: usize = 16;
const RETRY: Duration = Duration::from_secs(1);
/// How long a new leader waits for proxies to confirm a readiness the API server shows.
/// Proxies back off at most 15 s between attempts, so by then every live one has reached it.
pub const SETTLE: Duration = Duration::from_secs(20);

/// Each watched object's status as the API server last showed it.
#[derive(Default)]
pub struct ObservedStatuses {
    statuses: Mutex<HashMap<ObjectKey, Value>>,
}

impl ObservedStatuses {
    pub fn observe(&self, key: ObjectKey, status: Option<&Value>) {
        let mut statuses = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        match status {
            Some(status) if !status.is_null() => {
                statuses.insert(key, status.clone());
            }
            _ => {
                statuses.remove(&key);
            }
        }
    }

    pub fn forget(&self, key: &ObjectKey) {
        self.statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    pub fn get(&self, key: &ObjectKey) -> Option<Value> {
        self.statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }
}

/// The kinds whose status sluice writes.
fn kind_of(status: &ObjectStatus) -> Option<Kind> {
    match (status.api_version.as_str(), status.kind.as_str()) {
        (crate::object::INGRESS_API_VERSION, "Ingress") => Some(Kind::Ingress),
        (crate::object::SLUICE_API_VERSION, "Route") => Some(Kind::Route),
        (crate::object::SLUICE_API_VERSION, "Revision") => Some(Kind::Revision),
        _ => None,
    }
}

/// The status to write for `kind`: the board's, in the kind's own status shape (a CRD's
/// structural schema prunes anything else, which would then differ forever), with
/// `lastTransitionTime` kept from `observed` for every condition whose status did not change.
pub fn desired_status(kind: Kind, board: &Status, observed: Option<&Value>) -> Value {
    let mut status = board.clone();
    let observed_conditions: Vec<Value> = observed
        .and_then(|o| o.get("conditions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for condition in &mut status.conditions {
        let before = observed_conditions
            .iter()
            .find(|c| c.get("type").and_then(Value::as_str) == Some(condition.type_.as_str()));
        let Some(before) = before else { continue };
        if before.get("status").and_then(Value::as_str) == Some(condition.status.as_str()) {
            if let Some(time) = before.get("lastTransitionTime").and_then(Value::as_str) {
                condition.last_transition_time = Some(time.to_string());
            }
        }
    }
    let shaped = match kind {
        Kind::Route => serde_json::to_value(RouteStatus::from(&status)),
        Kind::Revision => serde_json::to_value(RevisionStatus::from(&status)),
        _ => serde_json::to_value(&status),
    };
    shaped.unwrap_or(Value::Null)
}

/// True when the board waits for proxies to confirm what `observed` already shows served (the
/// load balancer of a KIngress, the ingress of a Route), at the same generation.
pub fn awaits_confirmation(kind: Kind, board: &Status, observed: Option<&Value>) -> bool {
    let condition = match kind {
        Kind::Ingress => CONDITION_LOAD_BALANCER_READY,
        Kind::Route => CONDITION_INGRESS_READY,
        _ => return false,
    };
    let Some(observed) = observed else {
        return false;
    };
    let waiting = board
        .condition(condition)
        .is_some_and(|c| c.status == STATUS_UNKNOWN);
    let served = observed
        .get("conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| {
            c.get("type").and_then(Value::as_str) == Some(condition)
                && c.get("status").and_then(Value::as_str) == Some(STATUS_TRUE)
        });
    let same_generation = observed.get("observedGeneration").and_then(Value::as_i64)
        == Some(board.observed_generation);
    waiting && served && same_generation
}

/// The merge patch that turns `observed` into `desired`: `desired`'s fields, and `null` for
/// every other top-level field `observed` has. `None` when they are equal.
pub fn status_patch(desired: &Value, observed: Option<&Value>) -> Option<Value> {
    if observed == Some(desired) {
        return None;
    }
    let mut status = desired.as_object().cloned().unwrap_or_default();
    if let Some(observed) = observed.and_then(Value::as_object) {
        for key in observed.keys() {
            if !status.contains_key(key) {
                status.insert(key.clone(), Value::Null);
            }
        }
    }
    Some(serde_json::json!({ "status": status }))
}

pub struct StatusWriter {
    client: kube::Client,
    hub: Arc<Hub>,
    observed: Arc<ObservedStatuses>,
    leader: watch::Receiver<bool>,
}

enum Outcome {
    Written,
    Unchanged,
    Gone,
    /// Not written yet: it [`awaits_confirmation`] from proxies still reconnecting.
    Held,
    Failed(String),
}

type Key = (String, String, String);

impl StatusWriter {
    pub fn new(
        client: kube::Client,
        hub: Arc<Hub>,
        observed: Arc<ObservedStatuses>,
        leader: watch::Receiver<bool>,
    ) -> StatusWriter {
        StatusWriter {
            client,
            hub,
            observed,
            leader,
        }
    }

    /// Runs until `shutdown`: waits for the first load, then writes while leading.
    pub async fn run(
        &self,
        mut loaded: watch::Receiver<bool>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut leader = self.leader.clone();
        tokio::select! {
            _ = loaded.wait_for(|l| *l) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        loop {
            tokio::select! {
                _ = leader.wait_for(|l| *l) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            // Whatever changed while following is covered by comparing everything.
            self.hub.take_changed_statuses();
            let mut pending: BTreeMap<Key, ObjectStatus> = self
                .hub
                .statuses()
                .into_iter()
                .filter(|s| kind_of(s).is_some())
                .map(|s| (s.key(), s))
                .collect();
            let changed = self.hub.status_changed();
            // Settled once a proxy has applied what this replica published when it took over.
            let published = self.hub.cache().read().seq();
            let settle_until = Instant::now() + SETTLE;
            let mut fleet = self.hub.fleet_applied();
            let mut settled = false;
            let mut held: BTreeMap<Key, ObjectStatus> = BTreeMap::new();
            loop {
                if !settled {
                    let (applied, proxies) = *fleet.borrow_and_update();
                    if (proxies > 0 && applied >= published) || Instant::now() >= settle_until {
                        settled = true;
                        pending.append(&mut held);
                    }
                }
                if !pending.is_empty() {
                    let batch = std::mem::take(&mut pending);
                    let (failed, unconfirmed) = self
                        .write_all(batch.into_values().collect(), !settled)
                        .await;
                    pending.extend(failed.into_iter().map(|s| (s.key(), s)));
                    held.extend(unconfirmed.into_iter().map(|s| (s.key(), s)));
                }
                let retry = !pending.is_empty();
                tokio::select! {
                    _ = changed.notified() => {}
                    _ = tokio::time::sleep(RETRY), if retry => {}
                    _ = fleet.changed(), if !settled => {}
                    _ = tokio::time::sleep_until(settle_until), if !settled => {}
                    _ = leader.wait_for(|l| !*l) => break,
                    _ = shutdown.wait_for(|s| *s) => return,
                }
                for status in self.hub.take_changed_statuses() {
                    if kind_of(&status).is_some() {
                        held.remove(&status.key());
                        pending.insert(status.key(), status);
                    }
                }
            }
        }
    }

    /// Writes each status that differs; returns the ones to retry, and the ones held back
    /// (only when `hold` is set) because they await confirmation from proxies.
    async fn write_all(
        &self,
        statuses: Vec<ObjectStatus>,
        hold: bool,
    ) -> (Vec<ObjectStatus>, Vec<ObjectStatus>) {
        let outcomes: Vec<(ObjectStatus, Outcome)> = stream::iter(statuses)
            .map(|status| async move {
                let outcome = self.write(&status, hold).await;
                (status, outcome)
            })
            .buffer_unordered(CONCURRENT_WRITES)
            .collect()
            .await;
        let mut failed = Vec::new();
        let mut held = Vec::new();
        let mut errors = BTreeMap::new();
        for (status, outcome) in outcomes {
            match outcome {
                Outcome::Failed(error) => {
                    errors.insert(
                        format!("{} {}/{}", status.kind, status.namespace, status.name),
                        error,
                    );
                    failed.push(status);
                }
                Outcome::Held => held.push(status),
                Outcome::Written | Outcome::Unchanged | Outcome::Gone => {}
            }
        }
        self.hub.set_write_errors(errors);
        (failed, held)
    }

    async fn write(&self, status: &ObjectStatus, hold: bool) -> Outcome {
        let Some(kind) = kind_of(status) else {
            return Outcome::Unchanged;
        };
        if !*self.leader.borrow() {
            return Outcome::Unchanged;
        }
        let key = ObjectKey::new(kind, &status.namespace, &status.name);
        let observed = self.observed.get(&key);
        if hold && awaits_confirmation(kind, &status.status, observed.as_ref()) {
            return Outcome::Held;
        }
        let desired = desired_status(kind, &status.status, observed.as_ref());
        let Some(patch) = status_patch(&desired, observed.as_ref()) else {
            return Outcome::Unchanged;
        };
        let api: kube::Api<DynamicObject> =
            kube::Api::namespaced_with(self.client.clone(), &key.namespace, &api_resource(kind));
        match api
            .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(object) => {
                // Record what we wrote at once, so a burst of changes does not rewrite it
                // before the watch echoes it back.
                let written = serde_json::to_value(&object)
                    .ok()
                    .and_then(|v| v.get("status").cloned());
                self.observed.observe(key.clone(), written.as_ref());
                debug!(object = %key, "status written");
                Outcome::Written
            }
            Err(kube::Error::Api(response)) if response.code == 404 => Outcome::Gone,
            Err(error) => {
                warn!(object = %key, %error, "cannot write status; retrying");
                Outcome::Failed(error.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests;
