//! The admin listener: `/healthz` always, plus the paths its owner registers. A proxy registers
//! `/ready`, `/metrics` and `/config` ([`AdminApp::for_gateway`]); the binary adds the
//! controller's `/status`, `/ui` and `/revisions/...` in `sluice run`, and a controller alone
//! registers its own. Exact paths first, then prefixes (whose handlers get the whole path);
//! the probe listener gets neither prefixes nor anything but the probe paths.

use crate::body::ResponseBody;
use crate::gateway::Gateway;
use async_trait::async_trait;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// One admin answer.
pub struct AdminResponse {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl AdminResponse {
    pub fn text(status: StatusCode, body: impl Into<String>) -> Self {
        AdminResponse {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
        }
    }

    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Self {
        match serde_json::to_vec_pretty(value) {
            Ok(body) => AdminResponse {
                status: StatusCode::OK,
                content_type: "application/json",
                body,
            },
            Err(_) => {
                AdminResponse::text(StatusCode::INTERNAL_SERVER_ERROR, "serialisation failed\n")
            }
        }
    }

    /// The text exposition of the process's Prometheus registry.
    pub fn metrics() -> Self {
        let families = prometheus::default_registry().gather();
        let body = prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_else(|e| format!("# encode error: {e}\n"));
        AdminResponse {
            status: StatusCode::OK,
            content_type: "text/plain; version=0.0.4",
            body: body.into_bytes(),
        }
    }

    /// 200 `ready` when `ready`, else 503 with `why`.
    pub fn readiness(ready: bool, why: &str) -> Self {
        if ready {
            AdminResponse::text(StatusCode::OK, "ready\n")
        } else {
            AdminResponse::text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n"))
        }
    }
}

pub type Handler = Arc<dyn Fn() -> AdminResponse + Send + Sync>;

/// A handler for every path under a prefix; it gets the whole path.
pub type PrefixHandler = Arc<dyn Fn(&str) -> AdminResponse + Send + Sync>;

/// What the probe listener serves besides `/healthz`.
const PROBE_PATHS: [&str; 2] = ["/ready", "/metrics"];

#[derive(Default)]
pub struct AdminApp {
    routes: BTreeMap<&'static str, Handler>,
    /// Tried in order after the exact paths.
    prefixes: Vec<(&'static str, PrefixHandler)>,
}

impl AdminApp {
    pub fn new() -> Self {
        AdminApp::default()
    }

    /// Serves GET `path` with `handler` (a later registration replaces an earlier one).
    pub fn route(
        mut self,
        path: &'static str,
        handler: impl Fn() -> AdminResponse + Send + Sync + 'static,
    ) -> Self {
        self.routes.insert(path, Arc::new(handler));
        self
    }

    /// Serves GET of every path starting with `prefix` (say `/revisions/`) with `handler`,
    /// when no exact path matches.
    pub fn prefix(
        mut self,
        prefix: &'static str,
        handler: impl Fn(&str) -> AdminResponse + Send + Sync + 'static,
    ) -> Self {
        self.prefixes.push((prefix, Arc::new(handler)));
        self
    }

    /// The probe listener's app: this app's `/ready` and `/metrics` (and `/healthz`), nothing
    /// else. It faces the pod network, so no path that shows config or status.
    pub fn probes(&self) -> AdminApp {
        let mut probes = AdminApp::new();
        for path in PROBE_PATHS {
            if let Some(handler) = self.routes.get(path) {
                probes.routes.insert(path, handler.clone());
            }
        }
        probes
    }

    /// A proxy's paths: `/ready` (every listener bound, the first config applied and no
    /// shutdown begun), `/metrics`, `/config` (what is applied, private keys redacted).
    pub fn for_gateway(gateway: Arc<Gateway>) -> Self {
        let ready = gateway.clone();
        let config = gateway;
        AdminApp::new()
            .route("/ready", move || {
                if !ready.ready.load(Ordering::Acquire) {
                    AdminResponse::readiness(false, "waiting for the first config")
                } else {
                    AdminResponse::readiness(
                        ready.listening.load(Ordering::Acquire),
                        "waiting for the listeners to bind",
                    )
                }
            })
            .route("/metrics", AdminResponse::metrics)
            .route("/config", move || {
                AdminResponse::json(&config.catalog().render())
            })
    }

    fn respond(&self, req: &Request<Incoming>) -> Response<ResponseBody> {
        if req.method() != Method::GET {
            return into_response(AdminResponse::text(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed\n",
            ));
        }
        let answer = match req.uri().path() {
            "/healthz" => AdminResponse::text(StatusCode::OK, "ok\n"),
            path => match self.routes.get(path) {
                Some(handler) => handler(),
                None => match self.prefixes.iter().find(|(p, _)| path.starts_with(p)) {
                    Some((_, handler)) => handler(path),
                    None => AdminResponse::text(StatusCode::NOT_FOUND, "not found\n"),
                },
            },
        };
        into_response(answer)
    }
}

fn into_response(answer: AdminResponse) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(answer.body));
    *response.status_mut() = answer.status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(answer.content_type),
    );
    response
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
