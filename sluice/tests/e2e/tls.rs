//! TLS: SNI certificates from Secrets, ALPN, gRPC over TLS, hot rotation, the HTTP→HTTPS
//! redirect, the cluster-local HTTPS listener, unknown SNI and bad Secrets. Certificates are
//! made here with rcgen (ECDSA P-256) plus one RSA fixture; clients trust exactly them.

use crate::support::*;
use sluice_testkit::{
    leaf_der, EchoServer, GrpcClient, GrpcPingServer, H1Client, H2cClient, TlsClient, ALPN_H2,
    ALPN_HTTP1,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RSA_CRT: &str = include_str!("../../../controller/tests/fixtures/rsa.crt");
const RSA_KEY: &str = include_str!("../../../controller/tests/fixtures/rsa.key");

/// A PEM certificate and key.
#[derive(Clone)]
struct Pair {
    cert: String,
    key: String,
}

/// A self-signed ECDSA P-256 certificate for `hosts` (what Knative's conformance `tls` test makes).
fn pair(hosts: &[&str]) -> Pair {
    let generated =
        rcgen::generate_simple_self_signed(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
            .expect("rcgen");
    Pair {
        cert: generated.cert.pem(),
        key: generated.signing_key.serialize_pem(),
    }
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("    {l}\n")).collect()
}

/// A `kubernetes.io/tls` Secret with `stringData`, labelled like the conformance suite's.
fn tls_secret(ns: &str, name: &str, pair: &Pair) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {{networking.internal.knative.dev/certificate-uid: test-uid}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}---\n",
        indent(&pair.cert),
        indent(&pair.key)
    )
}

/// The same Secret with base64 `data`, as the API server returns it.
fn tls_secret_data(ns: &str, name: &str, cert: &str, key: Option<&str>) -> String {
    let b64 = |s: &str| base64_encode(s.as_bytes());
    let mut out = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n",
        b64(cert)
    );
    if let Some(key) = key {
        out.push_str(&format!("  tls.key: {}\n", b64(key)));
    }
    out.push_str("---\n");
    out
}

/// Standard base64 with padding (no extra dependency for one encoder).
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One ExternalIP rule for `host` → `svc:port`, TLS from Secret `secret`.
fn tls_ingress(
    ns: &str,
    name: &str,
    host: &str,
    svc: &str,
    port: &str,
    http_option: &str,
    secret: &str,
) -> String {
    ingress(
        ns,
        name,
        &format!(
            "  httpOption: {http_option}\n  tls:\n  - hosts: [{host}]\n    secretName: {secret}\n    secretNamespace: {ns}\n  rules:\n  - hosts: [{host}]\n    visibility: ExternalIP\n    http:\n      paths:\n      - splits: [{{serviceNamespace: {ns}, serviceName: {svc}, servicePort: {port}}}]"
        ),
    )
}

fn trusting(pems: &[&str]) -> anyhow::Result<TlsClient> {
    TlsClient::new(pems, &[ALPN_H2, ALPN_HTTP1])
}

fn http1_only(pems: &[&str]) -> anyhow::Result<TlsClient> {
    TlsClient::new(pems, &[ALPN_HTTP1])
}

/// GET `/` for `host` over a fresh TLS connection; returns the status and the served leaf.
async fn https_get(
    addr: std::net::SocketAddr,
    client: &TlsClient,
    host: &str,
) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut c = H1Client::connect_tls(addr, client, host).await?;
    let r = c.send("GET", host, "/", &[], None).await?;
    let leaf = c
        .tls()
        .map(|t| t.peer_certificate.clone())
        .unwrap_or_default();
    Ok((r.status, leaf))
}

