//! Lookup tables that change in O(change): [`ShardedMap`] (an immutable map split into shards,
//! so a new version copies only the shards a change touches) and [`Claims`] (which owner's
//! value a key currently has, when owners briefly overlap).
//!
//! The request path only ever calls [`ShardedMap::get`]: one FNV hash picks the shard, one
//! lookup in it. Routers share unchanged shards by `Arc`, so 10,000 hosts and one changed
//! ingress cost one shard copy, not a new table.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// Shards per map: at 40,000 keys a change copies about 600 entries.
const SHARDS: usize = 64;

/// FNV-1a: keys are short host names from config (not chosen by clients), so a keyed hash buys
/// nothing here; SipHash cost about 1.5% of a proxied request's instructions.
#[derive(Default, Clone, Copy)]
pub struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

/// Keys are shared with the [`Claims`] that feed the map (one allocation per host name).
type Shard<V> = HashMap<Arc<str>, V, BuildHasherDefault<Fnv>>;

/// An immutable string-keyed map whose new versions share untouched shards.
pub struct ShardedMap<V> {
    shards: Arc<[Arc<Shard<V>>]>,
}

impl<V> Clone for ShardedMap<V> {
    fn clone(&self) -> Self {
        ShardedMap {
            shards: self.shards.clone(),
        }
    }
}

impl<V: Clone> Default for ShardedMap<V> {
    fn default() -> Self {
        ShardedMap {
            shards: (0..SHARDS).map(|_| Arc::new(Shard::default())).collect(),
        }
    }
}

fn shard_of(key: &str) -> usize {
    let mut hasher = Fnv::default();
    hasher.write(key.as_bytes());
    // The low bits feed the shard's own table; take high ones here.
    (hasher.finish() >> 58) as usize % SHARDS
}

impl<V: Clone> ShardedMap<V> {
    pub fn get(&self, key: &str) -> Option<&V> {
        self.shards[shard_of(key)].get(key)
    }

