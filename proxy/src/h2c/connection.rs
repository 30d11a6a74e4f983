//! One upstream HTTP/2 connection: the state its streams and its task share, and the task,
//! which reads and applies the server's frames and writes what the streams queued.
//!
//! Requests encode their frames straight into the shared write buffer and wake the task; the
//! task hands each stream its head, data and trailers and wakes it. The lock is held only to
//! move frames in or out, and is never contended in practice: a connection serves the
//! requests of one thread (`upstream.rs`).

use super::common::{
    self, append_regular_field, is_connection_specific, set_waker, shift_send_windows, wake,
    BadData, DataOut, Inbound, RecvWindow, Sending, StreamMap,
};
use super::frame::{self, Broken, Head, Received, Receiver};
use super::hpack;
use super::StreamError;
use crate::upstream::Forwarding;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use h2::Reason;
use http::header::{self, HeaderMap};
use http::{request, Method, Response, StatusCode};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Waker};
use tokio::io::{AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

/// Receive windows as hyper's client (which this one replaced) set them: 2 MiB per stream and
/// 5 MiB per connection, so small bodies need no WINDOW_UPDATE at all.
pub const STREAM_WINDOW: i64 = 2 * 1024 * 1024;
pub const CONNECTION_WINDOW: i64 = 5 * 1024 * 1024;
/// The largest response head or trailers we take, decoded (RFC 7541 §4.1 sizes; h2's and
/// hyper's 16 KiB).
pub const MAX_HEADER_LIST: usize = 16 * 1024;
/// A header block may not take more than this on the wire across its CONTINUATION frames
/// (a CONTINUATION flood is cut here, before any decoding).
const MAX_HEADER_BLOCK: usize = 4 * MAX_HEADER_LIST;
/// The dynamic table we let the server's encoder use (the default: no SETTINGS entry).
const HEADER_TABLE: usize = 4096;
/// Streams the server allows before its SETTINGS say (hyper's and h2's assumption).
const INITIAL_MAX_STREAMS: usize = 100;
/// Streams we reset because the server broke the protocol on them, before we give up on the
/// connection (h2's default).
const MAX_LOCAL_ERROR_RESETS: usize = 1024;
/// Bytes queued for the socket above which request bodies wait (control frames do not; a
/// server that makes us queue this much of them and reads nothing loses the connection).
const WRITE_HIGH_WATER: usize = 64 * 1024;
const WRITE_LIMIT: usize = 1024 * 1024;
/// Room kept free in the read buffer before each read: one largest frame.
const READ_ROOM: usize = frame::DEFAULT_MAX_FRAME as usize + frame::HEAD_LEN;

pub struct Shared {
    state: Mutex<State>,
    /// Set once the connection takes no new streams (GOAWAY, error, or its end).
    closed: AtomicBool,
    /// `Sender` handles alive; at zero, with no streams left, the connection says GOAWAY and ends.
    senders: AtomicUsize,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves nothing half-done that matters more than
        // the connection going on: take the state as it is.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    pub fn add_sender(&self) {
        self.senders.fetch_add(1, Ordering::Relaxed);
    }

    pub fn drop_sender(&self) {
        if self.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.lock().wake_task();
        }
    }
}

/// The half of a stream a handle holds: the request side (its body pipe) or the response side
/// (the head future, then the body).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Send,
    Recv,
}

pub struct State {
    streams: StreamMap<Stream>,
    next_id: u32,
    /// Streams open (neither closed nor reset), against the server's MAX_CONCURRENT_STREAMS.
    open: usize,
    max_open: usize,
    peer_initial_window: i64,
    peer_max_frame: usize,
    send_window: i64,
    recv_window: RecvWindow,
    /// Frames for the socket, taken by the task.
    write: BytesMut,
    task: Option<Waker>,
    /// Requests waiting for a stream slot, first come first served: tickets in increasing
    /// order, each with its task's waker. A freed slot calls the first (takes it out of the
    /// queue and wakes it) and keeps the slot for it: `called` counts those, and a request
    /// that never waited opens only beside them, not in their place.
    waiting: VecDeque<(u64, Waker)>,
    next_ticket: u64,
    called: usize,
    decoder: hpack::Decoder,
    /// The server changed SETTINGS_HEADER_TABLE_SIZE: our next header block starts with a
    /// size update (to 0: we never index, RFC 7541 §4.2).
    table_size_update: bool,
    receiver: Receiver,
    local_error_resets: usize,
    /// Why the connection takes no new streams (GOAWAY received or sent, or it failed).
    refusing: Option<StreamError>,
    /// The connection is over: every stream still open failed with this.
    failed: Option<StreamError>,
}

