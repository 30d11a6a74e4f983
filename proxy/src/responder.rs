//! `sluice responder`: a small synthetic HTTP server (HTTP/1.1 and h2c) to run as a Revision
//! process or as a load-test target. It listens on `--listen` or `127.0.0.1:$PORT`.
//!
//! Each response has the configured status, body and latency; `?sleep_ms=N` adds latency per
//! request. With `--max-concurrency N` it checks the limit itself: a request that would be the
//! N+1-th in flight is answered 500 `concurrency exceeded`, so a test can prove that the
//! gateway never sends more than containerConcurrency requests at once. On SIGTERM (see the
//! binary) it stops accepting and finishes what is in flight, as a Revision instance should.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct ResponderOptions {
    pub status: StatusCode,
    pub body: Bytes,
    pub latency: Duration,
    pub max_concurrency: Option<usize>,
}

struct State {
    options: ResponderOptions,
    in_flight: AtomicUsize,
}

/// Serves until `shutdown` resolves, then stops accepting, lets every connection finish what
/// it has in flight (idle keep-alives close at once) and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    options: ResponderOptions,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let state = Arc::new(State {
        options,
        in_flight: AtomicUsize::new(0),
    });
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let mut stopping = stopping.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(respond(&state, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn respond(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _in_flight = InFlight(&state.in_flight);
    if state.options.max_concurrency.is_some_and(|max| now > max) {
        let mut response = Response::new(Full::new(Bytes::from_static(b"concurrency exceeded\n")));
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        return response;
    }
    let extra = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("sleep_ms=")))
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis)
        .unwrap_or_default();
    let delay = state.options.latency + extra;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut response = Response::new(Full::new(state.options.body.clone()));
    *response.status_mut() = state.options.status;
    response
}
