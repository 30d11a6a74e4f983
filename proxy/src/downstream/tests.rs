use super::*;
use crate::forward::ConnInfo;
use crate::router::Listener;
use http::StatusCode;
use std::sync::atomic::AtomicBool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn request(version: Version, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut builder = Request::builder().version(version).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).expect("valid request")
}

type Headers<'a> = &'a [(&'a str, &'a str)];

fn status<T>(result: Result<T, ProxyError>) -> Option<StatusCode> {
    result.err().map(|e| e.status())
}

#[test]
fn host_lines_rfc_9112_refuses() {
    let h11 = Version::HTTP_11;
    let cases: &[(&str, Version, &str, Headers, Option<StatusCode>)] = &[
        ("one host", h11, "/", &[("host", "a")], None),
        (
            "no host on 1.1",
            h11,
            "/",
            &[],
            Some(StatusCode::BAD_REQUEST),
        ),
        (
            "no host on 1.1, absolute form",
            h11,
            "http://a/",
            &[],
            Some(StatusCode::BAD_REQUEST),
        ),
        ("no host on 1.0", Version::HTTP_10, "/", &[], None),
        ("no host on h2", Version::HTTP_2, "http://a/", &[], None),
        (
            "two equal hosts",
            h11,
            "/",
            &[("host", "a"), ("host", "a")],
            Some(StatusCode::BAD_REQUEST),
        ),
        (
            "two hosts",
            h11,
            "/",
            &[("host", "a"), ("host", "b")],
            Some(StatusCode::BAD_REQUEST),
        ),
        (
            "two hosts on h2",
            Version::HTTP_2,
            "http://a/",
            &[("host", "a"), ("host", "b")],
            Some(StatusCode::BAD_REQUEST),
        ),
    ];
    for (name, version, uri, headers, want) in cases {
        let got = status(routing_host(&request(*version, uri, headers)));
        assert_eq!(got, *want, "{name}");
    }
}

#[test]
fn routing_host_prefers_the_target_authority() {
    let req = request(Version::HTTP_11, "http://target/", &[("host", "header")]);
    assert_eq!(routing_host(&req).expect("ok").expect("host"), "target");
    let req = request(Version::HTTP_11, "/", &[("host", "header")]);
    assert_eq!(routing_host(&req).expect("ok").expect("host"), "header");
}

#[test]
fn request_head_limits() {
    let limits = DownstreamLimits {
        max_uri_bytes: 10,
        max_headers: 2,
        ..DownstreamLimits::default()
    };
    let h11 = Version::HTTP_11;
    let cases: &[(&str, &str, Headers, Option<StatusCode>)] = &[
        ("short target", "/123456789", &[], None),
        (
            "target one over",
            "/1234567890",
            &[],
            Some(StatusCode::URI_TOO_LONG),
        ),
        ("query counts", "/1234?6789", &[], None),
        (
            "query over",
            "/1234?67890",
            &[],
            Some(StatusCode::URI_TOO_LONG),
        ),
        (
            "authority does not count",
            "http://abcdefghijk/12345",
            &[],
            None,
        ),
        ("two headers", "/", &[("a", "1"), ("b", "2")], None),
        (
            "three headers",
            "/",
            &[("a", "1"), ("b", "2"), ("c", "3")],
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        ),
        (
            "repeated lines count",
            "/",
            &[("a", "1"), ("a", "2"), ("a", "3")],
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        ),
    ];
    for (name, uri, headers, want) in cases {
        let got = status(check_request_head(&request(h11, uri, headers), &limits));
        assert_eq!(got, *want, "{name}");
    }
}

#[test]
fn transfer_codings_other_than_one_chunked_are_refused() {
    let limits = DownstreamLimits::default();
    let cases: &[(&str, &[&str], Option<StatusCode>)] = &[
        ("chunked", &["chunked"], None),
        ("any case", &["Chunked"], None),
        (
            "gzip then chunked",
            &["gzip, chunked"],
            Some(StatusCode::NOT_IMPLEMENTED),
        ),
        (
            "gzip line then chunked line",
            &["gzip", "chunked"],
            Some(StatusCode::NOT_IMPLEMENTED),
        ),
        (
            "identity",
            &["identity, chunked"],
            Some(StatusCode::NOT_IMPLEMENTED),
        ),
        (
            "chunked twice",
            &["chunked, chunked"],
            Some(StatusCode::BAD_REQUEST),
        ),
        (
            "chunked on two lines",
            &["chunked", "chunked"],
            Some(StatusCode::BAD_REQUEST),
        ),
        ("empty members skipped", &["chunked , "], None),
    ];
    for (name, values, want) in cases {
        let headers: Vec<(&str, &str)> = values.iter().map(|v| ("transfer-encoding", *v)).collect();
        let req = request(Version::HTTP_11, "/", &headers);
        assert_eq!(status(check_request_head(&req, &limits)), *want, "{name}");
    }
}

