use super::*;
use crate::activator::{HeldTotal, Queue};
use crate::balance::{Address, Endpoint};
use crate::body::{Guards, ResponseBody, Source};
use crate::metrics::{BackendMetrics, Metrics};
use h2::RecvStream;
use http::HeaderMap;
use http_body_util::{BodyExt, Full, StreamBody};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Every wait in these tests is bounded by this.
const BOUND: Duration = Duration::from_secs(10);

fn full(bytes: &'static [u8]) -> impl Body<Data = Bytes, Error = RequestBodyError> + Unpin {
    Full::new(Bytes::from_static(bytes)).map_err(|never| match never {})
}

fn grpc_trailers() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    trailers
}

fn request<B>(body: B) -> Request<B> {
    let mut req = Request::new(body);
    *req.method_mut() = Method::POST;
    *req.uri_mut() = http::Uri::from_static("http://upstream.example/echo");
    req
}

/// An h2 server on 127.0.0.1 that answers each stream with `reply`; returns its address.
async fn server<F, Fut>(reply: F) -> std::net::SocketAddr
where
    F: Fn(Request<RecvStream>, h2::server::SendResponse<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    server_with(h2::server::Builder::new(), reply).await
}

/// [`server`] with the h2 server's settings given.
async fn server_with<F, Fut>(builder: h2::server::Builder, reply: F) -> std::net::SocketAddr
where
    F: Fn(Request<RecvStream>, h2::server::SendResponse<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bound");
    let addr = listener.local_addr().expect("address");
    let reply = Arc::new(reply);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let reply = reply.clone();
            let builder = builder.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = builder.handshake::<_, Bytes>(socket).await else {
                    return;
                };
                while let Some(Ok((req, respond))) = conn.accept().await {
                    tokio::spawn(reply(req, respond));
                }
            });
        }
    });
    addr
}

/// Echoes the request body as one DATA frame, then `grpc-status: 0` trailers (a gRPC unary
/// reply: message and trailers written together).
async fn echo_unary(req: Request<RecvStream>, mut respond: h2::server::SendResponse<Bytes>) {
    let mut body = req.into_body();
    let mut got = Vec::new();
    while let Some(Ok(data)) = body.data().await {
        let _ = body.flow_control().release_capacity(data.len());
        got.extend_from_slice(&data);
    }
    let Ok(mut send) = respond.send_response(Response::new(()), false) else {
        return;
    };
    let _ = send.send_data(Bytes::from(got), false);
    let _ = send.send_trailers(grpc_trailers());
}

/// Sends `req` and expects a response head within [`BOUND`].
async fn response_to<B>(sender: &mut Sender, req: Request<B>) -> Response<RecvBody>
where
    B: Body<Data = Bytes, Error = RequestBodyError> + Unpin + Send + 'static,
{
    match tokio::time::timeout(BOUND, sender.send(req)).await {
        Ok(Ok(response)) => response,
        Ok(Err(_)) => panic!("a response"),
        Err(_) => panic!("no response head in time"),
    }
}

async fn connect(addr: std::net::SocketAddr) -> Sender {
    let io = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connected");
    Sender::handshake(io)
}

#[tokio::test]
async fn unary_call_comes_back_with_its_trailers() {
    let mut sender = connect(server(echo_unary).await).await;
    let response = response_to(&mut sender, request(full(b"hello"))).await;
    assert_eq!(response.status(), 200);
    let collected = tokio::time::timeout(BOUND, response.into_body().collect())
        .await
        .expect("body in time")
        .expect("body");
    assert_eq!(collected.trailers(), Some(&grpc_trailers()));
    assert_eq!(&collected.to_bytes()[..], b"hello");
}

/// The response head arrives before the request body is complete (a bidi stream): the body
/// keeps flowing after `send` returns.
#[tokio::test]
async fn request_body_still_streaming_after_the_response_head_keeps_flowing() {
    let addr = server(|req, mut respond| async move {
        let Ok(mut send) = respond.send_response(Response::new(()), false) else {
            return;
        };
        let mut body = req.into_body();
        while let Some(Ok(data)) = body.data().await {
            let _ = body.flow_control().release_capacity(data.len());
            let _ = send.send_data(data, false);
        }
        let _ = send.send_trailers(grpc_trailers());
    })
    .await;
    let mut sender = connect(addr).await;
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, RequestBodyError>>(1);
    let body = StreamBody::new(tokio_stream_from(rx));
    tx.send(Ok(Frame::data(Bytes::from_static(b"one"))))
        .await
        .expect("queued");
    let response = response_to(&mut sender, request(body)).await;
    let mut reply = response.into_body();
    let first = tokio::time::timeout(BOUND, reply.frame())
        .await
        .expect("first echo in time")
        .expect("a frame")
        .expect("no error");
    assert_eq!(first.into_data().ok().as_deref(), Some(&b"one"[..]));
    // Sent only now, after `send` returned: the spawned pipe carries it.
    tx.send(Ok(Frame::data(Bytes::from_static(b"two"))))
        .await
        .expect("queued");
    drop(tx);
    let rest = tokio::time::timeout(BOUND, reply.collect())
        .await
        .expect("rest in time")
        .expect("rest");
    assert_eq!(rest.trailers(), Some(&grpc_trailers()));
    assert_eq!(&rest.to_bytes()[..], b"two");
}

