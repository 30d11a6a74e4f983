//! Hostile HTTP/2 clients (`h2_attacks.py`, real frames from Python's `h2` codecs): rapid
//! reset (at once and spaced out), empty DATA frames, CONTINUATION flood, HPACK bomb, SETTINGS
//! flood, a client that never reads, and too many streams. Each attack must end with the proxy's memory and CPU bounded and the attacker
//! refused (its connection closed, or its streams reset), while a well-behaved h2 client on
//! another connection keeps getting 200s during and after.
//!
//! Memory and CPU are read from `/proc/<pid>` of the real proxy process, with generous bounds:
//! the point is "bounded", not a benchmark.

use crate::support::*;
use serde_json::Value;
use sluice_testkit::{EchoServer, H2cClient};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const HOST: &str = "h2.example.com";
/// The proxy's stream idle timeout in these tests.
const IDLE: &str = "2s";

/// Resident memory in KiB and CPU time in clock ticks of `pid`.
pub fn usage(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow::anyhow!("bad stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok((rss, ticks))
}

/// Runs one attack of `h2_attacks.py` on `addr` (bounded: 90 s) and returns its report.
pub async fn attack(addr: SocketAddr, name: &str, host: &str, wait: &str) -> anyhow::Result<Value> {
    attack_with(addr, name, host, wait, &[]).await
}

/// [`attack`] with the script's further arguments (the xDS attacks' token).
pub async fn attack_with(
    addr: SocketAddr,
    name: &str,
    host: &str,
    wait: &str,
    extra: &[&str],
) -> anyhow::Result<Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/h2_attacks.py");
    let run = tokio::process::Command::new("python3")
        .arg(script)
        .arg(name)
        .arg("127.0.0.1")
        .arg(addr.port().to_string())
        .arg(host)
        .arg(wait)
        .args(extra)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run).await??;
    anyhow::ensure!(
        out.status.success(),
        "{name}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Sends GETs on its own h2 connection until stopped; counts successes and anything else.
fn well_behaved(
    gw: &Gateway,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<anyhow::Result<(u64, u64)>> {
    let addr = gw.http;
    tokio::spawn(async move {
        let ok = AtomicU64::new(0);
        let mut failures = 0;
        let client = H2cClient::connect(addr)
            .await?
            .with_timeout(Duration::from_secs(10));
        // Bounded: 20 s of requests at most.
        for _ in 0..400 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            match client.send("GET", HOST, "/ok", &[], None).await {
                Ok(r) if r.status == 200 => {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                _ => failures += 1,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok((ok.load(Ordering::Relaxed), failures))
    })
}

/// Runs one attack beside a well-behaved client; returns the script's report and the proxy's
/// growth in RSS (KiB) and CPU ticks.
struct Attacked {
    report: Value,
    rss_growth: i64,
    /// Requests of the well-behaved client, during the attack and one after it: they reach
    /// the backend too.
    good_requests: u64,
}

async fn run_attack(gw: &Gateway, name: &str, wait: &str) -> anyhow::Result<Attacked> {
    let pid = gw.pid().ok_or_else(|| anyhow::anyhow!("no pid"))?;
    let (rss_before, cpu_before) = usage(pid)?;
    let stop = Arc::new(AtomicBool::new(false));
    let good = well_behaved(gw, stop.clone());
    let report = attack(gw.http, name, HOST, wait).await?;
    let (rss_after, cpu_after) = usage(pid)?;
    stop.store(true, Ordering::Relaxed);
    let (ok, failures) = good.await??;
    eprintln!(
        "{name}: {report} rss {rss_before} -> {rss_after} KiB, cpu {} ticks, good client {ok} ok / {failures} failed",
        cpu_after - cpu_before
    );
    assert!(
        ok > 0,
        "{name}: the good client got no 200 during the attack"
    );
    assert_eq!(
        failures, 0,
        "{name}: the good client failed during the attack"
    );
    // And after it, on a new connection.
    let after = H2cClient::connect(gw.http).await?;
    let r = after.send("GET", HOST, "/after", &[], None).await?;
    assert_eq!(r.status, 200, "{name}: after the attack");
    let rss_growth = rss_after as i64 - rss_before as i64;
    // Generous: far below what the attack would cost unbounded (GBs or minutes of CPU).
    assert!(rss_growth < 128 * 1024, "{name}: RSS grew {rss_growth} KiB");
    assert!(
        cpu_after - cpu_before < 30 * 100,
        "{name}: {} CPU ticks",
        cpu_after - cpu_before
    );
    Ok(Attacked {
        report,
        rss_growth,
        good_requests: ok + 1,
    })
}

async fn gateway() -> anyhow::Result<(EchoServer, Gateway)> {
    gateway_with(&[]).await
}

async fn gateway_with(flags: &[&str]) -> anyhow::Result<(EchoServer, Gateway)> {
    let backend = EchoServer::start("h2").await?;
    let manifests = service("ns", "h2", "http", 80, &[backend.addr()])
        + &simple_ingress("ns", "h2", HOST, "h2", "80");
    let args = [&["--stream-idle-timeout", IDLE][..], flags].concat();
    let gw = Gateway::start_with(&manifests, &args).await?;
    gw.wait_ingress_ready("ns", "h2").await?;
    Ok((backend, gw))
}

fn goaway(report: &Value) -> Option<u64> {
    report["goaway"].as_u64()
}

fn rst(report: &Value, code: u32) -> u64 {
    report["rst"][code.to_string()].as_u64().unwrap_or(0)
}

/// CVE-2023-44487: streams opened and cancelled at once (never started) end with GOAWAY
/// ENHANCE_YOUR_CALM, after a bounded number of streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_gets_goaway() -> anyhow::Result<()> {
    let (backend, gw) = gateway().await?;
    let Attacked { report, .. } = run_attack(&gw, "rapid_reset", "0").await?;
    assert!(report["closed"].as_bool() == Some(true), "{report}");
    assert_eq!(goaway(&report), Some(0xb), "ENHANCE_YOUR_CALM: {report}");
    assert!(
        backend.requests() < 20_000,
        "the attack was cut short: {} requests reached the backend",
        backend.requests()
    );
    Ok(())
}

/// Rapid reset spaced out: streams left to start (their requests reach the backend) and
/// cancelled 20 ms later, before their answer. Each reset frees its place among the
/// concurrent streams, so that limit alone bounds nothing; Envoy's premature-reset rule ends
/// the connection once 500 streams have closed and half were reset within a second and
/// before their response head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spaced_rapid_reset_gets_goaway() -> anyhow::Result<()> {
    let (backend, gw) = gateway().await?;
    let before = backend.requests();
    let Attacked {
        report,
        good_requests,
        ..
    } = run_attack(&gw, "spaced_reset", "0").await?;
    assert!(report["closed"].as_bool() == Some(true), "{report}");
    assert_eq!(goaway(&report), Some(0xb), "ENHANCE_YOUR_CALM: {report}");
    let reached = backend.requests() - before - good_requests;
    // Streams started, not reset in the read that opened them: the spaced-out variant.
    assert!(reached > 0, "no request reached the backend");
    // The attack sends 2,000 if never cut off; the cut is at 500.
    assert!(
        reached <= 500,
        "the attack was cut short: {reached} requests reached the backend"
    );
    assert!(
        report["statuses"].get("200").is_none(),
        "no stream lived to its answer: {report}"
    );
    Ok(())
}

/// `--h2-premature-reset-streams` moves the floor: at 100, the spaced-out attack is cut at
/// the 100th stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_premature_reset_floor_follows_its_flag() -> anyhow::Result<()> {
    let (backend, gw) = gateway_with(&["--h2-premature-reset-streams", "100"]).await?;
    let before = backend.requests();
    let Attacked {
        report,
        good_requests,
        ..
    } = run_attack(&gw, "spaced_reset", "0").await?;
    assert_eq!(goaway(&report), Some(0xb), "ENHANCE_YOUR_CALM: {report}");
    // Every stream of this attack starts (its request reaches the backend) before its reset:
    // at most 100 did, where the default floor lets 500 through. (How many frames the client
    // sent depends on when it saw the GOAWAY, not on the server.)
    let reached = backend.requests() - before - good_requests;
    assert!(
        (1..=100).contains(&reached),
        "{reached} requests reached the backend"
    );
    Ok(())
}

/// Empty DATA frames without end (CVE-2019-9518) carry nothing: the second in a row ends the
/// connection (Envoy's `max_consecutive_inbound_frames_with_empty_payload`, 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_data_frames_get_goaway() -> anyhow::Result<()> {
    let (_backend, gw) = gateway().await?;
    let Attacked { report, .. } = run_attack(&gw, "empty_data_flood", "0").await?;
    assert!(report["closed"].as_bool() == Some(true), "{report}");
    assert_eq!(goaway(&report), Some(0xb), "ENHANCE_YOUR_CALM: {report}");
    Ok(())
}

