//! Domain conflicts: which owner (KIngress or sluice Route) gets a host, decided by age, in
//! one place for both kinds.
//!
//! **Age.** Oldest first: an earlier `creationTimestamp` (an object with one counts as older
//! than one without, which keeps the order total), then the earlier first-seen sequence of the
//! store, then kind and `ns/name` ([`AgeKey`]).
//!
//! **Rule** (net-kourier's): owners claim their hosts oldest first; an owner that shares any host
//! with an older owner that *was accepted* is rejected whole, and claims nothing. So a rejected
//! owner frees its hosts for younger ones.
//!
//! **Incremental.** [`ClaimSet::resolve`] re-decides only the owners connected (through shared
//! hosts) to an owner that changed since the last call; with no conflicts that is the changed
//! owner alone.

use crate::object::ObjectKey;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Orders owners oldest first.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AgeKey {
    /// `creationTimestamp` absent sorts after present.
    no_timestamp: bool,
    timestamp: Option<String>,
    sequence: u64,
    key: ObjectKey,
}

impl AgeKey {
    pub fn new(creation_timestamp: Option<&str>, sequence: u64, key: ObjectKey) -> Self {
        AgeKey {
            no_timestamp: creation_timestamp.is_none(),
            timestamp: creation_timestamp.map(str::to_string),
            sequence,
            key,
        }
    }

    pub fn key(&self) -> &ObjectKey {
        &self.key
    }
}

/// An owner that lost: the first of its hosts (in name order) held by an older accepted owner,
/// and that owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub host: String,
    pub holder: ObjectKey,
}

#[derive(Debug, Default)]
pub struct ClaimSet {
    owners: BTreeMap<ObjectKey, (AgeKey, BTreeSet<String>)>,
    by_host: HashMap<String, BTreeSet<AgeKey>>,
    /// Current decision per owner: `None` accepted, `Some` rejected.
    outcome: BTreeMap<ObjectKey, Option<Conflict>>,
    /// Owners whose claim changed since the last `resolve`, with the hosts they had before.
    touched: BTreeMap<ObjectKey, BTreeSet<String>>,
}

impl ClaimSet {
    /// Sets (or, with `None`, withdraws) an owner's claim.
    pub fn set(&mut self, key: &ObjectKey, claim: Option<(AgeKey, BTreeSet<String>)>) {
        let old = self.owners.remove(key);
        if let Some((age, hosts)) = &old {
            for host in hosts {
                if let Some(claimants) = self.by_host.get_mut(host) {
                    claimants.remove(age);
                    if claimants.is_empty() {
                        self.by_host.remove(host);
                    }
                }
            }
        }
        // Remember the hosts it had: owners that shared them may be decided differently now.
        let before = self.touched.entry(key.clone()).or_default();
        if let Some((_, hosts)) = &old {
            before.extend(hosts.iter().cloned());
        }
        if let Some((age, hosts)) = claim {
            for host in &hosts {
                self.by_host
                    .entry(host.clone())
                    .or_default()
                    .insert(age.clone());
            }
            self.owners.insert(key.clone(), (age, hosts));
        }
    }

    /// The decision for `key`: `Some(None)` accepted, `Some(Some(conflict))` rejected, `None`
    /// not claiming.
    pub fn outcome(&self, key: &ObjectKey) -> Option<&Option<Conflict>> {
        self.outcome.get(key)
    }

    pub fn accepted(&self, key: &ObjectKey) -> bool {
        matches!(self.outcome.get(key), Some(None))
    }

