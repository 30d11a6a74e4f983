//! The h2c (HTTP/2 prior knowledge) upstream client: the `h2` crate driven from the request's
//! own task.
//!
//! hyper's h2 client hands every request over a channel to its connection task, which spawns
//! a task per request to await the response (a gRPC call's body pipe made a second one) and
//! sends that back over a oneshot; without them a gRPC unary call takes 11% fewer instructions
//! (callgrind, `perf/RESULTS.md` "h2c and gRPC request path"). Here the request's task opens the stream, sends the body and awaits the response head
//! itself; the only task is the connection's (h2's `Connection`: socket I/O, flow control,
//! pings). A request body still streaming when the response head arrives (a client or bidi
//! gRPC stream) moves to a task of its own then, as hyper does.

pub mod hpack;

use crate::idle::RequestBodyError;
use bytes::Bytes;
use h2::client::SendRequest;
use h2::{Reason, RecvStream, SendStream};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::net::TcpStream;

/// hyper's client defaults, which this client replaced, set explicitly: 2 MiB per stream and
/// 5 MiB per connection of receive window (few WINDOW_UPDATEs on small bodies), 1 MiB of send
/// buffer per stream, 16 KiB frames and header lists, and 100 streams until the server's
/// SETTINGS say otherwise.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;
const MAX_SEND_BUFFER: usize = 1024 * 1024;
const MAX_FRAME: u32 = 16 * 1024;
const MAX_HEADER_LIST: u32 = 16 * 1024;
const INITIAL_MAX_SEND_STREAMS: usize = 100;
/// Streams we reset because the server broke the protocol, before we give up on the
/// connection (h2's and hyper's default).
const MAX_LOCAL_ERROR_RESETS: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum H2Error {
    #[error("upstream h2: {0}")]
    Protocol(#[from] h2::Error),
    /// The client's request body failed (idle timeout or a client error): not the upstream's
    /// fault, mapped to 408/400 in `error.rs`.
    #[error("request body: {0}")]
    RequestBody(RequestBodyError),
}

/// One multiplexed upstream connection, shared by every request to its endpoint on a thread.
#[derive(Clone)]
pub struct Sender {
    send: SendRequest<Bytes>,
    /// Set when the connection's task ends (the peer closed it, or it failed).
    closed: Arc<AtomicBool>,
}

/// A request that was not sent: the connection had already failed or closed, so another one
/// may take it.
pub struct Unsent<B>(pub Request<B>, pub h2::Error);

impl Sender {
    /// The h2 handshake (our preface and SETTINGS) over a connected socket, and the task that
    /// drives the connection.
    pub async fn handshake(io: TcpStream) -> Result<Sender, h2::Error> {
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_send_buffer_size(MAX_SEND_BUFFER)
            .max_frame_size(MAX_FRAME)
            .max_header_list_size(MAX_HEADER_LIST)
            .initial_max_send_streams(INITIAL_MAX_SEND_STREAMS)
            .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
            .enable_push(false)
            .handshake(io)
            .await?;
        let closed = Arc::new(AtomicBool::new(false));
        let flag = closed.clone();
        // Ends when the peer closes, on a connection error, or once every `Sender` and stream
        // is gone (h2 then says GOAWAY and closes).
        tokio::spawn(async move {
            let _ = connection.await;
            flag.store(true, Ordering::Relaxed);
        });
        Ok(Sender { send, closed })
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Sends `req` and returns the response head. `Err(Ok(unsent))`: the connection could not
    /// take a new stream, nothing was sent. A request body error (the client's) comes back as
    /// [`H2Error::RequestBody`] when it ends the exchange before the response head.
    pub async fn send<B>(
        &mut self,
        req: Request<B>,
    ) -> Result<Response<H2Body>, Result<Unsent<B>, H2Error>>
    where
        B: Body<Data = Bytes, Error = RequestBodyError> + Unpin + Send + 'static,
    {
        if let Err(error) = poll_fn(|cx| self.send.poll_ready(cx)).await {
            // A GOAWAY (or a failure) came in: no new stream will open here, though the
            // connection's task may run on for the streams it still carries. Closed for the
            // pool now, so the retry (and every later request) opens a new connection.
            self.closed.store(true, Ordering::Relaxed);
            return Err(Ok(Unsent(req, error)));
        }
        let (parts, body) = req.into_parts();
        let mut head = Request::from_parts(parts, ());
        let end = body.is_end_stream();
        // As hyper's client did: a body of known length says so (h2 checks the DATA sent
        // against it), a zero length only for methods whose body means something.
        if let Some(len) = body.size_hint().exact() {
            let payload = !matches!(
                *head.method(),
                Method::GET | Method::HEAD | Method::DELETE | Method::CONNECT
            );
            if (len != 0 || payload) && !head.headers().contains_key(header::CONTENT_LENGTH) {
                head.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            }
        }
        let (mut response, stream) = self
            .send
            .send_request(head, end)
            .map_err(|e| Err(H2Error::Protocol(e)))?;
        // A failed request body cancels the stream: the client's doing, not the server's.
        let mut pipe = (!end).then(|| Pipe::new(body, stream, Reason::CANCEL));
        let mut body_error = None;
        let head = poll_fn(|cx| {
            if let Some(p) = &mut pipe {
                if let Poll::Ready(done) = p.poll_send(cx) {
                    pipe = None;
                    if let Err(PipeError::Body(e)) = done {
                        // The stream was reset: the response future fails next, with less
                        // to say than this.
                        body_error = Some(e);
                    }
                }
            }
            Pin::new(&mut response).poll(cx)
        })
        .await;
        let head = match (head, body_error) {
            (Ok(head), _) => head,
            (Err(_), Some(e)) => return Err(Err(H2Error::RequestBody(e))),
            (Err(e), None) => return Err(Err(H2Error::Protocol(e))),
        };
        if let Some(mut pipe) = pipe {
            // The response came first: the body goes on beside it.
            tokio::spawn(async move {
                let _ = poll_fn(|cx| pipe.poll_send(cx)).await;
            });
        }
        // No length: the response is relayed as it comes (as hyper's client did).
        Ok(head.map(|recv| H2Body::new(recv, None)))
    }
}

/// A body on its way into an h2 stream: a request's to an upstream (here), a response's to a
/// client (`downstream::h2`).
pub(crate) struct Pipe<B> {
    body: B,
    stream: SendStream<Bytes>,
    /// A chunk read and waiting for the stream to have room, and whether it ends the body.
    waiting: Option<(Bytes, bool)>,
    /// The reset sent when the body fails.
    on_error: Reason,
}

pub(crate) enum PipeError<E> {
    Body(E),
    /// Reset by the peer, or the connection is gone.
    Stream,
}

impl<B: Body<Data = Bytes> + Unpin> Pipe<B> {
    pub(crate) fn new(body: B, stream: SendStream<Bytes>, on_error: Reason) -> Pipe<B> {
        Pipe {
            body,
            stream,
            waiting: None,
            on_error,
        }
    }

    /// Sends the body frame by frame. A chunk is read before any window is asked for (asking
    /// first would hold connection window for a body with nothing to send, which can stall
    /// the other streams of a peer that opens its window only once it is used up: hyper
    /// #4003). It is then held until the stream has room, and sent; only then is the next one
    /// read, so at most `max_send_buffer_size` and one chunk wait per stream.
    pub(crate) fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), PipeError<B::Error>>> {
        loop {
            // Registered whatever we wait for next, so a reset wakes this task.
            if self.stream.poll_reset(cx).is_ready() {
                return Poll::Ready(Err(PipeError::Stream));
            }
            if self.waiting.is_some() {
                while self.stream.capacity() == 0 {
                    match ready!(self.stream.poll_capacity(cx)) {
                        Some(Ok(0)) => {}
                        Some(Ok(_)) => break,
                        Some(Err(_)) | None => return Poll::Ready(Err(PipeError::Stream)),
                    }
                }
                if let Some((data, end)) = self.waiting.take() {
                    if self.stream.send_data(data, end).is_err() {
                        return Poll::Ready(Err(PipeError::Stream));
                    }
                    if end {
                        return Poll::Ready(Ok(()));
                    }
                }
                continue;
            }
            let frame = match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => {
                    self.stream.send_reset(self.on_error);
                    return Poll::Ready(Err(PipeError::Body(e)));
                }
                None => {
                    // Ended without an end-of-stream flag on the last chunk: an empty one.
                    let sent = self.stream.send_data(Bytes::new(), true);
                    return Poll::Ready(sent.map_err(|_| PipeError::Stream));
                }
            };
            let frame = match frame.into_data() {
                Ok(data) => {
                    let end = self.body.is_end_stream();
                    if data.is_empty() {
                        // Needs no window.
                        if self.stream.send_data(data, end).is_err() {
                            return Poll::Ready(Err(PipeError::Stream));
                        }
                        if end {
                            return Poll::Ready(Ok(()));
                        }
                    } else {
                        // One byte asked for: h2 raises it to the chunk's length when the
                        // chunk is sent.
                        self.stream.reserve_capacity(1);
                        self.waiting = Some((data, end));
                    }
                    continue;
                }
                Err(frame) => frame,
            };
            if let Ok(trailers) = frame.into_trailers() {
                // No more DATA: give back the capacity asked for.
                self.stream.reserve_capacity(0);
                let sent = self.stream.send_trailers(trailers);
                return Poll::Ready(sent.map_err(|_| PipeError::Stream));
            }
        }
    }
}

/// A body read from an h2 stream (an upstream's response, a client's request); each chunk
/// read gives its window back.
pub struct H2Body {
    recv: RecvStream,
    data_done: bool,
    /// What `Content-Length` says is left to read, when the head had one.
    remaining: Option<u64>,
}

impl H2Body {
    pub fn new(recv: RecvStream, content_length: Option<u64>) -> H2Body {
        H2Body {
            recv,
            data_done: false,
            remaining: content_length,
        }
    }
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = self.get_mut();
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    if let Some(left) = &mut this.remaining {
                        *left = left.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                // A server may end a response it has fully sent with a reset (RFC 9113
                // §8.1): NO_ERROR, or CANCEL as some do; hyper reads both as the end.
                Some(Err(e)) if matches!(e.reason(), Some(Reason::NO_ERROR | Reason::CANCEL)) => {
                    return Poll::Ready(None)
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => this.data_done = true,
            }
        }
        match ready!(this.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(left) => SizeHint::with_exact(left),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests;