/// CONTINUATION frames without end: the connection is closed after a handful of frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_flood_is_cut_off() -> anyhow::Result<()> {
    let (_backend, gw) = gateway().await?;
    let Attacked { report, .. } = run_attack(&gw, "continuation_flood", "0").await?;
    assert!(report["closed"].as_bool() == Some(true), "{report}");
    assert!(goaway(&report).is_some(), "{report}");
    assert!(
        report["sent"].as_u64().unwrap_or(u64::MAX) < 10_001,
        "{report}"
    );
    Ok(())
}

/// A header block of a few KB that decodes to ~64 MB (one 4 KB dynamic-table entry referenced
/// 16,000 times): h2 stops decoding past a multiple of the header list limit (whatever
/// `max_header_list_size` is set to) and closes the connection with ENHANCE_YOUR_CALM; no bomb
/// reaches the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpack_bomb_is_refused() -> anyhow::Result<()> {
    let (backend, gw) = gateway().await?;
    let before = backend.requests();
    let Attacked { report, .. } = run_attack(&gw, "hpack_bomb", "0").await?;
    assert_eq!(report["closed"], true, "{report}");
    assert_eq!(goaway(&report), Some(0xb), "ENHANCE_YOUR_CALM: {report}");
    assert_eq!(
        report["statuses"]["200"].as_u64().unwrap_or(0),
        0,
        "no bomb was served: {report}"
    );
    // At most the first request (one 4 KB header) and the good client's reach the backend.
    let through = backend.requests() - before;
    assert!(through < 500, "{through} reached the backend");
    Ok(())
}

