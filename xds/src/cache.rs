//! The controller's resource cache: the current version of every resource, and a log of what
//! changed, so each proxy's session finds what to send in O(change).
//!
//! [`ResourceCache::apply`] takes a batch of changes (from one translation) and bumps the
//! sequence number once if anything really changed; an upsert of equal content is dropped
//! here, so it is never sent. Sessions remember the sequence they have seen and read
//! [`ResourceCache::changes_since`]; a session that fell behind the log's start (it is bounded)
//! compares everything once instead.

use crate::digest::ConfigDigest;
use crate::model::{Resource, ResourceType};
use crate::protocol::NamedResource;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use tokio::sync::watch;

/// One change of a translation.
#[derive(Clone, Debug)]
pub enum Change {
    Put(NamedResource),
    Remove(ResourceType, String),
}

impl Change {
    pub fn put(name: impl Into<String>, resource: Resource) -> Change {
        Change::Put(NamedResource::new(name, resource))
    }
}

#[derive(Clone, Debug)]
pub struct CacheEntry {
    pub version: String,
    pub resource: Arc<Resource>,
    /// The sequence number of the batch that last changed it.
    pub changed_at: u64,
}

#[derive(Clone, Debug)]
struct LogEntry {
    seq: u64,
    type_: ResourceType,
    name: String,
}

/// Smallest log kept; beyond it, the log holds at most twice the number of resources.
pub(crate) const MIN_LOG: usize = 4096;

#[derive(Debug, Default)]
pub struct ResourceCache {
    seq: u64,
    types: [HashMap<String, CacheEntry>; 5],
    log: VecDeque<LogEntry>,
    /// Every change after this sequence is in `log`.
    log_floor: u64,
    digest: ConfigDigest,
}

impl ResourceCache {
    pub fn new() -> Self {
        ResourceCache::default()
    }

    /// The sequence number of the latest batch that changed something (0: none yet).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The digest of everything in the cache (see [`ConfigDigest`]).
    pub fn digest(&self) -> ConfigDigest {
        self.digest
    }

    pub fn get(&self, type_: ResourceType, name: &str) -> Option<&CacheEntry> {
        self.types[type_.index()].get(name)
    }

    pub fn iter(&self, type_: ResourceType) -> impl Iterator<Item = (&String, &CacheEntry)> {
        self.types[type_.index()].iter()
    }

    pub fn len(&self) -> usize {
        self.types.iter().map(HashMap::len).sum()
    }

    /// How many resources of one type.
    pub fn count(&self, type_: ResourceType) -> usize {
        self.types[type_.index()].len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies a batch. Returns true (and a new sequence number) if anything changed.
    pub fn apply(&mut self, changes: impl IntoIterator<Item = Change>) -> bool {
        let seq = self.seq + 1;
        let mut changed = false;
        for change in changes {
            let (type_, name) = match change {
                Change::Put(named) => {
                    let type_ = named.resource.type_();
                    let entries = &mut self.types[type_.index()];
                    match entries.get_mut(&named.name) {
                        Some(entry) if entry.version == named.version => continue,
                        Some(entry) => {
                            self.digest.remove(type_, &named.name, &entry.version);
                            self.digest.add(type_, &named.name, &named.version);
                            entry.version = named.version;
                            entry.resource = named.resource;
                            entry.changed_at = seq;
                        }
                        None => {
                            self.digest.add(type_, &named.name, &named.version);
                            entries.insert(
                                named.name.clone(),
                                CacheEntry {
                                    version: named.version,
                                    resource: named.resource,
                                    changed_at: seq,
                                },
                            );
                        }
                    }
                    (type_, named.name)
                }
                Change::Remove(type_, name) => {
                    let Some(entry) = self.types[type_.index()].remove(&name) else {
                        continue;
                    };
                    self.digest.remove(type_, &name, &entry.version);
                    (type_, name)
                }
            };
            changed = true;
            self.log.push_back(LogEntry { seq, type_, name });
        }
        if changed {
            self.seq = seq;
            let bound = MIN_LOG.max(2 * self.len());
            while self.log.len() > bound {
                if let Some(dropped) = self.log.pop_front() {
                    self.log_floor = dropped.seq;
                }
            }
            // Entries of one batch leave together, so the floor is a whole batch.
            while self.log.front().is_some_and(|e| e.seq == self.log_floor) {
                self.log.pop_front();
            }
        }
        changed
    }

    /// The resources changed after sequence `seq`, or `None` when the log no longer reaches
    /// back that far (compare everything instead). Names may repeat.
    pub fn changes_since(
        &self,
        seq: u64,
    ) -> Option<impl Iterator<Item = (ResourceType, &str)> + '_> {
        if seq < self.log_floor {
            return None;
        }
        let start = self.log.partition_point(|e| e.seq <= seq);
        Some(self.log.range(start..).map(|e| (e.type_, e.name.as_str())))
    }
}

/// The cache shared by the controller (one writer) and every proxy session.
#[derive(Debug)]
pub struct SharedCache {
    cache: RwLock<ResourceCache>,
    changed: watch::Sender<u64>,
}

impl Default for SharedCache {
    fn default() -> Self {
        SharedCache {
            cache: RwLock::new(ResourceCache::new()),
            changed: watch::Sender::new(0),
        }
    }
}

impl SharedCache {
    pub fn new() -> Self {
        SharedCache::default()
    }

    /// Applies a batch and wakes every session if anything changed. Returns the sequence
    /// number the cache is at afterwards.
    pub fn apply(&self, changes: impl IntoIterator<Item = Change>) -> u64 {
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        let changed = cache.apply(changes);
        let seq = cache.seq();
        drop(cache);
        if changed {
            self.changed.send_replace(seq);
        }
        seq
    }

    pub fn read(&self) -> RwLockReadGuard<'_, ResourceCache> {
        self.cache.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes whenever the cache does (the value is the new sequence number).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests;
