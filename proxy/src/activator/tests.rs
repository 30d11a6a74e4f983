use super::*;
use crate::metrics::Metrics;
use prometheus::Registry;
use std::sync::atomic::AtomicUsize;
use std::task::Poll;
use std::time::Duration;

fn queue() -> Arc<Queue> {
    queue_sharing(&HeldTotal::new(usize::MAX))
}

fn queue_sharing(total: &Arc<HeldTotal>) -> Arc<Queue> {
    let metrics = Metrics::new(Registry::new()).expect("fresh registry");
    Arc::new(Queue::new(
        Arc::new(BackendMetrics::new(&metrics, "ns/rev")),
        total.clone(),
    ))
}

/// The admission, if the queue has sent one, without waiting.
fn try_recv(w: &mut Waiting) -> Option<Admission> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match Pin::new(w).poll(&mut cx) {
        Poll::Ready(r) => Some(r),
        Poll::Pending => None,
    }
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
    let mut first = q.enqueue(10).expect("queued");
    let mut second = q.enqueue(10).expect("queued");
    assert_eq!(q.waiting(), 2);
    assert!(try_recv(&mut first).is_none() && try_recv(&mut second).is_none());
    // The next request does not jump the line.
    assert!(q.try_admit(&eps, 1, &[]).is_none());
    drop(held);
    let Some(Admission::Slot(slot)) = try_recv(&mut first) else {
        panic!("first waiter gets the freed slot")
    };
    assert!(try_recv(&mut second).is_none(), "second still waits");
    assert_eq!(in_flight(&eps[0]), 1);
    drop(slot);
    let Some(Admission::Slot(slot)) = try_recv(&mut second) else {
        panic!("then the second")
    };
    assert_eq!(q.waiting(), 0);
    drop(slot);
    assert_eq!(in_flight(&eps[0]), 0);
}

#[test]
fn new_endpoints_release_waiters() {
    let q = queue();
    let mut a = q.enqueue(10).expect("queued");
    let mut b = q.enqueue(10).expect("queued");
    let eps = endpoints(2);
    q.update(&eps, 0);
    assert!(matches!(try_recv(&mut a), Some(Admission::Slot(_))));
    assert!(matches!(try_recv(&mut b), Some(Admission::Slot(_))));
    assert_eq!(q.waiting(), 0);
}

/// `ready_for` dates the last change from no endpoints to some: more instances, or the same
/// ones again, do not move it; a return from zero does.
#[test]
fn ready_for_dates_the_last_change_from_no_endpoints_to_some() {
    let q = queue();
    assert_eq!(q.ready_for(), None, "never had endpoints");
    q.update(&[], 0);
    assert_eq!(q.ready_for(), None);
    let eps = endpoints(2);
    q.update(&eps[..1], 0);
    let first = q.ready_for().expect("endpoints came");
    std::thread::sleep(Duration::from_millis(20));
    q.update(&eps, 0);
    q.update(&eps[..1], 0);
    let later = q.ready_for().expect("still dated");
    assert!(
        later >= first + Duration::from_millis(20),
        "{first:?} then {later:?}: an added instance is no cold start"
    );
    q.update(&[], 0);
    q.update(&eps, 0);
    let again = q.ready_for().expect("dated again");
    assert!(again < later, "{again:?} after {later:?}: back from zero");
}

#[test]
fn the_wait_line_is_bounded() {
    let q = queue();
    let _a = q.enqueue(2).expect("queued");
    let _b = q.enqueue(2).expect("queued");
    assert_eq!(q.enqueue(2).err(), Some(Overflow));
}

#[test]
fn vanished_waiters_give_slots_back() {
    let q = queue();
    let a = q.enqueue(10).expect("queued");
    drop(a);
    assert_eq!(q.waiting(), 0);
    let eps = endpoints(1);
    q.update(&eps, 1);
    // Sent a slot, then gone before reading it: the slot comes back with the receiver.
    let mut held = q.try_admit(&eps, 1, &[]).expect("slot");
    let b = q.enqueue(10).expect("queued");
    drop(held);
    assert_eq!(in_flight(&eps[0]), 1, "handed to the waiter");
    drop(b);
    assert_eq!(in_flight(&eps[0]), 0, "nobody holds the slot");
    assert_eq!(q.waiting(), 0);
    held = q.try_admit(&eps, 1, &[]).expect("the slot is free again");
    drop(held);
}

