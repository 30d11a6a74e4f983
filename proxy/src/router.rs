//! The compiled, immutable routing table the request path reads.
//!
//! A [`Router`] is two host indexes (external, internal) from normalised host to the ordered
//! routes of its virtual host, plus the digest of the config it was built from. It is built by
//! the [`crate::catalog::Catalog`] from cached compiled pieces (each owner's routes, each
//! backend) and swapped in whole, so routes and backends always change together; a change to
//! one owner copies one index shard, not the table.

use crate::backend::Backend;
use crate::index::ShardedMap;
use crate::metrics::RouteMetrics;
use http::{HeaderMap, HeaderName, HeaderValue};
use sluice_xds::digest::ConfigDigest;
use sluice_xds::RouteAction;
use std::collections::HashMap;
use std::sync::Arc;

/// Which listener a request arrived on: decides which host index applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// Public listeners: ExternalIP rules only.
    External,
    /// Cluster-local listeners: every rule.
    Internal,
}

/// The routes of one virtual host, in match order.
pub type VirtualHostRoutes = Arc<[Arc<Route>]>;

/// One listener kind's hosts. The key `"*"` matches any host not named.
#[derive(Clone, Default)]
pub struct HostIndex {
    pub hosts: ShardedMap<VirtualHostRoutes>,
}

impl HostIndex {
    fn lookup(&self, host: &str) -> Option<&VirtualHostRoutes> {
        self.hosts.get(host).or_else(|| self.hosts.get("*"))
    }
}

#[derive(Default)]
pub struct Router {
    pub digest: ConfigDigest,
    pub external: HostIndex,
    pub internal: HostIndex,
}

/// A route the proxy cannot compile; its RouteConfig is rejected (NACK).
#[derive(Debug, thiserror::Error)]
pub enum InvalidRoute {
    #[error("route {route}: invalid header {name}: {reason}")]
    InvalidHeader {
        route: String,
        name: String,
        reason: String,
    },
    #[error("route {route}: invalid rewrite host {host:?}")]
    InvalidRewriteHost { route: String, host: String },
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
    /// Knative's probe: SET as `k-network-hash` when the request carries
    /// `k-network-hash: override` (see [`sluice_xds::Route::probe_hash`]).
    pub probe_hash: Option<HeaderValue>,
}

pub struct Split {
    /// Running sum of weights up to and including this split.
    cumulative: u32,
    pub backend: Arc<Backend>,
    pub set_headers: Box<[(HeaderName, HeaderValue)]>,
}

impl Router {
    /// The config version this router serves (hex of the digest).
    pub fn version(&self) -> String {
        self.digest.to_hex()
    }

    /// Finds the route for a request. `host` must already be normalised
    /// ([`sluice_xds::host::normalize`]).
    pub fn route(
        &self,
        listener: Listener,
        host: &str,
        path: &str,
        headers: &HeaderMap,
    ) -> Option<&Arc<Route>> {
        let index = match listener {
            Listener::External => &self.external,
            Listener::Internal => &self.internal,
        };
        index
            .lookup(host)?
            .iter()
            .find(|route| route.matches(path, headers))
    }
}

/// Header names the routes use, each parsed once. Configs repeat a handful of names (Knative
/// sets `knative-serving-revision` on every split), and every parse of a name that is not a
/// standard header allocates. Names are never forgotten, so at most [`MAX_HEADER_NAMES`] are
/// kept; beyond that they are parsed each time.
#[derive(Default)]
pub struct HeaderNames(HashMap<Box<str>, HeaderName>);

pub const MAX_HEADER_NAMES: usize = 1024;

impl HeaderNames {
    fn parse(&mut self, name: &str) -> Result<HeaderName, http::header::InvalidHeaderName> {
        if let Some(known) = self.0.get(name) {
            return Ok(known.clone());
        }
        let parsed = HeaderName::from_bytes(name.as_bytes())?;
        if self.0.len() < MAX_HEADER_NAMES {
            self.0.insert(name.into(), parsed.clone());
        }
        Ok(parsed)
    }
}

/// Parses a header pair of a route.
fn header(
    route: &str,
    names: &mut HeaderNames,
    name: &str,
    value: &str,
) -> Result<(HeaderName, HeaderValue), InvalidRoute> {
    let invalid = |reason: String| InvalidRoute::InvalidHeader {
        route: route.to_string(),
        name: name.to_string(),
        reason,
    };
    let name = names.parse(name).map_err(|e| invalid(e.to_string()))?;
    let value = HeaderValue::from_str(value).map_err(|e| invalid(e.to_string()))?;
    Ok((name, value))
}

