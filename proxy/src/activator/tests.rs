use super::*;
use crate::metrics::Metrics;
use prometheus::Registry;
use std::sync::atomic::AtomicUsize;

fn queue() -> Arc<Queue> {
    let metrics = Metrics::new(Registry::new()).expect("fresh registry");
    Arc::new(Queue::new(Arc::new(BackendMetrics::new(
        &metrics, "ns/rev",
    ))))
}

fn endpoints(n: usize) -> Vec<Arc<Endpoint>> {
    (0..n)
        .map(|i| {
            Endpoint::new(crate::balance::Address::Socket(
                format!("127.0.0.1:{}", 1000 + i).parse().expect("addr"),
            ))
        })
        .collect()
}

fn in_flight(e: &Endpoint) -> usize {
    e.in_flight.load(Ordering::SeqCst)
}

#[test]
fn concurrency_limit_is_never_exceeded() {
    let q = queue();
    let eps = endpoints(2);
    let a = q.try_admit(&eps, 1, &[]).expect("first slot");
    let b = q.try_admit(&eps, 1, &[]).expect("second slot");
    assert!(
        !Arc::ptr_eq(a.endpoint(), b.endpoint()),
        "cc=1 spreads over both instances"
    );
    assert!(
        q.try_admit(&eps, 1, &[]).is_none(),
        "both instances are full"
    );
    assert!(eps.iter().all(|e| in_flight(e) == 1));
    drop(a);
    assert_eq!(eps.iter().map(|e| in_flight(e)).sum::<usize>(), 1);
}

#[test]
fn unlimited_concurrency_always_admits_when_endpoints_exist() {
    let q = queue();
    let eps = endpoints(1);
    let slots: Vec<_> = (0..100)
        .map(|_| q.try_admit(&eps, 0, &[]).expect("slot"))
        .collect();
    assert_eq!(in_flight(&eps[0]), 100);
    drop(slots);
    assert_eq!(in_flight(&eps[0]), 0);
    assert!(q.try_admit(&endpoints(0), 0, &[]).is_none());
}

#[tokio::test]
async fn waiters_are_released_in_arrival_order_as_slots_free() {
    let q = queue();
    let eps = endpoints(1);
    q.update(&eps, 1);
    let held = q.try_admit(&eps, 1, &[]).expect("slot");
    let (_, mut first) = q.enqueue(10).expect("queued");
    let (_, mut second) = q.enqueue(10).expect("queued");
    assert_eq!(q.waiting(), 2);
    assert!(first.try_recv().is_err() && second.try_recv().is_err());
    // The next request does not jump the line.
    assert!(q.try_admit(&eps, 1, &[]).is_none());
    drop(held);
    let Ok(Admission::Slot(slot)) = first.try_recv() else {
        panic!("first waiter gets the freed slot")
    };
    assert!(second.try_recv().is_err(), "second still waits");
    assert_eq!(in_flight(&eps[0]), 1);
    drop(slot);
    let Ok(Admission::Slot(slot)) = second.try_recv() else {
        panic!("then the second")
    };
    assert_eq!(q.waiting(), 0);
    drop(slot);
    assert_eq!(in_flight(&eps[0]), 0);
}

#[test]
fn new_endpoints_release_waiters() {
    let q = queue();
    let (_, mut a) = q.enqueue(10).expect("queued");
    let (_, mut b) = q.enqueue(10).expect("queued");
    let eps = endpoints(2);
    q.update(&eps, 0);
    assert!(matches!(a.try_recv(), Ok(Admission::Slot(_))));
    assert!(matches!(b.try_recv(), Ok(Admission::Slot(_))));
    assert_eq!(q.waiting(), 0);
}

#[test]
fn the_wait_line_is_bounded() {
    let q = queue();
    let _a = q.enqueue(2).expect("queued");
    let _b = q.enqueue(2).expect("queued");
    assert_eq!(q.enqueue(2).err(), Some(Overflow));
}

#[test]
fn cancelled_and_vanished_waiters_give_slots_back() {
    let q = queue();
    let (ticket, a) = q.enqueue(10).expect("queued");
    q.cancel(ticket);
    assert_eq!(q.waiting(), 0);
    drop(a);
    let (_, b) = q.enqueue(10).expect("queued");
    drop(b); // gone without cancelling
    let eps = endpoints(1);
    q.update(&eps, 1);
    assert_eq!(in_flight(&eps[0]), 0, "nobody holds the slot");
    assert_eq!(q.waiting(), 0);
}

#[test]
fn removed_backends_send_waiters_to_route_again() {
    let q = queue();
    let (_, mut a) = q.enqueue(10).expect("queued");
    q.reroute_all();
    assert!(matches!(a.try_recv(), Ok(Admission::Reroute)));
    assert_eq!(q.waiting(), 0);
}

#[test]
fn slots_moving_between_threads_never_exceed_the_limit() {
    let q = queue();
    let eps = endpoints(2);
    q.update(&eps, 2);
    let max = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let (q, eps, max) = (q.clone(), eps.clone(), max.clone());
            scope.spawn(move || {
                for _ in 0..2000 {
                    if let Some(slot) = q.take(&eps, 2, &[]) {
                        let now = in_flight(slot.endpoint());
                        max.fetch_max(now, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    assert!(max.load(Ordering::SeqCst) <= 2);
    assert!(eps.iter().all(|e| in_flight(e) == 0));
}

#[test]
fn stats_average_concurrency_over_the_interval() {
    let stats = Arc::new(RevisionStats::default());
    let a = stats.arrive();
    let b = stats.arrive();
    let first = stats.take();
    assert_eq!(first.requests, 2.0);
    assert_eq!(first.current, 2);
    // Two requests in flight for the whole of the next interval.
    let second = stats.take();
    assert_eq!(second.concurrency, 2.0);
    assert_eq!(second.requests, 0.0);
    drop(a);
    drop(b);
    let third = stats.take();
    assert!(third.concurrency <= 2.0);
    assert_eq!(third.current, 0);
    let fourth = stats.take();
    assert_eq!(fourth.concurrency, 0.0);
}
