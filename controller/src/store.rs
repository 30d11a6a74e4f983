//! The in-memory object store that translation reads.
//!
//! Sources (the manifest directory today, Kubernetes watches later) feed it with
//! [`Store::upsert`] and [`Store::delete`]; translation only reads it. Every object keeps:
//! - a generation: `metadata.generation` when the object has one, otherwise 1 on first sight,
//!   bumped by one whenever its spec (canonical JSON of everything but metadata) changes;
//! - a first-seen sequence number, which decides "older wins" when `creationTimestamp` is
//!   absent. It survives updates and is reassigned only after a delete.

use crate::object::{
    ConfigMap, EndpointSlice, Ingress, Kind, Object, ObjectKey, Revision, Route, Service,
    SERVICE_NAME_LABEL,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// One stored object with its bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Shared with the source that defined it (a manifest file keeps its objects to tell what
    /// changed): one copy of 50,000 objects, not two.
    pub object: Arc<Object>,
    pub generation: i64,
    /// First-seen order across all objects.
    pub sequence: u64,
}

/// A stored KIngress with its bookkeeping.
#[derive(Clone, Copy, Debug)]
pub struct StoredIngress<'a> {
    pub ingress: &'a Ingress,
    pub generation: i64,
    pub sequence: u64,
}

/// A stored sluice Route with its bookkeeping.
#[derive(Clone, Copy, Debug)]
pub struct StoredRoute<'a> {
    pub route: &'a Route,
    pub generation: i64,
    pub sequence: u64,
}

/// A stored sluice Revision with its bookkeeping.
#[derive(Clone, Copy, Debug)]
pub struct StoredRevision<'a> {
    pub revision: &'a Revision,
    pub generation: i64,
    pub sequence: u64,
}

/// One change since the last [`Store::take_changes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreChange {
    pub key: ObjectKey,
    /// The labels the object had before (empty if it is new): an EndpointSlice that changed
    /// its labels concerns both its old and its new Service.
    pub old_labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default)]
pub struct Store {
    objects: BTreeMap<ObjectKey, Entry>,
    next_sequence: u64,
    changes: Vec<StoreChange>,
    /// EndpointSlices by `(namespace, label, value)` of each of their labels: a Service's
    /// slices are found without looking at the namespace's others.
    slices_by_label: BTreeMap<(String, String, String), BTreeSet<String>>,
}

impl Store {
    pub fn new() -> Self {
        Store::default()
    }

    /// Inserts or replaces an object. Returns true if anything stored changed.
    pub fn upsert(&mut self, object: impl Into<Arc<Object>>) -> bool {
        let object = object.into();
        let key = object.key();
        let old_labels = match self.objects.get_mut(&key) {
            Some(entry) if entry.object == object => return false,
            Some(entry) => {
                let old_labels = entry.object.metadata().labels.clone();
                entry.generation = match object.metadata().generation {
                    Some(generation) => generation,
                    None if !entry.object.same_spec(&object) => entry.generation + 1,
                    None => entry.generation,
                };
                entry.object = object;
                old_labels
            }
            None => {
                self.next_sequence += 1;
                let entry = Entry {
                    generation: object.metadata().generation.unwrap_or(1),
                    sequence: self.next_sequence,
                    object,
                };
                self.objects.insert(key.clone(), entry);
                BTreeMap::new()
            }
        };
        if key.kind == Kind::EndpointSlice {
            self.unindex_slice(&key, &old_labels);
            let labels = self
                .objects
                .get(&key)
                .map(|e| e.object.metadata().labels.clone())
                .unwrap_or_default();
            for (label, value) in labels {
                self.slices_by_label
                    .entry((key.namespace.clone(), label, value))
                    .or_default()
                    .insert(key.name.clone());
            }
        }
        self.changes.push(StoreChange { key, old_labels });
        true
    }

    fn unindex_slice(&mut self, key: &ObjectKey, labels: &BTreeMap<String, String>) {
        for (label, value) in labels {
            let index = (key.namespace.clone(), label.clone(), value.clone());
            if let Some(names) = self.slices_by_label.get_mut(&index) {
                names.remove(&key.name);
                if names.is_empty() {
                    self.slices_by_label.remove(&index);
                }
            }
        }
    }

