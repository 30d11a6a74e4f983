//! The Pingora shell: process, listeners, background tasks and graceful shutdown. HTTP itself is
//! served inside [`HttpApp::process_new`], HTTP/1.1 by `downstream::h1` and h2 by
//! `downstream::h2`, both our own ("Pingora shell, own hot path").
//!
//! [`Shell`] hosts whatever a command needs: the HTTP(S) listeners of a proxy, an admin
//! listener, and background tasks (the xDS client, ...) given as plain futures that watch a
//! shutdown flag, so the code they run needs no Pingora type. [`Shell::run`] blocks until every
//! connection has drained after SIGTERM and returns; the caller decides what happens then.

use crate::admin::AdminApp;
use crate::downstream::{h1, h2, ClientBody, HeadTimer, Streams, SNIFF_LEN};
use crate::forward::{self, ConnInfo};
use crate::gateway::{Gateway, OpenConnection};
use crate::idle::WriteStall;
use crate::router::Listener;
use async_trait::async_trait;
use http::HeaderValue;
use pingora::apps::ServerApp;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::protocols::{Stream, ALPN};
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use pingora::services::{ServiceHandle, ServiceReadyNotifier};
use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tracing::{debug, info, warn};

/// Serves HTTP/1.1 and HTTP/2 on one listener: h2 when TLS negotiated it by ALPN or a
/// plaintext connection opens with the h2 preface (prior knowledge), else HTTP/1.1. HTTP/1.1
/// by `downstream::h1`, h2 by `downstream::h2` (both our own).
///
/// We sniff ourselves rather than use hyper-util's `auto` builder: its per-poll wrapper cost
/// about 3% of the instructions of a proxied request (callgrind), and Pingora's stream can
/// already peek without a second buffer.
pub struct HttpApp {
    gateway: Arc<Gateway>,
    listener: Listener,
    proto: HeaderValue,
    https: bool,
    h2: h2::Settings,
    /// Connections open on this listener (every address and worker thread of it).
    open: AtomicUsize,
    /// `sluice_downstream_connections_rejected_total` for this listener.
    rejected: prometheus::IntCounter,
}

/// Frees a listener's connection slot when the connection ends.
struct ListenerSlot(Arc<HttpApp>);

impl Drop for ListenerSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The start of the HTTP/2 connection preface (`PRI * HTTP/2.0...`). No HTTP/1.1 method is `PRI`.
const H2_PREFACE_START: &[u8; SNIFF_LEN] = b"PRI ";

impl HttpApp {
    pub fn new(gateway: Arc<Gateway>, listener: Listener, https: bool) -> Self {
        let limits = &gateway.settings.downstream;
        let settings = &gateway.settings;
        let h2 = h2::Settings::new(&h2::Limits {
            // Advertised in SETTINGS; a stream whose headers exceed it is answered 431 (as h2
            // and hyper did), and one that decodes to four times it ends the connection.
            max_header_list: u32::try_from(limits.max_head_bytes).unwrap_or(u32::MAX),
            // Each stream costs its future, a slot and upstream work: HAProxy's 100, not h2's
            // unbounded default. Streams past it are refused (RST_STREAM REFUSED_STREAM).
            max_concurrent_streams: settings.h2_max_concurrent_streams,
            // Bounds what a client that reads slowly makes us queue, per connection (hyper's
            // default was 400 KiB per stream, so 100 streams could pin 40 MiB).
            max_send_buffer: settings.h2_max_send_buffer,
            // What we accept from the client before it waits for WINDOW_UPDATE: 64 KiB per
            // stream (the RFC default and Envoy's edge recommendation) and 1 MiB per
            // connection, so one connection buffers at most 1 MiB of request bodies.
            stream_window: 64 * 1024,
            connection_window: 1024 * 1024,
            // The reverse: a client making us reset streams (protocol errors per stream).
            // h2's and hyper's default 1024, kept; past it, GOAWAY.
            max_local_error_resets: 1024,
            // Rapid reset (CVE-2023-44487), spaced out or not: Envoy's premature-reset rule
            // with its defaults, unless the flags change them.
            premature_reset_streams: settings.h2_premature_reset_streams,
            premature_reset_lifetime: settings.h2_premature_reset_lifetime,
            // CONTINUATION floods and HPACK bombs end with GOAWAY ENHANCE_YOUR_CALM: at most
            // 64 CONTINUATION frames and four times `max_header_list` per block
            // (`h2/state.rs`, tests/e2e/h2_hostile.rs).
            //
            // Dead or stuck peers: a PING every interval, closed if no ACK comes in time.
            keepalive: (!settings.h2_keepalive_interval.is_zero())
                .then_some(settings.h2_keepalive_interval),
            keepalive_timeout: settings.h2_keepalive_timeout,
        });
        let name = match (https, listener) {
            (false, Listener::External) => "http-external",
            (false, Listener::Internal) => "http-internal",
            (true, Listener::External) => "https-external",
            (true, Listener::Internal) => "https-internal",
        };
        let rejected = gateway
            .metrics
            .downstream_rejected
            .with_label_values(&[name]);
        HttpApp {
            gateway,
            listener,
            proto: HeaderValue::from_static(if https { "https" } else { "http" }),
            https,
            h2,
            open: AtomicUsize::new(0),
            rejected,
        }
    }
}

