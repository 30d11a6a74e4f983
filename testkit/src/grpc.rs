//! [`GrpcPingServer`] (Knative's `grpc-ping` image) and [`GrpcClient`].
//!
//! Both speak gRPC's wire framing over h2c — each message is a 5-byte prefix (compressed flag, then
//! the length as a big-endian u32) followed by the payload — but treat payloads as opaque bytes: no
//! protobuf is involved. Knative's image sends protobuf `Request{msg}`/`Response{msg}`; a proxy cannot
//! tell the difference, and that is all these tests need.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;

use crate::body::{self, BoxBody};
use crate::serve::{self, Running};
use crate::{bounded, probe, DEFAULT_TIMEOUT};

/// Bidirectional streaming method: one reply per request message, sent as soon as it arrives.
pub const PING_STREAM_METHOD: &str = "/ping.PingService/PingStream";
/// Unary method: one reply for the one request message.
pub const PING_METHOD: &str = "/ping.PingService/Ping";

const GRPC: HeaderValue = HeaderValue::from_static("application/grpc");
const GRPC_STATUS: &str = "grpc-status";
const GRPC_MESSAGE: &str = "grpc-message";
/// gRPC's default maximum message size.
const MAX_MESSAGE: usize = 4 << 20;

/// Status codes used here (`google.golang.org/grpc/codes`).
const OK: u32 = 0;
const RESOURCE_EXHAUSTED: u32 = 8;
const UNIMPLEMENTED: u32 = 12;
const INTERNAL: u32 = 13;

/// Prefixes a payload with gRPC's 5-byte message header.
fn encode(payload: &[u8], suffix: &[u8]) -> Bytes {
    let len = u32::try_from(payload.len() + suffix.len()).expect("messages are below 4 GiB");
    let mut message = BytesMut::with_capacity(5 + len as usize);
    message.put_u8(0);
    message.put_u32(len);
    message.extend_from_slice(payload);
    message.extend_from_slice(suffix);
    message.freeze()
}

/// Takes one complete message's payload off the front of `buf`, if it holds one.
fn decode(buf: &mut BytesMut) -> Result<Option<Bytes>, String> {
    let Some(header) = buf.get(..5) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > MAX_MESSAGE {
        return Err(format!("message of {len} bytes exceeds {MAX_MESSAGE}"));
    }
    if buf.len() < 5 + len {
        return Ok(None);
    }
    buf.advance(5);
    Ok(Some(buf.split_to(len).freeze()))
}

fn status_headers(code: u32, message: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(GRPC_STATUS, HeaderValue::from(code));
    if let Ok(message) = HeaderValue::from_str(message) {
        if !message.is_empty() {
            headers.insert(GRPC_MESSAGE, message);
        }
    }
    headers
}

#[derive(Debug, Default)]
struct Counters {
    connections: Arc<AtomicU64>,
    requests: AtomicU64,
    messages: Arc<AtomicU64>,
}

/// A gRPC server over h2c whose replies are each request payload followed by `suffix`.
///
/// Serves [`PING_STREAM_METHOD`] and [`PING_METHOD`]; other paths get a trailers-only response with
/// `grpc-status: 12` (unimplemented). HTTP/1.1 is accepted only for probes.
#[derive(Debug)]
pub struct GrpcPingServer {
    running: Running,
    counters: Arc<Counters>,
}

