//! The activator under abuse: clients that leave while buffered free their place at once,
//! and the held-request bounds (per backend, capped Revision annotation, total) answer 503.

use crate::support::*;
use sluice_testkit::{http1_request, EchoServer, H2cClient};
use std::net::SocketAddr;
use tokio::io::AsyncWriteExt;

/// A Service with no endpoints yet behind a KIngress: every request waits in its queue.
fn empty_service(name: &str, host: &str) -> String {
    service("ns", name, "http", 80, &[]) + &simple_ingress("ns", name, host, name, "80")
}

const BATCH: usize = 50;
/// Aborted requests per protocol: 10,000 in all.
const ABORTED_PER_PROTOCOL: usize = 5_000;
/// h2 batches on one connection: 400 streams, each reset within a second and before its
/// answer. That is rapid reset's signature, and past 500 such streams the connection ends
/// (Envoy's rule, `downstream/h2/state.rs`), so each 400 take a new connection.
const BATCHES_PER_H2_CONNECTION: usize = 8;
const GAUGE: &str = "sluice_backend_held_requests{backend=\"ns/cold:80\"}";

async fn held_now(gw: &Gateway) -> anyhow::Result<f64> {
    Ok(metric(gw, GAUGE).await?.unwrap_or(0.0))
}

/// `BATCH` HTTP/1.1 requests on their own connections, held, then every connection closed.
async fn aborted_h1_batch(gw: &Gateway) -> anyhow::Result<()> {
    let mut conns = Vec::with_capacity(BATCH);
    for _ in 0..BATCH {
        let mut s = tokio::net::TcpStream::connect(gw.http).await?;
        s.write_all(b"GET / HTTP/1.1\r\nhost: cold.example.com\r\n\r\n")
            .await?;
        conns.push(s);
    }
    wait_metric(gw, GAUGE, |v| v == BATCH as f64, WAIT).await?;
    drop(conns);
    Ok(())
}

/// `BATCH` h2c streams on one connection, held, then every stream reset (the client drops
/// each response future: RST_STREAM CANCEL) while the connection stays open.
async fn reset_h2_batch(gw: &Gateway, client: &H2cClient) -> anyhow::Result<()> {
    let streams: Vec<_> = (0..BATCH)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.send("GET", "cold.example.com", "/", &[], None).await })
        })
        .collect();
    wait_metric(gw, GAUGE, |v| v == BATCH as f64, WAIT).await?;
    for s in &streams {
        s.abort();
    }
    for s in streams {
        let _ = s.await;
    }
    Ok(())
}

/// Issue 11, item 4: 10,000 requests buffered for a backend with no endpoint, whose clients
/// then leave (h1 connections closed, h2 streams reset), leave an empty queue behind; the
/// bound (100 here) is never eaten by the departed, and a new request is held and then served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_aborted_requests_leave_the_queue_empty() -> anyhow::Result<()> {
    let gw = Gateway::start_with(
        &empty_service("cold", "cold.example.com"),
        &["--max-held-requests", "100", "--hold-timeout", "120s"],
    )
    .await?;
    gw.wait_status("Ingress", "ns", "cold", is_ready).await?;
    let mut h2 = H2cClient::connect(gw.http).await?;
    for batch in 0..ABORTED_PER_PROTOCOL / BATCH {
        if batch > 0 && batch % BATCHES_PER_H2_CONNECTION == 0 {
            assert!(
                !h2.is_closed(),
                "resets closed the stream, not the connection"
            );
            h2 = H2cClient::connect(gw.http).await?;
        }
        aborted_h1_batch(&gw).await?;
        wait_metric(&gw, GAUGE, |v| v == 0.0, WAIT).await?;
        reset_h2_batch(&gw, &h2).await?;
        wait_metric(&gw, GAUGE, |v| v == 0.0, WAIT).await?;
    }
    assert!(
        !h2.is_closed(),
        "resets closed the stream, not the connection"
    );
    assert_eq!(held_now(&gw).await?, 0.0);
    // A new request is held (not refused), and served once an endpoint appears.
    let waiting = tokio::spawn({
        let addr = gw.http;
        async move { http1_request(addr, "GET", "cold.example.com", "/", &[], None).await }
    });
    wait_metric(&gw, GAUGE, |v| v == 1.0, WAIT).await?;
    let backend = EchoServer::start("cold").await?;
    gw.write(
        "00-initial.yaml",
        &(service("ns", "cold", "http", 80, &[backend.addr()])
            + &simple_ingress("ns", "cold", "cold.example.com", "cold", "80")),
    )?;
    let served = waiting.await??;
    assert_eq!(served.status, 200, "{}", served.text());
    let again = http1_request(gw.http, "GET", "cold.example.com", "/", &[], None).await?;
    assert_eq!(again.status, 200);
    Ok(())
}

