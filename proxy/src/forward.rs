//! The request path: route, pick a split and an endpoint (waiting if none is ready), edit
//! headers, forward over a pooled connection, and stream the response back.
//!
//! Rules kept here: the router is loaded once per attempt and never held across `.await`; no
//! logging at info or above; no allocation on the common path except what h2 does; a 5xx
//! from upstream is returned as is (never retried); a failed connect is retried on another
//! endpoint; a request that never left a reused idle connection is re-sent on another one.

use crate::access_log::Served;
use crate::activator::{Admission, Counted, Slot};
use crate::backend::{Backend, BackendKind, Responder, Upstream};
use crate::body::{BodyTimer, Guards, ResponseBody, Source};
use crate::downstream::{self, ClientBody};
use crate::error::ProxyError;
use crate::gateway::{Gateway, OpenConnection};
use crate::h1::{self, Exchange};
use crate::h2c;
use crate::idle::{self, RequestBody, TunnelEnd};
use crate::router::{Listener, Route};
use crate::server_timing::Held;
use crate::upstream::{self, Forwarding, Sender};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, Scheme, Uri};
use http::{Request, Response, Version};
use sluice_xds::{host, Protocol};
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::debug;

/// Most attempts for one request: connect failures on distinct endpoints plus re-sends after a
/// reused connection turned out closed.
const MAX_ATTEMPTS: usize = 4;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
pub(crate) static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static PROBE_HASH: HeaderName = HeaderName::from_static(sluice_xds::PROBE_HASH_HEADER);

/// What the request path knows about the downstream connection.
pub struct ConnInfo {
    pub listener: Listener,
    /// `http` or `https`, for X-Forwarded-Proto.
    pub proto: HeaderValue,
    /// The client's IP, rendered once per connection.
    pub client_ip: Option<HeaderValue>,
    /// A plaintext external listener: routes marked `https_redirect` answer 301 here.
    pub redirects_to_https: bool,
    /// `--xff-trusted-hops` > 0: the client is another proxy whose `X-Forwarded-Host` and
    /// `-Proto` are kept; otherwise both are replaced by what this hop saw.
    pub trust_forwarded: bool,
    /// The client's address and port, for the access log.
    pub peer: Option<std::net::SocketAddr>,
    /// Set once a request head has reached the service: the first-head deadline
    /// ([`crate::downstream::HeadTimer`]) is over.
    pub head_seen: AtomicBool,
}

/// Serves one request; never fails (errors become responses).
///
/// Here and below, a request-path function that awaits is a plain function returning an
/// `async move` block rather than an `async fn`: an async fn's future keeps its arguments twice
/// (as passed, and as the locals they are moved into), which for the request (264 bytes) made
/// every held request and every connection's room for one larger.
#[allow(clippy::manual_async_fn)]
pub fn handle(
    gateway: Arc<Gateway>,
    conn: Arc<ConnInfo>,
    mut req: Request<ClientBody>,
) -> impl Future<Output = Response<ResponseBody>> {
    async move {
        let started = Instant::now();
        // With the log off this is the only extra work: one branch here and one below.
        let mut entry = gateway
            .access_log
            .as_ref()
            .map(|log| log.begin(&req, request_host(&req).as_ref(), conn.peer, started));
        let mut served = Served::default();
        let version = req.version();
        let mut response = match forward(&gateway, &conn, &mut req, &mut served, started).await {
            Ok(response) => response,
            Err(error) => {
                debug!(%error, "request failed");
                let close = error.closes_connection() && version <= Version::HTTP_11;
                // Only cluster-local clients see backend names and addresses.
                let mut response = error.into_response(conn.listener == Listener::Internal);
                if close {
                    // The HTTP/1.1 server closes the connection after a response that says so.
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                response
            }
        };
        if let Some(held) = &served.held {
            if gateway.settings.server_timing {
                held.append_to(response.headers_mut());
            }
        }
        let metrics = match &served.route {
            Some(route) => &route.metrics,
            None => &gateway.metrics.unrouted,
        };
        let status = response.status().as_u16();
        metrics.record(status, started.elapsed().as_secs_f64());
        match entry.take() {
            None => response,
            Some(mut entry) => {
                entry.respond(status, served);
                response.map(|body| body.logged(entry))
            }
        }
    }
}

struct Selection {
    route: Arc<Route>,
    split: usize,
    backend: Arc<Backend>,
    /// The reserved endpoint; `None` for the in-process responder.
    slot: Option<Slot>,
    /// The revision concurrency count (queue time included), for Revision backends.
    counted: Option<Counted>,
    /// The revision's whole-request deadline, queue time included.
    deadline: Option<Instant>,
}

/// `req` stays in `handle`'s future until it is sent (taken, leaving an empty request): a
/// request waiting in the activator then holds it once, not once per future.
#[allow(clippy::manual_async_fn)]
fn forward<'a>(
    gateway: &'a Gateway,
    conn: &'a ConnInfo,
    req: &'a mut Request<ClientBody>,
    served: &'a mut Served,
    started: Instant,
) -> impl Future<Output = Result<Response<ResponseBody>, ProxyError>> + 'a {
    async move {
        downstream::check_request_head(req, &gateway.settings.downstream)?;
        let original_host = downstream::routing_host(req)?;
        let selection = select(gateway, conn, req, original_host.as_ref(), served, started).await?;
        // Boxed: this is the largest part of the request path by far (the exchange). Inline,
        // every request waiting in the activator, and every connection's room for a request,
        // would carry it.
        crate::pin_in_place(|| {
            send_selected(
                gateway,
                conn,
                req,
                original_host,
                selection,
                served,
                started,
            )
        })
        .await
    }
}

