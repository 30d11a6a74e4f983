//! Response bodies shared by the test servers.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::{Body, Frame, SizeHint};

/// The one body type every test server answers with.
pub(crate) type BoxBody = UnsyncBoxBody<Bytes, Infallible>;

pub(crate) fn full(bytes: impl Into<Bytes>) -> BoxBody {
    Full::new(bytes.into()).boxed_unsync()
}

pub(crate) fn empty() -> BoxBody {
    Empty::new().boxed_unsync()
}

/// A body that keeps a value alive until the body is finished or dropped.
///
/// Used to hold an in-flight guard for as long as a response is still being sent, which is what a
/// gateway's concurrency limit has to cover.
pub(crate) struct Holding<T> {
    inner: BoxBody,
    _held: T,
}

impl<T: Send + Unpin + 'static> Holding<T> {
    pub(crate) fn wrap(inner: BoxBody, held: T) -> BoxBody {
        Holding { inner, _held: held }.boxed_unsync()
    }
}

impl<T: Unpin> Body for Holding<T> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pub(crate) fn boxed<B>(body: B) -> BoxBody
where
    B: Body<Data = Bytes, Error = Infallible> + Send + 'static,
{
    body.boxed_unsync()
}
