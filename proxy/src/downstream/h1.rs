//! sluice's HTTP/1.1 server for downstream clients: one task per connection, which reads each
//! request head, runs the request path, writes the response and feeds the request body.
//!
//! Why not hyper's server: hyper keeps an 8 KiB read buffer and an 8 KiB write buffer per
//! connection for the connection's life, and a boxed slot for a request future, so an idle
//! keep-alive client cost about 18 KB. Here an idle connection holds no buffer at all: a head
//! is read into a buffer of the thread's (`SCRATCH`) and copied out once complete (one
//! exact-size copy, which the request's header values then share), and only bytes that must
//! outlive the read (a head still incomplete, body bytes, a pipelined request) go into a
//! buffer of the connection's, released once empty. Response heads are encoded into a buffer
//! of the thread's, lent until written, and leave with the first body bytes in one `writev`.
//!
//! Parsing is `httparse` (see [`head`]); the body framing is the upstream client's decoder
//! (`h1::framing`), which the fuzz target drives. The request body is fed from this loop
//! through a one-frame mailbox ([`RequestBody`]), only when the request path asks for more, so
//! a client's body is read no faster than it is sent on.
//!
//! Timeouts: one deadline for each request head (from accept for the first, the header read
//! timeout; from the end of the previous response for the next, the idle timeout), checked by
//! one timer per connection that is re-armed when it fires or when the deadline moves before
//! it, not per request. A client that stops reading
//! is cut off by `idle::WriteStall` underneath; a stalled request body by `idle::RequestBody`.

pub mod head;

use crate::body::ResponseBody;
use crate::downstream::{ClientBody, DownstreamLimits};
use crate::h1::framing::{Decoded, Decoder, FrameError, Framing};
use crate::h1::Prefixed;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use head::{BodyFraming, HeadError, Parsed, RequestHead};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

/// The thread's read buffer for request heads: large enough for nearly every head in one read.
/// A read into it that does not complete a head moves its bytes to the connection's own buffer.
const SCRATCH_LEN: usize = 16 * 1024;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; SCRATCH_LEN].into_boxed_slice());
    /// A buffer for response heads and chunk lines, lent to one connection at a time.
    static HEAD_BUFFER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    /// The `Date` value, formatted once per second (as hyper and nginx cache it).
    static DATE: RefCell<(u64, HeaderValue)> =
        const { RefCell::new((0, HeaderValue::from_static(""))) };
}

/// The thread keeps a head buffer up to this size; a larger one is freed after its response.
const KEPT_HEAD_BUFFER: usize = 16 * 1024;

/// Returns a head buffer (emptied) to the thread, which keeps one.
fn give_back_head_buffer(mut buffer: Vec<u8>) {
    if buffer.capacity() == 0 || buffer.capacity() > KEPT_HEAD_BUFFER {
        return;
    }
    buffer.clear();
    HEAD_BUFFER.with(|kept| {
        // The larger of the two is kept; the other is freed.
        let current = kept.take();
        kept.set(if current.capacity() >= buffer.capacity() {
            current
        } else {
            buffer
        });
    });
}

/// A connection's own reads of body bytes: 8 KiB (hyper's), or less when the body is shorter.
const BODY_READ: usize = 8 * 1024;

/// After a response that closes the connection, unread request bytes are read and dropped for
/// up to this long before the socket closes, so the close does not reset a response the client
/// has not read yet (nginx's `lingering_timeout`, 5 s).
const LINGER: Duration = Duration::from_secs(5);
/// At most this much is drained while lingering (nginx reads in 4 KiB steps for up to 30 s;
/// this bounds the bytes instead).
const LINGER_BYTES: usize = 64 * 1024;

/// The downstream side of a tunnel after a 101: the client's bytes read past its head first,
/// then the socket. `forward::tunnel` gets it through [`OnUpgrade`].
pub type Upgraded = Prefixed<Box<dyn UpgradeIo>>;

pub trait UpgradeIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> UpgradeIo for T {}

