//! The live view and the replay export on `sluice run`'s admin port, with a real local
//! Revision driven from zero to N instances and back: `/ui/data` and
//! `/revisions/{ns}/{name}/trace.csv` are checked here, and `/ui` itself in Debian's headless
//! chromium driven by Playwright (`sluice/tests/ui/live_view.mjs`, installed by
//! `scripts/setup`), which asserts that the page's charts and decision list follow the scaling.
//! Its screenshots go to `target/ui-test/`.

use crate::support::*;
use anyhow::Context;
use serde_json::Value;
use sluice_controller::autoscaler::parse_trace;
use sluice_testkit::H1Client;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long the browser watches (the scenario takes about 25 s).
const BROWSER_BOUND: Duration = Duration::from_secs(60);

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// Starts the Playwright driver on `/ui`, watching `revision`.
fn start_browser(
    admin: std::net::SocketAddr,
    revision: &str,
) -> anyhow::Result<std::process::Child> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ui");
    anyhow::ensure!(
        dir.join("node_modules/playwright-core").is_dir(),
        "{}: playwright-core is not installed; run scripts/setup (npm ci there)",
        dir.display()
    );
    anyhow::ensure!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing; run scripts/setup (apt-get install chromium)"
    );
    let shots = target_dir().join("ui-test");
    std::fs::create_dir_all(&shots)?;
    Command::new("node")
        .current_dir(&dir)
        .arg("live_view.mjs")
        .arg(format!("http://{admin}"))
        .arg(revision)
        .arg(&shots)
        .arg(BROWSER_BOUND.as_millis().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting node (the browser driver)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_view_follows_a_revision_from_zero_to_n_and_back() -> anyhow::Result<()> {
    let manifests = autoscaler_config("")
        + &revision(
            "live",
            "live.example.com",
            0,
            &[
                ("autoscaling.knative.dev/initial-scale", "0"),
                ("autoscaling.knative.dev/target", "1"),
                ("autoscaling.knative.dev/max-scale", "3"),
            ],
            &[],
            "",
        );
    let gw = Gateway::start(&manifests).await?;
    gw.wait_status("Route", "ns", "live", is_ready).await?;
    let browser = start_browser(gw.admin, "ns/live")?;
    let browser = tokio::task::spawn_blocking(move || browser.wait_with_output());

    // Let the page load and draw the idle Revision first.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Load: a cold start, then 4 clients of 100 ms requests want more than one instance.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (addr, stop) = (gw.http, stop.clone());
        load.push(tokio::spawn(async move {
            let mut c = H1Client::connect(addr)
                .await?
                .with_timeout(Duration::from_secs(30));
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 500 {
                n += 1;
                let r = c
                    .send("GET", "live.example.com", "/?sleep_ms=100", &[], None)
                    .await?;
                anyhow::ensure!(r.status == 200, "status {}", r.status);
            }
            anyhow::Ok(())
        }));
    }
    let scaled = wait_metric(
        &gw,
        "sluice_revision_actual_scale{revision=\"ns/live\"}",
        |v| v >= 2.0,
        Duration::from_secs(30),
    )
    .await;
    // A few seconds at that scale, so the charts show it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await??;
    }
    scaled?;
    // Idle: the stable window (6 s), the grace period, then zero.
    wait_metric(
        &gw,
        "sluice_revision_actual_scale{revision=\"ns/live\"}",
        |v| v == 0.0,
        Duration::from_secs(45),
    )
    .await?;

    // trace.csv: what simulate reads, from second 0, with the load and the instances.
    let r = gw.admin_get("/revisions/ns/live/trace.csv").await?;
    assert_eq!(r.status, 200);
    let csv = String::from_utf8(r.body.to_vec())?;
    let trace = parse_trace(&csv).context("simulate's parser reads trace.csv")?;
    assert_eq!(trace[0].second, 0, "{csv}");
    assert!(trace.iter().any(|p| p.concurrency >= 1.0), "{csv}");
    assert!(trace.iter().any(|p| p.ready >= Some(2)), "{csv}");
    assert_eq!(trace.last().and_then(|p| p.ready), Some(0), "{csv}");
    // ...and `sluice autoscaler simulate` replays it.
    let file = gw.path("trace.csv");
    std::fs::write(&file, &csv)?;
    let simulated = Command::new(SLUICE)
        .args(["autoscaler", "simulate", "--trace"])
        .arg(&file)
        .output()?;
    assert!(
        simulated.status.success(),
        "{}",
        String::from_utf8_lossy(&simulated.stderr)
    );
    assert!(String::from_utf8_lossy(&simulated.stdout).starts_with("second"));

    // An unknown Revision is a 404 that names it; the probe port serves none of this.
    let r = gw.admin_get("/revisions/ns/nope/trace.csv").await?;
    assert_eq!(r.status, 404);
    assert!(String::from_utf8_lossy(&r.body).starts_with("revision ns/nope: "));
    for path in ["/ui", "/ui/data", "/revisions/ns/live/trace.csv"] {
        let r = sluice_testkit::http1_request(gw.probe, "GET", "probe", path, &[], None).await?;
        assert_eq!(r.status, 404, "probe port {path}");
    }

    // /ui/data: the Route, and the Revision's series and decisions.
    let r = gw.admin_get("/ui/data").await?;
    assert_eq!(r.status, 200);
    let data: Value = serde_json::from_slice(&r.body)?;
    let route = data["routes"]
        .as_array()
        .and_then(|routes| routes.iter().find(|r| r["id"] == "ns/live"))
        .context("the Route is listed")?;
    assert_eq!(route["url"], "http://live.example.com");
    assert_eq!(route["ready"]["status"], "True");
    let revision = data["revisions"]
        .as_array()
        .and_then(|revisions| revisions.iter().find(|r| r["id"] == "ns/live"))
        .context("the Revision is listed")?;
    assert_eq!(revision["metric"], "concurrency");
    let points = revision["points"].as_array().context("points")?;
    assert!(
        points.iter().any(|p| p["desired"].as_u64() >= Some(2)),
        "{revision}"
    );
    assert!(
        points.iter().any(|p| p["requests"].as_f64() > Some(1.0)),
        "{revision}"
    );
    let decisions: Vec<&str> = revision["decisions"]
        .as_array()
        .context("decisions")?
        .iter()
        .filter_map(|d| d["text"].as_str())
        .collect();
    // A cold start with four requests waiting may ask for more than one at once.
    assert!(
        decisions
            .iter()
            .any(|d| d.starts_with("scaled 0 → ") && d.ends_with(": cold request")),
        "{decisions:?}"
    );
    assert!(
        decisions.iter().any(|d| d.ends_with(": idle")),
        "{decisions:?}"
    );

    // The page, in a real browser.
    let output = tokio::time::timeout(BROWSER_BOUND + Duration::from_secs(15), browser)
        .await
        .context("the browser driver did not finish")???;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the page did not follow the scaling: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.trim()).context("driver output")?;
    assert!(seen["scaledTo"].as_f64() >= Some(2.0), "{seen}");
    for shot in ["ui-scaled.png", "ui-idle.png"] {
        let path = target_dir().join("ui-test").join(shot);
        assert!(
            std::fs::metadata(&path)
                .map(|m| m.len() > 10_000)
                .unwrap_or(false),
            "{} was not saved",
            path.display()
        );
    }
    Ok(())
}

