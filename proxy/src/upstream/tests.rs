use super::*;
use crate::metrics::Metrics;
use prometheus::Registry;
use sluice_xds::Target;

fn backend(addrs: &[&str]) -> Backend {
    let metrics = Metrics::new(Registry::new()).expect("fresh registry");
    let spec = sluice_xds::Backend {
        protocol: Protocol::Http1,
        target: Target::Endpoints(addrs.iter().map(|a| a.parse().expect("addr")).collect()),
    };
    Backend::new("ns/svc:80", &spec, None, || {
        BackendMetrics::new(&metrics, "ns/svc:80")
    })
}

#[test]
fn no_endpoints_picks_nothing() {
    assert!(backend(&[]).pick(&[]).is_none());
}

#[test]
fn single_endpoint_is_picked_unless_tried() {
    let b = backend(&["127.0.0.1:1"]);
    let e = b.pick(&[]).expect("endpoint").clone();
    assert!(b.pick(&[e.key()]).is_none());
}

#[test]
fn two_choices_prefer_the_less_loaded() {
    let b = backend(&["127.0.0.1:1", "127.0.0.1:2"]);
    let busy = b.endpoints[0].clone();
    busy.in_flight.store(10, Ordering::Relaxed);
    for _ in 0..200 {
        let picked = b.pick(&[]).expect("endpoint");
        assert!(!Arc::ptr_eq(picked, &busy));
    }
}

#[test]
fn tried_endpoints_are_skipped() {
    let b = backend(&["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]);
    let tried = [b.endpoints[0].key(), b.endpoints[1].key()];
    for _ in 0..200 {
        let picked = b.pick(&tried).expect("endpoint");
        assert_eq!(
            picked.address,
            Address::Socket("127.0.0.1:3".parse().expect("addr"))
        );
    }
    let all: Vec<u64> = b.endpoints.iter().map(|e| e.key()).collect();
    assert!(b.pick(&all).is_none());
}

#[test]
fn in_flight_guard_counts_until_dropped() {
    let b = backend(&["127.0.0.1:1"]);
    let e = b.pick(&[]).expect("endpoint").clone();
    let guard = InFlight::new(e.clone(), b.metrics.clone());
    assert_eq!(e.in_flight.load(Ordering::Relaxed), 1);
    assert_eq!(b.metrics.in_flight.get(), 1);
    drop(guard);
    assert_eq!(e.in_flight.load(Ordering::Relaxed), 0);
    assert_eq!(b.metrics.in_flight.get(), 0);
}