/// In the extensions of a request that asks to switch protocols: resolves to the connection
/// once a 101 has been written for it (`None` if the response was anything else). Shared
/// because request extensions must be `Clone`; the first to ask gets the connection.
#[derive(Clone)]
pub struct OnUpgrade(Arc<Mutex<Option<oneshot::Receiver<Upgraded>>>>);

impl OnUpgrade {
    pub async fn upgraded(self) -> Option<Upgraded> {
        let receiver = self.0.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        receiver.await.ok()
    }
}

/// Why a request body failed on the client's side.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("invalid request body: {0}")]
    Framing(&'static str),
    /// The connection ended (closed or failed) before the body did.
    #[error("client closed the connection before the request body's end")]
    Incomplete,
}

fn framing_error(error: FrameError) -> BodyError {
    match error {
        FrameError::Incomplete => BodyError::Incomplete,
        FrameError::Chunk(why)
        | FrameError::Trailers(why)
        | FrameError::Head(why)
        | FrameError::ContentLength(why)
        | FrameError::TransferEncoding(why) => BodyError::Framing(why),
        FrameError::HeadTooLarge => BodyError::Framing("trailers too large"),
    }
}

type BodyItem = Result<Frame<Bytes>, BodyError>;

/// What passes between the connection loop and a request's body.
#[derive(Default)]
struct Mailbox {
    /// The next frame, handed over by the loop.
    item: Option<BodyItem>,
    /// The body has nothing and asked for more.
    wanted: bool,
    /// No frame comes after `item`.
    finished: bool,
    /// The request path dropped the body before its end.
    dropped: bool,
    body_waker: Option<Waker>,
    loop_waker: Option<Waker>,
}

fn lock(mailbox: &Mutex<Mailbox>) -> MutexGuard<'_, Mailbox> {
    mailbox.lock().unwrap_or_else(|p| p.into_inner())
}

/// An HTTP/1.1 request body, read from the client by the connection loop as it is asked for.
pub struct RequestBody {
    mailbox: Arc<Mutex<Mailbox>>,
    /// Bytes still to come, for a body of known length.
    remaining: Option<u64>,
    ended: bool,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<BodyItem>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let mut mailbox = lock(&this.mailbox);
        if let Some(item) = mailbox.item.take() {
            if let (Ok(frame), Some(left)) = (&item, &mut this.remaining) {
                if let Some(data) = frame.data_ref() {
                    *left = left.saturating_sub(data.len() as u64);
                }
            }
            this.ended = mailbox.finished;
            return Poll::Ready(Some(item));
        }
        if mailbox.finished {
            this.ended = true;
            return Poll::Ready(None);
        }
        mailbox.wanted = true;
        if !mailbox
            .body_waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            mailbox.body_waker = Some(cx.waker().clone());
        }
        // The body may be sent on from another task (an h2c upstream's request pipe).
        if let Some(waker) = &mailbox.loop_waker {
            if !waker.will_wake(cx.waker()) {
                waker.wake_by_ref();
            }
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.ended || {
            let mailbox = lock(&self.mailbox);
            mailbox.finished && mailbox.item.is_none()
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        let mut mailbox = lock(&self.mailbox);
        mailbox.dropped = true;
        if let Some(waker) = mailbox.loop_waker.take() {
            waker.wake();
        }
    }
}

/// The loop's side of a request body.
struct Feed {
    mailbox: Arc<Mutex<Mailbox>>,
    decoder: Decoder,
    /// A `100 Continue` is owed before the first read of the body.
    expect_continue: bool,
    /// The whole body has been handed over (or failed).
    done: bool,
}

/// Where a connection is, for shutdown: one waiting for a request head (none yet, or part of
/// one: a client that has not finished its head has nothing to lose) is closed at once; one
/// with a request in progress finishes it and then closes.
#[derive(Default)]
pub struct Phase {
    idle: AtomicBool,
    stopping: AtomicBool,
}