struct Stream {
    /// The response head, until taken.
    head: Option<Response<()>>,
    got_head: bool,
    /// A HEAD request: its response's Content-Length says nothing about DATA.
    head_request: bool,
    /// The response body as received (`remaining`: what its Content-Length leaves).
    inbound: Inbound,
    trailers: Option<HeaderMap>,
    /// We sent END_STREAM.
    send_end: bool,
    send_window: i64,
    /// Reset (by either side) or failed with the connection: nothing more goes either way.
    error: Option<StreamError>,
    /// Still counted in `State::open`.
    counted: bool,
    send_waker: Option<Waker>,
    send_held: bool,
    recv_held: bool,
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
    /// Everything received has been handed over, and nothing more will come.
    fn body_ended(&self) -> bool {
        self.inbound.end && self.inbound.data.is_empty() && self.trailers.is_none()
    }

    fn done(&self) -> bool {
        self.error.is_some() || (self.send_end && self.inbound.end)
    }
}

impl Default for State {
    fn default() -> State {
        State::new()
    }
}

/// What one `State::frame` call asks of the connection.
enum Verdict {
    Go,
    /// A connection error: GOAWAY with this reason, and the end.
    Fail(Reason, &'static str),
}

impl State {
    /// A connection's state before anything is sent (`start` queues the preface).
    pub fn new() -> State {
        State {
            streams: HashMap::default(),
            next_id: 1,
            open: 0,
            max_open: INITIAL_MAX_STREAMS,
            peer_initial_window: frame::DEFAULT_WINDOW,
            peer_max_frame: frame::DEFAULT_MAX_FRAME as usize,
            send_window: frame::DEFAULT_WINDOW,
            recv_window: RecvWindow::new(CONNECTION_WINDOW),
            write: BytesMut::with_capacity(4096),
            task: None,
            waiting: VecDeque::new(),
            next_ticket: 0,
            called: 0,
            decoder: hpack::Decoder::new(HEADER_TABLE),
            table_size_update: false,
            receiver: Receiver::new(MAX_HEADER_BLOCK),
            local_error_resets: 0,
            refusing: None,
            failed: None,
        }
    }

    /// Applies every whole frame in `read` (taking it out). `Err`: the connection is over
    /// (a GOAWAY saying why is queued).
    pub fn receive(&mut self, read: &mut BytesMut) -> Result<(), StreamError> {
        loop {
            let (head, payload) = match frame::next(read) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(bad) => return Err(fail(self, bad.reason, bad.what)),
            };
            if let Verdict::Fail(reason, what) = self.frame(head, payload) {
                return Err(fail(self, reason, what));
            }
        }
        if self.write.len() > WRITE_LIMIT {
            return Err(fail(
                self,
                Reason::ENHANCE_YOUR_CALM,
                "server reads nothing",
            ));
        }
        Ok(())
    }

    /// What is queued for the socket, taken (the fuzz target reads it as the server would).
    pub fn take_written(&mut self) -> BytesMut {
        self.write.split()
    }

    /// No stream left, open or held.
    pub fn is_idle(&self) -> bool {
        self.streams.is_empty() && self.open == 0
    }

    fn wake_task(&mut self) {
        if let Some(task) = self.task.take() {
            task.wake();
        }
    }

