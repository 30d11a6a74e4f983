//! The Pingora shell: process, listeners, services and graceful shutdown. HTTP itself is
//! served by hyper inside [`HttpApp::process_new`] ("Pingora shell, hyper hot path").

use crate::admin::AdminApp;
use crate::autoscale::Autoscaler;
use crate::forward::{self, ConnInfo};
use crate::gateway::{Gateway, OpenConnection};
use crate::router::Listener;
use crate::scaler::LocalProcesses;
use crate::source::{ManifestSource, Pipeline};
use async_trait::async_trait;
use http::HeaderValue;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use pingora::apps::ServerApp;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::protocols::{Stream, ALPN};
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// Serves HTTP/1.1 and HTTP/2 on one listener: h2 when TLS negotiated it by ALPN or a
/// plaintext connection opens with the h2 preface (prior knowledge), else HTTP/1.1.
///
/// We sniff ourselves rather than use hyper-util's `auto` builder: its per-poll wrapper cost
/// about 3% of the instructions of a proxied request (callgrind), and Pingora's stream can
/// already peek without a second buffer.
pub struct HttpApp {
    gateway: Arc<Gateway>,
    listener: Listener,
    proto: HeaderValue,
    https: bool,
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

/// The start of the HTTP/2 connection preface (`PRI * HTTP/2.0...`). No HTTP/1.1 method is `PRI`.
const H2_PREFACE_START: &[u8; 4] = b"PRI ";

impl HttpApp {
    pub fn new(gateway: Arc<Gateway>, listener: Listener, https: bool) -> Self {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .keep_alive(true)
            // Bounds a client that never finishes its request head; not a request timeout.
            .header_read_timeout(Duration::from_secs(60));
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2.timer(TokioTimer::new());
        HttpApp {
            gateway,
            listener,
            proto: HeaderValue::from_static(if https { "https" } else { "http" }),
            https,
            http1,
            http2,
        }
    }
}

#[async_trait]
impl ServerApp for HttpApp {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _open = OpenConnection::new(self.gateway.open_connections.clone());
        let h2 = match stream.selected_alpn_proto() {
            Some(ALPN::H2) => true,
            Some(_) => false,
            None => {
                let mut start = [0u8; 4];
                match stream.try_peek(&mut start).await {
                    Ok(peeked) => peeked && &start == H2_PREFACE_START,
                    // The client went away before sending four bytes.
                    Err(_) => return None,
                }
            }
        };
        let client_ip = stream
            .get_socket_digest()
            .and_then(|digest| digest.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()))
            .and_then(|ip| HeaderValue::from_str(&ip.to_string()).ok());
        let conn = Arc::new(ConnInfo {
            listener: self.listener,
            proto: self.proto.clone(),
            client_ip,
            redirects_to_https: self.listener == Listener::External && !self.https,
        });
        let gateway = self.gateway.clone();
        let service = service_fn(move |req| {
            let gateway = gateway.clone();
            let conn = conn.clone();
            async move { Ok::<_, Infallible>(forward::handle(gateway, conn, req).await) }
        });
        let io = TokioIo::new(stream);
        let mut shutdown = shutdown.clone();
        if h2 {
            let connection = self.http2.serve_connection(io, service);
            serve_until_shutdown(connection, &mut shutdown, |c| c.graceful_shutdown()).await;
        } else {
            let connection = self.http1.serve_connection(io, service).with_upgrades();
            serve_until_shutdown(connection, &mut shutdown, |c| c.graceful_shutdown()).await;
        }
        None
    }
}

/// Drives a connection; on shutdown asks it to finish gracefully and waits for that.
async fn serve_until_shutdown<C, O>(
    connection: C,
    shutdown: &mut ShutdownWatch,
    graceful: impl FnOnce(Pin<&mut C>),
) where
    C: std::future::Future<Output = O>,
{
    tokio::pin!(connection);
    if *shutdown.borrow() {
        graceful(connection.as_mut());
        connection.await;
        return;
    }
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = shutdown.changed() => {
            graceful(connection.as_mut());
            connection.await;
        }
    }
}