/// The request path once an endpoint is reserved: header edits, then the exchange.
#[allow(clippy::manual_async_fn)]
fn send_selected<'a>(
    gateway: &'a Gateway,
    conn: &'a ConnInfo,
    req: &'a mut Request<ClientBody>,
    original_host: Option<HeaderValue>,
    mut selection: Selection,
    served: &'a mut Served,
    started: Instant,
) -> impl Future<Output = Result<Response<ResponseBody>, ProxyError>> + 'a {
    async move {
        // See `UpstreamBody::pipe_idle`: only an HTTP/2 client can stall one stream of many.
        let stream_idle = gateway.settings.stream_idle_timeout;
        let pipe_idle =
            (req.version() == Version::HTTP_2 && !stream_idle.is_zero()).then_some(stream_idle);
        // An HTTP/1.1 client gets a plain upstream head's fields as they came (no header map).
        let keep_lines = req.version() <= Version::HTTP_11;
        let backend = selection.backend.clone();
        let upstream = match &backend.kind {
            BackendKind::Upstream(upstream) => upstream,
            // Cold paths are boxed so their state does not widen every request's future.
            BackendKind::Responder(responder) => {
                return Ok(Box::pin(respond(responder, selection.deadline)).await)
            }
        };
        let protocol = upstream.protocol;
        let websocket = is_websocket(req);
        // An h2c upstream gets the host as :authority, which the request target already carries
        // when the client sent one (h2's :authority, or an absolute-form target) and the route does
        // not rewrite it: the target is kept then, rather than going through a Host header.
        let keep_authority = protocol == Protocol::H2c
            && !websocket
            && selection.route.rewrite_host.is_none()
            && req.uri().authority().is_some();
        let forwarding = prepare_request(
            req,
            conn,
            &selection,
            original_host.as_ref(),
            websocket,
            keep_authority,
        );
        if websocket {
            let req = std::mem::take(req);
            return Box::pin(tunnel(gateway, selection, req, served, &forwarding)).await;
        }
        set_upstream_form(req, protocol)?;
        let policy = selection.backend.revision.as_ref().map(|r| &r.policy);
        let head_deadline = policy
            .and_then(|p| p.response_start_timeout_seconds)
            .map(|s| started + Duration::from_secs(s))
            .into_iter()
            .chain(selection.deadline)
            .min();
        // The Revision's own idle timeout, or the stream idle timeout if shorter (zero: none).
        let idle = policy
            .and_then(|p| p.idle_timeout_seconds)
            .map(Duration::from_secs)
            .into_iter()
            .chain((!stream_idle.is_zero()).then_some(stream_idle))
            .min();
        let req = std::mem::take(req).map(|body| RequestBody::new(body, stream_idle));
        // Called inside each arm, so the future is built where it is awaited rather than
        // moved there (it is over a kilobyte).
        let sending = || {
            send(
                gateway,
                upstream,
                &mut selection,
                req,
                served,
                keep_lines,
                &forwarding,
            )
        };
        let sent = match head_deadline {
            None => sending().await,
            Some(at) => tokio::time::timeout_at(at, sending())
                .await
                .map_err(|_| ProxyError::ResponseTimeout)?,
        };
        let response = sent?;
        let (mut parts, mut body) = response.into_parts();
        let lines = match &mut body {
            Source::H1(body) => body.take_lines(),
            Source::H2(_) => None,
        };
        strip_response_hop_by_hop(&mut parts.headers);
        // `let … else`, not `ok_or(error)?`: that builds the error and drops it (an
        // out-of-line drop) on every request.
        let Some(slot) = selection.slot.take() else {
            return Err(ProxyError::Unsendable);
        };
        let guards = Guards {
            slot,
            counted: selection.counted.take(),
        };
        let timer = BodyTimer::new(idle, selection.deadline);
        let body = ResponseBody::upstream(body, guards, timer, pipe_idle);
        Ok(Response::from_parts(parts, body.with_lines(lines)))
    }
}

