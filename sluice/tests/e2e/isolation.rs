//! Isolation and startup (issue 11, items 5 and 6): ClusterLocal hosts stay off the external
//! listeners however the host is spelled, error bodies there name nothing internal,
//! X-Forwarded-* follow `--xff-trusted-hops`, the admin listener keeps its paths while the
//! probe listener serves only three, and a bad start ends the process at once.

use crate::support::*;
use sluice_testkit::{EchoServer, H2cClient, TlsClient, ALPN_H2};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PRIVATE: &str = "private.ns.svc.cluster.local";
const PUBLIC: &str = "pub.example.com";

/// A ClusterLocal rule for [`PRIVATE`] and an ExternalIP rule for [`PUBLIC`], both to `echo`.
fn two_visibilities(backend: SocketAddr) -> String {
    let spec = format!(
        "  rules:\n  - hosts: [{PRIVATE}]\n    visibility: ClusterLocal\n    http:\n      paths:\n      - splits: [{{serviceNamespace: ns, serviceName: echo, servicePort: 80}}]\n  - hosts: [{PUBLIC}]\n    visibility: ExternalIP\n    http:\n      paths:\n      - splits: [{{serviceNamespace: ns, serviceName: echo, servicePort: 80}}]"
    );
    service("ns", "echo", "http", 80, &[backend]) + &ingress("ns", "vis", &spec)
}

/// A response read off a raw socket.
struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// Writes `request` as bytes on a fresh connection and reads until the server closes it
/// (the request says `Connection: close`), bounded by [`WAIT`].
async fn raw(addr: SocketAddr, request: &str) -> anyhow::Result<Raw> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut bytes = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut bytes)).await??;
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no response head in {bytes:?}"))?;
    let head = String::from_utf8_lossy(&bytes[..split]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("no status in {head:?}"))?
        .parse()?;
    let mut body = bytes[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body)?;
    }
    Ok(Raw { status, head, body })
}

fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow::anyhow!("bad chunk"))?;
        let size = usize::from_str_radix(std::str::from_utf8(&data[..line])?.trim(), 16)?;
        data = &data[line + 2..];
        if size == 0 {
            return Ok(out);
        }
        anyhow::ensure!(data.len() >= size + 2, "short chunk");
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[tokio::test]
async fn cluster_local_hosts_are_unreachable_externally_however_spelled() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let gw = Gateway::start(&two_visibilities(backend.addr())).await?;
    gw.wait_ingress_ready("ns", "vis").await?;
    let before = backend.requests();

    // HTTP/1.1 Host spellings that normalise to the private name.
    let spellings = [
        PRIVATE.to_string(),
        PRIVATE.to_ascii_uppercase(),
        "Private.NS.svc.Cluster.Local".to_string(),
        format!("{PRIVATE}."),
        format!("{PRIVATE}:80"),
        format!("{PRIVATE}:8080"),
        format!("{PRIVATE}.:80"),
        format!("{}.:443", PRIVATE.to_ascii_uppercase()),
    ];
    for host in &spellings {
        let r = raw(
            gw.http,
            &format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
        .await?;
        assert_eq!(r.status, 404, "external Host: {host}");
        // The same spelling is served where the host is visible.
        let r = raw(
            gw.internal,
            &format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
        .await?;
        assert_eq!(r.status, 200, "internal Host: {host}");
    }
    let internal_served = spellings.len() as u64;
    assert_eq!(backend.requests(), before + internal_served);

    // Absolute-form target: its authority wins over Host (RFC 9112 §3.2.2), both ways.
    for target in [
        format!("http://{PRIVATE}/"),
        format!("http://{}:80/", PRIVATE.to_ascii_uppercase()),
        format!("http://{PRIVATE}./x"),
    ] {
        let r = raw(
            gw.http,
            &format!("GET {target} HTTP/1.1\r\nHost: {PUBLIC}\r\nConnection: close\r\n\r\n"),
        )
        .await?;
        assert_eq!(r.status, 404, "external absolute-form {target}: {}", r.head);
    }
    assert_eq!(backend.requests(), before + internal_served);
    let r = raw(
        gw.http,
        &format!(
            "GET http://{PUBLIC}/abs HTTP/1.1\r\nHost: {PRIVATE}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await?;
    assert_eq!(r.status, 200, "{}", r.head);
    let seen = sluice_testkit::EchoReply::parse(&r.body)?;
    assert_eq!(
        seen.request.host, PUBLIC,
        "the backend gets the routed host"
    );
    assert_eq!(seen.request.uri, "/abs", "origin-form upstream");
    // On the internal listener an absolute-form private target is served, as the private host.
    let r = raw(
        gw.internal,
        &format!("GET http://{PRIVATE}/ HTTP/1.1\r\nHost: {PUBLIC}\r\nConnection: close\r\n\r\n"),
    )
    .await?;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(
        sluice_testkit::EchoReply::parse(&r.body)?.request.host,
        PRIVATE
    );

    // h2c: `:authority` is routed on (RFC 9113 §8.3.1), whatever a `host` header says.
    let h2 = H2cClient::connect(gw.http).await?;
    let before = backend.requests();
    for authority in [
        PRIVATE.to_string(),
        format!("{}.", PRIVATE.to_ascii_uppercase()),
        format!("{PRIVATE}:8080"),
    ] {
        let r = h2
            .send("GET", &authority, "/", &[("host", PUBLIC)], None)
            .await?;
        assert_eq!(r.status, 404, "external h2c :authority {authority}");
        let r = h2.send("GET", &authority, "/", &[], None).await?;
        assert_eq!(
            r.status, 404,
            "external h2c :authority {authority}, no host"
        );
    }
    assert_eq!(backend.requests(), before, "nothing reached the backend");
    let r = h2
        .send("GET", PUBLIC, "/", &[("host", PRIVATE)], None)
        .await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.echo()?.request.host, PUBLIC);
    let internal = H2cClient::connect(gw.internal).await?;
    let r = internal
        .send("GET", PRIVATE, "/", &[("host", PUBLIC)], None)
        .await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.echo()?.request.host, PRIVATE);
    Ok(())
}

/// A self-signed certificate for `hosts`, written as PEM files into `dir`.
fn certificate_files(
    dir: &std::path::Path,
    hosts: &[&str],
) -> anyhow::Result<(String, String, String)> {
    let generated = rcgen::generate_simple_self_signed(
        hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
    )?;
    let cert = dir.join("default.crt");
    let key = dir.join("default.key");
    std::fs::write(&cert, generated.cert.pem())?;
    std::fs::write(&key, generated.signing_key.serialize_pem())?;
    Ok((
        generated.cert.pem(),
        cert.to_string_lossy().to_string(),
        key.to_string_lossy().to_string(),
    ))
}

#[tokio::test]
async fn cluster_local_hosts_are_unreachable_over_external_tls_h2() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let certs = tempfile::tempdir()?;
    let (pem, cert, key) = certificate_files(certs.path(), &[PUBLIC, PRIVATE])?;
    let gw = Gateway::start_with(
        &two_visibilities(backend.addr()),
        &["--default-certificate", &cert, "--default-key", &key],
    )
    .await?;
    gw.wait_ingress_ready("ns", "vis").await?;
    let client = TlsClient::new(&[&pem], &[ALPN_H2])?;
    let before = backend.requests();
    // SNI and :authority both private, or SNI public with a private :authority.
    for sni in [PRIVATE, PUBLIC] {
        let h2 = H2cClient::connect_tls(gw.https, &client, sni).await?;
        for authority in [PRIVATE.to_string(), format!("{PRIVATE}.:443")] {
            let r = h2
                .send("GET", &authority, "/", &[("host", PUBLIC)], None)
                .await?;
            assert_eq!(r.status, 404, "sni {sni}, :authority {authority}");
        }
    }
    assert_eq!(backend.requests(), before, "nothing reached the backend");
    let h2 = H2cClient::connect_tls(gw.https, &client, PUBLIC).await?;
    let r = h2
        .send("GET", PUBLIC, "/", &[("host", PRIVATE)], None)
        .await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.echo()?.request.host, PUBLIC);
    // The cluster-local HTTPS listener serves the private host.
    let h2 = H2cClient::connect_tls(gw.internal_https, &client, PRIVATE).await?;
    assert_eq!(h2.send("GET", PRIVATE, "/", &[], None).await?.status, 200);
    Ok(())
}

