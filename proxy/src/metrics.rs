//! Prometheus metrics, in one registry (the process default, which is where Pingora-ecosystem
//! crates register theirs).
//!
//! Request-path rule: handles are resolved when a router is compiled, never per request, so
//! recording is a few atomic adds with no label lookup and no lock.

use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

pub struct Metrics {
    pub registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    backend_in_flight: IntGaugeVec,
    backend_held: IntGaugeVec,
    backend_connects: IntCounterVec,
    backend_connect_errors: IntCounterVec,
    backend_queue_wait: HistogramVec,
    pub snapshot_info: IntGaugeVec,
    pub snapshot_applied_at: Gauge,
    pub snapshot_apply_seconds: Histogram,
    pub snapshot_rejected: IntCounter,
    /// Requests that matched no route; counted under ingress="none".
    pub unrouted: RouteMetrics,
    pub revisions: RevisionMetrics,
}

/// Status classes recorded per route: index = status / 100 (0 = other).
const CLASSES: [&str; 6] = ["other", "1xx", "2xx", "3xx", "4xx", "5xx"];

pub struct RouteMetrics {
    by_class: [IntCounter; 6],
    pub duration: Histogram,
}

pub struct BackendMetrics {
    pub in_flight: IntGauge,
    pub held: IntGauge,
    /// Time requests spent waiting for a slot (cold starts, saturated instances).
    pub queue_wait: Histogram,
    pub connects: IntCounter,
    pub connect_errors: IntCounter,
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
                "The applied snapshot version (value 1)",
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
                "Time to translate and swap in a new snapshot",
            )
            .buckets(prometheus::exponential_buckets(0.0001, 4.0, 10)?),
        )?;
        let snapshot_rejected = IntCounter::new(
            "sluice_snapshot_rejected_total",
            "Snapshots the proxy refused to compile",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(backend_in_flight.clone()))?;
        registry.register(Box::new(backend_held.clone()))?;
        registry.register(Box::new(backend_connects.clone()))?;
        registry.register(Box::new(backend_connect_errors.clone()))?;
        registry.register(Box::new(backend_queue_wait.clone()))?;
        registry.register(Box::new(snapshot_info.clone()))?;
        registry.register(Box::new(snapshot_applied_at.clone()))?;
        registry.register(Box::new(snapshot_apply_seconds.clone()))?;
        registry.register(Box::new(snapshot_rejected.clone()))?;
        let unrouted = RouteMetrics::from_vecs(&requests, &duration, "none");
        let revisions = RevisionMetrics::register(&registry)?;
        Ok(Metrics {
            registry,
            requests,
            duration,
            backend_in_flight,
            backend_held,
            backend_connects,
            backend_connect_errors,
            backend_queue_wait,
            snapshot_info,
            snapshot_applied_at,
            snapshot_apply_seconds,
            snapshot_rejected,
            unrouted,
            revisions,
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
            by_class: CLASSES.map(|class| requests.with_label_values(&[ingress, class])),
            duration: duration.with_label_values(&[ingress]),
        }
    }

    pub fn record(&self, status: u16, seconds: f64) {
        let class = usize::from(status / 100);
        self.by_class[if class < CLASSES.len() { class } else { 0 }].inc();
        self.duration.observe(seconds);
    }
}

impl BackendMetrics {
    pub fn new(metrics: &Metrics, backend: &str) -> BackendMetrics {
        BackendMetrics {
            in_flight: metrics.backend_in_flight.with_label_values(&[backend]),
            held: metrics.backend_held.with_label_values(&[backend]),
            queue_wait: metrics.backend_queue_wait.with_label_values(&[backend]),
            connects: metrics.backend_connects.with_label_values(&[backend]),
            connect_errors: metrics.backend_connect_errors.with_label_values(&[backend]),
        }
    }
}

/// Per-Revision autoscaler gauges.
#[derive(Clone)]
pub struct RevisionMetrics {
    desired: IntGaugeVec,
    actual: IntGaugeVec,
    panic_mode: IntGaugeVec,
    stable: prometheus::GaugeVec,
    panic: prometheus::GaugeVec,
}

impl RevisionMetrics {
    fn register(registry: &Registry) -> prometheus::Result<RevisionMetrics> {
        let int = |name: &str, help: &str| -> prometheus::Result<IntGaugeVec> {
            let vec = IntGaugeVec::new(Opts::new(name, help), &["revision"])?;
            registry.register(Box::new(vec.clone()))?;
            Ok(vec)
        };
        let float = |name: &str, help: &str| -> prometheus::Result<prometheus::GaugeVec> {
            let vec = prometheus::GaugeVec::new(Opts::new(name, help), &["revision"])?;
            registry.register(Box::new(vec.clone()))?;
            Ok(vec)
        };
        Ok(RevisionMetrics {
            desired: int(
                "sluice_revision_desired_scale",
                "Instances the autoscaler wants",
            )?,
            actual: int("sluice_revision_actual_scale", "Ready instances")?,
            panic_mode: int(
                "sluice_revision_panic_mode",
                "1 while the autoscaler panics",
            )?,
            stable: float(
                "sluice_revision_stable_concurrency",
                "Stable-window average concurrency (buffered requests included)",
            )?,
            panic: float(
                "sluice_revision_panic_concurrency",
                "Panic-window average concurrency (buffered requests included)",
            )?,
        })
    }

    pub fn record(
        &self,
        revision: &str,
        desired: i32,
        actual: u32,
        decision: &sluice_controller::autoscaler::Decision,
    ) {
        self.desired
            .with_label_values(&[revision])
            .set(i64::from(desired));
        self.actual
            .with_label_values(&[revision])
            .set(i64::from(actual));
        self.panic_mode
            .with_label_values(&[revision])
            .set(i64::from(decision.panicking));
        self.stable
            .with_label_values(&[revision])
            .set(decision.stable);
        self.panic
            .with_label_values(&[revision])
            .set(decision.panic);
    }
}
