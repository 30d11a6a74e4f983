//! Endpoints and how a request picks one: the in-flight counts, the compare-and-swap
//! reservation under a concurrency limit, and power of two choices. The activator's queue and
//! the connection pool both build on this; neither knows the other.
//!
//! Passive health is here too: Envoy's outlier detection on consecutive connect failures. An
//! endpoint that failed that many connects in a row is *ejected*: no new request picks it for
//! the ejection time (longer each time it is ejected again, as in Envoy), and at most a share
//! of a backend's endpoints are out at once (at least one). If every candidate is ejected, they
//! are all used again (Envoy's panic mode): a guess beats holding every request. The state is
//! a few atomics on the endpoint, read without a clock unless the endpoint is ejected.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

static NEXT_POOL_KEY: AtomicU64 = AtomicU64::new(1);
/// Endpoints dropped so far: the connection pools sweep out their entries when it moves.
static RETIRED: AtomicU64 = AtomicU64::new(0);

/// How many endpoints have been dropped (left the config and every in-flight request).
pub fn retired_endpoints() -> u64 {
    RETIRED.load(Ordering::Relaxed)
}

/// Where an endpoint lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    Socket(SocketAddr),
    /// ExternalName: resolved when a connection is made.
    Dns {
        host: Box<str>,
        port: u16,
    },
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Socket(a) => a.fmt(f),
            Address::Dns { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// One upstream address and its live state, shared by every router version that lists it.
#[derive(Debug)]
pub struct Endpoint {
    pub address: Address,
    /// Requests using this endpoint, from reservation to the end of the response body.
    pub in_flight: AtomicUsize,
    /// Identifies this endpoint's idle connections in each thread's pool.
    pool_key: u64,
    /// Connects failed in a row since the last success or ejection.
    connect_failures: AtomicU32,
    /// Ejected until this time ([`now_micros`]); 0 when not ejected.
    ejected_until: AtomicU64,
    /// Ejections since the last successful connect: the next lasts that many times the base.
    ejections: AtomicU32,
}

/// Envoy's `outlier_detection` on consecutive connect failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outlier {
    /// Consecutive connect failures that eject an endpoint; 0 turns ejection off.
    pub consecutive_connect_failures: u32,
    /// The first ejection's length; each later one (without a success between) adds one more.
    pub ejection_time: Duration,
    /// Most of a backend's endpoints ejected at once, in percent; at least one may always be.
    pub max_ejection_percent: u32,
}

impl Default for Outlier {
    /// Envoy's defaults: `consecutive_5xx` 5, `base_ejection_time` 30s,
    /// `max_ejection_percent` 10.
    fn default() -> Self {
        Outlier {
            consecutive_connect_failures: 5,
            ejection_time: Duration::from_secs(30),
            max_ejection_percent: 10,
        }
    }
}

/// Envoy's `max_ejection_time` default: ejections grow no longer than this (or the base).
const MAX_EJECTION: Duration = Duration::from_secs(300);

