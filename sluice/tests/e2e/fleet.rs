//! The split planes end to end: one `sluice controller` and a fleet of `sluice proxy`
//! processes on loopback, talking delta xDS over gRPC. Config reaches every proxy and readiness
//! waits for all of them; a refused resource keeps its last good version; proxies ride out a
//! controller restart; load is summed over proxies (and a silent proxy substituted, then
//! dropped); only authenticated proxies get a stream.

use crate::support::*;
use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use sluice_testkit::{EchoServer, H1Client, Response};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HOST: &str = "hello.example.com";

/// Ingress `ns/name` for `host` → `svc:80`, with the header SET `X-Ver: <ver>` (`ver` is YAML:
/// a double-quoted string may carry escapes).
fn versioned(name: &str, host: &str, svc: &str, ver: &str) -> String {
    ingress(
        "ns",
        name,
        &format!(
            "  rules:\n  - hosts: [{host}]\n    visibility: ExternalIP\n    http:\n      paths:\n      - appendHeaders: {{X-Ver: {ver}}}\n        splits: [{{serviceNamespace: ns, serviceName: {svc}, servicePort: 80}}]"
        ),
    )
}

/// The echo backend `backend` answered, and got `X-Ver: ver`.
fn served(r: &Response, backend: &str, ver: &str) -> bool {
    r.status == 200
        && r.echo()
            .is_ok_and(|e| e.name == backend && e.header("X-Ver") == Some(ver))
}

/// Two echo backends and their Services `ns/a:80` and `ns/b:80`.
async fn backends() -> anyhow::Result<(EchoServer, EchoServer, String)> {
    let a = EchoServer::start("a").await?;
    let b = EchoServer::start("b").await?;
    let manifests =
        service("ns", "a", "http", 80, &[a.addr()]) + &service("ns", "b", "http", 80, &[b.addr()]);
    Ok((a, b, manifests))
}

