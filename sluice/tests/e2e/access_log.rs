//! The access log (`--access-log`): one line per request, JSON or text, written off the request
//! path; off by default; a full queue drops and counts lines instead of slowing requests.

use crate::support::*;
use serde_json::Value;
use sluice_testkit::{
    closed_port, ws_roundtrips, EchoServer, H1Client, H2cClient, WebsocketEchoServer,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Waits until `path` holds at least `n` complete lines and returns them.
async fn lines(path: &Path, n: usize) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let complete: Vec<String> = text
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| l.trim_end().to_string())
            .collect();
        if complete.len() >= n {
            return Ok(complete);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} lines in {}, want {n}: {text}",
            complete.len(),
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn json_lines(lines: &[String]) -> anyhow::Result<Vec<Value>> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).map_err(|e| anyhow::anyhow!("{e}: {l}")))
        .collect()
}

struct Logged {
    gw: Gateway,
    _dir: tempfile::TempDir,
    path: PathBuf,
}

async fn start_logged(manifests: &str, extra: &[&str]) -> anyhow::Result<Logged> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("access.log");
    let target = path.to_string_lossy().to_string();
    let mut args = vec!["--access-log", target.as_str()];
    args.extend_from_slice(extra);
    let gw = Gateway::start_with(manifests, &args).await?;
    Ok(Logged {
        gw,
        _dir: dir,
        path,
    })
}

