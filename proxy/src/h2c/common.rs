//! What our HTTP/2 client (`h2c/connection.rs`) and server (`downstream/h2/state.rs`) both
//! keep: the stream map's hasher, waker slots, the rule for HTTP/1 connection headers, receive
//! windows, a stream's receiving half (the DATA its reader has yet to take), DATA queued within
//! the send windows, and send windows moved by SETTINGS and WINDOW_UPDATE.

use super::frame::{self, Broken};
use bytes::{Bytes, BytesMut};
use h2::Reason;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::collections::{HashMap, VecDeque};
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

#[inline]
pub fn wake(waker: &mut Option<Waker>) {
    if let Some(waker) = waker.take() {
        waker.wake();
    }
}

#[inline]
pub fn set_waker(slot: &mut Option<Waker>, cx: &mut Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// Headers that mean something only to one HTTP/1.1 connection: never sent in HTTP/2, and
/// malformed when received (RFC 9113 §8.2.2).
#[inline]
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

/// Appends a field of a received head or trailers that is not a pseudo-header to `headers`,
/// checked as RFC 9113 §8.2 says: a lowercase, valid name, a valid value, and not an HTTP/1
/// connection header. (Appended here rather than returned: moving the name and value out
/// through a `Result` cost about 40 instructions per field.)
#[inline]
pub fn append_regular_field(
    headers: &mut HeaderMap,
    name: Bytes,
    value: Bytes,
) -> Result<(), &'static str> {
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
    headers.append(name, value);
    Ok(())
}

/// What we let the peer send on a stream or a connection: the window it has left, and what has
/// been consumed since our last WINDOW_UPDATE. An update goes out once half the window's size
/// is consumed (h2's and hyper's rule): few updates, and the peer never waits for one.
pub struct RecvWindow {
    // i32: a window is at most 2^31 - 1 (RFC 9113 §6.9.1), and this is in every stream's
    // entry, held h2 streams included.
    left: i32,
    unacked: i32,
    size: i32,
}

impl RecvWindow {
    pub fn new(size: i64) -> RecvWindow {
        let size = size.clamp(0, frame::MAX_WINDOW) as i32;
        RecvWindow {
            left: size,
            unacked: 0,
            size,
        }
    }

    /// Counts `len` bytes received against the window; `false` if they go past it (a
    /// flow-control error, and nothing is counted).
    pub fn receive(&mut self, len: i64) -> bool {
        if len > i64::from(self.left) {
            return false;
        }
        // At most `left`: fits.
        self.left -= len as i32;
        true
    }

    /// Consumed and not yet given back.
    #[cfg(test)]
    pub fn unacked(&self) -> i64 {
        i64::from(self.unacked)
    }

    /// `len` received bytes were consumed (read, or dropped unread): the increment for a
    /// WINDOW_UPDATE, when one is due.
    pub fn consume(&mut self, len: i64) -> Option<u32> {
        // Received bytes only, so `left` plus what is consumed stays within `size`.
        let unacked = (i64::from(self.unacked) + len).min(i64::from(self.size));
        if unacked < i64::from(self.size / 2) {
            self.unacked = unacked as i32;
            return None;
        }
        self.unacked = 0;
        self.left = (i64::from(self.left) + unacked).min(i64::from(self.size)) as i32;
        // At most `size`, itself at most 2^31 - 1.
        Some(unacked as u32)
    }
}

/// DATA smaller than this that arrives behind unread data is copied out of the read buffer:
/// a slice would keep the whole buffer (16 KiB or more) alive for a few bytes, and a peer
/// sending small frames to a slow reader would pin far more memory than the stream window.
const COPY_BELOW: usize = 4 * 1024;

