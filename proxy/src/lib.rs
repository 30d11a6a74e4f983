//! sluice's data plane and the `sluice` binary's logic.
//!
//! Shape: a [`source`] turns manifests into a `Snapshot` (through `sluice-controller`),
//! [`gateway::Gateway::apply`] compiles it into a [`router::Router`] and swaps it in atomically,
//! and [`forward`] serves each request from the router it loads once. Pingora provides the
//! process shell ([`server`]); hyper serves HTTP.
//!
//! Invariants:
//! - The request path takes no lock, logs nothing at info or above, and does not hold a router
//!   guard across an `.await`.
//! - Invalid input never panics: a bad snapshot is rejected and the last good router serves.

pub mod activator;
pub mod admin;
pub mod autoscale;
pub mod body;
pub mod cli;
pub mod demo;
pub mod error;
pub mod forward;
pub mod gateway;
pub mod metrics;
pub mod responder;
pub mod router;
pub mod scaler;
pub mod server;
pub mod simulate;
pub mod source;
pub mod tls;
pub mod upstream;

use anyhow::Context;
use std::path::PathBuf;
use std::sync::Arc;

/// Runs the gateway on a manifest directory until shutdown.
pub fn run_gateway(config: PathBuf, args: &cli::GatewayArgs) -> anyhow::Result<()> {
    let default_certificate = match (&args.default_certificate, &args.default_key) {
        (Some(cert), Some(key)) => Some(Arc::new(tls::load_default(cert, key)?)),
        (None, None) => None,
        _ => anyhow::bail!("--default-certificate and --default-key go together"),
    };
    let metrics = metrics::Metrics::new(prometheus::default_registry().clone())
        .context("registering metrics")?;
    let gateway = Arc::new(
        gateway::Gateway::new(
            metrics,
            gateway::Settings {
                connect_timeout: args.connect_timeout,
                hold_timeout: args.hold_timeout,
                max_held_per_backend: args.max_held_requests,
            },
        )
        .with_default_certificate(default_certificate),
    );
    let translate_config = sluice_controller::TranslateConfig {
        ingress_class: args.ingress_class.clone(),
        public_lb_domain: args.public_lb_domain.clone(),
        private_lb_domain: args.private_lb_domain.clone(),
        system_namespace: args.system_namespace.clone(),
    };
    let board = sluice_controller::status::StatusBoard::new(&translate_config);
    let controller = sluice_controller::Controller::new(translate_config);
    let pipeline = Arc::new(source::Pipeline::new(controller, board, gateway.clone()));
    let source = source::ManifestSource::new(config, pipeline.clone());
    let autoscaler = autoscale::Autoscaler::new(
        pipeline.clone(),
        Box::new(scaler::LocalScaler(scaler::LocalProcesses::new(
            pipeline.clone(),
        ))),
        Box::new(scaler::ObservedService::new(pipeline.clone())),
    );
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    server::run(
        server::RunConfig {
            http: args.http.clone(),
            internal_http: args.internal_http.clone(),
            https: args.https.clone(),
            internal_https: args.internal_https.clone(),
            admin: Some(args.admin.clone()),
            threads,
            shutdown_grace: args.shutdown_grace,
        },
        gateway,
        pipeline,
        source,
        autoscaler,
    )
}

/// Runs `sluice responder` until the process is stopped.
pub fn run_responder(args: cli::ResponderArgs) -> anyhow::Result<()> {
    let listen = match args.listen {
        Some(listen) => listen,
        None => format!(
            "127.0.0.1:{}",
            std::env::var("PORT").context("--listen or $PORT is required")?
        ),
    };
    let body = if args.body_bytes > 0 {
        bytes::Bytes::from(vec![b'x'; args.body_bytes])
    } else {
        bytes::Bytes::from(format!("{}\n", args.message))
    };
    let options = responder::ResponderOptions {
        status: http::StatusCode::from_u16(args.status).context("--status")?,
        body,
        latency: args.latency,
        max_concurrency: args.max_concurrency,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        tracing::info!(%listen, "responder listening");
        responder::serve(listener, options).await;
        anyhow::Ok(())
    })
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