/// Microseconds since the first call: a cheap monotonic clock for counters and ejections.
pub fn now_micros() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    // Never 0, which means "not ejected".
    u64::try_from(origin.elapsed().as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl Endpoint {
    pub fn new(address: Address) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            address,
            in_flight: AtomicUsize::new(0),
            pool_key: NEXT_POOL_KEY.fetch_add(1, Ordering::Relaxed),
            connect_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
        })
    }

    /// Whether passive health has taken this endpoint out. No clock read unless it was ejected.
    pub fn is_ejected(&self) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        if until == 0 {
            return false;
        }
        if until > now_micros() {
            return true;
        }
        // The ejection is over: back to the clock-free fast path.
        let _ = self
            .ejected_until
            .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed);
        false
    }

    /// A connect worked: the failure streak and the ejection backoff start over. Written only
    /// when there is something to reset, so the common case shares no cache line writes.
    pub fn connect_succeeded(&self) {
        if self.connect_failures.load(Ordering::Relaxed) != 0 {
            self.connect_failures.store(0, Ordering::Relaxed);
        }
        if self.ejections.load(Ordering::Relaxed) != 0 {
            self.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// A connect to this endpoint (one of `siblings`, its backend's endpoints) failed. Returns
    /// true if that ejected it. Two endpoints ejected at the same instant may pass the percent
    /// check together: the bound is exact to within one concurrent ejection.
    pub fn connect_failed(&self, siblings: &[Arc<Endpoint>], policy: &Outlier) -> bool {
        let streak = self.connect_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if policy.consecutive_connect_failures == 0
            || streak < policy.consecutive_connect_failures
            || self.is_ejected()
        {
            return false;
        }
        let allowed = (siblings.len() * policy.max_ejection_percent as usize / 100).max(1);
        let ejected = siblings.iter().filter(|e| e.is_ejected()).count();
        if ejected >= allowed {
            return false;
        }
        let times = self
            .ejections
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let length = policy
            .ejection_time
            .saturating_mul(times)
            .min(MAX_EJECTION.max(policy.ejection_time));
        let length = u64::try_from(length.as_micros()).unwrap_or(u64::MAX);
        self.ejected_until
            .store(now_micros().saturating_add(length), Ordering::Relaxed);
        self.connect_failures.store(0, Ordering::Relaxed);
        true
    }

    pub fn load(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn key(&self) -> u64 {
        self.pool_key
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        RETIRED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Reserves a place among `endpoints`, skipping `exclude`d pool keys: power of two choices on
/// in-flight counts when `concurrency` is 0 (unlimited), else the first endpoint (from a random
/// start) below `concurrency`, reserved by compare-and-swap so no endpoint ever exceeds it. The
/// returned endpoint's in-flight count includes the reservation.
///
/// Ejected endpoints are skipped unless every candidate is ejected (panic mode).
pub fn reserve(
    endpoints: &[Arc<Endpoint>],
    concurrency: u32,
    exclude: &[u64],
) -> Option<Arc<Endpoint>> {
    let allowed = |e: &Arc<Endpoint>| exclude.is_empty() || !exclude.contains(&e.key());
    reserve_among(endpoints, concurrency, |e| allowed(e) && !e.is_ejected()).or_else(|| {
        // Full, or nothing live: only the second may fall back to the ejected.
        let live = endpoints.iter().any(|e| allowed(e) && !e.is_ejected());
        if live {
            None
        } else {
            reserve_among(endpoints, concurrency, allowed)
        }
    })
}

fn reserve_among(
    endpoints: &[Arc<Endpoint>],
    concurrency: u32,
    usable: impl Fn(&Arc<Endpoint>) -> bool,
) -> Option<Arc<Endpoint>> {
    let n = endpoints.len();
    if n == 0 {
        return None;
    }
    if concurrency == 0 {
        let endpoint = if n == 1 {
            Some(&endpoints[0]).filter(|e| usable(e))
        } else {
            let a = &endpoints[fastrand::usize(..n)];
            let b = &endpoints[fastrand::usize(..n)];
            match (usable(a), usable(b)) {
                (true, true) => Some(if b.load() < a.load() { b } else { a }),
                (true, false) => Some(a),
                (false, true) => Some(b),
                (false, false) => endpoints
                    .iter()
                    .filter(|e| usable(e))
                    .min_by_key(|e| e.load()),
            }
        }?;
        endpoint.in_flight.fetch_add(1, Ordering::SeqCst);
        return Some(endpoint.clone());
    }
    let limit = concurrency as usize;
    let start = fastrand::usize(..n);
    for i in 0..n {
        let endpoint = &endpoints[(start + i) % n];
        if !usable(endpoint) {
            continue;
        }
        let mut current = endpoint.in_flight.load(Ordering::SeqCst);
        while current < limit {
            match endpoint.in_flight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return Some(endpoint.clone()),
                Err(now) => current = now,
            }
        }
    }
    None
}

/// Gives back a reservation made by [`reserve`].
pub fn release(endpoint: &Endpoint) {
    endpoint.in_flight.fetch_sub(1, Ordering::SeqCst);
}

#[cfg(test)]
mod tests;
