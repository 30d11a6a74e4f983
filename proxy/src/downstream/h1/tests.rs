use super::head::{self, BodyFraming, HeadError, Parsed};
use super::*;
use http::HeaderMap;
use http_body_util::BodyExt;
use std::sync::atomic::AtomicUsize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn parsed(bytes: &[u8]) -> head::RequestHead {
    match head::parse(bytes, 64 * 1024, 100) {
        Ok(Parsed::Complete(len, head)) => {
            assert_eq!(len, bytes.len(), "the head is the whole input");
            head
        }
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
    }
}

fn refused(bytes: &[u8]) -> HeadError {
    match head::parse(bytes, 64 * 1024, 100) {
        Err(e) => e,
        other => panic!(
            "{:?} was accepted: {other:?}",
            String::from_utf8_lossy(bytes)
        ),
    }
}

#[test]
fn a_request_head_becomes_a_request_with_shared_values() {
    let head = parsed(b"GET /a?b=1 HTTP/1.1\r\nHost: x.example\r\nX-Two: 1\r\nx-two: 2\r\n\r\n");
    let req = &head.request;
    assert_eq!(req.method(), Method::GET);
    assert_eq!(req.uri(), "/a?b=1");
    assert_eq!(req.version(), Version::HTTP_11);
    assert_eq!(req.headers()["host"], "x.example");
    let two: Vec<_> = req.headers().get_all("x-two").iter().collect();
    assert_eq!(two, ["1", "2"]);
    assert_eq!(head.framing, Framing::Empty);
    assert!(head.keep_alive);
    assert!(!head.expect_continue);
}

