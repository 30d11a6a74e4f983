//! Drain on SIGTERM (issue 11, item 7): stop accepting; finish in-flight and buffered requests;
//! close idle and half-open connections at once (those still in the HTTP/1-vs-h2c sniff or
//! waiting for their first request head included); keep the config stream up so buffered
//! requests still get their endpoints; exit.

use crate::support::*;
use sluice_testkit::{EchoServer, H1Client, H2cClient};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const H1_IN_FLIGHT: usize = 16;
const H2_IN_FLIGHT: usize = 8;
const BUFFERED: usize = 3;
const LOAD_WORKERS: usize = 4;
/// 20 one-byte chunks, 250 ms apart: each response lasts about 5 s, so it is still in flight
/// while the idle connections are closed.
const SLOW: &str = "/?drip=20&drip_ms=250";

/// Waits until the peer closes `s` (EOF or reset), bounded.
async fn closed_by_peer(s: &mut TcpStream, what: &str) -> anyhow::Result<()> {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => anyhow::bail!("{what} still open {WAIT:?} after SIGTERM"),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
            // An h2 GOAWAY or the like before the close.
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_and_buffered_work_and_closes_idle_connections(
) -> anyhow::Result<()> {
    let slow = EchoServer::start("slow").await?;
    let quick = EchoServer::start("quick").await?;
    let manifests = |later: &[std::net::SocketAddr]| {
        service("ns", "quick", "http", 80, &[quick.addr()])
            + &simple_ingress("ns", "quick", "quick.example.com", "quick", "80")
            + &service("ns", "slow", "http", 80, &[slow.addr()])
            + &simple_ingress("ns", "slow", "slow.example.com", "slow", "80")
            + &service("ns", "later", "http", 80, later)
            + &simple_ingress("ns", "later", "later.example.com", "later", "80")
    };
    let mut gw = Gateway::start_with(&manifests(&[]), &["--hold-timeout", "60s"]).await?;
    gw.wait_status("Ingress", "ns", "slow", is_ready).await?;
    gw.wait_status("Ingress", "ns", "later", is_ready).await?;
    gw.wait_status("Ingress", "ns", "quick", is_ready).await?;
    let addr = gw.http;

    // In flight: slow responses on h1 connections and h2 streams.
    let mut in_flight = Vec::new();
    for _ in 0..H1_IN_FLIGHT {
        in_flight.push(tokio::spawn(async move {
            let mut c = H1Client::connect(addr).await?.with_timeout(WAIT * 3);
            c.send("GET", "slow.example.com", SLOW, &[], None).await
        }));
    }
    let h2 = H2cClient::connect(addr).await?.with_timeout(WAIT * 3);
    for _ in 0..H2_IN_FLIGHT {
        let h2 = h2.clone();
        in_flight.push(tokio::spawn(async move {
            h2.send("GET", "slow.example.com", SLOW, &[], None).await
        }));
    }
    // Buffered: a backend with no endpoint yet.
    let buffered = held_requests(&gw, "later.example.com", "ns/later:80", BUFFERED).await?;
    // Idle: a keep-alive connection after one request, and an h2c connection with no stream.
    let mut idle_h1_raw = TcpStream::connect(addr).await?;
    idle_h1_raw
        .write_all(b"GET /?x=1 HTTP/1.1\r\nhost: slow.example.com\r\n\r\n")
        .await?;
    let mut head = [0u8; 12];
    idle_h1_raw.read_exact(&mut head).await?;
    anyhow::ensure!(&head == b"HTTP/1.1 200", "warm-up request answered");
    let idle_h2 = H2cClient::connect(addr).await?;
    let warm = idle_h2
        .send("GET", "slow.example.com", "/", &[], None)
        .await?;
    anyhow::ensure!(warm.status == 200, "warm-up request answered");
    // Half-open: connected but silent (still in the sniff), and a request head half sent.
    let mut silent = TcpStream::connect(addr).await?;
    let mut partial = TcpStream::connect(addr).await?;
    partial
        .write_all(b"GET / HTTP/1.1\r\nhost: slow.exa")
        .await?;
    // Real load: keep-alive clients sending quick requests back to back until the signal.
    let signalled = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let load: Vec<_> = (0..LOAD_WORKERS)
        .map(|_| {
            let (signalled, sent) = (signalled.clone(), sent.clone());
            tokio::spawn(async move {
                let mut c = H1Client::connect(addr).await?;
                for _ in 0..100_000 {
                    // Only requests sent before the signal count; a keep-alive connection the
                    // drain closes under a request sent after it is HTTP/1.1's known race.
                    if signalled.load(Ordering::SeqCst) {
                        break;
                    }
                    let r = c.send("GET", "quick.example.com", "/", &[], None).await?;
                    anyhow::ensure!(r.status == 200, "load request: {}", r.status);
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok(())
            })
        })
        .collect();
    let deadline = Instant::now() + WAIT;
    while sent.load(Ordering::Relaxed) < 200 {
        anyhow::ensure!(Instant::now() < deadline, "load never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = Instant::now() + WAIT;
    while slow.in_flight() < H1_IN_FLIGHT + H2_IN_FLIGHT {
        anyhow::ensure!(Instant::now() < deadline, "load never reached the backend");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    signalled.store(true, Ordering::SeqCst);
    gw.signal("TERM")?;

    // Idle and half-open connections are closed while the slow responses are still going.
    closed_by_peer(&mut idle_h1_raw, "idle keep-alive connection").await?;
    // A real h2 client: it acknowledges the GOAWAY's PING, then the server closes.
    let deadline = Instant::now() + WAIT;
    while !idle_h2.is_closed() {
        anyhow::ensure!(Instant::now() < deadline, "idle h2c connection still open");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    closed_by_peer(&mut silent, "silent connection (in the sniff)").await?;
    closed_by_peer(&mut partial, "half-sent request head").await?;
    assert_eq!(
        slow.in_flight(),
        H1_IN_FLIGHT + H2_IN_FLIGHT,
        "closed at once, not after the in-flight work"
    );
    // No new connection is accepted.
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(addr).await.is_ok() {
        anyhow::ensure!(Instant::now() < deadline, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The config stream is still up: endpoints arriving now release the buffered requests.
    let later = EchoServer::start("later").await?;
    gw.write("00-initial.yaml", &manifests(&[later.addr()]))?;
    for b in buffered {
        let r = b.await??;
        assert_eq!(r.status, 200, "buffered request: {}", r.text());
    }
    let mut errors = 0;
    for r in in_flight {
        match r.await? {
            Ok(r) if r.status == 200 && r.text() == "a".repeat(20) => {}
            _ => errors += 1,
        }
    }
    assert_eq!(errors, 0, "requests in flight at SIGTERM that failed");
    for l in load {
        l.await??;
    }
    let status = gw.wait_exit(WAIT).await?;
    assert!(status.success(), "{status}");
    Ok(())
}

/// Cluster mode: a `sluice proxy` draining after SIGTERM still takes config from the
/// controller, so requests it holds get the endpoints that arrive during the drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_proxy_keeps_its_xds_stream() -> anyhow::Result<()> {
    let manifests = |addrs: &[std::net::SocketAddr]| {
        service("ns", "later", "http", 80, addrs)
            + &simple_ingress("ns", "later", "later.example.com", "later", "80")
    };
    let controller = Controller::start(&manifests(&[])).await?;
    let mut proxies = start_proxies(&controller, 1).await?;
    let proxy = &mut proxies[0];
    let held: Vec<_> = (0..BUFFERED)
        .map(|_| {
            let addr = proxy.http;
            tokio::spawn(async move {
                sluice_testkit::http1_request(addr, "GET", "later.example.com", "/", &[], None)
                    .await
            })
        })
        .collect();
    wait_metric(
        &*proxy,
        "sluice_backend_held_requests{backend=\"ns/later:80\"}",
        |v| v == BUFFERED as f64,
        WAIT,
    )
    .await?;
    proxy.signal("TERM")?;
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(proxy.http).await.is_ok() {
        anyhow::ensure!(Instant::now() < deadline, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let later = EchoServer::start("later").await?;
    controller.write("00-initial.yaml", &manifests(&[later.addr()]))?;
    for h in held {
        let r = h.await??;
        assert_eq!(r.status, 200, "held through the drain: {}", r.text());
    }
    let status = proxy.process().wait_exit(WAIT).await?;
    assert!(status.success(), "{status}");
    Ok(())
}
