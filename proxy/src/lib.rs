//! sluice's data plane: the Pingora shell with a hyper hot path, fed only by xDS resources
//! (`sluice-xds`); it knows nothing of Kubernetes, manifests or the controller.
//!
//! Shape: the xDS client hands batches of resources to the [`gateway::Gateway`]
//! ([`sluice_xds::client::DataPlane`]); its [`catalog::Catalog`] compiles only what changed
//! into a new [`router::Router`], swapped in atomically; [`forward`] serves each request from
//! the router it loads once. Load goes back on the same stream: per-Revision counters
//! ([`activator::RevisionStats`]) read once a second, and pokes for Revisions at zero.
//!
//! Invariants:
//! - The request path takes no lock, logs nothing at info or above, and does not hold a router
//!   guard across an `.await`.
//! - Invalid input never panics: a resource that does not compile is refused (NACK) and its
//!   last good version keeps serving.

pub mod access_log;
pub mod activator;
pub mod admin;
pub mod backend;
pub mod balance;
pub mod body;
pub mod catalog;
pub mod downstream;
pub mod error;
pub mod forward;
pub mod gateway;
pub mod h1;
pub mod h2c;
pub mod idle;
pub mod index;
pub mod metrics;
pub mod responder;
pub mod router;
pub mod server;
pub mod server_timing;
pub mod tls;
pub mod upstream;

/// Boxes the future `build` makes, built in the box's memory. `Box::pin(future)` builds it on
/// the stack and then copies all of its bytes (over a kilobyte for the exchange), room for
/// states not reached yet included; with a thousand connections in flight the new box is cold,
/// so that copy missed the cache on every line (callgrind's cache simulation, `perf/CALLGRIND.md`).
/// With the box allocated first, the compiler builds the future in it and writes only what the
/// future holds so far (not promised by the language: measured, `perf/CALLGRIND.md`).
#[inline(always)]
pub(crate) fn pin_in_place<F>(build: impl FnOnce() -> F) -> std::pin::Pin<Box<F>> {
    Box::into_pin(Box::write(Box::new_uninit(), build()))
}
