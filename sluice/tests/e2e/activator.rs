//! The built-in activator and autoscaler with real local processes (`sluice responder`
//! instances started by the gateway): cold start, containerConcurrency, overflow and timeout,
//! scale-up and scale to zero, and exact counters under client disconnects.

use crate::support::*;
use sluice_testkit::{http1_request, H1Client};
use std::time::{Duration, Instant};

/// Knative's cold start: 50 concurrent requests for a revision at zero are buffered, the
/// first one pokes the autoscaler, and all are answered once the instance is ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_releases_fifty_buffered_requests() -> anyhow::Result<()> {
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
    assert_eq!(
        metric(&gw, "sluice_revision_actual_scale{revision=\"ns/cold\"}")
            .await?
            .unwrap_or(0.0),
        0.0
    );
    let mut requests = Vec::new();
    for _ in 0..50 {
        let addr = gw.http;
        requests.push(tokio::spawn(async move {
            let mut c = H1Client::connect(addr)
                .await?
                .with_timeout(Duration::from_secs(60));
            c.send("GET", "cold.example.com", "/", &[], None).await
        }));
    }
    for r in requests {
        let r = r.await??;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), "warm\n");
    }
    // The Revision's status shows the instance at the next autoscaler tick.
    gw.wait_status("Revision", "ns", "cold", |s| {
        s["status"]["actualScale"].as_u64().unwrap_or(0) >= 1
    })
    .await?;
    // Every request went through the queue and was counted there.
    wait_metric(
        &gw,
        "sluice_backend_queue_wait_seconds_count{backend=\"ns/cold\"}",
        |v| v >= 1.0,
        WAIT,
    )
    .await?;
    Ok(())
}

