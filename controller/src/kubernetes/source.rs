//! The API server as a source: one kube-runtime watcher per kind, feeding the hub's store.
//!
//! - **One copy of each object.** The watchers keep no cache of their own (no kube reflector
//!   `Store`): each event is decoded into the controller's own model, which keeps only the
//!   fields sluice reads, and goes straight into the one store. A relist (`Init` … `InitDone`)
//!   replaces that kind's objects at `InitDone`, like a reflector's store swap, so objects
//!   deleted while a watch was down disappear.
//! - **Filters.** KIngresses of another class are dropped on arrival (and removed if one
//!   changes class), so they are never stored, translated or written. ConfigMaps are watched in
//!   the system namespace only, and only `config-autoscaler`, `config-network` and
//!   `config-sluice` are kept. Secret values other than `tls.crt`/`tls.key`/`ca.crt` are
//!   dropped (their keys are kept, so a Secret with the wrong keys is reported by name). The
//!   `last-applied-configuration` annotation (a full copy of the object) is dropped.
//! - **Coalescing.** Events that are ready together (an EndpointSlice churn burst, a relist)
//!   are applied in one `Hub::edit`: one translation and one publish.
//! - **Readiness.** Nothing is translated or announced loaded before every watcher has listed
//!   once (the first state is one edit); until then the proxies' streams are held
//!   (`ControlPlane::streams`).
//! - **Errors** (a 403, a lost connection, a 410 on resume) are retried by the watchers with
//!   backoff (800 ms doubling to 30 s); each shows as a `Watch` entry on `/status` until the
//!   watcher recovers. A kind the API server does not serve at all (404: its CRD, Knative's
//!   KIngress say, is not installed) counts as listed and empty, so sluice runs without
//!   Knative; the watcher keeps retrying and picks the kind up once it is installed.

use super::status_writer::ObservedStatuses;
use crate::hub::Hub;
use crate::object::{Kind, Object, ObjectKey, INGRESS_CLASS_ANNOTATION};
use futures_util::stream::{self, StreamExt};
use futures_util::FutureExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// How `/status` shows a kind whose resource the API server does not serve.
const NOT_SERVED: &str = "not served by the API server (CRD not installed?); treated as empty";

/// Whether the list failed because the resource does not exist (404): its CRD is not installed.
fn not_served(error: &watcher::Error) -> bool {
    matches!(
        error,
        watcher::Error::InitialListFailed(kube::Error::Api(status)) if status.code == 404
    )
}

/// System ConfigMaps sluice reads.
pub const SYSTEM_CONFIG_MAPS: &[&str] = &["config-autoscaler", "config-network", "config-sluice"];
/// Secret keys sluice reads; the values of others are not kept.
const SECRET_KEYS: &[&str] = &["tls.crt", "tls.key", "ca.crt"];
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Most events applied in one edit.
const BATCH: usize = 4096;

/// One watched kind.
#[derive(Clone, Debug)]
pub struct WatchedKind {
    pub kind: Kind,
    pub resource: ApiResource,
    /// `None`: every namespace.
    pub namespace: Option<String>,
}

impl WatchedKind {
    /// `group/version/plural` (for messages).
    pub fn name(&self) -> String {
        if self.resource.group.is_empty() {
            format!("{}/{}", self.resource.version, self.resource.plural)
        } else {
            format!(
                "{}/{}/{}",
                self.resource.group, self.resource.version, self.resource.plural
            )
        }
    }
}

/// The API resource of each kind sluice reads.
pub fn api_resource(kind: Kind) -> ApiResource {
    let (group, version, plural) = match kind {
        Kind::Ingress => ("networking.internal.knative.dev", "v1alpha1", "ingresses"),
        Kind::Service => ("", "v1", "services"),
        Kind::EndpointSlice => ("discovery.k8s.io", "v1", "endpointslices"),
        Kind::Secret => ("", "v1", "secrets"),
        Kind::ConfigMap => ("", "v1", "configmaps"),
        Kind::Route => ("sluice.dev", "v1alpha1", "routes"),
        Kind::Revision => ("sluice.dev", "v1alpha1", "revisions"),
    };
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind.as_str()),
        plural,
    )
}