#[async_trait]
impl ServerApp for HttpApp {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let limits = &self.gateway.settings.downstream;
        // Accept and close at once over the cap (what nginx does past worker_connections): a
        // closed connection tells a client to go elsewhere sooner than an unanswered one in
        // the kernel's backlog.
        if self.open.fetch_add(1, Ordering::Relaxed) >= limits.max_connections {
            self.open.fetch_sub(1, Ordering::Relaxed);
            self.rejected.inc();
            debug!(listener = ?self.listener, "connection refused: at --max-connections");
            return None;
        }
        let slot = ListenerSlot(self.clone());
        let open = OpenConnection::new(self.gateway.open_connections.clone());
        // Pingora's task for a connection keeps room for its accept and TLS-handshake futures
        // (and ours, boxed) for the connection's whole life: several KB per idle connection.
        // A task of our own holds only what serving needs; Pingora's ends here. Same thread:
        // the runtime is the worker's current-thread one (the upstream pool relies on it).
        tokio::spawn(
            self.clone()
                .connection(stream, shutdown.clone(), (slot, open)),
        );
        None
    }
}

impl HttpApp {
    /// Serves one accepted connection until it closes (or drains at shutdown); `guards`
    /// count it open until then.
    ///
    /// A plain function returning an `async move` block, not an `async fn`: the task keeps this
    /// future for the connection's whole life, and an async fn's future keeps its arguments
    /// twice (as passed, and as the locals they are moved into). HTTP/1.1 is served inline
    /// for the same reason (a function of its own would keep its arguments twice too).
    fn connection(
        self: Arc<Self>,
        mut stream: Stream,
        mut shutdown: ShutdownWatch,
        guards: (ListenerSlot, OpenConnection),
    ) -> impl Future<Output = ()> {
        // One deadline from accept for the sniff and the first request head (see HeadTimer).
        let mut deadline = Box::pin(tokio::time::sleep(
            self.gateway.settings.downstream.header_read_timeout,
        ));
        async move {
            // Named, so the block owns the guards (dropped when the connection ends).
            let _guards = &guards;
            // The sniff reads (not peeks: see `HeadTimer`) the first bytes, which `HeadTimer`
            // then hands to hyper or h2 first.
            let mut sniffed = [0u8; SNIFF_LEN];
            let (h2, sniffed_len) = match stream.selected_alpn_proto() {
                Some(ALPN::H2) => (true, 0),
                Some(_) => (false, 0),
                None => {
                    // A connection that has sent nothing yet has no request to finish: at
                    // shutdown it is closed at once, not waited for until the grace ends.
                    let mut stopping = shutdown.clone();
                    tokio::select! {
                        read = stream.read_exact(&mut sniffed) => match read {
                            Ok(_) => (&sniffed == H2_PREFACE_START, SNIFF_LEN),
                            // The client went away before sending four bytes.
                            Err(_) => return,
                        },
                        // Fewer than four bytes within the header read timeout.
                        _ = deadline.as_mut() => return,
                        _ = stopping.wait_for(|stop| *stop) => return,
                    }
                }
            };
            let peer = stream
                .get_socket_digest()
                .and_then(|digest| digest.peer_addr().and_then(|a| a.as_inet()).copied());
            let client_ip = peer.and_then(|a| HeaderValue::from_str(&a.ip().to_string()).ok());
            let conn = Arc::new(ConnInfo {
                listener: self.listener,
                proto: self.proto.clone(),
                client_ip,
                redirects_to_https: self.listener == Listener::External && !self.https,
                trust_forwarded: self.gateway.settings.xff_trusted_hops > 0,
                peer,
                head_seen: AtomicBool::new(false),
            });
            // A client that stops reading blocks our writes; after the stream idle timeout the
            // connection fails, dropping its streams (and their slots and upstream connections).
            let stream = WriteStall::new(stream, self.gateway.settings.stream_idle_timeout);
            let sniffed = &sniffed[..sniffed_len];
            if h2 {
                // Boxed: a task's size is its future's largest state, and hyper's h2
                // connection is several KB; inline, every HTTP/1.1 connection's task would
                // carry its room.
                Box::pin(self.serve_h2(stream, sniffed, deadline, conn, shutdown)).await;
                return;
            }
            let phase = h1::Phase::default();
            let serving = h1::serve(
                stream,
                sniffed,
                deadline,
                &self.gateway.settings.downstream,
                &phase,
                |req| serve(&self.gateway, &conn, req),
            );
            tokio::pin!(serving);
            if !*shutdown.borrow() {
                // Biased: this runs at every wake-up of the connection, and the connection is
                // what needs polling (no random start, which cost a thread-local RNG per poll).
                tokio::select! {
                    biased;
                    () = serving.as_mut() => return,
                    () = shutdown_changed(&mut shutdown) => {}
                }
            }
            // Shutdown: a connection waiting for a request closes now; one in the middle of
            // one finishes it, with `connection: close`.
            if phase.stop() {
                return;
            }
            serving.await;
        }
    }

