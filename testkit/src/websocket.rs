//! [`WebsocketEchoServer`] (Knative's `wsserver` image) and a websocket client.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use futures_util::{SinkExt as _, StreamExt as _};
use http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::body::{self, BoxBody};
use crate::serve::{self, Running, Spawner};
use crate::{bounded, probe, DEFAULT_TIMEOUT};

#[derive(Debug, Default)]
struct Counters {
    connections: Arc<AtomicU64>,
    upgrades: AtomicU64,
    messages: AtomicU64,
}

/// An HTTP/1.1 websocket server that answers each text message `m` with `m + " " + suffix`.
///
/// Binary messages are echoed unchanged. Probes are answered; any other request that is not a
/// websocket upgrade gets 400, as gorilla's upgrader does.
#[derive(Debug)]
pub struct WebsocketEchoServer {
    running: Running,
    counters: Arc<Counters>,
}

impl WebsocketEchoServer {
    pub async fn start(suffix: &str) -> anyhow::Result<WebsocketEchoServer> {
        let counters = Arc::new(Counters::default());
        let suffix: Arc<str> = Arc::from(suffix);
        let running = serve::listen(Arc::clone(&counters.connections), {
            let counters = Arc::clone(&counters);
            move |stream, spawner| {
                serve_connection(stream, spawner, Arc::clone(&counters), Arc::clone(&suffix))
            }
        })
        .await
        .context("start websocket echo server")?;
        Ok(WebsocketEchoServer { running, counters })
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.addr()
    }

    /// TCP connections accepted.
    pub fn connections(&self) -> u64 {
        self.counters.connections.load(Ordering::SeqCst)
    }

    /// Successful websocket handshakes.
    pub fn upgrades(&self) -> u64 {
        self.counters.upgrades.load(Ordering::SeqCst)
    }

    /// Text and binary messages answered.
    pub fn messages(&self) -> u64 {
        self.counters.messages.load(Ordering::SeqCst)
    }
}

async fn serve_connection(
    stream: TcpStream,
    spawner: Spawner,
    counters: Arc<Counters>,
    suffix: Arc<str>,
) {
    let service = service_fn(move |request| {
        let response = upgrade(request, &spawner, &counters, &suffix);
        async move { Ok::<_, Infallible>(response) }
    });
    // Errors only end this connection.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}

fn upgrade(
    mut request: Request<Incoming>,
    spawner: &Spawner,
    counters: &Arc<Counters>,
    suffix: &Arc<str>,
) -> Response<BoxBody> {
    if let Some(response) = probe::intercept(request.headers_mut()) {
        return response;
    }
    let Some(accept) = accept_key(request.method(), request.headers()) else {
        let mut response = Response::new(body::full("Bad Request\n"));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return response;
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let counters = Arc::clone(counters);
    let suffix = Arc::clone(suffix);
    spawner.spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        counters.upgrades.fetch_add(1, Ordering::SeqCst);
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        // A broken session just ends.
        let _ = echo(ws, &counters, &suffix).await;
    });
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    response
}

/// The `Sec-WebSocket-Accept` value for a valid websocket upgrade request.
fn accept_key(method: &Method, headers: &HeaderMap) -> Option<HeaderValue> {
    let has_token = |name, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let valid = method == Method::GET
        && has_token(UPGRADE, "websocket")
        && has_token(CONNECTION, "upgrade")
        && headers
            .get(SEC_WEBSOCKET_VERSION)
            .map(HeaderValue::as_bytes)
            == Some(b"13");
    let key = headers.get(SEC_WEBSOCKET_KEY).filter(|_| valid)?;
    HeaderValue::from_str(&derive_accept_key(key.as_bytes())).ok()
}

async fn echo(
    mut ws: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
    counters: &Counters,
    suffix: &str,
) -> anyhow::Result<()> {
    while let Some(message) = ws.next().await {
        let reply = match message? {
            Message::Text(text) => Message::text(format!("{} {suffix}", text.as_str())),
            Message::Binary(data) => Message::Binary(data),
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        };
        counters.messages.fetch_add(1, Ordering::SeqCst);
        ws.send(reply).await?;
    }
    Ok(())
}

/// Opens one websocket to `ws://{host}{path}` over a connection to `addr`, sends each message
/// and waits for its reply before sending the next, then closes. Bounded by [`DEFAULT_TIMEOUT`].
pub async fn ws_roundtrips(
    addr: SocketAddr,
    host: &str,
    path: &str,
    msgs: &[String],
) -> anyhow::Result<Vec<String>> {
    let url = format!("ws://{host}{path}");
    bounded(
        DEFAULT_TIMEOUT,
        format!("websocket {url} via {addr}"),
        async {
            let request = url
                .as_str()
                .into_client_request()
                .with_context(|| format!("invalid websocket url {url:?}"))?;
            let stream = TcpStream::connect(addr)
                .await
                .with_context(|| format!("connect to {addr}"))?;
            stream.set_nodelay(true).context("set TCP_NODELAY")?;
            let (mut ws, _response) = tokio_tungstenite::client_async(request, stream)
                .await
                .context("websocket handshake")?;
            let mut replies = Vec::with_capacity(msgs.len());
            for msg in msgs {
                ws.send(Message::text(msg.as_str()))
                    .await
                    .context("send websocket message")?;
                loop {
                    let message = ws
                        .next()
                        .await
                        .context("websocket closed before a reply")?
                        .context("read websocket message")?;
                    match message {
                        Message::Text(text) => {
                            replies.push(text.as_str().to_owned());
                            break;
                        }
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                        other => anyhow::bail!("unexpected websocket message {other:?}"),
                    }
                }
            }
            // Closing cleanly is courtesy; the replies are what the caller asked for.
            let _ = ws.close(None).await;
            Ok(replies)
        },
    )
    .await
}
