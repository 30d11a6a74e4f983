//! Upstream connections: the per-thread pool and connecting.
//!
//! Pool design (measured in `shared/reference/pingora-performance.md`): every proxy worker is a
//! single-threaded runtime (`work_stealing: false`), so each thread keeps its own idle
//! HTTP/1.1 connections ([`h1::Conn`]: the socket and its read buffer) per endpoint in a
//! `thread_local!` stack. Checkout pops (O(1)), and the response body returns the connection
//! when it reaches its end (see `body.rs`). No lock, no task per request or per connection:
//! nothing watches an idle connection, so checkout checks it (`Conn::is_usable`, no syscall
//! unless the socket became readable). HTTP/2 (h2c) upstreams keep one multiplexed connection
//! ([`h2c::Sender`]) per endpoint per thread. A connection returned on another thread (never the case
//! under pingora) just joins that thread's pool, which is still correct.

use crate::balance::{self, Address, Endpoint};
use crate::h1::Conn;
use crate::h2c;
use http::HeaderValue;
use sluice_xds::Protocol;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Idle upstream connections older than this are closed instead of reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most idle HTTP/1.1 connections kept per endpoint per thread: Envoy's default cluster
/// circuit breaker (1024 connections). At 256, a thread serving 1,024 concurrent requests to
/// one endpoint closed three in four of its upstream connections after each response (71 %
/// reuse at c=1024 in `perf/run`).
const MAX_IDLE_PER_ENDPOINT: usize = 1024;

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
}

/// The `X-Forwarded-*` fields the request path adds to a request whose client sent none of
/// them (and that no header SET names): each upstream client writes them after the request's
/// own fields, so they never go into its header map. Three map insertions (hashing their
/// custom names, growing the entry list, dropping them) cost about 5% of a short request.
#[derive(Debug, Clone, Copy)]
pub struct Forwarding<'a> {
    pub client_ip: Option<&'a HeaderValue>,
    pub proto: Option<&'a HeaderValue>,
    pub host: Option<&'a HeaderValue>,
}

impl<'a> Forwarding<'a> {
    /// No fields to add (the request's map has them, or none are wanted).
    pub const NONE: Forwarding<'static> = Forwarding {
        client_ip: None,
        proto: None,
        host: None,
    };

    /// Each field's name and value, in this order: `X-Forwarded-For`, `-Proto`, `-Host`.
    pub fn fields(&self) -> impl Iterator<Item = (&'static [u8], &'a HeaderValue)> {
        [
            (&b"x-forwarded-for"[..], self.client_ip),
            (b"x-forwarded-proto", self.proto),
            (b"x-forwarded-host", self.host),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
    }
}

/// A connection ready for one request.
pub enum Sender {
    /// `reused`: it came from the pool (a close under the request may then be retried).
    Http1 {
        conn: Conn,
        reused: bool,
    },
    H2(h2c::Sender),
}

struct PoolEntry {
    /// Gone when the endpoint has left the config: its idle connections are closed then,
    /// not kept open to a removed instance until the idle timeout (under config churn that
    /// was thousands of open connections and tens of MiB).
    endpoint: Weak<Endpoint>,
    idle: Vec<(Conn, Instant)>,
    h2: Option<h2c::Sender>,
}

/// Hashes a pool key (an endpoint's serial number, assigned by the proxy, never by a client) with
/// one multiply: SipHash was about 1.5% of an HTTP/1.1 request's instructions (a checkout and a
/// checkin each hash once), and `index::Fnv` takes eight rounds for the key's bytes. An odd
/// multiplier keeps consecutive keys apart in the low bits (the bucket) and spreads them over
/// the top seven (hashbrown's tag byte).
#[derive(Default, Clone, Copy)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_u64(u64::from(*byte));
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = (self.0 ^ key).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type Pool = HashMap<u64, PoolEntry, BuildHasherDefault<KeyHasher>>;

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
    static CHECKINS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    /// [`balance::retired_endpoints`] at this thread's last sweep of departed endpoints.
    static SWEPT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// This thread's pool entry for `endpoint`.
fn entry<'a>(pool: &'a mut Pool, endpoint: &Arc<Endpoint>) -> &'a mut PoolEntry {
    pool.entry(endpoint.key()).or_insert_with(|| PoolEntry {
        endpoint: Arc::downgrade(endpoint),
        idle: Vec::new(),
        h2: None,
    })
}

/// Drops the entries of endpoints that have left, if any left since the last sweep.
fn sweep_departed(pool: &mut Pool) {
    let retired = balance::retired_endpoints();
    if SWEPT.with(|s| s.replace(retired)) != retired {
        pool.retain(|_, e| e.endpoint.strong_count() > 0);
    }
}

/// Takes a pooled connection to `endpoint`, if a usable one is idle on this thread.
pub fn checkout(endpoint: &Endpoint, protocol: Protocol) -> Option<Sender> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let entry = pool.get_mut(&endpoint.key())?;
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
                if entry.idle.is_empty() {
                    return None;
                }
                let now = Instant::now();
                // One the upstream closed (or wrote to) while idle is dropped.
                while let Some((mut conn, since)) = entry.idle.pop() {
                    if now.duration_since(since) < IDLE_TIMEOUT && conn.is_usable() {
                        return Some(Sender::Http1 { conn, reused: true });
                    }
                }
                None
            }
        }
    })
}

/// Returns an HTTP/1.1 connection whose exchange with `endpoint` completed cleanly to this
/// thread's pool.
pub fn checkin(endpoint: &Arc<Endpoint>, mut conn: Conn) {
    conn.shrink();
    let now = Instant::now();
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        sweep_departed(&mut pool);
        let idle = &mut entry(&mut pool, endpoint).idle;
        if idle.len() < MAX_IDLE_PER_ENDPOINT {
            idle.push((conn, now));
        }
        let n = CHECKINS.with(|c| {
            let n = c.get().wrapping_add(1);
            c.set(n);
            n
        });
        // Endpoints come and go; sweep dead entries now and then so the map stays small.
        if n.is_multiple_of(4096) {
            pool.retain(|_, e| {
                e.idle.retain_mut(|(c, since)| {
                    now.duration_since(*since) < IDLE_TIMEOUT && c.is_usable()
                });
                e.h2 = e.h2.take().filter(|s| !s.is_closed());
                !e.idle.is_empty() || e.h2.is_some()
            });
        }
    });
}

fn remember_h2(endpoint: &Arc<Endpoint>, sender: &h2c::Sender) {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        sweep_departed(&mut pool);
        entry(&mut pool, endpoint).h2 = Some(sender.clone());
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
    endpoint: &Arc<Endpoint>,
    protocol: Protocol,
    timeout: Duration,
) -> Result<Sender, ConnectError> {
    let stream = dial(&endpoint.address, timeout).await?;
    match protocol {
        // No handshake and no task: the request's own task drives the connection (`h1.rs`).
        Protocol::Http1 => Ok(Sender::Http1 {
            conn: Conn::new(stream),
            reused: false,
        }),
        Protocol::H2c => {
            let sender = h2c::Sender::handshake(stream);
            remember_h2(endpoint, &sender);
            Ok(Sender::H2(sender))
        }
    }
}

/// Opens a dedicated HTTP/1.1 connection that may be upgraded (websocket). Never pooled.
pub async fn connect_upgradable(
    endpoint: &Endpoint,
    timeout: Duration,
) -> Result<Conn, ConnectError> {
    Ok(Conn::new(dial(&endpoint.address, timeout).await?))
}

#[cfg(test)]
mod tests;
