//! [`EchoServer`]: Knative's `runtime`, `timeout` and `retry` conformance images in one server.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use serde::{Deserialize, Serialize};

use crate::body::{self, BoxBody, Holding};
use crate::probe;
use crate::serve::{self, Running};

const JSON: HeaderValue = HeaderValue::from_static("application/json");
const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
/// Upper bound for `bytes=N`, so a typo cannot exhaust memory.
const MAX_BYTES: usize = 256 << 20;

/// How an [`EchoServer`] behaves beyond echoing.
#[derive(Clone, Debug, Default)]
pub struct EchoOptions {
    /// Reported as `name` in every reply, to tell backends apart.
    pub name: String,
    /// When a request would make more than this many requests in flight, it gets 500
    /// `concurrency exceeded` and [`EchoServer::violations`] goes up.
    pub max_concurrency: Option<usize>,
    /// Serve only h2c with prior knowledge (no HTTP/1.1), like an `appProtocol: h2c` port.
    pub h2c_only: bool,
    /// The first N application requests get 503, like Knative's `retry` image (probes do not count).
    pub fail_first: u32,
    /// Listen here instead of on a fresh `127.0.0.1:0`: a backend restarted where it was.
    pub addr: Option<SocketAddr>,
}

impl EchoOptions {
    /// Default options with the given name.
    pub fn named(name: &str) -> Self {
        EchoOptions {
            name: name.to_owned(),
            ..EchoOptions::default()
        }
    }
}

/// The JSON an [`EchoServer`] answers with, shaped like Knative's `runtime` image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoReply {
    /// The server's [`EchoOptions::name`].
    pub name: String,
    /// What the server received.
    pub request: EchoRequest,
}

/// The request as the backend saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoRequest {
    /// Path and query.
    pub uri: String,
    /// `:authority` for HTTP/2, else the `Host` header.
    pub host: String,
    pub method: String,
    /// Every header but `Host`, names in Go's canonical form (`Foo-Bar-Baz`), values in order.
    pub headers: BTreeMap<String, Vec<String>>,
    #[serde(rename = "protoMajor")]
    pub proto_major: u8,
    #[serde(rename = "protoMinor")]
    pub proto_minor: u8,
}

impl EchoReply {
    /// Parses a reply body.
    pub fn parse(body: &[u8]) -> anyhow::Result<EchoReply> {
        serde_json::from_slice(body).with_context(|| {
            format!(
                "not an echo reply: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )
        })
    }

    /// The first value of a request header, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).first().copied()
    }

    /// Every value of a request header, matched case-insensitively.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.request
            .headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .flat_map(|(_, values)| values.iter().map(String::as_str))
            .collect()
    }
}

/// Go's `http.CanonicalHeaderKey`: `foo-bar-baz` becomes `Foo-Bar-Baz`.
pub fn canonical_header_name(name: &str) -> String {
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    connections: Arc<AtomicU64>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    violations: AtomicU64,
    failures_left: AtomicU64,
}

#[derive(Debug)]
struct State {
    name: String,
    max_concurrency: Option<usize>,
    counters: Counters,
}

/// Counts a request in flight from its arrival until its response body is finished or dropped.
struct InFlight {
    state: Arc<State>,
    level: usize,
}

