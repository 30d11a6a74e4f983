//! The manifest-directory source: reads Kubernetes objects from `*.yaml`, `*.yml` and `*.json`
//! files directly in one directory.
//!
//! - Files are read in name order; hidden files (`.x`, which includes a ConfigMap mount's
//!   `..data` link) and other extensions are ignored. Symlinks are followed.
//! - A YAML file may hold several documents (`---`); a JSON file holds one. Either may be a
//!   `kind: List` with `items`. Empty documents are skipped.
//! - A file that cannot be read or parsed yields nothing and is reported
//!   ([`FileProblem::Unreadable`]); the [`Controller`](crate::Controller) then keeps the objects
//!   that file loaded last time. A document of an unknown kind or without a name is skipped
//!   ([`FileProblem::Unsupported`]) while the rest of the file loads. A document of a known kind
//!   whose body does not decode is skipped too, and the previous version of that object is kept
//!   ([`FileProblem::InvalidObject`]).
//!
//! [`fingerprint`] is the cheap change detector the proxy polls.

use crate::object::{Kind, Object, ObjectKey};
use serde::Deserialize;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// Everything read from one directory, files in name order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManifestSet {
    pub files: Vec<ManifestFile>,
}

/// What one file yielded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestFile {
    /// The file name within the directory.
    pub name: String,
    /// Objects in document order.
    pub objects: Vec<Object>,
    pub problems: Vec<FileProblem>,
}

impl ManifestFile {
    /// True when the file yielded nothing because it could not be read or parsed.
    pub fn unreadable(&self) -> bool {
        self.problems
            .iter()
            .any(|p| matches!(p, FileProblem::Unreadable(_)))
    }
}

/// Something wrong with a file. The strings name the document, e.g. `document 2: ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileProblem {
    /// The file could not be read or is not valid YAML/JSON; it yields nothing.
    Unreadable(String),
    /// A document was skipped: not an object, an unsupported apiVersion/kind, or no name.
    Unsupported(String),
    /// A document of a supported kind does not decode; the previous version of `key` is kept.
    InvalidObject { key: ObjectKey, message: String },
}

impl FileProblem {
    pub fn message(&self) -> &str {
        match self {
            FileProblem::Unreadable(m) | FileProblem::Unsupported(m) => m,
            FileProblem::InvalidObject { message, .. } => message,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest directory {}: {source}", dir.display())]
    ReadDir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Reads every manifest file in `dir`. Only failing to list the directory is an error; problems
/// with single files are reported in the set.
pub fn load_dir(dir: &Path) -> Result<ManifestSet, ManifestError> {
    let entries = manifest_entries(dir).map_err(|source| ManifestError::ReadDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let files = entries
        .into_iter()
        .map(|(name, path)| {
            let name = name.to_string_lossy().into_owned();
            match fs::read_to_string(&path) {
                Ok(text) => parse_file(name, &text),
                Err(error) => ManifestFile {
                    problems: vec![FileProblem::Unreadable(format!(
                        "cannot read file: {error}"
                    ))],
                    name,
                    objects: Vec::new(),
                },
            }
        })
        .collect();
    Ok(ManifestSet { files })
}

/// Parses one file's text; the extension of `name` picks JSON or YAML.
pub fn parse_file(name: String, text: &str) -> ManifestFile {
    let documents = if has_extension(Path::new(&name), &["json"]) {
        serde_json::from_str::<serde_json::Value>(text)
            .map(|v| vec![v])
            .map_err(|e| format!("invalid JSON: {e}"))
    } else {
        parse_yaml(text)
    };
    let mut file = ManifestFile {
        name,
        objects: Vec::new(),
        problems: Vec::new(),
    };
    match documents {
        Ok(documents) => {
            for (i, document) in documents.into_iter().enumerate() {
                add_document(&mut file, document, format!("document {}", i + 1));
            }
        }
        Err(message) => file.problems.push(FileProblem::Unreadable(message)),
    }
    file
}

fn parse_yaml(text: &str) -> Result<Vec<serde_json::Value>, String> {
    serde_yaml::Deserializer::from_str(text)
        .enumerate()
        .map(|(i, document)| {
            serde_json::Value::deserialize(document)
                .map_err(|e| format!("invalid YAML in document {}: {e}", i + 1))
        })
        .collect()
}

fn add_document(file: &mut ManifestFile, document: serde_json::Value, at: String) {
    let serde_json::Value::Object(map) = &document else {
        if !document.is_null() {
            file.problems
                .push(FileProblem::Unsupported(format!("{at}: not an object")));
        }
        return;
    };
    let field = |name: &str| map.get(name).and_then(|v| v.as_str()).unwrap_or_default();
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    if kind == "List" {
        let items = map.get("items").and_then(|v| v.as_array()).cloned();
        for (j, item) in items.unwrap_or_default().into_iter().enumerate() {
            add_document(file, item, format!("{at} item {}", j + 1));
        }
        return;
    }
    let Some(kind) = Kind::from_type(api_version, kind) else {
        file.problems.push(FileProblem::Unsupported(format!(
            "{at}: unsupported object kind {kind:?} apiVersion {api_version:?}"
        )));
        return;
    };
    match Object::decode(kind, document) {
        Ok(object) => file.objects.push(object),
        Err(crate::object::InvalidObject::MissingName { kind }) => file.problems.push(
            FileProblem::Unsupported(format!("{at}: {kind} has no metadata.name")),
        ),
        Err(crate::object::InvalidObject::Decode { key, source }) => {
            file.problems.push(FileProblem::InvalidObject {
                message: format!("{at}: {key}: {source}"),
                key,
            })
        }
    }
}

/// A cheap summary of the manifest files in a directory: equal fingerprints mean nothing to
/// re-read. Symlinks are followed, and the resolved target is part of the fingerprint, so a
/// Kubernetes ConfigMap mount swapping its `..data` link always shows as a change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirFingerprint {
    files: Vec<FileStamp>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct FileStamp {
    name: OsString,
    /// `None` when the file (or a symlink's target) cannot be inspected.
    target: Option<PathBuf>,
    len: u64,
    modified_ns: u128,
    inode: u64,
}

pub fn fingerprint(dir: &Path) -> io::Result<DirFingerprint> {
    let files = manifest_entries(dir)?
        .into_iter()
        .map(|(name, path)| {
            let target = fs::canonicalize(&path).ok();
            match fs::metadata(&path) {
                Ok(meta) => FileStamp {
                    name,
                    target,
                    len: meta.len(),
                    modified_ns: meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_nanos()),
                    inode: inode(&meta),
                },
                Err(_) => FileStamp {
                    name,
                    target: None,
                    len: 0,
                    modified_ns: 0,
                    inode: 0,
                },
            }
        })
        .collect();
    Ok(DirFingerprint { files })
}

#[cfg(unix)]
fn inode(meta: &fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_meta: &fs::Metadata) -> u64 {
    0
}

const EXTENSIONS: &[&str] = &["yaml", "yml", "json"];

/// The manifest files directly in `dir`, sorted by name. Entries whose target cannot be
/// inspected (dangling symlinks) are included so that their appearance is noticed.
fn manifest_entries(dir: &Path) -> io::Result<Vec<(OsString, PathBuf)>> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let path = entry.path();
        if name.to_string_lossy().starts_with('.') || !has_extension(&path, EXTENSIONS) {
            continue;
        }
        if fs::metadata(&path).is_ok_and(|m| !m.is_file()) {
            continue;
        }
        entries.push((name, path));
    }
    entries.sort();
    Ok(entries)
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

#[cfg(test)]
mod tests;
