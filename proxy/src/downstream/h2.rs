//! sluice's HTTP/2 server, our own: the connection's future reads the client's frames into
//! [`state::State`] (which checks everything it reads), starts a stream future per request,
//! and writes what the streams queued.
//!
//! It replaced the `h2` crate's server (which had replaced hyper's): in an h2c request through
//! sluice, a third of the instructions were the `h2` crate's (its stream store and state
//! transitions, a frame queue per stream, HPACK encoding with table lookups and Huffman, a
//! lookup per connection-specific header on every response). Here a response's HEADERS and
//! DATA are encoded straight into the connection's write buffer (HPACK without indexing or
//! Huffman, so encoding is copying), on the connection's own task: streams run inside it, not
//! on tasks of their own.
//!
//! What hyper did that a proxy needs is kept: keep-alive PINGs, graceful GOAWAY (in two steps,
//! as the `h2` crate's), a stream's work dropped when its client resets it, `Date`,
//! `Content-Length` from an exact body size, and responses cleared of HTTP/1 connection headers
//! (RFC 9113 §8.2.2). Every bound a client can push is in [`Limits`] and `state.rs`.

use crate::body::ResponseBody;
use crate::downstream::{ClientBody, StreamGuard, Streams};
use crate::forward::{KEEP_ALIVE, PROXY_CONNECTION};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::stream::{FuturesUnordered, StreamExt};
use h2::Reason;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response};
use http_body::Body;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::time::{Instant, Sleep};

pub mod body;
pub mod state;
use body::H2Body;
use state::{Config, NewRequest, Shared, Side};

/// Room kept free in the read buffer before each read: one largest frame.
const READ_ROOM: usize =
    crate::h2c::frame::DEFAULT_MAX_FRAME as usize + crate::h2c::frame::HEAD_LEN;
/// Turns of the connection's loop per poll before it yields to the thread's other
/// connections (a client that keeps sending would otherwise hold the thread).
const TURNS_PER_POLL: usize = 16;
/// How long a graceful shutdown waits for the ACK of the PING after its first GOAWAY before
/// it sends the final one anyway: any client that reads answers within a round trip. Go's h2
/// server likewise gives a client 1 s after its GOAWAY.
const SHUTDOWN_ACK_BOUND: Duration = Duration::from_secs(1);
/// How long a connection ended for the client's error keeps reading (and dropping) what the
/// client still sends, so that it can read our GOAWAY (see `Connection::poll_linger`). Go's h2
/// server closes 1 s after such a GOAWAY; nginx lingers up to 30 s.
const LINGER: Duration = Duration::from_secs(1);

/// How every h2 connection of a listener is served.
pub struct Settings {
    config: Config,
    /// PING after this long, and close if no ACK comes within the second.
    keepalive: Option<(Duration, Duration)>,
}

/// The bounds a client can push, with the peer each default follows (set in `server.rs`).
pub struct Limits {
    /// SETTINGS_MAX_HEADER_LIST_SIZE: a stream past it is answered 431; a block that decodes
    /// to four times it (an HPACK bomb) ends the connection.
    pub max_header_list: u32,
    /// Concurrent streams; more are refused (RST_STREAM REFUSED_STREAM).
    pub max_concurrent_streams: u32,
    /// Response bytes queued per connection for a client that reads slowly; past it,
    /// response bodies wait.
    pub max_send_buffer: usize,
    /// Request bytes we accept per stream, and per connection, before WINDOW_UPDATE.
    pub stream_window: u32,
    pub connection_window: u32,
    /// Streams we reset for the client's protocol errors; past it, GOAWAY.
    pub max_local_error_resets: usize,
    /// Rapid reset: past this many closed streams, half of them reset by the client within
    /// `premature_reset_lifetime` and before their answer end the connection (0: never).
    pub premature_reset_streams: usize,
    pub premature_reset_lifetime: Duration,
    /// Keep-alive PING interval (`None`: no PINGs) and how long its ACK may take.
    pub keepalive: Option<Duration>,
    pub keepalive_timeout: Duration,
}