impl GrpcPingServer {
    pub async fn start(suffix: &str) -> anyhow::Result<GrpcPingServer> {
        let counters = Arc::new(Counters::default());
        let suffix = Bytes::copy_from_slice(suffix.as_bytes());
        let running = serve::listen(Arc::clone(&counters.connections), {
            let counters = Arc::clone(&counters);
            move |stream: TcpStream, spawner| {
                let counters = Arc::clone(&counters);
                let suffix = suffix.clone();
                async move {
                    let service = service_fn(move |request| {
                        let response = handle(request, &counters, &suffix);
                        async move { Ok::<_, Infallible>(response) }
                    });
                    // Errors only end this connection.
                    let _ = auto::Builder::new(spawner)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            }
        })
        .await
        .context("start grpc ping server")?;
        Ok(GrpcPingServer { running, counters })
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.addr()
    }

    /// TCP connections accepted.
    pub fn connections(&self) -> u64 {
        self.counters.connections.load(Ordering::SeqCst)
    }

    /// Requests (HTTP/2 streams, probes included) received.
    pub fn requests(&self) -> u64 {
        self.counters.requests.load(Ordering::SeqCst)
    }

    /// Ping messages answered, over all streams.
    pub fn messages(&self) -> u64 {
        self.counters.messages.load(Ordering::SeqCst)
    }
}

fn handle(
    mut request: Request<Incoming>,
    counters: &Counters,
    suffix: &Bytes,
) -> Response<BoxBody> {
    counters.requests.fetch_add(1, Ordering::SeqCst);
    if let Some(response) = probe::intercept(request.headers_mut()) {
        return response;
    }
    if request.version() != http::Version::HTTP_2 {
        let mut response = Response::new(body::full("gRPC needs HTTP/2\n"));
        *response.status_mut() = StatusCode::HTTP_VERSION_NOT_SUPPORTED;
        return response;
    }
    let path = request.uri().path();
    let body = if request.method() == Method::POST
        && (path == PING_STREAM_METHOD || path == PING_METHOD)
    {
        let replies = Replies {
            request: request.into_body(),
            buf: BytesMut::new(),
            suffix: suffix.clone(),
            messages: Arc::clone(&counters.messages),
            request_ended: false,
            done: false,
        };
        body::boxed(replies)
    } else {
        // Trailers-only: the status rides on the headers of an empty response.
        let mut response = Response::new(body::empty());
        let status = status_headers(UNIMPLEMENTED, &format!("unknown method {path}"));
        response.headers_mut().extend(status);
        response.headers_mut().insert(CONTENT_TYPE, GRPC);
        return response;
    };
    let mut response = Response::new(body);
    response.headers_mut().insert(CONTENT_TYPE, GRPC);
    response
}

/// The response body of a ping stream: it reads the request body itself and yields one reply per
/// complete request message as soon as that message is in, then the status trailers.
struct Replies {
    request: Incoming,
    buf: BytesMut,
    suffix: Bytes,
    messages: Arc<AtomicU64>,
    request_ended: bool,
    done: bool,
}

impl Body for Replies {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let status = match decode(&mut this.buf) {
                Ok(Some(payload)) => {
                    this.messages.fetch_add(1, Ordering::SeqCst);
                    return Poll::Ready(Some(Ok(Frame::data(encode(&payload, &this.suffix)))));
                }
                Err(too_big) => Some((RESOURCE_EXHAUSTED, too_big)),
                Ok(None) if this.request_ended && this.buf.is_empty() => Some((OK, String::new())),
                Ok(None) if this.request_ended => {
                    Some((INTERNAL, "request ended inside a message".to_owned()))
                }
                Ok(None) => None,
            };
            if let Some((code, message)) = status {
                this.done = true;
                return Poll::Ready(Some(Ok(Frame::trailers(status_headers(code, &message)))));
            }
            match ready!(Pin::new(&mut this.request).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        this.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(_)) => {
                    this.done = true;
                    let trailers = status_headers(INTERNAL, "request stream failed");
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                None => this.request_ended = true,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// A call that ended with a non-zero `grpc-status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcStatusError {
    pub code: u32,
    pub message: String,
}

impl fmt::Display for GrpcStatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "grpc-status {}: {}", self.code, self.message)
    }
}

impl std::error::Error for GrpcStatusError {}

/// Reads `grpc-status`/`grpc-message` from headers or trailers; `None` if there is no status.
fn status_of(headers: &HeaderMap) -> anyhow::Result<Option<()>> {
    let Some(code) = headers.get(GRPC_STATUS) else {
        return Ok(None);
    };
    let code: u32 = code
        .to_str()
        .ok()
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("invalid grpc-status {code:?}"))?;
    if code == OK {
        return Ok(Some(()));
    }
    let message = headers
        .get(GRPC_MESSAGE)
        .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
        .unwrap_or_default();
    Err(GrpcStatusError { code, message }.into())
}

/// Aborts the h2 connection task when the last client handle goes away.
#[derive(Debug)]
struct ConnectionTask(tokio::task::JoinHandle<()>);

impl Drop for ConnectionTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A gRPC client on one h2c connection (prior knowledge); each call is a new HTTP/2 stream.
///
/// A call that ends with a non-zero `grpc-status` fails with a [`GrpcStatusError`] (reachable with
/// `anyhow::Error::downcast_ref`).
#[derive(Clone, Debug)]
pub struct GrpcClient {
    sender: h2::client::SendRequest<Bytes>,
    authority: String,
    timeout: Duration,
    _connection: Arc<ConnectionTask>,
}

