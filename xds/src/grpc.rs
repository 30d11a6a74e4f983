//! sluice's xDS stream across processes: one gRPC bidirectional stream per proxy
//! (`sluice.v1.Discovery/Stream`), carrying the same [`ProxyMessage`]s and
//! [`ControllerMessage`]s that [`crate::server::LocalConnector`] passes in-process.
//!
//! - [`serve`] is the controller's port: it authenticates every stream, then hands it to a
//!   [`StreamHandler`] exactly as the in-process transport does. The port speaks HTTP/2 and this
//!   one service only (no HTTP/1, reflection or health). HTTP/2 keepalive finds dead proxies.
//!   A stream the handler does not admit is answered `UNAVAILABLE` with its reason at once; one
//!   the handler ends with a [`StreamError`] gets that as its final status.
//! - [`GrpcConnector`] is the proxy's [`Connector`]: a new connection per stream, so the
//!   client's reconnect loop owns every retry, and behind a Service each retry may reach
//!   another controller replica.
//! - Authentication: a bearer token from a file (re-read for every stream and every connect, so
//!   it can be rotated without a restart, compared in constant time), mTLS against a CA, or
//!   both, in which case both must pass. A port with neither is refused: the stream carries
//!   private keys. The handler's [`Peer::identity`] is `mtls:<client certificate CN>` when mTLS
//!   is on (token or not), else `token`. The controller reads its own certificate and key once,
//!   at [`serve`]; the proxy re-reads its TLS files on every connect.
//! - Messages are limited to [`MAX_MESSAGE_BYTES`] from the controller (tonic decodes only
//!   4 MiB by default, and one response may carry many certificates) and to
//!   [`MAX_PROXY_MESSAGE_BYTES`] from a proxy; a bigger one ends its stream with
//!   `RESOURCE_EXHAUSTED`.
//! - The port is bounded against hostile clients before they authenticate (see the constants
//!   below): streams per connection, header list size, flow-control windows, rapid reset, and
//!   a deadline for the HTTP/2 preface (tonic sets none; TLS has its handshake timeout), and
//!   [`ServerLimits::max_connections`] open at once (past it a new connection is closed at
//!   once, so the rest of the controller keeps its file descriptors).

use crate::client::{ClientStream, Connector};
use crate::protocol::{ControllerMessage, ProxyMessage};
use crate::server::{Peer, ServerStream, StreamError, StreamHandler, STREAM_BUFFER};
use crate::wire::proto::sluice::v1 as pb;
use async_trait::async_trait;
use futures_util::{Stream, StreamExt};
use pb::discovery_client::DiscoveryClient;
use pb::discovery_server::{Discovery, DiscoveryServer};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::transport::server::{Connected, TcpIncoming};
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig,
};
use tonic::{Code, Request, Response, Status, Streaming};
use tracing::{debug, error, info, warn};

/// Largest message the controller sends and a proxy accepts.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Largest message the controller accepts from a proxy: ACKs, load reports and delta requests
/// (a reconnecting proxy lists each resource's name and version, tens of bytes each, so tens
/// of thousands of resources fit).
/// grpc-go's and istiod's default receive limit.
pub const MAX_PROXY_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// A proxy opens one stream per connection. tonic passes no limit to hyper (so it is
/// unbounded, where hyper alone would say 200; grpc-go and Envoy are unbounded too): a small
/// number leaves room for a retry overlapping a dying stream and nothing for a flood.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 8;
/// An xDS request's headers are a few hundred bytes. hyper's default, made explicit (grpc-go
/// allows 16 MiB, Envoy 60 KiB).
pub const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
/// What a proxy may send before the controller reads it: grpc-go's initial windows (64 KiB a
/// stream, 16 of those for the connection), without its BDP growth. hyper's default would be
/// 1 MiB each, with tonic's adaptive window off.
const STREAM_WINDOW: u32 = 64 * 1024;
const CONNECTION_WINDOW: u32 = 16 * STREAM_WINDOW;
/// Streams a client may open and reset before they are accepted (CVE-2023-44487, rapid
/// reset); then GOAWAY ENHANCE_YOUR_CALM. h2's default, made explicit.
const MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// Streams the controller may reset for a client's errors before it gives up on the
/// connection. hyper's default, made explicit.
const MAX_LOCAL_ERROR_RESETS: usize = 1024;
/// A connection that has not sent the 24-byte HTTP/2 client preface by then is closed; tonic
/// and hyper wait forever. grpc-go's `ConnectionTimeout` (120 s) is the peer; a proxy on a
/// cluster network needs milliseconds. Over TLS the bytes counted are the handshake's, and
/// [`TLS_HANDSHAKE_TIMEOUT`] bounds it.
pub const PREFACE_TIMEOUT: Duration = Duration::from_secs(10);
const PREFACE_BYTES: usize = 24;
/// Connections open at once on the xDS port, by default. None of the peers has a default
/// (Envoy leaves `global_downstream_max_connections` unset, and warns); a proxy holds one
/// connection, so this fits ~4000 proxies a replica, well under usual file descriptor limits.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 4096;

