//! Passive health (Envoy's outlier detection on connect failures): a backend killed under load
//! costs only the requests in flight on it, is ejected after a few refused connects, and gets
//! traffic again once restarted and its ejection is over.

use crate::support::*;
use sluice_testkit::{EchoOptions, EchoServer, H1Client};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WORKERS: usize = 4;
const CONNECT_ERRORS: &str = "sluice_upstream_connect_errors_total{backend=\"ns/web:80\"}";
const EJECTIONS: &str = "sluice_upstream_ejections_total{backend=\"ns/web:80\"}";

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// `WORKERS` keep-alive clients sending GETs until `stop` (or a bounded count each).
fn load(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<anyhow::Result<()>>> {
    (0..WORKERS)
        .map(|_| {
            let (stop, tally) = (stop.clone(), tally.clone());
            tokio::spawn(async move {
                let mut client = H1Client::connect(addr).await?;
                for _ in 0..20_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let ok = match client.send("GET", "web.example.com", "/", &[], None).await {
                        Ok(r) => r.status == 200,
                        Err(_) => false,
                    };
                    if ok {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                        // The connection may be gone with the failed request.
                        client = H1Client::connect(addr).await?;
                    }
                }
                anyhow::Ok(())
            })
        })
        .collect()
}

async fn until(what: &str, check: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + 2 * WAIT;
    while !check() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what} not reached within {:?}",
            2 * WAIT
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Issue 11, item 7: kill one of two backends under load. Only requests in flight on it may
/// fail (at most one per client); it is ejected after 5 refused connects (each retried on the
/// other endpoint, so invisible to clients) and gets no new request while ejected; restarted
/// on its address, it serves again once the ejection is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_is_ejected_and_returns_after_restart() -> anyhow::Result<()> {
    let a = EchoServer::start("a").await?;
    let b = EchoServer::start("b").await?;
    let a_addr = a.addr();
    let gw = Gateway::start_with(
        &(service("ns", "web", "http", 80, &[a_addr, b.addr()])
            + &simple_ingress("ns", "web", "web.example.com", "web", "80")),
        &["--outlier-ejection-time", "3s"],
    )
    .await?;
    gw.wait_status("Ingress", "ns", "web", is_ready).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let workers = load(gw.http, stop.clone(), tally.clone());
    until("both backends serving", || {
        a.requests() >= 50 && b.requests() >= 50
    })
    .await?;
    let failed_before = tally.failed.load(Ordering::Relaxed);
    drop(a);
    // Load goes on against the survivor.
    let served_at_kill = b.requests();
    until("load after the kill", || {
        b.requests() >= served_at_kill + 300
    })
    .await?;
    let ejections = wait_metric(&gw, EJECTIONS, |v| v >= 1.0, WAIT).await?;
    let connect_errors = metric(&gw, CONNECT_ERRORS).await?.unwrap_or(0.0);
    let failed = tally.failed.load(Ordering::Relaxed) - failed_before;
    eprintln!(
        "after the kill: {failed} failed, {connect_errors} connect errors, {ejections} ejections"
    );
    assert_eq!(failed_before, 0);
    assert!(
        failed <= WORKERS as u64,
        "only requests in flight on the killed backend may fail: {failed}"
    );
    // At most 5 refused connects per ejection, plus those that picked it at the same instant.
    assert!(
        connect_errors <= 5.0 * ejections + (WORKERS - 1) as f64,
        "{connect_errors} connect errors for {ejections} ejections"
    );
    // Restarted on its address: back in rotation once the ejection is over.
    let a = EchoServer::start_with(EchoOptions {
        addr: Some(a_addr),
        ..EchoOptions::named("a-again")
    })
    .await?;
    until("the restarted backend serving", || a.requests() >= 20).await?;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await??;
    }
    assert_eq!(
        tally.failed.load(Ordering::Relaxed) - failed_before,
        failed,
        "no failure after the kill's in-flight requests"
    );
    Ok(())
}