impl Settings {
    pub fn new(limits: &Limits) -> Settings {
        Settings {
            config: Config {
                max_header_list: limits.max_header_list as usize,
                max_concurrent_streams: limits.max_concurrent_streams as usize,
                // At least one frame: below that, a response could never be sent whole.
                write_high_water: limits
                    .max_send_buffer
                    .max(crate::h2c::frame::DEFAULT_MAX_FRAME as usize),
                stream_window: i64::from(limits.stream_window),
                connection_window: i64::from(limits.connection_window),
                max_local_error_resets: limits.max_local_error_resets,
                premature_floor: limits.premature_reset_streams,
                premature_lifetime: limits.premature_reset_lifetime,
            },
            keepalive: limits
                .keepalive
                .map(|interval| (interval, limits.keepalive_timeout)),
        }
    }

    /// Serves one connection: the preface, then every stream, each running `service`'s
    /// future. `streams` counts the open ones (for the idle timeout).
    pub fn serve<IO, S, F>(&self, io: IO, streams: Arc<Streams>, service: S) -> Connection<IO, S, F>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
        S: FnMut(Request<ClientBody>) -> F,
        F: Future<Output = Response<ResponseBody>> + Send + 'static,
    {
        let shared = Arc::new(Shared::new(self.config));
        shared.lock().start();
        Connection {
            io,
            shared,
            read: BytesMut::new(),
            out: BytesMut::new(),
            unflushed: false,
            read_done: false,
            read_pause: 2 * self.config.write_high_water,
            keepalive: self
                .keepalive
                .map(|(interval, timeout)| KeepAlive::new(interval, timeout)),
            streams,
            service,
            running: FuturesUnordered::new(),
            starting: Vec::new(),
            shutdown_ack_deadline: None,
            ending: Ending::Close,
        }
    }
}

/// One h2 connection, as a future that ends when the connection has closed.
///
/// Its streams run inside it, not on tasks of their own: the connection's task is woken for
/// their I/O anyway, and a task per stream cost a spawn and a second task's wake-up and poll
/// for every response. Each connection is on one thread either way (every listener thread
/// runs its own runtime).
pub struct Connection<IO, S, F> {
    io: IO,
    shared: Arc<Shared>,
    read: BytesMut,
    /// Bytes taken from the state's write buffer, being written.
    out: BytesMut,
    /// Written since the last flush.
    unflushed: bool,
    /// The client closed its side, or reading failed.
    read_done: bool,
    /// Queued bytes past which nothing more is read: twice the point where response bodies
    /// wait, room for control frames and what one read of requests answers.
    read_pause: usize,
    keepalive: Option<KeepAlive>,
    streams: Arc<Streams>,
    service: S,
    running: FuturesUnordered<Stream<F>>,
    /// Requests taken from the state to start (kept between reads for its allocation).
    starting: Vec<NewRequest>,
    /// Set by a graceful shutdown: when the final GOAWAY goes out without the PING's ACK.
    shutdown_ack_deadline: Option<Pin<Box<Sleep>>>,
    ending: Ending,
}

/// What happens once everything is written and the connection is done.
enum Ending {
    Close,
    /// The client broke a rule (its GOAWAY is queued) and may still be sending: linger.
    Linger,
    /// Lingering until then; `shut`: our side is closed (FIN sent after the GOAWAY).
    Lingering {
        until: Pin<Box<Sleep>>,
        shut: bool,
    },
}

impl<IO, S, F> Connection<IO, S, F> {
    /// GOAWAY in two steps (see `State::graceful_shutdown`): streams the client opened before
    /// it saw the first are served, no later one is accepted, and the connection closes once
    /// they are done.
    pub fn graceful_shutdown(&mut self) {
        self.shared.lock().graceful_shutdown();
        if self.shutdown_ack_deadline.is_none() {
            self.shutdown_ack_deadline = Some(Box::pin(tokio::time::sleep(SHUTDOWN_ACK_BOUND)));
        }
    }
}

