//! The HTTP/1.1 upstream client: the request's own task writes the request and reads the
//! response, with no dispatch channel and no task per connection (hyper's client had both,
//! and their hand-off was a large part of a request's CPU, see ARCHITECTURE.md).
//!
//! An exchange: write the head in one write, stream the body (Content-Length as is, or
//! chunked) while watching for an early response, parse the response head ([`framing`], on
//! `httparse`), skip interim 1xx responses, then hand back a [`ResponseBody`]-ready [`H1Body`]
//! that reads the body straight from the connection. The connection goes back to the
//! per-thread pool (`upstream.rs`) only when the body ended exactly at its frame, nothing
//! followed it, the whole request was sent, and both sides allow keep-alive; any error,
//! misframing or early drop closes it.

pub mod framing;

use crate::idle::RequestBodyError;
use crate::upstream::Forwarding;
use bytes::{BufMut, Bytes, BytesMut};
use framing::{Decoded, Decoder, FrameError, Head, HeadOptions, HeaderLines};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// First read size of a connection; doubled after each read that fills it, up to
/// [`MAX_READ`] (hyper's adaptive strategy), so small responses keep small buffers.
const FIRST_READ: usize = 8 * 1024;
/// Largest read, so the largest body chunk: hyper's default (~400 KiB) times the streams a
/// slow client holds adds up (100 stalled h2 streams held ~35 MiB more). A response head is
/// bounded apart, by [`framing::MAX_HEAD`].
pub const MAX_READ: usize = 64 * 1024;
/// Interim (1xx) responses skipped before a final one; more is a misbehaving upstream.
const MAX_INTERIM: usize = 8;

/// One upstream HTTP/1.1 connection: the socket and its read buffer. Pooled between requests.
pub struct Conn {
    io: TcpStream,
    buf: BytesMut,
    next_read: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    #[error("upstream connection: {0}")]
    Io(#[from] io::Error),
    #[error("upstream closed the connection before a response")]
    Closed,
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("upstream sent too many interim (1xx) responses")]
    InterimLoop,
    #[error("upstream switched protocols without being asked")]
    UnexpectedUpgrade,
    /// The client's request body failed (idle timeout or a client error): not the upstream's
    /// fault, mapped to 408/400 in `error.rs`.
    #[error("request body: {0}")]
    RequestBody(RequestBodyError),
}

/// A failed exchange, and whether the request may go again on another connection.
#[derive(Debug)]
pub struct SendError {
    pub error: H1Error,
    /// The connection was reused, nothing of a response arrived, and the request either never
    /// left or is idempotent with no body: the upstream closed an idle connection under us
    /// (the race hyper and Envoy retry).
    pub retryable: bool,
}

/// A response head and, for a 101, the connection handed over for a tunnel.
pub enum Exchange {
    Response(Response<H1Body>),
    Upgraded(Response<()>, Upgraded),
}

impl Conn {
    pub fn new(io: TcpStream) -> Conn {
        Conn {
            io,
            buf: BytesMut::new(),
            next_read: FIRST_READ,
        }
    }

    /// Whether this idle connection can carry a request: nothing arrived while it was idle
    /// (no EOF, no stray bytes). Costs no syscall unless the socket became readable.
    pub fn is_usable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Going idle in the pool: a buffer grown by a large response is given back, so idle
    /// connections hold at most a couple of small reads' worth.
    pub fn shrink(&mut self) {
        if self.buf.capacity() > 2 * FIRST_READ {
            self.buf = BytesMut::new();
        }
    }

    /// Reads more into the buffer. `Ok(0)` is EOF.
    fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < self.next_read / 2 {
            self.buf.reserve(self.next_read);
        }
        let room = (self.buf.capacity() - self.buf.len()).min(MAX_READ);
        // Through `AsyncRead`, not `try_read_buf`: after a read that did not fill the room
        // (the socket is drained) tokio clears the socket's readiness, so neither the next
        // checkout's `is_usable` nor the next request's first read makes a syscall only to
        // hear EAGAIN (with `try_read_buf` every exchange made one: 2.1 recv per request).
        let mut limited = (&mut self.buf).limit(room);
        let read = std::pin::pin!(self.io.read_buf(&mut limited));
        let n = ready!(read.poll(cx))?;
        if n == room && self.next_read < MAX_READ {
            self.next_read *= 2;
        }
        Poll::Ready(Ok(n))
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// How the request body goes on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Send {
    None,
    Length,
    Chunked,
}

