//! Port helpers for tests that need an address with a known state.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

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

/// A loopback port that was free a moment ago, for processes that need a port number up front.
pub fn free_port() -> u16 {
    closed_port().port()
}