/// A stream the server resets while the client's body is quiet (after the response head,
/// so the body goes on in its own task) lets go of that body at once, not when the client
/// next sends: the client's stream is told then, and nothing is held for it meanwhile.
#[tokio::test]
async fn a_reset_stream_lets_go_of_a_quiet_request_body_at_once() {
    let addr = server(|_req, mut respond| async move {
        let Ok(mut send) = respond.send_response(Response::new(()), false) else {
            return;
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        send.send_reset(h2::Reason::CANCEL);
    })
    .await;
    let mut sender = connect(addr).await;
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, RequestBodyError>>(1);
    tx.send(Ok(Frame::data(Bytes::from_static(b"one"))))
        .await
        .expect("queued");
    let response = response_to(&mut sender, request(StreamBody::new(tokio_stream_from(rx)))).await;
    let reply = tokio::time::timeout(BOUND, response.into_body().collect())
        .await
        .expect("the reset in time");
    assert!(reply.is_err(), "the stream was reset");
    tokio::time::timeout(BOUND, tx.closed())
        .await
        .expect("the request body was let go while the client sent nothing");
}

/// A body whose chunks come from a channel.
fn tokio_stream_from(
    mut rx: mpsc::Receiver<Result<Frame<Bytes>, RequestBodyError>>,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, RequestBodyError>> + Unpin {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A connection the server has closed takes no new stream: the request comes back unsent,
/// for another connection.
#[tokio::test]
async fn a_closed_connection_gives_the_request_back() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bound");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        if let Ok((socket, _)) = listener.accept().await {
            // Handshake, then close at once.
            drop(h2::server::handshake(socket).await);
        }
    });
    let mut sender = connect(addr).await;
    let deadline = tokio::time::Instant::now() + BOUND;
    while !sender.is_closed() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the connection task saw the close"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    match tokio::time::timeout(BOUND, sender.send(request(full(b"again"))))
        .await
        .expect("answer in time")
    {
        Err(Ok(Unsent(req, _))) => assert_eq!(req.uri().path(), "/echo"),
        Err(Err(e)) => panic!("sent, then failed: {e}"),
        Ok(_) => panic!("a response from a closed connection"),
    }
}

/// A server going away gracefully (GOAWAY) keeps the connection open for the stream it still
/// serves, but takes no new one: the connection counts as closed for the pool at once (so the
/// retry opens a new one), a request comes back unsent, and the stream in progress goes on.
#[tokio::test]
async fn a_connection_going_away_is_closed_for_new_requests_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bound");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let Ok((socket, _)) = listener.accept().await else {
            return;
        };
        let Ok(mut conn) = h2::server::handshake(socket).await else {
            return;
        };
        // The first stream is answered only after the GOAWAY is out.
        let Some(Ok((req, mut respond))) = conn.accept().await else {
            return;
        };
        conn.graceful_shutdown();
        let serve = async move {
            let mut body = req.into_body();
            while let Some(Ok(data)) = body.data().await {
                let _ = body.flow_control().release_capacity(data.len());
            }
            if let Ok(mut send) = respond.send_response(Response::new(()), false) {
                let _ = send.send_data(Bytes::from_static(b"last"), true);
            }
        };
        let drive = async move { while conn.accept().await.is_some() {} };
        tokio::join!(serve, drive);
    });
    let mut sender = connect(addr).await;
    let mut first = sender.clone();
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, RequestBodyError>>(1);
    let open_body = StreamBody::new(tokio_stream_from(rx));
    let held = tokio::spawn(async move {
        let response = first.send(request(open_body)).await.ok()?;
        response.into_body().collect().await.ok()
    });
    let deadline = tokio::time::Instant::now() + BOUND;
    while !sender.is_closed() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the GOAWAY reached the client"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    match tokio::time::timeout(BOUND, sender.send(request(full(b"again"))))
        .await
        .expect("answer in time")
    {
        Err(Ok(Unsent(..))) => {}
        Err(Err(e)) => panic!("sent, then failed: {e}"),
        Ok(_) => panic!("a response from a connection going away"),
    }
    // The stream the server kept still completes.
    drop(tx);
    let body = tokio::time::timeout(BOUND, held)
        .await
        .expect("held stream answered in time")
        .expect("task ran")
        .expect("the held stream was served");
    assert_eq!(&body.to_bytes()[..], b"last");
}