/// The built-in synthetic responder, served in-process.
async fn respond(responder: &Responder, deadline: Option<Instant>) -> Response<ResponseBody> {
    if !responder.latency.is_zero() {
        let wake = Instant::now() + responder.latency;
        if deadline.is_some_and(|d| d < wake) {
            if let Some(d) = deadline {
                tokio::time::sleep_until(d).await;
            }
            return ProxyError::ResponseTimeout.into_response(false);
        }
        tokio::time::sleep_until(wake).await;
    }
    let mut response = Response::new(ResponseBody::full(responder.body.clone()));
    *response.status_mut() = responder.status;
    response
}

/// Routes the request and reserves an endpoint slot. When none is free (no ready endpoint, or
/// every instance at its containerConcurrency), the request waits in the backend's queue in
/// arrival order, bounded in number (503) and time (504); if its backend leaves the config
/// while it waits, it is routed again.
#[allow(clippy::manual_async_fn)]
fn select<'a>(
    gateway: &'a Gateway,
    conn: &'a ConnInfo,
    req: &'a Request<ClientBody>,
    host: Option<&'a HeaderValue>,
    served: &'a mut Served,
    started: Instant,
) -> impl Future<Output = Result<Selection, ProxyError>> + 'a {
    async move {
        let mut counted: Option<Counted> = None;
        let mut deadline: Option<Instant> = None;
        // Only a request that waits sets these (and reads the clock for them).
        let mut held_since: Option<Instant> = None;
        let mut cold = false;
        loop {
            let (route, split) = pick_route(gateway, conn, req, host, served)?;
            let backend = route.splits[split].backend.clone();
            if let Some(revision) = &backend.revision {
                if counted.is_none() {
                    counted = Some(revision.stats.arrive());
                }
                deadline
                    .get_or_insert(started + Duration::from_secs(revision.policy.timeout_seconds));
            }
            // The responder needs no slot; everything else takes one if it is free right now.
            let upstream = match &backend.kind {
                BackendKind::Responder(_) => {
                    return Ok(Selection {
                        route,
                        split,
                        backend,
                        slot: None,
                        counted,
                        deadline,
                    })
                }
                BackendKind::Upstream(upstream) => upstream,
            };
            if let Some(slot) = upstream.try_admit(&[]) {
                return Ok(Selection {
                    route,
                    split,
                    backend,
                    slot: Some(slot),
                    counted,
                    deadline,
                });
            }
            if let Some(revision) = &backend.revision {
                if upstream.endpoint_count() == 0 {
                    // No instance at all: ask the autoscaler to decide now, not at its next tick.
                    gateway.poke(&revision.id, &revision.stats);
                    cold = true;
                }
            }
            // (What can be worked out again after the wait is not kept through it: this
            // future is part of every waiting request.)
            let waiting_since = Instant::now();
            held_since.get_or_insert(waiting_since);
            // Dropped with this future (client gone, stream reset) or at the deadline, the guard
            // frees the place in line at once.
            let waiting =
                upstream
                    .queue
                    .enqueue(upstream.max_waiting)
                    .map_err(|_| ProxyError::Overflow {
                        backend: backend.id.to_string(),
                    })?;
            let wait_deadline = deadline.unwrap_or(started + gateway.settings.hold_timeout);
            match Box::pin(tokio::time::timeout_at(wait_deadline, waiting)).await {
                Ok(Admission::Slot(slot)) => {
                    let now = Instant::now();
                    upstream
                        .metrics()
                        .get()
                        .queue_wait
                        .observe((now - waiting_since).as_secs_f64());
                    let first_held = held_since.unwrap_or(waiting_since);
                    served.held = Some(held(upstream, now - first_held, cold));
                    return Ok(Selection {
                        route,
                        split,
                        backend,
                        slot: Some(slot),
                        counted,
                        deadline,
                    });
                }
                Ok(Admission::Reroute) => continue,
                Err(_) => {
                    let first_held = held_since.unwrap_or(waiting_since);
                    served.held = Some(held(upstream, first_held.elapsed(), cold));
                    let wait_deadline = deadline.unwrap_or(started + gateway.settings.hold_timeout);
                    return Err(ProxyError::HoldTimeout {
                        backend: backend.id.to_string(),
                        seconds: wait_deadline.duration_since(started).as_secs(),
                    });
                }
            }
        }
    }
}

