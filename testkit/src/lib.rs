//! Real loopback servers and bounded clients for sluice's end-to-end tests and benchmarks.
//!
//! Every server binds `127.0.0.1:0`, reports its address through `.addr()`, counts what it sees with
//! atomics, and stops when its handle is dropped: the accept loop, every connection task and every
//! per-stream task are cancelled then, so a test never leaks a listener into the next one.
//!
//! The servers imitate the images Knative's KIngress conformance suite deploys:
//!
//! | server | imitates | protocols |
//! |---|---|---|
//! | [`EchoServer`] | `runtime`, `timeout`, `retry` (via [`EchoOptions::fail_first`]) | HTTP/1.1 + h2c prior knowledge on one port |
//! | [`WebsocketEchoServer`] | `wsserver` | HTTP/1.1 upgrade to websocket |
//! | [`GrpcPingServer`] | `grpc-ping` | gRPC over h2c (opaque payloads, no protobuf) |
//!
//! All of them answer Knative network probes (`K-Network-Probe: probe`) the way
//! `knative.dev/networking/pkg/http/probe` does, see [`PROBE_HEADER`].
//!
//! [`kube_api::FakeApiServer`] stands in for a Kubernetes API server: in memory, over real HTTP,
//! for the real `kube` client, kube-runtime watchers and `kubectl`.
//!
//! Invariants:
//! - Every client call is bounded by a timeout ([`DEFAULT_TIMEOUT`] unless set with `with_timeout`);
//!   a hung gateway fails a test with an error instead of hanging it.
//! - Nothing here sleeps to wait for readiness: a server accepts connections as soon as `start` returns.
//! - `sluice-testkit-backend` (`src/bin/backend.rs`) is the lean backend `perf/` measures against nginx;
//!   it shares no code with the test servers so that their bookkeeping never costs it anything.

mod body;
mod client;
mod echo;
mod grpc;
pub mod kube_api;
mod ports;
mod probe;
mod serve;
mod tls;
mod websocket;

use std::time::Duration;

pub use client::{http1_request, H1Client, H2cClient, Response, StreamingResponse};
pub use echo::{canonical_header_name, EchoOptions, EchoReply, EchoRequest, EchoServer};
pub use grpc::{
    GrpcClient, GrpcPingServer, GrpcStatusError, GrpcStream, PING_METHOD, PING_STREAM_METHOD,
};
pub use ports::{closed_port, free_port};
pub use probe::{HASH_HEADER, PROBE_HEADER, PROBE_VALUE};
pub use tls::{leaf_der, TlsClient, TlsInfo, ALPN_H2, ALPN_HTTP1};
pub use websocket::{ws_roundtrips, WebsocketEchoServer};

/// The bound applied to every client operation unless a client is given another with `with_timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `fut` with a deadline, turning expiry into an error that names `what`.
pub(crate) async fn bounded<T>(
    timeout: Duration,
    what: impl std::fmt::Display,
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(result) => result,
        Err(_) => Err(anyhow::anyhow!("{what}: timed out after {timeout:?}")),
    }
}