impl<IO, S, F> Connection<IO, S, F>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    S: FnMut(Request<ClientBody>) -> F + Unpin,
    F: Future<Output = Response<ResponseBody>> + Send + 'static,
{
    /// Reads what the socket has and applies every whole frame in it; starts the requests
    /// whose heads came. `Ready` when something was read (or the read side ended).
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.read.capacity() - self.read.len() < READ_ROOM {
            self.read.reserve(READ_ROOM);
        }
        let read = std::pin::pin!(self.io.read_buf(&mut self.read));
        let n = ready!(read.poll(cx));
        let mut state = self.shared.lock();
        match n {
            Ok(0) | Err(_) => {
                self.read_done = true;
                state.client_gone();
            }
            Ok(_) => {
                if state
                    .receive(&mut self.read, std::time::Instant::now())
                    .is_err()
                {
                    // What is queued (a GOAWAY) is still written; nothing more is read.
                    self.read_done = true;
                    self.ending = Ending::Linger;
                }
                state.swap_accepted(&mut self.starting);
                drop(state);
                let mut starting = std::mem::take(&mut self.starting);
                for new in starting.drain(..) {
                    let stream = self.start(new);
                    self.running.push(stream);
                }
                self.starting = starting;
            }
        }
        Poll::Ready(())
    }

    fn start(&mut self, new: NewRequest) -> Stream<F> {
        let NewRequest {
            id,
            request,
            end_stream,
            content_length,
        } = new;
        let body = if end_stream {
            ClientBody::Empty
        } else {
            ClientBody::H2(H2Body::new(self.shared.clone(), id, content_length))
        };
        let open = self.streams.open();
        // Boxed: a small future moves into the set of running streams, not the request path's
        // whole state.
        let response = crate::pin_in_place(|| (self.service)(request.map(|()| body)));
        Stream {
            shared: self.shared.clone(),
            id,
            phase: Phase::Waiting(response),
            _open: open,
        }
    }

    /// The connection is done and all is written: closed now, or after lingering.
    fn poll_end(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if matches!(self.ending, Ending::Close) {
            return Poll::Ready(());
        }
        if matches!(self.ending, Ending::Linger) {
            self.ending = Ending::Lingering {
                until: Box::pin(tokio::time::sleep(LINGER)),
                shut: false,
            };
        }
        self.poll_linger(cx)
    }

    /// Closing a socket with unread bytes sends a RST, and a RST makes the client's TCP drop
    /// what it has not read yet: the GOAWAY that says why. So our side is shut first (the
    /// GOAWAY, then FIN) and what still arrives is read and dropped until the client closes
    /// too, or `LINGER` passes (RFC 9112 §9.6 asks the same of HTTP/1.1 servers).
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Ending::Lingering { until, shut } = &mut self.ending else {
            return Poll::Ready(());
        };
        if until.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        if !*shut {
            // An error here (the client is gone) ends the reads below at once.
            ready!(Pin::new(&mut self.io).poll_shutdown(cx)).ok();
            *shut = true;
        }
        for _ in 0..TURNS_PER_POLL {
            self.read.clear();
            self.read.reserve(READ_ROOM);
            let read = std::pin::pin!(self.io.read_buf(&mut self.read));
            match ready!(read.poll(cx)) {
                Ok(0) | Err(_) => return Poll::Ready(()),
                Ok(_) => {}
            }
        }
        // A client that keeps sending: the thread's other connections go first.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Writes what is queued, and flushes it (TLS holds what it encrypted until then).
    /// `Ready(Ok)` when all of it is out.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.out.advance(n);
            self.unflushed = true;
        }
        if self.unflushed {
            ready!(Pin::new(&mut self.io).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO, S, F> Future for Connection<IO, S, F>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    S: FnMut(Request<ClientBody>) -> F + Unpin,
    F: Future<Output = Response<ResponseBody>> + Send + 'static,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if matches!(this.ending, Ending::Lingering { .. }) {
            return this.poll_linger(cx);
        }
        // While it runs, what streams queue is written before it sleeps: no wake-up needed.
        {
            let mut state = this.shared.lock();
            state.set_task(None);
            if let Some(alive) = &mut this.keepalive {
                if alive.poll_timed_out(cx, &mut state).is_ready() {
                    // A dead or stuck client: close, as hyper did (GOAWAY NO_ERROR).
                    state.fail(Reason::NO_ERROR);
                    this.read_done = true;
                }
            }
            if let Some(deadline) = &mut this.shutdown_ack_deadline {
                if deadline.as_mut().poll(cx).is_ready() {
                    state.finish_shutdown();
                    this.shutdown_ack_deadline = None;
                }
            }
        }
        for _ in 0..TURNS_PER_POLL {
            // One read, then a write, per turn; no read while much is queued for a client
            // that does not read it (it could make us queue without bound: PINGs, SETTINGS).
            let queued = this.out.len() + this.shared.lock().queued();
            let read = !this.read_done && queued < this.read_pause && this.poll_read(cx).is_ready();
            // Each stream woken since the last turn (new ones included) runs once.
            while let Poll::Ready(Some(())) = this.running.poll_next_unpin(cx) {}
            let finished = {
                let mut state = this.shared.lock();
                if this.out.is_empty() {
                    state.swap_written(&mut this.out);
                }
                state.finished()
            };
            let wrote_all = match this.poll_write(cx) {
                Poll::Ready(Ok(())) => true,
                // The client is gone: its streams' work is dropped with them.
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => false,
            };
            let mut state = this.shared.lock();
            let more = wrote_all && state.queued() > 0;
            if wrote_all && !more {
                if finished {
                    drop(state);
                    return this.poll_end(cx);
                }
                // Room again: the bodies that waited for it go on.
                state.wake_senders();
            }
            if this.read_done && state.finished() && !more && wrote_all {
                drop(state);
                return this.poll_end(cx);
            }
            if !read && !more {
                state.set_task(Some(cx.waker().clone()));
                return Poll::Pending;
            }
        }
        // A client that keeps us busy: the thread's other connections go first.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// One stream: waits for the response (given up if the client resets the stream), then
/// sends its head and body.
struct Stream<F> {
    shared: Arc<Shared>,
    id: u32,
    phase: Phase<F>,
    /// Counts the stream open until it ends.
    _open: StreamGuard,
}

enum Phase<F> {
    Waiting(Pin<Box<F>>),
    Sending {
        body: ResponseBody,
        /// A chunk read and waiting for window or room, and whether it ends the body.
        waiting: Option<(Bytes, bool)>,
    },
    Done,
}

impl<F> Drop for Stream<F> {
    fn drop(&mut self) {
        self.shared.lock().release(self.id, Side::Response);
    }
}

impl<F> Future for Stream<F>
where
    F: Future<Output = Response<ResponseBody>>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let id = this.id;
        loop {
            let response = match &mut this.phase {
                Phase::Done => return Poll::Ready(()),
                Phase::Sending { body, waiting } => {
                    // Whether it ended whole or early, the stream is done.
                    ready!(send_body(cx, &this.shared, id, body, waiting));
                    this.phase = Phase::Done;
                    return Poll::Ready(());
                }
                Phase::Waiting(response) => match response.as_mut().poll(cx) {
                    Poll::Ready(response) => response,
                    Poll::Pending => {
                        // Reset by the client (or the connection is gone): dropping the
                        // future gives up its work, a waiting request's place in the
                        // activator included.
                        if this.shared.lock().poll_reset(cx, id).is_ready() {
                            this.phase = Phase::Done;
                            return Poll::Ready(());
                        }
                        return Poll::Pending;
                    }
                },
            };
            let (mut parts, mut body) = response.into_parts();
            // Only an HTTP/1.1 request's response comes with lines; taken all the same, so
            // that no field can be lost.
            if let Some(lines) = body.take_lines() {
                lines.append_to(&mut parts.headers);
            }
            prepare_head(&mut parts.headers);
            let end = body.is_end_stream();
            if !end {
                if let Some(len) = body.size_hint().exact() {
                    if !parts.headers.contains_key(header::CONTENT_LENGTH) {
                        parts
                            .headers
                            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                    }
                }
            }
            let sent = this
                .shared
                .lock()
                .send_head(id, parts.status, &parts.headers, end);
            this.phase = if sent && !end {
                Phase::Sending {
                    body,
                    waiting: None,
                }
            } else {
                Phase::Done
            };
        }
    }
}