    /// Opens a stream for `parts` and queues its HEADERS; `Pending` while the server's stream
    /// limit is reached, with the request queued under the ticket in `place` (which its
    /// owner hands to [`State::leave_queue`] if it gives up). `Err`: the connection takes no
    /// new streams.
    pub fn open(
        &mut self,
        cx: &mut Context<'_>,
        place: &mut Option<u64>,
        parts: &request::Parts,
        forwarding: &Forwarding<'_>,
        end_stream: bool,
    ) -> Poll<Result<u32, StreamError>> {
        if let Some(error) = &self.refusing {
            let error = error.clone();
            if let Some(ticket) = place.take() {
                self.leave_queue(ticket);
            }
            return Poll::Ready(Err(error));
        }
        let may_open = match *place {
            None => self.open + self.called < self.max_open,
            Some(ticket) => match self.queued_at(ticket) {
                // Called: its slot was kept for it.
                Err(_) => {
                    self.called -= 1;
                    if self.open < self.max_open {
                        true
                    } else {
                        // The server lowered its limit meanwhile: first in line again.
                        let at = self.waiting.partition_point(|(t, _)| *t < ticket);
                        self.waiting.insert(at, (ticket, cx.waker().clone()));
                        false
                    }
                }
                // Still queued (polled for another reason).
                Ok(at) => {
                    if self.open + self.called < self.max_open {
                        self.waiting.remove(at);
                        true
                    } else {
                        let waker = &mut self.waiting[at].1;
                        if !waker.will_wake(cx.waker()) {
                            waker.clone_from(cx.waker());
                        }
                        false
                    }
                }
            },
        };
        if !may_open {
            if place.is_none() {
                let ticket = self.next_ticket;
                self.next_ticket += 1;
                *place = Some(ticket);
                self.waiting.push_back((ticket, cx.waker().clone()));
            }
            return Poll::Pending;
        }
        *place = None;
        let id = self.next_id;
        if id > frame::MAX_WINDOW as u32 {
            // Out of stream ids: the task marks the connection closed, so the pool drops it.
            self.refuse(StreamError::Closed);
            self.wake_task();
            return Poll::Ready(Err(StreamError::Closed));
        }
        self.next_id += 2;
        self.open += 1;
        self.encode_request(id, parts, forwarding, end_stream);
        self.streams.insert(
            id,
            Stream {
                head: None,
                got_head: false,
                head_request: parts.method == Method::HEAD,
                inbound: Inbound::new(STREAM_WINDOW, false),
                trailers: None,
                send_end: end_stream,
                send_window: self.peer_initial_window,
                error: None,
                counted: true,
                send_waker: None,
                send_held: !end_stream,
                recv_held: true,
            },
        );
        self.wake_task();
        Poll::Ready(Ok(id))
    }

    fn queued_at(&self, ticket: u64) -> Result<usize, usize> {
        self.waiting.binary_search_by_key(&ticket, |(t, _)| *t)
    }

    /// Calls waiting requests while stream slots are free (each keeps its slot until it
    /// opens or leaves).
    fn call_waiting(&mut self) {
        while self.open + self.called < self.max_open {
            let Some((_, waker)) = self.waiting.pop_front() else {
                return;
            };
            self.called += 1;
            waker.wake();
        }
    }

    /// The request queued under `ticket` will not open a stream after all (it was dropped,
    /// or the connection refuses streams): out of the queue, or, if it was called, its slot
    /// goes to the next one.
    pub fn leave_queue(&mut self, ticket: u64) {
        match self.queued_at(ticket) {
            Ok(at) => {
                self.waiting.remove(at);
            }
            Err(_) => {
                self.called -= 1;
                self.call_waiting();
            }
        }
    }

    fn encode_request(
        &mut self,
        id: u32,
        parts: &request::Parts,
        forwarding: &Forwarding<'_>,
        end_stream: bool,
    ) {
        let start = self.write.len();
        let flags = if end_stream { frame::END_STREAM } else { 0 };
        frame::put_head(&mut self.write, 0, frame::HEADERS, flags, id);
        let block = self.write.len();
        if std::mem::take(&mut self.table_size_update) {
            self.write.put_u8(0x20);
        }
        let out = &mut self.write;
        hpack::encode(b":method", parts.method.as_str().as_bytes(), false, out);
        let scheme = parts.uri.scheme_str().unwrap_or("http");
        hpack::encode(b":scheme", scheme.as_bytes(), false, out);
        if let Some(authority) = parts.uri.authority() {
            // Never userinfo (RFC 9113 §8.3.1): an absolute-form target's `user:pw@` stays here.
            let authority = authority.as_str();
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            hpack::encode(b":authority", host.as_bytes(), false, out);
        }
        let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        hpack::encode(b":path", path.as_bytes(), false, out);
        for (name, value) in &parts.headers {
            if is_connection_specific(name, value) {
                continue;
            }
            hpack::encode(
                name.as_str().as_bytes(),
                value.as_bytes(),
                value.is_sensitive(),
                out,
            );
        }
        for (name, value) in forwarding.fields() {
            hpack::encode(name, value.as_bytes(), false, out);
        }
        frame::finish_header_block(&mut self.write, start, block, self.peer_max_frame);
    }

