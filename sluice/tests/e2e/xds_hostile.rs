//! Hostile clients on the controller's xDS port (`h2_attacks.py`, real frames): rapid reset,
//! HPACK bomb, too many streams, a client that connects and says nothing, unauthenticated
//! streams and an oversized message. Each must be refused (its connection closed, its streams
//! reset, or a clear gRPC status) with the controller's memory and CPU bounded, while a real
//! `sluice proxy` on the same controller keeps its stream and keeps getting config changes.

use crate::fleet::Pki;
use crate::h2_hostile::{attack_with, usage};
use crate::support::*;
use rcgen::ExtendedKeyUsagePurpose;
use serde_json::Value;
use sluice_testkit::EchoServer;
use sluice_xds::grpc::{MAX_PROXY_MESSAGE_BYTES, MAX_STREAMS_PER_CONNECTION, PREFACE_TIMEOUT};
use std::time::Duration;

/// The token [`Controller::start`] gives its fleet.
const TOKEN: &str = "the-fleet-token";

/// A controller with one connected, ready proxy and an echo backend `ns/a:80`.
struct Fleet {
    _backend: EchoServer,
    controller: Controller,
    proxy: Proxy,
}

impl Fleet {
    async fn start() -> anyhow::Result<Fleet> {
        let backend = EchoServer::start("a").await?;
        let controller =
            Controller::start(&service("ns", "a", "http", 80, &[backend.addr()])).await?;
        let mut proxies = start_proxies(&controller, 1).await?;
        let proxy = proxies.remove(0);
        let fleet = Fleet {
            _backend: backend,
            controller,
            proxy,
        };
        fleet.config_reaches_the_proxy("before").await?;
        Ok(fleet)
    }

    /// A new Ingress reaches the proxy: its xDS stream works.
    async fn config_reaches_the_proxy(&self, name: &str) -> anyhow::Result<()> {
        let host = format!("{name}.example.com");
        self.controller.write(
            &format!("20-{name}.yaml"),
            &simple_ingress("ns", name, &host, "a", "80"),
        )?;
        self.proxy
            .wait_serves(&host, "a config change", |r| r.status == 200)
            .await?;
        Ok(())
    }

    /// Runs `name` on the xDS port; then checks that the controller's RSS and CPU stayed
    /// bounded and that the proxy kept its stream (no reconnect logged), stays ready and gets a
    /// config change.
    async fn attack(&self, name: &str, wait: &str, extra: &[&str]) -> anyhow::Result<Value> {
        let pid = self
            .controller
            .pid()
            .ok_or_else(|| anyhow::anyhow!("no controller pid"))?;
        let (rss_before, cpu_before) = usage(pid)?;
        let report = attack_with(self.controller.xds, name, "controller", wait, extra).await?;
        let (rss_after, cpu_after) = usage(pid)?;
        let rss_growth = rss_after as i64 - rss_before as i64;
        let cpu = cpu_after - cpu_before;
        eprintln!(
            "{name}: {report} controller rss {rss_before} -> {rss_after} KiB, cpu {cpu} ticks"
        );
        // Generous: far below what the attack would cost unbounded.
        assert!(rss_growth < 128 * 1024, "{name}: RSS grew {rss_growth} KiB");
        assert!(cpu < 30 * 100, "{name}: {cpu} CPU ticks");

        assert_eq!(self.proxy.admin_get("/ready").await?.status, 200, "{name}");
        self.config_reaches_the_proxy("after").await?;
        let log = self.proxy.log();
        assert!(
            !log.contains("xds stream closed") && !log.contains("xds connect failed"),
            "{name}: the proxy lost its stream:\n{log}"
        );
        wait_metric(
            &self.controller,
            "sluice_xds_connected_proxies",
            |v| v == 1.0,
            WAIT,
        )
        .await?;
        Ok(report)
    }
}

fn goaway(report: &Value) -> Option<u64> {
    report["goaway"].as_u64()
}

/// The gRPC status (code, message) the port answered on `stream`.
fn grpc(report: &Value, stream: u32) -> (Option<u64>, String) {
    let entry = &report["grpc"][stream.to_string()];
    (
        entry["status"].as_u64(),
        entry["message"].as_str().unwrap_or_default().to_string(),
    )
}

/// CVE-2023-44487 on the xDS port: GOAWAY ENHANCE_YOUR_CALM after a bounded number of
/// streams (`MAX_PENDING_ACCEPT_RESETS`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xds_rapid_reset_gets_goaway() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let report = fleet.attack("rapid_reset", "0", &[]).await?;
    assert_eq!(report["closed"], true, "{report}");
    assert_eq!(goaway(&report), Some(0xb), "ENHANCE_YOUR_CALM: {report}");
    assert!(
        report["sent"].as_u64().unwrap_or(u64::MAX) < 40_000,
        "cut short: {report}"
    );
    Ok(())
}

/// A few KB of HPACK that decode to ~64 MB: the connection is closed with ENHANCE_YOUR_CALM
/// (`MAX_HEADER_LIST_BYTES`) before any bomb is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xds_hpack_bomb_is_refused() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let report = fleet.attack("hpack_bomb", "0", &[]).await?;
    assert_eq!(report["closed"], true, "{report}");
    assert_eq!(goaway(&report), Some(0xb), "ENHANCE_YOUR_CALM: {report}");
    // At most the first request (one 4 KB header, no bomb) gets an answer.
    let answered = report["statuses"]["200"].as_u64().unwrap_or(0);
    assert!(answered <= 1, "{report}");
    Ok(())
}

