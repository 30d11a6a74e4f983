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
use std::collections::BTreeMap;
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
    let listed = fingerprint(dir).map_err(|source| ManifestError::ReadDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let names: Vec<String> = listed
        .files
        .keys()
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    Ok(ManifestSet {
        files: load_files(dir, &names),
    })
}

/// Below this many files one thread parses them all: a thread costs more than a few files.
const PARALLEL_FROM_FILES: usize = 64;

/// Reads and parses `names` of `dir`, in order. Many files (a cold start: 10,000 KIngresses are
/// 50,000 YAML documents, most of the load) are parsed on every core, in contiguous chunks.
pub fn load_files(dir: &Path, names: &[String]) -> Vec<ManifestFile> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || names.len() < PARALLEL_FROM_FILES {
        return names.iter().map(|name| load_file(dir, name)).collect();
    }
    let chunk = names.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = names
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || part.iter().map(|n| load_file(dir, n)).collect::<Vec<_>>())
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|part| {
                part.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// Reads and parses one file of `dir`.
pub fn load_file(dir: &Path, name: &str) -> ManifestFile {
    match fs::read_to_string(dir.join(name)) {
        Ok(text) => parse_file(name.to_string(), &text),
        Err(error) => ManifestFile {
            problems: vec![FileProblem::Unreadable(format!(
                "cannot read file: {error}"
            ))],
            name: name.to_string(),
            objects: Vec::new(),
        },
    }
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
    files: BTreeMap<OsString, FileStamp>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStamp {
    /// Symlinks only: the resolved target (`None` when it cannot be resolved).
    target: Option<PathBuf>,
    len: u64,
    modified_ns: u128,
    inode: u64,
}

impl DirFingerprint {
    /// The files of `now` that are new or differ from `self`, and the files of `self` that are
    /// gone, each in name order.
    pub fn changes(&self, now: &DirFingerprint) -> (Vec<String>, Vec<String>) {
        let changed = now
            .files
            .iter()
            .filter(|(name, stamp)| self.files.get(*name) != Some(stamp))
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        let removed = self
            .files
            .keys()
            .filter(|name| !now.files.contains_key(*name))
            .map(|name| name.to_string_lossy().into_owned())
            .collect();
        (changed, removed)
    }

    /// Re-stamps the named files only: returns those that changed or appeared, and those that
    /// are gone.
    pub fn refresh(&mut self, dir: &Path, names: &[String]) -> (Vec<String>, Vec<String>) {
        let mut changed = Vec::new();
        let mut removed = Vec::new();
        for name in names {
            let key = OsString::from(name);
            let path = dir.join(name);
            let stamp = if is_manifest_name(&key, &path) {
                let is_symlink =
                    fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
                stamp(&path, is_symlink)
            } else {
                None
            };
            match stamp {
                Some(stamp) => {
                    if self.files.get(&key) != Some(&stamp) {
                        self.files.insert(key, stamp);
                        changed.push(name.clone());
                    }
                }
                None => {
                    if self.files.remove(&key).is_some() {
                        removed.push(name.clone());
                    }
                }
            }
        }
        (changed, removed)
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// One file's stamp: `None` when it is not a regular file (directories; a symlink to one).
/// A file that cannot be inspected (a dangling symlink) gets a stamp of zeros, so that its
/// appearance is noticed.
fn stamp(path: &Path, is_symlink: bool) -> Option<FileStamp> {
    let target = if is_symlink {
        fs::canonicalize(path).ok()
    } else {
        None
    };
    match fs::metadata(path) {
        Ok(meta) if !meta.is_file() => None,
        Ok(meta) => Some(FileStamp {
            target,
            len: meta.len(),
            modified_ns: meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos()),
            inode: inode(&meta),
        }),
        Err(_) => Some(FileStamp {
            target,
            len: 0,
            modified_ns: 0,
            inode: 0,
        }),
    }
}

/// Stamps every manifest file of `dir`: one `stat` per file, plus a `realpath` per symlink.
pub fn fingerprint(dir: &Path) -> io::Result<DirFingerprint> {
    let mut files = BTreeMap::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let path = entry.path();
        if !is_manifest_name(&name, &path) {
            continue;
        }
        let is_symlink = entry.file_type().is_ok_and(|t| t.is_symlink());
        if let Some(stamp) = stamp(&path, is_symlink) {
            files.insert(name, stamp);
        }
    }
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

/// Visible, with a manifest extension.
fn is_manifest_name(name: &std::ffi::OsStr, path: &Path) -> bool {
    !name.to_string_lossy().starts_with('.') && has_extension(path, EXTENSIONS)
}

const EXTENSIONS: &[&str] = &["yaml", "yml", "json"];

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

#[cfg(test)]
mod tests;
