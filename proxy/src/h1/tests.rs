use super::framing::*;
use super::*;
use crate::idle::RequestBodyTimeout;
use crate::upstream::Forwarding;
use http::HeaderMap;
use http_body_util::{BodyExt, Full, StreamBody};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// What a whole response decodes to.
#[derive(Debug, PartialEq)]
struct Read {
    status: u16,
    body: Vec<u8>,
    trailers: Option<HeaderMap>,
    /// The body ended at its frame with nothing after it, and keep-alive holds.
    reusable: bool,
}

/// Parses and decodes `input` fed in pieces of `step` bytes (1: every split point), as the
/// client does. `Err` is the first framing error.
fn read(input: &[u8], head_request: bool, step: usize) -> Result<Read, FrameError> {
    let mut buf = BytesMut::new();
    let mut rest = input;
    let mut feed = |buf: &mut BytesMut| -> bool {
        if rest.is_empty() {
            return false;
        }
        let n = step.min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        true
    };
    let head = loop {
        let options = HeadOptions {
            head_request,
            keep_lines: false,
        };
        if let Some(head) = parse_head(&mut buf, options)? {
            if head.status.is_informational() {
                continue;
            }
            break head;
        }
        if !feed(&mut buf) {
            return Err(FrameError::Incomplete);
        }
    };
    let mut decoder = Decoder::new(head.framing);
    let mut body = Vec::new();
    let mut trailers = None;
    let mut eof = false;
    loop {
        match decoder.decode(&mut buf)? {
            Decoded::Data(d) => body.extend_from_slice(&d),
            Decoded::Trailers(t) => trailers = Some(t),
            Decoded::End => break,
            Decoded::NeedMore => {
                if !feed(&mut buf) {
                    decoder.eof()?;
                    eof = true;
                }
            }
        }
    }
    let leftover = !buf.is_empty() || !rest.is_empty();
    Ok(Read {
        status: head.status.as_u16(),
        body,
        trailers,
        reusable: head.keep_alive && !eof && !leftover,
    })
}

fn ok(status: u16, body: &[u8], reusable: bool) -> Result<Read, FrameError> {
    Ok(Read {
        status,
        body: body.to_vec(),
        trailers: None,
        reusable,
    })
}

