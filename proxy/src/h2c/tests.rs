use super::*;
use crate::activator::{HeldTotal, Queue};
use crate::balance::{Address, Endpoint};
use crate::body::{Guards, ResponseBody, Source};
use crate::metrics::{BackendMetrics, Metrics};
use http::HeaderMap;
use http_body_util::{BodyExt, Full, StreamBody};
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
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bound");
    let addr = listener.local_addr().expect("address");
    let reply = Arc::new(reply);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(socket).await else {
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
async fn response_to<B>(sender: &mut Sender, req: Request<B>) -> Response<H2Body>
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
    tokio::time::timeout(BOUND, Sender::handshake(io))
        .await
        .expect("handshake in time")
        .expect("handshake")
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
/// serves, but takes no new one: the request comes back unsent and the connection counts as
/// closed for the pool at once, so the retry opens a new one.
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
        // The first stream is held, unanswered, for the rest of the test.
        let Some(Ok(held)) = conn.accept().await else {
            return;
        };
        conn.graceful_shutdown();
        while conn.accept().await.is_some() {}
        drop(held);
    });
    let mut sender = connect(addr).await;
    let mut first = sender.clone();
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, RequestBodyError>>(1);
    let open_body = StreamBody::new(tokio_stream_from(rx));
    let held = tokio::spawn(async move { first.send(request(open_body)).await.is_ok() });
    // Until the GOAWAY is in, the connection still takes streams.
    let deadline = tokio::time::Instant::now() + BOUND;
    while poll_fn(|cx| sender.send.poll_ready(cx)).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the GOAWAY reached the client"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        !sender.is_closed(),
        "the connection is still open for its stream"
    );
    match tokio::time::timeout(BOUND, sender.send(request(full(b"again"))))
        .await
        .expect("answer in time")
    {
        Err(Ok(Unsent(..))) => {}
        Err(Err(e)) => panic!("sent, then failed: {e}"),
        Ok(_) => panic!("a response from a connection going away"),
    }
    assert!(
        sender.is_closed(),
        "closed for the pool once it refused a stream"
    );
    drop(tx);
    held.abort();
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