/// Bounds of the xDS port that a deployment may tune (the rest are constants above).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections open at once; past it a new connection is closed as soon as accepted.
    pub max_connections: u32,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// HTTP/2 pings on an idle connection, both sides: a proxy or controller that vanished without
/// a FIN is noticed within interval + timeout.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`serve`] waits for connections to close after shutdown before it returns anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What went wrong setting up the xDS port or the proxy's connector.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("the xDS port needs --xds-token-file or --xds-ca/--xds-cert/--xds-key")]
    NoAuth,
    #[error("read {what} {}: {error}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("token file {}: empty", .0.display())]
    EmptyToken(PathBuf),
    #[error("xds tls: {0}")]
    Tls(String),
    #[error("bind xds port {address}: {error}")]
    Bind {
        address: String,
        error: std::io::Error,
    },
    #[error("xds endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("xds server: {0}")]
    Serve(String),
}

/// PEM files of one side of mutual TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signed the other side's certificate.
    pub ca: PathBuf,
    /// This side's certificate chain.
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How the xDS port authenticates proxies. At least one of the two is required.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerAuth {
    /// Proxies send `authorization: Bearer <the file's content, trimmed>`.
    pub token_file: Option<PathBuf>,
    /// The port serves TLS and requires a client certificate signed by `ca`.
    pub tls: Option<TlsFiles>,
}

impl ServerAuth {
    pub fn new(token_file: Option<PathBuf>, tls: Option<TlsFiles>) -> Result<Self, GrpcError> {
        let auth = ServerAuth { token_file, tls };
        auth.check()?;
        Ok(auth)
    }

    fn check(&self) -> Result<(), GrpcError> {
        if self.token_file.is_none() && self.tls.is_none() {
            return Err(GrpcError::NoAuth);
        }
        Ok(())
    }
}

/// Binds the xDS port (`host:port`).
pub async fn bind(address: &str) -> Result<TcpListener, GrpcError> {
    TcpListener::bind(address)
        .await
        .map_err(|error| GrpcError::Bind {
            address: address.to_string(),
            error,
        })
}

/// Serves xDS streams on `listener` until `shutdown` turns true (or its sender is dropped).
/// Then every open stream ends (proxies see their stream close and reconnect elsewhere or
/// later), and this returns once connections have closed, or after a short grace.
pub async fn serve(
    listener: TcpListener,
    handler: Arc<dyn StreamHandler>,
    auth: ServerAuth,
    shutdown: watch::Receiver<bool>,
) -> Result<(), GrpcError> {
    serve_with(listener, handler, auth, ServerLimits::default(), shutdown).await
}

