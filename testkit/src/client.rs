//! Bounded HTTP/1.1 and h2c clients that report exactly what came back.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::header::HOST;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Version};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::tls::{TlsClient, TlsInfo};
use crate::{bounded, EchoReply, DEFAULT_TIMEOUT};

/// A complete response.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// The first value of a response header, if it is valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The body as text, invalid UTF-8 replaced.
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The body parsed as an [`crate::EchoServer`] reply.
    pub fn echo(&self) -> anyhow::Result<EchoReply> {
        EchoReply::parse(&self.body).with_context(|| format!("response status {}", self.status))
    }
}

/// A response whose headers have arrived and whose body is read chunk by chunk.
#[derive(Debug)]
pub struct StreamingResponse {
    pub status: u16,
    pub version: Version,
    pub headers: HeaderMap,
    body: Incoming,
    timeout: Duration,
}

impl StreamingResponse {
    fn new(response: http::Response<Incoming>, timeout: Duration) -> StreamingResponse {
        let (parts, body) = response.into_parts();
        StreamingResponse {
            status: parts.status.as_u16(),
            version: parts.version,
            headers: parts.headers,
            body,
            timeout,
        }
    }

    /// The next data chunk, or `None` at the end of the body. Each call is bounded by the timeout.
    pub async fn chunk(&mut self) -> anyhow::Result<Option<Bytes>> {
        let body = &mut self.body;
        bounded(self.timeout, "read response body chunk", async move {
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.context("read response body")?.into_data() {
                    return Ok(Some(data));
                }
            }
            Ok(None)
        })
        .await
    }

    /// Reads the rest of the body; bounded by the timeout as a whole.
    pub async fn into_response(self) -> anyhow::Result<Response> {
        let StreamingResponse {
            status,
            version,
            headers,
            body,
            timeout,
        } = self;
        let body = bounded(timeout, "read response body", async move {
            Ok(body
                .collect()
                .await
                .context("read response body")?
                .to_bytes())
        })
        .await?;
        Ok(Response {
            status,
            version,
            headers,
            body,
        })
    }
}

/// Aborts a connection task when the client that owns it goes away.
#[derive(Debug)]
struct ConnectionTask(JoinHandle<()>);

impl Drop for ConnectionTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn connect(addr: SocketAddr, timeout: Duration) -> anyhow::Result<TcpStream> {
    bounded(timeout, format!("connect to {addr}"), async {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true).context("set TCP_NODELAY")?;
        Ok(stream)
    })
    .await
}

fn build_request(
    method: &str,
    uri: String,
    host: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Bytes>,
) -> anyhow::Result<Request<Full<Bytes>>> {
    let method = Method::from_bytes(method.as_bytes())
        .with_context(|| format!("invalid method {method:?}"))?;
    let mut request = Request::builder()
        .method(method)
        .uri(&uri)
        .body(Full::new(body.unwrap_or_default()))
        .with_context(|| format!("invalid request uri {uri:?}"))?;
    let map = request.headers_mut();
    if let Some(host) = host {
        let value =
            HeaderValue::from_str(host).with_context(|| format!("invalid host {host:?}"))?;
        map.insert(HOST, value);
    }
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .with_context(|| format!("invalid header name {name:?}"))?;
        let value = HeaderValue::from_str(value)
            .with_context(|| format!("invalid value for header {name}: {value:?}"))?;
        map.append(name, value);
    }
    Ok(request)
}

/// Sends one request on a fresh HTTP/1.1 connection, bounded by [`DEFAULT_TIMEOUT`].
///
/// `host` becomes the `Host` header and `path` the request target (path and query).
pub async fn http1_request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Bytes>,
) -> anyhow::Result<Response> {
    H1Client::connect(addr)
        .await?
        .send(method, host, path, headers, body)
        .await
}

/// One HTTP/1.1 keep-alive connection; requests go out one at a time on it.
#[derive(Debug)]
pub struct H1Client {
    addr: SocketAddr,
    sender: http1::SendRequest<Full<Bytes>>,
    timeout: Duration,
    tls: Option<TlsInfo>,
    _connection: ConnectionTask,
}