/// Exits the process as soon as every connection has drained after SIGTERM. Pingora would
/// otherwise always sleep the whole grace period; it still bounds the drain at that period.
struct Drainer {
    gateway: Arc<Gateway>,
    ready: Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait]
impl BackgroundService for Drainer {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if shutdown.changed().await.is_err() {
            return;
        }
        self.ready.store(false, Ordering::Release);
        info!("shutdown: listeners closed, draining connections");
        loop {
            let open = self.gateway.open_connections.load(Ordering::Relaxed);
            if open == 0 {
                info!("shutdown: drained");
                LocalProcesses::stop_all();
                std::process::exit(0);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Everything `sluice run` needs.
pub struct RunConfig {
    pub http: Vec<String>,
    pub internal_http: Vec<String>,
    /// External HTTPS listeners (TLS, certificates from `gateway.tls.external`).
    pub https: Vec<String>,
    /// Cluster-local HTTPS listeners (certificates from `gateway.tls.internal`).
    pub internal_https: Vec<String>,
    pub admin: Option<String>,
    pub threads: usize,
    pub shutdown_grace: Duration,
}

/// Builds and runs the Pingora server until shutdown. Blocks the calling thread.
pub fn run(
    config: RunConfig,
    gateway: Arc<Gateway>,
    pipeline: Arc<Pipeline>,
    source: ManifestSource,
    autoscaler: Autoscaler,
) -> anyhow::Result<()> {
    let conf = ServerConf {
        threads: config.threads.max(1),
        // Each worker is a current-thread runtime: the per-thread upstream pool relies on it.
        work_stealing: false,
        grace_period_seconds: Some(config.shutdown_grace.as_secs().max(1)),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let admin_state = pipeline.admin_state();
    let ready = admin_state.ready.clone();
    let source_handle = server.add_service(background_service("manifest-source", source));
    server
        .add_service(background_service("autoscaler", autoscaler))
        .add_dependency(&source_handle);
    if let Some(addr) = &config.admin {
        let mut admin = Service::new(
            "admin".to_string(),
            AdminApp::new(gateway.clone(), admin_state),
        );
        admin.threads = Some(1);
        admin.add_tcp(addr);
        server.add_service(admin);
    }
    for (name, addrs, listener) in [
        ("http-external", &config.http, Listener::External),
        ("http-internal", &config.internal_http, Listener::Internal),
    ] {
        if addrs.is_empty() {
            continue;
        }
        let mut service = Service::new(
            name.to_string(),
            HttpApp::new(gateway.clone(), listener, false),
        );
        for addr in addrs {
            // hyper buffers reads itself and writes whole responses with writev: Pingora's
            // per-connection 64 KiB read buffer and 1460-byte write buffer would only add a
            // copy per direction and ~64 KiB of memory per open (or buffered) connection.
            service.add_listener(
                ListenerConfig::tcp(addr.as_str()).l4_buffer(L4BufferSettings::unbuffered()),
            );
        }
        // Serve nothing before the first config is applied.
        server.add_service(service).add_dependency(&source_handle);
    }
    for (name, addrs, listener, resolver) in [
        (
            "https-external",
            &config.https,
            Listener::External,
            &gateway.tls.external,
        ),
        (
            "https-internal",
            &config.internal_https,
            Listener::Internal,
            &gateway.tls.internal,
        ),
    ] {
        if addrs.is_empty() {
            continue;
        }
        let mut service = Service::new(
            name.to_string(),
            HttpApp::new(gateway.clone(), listener, true),
        );
        for addr in addrs {
            let settings = crate::tls::listener_settings(resolver.clone())?;
            service.add_tls_with_settings(addr, None, settings);
        }
        server.add_service(service).add_dependency(&source_handle);
    }
    server.add_service(background_service(
        "drainer",
        Drainer {
            gateway: gateway.clone(),
            ready,
        },
    ));
    if config.http.is_empty() && config.internal_http.is_empty() {
        warn!("no HTTP listener configured");
    }
    info!(
        http = ?config.http,
        internal_http = ?config.internal_http,
        https = ?config.https,
        internal_https = ?config.internal_https,
        admin = ?config.admin,
        threads = config.threads,
        "sluice starting"
    );
    server.run(RunArgs::default());
    Ok(())
}
