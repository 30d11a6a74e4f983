//! The `sluice` binary's wiring: it puts the control plane (`sluice-controller`) and the data
//! plane (`sluice-proxy`) together, the only place that sees both.
//!
//! - `sluice run`: both halves in one process; the proxy's xDS client talks to the control
//!   plane through in-process channels ([`sluice_xds::server::LocalConnector`]), no gRPC.
//! - `sluice controller`: the control plane, serving proxies over gRPC.
//! - `sluice proxy`: a proxy, fed by a controller over gRPC.
//!
//! The control plane runs on its own thread and runtime; the data plane in the Pingora shell.
//! On SIGTERM the shell drains the proxy's connections first, then the control plane stops
//! (and with it the local Revision instances the drained requests may still have needed).

pub mod cli;
pub mod demo;
pub mod generate;
pub mod responder;
pub mod simulate;
pub mod ui;

use anyhow::Context;
use cli::{
    ControlArgs, ControllerArgs, GatewayArgs, KubernetesArgs, ProxyArgs, RunArgs, XdsAuthArgs,
};
use sluice_controller::kubernetes::lease::LeaseSettings;
use sluice_controller::kubernetes::{Kubernetes, KubernetesOptions};
use sluice_controller::plane::{ControlPlane, Objects};
use sluice_controller::TranslateConfig;
use sluice_proxy::access_log;
use sluice_proxy::admin::{AdminApp, AdminResponse};
use sluice_proxy::gateway::{self, Gateway};
use sluice_proxy::server::{Listeners, Shell};
use sluice_xds::client::{self, ClientOptions, Connector};
use sluice_xds::grpc::{GrpcClientConfig, GrpcConnector, ServerAuth, TlsFiles};
use sluice_xds::protocol::Node;
use sluice_xds::server::LocalConnector;
use sluice_xds::ResourceType;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

/// How long the control plane gets to stop (local instances: SIGTERM, then SIGKILL).
const CONTROL_STOP_BOUND: Duration = Duration::from_secs(5);

/// The control plane on its own thread and runtime.
struct ControlThread {
    plane: Arc<ControlPlane>,
    runtime: tokio::runtime::Handle,
    shutdown: watch::Sender<bool>,
    done: std::sync::mpsc::Receiver<()>,
    loaded: std::sync::mpsc::Receiver<()>,
}

impl ControlThread {
    /// Starts it on the manifests of `config`, or on the Kubernetes API;
    /// [`ControlThread::wait_loaded`] waits for its first load.
    fn start(
        control: &ControlArgs,
        config: Option<&PathBuf>,
        kubernetes: &KubernetesArgs,
    ) -> anyhow::Result<ControlThread> {
        kubernetes.check().map_err(anyhow::Error::msg)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("control-plane runtime")?;
        let objects = match config {
            Some(dir) => Objects::Manifests(dir.clone()),
            None if kubernetes.kubernetes => {
                // The client's connection tasks run on the control plane's runtime.
                let client = runtime
                    .block_on(sluice_controller::kubernetes::client(
                        kubernetes.kubeconfig.as_deref(),
                    ))
                    .context("connecting to Kubernetes")?;
                Objects::Kubernetes(Box::new(Kubernetes::new(
                    client,
                    kubernetes_options(kubernetes, control)?,
                )))
            }
            None => anyhow::bail!("give --config DIR or --kubernetes"),
        };
        let plane = Arc::new(
            ControlPlane::new(
                translate_config(control),
                objects,
                prometheus::default_registry(),
                control.history_window,
            )
            .context("registering control-plane metrics")?,
        );
        let handle = runtime.handle().clone();
        let (shutdown, stop) = watch::channel(false);
        let (loaded_tx, loaded) = std::sync::mpsc::channel();
        let (done_tx, done) = std::sync::mpsc::channel();
        let running = plane.clone();
        std::thread::Builder::new()
            .name("control-plane".into())
            .spawn(move || {
                runtime.block_on(running.run(
                    Box::new(move || {
                        let _ = loaded_tx.send(());
                    }),
                    stop,
                ));
                let _ = done_tx.send(());
            })
            .context("starting the control-plane thread")?;
        Ok(ControlThread {
            plane,
            runtime: handle,
            shutdown,
            done,
            loaded,
        })
    }

    /// Returns once every source has been read and published.
    fn wait_loaded(&self) -> anyhow::Result<()> {
        self.loaded
            .recv()
            .context("the control plane stopped before its first load")
    }

    /// Stops it (bounded) and waits.
    fn stop(self) {
        let _ = self.shutdown.send(true);
        if self.done.recv_timeout(CONTROL_STOP_BOUND).is_err() {
            warn!("control plane did not stop in time");
        }
    }
}