    fn encode_trailers(&mut self, id: u32, trailers: &HeaderMap) {
        let start = self.write.len();
        frame::put_head(&mut self.write, 0, frame::HEADERS, frame::END_STREAM, id);
        let block = self.write.len();
        if std::mem::take(&mut self.table_size_update) {
            self.write.put_u8(0x20);
        }
        for (name, value) in trailers {
            if is_connection_specific(name, value) {
                continue;
            }
            let sensitive = value.is_sensitive();
            hpack::encode(
                name.as_str().as_bytes(),
                value.as_bytes(),
                sensitive,
                &mut self.write,
            );
        }
        frame::finish_header_block(&mut self.write, start, block, self.peer_max_frame);
    }

    fn fail_stream_locally(&mut self, id: u32, reason: Reason, what: &'static str) -> Verdict {
        frame::put_rst_stream(&mut self.write, id, reason);
        self.close_stream(id, StreamError::Protocol { reason, what });
        self.local_error_resets += 1;
        if self.local_error_resets > MAX_LOCAL_ERROR_RESETS {
            return Verdict::Fail(Reason::ENHANCE_YOUR_CALM, "too many malformed streams");
        }
        Verdict::Go
    }

    /// Ends stream `id` with `error` (unless it already ended): nothing more goes either way.
    fn close_stream(&mut self, id: u32, error: StreamError) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if stream.error.is_none() && !(stream.send_end && stream.inbound.end) {
            stream.error = Some(error);
        }
        wake(&mut stream.inbound.waker);
        wake(&mut stream.send_waker);
        self.uncount(id);
    }

    /// Frees stream `id`'s place among the open streams once it is done.
    fn uncount(&mut self, id: u32) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        let freed = stream.counted && stream.done();
        if freed {
            stream.counted = false;
        }
        let forget = !stream.send_held && !stream.recv_held;
        if freed {
            self.open -= 1;
            self.call_waiting();
        }
        if forget {
            self.forget(id);
        }
    }

    /// Drops stream `id`'s entry; data it never delivered is given back to the connection
    /// window.
    fn forget(&mut self, id: u32) {
        if let Some(mut stream) = self.streams.remove(&id) {
            let unread = stream.inbound.discard();
            self.release_connection(unread);
        }
        if self.streams.is_empty() {
            // The task may be waiting for the last stream to end.
            self.wake_task();
        }
    }

    /// A handle let go of its side of stream `id`. A side let go before its end cancels the
    /// stream (RST_STREAM CANCEL, as h2 does).
    pub fn release(&mut self, id: u32, side: Side) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        let mut unread = 0;
        match side {
            Side::Send => stream.send_held = false,
            Side::Recv => {
                stream.recv_held = false;
                // Nobody reads it now: the connection window comes back at once, not when the
                // request body (which may be slow) lets go too.
                unread = stream.inbound.discard();
            }
        }
        let cancel = stream.error.is_none()
            && match side {
                Side::Send => !stream.send_end,
                Side::Recv => !stream.inbound.end,
            };
        if cancel {
            frame::put_rst_stream(&mut self.write, id, Reason::CANCEL);
            self.close_stream(id, StreamError::Cancelled);
            self.wake_task();
        } else {
            self.uncount(id);
        }
        if unread > 0 {
            self.release_connection(unread);
        }
    }

    /// The response head, and whether the body has already ended (nothing but the head).
    pub fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        id: u32,
    ) -> Poll<Result<(Response<()>, bool), StreamError>> {
        let failed = self.failed.clone();
        let Some(stream) = self.streams.get_mut(&id) else {
            return Poll::Ready(Err(failed.unwrap_or(StreamError::Closed)));
        };
        if let Some(head) = stream.head.take() {
            return Poll::Ready(Ok((head, stream.body_ended())));
        }
        if let Some(error) = &stream.error {
            return Poll::Ready(Err(error.clone()));
        }
        set_waker(&mut stream.inbound.waker, cx);
        Poll::Pending
    }

    /// The response body's next frame: data in order, then trailers, then the end (or the
    /// stream's error). `ended` says whether the body has ended with it.
    pub fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
        id: u32,
        ended: &mut bool,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, StreamError>>> {
        let Some(stream) = self.streams.get_mut(&id) else {
            return Poll::Ready(Some(Err(self
                .failed
                .clone()
                .unwrap_or(StreamError::Closed))));
        };
        if let Some((data, increment)) = stream.inbound.take() {
            *ended = stream.body_ended();
            if let Some(increment) = increment {
                frame::put_window_update(&mut self.write, id, increment);
                self.wake_task();
            }
            self.release_connection(data.len() as i64);
            return Poll::Ready(Some(Ok(http_body::Frame::data(data))));
        }
        if let Some(trailers) = stream.trailers.take() {
            *ended = true;
            return Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))));
        }
        // END_STREAM came: the response is whole, whatever reset followed it (RFC 9113 §8.1:
        // a server may stop a request body it does not need with one).
        if stream.inbound.end {
            return Poll::Ready(None);
        }
        // A reset before END_STREAM cut the body short, whatever its code (hyper read NO_ERROR
        // and CANCEL as the end, which passes a truncated response on as a whole one).
        if let Some(error) = &stream.error {
            return Poll::Ready(Some(Err(error.clone())));
        }
        set_waker(&mut stream.inbound.waker, cx);
        Poll::Pending
    }

    /// `Ready` once stream `id` takes no more of the request body (reset, failed, or gone);
    /// until then, that wakes `cx` (as room or window to send does).
    pub fn poll_send_closed(&mut self, cx: &mut Context<'_>, id: u32) -> Poll<()> {
        match self.streams.get_mut(&id) {
            Some(stream) if stream.error.is_none() && !stream.send_end => {
                set_waker(&mut stream.send_waker, cx);
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }

    /// Sends as much of `data` on stream `id` as the windows allow. `Ready(Ok(()))` once it is
    /// all sent (with END_STREAM when `end`), `Pending` while waiting for window or room.
    pub fn poll_send_data(
        &mut self,
        cx: &mut Context<'_>,
        id: u32,
        data: &mut Bytes,
        end: bool,
    ) -> Poll<Result<(), StreamError>> {
        let Some(stream) = self.streams.get_mut(&id) else {
            return Poll::Ready(Err(self.failed.clone().unwrap_or(StreamError::Closed)));
        };
        if let Some(error) = &stream.error {
            return Poll::Ready(Err(error.clone()));
        }
        let queued = DataOut {
            write: &mut self.write,
            stream_window: &mut stream.send_window,
            connection_window: &mut self.send_window,
            max_frame: self.peer_max_frame,
            high_water: WRITE_HIGH_WATER,
            waker: &mut stream.send_waker,
        }
        .queue(cx, id, data, end);
        if queued.all && end {
            stream.send_end = true;
            self.uncount(id);
        }
        if queued.wrote {
            self.wake_task();
        }
        if queued.all {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    pub fn send_trailers(&mut self, id: u32, trailers: &HeaderMap) -> Result<(), StreamError> {
        let failed = self.failed.clone();
        let Some(stream) = self.streams.get_mut(&id) else {
            return Err(failed.unwrap_or(StreamError::Closed));
        };
        if let Some(error) = &stream.error {
            return Err(error.clone());
        }
        stream.send_end = true;
        self.encode_trailers(id, trailers);
        self.uncount(id);
        self.wake_task();
        Ok(())
    }

    /// Resets stream `id` (a request body failed).
    pub fn cancel(&mut self, id: u32) {
        if self.streams.get(&id).is_some_and(|s| s.error.is_none()) {
            frame::put_rst_stream(&mut self.write, id, Reason::CANCEL);
            self.close_stream(id, StreamError::Cancelled);
            self.wake_task();
        }
    }

    fn release_connection(&mut self, len: i64) {
        if let Some(increment) = self.recv_window.consume(len) {
            frame::put_window_update(&mut self.write, 0, increment);
            self.wake_task();
        }
    }

    /// What a frame that breaks the protocol does: GOAWAY, or RST_STREAM for its stream.
    fn broken(&mut self, broken: Broken) -> Verdict {
        match broken {
            Broken::Connection(bad) => Verdict::Fail(bad.reason, bad.what),
            Broken::Stream(id, bad) => self.fail_stream_locally(id, bad.reason, bad.what),
        }
    }

    /// Applies one frame from the server.
    fn frame(&mut self, head: Head, payload: Bytes) -> Verdict {
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
            // The response's header values stay slices of the read buffer: a response is
            // passed on as soon as it comes, where a request may wait in the activator.
            Received::Headers {
                stream,
                block,
                end_stream,
                ..
            } => self.header_block(stream, block, end_stream),
            Received::RstStream { stream, reason } => {
                if stream >= self.next_id {
                    return Verdict::Fail(Reason::PROTOCOL_ERROR, "RST_STREAM on an idle stream");
                }
                self.close_stream(stream, StreamError::Reset(reason));
                Verdict::Go
            }
            Received::Settings(settings) => self.settings(settings),
            Received::Ping { ack, payload } => {
                if !ack {
                    frame::put_ping_ack(&mut self.write, &payload);
                }
                Verdict::Go
            }
            Received::GoAway { last, reason } => {
                self.goaway(last, reason);
                Verdict::Go
            }
            Received::WindowUpdate { stream, increment } => self.window_update(stream, increment),
            Received::Nothing => Verdict::Go,
        }
    }

    fn data(&mut self, id: u32, len: i64, data: Bytes, end: bool) -> Verdict {
        if id >= self.next_id {
            return Verdict::Fail(Reason::PROTOCOL_ERROR, "DATA on a stream we did not open");
        }
        if !self.recv_window.receive(len) {
            return Verdict::Fail(
                Reason::FLOW_CONTROL_ERROR,
                "DATA past the connection window",
            );
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            // A stream we already closed: its data goes nowhere.
            self.release_connection(len);
            return Verdict::Go;
        };
        if stream.error.is_some() {
            self.release_connection(len);
            return Verdict::Go;
        }
        let received = if stream.got_head {
            stream.inbound.receive(len, data, end, stream.recv_held)
        } else {
            Err(BadData::BeforeHead)
        };
        let unread = match received {
            Ok(unread) => unread,
            Err(bad) => {
                self.release_connection(len);
                return self.fail_stream_locally(id, bad.reason(), bad.what());
            }
        };
        if unread > 0 {
            // Padding (never read): its window comes back at once.
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
        // Decoded whatever becomes of it: the dynamic table must follow the server's.
        let mut fields = Fields::default();
        let decoded = self.decoder.decode(&block, MAX_HEADER_LIST, |name, value| {
            fields.push(name, value)
        });
        let too_large = match decoded {
            Ok(()) => false,
            Err(hpack::HpackError::ListTooLarge) => true,
            Err(_) => return Verdict::Fail(Reason::COMPRESSION_ERROR, "bad header block"),
        };
        if id >= self.next_id {
            return Verdict::Fail(Reason::PROTOCOL_ERROR, "HEADERS on an idle stream");
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            return Verdict::Go;
        };
        if stream.error.is_some() {
            return Verdict::Go;
        }
        if stream.inbound.end {
            return self.fail_stream_locally(id, Reason::STREAM_CLOSED, "HEADERS after END_STREAM");
        }
        if too_large {
            return self.fail_stream_locally(id, Reason::PROTOCOL_ERROR, "response head too large");
        }
        if let Some(what) = fields.malformed {
            return self.fail_stream_locally(id, Reason::PROTOCOL_ERROR, what);
        }
        if stream.got_head {
            // Trailers: they end the stream, and carry no pseudo-header.
            if !end_stream || fields.status.is_some() {
                return self.fail_stream_locally(id, Reason::PROTOCOL_ERROR, "bad trailers");
            }
            if stream.inbound.remaining.is_some_and(|left| left > 0) {
                return self.fail_stream_locally(
                    id,
                    Reason::PROTOCOL_ERROR,
                    "body short of Content-Length",
                );
            }
            stream.trailers = Some(fields.headers);
            stream.inbound.end = true;
            wake(&mut stream.inbound.waker);
            self.uncount(id);
            return Verdict::Go;
        }
        let Some(status) = fields.status else {
            return self.fail_stream_locally(
                id,
                Reason::PROTOCOL_ERROR,
                "response without :status",
            );
        };
        if status.is_informational() {
            // 100 Continue and friends are passed over; 101 has no meaning in HTTP/2.
            if status == StatusCode::SWITCHING_PROTOCOLS || end_stream {
                return self.fail_stream_locally(
                    id,
                    Reason::PROTOCOL_ERROR,
                    "bad informational response",
                );
            }
            return Verdict::Go;
        }
        // Every Content-Length must be digits and say the same (RFC 9110 §8.6).
        let mut lengths = fields
            .headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .map(|value| crate::h1::framing::parse_content_length(value.as_bytes()));
        let declared = match lengths.next() {
            None => None,
            Some(None) => {
                return self.fail_stream_locally(id, Reason::PROTOCOL_ERROR, "bad Content-Length")
            }
            Some(first) if lengths.any(|other| other != first) => {
                return self.fail_stream_locally(id, Reason::PROTOCOL_ERROR, "bad Content-Length")
            }
            Some(first) => first,
        };
        // A HEAD or 304 response's length describes a body it does not carry.
        let remaining =
            declared.filter(|_| !stream.head_request && status != StatusCode::NOT_MODIFIED);
        if end_stream && remaining.is_some_and(|len| len > 0) {
            return self.fail_stream_locally(
                id,
                Reason::PROTOCOL_ERROR,
                "body short of Content-Length",
            );
        }
        let mut response = Response::new(());
        *response.status_mut() = status;
        *response.version_mut() = http::Version::HTTP_2;
        *response.headers_mut() = fields.headers;
        stream.head = Some(response);
        stream.got_head = true;
        stream.inbound.remaining = remaining;
        stream.inbound.end = end_stream;
        wake(&mut stream.inbound.waker);
        if end_stream {
            self.uncount(id);
        }
        Verdict::Go
    }

    fn settings(&mut self, settings: frame::Settings) -> Verdict {
        for (id, value) in settings {
            match id {
                frame::SETTINGS_HEADER_TABLE_SIZE => self.table_size_update = true,
                frame::SETTINGS_MAX_CONCURRENT_STREAMS => {
                    self.max_open = value as usize;
                    self.call_waiting();
                }
                frame::SETTINGS_INITIAL_WINDOW_SIZE => {
                    let delta = i64::from(value) - self.peer_initial_window;
                    self.peer_initial_window = i64::from(value);
                    if !shift_send_windows(&mut self.streams, delta) {
                        return Verdict::Fail(Reason::FLOW_CONTROL_ERROR, "stream window overflow");
                    }
                }
                frame::SETTINGS_MAX_FRAME_SIZE => self.peer_max_frame = value as usize,
                // MAX_HEADER_LIST_SIZE is advisory; unknown settings are ignored (§6.5.2).
                _ => {}
            }
        }
        frame::put_settings_ack(&mut self.write);
        Verdict::Go
    }

    fn window_update(&mut self, id: u32, increment: i64) -> Verdict {
        if id >= self.next_id {
            return Verdict::Fail(Reason::PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream");
        }
        match common::window_update(&mut self.send_window, &mut self.streams, id, increment) {
            Ok(()) => Verdict::Go,
            Err(broken) => self.broken(broken),
        }
    }

    fn goaway(&mut self, last: u32, reason: Reason) {
        let error = StreamError::GoAway(reason);
        self.refuse(error.clone());
        // Streams past `last` were never processed (RFC 9113 §6.8).
        let unprocessed: Vec<u32> = self
            .streams
            .keys()
            .filter(|id| **id > last)
            .copied()
            .collect();
        for id in unprocessed {
            self.close_stream(id, error.clone());
        }
    }

    fn refuse(&mut self, error: StreamError) {
        if self.refusing.is_none() {
            self.refusing = Some(error);
        }
        // Called now, to be told: each leaves the queue once, as a called request does.
        self.called += self.waiting.len();
        for (_, waker) in self.waiting.drain(..) {
            waker.wake();
        }
    }

    /// The connection is over: every stream still going fails with `error`.
    fn fail_all(&mut self, error: StreamError) {
        self.refuse(error.clone());
        if self.failed.is_none() {
            self.failed = Some(error.clone());
        }
        let ids: Vec<u32> = self.streams.keys().copied().collect();
        for id in ids {
            self.close_stream(id, error.clone());
        }
    }

    /// Whether the task's work is done: the server said GOAWAY or the handles are all gone, and
    /// no stream is left.
    fn finished(&self, senders: usize) -> bool {
        self.failed.is_some() || ((self.refusing.is_some() || senders == 0) && self.open == 0)
    }
}

/// A response head or trailers, as decoded.
#[derive(Default)]
struct Fields {
    status: Option<StatusCode>,
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
            if &name[..] != b":status" || self.status.is_some() || !self.headers.is_empty() {
                self.malformed = Some("bad pseudo-header");
                return;
            }
            match StatusCode::from_bytes(&value) {
                Ok(status) => self.status = Some(status),
                Err(_) => self.malformed = Some("bad :status"),
            }
            return;
        }
        if let Err(what) = append_regular_field(&mut self.headers, name, value) {
            self.malformed = Some(what);
        }
    }
}

/// Starts a connection over `io`: queues our preface, SETTINGS and connection window, and
/// spawns the task that runs it.
pub fn start(io: TcpStream) -> Arc<Shared> {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::new()),
        closed: AtomicBool::new(false),
        // The `Sender` the caller makes from this.
        senders: AtomicUsize::new(1),
    });
    {
        let mut state = shared.lock();
        let out = &mut state.write;
        out.put_slice(frame::PREFACE);
        frame::put_settings(
            out,
            &[
                (frame::SETTINGS_ENABLE_PUSH, 0),
                (frame::SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW as u32),
                (frame::SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST as u32),
            ],
        );
        frame::put_window_update(out, 0, (CONNECTION_WINDOW - frame::DEFAULT_WINDOW) as u32);
    }
    tokio::spawn(Task::new(shared.clone(), io));
    shared
}