impl Phase {
    /// Asks the connection to stop; true if it is idle (drop it now).
    pub fn stop(&self) -> bool {
        self.stopping.store(true, Ordering::Relaxed);
        self.idle.load(Ordering::Relaxed)
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }
}

/// One HTTP/1.1 connection.
struct Conn<S> {
    io: S,
    /// Bytes read but not used yet; empty and unallocated between requests.
    pending: BytesMut,
    /// What is being written: `front`, then `data`, then `back`; `written` bytes of them are.
    front: Vec<u8>,
    data: Bytes,
    back: &'static [u8],
    written: usize,
    max_head: usize,
    max_headers: usize,
    /// A read returned the end of the stream (or failed).
    read_closed: bool,
    /// The connection closes with client bytes perhaps still coming: it lingers.
    unread_input: bool,
}

/// Why an exchange ended the connection.
enum Stop {
    /// The client closed, the connection failed, or a response could not be framed: nothing
    /// more can be written.
    Gone,
    /// A 101 was written: the socket goes to the request that asked for it.
    Upgrade(oneshot::Sender<Upgraded>),
}

/// Serves HTTP/1.1 on `io` until the client closes, a response closes the connection, the
/// connection fails, or [`Phase::stop`] finds it between requests. `sniffed`: bytes already
/// read from it. `first_head`: the deadline for the first request head, from accept.
///
/// A plain function returning an `async move` block, not an `async fn`: the connection's task
/// carries this future for its whole life, and an async fn's future keeps its arguments twice
/// (as passed, and as the locals they are moved into).
pub fn serve<'a, S, F, Fut>(
    io: S,
    sniffed: &[u8],
    first_head: Pin<Box<Sleep>>,
    limits: &'a DownstreamLimits,
    phase: &'a Phase,
    mut service: F,
) -> impl Future<Output = ()> + 'a
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    F: FnMut(Request<ClientBody>) -> Fut + 'a,
    Fut: Future<Output = Response<ResponseBody>> + 'a,
{
    let mut conn = Conn {
        io,
        pending: BytesMut::new(),
        front: Vec::new(),
        data: Bytes::new(),
        back: b"",
        written: 0,
        max_head: limits.max_head_bytes,
        max_headers: limits.max_headers,
        read_closed: false,
        unread_input: false,
    };
    if !sniffed.is_empty() {
        conn.pending.extend_from_slice(sniffed);
    }
    let mut head_deadline = first_head.deadline();
    let mut timer = first_head;
    async move {
        loop {
            let read = poll_fn(|cx| {
                phase.idle.store(true, Ordering::Relaxed);
                if phase.stopping() {
                    return Poll::Ready(Ok(None));
                }
                if let Poll::Ready(head) = conn.poll_head(cx) {
                    phase.idle.store(false, Ordering::Relaxed);
                    return Poll::Ready(head);
                }
                // The timer is re-armed when it fires, or when the deadline moved before it (the
                // idle timeout shorter than the first head's): requests move `head_deadline` on
                // without touching it, so a busy connection costs no timer work per request.
                if head_deadline < timer.deadline() {
                    timer.as_mut().reset(head_deadline);
                }
                while timer.as_mut().poll(cx).is_ready() {
                    if Instant::now() >= head_deadline {
                        // Closed without an answer, as nginx does on `client_header_timeout`.
                        return Poll::Ready(Ok(None));
                    }
                    timer.as_mut().reset(head_deadline);
                }
                Poll::Pending
            })
            .await
            // The head (about 250 bytes) becomes the request at once: kept as a local, it
            // would widen every connection's task.
            .map(|head| head.map(|head| start(head, &mut service)));
            let started = match read {
                Ok(Some(started)) => started,
                // The client closed, the read failed, or the head timed out or was stopped.
                Ok(None) | Err(Ok(())) => return,
                Err(Err(refused)) => {
                    // Boxed, as rare: its response would widen every connection's task.
                    if Box::pin(conn.respond_alone(refusal(refused))).await.is_ok() {
                        conn.linger().await;
                    }
                    return;
                }
            };
            match conn.exchange(started, phase).await {
                Ok(true) if !phase.stopping() => {
                    head_deadline = Instant::now() + limits.idle_timeout;
                }
                // Stopped after this response's head said keep-alive: close without waiting for
                // a client that has no reason to close first.
                Ok(true) => {
                    let _ = conn.io.shutdown().await;
                    return;
                }
                // Bytes the client may still be sending (an unread body, a pipelined request)
                // are drained first; a client that sent nothing more is closed at once, which
                // frees its connection slot without waiting for it.
                Ok(false) if conn.unread_input => {
                    conn.linger().await;
                    return;
                }
                Ok(false) => {
                    let _ = conn.io.shutdown().await;
                    return;
                }
                Err(Stop::Gone) => return,
                Err(Stop::Upgrade(upgrade)) => {
                    let Conn { io, pending, .. } = conn;
                    let _ = upgrade.send(Upgraded {
                        buf: pending.freeze(),
                        io: Box::new(io),
                    });
                    return;
                }
            }
        }
    }
}