#[tokio::test]
async fn json_lines_carry_every_field_for_h1_and_h2c() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let manifests = service("ns", "echo", "http", 80, &[backend.addr()])
        + &simple_ingress("ns", "p", "p.example.com", "echo", "80");
    let logged = start_logged(&manifests, &[]).await?;
    let gw = &logged.gw;
    gw.wait_ingress_ready("ns", "p").await?;
    let mut h1 = H1Client::connect(gw.http).await?;
    let r1 = h1
        .send(
            "POST",
            "p.example.com",
            "/h1?x=1",
            &[("traceparent", TRACEPARENT)],
            Some(bytes::Bytes::from_static(b"hello")),
        )
        .await?;
    assert_eq!(r1.status, 200);
    let h2 = H2cClient::connect(gw.http).await?;
    let r2 = h2.send("GET", "p.example.com:80", "/h2", &[], None).await?;
    assert_eq!(r2.status, 200);
    let head = h1.send("HEAD", "p.example.com", "/head", &[], None).await?;
    assert_eq!(head.status, 200);
    let lines = json_lines(&lines(&logged.path, 3).await?)?;
    assert_eq!(lines.len(), 3, "{lines:?}");
    let (a, b, c) = (&lines[0], &lines[1], &lines[2]);
    assert_eq!(a["method"], "POST");
    assert_eq!(a["host"], "p.example.com");
    assert_eq!(a["path"], "/h1?x=1");
    assert_eq!(a["protocol"], "HTTP/1.1");
    assert_eq!(a["status"], 200);
    assert_eq!(a["bytes_sent"], r1.body.len() as u64);
    assert_eq!(a["request_length"], 5);
    assert_eq!(a["ingress"], "ns/p");
    assert!(
        a["route"].as_str().is_some_and(|r| r.starts_with("ns/p")),
        "{a}"
    );
    assert!(
        a["backend"].as_str().is_some_and(|r| r.contains("echo")),
        "{a}"
    );
    assert_eq!(a["revision"], Value::Null);
    assert_eq!(a["upstream"], backend.addr().to_string());
    assert!(
        a["client"]
            .as_str()
            .is_some_and(|c| c.starts_with("127.0.0.1:")),
        "{a}"
    );
    assert_eq!(a["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(a["duration_ms"].as_f64().is_some_and(|d| d > 0.0), "{a}");
    assert!(
        a["time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && t.len() == 24),
        "{a}"
    );
    assert_eq!(a["completed"], true);
    assert_eq!(b["method"], "GET");
    assert_eq!(b["host"], "p.example.com:80");
    assert_eq!(b["path"], "/h2");
    assert_eq!(b["protocol"], "HTTP/2");
    assert_eq!(b["status"], 200);
    assert_eq!(b["bytes_sent"], r2.body.len() as u64);
    assert_eq!(b["upstream"], backend.addr().to_string());
    assert_eq!(b["trace_id"], Value::Null);
    assert_eq!(b["completed"], true);
    // HEAD: no body is sent, and that is not a client going away.
    assert_eq!(c["method"], "HEAD");
    assert_eq!(c["status"], 200);
    assert_eq!(c["bytes_sent"], 0);
    assert_eq!(c["completed"], true);
    wait_metric(gw, "sluice_access_log_lines_total", |v| v == 3.0, WAIT).await?;
    assert_eq!(
        metric(gw, "sluice_access_log_dropped_total").await?,
        Some(0.0)
    );
    Ok(())
}

#[tokio::test]
async fn text_lines_follow_the_common_log_format() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let manifests = service("ns", "echo", "http", 80, &[backend.addr()])
        + &simple_ingress("ns", "t", "t.example.com", "echo", "80");
    let logged = start_logged(&manifests, &["--access-log-format", "text"]).await?;
    let gw = &logged.gw;
    gw.wait_ingress_ready("ns", "t").await?;
    let ok = sluice_testkit::http1_request(
        gw.http,
        "GET",
        "t.example.com",
        "/text",
        &[("traceparent", TRACEPARENT)],
        None,
    )
    .await?;
    assert_eq!(ok.status, 200);
    let missing =
        sluice_testkit::http1_request(gw.http, "GET", "nope\"x.example.com", "/", &[], None)
            .await?;
    assert_eq!(missing.status, 404);
    let lines = lines(&logged.path, 2).await?;
    let ok_line = &lines[0];
    assert!(ok_line.starts_with("127.0.0.1 - - ["), "{ok_line}");
    assert!(
        ok_line.contains(&format!(
            "] \"GET /text HTTP/1.1\" 200 {} host=\"t.example.com\"",
            ok.body.len()
        )),
        "{ok_line}"
    );
    for field in [
        "ingress=\"ns/t\"".to_string(),
        format!("upstream=\"{}\"", backend.addr()),
        "trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"".to_string(),
        "completed=\"true\"".to_string(),
        "revision=-".to_string(),
    ] {
        assert!(ok_line.contains(&field), "{field} not in {ok_line}");
    }
    let missing_line = &lines[1];
    // A quote in the Host header is escaped: it cannot end the field.
    assert!(
        missing_line.contains("\"GET / HTTP/1.1\" 404 ")
            && missing_line.contains("host=\"nope\\\"x.example.com\"")
            && missing_line.contains("route=- ")
            && missing_line.contains("upstream=- "),
        "{missing_line}"
    );
    Ok(())
}

#[tokio::test]
async fn errors_and_websocket_upgrades_are_logged() -> anyhow::Result<()> {
    let ws = WebsocketEchoServer::start("- ws").await?;
    let manifests = service("ns", "dead", "http", 80, &[closed_port()])
        + &simple_ingress("ns", "dead", "dead.example.com", "dead", "80")
        + &service("ns", "ws", "http", 80, &[ws.addr()])
        + &simple_ingress("ns", "ws", "ws.example.com", "ws", "80");
    let logged = start_logged(&manifests, &[]).await?;
    let gw = &logged.gw;
    gw.wait_ingress_ready("ns", "dead").await?;
    gw.wait_ingress_ready("ns", "ws").await?;
    let missing =
        sluice_testkit::http1_request(gw.http, "GET", "nope.example.com", "/x", &[], None).await?;
    assert_eq!(missing.status, 404);
    let dead =
        sluice_testkit::http1_request(gw.http, "GET", "dead.example.com", "/y", &[], None).await?;
    assert_eq!(dead.status, 503);
    // HEAD to an error: the 404's body is not sent, and that is not a client going away.
    let head =
        sluice_testkit::http1_request(gw.http, "HEAD", "nope.example.com", "/head", &[], None)
            .await?;
    assert_eq!(head.status, 404);
    let replies = ws_roundtrips(gw.http, "ws.example.com", "/ws", &["hi".to_string()]).await?;
    assert_eq!(replies, vec!["hi - ws".to_string()]);
    let lines = json_lines(&lines(&logged.path, 4).await?)?;
    let find = |path: &str| {
        lines
            .iter()
            .find(|l| l["path"] == path)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no line for {path}: {lines:?}"))
    };
    let missing_line = find("/x")?;
    assert_eq!(missing_line["status"], 404);
    assert_eq!(missing_line["bytes_sent"], missing.body.len() as u64);
    assert_eq!(missing_line["route"], Value::Null);
    assert_eq!(missing_line["ingress"], Value::Null);
    let dead_line = find("/y")?;
    assert_eq!(dead_line["status"], 503);
    assert_eq!(dead_line["ingress"], "ns/dead");
    assert_eq!(dead_line["bytes_sent"], dead.body.len() as u64);
    assert_eq!(dead_line["upstream"], Value::Null, "no connection was made");
    let head_line = find("/head")?;
    assert_eq!(head_line["status"], 404);
    assert_eq!(head_line["completed"], true);
    let ws_line = find("/ws")?;
    assert_eq!(ws_line["status"], 101);
    assert_eq!(ws_line["ingress"], "ns/ws");
    assert_eq!(ws_line["upstream"], ws.addr().to_string());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revision_requests_name_their_revision() -> anyhow::Result<()> {
    let manifests = autoscaler_config("")
        + &revision(
            "rev",
            "rev.example.com",
            0,
            &[("autoscaling.knative.dev/min-scale", "1")],
            &["--message", "from rev"],
            "",
        );
    let logged = start_logged(&manifests, &[]).await?;
    let gw = &logged.gw;
    gw.wait_status("Route", "ns", "rev", is_ready).await?;
    let r =
        sluice_testkit::http1_request(gw.http, "GET", "rev.example.com", "/r", &[], None).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let lines = json_lines(&lines(&logged.path, 1).await?)?;
    let line = lines
        .iter()
        .find(|l| l["path"] == "/r")
        .ok_or_else(|| anyhow::anyhow!("no line: {lines:?}"))?;
    assert_eq!(line["revision"], "ns/rev");
    assert!(
        line["upstream"]
            .as_str()
            .is_some_and(|u| u.starts_with("127.0.0.1:")),
        "{line}"
    );
    Ok(())
}

#[tokio::test]
async fn off_by_default_writes_nothing() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let manifests = service("ns", "echo", "http", 80, &[backend.addr()])
        + &simple_ingress("ns", "off", "off.example.com", "echo", "80");
    let gw = Gateway::start(&manifests).await?;
    gw.wait_ingress_ready("ns", "off").await?;
    for _ in 0..5 {
        let r = sluice_testkit::http1_request(gw.http, "GET", "off.example.com", "/", &[], None)
            .await?;
        assert_eq!(r.status, 200);
    }
    let missing =
        sluice_testkit::http1_request(gw.http, "GET", "nope.example.com", "/", &[], None).await?;
    assert_eq!(missing.status, 404);
    assert_eq!(
        metric(&gw, "sluice_access_log_lines_total").await?,
        Some(0.0)
    );
    assert_eq!(
        metric(&gw, "sluice_access_log_dropped_total").await?,
        Some(0.0)
    );
    let files: Vec<_> = std::fs::read_dir(gw.dir.path())?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(files.len(), 1, "only the manifest: {files:?}");
    Ok(())
}

/// The log goes to a FIFO nobody reads: once the pipe and the writer's buffer fill (128 KiB,
/// a few hundred lines), the writer blocks in `write`, the 512-line queue fills, and every
/// further line is dropped and counted while requests carry on. Draining the pipe then accounts
/// for every request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_and_counts_lines_instead_of_blocking() -> anyhow::Result<()> {
    const REQUESTS: usize = 3_000;
    const CLIENTS: usize = 4;
    let backend = EchoServer::start("echo").await?;
    let manifests = service("ns", "echo", "http", 80, &[backend.addr()])
        + &simple_ingress("ns", "full", "full.example.com", "echo", "80");
    let dir = tempfile::tempdir()?;
    let fifo = dir.path().join("access.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status()?;
    anyhow::ensure!(made.success(), "mkfifo failed");
    // Read-write so neither this open nor sluice's blocks; nothing reads until the end.
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)?;
    let target = fifo.to_string_lossy().to_string();
    let gw = Gateway::start_with(
        &manifests,
        &["--access-log", &target, "--access-log-queue", "512"],
    )
    .await?;
    gw.wait_ingress_ready("ns", "full").await?;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let addr = gw.http;
        clients.push(tokio::spawn(async move {
            let mut client = H1Client::connect(addr).await?;
            for i in 0..REQUESTS / CLIENTS {
                let r = client
                    .send("GET", "full.example.com", "/full", &[], None)
                    .await?;
                anyhow::ensure!(r.status == 200, "request {i}: {}", r.status);
            }
            anyhow::Ok(())
        }));
    }
    for client in clients {
        client.await??;
    }
    let dropped = metric(&gw, "sluice_access_log_dropped_total")
        .await?
        .unwrap_or(0.0);
    assert!(dropped > 0.0, "nothing dropped");
    // Drain the pipe: every request is then either a line read here or a dropped line.
    let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = read.clone();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = reader.read(&mut buf) {
            let lines = buf[..n].iter().filter(|b| **b == b'\n').count();
            counted.fetch_add(lines, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let deadline = Instant::now() + WAIT;
    loop {
        let lines = metric(&gw, "sluice_access_log_lines_total")
            .await?
            .unwrap_or(0.0);
        let dropped = metric(&gw, "sluice_access_log_dropped_total")
            .await?
            .unwrap_or(0.0);
        let got = read.load(std::sync::atomic::Ordering::Relaxed);
        if lines + dropped == REQUESTS as f64 && got as f64 == lines {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "written {lines}, dropped {dropped}, read {got}, want {REQUESTS} in all"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A client that goes away mid-body still gets its line: the bytes it was sent, marked not
/// completed. One that goes away before the response head gets status 499, as in nginx.
#[tokio::test]
async fn clients_that_go_away_are_logged() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let manifests = service("ns", "echo", "http", 80, &[backend.addr()])
        + &simple_ingress("ns", "gone", "gone.example.com", "echo", "80");
    let logged = start_logged(&manifests, &[]).await?;
    let gw = &logged.gw;
    gw.wait_ingress_ready("ns", "gone").await?;
    let mut client = H1Client::connect(gw.http).await?;
    let mut streaming = client
        .send_streaming(
            "GET",
            "gone.example.com",
            "/mid?drip=100&drip_ms=20",
            &[],
            None,
        )
        .await?;
    assert_eq!(streaming.status, 200);
    let first = streaming.chunk().await?.unwrap_or_default();
    assert!(!first.is_empty());
    drop(streaming);
    drop(client);
    let h2 = H2cClient::connect(gw.http).await?;
    let early = tokio::time::timeout(
        Duration::from_millis(300),
        h2.send(
            "GET",
            "gone.example.com:80",
            "/early?sleep_ms=3000",
            &[],
            None,
        ),
    )
    .await;
    assert!(
        early.is_err(),
        "the backend answered before the client gave up"
    );
    drop(h2);
    let lines = json_lines(&lines(&logged.path, 2).await?)?;
    let find = |path: &str| {
        lines
            .iter()
            .find(|l| l["path"].as_str().is_some_and(|p| p.starts_with(path)))
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no line for {path}: {lines:?}"))
    };
    let mid = find("/mid")?;
    assert_eq!(mid["status"], 200);
    assert_eq!(mid["completed"], false);
    let sent = mid["bytes_sent"].as_u64().unwrap_or(0);
    assert!((1..100).contains(&sent), "{mid}");
    let early = find("/early")?;
    assert_eq!(early["status"], 499);
    assert_eq!(early["completed"], false);
    assert_eq!(early["bytes_sent"], 0);
    Ok(())
}

/// SIGTERM while a request is in flight: the drain lets it finish, and its line (queued
/// moments before the exit, likely between two of the writer's 50 ms drains) is written
/// before the process exits.
#[tokio::test]
async fn the_last_lines_are_written_before_exit() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let manifests = service("ns", "echo", "http", 80, &[backend.addr()])
        + &simple_ingress("ns", "last", "last.example.com", "echo", "80");
    let mut logged = start_logged(&manifests, &[]).await?;
    logged.gw.wait_ingress_ready("ns", "last").await?;
    let addr = logged.gw.http;
    let in_flight = tokio::spawn(async move {
        sluice_testkit::http1_request(
            addr,
            "GET",
            "last.example.com",
            "/last?sleep_ms=300",
            &[],
            None,
        )
        .await
    });
    wait_metric(
        &logged.gw,
        "sluice_backend_in_flight_requests",
        |v| v == 1.0,
        WAIT,
    )
    .await?;
    logged.gw.signal("TERM")?;
    let status = logged.gw.wait_exit(Duration::from_secs(20)).await?;
    assert!(status.success(), "{status}");
    assert_eq!(in_flight.await??.status, 200);
    let text = std::fs::read_to_string(&logged.path)?;
    let lines = json_lines(&text.lines().map(str::to_string).collect::<Vec<_>>())?;
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["path"], "/last?sleep_ms=300");
    Ok(())
}
