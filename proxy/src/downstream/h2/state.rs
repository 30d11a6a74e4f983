//! One client's HTTP/2 connection as a state machine: the client's frames applied (requests
//! handed out, request bodies queued per stream), responses encoded into the write buffer.
//!
//! Everything here reads untrusted input. What RFC 9113 makes an error is one (frame sizes,
//! stream states and ids, flow control, malformed heads, Content-Length), and what a client
//! can push is bounded: header lists and blocks (431, then GOAWAY), CONTINUATION frames,
//! concurrent streams (REFUSED_STREAM), streams reset before their answer (rapid reset,
//! CVE-2023-44487), empty DATA frames, frames without content (`FLOOD_RATIO`), streams we
//! reset for its errors, and what we queue for a client that does not read (the connection
//! stops reading; `WriteStall` closes it).
//!
//! The connection's future ([`super::Connection`]) owns the socket; the streams' futures and
//! request bodies reach this state through [`Shared`]'s lock, which is never contended: a
//! connection and its streams run on one task, and a request body read elsewhere is read by
//! the request's own task on the same thread.

use crate::h2c::common::{
    self, append_regular_field, set_waker, shift_send_windows, wake, DataOut, Inbound, RecvWindow,
    Sending, StreamMap,
};
use crate::h2c::frame::{self, Broken, Head, Received, Receiver};
use crate::h2c::hpack;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use h2::Reason;
use http::header::{self, HeaderMap};
use http::uri::{self, Authority, PathAndQuery, Scheme};
use http::{request, Method, Request, StatusCode, Uri, Version};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// A header list this many times over the limit is not answered with 431 but ends the
/// connection (ENHANCE_YOUR_CALM): an HPACK bomb (a few KB referencing one large table entry
/// thousands of times), not a client with a few headers too many.
const BOMB_FACTOR: usize = 4;
/// Consecutive DATA, HEADERS or CONTINUATION frames with no payload and no END_STREAM
/// tolerated (CVE-2019-9518): they carry nothing, so a client sending a stream of them only
/// burns our CPU. Envoy's `max_consecutive_inbound_frames_with_empty_payload` (1).
const MAX_EMPTY_FRAMES: usize = 1;
/// Frames that carry no content (PING, SETTINGS, WINDOW_UPDATE, PRIORITY, RST_STREAM,
/// unknown types, and every frame's 9-byte header) cost work to read and often to answer, and a
/// client that reads our answers is not stopped by its own write buffer. nginx's rule bounds
/// them: the connection ends (GOAWAY ENHANCE_YOUR_CALM; nginx says NO_ERROR) once an eighth of
/// all bytes received exceeds the content (header blocks of requests taken, DATA for live
/// streams) plus 1 MiB. Unlike nginx, response DATA we send counts as content too, so the
/// WINDOW_UPDATEs of a long download over one connection never add up to a flood.
const FLOOD_RATIO: u64 = 8;
const FLOOD_ALLOWANCE: u64 = 1 << 20;
/// What a keep-alive PING carries, to tell its ACK from the client's own PINGs' echoes.
const KEEPALIVE_PING: [u8; 8] = *b"sluice-k";
/// What the PING after a graceful shutdown's first GOAWAY carries: its ACK says the client has
/// read that GOAWAY, so any stream it opened has arrived by then.
const DRAIN_PING: [u8; 8] = *b"sluice-d";
/// The largest stream id: a GOAWAY naming it refuses nothing (RFC 9113 §6.8).
const MAX_STREAM_ID: u32 = 0x7fff_ffff;

/// The bounds of one connection (from `super::Limits`).
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub max_header_list: usize,
    pub max_concurrent_streams: usize,
    /// Queued response bytes above which response bodies wait for the socket.
    pub write_high_water: usize,
    pub stream_window: i64,
    pub connection_window: i64,
    pub max_local_error_resets: usize,
    /// Rapid reset (CVE-2023-44487), by Envoy's rule: a stream the client resets before its
    /// response head, within `premature_lifetime` of opening it, is premature. Once
    /// `premature_floor` streams have closed on a connection and half of them were premature,
    /// the connection ends (GOAWAY ENHANCE_YOUR_CALM); 0: never. The concurrent-stream limit
    /// alone does not bound this: each reset frees its place at once, whether the reset came
    /// in the same read as the stream (never started) or later (started, then cancelled
    /// upstream).
    pub premature_floor: usize,
    pub premature_lifetime: Duration,
}

/// How a client's stream (or its connection) ended early, as its request body sees it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientStreamError {
    #[error("client reset the stream ({0})")]
    Reset(Reason),
    #[error("client broke HTTP/2: {0}")]
    Protocol(&'static str),
    #[error("client connection closed")]
    Closed,
}

