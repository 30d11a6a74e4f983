use super::*;
use crate::model::{Backend, Endpoints, Protocol, Target};
use std::collections::BTreeSet;

fn backend(port: u16) -> Resource {
    Resource::Backend(Backend {
        protocol: Protocol::Http1,
        target: Target::Dns {
            host: "example.com".into(),
            port,
        },
        revision: None,
    })
}

fn endpoints(port: u16) -> Resource {
    Resource::Endpoints(Endpoints {
        addresses: vec![std::net::SocketAddr::from(([127, 0, 0, 1], port))],
    })
}

fn changed_since(cache: &ResourceCache, seq: u64) -> Option<BTreeSet<(ResourceType, String)>> {
    cache
        .changes_since(seq)
        .map(|changes| changes.map(|(t, n)| (t, n.to_string())).collect())
}

fn set(entries: &[(ResourceType, &str)]) -> BTreeSet<(ResourceType, String)> {
    entries.iter().map(|(t, n)| (*t, n.to_string())).collect()
}

#[test]
fn equal_content_upserts_do_not_bump_the_sequence_and_are_not_logged() {
    let mut cache = ResourceCache::new();
    assert!(cache.apply([Change::put("a", backend(80)), Change::put("b", backend(81))]));
    assert_eq!(cache.seq(), 1);
    // The same content again, even as a fresh value: nothing changed.
    assert!(!cache.apply([Change::put("a", backend(80)), Change::put("b", backend(81))]));
    assert_eq!(cache.seq(), 1);
    assert_eq!(changed_since(&cache, 1), Some(BTreeSet::new()));
    // A batch mixing an equal upsert with a real change logs only the change.
    assert!(cache.apply([Change::put("a", backend(80)), Change::put("b", backend(82))]));
    assert_eq!(cache.seq(), 2);
    assert_eq!(
        changed_since(&cache, 1),
        Some(set(&[(ResourceType::Backend, "b")]))
    );
    assert_eq!(
        cache.get(ResourceType::Backend, "a").map(|e| e.changed_at),
        Some(1)
    );
    assert_eq!(
        cache.get(ResourceType::Backend, "b").map(|e| e.changed_at),
        Some(2)
    );
}

#[test]
fn changes_since_returns_exactly_what_changed_after_a_sequence() {
    let mut cache = ResourceCache::new();
    cache.apply([
        Change::put("a", backend(80)),
        Change::put("a", endpoints(80)),
    ]); // 1
    cache.apply([Change::put("b", backend(81))]); // 2
    cache.apply([Change::Remove(ResourceType::Backend, "a".into())]); // 3
    cache.apply([
        Change::put("b", backend(82)),
        Change::put("c", endpoints(83)),
    ]); // 4
    assert_eq!(cache.seq(), 4);
    let table: [(u64, &[(ResourceType, &str)]); 6] = [
        (
            0,
            &[
                (ResourceType::Backend, "a"),
                (ResourceType::Endpoints, "a"),
                (ResourceType::Backend, "b"),
                (ResourceType::Endpoints, "c"),
            ],
        ),
        (
            1,
            &[
                (ResourceType::Backend, "a"),
                (ResourceType::Backend, "b"),
                (ResourceType::Endpoints, "c"),
            ],
        ),
        (
            2,
            &[
                (ResourceType::Backend, "a"),
                (ResourceType::Backend, "b"),
                (ResourceType::Endpoints, "c"),
            ],
        ),
        (
            3,
            &[(ResourceType::Backend, "b"), (ResourceType::Endpoints, "c")],
        ),
        (4, &[]),
        // A sequence from the future (another cache): nothing after it.
        (9, &[]),
    ];
    for (since, want) in table {
        assert_eq!(
            changed_since(&cache, since),
            Some(set(want)),
            "since {since}"
        );
    }
    // Removed names are gone, the rest is current.
    assert!(cache.get(ResourceType::Backend, "a").is_none());
    assert_eq!(
        cache
            .get(ResourceType::Backend, "b")
            .map(|e| e.version.clone()),
        Some(backend(82).version())
    );
    assert_eq!(cache.len(), 3);
}

