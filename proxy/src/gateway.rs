//! The shared gateway state: the current router and what the request path needs besides it,
//! and the data plane's side of the xDS stream ([`DataPlane`]).

use crate::activator::{HeldTotal, RevisionStats};
use crate::catalog::Catalog;
use crate::metrics::Metrics;
use crate::router::Router;
use arc_swap::ArcSwap;
use sluice_xds::client::DataPlane;
use sluice_xds::load::{LoadReport, Poke, RevisionLoad};
use sluice_xds::protocol::{DeltaResponse, Rejection};
use sluice_xds::ResourceType;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tracing::{debug, info, warn};

/// Request-path settings that come from flags, not from routing config.
#[derive(Clone, Debug)]
pub struct Settings {
    pub connect_timeout: Duration,
    /// How long a request may wait for a backend with no ready endpoint.
    pub hold_timeout: Duration,
    /// Most requests held per backend (and the cap on a Revision's own bound); more get 503
    /// at once.
    pub max_held_per_backend: usize,
    /// Most requests held across all backends; more get 503 at once.
    pub max_held_total: usize,
    /// Passive health: ejection of endpoints after consecutive connect failures.
    pub outlier: crate::balance::Outlier,
    /// Proxies in front of this one whose `X-Forwarded-*` are believed (Envoy's
    /// `xff_num_trusted_hops`). 0: the client's `X-Forwarded-Host` and `-Proto` are replaced.
    /// `X-Forwarded-For` gets the peer address appended either way.
    pub xff_trusted_hops: u32,
    /// Most concurrent streams a client may open on one HTTP/2 connection (SETTINGS).
    pub h2_max_concurrent_streams: u32,
    /// Most response bytes buffered per HTTP/2 stream waiting for the client's window.
    pub h2_max_send_buffer: usize,
    /// PING an HTTP/2 connection idle this long (zero: never); no ACK within
    /// `h2_keepalive_timeout` closes it.
    pub h2_keepalive_interval: Duration,
    pub h2_keepalive_timeout: Duration,
    /// Rapid reset: past this many closed streams on an HTTP/2 connection, half of them reset
    /// by the client within `h2_premature_reset_lifetime` and before their answer end it
    /// (0: never). Envoy's premature-reset rule and defaults.
    pub h2_premature_reset_streams: usize,
    pub h2_premature_reset_lifetime: Duration,
    /// No byte on a request or response body (or a blocked write to the client) for this
    /// long ends the stream (zero: never).
    pub stream_idle_timeout: Duration,
    /// No byte either way on an upgraded (websocket) tunnel for this long closes it.
    pub websocket_idle_timeout: Duration,
    /// What a downstream client may push: head size, header count, URI length, connections,
    /// head and idle timeouts.
    pub downstream: crate::downstream::DownstreamLimits,
    /// Responses that waited in the activator carry `Server-Timing` (see
    /// [`crate::server_timing`]).
    pub server_timing: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            connect_timeout: Duration::from_secs(5),
            hold_timeout: Duration::from_secs(30),
            max_held_per_backend: 10_000,
            max_held_total: 20_000,
            outlier: crate::balance::Outlier::default(),
            xff_trusted_hops: 0,
            h2_max_concurrent_streams: 100,
            h2_max_send_buffer: 64 * 1024,
            h2_keepalive_interval: Duration::from_secs(60),
            h2_keepalive_timeout: Duration::from_secs(20),
            h2_premature_reset_streams: 500,
            h2_premature_reset_lifetime: Duration::from_secs(1),
            stream_idle_timeout: Duration::from_secs(300),
            websocket_idle_timeout: Duration::from_secs(300),
            downstream: crate::downstream::DownstreamLimits::default(),
            server_timing: true,
        }
    }
}

pub struct Gateway {
    router: ArcSwap<Router>,
    /// Bumped after every swap; held requests wait on it.
    changes: watch::Sender<u64>,
    /// Applied resources and compiled pieces; only the xDS client writes (one batch at a time).
    catalog: Mutex<Catalog>,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    /// Requests held in any backend's queue.
    pub held_total: Arc<HeldTotal>,
    /// Open downstream connections plus upgraded tunnels; the drain waits for zero.
    pub open_connections: Arc<AtomicUsize>,
    /// The HTTPS listeners' certificates.
    pub tls: crate::tls::Certificates,
    /// True once the first full config is applied (set by whoever runs the xDS client):
    /// `/ready`, and the listeners start.
    pub ready: AtomicBool,
    /// True once every listener with a known port accepts connections (they bind only after
    /// the first config): `/ready` needs it too.
    pub listening: AtomicBool,
    /// `--access-log`; `None` (the default) costs the request path one branch.
    pub access_log: Option<Arc<crate::access_log::AccessLog>>,
    /// Revisions waiting for a poke to be sent.
    pokes: Mutex<Vec<(Arc<str>, Arc<RevisionStats>)>>,
    poke_notify: Notify,
    last_report: Mutex<Instant>,
}

impl Gateway {
    pub fn new(metrics: Arc<Metrics>, settings: Settings) -> Self {
        let held_total = HeldTotal::new(settings.max_held_total);
        Gateway {
            router: ArcSwap::from_pointee(Router::default()),
            changes: watch::Sender::new(0),
            catalog: Mutex::new(Catalog::new(
                metrics.clone(),
                settings.max_held_per_backend,
                held_total.clone(),
            )),
            held_total,
            metrics,
            settings,
            open_connections: Arc::default(),
            tls: crate::tls::Certificates::new(None),
            ready: AtomicBool::new(false),
            listening: AtomicBool::new(false),
            access_log: None,
            pokes: Mutex::new(Vec::new()),
            poke_notify: Notify::new(),
            last_report: Mutex::new(Instant::now()),
        }
    }

