//! Cold request → scale write latency in Kubernetes mode (issue 9's goal: p99 ≤ 50 ms).
//!
//! Against the test fake API server: N Revisions, each scaling its own Deployment from zero.
//! `sluice run --kubernetes` (the binary given) serves them; each Revision gets one request,
//! one at a time, and the latency is from just before the request is written to the moment
//! the fake API server receives the `PATCH …/deployments/<name>/scale`. The request itself is
//! then dropped (no instance ever becomes ready). Writes a Markdown report.
//!
//! `cargo run --release -p sluice --example kube_cold_scale -- target/release/sluice 200 perf/KUBE.md`

use anyhow::{bail, Context};
use serde_json::{json, Value};
use sluice_testkit::kube_api::FakeApiServer;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NAMESPACE: &str = "perf";

fn objects(i: usize) -> Vec<Value> {
    let name = format!("app-{i}");
    vec![
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": name, "namespace": NAMESPACE},
               "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                        "template": {"metadata": {"labels": {"app": name}},
                                     "spec": {"containers": [{"name": "app", "image": "example.com/app"}]}}}}),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": NAMESPACE},
               "spec": {"ports": [{"name": "http", "port": 80}]}}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": format!("{name}-0"), "namespace": NAMESPACE,
                            "labels": {"kubernetes.io/service-name": name}},
               "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}], "endpoints": []}),
        json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Revision",
               "metadata": {"name": name, "namespace": NAMESPACE,
                            "annotations": {"autoscaling.knative.dev/initial-scale": "0"}},
               "spec": {"service": {"name": name, "port": 80},
                        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}}}),
        json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Route",
               "metadata": {"name": name, "namespace": NAMESPACE},
               "spec": {"hosts": [format!("{name}.example.com")],
                        "traffic": [{"revision": name, "percent": 100}]}}),
    ]
}

fn port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], sluice_testkit::free_port()))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn wait(what: &str, bound: Duration, mut ok: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + bound;
    while !ok() {
        if Instant::now() > deadline {
            bail!("{what}: not within {bound:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let binary = args
        .next()
        .context("usage: kube_cold_scale SLUICE [N] [OUT.md]")?;
    let n: usize = args.next().map_or(Ok(200), |n| n.parse())?;
    let out = args.next();

    let api = FakeApiServer::start().await?;
    api.apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "config-autoscaler", "namespace": "knative-serving"},
        "data": {"allow-zero-initial-scale": "true"}}))?;
    for i in 0..n {
        for object in objects(i) {
            api.apply(object)?;
        }
    }
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig)?;
    let (http, internal, admin) = (port(), port(), port());
    let mut child = Command::new(&binary)
        .args(["run", "--kubernetes", "--kubeconfig"])
        .arg(&kubeconfig)
        .args([
            "--http",
            &http.to_string(),
            "--internal-http",
            &internal.to_string(),
        ])
        .args(["--admin", &admin.to_string(), "--threads", "1"])
        .env("SLUICE_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {binary}"))?;

    // Every Revision decided (desiredScale 0 written back): the autoscaler knows them all.
    let decided = || {
        api.list("sluice.dev/v1alpha1", "revisions", Some(NAMESPACE))
            .iter()
            .filter(|r| r["status"]["desiredScale"] == 0)
            .count()
            == n
    };
    let started = wait("every revision decided", Duration::from_secs(60), decided).await;
    if let Err(error) = started {
        let _ = child.kill();
        return Err(error);
    }

    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let host = format!("app-{i}.example.com");
        let suffix = format!("/deployments/app-{i}/scale");
        let seen_before = api.requests().len();
        let sent = Instant::now();
        let request = tokio::spawn(async move {
            sluice_testkit::http1_request(http, "GET", &host, "/", &[], None).await
        });
        let mut written = None;
        let deadline = sent + Duration::from_secs(5);
        while written.is_none() && Instant::now() < deadline {
            written = api.requests()[seen_before..]
                .iter()
                .find(|r| r.method == "PATCH" && r.path.ends_with(&suffix))
                .map(|r| r.at);
            if written.is_none() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        request.abort();
        match written {
            Some(at) => latencies.push(at.saturating_duration_since(sent)),
            None => {
                let _ = child.kill();
                bail!("app-{i}: no scale write within 5 s");
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();

    latencies.sort();
    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
    let line = format!(
        "| {n} | {} | {} | {} | {} | {} |",
        ms(latencies[0]),
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 90.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies[latencies.len() - 1]),
    );
    let report = format!(
        "# Kubernetes mode: cold request → scale write\n\n\
         Generated by `perf/kube-cold` ({}). Each of N Revisions (scaling its own Deployment from\n\
         zero through the `scale` subresource) gets one request through `sluice run --kubernetes`;\n\
         the latency runs from just before the request is written to the moment the fake API\n\
         server (`sluice_testkit::kube_api`, in the measuring process) receives the scale\n\
         `PATCH`. Goal: p99 ≤ 50 ms.\n\n\
         | requests | min ms | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|---|\n{line}\n",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    );
    print!("{report}");
    if let Some(out) = out {
        std::fs::write(&out, report).with_context(|| format!("writing {out}"))?;
    }
    Ok(())
}