impl H1Client {
    /// Connects, bounded by [`DEFAULT_TIMEOUT`].
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<H1Client> {
        let stream = connect(addr, DEFAULT_TIMEOUT).await?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("http/1.1 handshake with {addr}"))?;
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(H1Client {
            addr,
            sender,
            timeout: DEFAULT_TIMEOUT,
            tls: None,
            _connection: ConnectionTask(connection),
        })
    }

    /// Connects over TLS (handshake for `server_name`), bounded by [`DEFAULT_TIMEOUT`].
    pub async fn connect_tls(
        addr: SocketAddr,
        tls: &TlsClient,
        server_name: &str,
    ) -> anyhow::Result<H1Client> {
        let (stream, info) = tls.connect(addr, server_name).await?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("http/1.1 handshake with {addr} over tls"))?;
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(H1Client {
            addr,
            sender,
            timeout: DEFAULT_TIMEOUT,
            tls: Some(info),
            _connection: ConnectionTask(connection),
        })
    }

    /// What the TLS handshake negotiated (`None` for plaintext).
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// Bounds every later call by `timeout` instead of [`DEFAULT_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> H1Client {
        self.timeout = timeout;
        self
    }

    /// Whether the server (or a failure) closed the connection.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Sends a request and reads the whole response; bounded by the timeout as a whole.
    pub async fn send(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> anyhow::Result<Response> {
        let timeout = self.timeout;
        let what = format!("http/1.1 {method} {host}{path} via {}", self.addr);
        bounded(timeout, &what, async {
            self.send_streaming(method, host, path, headers, body)
                .await?
                .into_response()
                .await
        })
        .await
    }

    /// Sends a request and returns once the response headers arrive.
    pub async fn send_streaming(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> anyhow::Result<StreamingResponse> {
        let request = build_request(method, path.to_owned(), Some(host), headers, body)?;
        let what = format!("http/1.1 {method} {host}{path} via {}", self.addr);
        let sender = &mut self.sender;
        let response = bounded(self.timeout, &what, async move {
            sender.ready().await.context("connection closed")?;
            Ok(sender.send_request(request).await?)
        })
        .await?;
        Ok(StreamingResponse::new(response, self.timeout))
    }
}

/// One h2c connection with prior knowledge; requests may run concurrently on it.
#[derive(Clone, Debug)]
pub struct H2cClient {
    addr: SocketAddr,
    sender: http2::SendRequest<Full<Bytes>>,
    timeout: Duration,
    tls: Option<TlsInfo>,
    _connection: std::sync::Arc<ConnectionTask>,
}

impl H2cClient {
    /// Connects and performs the HTTP/2 handshake, bounded by [`DEFAULT_TIMEOUT`].
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<H2cClient> {
        let stream = connect(addr, DEFAULT_TIMEOUT).await?;
        let (sender, connection) = bounded(
            DEFAULT_TIMEOUT,
            format!("h2c handshake with {addr}"),
            async {
                http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .with_context(|| format!("h2c handshake with {addr}"))
            },
        )
        .await?;
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(H2cClient {
            addr,
            sender,
            timeout: DEFAULT_TIMEOUT,
            tls: None,
            _connection: std::sync::Arc::new(ConnectionTask(connection)),
        })
    }

    /// HTTP/2 over TLS: `tls` must offer ALPN h2. Bounded by [`DEFAULT_TIMEOUT`].
    pub async fn connect_tls(
        addr: SocketAddr,
        tls: &TlsClient,
        server_name: &str,
    ) -> anyhow::Result<H2cClient> {
        let (stream, info) = tls.connect(addr, server_name).await?;
        let (sender, connection) = bounded(
            DEFAULT_TIMEOUT,
            format!("h2 handshake with {addr} over tls"),
            async {
                http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .with_context(|| format!("h2 handshake with {addr} over tls"))
            },
        )
        .await?;
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(H2cClient {
            addr,
            sender,
            timeout: DEFAULT_TIMEOUT,
            tls: Some(info),
            _connection: std::sync::Arc::new(ConnectionTask(connection)),
        })
    }

    /// What the TLS handshake negotiated (`None` for h2c).
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// Bounds every later call by `timeout` instead of [`DEFAULT_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> H2cClient {
        self.timeout = timeout;
        self
    }

    /// Whether the server (or a failure) closed the connection.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Sends a request (`:authority` = `host`) and reads the whole response; bounded as a whole.
    pub async fn send(
        &self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> anyhow::Result<Response> {
        let what = format!("h2c {method} {host}{path} via {}", self.addr);
        bounded(self.timeout, &what, async {
            self.send_streaming(method, host, path, headers, body)
                .await?
                .into_response()
                .await
        })
        .await
    }

    /// Sends a request and returns once the response headers arrive.
    pub async fn send_streaming(
        &self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> anyhow::Result<StreamingResponse> {
        let request = build_request(method, format!("http://{host}{path}"), None, headers, body)?;
        let what = format!("h2c {method} {host}{path} via {}", self.addr);
        let mut sender = self.sender.clone();
        let response = bounded(self.timeout, &what, async move {
            sender.ready().await.context("connection closed")?;
            Ok(sender.send_request(request).await?)
        })
        .await?;
        Ok(StreamingResponse::new(response, self.timeout))
    }
}
