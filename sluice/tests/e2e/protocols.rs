//! Protocols through the gateway: h2c both ways, gRPC bidi streams, websockets, no timeouts,
//! no 5xx retries, connect-failure retries.

use crate::support::*;
use sluice_testkit::{
    closed_port, ws_roundtrips, EchoOptions, EchoServer, GrpcClient, GrpcPingServer, H1Client,
    H2cClient, WebsocketEchoServer, PING_STREAM_METHOD,
};
use std::collections::BTreeSet;
use std::time::Duration;

#[tokio::test]
async fn h1_and_h2c_clients_share_the_plaintext_port() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let manifests = service("ns", "echo", "http", 80, &[backend.addr()])
        + &simple_ingress("ns", "p", "p.example.com", "echo", "80");
    let gw = Gateway::start(&manifests).await?;
    gw.wait_ingress_ready("ns", "p").await?;
    let h1 =
        sluice_testkit::http1_request(gw.http, "GET", "p.example.com", "/h1", &[], None).await?;
    assert_eq!(h1.status, 200);
    assert_eq!(h1.version, http::Version::HTTP_11);
    let h2 = H2cClient::connect(gw.http).await?;
    let r = h2
        .send("GET", "p.example.com:80", "/h2?x=1", &[], None)
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.version, http::Version::HTTP_2);
    let echo = r.echo()?;
    assert_eq!(echo.request.uri, "/h2?x=1");
    // The backend port is plain HTTP/1.1, so the gateway downgrades.
    assert_eq!(echo.request.proto_major, 1);
    assert_eq!(echo.request.host, "p.example.com:80");
    Ok(())
}

/// Knative's `basics/http2`: an h2c Service port gets HTTP/2 prior knowledge upstream even when
/// the client speaks HTTP/1.1.
#[tokio::test]
async fn h2c_service_ports_get_http2_upstream() -> anyhow::Result<()> {
    let backend = EchoServer::start_with(EchoOptions {
        h2c_only: true,
        ..EchoOptions::named("h2")
    })
    .await?;
    let named_h2c = EchoServer::start_with(EchoOptions {
        h2c_only: true,
        ..EchoOptions::named("named")
    })
    .await?;
    // `http2` + appProtocol h2c, and a port merely named `h2c`.
    let plain_h2c_port = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: named, namespace: ns}}\nspec:\n  ports: [{{name: h2c, port: 81}}]\n---\n{}",
        endpoint_slice("ns", "named", "h2c", &[named_h2c.addr()])
    );
    let manifests = service("ns", "h2", "http2", 81, &[backend.addr()])
        + &plain_h2c_port
        + &simple_ingress("ns", "h2", "h2.example.com", "h2", "81")
        + &simple_ingress("ns", "named", "named.example.com", "named", "h2c");
    let gw = Gateway::start(&manifests).await?;
    gw.wait_ingress_ready("ns", "h2").await?;
    gw.wait_ingress_ready("ns", "named").await?;
    for (host, name) in [("h2.example.com", "h2"), ("named.example.com", "named")] {
        let mut client = H1Client::connect(gw.http).await?;
        for _ in 0..3 {
            let r = client
                .send(
                    "POST",
                    host,
                    "/",
                    &[],
                    Some(bytes::Bytes::from_static(b"body")),
                )
                .await?;
            assert_eq!(r.status, 200, "{host}: {}", r.text());
            let echo = r.echo()?;
            assert_eq!(echo.name, name);
            assert_eq!(echo.request.proto_major, 2);
            // The forwarding headers go out in the HEADERS frame, once each.
            assert_eq!(echo.header_values("x-forwarded-for"), vec!["127.0.0.1"]);
            assert_eq!(echo.header_values("x-forwarded-proto"), vec!["http"]);
            assert_eq!(echo.header_values("x-forwarded-host"), vec![host]);
        }
    }
    // h2c streams multiplex over one upstream connection per worker thread.
    assert!(
        backend.connections() <= 2,
        "connections: {}",
        backend.connections()
    );
    Ok(())
}

