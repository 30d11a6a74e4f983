//! Config lifecycle: live file changes, status, bad input, rollouts under load, holding
//! requests for endpoints, domain conflicts, class filtering, admin endpoints, shutdown.

use crate::support::*;
use sluice_testkit::{http1_request, EchoServer, H1Client};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn files_created_changed_and_deleted_apply_live() -> anyhow::Result<()> {
    let a = EchoServer::start("a").await?;
    let b = EchoServer::start("b").await?;
    let gw = Gateway::start(
        &(service("ns", "a", "http", 80, &[a.addr()])
            + &service("ns", "b", "http", 80, &[b.addr()])),
    )
    .await?;
    assert_eq!(
        http1_request(gw.http, "GET", "live.example.com", "/", &[], None)
            .await?
            .status,
        404
    );

    gw.write(
        "20-live.yaml",
        &simple_ingress("ns", "live", "live.example.com", "a", "80"),
    )?;
    let first = gw.wait_ingress_ready("ns", "live").await?;
    assert_eq!(first["generation"], 1);
    assert_eq!(
        http1_request(gw.http, "GET", "live.example.com", "/", &[], None)
            .await?
            .echo()?
            .name,
        "a"
    );

    gw.write(
        "20-live.yaml",
        &simple_ingress("ns", "live", "live.example.com", "b", "80"),
    )?;
    let second = gw
        .wait_status("Ingress", "ns", "live", |s| {
            s["generation"] == 2 && is_ready(s)
        })
        .await?;
    assert_eq!(second["status"]["observedGeneration"], 2);
    assert_eq!(
        http1_request(gw.http, "GET", "live.example.com", "/", &[], None)
            .await?
            .echo()?
            .name,
        "b"
    );

    gw.remove("20-live.yaml")?;
    let deadline = std::time::Instant::now() + WAIT;
    while gw.status_of("Ingress", "ns", "live").await?.is_some() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "deleted ingress still has a status"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The status goes when the controller drops the object; the proxy swaps its router a
    // moment later (nothing waits for proxies on a removal), so the 404 is awaited too.
    loop {
        let status = http1_request(gw.http, "GET", "live.example.com", "/", &[], None)
            .await?
            .status;
        if status == 404 {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "deleted ingress still routed: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test]
async fn status_has_knative_shape() -> anyhow::Result<()> {
    let backend = EchoServer::start("s").await?;
    let manifests = service("ns", "s", "http", 80, &[backend.addr()])
        + &simple_ingress("ns", "shaped", "shaped.example.com", "s", "80");
    let gw = Gateway::start(&manifests).await?;
    let s = gw.wait_ingress_ready("ns", "shaped").await?;
    assert_eq!(s["apiVersion"], "networking.internal.knative.dev/v1alpha1");
    assert_eq!(s["kind"], "Ingress");
    for c in ["Ready", "NetworkConfigured", "LoadBalancerReady"] {
        assert_eq!(condition(&s, c), Some("True"), "{c}: {s:#}");
    }
    assert_eq!(
        s["status"]["publicLoadBalancer"]["ingress"][0]["domainInternal"],
        "sluice.sluice-system.svc.cluster.local"
    );
    assert_eq!(
        s["status"]["privateLoadBalancer"]["ingress"][0]["domainInternal"],
        "sluice-internal.sluice-system.svc.cluster.local"
    );
    let ready = s["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Ready")
        .expect("Ready");
    assert!(
        ready["lastTransitionTime"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{ready}"
    );
    Ok(())
}

#[tokio::test]
async fn other_classes_are_ignored() -> anyhow::Result<()> {
    let backend = EchoServer::start("s").await?;
    let mut manifests = service("ns", "s", "http", 80, &[backend.addr()]);
    for (name, annotations) in [
        ("none", ""),
        ("empty", "\n  annotations: {}"),
        (
            "incorrect",
            "\n  annotations: {networking.knative.dev/ingress.class: incorrect}",
        ),
        (
            "blank",
            "\n  annotations: {networking.knative.dev/ingress.class: \"\"}",
        ),
    ] {
        manifests += &format!(
            "apiVersion: networking.internal.knative.dev/v1alpha1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: ns{annotations}\nspec:\n  rules:\n  - hosts: [{name}.example.com]\n    http:\n      paths:\n      - splits: [{{serviceNamespace: ns, serviceName: s, servicePort: 80}}]\n---\n"
        );
    }
    manifests += &simple_ingress("ns", "ours", "ours.example.com", "s", "80");
    let gw = Gateway::start(&manifests).await?;
    gw.wait_ingress_ready("ns", "ours").await?;
    for name in ["none", "empty", "incorrect", "blank"] {
        assert!(
            gw.status_of("Ingress", "ns", name).await?.is_none(),
            "{name} got a status"
        );
        let r = http1_request(
            gw.http,
            "GET",
            &format!("{name}.example.com"),
            "/",
            &[],
            None,
        )
        .await?;
        assert_eq!(r.status, 404, "{name}");
    }
    Ok(())
}

/// Bad input: malformed YAML, unknown kinds, invalid ingresses and dangling Service references
/// are reported, and everything else keeps serving.
#[tokio::test]
async fn bad_input_is_reported_and_last_good_config_keeps_serving() -> anyhow::Result<()> {
    let backend = EchoServer::start("good").await?;
    let good = service("ns", "good", "http", 80, &[backend.addr()])
        + &simple_ingress("ns", "good", "good.example.com", "good", "80");
    let gw = Gateway::start(&good).await?;
    gw.wait_ingress_ready("ns", "good").await?;

    // A file that once was fine, then breaks: its objects stay.
    gw.write(
        "30-later.yaml",
        &simple_ingress("ns", "later", "later.example.com", "good", "80"),
    )?;
    gw.wait_ingress_ready("ns", "later").await?;
    gw.write("30-later.yaml", "this: is: not: yaml: [\n")?;
    let file = gw
        .wait_status("ManifestFile", "", "30-later.yaml", |s| {
            condition(s, "Ready") == Some("False")
        })
        .await?;
    assert_eq!(reason(&file, "Ready"), Some("InvalidManifest"));
    assert_eq!(
        http1_request(gw.http, "GET", "later.example.com", "/", &[], None)
            .await?
            .status,
        200
    );

    // Unknown kind next to a valid object in one file: the valid one loads.
    gw.write(
        "40-mixed.yaml",
        &("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: ns}\n---\n"
            .to_string()
            + &simple_ingress("ns", "mixed", "mixed.example.com", "good", "80")),
    )?;
    gw.wait_ingress_ready("ns", "mixed").await?;
    let file = gw
        .wait_status("ManifestFile", "", "40-mixed.yaml", |_| true)
        .await?;
    assert_eq!(
        reason(&file, "Ready"),
        Some("UnsupportedObject"),
        "{file:#}"
    );

    // An invalid ingress (splits sum to 90) is reported; others are untouched.
    let invalid = ingress(
        "ns",
        "invalid",
        "  rules:\n  - hosts: [invalid.example.com]\n    http:\n      paths:\n      - splits:\n        - {serviceNamespace: ns, serviceName: good, servicePort: 80, percent: 50}\n        - {serviceNamespace: ns, serviceName: good, servicePort: 80, percent: 40}",
    );
    gw.write("50-invalid.yaml", &invalid)?;
    let s = gw
        .wait_status("Ingress", "ns", "invalid", |s| {
            condition(s, "Ready") == Some("False")
        })
        .await?;
    assert_eq!(reason(&s, "NetworkConfigured"), Some("InvalidIngress"));
    let message = s.to_string();
    assert!(
        message.contains("100") && message.contains("90"),
        "{message}"
    );
    assert_eq!(
        http1_request(gw.http, "GET", "invalid.example.com", "/", &[], None)
            .await?
            .status,
        404
    );

    // A valid ingress turned invalid keeps serving its last good version.
    let broken_good = ingress(
        "ns",
        "good",
        "  rules:\n  - hosts: [good.example.com]\n    http:\n      paths:\n      - splits:\n        - {serviceNamespace: other, serviceName: good, servicePort: 80}",
    );
    gw.write(
        "00-initial.yaml",
        &(service("ns", "good", "http", 80, &[backend.addr()]) + &broken_good),
    )?;
    gw.wait_status("Ingress", "ns", "good", |s| {
        condition(s, "Ready") == Some("False")
    })
    .await?;
    assert_eq!(
        http1_request(gw.http, "GET", "good.example.com", "/", &[], None)
            .await?
            .status,
        200
    );

    // A dangling Service reference: reported, nothing served for it.
    gw.write(
        "60-dangling.yaml",
        &simple_ingress("ns", "dangling", "dangling.example.com", "missing", "80"),
    )?;
    let s = gw
        .wait_status("Ingress", "ns", "dangling", |s| {
            condition(s, "Ready") == Some("False")
        })
        .await?;
    assert_eq!(reason(&s, "NetworkConfigured"), Some("ServiceNotFound"));
    assert_eq!(
        http1_request(gw.http, "GET", "mixed.example.com", "/", &[], None)
            .await?
            .status,
        200
    );
    Ok(())
}

#[tokio::test]
async fn domain_conflict_keeps_the_older_ingress() -> anyhow::Result<()> {
    let old = EchoServer::start("old").await?;
    let new = EchoServer::start("new").await?;
    let gw = Gateway::start(
        &(service("ns", "old", "http", 80, &[old.addr()])
            + &service("ns", "new", "http", 80, &[new.addr()])
            + &simple_ingress("ns", "first", "shared.example.com", "old", "80")),
    )
    .await?;
    gw.wait_ingress_ready("ns", "first").await?;
    gw.write(
        "10-second.yaml",
        &simple_ingress("ns", "second", "shared.example.com", "new", "80"),
    )?;
    let s = gw
        .wait_status("Ingress", "ns", "second", |s| {
            condition(s, "LoadBalancerReady") == Some("False")
        })
        .await?;
    assert_eq!(reason(&s, "LoadBalancerReady"), Some("DomainConflict"));
    assert_eq!(condition(&s, "Ready"), Some("False"));
    assert_eq!(
        http1_request(gw.http, "GET", "shared.example.com", "/", &[], None)
            .await?
            .echo()?
            .name,
        "old"
    );
    assert!(is_ready(
        &gw.status_of("Ingress", "ns", "first")
            .await?
            .expect("first")
    ));
    Ok(())
}

/// Knative's `update`: continuous traffic while 10 header-only updates and then 10 switches to
/// a new backend (the old one torn down after each switch) roll out. Zero non-200 responses, and
/// the first request after Ready already sees the new config.
#[tokio::test]
async fn rollouts_under_load_drop_nothing() -> anyhow::Result<()> {
    let mut current = EchoServer::start("v0").await?;
    let write = |gw: &Gateway, svc: &str, addr: std::net::SocketAddr, sentinel: &str| {
        let spec = format!(
            "  rules:\n  - hosts: [update.example.com]\n    http:\n      paths:\n      - splits: [{{serviceNamespace: ns, serviceName: {svc}, servicePort: 80, appendHeaders: {{Who-Are-You: {sentinel}}}}}]"
        );
        gw.write(
            "00-initial.yaml",
            &(service("ns", svc, "http", 80, &[addr]) + &ingress("ns", "update", &spec)),
        )
    };
    let gw = Gateway::start("").await?;
    write(&gw, "v0", current.addr(), "s0")?;
    gw.wait_ingress_ready("ns", "update").await?;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (addr, stop, ok) = (gw.http, stop.clone(), ok.clone());
        load.push(tokio::spawn(async move {
            let mut client = H1Client::connect(addr).await?;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < 200_000 {
                n += 1;
                let r = client
                    .send(
                        "GET",
                        "update.example.com",
                        &format!("/?time={n}"),
                        &[],
                        None,
                    )
                    .await?;
                anyhow::ensure!(
                    r.status == 200,
                    "request {n}: status {} {}",
                    r.status,
                    r.text()
                );
                ok.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    let mut generation = 1;
    for i in 1..=10 {
        let sentinel = format!("s{i}");
        write(&gw, "v0", current.addr(), &sentinel)?;
        generation += 1;
        let want = generation;
        gw.wait_status("Ingress", "ns", "update", |s| {
            s["generation"] == want && is_ready(s)
        })
        .await?;
        let echo = http1_request(gw.http, "GET", "update.example.com", "/", &[], None)
            .await?
            .echo()?;
        assert_eq!(echo.header("Who-Are-You"), Some(sentinel.as_str()));
    }
    for i in 1..=10 {
        let next = EchoServer::start(&format!("v{i}")).await?;
        write(&gw, &format!("v{i}"), next.addr(), "switch")?;
        generation += 1;
        let want = generation;
        gw.wait_status("Ingress", "ns", "update", |s| {
            s["generation"] == want && is_ready(s)
        })
        .await?;
        let echo = http1_request(gw.http, "GET", "update.example.com", "/", &[], None)
            .await?
            .echo()?;
        assert_eq!(echo.name, format!("v{i}"));
        // Tear the previous backend down only after the switch is live.
        drop(std::mem::replace(&mut current, next));
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await??;
    }
    assert!(
        ok.load(Ordering::Relaxed) > 100,
        "load ran: {}",
        ok.load(Ordering::Relaxed)
    );
    Ok(())
}

/// A Service with no ready endpoints holds requests until one appears.
#[tokio::test]
async fn requests_wait_for_endpoints_then_flow() -> anyhow::Result<()> {
    let backend = EchoServer::start("late").await?;
    let manifests = service("ns", "late", "http", 80, &[])
        + &simple_ingress("ns", "late", "late.example.com", "late", "80");
    let gw = Gateway::start(&manifests).await?;
    gw.wait_ingress_ready("ns", "late").await?;
    // All 20 are held (the gauge shows them) before the endpoint appears.
    let waiting = held_requests(&gw, "late.example.com", "ns/late:80", 20).await?;
    gw.write(
        "00-initial.yaml",
        &(service("ns", "late", "http", 80, &[backend.addr()])
            + &simple_ingress("ns", "late", "late.example.com", "late", "80")),
    )?;
    for w in waiting {
        assert_eq!(w.await??.status, 200);
    }
    assert_eq!(backend.requests(), 20);
    Ok(())
}

#[tokio::test]
async fn held_requests_are_bounded_and_time_out() -> anyhow::Result<()> {
    let manifests = service("ns", "never", "http", 80, &[])
        + &simple_ingress("ns", "never", "never.example.com", "never", "80");
    let gw = Gateway::start_with(
        &manifests,
        &["--hold-timeout", "1s", "--max-held-requests", "2"],
    )
    .await?;
    gw.wait_ingress_ready("ns", "never").await?;
    let held = held_requests(&gw, "never.example.com", "ns/never:80", 2).await?;
    let overflow = http1_request(gw.http, "GET", "never.example.com", "/", &[], None).await?;
    assert_eq!(overflow.status, 503, "{}", overflow.text());
    for h in held {
        assert_eq!(h.await??.status, 504);
    }
    Ok(())
}

#[tokio::test]
async fn admin_endpoints_report_config_and_metrics() -> anyhow::Result<()> {
    let backend = EchoServer::start("m").await?;
    let manifests = service("ns", "m", "http", 80, &[backend.addr()])
        + &simple_ingress("ns", "m", "m.example.com", "m", "80");
    let gw = Gateway::start(&manifests).await?;
    gw.wait_ingress_ready("ns", "m").await?;
    assert_eq!(
        http1_request(gw.http, "GET", "m.example.com", "/", &[], None)
            .await?
            .status,
        200
    );
    assert_eq!(
        http1_request(gw.http, "GET", "nothing.example.com", "/", &[], None)
            .await?
            .status,
        404
    );
    let config: serde_json::Value = serde_json::from_slice(&gw.admin_get("/config").await?.body)?;
    assert_eq!(config["version"].as_str().map(str::len), Some(64));
    assert!(config["backends"]["ns/m:80"].is_object(), "{config:#}");
    let metrics = gw.admin_get("/metrics").await?.text().to_string();
    for needle in [
        "sluice_requests_total{code=\"2xx\",ingress=\"ns/m\"} 1",
        "sluice_requests_total{code=\"4xx\",ingress=\"none\"} 1",
        "sluice_request_duration_seconds_bucket",
        "sluice_backend_in_flight_requests{backend=\"ns/m:80\"} 0",
        "sluice_snapshot_applied_timestamp_seconds",
    ] {
        assert!(metrics.contains(needle), "missing {needle}:\n{metrics}");
    }
    let version = gw.version().await?;
    assert!(metrics.contains(&format!("sluice_snapshot_info{{version=\"{version}\"}} 1")));
    Ok(())
}

/// SIGTERM: stop accepting, finish what is in flight, then exit.
#[tokio::test]
async fn sigterm_drains_in_flight_requests_then_exits() -> anyhow::Result<()> {
    let backend = EchoServer::start("slow").await?;
    let manifests = service("ns", "slow", "http", 80, &[backend.addr()])
        + &simple_ingress("ns", "slow", "slow.example.com", "slow", "80");
    let mut gw = Gateway::start(&manifests).await?;
    gw.wait_ingress_ready("ns", "slow").await?;
    let addr = gw.http;
    let in_flight = tokio::spawn(async move {
        http1_request(
            addr,
            "GET",
            "slow.example.com",
            "/?sleep_ms=1500",
            &[],
            None,
        )
        .await
    });
    let deadline = std::time::Instant::now() + WAIT;
    while backend.in_flight() == 0 {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "request never reached the backend"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gw.signal("TERM")?;
    let r = in_flight.await??;
    assert_eq!(r.status, 200);
    let status = gw.wait_exit(Duration::from_secs(8)).await?;
    assert!(status.success(), "{status}");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after exit"
    );
    Ok(())
}