#[test]
fn keep_alive_follows_the_version_and_connection() {
    let cases: [(&[u8], bool); 5] = [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: x, Close\r\n\r\n",
            false,
        ),
        (b"GET / HTTP/1.0\r\n\r\n", false),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        (
            b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
            false,
        ),
    ];
    for (bytes, keep) in cases {
        assert_eq!(
            parsed(bytes).keep_alive,
            keep,
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn body_framing_comes_from_content_length_or_chunked() {
    let head = parsed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n");
    assert_eq!(head.framing, Framing::Length(5));
    let head =
        parsed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
    assert_eq!(
        head.framing,
        Framing::Length(5),
        "equal duplicates are one length"
    );
    let head = parsed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(head.framing, Framing::Empty);
    let head = parsed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(head.framing, Framing::Chunked);
    assert!(head.keep_alive);
    // The request path answers 501 to the other coding.
    let head = parsed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    assert_eq!(head.framing, Framing::Chunked);
    // Both: the coding wins, the length is dropped, and the connection ends after it.
    let head = parsed(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert_eq!(head.framing, Framing::Chunked);
    assert!(!head.request.headers().contains_key("content-length"));
    assert!(!head.keep_alive);
    let head =
        parsed(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n");
    assert!(head.expect_continue);
    let head = parsed(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
    assert!(!head.expect_continue, "HTTP/1.0 has no 100 Continue");
}

#[test]
fn malformed_heads_are_refused_with_their_status() {
    let cases: [(&[u8], StatusCode); 12] = [
        (
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            StatusCode::BAD_REQUEST,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
            StatusCode::BAD_REQUEST,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n",
            StatusCode::BAD_REQUEST,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            StatusCode::BAD_REQUEST,
        ),
        (
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            StatusCode::BAD_REQUEST,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            StatusCode::BAD_REQUEST,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
            StatusCode::BAD_REQUEST,
        ),
        (
            b"GET / HTTP/1.1\r\nX-Folded: a\r\n b\r\n\r\n",
            StatusCode::BAD_REQUEST,
        ),
        (
            b"GET / HTTP/1.1\r\nX-Space : a\r\n\r\n",
            StatusCode::BAD_REQUEST,
        ),
        (b"GET  / HTTP/1.1\r\n\r\n", StatusCode::BAD_REQUEST),
        (b"G(T / HTTP/1.1\r\n\r\n", StatusCode::BAD_REQUEST),
        (
            b"GET / HTTP/2.0\r\n\r\n",
            StatusCode::HTTP_VERSION_NOT_SUPPORTED,
        ),
    ];
    for (bytes, status) in cases {
        assert_eq!(
            refused(bytes).status(),
            status,
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn head_limits_hold_whether_or_not_the_head_is_complete() {
    let head = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\r\n";
    // Exactly at the limit: accepted; one byte less: too large, also while still partial.
    assert!(matches!(
        head::parse(head, head.len(), 100),
        Ok(Parsed::Complete(..))
    ));
    assert_eq!(
        head::parse(head, head.len() - 1, 100).expect_err("refused"),
        HeadError::TooLarge
    );
    assert_eq!(
        head::parse(&head[..head.len() - 2], head.len() - 2, 100).expect_err("refused"),
        HeadError::TooLarge
    );
    assert!(matches!(
        head::parse(&head[..head.len() - 2], head.len(), 100),
        Ok(Parsed::Partial)
    ));
    // Two headers allowed, two sent; then one allowed.
    assert!(matches!(
        head::parse(head, 1024, 2),
        Ok(Parsed::Complete(..))
    ));
    assert_eq!(
        head::parse(head, 1024, 1).expect_err("refused"),
        HeadError::TooLarge
    );
    // More than the stack array holds.
    let many: String = (0..150).map(|i| format!("X-{i}: v\r\n")).collect();
    let big = format!("GET / HTTP/1.1\r\n{many}\r\n");
    assert!(matches!(
        head::parse(big.as_bytes(), 64 * 1024, 150),
        Ok(Parsed::Complete(..))
    ));
    assert_eq!(
        head::parse(big.as_bytes(), 64 * 1024, 149).expect_err("refused"),
        HeadError::TooLarge
    );
}

#[test]
fn response_framing_is_decided_and_the_headers_say_so() {
    let decide = |headers: &[(&str, &str)], status: u16, head: bool, http11: bool, len| {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(
                http::HeaderName::from_bytes(n.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        let facts = head::ResponseFacts::of(&map);
        let framing = head::response_framing(
            &mut map,
            &facts,
            StatusCode::from_u16(status).expect("status"),
            head,
            http11,
            len,
        );
        let mut names: Vec<String> = map
            .iter()
            .map(|(n, v)| format!("{n}: {}", v.to_str().expect("ascii")))
            .collect();
        names.sort();
        (framing, names)
    };
    assert_eq!(
        decide(&[], 200, false, true, Some(5)),
        (BodyFraming::Length(5), vec!["content-length: 5".into()])
    );
    assert_eq!(
        decide(&[("transfer-encoding", "chunked")], 200, false, true, None),
        (
            BodyFraming::Chunked,
            vec!["transfer-encoding: chunked".into()]
        )
    );
    assert_eq!(
        decide(&[], 200, false, false, None),
        (BodyFraming::UntilClose, vec![])
    );
    assert_eq!(
        decide(&[("content-length", "7")], 200, false, true, None),
        (BodyFraming::Length(7), vec!["content-length: 7".into()])
    );
    // HEAD and 304 keep the length of the body they stand for; 204 and 1xx carry none.
    assert_eq!(
        decide(&[("content-length", "7")], 200, true, true, Some(0)),
        (BodyFraming::None, vec!["content-length: 7".into()])
    );
    assert_eq!(
        decide(&[("content-length", "7")], 304, false, true, Some(0)),
        (BodyFraming::None, vec!["content-length: 7".into()])
    );
    // A HEAD answered here states the length of the body it would send; an upstream's empty
    // HEAD body adds nothing.
    assert_eq!(
        decide(&[], 200, true, true, Some(5)),
        (BodyFraming::None, vec!["content-length: 5".into()])
    );
    assert_eq!(
        decide(&[], 200, true, true, Some(0)),
        (BodyFraming::None, vec![])
    );
    assert_eq!(
        decide(&[("content-length", "7")], 204, false, true, Some(0)),
        (BodyFraming::None, vec![])
    );
    // A length that is not one is dropped, and the body's own length decides.
    assert_eq!(
        decide(&[("content-length", "7x")], 200, false, true, None),
        (
            BodyFraming::Chunked,
            vec!["transfer-encoding: chunked".into()]
        )
    );
    assert_eq!(
        decide(&[("content-length", "7x")], 200, false, true, Some(3)),
        (BodyFraming::Length(3), vec!["content-length: 3".into()])
    );
}

#[test]
fn response_facts_come_from_every_line() {
    let mut map = HeaderMap::new();
    for (n, v) in [
        ("connection", "keep-alive"),
        ("content-length", "12"),
        ("x-other", "1"),
        ("connection", "upgrade, close"),
        ("content-length", "13"),
    ] {
        map.append(
            http::HeaderName::from_bytes(n.as_bytes()).expect("name"),
            HeaderValue::from_static(v),
        );
    }
    let facts = head::ResponseFacts::of(&map);
    assert!(facts.close, "`close` on the second Connection line counts");
    assert_eq!(
        facts.content_length,
        Some(Some(12)),
        "the first length, as `get`"
    );
    assert!(!facts.date && !facts.transfer_encoding);
    map.append(header::DATE, HeaderValue::from_static("x"));
    map.append(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    let facts = head::ResponseFacts::of(&map);
    assert!(facts.date && facts.transfer_encoding);
    assert_eq!(
        head::ResponseFacts::of(&HeaderMap::new()).content_length,
        None
    );
}

#[test]
fn chunk_size_lines_are_lowercase_hex() {
    for (len, want) in [
        (1usize, "1\r\n"),
        (15, "f\r\n"),
        (16, "10\r\n"),
        (4096, "1000\r\n"),
        (usize::MAX, "ffffffffffffffff\r\n"),
    ] {
        let mut out = Vec::new();
        head::chunk_size_line(len, &mut out);
        assert_eq!(String::from_utf8(out).expect("ascii"), want);
    }
}

/// A server on loopback running `service` for every connection.
async fn server<F, Fut>(service: F) -> std::net::SocketAddr
where
    F: Fn(Request<ClientBody>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response<ResponseBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bound");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = service.clone();
            tokio::spawn(async move {
                let limits = DownstreamLimits {
                    idle_timeout: Duration::from_secs(5),
                    ..DownstreamLimits::default()
                };
                let deadline = Box::pin(tokio::time::sleep(Duration::from_secs(5)));
                let phase = Phase::default();
                serve(stream, b"", deadline, &limits, &phase, service).await;
            });
        }
    });
    addr
}

fn ok(body: &'static str) -> Response<ResponseBody> {
    Response::new(ResponseBody::full(body.as_bytes()))
}

async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out))
        .await
        .expect("the server closed")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads until what arrived ends with `suffix` (or 5 s).
async fn read_until(stream: &mut TcpStream, suffix: &str) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !out.ends_with(suffix.as_bytes()) {
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("the response in time")
            .expect("written");
        assert!(read > 0, "closed early: {}", String::from_utf8_lossy(&out));
        out.extend_from_slice(&buf[..read]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let addr = server(|req: Request<ClientBody>| async move {
        let path = req.uri().path().to_string();
        Response::new(ResponseBody::full(path))
    })
    .await;
    let mut stream = TcpStream::connect(addr).await.expect("connected");
    stream
        .write_all(b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n\r\nGET /three HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .expect("written");
    let text = read_to_close(&mut stream).await;
    let bodies: Vec<&str> = text
        .split("HTTP/1.1 200 OK\r\n")
        .skip(1)
        .map(|r| r.split("\r\n\r\n").nth(1).expect("a body"))
        .collect();
    assert_eq!(bodies, ["/one", "/two", "/three"], "{text}");
    assert!(text.contains("content-length: 4\r\n"), "{text}");
    assert!(text.contains("date: "), "{text}");
    // Only the last says it closes.
    assert_eq!(text.matches("connection: close").count(), 1, "{text}");
}

#[tokio::test]
async fn bodies_of_either_framing_reach_the_request_path_whole() {
    let addr = server(|req: Request<ClientBody>| async move {
        let body = req.into_body().collect().await;
        match body {
            Ok(body) => Response::new(ResponseBody::full(body.to_bytes())),
            Err(e) => {
                let mut r = Response::new(ResponseBody::full(e.to_string()));
                *r.status_mut() = StatusCode::BAD_REQUEST;
                r
            }
        }
    })
    .await;
    let mut stream = TcpStream::connect(addr).await.expect("connected");
    let big = "x".repeat(100_000);
    let request = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{big}POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n",
        big.len()
    );
    stream.write_all(request.as_bytes()).await.expect("written");
    let text = read_to_close(&mut stream).await;
    let (first, second) = text.split_at(text.rfind("HTTP/1.1 200 OK").expect("two responses"));
    assert!(
        first.contains("content-length: 100000\r\n"),
        "{}",
        &first[..200]
    );
    assert!(first.ends_with(&format!("\r\n\r\n{big}")));
    assert!(second.contains("content-length: 5\r\n"), "{second}");
    assert!(second.ends_with("\r\n\r\nabcde"), "{second}");
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2);
}

#[tokio::test]
async fn an_invalid_chunk_fails_the_body_and_closes_the_connection() {
    let addr = server(|req: Request<ClientBody>| async move {
        match req.into_body().collect().await {
            Ok(_) => ok("whole"),
            Err(e) => {
                let mut r = Response::new(ResponseBody::full(e.to_string()));
                *r.status_mut() = StatusCode::BAD_REQUEST;
                r
            }
        }
    })
    .await;
    let mut stream = TcpStream::connect(addr).await.expect("connected");
    stream
        .write_all(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n",
        )
        .await
        .expect("written");
    let text = read_to_close(&mut stream).await;
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    assert!(
        text.contains("invalid request body: size is not hex"),
        "{text}"
    );
    assert!(text.contains("connection: close"), "{text}");
}

#[tokio::test]
async fn expect_continue_is_answered_when_the_body_is_first_read() {
    let addr = server(|req: Request<ClientBody>| async move {
        let body = req
            .into_body()
            .collect()
            .await
            .expect("the body")
            .to_bytes();
        Response::new(ResponseBody::full(body))
    })
    .await;
    let mut stream = TcpStream::connect(addr).await.expect("connected");
    stream
        .write_all(
            b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
        )
        .await
        .expect("written");
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("the 100 in time")
        .expect("read");
    assert_eq!(&buf[..n], b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"body").await.expect("written");
    let text = read_until(&mut stream, "\r\n\r\nbody").await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nbody"), "{text}");
}

#[tokio::test]
async fn a_client_that_leaves_drops_its_waiting_request() {
    let dropped = Arc::new(AtomicUsize::new(0));
    struct Guard(Arc<AtomicUsize>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let counter = dropped.clone();
    let addr = server(move |_req: Request<ClientBody>| {
        let guard = Guard(counter.clone());
        async move {
            let _guard = guard;
            std::future::pending::<()>().await;
            ok("never")
        }
    })
    .await;
    let mut stream = TcpStream::connect(addr).await.expect("connected");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("written");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(dropped.load(Ordering::SeqCst), 0);
    drop(stream);
    let started = tokio::time::Instant::now();
    while dropped.load(Ordering::SeqCst) == 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "never dropped");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn head_answers_carry_no_body_and_http10_clients_are_closed() {
    let addr = server(|_req: Request<ClientBody>| async move { ok("abcde") }).await;
    let mut stream = TcpStream::connect(addr).await.expect("connected");
    stream
        .write_all(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.0\r\n\r\n")
        .await
        .expect("written");
    let text = read_to_close(&mut stream).await;
    // HEAD: the length of the body it stands for, and no body bytes; then the HTTP/1.0 one.
    let (head_answer, rest) = text.split_once("\r\n\r\n").expect("a head");
    assert!(head_answer.contains("content-length: 5"), "{text}");
    assert!(rest.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(rest.ends_with("\r\n\r\nabcde"), "{text}");
    assert!(rest.contains("connection: close"), "{text}");
}

#[tokio::test]
async fn a_refused_head_is_answered_and_the_connection_closed() {
    let addr = server(|_req: Request<ClientBody>| async move { ok("served") }).await;
    for (request, status) in [
        (
            &b"GET / HTTP/1.1\r\nX-Folded: a\r\n b\r\n\r\n"[..],
            "400 Bad Request",
        ),
        (b"GET / HTTP/2.0\r\n\r\n", "505 HTTP Version Not Supported"),
    ] {
        let mut stream = TcpStream::connect(addr).await.expect("connected");
        stream.write_all(request).await.expect("written");
        let text = read_to_close(&mut stream).await;
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{text}"
        );
        assert!(text.contains("connection: close"), "{text}");
        assert!(!text.contains("served"), "{text}");
    }
    // A head larger than the limit, sent in pieces, is refused once it passes the limit.
    let mut stream = TcpStream::connect(addr).await.expect("connected");
    stream
        .write_all(b"GET / HTTP/1.1\r\nX-Big: ")
        .await
        .expect("written");
    let filler = vec![b'a'; 16 * 1024];
    for _ in 0..4 {
        if stream.write_all(&filler).await.is_err() {
            break;
        }
    }
    let text = read_to_close(&mut stream).await;
    assert!(
        text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{text}"
    );
}

#[tokio::test]
async fn a_101_hands_the_socket_to_the_request_that_asked() {
    let addr = server(|mut req: Request<ClientBody>| async move {
        let on = req
            .extensions_mut()
            .remove::<OnUpgrade>()
            .expect("an upgrade request");
        tokio::spawn(async move {
            let mut io = on.upgraded().await.expect("upgraded");
            let mut buf = [0u8; 5];
            io.read_exact(&mut buf).await.expect("tunnel bytes");
            io.write_all(&buf).await.expect("echoed");
        });
        let mut r = Response::new(ResponseBody::empty());
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("echo"));
        r
    })
    .await;
    let mut stream = TcpStream::connect(addr).await.expect("connected");
    // The first tunnel bytes come in the same write as the head.
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\nhel")
        .await
        .expect("written");
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.expect("read");
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
        if got.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(
        text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{text}"
    );
    stream.write_all(b"lo").await.expect("written");
    let mut echoed = Vec::new();
    let tail = text
        .split_once("\r\n\r\n")
        .expect("a head")
        .1
        .as_bytes()
        .to_vec();
    echoed.extend_from_slice(&tail);
    while echoed.len() < 5 {
        let n = stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "tunnel closed early");
        echoed.extend_from_slice(&buf[..n]);
    }
    assert_eq!(&echoed, b"hello");
}