impl Route {
    /// Compiles a route; `backend` resolves each split's backend name.
    pub fn compile(
        spec: &sluice_xds::Route,
        names: &mut HeaderNames,
        mut backend: impl FnMut(&str) -> Arc<Backend>,
        metrics: Arc<RouteMetrics>,
    ) -> Result<Route, InvalidRoute> {
        let RouteAction::Forward(forward) = &spec.action;
        let id = spec.id.as_str();
        let headers = spec
            .headers
            .iter()
            .map(|m| header(id, names, &m.name, &m.exact))
            .collect::<Result<Vec<_>, _>>()?;
        let set_headers = forward
            .set_headers
            .iter()
            .map(|h| header(id, names, &h.name, &h.value))
            .collect::<Result<Vec<_>, _>>()?;
        let mut cumulative = 0u32;
        let mut splits = Vec::with_capacity(forward.splits.len());
        for split in &forward.splits {
            cumulative = cumulative.saturating_add(split.weight);
            splits.push(Split {
                cumulative,
                backend: backend(&split.backend),
                set_headers: split
                    .set_headers
                    .iter()
                    .map(|h| header(id, names, &h.name, &h.value))
                    .collect::<Result<Vec<_>, _>>()?
                    .into_boxed_slice(),
            });
        }
        let probe_hash = spec
            .probe_hash
            .as_deref()
            .map(|hash| {
                HeaderValue::from_str(hash).map_err(|e| InvalidRoute::InvalidHeader {
                    route: id.to_string(),
                    name: sluice_xds::PROBE_HASH_HEADER.to_string(),
                    reason: e.to_string(),
                })
            })
            .transpose()?;
        let rewrite_host = forward
            .rewrite_host
            .as_ref()
            .map(|host| {
                HeaderValue::from_str(host).map_err(|_| InvalidRoute::InvalidRewriteHost {
                    route: id.to_string(),
                    host: host.clone(),
                })
            })
            .transpose()?;
        Ok(Route {
            id: id.into(),
            path_prefix: spec.path_prefix.as_bytes().into(),
            headers: headers.into_boxed_slice(),
            rewrite_host,
            set_headers: set_headers.into_boxed_slice(),
            splits: splits.into_boxed_slice(),
            total_weight: cumulative,
            metrics,
            https_redirect: spec.https_redirect,
            probe_hash,
        })
    }

    /// The same route with each split's backend looked up again by name (after a backend it
    /// uses was rebuilt): no parsing, the parsed parts are shared or copied.
    pub fn relinked(&self, mut backend: impl FnMut(&str) -> Arc<Backend>) -> Route {
        Route {
            id: self.id.clone(),
            path_prefix: self.path_prefix.clone(),
            headers: self.headers.clone(),
            rewrite_host: self.rewrite_host.clone(),
            set_headers: self.set_headers.clone(),
            splits: self
                .splits
                .iter()
                .map(|split| Split {
                    cumulative: split.cumulative,
                    backend: backend(&split.backend.id),
                    set_headers: split.set_headers.clone(),
                })
                .collect(),
            total_weight: self.total_weight,
            metrics: self.metrics.clone(),
            https_redirect: self.https_redirect,
            probe_hash: self.probe_hash.clone(),
        }
    }

    /// What `/config` shows of it.
    pub fn describe(&self) -> serde_json::Value {
        let pairs = |list: &[(HeaderName, HeaderValue)]| -> serde_json::Value {
            list.iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_string(),
                        serde_json::Value::from(String::from_utf8_lossy(v.as_bytes()).into_owned()),
                    )
                })
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let mut previous = 0;
        let splits: Vec<serde_json::Value> = self
            .splits
            .iter()
            .map(|split| {
                let weight = split.cumulative - previous;
                previous = split.cumulative;
                serde_json::json!({
                    "backend": &*split.backend.id,
                    "weight": weight,
                    "setHeaders": pairs(&split.set_headers),
                })
            })
            .collect();
        serde_json::json!({
            "id": &*self.id,
            "pathPrefix": String::from_utf8_lossy(&self.path_prefix),
            "headers": pairs(&self.headers),
            "setHeaders": pairs(&self.set_headers),
            "rewriteHost": self.rewrite_host.as_ref().map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned()),
            "httpsRedirect": self.https_redirect,
            "probeHash": self.probe_hash.as_ref().map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned()),
            "splits": splits,
        })
    }

    /// The backend names its splits use.
    pub fn backend_ids(&self) -> impl Iterator<Item = &Arc<str>> {
        self.splits.iter().map(|s| &s.backend.id)
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
