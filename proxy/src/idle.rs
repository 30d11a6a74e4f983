//! Idle bounds on streams, so a peer that stops moving bytes cannot hold a connection, a
//! request body, or a revision slot forever (Envoy's `stream_idle_timeout`, default 5 min).
//!
//! - [`WriteStall`] wraps a downstream connection: a write that stays blocked (the client
//!   stopped reading) for the timeout fails the connection, which drops its streams and so
//!   releases their slots and upstream connections.
//! - [`RequestBody`] wraps a request body on its way upstream: no byte from the client for
//!   the timeout ends it with [`RequestBodyTimeout`] (the client gets 408).
//! - [`copy_bidirectional_idle`] is a websocket tunnel that ends when neither side sent a
//!   byte for its timeout.
//!
//! Timers are armed lazily, on the first `Pending`: a request that never waits allocates none.

use crate::body::BodyTimer;
use crate::downstream::{ClientBody, ClientBodyError};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// A lazily allocated idle timer: [`BodyTimer`] with no deadline, armed at the first wait after
/// progress, then kept until the next progress. `Duration::ZERO` disables it.
struct IdleTimer(Option<BodyTimer>);

impl IdleTimer {
    fn new(timeout: Duration) -> Self {
        IdleTimer(BodyTimer::new(
            (!timeout.is_zero()).then_some(timeout),
            None,
        ))
    }

    fn progressed(&mut self) {
        if let Some(timer) = &mut self.0 {
            timer.progressed();
        }
    }

    /// Called when the inner operation is `Pending`: true once the timeout has passed
    /// since the last progress (registering the waker until then).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.0.as_mut().is_some_and(|timer| timer.expired(cx))
    }
}

/// A downstream connection whose writes fail once blocked for the stream idle timeout.
pub struct WriteStall<T> {
    inner: T,
    timer: IdleTimer,
}

impl<T> WriteStall<T> {
    pub fn new(inner: T, timeout: Duration) -> Self {
        WriteStall {
            inner,
            timer: IdleTimer::new(timeout),
        }
    }

    /// Only bytes written count as progress: a flush that returns at once (TCP's) must not
    /// re-arm the timer between two blocked writes.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if let Poll::Ready(Ok(n)) = result {
            if n > 0 {
                self.timer.progressed();
            }
            return result;
        }
        self.after_other(cx, result)
    }

    fn after_other<R>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match result {
            Poll::Pending if self.timer.expired(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client stopped reading (stream idle timeout)",
            ))),
            other => other,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteStall<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteStall<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after_write(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.after_other(cx, result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.after_other(cx, result)
    }
}

/// The request body sent upstream: the client's body, ended by an error when the client
/// sends nothing for the stream idle timeout.
pub struct RequestBody {
    inner: ClientBody,
    timer: IdleTimer,
}

/// The client sent no request body byte for the stream idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("request body idle timeout")]
pub struct RequestBodyTimeout;

