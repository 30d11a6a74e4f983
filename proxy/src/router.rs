//! The compiled, immutable routing table.
//!
//! `Router::compile` turns a [`Snapshot`] into lookup structures built for the request path:
//! one hash lookup per host, pre-parsed header names and values, cumulative split weights and
//! shared backend state. The proxy swaps whole routers atomically (see `gateway.rs`), so routes
//! and backends always change together.
//!
//! Upstream state that must outlive a swap (per-endpoint in-flight counts, held-request counts,
//! metric handles) is carried over from the previous router by backend id and address.

use crate::metrics::{BackendMetrics, Metrics, RouteMetrics};
use crate::upstream::Backend;
use http::{HeaderMap, HeaderName, HeaderValue};
use sluice_xds::{RouteAction, RouteTable, Snapshot};
use std::collections::HashMap;
use std::sync::Arc;

/// Which listener a request arrived on: decides which route table applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// Public listeners: ExternalIP rules only.
    External,
    /// Cluster-local listeners: every rule.
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum InvalidSnapshot {
    #[error("route {route}: split names unknown backend {backend}")]
    UnknownBackend { route: String, backend: String },
    #[error("route {route}: invalid header {name}: {reason}")]
    InvalidHeader {
        route: String,
        name: String,
        reason: String,
    },
    #[error("route {route}: invalid rewrite host {host:?}")]
    InvalidRewriteHost { route: String, host: String },
}

pub struct Router {
    pub snapshot: Arc<Snapshot>,
    external: Table,
    internal: Table,
    backends: HashMap<Box<str>, Arc<Backend>>,
}

/// FNV-1a: host names are short, and the keys come from config (not from clients), so a
/// keyed hash buys nothing here; SipHash cost ~1.5% of a proxied request's instructions.
#[derive(Default, Clone, Copy)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

type HostMap = HashMap<Box<str>, usize, std::hash::BuildHasherDefault<Fnv>>;

#[derive(Default)]
struct Table {
    hosts: HostMap,
    wildcard: Option<usize>,
    virtual_hosts: Vec<Box<[Arc<Route>]>>,
}

/// One compiled route.
pub struct Route {
    pub id: Box<str>,
    path_prefix: Box<[u8]>,
    headers: Box<[(HeaderName, HeaderValue)]>,
    pub rewrite_host: Option<HeaderValue>,
    pub set_headers: Box<[(HeaderName, HeaderValue)]>,
    pub splits: Box<[Split]>,
    total_weight: u32,
    pub metrics: Arc<RouteMetrics>,
    /// Plain HTTP gets a 301 to https instead (`httpOption: Redirected`).
    pub https_redirect: bool,
}

pub struct Split {
    /// Running sum of weights up to and including this split.
    cumulative: u32,
    pub backend: Arc<Backend>,
    pub set_headers: Box<[(HeaderName, HeaderValue)]>,
}

impl Router {
    /// An empty router: every request is a 404 until the first snapshot is applied.
    pub fn empty() -> Self {
        Router {
            snapshot: Arc::new(Snapshot::default()),
            external: Table::default(),
            internal: Table::default(),
            backends: HashMap::new(),
        }
    }

    /// Compiles `snapshot`, carrying per-backend state over from `previous`.
    /// `max_waiting` bounds each non-Revision backend's wait line (Revisions carry their own).
    ///
    /// Compiling has one side effect, on state shared with the live router: each backend's
    /// queue learns its new endpoints. That is what releases waiting requests, so callers must
    /// swap the result in (or drop it) straight away.
    pub fn compile(
        snapshot: Arc<Snapshot>,
        previous: &Router,
        metrics: &Metrics,
        max_waiting: usize,
    ) -> Result<Router, InvalidSnapshot> {
        let mut backends = HashMap::with_capacity(snapshot.backends.len());
        for (id, spec) in &snapshot.backends {
            let old = previous.backends.get(id.as_str());
            let backend = Backend::new(id, spec, old.map(|b| b.as_ref()), max_waiting, || {
                BackendMetrics::new(metrics, id)
            });
            backends.insert(id.as_str().into(), Arc::new(backend));
        }
        let mut route_metrics: HashMap<String, Arc<RouteMetrics>> = HashMap::new();
        let external = Table::compile(&snapshot.external, &backends, metrics, &mut route_metrics)?;
        let internal = Table::compile(&snapshot.internal, &backends, metrics, &mut route_metrics)?;
        // Valid: now hand waiting requests their new capacity, or send them to route again.
        for backend in backends.values() {
            backend
                .queue
                .update(backend.endpoints(), backend.concurrency);
        }
        for (id, old) in &previous.backends {
            if !backends.contains_key(id) {
                old.queue.reroute_all();
            }
        }
        Ok(Router {
            snapshot,
            external,
            internal,
            backends,
        })
    }

    pub fn version(&self) -> &str {
        &self.snapshot.version
    }

    /// Finds the route for a request. `host` must already be normalised (see [`normalize_host`]).
    pub fn route(
        &self,
        listener: Listener,
        host: &str,
        path: &str,
        headers: &HeaderMap,
    ) -> Option<&Arc<Route>> {
        let table = match listener {
            Listener::External => &self.external,
            Listener::Internal => &self.internal,
        };
        let vhost = table.hosts.get(host).copied().or(table.wildcard)?;
        table.virtual_hosts[vhost]
            .iter()
            .find(|route| route.matches(path, headers))
    }

