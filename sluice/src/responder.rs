//! `sluice responder`: the synthetic HTTP server as a process (a Revision instance or a
//! load-test target). On SIGTERM it stops accepting and finishes its in-flight requests, as
//! Kubernetes expects of a pod being drained.

use crate::cli::ResponderArgs;
use anyhow::Context;
use sluice_proxy::responder::{self, ResponderOptions};

pub fn run(args: ResponderArgs) -> anyhow::Result<()> {
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
    let options = ResponderOptions {
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
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("installing the SIGTERM handler")?;
        tracing::info!(%listen, "responder listening");
        responder::serve(listener, options, async move {
            terminate.recv().await;
            tracing::info!("responder: SIGTERM, finishing in-flight requests");
        })
        .await;
        anyhow::Ok(())
    })
}
