//! Prometheus metrics, in one registry (the process default, which is where Pingora-ecosystem
//! crates register theirs).
//!
//! Request-path rule: label lookups happen once per owner or backend (at its first request),
//! never per request, so recording is a few atomic adds with no label lookup and no lock.
//! Owners and backends that never see a request create no series at all.

use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};
use std::sync::OnceLock;

pub struct Metrics {
    pub registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    backend_in_flight: IntGaugeVec,
    backend_held: IntGaugeVec,
    backend_connects: IntCounterVec,
    backend_connect_errors: IntCounterVec,
    backend_ejections: IntCounterVec,
    backend_queue_wait: HistogramVec,
    pub snapshot_info: IntGaugeVec,
    pub snapshot_applied_at: Gauge,
    pub snapshot_apply_seconds: Histogram,
    pub snapshot_rejected: IntCounter,
    /// Access log lines written, and lines dropped (queue full or write failed).
    pub access_log_lines: IntCounter,
    pub access_log_dropped: IntCounter,
    /// Connections closed at accept because their listener was at `--max-connections`.
    pub downstream_rejected: IntCounterVec,
    /// Requests that matched no route; counted under ingress="none".
    pub unrouted: RouteMetrics,
}

/// Status classes recorded per route: index = status / 100 (0 = other).
const CLASSES: [&str; 6] = ["other", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// One owner's request metrics. Its Prometheus children are created at its first request, so
/// an idle owner costs two `Arc`s, not seven series (at 10,000 ingresses that is most of a
/// proxy's metrics memory and of its `/metrics` output).
pub struct RouteMetrics {
    /// The `ingress` label.
    owner: Box<str>,
    requests: IntCounterVec,
    duration: HistogramVec,
    children: OnceLock<RouteChildren>,
}

struct RouteChildren {
    by_class: [IntCounter; 6],
    duration: Histogram,
}

/// One backend's metrics; children created at first use, like [`RouteMetrics`].
pub struct BackendMetrics {
    /// The `backend` label.
    backend: Box<str>,
    vecs: Option<BackendVecs>,
    children: OnceLock<BackendChildren>,
}

#[derive(Clone)]
struct BackendVecs {
    in_flight: IntGaugeVec,
    held: IntGaugeVec,
    queue_wait: HistogramVec,
    connects: IntCounterVec,
    connect_errors: IntCounterVec,
    ejections: IntCounterVec,
}

pub struct BackendChildren {
    pub in_flight: IntGauge,
    pub held: IntGauge,
    /// Time requests spent waiting for a slot (cold starts, saturated instances).
    pub queue_wait: Histogram,
    pub connects: IntCounter,
    pub connect_errors: IntCounter,
    /// Endpoints ejected by passive health (consecutive connect failures).
    pub ejections: IntCounter,
}

impl Metrics {
    pub fn new(registry: Registry) -> prometheus::Result<Metrics> {
        let requests = IntCounterVec::new(
            Opts::new(
                "sluice_requests_total",
                "Requests by owning ingress and status class",
            ),
            &["ingress", "code"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "sluice_request_duration_seconds",
                "Time from request to response head, by owning ingress",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["ingress"],
        )?;
        let backend_in_flight = IntGaugeVec::new(
            Opts::new(
                "sluice_backend_in_flight_requests",
                "Requests in flight per backend",
            ),
            &["backend"],
        )?;
        let backend_held = IntGaugeVec::new(
            Opts::new(
                "sluice_backend_held_requests",
                "Requests waiting for a ready endpoint per backend",
            ),
            &["backend"],
        )?;
        let backend_connects = IntCounterVec::new(
            Opts::new(
                "sluice_upstream_connections_total",
                "Upstream connections opened",
            ),
            &["backend"],
        )?;
        let backend_connect_errors = IntCounterVec::new(
            Opts::new(
                "sluice_upstream_connect_errors_total",
                "Failed upstream connects",
            ),
            &["backend"],
        )?;
        let backend_ejections = IntCounterVec::new(
            Opts::new(
                "sluice_upstream_ejections_total",
                "Endpoints ejected after consecutive connect failures (passive health)",
            ),
            &["backend"],
        )?;
        let backend_queue_wait = HistogramVec::new(
            HistogramOpts::new(
                "sluice_backend_queue_wait_seconds",
                "Time requests waited for a slot (cold starts, instances at their concurrency)",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            &["backend"],
        )?;
        let snapshot_info = IntGaugeVec::new(
            Opts::new(
                "sluice_snapshot_info",
                "The applied config version, the digest of every applied resource (value 1)",
            ),
            &["version"],
        )?;
        let snapshot_applied_at = Gauge::new(
            "sluice_snapshot_applied_timestamp_seconds",
            "Unix time the current snapshot was applied",
        )?;
        let snapshot_apply_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "sluice_snapshot_apply_duration_seconds",
                "Time to compile and swap in a batch of config updates",
            )
            .buckets(prometheus::exponential_buckets(0.0001, 4.0, 10)?),
        )?;
        let snapshot_rejected = IntCounter::new(
            "sluice_snapshot_rejected_total",
            "Resources the proxy refused (NACKed), keeping their last good version",
        )?;
        let access_log_lines =
            IntCounter::new("sluice_access_log_lines_total", "Access log lines written")?;
        let access_log_dropped = IntCounter::new(
            "sluice_access_log_dropped_total",
            "Access log lines dropped: the writer's queue was full or a write failed",
        )?;
        registry.register(Box::new(access_log_lines.clone()))?;
        registry.register(Box::new(access_log_dropped.clone()))?;
        let downstream_rejected = IntCounterVec::new(
            Opts::new(
                "sluice_downstream_connections_rejected_total",
                "Downstream connections closed at accept: the listener was at --max-connections",
            ),
            &["listener"],
        )?;
        registry.register(Box::new(downstream_rejected.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(backend_in_flight.clone()))?;
        registry.register(Box::new(backend_held.clone()))?;
        registry.register(Box::new(backend_connects.clone()))?;
        registry.register(Box::new(backend_connect_errors.clone()))?;
        registry.register(Box::new(backend_ejections.clone()))?;
        registry.register(Box::new(backend_queue_wait.clone()))?;
        registry.register(Box::new(snapshot_info.clone()))?;
        registry.register(Box::new(snapshot_applied_at.clone()))?;
        registry.register(Box::new(snapshot_apply_seconds.clone()))?;
        registry.register(Box::new(snapshot_rejected.clone()))?;
        let unrouted = RouteMetrics::from_vecs(&requests, &duration, "none");
        Ok(Metrics {
            registry,
            requests,
            duration,
            backend_in_flight,
            backend_held,
            backend_connects,
            backend_connect_errors,
            backend_ejections,
            backend_queue_wait,
            snapshot_info,
            snapshot_applied_at,
            snapshot_apply_seconds,
            snapshot_rejected,
            access_log_lines,
            access_log_dropped,
            downstream_rejected,
            unrouted,
        })
    }

    /// Prometheus text exposition of the whole registry.
    pub fn render(&self) -> String {
        let families = self.registry.gather();
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_else(|e| format!("# encode error: {e}\n"))
    }
}

impl RouteMetrics {
    pub fn new(metrics: &Metrics, ingress: &str) -> RouteMetrics {
        RouteMetrics::from_vecs(&metrics.requests, &metrics.duration, ingress)
    }

    fn from_vecs(requests: &IntCounterVec, duration: &HistogramVec, ingress: &str) -> RouteMetrics {
        RouteMetrics {
            owner: ingress.into(),
            requests: requests.clone(),
            duration: duration.clone(),
            children: OnceLock::new(),
        }
    }

    /// Registered nowhere: for compiling routes only to validate them.
    pub fn detached() -> RouteMetrics {
        let requests = IntCounterVec::new(Opts::new("detached", "detached"), &["ingress", "code"])
            .expect("valid name");
        let duration = HistogramVec::new(HistogramOpts::new("detached", "detached"), &["ingress"])
            .expect("valid name");
        RouteMetrics::from_vecs(&requests, &duration, "")
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn record(&self, status: u16, seconds: f64) {
        let children = self.children.get_or_init(|| RouteChildren {
            by_class: CLASSES.map(|class| self.requests.with_label_values(&[&*self.owner, class])),
            duration: self.duration.with_label_values(&[&*self.owner]),
        });
        let class = usize::from(status / 100);
        children.by_class[if class < CLASSES.len() { class } else { 0 }].inc();
        children.duration.observe(seconds);
    }

    /// Drops the owner's series (it is gone from the config).
    pub fn forget(&self) {
        if self.children.get().is_some() {
            for class in CLASSES {
                let _ = self.requests.remove_label_values(&[&*self.owner, class]);
            }
            let _ = self.duration.remove_label_values(&[&*self.owner]);
        }
    }
}

impl BackendMetrics {
    pub fn new(metrics: &Metrics, backend: &str) -> BackendMetrics {
        BackendMetrics {
            backend: backend.into(),
            vecs: Some(BackendVecs {
                in_flight: metrics.backend_in_flight.clone(),
                held: metrics.backend_held.clone(),
                queue_wait: metrics.backend_queue_wait.clone(),
                connects: metrics.backend_connects.clone(),
                connect_errors: metrics.backend_connect_errors.clone(),
                ejections: metrics.backend_ejections.clone(),
            }),
            children: OnceLock::new(),
        }
    }

    /// Registered nowhere: for backends built only to validate routes.
    pub fn detached() -> BackendMetrics {
        BackendMetrics {
            backend: "".into(),
            vecs: None,
            children: OnceLock::new(),
        }
    }

    /// The backend's series, created on first use.
    pub fn get(&self) -> &BackendChildren {
        self.children.get_or_init(|| {
            let label = [&*self.backend];
            match &self.vecs {
                Some(v) => BackendChildren {
                    in_flight: v.in_flight.with_label_values(&label),
                    held: v.held.with_label_values(&label),
                    queue_wait: v.queue_wait.with_label_values(&label),
                    connects: v.connects.with_label_values(&label),
                    connect_errors: v.connect_errors.with_label_values(&label),
                    ejections: v.ejections.with_label_values(&label),
                },
                None => {
                    let gauge = || IntGauge::new("detached", "detached").expect("valid name");
                    let counter = || IntCounter::new("detached", "detached").expect("valid name");
                    BackendChildren {
                        in_flight: gauge(),
                        held: gauge(),
                        queue_wait: Histogram::with_opts(HistogramOpts::new(
                            "detached", "detached",
                        ))
                        .expect("valid name"),
                        connects: counter(),
                        connect_errors: counter(),
                        ejections: counter(),
                    }
                }
            }
        })
    }

    /// Sets the held-requests gauge; a backend nobody ever waited for gets no series.
    pub fn set_held(&self, n: usize) {
        if n > 0 || self.children.get().is_some() {
            self.get().held.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Drops the backend's series (it is gone from the config).
    pub fn forget(&self) {
        if let (Some(v), Some(_)) = (&self.vecs, self.children.get()) {
            let label = [&*self.backend];
            let _ = v.in_flight.remove_label_values(&label);
            let _ = v.held.remove_label_values(&label);
            let _ = v.queue_wait.remove_label_values(&label);
            let _ = v.connects.remove_label_values(&label);
            let _ = v.connect_errors.remove_label_values(&label);
            let _ = v.ejections.remove_label_values(&label);
        }
    }
}
