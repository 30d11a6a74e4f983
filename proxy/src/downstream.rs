//! Limits on what a downstream client can push: request head size, header count, URI length,
//! transfer codings, Host lines, connections per listener, and how long a connection may take
//! to send its first request head.
//!
//! What the HTTP/1.1 server's parser ([`h1::head`]) already refuses is left to it: differing
//! duplicate `Content-Length` (400), a `Transfer-Encoding` that does not end in `chunked` (400),
//! obs-fold (400), invalid chunk sizes (the body fails), and `Content-Length` beside
//! `Transfer-Encoding` (the length is dropped, the connection closed after the response: RFC
//! 9112 §6.3). The checks here are the ones it does not make, and apply to h2 as well.

pub mod h1;
pub mod h2;

use crate::error::ProxyError;
use crate::forward::ConnInfo;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Version};
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A client's request body: read by our HTTP/1.1 server ([`h1`]) or from an h2 stream ([`h2`]).
#[derive(Default)]
pub enum ClientBody {
    /// No body (no Content-Length, or 0, and not chunked).
    #[default]
    Empty,
    H1(h1::RequestBody),
    H2(h2::body::H2Body),
}

#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    #[error(transparent)]
    H1(#[from] h1::BodyError),
    #[error(transparent)]
    H2(#[from] h2::state::ClientStreamError),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        match self.get_mut() {
            ClientBody::Empty => Poll::Ready(None),
            ClientBody::H1(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(ClientBodyError::from))),
            ClientBody::H2(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(ClientBodyError::from))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Empty => true,
            ClientBody::H1(body) => body.is_end_stream(),
            ClientBody::H2(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Empty => SizeHint::with_exact(0),
            ClientBody::H1(body) => body.size_hint(),
            ClientBody::H2(body) => body.size_hint(),
        }
    }
}

/// Downstream limits from flags (`--max-request-headers-kb` and the rest).
#[derive(Clone, Debug)]
pub struct DownstreamLimits {
    /// Request line and headers, in bytes (431 above it).
    pub max_head_bytes: usize,
    /// Header lines per request (431 above it).
    pub max_headers: usize,
    /// Request target length in bytes (414 above it).
    pub max_uri_bytes: usize,
    /// Open connections per listener; more are accepted and closed at once.
    pub max_connections: usize,
    /// From accept to the first complete request head: the protocol sniff, an h2c preface and
    /// the head itself.
    pub header_read_timeout: Duration,
    /// Keep-alive: HTTP/1 from the end of a response to the next complete request head; h2
    /// with no open stream.
    pub idle_timeout: Duration,
}

impl Default for DownstreamLimits {
    fn default() -> Self {
        DownstreamLimits {
            max_head_bytes: 60 * 1024,
            max_headers: 100,
            max_uri_bytes: 8192,
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(75),
        }
    }
}

/// The host a request is routed on, after refusing the Host spellings RFC 9112 §3.2 calls
/// for a 400: more than one `Host` line, or none on HTTP/1.1. Two Host lines are a smuggling
/// vector (a front proxy and a backend can each pick a different one).
pub fn routing_host<B>(req: &Request<B>) -> Result<Option<HeaderValue>, ProxyError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err(ProxyError::BadRequest("more than one host header"));
    }
    if first.is_none() && req.version() == Version::HTTP_11 {
        return Err(ProxyError::BadRequest("missing host header"));
    }
    Ok(crate::forward::request_host(req))
}

/// Limits the parsers do not apply, checked before routing: the target's length (414), the
/// header count on h2 (431; HTTP/1.1's parser refuses past `max_headers` itself), and
/// transfer codings.
pub fn check_request_head<B>(
    req: &Request<B>,
    limits: &DownstreamLimits,
) -> Result<(), ProxyError> {
    // The path and query: what HTTP/1's origin form carries and h2's `:path`. An authority
    // (absolute form, `:authority`) is bounded as a host name when it is routed on.
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > limits.max_uri_bytes {
        return Err(ProxyError::UriTooLong);
    }
    if req.headers().len() > limits.max_headers {
        return Err(ProxyError::HeadersTooLarge);
    }
    if req.headers().contains_key(header::TRANSFER_ENCODING) {
        check_transfer_encoding(req.headers().get_all(header::TRANSFER_ENCODING))?;
    }
    Ok(())
}

/// The HTTP/1.1 parser has checked that the last coding is `chunked` (else 400). Any other coding in the list
/// is one we do not implement: 501 (RFC 9112 §6.1); `chunked` twice is malformed (§7: a sender
/// MUST NOT apply it more than once): 400.
fn check_transfer_encoding(values: header::GetAll<'_, HeaderValue>) -> Result<(), ProxyError> {
    let mut chunked = 0;
    for value in values {
        let list = value
            .to_str()
            .map_err(|_| ProxyError::BadRequest("invalid transfer-encoding"))?;
        for coding in list.split(',') {
            // Parameters (`;q=...`) do not change which coding it is.
            let name = coding.split(';').next().unwrap_or_default().trim();
            if name.is_empty() {
                continue;
            }
            if !name.eq_ignore_ascii_case("chunked") {
                return Err(ProxyError::NotImplemented(
                    "transfer coding other than chunked",
                ));
            }
            chunked += 1;
        }
    }
    if chunked != 1 {
        return Err(ProxyError::BadRequest("chunked applied more than once"));
    }
    Ok(())
}