#[tokio::test]
async fn sni_selects_each_hosts_certificate() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let a = pair(&["a.example.com"]);
    let b = pair(&["b.example.com"]);
    let manifests = service("ns", "echo", "http", 80, &[backend.addr()])
        + &tls_secret("ns", "a-tls", &a)
        + &tls_secret("ns", "b-tls", &b)
        // RSA, base64 `data`.
        + &tls_secret_data("ns", "rsa-tls", RSA_CRT, Some(RSA_KEY))
        + &tls_ingress("ns", "a", "a.example.com", "echo", "80", "Enabled", "a-tls")
        + &tls_ingress("ns", "b", "b.example.com", "echo", "80", "Enabled", "b-tls")
        + &tls_ingress("ns", "rsa", "rsa.example.com", "echo", "80", "Enabled", "rsa-tls");
    let gw = Gateway::start(&manifests).await?;
    for name in ["a", "b", "rsa"] {
        gw.wait_ingress_ready("ns", name).await?;
    }
    let client = http1_only(&[&a.cert, &b.cert, RSA_CRT])?;
    for (host, cert) in [
        ("a.example.com", &a.cert),
        ("b.example.com", &b.cert),
        ("rsa.example.com", &RSA_CRT.to_string()),
    ] {
        let mut c = H1Client::connect_tls(gw.https, &client, host).await?;
        let info = c.tls().cloned().expect("tls");
        assert_eq!(info.peer_certificate, leaf_der(cert)?, "{host}");
        assert_eq!(info.alpn.as_deref(), Some(ALPN_HTTP1), "{host}");
        let r = c.send("GET", host, "/x?y=1", &[], None).await?;
        assert_eq!(r.status, 200, "{host}: {}", r.text());
        let echo = r.echo()?;
        assert_eq!(echo.request.uri, "/x?y=1");
        assert_eq!(echo.header("X-Forwarded-Proto"), Some("https"), "{host}");
        // Keep-alive over TLS.
        let again = c.send("GET", host, "/", &[], None).await?;
        assert_eq!(again.status, 200);
    }
    // SNI is case-insensitive.
    let (status, leaf) = https_get(gw.https, &client, "A.Example.COM").await?;
    assert_eq!((status, leaf), (200, leaf_der(&a.cert)?));
    // TLS 1.2 is still offered.
    let tls12 = client.tls12_only()?;
    let c = H1Client::connect_tls(gw.https, &tls12, "b.example.com").await?;
    assert_eq!(c.tls().map(|t| t.version.as_str()), Some("TLSv1_2"));
    let c = H1Client::connect_tls(gw.https, &client, "b.example.com").await?;
    assert_eq!(c.tls().map(|t| t.version.as_str()), Some("TLSv1_3"));
    // The plaintext listener still serves these hosts (httpOption Enabled).
    let r = sluice_testkit::http1_request(gw.http, "GET", "a.example.com", "/", &[], None).await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.echo()?.header("X-Forwarded-Proto"), Some("http"));
    Ok(())
}

#[tokio::test]
async fn h2_is_negotiated_by_alpn() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let cert = pair(&["h2.example.com"]);
    let manifests = service("ns", "echo", "http", 80, &[backend.addr()])
        + &tls_secret("ns", "h2-tls", &cert)
        + &tls_ingress(
            "ns",
            "h2",
            "h2.example.com",
            "echo",
            "80",
            "Enabled",
            "h2-tls",
        );
    let gw = Gateway::start(&manifests).await?;
    gw.wait_ingress_ready("ns", "h2").await?;

    let h2 = H2cClient::connect_tls(gw.https, &trusting(&[&cert.cert])?, "h2.example.com").await?;
    assert_eq!(h2.tls().and_then(|t| t.alpn.as_deref()), Some(ALPN_H2));
    let (first, second) = tokio::join!(
        h2.send("GET", "h2.example.com", "/one", &[], None),
        h2.send("GET", "h2.example.com:443", "/two", &[], None)
    );
    for (r, uri) in [(first?, "/one"), (second?, "/two")] {
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.version, http::Version::HTTP_2);
        let echo = r.echo()?;
        assert_eq!(echo.request.uri, uri);
        assert_eq!(echo.header("X-Forwarded-Proto"), Some("https"));
    }
    // A client that offers only http/1.1 gets it.
    let mut h1 =
        H1Client::connect_tls(gw.https, &http1_only(&[&cert.cert])?, "h2.example.com").await?;
    let r = h1.send("GET", "h2.example.com", "/", &[], None).await?;
    assert_eq!((r.status, r.version), (200, http::Version::HTTP_11));
    Ok(())
}

#[tokio::test]
async fn grpc_streams_over_tls() -> anyhow::Result<()> {
    let backend = GrpcPingServer::start("- pong").await?;
    let cert = pair(&["grpc.example.com"]);
    let manifests = service("ns", "grpc", "http2", 81, &[backend.addr()])
        + &tls_secret("ns", "grpc-tls", &cert)
        + &tls_ingress(
            "ns",
            "grpc",
            "grpc.example.com",
            "grpc",
            "81",
            "Enabled",
            "grpc-tls",
        );
    let gw = Gateway::start(&manifests).await?;
    gw.wait_ingress_ready("ns", "grpc").await?;

    let client = GrpcClient::connect_tls(
        gw.https,
        &trusting(&[&cert.cert])?,
        "grpc.example.com",
        "grpc.example.com:443",
    )
    .await?;
    let msgs: Vec<String> = (0..50).map(|i| format!("ping {i}")).collect();
    let replies = client.ping_stream(&msgs).await?;
    assert_eq!(replies.len(), msgs.len());
    for (msg, reply) in msgs.iter().zip(&replies) {
        assert_eq!(String::from_utf8_lossy(reply), format!("{msg}- pong"));
    }
    assert_eq!(client.ping(b"unary").await?, b"unary- pong");
    Ok(())
}