/// Routes the request (again, after its backend left the config while it waited) and picks a
/// split; records both in `served`. Not part of `select`'s future: the normalized host's
/// buffer would otherwise sit in every waiting request.
fn pick_route(
    gateway: &Gateway,
    conn: &ConnInfo,
    req: &Request<ClientBody>,
    host: Option<&HeaderValue>,
    served: &mut Served,
) -> Result<(Arc<Route>, usize), ProxyError> {
    let mut buf = [0u8; host::MAX_HOST];
    let host = match host {
        Some(value) => {
            let raw = value
                .to_str()
                .map_err(|_| ProxyError::BadRequest("invalid host"))?;
            let Some(host) = host::normalize(raw, &mut buf) else {
                return Err(ProxyError::BadRequest("invalid host"));
            };
            host
        }
        None => "",
    };
    let router = gateway.router();
    let Some(route) = router.route(conn.listener, host, req.uri().path(), req.headers()) else {
        return Err(ProxyError::NoRoute);
    };
    let route = route.clone();
    drop(router);
    served.route = Some(route.clone());
    if route.https_redirect && conn.redirects_to_https {
        let path_and_query = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        return Err(ProxyError::https_redirect(host, path_and_query));
    }
    let split = route
        .pick_split(fastrand::u32(..))
        .ok_or_else(|| ProxyError::NoSplit {
            route: route.id.to_string(),
        })?;
    served.split = split;
    Ok((route, split))
}

/// What a request held for `waited` tells in `Server-Timing`. A `cold` one (its revision had
/// no instance when it arrived) waited for a first instance from its place in line until the
/// queue's endpoints last appeared; if they appeared before it queued (a race) or never
/// came, the whole wait counts.
fn held(upstream: &Upstream, waited: Duration, cold: bool) -> Held {
    let cold_start = cold.then(|| match upstream.queue.ready_for() {
        Some(ago) if ago < waited => waited - ago,
        _ => waited,
    });
    Held { waited, cold_start }
}

