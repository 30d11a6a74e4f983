//! The shared gateway state: the current router and what the request path needs besides it.

use crate::metrics::Metrics;
use crate::router::{InvalidSnapshot, Router};
use arc_swap::ArcSwap;
use sluice_xds::Snapshot;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Request-path settings that come from flags, not from routing config.
#[derive(Clone, Debug)]
pub struct Settings {
    pub connect_timeout: Duration,
    /// How long a request may wait for a backend with no ready endpoint.
    pub hold_timeout: Duration,
    /// Most requests held per backend; more get 503 at once.
    pub max_held_per_backend: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            connect_timeout: Duration::from_secs(5),
            hold_timeout: Duration::from_secs(30),
            max_held_per_backend: 10_000,
        }
    }
}

pub struct Gateway {
    router: ArcSwap<Router>,
    /// Bumped after every swap; held requests wait on it.
    changes: watch::Sender<u64>,
    pub metrics: Metrics,
    pub settings: Settings,
    /// Open downstream connections plus upgraded tunnels; the drain waits for zero.
    pub open_connections: Arc<AtomicUsize>,
    /// Woken by a request for a revision scaled to zero: the autoscaler decides at once.
    pub poke: tokio::sync::Notify,
    /// The HTTPS listeners' certificates, swapped with the router.
    pub tls: crate::tls::Certificates,
}

impl Gateway {
    pub fn new(metrics: Metrics, settings: Settings) -> Self {
        Gateway {
            router: ArcSwap::from_pointee(Router::empty()),
            changes: watch::Sender::new(0),
            metrics,
            settings,
            open_connections: Arc::default(),
            poke: tokio::sync::Notify::new(),
            tls: crate::tls::Certificates::new(None),
        }
    }

    /// Serves `default` to TLS clients whose SNI names no certificate of the snapshot.
    pub fn with_default_certificate(
        mut self,
        default: Option<Arc<pingora::tls::sign::CertifiedKey>>,
    ) -> Self {
        self.tls = crate::tls::Certificates::new(default);
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

    /// Compiles and swaps in `snapshot`. On error the current router keeps serving.
    pub fn apply(&self, snapshot: Arc<Snapshot>) -> Result<(), InvalidSnapshot> {
        let started = Instant::now();
        let current = self.router.load_full();
        if current.version() == snapshot.version {
            return Ok(());
        }
        let router = match Router::compile(
            snapshot,
            &current,
            &self.metrics,
            self.settings.max_held_per_backend,
        ) {
            Ok(router) => router,
            Err(e) => {
                self.metrics.snapshot_rejected.inc();
                return Err(e);
            }
        };
        let version = router.version().to_string();
        if current.snapshot.certificates != router.snapshot.certificates {
            self.tls.apply(&router.snapshot.certificates);
        }
        self.router.store(Arc::new(router));
        self.changes.send_modify(|n| *n += 1);
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
        Ok(())
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