/// A changed Secret swaps the certificate for new handshakes while requests keep flowing; an
/// established connection keeps working on the old one. Not one request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_fails_no_request() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let old = pair(&["rot.example.com"]);
    let new = pair(&["rot.example.com"]);
    let app = service("ns", "echo", "http", 80, &[backend.addr()])
        + &tls_ingress(
            "ns",
            "rot",
            "rot.example.com",
            "echo",
            "80",
            "Enabled",
            "rot-tls",
        );
    let gw = Gateway::start(&(app.clone() + &tls_secret("ns", "rot-tls", &old))).await?;
    gw.wait_ingress_ready("ns", "rot").await?;
    let client = http1_only(&[&old.cert, &new.cert])?;
    let (old_leaf, new_leaf) = (leaf_der(&old.cert)?, leaf_der(&new.cert)?);

    // An established keep-alive connection on the old certificate.
    let mut established = H1Client::connect_tls(gw.https, &client, "rot.example.com").await?;
    assert_eq!(
        established.tls().map(|t| &t.peer_certificate),
        Some(&old_leaf)
    );

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (stop, ok, client, addr) = (stop.clone(), ok.clone(), client.clone(), gw.https);
        let (old_leaf, new_leaf) = (old_leaf.clone(), new_leaf.clone());
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut seen_new = 0u64;
            // Bounded: at most this many connections per worker.
            for _ in 0..5_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                // A new handshake, then two requests on it.
                let result: anyhow::Result<()> = async {
                    let mut c = H1Client::connect_tls(addr, &client, "rot.example.com").await?;
                    let leaf = c
                        .tls()
                        .map(|t| t.peer_certificate.clone())
                        .unwrap_or_default();
                    anyhow::ensure!(leaf == old_leaf || leaf == new_leaf, "unexpected cert");
                    if leaf == new_leaf {
                        seen_new += 1;
                    }
                    for _ in 0..2 {
                        let r = c.send("GET", "rot.example.com", "/", &[], None).await?;
                        anyhow::ensure!(r.status == 200, "status {}", r.status);
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                }
                .await;
                if let Err(e) = result {
                    failures.push(format!("{e:#}"));
                }
            }
            (failures, seen_new)
        }));
    }
    let wait_ok = |at_least: u64| {
        let ok = ok.clone();
        async move {
            let deadline = Instant::now() + WAIT;
            while ok.load(Ordering::Relaxed) < at_least {
                anyhow::ensure!(Instant::now() < deadline, "load did not progress");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok::<_, anyhow::Error>(())
        }
    };
    wait_ok(50).await?;

    let rotated_at = Instant::now();
    gw.write(
        "00-initial.yaml",
        &(app + &tls_secret("ns", "rot-tls", &new)),
    )?;
    let swap = loop {
        let (status, leaf) = https_get(gw.https, &client, "rot.example.com").await?;
        assert_eq!(status, 200);
        if leaf == new_leaf {
            break rotated_at.elapsed();
        }
        anyhow::ensure!(rotated_at.elapsed() < WAIT, "certificate not rotated");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let before = ok.load(Ordering::Relaxed);
    wait_ok(before + 50).await?;
    stop.store(true, Ordering::Relaxed);
    let mut new_handshakes = 0;
    for worker in workers {
        let (failures, seen_new) = worker.await?;
        assert!(failures.is_empty(), "failed requests: {failures:?}");
        new_handshakes += seen_new;
    }
    assert!(new_handshakes > 0, "workers saw the new certificate");
    eprintln!(
        "rotation: new certificate served {swap:?} after the Secret changed; {} requests ok",
        ok.load(Ordering::Relaxed)
    );
    // Generous bound for a loaded CI machine; the source polls every 50 ms.
    assert!(swap < Duration::from_secs(2), "rotation took {swap:?}");

    // The connection established before the rotation is still up, on the old certificate.
    let r = established
        .send("GET", "rot.example.com", "/", &[], None)
        .await?;
    assert_eq!(r.status, 200);
    assert_eq!(
        established.tls().map(|t| &t.peer_certificate),
        Some(&old_leaf)
    );
    Ok(())
}

#[tokio::test]
async fn redirected_answers_plain_http_with_301_for_external_rules_only() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let cert = pair(&["r.example.com"]);
    let redirected = ingress(
        "ns",
        "redirected",
        "  httpOption: Redirected\n  tls:\n  - hosts: [r.example.com]\n    secretName: r-tls\n    secretNamespace: ns\n  rules:\n  - hosts: [r.example.com]\n    visibility: ExternalIP\n    http:\n      paths:\n      - splits: [{serviceNamespace: ns, serviceName: echo, servicePort: 80}]\n  - hosts: [r.ns.svc.cluster.local]\n    visibility: ClusterLocal\n    http:\n      paths:\n      - splits: [{serviceNamespace: ns, serviceName: echo, servicePort: 80}]",
    );
    let manifests = service("ns", "echo", "http", 80, &[backend.addr()])
        + &tls_secret("ns", "r-tls", &cert)
        + &redirected
        + &tls_ingress(
            "ns",
            "enabled",
            "e.example.com",
            "echo",
            "80",
            "Enabled",
            "r-tls",
        );
    let gw = Gateway::start(&manifests).await?;
    gw.wait_ingress_ready("ns", "redirected").await?;
    gw.wait_ingress_ready("ns", "enabled").await?;

    // Plain HTTP on the external listener: 301 to https, host without port, path and query kept.
    for (host, target, location) in [
        (
            "r.example.com",
            "/some/path?x=1&y=%20",
            "https://r.example.com/some/path?x=1&y=%20",
        ),
        ("R.Example.com:8080", "/", "https://r.example.com/"),
    ] {
        let r = sluice_testkit::http1_request(gw.http, "GET", host, target, &[], None).await?;
        assert_eq!(r.status, 301, "{host}{target}: {}", r.text());
        assert_eq!(r.header("location"), Some(location), "{host}{target}");
        assert!(r.body.is_empty());
    }
    let h2c = H2cClient::connect(gw.http).await?;
    let r = h2c
        .send("POST", "r.example.com:80", "/h2?q", &[], None)
        .await?;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://r.example.com/h2?q"));
    assert_eq!(
        backend.requests(),
        0,
        "nothing redirected reached the backend"
    );

    // HTTPS serves it.
    let (status, _) = https_get(gw.https, &http1_only(&[&cert.cert])?, "r.example.com").await?;
    assert_eq!(status, 200);
    // Enabled: plain HTTP serves.
    let r = sluice_testkit::http1_request(gw.http, "GET", "e.example.com", "/", &[], None).await?;
    assert_eq!(r.status, 200);
    // The internal listener never redirects: neither the ExternalIP host nor the ClusterLocal one.
    for host in ["r.example.com", "r.ns.svc.cluster.local"] {
        let r = sluice_testkit::http1_request(gw.internal, "GET", host, "/", &[], None).await?;
        assert_eq!(r.status, 200, "internal {host}");
    }
    // A ClusterLocal host on the external listener is not served at all (and not redirected).
    let r = sluice_testkit::http1_request(gw.http, "GET", "r.ns.svc.cluster.local", "/", &[], None)
        .await?;
    assert_eq!(r.status, 404);
    Ok(())
}

