//! The [`Controller`]: the store, the incremental translator, and the manifest source's
//! bookkeeping, behind the API the sources call.
//!
//! Manifest files arrive one by one ([`Controller::apply_manifest_files`]): only files that
//! changed are parsed and compared. A file that cannot be parsed keeps the objects it loaded
//! last time; when two files (or two documents) define the same object the first in name order
//! wins. Files with problems get a `ManifestFile` status with `Ready=False` and the most severe
//! reason: `InvalidManifest` (unparseable, previous objects kept) > `InvalidObject` (a document
//! does not decode, the previous version of that object kept) > `UnsupportedObject` (unknown
//! kind or no name, skipped) > `DuplicateObject` (defined earlier, skipped). Files without
//! problems get no status entry.

use crate::manifest::{FileProblem, ManifestFile, ManifestSet};
use crate::object::{Object, ObjectKey};
use crate::status::ObjectStatus;
use crate::store::Store;
use crate::translate::{Delta, StatusChange, Translator};
use crate::TranslateConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub const REASON_INVALID_MANIFEST: &str = "InvalidManifest";
pub const REASON_INVALID_OBJECT: &str = "InvalidObject";
pub const REASON_UNSUPPORTED_OBJECT: &str = "UnsupportedObject";
pub const REASON_DUPLICATE_OBJECT: &str = "DuplicateObject";

/// What one manifest file holds, as last loaded.
#[derive(Debug, Default)]
struct FileState {
    /// Its objects (its last good content where it could not be read), first definition of a
    /// key within the file only.
    objects: BTreeMap<ObjectKey, Arc<Object>>,
    /// Its own problems: parsing, decoding, duplicates within the file.
    problems: Vec<(&'static str, String)>,
}

pub struct Controller {
    store: Store,
    translator: Translator,
    /// Per manifest file.
    files: BTreeMap<String, FileState>,
    /// Object → the files defining it (the first in name order wins).
    definitions: BTreeMap<ObjectKey, BTreeSet<String>>,
    file_statuses: BTreeMap<String, ObjectStatus>,
    /// File status changes not yet returned by [`Controller::translate`].
    pending_statuses: Vec<StatusChange>,
}

impl Controller {
    pub fn new(config: TranslateConfig) -> Self {
        Controller {
            store: Store::new(),
            translator: Translator::new(config),
            files: BTreeMap::new(),
            definitions: BTreeMap::new(),
            file_statuses: BTreeMap::new(),
            pending_statuses: Vec::new(),
        }
    }

