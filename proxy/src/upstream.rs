//! Upstreams: backends, their endpoints, load balancing and the per-thread connection pool.
//!
//! Pool design (measured in `shared/reference/pingora-performance.md`): every proxy worker is a
//! single-threaded runtime (`work_stealing: false`), so each thread keeps its own idle
//! HTTP/1.1 senders per endpoint in a `thread_local!` stack. Checkout pops (O(1)), and the
//! response body returns the sender when it reaches its end (see `body.rs`). No lock, no task per
//! request. HTTP/2 (h2c) upstreams keep one multiplexed sender per endpoint per thread.
//! A sender returned on another thread (never the case under pingora) just joins that
//! thread's pool, which is still correct.

use crate::metrics::BackendMetrics;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use sluice_xds::Protocol;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Idle upstream connections older than this are closed instead of reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most idle HTTP/1.1 connections kept per endpoint per thread.
const MAX_IDLE_PER_ENDPOINT: usize = 256;

static NEXT_POOL_KEY: AtomicU64 = AtomicU64::new(1);

/// A backend: a Service port, resolved to endpoints.
pub struct Backend {
    pub id: Arc<str>,
    pub protocol: Protocol,
    endpoints: Box<[Arc<Endpoint>]>,
    /// Requests waiting for a ready endpoint. Shared across router versions.
    pub held: Arc<AtomicUsize>,
    pub metrics: Arc<BackendMetrics>,
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

pub struct Endpoint {
    pub address: Address,
    /// Requests currently using this endpoint (from pick to the end of the response body).
    pub in_flight: AtomicUsize,
    pool_key: u64,
}

impl Backend {
    /// Builds a backend, reusing endpoint state and counters from `old` where addresses match.
    pub fn new(
        id: &str,
        spec: &sluice_xds::Backend,
        old: Option<&Backend>,
        new_metrics: impl FnOnce() -> BackendMetrics,
    ) -> Backend {
        let addresses: Vec<Address> = match &spec.target {
            sluice_xds::Target::Endpoints(addrs) => {
                addrs.iter().copied().map(Address::Socket).collect()
            }
            sluice_xds::Target::Dns { host, port } => vec![Address::Dns {
                host: host.as_str().into(),
                port: *port,
            }],
        };
        let same_protocol = old.filter(|o| o.protocol == spec.protocol);
        let endpoints = addresses
            .into_iter()
            .map(|address| {
                same_protocol
                    .and_then(|o| o.endpoints.iter().find(|e| e.address == address).cloned())
                    .unwrap_or_else(|| {
                        Arc::new(Endpoint {
                            address,
                            in_flight: AtomicUsize::new(0),
                            pool_key: NEXT_POOL_KEY.fetch_add(1, Ordering::Relaxed),
                        })
                    })
            })
            .collect();
        Backend {
            id: id.into(),
            protocol: spec.protocol,
            endpoints,
            held: old.map(|o| o.held.clone()).unwrap_or_default(),
            metrics: old
                .map(|o| o.metrics.clone())
                .unwrap_or_else(|| Arc::new(new_metrics())),
        }
    }

    pub fn has_endpoints(&self) -> bool {
        !self.endpoints.is_empty()
    }

    /// Power of two choices on in-flight counts, skipping endpoints in `tried`.
    pub fn pick(&self, tried: &[u64]) -> Option<&Arc<Endpoint>> {
        let candidates = &self.endpoints;
        let usable = |e: &&Arc<Endpoint>| !tried.contains(&e.pool_key);
        match candidates.len() {
            0 => None,
            1 => candidates.iter().find(usable),
            n => {
                let a = &candidates[fastrand::usize(..n)];
                let mut b = &candidates[fastrand::usize(..n - 1)];
                if std::ptr::eq(a.as_ref(), b.as_ref()) {
                    b = &candidates[n - 1];
                }
                match (usable(&a), usable(&b)) {
                    (true, true) => Some(if b.load() < a.load() { b } else { a }),
                    (true, false) => Some(a),
                    (false, true) => Some(b),
                    (false, false) => candidates.iter().filter(usable).min_by_key(|e| e.load()),
                }
            }
        }
    }

