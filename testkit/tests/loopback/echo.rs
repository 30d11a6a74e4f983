use std::time::{Duration, Instant};

use sluice_testkit::{http1_request, EchoOptions, EchoServer, H1Client, H2cClient};

use crate::eventually;

#[tokio::test]
async fn http1_request_is_echoed_as_protocol_1_1() -> anyhow::Result<()> {
    let server = EchoServer::start("blue").await?;
    let response =
        http1_request(server.addr(), "GET", "example.com", "/a/b?c=d", &[], None).await?;
    assert_eq!(response.status, 200);
    assert_eq!(response.version, http::Version::HTTP_11);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let reply = response.echo()?;
    assert_eq!(reply.name, "blue");
    assert_eq!(reply.request.uri, "/a/b?c=d");
    assert_eq!(reply.request.host, "example.com");
    assert_eq!(reply.request.method, "GET");
    assert_eq!(
        (reply.request.proto_major, reply.request.proto_minor),
        (1, 1)
    );
    assert_eq!(server.requests(), 1);
    assert_eq!(server.connections(), 1);
    Ok(())
}

#[tokio::test]
async fn h2c_request_is_echoed_as_protocol_2() -> anyhow::Result<()> {
    let server = EchoServer::start("green").await?;
    let client = H2cClient::connect(server.addr()).await?;
    let response = client
        .send("POST", "h2.example.com", "/x", &[], Some("payload".into()))
        .await?;
    assert_eq!(response.status, 200);
    assert_eq!(response.version, http::Version::HTTP_2);
    let reply = response.echo()?;
    assert_eq!(reply.request.host, "h2.example.com");
    assert_eq!(reply.request.method, "POST");
    assert_eq!(
        (reply.request.proto_major, reply.request.proto_minor),
        (2, 0)
    );
    Ok(())
}

#[tokio::test]
async fn h2c_only_server_refuses_http1() -> anyhow::Result<()> {
    let server = EchoServer::start_with(EchoOptions {
        h2c_only: true,
        ..EchoOptions::named("h2")
    })
    .await?;
    let h1 = http1_request(server.addr(), "GET", "example.com", "/", &[], None).await;
    assert!(h1.is_err(), "{h1:?}");
    let h2 = H2cClient::connect(server.addr())
        .await?
        .send("GET", "example.com", "/", &[], None)
        .await?;
    assert_eq!(h2.echo()?.request.proto_major, 2);
    Ok(())
}

#[tokio::test]
async fn echoed_headers_have_go_canonical_names_and_keep_every_value() -> anyhow::Result<()> {
    let server = EchoServer::start("headers").await?;
    let headers = [("foo-bar-baz", "one"), ("X-MULTI", "1"), ("x-multi", "2")];
    for response in [
        http1_request(server.addr(), "GET", "example.com", "/", &headers, None).await?,
        H2cClient::connect(server.addr())
            .await?
            .send("GET", "example.com", "/", &headers, None)
            .await?,
    ] {
        let reply = response.echo()?;
        let names: Vec<&str> = reply.request.headers.keys().map(String::as_str).collect();
        assert!(names.contains(&"Foo-Bar-Baz"), "{names:?}");
        assert!(
            !names.contains(&"Host"),
            "Host is reported separately: {names:?}"
        );
        assert_eq!(
            reply.request.headers.get("X-Multi"),
            Some(&vec!["1".to_owned(), "2".to_owned()])
        );
        assert_eq!(reply.header("FOO-BAR-BAZ"), Some("one"));
    }
    Ok(())
}

#[tokio::test]
async fn probe_is_answered_with_its_hash_over_both_protocols() -> anyhow::Result<()> {
    let server = EchoServer::start("probe").await?;
    let probe = [("K-Network-Probe", "probe"), ("K-Network-Hash", "abc123")];
    let h1 = http1_request(
        server.addr(),
        "GET",
        "example.com",
        "/healthz",
        &probe,
        None,
    )
    .await?;
    let h2 = H2cClient::connect(server.addr())
        .await?
        .send("GET", "example.com", "/healthz", &probe, None)
        .await?;
    for response in [h1, h2] {
        assert_eq!(response.status, 200);
        assert_eq!(response.header("k-network-hash"), Some("abc123"));
    }
    assert_eq!(server.requests(), 2);
    assert_eq!(
        server.max_in_flight(),
        0,
        "probes never reach the application"
    );
    Ok(())
}

