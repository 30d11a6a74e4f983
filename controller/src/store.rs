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
use std::collections::BTreeMap;

/// One stored object with its bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub object: Object,
    pub generation: i64,
    /// First-seen order across all objects.
    pub sequence: u64,
    spec_json: String,
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

#[derive(Clone, Debug, Default)]
pub struct Store {
    objects: BTreeMap<ObjectKey, Entry>,
    next_sequence: u64,
}

impl Store {
    pub fn new() -> Self {
        Store::default()
    }

    /// Inserts or replaces an object. Returns true if anything stored changed.
    pub fn upsert(&mut self, object: Object) -> bool {
        let key = object.key();
        let spec_json = object.spec_json();
        match self.objects.get_mut(&key) {
            Some(entry) if entry.object == object => false,
            Some(entry) => {
                entry.generation = match object.metadata().generation {
                    Some(generation) => generation,
                    None if entry.spec_json != spec_json => entry.generation + 1,
                    None => entry.generation,
                };
                entry.object = object;
                entry.spec_json = spec_json;
                true
            }
            None => {
                self.next_sequence += 1;
                let entry = Entry {
                    generation: object.metadata().generation.unwrap_or(1),
                    sequence: self.next_sequence,
                    object,
                    spec_json,
                };
                self.objects.insert(key, entry);
                true
            }
        }
    }

    /// Removes an object. Returns true if it was present.
    pub fn delete(&mut self, key: &ObjectKey) -> bool {
        self.objects.remove(key).is_some()
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
            .filter_map(|entry| match &entry.object {
                Object::Ingress(ingress) => Some(StoredIngress {
                    ingress,
                    generation: entry.generation,
                    sequence: entry.sequence,
                }),
                _ => None,
            })
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        match &self
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
            .filter_map(|entry| match &entry.object {
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
            .filter_map(|entry| match &entry.object {
                Object::Revision(revision) => Some(StoredRevision {
                    revision,
                    generation: entry.generation,
                    sequence: entry.sequence,
                }),
                _ => None,
            })
    }

    pub fn config_map(&self, namespace: &str, name: &str) -> Option<&ConfigMap> {
        match &self
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
        let start = ObjectKey::new(Kind::EndpointSlice, namespace, "");
        self.objects
            .range(start..)
            .take_while(move |(key, _)| {
                key.kind == Kind::EndpointSlice && key.namespace == namespace
            })
            .filter_map(|(_, entry)| match &entry.object {
                Object::EndpointSlice(slice) => Some(slice),
                _ => None,
            })
            .filter(move |slice| {
                slice.metadata.labels.get(label).map(String::as_str) == Some(value)
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