/// The HTTP/1.1 server hands an `OnUpgrade` to exactly the requests that carry `Upgrade`, so
/// any other request is told apart without a header lookup.
fn is_websocket(req: &Request<ClientBody>) -> bool {
    req.version() == Version::HTTP_11
        && req
            .extensions()
            .get::<downstream::h1::OnUpgrade>()
            .is_some()
        && req
            .headers()
            .get(header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// The host a request is for, the one it is routed on. The request target's authority wins over
/// `Host`: RFC 9112 §3.2.2 for an absolute-form HTTP/1.1 target (`GET http://a/ HTTP/1.1` with
/// `Host: b` is for `a`), RFC 9113 §8.3.1 for h2's `:authority` beside a `Host` header. Routing
/// on one and forwarding the other would let a client reach a host it could not name.
pub(crate) fn request_host<B>(req: &Request<B>) -> Option<HeaderValue> {
    authority_value(req.uri()).or_else(|| req.headers().get(header::HOST).cloned())
}

fn authority_value(uri: &Uri) -> Option<HeaderValue> {
    uri.authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
}

/// Hop-by-hop removal, forwarding headers, route and split header SETs, host rewrite. Returns
/// the forwarding fields left for the upstream client to write (see [`Forwarding`]): all of
/// them when the client sent none and no SET names one, else none (they are in the map).
fn prepare_request<'a>(
    req: &mut Request<ClientBody>,
    conn: &'a ConnInfo,
    selection: &Selection,
    original_host: Option<&'a HeaderValue>,
    websocket: bool,
    keep_authority: bool,
) -> Forwarding<'a> {
    // The target's authority was routed on (see `request_host`): the upstream gets it as Host.
    let target_authority = req.uri().authority().is_some();
    let headers = req.headers_mut();
    let route = &selection.route;
    // Knative's probe asks with `k-network-hash: override`: read as routing saw the request,
    // before anything is stripped or SET.
    let probed = route.probe_hash.as_ref().filter(|_| {
        headers
            .get(&PROBE_HASH)
            .is_some_and(|v| v.as_bytes() == sluice_xds::PROBE_HASH_OVERRIDE.as_bytes())
    });
    let found = scan(headers);
    let stripped = found.hop_by_hop && strip_request_hop_by_hop(headers, websocket);
    let split = &route.splits[selection.split];
    let set = |sets: &[(HeaderName, HeaderValue)]| sets.iter().any(|(n, _)| is_forwarding(n));
    let mut forwarding = Forwarding::NONE;
    if !found.forwarding && !set(&route.set_headers) && !set(&split.set_headers) {
        // What the map edits below come to when the client sent none of the three.
        forwarding = Forwarding {
            client_ip: conn.client_ip.as_ref(),
            proto: Some(&conn.proto),
            host: original_host,
        };
    } else {
        if let Some(ip) = &conn.client_ip {
            append_list(headers, &X_FORWARDED_FOR, ip);
        }
        if conn.trust_forwarded {
            // Envoy with trusted hops (and Traefik with trusted IPs): the previous proxy's
            // values are the client's; set them only where it sent none.
            if !headers.contains_key(&X_FORWARDED_PROTO) {
                headers.insert(X_FORWARDED_PROTO.clone(), conn.proto.clone());
            }
            if let Some(host) = original_host {
                if !headers.contains_key(&X_FORWARDED_HOST) {
                    headers.insert(X_FORWARDED_HOST.clone(), host.clone());
                }
            }
        } else {
            // An untrusted client's own values are replaced, never passed on or appended to.
            headers.insert(X_FORWARDED_PROTO.clone(), conn.proto.clone());
            match original_host {
                Some(host) => headers.insert(X_FORWARDED_HOST.clone(), host.clone()),
                None => headers.remove(&X_FORWARDED_HOST),
            };
        }
    }
    for (name, value) in route.set_headers.iter() {
        headers.insert(name.clone(), value.clone());
    }
    if let Some(hash) = probed {
        headers.insert(PROBE_HASH.clone(), hash.clone());
    }
    for (name, value) in split.set_headers.iter() {
        headers.insert(name.clone(), value.clone());
    }
    match (&route.rewrite_host, original_host) {
        // The target's authority goes upstream as is (see `forward`); a Host beside it does not.
        _ if keep_authority => {
            headers.remove(header::HOST);
        }
        (Some(rewrite), _) => {
            headers.insert(header::HOST, rewrite.clone());
        }
        // HTTP/2 carries the host in :authority; HTTP/1.1 upstreams need a Host header. Else
        // the host came from the Host header, which is still there unless `Connection` named
        // it (no lookup otherwise).
        (None, Some(host))
            if target_authority || (stripped && !headers.contains_key(header::HOST)) =>
        {
            headers.insert(header::HOST, host.clone());
        }
        _ => {}
    }
    forwarding
}