#[tokio::test]
async fn external_error_bodies_name_no_backend_or_address() -> anyhow::Result<()> {
    // `down` has an endpoint nobody listens on (connect refused); `empty` has none (held, then
    // 504 at --hold-timeout).
    let closed = sluice_testkit::closed_port();
    let rule = |host: &str, svc: &str| {
        format!("  - hosts: [{host}]\n    visibility: ExternalIP\n    http:\n      paths:\n      - splits: [{{serviceNamespace: ns, serviceName: {svc}, servicePort: 80}}]\n")
    };
    let spec = format!(
        "  rules:\n{}{}",
        rule("down.example.com", "down"),
        rule("empty.example.com", "empty")
    );
    let manifests = service("ns", "down", "http", 80, &[closed])
        + &service("ns", "empty", "http", 80, &[])
        + &ingress("ns", "errors", spec.trim_end());
    let gw = Gateway::start_with(&manifests, &["--hold-timeout", "300ms"]).await?;
    gw.wait_ingress_ready("ns", "errors").await?;
    let get = |addr, host: &'static str| async move {
        sluice_testkit::http1_request(addr, "GET", host, "/", &[], None).await
    };

    let external = get(gw.http, "down.example.com").await?;
    assert_eq!(external.status, 503);
    assert_eq!(external.text(), "no healthy upstream\n");
    let internal = get(gw.internal, "down.example.com").await?;
    assert_eq!(internal.status, 503);
    assert!(
        internal.text().contains(&closed.to_string()),
        "internal listeners keep the detail: {}",
        internal.text()
    );

    let external = get(gw.http, "empty.example.com").await?;
    assert_eq!(external.status, 504);
    assert_eq!(external.text(), "upstream request timeout\n");
    let internal = get(gw.internal, "empty.example.com").await?;
    assert_eq!(internal.status, 504);
    assert!(
        internal.text().contains("ns/empty"),
        "internal listeners name the backend: {}",
        internal.text()
    );
    // The detail is still counted in metrics (admin and probe listeners only).
    let connect_errors = metric(
        &gw,
        "sluice_upstream_connect_errors_total{backend=\"ns/down:80\"}",
    )
    .await?;
    assert!(
        connect_errors.unwrap_or_default() >= 2.0,
        "{connect_errors:?}"
    );
    Ok(())
}

/// GET `/` for [`PUBLIC`] on the external listener with `headers`; what the backend saw.
async fn forwarded(
    gw: &Gateway,
    headers: &[(&str, &str)],
) -> anyhow::Result<sluice_testkit::EchoReply> {
    let r = sluice_testkit::http1_request(gw.http, "GET", PUBLIC, "/", headers, None).await?;
    anyhow::ensure!(r.status == 200, "status {}", r.status);
    r.echo()
}

const CLIENT_FORWARDED: [(&str, &str); 3] = [
    ("x-forwarded-for", "203.0.113.7"),
    ("x-forwarded-host", "evil.example"),
    ("x-forwarded-proto", "https"),
];

#[tokio::test]
async fn untrusted_clients_forwarded_host_and_proto_are_replaced() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let gw = Gateway::start(&two_visibilities(backend.addr())).await?;
    gw.wait_ingress_ready("ns", "vis").await?;
    let seen = forwarded(&gw, &CLIENT_FORWARDED).await?;
    // Envoy with 0 trusted hops: the peer address is appended to what the client sent.
    assert_eq!(
        seen.header_values("x-forwarded-for").join(", "),
        "203.0.113.7, 127.0.0.1"
    );
    // Traefik: an untrusted client's X-Forwarded-Host is replaced by the request's host.
    assert_eq!(seen.header_values("x-forwarded-host"), vec![PUBLIC]);
    assert_eq!(seen.header_values("x-forwarded-proto"), vec!["http"]);
    let seen = forwarded(&gw, &[]).await?;
    assert_eq!(seen.header_values("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(seen.header_values("x-forwarded-host"), vec![PUBLIC]);
    assert_eq!(seen.header_values("x-forwarded-proto"), vec!["http"]);
    Ok(())
}

#[tokio::test]
async fn trusted_hops_keep_the_previous_proxys_forwarded_headers() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let gw = Gateway::start_with(
        &two_visibilities(backend.addr()),
        &["--xff-trusted-hops", "1"],
    )
    .await?;
    gw.wait_ingress_ready("ns", "vis").await?;
    let seen = forwarded(&gw, &CLIENT_FORWARDED).await?;
    assert_eq!(
        seen.header_values("x-forwarded-for").join(", "),
        "203.0.113.7, 127.0.0.1"
    );
    assert_eq!(seen.header_values("x-forwarded-host"), vec!["evil.example"]);
    assert_eq!(seen.header_values("x-forwarded-proto"), vec!["https"]);
    // Where the previous hop sent none, this hop's values are set.
    let seen = forwarded(&gw, &[]).await?;
    assert_eq!(seen.header_values("x-forwarded-host"), vec![PUBLIC]);
    assert_eq!(seen.header_values("x-forwarded-proto"), vec!["http"]);
    Ok(())
}