/// The answer to a refused head. Its reason is static and names nothing internal.
fn refusal(error: HeadError) -> Response<ResponseBody> {
    let text: &'static str = match error {
        HeadError::Malformed(_) => "bad request\n",
        HeadError::TooLarge => "request header fields too large\n",
        HeadError::Version => "http version not supported\n",
    };
    let mut response = Response::new(ResponseBody::full(text.as_bytes()));
    *response.status_mut() = error.status();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The `Date` header value for now (both servers').
pub(super) fn date() -> HeaderValue {
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            if let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(now)) {
                *cached = (secs, value);
            }
        }
        cached.1.clone()
    })
}

/// A request handed to the request path, and what its exchange needs to know.
struct Started<Fut> {
    /// Boxed: the request path's future is large, and an idle connection should not carry
    /// room for it.
    responding: Pin<Box<Fut>>,
    feed: Option<Feed>,
    upgrade: Option<oneshot::Sender<Upgraded>>,
    keep_alive: bool,
    head_request: bool,
    http11: bool,
}

/// Builds the request from its head and starts the request path on it. Not part of the
/// exchange's future: an async fn keeps its arguments for its whole life, and the head
/// (about 250 bytes) would then widen every connection's task.
fn start<F, Fut>(head: RequestHead, service: &mut F) -> Started<Fut>
where
    F: FnMut(Request<ClientBody>) -> Fut,
    Fut: Future<Output = Response<ResponseBody>>,
{
    let RequestHead {
        mut request,
        framing,
        keep_alive,
        expect_continue,
        upgrade,
    } = head;
    let head_request = request.method() == Method::HEAD;
    let http11 = request.version() == Version::HTTP_11;
    let upgrade = if http11 && upgrade {
        let (tx, rx) = oneshot::channel();
        request
            .extensions_mut()
            .insert(OnUpgrade(Arc::new(Mutex::new(Some(rx)))));
        Some(tx)
    } else {
        None
    };
    let (body, feed) = match framing {
        Framing::Length(_) | Framing::Chunked => {
            let mailbox = Arc::new(Mutex::new(Mailbox::default()));
            let body = RequestBody {
                mailbox: mailbox.clone(),
                remaining: match framing {
                    Framing::Length(n) => Some(n),
                    _ => None,
                },
                ended: false,
            };
            let feed = Feed {
                mailbox,
                decoder: Decoder::new(framing),
                expect_continue,
                done: false,
            };
            (ClientBody::H1(body), Some(feed))
        }
        Framing::Empty | Framing::UntilClose => (ClientBody::Empty, None),
    };
    Started {
        responding: crate::pin_in_place(|| service(request.map(|()| body))),
        feed,
        upgrade,
        keep_alive,
        head_request,
        http11,
    }
}