#[tokio::test]
async fn probe_without_hash_is_rejected() -> anyhow::Result<()> {
    let server = EchoServer::start("probe").await?;
    for headers in [
        &[("K-Network-Probe", "probe")][..],
        &[("K-Network-Probe", "probe"), ("K-Network-Hash", "")][..],
    ] {
        let response =
            http1_request(server.addr(), "GET", "example.com", "/", headers, None).await?;
        assert_eq!(response.status, 400);
        assert_eq!(
            response.text().trim_end(),
            r#"a probe request must contain a non-empty "K-Network-Hash" header"#
        );
    }
    Ok(())
}

#[tokio::test]
async fn non_probe_request_reaches_the_app_without_its_hash() -> anyhow::Result<()> {
    let server = EchoServer::start("app").await?;
    let headers = [("K-Network-Probe", "queue"), ("K-Network-Hash", "abc")];
    let response = http1_request(server.addr(), "GET", "example.com", "/", &headers, None).await?;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("k-network-hash"), None);
    let reply = response.echo()?;
    assert_eq!(reply.header("K-Network-Probe"), Some("queue"));
    assert_eq!(reply.header("K-Network-Hash"), None);
    Ok(())
}

#[tokio::test]
async fn status_parameter_sets_the_status_and_keeps_the_body() -> anyhow::Result<()> {
    let server = EchoServer::start("status").await?;
    let response = http1_request(
        server.addr(),
        "GET",
        "example.com",
        "/?status=503",
        &[],
        None,
    )
    .await?;
    assert_eq!(response.status, 503);
    assert_eq!(response.echo()?.name, "status");
    let bad = http1_request(
        server.addr(),
        "GET",
        "example.com",
        "/?status=abc",
        &[],
        None,
    )
    .await?;
    assert_eq!(bad.status, 400);
    Ok(())
}

#[tokio::test]
async fn bytes_parameter_sizes_the_body() -> anyhow::Result<()> {
    let server = EchoServer::start("bytes").await?;
    let response = http1_request(
        server.addr(),
        "GET",
        "example.com",
        "/?bytes=100000",
        &[],
        None,
    )
    .await?;
    assert_eq!(response.status, 200);
    assert_eq!(response.body.len(), 100_000);
    assert!(response.body.iter().all(|b| *b == b'a'));
    Ok(())
}

#[tokio::test]
async fn sleep_parameter_delays_the_response() -> anyhow::Result<()> {
    let server = EchoServer::start("sleepy").await?;
    let start = Instant::now();
    let response = http1_request(
        server.addr(),
        "GET",
        "example.com",
        "/?sleep_ms=150",
        &[],
        None,
    )
    .await?;
    assert_eq!(response.status, 200);
    assert!(start.elapsed() >= Duration::from_millis(150));
    Ok(())
}

#[tokio::test]
async fn drip_sends_one_byte_chunks_apart() -> anyhow::Result<()> {
    let server = EchoServer::start("drip").await?;
    let mut client = H1Client::connect(server.addr()).await?;
    let mut response = client
        .send_streaming("GET", "example.com", "/?drip=3&drip_ms=50", &[], None)
        .await?;
    assert_eq!(response.status, 200);
    let mut chunks = Vec::new();
    let start = Instant::now();
    while let Some(chunk) = response.chunk().await? {
        chunks.push((chunk, start.elapsed()));
    }
    let body: Vec<u8> = chunks
        .iter()
        .flat_map(|(chunk, _)| chunk.to_vec())
        .collect();
    assert_eq!(body, b"aaa");
    assert_eq!(chunks.len(), 3, "each byte is its own chunk");
    assert!(chunks[2].1 >= Duration::from_millis(140), "{chunks:?}");
    Ok(())
}

/// Knative's `timeout` image: headers are flushed after `initialTimeout`, the body after `timeout`.
#[tokio::test]
async fn timeout_parameters_send_headers_before_the_body() -> anyhow::Result<()> {
    let server = EchoServer::start("timeout").await?;
    let path = "/?initialTimeout=100&timeout=1000";
    let mut h1 = H1Client::connect(server.addr()).await?;
    let h2 = H2cClient::connect(server.addr()).await?;
    for protocol in ["h1", "h2c"] {
        let start = Instant::now();
        let streaming = match protocol {
            "h1" => {
                h1.send_streaming("GET", "example.com", path, &[], None)
                    .await?
            }
            _ => {
                h2.send_streaming("GET", "example.com", path, &[], None)
                    .await?
            }
        };
        let headers_at = start.elapsed();
        assert_eq!(streaming.status, 200);
        let response = streaming.into_response().await?;
        let body_at = start.elapsed();
        assert!(
            headers_at >= Duration::from_millis(100),
            "{protocol}: {headers_at:?}"
        );
        assert!(
            // A wide margin keeps this stable on a loaded machine.
            body_at >= headers_at + Duration::from_millis(500),
            "{protocol}: headers at {headers_at:?}, body at {body_at:?}"
        );
        assert_eq!(response.echo()?.name, "timeout");
    }
    Ok(())
}

