//! The control plane as one unit: the [`Hub`], its sources, the autoscaler and the local
//! process scaler, run until shutdown. Transports (in-process, gRPC) reach it through
//! [`ControlPlane::streams`].

use crate::history::History;
use crate::hub::{Hub, HubMetrics};
use crate::kubernetes::Kubernetes;
use crate::local::{EndpointPublisher, LocalProcesses};
use crate::object::{Kind, Object, ObjectKey};
use crate::revision::ScalingTarget;
use crate::scaling::{Autoscaler, RevisionMetrics};
use crate::source::ManifestSource;
use crate::TranslateConfig;
use sluice_xds::server::{OpenWhen, ServeWhile, Sessions, StreamHandler};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

pub struct ControlPlane {
    hub: Arc<Hub>,
    processes: Arc<LocalProcesses>,
    autoscaler: Autoscaler,
    history: Arc<History>,
    source: Source,
    /// True once every source has been read and published.
    loaded: watch::Sender<bool>,
}

/// Where the control plane's objects come from.
pub enum Objects {
    /// A directory of manifests.
    Manifests(PathBuf),
    /// The Kubernetes API server (which also receives statuses and scale writes).
    Kubernetes(Box<Kubernetes>),
    /// Nothing: an empty config.
    Empty,
}

enum Source {
    Manifests(ManifestSource),
    Kubernetes(Box<Kubernetes>),
    Empty,
}

impl ControlPlane {
    /// `history_window`: how much of each Revision's autoscaler history to keep
    /// ([`crate::history`]).
    pub fn new(
        config: TranslateConfig,
        objects: Objects,
        registry: &prometheus::Registry,
        history_window: Duration,
    ) -> prometheus::Result<ControlPlane> {
        let hub = Hub::new(config, HubMetrics::new(registry)?);
        let publisher: Arc<dyn EndpointPublisher> = hub.clone();
        let processes = LocalProcesses::new(publisher);
        let history = Arc::new(History::new(history_window));
        let mut autoscaler = Autoscaler::new(
            hub.clone(),
            processes.clone(),
            RevisionMetrics::new(registry)?,
        )
        .with_history(history.clone());
        let source = match objects {
            Objects::Manifests(dir) => Source::Manifests(ManifestSource::new(dir, hub.clone())),
            Objects::Kubernetes(kubernetes) => {
                autoscaler = autoscaler
                    .with_cluster_scaler(kubernetes.scaler())
                    .with_leader(kubernetes.leader());
                Source::Kubernetes(kubernetes)
            }
            Objects::Empty => Source::Empty,
        };
        Ok(ControlPlane {
            hub,
            processes,
            autoscaler,
            history,
            source,
            loaded: watch::Sender::new(false),
        })
    }

    /// Kubernetes mode's state (leadership), if that is the source.
    pub fn kubernetes(&self) -> Option<&Kubernetes> {
        match &self.source {
            Source::Kubernetes(kubernetes) => Some(kubernetes),
            _ => None,
        }
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// What the autoscaler saw and decided per Revision (for `/ui` and `trace.csv`).
    pub fn history(&self) -> &Arc<History> {
        &self.history
    }

    /// True once every source has been read and published.
    pub fn loaded(&self) -> watch::Receiver<bool> {
        self.loaded.subscribe()
    }

    /// Where proxy streams go, whatever their transport. Streams may open at once; they are
    /// answered once the sources are loaded.
    pub fn streams(&self) -> Arc<dyn StreamHandler> {
        OpenWhen::new(
            self.loaded.subscribe(),
            Sessions::new(self.hub.cache().clone(), self.hub.clone()),
        )
    }

    /// Where the streams of a fleet of proxies go (`sluice controller`). In Kubernetes mode
    /// only the Lease holder serves them: its autoscaler is the one that scales, so it must
    /// hear every proxy's load, and its readiness must count every proxy. A standby refuses
    /// at once, and a replica that loses the Lease ends its streams; proxies retry until they
    /// reach the leader. Otherwise the same as [`ControlPlane::streams`].
    pub fn fleet_streams(&self) -> Arc<dyn StreamHandler> {
        match self.kubernetes() {
            Some(kubernetes) => ServeWhile::new(
                kubernetes.leader(),
                kubernetes.not_leading(),
                self.streams(),
            ),
            None => self.streams(),
        }
    }

    /// Runs the sources and the autoscaler until `shutdown` turns true, then stops every
    /// local instance. `on_loaded` is called once every source has been read and published
    /// (streams are answered from then on, see [`ControlPlane::streams`]).
    pub async fn run(&self, on_loaded: Box<dyn FnOnce() + Send>, shutdown: watch::Receiver<bool>) {
        let loaded = self.loaded.clone();
        let on_loaded: Box<dyn FnOnce() + Send> = Box::new(move || {
            loaded.send_replace(true);
            on_loaded();
        });
        let source = async {
            match &self.source {
                Source::Manifests(source) => source.run(on_loaded, shutdown.clone()).await,
                Source::Kubernetes(kubernetes) => {
                    kubernetes
                        .run(self.hub.clone(), on_loaded, shutdown.clone())
                        .await
                }
                Source::Empty => on_loaded(),
            }
        };
        tokio::join!(source, self.autoscaler.run(shutdown.clone()));
        info!("control plane: stopping local instances");
        self.processes.shutdown().await;
    }
}

/// The EndpointSlice a local instance is published as.
fn endpoint_slice(target: &ScalingTarget, port: u16) -> Option<Object> {
    let value = serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{}-local-{port}", target.name),
            "namespace": target.namespace,
            "labels": {crate::object::REVISION_LABEL: target.name},
        },
        "addressType": "IPv4",
        "ports": [{"port": port}],
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
    });
    Object::decode(Kind::EndpointSlice, value)
        .map_err(|error| warn!(revision = %target.id, %error, "cannot publish instance"))
        .ok()
}

impl EndpointPublisher for Hub {
    fn publish(&self, target: &ScalingTarget, ports: &[u16]) -> u64 {
        let prefix = format!("{}-local-", target.name);
        let (_, seq) = self.edit(|controller| {
            let stale: Vec<ObjectKey> = controller
                .store()
                .labelled_endpoint_slices(
                    &target.namespace,
                    crate::object::REVISION_LABEL,
                    &target.name,
                )
                .map(|slice| {
                    ObjectKey::new(Kind::EndpointSlice, &target.namespace, &slice.metadata.name)
                })
                .filter(|key| key.name.starts_with(&prefix))
                .filter(|key| !ports.iter().any(|p| key.name == format!("{prefix}{p}")))
                .collect();
            for key in stale {
                controller.delete(&key);
            }
            for port in ports {
                if let Some(slice) = endpoint_slice(target, *port) {
                    controller.upsert(slice);
                }
            }
        });
        seq
    }

    fn applied(
        &self,
        seq: u64,
        bound: Duration,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        Box::pin(self.wait_applied(seq, bound))
    }
}
