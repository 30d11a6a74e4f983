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

type Shard<V> = HashMap<Box<str>, V, BuildHasherDefault<Fnv>>;

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
    pub fn with_changes(&self, changes: impl IntoIterator<Item = (String, Option<V>)>) -> Self {
        let mut touched: HashMap<usize, Shard<V>> = HashMap::new();
        for (key, value) in changes {
            let index = shard_of(&key);
            let shard = touched
                .entry(index)
                .or_insert_with(|| self.shards[index].as_ref().clone());
            match value {
                Some(value) => {
                    shard.insert(key.into_boxed_str(), value);
                }
                None => {
                    shard.remove(key.as_str());
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
    by_key: HashMap<String, Vec<(String, V)>>,
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
    pub fn claim(&mut self, key: &str, owner: &str, value: V) -> Option<V> {
        let claims = self.by_key.entry(key.to_string()).or_default();
        match claims.iter_mut().find(|(o, _)| o == owner) {
            Some(claim) => claim.1 = value,
            None => claims.push((owner.to_string(), value)),
        }
        claims.last().map(|(_, v)| v.clone())
    }

    /// Drops `owner`'s claim on `key`. Returns the value the key has afterwards.
    pub fn release(&mut self, key: &str, owner: &str) -> Option<V> {
        let claims = self.by_key.get_mut(key)?;
        claims.retain(|(o, _)| o != owner);
        let now = claims.last().map(|(_, v)| v.clone());
        if claims.is_empty() {
            self.by_key.remove(key);
        }
        now
    }
}

/// A [`ShardedMap`] fed by owners' claims: changes accumulate until [`ClaimedMap::publish`].
pub struct ClaimedMap<V> {
    claims: Claims<V>,
    map: ShardedMap<V>,
    pending: Vec<(String, Option<V>)>,
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
    pub fn claim(&mut self, key: &str, owner: &str, value: V) {
        let now = self.claims.claim(key, owner, value);
        self.pending.push((key.to_string(), now));
    }

    pub fn release(&mut self, key: &str, owner: &str) {
        let now = self.claims.release(key, owner);
        self.pending.push((key.to_string(), now));
    }

    /// Applies what changed since the last call; returns true if anything did.
    pub fn publish(&mut self) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        self.map = self.map.with_changes(self.pending.drain(..));
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
        let keys: Vec<String> = (0..1000).map(|i| format!("host{i}.example.com")).collect();
        let full = empty.with_changes(keys.iter().map(|k| (k.clone(), Some(1))));
        assert_eq!(full.len(), 1000);
        let changed = full.with_changes([("host7.example.com".to_string(), Some(2))]);
        assert_eq!(full.get("host7.example.com"), Some(&1));
        assert_eq!(changed.get("host7.example.com"), Some(&2));
        let shared = full
            .shards
            .iter()
            .zip(changed.shards.iter())
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert_eq!(shared, SHARDS - 1, "only the changed key's shard is copied");
        let removed = changed.with_changes([("host7.example.com".to_string(), None)]);
        assert_eq!(removed.get("host7.example.com"), None);
        assert_eq!(removed.len(), 999);
        assert_eq!(removed.get("missing"), None);
    }

    #[test]
    fn the_latest_claim_wins_and_a_release_restores_the_previous_one() {
        let mut claims = Claims::default();
        assert_eq!(claims.claim("a.example.com", "ingress/ns/old", 1), Some(1));
        assert_eq!(claims.claim("a.example.com", "ingress/ns/new", 2), Some(2));
        // Updating the older claim does not take the key back.
        assert_eq!(claims.claim("a.example.com", "ingress/ns/old", 3), Some(2));
        assert_eq!(claims.release("a.example.com", "ingress/ns/new"), Some(3));
        assert_eq!(claims.release("a.example.com", "ingress/ns/old"), None);
        assert_eq!(claims.release("a.example.com", "ingress/ns/old"), None);
    }
}
