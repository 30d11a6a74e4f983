//! The built-in activator: admission of requests to a backend's endpoints.
//!
//! Every backend has a [`Queue`]. A request takes a *slot* on an endpoint: for a backend
//! without a concurrency limit that is a power-of-two-choices pick, for a Revision with
//! `containerConcurrency = cc` it is an endpoint whose in-flight count is below `cc`, reserved
//! with a compare-and-swap so no instance ever exceeds `cc`. When no slot is free (no ready
//! instance, or all at `cc`), the request waits in the queue, in arrival order, bounded in
//! number (overflow: 503) and in time (the caller's deadline: 504).
//!
//! Slots move without a scan of the waiters: a finishing request hands its freed slot to the
//! first live waiter, and a router swap (new endpoints) dispatches waiters onto the new
//! capacity. The fast path (nobody waiting, a slot free) takes no lock; the mutex guards only
//! the wait list.
//!
//! Ordering argument for "no lost wake-up": a releaser decrements the endpoint's count *then*
//! reads `waiting`; an enqueuer raises `waiting` under the lock *then* never sleeps without a
//! later dispatch: with sequentially consistent operations either the enqueuer's reservation
//! sees the freed slot or the releaser sees `waiting > 0` and dispatches under the lock.
//!
//! A slot handed to a waiter is held for it in the queue until its next poll; a waiter that
//! vanishes after the hand-off passes it on to the next in line. A waiter that vanishes
//! *before* (client gone, h2 stream reset, deadline) leaves the line at once through the
//! [`Waiting`] guard: otherwise ten thousand aborted requests would keep their places until a
//! slot was handed past each, and every new request to a cold or saturated revision would get
//! 503 meanwhile. The line is a `BTreeMap` keyed by arrival ticket, so leaving from the middle
//! costs O(log n).
//!
//! Two bounds: per backend (the caller's `max_waiting`) and across all backends
//! ([`HeldTotal`]), so that many revisions each under their own bound cannot together hold
//! an unbounded number of requests (and their buffers) in memory.

pub use crate::balance::now_micros;
use crate::balance::{self, reserve, Endpoint};
use crate::metrics::BackendMetrics;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// Where a waiting request goes next.
pub enum Admission {
    /// A reserved slot.
    Slot(Slot),
    /// The backend left the config: route the request again.
    Reroute,
}

/// One request's place on an endpoint: counted in the endpoint's and the backend's in-flight
/// numbers until dropped, when it goes to the next waiter, if any.
pub struct Slot {
    endpoint: Option<Arc<Endpoint>>,
    queue: Arc<Queue>,
}

impl Slot {
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        self.endpoint
            .as_ref()
            .expect("a live slot always has its endpoint")
    }

    /// Releases without dispatching (the caller holds the queue lock).
    fn release_locked(mut self) {
        if let Some(endpoint) = self.endpoint.take() {
            balance::release(&endpoint);
            self.queue.metrics.get().in_flight.dec();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(endpoint) = self.endpoint.take() {
            self.queue.release(&endpoint);
        }
    }
}

pub struct Queue {
    inner: Mutex<QueueInner>,
    /// The length of the wait list (published under the lock; read without it).
    waiting: AtomicUsize,
    next_ticket: AtomicU64,
    /// When the endpoints last went from none to some ([`now_micros`]; 0: never), so a
    /// request held through a cold start can tell its `Server-Timing` how long that took.
    ready_since: AtomicU64,
    metrics: Arc<BackendMetrics>,
    total: Arc<HeldTotal>,
}

struct QueueInner {
    /// Waiters by arrival ticket: the first entry is the longest waiting.
    waiters: BTreeMap<u64, Option<Waker>>,
    /// Admissions handed out and not yet taken: each waiter takes its own at its next poll.
    /// (Kept here rather than sent over a channel per waiter: one allocation less for every
    /// held request.)
    admitted: HashMap<u64, Admission>,
    endpoints: Box<[Arc<Endpoint>]>,
    concurrency: u32,
}

