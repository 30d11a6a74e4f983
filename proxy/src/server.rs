//! The Pingora shell: process, listeners, background tasks and graceful shutdown. HTTP itself is
//! served by hyper inside [`HttpApp::process_new`] ("Pingora shell, hyper hot path").
//!
//! [`Shell`] hosts whatever a command needs: the HTTP(S) listeners of a proxy, an admin
//! listener, and background tasks (the xDS client, ...) given as plain futures that watch a
//! shutdown flag, so the code they run needs no Pingora type. [`Shell::run`] blocks until every
//! connection has drained after SIGTERM and returns; the caller decides what happens then.

use crate::admin::AdminApp;
use crate::forward::{self, ConnInfo};
use crate::gateway::{Gateway, OpenConnection};
use crate::router::Listener;
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
use pingora::services::{ServiceHandle, ServiceReadyNotifier};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::info;

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

/// A background task's body: it gets the shutdown flag and a callback to call once ready.
pub type TaskFn = Box<
    dyn FnOnce(ShutdownWatch, Box<dyn FnOnce() + Send>) -> Pin<Box<dyn Future<Output = ()> + Send>>
        + Send,
>;

/// A [`TaskFn`] as a Pingora background service (its own current-thread runtime).
struct Task {
    start: Mutex<Option<TaskFn>>,
}

#[async_trait]
impl BackgroundService for Task {
    async fn start_with_ready_notifier(
        &self,
        shutdown: ShutdownWatch,
        ready_notifier: ServiceReadyNotifier,
    ) {
        let start = self.start.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(start) = start {
            start(shutdown, Box::new(move || ready_notifier.notify_ready())).await;
        }
    }
}

/// On SIGTERM: runs `on_shutdown`, then reports once every connection has drained. Pingora
/// would otherwise always sleep the whole grace period; it still bounds the drain at that.
struct Drainer {
    open_connections: Arc<AtomicUsize>,
    on_shutdown: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    drained: std::sync::mpsc::Sender<()>,
}

#[async_trait]
impl BackgroundService for Drainer {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if shutdown.changed().await.is_err() {
            return;
        }
        if let Some(on_shutdown) = self
            .on_shutdown
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            on_shutdown();
        }
        info!("shutdown: listeners closed, draining connections");
        while self.open_connections.load(Ordering::Relaxed) != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        info!("shutdown: drained");
        let _ = self.drained.send(());
    }
}

/// HTTP(S) listener addresses of a proxy.
#[derive(Clone, Debug, Default)]
pub struct Listeners {
    pub http: Vec<String>,
    pub internal_http: Vec<String>,
    /// External HTTPS listeners (TLS, certificates from `gateway.tls.external`).
    pub https: Vec<String>,
    /// Cluster-local HTTPS listeners (certificates from `gateway.tls.internal`).
    pub internal_https: Vec<String>,
}

impl Listeners {
    pub fn serves_tls(&self) -> bool {
        !self.https.is_empty() || !self.internal_https.is_empty()
    }
}

pub struct Shell {
    server: Server,
    open_connections: Arc<AtomicUsize>,
    on_shutdown: Vec<Box<dyn FnOnce() + Send>>,
}

impl Shell {
    /// `threads` workers per listener service, each a current-thread runtime (the per-thread
    /// upstream pool relies on it); `shutdown_grace` bounds the drain after SIGTERM.
    pub fn new(threads: usize, shutdown_grace: Duration) -> Self {
        let conf = ServerConf {
            threads: threads.max(1),
            work_stealing: false,
            grace_period_seconds: Some(shutdown_grace.as_secs().max(1)),
            graceful_shutdown_timeout_seconds: Some(1),
            ..ServerConf::default()
        };
        let mut server = Server::new_with_opt_and_conf(None, conf);
        server.bootstrap();
        Shell {
            server,
            open_connections: Arc::default(),
            on_shutdown: Vec::new(),
        }
    }

    /// Runs `start` as a background service; the returned handle is ready once it calls its
    /// ready callback (listeners can wait for that).
    pub fn task(&mut self, name: &str, start: TaskFn) -> ServiceHandle {
        self.server.add_service(background_service(
            name,
            Task {
                start: Mutex::new(Some(start)),
            },
        ))
    }

    /// Called when SIGTERM arrives, before the drain.
    pub fn on_shutdown(&mut self, f: impl FnOnce() + Send + 'static) {
        self.on_shutdown.push(Box::new(f));
    }

    pub fn admin(&mut self, addr: &str, app: AdminApp) {
        let mut admin = Service::new("admin".to_string(), app);
        admin.threads = Some(1);
        admin.add_tcp(addr);
        self.server.add_service(admin);
    }

    /// The proxy's listeners, started only once `after` is ready (the first config applied).
    pub fn listeners(
        &mut self,
        gateway: &Arc<Gateway>,
        listeners: &Listeners,
        after: &ServiceHandle,
    ) -> anyhow::Result<()> {
        // The drain waits for the gateway's connections.
        self.open_connections = gateway.open_connections.clone();
        for (name, addrs, listener) in [
            ("http-external", &listeners.http, Listener::External),
            (
                "http-internal",
                &listeners.internal_http,
                Listener::Internal,
            ),
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
            self.server.add_service(service).add_dependency(after);
        }
        for (name, addrs, listener, resolver) in [
            (
                "https-external",
                &listeners.https,
                Listener::External,
                &gateway.tls.external,
            ),
            (
                "https-internal",
                &listeners.internal_https,
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
            self.server.add_service(service).add_dependency(after);
        }
        Ok(())
    }

    /// Runs until SIGTERM (or SIGINT) and the drain; returns once drained, or when Pingora's
    /// grace period ends first. Blocks the calling thread.
    pub fn run(mut self) -> anyhow::Result<()> {
        let (drained, done) = std::sync::mpsc::channel();
        let hooks = std::mem::take(&mut self.on_shutdown);
        self.server.add_service(background_service(
            "drainer",
            Drainer {
                open_connections: self.open_connections.clone(),
                on_shutdown: Mutex::new(Some(Box::new(move || {
                    for hook in hooks {
                        hook();
                    }
                }))),
                drained: drained.clone(),
            },
        ));
        let server = self.server;
        std::thread::Builder::new()
            .name("pingora".into())
            .spawn(move || {
                server.run(RunArgs::default());
                let _ = drained.send(());
            })?;
        // Either the drain finished or Pingora gave up waiting; both mean "stop now".
        let _ = done.recv();
        Ok(())
    }
}