/// Knative's `grpc`: one bidirectional stream, 100 round trips, each reply before the next send.
#[tokio::test]
async fn grpc_bidi_stream_round_trips() -> anyhow::Result<()> {
    let backend = GrpcPingServer::start("- pong").await?;
    let manifests = service("ns", "grpc", "http2", 81, &[backend.addr()])
        + &simple_ingress("ns", "grpc", "grpc.example.com", "grpc", "81");
    let gw = Gateway::start(&manifests).await?;
    gw.wait_ingress_ready("ns", "grpc").await?;
    let client = GrpcClient::connect(gw.http, "grpc.example.com:80").await?;
    let mut stream = client.open(PING_STREAM_METHOD).await?;
    for i in 0..100 {
        let msg = format!("ping {i}");
        let reply = stream.roundtrip(msg.as_bytes()).await?;
        assert_eq!(reply, format!("{msg}- pong").into_bytes());
    }
    stream.finish().await?;
    assert_eq!(client.ping(b"unary").await?, b"unary- pong".to_vec());
    Ok(())
}

/// Knative's `grpc/split`: streams are sticky to one backend and both backends are used.
#[tokio::test]
async fn grpc_split_streams_are_sticky() -> anyhow::Result<()> {
    let blue = GrpcPingServer::start("- blue").await?;
    let green = GrpcPingServer::start("- green").await?;
    let spec = "  rules:\n  - hosts: [grpcsplit.example.com]\n    http:\n      paths:\n      - splits:\n        - {serviceNamespace: ns, serviceName: blue, servicePort: 81, percent: 50}\n        - {serviceNamespace: ns, serviceName: green, servicePort: 81, percent: 50}";
    let manifests = service("ns", "blue", "http2", 81, &[blue.addr()])
        + &service("ns", "green", "http2", 81, &[green.addr()])
        + &ingress("ns", "grpcsplit", spec);
    let gw = Gateway::start(&manifests).await?;
    gw.wait_ingress_ready("ns", "grpcsplit").await?;
    let client = GrpcClient::connect(gw.http, "grpcsplit.example.com").await?;
    let mut suffixes = BTreeSet::new();
    for _ in 0..100 {
        let mut stream = client.open(PING_STREAM_METHOD).await?;
        let first = String::from_utf8(stream.roundtrip(b"probe").await?)?;
        let suffix = first.trim_start_matches("probe").to_string();
        for i in 0..10 {
            let reply = String::from_utf8(stream.roundtrip(format!("m{i}").as_bytes()).await?)?;
            assert_eq!(reply, format!("m{i}{suffix}"), "stream switched backends");
        }
        stream.finish().await?;
        suffixes.insert(suffix);
        if suffixes.len() == 2 {
            break;
        }
    }
    assert_eq!(
        suffixes.len(),
        2,
        "both backends within 100 streams: {suffixes:?}"
    );
    Ok(())
}

/// Knative's `websocket` and `websocket/split`.
#[tokio::test]
async fn websocket_upgrades_pass_through_and_stay_sticky() -> anyhow::Result<()> {
    let blue = WebsocketEchoServer::start("- blue").await?;
    let green = WebsocketEchoServer::start("- green").await?;
    let spec = "  rules:\n  - hosts: [ws.example.com]\n    http:\n      paths:\n      - splits:\n        - {serviceNamespace: ns, serviceName: blue, servicePort: 80, percent: 50}\n        - {serviceNamespace: ns, serviceName: green, servicePort: 80, percent: 50}";
    let manifests = service("ns", "blue", "http", 80, &[blue.addr()])
        + &service("ns", "green", "http", 80, &[green.addr()])
        + &ingress("ns", "ws", spec);
    let gw = Gateway::start(&manifests).await?;
    gw.wait_ingress_ready("ns", "ws").await?;
    let msgs: Vec<String> = (0..100).map(|i| format!("hello {i}")).collect();
    let replies = ws_roundtrips(gw.http, "ws.example.com", "/", &msgs).await?;
    let suffix = replies[0].trim_start_matches("hello 0 ").to_string();
    assert!(suffix == "- blue" || suffix == "- green", "{}", replies[0]);
    for (m, r) in msgs.iter().zip(&replies) {
        assert_eq!(r, &format!("{m} {suffix}"));
    }
    let mut seen = BTreeSet::new();
    for _ in 0..100 {
        let msgs: Vec<String> = (0..11).map(|i| format!("m{i}")).collect();
        let replies = ws_roundtrips(gw.http, "ws.example.com", "/", &msgs).await?;
        let suffix = replies[0].trim_start_matches("m0 ").to_string();
        for (m, r) in msgs.iter().zip(&replies) {
            assert_eq!(r, &format!("{m} {suffix}"), "connection switched backends");
        }
        seen.insert(suffix);
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(
        seen.len(),
        2,
        "both backends within 100 connections: {seen:?}"
    );
    Ok(())
}

/// Knative's `timeout`: no ingress timeout before headers, nor between body chunks.
#[tokio::test]
async fn slow_backends_are_never_timed_out() -> anyhow::Result<()> {
    let backend = EchoServer::start("slow").await?;
    let manifests = service("ns", "slow", "http", 80, &[backend.addr()])
        + &simple_ingress("ns", "slow", "slow.example.com", "slow", "80");
    let gw = Gateway::start(&manifests).await?;
    gw.wait_ingress_ready("ns", "slow").await?;
    let run = |path: &'static str| {
        let addr = gw.http;
        async move {
            let mut client = H1Client::connect(addr)
                .await?
                .with_timeout(Duration::from_secs(30));
            let r = client
                .send("GET", "slow.example.com", path, &[], None)
                .await?;
            anyhow::ensure!(r.status == 200, "{path}: {}", r.status);
            anyhow::Ok(())
        }
    };
    let (fast, before_headers, between_chunks) = tokio::join!(
        run("/?initialTimeout=0&timeout=0"),
        run("/?initialTimeout=10000&timeout=0"),
        run("/?initialTimeout=0&timeout=10000"),
    );
    fast?;
    before_headers?;
    between_chunks?;
    Ok(())
}