async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<sluice_testkit::Response> {
    sluice_testkit::http1_request(addr, "GET", "probe", path, &[], None).await
}

#[tokio::test]
async fn probe_listener_serves_only_ready_healthz_and_metrics() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let gw = Gateway::start(&two_visibilities(backend.addr())).await?;
    gw.wait_ingress_ready("ns", "vis").await?;
    assert_eq!(get(gw.probe, "/ready").await?.status, 200);
    assert_eq!(get(gw.probe, "/healthz").await?.status, 200);
    let metrics = get(gw.probe, "/metrics").await?;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.text().contains("# TYPE sluice_"),
        "{}",
        metrics.text()
    );
    for path in ["/config", "/status", "/", "/configx"] {
        let r = get(gw.probe, path).await?;
        assert_eq!(r.status, 404, "probe {path}");
        assert!(!r.text().contains(PRIVATE), "probe {path}");
    }
    // The admin listener keeps every path.
    for path in ["/ready", "/healthz", "/metrics", "/config", "/status"] {
        assert_eq!(get(gw.admin, path).await?.status, 200, "admin {path}");
    }
    assert!(get(gw.admin, "/config").await?.text().contains(PRIVATE));
    Ok(())
}

/// A child process killed on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free() -> anyhow::Result<SocketAddr> {
    Ok(SocketAddr::from((
        [127, 0, 0, 1],
        sluice_testkit::free_port(),
    )))
}

#[tokio::test]
async fn controller_probe_listener_serves_only_three_paths() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("token"), "t\n")?;
    let (xds, admin, probe) = (free()?, free()?, free()?);
    let child = Command::new(SLUICE)
        .arg("controller")
        .arg("--config")
        .arg(dir.path())
        .args(["--xds-listen", &xds.to_string()])
        .args(["--admin", &admin.to_string()])
        .args(["--probe-addr", &probe.to_string()])
        .arg("--xds-token-file")
        .arg(dir.path().join("token"))
        .env("SLUICE_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()?;
    let _child = Child(child);
    eventually("controller probe ready", WAIT, async || {
        Ok(get(probe, "/ready")
            .await
            .ok()
            .filter(|r| r.status == 200)
            .map(drop))
    })
    .await?;
    assert_eq!(get(probe, "/healthz").await?.status, 200);
    assert_eq!(get(probe, "/metrics").await?.status, 200);
    for path in ["/status", "/leader", "/config"] {
        assert_eq!(get(probe, path).await?.status, 404, "probe {path}");
    }
    assert_eq!(get(admin, "/status").await?.status, 200);
    Ok(())
}