#[test]
fn well_framed_responses_decode_and_are_reusable() {
    /// Name, bytes, whether the request was HEAD, and the outcome.
    type Case<'a> = (&'a str, &'a [u8], bool, Result<Read, FrameError>);
    let cases: &[Case] = &[
        ("content length", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false, ok(200, b"hello", true)),
        ("no body", b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", false, ok(200, b"", true)),
        ("same length twice", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nhi", false, ok(200, b"hi", true)),
        ("chunked", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n1;a=b\r\n!\r\n0\r\n\r\n", false, ok(200, b"hello!", true)),
        ("chunked, upper hex and leading zeros", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n00A\r\n0123456789\r\n0\r\n\r\n", false, ok(200, b"0123456789", true)),
        ("space before extension", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2 ;x\r\nhi\r\n0\r\n\r\n", false, ok(200, b"hi", true)),
        ("HEAD ignores the length", b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n", true, ok(200, b"", true)),
        ("204 has no body", b"HTTP/1.1 204 No Content\r\n\r\n", false, ok(204, b"", true)),
        ("304 has no body", b"HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n", false, ok(304, b"", true)),
        ("interim responses are skipped", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nx", false, ok(200, b"x", true)),
        ("read to close", b"HTTP/1.1 200 OK\r\n\r\nuntil the end", false, ok(200, b"until the end", false)),
        ("connection: close", b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\nx", false, ok(200, b"x", false)),
        ("1.0 without keep-alive", b"HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\nx", false, ok(200, b"x", false)),
        ("1.0 with keep-alive", b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 1\r\n\r\nx", false, ok(200, b"x", true)),
        ("LF-only head lines (RFC 9112 MAY)", b"HTTP/1.1 200 OK\ncontent-length: 1\n\nx", false, ok(200, b"x", true)),
        ("bytes after the body: not reusable", b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nxHTTP/1.1 200 OK\r\n\r\n", false, ok(200, b"x", false)),
    ];
    for (name, input, head, want) in cases {
        for step in [1, 3, input.len()] {
            assert_eq!(&read(input, *head, step), want, "{name} (step {step})");
        }
    }
}

#[test]
fn trailers_are_decoded() {
    let input = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\ngrpc-status: 0\r\nx-b: c\r\n\r\n";
    for step in [1, input.len()] {
        let got = read(input, false, step).expect("decodes");
        let trailers = got.trailers.expect("trailers");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(trailers["x-b"], "c");
        assert_eq!(got.body, b"hi");
        assert!(got.reusable);
    }
}

#[test]
fn smuggling_vectors_are_refused() {
    use FrameError::*;
    let big_head = {
        // One long header, never ended: the cap, not the header count, refuses it.
        let mut v = b"HTTP/1.1 200 OK\r\nx-pad: ".to_vec();
        v.resize(MAX_HEAD + 10, b'a');
        v
    };
    let many_headers = {
        let mut v = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            v.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
        }
        v.extend_from_slice(b"\r\n");
        v
    };
    let interim_loop = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(20);
    let cases: &[(&str, &[u8], FrameError)] = &[
        ("CL and TE", b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n", TransferEncoding("beside content-length")),
        ("TE and CL", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n0\r\n\r\n", TransferEncoding("beside content-length")),
        ("two differing CLs", b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd", ContentLength("two differing values")),
        ("CL list", b"HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\n\r\nabc", ContentLength("not a decimal number")),
        ("negative CL", b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", ContentLength("not a decimal number")),
        ("signed CL", b"HTTP/1.1 200 OK\r\ncontent-length: +3\r\n\r\nabc", ContentLength("not a decimal number")),
        ("CL over u64", b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n", ContentLength("not a decimal number")),
        ("gzip, chunked", b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n", TransferEncoding("only a single chunked is accepted")),
        ("two TE lines", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n", TransferEncoding("only a single chunked is accepted")),
        ("unknown coding", b"HTTP/1.1 200 OK\r\ntransfer-encoding: identity\r\n\r\n", TransferEncoding("only a single chunked is accepted")),
        ("chunked in 1.0", b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n", TransferEncoding("in an HTTP/1.0 response")),
        ("obs-fold", b"HTTP/1.1 200 OK\r\nx-a: b\r\n c\r\ncontent-length: 0\r\n\r\n", Head("invalid header line")),
        ("space before colon", b"HTTP/1.1 200 OK\r\ncontent-length : 0\r\n\r\n", Head("invalid header line")),
        ("bare CR in the status line", b"HTTP/1.1 200 OK\rcontent-length: 0\r\n\r\n", Head("invalid status")),
        ("bare CR in a header", b"HTTP/1.1 200 OK\r\nx-a: b\rc\r\ncontent-length: 0\r\n\r\n", Head("invalid header line")),
        ("bad status", b"HTTP/1.1 2000 OK\r\n\r\n", Head("invalid status")),
        ("not HTTP", b"SSH-2.0-OpenSSH\r\n\r\n", Head("invalid version")),
        ("head over the cap", &big_head, HeadTooLarge),
        ("too many headers", &many_headers, Head("too many headers")),
        ("negative chunk size", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n-1\r\nx\r\n0\r\n\r\n", Chunk("size is not hex")),
        ("chunk size with 0x", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", Chunk("invalid size line")),
        ("huge chunk size", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10000000000000000\r\nx\r\n0\r\n\r\n", Chunk("size over 16 hex digits")),
        ("empty chunk size", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\r\nx\r\n0\r\n\r\n", Chunk("size is not hex")),
        ("LF-only chunk line", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\nx\r\n0\r\n\r\n", Chunk("invalid size line")),
        ("bare CR after chunk size", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\rx\r\n0\r\n\r\n", Chunk("size line: CR without LF")),
        ("LF-only after chunk data", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\nx\n0\r\n\r\n", Chunk("data not followed by CRLF")),
        ("data longer than its size", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\nxy\r\n0\r\n\r\n", Chunk("data not followed by CRLF")),
        ("bare LF ending an extension", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1;a\nx\r\n0\r\n\r\n", Chunk("extension ended by a bare LF")),
        ("control byte in an extension", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1;a\x00\r\nx\r\n0\r\n\r\n", Chunk("control byte in extension")),
        ("LF-only trailer", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\nx: y\n\r\n\r\n", Trailers("a line not ended by CRLF")),
        ("content-length trailer", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\ncontent-length: 5\r\n\r\n", Trailers("a framing field")),
        ("short body", b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhel", Incomplete),
        ("unterminated chunked", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n", Incomplete),
    ];
    for (name, input, want) in cases {
        // Byte by byte re-parses the head each time: quadratic, so not for the 64 KiB ones.
        let first = if input.len() > 4096 { 1024 } else { 1 };
        for step in [first, 7, input.len()] {
            assert_eq!(
                read(input, false, step),
                Err(want.clone()),
                "{name} (step {step})"
            );
        }
    }
    // The interim loop is the client's bound, not the parser's: each 100 parses on its own.
    assert_eq!(MAX_INTERIM, 8);
    assert!(interim_loop.len() > MAX_INTERIM);
}

#[test]
fn an_extension_past_its_cap_is_refused() {
    let mut input = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1;".to_vec();
    input.extend(std::iter::repeat_n(b'a', 2000));
    input.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
    assert_eq!(
        read(&input, false, input.len()),
        Err(FrameError::Chunk("extension too long"))
    );
}

#[test]
fn the_decoder_never_takes_bytes_past_the_frame() {
    let mut buf = BytesMut::from(&b"helloNEXT"[..]);
    let mut d = Decoder::new(Framing::Length(5));
    assert_eq!(
        d.decode(&mut buf),
        Ok(Decoded::Data(Bytes::from_static(b"hello")))
    );
    assert_eq!(d.decode(&mut buf), Ok(Decoded::End));
    assert_eq!(&buf[..], b"NEXT");
    let mut buf = BytesMut::from(&b"2\r\nhi\r\n0\r\n\r\nNEXT"[..]);
    let mut d = Decoder::new(Framing::Chunked);
    assert_eq!(
        d.decode(&mut buf),
        Ok(Decoded::Data(Bytes::from_static(b"hi")))
    );
    assert_eq!(d.decode(&mut buf), Ok(Decoded::End));
    assert_eq!(&buf[..], b"NEXT");
}

// The client, on loopback sockets.

type TestBody = http_body_util::combinators::UnsyncBoxBody<Bytes, RequestBodyError>;

fn request(method: Method, body: TestBody) -> Request<TestBody> {
    let mut req = Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = http::Uri::from_static("/p?q=1");
    req.headers_mut()
        .insert(header::HOST, http::HeaderValue::from_static("a.example"));
    req
}

fn empty() -> TestBody {
    Full::new(Bytes::new())
        .map_err(|e| match e {})
        .boxed_unsync()
}

/// A request body sent in `pieces`, with no declared length (so chunked).
fn streamed(pieces: &[&'static [u8]]) -> TestBody {
    let frames: Vec<Result<Frame<Bytes>, RequestBodyError>> = pieces
        .iter()
        .map(|p| Ok(Frame::data(Bytes::from_static(p))))
        .collect();
    StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
}

async fn pair() -> (Conn, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bound");
    let client = TcpStream::connect(listener.local_addr().expect("addr"))
        .await
        .expect("connected");
    let (server, _) = listener.accept().await.expect("accepted");
    (Conn::new(client), server)
}

/// Reads from `s` until `needle` has been seen (bounded in time).
async fn read_until(s: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while !got.windows(needle.len()).any(|w| w == needle) {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before {needle:?}: {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("bounded");
    got
}

async fn collect(body: H1Body) -> (Vec<u8>, Option<Conn>) {
    let mut body = body;
    let mut data = Vec::new();
    while let Some(frame) = poll_fn(|cx| body.poll_frame(cx)).await {
        if let Ok(d) = frame.expect("frame").into_data() {
            data.extend_from_slice(&d);
        }
    }
    (data, body.take_reusable())
}

#[tokio::test]
async fn a_get_round_trips_and_its_connection_is_reusable() {
    let (conn, mut server) = pair().await;
    let mut req = request(Method::GET, empty());
    let exchange = tokio::spawn(async move {
        let Ok(Exchange::Response(response)) =
            send(conn, &mut req, false, false, false, &Forwarding::NONE).await
        else {
            panic!("a response")
        };
        response
    });
    let got = read_until(&mut server, b"\r\n\r\n").await;
    assert_eq!(got, b"GET /p?q=1 HTTP/1.1\r\nhost: a.example\r\n\r\n");
    server
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-a: b\r\n\r\nok")
        .await
        .expect("write");
    let response = exchange.await.expect("joined");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-a"], "b");
    let (body, conn) = collect(response.into_body()).await;
    assert_eq!(body, b"ok");
    let mut conn = conn.expect("reusable");
    assert!(conn.is_usable(), "idle and open");
    // The upstream closes it while idle: no longer usable.
    drop(server);
    tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while conn.is_usable() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the close is seen");
}

#[tokio::test]
async fn a_streamed_body_goes_chunked_and_100_continue_is_skipped() {
    let (conn, mut server) = pair().await;
    let mut req = request(Method::POST, streamed(&[b"abc", b"defgh"]));
    let exchange = tokio::spawn(async move {
        let Ok(Exchange::Response(response)) =
            send(conn, &mut req, false, false, false, &Forwarding::NONE).await
        else {
            panic!("a response")
        };
        response
    });
    let got = read_until(&mut server, b"0\r\n\r\n").await;
    let text = String::from_utf8(got).expect("utf8");
    assert!(text.starts_with("POST /p?q=1 HTTP/1.1\r\n"), "{text}");
    assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
    assert!(
        text.ends_with("\r\n\r\n3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n"),
        "{text}"
    );
    server
        .write_all(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n",
        )
        .await
        .expect("write");
    let response = exchange.await.expect("joined");
    assert_eq!(response.status(), 201);
    let (body, conn) = collect(response.into_body()).await;
    assert!(body.is_empty());
    assert!(conn.is_some(), "reusable");
}

#[tokio::test]
async fn an_early_answer_stops_the_upload_and_the_connection_is_not_reused() {
    let (conn, mut server) = pair().await;
    // A body that never ends: only the early answer can finish the exchange.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, RequestBodyError>>(1);
    tx.send(Ok(Frame::data(Bytes::from_static(b"part"))))
        .await
        .expect("queued");
    let body = StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
    .boxed_unsync();
    let mut req = request(Method::POST, body);
    let exchange = tokio::spawn(async move {
        let Ok(Exchange::Response(response)) =
            send(conn, &mut req, false, false, false, &Forwarding::NONE).await
        else {
            panic!("a response")
        };
        response
    });
    read_until(&mut server, b"4\r\npart\r\n").await;
    server
        .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 3\r\n\r\nbig")
        .await
        .expect("write");
    let response = tokio::time::timeout(std::time::Duration::from_secs(5), exchange)
        .await
        .expect("bounded")
        .expect("joined");
    assert_eq!(response.status(), 413);
    let (body, conn) = collect(response.into_body()).await;
    assert_eq!(body, b"big");
    assert!(
        conn.is_none(),
        "an unfinished upload's connection is closed"
    );
    drop(tx);
}

#[tokio::test]
async fn a_request_body_timeout_is_the_clients_error() {
    let (conn, _server) = pair().await;
    let frames: Vec<Result<Frame<Bytes>, RequestBodyError>> = vec![
        Ok(Frame::data(Bytes::from_static(b"a"))),
        Err(RequestBodyTimeout.into()),
    ];
    let mut req = request(
        Method::POST,
        StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync(),
    );
    let Err(error) = send(conn, &mut req, true, false, false, &Forwarding::NONE).await else {
        panic!("an error")
    };
    assert!(!error.retryable);
    let proxy: crate::error::ProxyError = error.error.into();
    assert_eq!(proxy.status(), StatusCode::REQUEST_TIMEOUT);
}

#[tokio::test]
async fn a_reused_connection_closed_before_any_response_byte_is_retryable_for_a_get_only() {
    for (method, body, want) in [
        (Method::GET, empty(), true),
        (Method::POST, streamed(&[b"x"]), false),
    ] {
        let (conn, mut server) = pair().await;
        let mut req = request(method.clone(), body);
        let exchange = tokio::spawn(async move {
            send(conn, &mut req, true, false, false, &Forwarding::NONE).await
        });
        read_until(&mut server, b"\r\n\r\n").await;
        drop(server);
        let Err(error) = exchange.await.expect("joined") else {
            panic!("{method}: an error")
        };
        assert_eq!(error.retryable, want, "{method}: {}", error.error);
    }
    // A fresh connection is never retried: the endpoint itself is failing.
    let (conn, mut server) = pair().await;
    let mut req = request(Method::GET, empty());
    let exchange =
        tokio::spawn(
            async move { send(conn, &mut req, false, false, false, &Forwarding::NONE).await },
        );
    read_until(&mut server, b"\r\n\r\n").await;
    drop(server);
    let Err(error) = exchange.await.expect("joined") else {
        panic!("an error")
    };
    assert!(!error.retryable);
}

#[tokio::test]
async fn a_misframed_response_is_an_error_and_the_connection_is_dropped() {
    let (conn, mut server) = pair().await;
    let mut req = request(Method::GET, empty());
    let exchange =
        tokio::spawn(
            async move { send(conn, &mut req, false, false, false, &Forwarding::NONE).await },
        );
    read_until(&mut server, b"\r\n\r\n").await;
    server
        .write_all(
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        )
        .await
        .expect("write");
    let Err(error) = exchange.await.expect("joined") else {
        panic!("an error")
    };
    let proxy: crate::error::ProxyError = error.error.into();
    assert_eq!(proxy.status(), StatusCode::BAD_GATEWAY);
    let mut rest = Vec::new();
    let n = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        server.read_to_end(&mut rest),
    )
    .await
    .expect("bounded")
    .expect("read");
    assert_eq!(n, 0, "the proxy closed the connection");
}

#[tokio::test]
async fn too_many_interim_responses_are_an_error() {
    let (conn, mut server) = pair().await;
    let mut req = request(Method::GET, empty());
    let exchange =
        tokio::spawn(
            async move { send(conn, &mut req, false, false, false, &Forwarding::NONE).await },
        );
    read_until(&mut server, b"\r\n\r\n").await;
    server
        .write_all(&b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM + 1))
        .await
        .expect("write");
    let Err(error) = exchange.await.expect("joined") else {
        panic!("an error")
    };
    assert!(
        matches!(error.error, H1Error::InterimLoop),
        "{}",
        error.error
    );
}

#[tokio::test]
async fn a_switch_is_refused_unless_asked_and_carries_early_bytes_when_asked() {
    let (conn, mut server) = pair().await;
    let mut req = request(Method::GET, empty());
    let exchange =
        tokio::spawn(
            async move { send(conn, &mut req, false, false, false, &Forwarding::NONE).await },
        );
    read_until(&mut server, b"\r\n\r\n").await;
    server
        .write_all(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n")
        .await
        .expect("write");
    let Err(error) = exchange.await.expect("joined") else {
        panic!("an error")
    };
    assert!(matches!(error.error, H1Error::UnexpectedUpgrade));

    let (conn, mut server) = pair().await;
    let mut req = request(Method::GET, empty());
    let exchange =
        tokio::spawn(
            async move { send(conn, &mut req, false, true, false, &Forwarding::NONE).await },
        );
    read_until(&mut server, b"\r\n\r\n").await;
    server
        .write_all(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\nearly")
        .await
        .expect("write");
    let Ok(Exchange::Upgraded(response, mut upgraded)) = exchange.await.expect("joined") else {
        panic!("upgraded")
    };
    assert_eq!(response.status(), 101);
    let mut got = [0u8; 5];
    upgraded.read_exact(&mut got).await.expect("early bytes");
    assert_eq!(&got, b"early");
    upgraded.write_all(b"ping").await.expect("write");
    let mut ping = [0u8; 4];
    server.read_exact(&mut ping).await.expect("tunnelled");
    assert_eq!(&ping, b"ping");
}

#[tokio::test]
async fn a_body_failing_before_its_first_byte_sends_the_upstream_nothing() {
    let (conn, mut server) = pair().await;
    let frames: Vec<Result<Frame<Bytes>, RequestBodyError>> = vec![Err(RequestBodyTimeout.into())];
    let body = StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync();
    let mut req = request(Method::POST, body);
    let Err(error) = send(conn, &mut req, false, false, false, &Forwarding::NONE).await else {
        panic!("an error")
    };
    assert!(matches!(error.error, H1Error::RequestBody(_)));
    let mut got = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        server.read_to_end(&mut got),
    )
    .await
    .expect("bounded")
    .expect("read");
    assert!(got.is_empty(), "the upstream saw {got:?}");
}

/// A response whose body has wholly arrived with its head (none: a 204, a `content-length: 0`,
/// the answer to a HEAD; or all of its declared length) leaves nothing to wait for: its
/// connection goes back to the pool and its slot is freed at once, and the client gets a plain
/// body (no boxed upstream body to poll). A body still on its way stays an upstream body.
#[tokio::test]
async fn a_response_that_arrived_whole_frees_everything_with_its_head() {
    use crate::activator::{HeldTotal, Queue};
    use crate::balance::{Address, Endpoint};
    use crate::body::{Guards, ResponseBody, Source};
    use crate::metrics::{BackendMetrics, Metrics};
    use std::sync::atomic::Ordering;
    // The request's method, the answer, and the plain body expected (`None`: still upstream).
    type Case = (Method, &'static [u8], Option<&'static [u8]>);
    let cases: [Case; 5] = [
        (Method::GET, b"HTTP/1.1 204 No Content\r\n\r\n", Some(b"")),
        (
            Method::GET,
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            Some(b""),
        ),
        (
            Method::HEAD,
            b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n",
            Some(b""),
        ),
        (
            Method::GET,
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            Some(b"ok"),
        ),
        (
            Method::GET,
            b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nok",
            None,
        ),
    ];
    let metrics = Metrics::new(prometheus::Registry::new()).expect("fresh registry");
    let queue = std::sync::Arc::new(Queue::new(
        std::sync::Arc::new(BackendMetrics::new(&metrics, "ns/h1")),
        HeldTotal::new(usize::MAX),
    ));
    for (method, answer, plain) in cases {
        let (conn, mut server) = pair().await;
        // One endpoint per case: the pool is keyed by endpoint.
        let endpoint = Endpoint::new(Address::Socket("127.0.0.1:9".parse().expect("address")));
        let slot = queue
            .try_admit(std::slice::from_ref(&endpoint), 0, &[])
            .expect("a slot");
        let mut req = request(method.clone(), empty());
        let exchange = tokio::spawn(async move {
            let Ok(Exchange::Response(response)) =
                send(conn, &mut req, false, false, false, &Forwarding::NONE).await
            else {
                panic!("a response")
            };
            response
        });
        read_until(&mut server, b"\r\n\r\n").await;
        server.write_all(answer).await.expect("write");
        let response = exchange.await.expect("exchange ran");
        let (_, body) = response.into_parts();
        let guards = Guards {
            slot,
            counted: None,
        };
        let body = ResponseBody::upstream(Source::H1(body), guards, None, None);
        let what = String::from_utf8_lossy(answer);
        let pooled = crate::upstream::checkout(&endpoint, sluice_xds::Protocol::Http1).is_some();
        match plain {
            Some(want) => {
                let got = match &body {
                    ResponseBody::Full(bytes) => bytes.clone().unwrap_or_default(),
                    _ => panic!("{method} {what}: not a plain body"),
                };
                assert_eq!(&got[..], want, "{method} {what}");
                assert_eq!(endpoint.in_flight.load(Ordering::SeqCst), 0, "slot freed");
                assert!(
                    pooled,
                    "{method} {what}: the connection is back in the pool"
                );
            }
            None => {
                assert!(matches!(body, ResponseBody::Upstream(_)), "{what}");
                assert_eq!(endpoint.in_flight.load(Ordering::SeqCst), 1, "slot held");
                assert!(!pooled, "{what}: the connection is still reading");
            }
        }
    }
}

/// Parses `input` as one head, fields kept as lines where the head allows it.
fn parse_kept(input: &[u8]) -> Result<Option<Head>, FrameError> {
    let options = HeadOptions {
        head_request: false,
        keep_lines: true,
    };
    parse_head(&mut BytesMut::from(input), options)
}

fn parse_mapped(input: &[u8]) -> Result<Option<Head>, FrameError> {
    parse_head(&mut BytesMut::from(input), HeadOptions::default())
}

#[test]
fn a_plain_head_keeps_its_fields_as_lines_and_any_other_builds_a_map() {
    // Name, head, whether its fields are kept as lines.
    let cases: &[(&str, &[u8], bool)] = &[
        (
            "plain",
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 0\r\ndate: x\r\n\r\n",
            true,
        ),
        (
            "case and spaces as sent",
            b"HTTP/1.1 404 Not Found\r\nContent-Length:  2 \r\nX-A: b\r\n\r\n",
            true,
        ),
        (
            "bare LF lines",
            b"HTTP/1.1 200 OK\nx-a: b\nset-cookie: 1\nset-cookie: 2\n\n",
            true,
        ),
        (
            "304 keeps its length",
            b"HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n",
            true,
        ),
        (
            "connection",
            b"HTTP/1.1 200 OK\r\nConnection: x-a\r\nx-a: b\r\n\r\n",
            false,
        ),
        (
            "keep-alive",
            b"HTTP/1.1 200 OK\r\nkeep-alive: timeout=5\r\n\r\n",
            false,
        ),
        (
            "proxy-connection",
            b"HTTP/1.1 200 OK\r\nproxy-connection: close\r\n\r\n",
            false,
        ),
        ("upgrade", b"HTTP/1.1 200 OK\r\nupgrade: h2c\r\n\r\n", false),
        (
            "trailer",
            b"HTTP/1.1 200 OK\r\ntrailer: x\r\ncontent-length: 0\r\n\r\n",
            false,
        ),
        ("te", b"HTTP/1.1 200 OK\r\nTE: trailers\r\n\r\n", false),
        (
            "chunked",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            false,
        ),
        (
            "204 drops its length",
            b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n",
            false,
        ),
        (
            "interim",
            b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n",
            false,
        ),
    ];
    for (name, input, kept) in cases {
        let mapped = parse_mapped(input).expect(name).expect(name);
        let head = parse_kept(input).expect(name).expect(name);
        assert_eq!(head.lines.is_some(), *kept, "{name}");
        let mut fields = head.headers;
        if let Some(lines) = &head.lines {
            assert!(
                fields.is_empty(),
                "{name}: fields both as lines and in the map"
            );
            lines.append_to(&mut fields);
        }
        assert_eq!(fields, mapped.headers, "{name}");
        assert_eq!(head.framing, mapped.framing, "{name}");
    }
    let head = parse_kept(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nDATE: x\r\n\r\n")
        .expect("parses")
        .expect("whole");
    let lines = head.lines.expect("plain");
    assert_eq!((lines.date(), lines.content_length()), (true, Some(12)));
    let fields: Vec<_> = lines.iter().collect();
    assert_eq!(
        fields,
        [(&b"Content-Length"[..], &b"12"[..]), (b"DATE", b"x")]
    );
    assert_eq!(
        lines.encoded_len(),
        "Content-Length: 12\r\nDATE: x\r\n".len()
    );
    let lines = parse_kept(b"HTTP/1.1 200 OK\r\nx: y\r\n\r\n")
        .expect("parses")
        .expect("whole")
        .lines
        .expect("plain");
    assert_eq!((lines.date(), lines.content_length()), (false, None));
}

/// Lines skip the header map's own checks of names and values: httparse must refuse every
/// byte the map would, and no other.
#[test]
fn httparse_and_http_accept_the_same_bytes() {
    for byte in 0..=255u8 {
        let mut name = b"HTTP/1.1 200 OK\r\nx".to_vec();
        name.extend_from_slice(&[byte, b'y']);
        name.extend_from_slice(b": v\r\n\r\n");
        let mut value = b"HTTP/1.1 200 OK\r\nx: a".to_vec();
        value.extend_from_slice(&[byte, b'b']);
        value.extend_from_slice(b"\r\n\r\n");
        for input in [name, value] {
            let mapped = parse_mapped(&input).map(|h| h.map(|h| h.headers));
            let kept = parse_kept(&input).map(|h| {
                h.map(|h| {
                    let mut fields = h.headers;
                    if let Some(lines) = &h.lines {
                        lines.append_to(&mut fields);
                    }
                    fields
                })
            });
            assert_eq!(mapped, kept, "byte {byte:#04x} in {input:?}");
        }
    }
}

/// Kept lines go out as `name: value` CRLF lines: copied whole where the upstream wrote them
/// so, rebuilt field by field where it did not (bare LF, other spacing).
#[test]
fn kept_lines_are_written_as_crlf_lines_whatever_their_spacing() {
    let cases: &[(&[u8], &[u8])] = &[
        (
            b"HTTP/1.1 200 OK\r\nA: 1\r\nb-c: x y\r\n\r\n",
            b"A: 1\r\nb-c: x y\r\n",
        ),
        (b"HTTP/1.1 200 OK\nA: 1\nb: 2\n\n", b"A: 1\r\nb: 2\r\n"),
        (
            b"HTTP/1.1 200 OK\r\nA:1\r\nb:   2  \r\n\r\n",
            b"A: 1\r\nb: 2\r\n",
        ),
        (
            b"HTTP/1.1 200 OK\r\nA: 1\nb: 2\r\n\r\n",
            b"A: 1\r\nb: 2\r\n",
        ),
        (b"HTTP/1.1 200 OK\r\nA: 1 \r\n\r\n", b"A: 1\r\n"),
        (b"HTTP/1.1 200 OK\nA: 1\n\n", b"A: 1\r\n"),
        (b"HTTP/1.1 200 OK\r\n\r\n", b""),
    ];
    for (input, want) in cases {
        let lines = parse_kept(input)
            .expect("parses")
            .expect("whole")
            .lines
            .expect("plain");
        let mut out = Vec::new();
        lines.write_to(&mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(want),
            "{}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(lines.encoded_len(), want.len());
    }
}
