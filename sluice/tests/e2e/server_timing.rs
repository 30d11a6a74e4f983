//! `Server-Timing` on responses that waited in the activator: present (HTTP/1.1 and h2c, and
//! on a 504 after the hold timeout) with the time held, a `cold-start` entry when a local revision was started from zero for the
//! request, appended after the upstream's own, absent on direct responses and when turned off.

use crate::support::*;
use sluice_testkit::{http1_request, EchoServer, H1Client, H2cClient, Response};
use std::time::Duration;

const HOST: &str = "late.example.com";
/// The upstream's own entry, asked of the echo server.
const UPSTREAM_TIMING: &str = "db;dur=53";
const WITH_UPSTREAM_TIMING: &str = "/?server_timing=db;dur=53";
/// How long the test keeps both requests held, at least.
const HELD: Duration = Duration::from_millis(200);

/// A Service at `addrs` (none: requests are held) behind a KIngress for [`HOST`].
fn manifests(addrs: &[std::net::SocketAddr]) -> String {
    service("ns", "late", "http", 80, addrs) + &simple_ingress("ns", "late", HOST, "late", "80")
}

/// The `dur` of metric `name` in a `Server-Timing` value.
fn dur(value: &str, name: &str) -> Option<f64> {
    value.split(',').map(str::trim).find_map(|metric| {
        let mut parts = metric.split(';').map(str::trim);
        if parts.next()? != name {
            return None;
        }
        parts.find_map(|p| p.strip_prefix("dur=")?.parse().ok())
    })
}

/// Every `Server-Timing` line of a response.
fn timing_lines(r: &Response) -> Vec<String> {
    r.headers
        .get_all("server-timing")
        .iter()
        .map(|v| v.to_str().unwrap_or("<not text>").to_string())
        .collect()
}