/// Runs `sluice args...` expecting it to fail at once: returns its stderr. Fails if it is
/// still running after 5 s (Pingora alone would retry a taken port for about 30 s).
fn fails_fast(args: &[String]) -> anyhow::Result<String> {
    let started = Instant::now();
    let mut child = Command::new(SLUICE)
        .args(args)
        .env("SLUICE_LOG", "warn")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    loop {
        if let Some(status) = child.try_wait()? {
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().expect("piped"), &mut stderr)?;
            anyhow::ensure!(!status.success(), "exited 0: {args:?}\n{stderr}");
            return Ok(stderr);
        }
        if started.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("still running after 5 s: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

#[test]
fn a_taken_port_ends_the_process_at_once_naming_the_flag() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().to_string_lossy().to_string();
    std::fs::write(dir.path().join("token"), "t\n")?;
    let token = dir.path().join("token").to_string_lossy().to_string();
    for flag in [
        "--http",
        "--internal-http",
        "--https",
        "--internal-https",
        "--admin",
        "--probe-addr",
    ] {
        let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
        let taken = taken.local_addr().map(|a| (a, taken))?;
        let mut args = strings(&["run", "--config", &config]);
        for other in [
            "--http",
            "--internal-http",
            "--https",
            "--internal-https",
            "--admin",
            "--probe-addr",
        ] {
            let addr = if other == flag { taken.0 } else { free()? };
            args.extend([other.to_string(), addr.to_string()]);
        }
        let stderr = fails_fast(&args)?;
        assert!(
            stderr.contains(&format!("{flag} {}", taken.0)) && stderr.contains("in use"),
            "{flag}: {stderr}"
        );
    }
    for flag in ["--admin", "--probe-addr"] {
        let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = taken.local_addr()?;
        let mut args = strings(&[
            "controller",
            "--config",
            &config,
            "--xds-token-file",
            &token,
        ]);
        args.extend(strings(&["--xds-listen", &free()?.to_string()]));
        for other in ["--admin", "--probe-addr"] {
            let a = if other == flag { addr } else { free()? };
            args.extend([other.to_string(), a.to_string()]);
        }
        let stderr = fails_fast(&args)?;
        assert!(
            stderr.contains(&format!("{flag} {addr}")) && stderr.contains("in use"),
            "controller {flag}: {stderr}"
        );
    }
    // A proxy checks before it dials its controller.
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?;
    let mut args = strings(&[
        "proxy",
        "--xds",
        &free()?.to_string(),
        "--xds-token-file",
        &token,
    ]);
    args.extend(strings(&["--http", &addr.to_string()]));
    for other in ["--internal-http", "--admin", "--probe-addr"] {
        args.extend([other.to_string(), free()?.to_string()]);
    }
    let stderr = fails_fast(&args)?;
    assert!(
        stderr.contains(&format!("--http {addr}")),
        "proxy: {stderr}"
    );
    Ok(())
}

#[test]
fn missing_files_and_directories_end_the_process_at_once() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().to_string_lossy().to_string();
    let listen = |args: &mut Vec<String>| -> anyhow::Result<()> {
        for flag in ["--http", "--internal-http", "--admin", "--probe-addr"] {
            args.extend([flag.to_string(), free()?.to_string()]);
        }
        Ok(())
    };
    // A manifest directory that does not exist, or is a file.
    let file = dir.path().join("file.yaml");
    std::fs::write(&file, "")?;
    for missing in [
        dir.path().join("nope").to_string_lossy().to_string(),
        file.to_string_lossy().to_string(),
    ] {
        let mut args = strings(&["run", "--config", &missing]);
        listen(&mut args)?;
        let stderr = fails_fast(&args)?;
        assert!(
            stderr.contains(&format!("--config {missing}")),
            "{missing}: {stderr}"
        );
    }
    // A default certificate or key file that does not exist.
    let pem_dir = tempfile::tempdir()?;
    let (_, cert, key) = certificate_files(pem_dir.path(), &["x.example.com"])?;
    let nope = dir.path().join("nope.pem").to_string_lossy().to_string();
    for (c, k) in [(&nope, &key), (&cert, &nope)] {
        let mut args = strings(&["run", "--config", &config]);
        listen(&mut args)?;
        args.extend(strings(&["--default-certificate", c, "--default-key", k]));
        let stderr = fails_fast(&args)?;
        assert!(
            stderr.contains("--default-certificate/--default-key") && stderr.contains(&nope),
            "{stderr}"
        );
    }
    // xDS mTLS files of a controller.
    let mut args = strings(&["controller", "--config", &config]);
    args.extend(strings(&["--xds-listen", &free()?.to_string()]));
    args.extend(strings(&["--admin", &free()?.to_string()]));
    args.extend(strings(&["--probe-addr", &free()?.to_string()]));
    args.extend(strings(&[
        "--xds-ca",
        &cert,
        "--xds-cert",
        &nope,
        "--xds-key",
        &key,
    ]));
    let stderr = fails_fast(&args)?;
    assert!(stderr.contains(&format!("--xds-cert {nope}")), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn ready_turns_200_only_once_every_listener_accepts() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("00.yaml"), two_visibilities(backend.addr()))?;
    let listeners = [free()?, free()?, free()?, free()?];
    let (admin, probe) = (free()?, free()?);
    let child = Command::new(SLUICE)
        .arg("run")
        .arg("--config")
        .arg(dir.path())
        .args(["--http", &listeners[0].to_string()])
        .args(["--internal-http", &listeners[1].to_string()])
        .args(["--https", &listeners[2].to_string()])
        .args(["--internal-https", &listeners[3].to_string()])
        .args(["--admin", &admin.to_string()])
        .args(["--probe-addr", &probe.to_string()])
        .env("SLUICE_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()?;
    let _child = Child(child);
    // Poll as fast as a kubelet could; at the first 200 every listener must already accept.
    let deadline = Instant::now() + WAIT;
    loop {
        anyhow::ensure!(Instant::now() < deadline, "not ready within {WAIT:?}");
        if let Ok(r) = get(probe, "/ready").await {
            if r.status == 200 {
                break;
            }
            assert_eq!(r.status, 503, "{}", r.text());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for addr in listeners {
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_ok(),
            "{addr} not accepting while /ready is 200"
        );
    }
    Ok(())
}

/// The case Pingora hides: a port taken after the start-up check (here between a proxy's
/// start and its first config, when its listeners bind). Pingora retries the bind for about
/// 30 s; `/ready` must stay 503 until the listener really listens.
#[tokio::test]
async fn ready_waits_for_a_listener_whose_port_is_taken_late() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let dir = tempfile::tempdir()?;
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests)?;
    std::fs::write(manifests.join("00.yaml"), two_visibilities(backend.addr()))?;
    let token = dir.path().join("token");
    std::fs::write(&token, "t\n")?;
    let (http, internal, admin, probe, xds) = (free()?, free()?, free()?, free()?, free()?);
    let proxy = Command::new(SLUICE)
        .arg("proxy")
        .args(["--xds", &xds.to_string(), "--node-id", "late"])
        .arg("--xds-token-file")
        .arg(&token)
        .args(["--http", &http.to_string()])
        .args(["--internal-http", &internal.to_string()])
        .args(["--admin", &admin.to_string()])
        .args(["--probe-addr", &probe.to_string()])
        .args(["--threads", "1", "--shutdown-grace", "1s"])
        .env("SLUICE_LOG", "error")
        .stdin(Stdio::null())
        .spawn()?;
    let _proxy = Child(proxy);
    let body = |r: &sluice_testkit::Response| r.text().to_string();
    eventually("the proxy's probe port", WAIT, async || {
        Ok(get(probe, "/ready")
            .await
            .ok()
            .map(|r| (r.status, body(&r))))
    })
    .await
    .map(|(status, text)| {
        assert_eq!(status, 503);
        assert!(text.contains("first config"), "{text}");
    })?;
    // Its listeners bind only after the first config: take one of their ports now.
    let squatter = std::net::TcpListener::bind(http)?;
    let controller = Command::new(SLUICE)
        .arg("controller")
        .arg("--config")
        .arg(&manifests)
        .args(["--xds-listen", &xds.to_string()])
        .args(["--admin", &free()?.to_string()])
        .args(["--probe-addr", &free()?.to_string()])
        .arg("--xds-token-file")
        .arg(&token)
        .env("SLUICE_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()?;
    let _controller = Child(controller);
    // Config applied, listener not bound: 503 naming the listeners, never 200.
    eventually("config applied", Duration::from_secs(20), async || {
        let r = get(probe, "/ready").await?;
        assert_ne!(r.status, 200, "ready while {http} is taken");
        Ok(body(&r).contains("listeners").then_some(()))
    })
    .await?;
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        let r = get(probe, "/ready").await?;
        assert_eq!(r.status, 503, "ready while {http} is taken: {}", body(&r));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Released: Pingora's next retry (every second) binds it, and only then is it ready.
    drop(squatter);
    eventually("ready once bound", WAIT, async || {
        let r = get(probe, "/ready").await?;
        Ok((r.status == 200).then_some(()))
    })
    .await?;
    let r = sluice_testkit::http1_request(http, "GET", PUBLIC, "/", &[], None).await?;
    assert_eq!(r.status, 200);
    Ok(())
}