/// Writes the request head into `out`: `headers` as edited by `forward.rs` (hop-by-hop already
/// gone), plus the framing header the body needs.
fn encode_head<B: Body>(
    out: &mut BytesMut,
    req: &Request<B>,
    send: Send,
    forwarding: &Forwarding<'_>,
) {
    let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    out.reserve(256);
    out.put_slice(req.method().as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(path.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    let mut put_field = |name: &[u8], value: &HeaderValue| {
        out.put_slice(name);
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    };
    for (name, value) in req.headers() {
        put_field(name.as_str().as_bytes(), value);
    }
    for (name, value) in forwarding.fields() {
        put_field(name, value);
    }
    match send {
        Send::Chunked => out.put_slice(b"transfer-encoding: chunked\r\n"),
        Send::Length if !req.headers().contains_key(header::CONTENT_LENGTH) => {
            if let Some(n) = req.body().size_hint().exact() {
                out.put_slice(b"content-length: ");
                out.put_slice(itoa::Buffer::new().format(n).as_bytes());
                out.put_slice(b"\r\n");
            }
        }
        _ => {}
    }
    out.put_slice(b"\r\n");
}

/// Bytes queued for the socket, written with one vectored write: the request head (first
/// frame only), a chunk's size line, its data, and its CRLF (with the terminator if last).
struct Outgoing {
    parts: [Bytes; PARTS],
    next: usize,
}

const PARTS: usize = 4;

impl Outgoing {
    fn empty() -> Outgoing {
        Outgoing {
            parts: Default::default(),
            next: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.parts[self.next.min(PARTS)..]
            .iter()
            .all(Bytes::is_empty)
    }

    fn clear(&mut self) {
        self.parts = Default::default();
        self.next = 0;
    }

    fn poll_write(&mut self, io: &mut TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.next < PARTS {
            if self.parts[self.next].is_empty() {
                self.next += 1;
                continue;
            }
            let slices: [io::IoSlice<'_>; PARTS] = std::array::from_fn(|i| {
                io::IoSlice::new(self.parts.get(self.next + i).map_or(&[][..], |b| &b[..]))
            });
            let mut n = ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            while n > 0 && self.next < PARTS {
                let part = &mut self.parts[self.next];
                let take = n.min(part.len());
                let _ = part.split_to(take);
                n -= take;
                if part.is_empty() {
                    self.next += 1;
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// The body is being sent; a response may arrive meanwhile.
enum BodyOutcome {
    /// All of the body went out.
    Sent,
    /// A final response head arrived first: the rest of the body is not sent.
    Answered(Head),
}

/// Sends `req` on `conn` and reads the response head. Generic over the body only so tests can
/// send plain bodies; the request path sends `idle::RequestBody`. `reused`: the connection came from the
/// pool (a close under us may then be retried). `keep_lines`: the response goes to an HTTP/1.1
/// client, so a plain head may keep its fields as lines (see [`H1Body::take_lines`]).
/// `forwarding`: fields written after the request's own.
pub async fn send<B>(
    mut conn: Conn,
    req: &mut Request<B>,
    reused: bool,
    upgrade: bool,
    keep_lines: bool,
    forwarding: &Forwarding<'_>,
) -> Result<Exchange, SendError>
where
    B: Body<Data = Bytes, Error = RequestBodyError> + Unpin,
{
    let options = HeadOptions {
        head_request: req.method() == Method::HEAD,
        keep_lines: keep_lines && !upgrade,
    };
    let idempotent = is_idempotent(req.method());
    let has_body = !req.body().is_end_stream();
    let send_mode = if !has_body {
        Send::None
    } else if req.headers().contains_key(header::CONTENT_LENGTH)
        || req.body().size_hint().exact().is_some()
    {
        Send::Length
    } else {
        Send::Chunked
    };
    let mut progress = Progress::default();
    let result = exchange(
        &mut conn,
        req,
        send_mode,
        options,
        forwarding,
        &mut progress,
    )
    .await;
    let (head, sent_all) = match result {
        Ok(done) => done,
        Err(error) => {
            let closed_early =
                matches!(error, H1Error::Closed) || matches!(&error, H1Error::Io(e) if is_reset(e));
            let retryable = reused
                && closed_early
                && !progress.response_bytes
                && (!progress.head_written || (idempotent && !has_body));
            return Err(SendError { error, retryable });
        }
    };
    let fail = |error: H1Error| SendError {
        error,
        retryable: false,
    };
    let mut response = Response::new(());
    *response.status_mut() = head.status;
    *response.version_mut() = head.version;
    *response.headers_mut() = head.headers;
    if head.status == StatusCode::SWITCHING_PROTOCOLS {
        if !upgrade || !sent_all {
            return Err(fail(H1Error::UnexpectedUpgrade));
        }
        return Ok(Exchange::Upgraded(
            response,
            Upgraded {
                buf: conn.buf.split().freeze(),
                io: conn.io,
            },
        ));
    }
    let body = H1Body {
        decoder: Decoder::new(head.framing),
        reusable: head.keep_alive && sent_all,
        conn: Some(conn),
        lines: head.lines,
    };
    Ok(Exchange::Response(response.map(|()| body)))
}

#[derive(Default)]
struct Progress {
    head_written: bool,
    response_bytes: bool,
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

/// The exchange up to the final response head; returns it and whether the whole request
/// went out.
async fn exchange<B>(
    conn: &mut Conn,
    req: &mut Request<B>,
    send: Send,
    options: HeadOptions,
    forwarding: &Forwarding<'_>,
    progress: &mut Progress,
) -> Result<(Head, bool), H1Error>
where
    B: Body<Data = Bytes, Error = RequestBodyError> + Unpin,
{
    conn.buf.clear();
    let mut interim = 0;
    let (mut head, sent_all) = match send {
        Send::None => {
            // The head goes out through the read buffer's memory (empty between exchanges),
            // so a request allocates nothing for it once the connection has warmed up.
            encode_head(&mut conn.buf, req, send, forwarding);
            progress.head_written = true;
            conn.io.write_all(&conn.buf).await?;
            conn.buf.clear();
            (None, true)
        }
        Send::Length | Send::Chunked => {
            // The head waits for the body's first frame and goes out with it (one write): a
            // body that fails at once (an invalid first chunk) sends the upstream nothing.
            let body = req.body_mut();
            let first = poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await;
            let first = first.transpose().map_err(H1Error::RequestBody)?;
            encode_head(&mut conn.buf, req, send, forwarding);
            let head = conn.buf.split().freeze();
            progress.head_written = true;
            let outcome = send_body(
                conn,
                req.body_mut(),
                (head, first),
                send,
                options,
                progress,
                &mut interim,
            )
            .await?;
            match outcome {
                BodyOutcome::Sent => (None, true),
                BodyOutcome::Answered(head) => (Some(head), false),
            }
        }
    };
    loop {
        if let Some(h) = head.take() {
            if h.status.is_informational() && h.status != StatusCode::SWITCHING_PROTOCOLS {
                // 100 Continue, 103 Early Hints: dropped, as hyper's client did.
                interim += 1;
                if interim > MAX_INTERIM {
                    return Err(H1Error::InterimLoop);
                }
            } else {
                return Ok((h, sent_all));
            }
        }
        head = Some(read_head(conn, options, progress).await?);
    }
}

async fn read_head(
    conn: &mut Conn,
    options: HeadOptions,
    progress: &mut Progress,
) -> Result<Head, H1Error> {
    loop {
        if !conn.buf.is_empty() {
            if let Some(head) = framing::parse_head(&mut conn.buf, options)? {
                return Ok(head);
            }
        }
        let n = poll_fn(|cx| conn.poll_read_more(cx)).await?;
        if n == 0 {
            return Err(if conn.buf.is_empty() {
                H1Error::Closed
            } else {
                FrameError::Incomplete.into()
            });
        }
        progress.response_bytes = true;
    }
}

/// Streams the request body, reading (and parsing) whatever the upstream sends meanwhile: an
/// interim response is skipped, a final one stops the upload (the connection is then not
/// reused). Both directions are polled together, so an upstream that answers a large upload
/// without reading it cannot deadlock the exchange.
async fn send_body<B>(
    conn: &mut Conn,
    body: &mut B,
    (head, first): (Bytes, Option<Frame<Bytes>>),
    send: Send,
    options: HeadOptions,
    progress: &mut Progress,
    interim: &mut usize,
) -> Result<BodyOutcome, H1Error>
where
    B: Body<Data = Bytes, Error = RequestBodyError> + Unpin,
{
    let mut out = Outgoing::empty();
    let mut body_done = false;
    out.parts[0] = head;
    match first {
        None => {
            body_done = true;
            if send == Send::Chunked {
                out.parts[1] = Bytes::from_static(b"0\r\n\r\n");
            }
        }
        Some(frame) => {
            if let Ok(data) = frame.into_data() {
                body_done = queue(&mut out, 1, data, send, body.is_end_stream());
            }
        }
    }
    let mut read_closed = false;
    poll_fn(|cx| loop {
        // Read side: anything the upstream says before the body is all sent.
        if !read_closed {
            match conn.poll_read_more(cx) {
                Poll::Ready(Ok(0)) => read_closed = true,
                Poll::Ready(Ok(_)) => {
                    progress.response_bytes = true;
                    while let Some(head) = framing::parse_head(&mut conn.buf, options)? {
                        if head.status.is_informational()
                            && head.status != StatusCode::SWITCHING_PROTOCOLS
                        {
                            *interim += 1;
                            if *interim > MAX_INTERIM {
                                return Poll::Ready(Err(H1Error::InterimLoop));
                            }
                            continue;
                        }
                        return Poll::Ready(Ok(BodyOutcome::Answered(head)));
                    }
                    continue;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => {}
            }
        }
        // Write side: finish what is queued, then take the next frame.
        if !out.is_empty() {
            match out.poll_write(&mut conn.io, cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => return Poll::Pending,
            }
        }
        if body_done {
            return Poll::Ready(Ok(BodyOutcome::Sent));
        }
        match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(H1Error::RequestBody(e))),
            Poll::Ready(None) => {
                body_done = true;
                out.clear();
                if send == Send::Chunked {
                    out.parts[0] = Bytes::from_static(b"0\r\n\r\n");
                }
            }
            Poll::Ready(Some(Ok(frame))) => {
                // Request trailers are dropped, as hyper's client did without a `Trailer`
                // header (which is hop-by-hop and already gone).
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                out.clear();
                body_done = queue(&mut out, 0, data, send, body.is_end_stream());
            }
        }
    })
    .await
}

/// Queues one data frame at `out.parts[at..]` (chunk-framed if `send` is chunked, with the
/// terminator if `last`). Returns `last`.
fn queue(out: &mut Outgoing, at: usize, data: Bytes, send: Send, last: bool) -> bool {
    if send == Send::Chunked {
        if !data.is_empty() {
            out.parts[at] = Bytes::from(format!("{:x}\r\n", data.len()));
            out.parts[at + 1] = data;
            // The last chunk's CRLF and the terminator in the same write.
            out.parts[at + 2] = Bytes::from_static(if last { b"\r\n0\r\n\r\n" } else { b"\r\n" });
        } else if last {
            out.parts[at] = Bytes::from_static(b"0\r\n\r\n");
        }
    } else {
        out.parts[at] = data;
    }
    last
}

/// A response body read straight from its upstream connection.
pub struct H1Body {
    decoder: Decoder,
    /// Whether the connection may carry another exchange once this body ends cleanly.
    reusable: bool,
    /// Taken when the body ends (see [`H1Body::take_reusable`]) or fails.
    conn: Option<Conn>,
    /// The response head's fields, when kept as lines (its header map is then empty).
    lines: Option<HeaderLines>,
}

impl H1Body {
    /// The response head's fields, when they were kept as lines: the response's header map
    /// holds none of them then.
    pub fn take_lines(&mut self) -> Option<HeaderLines> {
        self.lines.take()
    }

    /// After the end of the body: its connection, if it may be pooled (nothing followed the
    /// body and both sides allow keep-alive).
    pub fn take_reusable(&mut self) -> Option<Conn> {
        if !self.decoder.is_done() || !self.reusable {
            return None;
        }
        self.conn.take().filter(|c| c.buf.is_empty())
    }

    /// The whole body, if its declared length has already arrived (with the head, as a short
    /// response's usually does); the body is then over. `None` leaves it to `poll_frame`.
    pub fn take_if_whole(&mut self) -> Option<Bytes> {
        let length = self.decoder.remaining().filter(|n| *n > 0)?;
        let conn = self.conn.as_mut()?;
        if (conn.buf.len() as u64) < length {
            return None;
        }
        // A length left (`Some(n > 0)`) is a Content-Length body, all of it is here: one decode
        // takes it whole and ends the body.
        match self.decoder.decode(&mut conn.buf) {
            Ok(Decoded::Data(data)) if self.decoder.is_done() => Some(data),
            _ => None,
        }
    }

    pub fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        loop {
            let Some(conn) = &mut self.conn else {
                return Poll::Ready(None);
            };
            match self.decoder.decode(&mut conn.buf) {
                Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(Decoded::Trailers(trailers)) => {
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                }
                Ok(Decoded::End) => return Poll::Ready(None),
                Ok(Decoded::NeedMore) => {}
                Err(e) => {
                    self.conn = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
            match conn.poll_read_more(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    self.reusable = false;
                    if let Err(e) = self.decoder.eof() {
                        self.conn = None;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    self.conn = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    pub fn is_end_stream(&self) -> bool {
        self.decoder.is_done()
    }

    pub fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// A socket after a 101, either side of a tunnel: the bytes read past the head first, then the
/// socket. The upstream side is a [`Upgraded`]; the downstream side is
/// `downstream::h1::Upgraded`.
pub struct Prefixed<T> {
    pub(crate) buf: Bytes,
    pub(crate) io: T,
}

/// The upstream side of a tunnel after a 101.
pub type Upgraded = Prefixed<TcpStream>;

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.buf.is_empty() {
            let n = this.buf.len().min(out.remaining());
            out.put_slice(&this.buf.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, out)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