/// Requests held by the activator show in the history as `held` (the page's "buffered"), from
/// the proxies' load reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_requests_show_in_the_history() -> anyhow::Result<()> {
    // An instance that never listens: requests for it wait (until --hold-timeout).
    let manifests = autoscaler_config("")
        + "apiVersion: sluice.dev/v1alpha1\nkind: Revision\nmetadata:\n  name: stuck\n  namespace: ns\n  annotations: {autoscaling.knative.dev/initial-scale: \"0\"}\nspec:\n  process: {command: [\"/bin/sleep\", \"60\"]}\n---\n"
        + "apiVersion: sluice.dev/v1alpha1\nkind: Route\nmetadata: {name: stuck, namespace: ns}\nspec:\n  hosts: [stuck.example.com]\n  traffic: [{revision: stuck, percent: 100}]\n---\n";
    let gw = Gateway::start(&manifests).await?;
    gw.wait_status("Route", "ns", "stuck", is_ready).await?;
    let mut waiting = Vec::new();
    for _ in 0..3 {
        let addr = gw.http;
        waiting.push(tokio::spawn(async move {
            let mut c = H1Client::connect(addr)
                .await?
                .with_timeout(Duration::from_secs(20));
            c.send("GET", "stuck.example.com", "/", &[], None).await
        }));
    }
    let deadline = std::time::Instant::now() + WAIT;
    let held = loop {
        let r = gw.admin_get("/ui/data").await?;
        let data: Value = serde_json::from_slice(&r.body)?;
        let held = data["revisions"]
            .as_array()
            .and_then(|revisions| revisions.iter().find(|r| r["id"] == "ns/stuck"))
            .and_then(|r| r["points"].as_array())
            .and_then(|points| points.iter().filter_map(|p| p["held"].as_u64()).max());
        if held == Some(3) || std::time::Instant::now() > deadline {
            break held;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for w in waiting {
        w.abort();
    }
    assert_eq!(held, Some(3), "three requests wait for an instance");
    Ok(())
}