/// The connection is over: a GOAWAY saying why is queued (unless the client did not speak
/// HTTP/2 at all), and nothing more is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionOver;

pub struct Shared {
    state: Mutex<State>,
}

impl Shared {
    pub fn new(config: Config) -> Shared {
        Shared {
            state: Mutex::new(State::new(config)),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves nothing half-done that matters more than the
        // connection going on: take the state as it is.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The half of a stream a handle holds: the response (its `Stream` future) or the request body.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    Response,
    RequestBody,
}

/// A request whose head has come, for the connection to start.
pub struct NewRequest {
    pub id: u32,
    pub request: Request<()>,
    /// The head ended the stream: there is no body.
    pub end_stream: bool,
    pub content_length: Option<u64>,
}

pub struct State {
    config: Config,
    streams: StreamMap<Stream>,
    /// The highest stream id the client has used (ids only go up, RFC 9113 §5.1.1).
    last_id: u32,
    /// Streams counted against MAX_CONCURRENT_STREAMS (not yet closed both ways).
    open: usize,
    peer_initial_window: i64,
    peer_max_frame: usize,
    send_window: i64,
    recv_window: RecvWindow,
    write: BytesMut,
    /// The connection's task, to wake when something is queued from outside it. `None` while
    /// it runs (it writes what it queued before it sleeps).
    task: Option<Waker>,
    decoder: hpack::Decoder,
    receiver: Receiver,
    /// The 24-byte preface has come (RFC 9113 §3.4).
    got_magic: bool,
    accepted: Vec<NewRequest>,
    /// When the frames being applied were read.
    now: Instant,
    /// Streams that have closed (both ways, or reset), and those of them the client reset
    /// prematurely (see `Config::premature_floor`).
    streams_closed: usize,
    premature_resets: usize,
    /// DATA, HEADERS or CONTINUATION frames in a row that carried nothing and did not end
    /// their stream.
    empty_frames: usize,
    /// Bytes of frames received, and bytes of content: request heads and bodies received,
    /// response bodies sent (see `FLOOD_RATIO`).
    received_bytes: u64,
    content_bytes: u64,
    local_error_resets: usize,
    /// GOAWAY sent (graceful) or received: no new stream is taken. With our GOAWAY, the last
    /// stream id it named.
    going_away: Option<u32>,
    /// A graceful shutdown's first GOAWAY (naming the largest id) and its PING are out; the
    /// final GOAWAY waits for the PING's ACK (`finish_shutdown`).
    shutdown_noticed: bool,
    /// The connection is over (a connection error, or the client went away).
    failed: bool,
    pong: bool,
}

struct Stream {
    /// The request body as received (`remaining`: what its Content-Length leaves).
    inbound: Inbound,
    /// Boxed: rare, and a map inline would make every stream's entry larger.
    trailers: Option<Box<HeaderMap>>,
    head_sent: bool,
    /// We sent END_STREAM.
    send_end: bool,
    send_window: i64,
    /// The response waiting for window or for room in the write buffer.
    send_waker: Option<Waker>,
    /// The response waiting for anything else (its upstream): woken only if the stream ends
    /// early, not at every write.
    reset_waker: Option<Waker>,
    /// Reset by either side, or failed with the connection.
    error: Option<ClientStreamError>,
    opened_at: Instant,
    counted: bool,
    response_held: bool,
    body_held: bool,
}

impl Sending for Stream {
    fn send_half(&mut self) -> (&mut i64, &mut Option<Waker>) {
        (&mut self.send_window, &mut self.send_waker)
    }

    fn failed(&self) -> bool {
        self.error.is_some()
    }
}

impl Stream {
    fn done(&self) -> bool {
        self.error.is_some() || (self.send_end && self.inbound.end)
    }
}

/// What one frame does to the connection.
enum Verdict {
    Go,
    /// A connection error: GOAWAY with this reason, and the end.
    Fail(Reason),
}

impl State {
    fn new(config: Config) -> State {
        State {
            config,
            streams: HashMap::default(),
            last_id: 0,
            open: 0,
            peer_initial_window: frame::DEFAULT_WINDOW,
            peer_max_frame: frame::DEFAULT_MAX_FRAME as usize,
            send_window: frame::DEFAULT_WINDOW,
            recv_window: RecvWindow::new(config.connection_window),
            write: BytesMut::with_capacity(4096),
            task: None,
            decoder: hpack::Decoder::new(4096),
            receiver: Receiver::new(BOMB_FACTOR * config.max_header_list),
            got_magic: false,
            accepted: Vec::new(),
            now: Instant::now(),
            streams_closed: 0,
            premature_resets: 0,
            empty_frames: 0,
            received_bytes: 0,
            content_bytes: 0,
            local_error_resets: 0,
            going_away: None,
            shutdown_noticed: false,
            failed: false,
            pong: false,
        }
    }

    /// Queues our SETTINGS and connection window (the server's preface).
    pub fn start(&mut self) {
        let c = self.config;
        frame::put_settings(
            &mut self.write,
            &[
                (
                    frame::SETTINGS_MAX_CONCURRENT_STREAMS,
                    c.max_concurrent_streams as u32,
                ),
                (frame::SETTINGS_INITIAL_WINDOW_SIZE, c.stream_window as u32),
                (
                    frame::SETTINGS_MAX_HEADER_LIST_SIZE,
                    c.max_header_list as u32,
                ),
            ],
        );
        if c.connection_window > frame::DEFAULT_WINDOW {
            let increment = (c.connection_window - frame::DEFAULT_WINDOW) as u32;
            frame::put_window_update(&mut self.write, 0, increment);
        }
    }

    /// Applies every whole frame in `read` (taking it out), read at `now`.
    pub fn receive(&mut self, read: &mut BytesMut, now: Instant) -> Result<(), ConnectionOver> {
        if self.failed {
            return Err(ConnectionOver);
        }
        self.now = now;
        if !self.got_magic {
            let n = read.len().min(frame::PREFACE.len());
            if read[..n] != frame::PREFACE[..n] {
                // Not HTTP/2: closed without an answer, as h2 does.
                self.fail_all(ClientStreamError::Closed);
                return Err(ConnectionOver);
            }
            if n < frame::PREFACE.len() {
                return Ok(());
            }
            read.advance(n);
            self.got_magic = true;
        }
        while !self.failed {
            let (head, payload) = match frame::next(read) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(bad) => {
                    self.fail(bad.reason);
                    return Err(ConnectionOver);
                }
            };
            self.received_bytes += frame::HEAD_LEN as u64 + u64::from(head.len);
            if let Verdict::Fail(reason) = self.frame(head, payload) {
                self.fail(reason);
                return Err(ConnectionOver);
            }
        }
        if self.received_bytes / FLOOD_RATIO > self.content_bytes + FLOOD_ALLOWANCE {
            self.fail(Reason::ENHANCE_YOUR_CALM);
            return Err(ConnectionOver);
        }
        Ok(())
    }

    /// Swaps the requests whose heads came into `into` (which must be empty): the two
    /// vectors take turns, so no read allocates one.
    pub fn swap_accepted(&mut self, into: &mut Vec<NewRequest>) {
        std::mem::swap(into, &mut self.accepted);
    }

    /// What is queued for the socket, swapped into `out` (which must be empty).
    pub fn swap_written(&mut self, out: &mut BytesMut) {
        std::mem::swap(out, &mut self.write);
    }

    /// No stream left, open or held.
    pub fn is_idle(&self) -> bool {
        self.streams.is_empty() && self.open == 0
    }

    pub fn queued(&self) -> usize {
        self.write.len()
    }

    pub fn set_task(&mut self, task: Option<Waker>) {
        self.task = task;
    }

    fn wake_task(&mut self) {
        if let Some(task) = self.task.take() {
            task.wake();
        }
    }

    /// The connection has nothing left to do: it failed, or it is going away (either side
    /// said GOAWAY) and no stream is open.
    pub fn finished(&self) -> bool {
        self.failed || (self.going_away.is_some() && self.open == 0)
    }

    /// The first step of a graceful shutdown, as h2 and Envoy take it (RFC 9113 §6.8): a
    /// GOAWAY naming the largest stream id asks the client to open no more streams without
    /// refusing those already on their way, and a PING follows it. Streams keep being taken
    /// until `finish_shutdown`, on the PING's ACK.
    pub fn graceful_shutdown(&mut self) {
        if self.going_away.is_none() && !self.failed && !self.shutdown_noticed {
            frame::put_goaway(&mut self.write, MAX_STREAM_ID, Reason::NO_ERROR);
            frame::put_head(&mut self.write, 8, frame::PING, 0, 0);
            self.write.put_slice(&DRAIN_PING);
            self.shutdown_noticed = true;
            self.wake_task();
        }
    }

    /// The final GOAWAY (NO_ERROR), naming the last stream taken: those are served, no new
    /// one is taken. Called on the drain PING's ACK, or when the connection stops waiting for it.
    pub fn finish_shutdown(&mut self) {
        if self.going_away.is_none() && !self.failed {
            frame::put_goaway(&mut self.write, self.last_id, Reason::NO_ERROR);
            self.going_away = Some(self.last_id);
            self.wake_task();
        }
    }

    /// The client went away, or the socket failed: every stream still going fails.
    pub fn client_gone(&mut self) {
        self.fail_all(ClientStreamError::Closed);
    }

    /// A connection error of ours (or a keep-alive timeout): GOAWAY with `reason`, and the end.
    pub fn fail(&mut self, reason: Reason) {
        if !self.failed {
            frame::put_goaway(&mut self.write, self.last_id, reason);
        }
        self.fail_all(ClientStreamError::Closed);
    }

    fn fail_all(&mut self, error: ClientStreamError) {
        self.failed = true;
        // Requests not started yet never will be: nothing holds their streams.
        for new in self.accepted.drain(..) {
            if let Some(stream) = self.streams.get_mut(&new.id) {
                stream.response_held = false;
                stream.body_held = false;
            }
        }
        let ids: Vec<u32> = self.streams.keys().copied().collect();
        for id in ids {
            self.close_stream(id, error.clone());
        }
    }

    pub fn send_ping(&mut self) {
        self.pong = false;
        frame::put_head(&mut self.write, 8, frame::PING, 0, 0);
        self.write.put_slice(&KEEPALIVE_PING);
    }

    /// Whether our keep-alive PING has been answered since it was sent.
    pub fn take_pong(&mut self) -> bool {
        std::mem::take(&mut self.pong)
    }

    /// What a frame that breaks the protocol does: GOAWAY, or RST_STREAM for its stream.
    fn broken(&mut self, broken: Broken) -> Verdict {
        match broken {
            Broken::Connection(bad) => Verdict::Fail(bad.reason),
            Broken::Stream(id, bad) => self.fail_stream_locally(id, bad.reason),
        }
    }

    fn frame(&mut self, head: Head, payload: Bytes) -> Verdict {
        if matches!(
            head.kind,
            frame::DATA | frame::HEADERS | frame::CONTINUATION
        ) {
            if head.len == 0 && !head.has(frame::END_STREAM) {
                self.empty_frames += 1;
                if self.empty_frames > MAX_EMPTY_FRAMES {
                    return Verdict::Fail(Reason::ENHANCE_YOUR_CALM);
                }
            } else {
                self.empty_frames = 0;
            }
        }
        let received = match self.receiver.take(head, payload) {
            Ok(received) => received,
            Err(broken) => return self.broken(broken),
        };
        match received {
            Received::Data {
                stream,
                len,
                data,
                end_stream,
            } => self.data(stream, len, data, end_stream),
            Received::Headers {
                stream,
                block,
                end_stream,
                in_read_buffer,
            } => {
                // Copied out of the read buffer: the request's header values are slices of the
                // block, and a slice of the read buffer would pin all of it (16 KiB or more)
                // for as long as the request is held, say in the activator.
                let block = if in_read_buffer {
                    Bytes::copy_from_slice(&block)
                } else {
                    block
                };
                self.header_block(stream, block, end_stream)
            }
            Received::RstStream { stream, reason } => {
                if stream > self.last_id {
                    return Verdict::Fail(Reason::PROTOCOL_ERROR);
                }
                self.client_reset(stream, reason)
            }
            Received::Settings(settings) => self.settings(settings),
            Received::Ping { ack, payload } => {
                if !ack {
                    frame::put_ping_ack(&mut self.write, &payload);
                } else if payload == KEEPALIVE_PING {
                    self.pong = true;
                } else if payload == DRAIN_PING && self.shutdown_noticed {
                    self.finish_shutdown();
                }
                Verdict::Go
            }
            Received::GoAway { .. } => {
                // The client opens no new stream; the ones it has are served. (We push none,
                // so its last-stream id concerns nothing of ours.)
                if self.going_away.is_none() {
                    self.going_away = Some(self.last_id);
                }
                Verdict::Go
            }
            Received::WindowUpdate { stream, increment } => self.window_update(stream, increment),
            Received::Nothing => Verdict::Go,
        }
    }

    fn client_reset(&mut self, id: u32, reason: Reason) -> Verdict {
        let Some(stream) = self.streams.get(&id) else {
            return Verdict::Go;
        };
        if stream.error.is_some() {
            return Verdict::Go;
        }
        let premature = !stream.head_sent
            && self.now.saturating_duration_since(stream.opened_at)
                < self.config.premature_lifetime;
        if let Some(at) = self.accepted.iter().position(|r| r.id == id) {
            // Reset in the same read as its head: never started, so nothing holds it.
            self.accepted.remove(at);
            if let Some(stream) = self.streams.get_mut(&id) {
                stream.response_held = false;
                stream.body_held = false;
            }
        }
        self.close_stream(id, ClientStreamError::Reset(reason));
        if premature {
            self.premature_resets += 1;
            let floor = self.config.premature_floor;
            if floor > 0
                && self.streams_closed >= floor
                && self.premature_resets * 2 >= self.streams_closed
            {
                return Verdict::Fail(Reason::ENHANCE_YOUR_CALM);
            }
        }
        Verdict::Go
    }

    fn fail_stream_locally(&mut self, id: u32, reason: Reason) -> Verdict {
        frame::put_rst_stream(&mut self.write, id, reason);
        self.close_stream(id, ClientStreamError::Protocol(reason_text(reason)));
        self.local_error_resets += 1;
        if self.local_error_resets > self.config.max_local_error_resets {
            return Verdict::Fail(Reason::ENHANCE_YOUR_CALM);
        }
        Verdict::Go
    }

    /// Ends stream `id` with `error` (unless it already ended): nothing more goes either way.
    fn close_stream(&mut self, id: u32, error: ClientStreamError) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if stream.error.is_none() && !(stream.send_end && stream.inbound.end) {
            stream.error = Some(error);
        }
        // Data nobody will read gives its connection window back.
        let unread = stream.inbound.discard();
        wake(&mut stream.inbound.waker);
        wake(&mut stream.send_waker);
        wake(&mut stream.reset_waker);
        self.uncount(id);
        if unread > 0 {
            self.release_connection(unread);
        }
    }

