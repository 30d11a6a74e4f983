//! The response body type: either a small synthetic body or a streamed upstream body.
//!
//! The upstream variant owns the request's in-flight count and its pooled connection, and gives
//! both back the moment the body ends: the count drops, and the HTTP/1.1 sender returns to this
//! thread's pool. If the body is dropped early (client gone, upstream reset), the count still
//! drops and the connection, whose state is unknown, is closed rather than reused.

use crate::upstream::{self, InFlight};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

pub enum ResponseBody {
    Full(Option<Bytes>),
    Upstream(UpstreamBody),
}

pub struct UpstreamBody {
    inner: Incoming,
    checkin: Option<(u64, http1::SendRequest<Incoming>)>,
    in_flight: Option<InFlight>,
}

impl ResponseBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        ResponseBody::Full(Some(bytes.into()))
    }

    pub fn empty() -> Self {
        ResponseBody::Full(None)
    }

    pub fn upstream(
        inner: Incoming,
        checkin: Option<(u64, http1::SendRequest<Incoming>)>,
        in_flight: InFlight,
    ) -> Self {
        let mut body = UpstreamBody {
            inner,
            checkin,
            in_flight: Some(in_flight),
        };
        if body.inner.is_end_stream() {
            body.finish();
        }
        ResponseBody::Upstream(body)
    }
}

impl UpstreamBody {
    fn finish(&mut self) {
        if let Some((key, sender)) = self.checkin.take() {
            upstream::checkin(key, sender);
        }
        self.in_flight = None;
    }
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
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ResponseBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Upstream(body) => {
                let frame = ready!(Pin::new(&mut body.inner).poll_frame(cx));
                match &frame {
                    None => body.finish(),
                    Some(Ok(_)) if body.inner.is_end_stream() => body.finish(),
                    Some(Ok(_)) => {}
                    Some(Err(_)) => {
                        body.checkin = None;
                        body.in_flight = None;
                    }
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Full(bytes) => bytes.is_none(),
            ResponseBody::Upstream(body) => body.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            ResponseBody::Full(None) => SizeHint::with_exact(0),
            ResponseBody::Upstream(body) => body.inner.size_hint(),
        }
    }
}