/// What reading a head gave: a head, or `Ok(None)` for the end of the connection (the client
/// closed, perhaps mid-head); `Err(Ok(()))` the socket failed, `Err(Err(e))` a refused head.
type HeadRead = Result<Option<RequestHead>, Result<(), HeadError>>;

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Conn<S> {
    /// Reads until a whole head is here. While nothing has arrived no buffer of the
    /// connection's is allocated: reads go to the thread's `SCRATCH`.
    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<HeadRead> {
        loop {
            if self.pending.is_empty() {
                if self.read_closed {
                    return Poll::Ready(Ok(None));
                }
                match self.poll_head_scratch(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(done)) => return Poll::Ready(done),
                    // Part of a head, now in `pending`: read on below.
                    Poll::Ready(None) => {}
                }
            } else {
                match head::parse(&self.pending, self.max_head, self.max_headers) {
                    Ok(Parsed::Complete(len, head)) => {
                        self.pending.advance(len);
                        self.release_if_empty();
                        return Poll::Ready(Ok(Some(head)));
                    }
                    Ok(Parsed::Partial) => {}
                    Err(e) => return Poll::Ready(Err(Err(e))),
                }
            }
            // Parsed again only once a line may have ended, so a head trickled byte by byte
            // costs a parse per line, not per byte.
            loop {
                if self.read_closed {
                    return Poll::Ready(Ok(None));
                }
                let before = self.pending.len();
                let room = (self.max_head + 1).saturating_sub(before).max(1);
                match self.poll_read_pending(cx, room) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(0) => return Poll::Ready(Ok(None)),
                    Poll::Ready(_) => {
                        if self.pending[before..].contains(&b'\n')
                            || self.pending.len() > self.max_head
                        {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// One read into the thread's scratch buffer: a whole head (`Some`), or its start moved
    /// to `pending` (`None`).
    fn poll_head_scratch(&mut self, cx: &mut Context<'_>) -> Poll<Option<HeadRead>> {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut buf = ReadBuf::new(&mut scratch[..]);
            match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(_)) => {
                    self.read_closed = true;
                    Poll::Ready(Some(Err(Ok(()))))
                }
                Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                    self.read_closed = true;
                    Poll::Ready(Some(Ok(None)))
                }
                Poll::Ready(Ok(())) => {
                    let read = buf.filled();
                    match head::parse(read, self.max_head, self.max_headers) {
                        Ok(Parsed::Complete(len, head)) => {
                            if len < read.len() {
                                self.pending.extend_from_slice(&read[len..]);
                            }
                            Poll::Ready(Some(Ok(Some(head))))
                        }
                        Ok(Parsed::Partial) => {
                            self.pending.extend_from_slice(read);
                            Poll::Ready(None)
                        }
                        Err(e) => Poll::Ready(Some(Err(Err(e)))),
                    }
                }
            }
        })
    }

    /// Reads at most `max` bytes into `pending`. `Ready(0)`: the end of the stream or an
    /// error (the connection is closed for reading then).
    fn poll_read_pending(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<usize> {
        if self.read_closed {
            return Poll::Ready(0);
        }
        let want = max.clamp(1, BODY_READ);
        if self.pending.capacity() - self.pending.len() < want {
            self.pending.reserve(want);
        }
        let mut limited = (&mut self.pending).limit(want);
        let read = std::pin::pin!(self.io.read_buf(&mut limited));
        match read.poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(n)) => {
                if n == 0 {
                    self.read_closed = true;
                }
                Poll::Ready(n)
            }
            Poll::Ready(Err(_)) => {
                self.read_closed = true;
                Poll::Ready(0)
            }
        }
    }

    fn release_if_empty(&mut self) {
        if self.pending.is_empty() && self.pending.capacity() != 0 {
            self.pending = BytesMut::new();
        }
    }

    /// One request: runs the request path, writes its response, feeds its body. `Ok(true)`:
    /// the connection can take another request; `Ok(false)`: it closes after this response.
    /// (Destructured outside its future, which then holds each field once.)
    fn exchange<'a, Fut>(
        &'a mut self,
        started: Started<Fut>,
        phase: &'a Phase,
    ) -> impl Future<Output = Result<bool, Stop>> + 'a
    where
        Fut: Future<Output = Response<ResponseBody>> + 'a,
    {
        let Started {
            mut responding,
            mut feed,
            upgrade,
            mut keep_alive,
            head_request,
            http11,
        } = started;
        async move {
            let response = poll_fn(|cx| loop {
                if let Poll::Ready(response) = responding.as_mut().poll(cx) {
                    return Poll::Ready(Ok(response));
                }
                let step = match &mut feed {
                    Some(feed) if !feed.done && !feed.dropped() => self.poll_feed(cx, feed),
                    // The whole request is in: a read now sees the client leave (the request is
                    // then dropped, which frees its place in a queue) or a pipelined request.
                    _ => self.poll_watch(cx).map(Err),
                };
                match step {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(stop)) => return Poll::Ready(Err(stop)),
                    Poll::Pending => return Poll::Pending,
                }
            })
            .await?;
            drop(responding);
            let (mut parts, mut body) = response.into_parts();
            let mut facts = head::ResponseFacts::of(&parts.headers);
            if let Some(lines) = body.lines() {
                facts.include(lines);
            }
            if parts.status == StatusCode::SWITCHING_PROTOCOLS {
                // Only a request that asked to switch gets a 101 through.
                let upgrade = upgrade.ok_or(Stop::Gone)?;
                if !facts.date {
                    parts.headers.insert(header::DATE, date());
                }
                head::encode_head(
                    self.front(),
                    parts.status,
                    &parts.headers,
                    body.take_lines().as_ref(),
                );
                poll_fn(|cx| self.poll_write_out(cx))
                    .await
                    .map_err(|_| Stop::Gone)?;
                return Err(Stop::Upgrade(upgrade));
            }
            // The request path says `connection: close` after a refusal whose body was not read.
            if phase.stopping() || facts.close {
                keep_alive = false;
            }
            let framing = head::response_framing(
                &mut parts.headers,
                &facts,
                parts.status,
                head_request,
                http11,
                body.size_hint().exact(),
            );
            if framing == BodyFraming::UntilClose {
                keep_alive = false;
            }
            if !keep_alive {
                parts
                    .headers
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            } else if !http11 {
                parts
                    .headers
                    .insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
            }
            // The framing and `Connection` edits above add no `Date`.
            if !facts.date {
                parts.headers.insert(header::DATE, date());
            }
            // Taken in the statement that writes them: a local, even dropped, kept its room
            // across the awaits below, in every connection's task.
            head::encode_head(
                self.front(),
                parts.status,
                &parts.headers,
                body.take_lines().as_ref(),
            );
            let mut sent: u64 = 0;
            let mut body_done = framing == BodyFraming::None && body.is_end_stream();
            poll_fn(|cx| loop {
                // Queue the body's next frame behind what is being written, so the head and the
                // first bytes (often the whole body) leave in one write.
                if self.data.is_empty() && !body_done {
                    match Pin::new(&mut body).poll_frame(cx) {
                        Poll::Ready(Some(Ok(frame))) => {
                            let end = body.is_end_stream();
                            if let Ok(data) = frame.into_data() {
                                if !data.is_empty() && framing != BodyFraming::None {
                                    sent += data.len() as u64;
                                    if matches!(framing, BodyFraming::Length(n) if sent > n) {
                                        // More than the length said: the client would take the
                                        // rest for a response of its own.
                                        return Poll::Ready(Err(Stop::Gone));
                                    }
                                    if framing == BodyFraming::Chunked {
                                        head::chunk_size_line(data.len(), self.front());
                                        self.back = if end { b"\r\n0\r\n\r\n" } else { b"\r\n" };
                                    }
                                    self.data = data;
                                }
                            }
                            // (Trailers are not sent to HTTP/1.1 clients, as hyper does.)
                            if end {
                                body_done = true;
                                if framing == BodyFraming::Chunked && self.data.is_empty() {
                                    self.front().extend_from_slice(b"0\r\n\r\n");
                                }
                            }
                            continue;
                        }
                        Poll::Ready(None) => {
                            body_done = true;
                            if framing == BodyFraming::Chunked {
                                self.front().extend_from_slice(b"0\r\n\r\n");
                            }
                            continue;
                        }
                        // The upstream failed mid-body: the client must not take what it got for
                        // a whole response, so the connection ends without a last chunk.
                        Poll::Ready(Some(Err(_))) => return Poll::Ready(Err(Stop::Gone)),
                        Poll::Pending => {}
                    }
                }
                if self.has_output() {
                    match self.poll_write_out(cx) {
                        Poll::Ready(Ok(())) => continue,
                        Poll::Ready(Err(_)) => return Poll::Ready(Err(Stop::Gone)),
                        Poll::Pending => {}
                    }
                } else if body_done {
                    return Poll::Ready(Ok(()));
                }
                // Waiting for the body or the socket. The request body may still be on its way
                // (an upstream that answers before the upload ends).
                if let Some(feed) = &mut feed {
                    if !feed.done && !feed.dropped() {
                        match self.poll_feed(cx, feed) {
                            Poll::Ready(Ok(())) => continue,
                            Poll::Ready(Err(stop)) => return Poll::Ready(Err(stop)),
                            Poll::Pending => {}
                        }
                    }
                }
                return Poll::Pending;
            })
            .await?;
            if matches!(framing, BodyFraming::Length(n) if sent != n) {
                return Err(Stop::Gone);
            }
            drop(body);
            // A body the request path did not read to its end leaves the connection mid-request.
            if feed.is_some_and(|feed| !feed.done) {
                keep_alive = false;
                self.unread_input = true;
            }
            self.unread_input |= !self.pending.is_empty();
            Ok(keep_alive)
        }
    }

    /// Hands the request body its next frame once it asks. `Ready(Ok)`: a frame was handed
    /// over (poll the request path again).
    fn poll_feed(&mut self, cx: &mut Context<'_>, feed: &mut Feed) -> Poll<Result<(), Stop>> {
        {
            let mut mailbox = lock(&feed.mailbox);
            if !mailbox.wanted || mailbox.item.is_some() {
                if !mailbox
                    .loop_waker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    mailbox.loop_waker = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
        }
        if feed.expect_continue {
            if !self.has_output() {
                self.front()
                    .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            match self.poll_write_out(cx) {
                Poll::Ready(Ok(())) => feed.expect_continue = false,
                Poll::Ready(Err(_)) => return Poll::Ready(Err(Stop::Gone)),
                Poll::Pending => return Poll::Pending,
            }
        }
        let item = loop {
            match feed.decoder.decode(&mut self.pending) {
                Ok(Decoded::Data(data)) => break Some(Ok(Frame::data(data))),
                Ok(Decoded::Trailers(trailers)) => break Some(Ok(Frame::trailers(trailers))),
                Ok(Decoded::End) => break None,
                Ok(Decoded::NeedMore) => {}
                Err(e) => break Some(Err(framing_error(e))),
            }
            let want = feed
                .decoder
                .remaining()
                .map_or(BODY_READ, |n| usize::try_from(n).unwrap_or(BODY_READ));
            match self.poll_read_pending(cx, want) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(0) => {
                    if let Err(e) = feed.decoder.eof() {
                        break Some(Err(framing_error(e)));
                    }
                }
                Poll::Ready(_) => {}
            }
        };
        let failed = matches!(item, Some(Err(_)));
        let mut mailbox = lock(&feed.mailbox);
        mailbox.item = item;
        mailbox.wanted = false;
        if failed || feed.decoder.is_done() {
            mailbox.finished = true;
            feed.done = true;
            self.release_if_empty();
        }
        if let Some(waker) = &mailbox.body_waker {
            if !waker.will_wake(cx.waker()) {
                waker.wake_by_ref();
            }
        }
        Poll::Ready(Ok(()))
    }

    /// While a response is awaited with the whole request in: reads ahead (a pipelined
    /// request) up to the head limit, and reports the client's close.
    fn poll_watch(&mut self, cx: &mut Context<'_>) -> Poll<Stop> {
        loop {
            if self.pending.len() > self.max_head {
                // Enough read ahead: the client waits for this response first.
                return Poll::Pending;
            }
            if self.read_closed {
                return Poll::Ready(Stop::Gone);
            }
            // Through the thread's buffer: watching costs the connection no buffer of its own
            // unless the client does send something.
            let read = SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                let mut buf = ReadBuf::new(&mut scratch[..]);
                match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                        self.pending.extend_from_slice(buf.filled());
                        Poll::Ready(true)
                    }
                    Poll::Ready(_) => Poll::Ready(false),
                    Poll::Pending => Poll::Pending,
                }
            });
            match read {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(true) => {}
                Poll::Ready(false) => {
                    self.read_closed = true;
                    return Poll::Ready(Stop::Gone);
                }
            }
        }
    }

    /// The buffer for heads and chunk lines: the thread's, lent until what is in it has been
    /// written, so an idle connection keeps none.
    fn front(&mut self) -> &mut Vec<u8> {
        if self.front.capacity() == 0 {
            self.front = HEAD_BUFFER.with(Cell::take);
        }
        &mut self.front
    }

    fn has_output(&self) -> bool {
        self.written < self.front.len() + self.data.len() + self.back.len()
    }

    /// Writes `front`, `data` and `back` (one `writev` when the socket takes it all).
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.has_output() {
            let mut skip = self.written;
            let mut slices = [IoSlice::new(&[]); 3];
            let mut count = 0;
            for part in [&self.front[..], &self.data[..], self.back] {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                slices[count] = IoSlice::new(&part[skip..]);
                skip = 0;
                count += 1;
            }
            match Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        // TLS holds written bytes until a flush; for TCP it is a no-op.
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        give_back_head_buffer(std::mem::take(&mut self.front));
        self.data = Bytes::new();
        self.back = b"";
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Writes a response with a whole body that answers no request (a refused head).
    async fn respond_alone(&mut self, response: Response<ResponseBody>) -> io::Result<()> {
        let (mut parts, mut body) = response.into_parts();
        let data = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx))
            .await
            .and_then(Result::ok)
            .and_then(|frame| frame.into_data().ok())
            .unwrap_or_default();
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(data.len()));
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        parts.headers.insert(header::DATE, date());
        head::encode_head(self.front(), parts.status, &parts.headers, None);
        self.data = data;
        poll_fn(|cx| self.poll_write_out(cx)).await
    }

    /// Closes after a response that ends the connection: our side first (the client reads
    /// the end), then unread request bytes are drained for a while, so the close does not
    /// reset the connection under a response the client is still reading.
    async fn linger(&mut self) {
        if self.io.shutdown().await.is_err() || self.read_closed {
            return;
        }
        // Read into the thread's buffer: a buffer in this future would widen every
        // connection's task, lingering or not.
        let drain = async {
            let mut drained = 0;
            while drained < LINGER_BYTES {
                let read = poll_fn(|cx| {
                    SCRATCH.with(|scratch| {
                        let mut scratch = scratch.borrow_mut();
                        let mut buf = ReadBuf::new(&mut scratch[..]);
                        Pin::new(&mut self.io)
                            .poll_read(cx, &mut buf)
                            .map_ok(|()| buf.filled().len())
                    })
                })
                .await;
                match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => drained += n,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
    }
}

impl Feed {
    /// The request path dropped the body: nothing more is read for it.
    fn dropped(&self) -> bool {
        lock(&self.mailbox).dropped
    }
}

#[cfg(test)]
mod tests;