    /// Frees stream `id`'s place among the open streams once it is done, and its entry once
    /// no handle holds it.
    fn uncount(&mut self, id: u32) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if stream.counted && stream.done() {
            stream.counted = false;
            self.open -= 1;
            self.streams_closed += 1;
        }
        if !stream.response_held && !stream.body_held && !stream.counted {
            self.streams.remove(&id);
        }
    }

    /// A handle let go of its side of stream `id`.
    ///
    /// The response let go before its end: the stream is cancelled (RST_STREAM CANCEL). The
    /// response complete and the request body not wanted before the client finished it: it
    /// is asked to stop sending (RST_STREAM NO_ERROR, RFC 9113 §8.1).
    pub fn release(&mut self, id: u32, side: Side) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        match side {
            Side::Response => stream.response_held = false,
            Side::RequestBody => stream.body_held = false,
        }
        let reset = if stream.error.is_some() {
            None
        } else if !stream.response_held && !stream.send_end {
            Some(Reason::CANCEL)
        } else if stream.send_end && !stream.inbound.end && !stream.body_held {
            Some(Reason::NO_ERROR)
        } else {
            None
        };
        match reset {
            Some(reason) => self.reset(id, reason),
            None => {
                if side == Side::RequestBody {
                    let unread = stream.inbound.discard();
                    if unread > 0 {
                        self.release_connection(unread);
                    }
                }
                self.uncount(id);
            }
        }
    }

    /// Resets stream `id` from our side (its response body failed, say).
    pub fn reset(&mut self, id: u32, reason: Reason) {
        if self.streams.get(&id).is_some_and(|s| s.error.is_none()) {
            frame::put_rst_stream(&mut self.write, id, reason);
            self.close_stream(id, ClientStreamError::Reset(reason));
            self.wake_task();
        }
    }

    /// `Ready` once stream `id` is reset or gone (its response will not be wanted).
    pub fn poll_reset(&mut self, cx: &mut Context<'_>, id: u32) -> Poll<()> {
        match self.streams.get_mut(&id) {
            Some(stream) if stream.error.is_none() => {
                set_waker(&mut stream.reset_waker, cx);
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }

    /// Queues the response head of stream `id`. `false`: the stream is gone.
    pub fn send_head(
        &mut self,
        id: u32,
        status: StatusCode,
        headers: &HeaderMap,
        end_stream: bool,
    ) -> bool {
        match self.streams.get_mut(&id) {
            Some(stream) if stream.error.is_none() && !stream.head_sent => {
                stream.head_sent = true;
                stream.send_end = end_stream;
            }
            _ => return false,
        }
        self.encode_head(id, status, headers, end_stream);
        if end_stream {
            self.after_send_end(id);
        }
        self.wake_task();
        true
    }

    fn encode_head(&mut self, id: u32, status: StatusCode, headers: &HeaderMap, end: bool) {
        let start = self.write.len();
        let flags = if end { frame::END_STREAM } else { 0 };
        frame::put_head(&mut self.write, 0, frame::HEADERS, flags, id);
        let block = self.write.len();
        hpack::encode(
            b":status",
            status.as_str().as_bytes(),
            false,
            &mut self.write,
        );
        hpack::encode_map(headers, &mut self.write);
        frame::finish_header_block(&mut self.write, start, block, self.peer_max_frame);
    }

    /// Queues trailers, which end stream `id`. `false`: the stream is gone.
    pub fn send_trailers(&mut self, id: u32, trailers: &HeaderMap) -> bool {
        match self.streams.get_mut(&id) {
            Some(stream) if stream.error.is_none() && !stream.send_end => stream.send_end = true,
            _ => return false,
        }
        let start = self.write.len();
        frame::put_head(&mut self.write, 0, frame::HEADERS, frame::END_STREAM, id);
        let block = self.write.len();
        hpack::encode_map(trailers, &mut self.write);
        frame::finish_header_block(&mut self.write, start, block, self.peer_max_frame);
        self.after_send_end(id);
        self.wake_task();
        true
    }

    /// Our side of stream `id` ended: a client still sending a body nobody reads any more is
    /// asked to stop.
    fn after_send_end(&mut self, id: u32) {
        let Some(stream) = self.streams.get(&id) else {
            return;
        };
        if !stream.inbound.end && !stream.body_held {
            frame::put_rst_stream(&mut self.write, id, Reason::NO_ERROR);
            self.close_stream(id, ClientStreamError::Reset(Reason::NO_ERROR));
        } else {
            self.uncount(id);
        }
    }

    /// Sends as much of `data` on stream `id` as the windows and the write buffer allow.
    /// `Ready(true)` once it is all queued (with END_STREAM when `end`), `Ready(false)` if the
    /// stream is gone, `Pending` while it waits for window or room.
    pub fn poll_send_data(
        &mut self,
        cx: &mut Context<'_>,
        id: u32,
        data: &mut Bytes,
        end: bool,
    ) -> Poll<bool> {
        let Some(stream) = self.streams.get_mut(&id) else {
            return Poll::Ready(false);
        };
        if stream.error.is_some() || stream.send_end {
            return Poll::Ready(false);
        }
        let before = data.len();
        let queued = DataOut {
            write: &mut self.write,
            stream_window: &mut stream.send_window,
            connection_window: &mut self.send_window,
            max_frame: self.peer_max_frame,
            high_water: self.config.write_high_water,
            waker: &mut stream.send_waker,
        }
        .queue(cx, id, data, end);
        // Response content counts too: a long download's WINDOW_UPDATEs are not a flood.
        self.content_bytes += (before - data.len()) as u64;
        if queued.all && end {
            stream.send_end = true;
            self.after_send_end(id);
        }
        if queued.wrote {
            self.wake_task();
        }
        if queued.all {
            Poll::Ready(true)
        } else {
            Poll::Pending
        }
    }

    /// Wakes every response waiting for room in the write buffer (it was just written).
    pub fn wake_senders(&mut self) {
        for stream in self.streams.values_mut() {
            wake(&mut stream.send_waker);
        }
    }

    /// The request body's next frame: data in order, then trailers, then the end (or the
    /// stream's error). `ended` says whether the body has ended with it.
    pub fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
        id: u32,
        ended: &mut bool,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, ClientStreamError>>> {
        let Some(stream) = self.streams.get_mut(&id) else {
            return Poll::Ready(Some(Err(ClientStreamError::Closed)));
        };
        if let Some((data, increment)) = stream.inbound.take() {
            *ended =
                stream.inbound.end && stream.inbound.data.is_empty() && stream.trailers.is_none();
            if let Some(increment) = increment {
                frame::put_window_update(&mut self.write, id, increment);
                self.wake_task();
            }
            self.release_connection(data.len() as i64);
            return Poll::Ready(Some(Ok(http_body::Frame::data(data))));
        }
        if let Some(trailers) = stream.trailers.take() {
            *ended = true;
            return Poll::Ready(Some(Ok(http_body::Frame::trailers(*trailers))));
        }
        if let Some(error) = &stream.error {
            return Poll::Ready(Some(Err(error.clone())));
        }
        if stream.inbound.end {
            *ended = true;
            return Poll::Ready(None);
        }
        set_waker(&mut stream.inbound.waker, cx);
        Poll::Pending
    }

    fn release_connection(&mut self, len: i64) {
        if let Some(increment) = self.recv_window.consume(len) {
            frame::put_window_update(&mut self.write, 0, increment);
            self.wake_task();
        }
    }

    fn data(&mut self, id: u32, len: i64, data: Bytes, end: bool) -> Verdict {
        if id > self.last_id {
            return Verdict::Fail(Reason::PROTOCOL_ERROR);
        }
        if !self.recv_window.receive(len) {
            return Verdict::Fail(Reason::FLOW_CONTROL_ERROR);
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            // A stream already closed (or refused): its data goes nowhere.
            self.release_connection(len);
            return Verdict::Go;
        };
        if stream.error.is_some() {
            self.release_connection(len);
            return Verdict::Go;
        }
        self.content_bytes += len as u64;
        let unread = match stream.inbound.receive(len, data, end, stream.body_held) {
            Ok(unread) => unread,
            Err(bad) => {
                self.release_connection(len);
                return self.fail_stream_locally(id, bad.reason());
            }
        };
        if unread > 0 {
            if let Some(increment) = stream.inbound.give_back(unread) {
                frame::put_window_update(&mut self.write, id, increment);
            }
            self.release_connection(unread);
        }
        if end {
            self.uncount(id);
        }
        Verdict::Go
    }

    fn header_block(&mut self, id: u32, block: Bytes, end_stream: bool) -> Verdict {
        let block_len = block.len() as u64;
        // Decoded whatever becomes of it: the dynamic table must follow the client's.
        let mut fields = Fields::default();
        let limit = self.config.max_header_list;
        let decoded = self
            .decoder
            .decode(&block, limit, |name, value| fields.push(name, value));
        let too_large = match decoded {
            Ok(()) => false,
            Err(hpack::HpackError::ListTooLarge) => {
                if self.decoder.last_list_size() > BOMB_FACTOR * limit {
                    return Verdict::Fail(Reason::ENHANCE_YOUR_CALM);
                }
                true
            }
            Err(_) => return Verdict::Fail(Reason::COMPRESSION_ERROR),
        };
        if id <= self.last_id {
            return self.trailers(id, fields, end_stream);
        }
        self.last_id = id;
        if self.going_away.is_some() || self.failed {
            // Past our GOAWAY: ignored (the client may retry it elsewhere, §6.8).
            return Verdict::Go;
        }
        if self.open >= self.config.max_concurrent_streams {
            frame::put_rst_stream(&mut self.write, id, Reason::REFUSED_STREAM);
            return Verdict::Go;
        }
        self.open += 1;
        self.streams.insert(
            id,
            Stream {
                inbound: Inbound::new(self.config.stream_window, end_stream),
                trailers: None,
                head_sent: false,
                send_end: false,
                send_window: self.peer_initial_window,
                send_waker: None,
                reset_waker: None,
                error: None,
                opened_at: self.now,
                counted: true,
                response_held: false,
                body_held: false,
            },
        );
        if too_large {
            // 431, as h2 answers (the client is told why; RFC 6585 §5), and the stream ends.
            let headers = HeaderMap::new();
            self.send_head(
                id,
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                &headers,
                true,
            );
            return Verdict::Go;
        }
        let (request, content_length) = match fields.into_request() {
            Ok(parts) => parts,
            Err(_) => return self.fail_stream_locally(id, Reason::PROTOCOL_ERROR),
        };
        if end_stream && content_length.is_some_and(|len| len > 0) {
            return self.fail_stream_locally(id, Reason::PROTOCOL_ERROR);
        }
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.response_held = true;
            stream.body_held = !end_stream;
            stream.inbound.remaining = content_length;
        }
        self.content_bytes += block_len;
        self.accepted.push(NewRequest {
            id,
            request,
            end_stream,
            content_length,
        });
        Verdict::Go
    }

    /// A header block on a stream already open: trailers, which end it.
    fn trailers(&mut self, id: u32, fields: Fields, end_stream: bool) -> Verdict {
        let Some(stream) = self.streams.get_mut(&id) else {
            // A stream closed or refused: nothing to do (its block was decoded).
            return Verdict::Go;
        };
        if stream.error.is_some() {
            return Verdict::Go;
        }
        if stream.inbound.end {
            return self.fail_stream_locally(id, Reason::STREAM_CLOSED);
        }
        let malformed = !end_stream
            || fields.malformed.is_some()
            || fields.pseudo_seen
            || stream.inbound.remaining.is_some_and(|left| left > 0);
        if malformed {
            return self.fail_stream_locally(id, Reason::PROTOCOL_ERROR);
        }
        if stream.body_held {
            stream.trailers = Some(Box::new(fields.headers));
        }
        stream.inbound.end = true;
        wake(&mut stream.inbound.waker);
        self.uncount(id);
        Verdict::Go
    }

    fn settings(&mut self, settings: frame::Settings) -> Verdict {
        for (id, value) in settings {
            match id {
                frame::SETTINGS_INITIAL_WINDOW_SIZE => {
                    let delta = i64::from(value) - self.peer_initial_window;
                    self.peer_initial_window = i64::from(value);
                    if !shift_send_windows(&mut self.streams, delta) {
                        return Verdict::Fail(Reason::FLOW_CONTROL_ERROR);
                    }
                }
                frame::SETTINGS_MAX_FRAME_SIZE => self.peer_max_frame = value as usize,
                // Our encoder never indexes, so the client's table size does not concern it;
                // the rest are advisory or for pushes; unknown ones are ignored (§6.5.2).
                _ => {}
            }
        }
        frame::put_settings_ack(&mut self.write);
        Verdict::Go
    }

    fn window_update(&mut self, id: u32, increment: i64) -> Verdict {
        if id > self.last_id {
            return Verdict::Fail(Reason::PROTOCOL_ERROR);
        }
        match common::window_update(&mut self.send_window, &mut self.streams, id, increment) {
            Ok(()) => Verdict::Go,
            Err(broken) => self.broken(broken),
        }
    }
}