/// Requests held across every backend's queue, and the most allowed (`--max-held-requests-total`).
#[derive(Debug)]
pub struct HeldTotal {
    count: AtomicUsize,
    max: usize,
}

impl HeldTotal {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(HeldTotal {
            count: AtomicUsize::new(0),
            max,
        })
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Takes one place if one is left.
    fn try_hold(&self) -> bool {
        self.count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.count.fetch_sub(n, Ordering::SeqCst);
    }
}

/// The wait list is at its bound (this backend's or the total).
#[derive(Debug, PartialEq, Eq)]
pub struct Overflow;

/// A place in line: resolves to an [`Admission`]; dropped before that (client gone, stream
/// reset, deadline), it leaves the line at once.
pub struct Waiting {
    queue: Arc<Queue>,
    ticket: u64,
    /// Resolved: the admission was taken.
    done: bool,
}

impl Waiting {
    pub fn ticket(&self) -> u64 {
        self.ticket
    }
}

impl Future for Waiting {
    type Output = Admission;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Admission> {
        let mut inner = self.queue.lock();
        if let Some(admission) = inner.admitted.remove(&self.ticket) {
            drop(inner);
            self.done = true;
            return Poll::Ready(admission);
        }
        // Still in line: a waiter leaves it only through `admitted` or its own drop.
        if let Some(waker) = inner.waiters.get_mut(&self.ticket) {
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if !self.done {
            self.queue.cancel(self.ticket);
        }
    }
}

impl Queue {
    pub fn new(metrics: Arc<BackendMetrics>, total: Arc<HeldTotal>) -> Self {
        Queue {
            inner: Mutex::new(QueueInner {
                waiters: BTreeMap::new(),
                admitted: HashMap::new(),
                endpoints: Box::default(),
                concurrency: 0,
            }),
            waiting: AtomicUsize::new(0),
            next_ticket: AtomicU64::new(0),
            ready_since: AtomicU64::new(0),
            metrics,
            total,
        }
    }

