//! Endpoints and how a request picks one: the in-flight counts, the compare-and-swap
//! reservation under a concurrency limit, and power of two choices. The activator's queue and
//! the connection pool both build on this; neither knows the other.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

static NEXT_POOL_KEY: AtomicU64 = AtomicU64::new(1);

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
}

impl Endpoint {
    pub fn new(address: Address) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            address,
            in_flight: AtomicUsize::new(0),
            pool_key: NEXT_POOL_KEY.fetch_add(1, Ordering::Relaxed),
        })
    }

    pub fn load(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn key(&self) -> u64 {
        self.pool_key
    }
}

/// Reserves a place among `endpoints`, skipping `exclude`d pool keys: power of two choices on
/// in-flight counts when `concurrency` is 0 (unlimited), else the first endpoint (from a random
/// start) below `concurrency`, reserved by compare-and-swap so no endpoint ever exceeds it. The
/// returned endpoint's in-flight count includes the reservation.
pub fn reserve(
    endpoints: &[Arc<Endpoint>],
    concurrency: u32,
    exclude: &[u64],
) -> Option<Arc<Endpoint>> {
    let usable = |e: &Arc<Endpoint>| exclude.is_empty() || !exclude.contains(&e.key());
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