/// Every kind, scoped: ConfigMaps in the system namespace, the rest in `namespace` (or all).
pub fn watched_kinds(namespace: Option<&str>, system_namespace: &str) -> Vec<WatchedKind> {
    [
        Kind::Ingress,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Secret,
        Kind::ConfigMap,
        Kind::Route,
        Kind::Revision,
    ]
    .into_iter()
    .map(|kind| WatchedKind {
        kind,
        resource: api_resource(kind),
        namespace: if kind == Kind::ConfigMap {
            Some(system_namespace.to_string())
        } else {
            namespace.map(str::to_string)
        },
    })
    .collect()
}

/// What one watched object means for the store.
#[derive(Debug)]
pub enum Decoded {
    Keep(Object),
    /// Not ours (another class, an unread ConfigMap) or undecodable: not stored.
    Skip(ObjectKey),
}

/// Turns one watched object into what the store keeps; `class` is our ingress class.
pub fn decode(kind: Kind, mut value: Value, class: &str) -> Result<Decoded, String> {
    let meta = value.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let namespace = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .filter(|ns| !ns.is_empty())
        .unwrap_or("default")
        .to_string();
    let key = ObjectKey::new(kind, namespace, name);
    if let Some(annotations) = value
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove(LAST_APPLIED);
    }
    match kind {
        Kind::Ingress => {
            let ours = value
                .pointer(&format!(
                    "/metadata/annotations/{}",
                    INGRESS_CLASS_ANNOTATION.replace('/', "~1")
                ))
                .and_then(Value::as_str)
                == Some(class);
            if !ours {
                return Ok(Decoded::Skip(key));
            }
        }
        Kind::ConfigMap if !SYSTEM_CONFIG_MAPS.contains(&key.name.as_str()) => {
            return Ok(Decoded::Skip(key));
        }
        Kind::Secret => {
            for field in ["data", "stringData"] {
                if let Some(data) = value.get_mut(field).and_then(Value::as_object_mut) {
                    for (k, v) in data.iter_mut() {
                        if !SECRET_KEYS.contains(&k.as_str()) {
                            *v = Value::String(String::new());
                        }
                    }
                }
            }
        }
        _ => {}
    }
    if let Some(object) = value.as_object_mut() {
        object.remove("status");
    }
    Object::decode(kind, value)
        .map(Decoded::Keep)
        .map_err(|error| format!("{key}: {error}"))
}

type Events = Pin<
    Box<dyn futures_util::Stream<Item = (usize, watcher::Result<Event<DynamicObject>>)> + Send>,
>;

/// Feeds the hub from the API server.
pub struct KubernetesSource {
    client: kube::Client,
    kinds: Vec<WatchedKind>,
    hub: Arc<Hub>,
    observed: Arc<ObservedStatuses>,
}

/// A relist in progress, per kind.
#[derive(Default)]
struct Relist {
    objects: BTreeMap<ObjectKey, Object>,
    /// Keys listed but not stored (another class, …): to be removed if stored.
    skipped: BTreeSet<ObjectKey>,
    /// Keys listed that do not decode: their last good version stays.
    undecodable: BTreeSet<ObjectKey>,
}

/// The changes of one batch, in order.
enum Change {
    Upsert(Object),
    Delete(ObjectKey),
    /// `InitDone`: the kind's objects are exactly these (in this watcher's scope).
    Replace(usize, Relist),
}