/// 300 authenticated streams at once on one connection: all but
/// `MAX_STREAMS_PER_CONNECTION` are refused with RST_STREAM REFUSED_STREAM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xds_too_many_streams_are_refused() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let report = fleet.attack("xds_too_many_streams", "2", &[TOKEN]).await?;
    let refused = report["rst"]["7"].as_u64().unwrap_or(0);
    let limit = u64::from(MAX_STREAMS_PER_CONNECTION);
    assert_eq!(refused, 300 - limit, "REFUSED_STREAM: {report}");
    let accepted = report["statuses"]["200"].as_u64().unwrap_or(0);
    assert!(accepted <= limit, "{report}");
    Ok(())
}

/// A client that connects and sends nothing, not even the HTTP/2 preface, is closed at
/// `PREFACE_TIMEOUT` (tonic alone would keep it forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xds_silent_client_is_closed() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let wait = PREFACE_TIMEOUT * 2;
    let report = fleet
        .attack("silent", &wait.as_secs().to_string(), &[])
        .await?;
    assert_eq!(report["closed"], true, "{report}");
    // Closed by the deadline, not by anything sooner.
    let seconds = report["seconds"].as_f64().unwrap_or(0.0);
    let floor = (PREFACE_TIMEOUT - Duration::from_secs(1)).as_secs_f64();
    assert!(seconds >= floor, "closed after {seconds} s: {report}");
    Ok(())
}

/// A stream without a token, and one with a wrong token, each get UNAUTHENTICATED with the
/// reason at once; no session is opened for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xds_unauthenticated_streams_get_unauthenticated() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let report = fleet.attack("xds_unauthenticated", "2", &[]).await?;
    let (code, message) = grpc(&report, 1);
    assert_eq!(code, Some(16), "no token, UNAUTHENTICATED: {report}");
    assert!(message.contains("missing authorization"), "{report}");
    let (code, message) = grpc(&report, 3);
    assert_eq!(code, Some(16), "wrong token, UNAUTHENTICATED: {report}");
    assert!(message.contains("wrong token"), "{report}");
    Ok(())
}

/// An authenticated stream whose first message declares one byte over
/// `MAX_PROXY_MESSAGE_BYTES` ends with RESOURCE_EXHAUSTED, from the length prefix alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xds_oversized_message_gets_resource_exhausted() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let attack = format!("xds_oversized:{}", MAX_PROXY_MESSAGE_BYTES + 1);
    let report = fleet.attack(&attack, "2", &[TOKEN]).await?;
    let (code, message) = grpc(&report, 1);
    assert_eq!(code, Some(8), "RESOURCE_EXHAUSTED: {report}");
    assert!(message.contains("too large"), "{report}");
    Ok(())
}

/// `--xds-max-connections 3` with the proxy holding one: of 5 more connections 2 are kept
/// and 3 closed at once, the proxy keeps its stream, and once they go a new proxy gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xds_connections_past_the_limit_are_closed() -> anyhow::Result<()> {
    let backend = EchoServer::start("a").await?;
    let controller = Controller::start_with_args(
        &service("ns", "a", "http", 80, &[backend.addr()]),
        LOCALHOST,
        None,
        &["--xds-max-connections", "3"],
    )
    .await?;
    let proxy = start_proxies(&controller, 1).await?.remove(0);
    let fleet = Fleet {
        _backend: backend,
        controller,
        proxy,
    };
    fleet.config_reaches_the_proxy("before").await?;
    let report = fleet.attack("hold_connections:5", "1", &[]).await?;
    assert_eq!(report["closed_connections"], 3, "{report}");
    // The attacker's connections are gone: their slots are free again.
    let mut second = Proxy::spawn(&fleet.controller.proxy("proxy-1")?)?;
    second.wait_ready().await?;
    Ok(())
}

/// On an mTLS port, a client that sends a real ClientHello and then nothing (past the preface
/// deadline's byte count) is closed by the TLS handshake timeout (10 s); an mTLS proxy on the
/// same port keeps its stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xds_stalled_tls_handshake_is_closed() -> anyhow::Result<()> {
    let pki = Pki::new("xds hostile ca")?;
    let server = pki.leaf(
        "controller",
        &["127.0.0.1", "localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
        &pki.ca_file,
    )?;
    let backend = EchoServer::start("a").await?;
    let controller = Controller::start_with(
        &service("ns", "a", "http", 80, &[backend.addr()]),
        LOCALHOST,
        Some(server),
    )
    .await?;
    let client = pki.leaf(
        "edge-1",
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
        &pki.ca_file,
    )?;
    let proxy = Proxy::start(&ProxySpec {
        node_id: "edge-1".to_string(),
        xds: controller.xds,
        auth: client,
        ip: LOCALHOST,
        netns: None,
    })
    .await?;
    let fleet = Fleet {
        _backend: backend,
        controller,
        proxy,
    };
    fleet.config_reaches_the_proxy("before").await?;
    let report = fleet.attack("tls_hello_stall", "25", &[]).await?;
    assert_eq!(report["closed"], true, "{report}");
    // Closed by the handshake timeout, not at once (a refused hello would be).
    let seconds = report["seconds"].as_f64().unwrap_or(0.0);
    assert!(seconds >= 9.0, "closed after {seconds} s: {report}");
    Ok(())
}