    pub fn metrics(&self) -> &Arc<BackendMetrics> {
        &self.metrics
    }

    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// How long ago the endpoints last went from none to some; `None` if they never did.
    /// Read only by requests that were held (it reads the clock).
    pub fn ready_for(&self) -> Option<std::time::Duration> {
        match self.ready_since.load(Ordering::SeqCst) {
            0 => None,
            at => Some(std::time::Duration::from_micros(
                now_micros().saturating_sub(at),
            )),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn slot(self: &Arc<Self>, endpoint: Arc<Endpoint>) -> Slot {
        self.metrics.get().in_flight.inc();
        Slot {
            endpoint: Some(endpoint),
            queue: self.clone(),
        }
    }

    /// Fast path: a slot now, if nobody is queued ahead. No lock.
    pub fn try_admit(
        self: &Arc<Self>,
        endpoints: &[Arc<Endpoint>],
        concurrency: u32,
        exclude: &[u64],
    ) -> Option<Slot> {
        if self.waiting.load(Ordering::SeqCst) != 0 {
            return None;
        }
        reserve(endpoints, concurrency, exclude).map(|e| self.slot(e))
    }

    /// A slot now regardless of waiters (a retry after a failed connect keeps its turn).
    pub fn take(
        self: &Arc<Self>,
        endpoints: &[Arc<Endpoint>],
        concurrency: u32,
        exclude: &[u64],
    ) -> Option<Slot> {
        reserve(endpoints, concurrency, exclude).map(|e| self.slot(e))
    }

    /// Slow path: a place in line. The waiter is listed (raising `waiting`) *before* any
    /// reservation is tried, so a concurrent release cannot slip by unseen; if a slot is free
    /// the receiver is already holding it.
    pub fn enqueue(self: &Arc<Self>, max_waiting: usize) -> Result<Waiting, Overflow> {
        let mut inner = self.lock();
        if inner.waiters.len() >= max_waiting || !self.total.try_hold() {
            return Err(Overflow);
        }
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        inner.waiters.insert(ticket, None);
        // The total already counts this one (`try_hold`): publish the length without it.
        let n = inner.waiters.len();
        self.waiting.store(n, Ordering::SeqCst);
        self.metrics.set_held(n);
        self.dispatch(&mut inner);
        Ok(Waiting {
            queue: self.clone(),
            ticket,
            done: false,
        })
    }

    /// A waiter that gave up (deadline, client gone) leaves the line; a slot it was handed
    /// but never took goes to the next one.
    fn cancel(self: &Arc<Self>, ticket: u64) {
        let mut inner = self.lock();
        if inner.waiters.remove(&ticket).is_some() {
            self.set_waiting(&inner);
        } else if let Some(Admission::Slot(slot)) = inner.admitted.remove(&ticket) {
            slot.release_locked();
            self.dispatch(&mut inner);
        }
    }

    /// Frees a slot on `endpoint`, then lets the first waiters take free slots.
    fn release(self: &Arc<Self>, endpoint: &Endpoint) {
        balance::release(endpoint);
        self.metrics.get().in_flight.dec();
        if self.waiting.load(Ordering::SeqCst) != 0 {
            let mut inner = self.lock();
            self.dispatch(&mut inner);
        }
    }

    /// New endpoints or limits from a router swap; waiters move onto any new capacity.
    pub fn update(self: &Arc<Self>, endpoints: &[Arc<Endpoint>], concurrency: u32) {
        let mut inner = self.lock();
        if inner.endpoints.is_empty() && !endpoints.is_empty() {
            // Before the dispatch below: the waiters it admits read it.
            self.ready_since.store(now_micros(), Ordering::SeqCst);
        }
        inner.endpoints = endpoints.into();
        inner.concurrency = concurrency;
        self.dispatch(&mut inner);
    }

    /// The backend is gone: every waiter routes again.
    pub fn reroute_all(&self) {
        let mut inner = self.lock();
        for (ticket, waker) in std::mem::take(&mut inner.waiters) {
            inner.admitted.insert(ticket, Admission::Reroute);
            if let Some(waker) = waker {
                waker.wake();
            }
        }
        inner.endpoints = Box::default();
        self.set_waiting(&inner);
    }

    fn dispatch(self: &Arc<Self>, inner: &mut QueueInner) {
        // (A waiter that gave up has left the line already: see `cancel`.)
        while let Some(front) = inner.waiters.first_entry() {
            let Some(endpoint) = reserve(&inner.endpoints, inner.concurrency, &[]) else {
                break;
            };
            let (ticket, waker) = front.remove_entry();
            inner
                .admitted
                .insert(ticket, Admission::Slot(self.slot(endpoint)));
            if let Some(waker) = waker {
                waker.wake();
            }
        }
        self.set_waiting(inner);
    }

    /// Publishes the wait list's length (under the lock) and gives back to the total the
    /// places of those who left since the last publication.
    fn set_waiting(&self, inner: &QueueInner) {
        let n = inner.waiters.len();
        let before = self.waiting.swap(n, Ordering::SeqCst);
        if before > n {
            self.total.give_back(before - n);
        }
        self.metrics.set_held(n);
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        // Every waiter holds the queue, so none is left; this is only belt and braces.
        self.total.give_back(*self.waiting.get_mut());
    }
}

/// Where [`RevisionStats`] reads the time: microseconds on a monotonic clock.
pub trait Clock {
    fn now_micros(&self) -> u64;
}

/// The process's monotonic clock ([`now_micros`]). Zero-sized, so production statistics carry
/// no clock state and, monomorphised, each read is the same direct call as without a clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct MonotonicClock;

// Production statistics carry no clock state.
const _: () = assert!(std::mem::size_of::<MonotonicClock>() == 0);

impl Clock for MonotonicClock {
    #[inline]
    fn now_micros(&self) -> u64 {
        now_micros()
    }
}

/// Per-Revision request statistics for the autoscaler: concurrency (buffered requests
/// included) integrated over time, and arrivals. Lock-free; read and reset once a second.
/// The clock is a type parameter so tests can drive time (see [`RevisionStats::with_clock`]).
pub struct RevisionStats<C: Clock = MonotonicClock> {
    concurrency: AtomicI64,
    /// Σ concurrency × µs since the last read.
    area: AtomicU64,
    last_change: AtomicU64,
    requests: AtomicU64,
    last_take: AtomicU64,
    /// A poke for this revision is waiting to be sent (at most one at a time).
    pub poke_pending: AtomicBool,
    /// Pokes sent since the last read: each counted one request at concurrency 1 already,
    /// so the next sample subtracts them (as Knative's activator does).
    pub poked: AtomicU64,
    clock: C,
}

impl Default for RevisionStats {
    fn default() -> Self {
        RevisionStats::with_clock(MonotonicClock)
    }
}

/// One second's worth of statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    /// Time-weighted average concurrency over the interval.
    pub concurrency: f64,
    /// Arrivals in the interval.
    pub requests: f64,
    /// Concurrency at the moment of the read.
    pub current: i64,
}

impl<C: Clock> RevisionStats<C> {
    /// Statistics read on `clock`; the first interval starts at its origin (0), as with
    /// [`MonotonicClock`].
    pub fn with_clock(clock: C) -> Self {
        RevisionStats {
            concurrency: AtomicI64::new(0),
            area: AtomicU64::new(0),
            last_change: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            last_take: AtomicU64::new(0),
            poke_pending: AtomicBool::new(false),
            poked: AtomicU64::new(0),
            clock,
        }
    }