    async fn serve_h2(
        &self,
        stream: WriteStall<Stream>,
        sniffed: &[u8],
        deadline: Pin<Box<tokio::time::Sleep>>,
        conn: Arc<ConnInfo>,
        mut shutdown: ShutdownWatch,
    ) {
        let io = HeadTimer::new(stream, deadline, conn.clone(), sniffed);
        let streams = Streams::new();
        let gateway = self.gateway.clone();
        let connection = self
            .h2
            .serve(io, streams.clone(), move |req| serve(&gateway, &conn, req));
        let idle = streams.idle(self.gateway.settings.downstream.idle_timeout);
        serve_until_shutdown(connection, &mut shutdown, idle, |c| {
            c.get_mut().graceful_shutdown();
        })
        .await;
    }
}

/// One request: marks the connection's first head as seen (ending `HeadTimer`), then forwards.
fn serve(
    gateway: &Arc<Gateway>,
    conn: &Arc<ConnInfo>,
    req: http::Request<ClientBody>,
) -> impl Future<Output = http::Response<crate::body::ResponseBody>> {
    if !conn.head_seen.load(Ordering::Relaxed) {
        conn.head_seen.store(true, Ordering::Relaxed);
    }
    forward::handle(gateway.clone(), conn.clone(), req)
}

