//! The object store: objects by type, namespace and name, one `resourceVersion` counter and a
//! bounded log of the changes watches replay.
//!
//! Invariants:
//! - Every write that changes an object bumps the counter by one, stamps the object with it and
//!   logs exactly one event; a write that changes nothing writes nothing (as the real server
//!   skips identical updates), so it costs no version and wakes no watch.
//! - Every event with a version above `floor` is still in the log, so a watch may start at any
//!   version from `floor` on; `dropped_up_to` is the newest event no longer there, which a
//!   running watch behind it has missed.
//! - Stored objects always carry `apiVersion`, `kind`, `metadata.name`, `uid`,
//!   `creationTimestamp`, `resourceVersion` (and `namespace` for namespaced types).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{json, Map, Value};
use tokio::sync::watch;

use super::error::ApiError;
use super::scale;
use super::ResourceType;

/// How many events watches can replay; older start points get 410 Expired.
pub(crate) const LOG_CAPACITY: usize = 10_000;

/// (index into the type list, namespace or "" for cluster-scoped types, name)
pub(crate) type Key = (usize, String, String);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventKind {
    Added,
    Modified,
    Deleted,
}

/// One logged change. `object` is the new state, for a deletion the last state stamped with the
/// deletion's version; `previous` is the state before a modification (watches with selectors
/// need both to tell "left the selection" from "changed inside it").
#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub(crate) rv: u64,
    pub(crate) ty: usize,
    pub(crate) kind: EventKind,
    pub(crate) object: Arc<Value>,
    pub(crate) previous: Option<Arc<Value>>,
}

/// Which part of an object an update may change: the main resource never changes `status` of a
/// type with a status subresource, `/status` changes nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Main,
    Status,
}

/// `DeleteOptions.preconditions`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Preconditions {
    pub(crate) uid: Option<String>,
    pub(crate) resource_version: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Store {
    types: Arc<[ResourceType]>,
    objects: BTreeMap<Key, Arc<Value>>,
    rv: u64,
    log: VecDeque<Event>,
    floor: u64,
    dropped_up_to: u64,
    changed: watch::Sender<u64>,
}

pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn new_uid() -> String {
    let hex = format!("{:032x}", fastrand::u128(..));
    format!(
        "{}-{}-4{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The `metadata` map of an object, made an empty map if missing or not a map.
pub(crate) fn metadata_mut(object: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let meta = object
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut()
        .expect("metadata was just made an object")
}

pub(crate) fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object
        .get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
}

fn has_finalizers(object: &Value) -> bool {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

impl Store {
    pub(crate) fn new(types: Arc<[ResourceType]>, changed: watch::Sender<u64>) -> Self {
        Store {
            types,
            objects: BTreeMap::new(),
            // Not 0: "0" means "any version" to list and watch, so no object may carry it.
            rv: 1,
            log: VecDeque::new(),
            floor: 1,
            dropped_up_to: 0,
            changed,
        }
    }

    pub(crate) fn types(&self) -> &[ResourceType] {
        &self.types
    }

    pub(crate) fn ty(&self, index: usize) -> &ResourceType {
        &self.types[index]
    }

    pub(crate) fn type_index(&self, group_version: &str, plural: &str) -> Option<usize> {
        self.types
            .iter()
            .position(|t| t.plural == plural && t.group_version() == group_version)
    }

    pub(crate) fn type_of_object(&self, api_version: &str, kind: &str) -> Option<usize> {
        self.types
            .iter()
            .position(|t| t.kind == kind && t.group_version() == api_version)
    }

    pub(crate) fn resource_version(&self) -> u64 {
        self.rv
    }

    /// The oldest version a new watch may start from.
    pub(crate) fn floor(&self) -> u64 {
        self.floor
    }

    /// The newest event that is no longer in the log.
    pub(crate) fn dropped_up_to(&self) -> u64 {
        self.dropped_up_to
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Logged events after version `after`, oldest first.
    pub(crate) fn events_after(&self, after: u64) -> impl Iterator<Item = &Event> {
        let start = self.log.partition_point(|e| e.rv <= after);
        self.log.range(start..)
    }

    /// Forgets the log. The counter also moves on by one (no object changes), so that every
    /// version handed out before, even the newest, is now older than the log: a client resuming
    /// from any of them gets 410 and relists, which is what compaction is for in tests.
    pub(crate) fn compact(&mut self) {
        if let Some(last) = self.log.back() {
            self.dropped_up_to = last.rv;
        }
        self.log.clear();
        self.rv += 1;
        self.floor = self.rv;
    }

    pub(crate) fn get(&self, ty: usize, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(&(ty, namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Objects of one type in key order, in one namespace or (`None`) in all.
    pub(crate) fn list<'a>(
        &'a self,
        ty: usize,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Arc<Value>> + 'a {
        let start = (ty, String::new(), String::new());
        self.objects
            .range(start..)
            .take_while(move |((t, _, _), _)| *t == ty)
            .filter(move |((_, ns, _), _)| namespace.is_none_or(|want| want == ns))
            .map(|(_, object)| object)
    }

    /// Checks `apiVersion`/`kind` of a body (absent ones are filled from the URL's type), and
    /// that it is a JSON object.
    pub(crate) fn check_type_meta(
        &self,
        ty: usize,
        body: Value,
    ) -> Result<Map<String, Value>, ApiError> {
        let t = self.ty(ty);
        let Value::Object(mut object) = body else {
            return Err(ApiError::bad_request(format!(
                "the body of the request must be a {} object",
                t.kind
            )));
        };
        let group_version = t.group_version();
        match object.get("apiVersion").and_then(Value::as_str) {
            None | Some("") => {}
            Some(v) if v == group_version => {}
            Some(v) => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({v}) does not match the expected API version ({group_version})"
                )))
            }
        }
        match object.get("kind").and_then(Value::as_str) {
            None | Some("") => {}
            Some(k) if k == t.kind => {}
            Some(k) => {
                let name = object
                    .get("metadata")
                    .and_then(|m| m.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                return Err(ApiError::wrong_kind(t, name, k));
            }
        }
        object.insert("apiVersion".to_owned(), json!(group_version));
        object.insert("kind".to_owned(), json!(t.kind));
        Ok(object)
    }

    fn check_namespace(
        &self,
        ty: usize,
        namespace: &str,
        object: &mut Map<String, Value>,
    ) -> Result<(), ApiError> {
        let namespaced = self.ty(ty).namespaced;
        let meta = metadata_mut(object);
        if namespaced {
            match meta.get("namespace").and_then(Value::as_str) {
                None | Some("") => {}
                Some(ns) if ns == namespace => {}
                Some(_) => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
            }
            meta.insert("namespace".to_owned(), json!(namespace));
        } else {
            meta.remove("namespace");
        }
        Ok(())
    }

    /// POST. `keep_status` is for seeding through the Rust API; over HTTP the status of a type
    /// with a status subresource is dropped, as the real server does.
    pub(crate) fn create(
        &mut self,
        ty: usize,
        namespace: &str,
        body: Value,
        keep_status: bool,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let t = self.ty(ty).clone();
        let mut object = self.check_type_meta(ty, body)?;
        self.check_namespace(ty, namespace, &mut object)?;
        let meta = metadata_mut(&mut object);
        let name = match meta.get("name").and_then(Value::as_str) {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => {
                    let suffix: String = (0..5)
                        .map(|_| {
                            fastrand::choice(b"bcdfghjklmnpqrstvwxz2456789")
                                .map_or('x', |b| char::from(*b))
                        })
                        .collect();
                    format!("{prefix}{suffix}")
                }
                _ => {
                    return Err(ApiError::invalid(
                        &t,
                        "",
                        "metadata.name",
                        "Required value: name or generateName is required",
                    ))
                }
            },
        };
        if name.contains('/') || name == "." || name == ".." {
            return Err(ApiError::invalid(
                &t,
                &name,
                "metadata.name",
                &format!("Invalid value: {name:?}: may not contain '/'"),
            ));
        }
        meta.insert("name".to_owned(), json!(name));
        meta.insert("uid".to_owned(), json!(new_uid()));
        meta.insert("creationTimestamp".to_owned(), json!(now_rfc3339()));
        for server_owned in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "generation",
        ] {
            meta.remove(server_owned);
        }
        if t.tracks_generation() {
            meta.insert("generation".to_owned(), json!(1));
        }
        if t.status && !keep_status {
            object.remove("status");
        }
        apply_defaults(&t, &mut object);
        let key = (ty, namespace.to_owned(), name.clone());
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(&t, &name));
        }
        if dry_run {
            return Ok(Arc::new(Value::Object(object)));
        }
        Ok(self.commit(key, object, EventKind::Added, None))
    }

    /// PUT of the main resource or of `/status`, and the write behind every patch. A non-empty
    /// `metadata.resourceVersion` in `body` must be the stored one (409 otherwise).
    pub(crate) fn update(
        &mut self,
        ty: usize,
        namespace: &str,
        name: &str,
        body: Value,
        part: Part,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let t = self.ty(ty).clone();
        let old = self
            .get(ty, namespace, name)
            .ok_or_else(|| ApiError::not_found(&t, name))?;
        let mut body = self.check_type_meta(ty, body)?;
        self.check_namespace(ty, namespace, &mut body)?;
        let body_meta = metadata_mut(&mut body);
        match body_meta.get("name").and_then(Value::as_str) {
            Some(n) if n == name => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    other.unwrap_or("")
                )))
            }
        }
        let old_rv = meta_str(&old, "resourceVersion").unwrap_or("");
        match body_meta.get("resourceVersion").and_then(Value::as_str) {
            Some(rv) if !rv.is_empty() && rv != old_rv => return Err(ApiError::stale(&t, name)),
            _ => {}
        }
        let Value::Object(old_map) = &*old else {
            return Err(ApiError::bad_request("stored object is not a map"));
        };
        let new = match part {
            Part::Main => {
                let mut new = body;
                let meta = metadata_mut(&mut new);
                // Set by the server only: a client cannot change them through an update.
                for kept in [
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                ] {
                    match old.get("metadata").and_then(|m| m.get(kept)) {
                        Some(value) => meta.insert(kept.to_owned(), value.clone()),
                        None => meta.remove(kept),
                    };
                }
                apply_defaults(&t, &mut new);
                if t.status {
                    match old_map.get("status") {
                        Some(status) => new.insert("status".to_owned(), status.clone()),
                        None => new.remove("status"),
                    };
                }
                new
            }
            Part::Status => {
                let mut new = old_map.clone();
                match body.remove("status") {
                    Some(status) => new.insert("status".to_owned(), status),
                    None => new.remove("status"),
                };
                new
            }
        };
        self.write(ty, namespace, name, &old, new, dry_run)
    }

    /// Stores `new` in place of `old`: generation, no-op detection, finalizer completion.
    pub(crate) fn write(
        &mut self,
        ty: usize,
        namespace: &str,
        name: &str,
        old: &Arc<Value>,
        mut new: Map<String, Value>,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let t = self.ty(ty).clone();
        let old_meta = old.get("metadata");
        let old_generation = old_meta
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64);
        let spec_changed = !same_outside_metadata(&t, old, &new);
        let meta = metadata_mut(&mut new);
        if let Some(generation) = old_generation {
            let generation = if spec_changed {
                generation + 1
            } else {
                generation
            };
            meta.insert("generation".to_owned(), json!(generation));
        }
        let old_rv = old_meta
            .and_then(|m| m.get("resourceVersion"))
            .cloned()
            .unwrap_or(Value::Null);
        meta.insert("resourceVersion".to_owned(), old_rv);
        meta.remove("selfLink");
        let new = Value::Object(new);
        if new == **old {
            return Ok(old.clone());
        }
        let Value::Object(new) = new else {
            return Err(ApiError::bad_request("object is not a map"));
        };
        if dry_run {
            return Ok(Arc::new(Value::Object(new)));
        }
        let key = (ty, namespace.to_owned(), name.to_owned());
        let deleting = new
            .get("metadata")
            .and_then(|m| m.get("deletionTimestamp"))
            .is_some();
        let object = Value::Object(new);
        if deleting && !has_finalizers(&object) {
            // The last finalizer is gone from an object marked for deletion: it goes now.
            let Value::Object(object) = object else {
                return Err(ApiError::bad_request("object is not a map"));
            };
            return Ok(self.commit(key, object, EventKind::Deleted, Some(old.clone())));
        }
        let Value::Object(object) = object else {
            return Err(ApiError::bad_request("object is not a map"));
        };
        Ok(self.commit(key, object, EventKind::Modified, Some(old.clone())))
    }

    /// DELETE. An object with finalizers is only marked (`deletionTimestamp`); it goes when an
    /// update removes the last finalizer.
    pub(crate) fn delete(
        &mut self,
        ty: usize,
        namespace: &str,
        name: &str,
        preconditions: &Preconditions,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let t = self.ty(ty).clone();
        let old = self
            .get(ty, namespace, name)
            .ok_or_else(|| ApiError::not_found(&t, name))?;
        let uid = meta_str(&old, "uid").unwrap_or("");
        let rv = meta_str(&old, "resourceVersion").unwrap_or("");
        if let Some(want) = preconditions.uid.as_deref() {
            if want != uid {
                return Err(ApiError::conflict(
                    &t,
                    name,
                    &format!("Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"),
                ));
            }
        }
        if let Some(want) = preconditions.resource_version.as_deref() {
            if want != rv {
                return Err(ApiError::conflict(
                    &t,
                    name,
                    &format!("Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rv}"),
                ));
            }
        }
        let Value::Object(mut object) = (*old).clone() else {
            return Err(ApiError::bad_request("stored object is not a map"));
        };
        if dry_run {
            return Ok(old);
        }
        let key = (ty, namespace.to_owned(), name.to_owned());
        if has_finalizers(&old) {
            if old.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(old);
            }
            let meta = metadata_mut(&mut object);
            meta.insert("deletionTimestamp".to_owned(), json!(now_rfc3339()));
            meta.insert("deletionGracePeriodSeconds".to_owned(), json!(0));
            return Ok(self.commit(key, object, EventKind::Modified, Some(old)));
        }
        Ok(self.commit(key, object, EventKind::Deleted, Some(old)))
    }

    /// PUT or patch of `/scale`: `spec.replicas` of the Scale goes to the parent.
    pub(crate) fn write_scale(
        &mut self,
        ty: usize,
        namespace: &str,
        name: &str,
        scale_body: &Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let t = self.ty(ty).clone();
        let paths = t.scale.ok_or_else(ApiError::no_such_path)?;
        let old = self
            .get(ty, namespace, name)
            .ok_or_else(|| ApiError::not_found(&t, name))?;
        let old_rv = meta_str(&old, "resourceVersion").unwrap_or("");
        match meta_str(scale_body, "resourceVersion") {
            Some(rv) if !rv.is_empty() && rv != old_rv => return Err(ApiError::stale(&t, name)),
            _ => {}
        }
        let replicas = scale_body
            .pointer("/spec/replicas")
            .map_or(Some(0), Value::as_i64)
            .filter(|r| *r >= 0 && *r <= i64::from(i32::MAX))
            .ok_or_else(|| {
                let scale_type = scale::scale_type();
                ApiError::invalid(
                    &scale_type,
                    name,
                    "spec.replicas",
                    "Invalid value: must be a non-negative 32-bit integer",
                )
            })?;
        let Value::Object(mut new) = (*old).clone() else {
            return Err(ApiError::bad_request("stored object is not a map"));
        };
        scale::set_path(&mut new, paths.spec_replicas, json!(replicas));
        let written = self.write(ty, namespace, name, &old, new, dry_run)?;
        Ok(scale::scale_of(&t, &written))
    }

    fn commit(
        &mut self,
        key: Key,
        mut object: Map<String, Value>,
        kind: EventKind,
        previous: Option<Arc<Value>>,
    ) -> Arc<Value> {
        self.rv += 1;
        metadata_mut(&mut object).insert("resourceVersion".to_owned(), json!(self.rv.to_string()));
        let object = Arc::new(Value::Object(object));
        let ty = key.0;
        if kind == EventKind::Deleted {
            self.objects.remove(&key);
        } else {
            self.objects.insert(key, object.clone());
        }
        self.log.push_back(Event {
            rv: self.rv,
            ty,
            kind,
            object: object.clone(),
            previous,
        });
        while self.log.len() > LOG_CAPACITY {
            if let Some(dropped) = self.log.pop_front() {
                self.dropped_up_to = dropped.rv;
                self.floor = self.floor.max(dropped.rv);
            }
        }
        self.changed.send_replace(self.rv);
        object
    }
}

/// The one defaulting the fake does: a Deployment without `spec.replicas` gets 1, so its Scale
/// and its readers see what a real cluster shows.
fn apply_defaults(t: &ResourceType, object: &mut Map<String, Value>) {
    if t.group == "apps" && t.plural == "deployments" {
        let replicas = object.get("spec").and_then(|s| s.get("replicas"));
        if replicas.is_none_or(Value::is_null) {
            scale::set_path(object, ".spec.replicas", json!(1));
        }
    }
}

/// Whether two states differ only in `metadata` (and `status`, for a type with a status
/// subresource): such a change leaves `metadata.generation` alone.
fn same_outside_metadata(t: &ResourceType, old: &Value, new: &Map<String, Value>) -> bool {
    let ignored = |key: &str| key == "metadata" || (t.status && key == "status");
    let Value::Object(old) = old else {
        return false;
    };
    let old_keys = old.keys().filter(|k| !ignored(k));
    let new_keys = new.keys().filter(|k| !ignored(k));
    old_keys.clone().count() == new_keys.count()
        && old_keys.into_iter().all(|k| old.get(k) == new.get(k))
}