impl KubernetesSource {
    pub fn new(
        client: kube::Client,
        namespace: Option<String>,
        system_namespace: String,
        hub: Arc<Hub>,
        observed: Arc<ObservedStatuses>,
    ) -> KubernetesSource {
        KubernetesSource {
            client,
            kinds: watched_kinds(namespace.as_deref(), &system_namespace),
            hub,
            observed,
        }
    }

    fn events(&self) -> Events {
        let streams = self.kinds.iter().enumerate().map(|(i, watched)| {
            let api: kube::Api<DynamicObject> = match &watched.namespace {
                Some(ns) => kube::Api::namespaced_with(self.client.clone(), ns, &watched.resource),
                None => kube::Api::all_with(self.client.clone(), &watched.resource),
            };
            watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .map(move |event| (i, event))
                .boxed()
        });
        stream::select_all(streams).boxed()
    }

    /// Runs until `shutdown`; `on_loaded` once every kind has listed and been published.
    pub async fn run(
        &self,
        on_loaded: Box<dyn FnOnce() + Send>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let class = self.hub.config().ingress_class.clone();
        let mut events = self.events();
        let mut relists: Vec<Option<Relist>> = self.kinds.iter().map(|_| None).collect();
        let mut listed = vec![false; self.kinds.len()];
        let mut on_loaded = Some(on_loaded);
        let mut first_load: Vec<Change> = Vec::new();
        // Formatted once: every event clears (or sets) its watch's problem by name.
        let names: Vec<String> = self.kinds.iter().map(WatchedKind::name).collect();
        loop {
            let first = tokio::select! {
                next = events.next() => next,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            let Some(first) = first else { return };
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match events.next().now_or_never() {
                    Some(Some(event)) => batch.push(event),
                    _ => break,
                }
            }
            let mut changes = Vec::new();
            for (i, event) in batch {
                let kind = self.kinds[i].kind;
                let event = match event {
                    Ok(event) => {
                        self.hub.set_watch_error(&names[i], None);
                        event
                    }
                    Err(error) if not_served(&error) => {
                        // The kind's CRD is not installed (Knative Serving absent, say): it
                        // has no objects, and the first load must not wait for it. The
                        // watcher keeps retrying, so a CRD installed later is picked up. A 404
                        // after a first list keeps what is stored: deleting a CRD deletes its
                        // objects first (those arrive as deletions), and a passing 404 must
                        // not wipe every route.
                        if !listed[i] {
                            info!(watch = %names[i], "not served by the API server (CRD not installed?); treated as empty until it is");
                            changes.push(Change::Replace(i, Relist::default()));
                            listed[i] = true;
                        }
                        self.hub
                            .set_watch_error(&names[i], Some(format!("{NOT_SERVED}: {error}")));
                        continue;
                    }
                    Err(error) => {
                        warn!(watch = %names[i], %error, "watch failed; retrying");
                        self.hub.set_watch_error(&names[i], Some(error.to_string()));
                        continue;
                    }
                };
                match event {
                    Event::Init => relists[i] = Some(Relist::default()),
                    Event::InitApply(object) => {
                        let relist = relists[i].get_or_insert_with(Relist::default);
                        let key = object_key(kind, &object);
                        match self.decode(kind, object, &class) {
                            Some(Decoded::Keep(object)) => {
                                relist.objects.insert(object.key(), object);
                            }
                            Some(Decoded::Skip(key)) => {
                                relist.skipped.insert(key);
                            }
                            None => {
                                relist.undecodable.insert(key);
                            }
                        }
                    }
                    Event::InitDone => {
                        let relist = relists[i].take().unwrap_or_default();
                        debug!(watch = %names[i], objects = relist.objects.len(), "listed");
                        changes.push(Change::Replace(i, relist));
                        listed[i] = true;
                    }
                    Event::Apply(object) => match self.decode(kind, object, &class) {
                        Some(Decoded::Keep(object)) => changes.push(Change::Upsert(object)),
                        Some(Decoded::Skip(key)) => changes.push(Change::Delete(key)),
                        None => {}
                    },
                    Event::Delete(object) => {
                        let key = object_key(kind, &object);
                        self.observed.forget(&key);
                        changes.push(Change::Delete(key));
                    }
                }
            }
            // Until every kind has listed, changes wait: one translation of the whole first
            // state, instead of (say) every KIngress first translated without its Services.
            let all_listed = listed.iter().all(|l| *l);
            if on_loaded.is_some() && !all_listed {
                first_load.append(&mut changes);
                continue;
            }
            first_load.append(&mut changes);
            if !first_load.is_empty() {
                self.apply(std::mem::take(&mut first_load));
            }
            if on_loaded.is_some() {
                info!(
                    objects = self.hub.object_count(),
                    "kubernetes: every watch has listed"
                );
                if let Some(on_loaded) = on_loaded.take() {
                    on_loaded();
                }
            }
        }
    }

