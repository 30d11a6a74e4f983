use super::*;
use std::sync::{Arc, Mutex};

/// One Lease with Kubernetes' optimistic concurrency: every write bumps the resourceVersion,
/// and a replace carrying another one is a conflict.
#[derive(Clone, Default)]
struct MemoryLease {
    lease: Arc<Mutex<Option<Lease>>>,
    version: Arc<Mutex<u64>>,
    /// While true, every call fails (an API server that cannot be reached).
    down: Arc<Mutex<bool>>,
}

impl MemoryLease {
    fn holder(&self) -> Option<String> {
        let lease = self.lease.lock().expect("lock");
        lease
            .as_ref()
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.holder_identity.clone())
    }

    fn spec(&self) -> LeaseSpec {
        let lease = self.lease.lock().expect("lock");
        lease
            .as_ref()
            .and_then(|l| l.spec.clone())
            .unwrap_or_default()
    }

    fn set_down(&self, down: bool) {
        *self.down.lock().expect("lock") = down;
    }

    fn check(&self) -> Result<(), String> {
        if *self.down.lock().expect("lock") {
            Err("connection refused".to_string())
        } else {
            Ok(())
        }
    }

    fn stamp(&self, lease: &Lease) -> Lease {
        let mut version = self.version.lock().expect("lock");
        *version += 1;
        let mut lease = lease.clone();
        lease.metadata.resource_version = Some(version.to_string());
        lease
    }
}

#[async_trait]
impl LeaseStore for MemoryLease {
    async fn get(&self) -> Result<Option<Lease>, String> {
        self.check()?;
        Ok(self.lease.lock().expect("lock").clone())
    }

    async fn create(&self, lease: &Lease) -> Result<Write, String> {
        self.check()?;
        let stamped = self.stamp(lease);
        let mut current = self.lease.lock().expect("lock");
        if current.is_some() {
            return Ok(Write::Conflict);
        }
        *current = Some(stamped);
        Ok(Write::Done)
    }

    async fn replace(&self, lease: &Lease) -> Result<Write, String> {
        self.check()?;
        let stamped = self.stamp(lease);
        let mut current = self.lease.lock().expect("lock");
        let current_version = current
            .as_ref()
            .and_then(|l| l.metadata.resource_version.clone());
        if current_version != lease.metadata.resource_version {
            return Ok(Write::Conflict);
        }
        *current = Some(stamped);
        Ok(Write::Done)
    }
}

fn elector(store: &MemoryLease, identity: &str) -> Elector {
    Elector::new(
        Box::new(store.clone()),
        "sluice-controller",
        identity,
        LeaseSettings::default(),
    )
}

#[tokio::test(start_paused = true)]
async fn first_candidate_creates_the_lease_and_a_second_is_refused() {
    let store = MemoryLease::default();
    let (mut a, mut b) = (elector(&store, "a"), elector(&store, "b"));
    assert_eq!(a.try_acquire_or_renew().await, Ok(true));
    assert_eq!(b.try_acquire_or_renew().await, Ok(false));
    assert_eq!(store.holder().as_deref(), Some("a"));
    assert_eq!(store.spec().lease_transitions, Some(0));
    assert_eq!(store.spec().lease_duration_seconds, Some(10));
}

#[tokio::test(start_paused = true)]
async fn a_lease_is_taken_over_only_after_it_stops_changing_for_its_duration() {
    let store = MemoryLease::default();
    let (mut a, mut b) = (elector(&store, "a"), elector(&store, "b"));
    assert_eq!(a.try_acquire_or_renew().await, Ok(true));
    assert_eq!(b.try_acquire_or_renew().await, Ok(false));
    // a stops renewing; b watches the unchanged record on its own clock.
    tokio::time::advance(Duration::from_secs(9)).await;
    assert_eq!(b.try_acquire_or_renew().await, Ok(false));
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(b.try_acquire_or_renew().await, Ok(true));
    assert_eq!(store.holder().as_deref(), Some("b"));
    assert_eq!(store.spec().lease_transitions, Some(1));
    // a's next renewal finds b holding it.
    assert_eq!(a.try_acquire_or_renew().await, Ok(false));
}

