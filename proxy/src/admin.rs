//! The admin listener: `/ready`, `/healthz`, `/metrics`, `/config` and `/status`.

use crate::body::ResponseBody;
use crate::gateway::Gateway;
use crate::source::AdminState;
use async_trait::async_trait;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub struct AdminApp {
    gateway: Arc<Gateway>,
    state: AdminState,
}

impl AdminApp {
    pub fn new(gateway: Arc<Gateway>, state: AdminState) -> Self {
        AdminApp { gateway, state }
    }

    fn respond(&self, req: &Request<Incoming>) -> Response<ResponseBody> {
        if req.method() != Method::GET {
            return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        }
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/ready" => {
                if self.state.ready.load(Ordering::Acquire) {
                    text(StatusCode::OK, "ready\n")
                } else {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "waiting for the first config\n",
                    )
                }
            }
            "/metrics" => with_type(
                Response::new(ResponseBody::full(self.gateway.metrics.render())),
                "text/plain; version=0.0.4",
            ),
            "/config" => json(&redacted(&self.gateway.router().snapshot)),
            "/status" => {
                let board = self
                    .state
                    .statuses
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                json(&board.list())
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

/// The snapshot as JSON with every certificate's private key replaced.
fn redacted(snapshot: &sluice_xds::Snapshot) -> serde_json::Value {
    let mut value = serde_json::to_value(snapshot).unwrap_or_default();
    if let Some(certificates) = value.get_mut("certificates").and_then(|c| c.as_array_mut()) {
        for certificate in certificates {
            if let Some(key) = certificate.get_mut("keyPem") {
                *key = serde_json::Value::from("<redacted>");
            }
        }
    }
    value
}

fn with_type(
    mut response: Response<ResponseBody>,
    content_type: &'static str,
) -> Response<ResponseBody> {
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(body.as_bytes()));
    *response.status_mut() = status;
    with_type(response, "text/plain; charset=utf-8")
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> Response<ResponseBody> {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => with_type(Response::new(ResponseBody::full(body)), "application/json"),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "serialisation failed\n"),
    }
}

#[async_trait]
impl ServerApp for AdminApp {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let app = self.clone();
        let service = service_fn(move |req| {
            let response = app.respond(&req);
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
        tokio::pin!(connection);
        let mut shutdown = shutdown.clone();
        tokio::select! {
            _ = connection.as_mut() => {}
            _ = shutdown.changed() => {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        }
        None
    }
}