/// An h2 connection's IO with a deadline for its first request head (h2 has none): this covers
/// accept → sniff → h2c preface → first head in one deadline. (HTTP/1.1 connections get the
/// same deadline from `h1::serve`.)
///
/// It also hands over the bytes the sniff read: they come first, with whatever the socket has
/// in the same read.
///
/// Once the first request reaches the service (`head_seen`), the timer is dropped and every
/// poll is a pass-through plus one `Option` check (h2 polls the IO per read and write; see
/// `server.rs` on why that cost matters).
pub struct HeadTimer<S> {
    inner: S,
    deadline: Option<Pin<Box<Sleep>>>,
    /// Its `head_seen` is set by the service at each request.
    conn: Arc<ConnInfo>,
    /// What the sniff read, from `sniffed_at` to `sniffed_len` still to hand over (always
    /// before the first head is complete, so only while `deadline` is set).
    sniffed: [u8; SNIFF_LEN],
    sniffed_at: u8,
    sniffed_len: u8,
}

/// Bytes read to tell h2c prior knowledge from HTTP/1.1 (see `server.rs`).
pub const SNIFF_LEN: usize = 4;

impl<S> HeadTimer<S> {
    /// `deadline` is the sleep already used for the sniff (one allocation per connection);
    /// `sniffed` the bytes the sniff read (empty when ALPN decided).
    pub fn new(inner: S, deadline: Pin<Box<Sleep>>, conn: Arc<ConnInfo>, sniffed: &[u8]) -> Self {
        let mut buf = [0u8; SNIFF_LEN];
        let len = sniffed.len().min(SNIFF_LEN);
        buf[..len].copy_from_slice(&sniffed[..len]);
        HeadTimer {
            inner,
            deadline: Some(deadline),
            conn,
            sniffed: buf,
            sniffed_at: 0,
            // At most SNIFF_LEN (4).
            sniffed_len: len as u8,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadTimer<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(deadline) = &mut this.deadline else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        if this.sniffed_at < this.sniffed_len {
            let rest = &this.sniffed[usize::from(this.sniffed_at)..usize::from(this.sniffed_len)];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            // n ≤ SNIFF_LEN.
            this.sniffed_at += n as u8;
            // The socket's bytes too, in the same read. Pending, the end or an error is left
            // for the next read (a socket reports its end again; a reset then reads as one).
            if buf.remaining() > 0 {
                let _ = Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            return Poll::Ready(Ok(()));
        }
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.conn.head_seen.load(Ordering::Relaxed) {
            this.deadline = None;
        } else if poll.is_pending() && deadline.as_mut().poll(cx).is_ready() {
            // h2 closes the connection on a read error; nothing is answered, as
            // nginx does on client_header_timeout.
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head not received within the header read timeout",
            )));
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadTimer<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The open streams of one h2 connection, for its idle timeout: HTTP/1.1's is the head
/// deadline between requests (`h1::serve`), h2 has none. Idle means no open stream (a
/// long response stream with a quiet client is not idle) for `--idle-timeout`, as nginx's
/// `keepalive_timeout` and Envoy's `idle_timeout` count it.
pub struct Streams {
    open: AtomicUsize,
    /// When the last stream ended, in ms after `start`.
    last_end_ms: AtomicU64,
    start: Instant,
}

impl Streams {
    pub fn new() -> Arc<Streams> {
        Arc::new(Streams {
            open: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
            start: Instant::now(),
        })
    }

    /// Counts a stream open until the guard drops: held by the stream (`h2.rs`), which is
    /// dropped when it ends (finished or reset) or its connection closes.
    pub fn open(self: &Arc<Self>) -> StreamGuard {
        self.open.fetch_add(1, Ordering::Relaxed);
        StreamGuard(self.clone())
    }

    /// Resolves once no stream has been open for `timeout`. Wakes at most once per
    /// `timeout` while streams are open.
    pub async fn idle(&self, timeout: Duration) {
        loop {
            let wake = if self.open.load(Ordering::Relaxed) == 0 {
                let last = Duration::from_millis(self.last_end_ms.load(Ordering::Relaxed));
                let at = self.start + last + timeout;
                if at <= Instant::now() {
                    return;
                }
                at
            } else {
                Instant::now() + timeout
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

pub struct StreamGuard(Arc<Streams>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        // Only the last stream's end starts the idle time: the clock is read then, not at
        // every stream's end. (A connection's streams run on its one task: nothing opens
        // between the load and the decrement.)
        if self.0.open.load(Ordering::Relaxed) == 1 {
            let ms = u64::try_from(self.0.start.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.0.last_end_ms.store(ms, Ordering::Relaxed);
        }
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
