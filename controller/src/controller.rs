//! The [`Controller`]: the store, the last-good translation cache and the manifest source's
//! bookkeeping, behind the API the proxy calls.
//!
//! Manifest files: a file that cannot be parsed keeps the objects it loaded last time; when
//! two files (or two documents) define the same object the first in name order wins. Files
//! with problems get a `ManifestFile` status with `Ready=False` and the most severe reason:
//! `InvalidManifest` (unparseable, previous objects kept) > `InvalidObject` (a document does
//! not decode, the previous version of that object kept) > `UnsupportedObject` (unknown kind
//! or no name, skipped) > `DuplicateObject` (defined earlier, skipped). Files without problems
//! get no status entry.

use crate::manifest::{FileProblem, ManifestSet};
use crate::object::{Object, ObjectKey};
use crate::status::ObjectStatus;
use crate::store::Store;
use crate::translate::{self, LastGood};
use crate::{TranslateConfig, Translation};
use std::collections::{BTreeMap, BTreeSet};

pub const REASON_INVALID_MANIFEST: &str = "InvalidManifest";
pub const REASON_INVALID_OBJECT: &str = "InvalidObject";
pub const REASON_UNSUPPORTED_OBJECT: &str = "UnsupportedObject";
pub const REASON_DUPLICATE_OBJECT: &str = "DuplicateObject";

pub struct Controller {
    config: TranslateConfig,
    store: Store,
    last_good: LastGood,
    /// Per manifest file, the objects it contributed last time (its last good content).
    files: BTreeMap<String, Vec<Object>>,
    /// Objects in the store that came from manifests.
    manifest_keys: BTreeSet<ObjectKey>,
    file_statuses: BTreeMap<String, ObjectStatus>,
}

impl Controller {
    pub fn new(config: TranslateConfig) -> Self {
        Controller {
            config,
            store: Store::new(),
            last_good: LastGood::default(),
            files: BTreeMap::new(),
            manifest_keys: BTreeSet::new(),
            file_statuses: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &TranslateConfig {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Replace everything from the manifest source. Returns true if any stored object or file
    /// status changed.
    pub fn apply_manifests(&mut self, set: ManifestSet) -> bool {
        let mut previous_files = std::mem::take(&mut self.files);
        let mut desired: BTreeMap<ObjectKey, Object> = BTreeMap::new();
        let mut origin: BTreeMap<ObjectKey, String> = BTreeMap::new();
        let mut file_statuses = BTreeMap::new();

        for file in set.files {
            let previous = previous_files.remove(&file.name).unwrap_or_default();
            let mut problems: Vec<(&'static str, String)> = Vec::new();
            let objects = if file.unreadable() {
                for problem in &file.problems {
                    problems.push((
                        REASON_INVALID_MANIFEST,
                        format!(
                            "{}; keeping the {} object(s) loaded from it before",
                            problem.message(),
                            previous.len()
                        ),
                    ));
                }
                previous
            } else {
                let mut objects = file.objects;
                for problem in &file.problems {
                    match problem {
                        FileProblem::InvalidObject { key, message } => {
                            let kept = previous.iter().find(|o| &o.key() == key);
                            let suffix = if kept.is_some() {
                                "; keeping the version loaded before"
                            } else {
                                ""
                            };
                            problems.push((REASON_INVALID_OBJECT, format!("{message}{suffix}")));
                            objects.extend(kept.cloned());
                        }
                        other => {
                            problems.push((REASON_UNSUPPORTED_OBJECT, other.message().to_string()))
                        }
                    }
                }
                objects
            };
            for object in &objects {
                let key = object.key();
                match origin.get(&key) {
                    Some(first) => problems.push((
                        REASON_DUPLICATE_OBJECT,
                        format!("{key} is already defined in {first}; ignored"),
                    )),
                    None => {
                        origin.insert(key.clone(), file.name.clone());
                        desired.insert(key, object.clone());
                    }
                }
            }
            if let Some(status) = file_status(&file.name, &problems) {
                file_statuses.insert(file.name.clone(), status);
            }
            self.files.insert(file.name, objects);
        }

        let mut changed = false;
        for key in &self.manifest_keys {
            if !desired.contains_key(key) {
                changed |= self.store.delete(key);
            }
        }
        self.manifest_keys = desired.keys().cloned().collect();
        for object in desired.into_values() {
            changed |= self.store.upsert(object);
        }
        changed |= file_statuses != self.file_statuses;
        self.file_statuses = file_statuses;
        changed
    }

    /// Inserts or replaces one object from a per-object source (a Kubernetes watch). Returns
    /// true if anything stored changed. Each object should have one source: a later
    /// [`Controller::apply_manifests`] that no longer lists a manifest-sourced key deletes it.
    pub fn upsert(&mut self, object: Object) -> bool {
        self.store.upsert(object)
    }

    /// Removes one object fed by [`Controller::upsert`]. Returns true if it was present.
    pub fn delete(&mut self, key: &ObjectKey) -> bool {
        self.manifest_keys.remove(key);
        self.store.delete(key)
    }

    /// Pure over the stored state (no I/O, no clock). Deterministic output.
    pub fn translate(&mut self) -> Translation {
        let mut translation = translate::translate(&self.store, &self.config, &mut self.last_good);
        translation
            .statuses
            .extend(self.file_statuses.values().cloned());
        translation.statuses.sort_by(|a, b| {
            (&a.kind, &a.namespace, &a.name).cmp(&(&b.kind, &b.namespace, &b.name))
        });
        translation
    }
}

/// The most severe reason, and every problem in the message.
fn file_status(file: &str, problems: &[(&'static str, String)]) -> Option<ObjectStatus> {
    let severity = |reason: &str| match reason {
        REASON_INVALID_MANIFEST => 0,
        REASON_INVALID_OBJECT => 1,
        REASON_UNSUPPORTED_OBJECT => 2,
        _ => 3,
    };
    let reason = problems
        .iter()
        .map(|(r, _)| *r)
        .min_by_key(|r| severity(r))?;
    let message = problems
        .iter()
        .map(|(_, m)| m.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    Some(ObjectStatus::manifest_file(file, reason, message))
}

#[cfg(test)]
mod tests;
