//! The response body type: either a small synthetic body or a streamed upstream body.
//!
//! The upstream variant owns the request's slot (its in-flight count, see `activator.rs`) and
//! its pooled connection, and gives both back the moment the body ends: the slot goes to the
//! next waiter or is freed, and the HTTP/1.1 connection returns to this thread's pool. If the body
//! is dropped early (client gone, upstream reset), the slot is still released and the
//! connection, whose state is unknown, is closed rather than reused.
//!
//! The body is bounded by an idle timeout between chunks (the stream idle timeout, or a
//! Revision's shorter one) and, for Revisions, the request's overall deadline.
//!
//! With the access log on, the response is wrapped in [`ResponseBody::Logged`], which counts
//! the bytes sent and sends the line when the body ends or is dropped.

use crate::access_log::Entry;
use crate::activator::{Counted, Slot};
use crate::h1::framing::HeaderLines;
use crate::h1::{H1Body, H1Error};
use crate::h2c::{RecvBody, StreamError};
use crate::upstream;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};

pub enum ResponseBody {
    Full(Option<Bytes>),
    /// Boxed, though every proxied response has one: inline (280 bytes) it widened everything
    /// that has room for a response, which is every HTTP/1.1 connection's task and every h2
    /// stream's, waiting requests included (`-Zprint-type-sizes`: both tasks' cells 256 bytes
    /// smaller, for one allocation per response).
    Upstream(Box<UpstreamBody>),
    /// An upstream body moved to its own task ([`pump`]) after its first chunk, for an
    /// HTTP/2 client: see [`UpstreamBody::pipe_idle`].
    Piped(Piped),
    /// Only with the access log on; boxed so the other variants stay small.
    Logged(Box<LoggedBody>),
    /// A body whose response head's fields came as lines (`h1::framing::HeaderLines`), not in
    /// the response's header map: the server takes them ([`ResponseBody::take_lines`]) before
    /// it writes the head, which leaves the inner body.
    Lined(HeaderLines, Box<ResponseBody>),
}

pub struct LoggedBody {
    inner: ResponseBody,
    entry: Entry,
    bytes: u64,
}

impl LoggedBody {
    fn end(&mut self, completed: bool) {
        self.entry.finish(self.bytes, completed);
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        // Never polled to its end: a body the server does not send (empty, or the answer to
        // HEAD) has ended; anything else means the client went away.
        let completed = self.inner.is_end_stream() || self.entry.is_head();
        self.end(completed);
    }
}

/// What [`pump`] hands over: a frame, or `None` for the end of the body. A channel that
/// closes without `None` means the pump gave up (the client stopped taking data).
type PipeItem = Option<Result<Frame<Bytes>, BodyError>>;

pub struct Piped {
    rx: mpsc::Receiver<PipeItem>,
    done: bool,
}

/// What a request holds until its response body ends.
pub struct Guards {
    pub slot: Slot,
    /// The revision concurrency count, for Revision backends.
    pub counted: Option<Counted>,
}

/// Where an upstream body comes from.
pub enum Source {
    /// Our HTTP/1.1 client: read from the connection on this task, pooled again at its end.
    H1(H1Body),
    /// Our h2c client (`h2c.rs`).
    H2(RecvBody),
}

impl Source {
    fn is_end_stream(&self) -> bool {
        match self {
            Source::H1(body) => body.is_end_stream(),
            Source::H2(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Source::H1(body) => body.size_hint(),
            Source::H2(body) => body.size_hint(),
        }
    }

    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self {
            Source::H1(body) => body
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(BodyError::from))),
            Source::H2(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(BodyError::from))),
        }
    }
}

pub struct UpstreamBody {
    inner: Source,
    guards: Option<Guards>,
    timer: Option<BodyTimer>,
    /// The stream idle timeout, for a body sent to an HTTP/2 client. The h2 server
    /// (`downstream/h2.rs`) reads a stream's next chunk only once the client's flow-control
    /// window took the last one, so a client that stops granting window would otherwise keep
    /// this body, its slot and its upstream exchange forever; such a body moves to a task that
    /// gives all three up once the client has taken nothing for this long. (An HTTP/1.1
    /// client's blocked writes fail the connection, see `idle::WriteStall`.) Only bodies still
    /// going after their second frame move: one task each.
    pipe_idle: Option<Duration>,
    /// A frame read ahead of the h2 server's reads, returned next: after a first chunk that
    /// does not end the body, whatever the upstream has already sent (a gRPC reply's
    /// trailers, usually) is read at once, so a body that ends there needs no pump.
    next: Option<PipeItem>,
}

