//! sluice's control plane: Kubernetes-shaped objects in, xDS resources and statuses out, the
//! autoscaler, and the scalers. It knows nothing of Pingora or hyper: proxies are reached
//! through `sluice-xds` (in-process channels, or gRPC).
//!
//! ```text
//! manifest dir ──source──┐
//! (Kubernetes watches) ──┴─> Hub ── Controller { Store ──Translator──> resources + statuses }
//!        local scaler ───┘     │                          │                     │
//!                              │            SharedCache (xDS) ──> proxies   StatusBoard
//!                              └── SessionEvents <── applied / NACKs / load reports / pokes
//!                                     │
//!                          LoadAggregator ──> Autoscaler (KPA) ──> Scalers
//! ```
//!
//! - [`manifest`] reads manifest files; [`source`] polls a directory and passes only changed
//!   files on; [`controller::Controller`] keeps each file's objects (a broken file keeps its
//!   last good ones) in the [`store::Store`].
//! - [`translate`] is incremental and pure over the store and its changes: no I/O, no clock;
//!   a change produces only the resources and statuses it touches. Domain conflicts are decided
//!   in [`claims`].
//! - [`route`] and [`revision`] validate sluice's own `sluice.dev/v1alpha1` kinds; [`crd`]
//!   generates their CustomResourceDefinitions from the same Rust types ([`generated`] writes
//!   the committed copies); [`rbac`] lists the permissions the Kubernetes mode needs.
//! - [`status`] holds statuses in Knative's shape; the [`status::StatusBoard`] turns
//!   "translated" into "ready" once every connected proxy has applied it.
//! - [`hub`] is the one writer: sources edit through it, it publishes to the xDS cache, and it
//!   hears the proxies ([`sluice_xds::server::SessionEvents`]).
//! - [`load`] sums the proxies' load reports; [`scaling`] runs the KPA ([`autoscaler`], pure)
//!   on them and drives the [`scaler`]s, [`local::LocalProcesses`] among them; it records what
//!   it saw and did in the bounded [`history`], which [`overview`] joins with the store and the
//!   statuses for the admin port's `/ui`.
//! - [`kubernetes`] is the API server as a source (watchers into the same store), the status
//!   and scale writers, and leader election.
//!
//! Invariants: user input never panics; KIngresses of another class are never touched and get
//! no status; an unchanged resource is never republished.

pub mod autoscaler;
pub mod claims;
pub mod controller;
pub mod crd;
pub mod generated;
pub mod hash;
pub mod history;
pub mod hub;
pub mod ingress;
pub mod kubernetes;
pub mod load;
pub mod local;
pub mod manifest;
pub mod object;
pub mod overview;
pub mod plane;
pub mod rbac;
pub mod revision;
pub mod route;
pub mod scaler;
pub mod scaling;
pub mod source;
pub mod status;
pub mod store;
pub mod translate;

pub use controller::Controller;
pub use hash::ingress_hash;
pub use revision::{autoscaler_config, ScalingBackend, ScalingTarget};

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
