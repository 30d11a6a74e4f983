//! sluice's controller: Kubernetes objects in, [`sluice_xds::Snapshot`] and statuses out.
//!
//! ```text
//! manifest dir ──load_dir──┐
//! (Kubernetes watches) ────┴─> Store ──translate()──> Snapshot + statuses ──> proxy
//!                                                             StatusBoard <── applied(version)
//! ```
//!
//! - [`manifest`] reads a directory of YAML/JSON manifests; [`Controller::apply_manifests`]
//!   replaces the manifest-sourced objects in the [`store::Store`], keeping a broken file's
//!   last good objects.
//! - [`translate`] is pure over the store and [`TranslateConfig`]: no I/O, no clock, sorted
//!   output, so the same store always gives the same snapshot (whose version is its content
//!   hash). Its only state is the per-ingress last-good cache, which keeps an ingress's
//!   previous routes serving while its current spec fails.
//! - [`route`] and [`revision`] validate sluice's own `sluice.dev/v1alpha1` kinds, which
//!   translate into the same snapshot ([`translate::routes`]); [`scaling_targets`] is the
//!   autoscaler loop's pure view of the Revisions.
//! - [`status`] holds statuses in Knative's shape; the [`status::StatusBoard`] turns
//!   "translated" into "ready" once the data plane reports the snapshot applied.
//!
//! Invariants: user input never panics; every split's backend is in the snapshot's backends;
//! KIngresses of another class are never touched and get no status.

pub mod autoscaler;
pub mod controller;
pub mod hash;
pub mod ingress;
pub mod manifest;
pub mod object;
pub mod revision;
pub mod route;
pub mod status;
pub mod store;
pub mod translate;

pub use controller::Controller;
pub use hash::ingress_hash;
pub use revision::{autoscaler_config, scaling_targets, ScalingBackend, ScalingTarget};

/// What translation needs to know about this installation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TranslateConfig {
    /// KIngresses whose `networking.knative.dev/ingress.class` equals this are ours.
    pub ingress_class: String,
    /// Published as `status.publicLoadBalancer.ingress[0].domainInternal`.
    pub public_lb_domain: String,
    /// Published as `status.privateLoadBalancer.ingress[0].domainInternal`.
    pub private_lb_domain: String,
    /// Where Knative-style ConfigMaps (`config-autoscaler`) are read from.
    pub system_namespace: String,
}

impl Default for TranslateConfig {
    fn default() -> Self {
        TranslateConfig {
            ingress_class: "sluice.ingress.networking.knative.dev".to_string(),
            public_lb_domain: "sluice.sluice-system.svc.cluster.local".to_string(),
            private_lb_domain: "sluice-internal.sluice-system.svc.cluster.local".to_string(),
            system_namespace: "knative-serving".to_string(),
        }
    }
}

/// The result of one translation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Translation {
    pub snapshot: sluice_xds::Snapshot,
    /// Sorted by kind, namespace and name.
    pub statuses: Vec<status::ObjectStatus>,
}
