//! sluice's HTTP/2 server: the `h2` crate's server driven directly.
//!
//! hyper's h2 server did this before, with a layer of its own per connection and per stream:
//! a lock taken for every stream and DATA frame (its keep-alive bookkeeping), a lookup per
//! connection-specific header on every response, its request body wrapper, a task per stream.
//! Without them an h2c request takes about 6% fewer instructions (`perf/CALLGRIND.md`, "`log`'s
//! trace level, and our own HTTP/2 server").
//! What hyper did that a proxy needs is kept here: keep-alive PINGs, graceful GOAWAY, a
//! stream's work dropped when its client resets it, `Date`, `Content-Length` from an exact
//! body size, and responses cleared of HTTP/1 connection headers (RFC 9113 §8.2.2).
//!
//! The protocol itself, and every bound a client can push (streams, header list, windows,
//! rapid reset, CONTINUATION floods, HPACK bombs), is the `h2` crate's, configured in
//! [`Settings::new`].

use crate::body::ResponseBody;
use crate::downstream::{ClientBody, StreamGuard, Streams};
use crate::forward::{KEEP_ALIVE, PROXY_CONNECTION};
use crate::h1::framing::parse_content_length;
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use h2::server::{Handshake, SendResponse};
use h2::{Ping, PingPong, Reason, RecvStream};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response};
use http_body::Body;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

pub mod body;
use body::{H2Body, Pipe};

/// How every h2 connection of a listener is served.
pub struct Settings {
    builder: h2::server::Builder,
    /// PING after this long, and close if no ACK comes within the second.
    keepalive: Option<(Duration, Duration)>,
}

/// The bounds a client can push, with the peer each default follows (set in `server.rs`).
pub struct Limits {
    /// SETTINGS_MAX_HEADER_LIST_SIZE; h2 answers 431 to a stream past it.
    pub max_header_list: u32,
    /// Concurrent streams; more are refused (RST_STREAM REFUSED_STREAM).
    pub max_concurrent_streams: u32,
    /// Response bytes buffered per stream for a client that reads slowly.
    pub max_send_buffer: usize,
    /// Request bytes we accept per stream, and per connection, before WINDOW_UPDATE.
    pub stream_window: u32,
    pub connection_window: u32,
    /// Streams opened and reset before we accept them (rapid reset); past it, GOAWAY.
    pub max_pending_accept_resets: usize,
    /// Streams we reset for the client's protocol errors; past it, GOAWAY.
    pub max_local_error_resets: usize,
    /// Keep-alive PING interval (`None`: no PINGs) and how long its ACK may take.
    pub keepalive: Option<Duration>,
    pub keepalive_timeout: Duration,
}

impl Settings {
    pub fn new(limits: &Limits) -> Settings {
        let mut builder = h2::server::Builder::new();
        builder
            .max_header_list_size(limits.max_header_list)
            .max_concurrent_streams(limits.max_concurrent_streams)
            .max_send_buffer_size(limits.max_send_buffer)
            .initial_window_size(limits.stream_window)
            .initial_connection_window_size(limits.connection_window)
            .max_pending_accept_reset_streams(limits.max_pending_accept_resets)
            .max_local_error_reset_streams(Some(limits.max_local_error_resets));
        Settings {
            builder,
            keepalive: limits
                .keepalive
                .map(|interval| (interval, limits.keepalive_timeout)),
        }
    }

    /// Serves one connection: the handshake, then every stream, each running `service`'s
    /// future. `streams` counts the open ones (for the idle timeout).
    pub fn serve<IO, S, F>(&self, io: IO, streams: Arc<Streams>, service: S) -> Connection<IO, S, F>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
        S: FnMut(Request<ClientBody>) -> F,
        F: Future<Output = Response<ResponseBody>> + Send + 'static,
    {
        Connection {
            state: State::Handshaking(self.builder.handshake(io)),
            keepalive: self.keepalive,
            alive: None,
            close_pending: false,
            streams,
            service,
            running: FuturesUnordered::new(),
        }
    }
}