/// [`serve`] with `limits`.
pub async fn serve_with(
    listener: TcpListener,
    handler: Arc<dyn StreamHandler>,
    auth: ServerAuth,
    limits: ServerLimits,
    shutdown: watch::Receiver<bool>,
) -> Result<(), GrpcError> {
    auth.check()?;
    if let Some(path) = &auth.token_file {
        // Fail at start on a missing or empty file rather than on the first proxy.
        read_token(path).await?;
    }
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "unknown".to_string());
    let mut builder = Server::builder()
        .accept_http1(false)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_ACCEPT_RESETS))
        .http2_max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS));
    if let Some(files) = &auth.tls {
        let config = ServerTlsConfig::new()
            .identity(Identity::from_pem(
                read_file("xds certificate", &files.cert).await?,
                read_file("xds key", &files.key).await?,
            ))
            .client_ca_root(Certificate::from_pem(
                read_file("xds client ca", &files.ca).await?,
            ))
            .timeout(TLS_HANDSHAKE_TIMEOUT);
        builder = builder
            .tls_config(config)
            .map_err(|e| GrpcError::Tls(error_chain(&e)))?;
    }
    let service = DiscoveryService {
        handler,
        token_file: auth.token_file.clone(),
        mtls: auth.tls.is_some(),
        shutdown: shutdown.clone(),
    };
    let service = DiscoveryServer::new(service)
        .max_decoding_message_size(MAX_PROXY_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    info!(
        %address,
        token = auth.token_file.is_some(),
        mtls = auth.tls.is_some(),
        max_connections = limits.max_connections,
        "xds server listening"
    );
    let permits = Arc::new(Semaphore::new(limits.max_connections as usize));
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .filter_map(move |accepted| {
            std::future::ready(match accepted {
                Ok(io) => match permits.clone().try_acquire_owned() {
                    Ok(permit) => Some(Ok(Accepted::new(io, permit))),
                    // Dropped, so closed: refused at once rather than left in the backlog.
                    Err(_) => {
                        debug!("xds connection refused: at the connection limit");
                        None
                    }
                },
                Err(error) => Some(Err(error)),
            })
        });
    let server = builder
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shut_down(shutdown.clone()));
    // Streams end at shutdown, so connections close at once; a peer that never answers the
    // GOAWAY must not hold the controller's exit.
    let grace = async {
        shut_down(shutdown).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        result = server => result.map_err(|e| GrpcError::Serve(error_chain(&e))),
        () = grace => {
            warn!(%address, "xds connections still open after the shutdown grace; leaving them");
            Ok(())
        }
    }
}

/// Completes when `shutdown` turns true. A dropped sender counts: nobody is left to stop us.
async fn shut_down(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|down| *down).await;
}

struct DiscoveryService {
    handler: Arc<dyn StreamHandler>,
    token_file: Option<PathBuf>,
    mtls: bool,
    shutdown: watch::Receiver<bool>,
}

type ControllerStream = Pin<Box<dyn Stream<Item = Result<pb::ControllerMessage, Status>> + Send>>;

#[async_trait]
impl Discovery for DiscoveryService {
    type StreamStream = ControllerStream;

