//! Kubernetes mode: the API server as a source, and the writers back to it.
//!
//! ```text
//! watchers (kube-runtime) ──> source ──Hub::edit──> Store ──translate──> xDS + StatusBoard
//!                               │ observed statuses                          │ changed statuses
//!                               └────────────────────> StatusWriter <────────┘   (leader only)
//! Autoscaler ──> ClusterScaler ──> <scaleTargetRef>/scale                        (leader only)
//! Elector ──> Lease (coordination.k8s.io/v1) ──> leader: watch<bool>
//! ```
//!
//! - [`source`]: one watcher per kind feeds the *same* store and translation as the manifest
//!   source. Nothing is published to proxies before every watcher has listed once.
//! - [`status_writer`]: writes KIngress, Route and Revision statuses to their `/status`
//!   subresource, only where they differ from what the API server has.
//! - [`scale`]: a Revision's `scaleTargetRef` is scaled through its `scale` subresource.
//! - [`lease`]: one replica leads; only it writes status and scale, and only it serves the
//!   proxies (see [`crate::plane::ControlPlane::fleet_streams`]).
//!
//! Every replica watches and translates the same objects, so a new leader starts with warm
//! caches and the same resource versions, and reconnecting proxies get only differences.

pub mod lease;
pub mod scale;
pub mod source;
pub mod status_writer;

use crate::hub::Hub;
use lease::{ApiLease, Elector, LeaseSettings};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;

/// What Kubernetes mode needs beyond the translation config.
#[derive(Clone, Debug)]
pub struct KubernetesOptions {
    /// Watch only this namespace (ConfigMaps are always read from the system namespace).
    pub namespace: Option<String>,
    /// This replica's name in the Lease.
    pub identity: String,
    /// The Lease's namespace (the controller's own) and name.
    pub lease_namespace: String,
    pub lease_name: String,
    pub lease: LeaseSettings,
}

/// Why Kubernetes mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("no Kubernetes configuration (in-cluster or KUBECONFIG): {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// A client from `kubeconfig`, else in-cluster config or `KUBECONFIG`/`~/.kube/config`. Must be
/// called within a tokio runtime (the client spawns its connection tasks there).
pub async fn client(kubeconfig: Option<&Path>) -> Result<kube::Client, KubernetesError> {
    let config = match kubeconfig {
        Some(path) => {
            let to_error = |source| KubernetesError::Kubeconfig {
                path: path.display().to_string(),
                source,
            };
            let file = kube::config::Kubeconfig::read_from(path).map_err(to_error)?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .map_err(to_error)?
        }
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}

/// Kubernetes mode of one control-plane replica.
pub struct Kubernetes {
    client: kube::Client,
    options: KubernetesOptions,
    leader: watch::Sender<bool>,
    observed: Arc<status_writer::ObservedStatuses>,
    scaler: Arc<scale::ClusterScaler>,
}

impl Kubernetes {
    pub fn new(client: kube::Client, options: KubernetesOptions) -> Kubernetes {
        let leader = watch::Sender::new(false);
        let scaler = Arc::new(scale::ClusterScaler::new(
            client.clone(),
            leader.subscribe(),
        ));
        Kubernetes {
            client,
            options,
            leader,
            observed: Arc::default(),
            scaler,
        }
    }

    /// What scales `spec.service` Revisions with a `scaleTargetRef`.
    pub fn scaler(&self) -> Arc<scale::ClusterScaler> {
        self.scaler.clone()
    }

    /// True while this replica holds the Lease.
    pub fn leader(&self) -> watch::Receiver<bool> {
        self.leader.subscribe()
    }

    /// Why this replica refuses proxies while it does not hold the Lease.
    pub fn not_leading(&self) -> String {
        format!(
            "not the leader: {} is not holding lease {}/{}; retry",
            self.options.identity, self.options.lease_namespace, self.options.lease_name
        )
    }

    /// Watches, campaigns and (while leading) writes status until `shutdown`. `on_loaded` is
    /// called once every watcher has listed and the result is published.
    pub async fn run(
        &self,
        hub: Arc<Hub>,
        on_loaded: Box<dyn FnOnce() + Send>,
        shutdown: watch::Receiver<bool>,
    ) {
        let system_namespace = hub.config().system_namespace.clone();
        let source = source::KubernetesSource::new(
            self.client.clone(),
            self.options.namespace.clone(),
            system_namespace.clone(),
            hub.clone(),
            self.observed.clone(),
        );
        let (loaded_tx, loaded_rx) = watch::channel(false);
        let on_loaded = Box::new(move || {
            loaded_tx.send_replace(true);
            on_loaded();
        });
        let elector = Elector::new(
            Box::new(ApiLease::new(
                self.client.clone(),
                &self.options.lease_namespace,
                &self.options.lease_name,
            )),
            &self.options.lease_name,
            &self.options.identity,
            self.options.lease,
        );
        let writer = status_writer::StatusWriter::new(
            self.client.clone(),
            hub,
            self.observed.clone(),
            self.leader.subscribe(),
        );
        tokio::join!(
            source.run(on_loaded, shutdown.clone()),
            elector.run(self.leader.clone(), shutdown.clone()),
            writer.run(loaded_rx, shutdown),
        );
    }
}