    pub fn backend(&self, id: &str) -> Option<&Arc<Backend>> {
        self.backends.get(id)
    }
}

impl Table {
    fn compile(
        spec: &RouteTable,
        backends: &HashMap<Box<str>, Arc<Backend>>,
        metrics: &Metrics,
        route_metrics: &mut HashMap<String, Arc<RouteMetrics>>,
    ) -> Result<Table, InvalidSnapshot> {
        let mut table = Table::default();
        for vhost in &spec.virtual_hosts {
            let index = table.virtual_hosts.len();
            let mut routes = Vec::with_capacity(vhost.routes.len());
            for route in &vhost.routes {
                let metrics = route_metrics
                    .entry(route.owner.clone())
                    .or_insert_with(|| Arc::new(RouteMetrics::new(metrics, &route.owner)))
                    .clone();
                routes.push(Arc::new(Route::compile(route, backends, metrics)?));
            }
            table.virtual_hosts.push(routes.into_boxed_slice());
            for domain in &vhost.domains {
                if domain == "*" {
                    table.wildcard.get_or_insert(index);
                } else {
                    table.hosts.entry(domain.as_str().into()).or_insert(index);
                }
            }
        }
        Ok(table)
    }
}

impl Route {
    fn compile(
        spec: &sluice_xds::Route,
        backends: &HashMap<Box<str>, Arc<Backend>>,
        metrics: Arc<RouteMetrics>,
    ) -> Result<Route, InvalidSnapshot> {
        let RouteAction::Forward(forward) = &spec.action;
        let header =
            |name: &str, value: &str| -> Result<(HeaderName, HeaderValue), InvalidSnapshot> {
                let invalid = |reason: String| InvalidSnapshot::InvalidHeader {
                    route: spec.id.clone(),
                    name: name.to_string(),
                    reason,
                };
                let name =
                    HeaderName::from_bytes(name.as_bytes()).map_err(|e| invalid(e.to_string()))?;
                let value = HeaderValue::from_str(value).map_err(|e| invalid(e.to_string()))?;
                Ok((name, value))
            };
        let headers = spec
            .headers
            .iter()
            .map(|m| header(&m.name, &m.exact))
            .collect::<Result<Vec<_>, _>>()?;
        let set_headers = forward
            .set_headers
            .iter()
            .map(|h| header(&h.name, &h.value))
            .collect::<Result<Vec<_>, _>>()?;
        let mut cumulative = 0;
        let mut splits = Vec::with_capacity(forward.splits.len());
        for split in &forward.splits {
            let backend = backends.get(split.backend.as_str()).ok_or_else(|| {
                InvalidSnapshot::UnknownBackend {
                    route: spec.id.clone(),
                    backend: split.backend.clone(),
                }
            })?;
            cumulative += split.weight;
            splits.push(Split {
                cumulative,
                backend: backend.clone(),
                set_headers: split
                    .set_headers
                    .iter()
                    .map(|h| header(&h.name, &h.value))
                    .collect::<Result<Vec<_>, _>>()?
                    .into_boxed_slice(),
            });
        }
        let rewrite_host = forward
            .rewrite_host
            .as_ref()
            .map(|host| {
                HeaderValue::from_str(host).map_err(|_| InvalidSnapshot::InvalidRewriteHost {
                    route: spec.id.clone(),
                    host: host.clone(),
                })
            })
            .transpose()?;
        Ok(Route {
            id: spec.id.as_str().into(),
            path_prefix: spec.path_prefix.as_bytes().into(),
            headers: headers.into_boxed_slice(),
            rewrite_host,
            set_headers: set_headers.into_boxed_slice(),
            splits: splits.into_boxed_slice(),
            total_weight: cumulative,
            metrics,
            https_redirect: spec.https_redirect,
        })
    }

    fn matches(&self, path: &str, headers: &HeaderMap) -> bool {
        path.as_bytes().starts_with(&self.path_prefix)
            && self
                .headers
                .iter()
                .all(|(name, want)| headers.get(name) == Some(want))
    }

    /// Picks a split index by weight; `roll` is uniform over `u32`. Zero-weight splits never win.
    pub fn pick_split(&self, roll: u32) -> Option<usize> {
        if self.total_weight == 0 {
            return None;
        }
        let point = roll % self.total_weight;
        self.splits
            .iter()
            .position(|split| point < split.cumulative)
    }
}

/// Lower-cases `host` and strips any `:port`, using `buf` only when a copy is needed.
/// Returns `None` for hosts too long to be DNS names.
pub fn normalize_host<'a>(host: &'a str, buf: &'a mut [u8; 256]) -> Option<&'a str> {
    let without_port = if let Some(rest) = host.strip_prefix('[') {
        // IPv6 literal: keep the brackets, drop anything after `]`.
        match rest.find(']') {
            Some(end) => &host[..end + 2],
            None => host,
        }
    } else {
        match host.rfind(':') {
            Some(colon) => &host[..colon],
            None => host,
        }
    };
    let without_dot = without_port.strip_suffix('.').unwrap_or(without_port);
    if !without_dot.bytes().any(|b| b.is_ascii_uppercase()) {
        return Some(without_dot);
    }
    let len = without_dot.len();
    let out = buf.get_mut(..len)?;
    out.copy_from_slice(without_dot.as_bytes());
    out.make_ascii_lowercase();
    std::str::from_utf8(out).ok()
}

#[cfg(test)]
mod tests;