#[tokio::test]
async fn unknown_sni_fails_the_handshake_unless_a_default_certificate_is_set() -> anyhow::Result<()>
{
    let backend = EchoServer::start("echo").await?;
    let known = pair(&["known.example.com"]);
    let default = pair(&["default.invalid"]);
    let manifests = service("ns", "echo", "http", 80, &[backend.addr()])
        + &tls_secret("ns", "known-tls", &known)
        + &tls_ingress(
            "ns",
            "known",
            "known.example.com",
            "echo",
            "80",
            "Enabled",
            "known-tls",
        )
        + &simple_ingress("ns", "plain", "plain.example.com", "echo", "80");
    let client = http1_only(&[&known.cert, &default.cert])?;

    let gw = Gateway::start(&manifests).await?;
    gw.wait_ingress_ready("ns", "known").await?;
    assert_eq!(
        https_get(gw.https, &client, "known.example.com").await?.0,
        200
    );
    // A host with routes but no certificate, an unknown host, and no SNI at all.
    for host in ["plain.example.com", "unknown.example.com"] {
        let err = H1Client::connect_tls(gw.https, &client, host)
            .await
            .expect_err("no certificate for this name");
        assert!(format!("{err:#}").contains("handshake"), "{host}: {err:#}");
    }
    let err = H1Client::connect_tls(gw.https, &client.without_sni(), "known.example.com")
        .await
        .expect_err("no SNI, no default");
    assert!(format!("{err:#}").contains("handshake"), "{err:#}");
    drop(gw);

    // With a default certificate, those handshakes get it.
    let files = tempfile::tempdir()?;
    let (cert_file, key_file) = (files.path().join("tls.crt"), files.path().join("tls.key"));
    std::fs::write(&cert_file, &default.cert)?;
    std::fs::write(&key_file, &default.key)?;
    let gw = Gateway::start_with(
        &manifests,
        &[
            "--default-certificate",
            cert_file.to_str().unwrap_or_default(),
            "--default-key",
            key_file.to_str().unwrap_or_default(),
        ],
    )
    .await?;
    gw.wait_ingress_ready("ns", "plain").await?;
    // The client checks the name, so connect for the default's own name but send other hosts.
    let default_client = http1_only(&[&default.cert])?.without_sni();
    let mut c = H1Client::connect_tls(gw.https, &default_client, "default.invalid").await?;
    assert_eq!(
        c.tls().map(|t| t.peer_certificate.clone()),
        Some(leaf_der(&default.cert)?)
    );
    let r = c.send("GET", "plain.example.com", "/", &[], None).await?;
    assert_eq!(r.status, 200);
    let (_, leaf) = https_get(gw.https, &client, "known.example.com").await?;
    assert_eq!(leaf, leaf_der(&known.cert)?, "SNI matches still win");
    Ok(())
}