    fn change(&self, delta: i64) {
        let now = self.clock.now_micros();
        let before = self.concurrency.fetch_add(delta, Ordering::SeqCst);
        let last = self.last_change.swap(now, Ordering::SeqCst);
        let elapsed = now.saturating_sub(last);
        let weight = u64::try_from(before.max(0)).unwrap_or(0);
        self.area
            .fetch_add(weight.saturating_mul(elapsed), Ordering::Relaxed);
    }

    /// Counts an arrival; the returned guard keeps it in the concurrency until dropped.
    pub fn arrive(self: &Arc<Self>) -> Counted<C> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.change(1);
        Counted(self.clone())
    }

    pub fn current(&self) -> i64 {
        self.concurrency.load(Ordering::SeqCst)
    }

    /// Reads and resets the interval since the previous read.
    pub fn take(&self) -> Sample {
        let now = self.clock.now_micros();
        let current = self.concurrency.load(Ordering::SeqCst);
        let last = self.last_change.swap(now, Ordering::SeqCst);
        let interval = now.saturating_sub(self.last_take.swap(now, Ordering::SeqCst));
        let tail = u64::try_from(current.max(0))
            .unwrap_or(0)
            .saturating_mul(now.saturating_sub(last));
        let area = self.area.swap(0, Ordering::Relaxed).saturating_add(tail);
        let requests = self.requests.swap(0, Ordering::Relaxed);
        let poked = self.poked.swap(0, Ordering::Relaxed) as f64;
        let concurrency = if interval == 0 {
            current.max(0) as f64
        } else {
            area as f64 / interval as f64
        };
        Sample {
            concurrency: (concurrency - poked).max(0.0),
            requests: (requests as f64 - poked).max(0.0),
            current,
        }
    }
}

/// A request counted in its revision's concurrency, from arrival (queue time included) to the
/// end of its response.
pub struct Counted<C: Clock = MonotonicClock>(Arc<RevisionStats<C>>);

impl<C: Clock> Drop for Counted<C> {
    fn drop(&mut self) {
        self.0.change(-1);
    }
}

#[cfg(test)]
mod tests;