fn kubernetes_options(
    args: &KubernetesArgs,
    control: &ControlArgs,
) -> anyhow::Result<KubernetesOptions> {
    let lease = LeaseSettings {
        lease_duration: args.lease_duration,
        renew_deadline: args.lease_renew_deadline,
        retry_period: args.lease_retry_period,
    }
    .validate()?;
    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("POD_NAME").ok().filter(|n| !n.is_empty()))
        .unwrap_or_else(|| format!("{}-{}", host_name(), std::process::id()));
    Ok(KubernetesOptions {
        namespace: args.namespace.clone(),
        identity,
        lease_namespace: args
            .lease_namespace
            .clone()
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|n| !n.is_empty())
            })
            .unwrap_or_else(|| control.system_namespace.clone()),
        lease_name: args.lease_name.clone(),
        lease,
    })
}

fn translate_config(control: &ControlArgs) -> TranslateConfig {
    TranslateConfig {
        ingress_class: control.ingress_class.clone(),
        public_lb_domain: control.public_lb_domain.clone(),
        private_lb_domain: control.private_lb_domain.clone(),
        system_namespace: control.system_namespace.clone(),
    }
}

fn listeners(args: &GatewayArgs) -> Listeners {
    Listeners {
        http: args.http.clone(),
        internal_http: args.internal_http.clone(),
        https: args.https.clone(),
        internal_https: args.internal_https.clone(),
    }
}

fn threads(args: &GatewayArgs) -> usize {
    args.threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn build_gateway(args: &GatewayArgs) -> anyhow::Result<Arc<Gateway>> {
    let default_certificate = match (&args.default_certificate, &args.default_key) {
        (Some(cert), Some(key)) => Some(Arc::new(
            sluice_proxy::tls::load_default(cert, key)
                .context("--default-certificate/--default-key")?,
        )),
        (None, None) => None,
        _ => anyhow::bail!("--default-certificate and --default-key go together"),
    };
    let metrics = sluice_proxy::metrics::Metrics::new(prometheus::default_registry().clone())
        .context("registering metrics")?;
    let access_log = access_log(&args.access_log, &metrics)?;
    let gateway = Gateway::new(
        Arc::new(metrics),
        gateway::Settings {
            connect_timeout: args.connect_timeout,
            hold_timeout: args.hold_timeout,
            max_held_per_backend: args.max_held_requests,
            max_held_total: args.max_held_requests_total,
            outlier: sluice_proxy::balance::Outlier {
                consecutive_connect_failures: args.outlier_consecutive_connect_failures,
                ejection_time: args.outlier_ejection_time,
                max_ejection_percent: args.outlier_max_ejection_percent,
            },
            xff_trusted_hops: args.xff_trusted_hops,
            h2_max_concurrent_streams: args.streams.h2_max_concurrent_streams,
            h2_max_send_buffer: args.streams.h2_max_send_buffer_kb.saturating_mul(1024),
            h2_keepalive_interval: args.streams.h2_keepalive_interval,
            h2_keepalive_timeout: args.streams.h2_keepalive_timeout,
            h2_premature_reset_streams: args.streams.h2_premature_reset_streams,
            h2_premature_reset_lifetime: args.streams.h2_premature_reset_lifetime,
            stream_idle_timeout: args.streams.stream_idle_timeout,
            websocket_idle_timeout: args.streams.websocket_idle_timeout,
            downstream: args.downstream.limits(),
            server_timing: args.server_timing,
        },
    )
    .with_default_certificate(default_certificate);
    Ok(Arc::new(match access_log {
        Some(log) => gateway.with_access_log(log),
        None => gateway,
    }))
}

/// Opens `--access-log` (failing at start, not at the first request) and starts its writer.
fn access_log(
    args: &cli::AccessLogArgs,
    metrics: &sluice_proxy::metrics::Metrics,
) -> anyhow::Result<Option<access_log::AccessLog>> {
    let Some(target) = &args.access_log else {
        return Ok(None);
    };
    let format = match args.access_log_format {
        cli::AccessLogFormat::Json => access_log::Format::Json,
        cli::AccessLogFormat::Text => access_log::Format::Text,
    };
    let log = access_log::AccessLog::open(
        &access_log::Target::parse(target),
        format,
        args.access_log_queue,
        metrics.access_log_lines.clone(),
        metrics.access_log_dropped.clone(),
    )
    .with_context(|| format!("--access-log {target}"))?;
    Ok(Some(log))
}

/// The types a proxy subscribes to: certificates (private keys) only if it serves TLS.
fn subscribed_types(listeners: &Listeners) -> Vec<ResourceType> {
    ResourceType::ALL
        .into_iter()
        .filter(|t| *t != ResourceType::Certificate || listeners.serves_tls())
        .collect()
}

/// The proxy half: listeners, admin and the xDS client on `connector`; blocks until drained.
fn serve_proxy(
    args: &GatewayArgs,
    gateway: Arc<Gateway>,
    connector: Arc<dyn Connector>,
    node: Node,
    admin: AdminApp,
) -> anyhow::Result<()> {
    let listeners = listeners(args);
    let options = ClientOptions::new(node, subscribed_types(&listeners));
    let mut shell = Shell::new(threads(args), args.shutdown_grace);
    let plane = gateway.clone();
    // Held requests wait through the drain for endpoints the stream may still bring.
    let xds = shell.task_through_drain(
        "xds-client",
        Box::new(move |shutdown, ready| {
            Box::pin(async move {
                let on_ready = {
                    let gateway = plane.clone();
                    Box::new(move || {
                        gateway.ready.store(true, Ordering::Release);
                        ready();
                    })
                };
                client::run(connector, plane, options, on_ready, shutdown).await;
            })
        }),
    );
    shell.listeners(&gateway, &listeners, &xds)?;
    shell.probe(&args.probe_addr, admin.probes());
    shell.admin(&args.admin, admin);
    let draining = gateway.clone();
    shell.on_shutdown(move || draining.ready.store(false, Ordering::Release));
    info!(
        http = ?listeners.http,
        internal_http = ?listeners.internal_http,
        https = ?listeners.https,
        internal_https = ?listeners.internal_https,
        admin = %args.admin,
        probe = %args.probe_addr,
        "sluice proxy starting"
    );
    if listeners.http.is_empty() && listeners.internal_http.is_empty() {
        warn!("no HTTP listener configured");
    }
    let served = shell.run();
    if let Some(log) = &gateway.access_log {
        log.close();
    }
    served
}

/// `sluice run`: control plane and proxy in one process, connected in-process.
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    // Everything that can be checked before the (possibly long) first load is, so a typo
    // fails in milliseconds rather than after it.
    check_listen_addrs(&gateway_addrs(&args.gateway))?;
    if let Some(dir) = &args.config {
        check_manifest_dir(dir)?;
    }
    let gateway = build_gateway(&args.gateway)?;
    let control = ControlThread::start(&args.control, args.config.as_ref(), &args.kubernetes)?;
    control.wait_loaded()?;
    let connector: Arc<dyn Connector> = Arc::new(LocalConnector::new(
        control.plane.streams(),
        control.runtime.clone(),
    ));
    let hub = control.plane.hub().clone();
    let admin = AdminApp::for_gateway(gateway.clone())
        .route("/status", move || AdminResponse::json(&hub.statuses()));
    let admin = ui::routes(
        admin,
        control.plane.hub().clone(),
        control.plane.history().clone(),
    );
    let node = Node {
        id: "in-process".to_string(),
        ..Node::default()
    };
    let served = serve_proxy(&args.gateway, gateway, connector, node, admin);
    control.stop();
    served
}