    pub fn config(&self) -> &TranslateConfig {
        self.translator.config()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn translator(&self) -> &Translator {
        &self.translator
    }

    /// The names of the manifest files loaded.
    pub fn manifest_files(&self) -> impl Iterator<Item = &String> {
        self.files.keys()
    }

    /// Replaces everything from the manifest source with `set` (files it does not list are
    /// removed). Returns true if any stored object or file status changed.
    pub fn apply_manifests(&mut self, set: ManifestSet) -> bool {
        let listed: BTreeSet<&str> = set.files.iter().map(|f| f.name.as_str()).collect();
        let removed: Vec<String> = self
            .files
            .keys()
            .filter(|name| !listed.contains(name.as_str()))
            .cloned()
            .collect();
        self.apply_manifest_files(set.files, &removed)
    }

    /// Takes changed (or new) files and removed ones. Returns true if any stored object or
    /// file status changed.
    pub fn apply_manifest_files(&mut self, changed: Vec<ManifestFile>, removed: &[String]) -> bool {
        let mut touched: BTreeSet<ObjectKey> = BTreeSet::new();
        let mut files_to_report: BTreeSet<String> = BTreeSet::new();
        for name in removed {
            if let Some(old) = self.files.remove(name) {
                for key in old.objects.keys() {
                    self.undefine(key, name);
                    touched.insert(key.clone());
                }
                files_to_report.insert(name.clone());
            }
        }
        for file in changed {
            let name = file.name.clone();
            let previous = self.files.remove(&name).unwrap_or_default();
            let state = file_state(file, previous.objects.clone());
            for key in previous.objects.keys() {
                if !state.objects.contains_key(key) {
                    self.undefine(key, &name);
                    touched.insert(key.clone());
                }
            }
            for (key, object) in &state.objects {
                self.definitions
                    .entry(key.clone())
                    .or_default()
                    .insert(name.clone());
                if previous.objects.get(key) != Some(object) {
                    touched.insert(key.clone());
                }
            }
            files_to_report.insert(name.clone());
            self.files.insert(name, state);
        }
        let mut changed_any = false;
        for key in &touched {
            let winner = self
                .definitions
                .get(key)
                .and_then(|files| files.first())
                .and_then(|file| self.files.get(file))
                .and_then(|state| state.objects.get(key))
                .cloned();
            changed_any |= match winner {
                Some(object) => self.store.upsert(object),
                None => self.store.delete(key),
            };
            // Every file defining it may have gained or lost a duplicate.
            files_to_report.extend(self.definitions.get(key).into_iter().flatten().cloned());
        }
        for name in files_to_report {
            changed_any |= self.report_file(&name);
        }
        changed_any
    }

    fn undefine(&mut self, key: &ObjectKey, file: &str) {
        if let Some(files) = self.definitions.get_mut(key) {
            files.remove(file);
            if files.is_empty() {
                self.definitions.remove(key);
            }
        }
    }

    /// Recomputes one file's status (its own problems plus objects defined earlier elsewhere).
    /// Returns true if it changed.
    fn report_file(&mut self, name: &str) -> bool {
        let status = self.files.get(name).and_then(|state| {
            let mut problems = state.problems.clone();
            for key in state.objects.keys() {
                let first = self.definitions.get(key).and_then(|files| files.first());
                if let Some(first) = first.filter(|first| first.as_str() != name) {
                    problems.push((
                        REASON_DUPLICATE_OBJECT,
                        format!("{key} is already defined in {first}; ignored"),
                    ));
                }
            }
            file_status(name, &problems)
        });
        let old = match &status {
            Some(status) => self.file_statuses.insert(name.to_string(), status.clone()),
            None => self.file_statuses.remove(name),
        };
        if old == status {
            return false;
        }
        self.pending_statuses.push(match status {
            Some(status) => StatusChange::Set(status),
            None => StatusChange::Remove {
                kind: crate::status::MANIFEST_FILE_KIND.to_string(),
                namespace: String::new(),
                name: name.to_string(),
            },
        });
        true
    }

    /// Inserts or replaces one object from a per-object source (a Kubernetes watch, the local
    /// process scaler). Returns true if anything stored changed. Each object should have one
    /// source.
    pub fn upsert(&mut self, object: Object) -> bool {
        self.store.upsert(object)
    }

    /// Removes one object fed by [`Controller::upsert`]. Returns true if it was present.
    pub fn delete(&mut self, key: &ObjectKey) -> bool {
        self.store.delete(key)
    }

    /// Translates what changed since the last call (the store records every change from the
    /// start, so the first call sees everything). Pure over the stored state: no I/O, no clock.
    pub fn translate(&mut self) -> Delta {
        let changes = self.store.take_changes();
        let mut delta = self.translator.update(&self.store, &changes);
        delta.statuses.append(&mut self.pending_statuses);
        delta
    }

    /// Every status, file statuses included, sorted by kind, namespace and name.
    pub fn statuses(&self) -> Vec<ObjectStatus> {
        let mut all: Vec<ObjectStatus> = self.translator.statuses().cloned().collect();
        all.extend(self.file_statuses.values().cloned());
        all.sort_by(|a, b| (&a.kind, &a.namespace, &a.name).cmp(&(&b.kind, &b.namespace, &b.name)));
        all
    }
}

/// A file's objects and own problems, falling back to `previous` objects where it could not
/// be read.
fn file_state(file: ManifestFile, previous: BTreeMap<ObjectKey, Arc<Object>>) -> FileState {
    let mut problems: Vec<(&'static str, String)> = Vec::new();
    let mut objects: BTreeMap<ObjectKey, Arc<Object>> = BTreeMap::new();
    if file.unreadable() {
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
        return FileState {
            objects: previous,
            problems,
        };
    }
    let mut listed: Vec<Arc<Object>> = file.objects.into_iter().map(Arc::new).collect();
    for problem in &file.problems {
        match problem {
            FileProblem::InvalidObject { key, message } => {
                let kept = previous.get(key);
                let suffix = if kept.is_some() {
                    "; keeping the version loaded before"
                } else {
                    ""
                };
                problems.push((REASON_INVALID_OBJECT, format!("{message}{suffix}")));
                listed.extend(kept.cloned());
            }
            other => problems.push((REASON_UNSUPPORTED_OBJECT, other.message().to_string())),
        }
    }
    for object in listed {
        let key = object.key();
        if objects.contains_key(&key) {
            problems.push((
                REASON_DUPLICATE_OBJECT,
                format!("{key} is already defined in {}; ignored", file.name),
            ));
            continue;
        }
        objects.insert(key, object);
    }
    FileState { objects, problems }
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