#[tokio::test]
async fn a_bad_secret_keeps_the_previous_certificate_and_says_why() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let good = pair(&["bad.example.com"]);
    let other = pair(&["bad.example.com"]);
    let app = service("ns", "echo", "http", 80, &[backend.addr()])
        + &tls_ingress(
            "ns",
            "bad",
            "bad.example.com",
            "echo",
            "80",
            "Enabled",
            "bad-tls",
        )
        + &simple_ingress("ns", "bystander", "by.example.com", "echo", "80");
    let gw = Gateway::start(&(app.clone() + &tls_secret("ns", "bad-tls", &good))).await?;
    gw.wait_ingress_ready("ns", "bad").await?;
    let client = http1_only(&[&good.cert, &other.cert])?;
    let good_leaf = leaf_der(&good.cert)?;

    let mismatched = Pair {
        cert: other.cert.clone(),
        key: good.key.clone(),
    };
    let cases = [
        (
            tls_secret("ns", "bad-tls", &mismatched),
            "InvalidSecret",
            "secret ns/bad-tls: tls.key does not match the certificate in tls.crt",
        ),
        (
            tls_secret_data("ns", "bad-tls", &other.cert, None),
            "InvalidSecret",
            "secret ns/bad-tls: missing key tls.key",
        ),
        (
            tls_secret_data("ns", "bad-tls", "garbage", Some(&other.key)),
            "InvalidSecret",
            "secret ns/bad-tls: tls.crt holds no PEM certificate",
        ),
        (
            String::new(),
            "SecretNotFound",
            "secret ns/bad-tls not found",
        ),
    ];
    for (secret, want_reason, want_message) in cases {
        gw.write("00-initial.yaml", &(app.clone() + &secret))?;
        let status = gw
            .wait_status("Ingress", "ns", "bad", |s| {
                reason(s, "NetworkConfigured") == Some(want_reason)
                    && s.to_string().contains(want_message)
            })
            .await?;
        assert_eq!(condition(&status, "NetworkConfigured"), Some("False"));
        // The previous good certificate keeps serving, and so does everything else.
        let (code, leaf) = https_get(gw.https, &client, "bad.example.com").await?;
        assert_eq!((code, leaf), (200, good_leaf.clone()), "{want_reason}");
        let r =
            sluice_testkit::http1_request(gw.http, "GET", "by.example.com", "/", &[], None).await?;
        assert_eq!(r.status, 200);
    }

    // /config shows certificates but never a private key.
    let config = gw.admin_get("/config").await?;
    let text = config.text();
    assert!(text.contains("\"secret\": \"ns/bad-tls\""), "{text}");
    assert!(text.contains("<redacted>"));
    assert!(!text.contains("PRIVATE KEY"), "key leaked through /config");

    // Fixed: the new certificate serves and the ingress is Ready again. (A Secret change does
    // not bump the ingress generation, so Ready alone does not prove the swap: poll the cert.)
    gw.write(
        "00-initial.yaml",
        &(app + &tls_secret("ns", "bad-tls", &other)),
    )?;
    gw.wait_ingress_ready("ns", "bad").await?;
    let other_leaf = leaf_der(&other.cert)?;
    let deadline = Instant::now() + WAIT;
    while https_get(gw.https, &client, "bad.example.com").await?.1 != other_leaf {
        anyhow::ensure!(Instant::now() < deadline, "fixed certificate not served");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

#[tokio::test]
async fn cluster_local_certificates_serve_the_internal_https_listener_only() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let hosts = [
        "private.ns.svc.cluster.local",
        "private.ns.svc",
        "private.ns",
    ];
    let local = pair(&hosts);
    let public = pair(&["public.example.com"]);
    let spec = format!(
        "  httpOption: Redirected\n  tls:\n  - hosts: [{h}]\n    secretName: local-tls\n    secretNamespace: ns\n  - hosts: [public.example.com]\n    secretName: public-tls\n    secretNamespace: ns\n  rules:\n  - hosts: [{h}]\n    visibility: ClusterLocal\n    http:\n      paths:\n      - splits: [{{serviceNamespace: ns, serviceName: echo, servicePort: 80}}]\n  - hosts: [public.example.com]\n    visibility: ExternalIP\n    http:\n      paths:\n      - splits: [{{serviceNamespace: ns, serviceName: echo, servicePort: 80}}]",
        h = hosts.join(", ")
    );
    let manifests = service("ns", "echo", "http", 80, &[backend.addr()])
        + &tls_secret("ns", "local-tls", &local)
        + &tls_secret("ns", "public-tls", &public)
        + &ingress("ns", "mixed", &spec);
    let gw = Gateway::start(&manifests).await?;
    gw.wait_ingress_ready("ns", "mixed").await?;
    let client = http1_only(&[&local.cert, &public.cert])?;
    for host in hosts {
        let mut c = H1Client::connect_tls(gw.internal_https, &client, host).await?;
        assert_eq!(
            c.tls().map(|t| t.peer_certificate.clone()),
            Some(leaf_der(&local.cert)?)
        );
        let r = c.send("GET", host, "/", &[], None).await?;
        assert_eq!(r.status, 200, "{host}");
        assert_eq!(r.echo()?.header("X-Forwarded-Proto"), Some("https"));
        // The external HTTPS listener has no certificate for cluster-local names.
        assert!(H1Client::connect_tls(gw.https, &client, host)
            .await
            .is_err());
    }
    // The ExternalIP certificate is for the external listener only.
    assert_eq!(
        https_get(gw.https, &client, "public.example.com").await?.0,
        200
    );
    assert!(
        H1Client::connect_tls(gw.internal_https, &client, "public.example.com")
            .await
            .is_err()
    );
    // The ClusterLocal rule on the internal plaintext listener is not redirected.
    let r = sluice_testkit::http1_request(gw.internal, "GET", "private.ns", "/", &[], None).await?;
    assert_eq!(r.status, 200);
    Ok(())
}