fn tls_files(auth: &XdsAuthArgs) -> Option<TlsFiles> {
    match (&auth.xds_ca, &auth.xds_cert, &auth.xds_key) {
        (Some(ca), Some(cert), Some(key)) => Some(TlsFiles {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    }
}

/// `sluice controller`: the control plane, serving proxies over gRPC.
pub fn run_controller(args: &ControllerArgs) -> anyhow::Result<()> {
    check_listen_addrs(&[("--admin", &args.admin), ("--probe-addr", &args.probe_addr)])?;
    if let Some(dir) = &args.config {
        check_manifest_dir(dir)?;
    }
    check_files(&xds_files(&args.auth))?;
    let auth = ServerAuth::new(args.auth.xds_token_file.clone(), tls_files(&args.auth))?;
    let control = ControlThread::start(&args.control, args.config.as_ref(), &args.kubernetes)?;
    // The xDS port opens at once: proxies that come up with the controller connect while it
    // loads (their streams are answered after it) instead of backing off.
    let listener = control
        .runtime
        .block_on(sluice_xds::grpc::bind(&args.xds_listen))
        .with_context(|| format!("binding the xDS port {}", args.xds_listen))?;
    let streams = control.plane.fleet_streams();
    let stop = control.shutdown.subscribe();
    let limits = sluice_xds::grpc::ServerLimits {
        max_connections: args.xds_max_connections,
    };
    control.runtime.spawn(async move {
        if let Err(error) =
            sluice_xds::grpc::serve_with(listener, streams, auth, limits, stop).await
        {
            warn!(%error, "xDS server stopped");
        }
    });
    info!(xds = %args.xds_listen, admin = %args.admin, "sluice controller starting");
    let hub = control.plane.hub().clone();
    // The admin port serves while the sources load, so `/status` shows why a load is stuck
    // (a forbidden watch, say); `/ready` waits for it.
    let loaded = control.plane.loaded();
    let mut admin = AdminApp::new()
        .route("/ready", move || {
            AdminResponse::readiness(*loaded.borrow(), "loading sources")
        })
        .route("/metrics", AdminResponse::metrics)
        .route("/status", move || AdminResponse::json(&hub.statuses()));
    admin = ui::routes(
        admin,
        control.plane.hub().clone(),
        control.plane.history().clone(),
    );
    if let Some(kubernetes) = control.plane.kubernetes() {
        // 200 only on the Lease holder, the one replica that serves proxies.
        let leader = kubernetes.leader();
        admin = admin.route("/leader", move || {
            AdminResponse::readiness(*leader.borrow(), "not the leader")
        });
    }
    let mut shell = Shell::new(1, Duration::from_secs(1));
    shell.probe(&args.probe_addr, admin.probes());
    shell.admin(&args.admin, admin);
    let served = shell.run();
    control.stop();
    served
}

/// This machine's name, for a proxy without `--node-id`.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "sluice-proxy".to_string())
}

/// `sluice proxy`: a proxy fed by a controller over gRPC.
pub fn run_proxy(args: &ProxyArgs) -> anyhow::Result<()> {
    if args.auth.xds_token_file.is_none() && tls_files(&args.auth).is_none() {
        anyhow::bail!("the xDS stream needs --xds-token-file or --xds-ca/--xds-cert/--xds-key");
    }
    check_listen_addrs(&gateway_addrs(&args.gateway))?;
    check_files(&xds_files(&args.auth))?;
    let connector: Arc<dyn Connector> = Arc::new(GrpcConnector::new(GrpcClientConfig {
        endpoint: args.xds.clone(),
        token_file: args.auth.xds_token_file.clone(),
        tls: tls_files(&args.auth),
        server_name: args.xds_server_name.clone(),
    })?);
    let gateway = build_gateway(&args.gateway)?;
    let node = Node {
        id: args.node_id.clone().unwrap_or_else(host_name),
        metadata: [("version".to_string(), env!("CARGO_PKG_VERSION").to_string())]
            .into_iter()
            .collect(),
    };
    let admin = AdminApp::for_gateway(gateway.clone());
    serve_proxy(&args.gateway, gateway, connector, node, admin)
}

/// Every address a proxy listens on, with the flag that names it.
fn gateway_addrs(args: &GatewayArgs) -> Vec<(&'static str, &str)> {
    let mut addrs = vec![("--admin", args.admin.as_str())];
    addrs.push(("--probe-addr", args.probe_addr.as_str()));
    for (flag, list) in [
        ("--http", &args.http),
        ("--internal-http", &args.internal_http),
        ("--https", &args.https),
        ("--internal-https", &args.internal_https),
    ] {
        addrs.extend(list.iter().map(|a| (flag, a.as_str())));
    }
    addrs
}

/// Binds every address once, all at the same time, and lets them go. Pingora retries a bind
/// that finds its address in use for about 30 s, warning, while the admin port already
/// answers; nginx gives up after 5 tries in 2.5 s. Failing here ends the process at once with
/// the flag's name. (Another process could still take a port in the instant between this check
/// and Pingora's bind; `/ready` stays 503 until every listener accepts.)
fn check_listen_addrs(addrs: &[(&str, &str)]) -> anyhow::Result<()> {
    let mut held = Vec::with_capacity(addrs.len());
    for (flag, addr) in addrs {
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("{flag} {addr}: cannot listen"))?;
        held.push(listener);
    }
    Ok(())
}

/// The manifest directory must exist and be readable now: a typo should not leave a gateway
/// waiting (or serving nothing) forever.
fn check_manifest_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::read_dir(dir).map(drop).with_context(|| {
        format!(
            "--config {}: cannot read the manifest directory",
            dir.display()
        )
    })
}

/// The xDS credential files given, with their flags.
fn xds_files(auth: &XdsAuthArgs) -> Vec<(&'static str, &std::path::Path)> {
    [
        ("--xds-ca", &auth.xds_ca),
        ("--xds-cert", &auth.xds_cert),
        ("--xds-key", &auth.xds_key),
    ]
    .into_iter()
    .filter_map(|(flag, path)| path.as_deref().map(|p| (flag, p)))
    .collect()
}

/// Each file must be readable now.
fn check_files(files: &[(&str, &std::path::Path)]) -> anyhow::Result<()> {
    for (flag, path) in files {
        std::fs::File::open(path)
            .map(drop)
            .with_context(|| format!("{flag} {}: cannot read", path.display()))?;
    }
    Ok(())
}

/// Sets up logging: text or JSON, filtered by `filter`.
pub fn init_logging(format: cli::LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        cli::LogFormat::Text => builder.init(),
        cli::LogFormat::Json => builder.json().init(),
    }
}