/// One h2 connection, as a future that ends when the connection has closed.
///
/// Its streams run inside it, not on tasks of their own: the connection's task is woken for
/// their I/O anyway, and a task per stream cost a spawn and a second task's wake-up and poll
/// for every response (about 900 instructions of tokio's per h2c request, against about 450
/// for this set). Each connection is on one thread either way (every listener thread runs its
/// own runtime).
pub struct Connection<IO, S, F> {
    state: State<IO>,
    keepalive: Option<(Duration, Duration)>,
    alive: Option<KeepAlive>,
    /// A graceful shutdown asked for during the handshake.
    close_pending: bool,
    streams: Arc<Streams>,
    service: S,
    running: FuturesUnordered<Stream<F>>,
}

enum State<IO> {
    Handshaking(Handshake<IO, Bytes>),
    Serving(h2::server::Connection<IO, Bytes>),
}

impl<IO, S, F> Connection<IO, S, F>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    /// GOAWAY: streams the client has opened are served, no new one is accepted, and the
    /// connection closes once they are done.
    pub fn graceful_shutdown(&mut self) {
        match &mut self.state {
            State::Handshaking(_) => self.close_pending = true,
            State::Serving(conn) => conn.graceful_shutdown(),
        }
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
        if let State::Handshaking(handshake) = &mut this.state {
            // A failed handshake (not h2, timed out, gone) closes without an answer.
            let Ok(mut conn) = ready!(Pin::new(handshake).poll(cx)) else {
                return Poll::Ready(());
            };
            if this.close_pending {
                conn.graceful_shutdown();
            }
            if let (Some((interval, timeout)), Some(ping)) = (this.keepalive, conn.ping_pong()) {
                this.alive = Some(KeepAlive::new(ping, interval, timeout));
            }
            this.state = State::Serving(conn);
        }
        let State::Serving(conn) = &mut this.state else {
            // Not reached: a handshake that did not end returned above.
            return Poll::Pending;
        };
        if let Some(alive) = &mut this.alive {
            if alive.poll_timed_out(cx).is_ready() {
                // A dead or stuck client: close, as hyper did (GOAWAY NO_ERROR).
                conn.abrupt_shutdown(Reason::NO_ERROR);
                this.alive = None;
            }
        }
        loop {
            match conn.poll_accept(cx) {
                Poll::Ready(Some(Ok((req, respond)))) => {
                    if let Some(stream) = accept(req, respond, &mut this.service, &this.streams) {
                        this.running.push(stream);
                    }
                }
                // `None`: the connection has closed; an error closed it. Streams still
                // running have lost their client: dropping them gives up their work.
                Poll::Ready(_) => return Poll::Ready(()),
                Poll::Pending => break,
            }
        }
        // Each stream woken since the last poll (new ones included) runs once; what they
        // queue is written at the connection's next poll, which h2 wakes it for.
        while let Poll::Ready(Some(())) = this.running.poll_next_unpin(cx) {}
        Poll::Pending
    }
}

/// Starts one stream: its request goes to `service`; the stream returned sends the response.
fn accept<S, F>(
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    service: &mut S,
    streams: &Arc<Streams>,
) -> Option<Stream<F>>
where
    S: FnMut(Request<ClientBody>) -> F,
    F: Future<Output = Response<ResponseBody>> + Send + 'static,
{
    let Ok(len) = content_length(req.headers()) else {
        // Two lengths that differ: forwarded as they are, an HTTP/1.1 upstream could read
        // either (a smuggling vector). Malformed (RFC 9113 §8.1.1).
        respond.send_reset(Reason::PROTOCOL_ERROR);
        return None;
    };
    let open = streams.open();
    let req = req.map(|recv| ClientBody::H2(H2Body::new(recv, len)));
    // Boxed: a small future moves into the set of running streams, not the request path's
    // whole state.
    let response = Box::pin(service(req));
    Some(Stream {
        respond,
        phase: Phase::Waiting(response),
        _open: open,
    })
}