/// Holds an HTTP/1.1 request for `/` and an h2c one whose upstream answers with its own
/// `Server-Timing`, for at least [`HELD`], then gives the Service its endpoint.
async fn hold_then_release(
    gw: &Gateway,
    backend: &EchoServer,
) -> anyhow::Result<(Response, Response)> {
    let addr = gw.http;
    let h1 = tokio::spawn(async move { http1_request(addr, "GET", HOST, "/", &[], None).await });
    let client = H2cClient::connect(gw.http).await?;
    let h2 = tokio::spawn(async move {
        client
            .send("GET", HOST, WITH_UPSTREAM_TIMING, &[], None)
            .await
    });
    wait_metric(
        gw,
        "sluice_backend_held_requests{backend=\"ns/late:80\"}",
        |v| v == 2.0,
        WAIT,
    )
    .await?;
    // Not a wait for a condition: it gives the held time a known lower bound.
    tokio::time::sleep(HELD).await;
    gw.write("00-initial.yaml", &manifests(&[backend.addr()]))?;
    Ok((h1.await??, h2.await??))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_responses_carry_server_timing_and_direct_ones_do_not() -> anyhow::Result<()> {
    let backend = EchoServer::start("late").await?;
    let gw = Gateway::start(&manifests(&[])).await?;
    gw.wait_ingress_ready("ns", "late").await?;
    let (h1, h2) = hold_then_release(&gw, &backend).await?;

    assert_eq!(h1.status, 200, "{}", h1.text());
    let lines = timing_lines(&h1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let held = dur(&lines[0], "activator").expect("an activator entry");
    assert!(
        held >= HELD.as_millis() as f64 && held < WAIT.as_millis() as f64,
        "{lines:?}"
    );
    // A Service, not a revision at zero: nothing was started for it.
    assert_eq!(dur(&lines[0], "cold-start"), None, "{lines:?}");

    assert_eq!(h2.status, 200, "{}", h2.text());
    assert_eq!(h2.version, http::Version::HTTP_2);
    let lines = timing_lines(&h2);
    assert_eq!(lines.len(), 1, "{lines:?}");
    // The upstream's entry first, untouched; ours after it.
    let ours = lines[0]
        .strip_prefix(&format!("{UPSTREAM_TIMING}, "))
        .unwrap_or_else(|| panic!("upstream entry kept first: {lines:?}"));
    let held = dur(ours, "activator").expect("an activator entry");
    assert!(held >= HELD.as_millis() as f64, "{lines:?}");
    assert_eq!(dur(ours, "cold-start"), None, "{lines:?}");

    // Direct (an endpoint is ready, nobody waits): nothing added, the upstream's kept.
    let direct = http1_request(gw.http, "GET", HOST, "/", &[], None).await?;
    assert_eq!(direct.status, 200);
    assert!(
        timing_lines(&direct).is_empty(),
        "{:?}",
        timing_lines(&direct)
    );
    let client = H2cClient::connect(gw.http).await?;
    let direct = client
        .send("GET", HOST, WITH_UPSTREAM_TIMING, &[], None)
        .await?;
    assert_eq!(direct.status, 200);
    assert_eq!(timing_lines(&direct), [UPSTREAM_TIMING]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_timing_off_adds_nothing_to_held_responses() -> anyhow::Result<()> {
    let backend = EchoServer::start("late").await?;
    let gw = Gateway::start_with(&manifests(&[]), &["--server-timing=false"]).await?;
    gw.wait_ingress_ready("ns", "late").await?;
    let (h1, h2) = hold_then_release(&gw, &backend).await?;
    assert_eq!((h1.status, h2.status), (200, 200));
    // Both were held (the queue-time histogram counted them), yet carry nothing of ours.
    let held = metric(
        &gw,
        "sluice_backend_queue_wait_seconds_count{backend=\"ns/late:80\"}",
    )
    .await?;
    assert_eq!(held, Some(2.0));
    assert!(timing_lines(&h1).is_empty(), "{:?}", timing_lines(&h1));
    assert_eq!(timing_lines(&h2), [UPSTREAM_TIMING]);
    Ok(())
}

/// A request that waited in vain still tells how long: the 504 carries the time held.
#[tokio::test]
async fn a_hold_timeout_tells_the_time_held() -> anyhow::Result<()> {
    let gw = Gateway::start_with(&manifests(&[]), &["--hold-timeout", "300ms"]).await?;
    gw.wait_ingress_ready("ns", "late").await?;
    let r = http1_request(gw.http, "GET", HOST, "/", &[], None).await?;
    assert_eq!(r.status, 504, "{}", r.text());
    let lines = timing_lines(&r);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let held = dur(&lines[0], "activator").expect("an activator entry");
    assert!(
        (300.0..WAIT.as_millis() as f64).contains(&held),
        "{lines:?}"
    );
    Ok(())
}

/// A local revision at zero: the request pokes the autoscaler, an instance starts, and the
/// response tells both the time held and the part of it spent waiting for that instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_gets_its_own_entry() -> anyhow::Result<()> {
    let manifests = autoscaler_config("")
        + &revision(
            "cold",
            "cold.example.com",
            0,
            &[("autoscaling.knative.dev/initial-scale", "0")],
            &["--message", "warm"],
            "",
        );
    let gw = Gateway::start(&manifests).await?;
    gw.wait_status("Route", "ns", "cold", is_ready).await?;
    let mut client = H1Client::connect(gw.http)
        .await?
        .with_timeout(Duration::from_secs(60));
    let cold = client
        .send("GET", "cold.example.com", "/", &[], None)
        .await?;
    assert_eq!(cold.status, 200, "{}", cold.text());
    assert_eq!(cold.text(), "warm\n");
    let lines = timing_lines(&cold);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let held = dur(&lines[0], "activator").expect("an activator entry");
    let start = dur(&lines[0], "cold-start").expect("a cold-start entry");
    // Starting a process and probing it ready takes a while; all of it was this request's.
    assert!(start > 0.0 && start <= held, "{lines:?}");
    assert!(lines[0].starts_with("activator;dur="), "{lines:?}");

    // The instance is up now (scale to zero takes the 6 s stable window and more): direct.
    let warm = client
        .send("GET", "cold.example.com", "/", &[], None)
        .await?;
    assert_eq!(warm.status, 200);
    assert!(timing_lines(&warm).is_empty(), "{:?}", timing_lines(&warm));
    Ok(())
}