#[test]
fn a_slot_handed_to_a_waiter_that_left_goes_to_the_next() {
    let q = queue();
    let eps = endpoints(1);
    q.update(&eps, 1);
    let held = q.try_admit(&eps, 1, &[]).expect("slot");
    let first = q.enqueue(10).expect("queued");
    let mut second = q.enqueue(10).expect("queued");
    drop(held);
    assert!(
        try_recv(&mut second).is_none(),
        "the slot went to the first in line"
    );
    // Gone before taking it: the next in line gets it, with no release in between.
    drop(first);
    let Some(Admission::Slot(slot)) = try_recv(&mut second) else {
        panic!("the second waiter gets the slot the first left");
    };
    assert_eq!(in_flight(&eps[0]), 1);
    assert_eq!(q.waiting(), 0);
    drop(slot);
    assert_eq!(in_flight(&eps[0]), 0);
}

#[test]
fn removed_backends_send_waiters_to_route_again() {
    let q = queue();
    let mut a = q.enqueue(10).expect("queued");
    q.reroute_all();
    assert!(matches!(try_recv(&mut a), Some(Admission::Reroute)));
    assert_eq!(q.waiting(), 0);
}

/// Slots really change threads: producers take them (fast path, or from the wait line when
/// all are held) and hand them to consumer threads, which drop them; a drop on one thread
/// dispatches the freed slot to a waiter on another. No endpoint ever holds more than its
/// limit, no waiter is forgotten (a lost wake-up would trip the timeout), every slot comes
/// back.
#[test]
fn slots_moving_between_threads_never_exceed_the_limit() {
    const PRODUCERS: usize = 4;
    const CONSUMERS: usize = 3;
    const PER_PRODUCER: usize = 1000;
    const LIMIT: u32 = 2;
    let q = queue();
    let eps = endpoints(2);
    q.update(&eps, LIMIT);
    let max_seen = AtomicUsize::new(0);
    let queued = AtomicUsize::new(0);
    let released = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let mut senders = Vec::new();
        for _ in 0..CONSUMERS {
            let (tx, rx) = std::sync::mpsc::channel::<Slot>();
            senders.push(tx);
            let released = &released;
            scope.spawn(move || {
                for slot in rx {
                    drop(slot);
                    released.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        for p in 0..PRODUCERS {
            let senders = senders.clone();
            let (q, eps, max_seen, queued) = (q.clone(), eps.clone(), &max_seen, &queued);
            scope.spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .expect("runtime");
                for i in 0..PER_PRODUCER {
                    let slot = match q.try_admit(&eps, LIMIT, &[]) {
                        Some(slot) => slot,
                        None => {
                            queued.fetch_add(1, Ordering::SeqCst);
                            let waiting = q.enqueue(usize::MAX).expect("unbounded line");
                            let admitted = rt
                                .block_on(async {
                                    tokio::time::timeout(Duration::from_secs(20), waiting).await
                                })
                                .expect("a released slot reaches the waiter (no lost wake-up)");
                            match admitted {
                                Admission::Slot(slot) => slot,
                                _ => panic!("the backend stays: every waiter gets a slot"),
                            }
                        }
                    };
                    max_seen.fetch_max(in_flight(slot.endpoint()), Ordering::SeqCst);
                    senders[(p + i) % CONSUMERS]
                        .send(slot)
                        .expect("consumers outlive producers");
                }
            });
        }
        // Consumers stop once every producer has dropped its clones of the senders.
        drop(senders);
    });
    let max_seen = max_seen.load(Ordering::SeqCst);
    assert!(
        (1..=LIMIT as usize).contains(&max_seen),
        "in flight on one endpoint peaked at {max_seen}, limit {LIMIT}"
    );
    assert_eq!(released.load(Ordering::SeqCst), PRODUCERS * PER_PRODUCER);
    assert!(
        queued.load(Ordering::SeqCst) > 0,
        "producers outran consumers at least once, so slots went through the wait line"
    );
    assert!(
        eps.iter().all(|e| in_flight(e) == 0),
        "every slot came back"
    );
    assert_eq!(q.waiting(), 0);
}

/// A clock the test moves by hand, in microseconds.
#[derive(Default)]
struct ManualClock(AtomicU64);