    async fn stream(
        &self,
        request: Request<Streaming<pb::ProxyMessage>>,
    ) -> Result<Response<ControllerStream>, Status> {
        let address = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown".to_string());
        let identity = match self.authenticate(&request).await {
            Ok(identity) => identity,
            Err(status) => {
                warn!(peer = %address, reason = %status.message(), "xds stream refused");
                return Err(status);
            }
        };
        let peer = Peer { address, identity };
        if let Err(refusal) = self.handler.admit(&peer) {
            // Not a warning: a standby refuses every proxy that reaches it, and they retry.
            debug!(peer = %peer.address, reason = %refusal, "xds stream refused");
            return Err(status_of(refusal));
        }
        info!(peer = %peer.address, identity = %peer.identity, "xds stream accepted");
        let (proxy_tx, server_rx) = mpsc::channel(STREAM_BUFFER);
        let (server_tx, controller_rx) = mpsc::channel(STREAM_BUFFER);
        let (refused_tx, mut refused_rx) = oneshot::channel();
        tokio::spawn(forward_proxy_messages(
            request.into_inner(),
            proxy_tx,
            refused_tx,
            self.shutdown.clone(),
            peer.address.clone(),
        ));
        let task = self.handler.open(
            peer,
            ServerStream {
                rx: server_rx,
                tx: server_tx,
            },
        );
        let (ended_tx, ended_rx) = oneshot::channel();
        tokio::spawn(async move {
            let _ = ended_tx.send(task.await);
        });
        // A message the controller refused ends the handler (its input closes), so by the time
        // the handler's output ends the refusal, if any, is there to be the final status.
        let refused = futures_util::stream::once(async move { refused_rx.try_recv().ok() })
            .filter_map(|refused| async move { refused.map(Err) });
        // After the handler's last message, its reason if it ended the stream.
        let ended = futures_util::stream::once(ended_rx).filter_map(|ended| async move {
            match ended {
                Ok(Err(error)) => Some(Err(status_of(error))),
                Ok(Ok(())) | Err(_) => None,
            }
        });
        let outgoing = ReceiverStream::new(controller_rx)
            .map(|message| Ok(pb::ControllerMessage::from(message)))
            .chain(refused)
            .chain(ended)
            .take_until(shut_down(self.shutdown.clone()));
        Ok(Response::new(Box::pin(outgoing)))
    }
}

fn status_of(error: StreamError) -> Status {
    match error {
        StreamError::Unavailable(reason) => Status::unavailable(reason),
    }
}

impl DiscoveryService {
    /// The stream's identity, or why it is refused. Every configured check must pass.
    async fn authenticate<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let mut identity = None;
        if self.mtls {
            // The handshake already verified the chain against the CA; this only names it.
            let certs = request
                .peer_certs()
                .ok_or_else(|| Status::unauthenticated("xds stream: no client certificate"))?;
            let name = certs.first().and_then(|cert| subject_cn(cert));
            identity = Some(match name {
                Some(cn) => format!("mtls:{cn}"),
                None => "mtls".to_string(),
            });
        }
        if let Some(path) = &self.token_file {
            let want = read_token(path).await.map_err(|e| {
                error!(error = %e, "xds token unreadable; refusing streams");
                Status::unavailable("the controller cannot read its xds token")
            })?;
            let header = request.metadata().get("authorization").ok_or_else(|| {
                Status::unauthenticated("xds stream: missing authorization: Bearer <token>")
            })?;
            let got = header.to_str().ok().and_then(bearer_token).ok_or_else(|| {
                Status::unauthenticated("xds stream: authorization is not Bearer <token>")
            })?;
            if !tokens_match(got.trim(), &want) {
                return Err(Status::unauthenticated("xds stream: wrong token"));
            }
            identity.get_or_insert_with(|| "token".to_string());
        }
        identity.ok_or_else(|| Status::unauthenticated("xds stream: no authentication configured"))
    }
}

/// The token of an `authorization: Bearer <token>` value (the scheme is case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let scheme = value.get(..7)?;
    scheme.eq_ignore_ascii_case("bearer ").then(|| &value[7..])
}

