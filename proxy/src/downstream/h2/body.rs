//! A client's request body, read from its stream in the connection's state; each chunk read
//! gives its window back.

use super::state::{ClientStreamError, Shared, Side};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pub struct H2Body {
    shared: Arc<Shared>,
    id: u32,
    ended: bool,
    /// What `Content-Length` says is left to read, when the head had one.
    remaining: Option<u64>,
}

impl H2Body {
    pub(crate) fn new(shared: Arc<Shared>, id: u32, content_length: Option<u64>) -> H2Body {
        H2Body {
            shared,
            id,
            ended: false,
            remaining: content_length,
        }
    }
}

impl Drop for H2Body {
    fn drop(&mut self) {
        self.shared.lock().release(self.id, Side::RequestBody);
    }
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = ClientStreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientStreamError>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let frame = this.shared.lock().poll_body(cx, this.id, &mut this.ended);
        if let Poll::Ready(Some(Ok(frame))) = &frame {
            if let (Some(left), Some(data)) = (&mut this.remaining, frame.data_ref()) {
                *left = left.saturating_sub(data.len() as u64);
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(left) => SizeHint::with_exact(left),
            None => SizeHint::default(),
        }
    }
}