/// The connection's task: reads and applies the server's frames, and writes what is queued.
struct Task {
    shared: Arc<Shared>,
    io: TcpStream,
    read: BytesMut,
    /// Bytes taken from `State::write`, being written.
    out: BytesMut,
    /// No more reading: the connection failed or the server closed its side.
    read_done: bool,
}

impl Task {
    fn new(shared: Arc<Shared>, io: TcpStream) -> Task {
        Task {
            shared,
            io,
            read: BytesMut::with_capacity(READ_ROOM),
            out: BytesMut::new(),
            read_done: false,
        }
    }

    /// Reads what the socket has and applies every whole frame in it.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.read.capacity() - self.read.len() < READ_ROOM {
            self.read.reserve(READ_ROOM);
        }
        let read = std::pin::pin!(self.io.read_buf(&mut self.read));
        let failure = match ready!(read.poll(cx)) {
            Ok(0) => Some(StreamError::Closed),
            Ok(_) => self.frames().err(),
            Err(e) => Some(StreamError::Io(Arc::new(e))),
        };
        if let Some(error) = failure {
            self.read_done = true;
            self.shared.lock().fail_all(error);
        }
        Poll::Ready(())
    }

    fn frames(&mut self) -> Result<(), StreamError> {
        self.shared.lock().receive(&mut self.read)
    }

    /// Writes what is queued. `Ready` when all of it is written.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