#[derive(Debug, thiserror::Error)]
pub enum RequestBodyError {
    #[error(transparent)]
    Client(#[from] ClientBodyError),
    #[error(transparent)]
    Timeout(#[from] RequestBodyTimeout),
}

impl RequestBody {
    pub fn new(inner: ClientBody, idle: Duration) -> Self {
        RequestBody {
            inner,
            timer: IdleTimer::new(idle),
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending if this.timer.expired(cx) => {
                Poll::Ready(Some(Err(RequestBodyTimeout.into())))
            }
            Poll::Pending => Poll::Pending,
            Poll::Ready(frame) => {
                this.timer.progressed();
                Poll::Ready(frame.map(|f| f.map_err(RequestBodyError::from)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Records the last time bytes moved through either side of a tunnel.
struct Activity<T> {
    inner: T,
    clock: Arc<AtomicU64>,
    origin: Instant,
}

impl<T> Activity<T> {
    fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.clock.store(ms, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Activity<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.touch();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Activity<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// How a tunnel ended.
#[derive(Debug)]
pub enum TunnelEnd {
    /// Both sides closed (or one failed): bytes copied each way.
    Closed(io::Result<(u64, u64)>),
    /// Neither side sent or took a byte for the idle timeout.
    Idle,
}

/// `tokio::io::copy_bidirectional`, ended when no byte moves either way for `idle`
/// (`Duration::ZERO`: never). Tunnels are long-lived and few, so one shared clock each is fine.
pub async fn copy_bidirectional_idle<A, B>(a: A, b: B, idle: Duration) -> TunnelEnd
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let origin = Instant::now();
    let clock = Arc::new(AtomicU64::new(0));
    let mut a = Activity {
        inner: a,
        clock: clock.clone(),
        origin,
    };
    let mut b = Activity {
        inner: b,
        clock: clock.clone(),
        origin,
    };
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    if idle.is_zero() {
        return TunnelEnd::Closed(copy.await);
    }
    let watchdog = async {
        let mut seen = u64::MAX;
        loop {
            let last = clock.load(Ordering::Relaxed);
            if last == seen {
                return;
            }
            seen = last;
            tokio::time::sleep_until(origin + Duration::from_millis(last) + idle).await;
        }
    };
    tokio::select! {
        result = copy => TunnelEnd::Closed(result),
        () = watchdog => TunnelEnd::Idle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A write blocked (the reader stopped) for the timeout fails with `TimedOut`; writes
    /// that keep moving do not.
    #[tokio::test]
    async fn blocked_write_fails_after_the_timeout() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut io = WriteStall::new(near, Duration::from_millis(100));
        // Progress: the far side reads, so 10 rounds of 64 bytes spread over ~300 ms pass.
        for _ in 0..10 {
            io.write_all(&[1; 64]).await.expect("moving writes");
            let mut buf = [0; 64];
            far.read_exact(&mut buf).await.expect("read");
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        // Stalled: nobody reads; the write fails once blocked for 100 ms.
        let stalled = tokio::time::timeout(Duration::from_secs(10), io.write_all(&[1; 1024]))
            .await
            .expect("bounded");
        let error = stalled.expect_err("the write must fail");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    /// Flushes that succeed at once between blocked writes are not progress.
    #[tokio::test]
    async fn flushes_between_blocked_writes_do_not_reset_the_timeout() {
        let (near, _far) = tokio::io::duplex(64);
        let mut io = WriteStall::new(near, Duration::from_millis(200));
        let mut failed = None;
        // Bounded: 100 rounds of a 20 ms write attempt and a flush (~2 s).
        for _ in 0..100 {
            match tokio::time::timeout(Duration::from_millis(20), io.write_all(&[1; 1024])).await {
                Ok(result) => {
                    failed = Some(result);
                    break;
                }
                Err(_) => io.flush().await.expect("flush"),
            }
        }
        let error = failed
            .expect("the write ended")
            .expect_err("the write must fail");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn zero_disables_the_write_stall_timeout() {
        let (near, _far) = tokio::io::duplex(64);
        let mut io = WriteStall::new(near, Duration::ZERO);
        let blocked =
            tokio::time::timeout(Duration::from_millis(300), io.write_all(&[1; 1024])).await;
        assert!(blocked.is_err(), "still blocked, not failed");
    }

    /// A tunnel ends as idle only once no byte moved either way for the timeout. Paused time:
    /// on a loaded machine a real 50 ms sleep can outlast the 150 ms bound.
    #[tokio::test(start_paused = true)]
    async fn tunnel_closes_when_idle_not_while_busy() {
        let (a, mut client) = tokio::io::duplex(1024);
        let (b, mut server) = tokio::io::duplex(1024);
        let tunnel = tokio::spawn(copy_bidirectional_idle(a, b, Duration::from_millis(150)));
        // Busy for ~500 ms: one byte each way every 50 ms.
        for i in 0..10u8 {
            client.write_all(&[i]).await.expect("write");
            let mut got = [0];
            server.read_exact(&mut got).await.expect("read");
            assert_eq!(got, [i]);
            server.write_all(&[i]).await.expect("write back");
            client.read_exact(&mut got).await.expect("read back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!tunnel.is_finished(), "closed while busy");
        let end = tokio::time::timeout(Duration::from_secs(10), tunnel)
            .await
            .expect("bounded")
            .expect("joined");
        assert!(matches!(end, TunnelEnd::Idle), "{end:?}");
        // Both sides see the tunnel gone.
        let mut rest = Vec::new();
        assert_eq!(client.read_to_end(&mut rest).await.expect("eof"), 0);
    }
}
