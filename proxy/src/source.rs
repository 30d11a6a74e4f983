//! Config sources and the one path from them to the data plane.
//!
//! [`Pipeline`] owns the controller (store + translation) and is the only writer of the
//! gateway's router: every change, from the manifest directory or from the local process
//! scaler publishing instance endpoints, goes through [`Pipeline::apply`], which translates,
//! swaps and records statuses under one lock, so snapshots are applied in order.
//!
//! [`ManifestSource`] polls the directory (every 50 ms, comparing names, sizes, mtimes and
//! inodes): that works on every filesystem and sees Kubernetes ConfigMap symlink swaps, which
//! inotify misses.

use crate::gateway::Gateway;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::services::ServiceReadyNotifier;
use sluice_controller::manifest::{self, DirFingerprint};
use sluice_controller::status::StatusBoard;
use sluice_controller::Controller;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tracing::{info, warn};

const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What the admin endpoints read.
#[derive(Clone)]
pub struct AdminState {
    pub statuses: Arc<Mutex<StatusBoard>>,
    /// True once the first config has been applied.
    pub ready: Arc<AtomicBool>,
}

pub struct Pipeline {
    controller: Mutex<Controller>,
    gateway: Arc<Gateway>,
    state: AdminState,
}

impl Pipeline {
    pub fn new(controller: Controller, board: StatusBoard, gateway: Arc<Gateway>) -> Self {
        Pipeline {
            controller: Mutex::new(controller),
            gateway,
            state: AdminState {
                statuses: Arc::new(Mutex::new(board)),
                ready: Arc::new(AtomicBool::new(false)),
            },
        }
    }

    pub fn admin_state(&self) -> AdminState {
        self.state.clone()
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// The controller, for reading the store or feeding it objects. Follow changes with
    /// [`Pipeline::apply`].
    pub fn controller(&self) -> MutexGuard<'_, Controller> {
        self.controller.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn statuses(&self) -> MutexGuard<'_, StatusBoard> {
        self.state
            .statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Re-reads the manifest directory into the store, then applies.
    pub fn reload_manifests(&self, dir: &std::path::Path) {
        let set = match manifest::load_dir(dir) {
            Ok(set) => set,
            Err(error) => {
                warn!(dir = %dir.display(), %error, "cannot read manifest directory; keeping the last config");
                return;
            }
        };
        let mut controller = self.controller();
        controller.apply_manifests(set);
        self.apply_locked(&mut controller);
    }

    /// Translates the current store and swaps the result in. Errors are reported, never
    /// fatal: the last good config keeps serving.
    pub fn apply(&self) {
        let mut controller = self.controller();
        self.apply_locked(&mut controller);
    }

    fn apply_locked(&self, controller: &mut Controller) {
        let started = std::time::Instant::now();
        let translation = controller.translate();
        for status in &translation.statuses {
            for condition in &status.status.conditions {
                if condition.type_ == "Ready" && condition.status == "False" {
                    warn!(
                        kind = %status.kind,
                        object = %format_args!("{}/{}", status.namespace, status.name),
                        reason = condition.reason.as_deref().unwrap_or(""),
                        message = condition.message.as_deref().unwrap_or(""),
                        "object not ready"
                    );
                }
            }
        }
        let snapshot = Arc::new(translation.snapshot);
        let version = snapshot.version.clone();
        let unchanged = self.gateway.router().version() == version;
        self.statuses()
            .update(&version, translation.statuses, &now_rfc3339());
        if unchanged {
            // Only statuses moved (say, a file error); this version is live already.
            self.statuses().applied(&version, &now_rfc3339());
            return;
        }
        let hosts = snapshot.external.virtual_hosts.len() + snapshot.internal.virtual_hosts.len();
        match self.gateway.apply(snapshot) {
            Ok(()) => {
                self.statuses().applied(&version, &now_rfc3339());
                info!(%version, virtual_hosts = hosts, elapsed = ?started.elapsed(), "applied snapshot");
            }
            Err(error) => warn!(%version, %error, "snapshot rejected; keeping the last config"),
        }
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

pub struct ManifestSource {
    dir: PathBuf,
    pipeline: Arc<Pipeline>,
}

impl ManifestSource {
    pub fn new(dir: PathBuf, pipeline: Arc<Pipeline>) -> Self {
        ManifestSource { dir, pipeline }
    }
}

#[async_trait]
impl BackgroundService for ManifestSource {
    async fn start_with_ready_notifier(
        &self,
        mut shutdown: ShutdownWatch,
        ready_notifier: ServiceReadyNotifier,
    ) {
        let mut ready_notifier = Some(ready_notifier);
        let mut last: Option<DirFingerprint> = None;
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reported_unreadable = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let fingerprint = match manifest::fingerprint(&self.dir) {
                Ok(fingerprint) => {
                    reported_unreadable = false;
                    fingerprint
                }
                Err(error) => {
                    if !reported_unreadable {
                        warn!(dir = %self.dir.display(), %error, "cannot read manifest directory");
                        reported_unreadable = true;
                    }
                    continue;
                }
            };
            if last.as_ref() == Some(&fingerprint) {
                continue;
            }
            last = Some(fingerprint);
            self.pipeline.reload_manifests(&self.dir);
            if let Some(notifier) = ready_notifier.take() {
                self.pipeline.state.ready.store(true, Ordering::Release);
                notifier.notify_ready();
            }
        }
    }
}
