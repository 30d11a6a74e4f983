//! One proxy's stream, controller side: subscriptions, what the proxy holds, nonces, and what
//! to send next. Pure state (no I/O, no clock); [`crate::server`] drives it.
//!
//! **Pushes.** A push brings the proxy from the sequence it has to the cache's current one. It
//! is a list of responses, one per type with changes and at most [`MAX_PER_RESPONSE`]
//! resources each, in make-before-break order: first the updates of every type in
//! [`ResourceType`] order (route configs together with their removals), then the removals of
//! the other types, referrers first (certificates, backends, then the endpoints and policies
//! backends name), so a route never names a backend the proxy has already dropped. Only one
//! push is in flight: changes that arrive meanwhile are coalesced into the next one. When every
//! response of a push is answered, the proxy has applied that sequence ([`Progress`]). Every
//! response but a push's last says so ([`DeltaResponse::push_continues`]).
//!
//! **Delta-xDS rules kept** (`shared/reference/xds-protocol.md`): legacy and explicit
//! wildcard subscriptions; subscription changes apply even with a stale nonce; every name in a
//! subscribe is sent (or listed as removed when it does not exist) even if the proxy seems to
//! have it; the first response of each type is sent even when empty, so a proxy can become
//! ready; a reconnect's `initial_versions` are compared and only differences sent; an
//! unchanged resource is never resent. After a NACK the rejected resources are not resent until
//! they change again; the session lists them in [`ServerSession::rejections`].

use crate::cache::ResourceCache;
use crate::model::ResourceType;
use crate::protocol::{DeltaRequest, DeltaResponse, NamedResource, Node};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Most resources in one response: keeps messages well below transport limits.
pub const MAX_PER_RESPONSE: usize = 1000;

/// A resource the proxy refused, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub type_: ResourceType,
    pub name: String,
    /// The version it refused.
    pub version: String,
    pub reason: String,
}

/// What a step changed that the controller cares about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The proxy now holds everything up to this cache sequence.
    pub applied: Option<u64>,
    /// The set of rejected resources changed.
    pub rejections_changed: bool,
}

#[derive(Debug, Default)]
struct TypeState {
    /// The proxy has opened this type on the stream.
    open: bool,
    /// Subscribed to `*` (and not unsubscribed since).
    explicit_wildcard: bool,
    /// Some subscribe was ever non-empty: without one, the type is a legacy wildcard.
    ever_subscribed: bool,
    /// Names subscribed explicitly (never `*`).
    explicit: BTreeSet<String>,
    /// name → version the proxy holds (as sent; rejected ones too, so they are not resent).
    known: HashMap<String, String>,
    /// Names to look at in the next push.
    dirty: BTreeSet<String>,
    /// Names to send even if the proxy seems to have them (just subscribed).
    forced: BTreeSet<String>,
    /// Compare every name at the next push (opening request, or the cache log was trimmed).
    full: bool,
    first_sent: bool,
    rejected: BTreeMap<String, (String, String)>,
}

impl TypeState {
    fn wildcard(&self) -> bool {
        self.explicit_wildcard || !self.ever_subscribed
    }

    fn subscribed(&self, name: &str) -> bool {
        self.wildcard() || self.explicit.contains(name)
    }
}

#[derive(Debug)]
struct InFlight {
    seq: u64,
    /// nonce → the type, the names sent with their versions, and the names removed.
    pending: HashMap<String, Sent>,
}

#[derive(Debug)]
struct Sent {
    type_: ResourceType,
    updated: Vec<(String, String)>,
    removed: Vec<String>,
}

#[derive(Debug)]
pub struct ServerSession {
    nonce_prefix: String,
    next_nonce: u64,
    node: Option<Node>,
    types: [TypeState; 5],
    /// Cache sequence whose changes have been noted as dirty.
    synced: u64,
    in_flight: Option<InFlight>,
    applied: u64,
}

impl ServerSession {
    /// `nonce_prefix` makes nonces unique across streams (say, a random number).
    pub fn new(nonce_prefix: impl Into<String>) -> Self {
        ServerSession {
            nonce_prefix: nonce_prefix.into(),
            next_nonce: 0,
            node: None,
            types: Default::default(),
            synced: 0,
            in_flight: None,
            applied: 0,
        }
    }

