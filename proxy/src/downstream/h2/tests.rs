use super::state::content_length;
use super::*;
use h2::RecvStream;
use http::{HeaderName, Method, StatusCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Every wait in these tests is bounded by this.
const BOUND: Duration = Duration::from_secs(10);

fn limits() -> Limits {
    Limits {
        max_header_list: 16 * 1024,
        max_concurrent_streams: 100,
        max_send_buffer: 64 * 1024,
        stream_window: 64 * 1024,
        connection_window: 1024 * 1024,
        max_local_error_resets: 1024,
        premature_reset_streams: 500,
        premature_reset_lifetime: Duration::from_secs(1),
        keepalive: None,
        keepalive_timeout: Duration::from_secs(20),
    }
}

/// Serves one connection on 127.0.0.1 with `service` and returns an h2 client for it.
async fn client_of<S, F>(service: S) -> h2::client::SendRequest<Bytes>
where
    S: FnMut(Request<ClientBody>) -> F + Unpin + Send + 'static,
    F: Future<Output = Response<ResponseBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bound");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.expect("accepted");
        Settings::new(&limits())
            .serve(socket, Streams::new(), service)
            .await;
    });
    let socket = TcpStream::connect(addr).await.expect("connected");
    let (send, connection) = h2::client::handshake(socket).await.expect("handshake");
    tokio::spawn(connection);
    send
}

fn get(path: &str) -> Request<()> {
    Request::builder()
        .uri(format!("http://h2.example{path}"))
        .body(())
        .expect("request")
}

/// Sends `req` with no body and waits for the response head.
async fn head_of(
    client: &mut h2::client::SendRequest<Bytes>,
    req: Request<()>,
) -> Response<RecvStream> {
    let (response, _) = client.send_request(req, true).expect("sent");
    tokio::time::timeout(BOUND, response)
        .await
        .expect("in time")
        .expect("a response")
}

async fn read_body(body: &mut RecvStream) -> Vec<u8> {
    let mut got = Vec::new();
    while let Some(chunk) = tokio::time::timeout(BOUND, body.data())
        .await
        .expect("in time")
    {
        let chunk = chunk.expect("data");
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    got
}

/// What HTTP/2 forbids in a response (RFC 9113 §8.2.2).
const HTTP1_CONNECTION_HEADERS: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
];