/// Drives an h2 connection; on shutdown, or once `idle` resolves, asks it to finish
/// gracefully (GOAWAY) and waits for that.
async fn serve_until_shutdown<C, O>(
    connection: C,
    shutdown: &mut ShutdownWatch,
    idle: impl Future<Output = ()>,
    graceful: impl FnOnce(Pin<&mut C>),
) where
    C: std::future::Future<Output = O>,
{
    tokio::pin!(connection);
    if !*shutdown.borrow() {
        // Biased, as in `serve_h1`: the connection first, no RNG per wake-up.
        tokio::select! {
            biased;
            _ = connection.as_mut() => return,
            () = shutdown_changed(shutdown) => {}
            _ = idle => {}
        }
    }
    graceful(connection.as_mut());
    connection.await;
}

/// Resolves once the shutdown flag changes (or its sender is gone), as `shutdown.changed()`
/// does, for a connection that polls it at every wake-up: it registers with the watch on its
/// first poll, and after that reads the watch's version (one atomic load) until that moved.
/// Polling `changed()` every time took the watch's waiter lock, which every connection on
/// every thread shares: about 400 instructions per request (callgrind).
fn shutdown_changed(shutdown: &mut ShutdownWatch) -> impl Future<Output = ()> + '_ {
    let probe = shutdown.clone();
    async move {
        let changed = shutdown.changed();
        tokio::pin!(changed);
        let mut registered: Option<Waker> = None;
        std::future::poll_fn(|cx| {
            let unchanged = probe.has_changed().is_ok_and(|moved| !moved);
            // The registered waker is what the watch wakes: it must still wake this task.
            if unchanged && registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                return Poll::Pending;
            }
            match changed.as_mut().poll(cx) {
                Poll::Ready(_) => Poll::Ready(()),
                Poll::Pending => {
                    registered = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
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
    /// Set for a task that must outlive the drain (the xDS client: requests still held
    /// during the drain wait for the endpoints it brings): the flag it watches instead of
    /// Pingora's, which turns at SIGTERM.
    until: Option<ShutdownWatch>,
}

#[async_trait]
impl BackgroundService for Task {
    async fn start_with_ready_notifier(
        &self,
        shutdown: ShutdownWatch,
        ready_notifier: ServiceReadyNotifier,
    ) {
        let start = self.start.lock().unwrap_or_else(|p| p.into_inner()).take();
        let shutdown = self.until.clone().unwrap_or(shutdown);
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
    /// Stops the tasks that run through the drain.
    after_drain: tokio::sync::watch::Sender<bool>,
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
        let _ = self.after_drain.send(true);
        let _ = self.drained.send(());
    }
}

/// The address a listener given as `addr` binds; `None` for port 0 (unknown until bound) or
/// an address that does not parse.
fn reachable(addr: &str) -> Option<SocketAddr> {
    let addr = addr.to_socket_addrs().ok()?.next()?;
    (addr.port() != 0).then_some(addr)
}

/// Whether a socket listens on `addr`: the kernel's socket table where there is one (Linux),
/// so nothing connects to the listener (a bare TCP connect to a TLS listener is logged as a
/// failed handshake); else a connect to it (its loopback for an unspecified address).
async fn is_listening(addr: SocketAddr) -> bool {
    if let Some(mut sockets) = sluice_xds::listeners::listening_sockets(addr.port()) {
        // The socket must be this process's: another process could hold the address (that is
        // why Pingora is still retrying).
        sockets.retain(|s| s.addr.ip() == addr.ip());
        return sluice_xds::listeners::held_by(std::process::id(), &sockets);
    }
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(match target {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    let connect = tokio::net::TcpStream::connect(target);
    matches!(
        tokio::time::timeout(Duration::from_secs(1), connect).await,
        Ok(Ok(_))
    )
}

/// Returns once every target listens. A listener that never binds keeps it waiting (and
/// `/ready` at 503); it says so in the log every 10 s.
async fn wait_accepting(mut pending: Vec<SocketAddr>) {
    let started = std::time::Instant::now();
    let mut warned = 0;
    while !pending.is_empty() {
        let mut still = Vec::with_capacity(pending.len());
        for addr in pending {
            if !is_listening(addr).await {
                still.push(addr);
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        let waited = started.elapsed().as_secs() / 10;
        if waited > warned {
            warned = waited;
            warn!(listeners = ?pending, "listeners not accepting yet; /ready stays 503");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
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
    after_drain: tokio::sync::watch::Sender<bool>,
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
            // Pingora bounds each accepted connection's handshake with its "fast" timeout,
            // whose first use starts a thread that wakes every 10 ms for the life of the
            // process (100 wake-ups a second on an idle proxy). A threshold of 0 s sends every
            // timeout of a second or more, that one included, to tokio's timer instead.
            fast_timeout_to_tokio_threshold_seconds: Some(0),
            ..ServerConf::default()
        };
        let mut server = Server::new_with_opt_and_conf(None, conf);
        server.bootstrap();
        Shell {
            server,
            open_connections: Arc::default(),
            on_shutdown: Vec::new(),
            after_drain: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Runs `start` as a background service; the returned handle is ready once it calls its
    /// ready callback (listeners can wait for that).
    pub fn task(&mut self, name: &str, start: TaskFn) -> ServiceHandle {
        self.server.add_service(background_service(
            name,
            Task {
                start: Mutex::new(Some(start)),
                until: None,
            },
        ))
    }

    /// Like [`Shell::task`], but its shutdown flag turns only once the connections have
    /// drained (or the grace ends), not at SIGTERM.
    pub fn task_through_drain(&mut self, name: &str, start: TaskFn) -> ServiceHandle {
        self.server.add_service(background_service(
            name,
            Task {
                start: Mutex::new(Some(start)),
                until: Some(self.after_drain.subscribe()),
            },
        ))
    }

    /// Called when SIGTERM arrives, before the drain.
    pub fn on_shutdown(&mut self, f: impl FnOnce() + Send + 'static) {
        self.on_shutdown.push(Box::new(f));
    }

    pub fn admin(&mut self, addr: &str, app: AdminApp) {
        self.admin_service("admin", addr, app);
    }

    /// The probe listener (`--probe-addr`): an [`AdminApp::probes`] on its own port.
    pub fn probe(&mut self, addr: &str, app: AdminApp) {
        self.admin_service("probe", addr, app);
    }

    fn admin_service(&mut self, name: &str, addr: &str, app: AdminApp) {
        let mut admin = Service::new(name.to_string(), app);
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
        let mut started = Vec::new();
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
            let handle = self.server.add_service(service);
            handle.add_dependency(after);
            started.push(handle);
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
            let handle = self.server.add_service(service);
            handle.add_dependency(after);
            started.push(handle);
        }
        self.watch_listeners(gateway, listeners, &started);
        Ok(())
    }

    /// Pingora reports a listener service ready before it binds, and retries a bind: so once
    /// the listeners have started, wait until each address listens, then set
    /// `gateway.listening` (part of `/ready`). Ports given as 0 cannot be known and are skipped.
    fn watch_listeners(
        &mut self,
        gateway: &Arc<Gateway>,
        listeners: &Listeners,
        started: &[ServiceHandle],
    ) {
        let targets: Vec<SocketAddr> = [
            &listeners.http,
            &listeners.internal_http,
            &listeners.https,
            &listeners.internal_https,
        ]
        .into_iter()
        .flatten()
        .filter_map(|addr| reachable(addr))
        .collect();
        let gateway = gateway.clone();
        let watch = self.task(
            "listen-check",
            Box::new(move |mut shutdown, ready| {
                Box::pin(async move {
                    ready();
                    tokio::select! {
                        _ = wait_accepting(targets) => {
                            gateway.listening.store(true, Ordering::Release);
                        }
                        _ = shutdown.changed() => {}
                    }
                })
            }),
        );
        for handle in started {
            watch.add_dependency(handle);
        }
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
                after_drain: self.after_drain.clone(),
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

#[cfg(test)]
mod tests;