    /// The proxy, once its first request named it.
    pub fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }

    /// The cache sequence the proxy has fully applied.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Every resource the proxy currently refuses.
    pub fn rejections(&self) -> Vec<Rejected> {
        let mut all = Vec::new();
        for type_ in ResourceType::ALL {
            for (name, (version, reason)) in &self.types[type_.index()].rejected {
                all.push(Rejected {
                    type_,
                    name: name.clone(),
                    version: version.clone(),
                    reason: reason.clone(),
                });
            }
        }
        all
    }

    /// Handles one request: subscriptions, then the ACK or NACK it carries.
    pub fn on_request(&mut self, request: DeltaRequest) -> Progress {
        let mut progress = Progress::default();
        if self.node.is_none() {
            self.node = request.node.clone();
        }
        let Some(type_) = request.type_ else {
            return progress;
        };
        let state = &mut self.types[type_.index()];
        if !state.open {
            state.open = true;
            state.full = true;
            state.known = request.initial_versions.clone().into_iter().collect();
        }
        // Subscriptions apply whatever the nonce says.
        if !request.subscribe.is_empty() {
            let was_wildcard = state.wildcard();
            state.ever_subscribed = true;
            for name in &request.subscribe {
                if name == "*" {
                    state.explicit_wildcard = true;
                } else {
                    // Sent even if the proxy seems to hold it: it may have dropped it.
                    state.explicit.insert(name.clone());
                    state.dirty.insert(name.clone());
                    state.forced.insert(name.clone());
                }
            }
            if was_wildcard != state.wildcard() {
                state.full = true;
            }
        }
        for name in &request.unsubscribe {
            if name == "*" {
                // Ends a legacy wildcard too: the proxy has said what it wants.
                let was_wildcard = state.wildcard();
                state.explicit_wildcard = false;
                state.ever_subscribed = true;
                if was_wildcard {
                    state.full = true;
                }
                continue;
            }
            if state.explicit.remove(name) {
                if state.wildcard() {
                    // Still covered: the proxy dropped it, so send it again.
                    state.forced.insert(name.clone());
                    state.dirty.insert(name.clone());
                } else {
                    // No longer wanted: the proxy dropped it already.
                    state.known.remove(name);
                    progress.rejections_changed |= state.rejected.remove(name).is_some();
                }
            }
        }
        let Some(nonce) = request.response_nonce else {
            return progress;
        };
        let Some(in_flight) = self.in_flight.as_mut() else {
            return progress;
        };
        let Some(sent) = in_flight.pending.remove(&nonce) else {
            // A nonce of an earlier push, already answered: nothing to record.
            return progress;
        };
        let state = &mut self.types[sent.type_.index()];
        let refused: BTreeMap<&str, &str> = match &request.error {
            None => BTreeMap::new(),
            Some(rejection) if rejection.resources.is_empty() => {
                // The whole response was refused.
                sent.updated
                    .iter()
                    .map(|(name, _)| (name.as_str(), rejection.message.as_str()))
                    .collect()
            }
            Some(rejection) => rejection
                .resources
                .iter()
                .map(|r| (r.name.as_str(), r.reason.as_str()))
                .collect(),
        };
        for (name, version) in &sent.updated {
            match refused.get(name.as_str()) {
                Some(reason) => {
                    state
                        .rejected
                        .insert(name.clone(), (version.clone(), reason.to_string()));
                    progress.rejections_changed = true;
                }
                None => progress.rejections_changed |= state.rejected.remove(name).is_some(),
            }
        }
        for name in &sent.removed {
            progress.rejections_changed |= state.rejected.remove(name).is_some();
        }
        if in_flight.pending.is_empty() {
            self.applied = in_flight.seq;
            progress.applied = Some(in_flight.seq);
            self.in_flight = None;
        }
        progress
    }

    /// Notes what changed in the cache since the last call.
    pub fn on_cache_change(&mut self, cache: &ResourceCache) {
        if cache.seq() == self.synced {
            return;
        }
        match cache.changes_since(self.synced) {
            Some(changes) => {
                for (type_, name) in changes {
                    let state = &mut self.types[type_.index()];
                    if state.open && !state.full {
                        state.dirty.insert(name.to_string());
                    }
                }
            }
            None => {
                for state in &mut self.types {
                    state.full = true;
                }
            }
        }
        self.synced = cache.seq();
    }

    /// The next push, if nothing is in flight and something is due. When nothing is due the
    /// proxy is up to date with the cache, which is reported as applied.
    pub fn next_push(&mut self, cache: &ResourceCache) -> (Vec<DeltaResponse>, Progress) {
        let mut progress = Progress::default();
        if self.in_flight.is_some() {
            return (Vec::new(), progress);
        }
        self.on_cache_change(cache);
        let seq = cache.seq();
        let mut first_pass = Vec::new();
        let mut removals = Vec::new();
        for type_ in ResourceType::ALL {
            let state = &mut self.types[type_.index()];
            if !state.open {
                continue;
            }
            let names: BTreeSet<String> = if state.full {
                state.full = false;
                state.dirty.clear();
                let mut all: BTreeSet<String> = cache.iter(type_).map(|(n, _)| n.clone()).collect();
                all.extend(state.known.keys().cloned());
                all.extend(state.explicit.iter().cloned());
                all
            } else {
                std::mem::take(&mut state.dirty)
            };
            let forced = std::mem::take(&mut state.forced);
            let mut updated = Vec::new();
            let mut removed = Vec::new();
            for name in names {
                let current = cache.get(type_, &name).filter(|_| state.subscribed(&name));
                match current {
                    Some(entry) => {
                        let held = state.known.get(&name);
                        if held != Some(&entry.version) || forced.contains(&name) {
                            state.known.insert(name.clone(), entry.version.clone());
                            updated.push(NamedResource {
                                name,
                                version: entry.version.clone(),
                                resource: entry.resource.clone(),
                            });
                        }
                    }
                    None => {
                        let held = state.known.remove(&name).is_some();
                        if held || (forced.contains(&name) && state.explicit.contains(&name)) {
                            removed.push(name);
                        }
                    }
                }
            }
            let must_open = !state.first_sent;
            state.first_sent = true;
            if type_ == ResourceType::RouteConfig {
                if !updated.is_empty() || !removed.is_empty() || must_open {
                    first_pass.push((type_, updated, removed));
                }
            } else {
                // An opening with only removals is answered by the removals themselves.
                if !updated.is_empty() || (must_open && removed.is_empty()) {
                    first_pass.push((type_, updated, Vec::new()));
                }
                if !removed.is_empty() {
                    removals.push((type_, Vec::new(), removed));
                }
            }
        }
        // Referrers go first: a backend before the endpoints and policy it names.
        removals.sort_by_key(|(type_, _, _)| removal_rank(*type_));
        let mut responses = Vec::new();
        let mut pending = HashMap::new();
        for (type_, updated, removed) in first_pass.into_iter().chain(removals) {
            for (updated, removed) in chunk(updated, removed) {
                let nonce = format!("{}-{}", self.nonce_prefix, self.next_nonce);
                self.next_nonce += 1;
                pending.insert(
                    nonce.clone(),
                    Sent {
                        type_,
                        updated: updated
                            .iter()
                            .map(|r| (r.name.clone(), r.version.clone()))
                            .collect(),
                        removed: removed.clone(),
                    },
                );
                responses.push(DeltaResponse {
                    type_,
                    nonce,
                    system_version: seq.to_string(),
                    resources: updated,
                    removed,
                    invalid: Vec::new(),
                    push_continues: true,
                });
            }
        }
        if let Some(last) = responses.last_mut() {
            last.push_continues = false;
        }
        if responses.is_empty() {
            if self.applied != seq && self.types.iter().any(|t| t.open) {
                self.applied = seq;
                progress.applied = Some(seq);
            }
        } else {
            self.in_flight = Some(InFlight { seq, pending });
        }
        (responses, progress)
    }
}

/// The order removals are sent in: what refers to something before what it refers to.
fn removal_rank(type_: ResourceType) -> u8 {
    match type_ {
        ResourceType::RouteConfig => 0,
        ResourceType::Certificate => 1,
        ResourceType::Backend => 2,
        ResourceType::Endpoints => 3,
        ResourceType::RevisionPolicy => 4,
    }
}

/// Splits one type's changes into responses of at most [`MAX_PER_RESPONSE`] entries; always
/// at least one (possibly empty) response.
fn chunk(
    mut updated: Vec<NamedResource>,
    mut removed: Vec<String>,
) -> Vec<(Vec<NamedResource>, Vec<String>)> {
    let mut out = Vec::new();
    loop {
        let take = updated.len().min(MAX_PER_RESPONSE);
        let rest_updated = updated.split_off(take);
        let room = MAX_PER_RESPONSE - take;
        let take_removed = removed.len().min(room);
        let rest_removed = removed.split_off(take_removed);
        out.push((updated, removed));
        if rest_updated.is_empty() && rest_removed.is_empty() {
            return out;
        }
        updated = rest_updated;
        removed = rest_removed;
    }
}

#[cfg(test)]
mod tests;