/// The `Content-Length` of a request, if it has one; `Err` if its values differ or one is not
/// a plain number (h2 itself checks the first so, and the DATA received against it). The same
/// rule as the HTTP/1.1 server's (`parse_content_length`: digits only, no sign).
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ()> {
    let mut len = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        let n = parse_content_length(value.as_bytes()).ok_or(())?;
        if len.is_some_and(|l| l != n) {
            return Err(());
        }
        len = Some(n);
    }
    Ok(len)
}

/// One stream: waits for the response (given up if the client resets the stream), then
/// sends its head and body.
struct Stream<F> {
    respond: SendResponse<Bytes>,
    phase: Phase<F>,
    /// Counts the stream open until it ends.
    _open: StreamGuard,
}

enum Phase<F> {
    Waiting(Pin<Box<F>>),
    Sending(Pipe<ResponseBody>),
}

impl<F> Future for Stream<F>
where
    F: Future<Output = Response<ResponseBody>>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let response = match &mut this.phase {
            Phase::Sending(pipe) => {
                let _ = ready!(pipe.poll_send(cx));
                return Poll::Ready(());
            }
            Phase::Waiting(response) => match response.as_mut().poll(cx) {
                Poll::Ready(response) => response,
                Poll::Pending => {
                    // Reset by the client (or the connection is gone): dropping the future
                    // gives up its work, a waiting request's place in the activator included.
                    if this.respond.poll_reset(cx).is_ready() {
                        return Poll::Ready(());
                    }
                    return Poll::Pending;
                }
            },
        };
        let (mut parts, body) = response.into_parts();
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
        let head = Response::from_parts(parts, ());
        let stream = match this.respond.send_response(head, end) {
            Ok(stream) => stream,
            Err(e) => {
                // The stream or connection is gone, or the head was refused.
                this.respond
                    .send_reset(e.reason().unwrap_or(Reason::INTERNAL_ERROR));
                return Poll::Ready(());
            }
        };
        if end {
            return Poll::Ready(());
        }
        // A body that fails part-way is cut with a reset: INTERNAL_ERROR, as hyper did.
        let mut pipe = Pipe::new(body, stream, Reason::INTERNAL_ERROR);
        if pipe.poll_send(cx).is_ready() {
            return Poll::Ready(());
        }
        this.phase = Phase::Sending(pipe);
        Poll::Pending
    }
}

/// Adds `Date` if the response has none (RFC 9110 §6.6.1) and removes the headers HTTP/2
/// forbids (RFC 9113 §8.2.2: h2 would refuse the whole response for one), in one pass over the
/// response's headers and no lookup in the common case.
fn prepare_head(headers: &mut HeaderMap) {
    let mut date = false;
    let mut forbidden = false;
    for name in headers.keys() {
        if name == header::DATE {
            date = true;
        } else if name == header::CONNECTION
            || name == header::TRANSFER_ENCODING
            || name == header::UPGRADE
            || name == header::TE
            || name == KEEP_ALIVE
            || name == PROXY_CONNECTION
        {
            forbidden = true;
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
    ping: PingPong,
    interval: Duration,
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    awaiting_ack: bool,
}

impl KeepAlive {
    fn new(ping: PingPong, interval: Duration, timeout: Duration) -> KeepAlive {
        KeepAlive {
            ping,
            interval,
            timeout,
            sleep: Box::pin(tokio::time::sleep(interval)),
            awaiting_ack: false,
        }
    }

    /// Ready once a PING went unanswered for `timeout`.
    fn poll_timed_out(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.awaiting_ack {
                match self.ping.poll_pong(cx) {
                    Poll::Ready(Ok(_)) => {
                        self.awaiting_ack = false;
                        self.sleep.as_mut().reset(Instant::now() + self.interval);
                    }
                    // The connection is closing: nothing more to watch.
                    Poll::Ready(Err(_)) => return Poll::Pending,
                    Poll::Pending => {}
                }
            }
            ready!(self.sleep.as_mut().poll(cx));
            if self.awaiting_ack {
                return Poll::Ready(());
            }
            if self.ping.send_ping(Ping::opaque()).is_err() {
                return Poll::Pending;
            }
            self.awaiting_ack = true;
            self.sleep.as_mut().reset(Instant::now() + self.timeout);
        }
    }
}

#[cfg(test)]
mod tests;