fn conn() -> Arc<ConnInfo> {
    Arc::new(ConnInfo {
        listener: Listener::External,
        proto: HeaderValue::from_static("http"),
        client_ip: None,
        redirects_to_https: false,
        trust_forwarded: false,
        head_seen: AtomicBool::new(false),
        peer: None,
    })
}

#[tokio::test(start_paused = true)]
async fn head_timer_fails_a_read_that_outlasts_the_deadline() {
    let (client, server) = tokio::io::duplex(64);
    let deadline = Box::pin(tokio::time::sleep(Duration::from_secs(5)));
    let mut io = HeadTimer::new(server, deadline, conn(), &[]);
    let mut buf = [0u8; 8];
    let error = io.read(&mut buf).await.expect_err("times out");
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    drop(client);
}

#[tokio::test(start_paused = true)]
async fn head_timer_is_off_once_a_head_was_seen() {
    let (mut client, server) = tokio::io::duplex(64);
    let conn = conn();
    let deadline = Box::pin(tokio::time::sleep(Duration::from_secs(5)));
    let mut io = HeadTimer::new(server, deadline, conn.clone(), &[]);
    client.write_all(b"GET").await.expect("write");
    let mut buf = [0u8; 8];
    assert_eq!(
        io.read(&mut buf).await.expect("bytes before the deadline"),
        3
    );
    conn.head_seen.store(true, Ordering::Relaxed);
    let later = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        client.write_all(b"x").await.expect("write");
        client
    });
    assert_eq!(io.read(&mut buf).await.expect("no deadline any more"), 1);
    drop(later.await);
}

#[tokio::test]
async fn head_timer_hands_over_the_sniffed_bytes_with_the_sockets_in_one_read() {
    let (mut client, server) = tokio::io::duplex(64);
    let deadline = Box::pin(tokio::time::sleep(Duration::from_secs(5)));
    let mut io = HeadTimer::new(server, deadline, conn(), b"GET ");
    client.write_all(b"/ HTTP/1.1\r\n").await.expect("write");
    let mut buf = [0u8; 64];
    let n = io.read(&mut buf).await.expect("read");
    assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n");
    // A read smaller than what the sniff holds gets it in parts, in order.
    let (mut client, server) = tokio::io::duplex(64);
    let deadline = Box::pin(tokio::time::sleep(Duration::from_secs(5)));
    let mut io = HeadTimer::new(server, deadline, conn(), b"PRI ");
    let mut small = [0u8; 3];
    assert_eq!(io.read(&mut small).await.expect("read"), 3);
    assert_eq!(&small, b"PRI");
    client.write_all(b"* HTTP/2.0").await.expect("write");
    let n = io.read(&mut buf).await.expect("read");
    assert_eq!(&buf[..n], b" * HTTP/2.0");
    // With nothing more from the socket, the sniffed bytes alone are a read.
    let (_client, server) = tokio::io::duplex(64);
    let deadline = Box::pin(tokio::time::sleep(Duration::from_secs(5)));
    let mut io = HeadTimer::new(server, deadline, conn(), b"GET ");
    assert_eq!(io.read(&mut buf).await.expect("read"), 4);
    assert_eq!(&buf[..4], b"GET ");
}

#[tokio::test(start_paused = true)]
async fn streams_are_idle_only_after_the_last_one_ended_for_the_timeout() {
    let streams = Streams::new();
    let timeout = Duration::from_secs(5);
    let first = streams.open();
    let last = streams.open();
    let idle = streams.idle(timeout);
    tokio::pin!(idle);
    // Open for far longer than the timeout: never idle.
    assert!(tokio::time::timeout(Duration::from_secs(60), idle.as_mut())
        .await
        .is_err());
    // One of two streams ended long ago: still not idle.
    drop(first);
    assert!(tokio::time::timeout(Duration::from_secs(60), idle.as_mut())
        .await
        .is_err());
    drop(last);
    let ended = tokio::time::Instant::now();
    idle.await;
    assert!(ended.elapsed() >= timeout);
    assert!(ended.elapsed() < timeout * 2);
}
