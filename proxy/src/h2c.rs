//! The h2c (HTTP/2 prior knowledge) upstream client, our own.
//!
//! It replaced the `h2` crate's client (which had replaced hyper's): in a gRPC unary call
//! through sluice, about half the instructions were the `h2` crate's, and its client side
//! (a stream state machine built for every peer and option, a frame queue that moves large
//! frames through several buffers, HPACK with Huffman coding and table lookups on the
//! way out) did far more than a proxy talking to its own backends needs. Here the request's
//! task encodes its HEADERS and DATA straight into the connection's write buffer (HPACK
//! without indexing or Huffman, so encoding is copying), and the connection's task reads the
//! server's frames, decodes them ([`hpack`], which checks everything it reads) and hands each
//! stream its head, data and trailers. What a server may do wrong is checked as RFC 9113 says
//! (flow control, frame sizes, stream states, malformed heads, Content-Length); what a
//! server may push is bounded: header lists (16 KiB), header blocks, streams we reset for its
//! errors, and what we queue for a server that does not read.
//!
//! Downstream, clients are served by our own HTTP/2 server (`downstream/h2.rs`), on the same
//! frame and HPACK code.

pub mod common;
pub mod connection;
pub mod frame;
pub mod hpack;

use crate::idle::RequestBodyError;
use crate::upstream::Forwarding;
use bytes::Bytes;
use connection::{Shared, Side};
use h2::Reason;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use std::future::poll_fn;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::net::TcpStream;

/// How a stream (or its whole connection) failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StreamError {
    #[error("upstream h2 connection: {0}")]
    Io(Arc<std::io::Error>),
    #[error("upstream h2 connection closed")]
    Closed,
    #[error("upstream broke HTTP/2: {what} ({reason})")]
    Protocol { reason: Reason, what: &'static str },
    #[error("upstream said GOAWAY ({0})")]
    GoAway(Reason),
    #[error("upstream reset the stream ({0})")]
    Reset(Reason),
    #[error("stream cancelled")]
    Cancelled,
}

impl StreamError {
    /// The server never processed the stream (RFC 9113 §8.7): above its GOAWAY's last stream,
    /// or refused with REFUSED_STREAM. The request may go again, on another connection.
    pub fn unprocessed(&self) -> bool {
        matches!(
            self,
            StreamError::GoAway(_) | StreamError::Reset(Reason::REFUSED_STREAM)
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum H2Error {
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The client's request body failed (idle timeout or a client error): not the upstream's
    /// fault, mapped to 408/400 in `error.rs`.
    #[error("request body: {0}")]
    RequestBody(RequestBodyError),
}

/// One multiplexed upstream connection, shared by every request to its endpoint on a thread.
pub struct Sender {
    shared: Arc<Shared>,
}

impl Clone for Sender {
    fn clone(&self) -> Sender {
        self.shared.add_sender();
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        // The last one gone (and no stream left), the connection ends.
        self.shared.drop_sender();
    }
}

/// A request's place in its connection's queue for a stream slot, while it has one: dropped
/// (the request given up) it leaves the queue, or passes its slot on if it was called.
struct QueuePlace<'a> {
    shared: &'a Shared,
    ticket: Option<u64>,
}

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket {
            self.shared.lock().leave_queue(ticket);
        }
    }
}

/// A request that was not sent: the connection takes no new streams, so another one may take
/// it.
pub struct Unsent<B>(pub Request<B>, pub StreamError);

impl Sender {
    /// Starts a connection over a connected socket: our preface and SETTINGS are written by
    /// its task, which runs until the server closes, the connection fails, or every `Sender`
    /// and stream is gone.
    pub fn handshake(io: TcpStream) -> Sender {
        Sender {
            shared: connection::start(io),
        }
    }

    /// The connection takes no new streams (GOAWAY, failure, or its end).
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Sends `req` and returns the response head. `Err(Ok(unsent))`: the connection could not
    /// take a new stream, or the server did not process it (GOAWAY, REFUSED_STREAM) before any
    /// of its body was read, so the request is whole and may go again. A request body error (the client's) comes back as
    /// [`H2Error::RequestBody`] when it ends the exchange before the response head.
    // `async move` block, not `async fn`: as an argument the request would take room in the
    // future twice (passed, then split), and this future is part of every request's.
    pub fn send<B>(
        &mut self,
        req: Request<B>,
    ) -> impl Future<Output = Result<Response<RecvBody>, Result<Unsent<B>, H2Error>>> + '_
    where
        B: Body<Data = Bytes, Error = RequestBodyError> + Unpin + Send + 'static,
    {
        self.send_forwarded(req, &Forwarding::NONE)
    }