#[tokio::test]
async fn a_response_gets_date_and_length_and_loses_http1_connection_headers() {
    let mut client = client_of(|_req| async {
        let mut response = Response::new(ResponseBody::full("hello"));
        let headers = response.headers_mut();
        for (name, value) in [
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
            ("x-kept", "1"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        response
    })
    .await;
    let response = head_of(&mut client, get("/")).await;
    let headers = response.headers();
    for gone in HTTP1_CONNECTION_HEADERS {
        assert!(!headers.contains_key(gone), "{gone} in {headers:?}");
    }
    assert_eq!(headers["x-kept"], "1");
    assert_eq!(headers[header::CONTENT_LENGTH], "5");
    let date = headers[header::DATE].to_str().expect("text");
    assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
    let mut body = response.into_body();
    assert_eq!(read_body(&mut body).await, b"hello");
}

/// Each HTTP/1 connection header alone is found and removed (h2 would refuse the whole response
/// for it), and a name of the same length that is none of them is kept.
#[tokio::test]
async fn each_http1_connection_header_alone_is_removed() {
    for name in HTTP1_CONNECTION_HEADERS {
        let lookalike = "x".repeat(name.len());
        let mut client = client_of(move |_req| {
            let lookalike = lookalike.clone();
            async move {
                let mut response = Response::new(ResponseBody::full("hello"));
                let headers = response.headers_mut();
                headers.insert(name, HeaderValue::from_static("close"));
                headers.insert(
                    HeaderName::from_bytes(lookalike.as_bytes()).expect("name"),
                    HeaderValue::from_static("kept"),
                );
                response
            }
        })
        .await;
        let response = head_of(&mut client, get("/")).await;
        let headers = response.headers();
        assert!(!headers.contains_key(name), "{name} in {headers:?}");
        assert_eq!(headers[&"x".repeat(name.len())], "kept");
    }
}

#[tokio::test]
async fn a_date_from_upstream_is_kept() {
    let mut client = client_of(|_req| async {
        let mut response = Response::new(ResponseBody::empty());
        response.headers_mut().insert(
            header::DATE,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        response
    })
    .await;
    let response = head_of(&mut client, get("/")).await;
    assert_eq!(
        response.headers().get_all(header::DATE).iter().count(),
        1,
        "{:?}",
        response.headers()
    );
    assert_eq!(
        response.headers()[header::DATE],
        "Sun, 06 Nov 1994 08:49:37 GMT"
    );
}

#[tokio::test]
async fn a_request_body_carries_its_length_to_the_service() {
    let mut client = client_of(|req: Request<ClientBody>| {
        let exact = req.body().size_hint().exact();
        async move {
            let body = http_body_util::BodyExt::collect(req.into_body())
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let mut response = Response::new(ResponseBody::full(body));
            let told = HeaderValue::from_str(&format!("{exact:?}")).expect("value");
            response.headers_mut().insert("x-size-hint", told);
            response
        }
    })
    .await;
    let req = Request::builder()
        .method(Method::POST)
        .uri("http://h2.example/echo")
        .header(header::CONTENT_LENGTH, "5")
        .body(())
        .expect("request");
    let (response, mut send) = client.send_request(req, false).expect("sent");
    send.send_data(Bytes::from_static(b"hello"), true)
        .expect("body sent");
    let response = tokio::time::timeout(BOUND, response)
        .await
        .expect("in time")
        .expect("a response");
    assert_eq!(response.headers()["x-size-hint"], "Some(5)");
    let mut body = response.into_body();
    assert_eq!(read_body(&mut body).await, b"hello");
}

#[tokio::test]
async fn differing_content_lengths_are_refused_before_the_service() {
    let called = Arc::new(AtomicUsize::new(0));
    let calls = called.clone();
    let mut client = client_of(move |_req| {
        calls.fetch_add(1, Ordering::Relaxed);
        async { Response::new(ResponseBody::empty()) }
    })
    .await;
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("http://h2.example/")
        .body(())
        .expect("request");
    req.headers_mut()
        .append(header::CONTENT_LENGTH, HeaderValue::from_static("1"));
    req.headers_mut()
        .append(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
    let (response, mut send) = client.send_request(req, false).expect("sent");
    let _ = send.send_data(Bytes::from_static(b"x"), true);
    let error = tokio::time::timeout(BOUND, response)
        .await
        .expect("in time")
        .expect_err("refused");
    assert_eq!(error.reason(), Some(Reason::PROTOCOL_ERROR), "{error}");
    // The same length twice is one length.
    let mut req = get("/");
    req.headers_mut()
        .append(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    req.headers_mut()
        .append(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    let response = head_of(&mut client, req).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(called.load(Ordering::Relaxed), 1);
}

#[test]
fn content_length_reads_one_length_or_refuses() {
    let mut headers = HeaderMap::new();
    assert_eq!(content_length(&headers), Ok(None));
    headers.append(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
    assert_eq!(content_length(&headers), Ok(Some(12)));
    headers.append(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
    assert_eq!(content_length(&headers), Ok(Some(12)));
    let mut signed = headers.clone();
    signed.append(header::CONTENT_LENGTH, HeaderValue::from_static("+12"));
    assert_eq!(content_length(&signed), Err("bad content-length"));
    headers.append(header::CONTENT_LENGTH, HeaderValue::from_static("13"));
    assert_eq!(content_length(&headers), Err("content-lengths differ"));
    for bad in ["", "-1", "+1", " 1", "1 2", "0x10", "18446744073709551616"] {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static(bad));
        assert_eq!(
            content_length(&headers),
            Err("bad content-length"),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn a_stream_reset_by_the_client_drops_its_waiting_response() {
    let (dropped_tx, dropped_rx) = oneshot::channel::<()>();
    let mut dropped_tx = Some(dropped_tx);
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let mut started_tx = Some(started_tx);
    let mut client = client_of(move |_req| {
        // Held by the future: its receiver sees it go when the future is dropped.
        let held = dropped_tx.take();
        let started = started_tx.take();
        async move {
            let _held = held;
            if let Some(started) = started {
                let _ = started.send(());
            }
            std::future::pending::<()>().await;
            Response::new(ResponseBody::empty())
        }
    })
    .await;
    let (response, mut send) = client.send_request(get("/wait"), false).expect("sent");
    tokio::time::timeout(BOUND, started_rx)
        .await
        .expect("in time")
        .expect("the service ran");
    send.send_reset(Reason::CANCEL);
    drop(response);
    // The sender side is dropped, not sent: the receiver resolves with an error.
    let gone = tokio::time::timeout(BOUND, dropped_rx)
        .await
        .expect("the waiting future was dropped in time");
    assert!(gone.is_err());
}

/// Serves `connection` until `shutdown` fires, then shuts it down gracefully and waits for it
/// to end.
async fn serve_until<S, F>(connection: Connection<TcpStream, S, F>, shutdown: oneshot::Receiver<()>)
where
    S: FnMut(Request<ClientBody>) -> F + Unpin,
    F: Future<Output = Response<ResponseBody>> + Send + 'static,
{
    tokio::pin!(connection);
    tokio::select! {
        () = connection.as_mut() => panic!("closed before the shutdown"),
        _ = shutdown => {}
    }
    connection.as_mut().get_mut().graceful_shutdown();
    connection.await;
}

#[tokio::test]
async fn graceful_shutdown_serves_the_open_stream_then_closes() {
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let mut release_rx = Some(release_rx);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bound");
    let addr = listener.local_addr().expect("address");
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let mut started_tx = Some(started_tx);
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.expect("accepted");
        let connection = Settings::new(&limits()).serve(socket, Streams::new(), move |_req| {
            let release = release_rx.take();
            let started = started_tx.take();
            async move {
                if let Some(started) = started {
                    let _ = started.send(());
                }
                if let Some(release) = release {
                    let _ = release.await;
                }
                Response::new(ResponseBody::full("done"))
            }
        });
        serve_until(connection, shutdown_rx).await;
    });
    let socket = TcpStream::connect(addr).await.expect("connected");
    let (mut client, connection) = h2::client::handshake(socket).await.expect("handshake");
    let client_connection = tokio::spawn(connection);
    let (response, _) = client.send_request(get("/slow"), true).expect("sent");
    tokio::time::timeout(BOUND, started_rx)
        .await
        .expect("in time")
        .expect("the service ran");
    shutdown_tx.send(()).expect("server waiting");
    // The stream opened before the GOAWAY is still answered.
    tokio::time::sleep(Duration::from_millis(100)).await;
    release_tx.send(()).expect("service waiting");
    let response = tokio::time::timeout(BOUND, response)
        .await
        .expect("in time")
        .expect("a response");
    let mut body = response.into_body();
    assert_eq!(read_body(&mut body).await, b"done");
    drop(client);
    tokio::time::timeout(BOUND, server)
        .await
        .expect("the server's connection ended")
        .expect("no panic");
    let _ = tokio::time::timeout(BOUND, client_connection).await;
}

/// Six streams at once each send 1 MiB and get it back: both directions pass through the
/// windows (ours: 64 KiB per stream and 1 MiB per connection; the client's: 64 KiB) and the
/// write buffer's high water many times, and every body arrives whole, in order, on its own
/// stream.
#[tokio::test]
async fn megabytes_cross_the_windows_both_ways_on_many_streams() {
    let client = client_of(|req: Request<ClientBody>| async move {
        let body = http_body_util::BodyExt::collect(req.into_body())
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Response::new(ResponseBody::full(body))
    })
    .await;
    let exchanges = (0..6u8).map(|i| {
        let mut client = client.clone();
        async move {
            let sent: Vec<u8> = (0..1024 * 1024).map(|n: u32| (n % 251) as u8 ^ i).collect();
            let req = Request::builder()
                .method(Method::POST)
                .uri("http://h2.example/echo")
                .body(())
                .expect("request");
            let (response, mut send) = client.send_request(req, false).expect("sent");
            send.send_data(Bytes::from(sent.clone()), true)
                .expect("body queued");
            let response = tokio::time::timeout(BOUND, response)
                .await
                .expect("in time")
                .expect("a response");
            let mut body = response.into_body();
            assert!(read_body(&mut body).await == sent, "stream {i}'s echo");
        }
    });
    futures_util::future::join_all(exchanges).await;
}

/// A raw client's frames, as (type, flags, stream, payload), read until `done` says stop or the
/// connection closes; the `bool` says whether it closed.
async fn read_frames(
    socket: &mut TcpStream,
    buf: &mut BytesMut,
    mut done: impl FnMut(&[(u8, u8, u32, Bytes)]) -> bool,
) -> (Vec<(u8, u8, u32, Bytes)>, bool) {
    use crate::h2c::frame::{Head, HEAD_LEN};
    let mut frames = Vec::new();
    loop {
        while buf.len() >= HEAD_LEN {
            let mut raw = [0; HEAD_LEN];
            raw.copy_from_slice(&buf[..HEAD_LEN]);
            let head = Head::parse(&raw);
            if buf.len() < HEAD_LEN + head.len as usize {
                break;
            }
            buf.advance(HEAD_LEN);
            let payload = buf.split_to(head.len as usize).freeze();
            frames.push((head.kind, head.flags, head.stream, payload));
            if done(&frames) {
                return (frames, false);
            }
        }
        let read = tokio::time::timeout(BOUND, socket.read_buf(buf))
            .await
            .expect("the server wrote or closed in time")
            .expect("read");
        if read == 0 {
            return (frames, true);
        }
    }
}

fn goaway_ids(frames: &[(u8, u8, u32, Bytes)]) -> Vec<u32> {
    use crate::h2c::frame::GOAWAY;
    frames
        .iter()
        .filter(|f| f.0 == GOAWAY)
        .map(|f| u32::from_be_bytes([f.3[0], f.3[1], f.3[2], f.3[3]]))
        .collect()
}

/// The race the two-step GOAWAY exists for: a stream the client sends after the server's
/// shutdown began, but before it read the GOAWAY, is served, not refused. This client never
/// answers the PING, so the final GOAWAY comes after `SHUTDOWN_ACK_BOUND`, naming that stream.
#[tokio::test]
async fn a_stream_crossing_the_first_goaway_is_served_and_the_final_one_follows_without_an_ack() {
    use crate::h2c::frame::{self, END_HEADERS, END_STREAM, HEADERS, PING};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bound");
    let addr = listener.local_addr().expect("address");
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.expect("accepted");
        let connection = Settings::new(&limits()).serve(socket, Streams::new(), |_req| async {
            Response::new(ResponseBody::full("done"))
        });
        serve_until(connection, shutdown_rx).await;
    });
    let request = |id: u32| {
        let mut block = BytesMut::new();
        for (name, value) in [
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "h2.example"),
            (":path", "/"),
        ] {
            crate::h2c::hpack::encode(name.as_bytes(), value.as_bytes(), false, &mut block);
        }
        let mut out = BytesMut::new();
        frame::put_head(&mut out, block.len(), HEADERS, END_HEADERS | END_STREAM, id);
        out.extend_from_slice(&block);
        out
    };
    let mut socket = TcpStream::connect(addr).await.expect("connected");
    let mut hello = BytesMut::from(frame::PREFACE);
    frame::put_settings(&mut hello, &[]);
    hello.extend_from_slice(&request(1));
    socket.write_all(&hello).await.expect("sent");
    let mut buf = BytesMut::new();
    let has_response = |id: u32| {
        move |frames: &[(u8, u8, u32, Bytes)]| {
            frames.iter().any(|f| f.2 == id && f.1 & END_STREAM != 0)
        }
    };
    read_frames(&mut socket, &mut buf, has_response(1)).await;
    shutdown_tx.send(()).expect("server waiting");
    let (frames, _) = read_frames(&mut socket, &mut buf, |frames| {
        frames.iter().any(|f| f.0 == PING && f.1 & frame::ACK == 0)
    })
    .await;
    assert_eq!(
        goaway_ids(&frames),
        vec![0x7fff_ffff],
        "the notice refuses nothing"
    );
    let asked = Instant::now();
    socket.write_all(&request(3)).await.expect("sent");
    let (frames, closed) = read_frames(&mut socket, &mut buf, |_| false).await;
    assert!(closed, "the connection closes once its streams are done");
    assert!(
        frames.iter().any(|f| f.0 == HEADERS && f.2 == 3),
        "stream 3 got its answer"
    );
    assert_eq!(goaway_ids(&frames), vec![3], "the final GOAWAY names it");
    assert!(
        asked.elapsed() >= SHUTDOWN_ACK_BOUND - Duration::from_millis(100),
        "without the ACK, the final GOAWAY waited for the bound"
    );
    tokio::time::timeout(BOUND, server)
        .await
        .expect("the server's connection ended")
        .expect("no panic");
}