    /// Serves `default` to TLS clients whose SNI names no certificate.
    pub fn with_default_certificate(
        mut self,
        default: Option<Arc<pingora::tls::sign::CertifiedKey>>,
    ) -> Self {
        self.tls = crate::tls::Certificates::new(default);
        self
    }

    /// Writes an access log line per request.
    pub fn with_access_log(mut self, log: crate::access_log::AccessLog) -> Self {
        self.access_log = Some(Arc::new(log));
        self
    }

    /// The current router. Callers must not hold it across an `.await`.
    pub fn router(&self) -> arc_swap::Guard<Arc<Router>> {
        self.router.load()
    }

    /// Subscribes to router swaps (used by requests waiting for endpoints).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn catalog(&self) -> MutexGuard<'_, Catalog> {
        self.catalog.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request arrived for a Revision with no instance: ask the autoscaler to decide now.
    /// At most one poke per Revision is pending at a time.
    pub fn poke(&self, revision: &Arc<str>, stats: &Arc<RevisionStats>) {
        if stats.poke_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        self.pokes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((revision.clone(), stats.clone()));
        self.poke_notify.notify_one();
    }

    /// Applies a batch of responses: compile, swap, then let waiting requests see the new
    /// endpoints. One result per response.
    pub fn apply(&self, responses: &[DeltaResponse]) -> Vec<Result<(), Rejection>> {
        let started = Instant::now();
        let mut catalog = self.catalog();
        let outcome = catalog.apply(responses);
        for rejection in outcome.results.iter().filter_map(|r| r.as_ref().err()) {
            warn!(rejected = %rejection.message, "config rejected; keeping the last good version");
            self.metrics
                .snapshot_rejected
                .inc_by(rejection.resources.len().max(1) as u64);
        }
        if outcome.certificates_changed {
            self.tls.apply(&catalog.certificates());
        }
        if let Some(router) = outcome.router {
            self.router.store(Arc::new(router));
            // After the swap, so a waiter sent back to route finds the new router.
            for backend in &outcome.rebuilt {
                if let Some(upstream) = backend.upstream() {
                    upstream
                        .queue
                        .update(upstream.endpoints(), upstream.concurrency);
                }
            }
            for backend in &outcome.removed {
                if let Some(upstream) = backend.upstream() {
                    upstream.queue.reroute_all();
                }
            }
            self.changes.send_modify(|n| *n += 1);
        }
        if !outcome.push_ended {
            // Compiled, not served yet: the push's last response publishes it.
            debug!(responses = responses.len(), elapsed = ?started.elapsed(), "compiled part of a push");
            return outcome.results;
        }
        let version = catalog.digest().to_hex();
        drop(catalog);
        self.metrics.snapshot_info.reset();
        self.metrics
            .snapshot_info
            .with_label_values(&[&version])
            .set(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        self.metrics.snapshot_applied_at.set(now);
        self.metrics
            .snapshot_apply_seconds
            .observe(started.elapsed().as_secs_f64());
        info!(%version, responses = responses.len(), elapsed = ?started.elapsed(), "applied config");
        outcome.results
    }
}

impl DataPlane for Gateway {
    fn apply(&self, responses: &[DeltaResponse]) -> Vec<Result<(), Rejection>> {
        Gateway::apply(self, responses)
    }

    fn held(&self, type_: ResourceType) -> BTreeMap<String, String> {
        self.catalog().versions(type_)
    }

    fn take_load(&self) -> LoadReport {
        let now = Instant::now();
        let interval = {
            let mut last = self.last_report.lock().unwrap_or_else(|p| p.into_inner());
            let interval = now.duration_since(*last);
            *last = now;
            interval
        };
        let catalog = self.catalog();
        let revisions = catalog
            .revisions()
            .filter_map(|(id, stats)| {
                let sample = stats.take();
                (sample.concurrency > 0.0 || sample.requests > 0.0).then(|| RevisionLoad {
                    revision: id.clone(),
                    concurrency: sample.concurrency,
                    requests: sample.requests,
                    // The queue keeps its length in an atomic already: one load per Revision
                    // per second, nothing on the request path.
                    held: catalog
                        .backend(id)
                        .and_then(|b| match &b.kind {
                            crate::backend::BackendKind::Upstream(u) => {
                                u32::try_from(u.queue.waiting()).ok()
                            }
                            crate::backend::BackendKind::Responder(_) => None,
                        })
                        .unwrap_or(0),
                })
            })
            .collect();
        LoadReport {
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            revisions,
        }
    }

    fn take_pokes(&self) -> Poke {
        let pending = std::mem::take(&mut *self.pokes.lock().unwrap_or_else(|p| p.into_inner()));
        Poke {
            revisions: pending
                .into_iter()
                .map(|(revision, stats)| {
                    stats.poke_pending.store(false, Ordering::Release);
                    stats.poked.fetch_add(1, Ordering::Relaxed);
                    // Knative's activator poke: one request at concurrency 1, taken back out of
                    // the next regular report.
                    RevisionLoad {
                        revision: revision.to_string(),
                        concurrency: 1.0,
                        requests: 1.0,
                        held: 0,
                    }
                })
                .collect(),
        }
    }

    fn poke_notify(&self) -> &Notify {
        &self.poke_notify
    }
}

/// Counts an open connection (or tunnel) until dropped.
pub struct OpenConnection(Arc<AtomicUsize>);

impl OpenConnection {
    pub fn new(counter: Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        OpenConnection(counter)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