/// Knative conformance `tls` (`TestIngressTLS`): an ECDSA P-256 self-signed certificate for the
/// hosts, httpOption Enabled; both http and https answer 200.
#[tokio::test]
async fn conformance_tls_serves_http_and_https() -> anyhow::Result<()> {
    let backend = EchoServer::start("runtime").await?;
    let host = "ingress-tls.example.com";
    let cert = pair(&[host]);
    let manifests = service("serving-tests", "runtime", "http", 50, &[backend.addr()])
        + &tls_secret("serving-tests", "ingress-tls", &cert)
        + &tls_ingress(
            "serving-tests",
            "ingress-tls",
            host,
            "runtime",
            "50",
            "Enabled",
            "ingress-tls",
        );
    let gw = Gateway::start(&manifests).await?;
    gw.wait_ingress_ready("serving-tests", "ingress-tls")
        .await?;
    let r = sluice_testkit::http1_request(gw.http, "GET", host, "/", &[], None).await?;
    assert_eq!(r.status, 200);
    r.echo()?;
    let mut c = H1Client::connect_tls(gw.https, &http1_only(&[&cert.cert])?, host).await?;
    let r = c.send("GET", host, "/", &[], None).await?;
    assert_eq!(r.status, 200);
    r.echo()?;
    Ok(())
}