impl ManualClock {
    fn set_ms(&self, ms: u64) {
        self.0.store(ms * 1000, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[test]
fn stats_average_concurrency_over_the_interval() {
    let stats = Arc::new(RevisionStats::with_clock(ManualClock::default()));
    let at = |ms| stats.clock.set_ms(ms);
    // An empty interval reports the concurrency of the moment.
    let start = stats.take();
    assert_eq!(
        (start.concurrency, start.requests, start.current),
        (0.0, 0.0, 0)
    );

    // 0–250 ms one request, 250–500 ms two, 500–1000 ms one: (250 + 500 + 500) / 1000.
    let a = stats.arrive();
    at(250);
    let b = stats.arrive();
    at(500);
    drop(a);
    at(1000);
    let first = stats.take();
    assert_eq!(
        first,
        Sample {
            concurrency: 1.25,
            requests: 2.0,
            current: 1
        }
    );

    // `b` stays in flight for the whole next second, then half of the one after.
    at(2000);
    let second = stats.take();
    assert_eq!(
        (second.concurrency, second.requests, second.current),
        (1.0, 0.0, 1)
    );
    at(2500);
    drop(b);
    at(3000);
    let third = stats.take();
    assert_eq!(
        (third.concurrency, third.requests, third.current),
        (0.5, 0.0, 0)
    );
    at(4000);
    assert_eq!(stats.take().concurrency, 0.0);

    // Twice at the same instant: no interval, so the concurrency of the moment.
    let c = stats.arrive();
    let instant = stats.take();
    assert_eq!(
        (instant.concurrency, instant.requests, instant.current),
        (1.0, 1.0, 1)
    );

    // A poke counted one request at concurrency 1 already: the next sample subtracts it from
    // both, never going below zero. Here 1 in flight for 500 of 1000 ms (0.5) and two
    // arrivals that finish at once (2), less one poke: 0 and 1.
    at(4500);
    drop(c);
    drop(stats.arrive());
    drop(stats.arrive());
    stats.poked.store(1, Ordering::SeqCst);
    at(5000);
    let poked = stats.take();
    assert_eq!(
        (poked.concurrency, poked.requests, poked.current),
        (0.0, 1.0, 0)
    );
    assert_eq!(stats.poked.load(Ordering::SeqCst), 0, "read and reset");
}

#[test]
fn a_waiter_that_leaves_frees_its_place_at_once() {
    let q = queue();
    let first = q.enqueue(2).expect("queued");
    let _second = q.enqueue(2).expect("queued");
    assert_eq!(q.enqueue(2).err(), Some(Overflow), "the line is full");
    // The first in line leaves (its client closed): nobody hands a slot past it, yet the
    // place is free for the next arrival.
    drop(first);
    assert_eq!(q.waiting(), 1);
    let _third = q.enqueue(2).expect("the freed place is taken");
}

#[test]
fn ten_thousand_aborted_waiters_leave_nothing_behind() {
    let total = HeldTotal::new(20_000);
    let q = queue_sharing(&total);
    let eps = endpoints(1);
    q.update(&eps, 1);
    let held = q.try_admit(&eps, 1, &[]).expect("the only slot");
    for _ in 0..10_000 {
        drop(
            q.enqueue(10_000)
                .expect("the line never fills with the departed"),
        );
    }
    assert_eq!((q.waiting(), total.count()), (0, 0));
    let mut next = q.enqueue(10_000).expect("queued");
    drop(held);
    assert!(
        matches!(try_recv(&mut next), Some(Admission::Slot(_))),
        "the freed slot goes to the live waiter, not to a departed one"
    );
}

#[tokio::test(start_paused = true)]
async fn a_waiter_that_times_out_leaves_the_line() {
    let q = queue();
    let waiting = q.enqueue(1).expect("queued");
    let outcome = tokio::time::timeout(Duration::from_secs(30), waiting).await;
    assert!(outcome.is_err(), "nothing admitted it");
    assert_eq!(q.waiting(), 0);
    let _next = q.enqueue(1).expect("its place is free");
}

#[tokio::test(start_paused = true)]
async fn an_aborted_task_leaves_the_line() {
    let q = queue();
    let task = tokio::spawn({
        let q = q.clone();
        async move { matches!(q.enqueue(1).expect("queued").await, Admission::Slot(_)) }
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(q.waiting(), 1);
    task.abort();
    assert!(task.await.is_err_and(|e| e.is_cancelled()));
    assert_eq!(q.waiting(), 0);
}

#[test]
fn the_total_across_queues_is_bounded() {
    let total = HeldTotal::new(3);
    let (a, b) = (queue_sharing(&total), queue_sharing(&total));
    let a1 = a.enqueue(10).expect("queued");
    let _a2 = a.enqueue(10).expect("queued");
    let _b1 = b.enqueue(10).expect("queued");
    assert_eq!(b.enqueue(10).err(), Some(Overflow), "3 held in all");
    assert_eq!(total.count(), 3);
    drop(a1);
    assert_eq!(total.count(), 2);
    let _b2 = b.enqueue(10).expect("a place came free");
    // Admission and rerouting give places back too.
    let eps = endpoints(1);
    a.update(&eps, 0);
    assert_eq!(total.count(), 2, "b's two remain");
    b.reroute_all();
    assert_eq!(total.count(), 0);
}