#[tokio::test]
async fn first_requests_fail_then_succeed_over_h2c() -> anyhow::Result<()> {
    let server = EchoServer::start_with(EchoOptions {
        fail_first: 1,
        h2c_only: true,
        ..EchoOptions::named("retry")
    })
    .await?;
    let client = H2cClient::connect(server.addr()).await?;
    let probe = [("K-Network-Probe", "probe"), ("K-Network-Hash", "h")];
    let probed = client.send("GET", "example.com", "/", &probe, None).await?;
    assert_eq!(probed.status, 200, "probes do not use up the failures");
    let first = client.send("GET", "example.com", "/", &[], None).await?;
    assert_eq!(first.status, 503);
    let second = client.send("GET", "example.com", "/", &[], None).await?;
    assert_eq!(second.status, 200);
    assert_eq!(second.echo()?.name, "retry");
    Ok(())
}

#[tokio::test]
async fn keep_alive_client_reuses_its_connection() -> anyhow::Result<()> {
    let server = EchoServer::start("keepalive").await?;
    let mut client = H1Client::connect(server.addr()).await?;
    for _ in 0..3 {
        let response = client.send("GET", "example.com", "/", &[], None).await?;
        assert_eq!(response.status, 200);
    }
    assert_eq!(server.requests(), 3);
    assert_eq!(server.connections(), 1);
    Ok(())
}

#[tokio::test]
async fn concurrency_above_the_limit_is_refused_and_counted() -> anyhow::Result<()> {
    let server = EchoServer::start_with(EchoOptions {
        max_concurrency: Some(2),
        ..EchoOptions::named("limited")
    })
    .await?;
    let client = H2cClient::connect(server.addr()).await?;
    let send = || client.send("GET", "example.com", "/?sleep_ms=500", &[], None);

    let (a, b) = tokio::join!(send(), send());
    assert_eq!((a?.status, b?.status), (200, 200));
    eventually("requests to finish", || server.in_flight() == 0).await?;
    assert_eq!(server.max_in_flight(), 2);
    assert_eq!(server.violations(), 0);

    let (a, b, c) = tokio::join!(send(), send(), send());
    let mut statuses = [a?, b?, c?].map(|response| (response.status, response.text().into_owned()));
    statuses.sort();
    assert_eq!(
        statuses[..2].iter().map(|s| s.0).collect::<Vec<_>>(),
        [200, 200]
    );
    assert_eq!(statuses[2], (500, "concurrency exceeded\n".to_owned()));
    assert_eq!(server.max_in_flight(), 3);
    assert_eq!(server.violations(), 1);
    Ok(())
}

#[tokio::test]
async fn in_flight_lasts_until_the_body_is_sent() -> anyhow::Result<()> {
    let server = EchoServer::start("streaming").await?;
    let mut client = H1Client::connect(server.addr()).await?;
    let response = client
        .send_streaming("GET", "example.com", "/?drip=2&drip_ms=300", &[], None)
        .await?;
    assert_eq!(server.in_flight(), 1, "headers are out, body is not");
    response.into_response().await?;
    eventually("the response to finish", || server.in_flight() == 0).await?;
    assert_eq!(server.max_in_flight(), 1);
    Ok(())
}

#[tokio::test]
async fn dropped_server_stops_accepting() -> anyhow::Result<()> {
    let server = EchoServer::start("gone").await?;
    let addr = server.addr();
    let mut client = H1Client::connect(addr).await?;
    assert_eq!(
        client
            .send("GET", "example.com", "/", &[], None)
            .await?
            .status,
        200
    );
    drop(server);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        anyhow::ensure!(Instant::now() < deadline, "listener still open after drop");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eventually("the open connection to close", || client.is_closed()).await?;
    Ok(())
}