/// Knative's `retry`: a 503 is returned as is, never retried (over an h2c port, as the suite does).
#[tokio::test]
async fn upstream_503_is_not_retried() -> anyhow::Result<()> {
    let backend = EchoServer::start_with(EchoOptions {
        fail_first: 1,
        h2c_only: true,
        ..EchoOptions::named("retry")
    })
    .await?;
    let manifests = service("ns", "retry", "http2", 81, &[backend.addr()])
        + &simple_ingress("ns", "retry", "retry.example.com", "retry", "81");
    let gw = Gateway::start(&manifests).await?;
    gw.wait_ingress_ready("ns", "retry").await?;
    let first =
        sluice_testkit::http1_request(gw.http, "GET", "retry.example.com", "/", &[], None).await?;
    assert_eq!(first.status, 503);
    let second =
        sluice_testkit::http1_request(gw.http, "GET", "retry.example.com", "/", &[], None).await?;
    assert_eq!(second.status, 200);
    assert_eq!(backend.requests(), 2);
    Ok(())
}

/// A refused connect moves the request to another endpoint; nothing fails.
#[tokio::test]
async fn failed_connects_are_retried_on_another_endpoint() -> anyhow::Result<()> {
    let backend = EchoServer::start("alive").await?;
    let dead = closed_port();
    let manifests = service("ns", "mixed", "http", 80, &[backend.addr(), dead])
        + &simple_ingress("ns", "mixed", "mixed.example.com", "mixed", "80");
    let gw = Gateway::start(&manifests).await?;
    gw.wait_ingress_ready("ns", "mixed").await?;
    for i in 0..50 {
        let r = sluice_testkit::http1_request(gw.http, "GET", "mixed.example.com", "/", &[], None)
            .await?;
        assert_eq!(r.status, 200, "request {i}");
    }
    assert_eq!(backend.requests(), 50);
    // Every endpoint refusing: 503 like Envoy's "upstream connect error".
    let manifests = service("ns", "dead", "http", 80, &[closed_port()])
        + &simple_ingress("ns", "dead", "dead.example.com", "dead", "80");
    gw.write("10-dead.yaml", &manifests)?;
    gw.wait_ingress_ready("ns", "dead").await?;
    let r =
        sluice_testkit::http1_request(gw.http, "GET", "dead.example.com", "/", &[], None).await?;
    assert_eq!(r.status, 503);
    Ok(())
}

/// Upstream HTTP/1.1 connections are kept alive and reused across requests.
#[tokio::test]
async fn upstream_connections_are_reused() -> anyhow::Result<()> {
    let backend = EchoServer::start("pooled").await?;
    let manifests = service("ns", "pooled", "http", 80, &[backend.addr()])
        + &simple_ingress("ns", "pooled", "pooled.example.com", "pooled", "80");
    let gw = Gateway::start(&manifests).await?;
    gw.wait_ingress_ready("ns", "pooled").await?;
    let mut client = H1Client::connect(gw.http).await?;
    for _ in 0..200 {
        assert_eq!(
            client
                .send("GET", "pooled.example.com", "/", &[], None)
                .await?
                .status,
            200
        );
    }
    // One connection per worker thread at most (the harness runs two).
    assert!(
        backend.connections() <= 2,
        "upstream connections: {}",
        backend.connections()
    );
    Ok(())
}