/// Puts the request line in the form the upstream protocol needs.
fn set_upstream_form(req: &mut Request<ClientBody>, protocol: Protocol) -> Result<(), ProxyError> {
    match protocol {
        Protocol::Http1 => {
            *req.version_mut() = Version::HTTP_11;
            if req.uri().authority().is_some() {
                let origin_form = req
                    .uri()
                    .path_and_query()
                    .map(|pq| Uri::from(pq.clone()))
                    .unwrap_or_else(|| Uri::from_static("/"));
                *req.uri_mut() = origin_form;
            }
        }
        Protocol::H2c => {
            *req.version_mut() = Version::HTTP_2;
            // :authority comes from the (possibly rewritten) Host, or else is the target's own
            // (`prepare_request` left no Host then); h2 needs an absolute URI.
            let authority = match req.headers_mut().remove(header::HOST) {
                Some(host) => Some(
                    Authority::try_from(host.as_bytes())
                        .map_err(|_| ProxyError::BadRequest("invalid host"))?,
                ),
                None if req.uri().authority().is_some() => None,
                None => return Err(ProxyError::BadRequest("missing host")),
            };
            // An h2c client's target is usually upstream-ready already: nothing to rebuild.
            if authority.is_none()
                && req.uri().scheme() == Some(&Scheme::HTTP)
                && req.uri().path_and_query().is_some()
            {
                return Ok(());
            }
            let mut parts = std::mem::take(req.uri_mut()).into_parts();
            parts.scheme = Some(Scheme::HTTP);
            if authority.is_some() {
                parts.authority = authority;
            }
            if parts.path_and_query.is_none() {
                parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
            }
            *req.uri_mut() =
                Uri::from_parts(parts).map_err(|_| ProxyError::BadRequest("invalid uri"))?;
        }
    }
    Ok(())
}

/// Sends over a pooled or new connection. Connect failures move the slot to another endpoint;
/// a request a reused connection closed under (see `h1::SendError::retryable`) is re-sent on
/// another connection. Upstream responses (5xx included) are returned as they are.
/// `keep_lines` and `forwarding`: see `h1::send`.
/// `async move` block, not `async fn`: see `handle` (the request would take room twice in the
/// request path's largest future).
#[allow(clippy::manual_async_fn)]
fn send<'a>(
    gateway: &'a Gateway,
    backend: &'a Upstream,
    selection: &'a mut Selection,
    mut req: Request<RequestBody>,
    served: &'a mut Served,
    keep_lines: bool,
    forwarding: &'a Forwarding<'a>,
) -> impl Future<Output = Result<Response<Source>, ProxyError>> + 'a {
    async move {
        let protocol = backend.protocol;
        let mut failed: [u64; MAX_ATTEMPTS] = [0; MAX_ATTEMPTS];
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(slot) = selection.slot.as_ref() else {
                return Err(ProxyError::Unsendable);
            };
            let endpoint = slot.endpoint().clone();
            let sender = match upstream::checkout(&endpoint, protocol) {
                Some(sender) => sender,
                None => match Box::pin(upstream::connect(
                    &endpoint,
                    protocol,
                    gateway.settings.connect_timeout,
                ))
                .await
                {
                    Ok(sender) => {
                        backend.metrics().get().connects.inc();
                        endpoint.connect_succeeded();
                        sender
                    }
                    Err(error) => {
                        backend.metrics().get().connect_errors.inc();
                        debug!(backend = %selection.backend.id, %error, "connect failed");
                        if endpoint.connect_failed(backend.endpoints(), &gateway.settings.outlier) {
                            backend.metrics().get().ejections.inc();
                            debug!(backend = %selection.backend.id, endpoint = %endpoint.address, "ejected");
                        }
                        failed[attempt - 1] = endpoint.key();
                        // Free this slot before taking another: its endpoint is refusing.
                        selection.slot = None;
                        let next = (attempt < MAX_ATTEMPTS)
                            .then(|| {
                                backend.queue.take(
                                    backend.endpoints(),
                                    backend.concurrency,
                                    &failed[..attempt],
                                )
                            })
                            .flatten();
                        match next {
                            Some(slot) => {
                                selection.slot = Some(slot);
                                continue;
                            }
                            None => return Err(error.into()),
                        }
                    }
                },
            };
            let unsent = match sender {
                Sender::Http1 { conn, reused } => {
                    match h1::send(conn, &mut req, reused, false, keep_lines, forwarding).await {
                        Ok(Exchange::Response(response)) => {
                            served.upstream = Some(endpoint);
                            return Ok(response.map(Source::H1));
                        }
                        Ok(Exchange::Upgraded(..)) => {
                            return Err(h1::H1Error::UnexpectedUpgrade.into())
                        }
                        Err(error) if error.retryable => req,
                        Err(error) => return Err(error.error.into()),
                    }
                }
                Sender::H2(mut sender) => match sender.send_forwarded(req, forwarding).await {
                    Ok(response) => {
                        served.upstream = Some(endpoint);
                        return Ok(response.map(Source::H2));
                    }
                    // The connection could not open a stream: nothing left, try another.
                    Err(Ok(h2c::Unsent(unsent, _))) => unsent,
                    Err(Err(error)) => return Err(error.into()),
                },
            };
            if attempt >= MAX_ATTEMPTS {
                return Err(ProxyError::Unsendable);
            }
            req = unsent;
        }
    }
}