/// The receiving half of a stream, the same for the client (a response body) and the server
/// (a request body): the DATA its reader has yet to take, in order; whether END_STREAM came;
/// what Content-Length leaves to come; the stream's receive window; the reader's waker.
pub struct Inbound {
    pub data: VecDeque<Bytes>,
    /// END_STREAM received.
    pub end: bool,
    pub remaining: Option<u64>,
    pub window: RecvWindow,
    pub waker: Option<Waker>,
}

/// A DATA frame that is a stream error (RFC 9113 §5.1, §6.9, §8.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadData {
    /// On a stream whose head has not come (a response's DATA before its HEADERS).
    BeforeHead,
    AfterEnd,
    PastWindow,
    PastLength,
    ShortOfLength,
}

impl BadData {
    pub fn reason(self) -> Reason {
        match self {
            BadData::AfterEnd => Reason::STREAM_CLOSED,
            BadData::PastWindow => Reason::FLOW_CONTROL_ERROR,
            BadData::BeforeHead | BadData::PastLength | BadData::ShortOfLength => {
                Reason::PROTOCOL_ERROR
            }
        }
    }

    pub fn what(self) -> &'static str {
        match self {
            BadData::BeforeHead => "DATA before the response head",
            BadData::AfterEnd => "DATA after END_STREAM",
            BadData::PastWindow => "DATA past the stream window",
            BadData::PastLength => "DATA past Content-Length",
            BadData::ShortOfLength => "DATA short of Content-Length",
        }
    }
}

impl Inbound {
    pub fn new(window: i64, end: bool) -> Inbound {
        Inbound {
            data: VecDeque::new(),
            end,
            remaining: None,
            window: RecvWindow::new(window),
            waker: None,
        }
    }

    /// Applies a DATA frame of `len` bytes (padding included) carrying `payload`, with
    /// END_STREAM when `end`; `read`: the body has a reader (if not, nothing is queued). `Ok`:
    /// how many of its bytes nobody will read (padding, or all of them without a reader), for
    /// [`Inbound::give_back`] and the connection's window.
    #[inline]
    pub fn receive(
        &mut self,
        len: i64,
        payload: Bytes,
        end: bool,
        read: bool,
    ) -> Result<i64, BadData> {
        if self.end {
            return Err(BadData::AfterEnd);
        }
        if !self.window.receive(len) {
            return Err(BadData::PastWindow);
        }
        if let Some(remaining) = self.remaining {
            let left = remaining
                .checked_sub(payload.len() as u64)
                .ok_or(BadData::PastLength)?;
            if end && left > 0 {
                return Err(BadData::ShortOfLength);
            }
            self.remaining = Some(left);
        }
        let unread = if read {
            let padding = len - payload.len() as i64;
            if !payload.is_empty() {
                let payload = if !self.data.is_empty() && payload.len() < COPY_BELOW {
                    Bytes::copy_from_slice(&payload)
                } else {
                    payload
                };
                self.data.push_back(payload);
            }
            padding
        } else {
            len
        };
        self.end = end;
        wake(&mut self.waker);
        Ok(unread)
    }

    /// `unread` received bytes will never be read: the stream's WINDOW_UPDATE increment, when
    /// one is due (none once the stream has ended: no more DATA may come).
    #[inline]
    pub fn give_back(&mut self, unread: i64) -> Option<u32> {
        if self.end {
            return None;
        }
        self.window.consume(unread)
    }

    /// The next DATA for the reader, and the stream's WINDOW_UPDATE increment if one is due.
    #[inline]
    pub fn take(&mut self) -> Option<(Bytes, Option<u32>)> {
        let data = self.data.pop_front()?;
        let increment = self.give_back(data.len() as i64);
        Some((data, increment))
    }

    /// Drops the DATA nobody will read; how many bytes it was (for the connection's window).
    #[inline]
    pub fn discard(&mut self) -> i64 {
        if self.data.is_empty() {
            return 0;
        }
        self.data.drain(..).map(|d| d.len() as i64).sum()
    }
}

