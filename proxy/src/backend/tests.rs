use super::*;
use crate::metrics::Metrics;
use prometheus::Registry;
use std::net::SocketAddr;

fn addresses(addrs: &[&str]) -> Vec<SocketAddr> {
    addrs.iter().map(|a| a.parse().expect("addr")).collect()
}

fn spec(revision: bool) -> sluice_xds::Backend {
    sluice_xds::Backend {
        protocol: Protocol::Http1,
        target: Target::Endpoints,
        revision: revision.then(|| "ns/rev".to_string()),
    }
}

/// `--max-held-requests` in these tests.
const CEILING: usize = 20_000;

fn build(
    spec: &sluice_xds::Backend,
    addrs: &[&str],
    policy: Option<&RevisionPolicy>,
    old: Option<&Backend>,
) -> Backend {
    let metrics = Metrics::new(Registry::new()).expect("fresh registry");
    let addresses = addresses(addrs);
    Backend::build(
        "ns/svc:80",
        BackendSpec {
            backend: Some(spec),
            addresses: &addresses,
            policy,
            max_waiting: CEILING,
            held_total: &HeldTotal::new(usize::MAX),
        },
        old,
        |_| Arc::default(),
        || BackendMetrics::new(&metrics, "ns/svc:80"),
    )
}

fn policy(cc: u32, max_buffered: u32) -> RevisionPolicy {
    RevisionPolicy {
        container_concurrency: cc,
        max_buffered,
        timeout_seconds: 300,
        response_start_timeout_seconds: None,
        idle_timeout_seconds: None,
    }
}

fn upstream(b: &Backend) -> &Upstream {
    b.upstream().expect("an upstream backend")
}

#[test]
fn plain_backends_take_the_global_wait_bound_and_no_concurrency_limit() {
    let b = build(&spec(false), &["127.0.0.1:1"], None, None);
    let u = upstream(&b);
    assert_eq!((u.concurrency, u.max_waiting), (0, CEILING));
    assert!(b.revision.is_none());
}

#[test]
fn revisions_take_their_own_limits() {
    let b = build(&spec(true), &["127.0.0.1:1"], Some(&policy(3, 50)), None);
    let u = upstream(&b);
    assert_eq!((u.concurrency, u.max_waiting), (3, 50));
    assert_eq!(b.revision.as_ref().map(|r| &*r.id), Some("ns/rev"));
}

#[test]
fn a_revisions_buffer_bound_is_capped_by_the_flag() {
    let b = build(
        &spec(true),
        &["127.0.0.1:1"],
        Some(&policy(1, 1_000_000)),
        None,
    );
    assert_eq!(upstream(&b).max_waiting, CEILING);
}

#[test]
fn a_revision_whose_policy_has_not_arrived_gets_knatives_defaults() {
    let b = build(&spec(true), &["127.0.0.1:1"], None, None);
    let u = upstream(&b);
    assert_eq!((u.concurrency, u.max_waiting), (0, 10_000));
    assert_eq!(
        b.revision.as_ref().map(|r| r.policy.timeout_seconds),
        Some(300)
    );
}

#[test]
fn endpoints_queue_and_counters_carry_over_by_address() {
    let p = policy(1, 10);
    let old = build(&spec(true), &["127.0.0.1:1", "127.0.0.1:2"], Some(&p), None);
    let kept = upstream(&old).endpoints()[1].clone();
    let new = build(
        &spec(true),
        &["127.0.0.1:2", "127.0.0.1:3"],
        Some(&p),
        Some(&old),
    );
    assert!(Arc::ptr_eq(&upstream(&new).endpoints()[0], &kept));
    assert!(!upstream(&new)
        .endpoints()
        .iter()
        .any(|e| e.address == upstream(&old).endpoints()[0].address));
    assert!(Arc::ptr_eq(&upstream(&old).queue, &upstream(&new).queue));
    let (Some(a), Some(b)) = (&old.revision, &new.revision) else {
        panic!("revision state")
    };
    assert!(Arc::ptr_eq(&a.stats, &b.stats));
}

#[test]
fn a_protocol_change_starts_with_fresh_endpoints() {
    let old = build(&spec(false), &["127.0.0.1:1"], None, None);
    let mut h2c = spec(false);
    h2c.protocol = Protocol::H2c;
    let new = build(&h2c, &["127.0.0.1:1"], None, Some(&old));
    assert!(!Arc::ptr_eq(
        &upstream(&old).endpoints()[0],
        &upstream(&new).endpoints()[0]
    ));
    assert!(Arc::ptr_eq(&upstream(&old).queue, &upstream(&new).queue));
}

#[test]
fn responder_backends_have_no_endpoints_and_a_prepared_body() {
    let spec = sluice_xds::Backend {
        protocol: Protocol::Http1,
        target: Target::Responder(sluice_xds::ResponderSpec {
            status: 503,
            body_bytes: 16,
            latency_ms: 5,
            message: String::new(),
        }),
        revision: None,
    };
    let b = build(&spec, &[], None, None);
    let BackendKind::Responder(r) = &b.kind else {
        panic!("a responder")
    };
    assert_eq!(r.status, http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.body.len(), 16);
    assert_eq!(r.latency, Duration::from_millis(5));
}

#[test]
fn a_backend_not_received_yet_has_no_endpoints() {
    let metrics = Metrics::new(Registry::new()).expect("fresh registry");
    let b = Backend::build(
        "ns/late:80",
        BackendSpec {
            backend: None,
            addresses: &[],
            policy: None,
            max_waiting: 7,
            held_total: &HeldTotal::new(usize::MAX),
        },
        None,
        |_| Arc::default(),
        || BackendMetrics::new(&metrics, "ns/late:80"),
    );
    assert_eq!(upstream(&b).endpoint_count(), 0);
    assert_eq!(upstream(&b).max_waiting, 7);
}