/// A gRPC reply's trailers arrive with its message: the response body hands both over with
/// no pump task, and gives its slot back as soon as the upstream has sent everything.
#[tokio::test]
async fn reply_that_has_fully_arrived_needs_no_pump() {
    let mut sender = connect(server(echo_unary).await).await;
    let response = response_to(&mut sender, request(full(b"ping"))).await;
    let metrics = Metrics::new(prometheus::Registry::new()).expect("fresh registry");
    let queue = Arc::new(Queue::new(
        Arc::new(BackendMetrics::new(&metrics, "ns/grpc")),
        HeldTotal::new(usize::MAX),
    ));
    let endpoint = Endpoint::new(Address::Socket("127.0.0.1:9".parse().expect("address")));
    let slot = queue
        .try_admit(std::slice::from_ref(&endpoint), 0, &[])
        .expect("a slot");
    // A second call on the same connection as a barrier: the server wrote the first reply's
    // trailers before it read this call, and h2 reads frames in order, so once this reply is
    // in, the first one's trailers have reached its stream.
    let barrier = response_to(&mut sender, request(full(b"barrier"))).await;
    tokio::time::timeout(BOUND, barrier.into_body().collect())
        .await
        .expect("barrier body in time")
        .expect("barrier body");
    let (parts, body) = response.into_parts();
    let guards = Guards {
        slot,
        counted: None,
    };
    let mut body = ResponseBody::upstream(
        Source::H2(body),
        guards,
        None,
        Some(Duration::from_secs(60)),
    );
    assert_eq!(parts.status, 200);
    let first = tokio::time::timeout(BOUND, body.frame())
        .await
        .expect("message in time")
        .expect("a frame")
        .expect("no error");
    assert_eq!(first.into_data().ok().as_deref(), Some(&b"ping"[..]));
    assert!(
        matches!(body, ResponseBody::Upstream(_)),
        "still read in place, not through a pump"
    );
    assert_eq!(
        endpoint.in_flight.load(Ordering::SeqCst),
        0,
        "the slot is free once everything has arrived"
    );
    assert!(!body.is_end_stream(), "the trailers are still to come");
    let trailers = tokio::time::timeout(BOUND, body.frame())
        .await
        .expect("trailers in time")
        .expect("a frame")
        .expect("no error");
    assert_eq!(trailers.into_trailers().ok(), Some(grpc_trailers()));
    assert!(body.is_end_stream());
}

/// A hand-driven HTTP/2 server on 127.0.0.1 for what no real server sends: it reads the
/// client's preface and frames, and writes whatever the test gives it.
struct RawServer {
    io: tokio::net::TcpStream,
    buf: bytes::BytesMut,
}

/// A frame as the raw server read it.
#[derive(Debug)]
struct RawFrame {
    head: frame::Head,
    payload: Bytes,
}

impl RawServer {
    /// Listens, and returns the address and the server once a client connects (after its
    /// preface).
    async fn listen() -> (std::net::SocketAddr, tokio::task::JoinHandle<RawServer>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bound");
        let addr = listener.local_addr().expect("address");
        let accept = tokio::spawn(async move {
            let (io, _) = listener.accept().await.expect("a client");
            let mut server = RawServer {
                io,
                buf: bytes::BytesMut::new(),
            };
            let preface = server.read_exact(frame::PREFACE.len()).await;
            assert_eq!(&preface[..], frame::PREFACE);
            server
        });
        (addr, accept)
    }

    async fn read_exact(&mut self, n: usize) -> Bytes {
        use tokio::io::AsyncReadExt;
        while self.buf.len() < n {
            let read = tokio::time::timeout(BOUND, self.io.read_buf(&mut self.buf))
                .await
                .expect("client wrote in time")
                .expect("read");
            if read == 0 {
                panic!("the client closed the connection");
            }
        }
        self.buf.split_to(n).freeze()
    }

    /// The client's next frame, or `None` if it closed the connection.
    async fn frame(&mut self) -> Option<RawFrame> {
        use tokio::io::AsyncReadExt;
        while self.buf.len() < frame::HEAD_LEN {
            let read = tokio::time::timeout(BOUND, self.io.read_buf(&mut self.buf))
                .await
                .expect("client wrote in time")
                .ok()?;
            if read == 0 {
                return None;
            }
        }
        let mut raw = [0; frame::HEAD_LEN];
        raw.copy_from_slice(&self.buf[..frame::HEAD_LEN]);
        let head = frame::Head::parse(&raw);
        let all = self.read_exact(frame::HEAD_LEN + head.len as usize).await;
        Some(RawFrame {
            head,
            payload: all.slice(frame::HEAD_LEN..),
        })
    }