/// Where DATA frames go and what bounds them: the write buffer (filled up to `high_water`),
/// the stream's and the connection's send windows, and the peer's largest frame; `waker`:
/// the stream's sender, woken when window or room comes.
pub struct DataOut<'a> {
    pub write: &'a mut BytesMut,
    pub stream_window: &'a mut i64,
    pub connection_window: &'a mut i64,
    pub max_frame: usize,
    pub high_water: usize,
    pub waker: &'a mut Option<Waker>,
}

/// What [`DataOut::queue`] did.
pub struct Queued {
    /// All of the data is queued (with END_STREAM if asked); if not, the sender waits.
    pub all: bool,
    /// Something was queued: the connection's task has writing to do.
    pub wrote: bool,
}

impl DataOut<'_> {
    /// Queues `data` on stream `id` as DATA frames while the windows and the write buffer
    /// allow, the last with END_STREAM when `end` (an empty one if `data` is empty). What is
    /// left waits for window or room, with `cx` registered to be woken then.
    #[inline]
    pub fn queue(mut self, cx: &mut Context<'_>, id: u32, data: &mut Bytes, end: bool) -> Queued {
        let before = self.write.len();
        let all = self.queue_frames(id, data, end);
        if !all {
            set_waker(self.waker, cx);
        }
        Queued {
            all,
            wrote: self.write.len() > before,
        }
    }

    fn queue_frames(&mut self, id: u32, data: &mut Bytes, end: bool) -> bool {
        if data.is_empty() {
            if end {
                frame::put_data(self.write, id, &[], true);
            }
            return true;
        }
        loop {
            let room = (*self.stream_window).min(*self.connection_window).max(0) as usize;
            if room == 0 || self.write.len() >= self.high_water {
                return false;
            }
            let n = data.len().min(room).min(self.max_frame);
            let chunk = data.split_to(n);
            frame::put_data(self.write, id, &chunk, end && data.is_empty());
            *self.stream_window -= n as i64;
            *self.connection_window -= n as i64;
            if data.is_empty() {
                return true;
            }
        }
    }
}

/// A stream's sending half, as WINDOW_UPDATE and SETTINGS move it.
pub trait Sending {
    /// Its send window, and the waker of whoever waits for window.
    fn send_half(&mut self) -> (&mut i64, &mut Option<Waker>);
    /// Reset or failed: a WINDOW_UPDATE for it is ignored (RFC 9113 §6.9).
    fn failed(&self) -> bool;
}

/// Moves every stream's send window by the change in the peer's SETTINGS_INITIAL_WINDOW_SIZE
/// (RFC 9113 §6.9.2), waking the senders whose window grew. `false`: one would pass 2^31 - 1
/// (a connection error).
pub fn shift_send_windows<S: Sending>(streams: &mut StreamMap<S>, delta: i64) -> bool {
    for stream in streams.values_mut() {
        let (window, waker) = stream.send_half();
        *window += delta;
        if *window > frame::MAX_WINDOW {
            return false;
        }
        if delta > 0 {
            wake(waker);
        }
    }
    true
}

/// Applies a WINDOW_UPDATE to the connection's send window (`id` 0) or to a stream's, waking
/// who waits for it. The caller has checked that stream `id` is not idle; one already closed
/// is ignored.
pub fn window_update<S: Sending>(
    connection: &mut i64,
    streams: &mut StreamMap<S>,
    id: u32,
    increment: i64,
) -> Result<(), Broken> {
    if id == 0 {
        frame::grow_window(connection, increment).map_err(Broken::Connection)?;
        for stream in streams.values_mut() {
            wake(stream.send_half().1);
        }
        return Ok(());
    }
    let Some(stream) = streams.get_mut(&id).filter(|s| !s.failed()) else {
        return Ok(());
    };
    let (window, waker) = stream.send_half();
    frame::grow_window(window, increment).map_err(|bad| Broken::Stream(id, bad))?;
    wake(waker);
    Ok(())
}