    /// Removes an object. Returns true if it was present.
    pub fn delete(&mut self, key: &ObjectKey) -> bool {
        match self.objects.remove(key) {
            Some(entry) => {
                let old_labels = entry.object.metadata().labels.clone();
                if key.kind == Kind::EndpointSlice {
                    self.unindex_slice(key, &old_labels);
                }
                self.changes.push(StoreChange {
                    key: key.clone(),
                    old_labels,
                });
                true
            }
            None => false,
        }
    }

    /// What changed since the last call, in order (a key may repeat).
    pub fn take_changes(&mut self) -> Vec<StoreChange> {
        std::mem::take(&mut self.changes)
    }

    /// Every key, as changes: for recomputing everything. It names no deleted object, so a
    /// translator that has seen earlier changes needs [`Store::take_changes`] as well.
    pub fn all_as_changes(&self) -> Vec<StoreChange> {
        self.objects
            .iter()
            .map(|(key, entry)| StoreChange {
                key: key.clone(),
                old_labels: entry.object.metadata().labels.clone(),
            })
            .collect()
    }

    pub fn get(&self, key: &ObjectKey) -> Option<&Entry> {
        self.objects.get(key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &ObjectKey> {
        self.objects.keys()
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// All KIngresses, ordered by namespace and name.
    pub fn ingresses(&self) -> impl Iterator<Item = StoredIngress<'_>> {
        self.of_kind(Kind::Ingress)
            .filter_map(|entry| match &*entry.object {
                Object::Ingress(ingress) => Some(StoredIngress {
                    ingress,
                    generation: entry.generation,
                    sequence: entry.sequence,
                }),
                _ => None,
            })
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        match &*self
            .objects
            .get(&ObjectKey::new(Kind::Service, namespace, name))?
            .object
        {
            Object::Service(service) => Some(service),
            _ => None,
        }
    }

    /// All sluice Routes, ordered by namespace and name.
    pub fn routes(&self) -> impl Iterator<Item = StoredRoute<'_>> {
        self.of_kind(Kind::Route)
            .filter_map(|entry| match &*entry.object {
                Object::Route(route) => Some(StoredRoute {
                    route,
                    generation: entry.generation,
                    sequence: entry.sequence,
                }),
                _ => None,
            })
    }

    /// All sluice Revisions, ordered by namespace and name.
    pub fn revisions(&self) -> impl Iterator<Item = StoredRevision<'_>> {
        self.of_kind(Kind::Revision)
            .filter_map(|entry| match &*entry.object {
                Object::Revision(revision) => Some(StoredRevision {
                    revision,
                    generation: entry.generation,
                    sequence: entry.sequence,
                }),
                _ => None,
            })
    }

    pub fn config_map(&self, namespace: &str, name: &str) -> Option<&ConfigMap> {
        match &*self
            .objects
            .get(&ObjectKey::new(Kind::ConfigMap, namespace, name))?
            .object
        {
            Object::ConfigMap(config_map) => Some(config_map),
            _ => None,
        }
    }

    /// The EndpointSlices of `namespace` labelled `kubernetes.io/service-name=<service>`.
    pub fn endpoint_slices<'a>(
        &'a self,
        namespace: &'a str,
        service: &'a str,
    ) -> impl Iterator<Item = &'a EndpointSlice> + 'a {
        self.labelled_endpoint_slices(namespace, SERVICE_NAME_LABEL, service)
    }

    /// The EndpointSlices of `namespace` whose label `label` equals `value`.
    pub fn labelled_endpoint_slices<'a>(
        &'a self,
        namespace: &'a str,
        label: &'a str,
        value: &'a str,
    ) -> impl Iterator<Item = &'a EndpointSlice> + 'a {
        let index = (namespace.to_string(), label.to_string(), value.to_string());
        self.slices_by_label
            .get(&index)
            .into_iter()
            .flatten()
            .filter_map(move |name| {
                match &*self
                    .objects
                    .get(&ObjectKey::new(
                        Kind::EndpointSlice,
                        namespace,
                        name.as_str(),
                    ))?
                    .object
                {
                    Object::EndpointSlice(slice) => Some(slice),
                    _ => None,
                }
            })
    }

    fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Entry> {
        let start = ObjectKey::new(kind, "", "");
        self.objects
            .range(start..)
            .take_while(move |(key, _)| key.kind == kind)
            .map(|(_, entry)| entry)
    }
}

#[cfg(test)]
mod tests;