    /// Decodes and records the observed status; `None` for an object that cannot be decoded
    /// (its last good version stays).
    fn decode(&self, kind: Kind, object: DynamicObject, class: &str) -> Option<Decoded> {
        let value = match serde_json::to_value(&object) {
            Ok(value) => value,
            Err(error) => {
                warn!(%error, "cannot encode a watched object");
                return None;
            }
        };
        let status = matches!(kind, Kind::Ingress | Kind::Route | Kind::Revision)
            .then(|| value.get("status").cloned())
            .flatten();
        match decode(kind, value, class) {
            Ok(Decoded::Keep(object)) => {
                // Only objects whose status sluice may write are remembered.
                if matches!(kind, Kind::Ingress | Kind::Route | Kind::Revision) {
                    self.observed.observe(object.key(), status.as_ref());
                }
                Some(Decoded::Keep(object))
            }
            Ok(Decoded::Skip(key)) => {
                self.observed.forget(&key);
                Some(Decoded::Skip(key))
            }
            Err(error) => {
                warn!(%error, "cannot decode a watched object; keeping its last good version");
                None
            }
        }
    }

    fn apply(&self, changes: Vec<Change>) {
        let kinds = &self.kinds;
        self.hub.edit(|controller| {
            for change in changes {
                match change {
                    Change::Upsert(object) => {
                        controller.upsert(object);
                    }
                    Change::Delete(key) => {
                        controller.delete(&key);
                    }
                    Change::Replace(i, relist) => {
                        let watched = &kinds[i];
                        let gone: Vec<ObjectKey> = controller
                            .store()
                            .keys()
                            .filter(|key| key.kind == watched.kind)
                            .filter(|key| {
                                watched
                                    .namespace
                                    .as_ref()
                                    .is_none_or(|ns| &key.namespace == ns)
                            })
                            .filter(|key| !relist.objects.contains_key(*key))
                            .filter(|key| !relist.undecodable.contains(*key))
                            .filter(|key| !is_local_instance(controller, key))
                            .cloned()
                            .collect();
                        for key in gone.iter().chain(&relist.skipped) {
                            controller.delete(key);
                        }
                        for (_, object) in relist.objects {
                            controller.upsert(object);
                        }
                    }
                }
            }
        });
    }
}

/// An EndpointSlice the local process scaler published (not the API server's to remove).
fn is_local_instance(controller: &crate::Controller, key: &ObjectKey) -> bool {
    key.kind == Kind::EndpointSlice
        && key.name.contains("-local-")
        && controller.store().get(key).is_some_and(|entry| {
            entry
                .object
                .metadata()
                .labels
                .contains_key(crate::object::REVISION_LABEL)
        })
}

fn object_key(kind: Kind, object: &DynamicObject) -> ObjectKey {
    ObjectKey::new(
        kind,
        object
            .metadata
            .namespace
            .clone()
            .filter(|ns| !ns.is_empty())
            .unwrap_or_else(|| "default".to_string()),
        object.metadata.name.clone().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests;
