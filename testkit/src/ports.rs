//! Port helpers for tests that need an address with a known state.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU16, Ordering};

/// A loopback address on which nothing listens: connecting to it is refused.
///
/// The port was bound and released, so another process could in principle take it again; on a test
/// machine that window is small enough to ignore.
pub fn closed_port() -> SocketAddr {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding 127.0.0.1:0 always succeeds");
    listener
        .local_addr()
        .expect("a bound listener has a local address")
}

/// Ports handed out per test process.
const BLOCK: u16 = 64;
/// The lowest port handed out.
const FIRST: u16 = 10_000;

/// A loopback port that was free a moment ago, for processes that need a port number up front.
///
/// Taken below the kernel's ephemeral range, from a block chosen by this process's id, and
/// never twice in a row by one process: ports other tests bind with `:0` (echo servers, clients)
/// come from the ephemeral range, so they cannot take a port between this call and the bind
/// that follows it, and concurrently running tests (consecutive pids) get different blocks.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let low = ephemeral_low().max(FIRST + BLOCK);
    let blocks = u32::from((low - FIRST) / BLOCK);
    let block = u16::try_from(std::process::id() % blocks).unwrap_or(0);
    let base = FIRST + block * BLOCK;
    for _ in 0..BLOCK {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % BLOCK;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    closed_port().port()
}

/// The first port of the kernel's ephemeral range (Linux default 32768).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}