/// The `/status` Proxy entry named `node_id`.
async fn proxy_entry(controller: &Controller, node_id: &str) -> anyhow::Result<serde_json::Value> {
    controller
        .proxy_entries()
        .await?
        .into_iter()
        .find(|e| e["name"] == node_id)
        .with_context(|| format!("no Proxy entry for {node_id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_change_reaches_every_proxy() -> anyhow::Result<()> {
    let (_a, _b, services) = backends().await?;
    let controller = Controller::start(&services).await?;
    let proxies = start_proxies(&controller, 3).await?;
    controller.write("10-hello.yaml", &versioned("hello", HOST, "a", "one"))?;
    wait_ingress_ready_at(&controller, "ns", "hello", 1).await?;
    for proxy in &proxies {
        proxy
            .wait_serves(HOST, "a, X-Ver one", |r| served(r, "a", "one"))
            .await?;
    }
    let before = wait_converged(&controller, &proxies).await?;

    // proxy-2 cannot apply anything while stopped: the change must reach the other two, and
    // the ingress must not be Ready while one connected proxy lacks it.
    let lagging = &proxies[2];
    lagging.signal("STOP")?;
    controller.write("10-hello.yaml", &versioned("hello", HOST, "b", "two"))?;
    for proxy in &proxies[..2] {
        proxy
            .wait_serves(HOST, "b, X-Ver two", |r| served(r, "b", "two"))
            .await?;
    }
    holds_for(
        "ingress not Ready while proxy-2 lacks it",
        Duration::from_millis(500),
        async || {
            let s = controller
                .status_of("Ingress", "ns", "hello")
                .await?
                .context("no status")?;
            anyhow::ensure!(s["generation"] == 2, "not translated yet: {s:#}");
            if is_ready(&s) || condition(&s, "LoadBalancerReady") == Some("True") {
                let entries = controller.proxy_entries().await?;
                anyhow::bail!("Ready before proxy-2 applied it: {s:#}\nproxies: {entries:#?}");
            }
            Ok(())
        },
    )
    .await?;
    let entry = proxy_entry(&controller, "proxy-2").await?;
    let proxy = &entry["status"]["proxy"];
    assert!(
        proxy["appliedSequence"].as_u64() < proxy["currentSequence"].as_u64()
            && proxy["version"].is_null()
            && condition(&entry, "Ready") != Some("True"),
        "the stopped proxy is shown behind: {entry:#}"
    );

    lagging.signal("CONT")?;
    wait_ingress_ready_at(&controller, "ns", "hello", 2).await?;
    // Ready means every proxy applied it: each serves the change at once, no retry.
    for proxy in &proxies {
        let r = proxy.get(HOST, "/").await?;
        assert!(
            served(&r, "b", "two"),
            "{} after Ready: {} {}",
            proxy.node_id,
            r.status,
            r.text()
        );
    }
    let after = wait_converged(&controller, &proxies).await?;
    assert_ne!(before, after, "the version follows the content");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_ingress_keeps_its_last_good_version_while_the_rest_applies() -> anyhow::Result<()>
{
    let (_a, _b, services) = backends().await?;
    let controller = Controller::start(&services).await?;
    let proxies = start_proxies(&controller, 3).await?;
    let (a_host, b_host) = ("a.example.com", "b.example.com");
    let both = |a_ver: &str, b_ver: &str| {
        versioned("ing-a", a_host, "a", a_ver) + &versioned("ing-b", b_host, "b", b_ver)
    };
    controller.write("10-ab.yaml", &both("a1", "b1"))?;
    wait_ingress_ready_at(&controller, "ns", "ing-a", 1).await?;
    wait_ingress_ready_at(&controller, "ns", "ing-b", 1).await?;

    // One write: A gets a header value with a control character, B a good change. The
    // proxies' header parser would NACK A's RouteConfig, so translation refuses A instead
    // (found by fuzzing): A keeps its last good version everywhere, B applies, no proxy NACKs.
    controller.write("10-ab.yaml", &both(r#""bad\x01value""#, "b2"))?;
    for proxy in &proxies {
        proxy
            .wait_serves(b_host, "B's new version", |r| served(r, "b", "b2"))
            .await?;
        let r = proxy.get(a_host, "/").await?;
        assert!(
            served(&r, "a", "a1"),
            "{} must keep A's last good version: {} {}",
            proxy.node_id,
            r.status,
            r.text()
        );
    }
    let a = controller
        .wait_status("Ingress", "ns", "ing-a", |s| {
            reason(s, "NetworkConfigured") == Some("InvalidIngress")
        })
        .await?;
    assert_eq!(condition(&a, "NetworkConfigured"), Some("False"), "{a:#}");
    assert_eq!(condition(&a, "Ready"), Some("False"), "{a:#}");
    let message = a["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "NetworkConfigured"))
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default();
    assert!(
        message.contains("invalid header value") && message.contains("appendHeaders[X-Ver]"),
        "names the field: {message}"
    );
    wait_ingress_ready_at(&controller, "ns", "ing-b", 2).await?;
    let b = controller
        .status_of("Ingress", "ns", "ing-b")
        .await?
        .context("B")?;
    assert_eq!(condition(&b, "LoadBalancerReady"), Some("True"), "{b:#}");
    let nacks = metric(&controller, "sluice_xds_nacks_total")
        .await?
        .unwrap_or(0.0);
    assert_eq!(nacks, 0.0, "no proxy was sent what it cannot parse");

    // Fixing A clears the refusal everywhere.
    controller.write("10-ab.yaml", &both("a2", "b2"))?;
    wait_ingress_ready_at(&controller, "ns", "ing-a", 3).await?;
    for proxy in &proxies {
        let r = proxy.get(a_host, "/").await?;
        assert!(served(&r, "a", "a2"), "{}: {}", proxy.node_id, r.text());
    }
    wait_converged(&controller, &proxies).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_keep_serving_through_a_controller_restart_and_resync() -> anyhow::Result<()> {
    let (_a, _b, services) = backends().await?;
    let mut controller = Controller::start(&services).await?;
    let proxies = start_proxies(&controller, 3).await?;
    controller.write("10-hello.yaml", &versioned("hello", HOST, "a", "one"))?;
    wait_ingress_ready_at(&controller, "ns", "hello", 1).await?;
    wait_converged(&controller, &proxies).await?;

    controller.kill()?;
    let down = Instant::now();
    for proxy in &proxies {
        for _ in 0..5 {
            let r = proxy.get(HOST, "/").await?;
            assert!(served(&r, "a", "one"), "{}: {}", proxy.node_id, r.text());
        }
        assert_eq!(proxy.admin_get("/ready").await?.status, 200);
    }
    controller.write("10-hello.yaml", &versioned("hello", HOST, "b", "two"))?;
    controller.restart().await?;
    // Reconnect delays double from 10 ms with jitter from the upper half of each step, so the
    // next attempt comes within about twice the time spent down (and never later than 15 s).
    let backoff = (down.elapsed() * 2 + Duration::from_millis(100)).min(Duration::from_secs(15));
    let bound = WAIT + backoff;
    let resynced = Instant::now();
    for proxy in &proxies {
        eventually(
            &format!("{} resynced", proxy.node_id),
            bound.saturating_sub(resynced.elapsed()),
            async || {
                let r = proxy.get(HOST, "/").await?;
                Ok(served(&r, "b", "two").then_some(()))
            },
        )
        .await?;
    }
    controller.wait_ingress_ready("ns", "hello").await?;
    wait_converged(&controller, &proxies).await?;
    Ok(())
}

// ---- Load summed over proxies ----

const BUSY: &str = "busy.example.com";
const OBSERVED: &str = "sluice_revision_observed_concurrency{revision=\"ns/busy\"}";
const REPORTING: &str = "sluice_autoscaler_reporting_proxies";
const DESIRED: &str = "sluice_revision_desired_scale{revision=\"ns/busy\"}";
/// Every request of the load holds its slot this long at the instance.
const REQUEST_MS: u64 = 1000;

/// A process Revision that wants one in-flight request per instance (utilisation 100 %, so
/// concurrency 2 asks for 2 instances and 6 for 6), behind Route `busy.example.com`.
fn busy_revision() -> String {
    autoscaler_config("")
        + &revision(
            "busy",
            BUSY,
            0,
            &[
                ("autoscaling.knative.dev/target", "1"),
                (
                    "autoscaling.knative.dev/target-utilization-percentage",
                    "100",
                ),
                ("autoscaling.knative.dev/max-scale", "10"),
            ],
            &[],
            "",
        )
}

/// Slow requests kept in flight through proxies; bounded in count and time.
struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<(usize, tokio::task::JoinHandle<anyhow::Result<u32>>)>,
}

impl Load {
    const MAX_REQUESTS: u32 = 40;
    const MAX_TIME: Duration = Duration::from_secs(40);

    /// `per_proxy` connections through each proxy, each sending one slow request after another.
    fn start(proxies: &[Proxy], per_proxy: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for (i, proxy) in proxies.iter().enumerate() {
            for _ in 0..per_proxy {
                let (addr, stop) = (proxy.http, stop.clone());
                workers.push((
                    i,
                    tokio::spawn(async move {
                        let started = Instant::now();
                        let mut client = H1Client::connect(addr)
                            .await?
                            .with_timeout(Duration::from_secs(30));
                        let mut sent = 0;
                        while !stop.load(Ordering::Relaxed)
                            && sent < Load::MAX_REQUESTS
                            && started.elapsed() < Load::MAX_TIME
                        {
                            let r = client
                                .send("GET", BUSY, &format!("/?sleep_ms={REQUEST_MS}"), &[], None)
                                .await?;
                            anyhow::ensure!(r.status == 200, "status {}: {}", r.status, r.text());
                            sent += 1;
                        }
                        Ok(sent)
                    }),
                ));
            }
        }
        Load { stop, workers }
    }

    /// Stops the load and checks that every request through a proxy not in `skip` succeeded.
    async fn finish(mut self, skip: &[usize]) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        for (proxy, worker) in std::mem::take(&mut self.workers) {
            let bound = Duration::from_millis(REQUEST_MS) + WAIT;
            let result = tokio::time::timeout(bound, worker)
                .await
                .context("a load worker did not stop")?;
            if !skip.contains(&proxy) {
                result.context("load worker panicked")??;
            }
        }
        Ok(())
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for (_, worker) in &self.workers {
            worker.abort();
        }
    }
}

/// A controller with `busy_revision`, three proxies, and two slow requests in flight through
/// each, once the controller sees all of it in one sample: about 6 in flight, from 3 proxies.
/// Returns that sample's concurrency too.
async fn loaded_fleet() -> anyhow::Result<(Controller, Vec<Proxy>, Load, f64)> {
    let controller = Controller::start(&busy_revision()).await?;
    let proxies = start_proxies(&controller, 3).await?;
    controller
        .wait_status("Route", "ns", "busy", is_ready)
        .await?;
    let load = Load::start(&proxies, 2);
    let observed = eventually(
        "the load of 3 proxies summed",
        Duration::from_secs(15),
        async || {
            let text = controller.admin_get("/metrics").await?.text().to_string();
            let observed = metric_in(&text, OBSERVED).context("no observed gauge")?;
            let reporting = metric_in(&text, REPORTING).context("no reporting gauge")?;
            anyhow::ensure!(
                observed >= 5.0 && reporting == 3.0,
                "observed {observed} from {reporting} proxies"
            );
            Ok(Some(observed))
        },
    )
    .await?;
    Ok((controller, proxies, load, observed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaling_follows_the_load_summed_over_proxies() -> anyhow::Result<()> {
    let (controller, _proxies, load, observed) = loaded_fleet().await?;
    assert!(
        observed <= 6.5,
        "at most 2 in flight through each of 3 proxies: {observed}"
    );
    // One proxy's 2 in flight would ask for 2 instances.
    let desired = wait_metric(&controller, DESIRED, |v| v >= 4.0, Duration::from_secs(15)).await?;
    assert!(desired <= 10.0, "max-scale: {desired}");
    // The controller's admin port shows the same in /ui's data and trace.csv.
    let data: serde_json::Value =
        serde_json::from_slice(&controller.admin_get("/ui/data").await?.body)?;
    let busy = data["revisions"]
        .as_array()
        .and_then(|revisions| revisions.iter().find(|r| r["id"] == "ns/busy"))
        .context("ns/busy on /ui/data")?;
    let points = busy["points"].as_array().context("points")?;
    assert!(
        points
            .iter()
            .any(|p| p["concurrency"].as_f64() >= Some(5.0)),
        "{busy}"
    );
    assert!(
        points.iter().any(|p| p["desired"].as_u64() >= Some(4)),
        "{busy}"
    );
    let trace = controller.admin_get("/revisions/ns/busy/trace.csv").await?;
    assert_eq!(trace.status, 200);
    let page = controller.admin_get("/ui").await?;
    assert!(page.text().contains("<title>sluice"), "the page is served");
    load.finish(&[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_stops_reporting_is_substituted_then_dropped() -> anyhow::Result<()> {
    let (controller, proxies, load, _) = loaded_fleet().await?;
    let silent = &proxies[2];
    silent.signal("STOP")?;
    let stopped = Instant::now();
    // Its last report came at most ~1 s before it stopped, and it is dropped once that report
    // is more than 3 s old: not before ~2 s from now, by ~4 s (plus a sample tick).
    let mut substituted_low = f64::MAX;
    let (after, reporting) = eventually(
        "the silent proxy is dropped",
        Duration::from_secs(8),
        async || {
            let text = controller.admin_get("/metrics").await?.text().to_string();
            let reporting = metric_in(&text, REPORTING).context("no reporting gauge")?;
            if reporting == 3.0 {
                let observed = metric_in(&text, OBSERVED).context("no observed gauge")?;
                substituted_low = substituted_low.min(observed);
                return Ok(None);
            }
            Ok(Some((stopped.elapsed(), reporting)))
        },
    )
    .await?;
    assert_eq!(reporting, 2.0, "dropped after {after:?}");
    assert!(
        after >= Duration::from_millis(1750),
        "dropped after {after:?}, inside the 3 s substitution window"
    );
    assert!(
        substituted_low >= 4.5,
        "while substituted its last figures still count: observed fell to {substituted_low}"
    );
    // Dropped: only the two live proxies' load counts.
    wait_metric(&controller, OBSERVED, |v| v < 4.5, Duration::from_secs(5)).await?;

    silent.signal("CONT")?;
    wait_metric(&controller, REPORTING, |v| v == 3.0, WAIT).await?;
    wait_metric(&controller, OBSERVED, |v| v >= 5.0, WAIT).await?;
    load.finish(&[2]).await
}

// ---- Authentication ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_proxy_is_refused() -> anyhow::Result<()> {
    let controller = Controller::start("").await?;
    let secrets = tempfile::tempdir()?;
    let spec = ProxySpec {
        auth: XdsAuth::token_in(secrets.path(), "wrong", "not-the-fleet-token")?,
        ..controller.proxy("intruder")?
    };
    let mut intruder = Proxy::spawn(&spec)?;
    intruder.wait_admin().await?;
    // It keeps retrying and keeps being refused.
    eventually("three refusals logged", WAIT, async || {
        Ok((intruder.log().matches("unauthenticated").count() >= 3).then_some(()))
    })
    .await?;
    let log = intruder.log();
    assert!(
        log.contains("controller refused the stream: unauthenticated"),
        "{log}"
    );
    intruder.process().check_running()?;
    assert_eq!(intruder.admin_get("/ready").await?.status, 503);
    let entries = controller.proxy_entries().await?;
    assert!(entries.is_empty(), "listed: {entries:#?}");
    assert_eq!(
        metric(&controller, "sluice_xds_connected_proxies").await?,
        Some(0.0)
    );
    assert!(
        controller.log().contains("xds stream refused"),
        "{}",
        controller.log()
    );

    // Without any credential a proxy does not start at all.
    let port = || free_addr(LOCALHOST).map(|a| a.to_string());
    let mut command = Command::new(SLUICE);
    command
        .arg("proxy")
        .args(["--xds", &controller.xds.to_string(), "--node-id", "bare"])
        .args(["--http", &port()?, "--internal-http", &port()?])
        .args(["--admin", &port()?, "--probe-addr", "127.0.0.1:0"]);
    for var in [
        "SLUICE_XDS_TOKEN_FILE",
        "SLUICE_XDS_CA",
        "SLUICE_XDS_CERT",
        "SLUICE_XDS_KEY",
    ] {
        command.env_remove(var);
    }
    let mut bare = Process::spawn("bare", command)?;
    let status = bare.wait_exit(WAIT).await?;
    assert!(!status.success(), "{status}");
    let said = eventually("the reason on stderr", WAIT, async || {
        let log = bare.log();
        Ok(log.contains("--xds-token-file").then_some(log))
    })
    .await?;
    assert!(said.contains("--xds-ca"), "{said}");
    Ok(())
}

/// A CA and the leaves it signs, as PEM files.
pub(crate) struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
    pub(crate) ca_file: PathBuf,
}

impl Pki {
    pub(crate) fn new(name: &str) -> anyhow::Result<Pki> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let dir = tempfile::tempdir()?;
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem())?;
        Ok(Pki { dir, ca, ca_file })
    }

    /// A leaf for `cn` with `names` as SANs; `peer_ca` is the CA its holder trusts.
    pub(crate) fn leaf(
        &self,
        cn: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
        peer_ca: &std::path::Path,
    ) -> anyhow::Result<XdsAuth> {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.ca)?;
        let (cert_file, key_file) = (
            self.dir.path().join(format!("{cn}.pem")),
            self.dir.path().join(format!("{cn}.key")),
        );
        std::fs::write(&cert_file, cert.pem())?;
        std::fs::write(&key_file, key.serialize_pem())?;
        Ok(XdsAuth::Mtls {
            ca: peer_ca.to_path_buf(),
            cert: cert_file,
            key: key_file,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_authenticates_proxies() -> anyhow::Result<()> {
    let pki = Pki::new("sluice fleet ca")?;
    let server = pki.leaf(
        "controller",
        &["127.0.0.1", "localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
        &pki.ca_file,
    )?;
    let (_a, _b, services) = backends().await?;
    let manifests = services + &versioned("hello", HOST, "a", "one");
    let controller = Controller::start_with(&manifests, LOCALHOST, Some(server)).await?;
    let spec = |node_id: &str, auth: XdsAuth| ProxySpec {
        node_id: node_id.to_string(),
        xds: controller.xds,
        auth,
        ip: LOCALHOST,
        netns: None,
    };
    let client = pki.leaf(
        "edge-1",
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
        &pki.ca_file,
    )?;
    let proxy = Proxy::start(&spec("edge-1", client)).await?;
    proxy
        .wait_serves(HOST, "a, X-Ver one", |r| served(r, "a", "one"))
        .await?;
    let entry = proxy_entry(&controller, "edge-1").await?;
    let identity = entry["status"]["proxy"]["identity"]
        .as_str()
        .unwrap_or_default();
    assert!(identity.starts_with("mtls:"), "{entry:#}");
    assert_eq!(identity, "mtls:edge-1", "the client certificate's CN");
    wait_converged(&controller, std::slice::from_ref(&proxy)).await?;

    // A certificate from another CA gets no stream.
    let other = Pki::new("another ca")?;
    let stranger = other.leaf(
        "stranger",
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
        &pki.ca_file,
    )?;
    let mut stranger = Proxy::spawn(&spec("stranger", stranger))?;
    stranger.wait_admin().await?;
    eventually("the stranger's connect fails", WAIT, async || {
        Ok(stranger.log().contains("xds connect failed").then_some(()))
    })
    .await?;
    assert_eq!(stranger.admin_get("/ready").await?.status, 503);
    assert!(proxy_entry(&controller, "stranger").await.is_err());
    Ok(())
}
