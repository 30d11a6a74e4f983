//! What our HTTP/2 client (`h2c/connection.rs`) and server (`downstream/h2/state.rs`) both
//! keep: the stream map's hasher, waker slots, and the rule for HTTP/1 connection headers.

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::task::{Context, Waker};

/// Streams by id.
pub type StreamMap<V> = HashMap<u32, V, BuildHasherDefault<StreamIdHasher>>;

/// Stream ids are small distinct integers: one multiply spreads them over the table (a
/// BTreeMap's node moves cost about 2k instructions per stream, SipHash a few hundred).
#[derive(Default)]
pub struct StreamIdHasher(u64);

impl Hasher for StreamIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    /// Not used (the keys are `u32`), but correct for any input.
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, id: u32) {
        let h = u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // The table indexes by the low bits and filters by the high ones: both must vary.
        self.0 = h ^ (h >> 32);
    }
}

pub fn wake(waker: &mut Option<Waker>) {
    if let Some(waker) = waker.take() {
        waker.wake();
    }
}

pub fn set_waker(slot: &mut Option<Waker>, cx: &mut Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// Headers that mean something only to one HTTP/1.1 connection: never sent in HTTP/2, and
/// malformed when received (RFC 9113 §8.2.2).
pub fn is_connection_specific(name: &HeaderName, value: &HeaderValue) -> bool {
    // By length first: most names are none of these, and most lengths rule all of them out.
    match name.as_str().len() {
        2 => *name == header::TE && value.as_bytes() != b"trailers",
        7 => *name == header::UPGRADE,
        10 => *name == header::CONNECTION || *name == crate::forward::KEEP_ALIVE,
        16 => *name == crate::forward::PROXY_CONNECTION,
        17 => *name == header::TRANSFER_ENCODING,
        _ => false,
    }
}

/// A field of a received head or trailers that is not a pseudo-header, checked as RFC 9113
/// §8.2 says: a lowercase, valid name, a valid value, and not an HTTP/1 connection header.
pub fn regular_field(name: Bytes, value: Bytes) -> Result<(HeaderName, HeaderValue), &'static str> {
    if name.iter().any(u8::is_ascii_uppercase) {
        return Err("uppercase header name");
    }
    let (Ok(name), Ok(value)) = (
        HeaderName::from_bytes(&name),
        HeaderValue::from_maybe_shared(value),
    ) else {
        return Err("bad header field");
    };
    if is_connection_specific(&name, &value) {
        return Err("connection-specific header");
    }
    Ok((name, value))
}

/// What we let the peer send on a stream or a connection: the window it has left, and what has
/// been consumed since our last WINDOW_UPDATE. An update goes out once half the window's size
/// is consumed (h2's and hyper's rule): few updates, and the peer never waits for one.
pub struct RecvWindow {
    left: i64,
    unacked: i64,
    size: i64,
}

impl RecvWindow {
    pub fn new(size: i64) -> RecvWindow {
        RecvWindow {
            left: size,
            unacked: 0,
            size,
        }
    }

    /// Counts `len` bytes received against the window; `false` if they go past it (a
    /// flow-control error, and nothing is counted).
    pub fn receive(&mut self, len: i64) -> bool {
        if len > self.left {
            return false;
        }
        self.left -= len;
        true
    }

    /// Consumed and not yet given back.
    #[cfg(test)]
    pub fn unacked(&self) -> i64 {
        self.unacked
    }

    /// `len` received bytes were consumed (read, or dropped unread): the increment for a
    /// WINDOW_UPDATE, when one is due.
    pub fn consume(&mut self, len: i64) -> Option<u32> {
        self.unacked += len;
        if self.unacked < self.size / 2 {
            return None;
        }
        let increment = std::mem::take(&mut self.unacked);
        self.left += increment;
        // At most `size`, itself at most 2^31 - 1.
        Some(increment as u32)
    }
}