    /// [`Sender::send`], with `forwarding`'s fields after the request's own.
    #[allow(clippy::manual_async_fn)]
    pub fn send_forwarded<'a, B>(
        &'a mut self,
        req: Request<B>,
        forwarding: &'a Forwarding<'a>,
    ) -> impl Future<Output = Result<Response<RecvBody>, Result<Unsent<B>, H2Error>>> + 'a
    where
        B: Body<Data = Bytes, Error = RequestBodyError> + Unpin + Send + 'static,
    {
        let (mut parts, body) = req.into_parts();
        async move {
            let end = body.is_end_stream();
            // As hyper's client did: a body of known length says so, a zero length only for
            // methods whose body means something.
            if let Some(len) = body.size_hint().exact() {
                let payload = !matches!(
                    parts.method,
                    Method::GET | Method::HEAD | Method::DELETE | Method::CONNECT
                );
                if (len != 0 || payload) && !parts.headers.contains_key(header::CONTENT_LENGTH) {
                    parts
                        .headers
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                }
            }
            let mut place = QueuePlace {
                shared: &self.shared,
                ticket: None,
            };
            let opened = poll_fn(|cx| {
                self.shared
                    .lock()
                    .open(cx, &mut place.ticket, &parts, forwarding, end)
            })
            .await;
            drop(place);
            let id = match opened {
                Ok(id) => id,
                Err(error) => return Err(Ok(Unsent(Request::from_parts(parts, body), error))),
            };
            let response = StreamRef {
                shared: self.shared.clone(),
                id,
                side: Side::Recv,
            };
            // A body-less request keeps its (empty) body here, for a retry.
            let (mut pipe, kept) = if end {
                (None, Some(body))
            } else {
                let stream = StreamRef {
                    shared: self.shared.clone(),
                    id,
                    side: Side::Send,
                };
                let pipe = BodyPipe {
                    body,
                    stream,
                    waiting: None,
                    started: false,
                };
                (Some(pipe), None)
            };
            let mut body_error = None;
            let head = poll_fn(|cx| {
                if let Some(p) = &mut pipe {
                    if let Poll::Ready(done) = p.poll_send(cx) {
                        pipe = None;
                        if let Err(PipeError::Body(e)) = done {
                            // The stream was reset: the head fails next, with less to say.
                            body_error = Some(e);
                        }
                    }
                }
                self.shared.lock().poll_head(cx, id)
            })
            .await;
            let (head, ended) = match (head, body_error) {
                (Ok(head), _) => head,
                (Err(_), Some(e)) => return Err(Err(H2Error::RequestBody(e))),
                (Err(e), None) => {
                    if e.unprocessed() {
                        let body = match pipe {
                            Some(pipe) if !pipe.started => Some(pipe.body),
                            _ => kept,
                        };
                        if let Some(body) = body {
                            return Err(Ok(Unsent(Request::from_parts(parts, body), e)));
                        }
                    }
                    return Err(Err(H2Error::Stream(e)));
                }
            };
            if let Some(mut pipe) = pipe {
                // The response came first: the body goes on beside it.
                tokio::spawn(async move {
                    let _ = poll_fn(|cx| pipe.poll_send_until_reset(cx)).await;
                });
            }
            Ok(head.map(|()| RecvBody {
                stream: response,
                ended,
            }))
        }
    }
}

/// A handle on one side of a stream; letting go of it before that side ended cancels the
/// stream.
struct StreamRef {
    shared: Arc<Shared>,
    id: u32,
    side: Side,
}

impl Drop for StreamRef {
    fn drop(&mut self) {
        self.shared.lock().release(self.id, self.side);
    }
}

enum PipeError<E> {
    Body(E),
    /// Reset, or the connection is gone.
    Stream,
}

/// A request body on its way into its stream.
struct BodyPipe<B> {
    body: B,
    stream: StreamRef,
    /// A chunk read and not yet all sent, and whether it ends the body.
    waiting: Option<(Bytes, bool)>,
    /// The body has been polled for a frame: it is no longer whole, so not sent again.
    started: bool,
}

impl<B: Body<Data = Bytes> + Unpin> BodyPipe<B> {
    /// Sends the body frame by frame. A chunk is read only once the last one is sent, so a
    /// stream holds at most one chunk and its share of the connection's write buffer.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PipeError<B::Error>>> {
        loop {
            if let Some((data, end)) = &mut self.waiting {
                let sent = self
                    .stream
                    .shared
                    .lock()
                    .poll_send_data(cx, self.stream.id, data, *end);
                if ready!(sent).is_err() {
                    return Poll::Ready(Err(PipeError::Stream));
                }
                let end = *end;
                self.waiting = None;
                if end {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            let polled = Pin::new(&mut self.body).poll_frame(cx);
            self.started |= polled.is_ready();
            let frame = match ready!(polled) {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => {
                    self.stream.shared.lock().cancel(self.stream.id);
                    return Poll::Ready(Err(PipeError::Body(e)));
                }
                None => {
                    // Ended without an end-of-stream flag on the last chunk: an empty one.
                    self.waiting = Some((Bytes::new(), true));
                    continue;
                }
            };
            match frame.into_data() {
                Ok(data) => {
                    let end = self.body.is_end_stream();
                    if !data.is_empty() || end {
                        self.waiting = Some((data, end));
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        let sent = self
                            .stream
                            .shared
                            .lock()
                            .send_trailers(self.stream.id, &trailers);
                        return Poll::Ready(sent.map_err(|_| PipeError::Stream));
                    }
                }
            }
        }
    }

    /// [`BodyPipe::poll_send`] on its own task (the response came first), which also ends
    /// once the stream is reset while the client's body is quiet: the body is let go then,
    /// not at the client's next chunk. (Before the response, the head's future sees the
    /// reset, and a body not yet started is kept for a retry.)
    fn poll_send_until_reset(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), PipeError<B::Error>>> {
        let sent = self.poll_send(cx);
        if sent.is_pending()
            && self
                .stream
                .shared
                .lock()
                .poll_send_closed(cx, self.stream.id)
                .is_ready()
        {
            return Poll::Ready(Err(PipeError::Stream));
        }
        sent
    }
}

/// A response body read from an upstream stream; each chunk read gives its window back.
pub struct RecvBody {
    stream: StreamRef,
    /// The body had ended as of the last poll: `is_end_stream` is asked after every frame,
    /// and answering it from here saves a lock and a lookup each time.
    ended: bool,
}

impl std::fmt::Debug for RecvBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBody")
            .field("stream", &self.stream.id)
            .finish()
    }
}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        let this = self.get_mut();
        let id = this.stream.id;
        let frame = this.stream.shared.lock().poll_body(cx, id, &mut this.ended);
        if let Poll::Ready(None) = frame {
            this.ended = true;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        // Relayed as it comes (as hyper's client did).
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests;
