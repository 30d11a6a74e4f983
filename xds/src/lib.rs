//! What crosses sluice's seam between the control plane (`sluice-controller`) and the data plane
//! (`sluice-proxy`). Neither half depends on the other; both depend on this crate.
//!
//! - [`model`]: the resources, plain serde types with a content-hash version each: route
//!   configs, backends, endpoints, certificates, revision policies. No Kubernetes, Pingora or
//!   protobuf types.
//! - [`host`]: the one host normaliser (translation, request path and SNI agree on names).
//! - [`tls`]: the one certificate parser (the controller accepts exactly what proxies serve).
//! - [`load`]: per-Revision load reports and pokes, proxy → controller.
//! - [`protocol`], [`cache`], [`session`], [`client`], [`server`]: delta-xDS over any
//!   transport: the controller's versioned cache and per-proxy sessions (subscriptions, nonces,
//!   ACK/NACK, make-before-break pushes), and the proxy's client (apply, ACK/NACK, reconnect
//!   with backoff). In-process the messages travel as values through channels
//!   ([`server::LocalConnector`]); across processes over gRPC.
//! - [`digest`]: one order-independent digest of a whole resource set.
//! - [`listeners`]: the TCP sockets listening on a port, from the kernel (both halves check
//!   that a socket they wait for is bound, and by whom).
//!
//! Invariants: equal content gives equal versions in every process; nothing here reads a clock
//! except the client's report timer and reconnect backoff; an unchanged resource is never sent.

pub mod cache;
pub mod client;
pub mod digest;
pub mod grpc;
pub mod host;
pub mod listeners;
pub mod load;
pub mod model;
pub mod protocol;
pub mod server;
pub mod session;
pub mod tls;
pub mod wire;

pub use model::*;