    /// Reads frames until one of `kind` comes (SETTINGS are acknowledged on the way).
    async fn until(&mut self, kind: u8) -> RawFrame {
        loop {
            let got = self
                .frame()
                .await
                .expect("the frame before the client closed");
            if got.head.kind == kind {
                return got;
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.io.write_all(bytes).await.expect("written");
    }

    /// Our SETTINGS (with `settings`) and the ACK of the client's.
    async fn settings(&mut self, settings: &[(u16, u32)]) {
        let mut out = bytes::BytesMut::new();
        frame::put_settings(&mut out, settings);
        frame::put_settings_ack(&mut out);
        self.write(&out).await;
    }
}

/// A header block of `fields`, HPACK-encoded.
fn block(fields: &[(&str, &str)]) -> bytes::BytesMut {
    let mut out = bytes::BytesMut::new();
    for (name, value) in fields {
        hpack::encode(name.as_bytes(), value.as_bytes(), false, &mut out);
    }
    out
}

fn headers_frame(stream: u32, fields: &[(&str, &str)], end_stream: bool) -> bytes::BytesMut {
    let block = block(fields);
    let mut out = bytes::BytesMut::new();
    let flags = frame::END_HEADERS | if end_stream { frame::END_STREAM } else { 0 };
    frame::put_head(&mut out, block.len(), frame::HEADERS, flags, stream);
    out.extend_from_slice(&block);
    out
}

fn reset_reason(frame: &RawFrame) -> Reason {
    let code: [u8; 4] = frame.payload[..4].try_into().expect("4 bytes");
    Reason::from(u32::from_be_bytes(code))
}

fn goaway_reason(frame: &RawFrame) -> Reason {
    let code: [u8; 4] = frame.payload[4..8].try_into().expect("8 bytes");
    Reason::from(u32::from_be_bytes(code))
}

/// Sends a bodiless GET on a new connection to the raw server; returns the sender, the
/// pending exchange and the server, past the request's HEADERS.
async fn raw_exchange() -> (
    Sender,
    tokio::task::JoinHandle<Result<Response<RecvBody>, String>>,
    RawServer,
) {
    let (addr, accept) = RawServer::listen().await;
    let sender = connect(addr).await;
    let mut server = accept.await.expect("accepted");
    server.settings(&[]).await;
    let mut client = sender.clone();
    let exchange = tokio::spawn(async move {
        let mut req = Request::new(Full::new(Bytes::new()).map_err(|never| match never {}));
        *req.uri_mut() = http::Uri::from_static("http://upstream.example/raw");
        client.send(req).await.map_err(|e| match e {
            Ok(Unsent(_, e)) => format!("unsent: {e}"),
            Err(e) => e.to_string(),
        })
    });
    let headers = server.until(frame::HEADERS).await;
    assert_eq!(headers.head.stream, 1);
    assert!(headers.head.has(frame::END_STREAM), "a GET has no body");
    (sender, exchange, server)
}

async fn head_of(
    exchange: tokio::task::JoinHandle<Result<Response<RecvBody>, String>>,
) -> Result<Response<RecvBody>, String> {
    tokio::time::timeout(BOUND, exchange)
        .await
        .expect("the exchange ended in time")
        .expect("task ran")
}

#[tokio::test]
async fn data_past_the_content_length_resets_the_stream() {
    let (_sender, exchange, mut server) = raw_exchange().await;
    let head = headers_frame(1, &[(":status", "200"), ("content-length", "3")], false);
    server.write(&head).await;
    let mut data = bytes::BytesMut::new();
    frame::put_data(&mut data, 1, b"four", true);
    server.write(&data).await;
    let reset = server.until(frame::RST_STREAM).await;
    assert_eq!(reset.head.stream, 1);
    assert_eq!(reset_reason(&reset), Reason::PROTOCOL_ERROR);
    let response = head_of(exchange).await.expect("the head came first");
    let error = tokio::time::timeout(BOUND, response.into_body().collect())
        .await
        .expect("body ended in time")
        .expect_err("a body past its length fails");
    assert!(error.to_string().contains("Content-Length"), "{error}");
}

#[tokio::test]
async fn a_frame_larger_than_we_allow_ends_the_connection() {
    let (sender, exchange, mut server) = raw_exchange().await;
    let mut big = bytes::BytesMut::new();
    frame::put_data(&mut big, 1, &vec![0; 16_385], false);
    server.write(&big).await;
    let goaway = server.until(frame::GOAWAY).await;
    assert_eq!(goaway_reason(&goaway), Reason::FRAME_SIZE_ERROR);
    let error = head_of(exchange).await.expect_err("no response");
    assert!(error.contains("frame too large"), "{error}");
    assert!(sender.is_closed());
}

#[tokio::test]
async fn a_continuation_flood_ends_the_connection() {
    let (_sender, exchange, mut server) = raw_exchange().await;
    let mut out = bytes::BytesMut::new();
    let first = block(&[(":status", "200")]);
    frame::put_head(&mut out, first.len(), frame::HEADERS, 0, 1);
    out.extend_from_slice(&first);
    server.write(&out).await;
    // Never END_HEADERS: 16 KiB of filler at a time, past the 64 KiB a block may take. No more
    // than that: bytes the client never reads would make its kernel reset the connection, and
    // the reset can overtake the GOAWAY.
    let filler = vec![0x40; 16_384];
    let mut goaway = None;
    for _ in 0..5 {
        let mut cont = bytes::BytesMut::new();
        frame::put_head(&mut cont, filler.len(), frame::CONTINUATION, 0, 1);
        cont.extend_from_slice(&filler);
        use tokio::io::AsyncWriteExt;
        if server.io.write_all(&cont).await.is_err() {
            break;
        }
    }
    while let Some(got) = server.frame().await {
        if got.head.kind == frame::GOAWAY {
            goaway = Some(goaway_reason(&got));
            break;
        }
    }
    assert_eq!(goaway, Some(Reason::ENHANCE_YOUR_CALM));
    let error = head_of(exchange).await.expect_err("no response");
    assert!(error.contains("header block too large"), "{error}");
}

#[tokio::test]
async fn push_promise_ends_the_connection() {
    let (_sender, exchange, mut server) = raw_exchange().await;
    let promised = block(&[(":method", "GET"), (":path", "/pushed")]);
    let mut out = bytes::BytesMut::new();
    frame::put_head(
        &mut out,
        4 + promised.len(),
        frame::PUSH_PROMISE,
        frame::END_HEADERS,
        1,
    );
    out.extend_from_slice(&2u32.to_be_bytes());
    out.extend_from_slice(&promised);
    server.write(&out).await;
    let goaway = server.until(frame::GOAWAY).await;
    assert_eq!(goaway_reason(&goaway), Reason::PROTOCOL_ERROR);
    assert!(head_of(exchange).await.is_err());
}

/// A response head past 16 KiB fails its stream only: the connection's HPACK state stays in
/// step (the block was decoded all the same), so the next response on it reads fine.
#[tokio::test]
async fn a_head_too_large_fails_only_its_stream() {
    let (mut sender, exchange, mut server) = raw_exchange().await;
    let big = "x".repeat(9_000);
    // Two fields of 9 KB: past 16 KiB decoded, each one small enough to frame.
    let mut block = bytes::BytesMut::new();
    hpack::encode(b":status", b"200", false, &mut block);
    hpack::encode(b"x-one", big.as_bytes(), false, &mut block);
    let first = block.split_to(block.len().min(16_384));
    let mut out = bytes::BytesMut::new();
    frame::put_head(&mut out, first.len(), frame::HEADERS, frame::END_STREAM, 1);
    out.extend_from_slice(&first);
    let mut rest = block;
    hpack::encode(b"x-two", big.as_bytes(), false, &mut rest);
    frame::put_head(
        &mut out,
        rest.len(),
        frame::CONTINUATION,
        frame::END_HEADERS,
        1,
    );
    out.extend_from_slice(&rest);
    server.write(&out).await;
    let reset = server.until(frame::RST_STREAM).await;
    assert_eq!(reset.head.stream, 1);
    let error = head_of(exchange).await.expect_err("no response");
    assert!(error.contains("too large"), "{error}");
    // The next request on the same connection is answered.
    let next = tokio::spawn(async move {
        let mut req = Request::new(Full::new(Bytes::new()).map_err(|never| match never {}));
        *req.uri_mut() = http::Uri::from_static("http://upstream.example/next");
        sender.send(req).await.map(|r| r.status()).map_err(|_| ())
    });
    let headers = server.until(frame::HEADERS).await;
    assert_eq!(headers.head.stream, 3);
    server
        .write(&headers_frame(3, &[(":status", "204")], true))
        .await;
    let status = tokio::time::timeout(BOUND, next)
        .await
        .expect("answered in time")
        .expect("task ran")
        .expect("a response");
    assert_eq!(status, 204);
}

#[tokio::test]
async fn pings_are_answered_with_their_payload() {
    let (_sender, _exchange, mut server) = raw_exchange().await;
    let mut out = bytes::BytesMut::new();
    frame::put_head(&mut out, 8, frame::PING, 0, 0);
    out.extend_from_slice(b"sluice!!");
    server.write(&out).await;
    let pong = server.until(frame::PING).await;
    assert!(pong.head.has(frame::ACK));
    assert_eq!(&pong.payload[..], b"sluice!!");
}

/// A server that keeps sending while it reads gets every answer: the client writes between
/// reads, so its queue of PING acks never grows to WRITE_LIMIT (4 MiB of PINGs here, four times
/// that limit). The flood comes from another thread, as fast as the client can read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_from_a_server_that_reads_is_answered_in_full() {
    use bytes::Buf;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const PINGS: usize = 4 * 1024 * 1024 / (frame::HEAD_LEN + 8);
    let (_sender, exchange, server) = raw_exchange().await;
    let RawServer { io, mut buf } = server;
    let (mut reader, mut writer) = io.into_split();
    let flood = tokio::spawn(async move {
        let mut chunk = bytes::BytesMut::new();
        for _ in 0..1024 {
            frame::put_head(&mut chunk, 8, frame::PING, 0, 0);
            chunk.extend_from_slice(b"floodin!");
        }
        for _ in 0..PINGS / 1024 {
            writer.write_all(&chunk).await.expect("the client reads");
        }
        writer
    });
    let mut acks = 0;
    loop {
        while buf.len() >= frame::HEAD_LEN {
            let mut raw = [0; frame::HEAD_LEN];
            raw.copy_from_slice(&buf[..frame::HEAD_LEN]);
            let head = frame::Head::parse(&raw);
            let total = frame::HEAD_LEN + head.len as usize;
            if buf.len() < total {
                break;
            }
            assert_ne!(
                head.kind,
                frame::GOAWAY,
                "the client gave up on a reading server"
            );
            if head.kind == frame::PING && head.has(frame::ACK) {
                acks += 1;
            }
            buf.advance(total);
        }
        if acks == PINGS / 1024 * 1024 {
            break;
        }
        let read = tokio::time::timeout(BOUND, reader.read_buf(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("acks in time: {acks} so far"))
            .expect("read");
        assert_ne!(
            read, 0,
            "the client closed the connection after {acks} acks"
        );
    }
    let mut writer = flood.await.expect("flood task ran");
    writer
        .write_all(&headers_frame(1, &[(":status", "204")], true))
        .await
        .expect("written");
    let response = head_of(exchange)
        .await
        .expect("the stream outlived the flood");
    assert_eq!(response.status(), 204);
}

/// The server's stream limit holds: a second request waits for the first stream to end. A
/// request given up while it waits (its task aborted) leaves the line: the slot goes to the
/// one behind it.
#[tokio::test]
async fn requests_past_the_servers_stream_limit_wait_for_a_stream_to_end() {
    let (addr, accept) = RawServer::listen().await;
    let sender = connect(addr).await;
    let mut server = accept.await.expect("accepted");
    server
        .settings(&[(frame::SETTINGS_MAX_CONCURRENT_STREAMS, 1)])
        .await;
    // The client has our SETTINGS once it acknowledged them.
    loop {
        let got = server.frame().await.expect("the client's frames");
        if got.head.kind == frame::SETTINGS && got.head.has(frame::ACK) {
            break;
        }
    }
    let get = |mut client: Sender, path: &'static str| {
        tokio::spawn(async move {
            let mut req = Request::new(Full::new(Bytes::new()).map_err(|never| match never {}));
            *req.uri_mut() = http::Uri::from_static(path);
            client.send(req).await.map(|r| r.status()).map_err(|_| ())
        })
    };
    let first = get(sender.clone(), "http://upstream.example/first");
    assert_eq!(server.until(frame::HEADERS).await.head.stream, 1);
    let given_up = get(sender.clone(), "http://upstream.example/given-up");
    let second = get(sender.clone(), "http://upstream.example/second");
    // Nothing for the others while the first is open.
    let early = tokio::time::timeout(Duration::from_millis(200), server.frame()).await;
    assert!(
        early.is_err(),
        "no frame while the limit is reached: {early:?}"
    );
    given_up.abort();
    assert!(given_up.await.is_err_and(|e| e.is_cancelled()));
    server
        .write(&headers_frame(1, &[(":status", "200")], true))
        .await;
    assert_eq!(server.until(frame::HEADERS).await.head.stream, 3);
    server
        .write(&headers_frame(3, &[(":status", "202")], true))
        .await;
    for (exchange, want) in [(first, 200), (second, 202)] {
        let status = tokio::time::timeout(BOUND, exchange)
            .await
            .expect("answered in time")
            .expect("task ran")
            .expect("a response");
        assert_eq!(status, want);
    }
}

/// A request body larger than the server's window goes out as the server opens it; h2's server
/// checks every byte against its windows.
#[tokio::test]
async fn a_body_larger_than_the_servers_window_waits_for_window() {
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(1_000)
        .initial_connection_window_size(70_000)
        .max_frame_size(16_384);
    let addr = server_with(builder, echo_unary).await;
    let mut sender = connect(addr).await;
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let body = Full::new(Bytes::from(payload.clone())).map_err(|never| match never {});
    let response = response_to(&mut sender, request(body)).await;
    let collected = tokio::time::timeout(BOUND, response.into_body().collect())
        .await
        .expect("echo in time")
        .expect("echo");
    assert_eq!(collected.to_bytes().len(), payload.len());
}

/// Request headers larger than a frame go out as HEADERS plus CONTINUATION.
#[tokio::test]
async fn a_head_larger_than_a_frame_is_split_into_continuations() {
    let mut builder = h2::server::Builder::new();
    builder.max_header_list_size(256 * 1024);
    let addr = server_with(builder, |req, mut respond| async move {
        let size = req.headers().get("x-big").map_or(0, |v| v.len());
        let mut response = Response::new(());
        response
            .headers_mut()
            .insert("x-size", HeaderValue::from(size));
        let _ = respond.send_response(response, true);
    })
    .await;
    let mut sender = connect(addr).await;
    let mut req = request(full(b""));
    let big = "y".repeat(40_000);
    req.headers_mut()
        .insert("x-big", HeaderValue::from_str(&big).expect("a value"));
    let response = response_to(&mut sender, req).await;
    assert_eq!(response.headers()["x-size"], "40000");
}

/// A response body dropped before its end cancels the stream at the server.
#[tokio::test]
async fn dropping_a_response_body_cancels_the_stream() {
    let (_sender, exchange, mut server) = raw_exchange().await;
    server
        .write(&headers_frame(1, &[(":status", "200")], false))
        .await;
    let response = head_of(exchange).await.expect("a head");
    drop(response);
    let reset = server.until(frame::RST_STREAM).await;
    assert_eq!(reset.head.stream, 1);
    assert_eq!(reset_reason(&reset), Reason::CANCEL);
}

/// Data the server sends past the stream's window (2 MiB unread) resets that stream with
/// FLOW_CONTROL_ERROR.
#[tokio::test]
async fn data_past_the_stream_window_resets_the_stream() {
    let (_sender, exchange, mut server) = raw_exchange().await;
    server
        .write(&headers_frame(1, &[(":status", "200")], false))
        .await;
    let _response = head_of(exchange).await.expect("a head");
    let chunk = vec![7; 16_384];
    let mut out = bytes::BytesMut::new();
    for _ in 0..(2 * 1024 * 1024 / 16_384 + 1) {
        frame::put_data(&mut out, 1, &chunk, false);
    }
    server.write(&out).await;
    let reset = server.until(frame::RST_STREAM).await;
    assert_eq!(reset_reason(&reset), Reason::FLOW_CONTROL_ERROR);
}

/// Frames of a type HTTP/2 does not know are passed over (RFC 9113 §4.1).
#[tokio::test]
async fn unknown_frame_types_are_ignored() {
    let (_sender, exchange, mut server) = raw_exchange().await;
    let mut out = bytes::BytesMut::new();
    frame::put_head(&mut out, 3, 0xfa, 0, 1);
    out.extend_from_slice(b"???");
    out.extend_from_slice(&headers_frame(1, &[(":status", "200")], true));
    server.write(&out).await;
    let response = head_of(exchange).await.expect("a head");
    assert_eq!(response.status(), 200);
}

/// RFC 9113 §5.3.1: a response HEADERS whose priority makes its stream depend on itself is a
/// stream error.
#[tokio::test]
async fn a_response_on_a_stream_that_depends_on_itself_resets_it() {
    let (_sender, exchange, mut server) = raw_exchange().await;
    let fields = block(&[(":status", "200")]);
    let mut out = bytes::BytesMut::new();
    let flags = frame::END_HEADERS | frame::END_STREAM | frame::PRIORITY_FLAG;
    frame::put_head(&mut out, 5 + fields.len(), frame::HEADERS, flags, 1);
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(&[16]);
    out.extend_from_slice(&fields);
    server.write(&out).await;
    let reset = server.until(frame::RST_STREAM).await;
    assert_eq!(reset.head.stream, 1);
    assert_eq!(reset_reason(&reset), Reason::PROTOCOL_ERROR);
    let error = head_of(exchange).await.expect_err("no response");
    assert!(error.contains("depends on itself"), "{error}");
}

#[tokio::test]
async fn conflicting_content_lengths_reset_the_stream() {
    let (_sender, exchange, mut server) = raw_exchange().await;
    let head = headers_frame(
        1,
        &[
            (":status", "200"),
            ("content-length", "3"),
            ("content-length", "4"),
        ],
        false,
    );
    server.write(&head).await;
    let reset = server.until(frame::RST_STREAM).await;
    assert_eq!(reset_reason(&reset), Reason::PROTOCOL_ERROR);
    let error = head_of(exchange).await.expect_err("no response");
    assert!(error.contains("Content-Length"), "{error}");
}

/// A response ended with END_STREAM and then reset with NO_ERROR (the server needs no more of
/// the request body, RFC 9113 §8.1) is complete: its body reads to the end.
#[tokio::test]
async fn a_complete_response_reset_with_no_error_reads_to_its_end() {
    let (_sender, exchange, mut server) = raw_exchange().await;
    let mut out = headers_frame(1, &[(":status", "200")], false);
    frame::put_data(&mut out, 1, b"done", true);
    frame::put_rst_stream(&mut out, 1, Reason::NO_ERROR);
    server.write(&out).await;
    let response = head_of(exchange).await.expect("a head");
    let body = tokio::time::timeout(BOUND, response.into_body().collect())
        .await
        .expect("body in time")
        .expect("a complete body");
    assert_eq!(&body.to_bytes()[..], b"done");
}

/// A reset before END_STREAM, even NO_ERROR, cuts the body short, with or without a declared
/// length: the bytes that came are read, then the body fails instead of ending.
#[tokio::test]
async fn a_reset_before_end_stream_fails_the_body() {
    let with_length: &[(&str, &str)] = &[(":status", "200"), ("content-length", "10")];
    let without: &[(&str, &str)] = &[(":status", "200")];
    for (reason, fields) in [
        (Reason::NO_ERROR, with_length),
        (Reason::CANCEL, with_length),
        (Reason::NO_ERROR, without),
        (Reason::CANCEL, without),
    ] {
        let (_sender, exchange, mut server) = raw_exchange().await;
        let mut out = headers_frame(1, fields, false);
        frame::put_data(&mut out, 1, b"part", false);
        frame::put_rst_stream(&mut out, 1, reason);
        server.write(&out).await;
        let response = head_of(exchange).await.expect("a head");
        let mut body = response.into_body();
        let first = tokio::time::timeout(BOUND, body.frame())
            .await
            .expect("data in time")
            .expect("a frame")
            .expect("the bytes that came");
        assert_eq!(first.into_data().ok().as_deref(), Some(&b"part"[..]));
        let next = tokio::time::timeout(BOUND, body.frame())
            .await
            .expect("the end in time");
        assert!(
            matches!(next, Some(Err(StreamError::Reset(r))) if r == reason),
            "{reason:?}: {next:?}"
        );
    }
}

/// Streams past a GOAWAY's last stream id were never processed (RFC 9113 §6.8): a body-less
/// request comes back unsent, whole, for another connection, and this one takes no new ones.
#[tokio::test]
async fn a_goaway_gives_back_the_requests_it_did_not_process() {
    let (sender, exchange, mut server) = raw_exchange().await;
    let mut out = bytes::BytesMut::new();
    frame::put_goaway(&mut out, 0, Reason::NO_ERROR);
    server.write(&out).await;
    let error = head_of(exchange)
        .await
        .expect_err("stream 1 was not processed");
    assert!(error.starts_with("unsent: "), "{error}");
    assert!(error.contains("GOAWAY"), "{error}");
    assert!(sender.is_closed());
}

/// An absolute-form target's userinfo never reaches the upstream's :authority.
#[tokio::test]
async fn userinfo_is_not_sent_in_the_authority() {
    let addr = server(|req, mut respond| async move {
        let authority = req
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let mut response = Response::new(());
        response.headers_mut().insert(
            "x-authority",
            HeaderValue::from_str(&authority).expect("a header value"),
        );
        let _ = respond.send_response(response, true);
    })
    .await;
    let mut sender = connect(addr).await;
    let mut req = request(Full::new(Bytes::new()).map_err(|never| match never {}));
    *req.uri_mut() = http::Uri::from_static("http://user:secret@upstream.example/echo");
    let response = response_to(&mut sender, req).await;
    assert_eq!(response.headers()["x-authority"], "upstream.example");
}

/// With every handle gone, a connection whose server reads nothing (its socket full of our
/// request body) ends anyway: its task does not wait forever to write the last frames.
#[tokio::test]
async fn a_connection_to_a_server_that_reads_nothing_ends_when_its_handles_do() {
    let (addr, accept) = RawServer::listen().await;
    let sender = connect(addr).await;
    let mut server = accept.await.expect("accepted");
    // Windows wide open, so only the socket holds the body back.
    let mut out = bytes::BytesMut::new();
    frame::put_settings(
        &mut out,
        &[(
            frame::SETTINGS_INITIAL_WINDOW_SIZE,
            frame::MAX_WINDOW as u32,
        )],
    );
    frame::put_settings_ack(&mut out);
    frame::put_window_update(
        &mut out,
        0,
        (frame::MAX_WINDOW - frame::DEFAULT_WINDOW) as u32,
    );
    server.write(&out).await;
    let connection = Arc::downgrade(&sender.shared);
    let mut client = sender.clone();
    let exchange = tokio::spawn(async move {
        let body =
            Full::new(Bytes::from(vec![0u8; 64 * 1024 * 1024])).map_err(|never| match never {});
        let _ = client.send(request(body)).await;
    });
    // The server reads nothing more from here: the body fills both sockets' buffers.
    tokio::time::sleep(Duration::from_millis(300)).await;
    exchange.abort();
    let _ = exchange.await;
    drop(sender);
    let deadline = tokio::time::Instant::now() + BOUND;
    while connection.upgrade().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the connection's task still runs"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(server);
}

/// REFUSED_STREAM also says the stream was never processed (RFC 9113 §8.7): unsent.
#[tokio::test]
async fn a_refused_stream_gives_back_its_request() {
    let (_sender, exchange, mut server) = raw_exchange().await;
    let mut out = bytes::BytesMut::new();
    frame::put_rst_stream(&mut out, 1, Reason::REFUSED_STREAM);
    server.write(&out).await;
    let error = head_of(exchange).await.expect_err("refused");
    assert!(error.starts_with("unsent: "), "{error}");
}

/// A request whose body was already read when its stream was refused cannot go again: it
/// fails, and is not handed back as unsent. Any other reset before the head fails too.
#[tokio::test]
async fn a_refused_stream_whose_body_was_read_fails() {
    for reason in [Reason::REFUSED_STREAM, Reason::INTERNAL_ERROR] {
        let (addr, accept) = RawServer::listen().await;
        let mut sender = connect(addr).await;
        let mut server = accept.await.expect("accepted");
        server.settings(&[]).await;
        let exchange = tokio::spawn(async move {
            let req =
                request(Full::new(Bytes::from_static(b"payload")).map_err(|never| match never {}));
            match sender.send(req).await {
                Ok(_) => "a response".to_owned(),
                Err(Ok(Unsent(_, e))) => format!("unsent: {e}"),
                Err(Err(e)) => format!("failed: {e}"),
            }
        });
        let data = server.until(frame::DATA).await;
        assert!(data.head.has(frame::END_STREAM));
        let mut out = bytes::BytesMut::new();
        frame::put_rst_stream(&mut out, 1, reason);
        server.write(&out).await;
        let outcome = tokio::time::timeout(BOUND, exchange)
            .await
            .expect("ended in time")
            .expect("task ran");
        assert!(outcome.starts_with("failed: "), "{reason:?}: {outcome}");
    }
}

/// A response to HEAD may announce a length it does not carry.
#[tokio::test]
async fn a_head_response_may_announce_a_length_without_a_body() {
    let (addr, accept) = RawServer::listen().await;
    let mut sender = connect(addr).await;
    let mut server = accept.await.expect("accepted");
    server.settings(&[]).await;
    let exchange = tokio::spawn(async move {
        let mut req = Request::new(Full::new(Bytes::new()).map_err(|never| match never {}));
        *req.method_mut() = Method::HEAD;
        *req.uri_mut() = http::Uri::from_static("http://upstream.example/head");
        let response = sender.send(req).await.map_err(|_| "no response")?;
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|_| "body failed")?;
        Ok::<_, &str>(body.to_bytes().len())
    });
    server.until(frame::HEADERS).await;
    server
        .write(&headers_frame(
            1,
            &[(":status", "200"), ("content-length", "1000")],
            true,
        ))
        .await;
    let len = tokio::time::timeout(BOUND, exchange)
        .await
        .expect("in time")
        .expect("task ran")
        .expect("a complete exchange");
    assert_eq!(len, 0);
}