impl GrpcClient {
    /// Connects to `addr`; requests carry `:authority` = `authority`. Bounded by [`DEFAULT_TIMEOUT`].
    pub async fn connect(addr: SocketAddr, authority: &str) -> anyhow::Result<GrpcClient> {
        let (sender, connection) =
            bounded(DEFAULT_TIMEOUT, format!("grpc connect to {addr}"), async {
                let stream = TcpStream::connect(addr)
                    .await
                    .with_context(|| format!("connect to {addr}"))?;
                stream.set_nodelay(true).context("set TCP_NODELAY")?;
                h2::client::handshake(stream)
                    .await
                    .with_context(|| format!("h2c handshake with {addr}"))
            })
            .await?;
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(GrpcClient {
            sender,
            authority: authority.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            _connection: Arc::new(ConnectionTask(connection)),
        })
    }

    /// gRPC over TLS (`tls` must offer ALPN h2); the handshake is for `server_name`, requests
    /// carry `:authority` = `authority`. Bounded by [`DEFAULT_TIMEOUT`].
    pub async fn connect_tls(
        addr: SocketAddr,
        tls: &crate::TlsClient,
        server_name: &str,
        authority: &str,
    ) -> anyhow::Result<GrpcClient> {
        let (stream, _) = tls.connect(addr, server_name).await?;
        let (sender, connection) = bounded(
            DEFAULT_TIMEOUT,
            format!("grpc tls connect to {addr}"),
            async {
                h2::client::handshake(stream)
                    .await
                    .with_context(|| format!("h2 handshake with {addr} over tls"))
            },
        )
        .await?;
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(GrpcClient {
            sender,
            authority: authority.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            _connection: Arc::new(ConnectionTask(connection)),
        })
    }

    /// Bounds every later step (send, each receive, finish) by `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> GrpcClient {
        self.timeout = timeout;
        self
    }

    /// Opens a call to `method` (a path such as [`PING_STREAM_METHOD`]) on a new stream.
    pub async fn open(&self, method: &str) -> anyhow::Result<GrpcStream> {
        let uri = format!("http://{}{method}", self.authority);
        let request = Request::builder()
            .method(Method::POST)
            .uri(&uri)
            .header(CONTENT_TYPE, GRPC)
            .header(http::header::TE, "trailers")
            .body(())
            .with_context(|| format!("invalid grpc uri {uri:?}"))?;
        let sender = self.sender.clone();
        let (response, send) = bounded(self.timeout, format!("open {uri}"), async move {
            let mut sender = sender.ready().await.context("h2 connection closed")?;
            Ok(sender.send_request(request, false)?)
        })
        .await?;
        Ok(GrpcStream {
            send,
            response: Some(response),
            recv: None,
            buf: BytesMut::new(),
            ended: false,
            timeout: self.timeout,
        })
    }

    /// Unary [`PING_METHOD`]: sends one message and returns the one reply.
    pub async fn ping(&self, payload: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut stream = self.open(PING_METHOD).await?;
        stream.send_last(payload)?;
        let reply = stream.recv().await?.context("ping ended without a reply")?;
        stream.finish().await?;
        Ok(reply)
    }

    /// [`PING_STREAM_METHOD`] on one stream: sends message i and waits for reply i before sending
    /// message i+1, so it only succeeds if every hop streams.
    pub async fn ping_stream<M: AsRef<[u8]>>(&self, msgs: &[M]) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut stream = self.open(PING_STREAM_METHOD).await?;
        let mut replies = Vec::with_capacity(msgs.len());
        for (i, msg) in msgs.iter().enumerate() {
            let reply = stream
                .roundtrip(msg.as_ref())
                .await
                .with_context(|| format!("ping stream message {i}"))?;
            replies.push(reply);
        }
        stream.finish().await?;
        Ok(replies)
    }
}

/// One open gRPC call.
#[derive(Debug)]
pub struct GrpcStream {
    send: h2::SendStream<Bytes>,
    response: Option<h2::client::ResponseFuture>,
    recv: Option<h2::RecvStream>,
    buf: BytesMut,
    ended: bool,
    timeout: Duration,
}