#[tokio::test(start_paused = true)]
async fn renewals_keep_a_standby_out() {
    let store = MemoryLease::default();
    let (mut a, mut b) = (elector(&store, "a"), elector(&store, "b"));
    assert_eq!(a.try_acquire_or_renew().await, Ok(true));
    for _ in 0..20 {
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(a.try_acquire_or_renew().await, Ok(true));
        assert_eq!(b.try_acquire_or_renew().await, Ok(false));
    }
    assert_eq!(
        store.spec().lease_transitions,
        Some(0),
        "renewals are not transitions"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stale_read_loses_the_race_with_a_conflict() {
    let store = MemoryLease::default();
    let mut a = elector(&store, "a");
    assert_eq!(a.try_acquire_or_renew().await, Ok(true));
    let stale = store.get().await.expect("get").expect("lease");
    assert_eq!(a.try_acquire_or_renew().await, Ok(true));
    assert_eq!(store.replace(&stale).await, Ok(Write::Conflict));
}

#[tokio::test(start_paused = true)]
async fn a_released_lease_is_taken_at_the_next_attempt() {
    let store = MemoryLease::default();
    let (mut a, mut b) = (elector(&store, "a"), elector(&store, "b"));
    assert_eq!(a.try_acquire_or_renew().await, Ok(true));
    assert_eq!(b.try_acquire_or_renew().await, Ok(false));
    a.release().await.expect("release");
    assert_eq!(store.holder(), None);
    assert_eq!(store.spec().lease_duration_seconds, Some(1));
    assert_eq!(b.try_acquire_or_renew().await, Ok(true));
}

#[tokio::test(start_paused = true)]
async fn a_crashed_leader_is_replaced_within_fifteen_seconds() {
    let store = MemoryLease::default();
    let (a_leads, a_seen) = watch::channel(false);
    let (b_leads, mut b_seen) = watch::channel(false);
    let (stop_a, a_stop) = watch::channel(false);
    let (_stop_b, b_stop) = watch::channel(false);
    let a = tokio::spawn(elector(&store, "a").run(a_leads, a_stop));
    let mut a_seen = a_seen;
    a_seen.wait_for(|l| *l).await.expect("a leads");
    let b = tokio::spawn(elector(&store, "b").run(b_leads, b_stop));
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(!*b_seen.borrow(), "b must not lead while a renews");
    // A crash: a stops without releasing.
    a.abort();
    let _ = a.await;
    drop(stop_a);
    let crashed = Instant::now();
    b_seen.wait_for(|l| *l).await.expect("b leads");
    let failover = crashed.elapsed();
    assert!(
        failover <= Duration::from_secs(15),
        "failover took {failover:?}"
    );
    assert_eq!(store.holder().as_deref(), Some("b"));
    b.abort();
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_cannot_renew_steps_down_by_its_renew_deadline() {
    let store = MemoryLease::default();
    let (leads, mut seen) = watch::channel(false);
    let (_stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(elector(&store, "a").run(leads, stop_rx));
    seen.wait_for(|l| *l).await.expect("leads");
    store.set_down(true);
    let lost = Instant::now();
    seen.wait_for(|l| !*l).await.expect("steps down");
    let after = lost.elapsed();
    assert!(
        after <= LeaseSettings::default().renew_deadline + Duration::from_secs(3),
        "{after:?}"
    );
    assert!(
        after >= Duration::from_secs(5),
        "kept leading through short outages: {after:?}"
    );
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn shutdown_releases_the_lease() {
    let store = MemoryLease::default();
    let (leads, mut seen) = watch::channel(false);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(elector(&store, "a").run(leads, stop_rx));
    seen.wait_for(|l| *l).await.expect("leads");
    stop.send_replace(true);
    task.await.expect("stops");
    assert_eq!(store.holder(), None);
    assert!(!*seen.borrow());
}

#[test]
fn timing_follows_client_go_ratios() {
    assert!(LeaseSettings::default().validate().is_ok());
    let bad = LeaseSettings {
        lease_duration: Duration::from_secs(5),
        renew_deadline: Duration::from_secs(8),
        retry_period: Duration::from_secs(2),
    };
    assert!(bad.validate().is_err());
    let tight = LeaseSettings {
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_secs(2),
    };
    assert!(tight.validate().is_err());
}
