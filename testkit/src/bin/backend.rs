//! `sluice-testkit-backend`: a lean HTTP/1.1 + h2c backend that `perf/` runs behind sluice and nginx.
//!
//! ```text
//! sluice-testkit-backend --listen 127.0.0.1:PORT [--body-bytes N] [--threads 1]
//! ```
//!
//! Every response is 200 with the same body (default `Hello from backend\n`, 19 bytes). One thread
//! with a current-thread runtime by default; `--threads N` (N > 1) uses a multi-thread runtime.
//! Prints `listening on ADDR` once bound (useful with port 0). Nothing is logged per request, and
//! the body is built once, so a request costs only what hyper needs.
//!
//! Extras for `perf/`, one branch on the hot path for the `/__backend/` paths and one for gRPC:
//! - `GET /__backend/stats` answers `{"connections":C,"requests":R}`: TCP connections accepted
//!   (the stats request's own connection included) and requests served (stats requests excluded),
//!   since start. `perf/run` takes the difference around a run to get the upstream reuse ratio.
//! - `GET /__backend/headers` answers the request's headers as a JSON object, each lower-case
//!   name with its values in order: `perf/run` checks that every proxy forwards the same
//!   `X-Forwarded-*` headers, so that they do the same work. Not counted as a request either.
//! - An HTTP/2 `POST` with `content-type: application/grpc*` is a gRPC unary echo: the request
//!   body (already gRPC-framed) comes back as the response body, followed by `grpc-status: 0`
//!   trailers. That is what `sluice-testkit-load --proto grpc` sends and checks.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::Context as _;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Method, Request, Response, Version};
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

const DEFAULT_BODY: &[u8] = b"Hello from backend\n";
const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain");
const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
const APPLICATION_GRPC: HeaderValue = HeaderValue::from_static("application/grpc");
const BACKEND_PATHS: &str = "/__backend/";
const STATS_PATH: &str = "/__backend/stats";
const HEADERS_PATH: &str = "/__backend/headers";
const USAGE: &str = "usage: sluice-testkit-backend --listen ADDR [--body-bytes N] [--threads N]";

#[derive(Debug, PartialEq)]
struct Args {
    listen: SocketAddr,
    body_bytes: Option<usize>,
    threads: usize,
}

impl Args {
    fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Args> {
        let mut listen = None;
        let mut body_bytes = None;
        let mut threads = 1;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
                None => (arg, None),
            };
            let value = match inline {
                Some(value) => value,
                None => args
                    .next()
                    .with_context(|| format!("{flag} needs a value\n{USAGE}"))?,
            };
            let invalid = || format!("invalid value for {flag}: {value:?}");
            match flag.as_str() {
                "--listen" => listen = Some(value.parse().with_context(invalid)?),
                "--body-bytes" => body_bytes = Some(value.parse().with_context(invalid)?),
                "--threads" => threads = value.parse().with_context(invalid)?,
                _ => anyhow::bail!("unknown argument {flag:?}\n{USAGE}"),
            }
        }
        Ok(Args {
            listen: listen.with_context(|| format!("--listen is required\n{USAGE}"))?,
            body_bytes,
            threads: threads.max(1),
        })
    }
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|arg| arg == "--help" || arg == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    let args = Args::parse(std::env::args().skip(1))?;
    let body = match args.body_bytes {
        None => Bytes::from_static(DEFAULT_BODY),
        // Leaked once so that every response shares a static buffer: cloning it costs no atomic.
        Some(n) => Bytes::from_static(Box::leak(vec![b'a'; n].into_boxed_slice())),
    };
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .context("build tokio runtime")?;
    runtime.block_on(serve(args.listen, body))
}