/// Compares digests with no early exit: the time taken says nothing about how much of the
/// token was right, nor about its length.
fn tokens_match(got: &str, want: &str) -> bool {
    let got = Sha256::digest(got.as_bytes());
    let want = Sha256::digest(want.as_bytes());
    let difference = got
        .iter()
        .zip(want.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(difference) == 0
}

/// The subject common name of a DER certificate.
fn subject_cn(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    Some(cn.to_string())
}

/// Decodes the proxy's messages into the handler's channel until the stream ends, the
/// handler lets go, or the server shuts down. A message over [`MAX_PROXY_MESSAGE_BYTES`] is
/// reported on `refused`, as the stream's final status.
async fn forward_proxy_messages(
    mut incoming: Streaming<pb::ProxyMessage>,
    tx: mpsc::Sender<ProxyMessage>,
    refused: oneshot::Sender<Status>,
    shutdown: watch::Receiver<bool>,
    peer: String,
) {
    let shutdown = shut_down(shutdown);
    tokio::pin!(shutdown);
    loop {
        let message = tokio::select! {
            message = incoming.message() => message,
            () = tx.closed() => return,
            () = &mut shutdown => return,
        };
        match message {
            Ok(Some(message)) => match ProxyMessage::try_from(message) {
                Ok(message) => {
                    if tx.send(message).await.is_err() {
                        return;
                    }
                }
                Err(error) => warn!(%peer, %error, "undecodable xds message from a proxy; skipped"),
            },
            Ok(None) => {
                debug!(%peer, "xds stream closed by the proxy");
                return;
            }
            Err(status) => {
                debug!(%peer, code = code_name(status.code()), message = %status.message(), "xds stream from a proxy broke");
                // tonic's only OUT_OF_RANGE on decoding is a message over the limit; gRPC
                // names that RESOURCE_EXHAUSTED, as grpc-go says it.
                if status.code() == Code::OutOfRange {
                    let _ = refused.send(Status::resource_exhausted(status.message().to_string()));
                }
                return;
            }
        }
    }
}

/// Where and how a proxy reaches the controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcClientConfig {
    /// `host:port`, without a scheme.
    pub endpoint: String,
    /// Its trimmed content is sent as `authorization: Bearer <token>`; re-read on every connect.
    pub token_file: Option<PathBuf>,
    /// `ca` verifies the controller; `cert` and `key` are the proxy's client identity.
    pub tls: Option<TlsFiles>,
    /// The name the controller's certificate must carry; the endpoint's host when absent.
    pub server_name: Option<String>,
}

/// The proxy's gRPC [`Connector`].
pub struct GrpcConnector {
    config: GrpcClientConfig,
    uri: String,
}

impl GrpcConnector {
    pub fn new(config: GrpcClientConfig) -> Result<Self, GrpcError> {
        let invalid = |reason: &str| GrpcError::Endpoint {
            endpoint: config.endpoint.clone(),
            reason: reason.to_string(),
        };
        if config.endpoint.contains("://") {
            return Err(invalid("want host:port, without a scheme"));
        }
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let uri = format!("{scheme}://{}", config.endpoint);
        let parsed = Endpoint::from_shared(uri.clone()).map_err(|e| invalid(&error_chain(&e)))?;
        if parsed.uri().port_u16().is_none() {
            return Err(invalid("want host:port"));
        }
        Ok(GrpcConnector { config, uri })
    }

    async fn channel(&self) -> Result<Channel, String> {
        let mut endpoint = Endpoint::from_shared(self.uri.clone())
            .map_err(|e| error_chain(&e))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        if let Some(files) = &self.config.tls {
            // Re-read on every connect: certificates rotate.
            let mut tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(
                    read_file("xds ca", &files.ca)
                        .await
                        .map_err(|e| e.to_string())?,
                ))
                .identity(Identity::from_pem(
                    read_file("xds client certificate", &files.cert)
                        .await
                        .map_err(|e| e.to_string())?,
                    read_file("xds client key", &files.key)
                        .await
                        .map_err(|e| e.to_string())?,
                ))
                .timeout(TLS_HANDSHAKE_TIMEOUT);
            if let Some(name) = &self.config.server_name {
                tls = tls.domain_name(name.clone());
            }
            endpoint = endpoint.tls_config(tls).map_err(|e| error_chain(&e))?;
        }
        endpoint.connect().await.map_err(|e| error_chain(&e))
    }
}

