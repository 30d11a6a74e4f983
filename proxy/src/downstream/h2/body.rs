//! The `h2` crate's stream bodies as the server uses them: a response body piped into a
//! stream ([`Pipe`]) and a client's request body read from one ([`H2Body`]).

use bytes::Bytes;
use h2::{Reason, RecvStream, SendStream};
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// A response body on its way into a client's h2 stream.
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

/// A client's request body, read from its h2 stream; each chunk read gives its window back.
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
