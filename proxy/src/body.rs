//! The response body type: either a small synthetic body or a streamed upstream body.
//!
//! The upstream variant owns the request's slot (its in-flight count, see `activator.rs`) and
//! its pooled connection, and gives both back the moment the body ends: the slot goes to the
//! next waiter or is freed, and the HTTP/1.1 sender returns to this thread's pool. If the body
//! is dropped early (client gone, upstream reset), the slot is still released and the
//! connection, whose state is unknown, is closed rather than reused.
//!
//! Revisions may bound the body: an idle timeout between chunks and the request's overall
//! deadline. Only bodies with a bound carry a timer.

use crate::activator::{Counted, Slot};
use crate::upstream;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pub enum ResponseBody {
    Full(Option<Bytes>),
    Upstream(UpstreamBody),
}

/// What a request holds until its response body ends.
pub struct Guards {
    pub slot: Slot,
    /// The revision concurrency count, for Revision backends.
    pub counted: Option<Counted>,
}

pub struct UpstreamBody {
    inner: Incoming,
    checkin: Option<(u64, http1::SendRequest<Incoming>)>,
    guards: Option<Guards>,
    timer: Option<BodyTimer>,
}

/// Bounds on a response body.
pub struct BodyTimer {
    idle: Option<Duration>,
    deadline: Option<Instant>,
    sleep: Pin<Box<Sleep>>,
}

impl BodyTimer {
    /// `None` when there is nothing to bound.
    pub fn new(idle: Option<Duration>, deadline: Option<Instant>) -> Option<BodyTimer> {
        let first = BodyTimer::next(idle, deadline)?;
        Some(BodyTimer {
            idle,
            deadline,
            sleep: Box::pin(tokio::time::sleep_until(first)),
        })
    }

    fn next(idle: Option<Duration>, deadline: Option<Instant>) -> Option<Instant> {
        let idle_at = idle.map(|d| Instant::now() + d);
        match (idle_at, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn progressed(&mut self) {
        if self.idle.is_some() {
            if let Some(at) = BodyTimer::next(self.idle, self.deadline) {
                self.sleep.as_mut().reset(at);
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Upstream(#[from] hyper::Error),
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
        inner: Incoming,
        checkin: Option<(u64, http1::SendRequest<Incoming>)>,
        guards: Guards,
        timer: Option<BodyTimer>,
    ) -> Self {
        let mut body = UpstreamBody {
            inner,
            checkin,
            guards: Some(guards),
            timer,
        };
        if body.inner.is_end_stream() {
            body.finish();
        }
        ResponseBody::Upstream(body)
    }
}

impl UpstreamBody {
    fn finish(&mut self) {
        if let (Some((_, sender)), Some(guards)) = (self.checkin.take(), &self.guards) {
            // The slot's endpoint is the one the request went to.
            upstream::checkin(guards.slot.endpoint(), sender);
        }
        self.guards = None;
        self.timer = None;
    }

    fn abandon(&mut self) {
        self.checkin = None;
        self.guards = None;
        self.timer = None;
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
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ResponseBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Upstream(body) => {
                let frame = match Pin::new(&mut body.inner).poll_frame(cx) {
                    Poll::Ready(frame) => frame,
                    Poll::Pending => {
                        if let Some(timer) = &mut body.timer {
                            if timer.sleep.as_mut().poll(cx).is_ready() {
                                body.abandon();
                                return Poll::Ready(Some(Err(BodyError::Timeout)));
                            }
                        }
                        return Poll::Pending;
                    }
                };
                match &frame {
                    None => body.finish(),
                    Some(Ok(_)) if body.inner.is_end_stream() => body.finish(),
                    Some(Ok(_)) => {
                        if let Some(timer) = &mut body.timer {
                            timer.progressed();
                        }
                    }
                    Some(Err(_)) => body.abandon(),
                }
                Poll::Ready(frame.map(|f| f.map_err(BodyError::from)))
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