/// Websocket: a dedicated upstream connection, then bytes both ways until either side closes.
/// The slot (and revision count) lasts as long as the tunnel.
async fn tunnel(
    gateway: &Gateway,
    mut selection: Selection,
    mut req: Request<ClientBody>,
    served: &mut Served,
    forwarding: &Forwarding<'_>,
) -> Result<Response<ResponseBody>, ProxyError> {
    *req.version_mut() = Version::HTTP_11;
    if req.uri().authority().is_some() {
        if let Some(pq) = req.uri().path_and_query().cloned() {
            *req.uri_mut() = Uri::from(pq);
        }
    }
    let backend = selection.backend.clone();
    let backend = backend.upstream().ok_or(ProxyError::Unsendable)?;
    let slot = selection.slot.take().ok_or(ProxyError::Unsendable)?;
    let endpoint = slot.endpoint();
    let conn = upstream::connect_upgradable(endpoint, gateway.settings.connect_timeout)
        .await
        .inspect_err(|_| {
            backend.metrics().get().connect_errors.inc();
            if endpoint.connect_failed(backend.endpoints(), &gateway.settings.outlier) {
                backend.metrics().get().ejections.inc();
            }
        })?;
    backend.metrics().get().connects.inc();
    endpoint.connect_succeeded();
    served.upstream = Some(endpoint.clone());
    let guards = Guards {
        slot,
        counted: selection.counted.take(),
    };
    let downstream = req.extensions_mut().remove::<downstream::h1::OnUpgrade>();
    let stream_idle = gateway.settings.stream_idle_timeout;
    let mut req = req.map(|body| RequestBody::new(body, stream_idle));
    let (response, upstream) = match h1::send(conn, &mut req, false, true, false, forwarding).await
    {
        Err(error) => return Err(error.error.into()),
        Ok(Exchange::Response(response)) => {
            let (mut parts, body) = response.into_parts();
            strip_response_hop_by_hop(&mut parts.headers);
            return Ok(Response::from_parts(
                parts,
                ResponseBody::upstream(Source::H1(body), guards, None, None),
            ));
        }
        Ok(Exchange::Upgraded(response, upstream)) => (response, upstream),
    };
    let open = OpenConnection::new(gateway.open_connections.clone());
    let idle = gateway.settings.websocket_idle_timeout;
    tokio::spawn(async move {
        let _guards = guards;
        let _open = open;
        let down = match downstream {
            Some(on) => on.upgraded().await,
            None => None,
        };
        if let Some(down) = down {
            // Envoy applies its stream idle timeout to upgraded streams the same way.
            if let TunnelEnd::Idle = idle::copy_bidirectional_idle(down, upstream, idle).await {
                debug!("websocket tunnel idle; closed");
            }
        }
    });
    let (parts, ()) = response.into_parts();
    Ok(Response::from_parts(parts, ResponseBody::empty()))
}