impl GrpcStream {
    /// Queues one message (the h2 connection task writes it out).
    pub fn send(&mut self, payload: &[u8]) -> anyhow::Result<()> {
        self.send
            .send_data(encode(payload, b""), false)
            .context("send grpc message")
    }

    /// Queues one message and half-closes the request stream.
    pub fn send_last(&mut self, payload: &[u8]) -> anyhow::Result<()> {
        self.send
            .send_data(encode(payload, b""), true)
            .context("send last grpc message")
    }

    /// The next reply, or `None` once the call ended with `grpc-status: 0`.
    pub async fn recv(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        bounded(self.timeout, "receive grpc message", self.recv_unbounded()).await
    }

    /// Sends one message and waits for one reply.
    pub async fn roundtrip(&mut self, payload: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.send(payload)?;
        self.recv().await?.context("call ended without a reply")
    }

    /// Half-closes the request stream and checks that the call ends with `grpc-status: 0` and no
    /// further reply.
    pub async fn finish(mut self) -> anyhow::Result<()> {
        if !self.ended {
            // The server may already have ended the call; its status is read below either way.
            let _ = self.send.send_data(Bytes::new(), true);
        }
        match self.recv().await? {
            None => Ok(()),
            Some(extra) => {
                anyhow::bail!("unexpected reply of {} bytes after the last", extra.len())
            }
        }
    }

    async fn recv_unbounded(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        if let Some(response) = self.response.take() {
            let response = response.await.context("grpc response headers")?;
            anyhow::ensure!(
                response.status() == StatusCode::OK,
                "grpc call answered with http status {}",
                response.status()
            );
            // Trailers-only response: the status is in the headers.
            if status_of(response.headers())?.is_some() {
                self.ended = true;
            }
            self.recv = Some(response.into_body());
        }
        loop {
            if let Some(payload) = decode(&mut self.buf).map_err(anyhow::Error::msg)? {
                return Ok(Some(payload.to_vec()));
            }
            if self.ended {
                anyhow::ensure!(self.buf.is_empty(), "grpc call ended inside a message");
                return Ok(None);
            }
            let recv = self.recv.as_mut().expect("the response was received above");
            match recv.data().await {
                Some(data) => {
                    let data = data.context("read grpc response body")?;
                    // Keep the window open; a failure here shows up on the next read.
                    let _ = recv.flow_control().release_capacity(data.len());
                    self.buf.extend_from_slice(&data);
                }
                None => {
                    let trailers = recv
                        .trailers()
                        .await
                        .context("read grpc trailers")?
                        .unwrap_or_default();
                    status_of(&trailers)?.context("grpc call ended without grpc-status")?;
                    self.ended = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_framing() -> anyhow::Result<()> {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&encode(b"hello", b"- pong"));
        buf.extend_from_slice(&encode(b"", b""));
        let partial = encode(b"later", b"");
        buf.extend_from_slice(&partial[..3]);
        assert_eq!(
            decode(&mut buf).map_err(anyhow::Error::msg)?.as_deref(),
            Some(&b"hello- pong"[..])
        );
        assert_eq!(
            decode(&mut buf).map_err(anyhow::Error::msg)?.as_deref(),
            Some(&b""[..])
        );
        assert_eq!(decode(&mut buf).map_err(anyhow::Error::msg)?, None);
        buf.extend_from_slice(&partial[3..]);
        assert_eq!(
            decode(&mut buf).map_err(anyhow::Error::msg)?.as_deref(),
            Some(&b"later"[..])
        );
        assert!(buf.is_empty());
        Ok(())
    }

    #[test]
    fn oversized_message_is_refused() {
        let mut buf = BytesMut::from(&[0u8, 0xff, 0xff, 0xff, 0xff][..]);
        assert!(decode(&mut buf).is_err());
    }

    #[test]
    fn status_is_read_from_headers() {
        assert!(matches!(status_of(&HeaderMap::new()), Ok(None)));
        assert!(matches!(status_of(&status_headers(OK, "")), Ok(Some(()))));
        let err = status_of(&status_headers(UNIMPLEMENTED, "nope")).err();
        let status = err
            .as_ref()
            .and_then(|e| e.downcast_ref::<GrpcStatusError>());
        assert_eq!(
            status,
            Some(&GrpcStatusError {
                code: UNIMPLEMENTED,
                message: "nope".to_owned()
            })
        );
    }
}