/// SETTINGS frames from a client that never reads the ACKs: the proxy stops reading once its
/// writes block (bounded work), and the stream idle timeout closes the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_flood_without_reading_is_closed() -> anyhow::Result<()> {
    let (_backend, gw) = gateway().await?;
    let Attacked { report, .. } = run_attack(&gw, "settings_flood", "4").await?;
    assert!(report["closed"].as_bool() == Some(true), "{report}");
    Ok(())
}

/// PINGs from a client that reads every ACK, so the proxy's writes never block and it never
/// stops reading: nginx's rule ends the connection once an eighth of what it sent passes the
/// content (none here) plus 1 MiB, about 493,000 PINGs, instead of answering all 1,000,000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_flood_from_a_client_that_reads_gets_goaway() -> anyhow::Result<()> {
    let (_backend, gw) = gateway().await?;
    let Attacked { report, .. } = run_attack(&gw, "ping_flood", "5").await?;
    assert_eq!(goaway(&report), Some(0xB), "ENHANCE_YOUR_CALM: {report}");
    assert!(report["closed"].as_bool() == Some(true), "{report}");
    let acks = report["acks"].as_u64().unwrap_or(0);
    // 8 MiB of 17-byte frames, less the preface's; the check runs after each read, so up to
    // one read's worth more (64 KiB: 3,855 PINGs) is answered.
    assert!(
        (490_000..=500_000).contains(&acks),
        "{acks} PINGs answered: {report}"
    );
    Ok(())
}

/// A client that opens 100 big responses with huge windows and never reads: the proxy buffers
/// at most `--h2-max-send-buffer-kb` per stream and closes the connection once its writes have
/// been blocked for the stream idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_reads_is_closed_with_bounded_memory() -> anyhow::Result<()> {
    let (_backend, gw) = gateway().await?;
    let Attacked {
        report, rss_growth, ..
    } = run_attack(&gw, "never_reads", "4").await?;
    assert!(report["closed"].as_bool() == Some(true), "{report}");
    // 100 streams x 4 MiB would be 400 MiB if buffered.
    assert!(rss_growth < 64 * 1024, "RSS grew {rss_growth} KiB");
    Ok(())
}

/// 300 streams at once, none finishing its body: the first 100 (the limit) are taken, the
/// rest refused with RST_STREAM REFUSED_STREAM; the 100 get 408 once their bodies idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_streams_are_refused_and_idle_bodies_get_408() -> anyhow::Result<()> {
    let (backend, gw) = gateway().await?;
    let Attacked { report, .. } = run_attack(&gw, "too_many_streams", "5").await?;
    assert_eq!(rst(&report, 0x7), 200, "REFUSED_STREAM: {report}");
    assert_eq!(
        report["statuses"]["408"].as_u64().unwrap_or(0),
        100,
        "{report}"
    );
    assert!(
        backend.max_in_flight() <= 101,
        "{}",
        backend.max_in_flight()
    );
    Ok(())
}

/// `--h2-keepalive-interval`: an idle connection is PINGed; one whose client never answers is
/// closed after `--h2-keepalive-timeout`, one that answers stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_ping_closes_connections_that_never_answer() -> anyhow::Result<()> {
    let backend = EchoServer::start("h2").await?;
    let manifests = service("ns", "h2", "http", 80, &[backend.addr()])
        + &simple_ingress("ns", "h2", HOST, "h2", "80");
    let gw = Gateway::start_with(
        &manifests,
        &[
            "--h2-keepalive-interval",
            "500ms",
            "--h2-keepalive-timeout",
            "500ms",
        ],
    )
    .await?;
    gw.wait_ingress_ready("ns", "h2").await?;
    let (alive, dead) = tokio::join!(
        attack(gw.http, "idle_alive", HOST, "4"),
        attack(gw.http, "idle_dead", HOST, "4"),
    );
    let (alive, dead) = (alive?, dead?);
    assert!(alive["pings"].as_u64().unwrap_or(0) >= 2, "{alive}");
    assert_eq!(alive["closed"], false, "{alive}");
    assert!(dead["pings"].as_u64().unwrap_or(0) >= 1, "{dead}");
    assert_eq!(dead["closed"], true, "{dead}");
    Ok(())
}