fn reason_text(reason: Reason) -> &'static str {
    match reason {
        Reason::PROTOCOL_ERROR => "malformed stream",
        Reason::FLOW_CONTROL_ERROR => "stream window exceeded",
        Reason::STREAM_CLOSED => "frame on a closed stream",
        Reason::FRAME_SIZE_ERROR => "bad frame size",
        _ => "stream error",
    }
}

/// A request head or trailers, as decoded.
#[derive(Default)]
struct Fields {
    method: Option<Bytes>,
    scheme: Option<Bytes>,
    authority: Option<Bytes>,
    path: Option<Bytes>,
    pseudo_seen: bool,
    headers: HeaderMap,
    /// The first reason the block is malformed (RFC 9113 §8.1.1).
    malformed: Option<&'static str>,
}

impl Fields {
    fn push(&mut self, name: Bytes, value: Bytes) {
        if self.malformed.is_some() {
            return;
        }
        if name.first() == Some(&b':') {
            self.pseudo_seen = true;
            // Pseudo-headers come first (§8.3), each once; no other is defined for requests
            // (`:protocol` needs SETTINGS_ENABLE_CONNECT_PROTOCOL, which we do not send).
            let slot = match &name[..] {
                b":method" => &mut self.method,
                b":scheme" => &mut self.scheme,
                b":authority" => &mut self.authority,
                b":path" => &mut self.path,
                _ => {
                    self.malformed = Some("unknown pseudo-header");
                    return;
                }
            };
            if slot.is_some() || !self.headers.is_empty() {
                self.malformed = Some("pseudo-header repeated or late");
                return;
            }
            *slot = Some(value);
            return;
        }
        if let Err(what) = append_regular_field(&mut self.headers, name, value) {
            self.malformed = Some(what);
        }
    }

