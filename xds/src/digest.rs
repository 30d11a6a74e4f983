//! [`ConfigDigest`]: one version for a whole set of resources, kept up to date in O(1) per
//! change.
//!
//! It is the wrapping sum of `sha256(type ‖ name ‖ version)` over the set, so adding or removing
//! one resource adds or subtracts one term, and the result does not depend on the order the
//! resources arrived in: a proxy and the controller holding the same resources show the same
//! digest.

use crate::model::ResourceType;
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConfigDigest([u64; 4]);

impl ConfigDigest {
    fn term(type_: ResourceType, name: &str, version: &str) -> [u64; 4] {
        let mut hasher = Sha256::new();
        hasher.update(type_.type_url().as_bytes());
        hasher.update([0]);
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(version.as_bytes());
        let bytes: [u8; 32] = hasher.finalize().into();
        let mut lanes = [0u64; 4];
        for (lane, chunk) in lanes.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            *lane = u64::from_be_bytes(word);
        }
        lanes
    }

    pub fn add(&mut self, type_: ResourceType, name: &str, version: &str) {
        for (lane, t) in self.0.iter_mut().zip(Self::term(type_, name, version)) {
            *lane = lane.wrapping_add(t);
        }
    }

    pub fn remove(&mut self, type_: ResourceType, name: &str, version: &str) {
        for (lane, t) in self.0.iter_mut().zip(Self::term(type_, name, version)) {
            *lane = lane.wrapping_sub(t);
        }
    }

    /// 64 hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|lane| format!("{lane:016x}")).collect()
    }
}

impl std::fmt::Display for ConfigDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_order_independent_and_removal_undoes_addition() {
        let mut a = ConfigDigest::default();
        a.add(ResourceType::Backend, "ns/a:80", "v1");
        a.add(ResourceType::Endpoints, "ns/a:80", "v2");
        let mut b = ConfigDigest::default();
        b.add(ResourceType::Endpoints, "ns/a:80", "v2");
        b.add(ResourceType::Backend, "ns/a:80", "v1");
        assert_eq!(a, b);
        assert_eq!(a.to_hex().len(), 64);
        b.add(ResourceType::RouteConfig, "ingress/ns/a", "v3");
        assert_ne!(a, b);
        b.remove(ResourceType::RouteConfig, "ingress/ns/a", "v3");
        assert_eq!(a, b);
        // The same name and version under another type is another term.
        let mut c = ConfigDigest::default();
        c.add(ResourceType::Backend, "x", "v");
        let mut d = ConfigDigest::default();
        d.add(ResourceType::Endpoints, "x", "v");
        assert_ne!(c, d);
    }
}