/// Sends a response body frame by frame: a chunk is read, then held until the windows and
/// the write buffer have room, and queued; only then is the next one read. A body that fails
/// part-way is cut with a reset (INTERNAL_ERROR, as hyper did). `Ready(false)`: the stream
/// ended early.
fn send_body(
    cx: &mut Context<'_>,
    shared: &Shared,
    id: u32,
    body: &mut ResponseBody,
    waiting: &mut Option<(Bytes, bool)>,
) -> Poll<bool> {
    loop {
        if let Some((data, end)) = waiting {
            let sent = ready!(shared.lock().poll_send_data(cx, id, data, *end));
            let end = *end;
            *waiting = None;
            if !sent || end {
                return Poll::Ready(sent);
            }
            continue;
        }
        let frame = match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(_))) => {
                shared.lock().reset(id, Reason::INTERNAL_ERROR);
                return Poll::Ready(false);
            }
            Poll::Ready(None) => {
                // Ended without an end-of-stream flag on the last chunk: an empty one.
                let mut empty = Bytes::new();
                let sent = ready!(shared.lock().poll_send_data(cx, id, &mut empty, true));
                return Poll::Ready(sent);
            }
            Poll::Pending => {
                // Registered for a reset too, so a client that gives up frees the stream.
                if shared.lock().poll_reset(cx, id).is_ready() {
                    return Poll::Ready(false);
                }
                return Poll::Pending;
            }
        };
        match frame.into_data() {
            Ok(data) => *waiting = Some((data, body.is_end_stream())),
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    return Poll::Ready(shared.lock().send_trailers(id, &trailers));
                }
            }
        }
    }
}