/// Bounds on a response body: an idle timeout between chunks and an absolute deadline. The
/// sleep is allocated on the first wait for the upstream, so a body that never waits costs none.
pub struct BodyTimer {
    idle: Option<Duration>,
    deadline: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
    /// The armed deadline is out of date (a chunk arrived since).
    stale: bool,
}

impl BodyTimer {
    /// `None` when there is nothing to bound.
    pub fn new(idle: Option<Duration>, deadline: Option<Instant>) -> Option<BodyTimer> {
        if idle.is_none() && deadline.is_none() {
            return None;
        }
        Some(BodyTimer {
            idle,
            deadline,
            sleep: None,
            stale: true,
        })
    }

    fn next(&self) -> Option<Instant> {
        let idle_at = self.idle.map(|d| Instant::now() + d);
        match (idle_at, self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn progressed(&mut self) {
        if self.idle.is_some() {
            self.stale = true;
        }
    }

    /// The upstream has nothing yet: whether a bound has passed (registering the waker if not).
    pub(crate) fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.stale {
            self.stale = false;
            if let Some(at) = self.next() {
                match &mut self.sleep {
                    Some(sleep) => sleep.as_mut().reset(at),
                    None => self.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
                }
            }
        }
        self.sleep
            .as_mut()
            .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    H2(#[from] StreamError),
    #[error(transparent)]
    H1(#[from] H1Error),
    #[error("response body timed out")]
    Timeout,
}

impl ResponseBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        ResponseBody::Full(Some(bytes.into()))
    }

    pub fn empty() -> Self {
        ResponseBody::Full(None)
    }

    pub fn upstream(
        inner: Source,
        guards: Guards,
        timer: Option<BodyTimer>,
        pipe_idle: Option<Duration>,
    ) -> Self {
        let mut body = UpstreamBody {
            inner,
            guards: Some(guards),
            timer,
            pipe_idle,
            next: None,
        };
        // A body that has wholly arrived (none, or all of its declared length already read
        // with the head) leaves nothing to wait for: its connection goes back to the pool and
        // its slot is freed now, and the client gets it as a plain body, with no boxed upstream
        // body to poll and drop.
        if let Source::H1(h1) = &mut body.inner {
            if let Some(data) = h1.take_if_whole() {
                body.finish();
                return ResponseBody::full(data);
            }
        }
        if body.inner.is_end_stream() {
            body.finish();
            if body.inner.size_hint().exact() == Some(0) {
                return ResponseBody::empty();
            }
        }
        ResponseBody::Upstream(Box::new(body))
    }

    /// Carries `lines`, the response head's fields, to the server (see [`ResponseBody::Lined`]).
    pub fn with_lines(self, lines: Option<HeaderLines>) -> Self {
        match lines {
            None => self,
            Some(lines) => ResponseBody::Lined(lines, Box::new(self)),
        }
    }

    /// [`ResponseBody::take_lines`]'s fields, left in place.
    pub fn lines(&self) -> Option<&HeaderLines> {
        match self {
            ResponseBody::Lined(lines, _) => Some(lines),
            ResponseBody::Logged(logged) => logged.inner.lines(),
            _ => None,
        }
    }

    /// The response head's fields that are not in its header map, if any: each server writes
    /// them beside the map's.
    pub fn take_lines(&mut self) -> Option<HeaderLines> {
        match self {
            ResponseBody::Lined(..) => {
                let ResponseBody::Lined(lines, inner) =
                    std::mem::replace(self, ResponseBody::empty())
                else {
                    return None;
                };
                *self = *inner;
                Some(lines)
            }
            ResponseBody::Logged(logged) => logged.inner.take_lines(),
            _ => None,
        }
    }

    /// Counts what is sent and logs `entry` when this body ends or is dropped.
    pub fn logged(self, entry: Entry) -> Self {
        ResponseBody::Logged(Box::new(LoggedBody {
            inner: self,
            entry,
            bytes: 0,
        }))
    }
}

impl UpstreamBody {
    fn finish(&mut self) {
        if let (Source::H1(body), Some(guards)) = (&mut self.inner, &self.guards) {
            if let Some(conn) = body.take_reusable() {
                // The slot's endpoint is the one the request went to.
                upstream::checkin(guards.slot.endpoint(), conn);
            }
        }
        self.guards = None;
        self.timer = None;
    }

    fn abandon(&mut self) {
        // The connection's state is unknown: it closes with the body.
        self.guards = None;
        self.timer = None;
    }

    /// Whether nothing is left to hand over (nothing read ahead, and the upstream ended).
    fn is_end_stream(&self) -> bool {
        match &self.next {
            None => self.inner.is_end_stream(),
            Some(next) => next.is_none(),
        }
    }

    fn poll_upstream(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let frame = match self.inner.poll_frame(cx) {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                if self.timer.as_mut().is_some_and(|t| t.expired(cx)) {
                    self.abandon();
                    return Poll::Ready(Some(Err(BodyError::Timeout)));
                }
                return Poll::Pending;
            }
        };
        match &frame {
            None => self.finish(),
            Some(Ok(_)) if self.inner.is_end_stream() => self.finish(),
            Some(Ok(_)) => {
                if let Some(timer) = &mut self.timer {
                    timer.progressed();
                }
            }
            Some(Err(_)) => self.abandon(),
        }
        Poll::Ready(frame)
    }
}

/// Moves an upstream body to an HTTP/2 client chunk by chunk. The next chunk is read from
/// upstream only once the client's stream has taken the previous one (so at most one chunk
/// waits here); a previous chunk not taken within `idle`, or a stream that is gone, ends it:
/// the slot is freed and the upstream exchange dropped (its connection closed), whatever the
/// client does next.
async fn pump(mut body: Box<UpstreamBody>, tx: mpsc::Sender<PipeItem>, idle: Duration) {
    loop {
        // A client keeping up leaves room at once: no timer then.
        let permit = match tx.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Closed(())) => break,
            Err(mpsc::error::TrySendError::Full(())) => {
                match tokio::time::timeout(idle, tx.reserve()).await {
                    Ok(Ok(permit)) => permit,
                    // Stalled, or the stream is gone.
                    Ok(Err(_)) | Err(_) => break,
                }
            }
        };
        let frame = match body.next.take() {
            Some(frame) => frame,
            None => tokio::select! {
                frame = std::future::poll_fn(|cx| body.poll_upstream(cx)) => frame,
                () = tx.closed() => break,
            },
        };
        let last = !matches!(frame, Some(Ok(_)));
        permit.send(frame);
        if last {
            return;
        }
    }
    body.abandon();
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // Bodies the server never polls (HEAD, 204, 304, empty) end here, still reusable.
        if self.inner.is_end_stream() {
            self.finish();
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        match this {
            ResponseBody::Logged(logged) => {
                let frame = Pin::new(&mut logged.inner).poll_frame(cx);
                match &frame {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            logged.bytes += data.len() as u64;
                        }
                        if logged.inner.is_end_stream() {
                            logged.end(true);
                        }
                    }
                    Poll::Ready(None) => logged.end(true),
                    Poll::Ready(Some(Err(_))) => logged.end(false),
                    Poll::Pending => {}
                }
                frame
            }
            ResponseBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Lined(_, inner) => Pin::new(&mut **inner).poll_frame(cx),
            ResponseBody::Upstream(body) => {
                if let Some(next) = body.next.take() {
                    return Poll::Ready(next);
                }
                let frame = body.poll_upstream(cx);
                if let (Poll::Ready(Some(Ok(_))), Some(idle)) = (&frame, body.pipe_idle) {
                    if !body.inner.is_end_stream() {
                        // Read ahead: a body that ends with what has already arrived is
                        // handed over from here, with no task (`finish` or `abandon` has
                        // then given its guards back).
                        if let Poll::Ready(next) = body.poll_upstream(cx) {
                            body.next = Some(next);
                        }
                        if body.guards.is_some() {
                            // More to come: the rest goes through the pump.
                            let (tx, rx) = mpsc::channel(1);
                            let piped = ResponseBody::Piped(Piped { rx, done: false });
                            if let ResponseBody::Upstream(body) = std::mem::replace(this, piped) {
                                tokio::spawn(pump(body, tx, idle));
                            }
                        }
                    }
                }
                frame
            }
            ResponseBody::Piped(piped) => match piped.rx.poll_recv(cx) {
                Poll::Ready(Some(Some(frame))) => Poll::Ready(Some(frame)),
                Poll::Ready(Some(None)) => {
                    piped.done = true;
                    Poll::Ready(None)
                }
                // The pump gave up: end the stream with an error (reset: `h2c::Pipe`).
                Poll::Ready(None) => Poll::Ready(Some(Err(BodyError::Timeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Full(bytes) => bytes.is_none(),
            ResponseBody::Upstream(body) => body.is_end_stream(),
            ResponseBody::Logged(logged) => logged.inner.is_end_stream(),
            ResponseBody::Lined(_, inner) => inner.is_end_stream(),
            ResponseBody::Piped(piped) => piped.done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            ResponseBody::Full(None) => SizeHint::with_exact(0),
            ResponseBody::Upstream(body) => body.inner.size_hint(),
            ResponseBody::Logged(logged) => logged.inner.size_hint(),
            ResponseBody::Lined(_, inner) => inner.size_hint(),
            ResponseBody::Piped(_) => SizeHint::default(),
        }
    }
}