/// Sends a GET for `host` that will be held; returns it in flight.
fn send(
    addr: SocketAddr,
    host: &'static str,
) -> tokio::task::JoinHandle<anyhow::Result<sluice_testkit::Response>> {
    tokio::spawn(async move { http1_request(addr, "GET", host, "/", &[], None).await })
}

/// `--max-held-requests` caps a Revision's own `max-buffered-requests` annotation, and
/// `--max-held-requests-total` bounds the sum across backends: both overflow with 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_requests_are_bounded_per_backend_and_in_total() -> anyhow::Result<()> {
    // A Revision asking for 1000 buffered requests, over a Service with no endpoint.
    let greedy = service("ns", "greedy-svc", "http", 80, &[])
        + "apiVersion: sluice.dev/v1alpha1\nkind: Revision\nmetadata:\n  name: greedy\n  namespace: ns\n  annotations: {sluice.dev/max-buffered-requests: \"1000\"}\nspec:\n  timeoutSeconds: 3\n  service: {name: greedy-svc, port: 80}\n---\napiVersion: sluice.dev/v1alpha1\nkind: Route\nmetadata: {name: greedy, namespace: ns}\nspec:\n  hosts: [greedy.example.com]\n  traffic: [{revision: greedy, percent: 100}]\n---\n";
    let gw = Gateway::start_with(
        &(greedy + &empty_service("other", "other.example.com")),
        &[
            "--max-held-requests",
            "2",
            "--max-held-requests-total",
            "3",
            "--hold-timeout",
            "3s",
        ],
    )
    .await?;
    gw.wait_status("Route", "ns", "greedy", is_ready).await?;
    gw.wait_status("Ingress", "ns", "other", is_ready).await?;
    let held = held_requests(&gw, "greedy.example.com", "ns/greedy", 2).await?;
    let capped = http1_request(gw.http, "GET", "greedy.example.com", "/", &[], None).await?;
    assert_eq!(capped.status, 503, "the flag caps the annotation's 1000");
    let other = send(gw.http, "other.example.com");
    wait_metric(
        &gw,
        "sluice_backend_held_requests{backend=\"ns/other:80\"}",
        |v| v == 1.0,
        WAIT,
    )
    .await?;
    let total = http1_request(gw.http, "GET", "other.example.com", "/", &[], None).await?;
    assert_eq!(
        total.status, 503,
        "3 held in all; this backend holds only 1 of its 2"
    );
    // The held ones time out (504) and give their places back.
    for h in held {
        assert_eq!(h.await??.status, 504);
    }
    assert_eq!(other.await??.status, 504);
    let again = send(gw.http, "other.example.com");
    let and_again = send(gw.http, "other.example.com");
    wait_metric(
        &gw,
        "sluice_backend_held_requests{backend=\"ns/other:80\"}",
        |v| v == 2.0,
        WAIT,
    )
    .await?;
    assert_eq!(again.await??.status, 504);
    assert_eq!(and_again.await??.status, 504);
    Ok(())
}
