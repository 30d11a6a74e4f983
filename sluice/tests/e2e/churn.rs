//! Config churn under load (issue 11, item 7): 100 manifest changes a second for 30 s (three
//! repetitions of 10 s) while clients send requests: no request gets a non-2xx, every change is
//! applied, and memory does not grow from one repetition to the next.

use crate::support::*;
use sluice_testkit::{EchoServer, H1Client, H2cClient};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const REPETITIONS: usize = 3;
const CHANGES_PER_REPETITION: usize = 1_000;
const CHANGE_EVERY: Duration = Duration::from_millis(10);
const APPLIED: &str = "sluice_snapshot_apply_duration_seconds_count";

fn slice(name: &str, svc: &str, addrs: &[SocketAddr]) -> String {
    let ips: Vec<String> = addrs.iter().map(|a| format!("\"{}\"", a.ip())).collect();
    let port = addrs.first().map_or(8080, |a| a.port());
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  namespace: ns\n  labels: {{kubernetes.io/service-name: {svc}}}\naddressType: IPv4\nports: [{{name: http, port: {port}}}]\nendpoints: [{{addresses: [{}], conditions: {{ready: true}}}}]\n---\n",
        ips.join(", ")
    )
}

/// Change `n`: the served route's split weights and header, an extra endpoint slice that
/// comes and goes, and a throwaway Ingress whose host changes every time.
fn churn(n: usize, b: SocketAddr) -> String {
    let (one, two) = if n.is_multiple_of(2) {
        (100, 0)
    } else {
        (50, 50)
    };
    let web = ingress(
        "ns",
        "web",
        &format!(
            "  rules:\n  - hosts: [web.example.com]\n    visibility: ExternalIP\n    http:\n      paths:\n      - splits:\n        - {{serviceNamespace: ns, serviceName: web, servicePort: 80, percent: {one}, appendHeaders: {{X-Change: \"{n}\"}}}}\n        - {{serviceNamespace: ns, serviceName: web2, servicePort: 80, percent: {two}}}"
        ),
    );
    let extra = if n.is_multiple_of(3) {
        String::new()
    } else {
        slice("web-extra", "web", &[b])
    };
    web + &extra + &simple_ingress("ns", "scratch", &format!("c{n}.example.com"), "web", "80")
}

/// Resident memory of `pid`, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for {pid}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_changes_a_second_under_load_fail_no_request_and_leak_nothing(
) -> anyhow::Result<()> {
    let a = EchoServer::start("a").await?;
    let b = EchoServer::start("b").await?;
    // Port numbers differ per echo server: both services list both ports' slices.
    let base = service("ns", "web", "http", 80, &[a.addr()])
        + &service("ns", "web2", "http", 80, &[b.addr()]);
    let gw = Gateway::start(&base).await?;
    gw.write("10-churn.yaml", &churn(0, b.addr()))?;
    gw.wait_status("Ingress", "ns", "web", is_ready).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let addr = gw.http;
    let mut load = Vec::new();
    for worker in 0..4 {
        let (stop, ok, bad) = (stop.clone(), ok.clone(), bad.clone());
        load.push(tokio::spawn(async move {
            let h2 = if worker == 0 {
                Some(H2cClient::connect(addr).await?)
            } else {
                None
            };
            let mut h1 = H1Client::connect(addr).await?;
            for _ in 0..1_000_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let r = match &h2 {
                    Some(h2) => h2.send("GET", "web.example.com", "/", &[], None).await?,
                    None => h1.send("GET", "web.example.com", "/", &[], None).await?,
                };
                if (200..300).contains(&r.status) {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    bad.fetch_add(1, Ordering::Relaxed);
                    eprintln!("non-2xx under churn: {} {}", r.status, r.text());
                }
            }
            anyhow::Ok(())
        }));
    }

    let pid = gw
        .pid()
        .ok_or_else(|| anyhow::anyhow!("gateway not running"))?;
    let mut rss = Vec::new();
    let mut n = 0;
    for _ in 0..REPETITIONS {
        let applied_before = metric(&gw, APPLIED).await?.unwrap_or(0.0);
        let mut tick = tokio::time::interval(CHANGE_EVERY);
        for _ in 0..CHANGES_PER_REPETITION {
            tick.tick().await;
            n += 1;
            gw.write("10-churn.yaml", &churn(n, b.addr()))?;
        }
        // The last change is applied (the scratch host answers), then memory is read.
        let host = format!("c{n}.example.com");
        let deadline = Instant::now() + WAIT;
        loop {
            let r = sluice_testkit::http1_request(addr, "GET", &host, "/", &[], None).await?;
            if r.status == 200 {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "change {n} never applied: {} {}; status {:?}",
                r.status,
                r.text(),
                gw.status_of("Ingress", "ns", "scratch").await?
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let applied = metric(&gw, APPLIED).await?.unwrap_or(0.0) - applied_before;
        // Changes close together may be applied as one batch; most are applied on their own.
        assert!(
            applied >= (CHANGES_PER_REPETITION / 10) as f64,
            "only {applied} batches applied for {CHANGES_PER_REPETITION} changes"
        );
        rss.push(rss_kib(pid)?);
        eprintln!(
            "repetition {}: {applied} batches applied, rss {} KiB, {} ok",
            rss.len(),
            rss[rss.len() - 1],
            ok.load(Ordering::Relaxed)
        );
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await??;
    }
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "non-2xx responses under churn"
    );
    assert!(ok.load(Ordering::Relaxed) > 0);
    // Flat: the last repetition ends within a margin of the first (10 % + 4 MiB). Idle pooled
    // connections to removed endpoints, kept until their idle timeout, grew it by ~7 MiB a
    // repetition before they were closed with their endpoint.
    let (first, last) = (rss[0], rss[rss.len() - 1]);
    assert!(
        last <= first + first / 10 + 4 * 1024,
        "rss grew from {first} KiB to {last} KiB over {REPETITIONS} repetitions"
    );
    Ok(())
}
