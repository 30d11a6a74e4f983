//! Compiled backends: an upstream (endpoints, their queue and connection protocol) or the
//! in-process responder, optionally a sluice Revision (activator policy and load counters).
//!
//! State that must outlive a config change (per-endpoint in-flight counts, the queue with its
//! waiters and metrics, a Revision's counters) is carried over from the previous version of the
//! same backend, endpoint by address.

use crate::activator::{HeldTotal, Queue, RevisionStats, Slot};
use crate::balance::{Address, Endpoint};
use crate::metrics::BackendMetrics;
use sluice_xds::{Protocol, RevisionPolicy, Target};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A backend: a Service port or a Revision, resolved to endpoints, or the responder.
pub struct Backend {
    pub id: Arc<str>,
    pub kind: BackendKind,
    /// Set for Revisions: the activator's policy and the autoscaler's counters.
    pub revision: Option<RevisionBackend>,
}

pub enum BackendKind {
    Upstream(Upstream),
    /// sluice's synthetic responder, served in-process: no endpoints, no queue.
    Responder(Responder),
}

pub struct Upstream {
    pub protocol: Protocol,
    endpoints: Box<[Arc<Endpoint>]>,
    /// Admission and waiting; shared across versions of this backend.
    pub queue: Arc<Queue>,
    /// Most requests in flight per endpoint; 0 means unlimited.
    pub concurrency: u32,
    /// Most requests waiting for a slot.
    pub max_waiting: usize,
}

pub struct RevisionBackend {
    /// The Revision, `ns/name`.
    pub id: Arc<str>,
    pub policy: RevisionPolicy,
    pub stats: Arc<RevisionStats>,
}

/// The built-in synthetic responder: a fixed response, prepared once.
pub struct Responder {
    pub status: http::StatusCode,
    pub body: bytes::Bytes,
    pub latency: Duration,
}

impl Responder {
    pub fn new(spec: &sluice_xds::ResponderSpec) -> Self {
        let body = if spec.body_bytes > 0 {
            bytes::Bytes::from(vec![b'x'; spec.body_bytes as usize])
        } else {
            bytes::Bytes::from(format!("{}\n", spec.message))
        };
        Responder {
            status: http::StatusCode::from_u16(spec.status).unwrap_or(http::StatusCode::OK),
            body,
            latency: Duration::from_millis(spec.latency_ms),
        }
    }
}

/// What a backend is built from.
pub struct BackendSpec<'a> {
    /// `None`: not received yet (a route names it): no endpoints, so requests wait for it.
    pub backend: Option<&'a sluice_xds::Backend>,
    pub addresses: &'a [SocketAddr],
    /// The Revision's policy when `backend` names one. A policy not received yet falls back
    /// to [`RevisionPolicy`] defaults until it arrives.
    pub policy: Option<&'a RevisionPolicy>,
    /// The wait bound of non-Revision backends (`--max-held-requests`), and the cap on a
    /// Revision's own bound from its annotation.
    pub max_waiting: usize,
    /// Requests held across all backends, bounded by `--max-held-requests-total`.
    pub held_total: &'a Arc<HeldTotal>,
}

/// Knative's defaults, for a Revision whose policy has not arrived yet.
fn default_policy() -> RevisionPolicy {
    RevisionPolicy {
        container_concurrency: 0,
        max_buffered: 10_000,
        timeout_seconds: 300,
        response_start_timeout_seconds: None,
        idle_timeout_seconds: None,
    }
}

impl Backend {
    /// Builds a backend, reusing endpoint state, the queue and counters from `old`.
    pub fn build(
        id: &str,
        spec: BackendSpec<'_>,
        old: Option<&Backend>,
        stats: impl FnOnce(&str) -> Arc<RevisionStats>,
        new_metrics: impl FnOnce() -> BackendMetrics,
    ) -> Backend {
        let revision =
            spec.backend
                .and_then(|b| b.revision.as_deref())
                .map(|rev| RevisionBackend {
                    id: rev.into(),
                    policy: spec.policy.cloned().unwrap_or_else(default_policy),
                    stats: old
                        .and_then(|o| o.revision.as_ref())
                        .filter(|r| &*r.id == rev)
                        .map(|r| r.stats.clone())
                        .unwrap_or_else(|| stats(rev)),
                });
        let target = spec.backend.map_or(&Target::Endpoints, |b| &b.target);
        let protocol = spec.backend.map_or(Protocol::Http1, |b| b.protocol);
        let kind = match target {
            Target::Responder(responder) => BackendKind::Responder(Responder::new(responder)),
            Target::Endpoints | Target::Dns { .. } => {
                let addresses: Vec<Address> = match target {
                    Target::Dns { host, port } => vec![Address::Dns {
                        host: host.as_str().into(),
                        port: *port,
                    }],
                    _ => spec
                        .addresses
                        .iter()
                        .copied()
                        .map(Address::Socket)
                        .collect(),
                };
                let old_upstream = old.and_then(Backend::upstream);
                // Pooled connections speak one protocol: a change of protocol starts afresh.
                let same_protocol = old_upstream.filter(|o| o.protocol == protocol);
                let endpoints = addresses
                    .into_iter()
                    .map(|address| {
                        same_protocol
                            .and_then(|o| {
                                o.endpoints.iter().find(|e| e.address == address).cloned()
                            })
                            .unwrap_or_else(|| Endpoint::new(address))
                    })
                    .collect();
                let queue = old_upstream.map(|o| o.queue.clone()).unwrap_or_else(|| {
                    Arc::new(Queue::new(Arc::new(new_metrics()), spec.held_total.clone()))
                });
                BackendKind::Upstream(Upstream {
                    protocol,
                    endpoints,
                    queue,
                    concurrency: revision
                        .as_ref()
                        .map_or(0, |r| r.policy.container_concurrency),
                    // The annotation is the tenant's; the flag is the operator's ceiling.
                    max_waiting: revision.as_ref().map_or(spec.max_waiting, |r| {
                        (r.policy.max_buffered as usize).min(spec.max_waiting)
                    }),
                })
            }
        };
        Backend {
            id: id.into(),
            kind,
            revision,
        }
    }

    pub fn upstream(&self) -> Option<&Upstream> {
        match &self.kind {
            BackendKind::Upstream(upstream) => Some(upstream),
            BackendKind::Responder(_) => None,
        }
    }
}

impl Upstream {
    pub fn metrics(&self) -> &Arc<BackendMetrics> {
        self.queue.metrics()
    }

    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    /// A slot right now, skipping endpoints in `tried`, if nobody waits ahead.
    pub fn try_admit(&self, tried: &[u64]) -> Option<Slot> {
        self.queue
            .try_admit(&self.endpoints, self.concurrency, tried)
    }

    pub fn endpoint_count(&self) -> usize {
        self.endpoints.len()
    }
}

#[cfg(test)]
mod tests;