#[async_trait]
impl Connector for GrpcConnector {
    async fn connect(&self) -> Result<ClientStream, String> {
        let endpoint = &self.config.endpoint;
        let channel = self
            .channel()
            .await
            .map_err(|e| format!("connect to {endpoint}: {e}"))?;
        let mut client = DiscoveryClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let (proxy_tx, proxy_rx) = mpsc::channel(STREAM_BUFFER);
        let outgoing = ReceiverStream::new(proxy_rx).map(pb::ProxyMessage::from);
        let mut request = Request::new(outgoing);
        if let Some(path) = &self.config.token_file {
            let token = read_token(path).await.map_err(|e| e.to_string())?;
            let value = MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| {
                format!(
                    "token file {}: not usable in a header (visible ASCII only)",
                    path.display()
                )
            })?;
            request.metadata_mut().insert("authorization", value);
        }
        let response = client.stream(request).await.map_err(|status| {
            match std::error::Error::source(&status) {
                // The connection failed under the stream (e.g. the controller's TLS refused
                // this proxy's certificate): say why, not just "transport error".
                Some(cause) => format!("open stream to {endpoint}: {}", error_chain(cause)),
                None => format!(
                    "controller refused the stream: {}: {}",
                    code_name(status.code()),
                    status.message()
                ),
            }
        })?;
        let (controller_tx, controller_rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(forward_controller_messages(
            response.into_inner(),
            controller_tx,
            endpoint.clone(),
        ));
        Ok(ClientStream {
            tx: proxy_tx,
            rx: controller_rx,
        })
    }

    fn describe(&self) -> String {
        self.config.endpoint.clone()
    }
}

/// Decodes the controller's messages into the client's channel. When the gRPC stream ends
/// or breaks, the channel closes, and the client reconnects.
async fn forward_controller_messages(
    mut incoming: Streaming<pb::ControllerMessage>,
    tx: mpsc::Sender<ControllerMessage>,
    controller: String,
) {
    loop {
        let message = tokio::select! {
            message = incoming.message() => message,
            () = tx.closed() => return,
        };
        match message {
            Ok(Some(message)) => match ControllerMessage::try_from(message) {
                Ok(message) => {
                    if tx.send(message).await.is_err() {
                        return;
                    }
                }
                Err(error) => {
                    warn!(%controller, %error, "undecodable xds message from the controller; skipped")
                }
            },
            Ok(None) => {
                debug!(%controller, "xds stream ended by the controller");
                return;
            }
            Err(status) => {
                warn!(%controller, code = code_name(status.code()), message = %status.message(), "xds stream broke");
                return;
            }
        }
    }
}

/// An accepted connection. It holds one of [`ServerLimits::max_connections`] until dropped,
/// and must send [`PREFACE_BYTES`] within [`PREFACE_TIMEOUT`], or its reads fail and hyper
/// closes it: a client that connects and says nothing must not hold a socket, a task and a
/// permit forever. After that the HTTP/2 keepalive watches it.
struct Accepted<IO> {
    io: IO,
    /// Until the preface is in. Boxed: once a connection, and it keeps this `Unpin`.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    read: usize,
    _permit: OwnedSemaphorePermit,
}

impl<IO> Accepted<IO> {
    fn new(io: IO, permit: OwnedSemaphorePermit) -> Self {
        Accepted {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(PREFACE_TIMEOUT))),
            read: 0,
            _permit: permit,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Accepted<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        let Some(deadline) = &mut this.deadline else {
            return polled;
        };
        match polled {
            Poll::Ready(Ok(())) => {
                this.read += buf.filled().len() - before;
                if this.read >= PREFACE_BYTES {
                    this.deadline = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => Poll::Ready(Err(
                std::io::Error::new(std::io::ErrorKind::TimedOut, "no HTTP/2 preface in time"),
            )),
            other => other,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Accepted<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<IO: Connected> Connected for Accepted<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

async fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, GrpcError> {
    tokio::fs::read(path)
        .await
        .map_err(|error| GrpcError::Read {
            what,
            path: path.to_path_buf(),
            error,
        })
}

/// The token in `path`, without surrounding whitespace (files usually end in a newline).
async fn read_token(path: &Path) -> Result<String, GrpcError> {
    let bytes = read_file("token file", path).await?;
    let text = String::from_utf8_lossy(&bytes);
    let token = text.trim();
    if token.is_empty() {
        return Err(GrpcError::EmptyToken(path.to_path_buf()));
    }
    Ok(token.to_string())
}

/// An error and its sources: tonic's own messages ("transport error") say little alone.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

/// gRPC status codes as the spec spells them, lower-case.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests;