#[test]
fn log_is_bounded_and_changes_since_gives_up_once_it_no_longer_reaches_back() {
    let mut cache = ResourceCache::new();
    // One resource changed once per batch, many more times than the smallest log.
    let batches = (MIN_LOG + 100) as u64;
    for port in 0..batches {
        assert!(cache.apply([Change::put("a", backend(port as u16))]));
    }
    assert_eq!(cache.seq(), batches);
    assert!(cache.log.len() <= MIN_LOG, "log holds {}", cache.log.len());
    assert!(changed_since(&cache, 0).is_none());
    assert!(changed_since(&cache, 50).is_none());
    let floor = cache.log_floor;
    assert!(floor > 0);
    assert!(changed_since(&cache, floor - 1).is_none());
    assert_eq!(
        changed_since(&cache, floor),
        Some(set(&[(ResourceType::Backend, "a")]))
    );
    assert_eq!(changed_since(&cache, batches), Some(BTreeSet::new()));
    // A session exactly at the floor still sees every later change.
    let since_floor: Vec<_> = cache
        .changes_since(floor)
        .expect("reaches back to the floor")
        .collect();
    assert_eq!(since_floor.len() as u64, batches - floor);
}

#[test]
fn log_trims_whole_batches() {
    let mut cache = ResourceCache::new();
    // A batch bigger than the smallest log, then one that removes everything: the log now
    // holds more than allowed, and the first batch leaves it whole.
    let n = MIN_LOG + 10;
    cache.apply((0..n).map(|i| Change::put(format!("b{i}"), backend(80))));
    cache.apply((0..n).map(|i| Change::Remove(ResourceType::Backend, format!("b{i}"))));
    assert!(cache.is_empty());
    assert!(cache.log.len() <= MIN_LOG);
    assert!(cache.log.iter().all(|e| e.seq > cache.log_floor));
    assert!(changed_since(&cache, 1).is_none());
    assert_eq!(changed_since(&cache, 2), Some(BTreeSet::new()));
}

#[test]
fn digest_follows_puts_and_removes() {
    let mut cache = ResourceCache::new();
    let empty = cache.digest();
    cache.apply([Change::put("a", backend(80))]);
    let with_a = cache.digest();
    assert_ne!(with_a, empty);
    cache.apply([Change::put("b", endpoints(80))]);
    let with_ab = cache.digest();
    // Changing a resource changes the digest; changing it back restores it.
    cache.apply([Change::put("a", backend(81))]);
    assert_ne!(cache.digest(), with_ab);
    cache.apply([Change::put("a", backend(80))]);
    assert_eq!(cache.digest(), with_ab);
    // Removing undoes adding, whatever the order things arrived in.
    cache.apply([Change::Remove(ResourceType::Endpoints, "b".into())]);
    assert_eq!(cache.digest(), with_a);
    let mut other = ResourceCache::new();
    other.apply([Change::put("b", endpoints(80))]);
    other.apply([Change::put("a", backend(80))]);
    assert_eq!(other.digest(), with_ab);
    cache.apply([Change::Remove(ResourceType::Backend, "a".into())]);
    assert_eq!(cache.digest(), empty);
    // The digest is that of the set held, as a proxy would compute it.
    let mut expected = ConfigDigest::default();
    expected.add(ResourceType::Backend, "a", &backend(80).version());
    expected.add(ResourceType::Endpoints, "b", &endpoints(80).version());
    assert_eq!(other.digest(), expected);
}

#[test]
fn removing_an_absent_name_is_a_no_op() {
    let mut cache = ResourceCache::new();
    cache.apply([Change::put("a", backend(80))]);
    let digest = cache.digest();
    let table = [
        Change::Remove(ResourceType::Backend, "missing".into()),
        // The same name under another type is another resource.
        Change::Remove(ResourceType::Endpoints, "a".into()),
    ];
    for change in table {
        assert!(!cache.apply([change.clone()]), "{change:?}");
        assert_eq!(cache.seq(), 1);
        assert_eq!(cache.digest(), digest);
        assert_eq!(changed_since(&cache, 1), Some(BTreeSet::new()));
    }
    assert!(cache.get(ResourceType::Backend, "a").is_some());
}

#[test]
fn shared_cache_wakes_sessions_only_on_a_real_change() {
    let shared = SharedCache::new();
    let mut changes = shared.subscribe();
    assert_eq!(shared.apply([Change::put("a", backend(80))]), 1);
    assert!(changes.has_changed().expect("sender alive"));
    assert_eq!(*changes.borrow_and_update(), 1);
    assert_eq!(shared.apply([Change::put("a", backend(80))]), 1);
    assert!(!changes.has_changed().expect("sender alive"));
    assert_eq!(shared.read().seq(), 1);
}