/// containerConcurrency is a hard per-instance limit, checked by the instance itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_concurrency_is_never_exceeded() -> anyhow::Result<()> {
    let manifests = autoscaler_config("")
        + &revision(
            "cc",
            "cc.example.com",
            1,
            &[
                ("autoscaling.knative.dev/max-scale", "2"),
                ("autoscaling.knative.dev/min-scale", "1"),
            ],
            &["--max-concurrency", "1"],
            "",
        );
    let gw = Gateway::start(&manifests).await?;
    gw.wait_status("Route", "ns", "cc", is_ready).await?;
    let mut requests = Vec::new();
    for _ in 0..30 {
        let addr = gw.http;
        requests.push(tokio::spawn(async move {
            let mut c = H1Client::connect(addr)
                .await?
                .with_timeout(Duration::from_secs(60));
            c.send("GET", "cc.example.com", "/?sleep_ms=30", &[], None)
                .await
        }));
    }
    for r in requests {
        let r = r.await??;
        assert_eq!(
            r.status,
            200,
            "instance saw more than 1 in flight: {}",
            r.text()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffer_overflow_gets_503_and_timeout_gets_504() -> anyhow::Result<()> {
    // An instance that never becomes ready: requests can only wait.
    let never = "apiVersion: sluice.dev/v1alpha1\nkind: Revision\nmetadata:\n  name: never\n  namespace: ns\n  annotations: {sluice.dev/max-buffered-requests: \"2\"}\nspec:\n  timeoutSeconds: 2\n  process: {command: [sleep, \"30\"]}\n---\napiVersion: sluice.dev/v1alpha1\nkind: Route\nmetadata: {name: never, namespace: ns}\nspec:\n  hosts: [never.example.com]\n  traffic: [{revision: never, percent: 100}]\n---\n";
    let gw = Gateway::start(&(autoscaler_config("") + never)).await?;
    gw.wait_status("Route", "ns", "never", is_ready).await?;
    let started = Instant::now();
    let held = held_requests(&gw, "never.example.com", "ns/never", 2).await?;
    let overflow = http1_request(gw.http, "GET", "never.example.com", "/", &[], None).await?;
    assert_eq!(overflow.status, 503, "{}", overflow.text());
    for h in held {
        assert_eq!(h.await??.status, 504);
    }
    // The revision timeout (2 s) includes the queue time.
    assert!(started.elapsed() >= Duration::from_secs(2));
    wait_metric(
        &gw,
        "sluice_backend_held_requests{backend=\"ns/never\"}",
        |v| v == 0.0,
        WAIT,
    )
    .await?;
    Ok(())
}

/// Sustained load scales up; idleness scales to zero after the stable window and the grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_up_under_load_and_down_to_zero_when_idle() -> anyhow::Result<()> {
    let manifests = autoscaler_config("")
        + &revision(
            "elastic",
            "elastic.example.com",
            0,
            &[
                ("autoscaling.knative.dev/target", "1"),
                ("autoscaling.knative.dev/max-scale", "3"),
            ],
            &[],
            "",
        );
    let gw = Gateway::start(&manifests).await?;
    gw.wait_status("Route", "ns", "elastic", is_ready).await?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..6 {
        let (addr, stop) = (gw.http, stop.clone());
        load.push(tokio::spawn(async move {
            let mut c = H1Client::connect(addr)
                .await?
                .with_timeout(Duration::from_secs(60));
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 2000 {
                n += 1;
                let r = c
                    .send("GET", "elastic.example.com", "/?sleep_ms=100", &[], None)
                    .await?;
                anyhow::ensure!(r.status == 200, "status {}", r.status);
            }
            anyhow::Ok(())
        }));
    }
    let scaled = wait_metric(
        &gw,
        "sluice_revision_actual_scale{revision=\"ns/elastic\"}",
        |v| v >= 2.0,
        Duration::from_secs(30),
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in load {
        l.await??;
    }
    assert!(scaled? >= 2.0);
    // Idle: stable window (6 s) then the grace period, then zero.
    wait_metric(
        &gw,
        "sluice_revision_actual_scale{revision=\"ns/elastic\"}",
        |v| v == 0.0,
        Duration::from_secs(45),
    )
    .await?;
    // And it comes back on the next request.
    let mut c = H1Client::connect(gw.http)
        .await?
        .with_timeout(Duration::from_secs(60));
    assert_eq!(
        c.send("GET", "elastic.example.com", "/", &[], None)
            .await?
            .status,
        200
    );
    Ok(())
}

/// Client disconnects, while buffered and while in flight, leave no count behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_stay_exact_when_clients_disconnect() -> anyhow::Result<()> {
    let manifests = autoscaler_config("")
        + &revision(
            "exact",
            "exact.example.com",
            1,
            &[
                ("autoscaling.knative.dev/min-scale", "1"),
                ("autoscaling.knative.dev/max-scale", "1"),
            ],
            &[],
            "",
        );
    let gw = Gateway::start(&manifests).await?;
    gw.wait_status("Route", "ns", "exact", is_ready).await?;
    wait_metric(
        &gw,
        "sluice_revision_actual_scale{revision=\"ns/exact\"}",
        |v| v == 1.0,
        Duration::from_secs(20),
    )
    .await?;
    // One in flight on the only slot (cc=1), four buffered behind it; then every client leaves.
    let mut clients = Vec::new();
    for _ in 0..5 {
        let addr = gw.http;
        clients.push(tokio::spawn(async move {
            let mut c = H1Client::connect(addr)
                .await?
                .with_timeout(Duration::from_secs(60));
            c.send("GET", "exact.example.com", "/?sleep_ms=5000", &[], None)
                .await
        }));
    }
    wait_metric(
        &gw,
        "sluice_backend_held_requests{backend=\"ns/exact\"}",
        |v| v == 4.0,
        WAIT,
    )
    .await?;
    wait_metric(
        &gw,
        "sluice_backend_in_flight_requests{backend=\"ns/exact\"}",
        |v| v == 1.0,
        WAIT,
    )
    .await?;
    for c in &clients {
        c.abort();
    }
    wait_metric(
        &gw,
        "sluice_backend_held_requests{backend=\"ns/exact\"}",
        |v| v == 0.0,
        WAIT,
    )
    .await?;
    wait_metric(
        &gw,
        "sluice_backend_in_flight_requests{backend=\"ns/exact\"}",
        |v| v == 0.0,
        WAIT,
    )
    .await?;
    // The slot is really free: a new request is served at once.
    let r = http1_request(gw.http, "GET", "exact.example.com", "/", &[], None).await?;
    assert_eq!(r.status, 200);
    Ok(())
}

#[tokio::test]
async fn route_to_a_missing_revision_is_reported_and_answers_404() -> anyhow::Result<()> {
    let manifests = "apiVersion: sluice.dev/v1alpha1\nkind: Route\nmetadata: {name: lost, namespace: ns}\nspec:\n  hosts: [lost.example.com]\n  traffic: [{revision: nowhere, percent: 100}]\n---\n";
    let gw = Gateway::start(manifests).await?;
    let s = gw
        .wait_status("Route", "ns", "lost", |s| {
            condition(s, "Ready") == Some("False")
        })
        .await?;
    assert_eq!(reason(&s, "Ready"), Some("RevisionMissing"), "{s:#}");
    let r = http1_request(gw.http, "GET", "lost.example.com", "/", &[], None).await?;
    assert_eq!(r.status, 404);
    Ok(())
}

/// Tags: tag hosts and the Knative-Serving-Tag header; the revision headers are set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_splits_tags_and_revision_headers() -> anyhow::Result<()> {
    let responder = |name: &str, msg: &str| {
        format!("apiVersion: sluice.dev/v1alpha1\nkind: Revision\nmetadata: {{name: {name}, namespace: ns}}\nspec:\n  responder: {{message: {msg}}}\n---\n")
    };
    let route = "apiVersion: sluice.dev/v1alpha1\nkind: Route\nmetadata: {name: hello, namespace: ns}\nspec:\n  hosts: [hello.example.com]\n  traffic:\n  - {revision: v1, percent: 90}\n  - {revision: v2, percent: 10, tag: canary}\n---\n";
    let gw = Gateway::start(&(responder("v1", "one") + &responder("v2", "two") + route)).await?;
    gw.wait_status("Route", "ns", "hello", is_ready).await?;
    let mut client = H1Client::connect(gw.http).await?;
    let (mut one, mut two) = (0, 0);
    for _ in 0..500 {
        match client
            .send("GET", "hello.example.com", "/", &[], None)
            .await?
            .text()
            .as_ref()
        {
            "one\n" => one += 1,
            "two\n" => two += 1,
            other => anyhow::bail!("unexpected body {other:?}"),
        }
    }
    assert!(
        (400..=490).contains(&one) && two >= 10,
        "90/10 split: {one}/{two}"
    );
    let tagged = client
        .send("GET", "canary-hello.example.com", "/", &[], None)
        .await?;
    assert_eq!(tagged.text(), "two\n");
    let header = client
        .send(
            "GET",
            "hello.example.com",
            "/",
            &[("Knative-Serving-Tag", "canary")],
            None,
        )
        .await?;
    assert_eq!(header.text(), "two\n");
    Ok(())
}