    /// The request these fields make, and its Content-Length; `Err` if it is malformed.
    fn into_request(self) -> Result<(Request<()>, Option<u64>), &'static str> {
        if let Some(what) = self.malformed {
            return Err(what);
        }
        let method = self.method.ok_or("no :method")?;
        let method = Method::from_bytes(&method).map_err(|_| "bad :method")?;
        let mut parts = uri::Parts::default();
        if method == Method::CONNECT {
            // Authority-form only (§8.5).
            if self.scheme.is_some() || self.path.is_some() {
                return Err("CONNECT with :scheme or :path");
            }
            let authority = self.authority.ok_or("CONNECT without :authority")?;
            parts.authority =
                Some(Authority::from_maybe_shared(authority).map_err(|_| "bad :authority")?);
        } else {
            let scheme = self.scheme.ok_or("no :scheme")?;
            let path = self.path.filter(|p| !p.is_empty()).ok_or("no :path")?;
            // Origin form, or `*` for OPTIONS (RFC 9113 §8.3.1).
            if path[0] != b'/' && !(&path[..] == b"*" && method == Method::OPTIONS) {
                return Err("bad :path");
            }
            if let Some(authority) = self.authority {
                // No userinfo in :authority (§8.3.1).
                if authority.contains(&b'@') {
                    return Err("userinfo in :authority");
                }
                parts.scheme = Some(Scheme::try_from(&scheme[..]).map_err(|_| "bad :scheme")?);
                parts.authority =
                    Some(Authority::from_maybe_shared(authority).map_err(|_| "bad :authority")?);
            }
            parts.path_and_query =
                Some(PathAndQuery::from_maybe_shared(path).map_err(|_| "bad :path")?);
        }
        let uri = Uri::from_parts(parts).map_err(|_| "bad target")?;
        let content_length = content_length(&self.headers)?;
        let mut head = request::Request::new(());
        *head.method_mut() = method;
        *head.uri_mut() = uri;
        *head.version_mut() = Version::HTTP_2;
        *head.headers_mut() = self.headers;
        Ok((head, content_length))
    }
}

/// The `Content-Length` of a request, if it has one; `Err` if its values differ or one is not
/// a plain number. Forwarded as they are, two lengths that differ could be read either way by
/// an HTTP/1.1 upstream (a smuggling vector). The same rule as the HTTP/1.1 server's.
pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, &'static str> {
    let mut len = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        let n = crate::h1::framing::parse_content_length(value.as_bytes())
            .ok_or("bad content-length")?;
        if len.is_some_and(|l| l != n) {
            return Err("content-lengths differ");
        }
        len = Some(n);
    }
    Ok(len)
}

#[cfg(test)]
mod tests;
