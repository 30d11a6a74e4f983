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

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body as _, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

const DEFAULT_BODY: &[u8] = b"Hello from backend\n";
const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain");
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

async fn respond(
    request: Request<Incoming>,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut incoming = request.into_body();
    // Drain any request body so HTTP/1.1 connections stay reusable; GETs skip this at once.
    if !incoming.is_end_stream() {
        while let Some(Ok(_)) = incoming.frame().await {}
    }
    let mut response = Response::new(Full::new(body));
    response.headers_mut().insert(CONTENT_TYPE, TEXT_PLAIN);
    Ok(response)
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