/// Adds `Date` if the response has none (RFC 9110 §6.6.1) and removes the headers HTTP/2
/// forbids (RFC 9113 §8.2.2: h2 would refuse the whole response for one), in one pass over the
/// response's headers and no lookup in the common case.
fn prepare_head(headers: &mut HeaderMap) {
    let mut date = false;
    let mut forbidden = false;
    for name in headers.keys() {
        // A string match (see `forward::has_hop_by_hop`), not a comparison per name.
        match name.as_str() {
            "date" => date = true,
            "connection" | "transfer-encoding" | "upgrade" | "te" | "keep-alive"
            | "proxy-connection" => forbidden = true,
            _ => {}
        }
    }
    if forbidden {
        for name in [
            header::CONNECTION,
            header::TRANSFER_ENCODING,
            header::UPGRADE,
            header::TE,
        ] {
            headers.remove(name);
        }
        headers.remove(&KEEP_ALIVE);
        headers.remove(&PROXY_CONNECTION);
    }
    if !date {
        headers.insert(header::DATE, super::h1::date());
    }
}

/// Keep-alive PINGs: one every `interval`; no ACK within `timeout` means the client is dead or
/// stuck. Pinged whether or not the connection is busy (as Envoy's keep-alive `interval` is): a
/// PING a minute costs less than a clock read per frame to know when it was last quiet.
struct KeepAlive {
    interval: Duration,
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    awaiting_ack: bool,
}

impl KeepAlive {
    fn new(interval: Duration, timeout: Duration) -> KeepAlive {
        KeepAlive {
            interval,
            timeout,
            sleep: Box::pin(tokio::time::sleep(interval)),
            awaiting_ack: false,
        }
    }

    /// Ready once a PING went unanswered for `timeout`.
    fn poll_timed_out(&mut self, cx: &mut Context<'_>, state: &mut state::State) -> Poll<()> {
        loop {
            if self.awaiting_ack && state.take_pong() {
                self.awaiting_ack = false;
                self.sleep.as_mut().reset(Instant::now() + self.interval);
            }
            ready!(self.sleep.as_mut().poll(cx));
            if self.awaiting_ack {
                return Poll::Ready(());
            }
            state.send_ping();
            self.awaiting_ack = true;
            self.sleep.as_mut().reset(Instant::now() + self.timeout);
        }
    }
}

#[cfg(test)]
mod tests;