impl InFlight {
    fn enter(state: &Arc<State>) -> InFlight {
        let counters = &state.counters;
        let level = counters.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        counters.max_in_flight.fetch_max(level, Ordering::SeqCst);
        InFlight {
            state: Arc::clone(state),
            level,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.counters.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An HTTP/1.1 + h2c server that answers every request with a JSON description of it.
///
/// Query parameters change the answer (first match wins for the body):
/// - `status=N`: answer with status N (200..=599), same body;
/// - `sleep_ms=N`: wait N ms before answering;
/// - `initialTimeout=A&timeout=B`: Knative's `timeout` image: wait A ms, send and flush the headers,
///   wait B ms, then send the (JSON) body;
/// - `drip=N&drip_ms=M`: N one-byte chunks (`a`), each after waiting M ms;
/// - `bytes=N`: a body of N bytes `a` instead of JSON;
/// - `server_timing=V`: the response carries `Server-Timing: V` (V as written, say `db;dur=53`).
///
/// Unparsable values get 400. Probes are answered as described in [`crate::PROBE_HEADER`].
#[derive(Debug)]
pub struct EchoServer {
    running: Running,
    state: Arc<State>,
}

impl EchoServer {
    /// Starts a plain echo server named `name`.
    pub async fn start(name: &str) -> anyhow::Result<EchoServer> {
        EchoServer::start_with(EchoOptions::named(name)).await
    }

    /// Starts an echo server with `options`.
    pub async fn start_with(options: EchoOptions) -> anyhow::Result<EchoServer> {
        let state = Arc::new(State {
            name: options.name,
            max_concurrency: options.max_concurrency,
            counters: Counters {
                failures_left: AtomicU64::new(options.fail_first.into()),
                ..Counters::default()
            },
        });
        let h2c_only = options.h2c_only;
        let connections = Arc::clone(&state.counters.connections);
        let addr = options
            .addr
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let running = serve::listen_at(addr, connections, {
            let state = Arc::clone(&state);
            move |stream, spawner| {
                let state = Arc::clone(&state);
                async move {
                    let mut builder = auto::Builder::new(spawner);
                    if h2c_only {
                        builder = builder.http2_only();
                    }
                    let service = service_fn(move |request| handle(Arc::clone(&state), request));
                    // Connection errors (resets, malformed requests) only end this connection.
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            }
        })
        .await
        .with_context(|| format!("start echo server {:?}", state.name))?;
        Ok(EchoServer { running, state })
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.addr()
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Requests received, probes included.
    pub fn requests(&self) -> u64 {
        self.state.counters.requests.load(Ordering::SeqCst)
    }

    /// Application requests whose response is not finished yet.
    pub fn in_flight(&self) -> usize {
        self.state.counters.in_flight.load(Ordering::SeqCst)
    }

    /// The highest [`EchoServer::in_flight`] ever seen.
    pub fn max_in_flight(&self) -> usize {
        self.state.counters.max_in_flight.load(Ordering::SeqCst)
    }

    /// TCP connections accepted.
    pub fn connections(&self) -> u64 {
        self.state.counters.connections.load(Ordering::SeqCst)
    }

    /// Requests refused because they exceeded [`EchoOptions::max_concurrency`].
    pub fn violations(&self) -> u64 {
        self.state.counters.violations.load(Ordering::SeqCst)
    }
}

async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<BoxBody>, Infallible> {
    state.counters.requests.fetch_add(1, Ordering::SeqCst);
    let (mut parts, incoming) = request.into_parts();
    if let Some(response) = probe::intercept(&mut parts.headers) {
        return Ok(response);
    }
    let in_flight = InFlight::enter(&state);
    let response = respond(&state, in_flight.level, parts, incoming).await;
    Ok(response.map(|body| Holding::wrap(body, in_flight)))
}

async fn respond(
    state: &State,
    level: usize,
    parts: http::request::Parts,
    incoming: Incoming,
) -> Response<BoxBody> {
    let counters = &state.counters;
    if state.max_concurrency.is_some_and(|max| level > max) {
        counters.violations.fetch_add(1, Ordering::SeqCst);
        return text(StatusCode::INTERNAL_SERVER_ERROR, "concurrency exceeded\n");
    }
    let query = match Query::parse(parts.uri.query().unwrap_or("")) {
        Ok(query) => query,
        Err(invalid) => return text(StatusCode::BAD_REQUEST, format!("{invalid}\n")),
    };
    // Read the request body so HTTP/1.1 connections stay reusable; its content is not echoed.
    if incoming.collect().await.is_err() {
        return text(StatusCode::BAD_REQUEST, "unreadable request body\n");
    }
    let failing = counters
        .failures_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            left.checked_sub(1)
        })
        .is_ok();
    if let Some(sleep) = query.sleep {
        tokio::time::sleep(sleep).await;
    }
    let reply = EchoReply {
        name: state.name.clone(),
        request: describe(&parts),
    };
    let json = Bytes::from(serde_json::to_vec(&reply).expect("an echo reply always serialises"));
    let status = if failing {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        query.status.unwrap_or(StatusCode::OK)
    };
    let (content_type, body) = if query.initial_timeout.is_some() || query.timeout.is_some() {
        if let Some(initial) = query.initial_timeout {
            tokio::time::sleep(initial).await;
        }
        // Headers go out as soon as this response is returned; the body follows after `timeout`.
        let wait = query.timeout.unwrap_or_default();
        (JSON, delayed_chunks(vec![(wait, json)]))
    } else if let Some(count) = query.drip {
        let chunk = Bytes::from_static(b"a");
        let chunks = (0..count).map(|_| (query.drip_interval, chunk.clone()));
        (TEXT, delayed_chunks(chunks.collect()))
    } else if let Some(bytes) = query.bytes {
        (TEXT, body::full(vec![b'a'; bytes]))
    } else {
        (JSON, body::full(json))
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, content_type);
    if let Some(timing) = query.server_timing {
        response.headers_mut().insert("server-timing", timing);
    }
    response
}

/// A streaming body that sends each chunk after waiting its delay.
fn delayed_chunks(chunks: Vec<(Duration, Bytes)>) -> BoxBody {
    let stream = futures_util::stream::unfold(chunks.into_iter(), |mut chunks| async move {
        let (wait, chunk) = chunks.next()?;
        tokio::time::sleep(wait).await;
        Some((Ok::<_, Infallible>(Frame::data(chunk)), chunks))
    });
    StreamBody::new(stream).boxed_unsync()
}

fn text(status: StatusCode, message: impl Into<Bytes>) -> Response<BoxBody> {
    let mut response = Response::new(body::full(message));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, TEXT);
    response
}

fn describe(parts: &http::request::Parts) -> EchoRequest {
    let lossy = |value: &HeaderValue| String::from_utf8_lossy(value.as_bytes()).into_owned();
    let host = match parts.uri.authority() {
        Some(authority) => authority.as_str().to_owned(),
        None => parts.headers.get(HOST).map(lossy).unwrap_or_default(),
    };
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        if name != HOST {
            headers
                .entry(canonical_header_name(name.as_str()))
                .or_default()
                .push(lossy(value));
        }
    }
    let (proto_major, proto_minor) = match parts.version {
        Version::HTTP_09 => (0, 9),
        Version::HTTP_10 => (1, 0),
        Version::HTTP_2 => (2, 0),
        Version::HTTP_3 => (3, 0),
        _ => (1, 1),
    };
    EchoRequest {
        uri: parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned()),
        host,
        method: parts.method.as_str().to_owned(),
        headers,
        proto_major,
        proto_minor,
    }
}