/// A connection error of ours: GOAWAY with `reason`, and every stream fails.
fn fail(state: &mut State, reason: Reason, what: &'static str) -> StreamError {
    frame::put_goaway(&mut state.write, 0, reason);
    let error = StreamError::Protocol { reason, what };
    state.fail_all(error.clone());
    error
}

impl Future for Task {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            // One read, then a write, per turn: a server that keeps sending (PINGs, say) must
            // not starve the writes that answer it until they pass WRITE_LIMIT.
            let read = !this.read_done && this.poll_read(cx).is_ready();
            let finished = {
                let mut state = this.shared.lock();
                let finished = state.finished(this.shared.senders.load(Ordering::Acquire));
                if finished && state.failed.is_none() {
                    // Nothing left to do: say so, politely.
                    frame::put_goaway(&mut state.write, 0, Reason::NO_ERROR);
                    state.fail_all(StreamError::Closed);
                }
                if state.refusing.is_some() {
                    this.shared.closed.store(true, Ordering::Relaxed);
                }
                // What streams queue meanwhile stays in `State::write`, where its size holds
                // request bodies back.
                if this.out.is_empty() {
                    std::mem::swap(&mut this.out, &mut state.write);
                }
                state.task = Some(cx.waker().clone());
                finished
            };
            let more_to_write = match this.poll_write(cx) {
                Poll::Ready(Ok(())) => {
                    let mut state = this.shared.lock();
                    let queued = !state.write.is_empty();
                    if !queued {
                        // Room again: wake the bodies that waited for it.
                        for stream in state.streams.values_mut() {
                            wake(&mut stream.send_waker);
                        }
                        if finished {
                            break;
                        }
                    }
                    queued
                }
                Poll::Ready(Err(e)) => {
                    let mut state = this.shared.lock();
                    state.fail_all(StreamError::Io(Arc::new(e)));
                    break;
                }
                Poll::Pending => {
                    if finished {
                        // Nothing left but a GOAWAY or resets, and a server that does not read
                        // them: waiting would keep the socket and the task forever.
                        break;
                    }
                    false
                }
            };
            if !read && !more_to_write {
                return Poll::Pending;
            }
        }
        this.shared.closed.store(true, Ordering::Relaxed);
        let mut state = this.shared.lock();
        state.fail_all(StreamError::Closed);
        state.task = None;
        Poll::Ready(())
    }
}

#[cfg(test)]
mod tests;