async fn serve(listen: SocketAddr, body: Bytes) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("bind {listen}"))?;
    let addr = listener.local_addr().context("local address")?;
    println!("listening on {addr}");
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: report and back off instead of spinning.
                eprintln!("accept: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        CONNECTIONS.fetch_add(1, Relaxed);
        let _ = stream.set_nodelay(true);
        let builder = Arc::clone(&builder);
        let body = body.clone();
        tokio::spawn(async move {
            let service =
                service_fn(move |request: Request<Incoming>| respond(request, body.clone()));
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Counters behind `GET /__backend/stats`: relaxed atomics (process-wide, so nothing is cloned per
/// request), one increment per connection and one per request.
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);
static REQUESTS: AtomicU64 = AtomicU64::new(0);

async fn respond(request: Request<Incoming>, body: Bytes) -> Result<Response<Reply>, Infallible> {
    if request.method() == Method::POST && request.version() == Version::HTTP_2 {
        if let Some(response) = grpc_echo(request).await {
            return Ok(response);
        }
        return Ok(plain(body));
    }
    if request.uri().path().starts_with(BACKEND_PATHS) {
        let json = match request.uri().path() {
            STATS_PATH => format!(
                "{{\"connections\":{},\"requests\":{}}}\n",
                CONNECTIONS.load(Relaxed),
                REQUESTS.load(Relaxed)
            ),
            HEADERS_PATH => headers_json(request.headers()),
            _ => return Ok(not_found()),
        };
        let mut response = Response::new(Reply::new(Bytes::from(json), None));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, APPLICATION_JSON);
        return Ok(response);
    }
    REQUESTS.fetch_add(1, Relaxed);
    let mut incoming = request.into_body();
    // Drain any request body so HTTP/1.1 connections stay reusable; GETs skip this at once.
    if !incoming.is_end_stream() {
        while let Some(Ok(_)) = incoming.frame().await {}
    }
    Ok(plain(body))
}

/// `{"name": ["value", ...], ...}`; a value that is not UTF-8 is shown lossily.
fn headers_json(headers: &HeaderMap) -> String {
    let mut out = serde_json::Map::new();
    for name in headers.keys() {
        let values = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned().into())
            .collect();
        out.insert(name.as_str().to_owned(), serde_json::Value::Array(values));
    }
    serde_json::Value::Object(out).to_string() + "\n"
}

fn not_found() -> Response<Reply> {
    let mut response = Response::new(Reply::new(Bytes::from_static(b"not found\n"), None));
    *response.status_mut() = http::StatusCode::NOT_FOUND;
    response
}

fn plain(body: Bytes) -> Response<Reply> {
    let mut response = Response::new(Reply::new(body, None));
    response.headers_mut().insert(CONTENT_TYPE, TEXT_PLAIN);
    response
}

/// gRPC unary echo; `None` (after draining the body) when the request is not gRPC.
async fn grpc_echo(request: Request<Incoming>) -> Option<Response<Reply>> {
    let grpc = request
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    REQUESTS.fetch_add(1, Relaxed);
    let payload = request.into_body().collect().await.ok()?.to_bytes();
    if !grpc {
        return None;
    }
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let mut response = Response::new(Reply::new(payload, Some(trailers)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, APPLICATION_GRPC);
    Some(response)
}

/// A response body of one data frame and optional trailers. Without trailers its size hint is
/// exact, so HTTP/1.1 responses carry `content-length` (as `Full` would).
struct Reply {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
    len: u64,
}

impl Reply {
    fn new(data: Bytes, trailers: Option<HeaderMap>) -> Reply {
        let len = data.len() as u64;
        Reply {
            data: (!data.is_empty()).then_some(data),
            trailers,
            len,
        }
    }
}

impl Body for Reply {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.trailers.is_some() {
            let mut hint = SizeHint::new();
            hint.set_lower(self.len);
            hint
        } else {
            SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Args> {
        Args::parse(args.iter().map(|arg| (*arg).to_owned()))
    }

    #[test]
    fn arguments_parse() -> anyhow::Result<()> {
        let addr: SocketAddr = "127.0.0.1:8080".parse()?;
        let cases: &[(&[&str], Args)] = &[
            (
                &["--listen", "127.0.0.1:8080"],
                Args {
                    listen: addr,
                    body_bytes: None,
                    threads: 1,
                },
            ),
            (
                &[
                    "--listen=127.0.0.1:8080",
                    "--body-bytes",
                    "1024",
                    "--threads=4",
                ],
                Args {
                    listen: addr,
                    body_bytes: Some(1024),
                    threads: 4,
                },
            ),
            (
                &["--threads", "0", "--listen", "127.0.0.1:8080"],
                Args {
                    listen: addr,
                    body_bytes: None,
                    threads: 1,
                },
            ),
        ];
        for (args, want) in cases {
            assert_eq!(&parse(args)?, want, "{args:?}");
        }
        Ok(())
    }

    #[test]
    fn headers_show_as_json_with_every_value_in_order() -> anyhow::Result<()> {
        let mut headers = HeaderMap::new();
        headers.append("X-Forwarded-For", HeaderValue::from_static("10.0.0.1"));
        headers.append("x-forwarded-for", HeaderValue::from_static("127.0.0.1"));
        headers.append("host", HeaderValue::from_static("bench.example.com"));
        let json: serde_json::Value = serde_json::from_str(&headers_json(&headers))?;
        assert_eq!(
            json,
            serde_json::json!({
                "x-forwarded-for": ["10.0.0.1", "127.0.0.1"],
                "host": ["bench.example.com"],
            })
        );
        Ok(())
    }

    #[tokio::test]
    async fn replies_frame_data_then_trailers() -> anyhow::Result<()> {
        let plain = Reply::new(Bytes::from_static(b"abc"), None);
        assert_eq!(plain.size_hint().exact(), Some(3));
        assert_eq!(Reply::new(Bytes::new(), None).size_hint().exact(), Some(0));
        assert!(Reply::new(Bytes::new(), None).is_end_stream());

        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let grpc = Reply::new(Bytes::from_static(b"\0\0\0\0\x01x"), Some(trailers.clone()));
        assert_eq!(grpc.size_hint().exact(), None);
        let collected = grpc.collect().await?;
        assert_eq!(collected.trailers(), Some(&trailers));
        assert_eq!(&collected.to_bytes()[..], b"\0\0\0\0\x01x");
        Ok(())
    }

    #[test]
    fn bad_arguments_are_rejected() {
        for args in [
            &[][..],
            &["--listen"][..],
            &["--listen", "nope"][..],
            &["--listen", "127.0.0.1:1", "--threads", "x"][..],
            &["--listen", "127.0.0.1:1", "--verbose", "1"][..],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }
}