/// A Revision backed by a Service: requests carry Knative's revision headers.
#[tokio::test]
async fn service_revisions_receive_knative_revision_headers() -> anyhow::Result<()> {
    let backend = sluice_testkit::EchoServer::start("svc-rev").await?;
    let manifests = service("ns", "svc", "http", 80, &[backend.addr()])
        + "apiVersion: sluice.dev/v1alpha1\nkind: Revision\nmetadata: {name: svc-rev, namespace: ns}\nspec:\n  service: {name: svc, port: 80}\n---\napiVersion: sluice.dev/v1alpha1\nkind: Route\nmetadata: {name: viasvc, namespace: ns}\nspec:\n  hosts: [viasvc.example.com]\n  traffic: [{revision: svc-rev, percent: 100, tag: t}]\n---\n";
    let gw = Gateway::start(&manifests).await?;
    gw.wait_status("Route", "ns", "viasvc", is_ready).await?;
    let echo = http1_request(
        gw.http,
        "GET",
        "viasvc.example.com",
        "/",
        &[("Knative-Serving-Revision", "spoofed")],
        None,
    )
    .await?
    .echo()?;
    assert_eq!(
        echo.header_values("Knative-Serving-Revision"),
        vec!["svc-rev"]
    );
    assert_eq!(echo.header("Knative-Serving-Namespace"), Some("ns"));
    let tagged = http1_request(gw.http, "GET", "t-viasvc.example.com", "/", &[], None)
        .await?
        .echo()?;
    assert_eq!(tagged.header("Knative-Serving-Tag"), Some("t"));
    Ok(())
}