    /// A new version with `changes` applied (`None` removes the key). Copies only the shards
    /// the changes touch.
    pub fn with_changes(&self, changes: impl IntoIterator<Item = (Arc<str>, Option<V>)>) -> Self {
        let mut touched: HashMap<usize, Shard<V>> = HashMap::new();
        for (key, value) in changes {
            let index = shard_of(&key);
            let shard = touched
                .entry(index)
                .or_insert_with(|| self.shards[index].as_ref().clone());
            match value {
                Some(value) => {
                    shard.insert(key, value);
                }
                None => {
                    shard.remove(&*key);
                }
            }
        }
        if touched.is_empty() {
            return self.clone();
        }
        let mut shards: Vec<Arc<Shard<V>>> = self.shards.to_vec();
        for (index, shard) in touched {
            shards[index] = Arc::new(shard);
        }
        ShardedMap {
            shards: shards.into(),
        }
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Who holds each key. Normally one owner per key (the controller resolves conflicts), but
/// during an update a key may move between owners whose changes arrive apart, or one owner's
/// update may be rejected while another's applies: then the latest claim wins, and when it is
/// released the previous claimant's value comes back.
pub struct Claims<V> {
    by_key: HashMap<Arc<str>, Claimants<V>>,
}

/// The claims on one key, latest last. A single claim, by far the usual case, is kept inline:
/// at 50,000 hosts a vector each cost megabytes.
enum Claimants<V> {
    One(Arc<str>, V),
    Many(Vec<(Arc<str>, V)>),
}

impl<V: Clone> Claimants<V> {
    fn current(&self) -> Option<V> {
        match self {
            Claimants::One(_, value) => Some(value.clone()),
            Claimants::Many(claims) => claims.last().map(|(_, v)| v.clone()),
        }
    }

    /// Sets `owner`'s value; an existing claim keeps its place.
    fn set(&mut self, owner: &Arc<str>, value: V) {
        match self {
            Claimants::One(held_by, held) if held_by == owner => *held = value,
            Claimants::One(held_by, held) => {
                let first = (held_by.clone(), held.clone());
                *self = Claimants::Many(vec![first, (owner.clone(), value)]);
            }
            Claimants::Many(claims) => match claims.iter_mut().find(|(o, _)| o == owner) {
                Some(claim) => claim.1 = value,
                None => claims.push((owner.clone(), value)),
            },
        }
    }

    /// Drops `owner`'s claim; false when no claim is left.
    fn remove(&mut self, owner: &str) -> bool {
        match self {
            Claimants::One(held_by, _) => &**held_by != owner,
            Claimants::Many(claims) => {
                claims.retain(|(o, _)| &**o != owner);
                match claims.as_slice() {
                    [] => false,
                    [(last_owner, last)] => {
                        *self = Claimants::One(last_owner.clone(), last.clone());
                        true
                    }
                    _ => true,
                }
            }
        }
    }
}

impl<V> Default for Claims<V> {
    fn default() -> Self {
        Claims {
            by_key: HashMap::new(),
        }
    }
}

impl<V: Clone> Claims<V> {
    /// Sets `owner`'s value for `key` (an existing claim keeps its place). Returns the value
    /// the key has afterwards.
    pub fn claim(&mut self, key: &Arc<str>, owner: &Arc<str>, value: V) -> Option<V> {
        match self.by_key.get_mut(&**key) {
            Some(claimants) => {
                claimants.set(owner, value);
                claimants.current()
            }
            None => {
                self.by_key
                    .insert(key.clone(), Claimants::One(owner.clone(), value.clone()));
                Some(value)
            }
        }
    }

    /// Drops `owner`'s claim on `key`. Returns the value the key has afterwards.
    pub fn release(&mut self, key: &str, owner: &str) -> Option<V> {
        let claimants = self.by_key.get_mut(key)?;
        if claimants.remove(owner) {
            claimants.current()
        } else {
            self.by_key.remove(key);
            None
        }
    }
}

/// A [`ShardedMap`] fed by owners' claims: changes accumulate until [`ClaimedMap::publish`].
pub struct ClaimedMap<V> {
    claims: Claims<V>,
    map: ShardedMap<V>,
    pending: Vec<(Arc<str>, Option<V>)>,
}

impl<V: Clone> Default for ClaimedMap<V> {
    fn default() -> Self {
        ClaimedMap {
            claims: Claims::default(),
            map: ShardedMap::default(),
            pending: Vec::new(),
        }
    }
}

impl<V: Clone> ClaimedMap<V> {
    pub fn claim(&mut self, key: &Arc<str>, owner: &Arc<str>, value: V) {
        let now = self.claims.claim(key, owner, value);
        self.pending.push((key.clone(), now));
    }

    pub fn release(&mut self, key: &Arc<str>, owner: &str) {
        let now = self.claims.release(key, owner);
        self.pending.push((key.clone(), now));
    }

    /// Applies what changed since the last call; returns true if anything did.
    pub fn publish(&mut self) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        self.map = self.map.with_changes(self.pending.drain(..));
        // A full load leaves a large buffer behind; keep it no bigger than a usual change.
        self.pending.shrink_to(64);
        true
    }

    pub fn map(&self) -> &ShardedMap<V> {
        &self.map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_versions_share_untouched_shards_and_leave_the_old_one_alone() {
        let empty: ShardedMap<u32> = ShardedMap::default();
        let keys: Vec<Arc<str>> = (0..1000)
            .map(|i| format!("host{i}.example.com").into())
            .collect();
        let full = empty.with_changes(keys.iter().map(|k| (k.clone(), Some(1))));
        assert_eq!(full.len(), 1000);
        let changed = full.with_changes([("host7.example.com".into(), Some(2))]);
        assert_eq!(full.get("host7.example.com"), Some(&1));
        assert_eq!(changed.get("host7.example.com"), Some(&2));
        let shared = full
            .shards
            .iter()
            .zip(changed.shards.iter())
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert_eq!(shared, SHARDS - 1, "only the changed key's shard is copied");
        let removed = changed.with_changes([("host7.example.com".into(), None)]);
        assert_eq!(removed.get("host7.example.com"), None);
        assert_eq!(removed.len(), 999);
        assert_eq!(removed.get("missing"), None);
    }

    #[test]
    fn the_latest_claim_wins_and_a_release_restores_the_previous_one() {
        let key: Arc<str> = "a.example.com".into();
        let (old, new, third): (Arc<str>, Arc<str>, Arc<str>) = (
            "ingress/ns/old".into(),
            "ingress/ns/new".into(),
            "ingress/ns/third".into(),
        );
        let mut claims = Claims::default();
        assert_eq!(claims.claim(&key, &old, 1), Some(1));
        assert_eq!(claims.claim(&key, &new, 2), Some(2));
        // Updating the older claim does not take the key back.
        assert_eq!(claims.claim(&key, &old, 3), Some(2));
        assert_eq!(claims.release(&key, &new), Some(3));
        assert_eq!(claims.release(&key, &old), None);
        assert_eq!(claims.release(&key, &old), None);
        assert!(claims.by_key.is_empty(), "a key nobody claims is forgotten");

        // Three claimants: releasing the middle one keeps the latest; then the first is back.
        claims.claim(&key, &old, 1);
        claims.claim(&key, &new, 2);
        assert_eq!(claims.claim(&key, &third, 3), Some(3));
        assert_eq!(claims.release(&key, &new), Some(3));
        assert_eq!(claims.release(&key, &third), Some(1));
        // Releasing an owner that holds no claim changes nothing.
        assert_eq!(claims.release(&key, "ingress/ns/other"), Some(1));
        assert_eq!(claims.release("b.example.com", &old), None);
        assert_eq!(claims.claim(&key, &old, 4), Some(4));
    }
}