    /// Re-decides what the changes since the last call affect. Returns every owner whose
    /// decision changed (withdrawn owners included).
    pub fn resolve(&mut self) -> BTreeSet<ObjectKey> {
        let touched = std::mem::take(&mut self.touched);
        // The component: every owner reachable from a touched owner (or a host it had) through
        // shared hosts.
        let mut hosts: Vec<String> = Vec::new();
        let mut component: BTreeSet<ObjectKey> = BTreeSet::new();
        for (key, before) in &touched {
            hosts.extend(before.iter().cloned());
            if let Some((_, now)) = self.owners.get(key) {
                hosts.extend(now.iter().cloned());
                component.insert(key.clone());
            }
        }
        let mut seen_hosts: BTreeSet<String> = BTreeSet::new();
        while let Some(host) = hosts.pop() {
            if !seen_hosts.insert(host.clone()) {
                continue;
            }
            for age in self.by_host.get(&host).into_iter().flatten() {
                if component.insert(age.key.clone()) {
                    if let Some((_, theirs)) = self.owners.get(&age.key) {
                        hosts.extend(theirs.iter().cloned());
                    }
                }
            }
        }
        let mut ordered: Vec<(&AgeKey, &BTreeSet<String>)> = component
            .iter()
            .filter_map(|key| self.owners.get(key).map(|(age, hosts)| (age, hosts)))
            .collect();
        ordered.sort_by(|a, b| a.0.cmp(b.0));
        let mut held: BTreeMap<&str, &ObjectKey> = BTreeMap::new();
        let mut decided: Vec<(ObjectKey, Option<Conflict>)> = Vec::with_capacity(ordered.len());
        for (age, hosts) in ordered {
            let conflict = hosts.iter().find_map(|host| {
                held.get(host.as_str()).map(|holder| Conflict {
                    host: host.clone(),
                    holder: (*holder).clone(),
                })
            });
            if conflict.is_none() {
                for host in hosts {
                    held.insert(host, &age.key);
                }
            }
            decided.push((age.key.clone(), conflict));
        }
        let mut changed = BTreeSet::new();
        for key in touched.keys() {
            if !self.owners.contains_key(key) && self.outcome.remove(key).is_some() {
                changed.insert(key.clone());
            }
        }
        for (key, decision) in decided {
            if self.outcome.get(&key) != Some(&decision) {
                self.outcome.insert(key.clone(), decision);
                changed.insert(key);
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::Kind;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new(Kind::Ingress, "ns", name)
    }

    fn claim(name: &str, sequence: u64, hosts: &[&str]) -> Option<(AgeKey, BTreeSet<String>)> {
        Some((
            AgeKey::new(None, sequence, key(name)),
            hosts.iter().map(|h| h.to_string()).collect(),
        ))
    }

    #[test]
    fn the_older_owner_keeps_a_shared_host_and_a_rejected_one_frees_its_others() {
        let mut claims = ClaimSet::default();
        claims.set(&key("a"), claim("a", 1, &["h1"]));
        claims.set(&key("b"), claim("b", 2, &["h1", "h2"]));
        claims.set(&key("c"), claim("c", 3, &["h2"]));
        let changed = claims.resolve();
        assert_eq!(changed.len(), 3);
        assert!(claims.accepted(&key("a")));
        assert_eq!(
            claims.outcome(&key("b")),
            Some(&Some(Conflict {
                host: "h1".into(),
                holder: key("a")
            }))
        );
        // b lost, so its h2 goes to c.
        assert!(claims.accepted(&key("c")));
    }

    #[test]
    fn withdrawing_the_holder_cascades_through_the_component_only() {
        let mut claims = ClaimSet::default();
        claims.set(&key("a"), claim("a", 1, &["h1"]));
        claims.set(&key("b"), claim("b", 2, &["h1", "h2"]));
        claims.set(&key("c"), claim("c", 3, &["h2"]));
        claims.set(&key("other"), claim("other", 4, &["elsewhere"]));
        claims.resolve();
        claims.set(&key("a"), None);
        let changed = claims.resolve();
        // a gone: b wins h1 and h2, so c now loses h2; `other` is not in the component.
        assert_eq!(
            changed,
            [key("a"), key("b"), key("c")]
                .into_iter()
                .collect::<BTreeSet<_>>()
        );
        assert!(claims.accepted(&key("b")));
        assert_eq!(
            claims.outcome(&key("c")),
            Some(&Some(Conflict {
                host: "h2".into(),
                holder: key("b")
            }))
        );
        assert_eq!(claims.outcome(&key("a")), None);
    }

    #[test]
    fn an_unchanged_decision_is_not_reported_and_timestamps_beat_sequence() {
        let mut claims = ClaimSet::default();
        claims.set(&key("young"), claim("young", 1, &["h"]));
        claims.resolve();
        let stamped = Some((
            AgeKey::new(Some("2020-01-01T00:00:00Z"), 9, key("stamped")),
            ["h".to_string()].into_iter().collect(),
        ));
        claims.set(&key("stamped"), stamped);
        let changed = claims.resolve();
        assert!(
            claims.accepted(&key("stamped")),
            "a timestamp is older than none"
        );
        assert!(!claims.accepted(&key("young")));
        assert_eq!(changed.len(), 2);
        claims.set(&key("young"), claim("young", 1, &["h"]));
        assert!(claims.resolve().is_empty(), "same claim, same decisions");
    }
}