    pub fn endpoint_count(&self) -> usize {
        self.endpoints.len()
    }
}

impl Endpoint {
    fn load(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn key(&self) -> u64 {
        self.pool_key
    }
}

/// Counts one request against an endpoint and its backend until dropped.
pub struct InFlight {
    endpoint: Arc<Endpoint>,
    metrics: Arc<BackendMetrics>,
}

impl InFlight {
    pub fn new(endpoint: Arc<Endpoint>, metrics: Arc<BackendMetrics>) -> Self {
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        metrics.in_flight.inc();
        InFlight { endpoint, metrics }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.metrics.in_flight.dec();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {address} timed out after {timeout:?}")]
    Timeout { address: String, timeout: Duration },
    #[error("connect to {address}: {source}")]
    Io {
        address: String,
        source: std::io::Error,
    },
    #[error("resolve {host}: no addresses")]
    NoAddress { host: String },
    #[error("handshake with {address}: {source}")]
    Handshake {
        address: String,
        source: hyper::Error,
    },
}

/// A sender ready for one request.
pub enum Sender {
    Http1(http1::SendRequest<Incoming>),
    H2(http2::SendRequest<Incoming>),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Socket(a) => a.fmt(f),
            Address::Dns { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

#[derive(Default)]
struct PoolEntry {
    idle: Vec<(http1::SendRequest<Incoming>, Instant)>,
    h2: Option<http2::SendRequest<Incoming>>,
}

thread_local! {
    static POOL: RefCell<HashMap<u64, PoolEntry>> = RefCell::new(HashMap::new());
    static CHECKINS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Takes a pooled connection to `endpoint`, if a usable one is idle on this thread.
pub fn checkout(endpoint: &Endpoint, protocol: Protocol, now: Instant) -> Option<Sender> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let entry = pool.get_mut(&endpoint.pool_key)?;
        match protocol {
            Protocol::H2c => {
                let sender = entry.h2.as_ref()?;
                if sender.is_closed() {
                    entry.h2 = None;
                    return None;
                }
                Some(Sender::H2(sender.clone()))
            }
            Protocol::Http1 => {
                // A sender that is neither ready nor closed is still busy with an exchange
                // (say, an upload the upstream answered early); it is closed, not waited on.
                while let Some((sender, since)) = entry.idle.pop() {
                    if sender.is_ready() && now.duration_since(since) < IDLE_TIMEOUT {
                        return Some(Sender::Http1(sender));
                    }
                }
                None
            }
        }
    })
}

/// Returns an HTTP/1.1 sender whose exchange completed to this thread's pool.
pub fn checkin(pool_key: u64, sender: http1::SendRequest<Incoming>) {
    if sender.is_closed() {
        return;
    }
    let now = Instant::now();
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = &mut pool.entry(pool_key).or_default().idle;
        if idle.len() < MAX_IDLE_PER_ENDPOINT {
            idle.push((sender, now));
        }
        let n = CHECKINS.with(|c| {
            let n = c.get().wrapping_add(1);
            c.set(n);
            n
        });
        // Endpoints come and go; sweep dead entries now and then so the map stays small.
        if n.is_multiple_of(4096) {
            pool.retain(|_, e| {
                e.idle.retain(|(s, since)| {
                    !s.is_closed() && now.duration_since(*since) < IDLE_TIMEOUT
                });
                e.h2 = e.h2.take().filter(|s| !s.is_closed());
                !e.idle.is_empty() || e.h2.is_some()
            });
        }
    });
}

fn remember_h2(pool_key: u64, sender: &http2::SendRequest<Incoming>) {
    POOL.with(|pool| {
        pool.borrow_mut().entry(pool_key).or_default().h2 = Some(sender.clone());
    });
}

async fn dial(address: &Address, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let connect = async {
        match address {
            Address::Socket(addr) => TcpStream::connect(addr).await,
            Address::Dns { host, port } => TcpStream::connect((host.as_ref(), *port)).await,
        }
    };
    let stream = tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| ConnectError::Timeout {
            address: address.to_string(),
            timeout,
        })?
        .map_err(|source| ConnectError::Io {
            address: address.to_string(),
            source,
        })?;
    // Latency over batching: requests are small and interactive.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Opens a new pooled connection.
pub async fn connect(
    endpoint: &Endpoint,
    protocol: Protocol,
    timeout: Duration,
) -> Result<Sender, ConnectError> {
    let stream = dial(&endpoint.address, timeout).await?;
    let io = TokioIo::new(stream);
    let handshake_error = |source| ConnectError::Handshake {
        address: endpoint.address.to_string(),
        source,
    };
    match protocol {
        Protocol::Http1 => {
            let (sender, conn) = http1::handshake(io).await.map_err(handshake_error)?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(Sender::Http1(sender))
        }
        Protocol::H2c => {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(io)
                .await
                .map_err(handshake_error)?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            remember_h2(endpoint.pool_key, &sender);
            Ok(Sender::H2(sender))
        }
    }
}

/// Opens a dedicated HTTP/1.1 connection that may be upgraded (websocket). Never pooled.
pub async fn connect_upgradable(
    endpoint: &Endpoint,
    timeout: Duration,
) -> Result<http1::SendRequest<Incoming>, ConnectError> {
    let stream = dial(&endpoint.address, timeout).await?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|source| ConnectError::Handshake {
            address: endpoint.address.to_string(),
            source,
        })?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests;