/// The query parameters the echo server understands; others are ignored.
#[derive(Debug, Default, PartialEq)]
struct Query {
    status: Option<StatusCode>,
    sleep: Option<Duration>,
    initial_timeout: Option<Duration>,
    timeout: Option<Duration>,
    bytes: Option<usize>,
    drip: Option<u64>,
    drip_interval: Duration,
    server_timing: Option<HeaderValue>,
}

impl Query {
    fn parse(query: &str) -> Result<Query, String> {
        fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, String> {
            value
                .parse()
                .map_err(|_| format!("query parameter {key}={value:?}: not a number"))
        }
        let millis = |key, value| number(key, value).map(Duration::from_millis);
        let mut parsed = Query::default();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "status" => {
                    let code: u16 = number(key, value)?;
                    parsed.status = Some(
                        StatusCode::from_u16(code)
                            .ok()
                            .filter(|_| (200..=599).contains(&code))
                            .ok_or_else(|| {
                                format!("query parameter status={code}: want 200..=599")
                            })?,
                    );
                }
                "sleep_ms" => parsed.sleep = Some(millis(key, value)?),
                "initialTimeout" => parsed.initial_timeout = Some(millis(key, value)?),
                "timeout" => parsed.timeout = Some(millis(key, value)?),
                "drip" => parsed.drip = Some(number(key, value)?),
                "drip_ms" => parsed.drip_interval = millis(key, value)?,
                "server_timing" => {
                    parsed.server_timing = Some(HeaderValue::from_str(value).map_err(|_| {
                        format!("query parameter server_timing={value:?}: not header text")
                    })?);
                }
                "bytes" => {
                    let bytes = number(key, value)?;
                    if bytes > MAX_BYTES {
                        return Err(format!("query parameter bytes={bytes}: above {MAX_BYTES}"));
                    }
                    parsed.bytes = Some(bytes);
                }
                _ => {}
            }
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests;
