use super::*;
use crate::metrics::Metrics;
use prometheus::Registry;
use sluice_xds::Target;

fn spec(addrs: &[&str], revision: Option<RevisionPolicy>) -> sluice_xds::Backend {
    sluice_xds::Backend {
        protocol: Protocol::Http1,
        target: Target::Endpoints(addrs.iter().map(|a| a.parse().expect("addr")).collect()),
        revision,
    }
}

fn build(spec: &sluice_xds::Backend, old: Option<&Backend>) -> Backend {
    let metrics = Metrics::new(Registry::new()).expect("fresh registry");
    Backend::new("ns/svc:80", spec, old, 7, || {
        BackendMetrics::new(&metrics, "ns/svc:80")
    })
}

fn policy(cc: u32, max_buffered: u32) -> RevisionPolicy {
    RevisionPolicy {
        id: "ns/rev".into(),
        container_concurrency: cc,
        max_buffered,
        timeout_seconds: 300,
        response_start_timeout_seconds: None,
        idle_timeout_seconds: None,
    }
}

#[test]
fn plain_backends_take_the_global_wait_bound_and_no_concurrency_limit() {
    let b = build(&spec(&["127.0.0.1:1"], None), None);
    assert_eq!((b.concurrency, b.max_waiting), (0, 7));
    assert!(b.revision.is_none() && b.responder.is_none());
}

#[test]
fn revisions_take_their_own_limits() {
    let b = build(&spec(&["127.0.0.1:1"], Some(policy(3, 50))), None);
    assert_eq!((b.concurrency, b.max_waiting), (3, 50));
    assert!(b.revision.is_some());
}

#[test]
fn endpoints_queue_and_counters_carry_over_by_address() {
    let old = build(
        &spec(&["127.0.0.1:1", "127.0.0.1:2"], Some(policy(1, 10))),
        None,
    );
    let kept = old.endpoints()[1].clone();
    let new = build(
        &spec(&["127.0.0.1:2", "127.0.0.1:3"], Some(policy(1, 10))),
        Some(&old),
    );
    assert!(Arc::ptr_eq(&new.endpoints()[0], &kept));
    assert!(!new
        .endpoints()
        .iter()
        .any(|e| e.address == old.endpoints()[0].address));
    assert!(Arc::ptr_eq(&old.queue, &new.queue));
    let (Some(a), Some(b)) = (&old.revision, &new.revision) else {
        panic!("revision state")
    };
    assert!(Arc::ptr_eq(&a.stats, &b.stats));
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
    let b = build(&spec, None);
    assert_eq!(b.endpoint_count(), 0);
    let r = b.responder.as_ref().expect("responder");
    assert_eq!(r.status, http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.body.len(), 16);
    assert_eq!(r.latency, Duration::from_millis(5));
}
