//! `sluice demo`: the bundled example. It starts two local demo backends, writes the example
//! manifests (pointing at them, and at this binary for the Revision processes) into a
//! directory, prints what to try, and runs the gateway on that directory, so edits to the files
//! apply live: a Knative KIngress split, a sluice Route split over two local Revisions with a
//! tag, a Revision that scales from zero on its first request, and the synthetic responder.

use crate::cli::{
    AccessLogArgs, ControlArgs, DemoArgs, DownstreamArgs, GatewayArgs, KubernetesArgs, RunArgs,
};
use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

const MANIFESTS: &str = include_str!("demo/manifests.yaml");

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let (blue, green) = start_backends().context("starting demo backends")?;
    let dir = match args.dir {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("sluice-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let sluice = std::env::current_exe().context("locating the sluice binary")?;
    let manifests = MANIFESTS
        .replace("${BLUE_PORT}", &blue.port().to_string())
        .replace("${GREEN_PORT}", &green.port().to_string())
        .replace("${SLUICE}", &sluice.display().to_string());
    let file = dir.join("demo.yaml");
    std::fs::write(&file, manifests).with_context(|| format!("writing {}", file.display()))?;

    let http = &args.http;
    let admin = &args.admin;
    println!(
        "sluice demo: manifests in {dir}\n\
         \n\
         Try, in another terminal:\n\
         \n\
         \x20 # Knative KIngress: a 90/10 split between two Services, a tag route and a path route\n\
         \x20 for i in $(seq 20); do curl -s -H 'Host: hello.example.com' http://{http}/; done | sort | uniq -c\n\
         \x20 curl -s -H 'Host: hello.example.com' -H 'Knative-Serving-Tag: green' http://{http}/\n\
         \x20 curl -s -H 'Host: hello.example.com' http://{http}/green\n\
         \n\
         \x20 # sluice Route + Revisions (local processes): 90/10 split, and the `canary` tag\n\
         \x20 for i in $(seq 20); do curl -s -H 'Host: app.example.com' http://{http}/; done | sort | uniq -c\n\
         \x20 curl -s -H 'Host: canary-app.example.com' http://{http}/\n\
         \x20 curl -s -H 'Host: app.example.com' -H 'Knative-Serving-Tag: canary' http://{http}/\n\
         \n\
         \x20 # scale from zero: the first request waits while an instance starts\n\
         \x20 time curl -s -H 'Host: sleepy.example.com' http://{http}/\n\
         \x20 # ...and back to zero about 25 s after the last request (stable window + grace)\n\
         \x20 curl -s http://{admin}/metrics | grep 'sluice_revision_actual_scale'\n\
         \n\
         \x20 # the built-in synthetic responder\n\
         \x20 curl -s -H 'Host: synthetic.example.com' http://{http}/\n\
         \n\
         \x20 # unknown host: 404; status, active config and metrics\n\
         \x20 curl -si -H 'Host: nope.example.com' http://{http}/ | head -1\n\
         \x20 curl -s http://{admin}/status; curl -s http://{admin}/config; curl -s http://{admin}/metrics | grep sluice_requests\n\
         \n\
         Edit {file} (say, change percent 90/10 to 50/50) and it applies live. Ctrl-C stops.\n",
        dir = dir.display(),
        file = file.display(),
    );
    let run = RunArgs {
        config: Some(dir),
        kubernetes: KubernetesArgs::off(),
        gateway: GatewayArgs {
            http: vec![args.http.clone()],
            internal_http: vec![],
            https: vec![],
            internal_https: vec![],
            default_certificate: None,
            default_key: None,
            admin: args.admin.clone(),
            // The demo's admin port serves the probes too; nothing else to open.
            probe_addr: "127.0.0.1:0".into(),
            xff_trusted_hops: 0,
            threads: Some(1),
            shutdown_grace: Duration::from_secs(2),
            hold_timeout: Duration::from_secs(30),
            max_held_requests: 10_000,
            max_held_requests_total: 20_000,
            // The demo's cold start shows in a browser's devtools.
            server_timing: true,
            outlier_consecutive_connect_failures: 5,
            outlier_ejection_time: Duration::from_secs(30),
            outlier_max_ejection_percent: 10,
            connect_timeout: Duration::from_secs(5),
            streams: Default::default(),
            downstream: DownstreamArgs::default(),
            access_log: AccessLogArgs::off(),
        },
        control: ControlArgs {
            ingress_class: "sluice.ingress.networking.knative.dev".into(),
            system_namespace: "knative-serving".into(),
            public_lb_domain: "sluice.sluice-system.svc.cluster.local".into(),
            private_lb_domain: "sluice-internal.sluice-system.svc.cluster.local".into(),
        },
    };
    crate::run(&run)
}

/// Two tiny HTTP/1.1 backends on loopback, on their own thread and runtime (Pingora owns the
/// main thread).
fn start_backends() -> anyhow::Result<(SocketAddr, SocketAddr)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let blue = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let green = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addrs = (blue.local_addr()?, green.local_addr()?);
    std::thread::Builder::new()
        .name("demo-backends".into())
        .spawn(move || {
            runtime.block_on(async move {
                tokio::join!(serve(blue, "blue"), serve(green, "green"));
            })
        })?;
    Ok(addrs)
}

async fn serve(listener: tokio::net::TcpListener, name: &'static str) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let revision = req
                    .headers()
                    .get("knative-serving-revision")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string();
                let body = format!("Hello from {name} (revision {revision})\n");
                async move { Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body)))) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