/// Appends `value` to a comma-separated list header, as proxies do for X-Forwarded-*.
/// One hash lookup when the header is absent (the common case).
pub(crate) fn append_list(headers: &mut HeaderMap, name: &HeaderName, value: &HeaderValue) {
    match headers.entry(name) {
        header::Entry::Vacant(entry) => {
            entry.insert(value.clone());
        }
        header::Entry::Occupied(mut entry) => {
            let mut joined = Vec::with_capacity(64);
            for old in entry.iter() {
                joined.extend_from_slice(old.as_bytes());
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(value.as_bytes());
            if let Ok(joined) = HeaderValue::from_bytes(&joined) {
                entry.insert(joined);
            }
        }
    }
}

/// Whether any header needs hop-by-hop treatment. One pass over the headers, so the common
/// request or response with none costs no hash lookups. `te: trailers` is kept as it is (every
/// gRPC call carries it), so it needs none either.
fn has_hop_by_hop(headers: &HeaderMap) -> bool {
    scan(headers).hop_by_hop
}

/// What one pass over a request's or response's names finds.
struct Found {
    /// See [`has_hop_by_hop`].
    hop_by_hop: bool,
    /// An `X-Forwarded-For`, `-Proto` or `-Host`.
    forwarding: bool,
}

fn scan(headers: &HeaderMap) -> Found {
    let mut found = Found {
        hop_by_hop: false,
        forwarding: false,
    };
    // One string match per name (a branch on its length first), not a `HeaderName`
    // comparison per name sought: about half the instructions.
    for (name, value) in headers {
        match name.as_str() {
            "connection" | "transfer-encoding" | "upgrade" | "trailer" | "keep-alive"
            | "proxy-connection" => found.hop_by_hop = true,
            "te" => found.hop_by_hop |= !value.as_bytes().eq_ignore_ascii_case(b"trailers"),
            "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host" => found.forwarding = true,
            _ => {}
        }
    }
    found
}

fn is_forwarding(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host"
    )
}

/// Removes hop-by-hop request headers (RFC 9110 §7.6.1), keeping `te: trailers` (gRPC needs
/// it) and, for websockets, the upgrade handshake. False when there were none to remove.
fn strip_request_hop_by_hop(headers: &mut HeaderMap, websocket: bool) -> bool {
    if !has_hop_by_hop(headers) {
        return false;
    }
    if !websocket {
        remove_connection_listed(headers);
        headers.remove(header::UPGRADE);
    }
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(header::TRANSFER_ENCODING);
    headers.remove(header::TRAILER);
    // Every line, not just the first: `te: trailers` beside `te: gzip` is not trailers only.
    if headers
        .get_all(header::TE)
        .iter()
        .any(|te| !te.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        headers.remove(header::TE);
    }
    true
}

fn strip_response_hop_by_hop(headers: &mut HeaderMap) {
    if !has_hop_by_hop(headers) {
        return;
    }
    remove_connection_listed(headers);
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
}

/// Removes `Connection` and every header named on any of its lines: a client can split the
/// list over several lines, and reading only the first would forward what the others name.
fn remove_connection_listed(headers: &mut HeaderMap) {
    // Values are `Bytes`: cloning one is a reference count, and collecting no extra lines (the
    // common case) allocates nothing.
    let Some(first) = headers.get(header::CONNECTION).cloned() else {
        return;
    };
    let more: Vec<HeaderValue> = headers
        .get_all(header::CONNECTION)
        .iter()
        .skip(1)
        .cloned()
        .collect();
    headers.remove(header::CONNECTION);
    for value in std::iter::once(&first).chain(&more) {
        let Ok(list) = value.to_str() else {
            continue;
        };
        for token in list.split(',') {
            if let Ok(name) = HeaderName::from_bytes(token.trim().as_bytes()) {
                if name != header::TE {
                    headers.remove(name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
