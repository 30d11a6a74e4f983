//! The proxy's applied resources and their compiled pieces, and how a batch of xDS responses
//! becomes a new [`Router`] in O(change).
//!
//! Per resource the catalog keeps its version and what was compiled from it, not the resource
//! itself: each owner's virtual hosts (`Arc`-shared routes), each backend (endpoints, queue,
//! counters, and the small specs a rebuild needs), each certificate's parsed key. A batch
//! touches only what it names:
//! - a policy change rebuilds the backends of that Revision;
//! - a backend or endpoints change rebuilds that backend, then relinks the owners whose routes
//!   use it (their compiled routes are copied with the new backend; nothing is parsed again);
//! - a route config change compiles that owner once, against the batch's rebuilt backends;
//! - the host indexes copy only the shards holding hosts that changed (see [`crate::index`]).
//!
//! **A push is one change.** The controller splits a large push into several responses (all but
//! the last say `push_continues`). Each is compiled as it arrives, so only one response is held
//! decoded at a time, but the router is built and swapped once, after the push's last response:
//! half a push never serves, and the host indexes are not copied once per response.
//!
//! **Rejections.** A resource that does not compile (an invalid header, a certificate that does
//! not parse) is refused: its previous version (or its absence) stays, the rest of the batch
//! applies, and the refusal is returned for the NACK.
//!
//! **Tolerance.** xDS has no transactions; the controller sends what a route names before the
//! route, but a route naming a backend not received yet still compiles, against a placeholder
//! with no endpoints (requests wait), and is relinked when the backend arrives. A Revision
//! backend whose policy has not arrived uses Knative's defaults until it does.

use crate::activator::{HeldTotal, RevisionStats};
use crate::backend::{Backend, BackendKind, BackendSpec};
use crate::index::ClaimedMap;
use crate::metrics::{BackendMetrics, Metrics, RouteMetrics};
use crate::router::{HeaderNames, HostIndex, InvalidRoute, Route, Router, VirtualHostRoutes};
use pingora::tls::sign::CertifiedKey;
use sluice_xds::client::rejected;
use sluice_xds::digest::ConfigDigest;
use sluice_xds::protocol::{DeltaResponse, NamedResource, RejectedResource, Rejection};
use sluice_xds::{Resource, ResourceType, RevisionPolicy, RouteConfig, VirtualHost};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

struct BackendSlot {
    /// Version and spec of the Backend resource, if received.
    backend: Option<(String, sluice_xds::Backend)>,
    /// Version and addresses of the Endpoints resource, if received.
    endpoints: Option<(String, Vec<SocketAddr>)>,
    compiled: Arc<Backend>,
}

/// One compiled table of an owner: (domains, routes) per virtual host. The domain names are
/// the same allocations the host indexes key on.
type CompiledVirtualHosts = Vec<(Box<[Arc<str>]>, VirtualHostRoutes)>;

struct OwnerSlot {
    version: String,
    metrics: Arc<RouteMetrics>,
    external: CompiledVirtualHosts,
    internal: CompiledVirtualHosts,
    /// The backends its routes use, sorted.
    backends: Box<[Arc<str>]>,
}

/// Who uses a resource: the owners of a backend, the backends of a policy. Usually one, so a
/// sorted vector kept to size; a tree node each cost megabytes at 20,000 backends.
#[derive(Default)]
struct Users(Vec<Arc<str>>);

impl Users {
    fn add(&mut self, user: &Arc<str>) {
        if let Err(at) = self.0.binary_search(user) {
            self.0.reserve_exact(1);
            self.0.insert(at, user.clone());
        }
    }

    fn remove(&mut self, user: &str) {
        if let Ok(at) = self.0.binary_search_by(|u| (**u).cmp(user)) {
            self.0.remove(at);
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn names(&self) -> impl Iterator<Item = String> + '_ {
        self.0.iter().map(|u| u.to_string())
    }
}

struct CertificateSlot {
    version: String,
    secret: String,
    external_hosts: Vec<String>,
    internal_hosts: Vec<String>,
    key: Arc<CertifiedKey>,
}

/// What a batch did.
pub struct Outcome {
    /// One per response, in order.
    pub results: Vec<Result<(), Rejection>>,
    /// The new router, if anything it serves changed.
    pub router: Option<Router>,
    /// Backends rebuilt: their queues must learn the new endpoints (after the swap).
    pub rebuilt: Vec<Arc<Backend>>,
    /// Backends gone: their waiters must route again (after the swap).
    pub removed: Vec<Arc<Backend>>,
    pub certificates_changed: bool,
    /// The batch ended its push: what it and the push's earlier batches changed is in this
    /// outcome. False while the push continues (nothing to swap yet).
    pub push_ended: bool,
}

/// What the batches of a push that has not ended yet changed, published with its last one.
#[derive(Default)]
struct Unpublished {
    /// By name: a backend rebuilt twice in one push (spec, then endpoints) is told once, and
    /// the superseded build is not kept alive.
    rebuilt: BTreeSet<Arc<str>>,
    removed: Vec<Arc<Backend>>,
    certificates: bool,
}

/// One certificate as the TLS listeners use it.
pub struct ServedCertificate<'a> {
    pub external_hosts: &'a [String],
    pub internal_hosts: &'a [String],
    pub key: &'a Arc<CertifiedKey>,
}

pub struct Catalog {
    metrics: Arc<Metrics>,
    /// The wait bound of non-Revision backends, and the cap on a Revision's.
    max_waiting: usize,
    /// Requests held across all backends.
    held_total: Arc<HeldTotal>,
    policies: HashMap<String, (String, RevisionPolicy)>,
    backends: HashMap<String, BackendSlot>,
    owners: HashMap<Arc<str>, OwnerSlot>,
    certificates: HashMap<String, CertificateSlot>,
    external: ClaimedMap<VirtualHostRoutes>,
    internal: ClaimedMap<VirtualHostRoutes>,
    /// backend → owners whose routes use it.
    backend_users: HashMap<String, Users>,
    /// policy → backends of that Revision.
    policy_users: HashMap<String, Users>,
    /// Per-Revision counters, kept while a backend of the Revision exists.
    revisions: HashMap<String, Arc<RevisionStats>>,
    /// Backends that lost their resources or a user this batch: dropped if nothing is left.
    maybe_unused: BTreeSet<String>,
    header_names: HeaderNames,
    digest: ConfigDigest,
    unpublished: Unpublished,
}

#[derive(Default)]
struct Dirty {
    backends: BTreeSet<String>,
    /// Owners to relink (a backend they use was rebuilt).
    owners: BTreeSet<String>,
    certificates: bool,
}

/// A route-config change, compiled after the batch's backends are rebuilt.
enum ConfigChange<'a> {
    Put(&'a NamedResource),
    Remove(&'a str),
}

impl Catalog {
    pub fn new(metrics: Arc<Metrics>, max_waiting: usize, held_total: Arc<HeldTotal>) -> Self {
        Catalog {
            metrics,
            max_waiting,
            held_total,
            policies: HashMap::new(),
            backends: HashMap::new(),
            owners: HashMap::new(),
            certificates: HashMap::new(),
            external: ClaimedMap::default(),
            internal: ClaimedMap::default(),
            backend_users: HashMap::new(),
            policy_users: HashMap::new(),
            revisions: HashMap::new(),
            maybe_unused: BTreeSet::new(),
            header_names: HeaderNames::default(),
            digest: ConfigDigest::default(),
            unpublished: Unpublished::default(),
        }
    }

    pub fn digest(&self) -> ConfigDigest {
        self.digest
    }

    /// Applies a batch of responses in order; see the module docs.
    pub fn apply(&mut self, responses: &[DeltaResponse]) -> Outcome {
        let mut dirty = Dirty::default();
        let mut refused: Vec<Vec<RejectedResource>> = vec![Vec::new(); responses.len()];
        let mut configs: Vec<(usize, ConfigChange<'_>)> = Vec::new();
        for (i, response) in responses.iter().enumerate() {
            for named in &response.resources {
                if named.resource.type_() != response.type_ {
                    refused[i].push(rejected(
                        &named.name,
                        format!(
                            "a {} in a {} response",
                            named.resource.type_(),
                            response.type_
                        ),
                    ));
                } else if response.type_ == ResourceType::RouteConfig {
                    configs.push((i, ConfigChange::Put(named)));
                } else if let Err(reason) = self.put(named, &mut dirty) {
                    refused[i].push(rejected(&named.name, reason));
                }
            }
            for name in &response.removed {
                if response.type_ == ResourceType::RouteConfig {
                    configs.push((i, ConfigChange::Remove(name)));
                } else {
                    self.remove(response.type_, name, &mut dirty);
                }
            }
        }
        let (rebuilt, mut removed) = self.rebuild_backends(&mut dirty);
        for (i, change) in configs {
            match change {
                ConfigChange::Put(named) => {
                    if let Err(reason) = self.put_config(named) {
                        refused[i].push(rejected(&named.name, reason));
                    }
                    // Compiled against the rebuilt backends already.
                    dirty.owners.remove(&named.name);
                }
                ConfigChange::Remove(name) => {
                    self.remove_config(name);
                    dirty.owners.remove(name);
                }
            }
        }
        self.relink_owners(&dirty.owners);
        removed.extend(self.collect_unused_backends());
        for backend in &removed {
            if let Some(upstream) = backend.upstream() {
                upstream.metrics().forget();
            }
        }
        let results = refused
            .into_iter()
            .map(|r| {
                if r.is_empty() {
                    Ok(())
                } else {
                    Err(Rejection::new(r))
                }
            })
            .collect();
        let pending = &mut self.unpublished;
        pending.rebuilt.extend(rebuilt.iter().map(|b| b.id.clone()));
        pending.removed.extend(removed);
        pending.certificates |= dirty.certificates;
        if responses.last().is_some_and(|r| r.push_continues) {
            return Outcome {
                results,
                router: None,
                rebuilt: Vec::new(),
                removed: Vec::new(),
                certificates_changed: false,
                push_ended: false,
            };
        }
        let pending = std::mem::take(&mut self.unpublished);
        let rebuilt: Vec<Arc<Backend>> = pending
            .rebuilt
            .iter()
            .filter_map(|name| self.backends.get(&**name).map(|slot| slot.compiled.clone()))
            .collect();
        let external = self.external.publish();
        let internal = self.internal.publish();
        let router = (external || internal || !rebuilt.is_empty() || !pending.removed.is_empty())
            .then(|| self.router());
        Outcome {
            results,
            router,
            rebuilt,
            removed: pending.removed,
            certificates_changed: pending.certificates,
            push_ended: true,
        }
    }

    /// The router of what is applied now.
    pub fn router(&self) -> Router {
        Router {
            digest: self.digest,
            external: HostIndex {
                hosts: self.external.map().clone(),
            },
            internal: HostIndex {
                hosts: self.internal.map().clone(),
            },
        }
    }

    fn track(&mut self, type_: ResourceType, name: &str, old: Option<&str>, new: Option<&str>) {
        if let Some(old) = old {
            self.digest.remove(type_, name, old);
        }
        if let Some(new) = new {
            self.digest.add(type_, name, new);
        }
    }

    /// Takes one resource other than a route config, or says why not.
    fn put(&mut self, named: &NamedResource, dirty: &mut Dirty) -> Result<(), String> {
        let name = named.name.as_str();
        let version = named.version.clone();
        match named.resource.as_ref() {
            Resource::RevisionPolicy(policy) => {
                let old = self
                    .policies
                    .insert(name.to_string(), (version, policy.clone()));
                self.track(
                    ResourceType::RevisionPolicy,
                    name,
                    old.as_ref().map(|o| o.0.as_str()),
                    Some(&named.version),
                );
                if let Some(users) = self.policy_users.get(name) {
                    dirty.backends.extend(users.names());
                }
            }
            Resource::Backend(backend) => {
                let old = self.slot(name).backend.replace((version, backend.clone()));
                self.track(
                    ResourceType::Backend,
                    name,
                    old.as_ref().map(|o| o.0.as_str()),
                    Some(&named.version),
                );
                dirty.backends.insert(name.to_string());
            }
            Resource::Endpoints(endpoints) => {
                let old = self
                    .slot(name)
                    .endpoints
                    .replace((version, endpoints.addresses.clone()));
                self.track(
                    ResourceType::Endpoints,
                    name,
                    old.as_ref().map(|o| o.0.as_str()),
                    Some(&named.version),
                );
                dirty.backends.insert(name.to_string());
            }
            Resource::Certificate(certificate) => {
                let key =
                    sluice_xds::tls::certified_key(&certificate.cert_pem, &certificate.key_pem)
                        .map_err(|e| format!("secret {}: {e}", certificate.secret))?;
                let old = self.certificates.insert(
                    name.to_string(),
                    CertificateSlot {
                        version,
                        secret: certificate.secret.clone(),
                        external_hosts: certificate.external_hosts.clone(),
                        internal_hosts: certificate.internal_hosts.clone(),
                        key: Arc::new(key),
                    },
                );
                self.track(
                    ResourceType::Certificate,
                    name,
                    old.as_ref().map(|o| o.version.as_str()),
                    Some(&named.version),
                );
                dirty.certificates = true;
            }
            // `apply` compiles route configs after the backends; never routed here.
            Resource::RouteConfig(_) => return Err("a route config out of place".to_string()),
        }
        Ok(())
    }

    fn remove(&mut self, type_: ResourceType, name: &str, dirty: &mut Dirty) {
        match type_ {
            ResourceType::RevisionPolicy => {
                if let Some((old, _)) = self.policies.remove(name) {
                    self.track(type_, name, Some(&old), None);
                    if let Some(users) = self.policy_users.get(name) {
                        dirty.backends.extend(users.names());
                    }
                }
            }
            ResourceType::Backend | ResourceType::Endpoints => {
                let Some(slot) = self.backends.get_mut(name) else {
                    return;
                };
                let old = if type_ == ResourceType::Backend {
                    slot.backend.take().map(|(v, _)| v)
                } else {
                    slot.endpoints.take().map(|(v, _)| v)
                };
                if let Some(old) = old {
                    self.track(type_, name, Some(&old), None);
                    dirty.backends.insert(name.to_string());
                    self.maybe_unused.insert(name.to_string());
                }
            }
            ResourceType::Certificate => {
                if let Some(old) = self.certificates.remove(name) {
                    self.track(type_, name, Some(&old.version), None);
                    dirty.certificates = true;
                }
            }
            ResourceType::RouteConfig => self.remove_config(name),
        }
    }

    /// Compiles and installs one owner's route config; on error the previous one stays.
    fn put_config(&mut self, named: &NamedResource) -> Result<(), String> {
        let Resource::RouteConfig(config) = named.resource.as_ref() else {
            return Err("not a route config".to_string());
        };
        let name = named.name.as_str();
        let metrics = match self.owners.get(name) {
            Some(slot) if slot.metrics.owner() == config.owner => slot.metrics.clone(),
            _ => Arc::new(RouteMetrics::new(&self.metrics, &config.owner)),
        };
        let (external, internal) = self
            .compile_config(config, &metrics)
            .map_err(|e| e.to_string())?;
        let old = self.owners.get(name).map(|o| o.version.clone());
        self.track(
            ResourceType::RouteConfig,
            name,
            old.as_deref(),
            Some(&named.version),
        );
        if let Some(old) = self.owners.get(name) {
            if !Arc::ptr_eq(&old.metrics, &metrics) {
                old.metrics.forget();
            }
        }
        self.install(name, named.version.clone(), metrics, external, internal);
        Ok(())
    }

    fn remove_config(&mut self, name: &str) {
        let Some(mut slot) = self.owners.remove(name) else {
            return;
        };
        self.track(ResourceType::RouteConfig, name, Some(&slot.version), None);
        self.release_hosts(name, &mut slot);
        for backend in &slot.backends {
            self.unuse(backend, name);
        }
        slot.metrics.forget();
    }

    /// Compiles both tables of `config` against the current backends; an identical route in
    /// both tables (the usual ExternalIP rule) is compiled once and shared.
    fn compile_config(
        &mut self,
        config: &RouteConfig,
        metrics: &Arc<RouteMetrics>,
    ) -> Result<(CompiledVirtualHosts, CompiledVirtualHosts), InvalidRoute> {
        let mut compiled: Vec<(&sluice_xds::Route, Arc<Route>)> = Vec::new();
        let mut names = std::mem::take(&mut self.header_names);
        let tables = self
            .compile_table(&config.external, &mut compiled, &mut names, metrics)
            .and_then(|external| {
                let internal =
                    self.compile_table(&config.internal, &mut compiled, &mut names, metrics)?;
                Ok((external, internal))
            });
        self.header_names = names;
        tables
    }

    /// One table of [`Catalog::compile_config`]; `compiled` holds the routes compiled so far.
    fn compile_table<'a>(
        &mut self,
        vhosts: &'a [VirtualHost],
        compiled: &mut Vec<(&'a sluice_xds::Route, Arc<Route>)>,
        names: &mut HeaderNames,
        metrics: &Arc<RouteMetrics>,
    ) -> Result<CompiledVirtualHosts, InvalidRoute> {
        let mut out = Vec::with_capacity(vhosts.len());
        for vhost in vhosts {
            let mut routes = Vec::with_capacity(vhost.routes.len());
            for spec in &vhost.routes {
                if let Some((_, route)) = compiled.iter().find(|(s, _)| *s == spec) {
                    routes.push(route.clone());
                    continue;
                }
                let route = Arc::new(Route::compile(
                    spec,
                    names,
                    |b| self.slot(b).compiled.clone(),
                    metrics.clone(),
                )?);
                compiled.push((spec, route.clone()));
                routes.push(route);
            }
            let domains = vhost
                .domains
                .iter()
                .map(|d| Arc::from(d.as_str()))
                .collect();
            out.push((domains, routes.into()));
        }
        Ok(out)
    }

    /// Installs an owner's compiled tables: host claims and backend users.
    fn install(
        &mut self,
        name: &str,
        version: String,
        metrics: Arc<RouteMetrics>,
        external: CompiledVirtualHosts,
        internal: CompiledVirtualHosts,
    ) {
        let (owner, old) = match self.owners.remove_entry(name) {
            Some((owner, old)) => (owner, Some(old)),
            None => (Arc::from(name), None),
        };
        let (old_external, old_internal, old_backends) = match old {
            Some(old) => (old.external, old.internal, old.backends),
            None => Default::default(),
        };
        let hosts = |vhosts: &CompiledVirtualHosts| -> BTreeSet<Arc<str>> {
            vhosts.iter().flat_map(|(d, _)| d.iter().cloned()).collect()
        };
        let (new_external, new_internal) = (hosts(&external), hosts(&internal));
        // Release what the owner no longer has, then claim what it has now.
        for host in hosts(&old_external).difference(&new_external) {
            self.external.release(host, name);
        }
        for host in hosts(&old_internal).difference(&new_internal) {
            self.internal.release(host, name);
        }
        for (domains, routes) in &external {
            for host in domains {
                self.external.claim(host, &owner, routes.clone());
            }
        }
        for (domains, routes) in &internal {
            for host in domains {
                self.internal.claim(host, &owner, routes.clone());
            }
        }
        let mut backends: Vec<Arc<str>> = external
            .iter()
            .chain(&internal)
            .flat_map(|(_, routes)| routes.iter())
            .flat_map(|route| route.backend_ids())
            .cloned()
            .collect();
        backends.sort();
        backends.dedup();
        for backend in old_backends.iter() {
            if backends.binary_search(backend).is_err() {
                self.unuse(backend, name);
            }
        }
        for backend in &backends {
            match self.backend_users.get_mut(&**backend) {
                Some(users) => users.add(&owner),
                None => {
                    let mut users = Users::default();
                    users.add(&owner);
                    self.backend_users.insert(backend.to_string(), users);
                }
            }
        }
        self.owners.insert(
            owner,
            OwnerSlot {
                version,
                metrics,
                external,
                internal,
                backends: backends.into(),
            },
        );
    }

    /// The slot of backend `name`, created empty (a placeholder) if needed.
    fn slot(&mut self, name: &str) -> &mut BackendSlot {
        let (metrics, max_waiting, held_total) =
            (&self.metrics, self.max_waiting, &self.held_total);
        self.backends
            .entry(name.to_string())
            .or_insert_with(|| BackendSlot {
                backend: None,
                endpoints: None,
                compiled: Arc::new(placeholder(name, max_waiting, held_total, || {
                    BackendMetrics::new(metrics, name)
                })),
            })
    }

    /// Rebuilds the dirty backends; returns them, and those that are gone.
    fn rebuild_backends(&mut self, dirty: &mut Dirty) -> (Vec<Arc<Backend>>, Vec<Arc<Backend>>) {
        let mut rebuilt = Vec::new();
        let mut removed = Vec::new();
        for name in &dirty.backends {
            let Some(slot) = self.backends.get(name) else {
                continue;
            };
            let unused = self.backend_users.get(name).is_none_or(Users::is_empty);
            if slot.backend.is_none() && slot.endpoints.is_none() && unused {
                if let Some(slot) = self.backends.remove(name) {
                    self.forget_revision_use(name, &slot.compiled);
                    removed.push(slot.compiled);
                }
                continue;
            }
            let spec = slot.backend.as_ref().map(|(_, b)| b);
            let addresses = slot
                .endpoints
                .as_ref()
                .map(|(_, a)| a.as_slice())
                .unwrap_or_default();
            let revision = spec.and_then(|b| b.revision.clone());
            let policy = revision
                .as_ref()
                .and_then(|r| self.policies.get(r))
                .map(|(_, p)| p);
            let (revisions, metrics) = (&mut self.revisions, &self.metrics);
            let backend = Backend::build(
                name,
                BackendSpec {
                    backend: spec,
                    addresses,
                    policy,
                    max_waiting: self.max_waiting,
                    held_total: &self.held_total,
                },
                Some(&slot.compiled),
                |id| revisions.entry(id.to_string()).or_default().clone(),
                || BackendMetrics::new(metrics, name),
            );
            let old_revision = slot.compiled.revision.as_ref().map(|r| r.id.to_string());
            let compiled = Arc::new(backend);
            if let Some(slot) = self.backends.get_mut(name) {
                slot.compiled = compiled.clone();
            }
            if old_revision != revision {
                if let Some(old) = old_revision {
                    self.unuse_policy(&old, name);
                }
                if let Some(new) = &revision {
                    self.policy_users
                        .entry(new.clone())
                        .or_default()
                        .add(&compiled.id);
                }
            }
            if let Some(users) = self.backend_users.get(name) {
                dirty.owners.extend(users.names());
            }
            rebuilt.push(compiled);
        }
        (rebuilt, removed)
    }

    fn forget_revision_use(&mut self, backend: &str, compiled: &Backend) {
        if let Some(revision) = &compiled.revision {
            self.unuse_policy(&revision.id, backend);
        }
    }

    fn unuse_policy(&mut self, policy: &str, backend: &str) {
        if let Some(users) = self.policy_users.get_mut(policy) {
            users.remove(backend);
            if users.is_empty() {
                self.policy_users.remove(policy);
                // No backend of the Revision is left: its counters go too.
                self.revisions.remove(policy);
            }
        }
    }

    fn unuse(&mut self, backend: &str, owner: &str) {
        self.maybe_unused.insert(backend.to_string());
        if let Some(users) = self.backend_users.get_mut(backend) {
            users.remove(owner);
            if users.is_empty() {
                self.backend_users.remove(backend);
            }
        }
    }

    /// Re-links the owners whose backends were rebuilt: their compiled routes, copied with the
    /// current backends, and their host claims.
    fn relink_owners(&mut self, owners: &BTreeSet<String>) {
        for name in owners {
            let Some(slot) = self.owners.get(name.as_str()) else {
                continue;
            };
            let mut relinked: Vec<(*const Route, Arc<Route>)> = Vec::new();
            let mut table = |vhosts: &CompiledVirtualHosts, this: &mut Catalog| {
                vhosts
                    .iter()
                    .map(|(domains, routes)| {
                        let routes: Vec<Arc<Route>> = routes
                            .iter()
                            .map(|route| {
                                // A route shared by both tables stays shared.
                                let at = Arc::as_ptr(route);
                                if let Some((_, done)) = relinked.iter().find(|(p, _)| *p == at) {
                                    return done.clone();
                                }
                                let new =
                                    Arc::new(route.relinked(|b| this.slot(b).compiled.clone()));
                                relinked.push((at, new.clone()));
                                new
                            })
                            .collect();
                        (domains.clone(), routes.into())
                    })
                    .collect::<CompiledVirtualHosts>()
            };
            let (external, internal) = (slot.external.clone(), slot.internal.clone());
            let (version, metrics) = (slot.version.clone(), slot.metrics.clone());
            let external = table(&external, self);
            let internal = table(&internal, self);
            self.install(name, version, metrics, external, internal);
        }
    }

    fn release_hosts(&mut self, name: &str, slot: &mut OwnerSlot) {
        for (domains, _) in slot.external.drain(..) {
            for host in domains {
                self.external.release(&host, name);
            }
        }
        for (domains, _) in slot.internal.drain(..) {
            for host in domains {
                self.internal.release(&host, name);
            }
        }
    }

    /// Placeholders nobody uses any more, and backends whose resources are gone and whose last
    /// user just left (only those this batch touched are looked at).
    fn collect_unused_backends(&mut self) -> Vec<Arc<Backend>> {
        let candidates = std::mem::take(&mut self.maybe_unused);
        let unused: Vec<String> = candidates
            .into_iter()
            .filter(|name| {
                self.backends
                    .get(name)
                    .is_some_and(|slot| slot.backend.is_none() && slot.endpoints.is_none())
                    && !self.backend_users.contains_key(name)
            })
            .collect();
        let mut removed = Vec::new();
        for name in unused {
            if let Some(slot) = self.backends.remove(&name) {
                self.forget_revision_use(&name, &slot.compiled);
                removed.push(slot.compiled);
            }
        }
        removed
    }

    /// Every Revision's counters, for the load report.
    pub fn revisions(&self) -> impl Iterator<Item = (&String, &Arc<RevisionStats>)> {
        self.revisions.iter()
    }

    /// The compiled backend `name`, if applied or referenced.
    pub fn backend(&self, name: &str) -> Option<&Arc<Backend>> {
        self.backends.get(name).map(|s| &s.compiled)
    }

    /// The applied version of each resource of a type (a refused resource keeps its previous
    /// one): what a reconnecting stream tells the controller it holds.
    pub fn versions(&self, type_: ResourceType) -> BTreeMap<String, String> {
        let named = |name: &str, version: &str| (name.to_string(), version.to_string());
        match type_ {
            ResourceType::RevisionPolicy => self
                .policies
                .iter()
                .map(|(name, (version, _))| named(name, version))
                .collect(),
            ResourceType::Backend => self
                .backends
                .iter()
                .filter_map(|(name, slot)| Some(named(name, &slot.backend.as_ref()?.0)))
                .collect(),
            ResourceType::Endpoints => self
                .backends
                .iter()
                .filter_map(|(name, slot)| Some(named(name, &slot.endpoints.as_ref()?.0)))
                .collect(),
            ResourceType::Certificate => self
                .certificates
                .iter()
                .map(|(name, slot)| named(name, &slot.version))
                .collect(),
            ResourceType::RouteConfig => self
                .owners
                .iter()
                .map(|(name, slot)| named(name, &slot.version))
                .collect(),
        }
    }

    /// The certificates, in name order (on an SNI name two claim, the first wins).
    pub fn certificates(&self) -> Vec<ServedCertificate<'_>> {
        let mut names: Vec<&String> = self.certificates.keys().collect();
        names.sort();
        names
            .into_iter()
            .map(|name| {
                let slot = &self.certificates[name];
                ServedCertificate {
                    external_hosts: &slot.external_hosts,
                    internal_hosts: &slot.internal_hosts,
                    key: &slot.key,
                }
            })
            .collect()
    }

    /// What is applied, for `/config`: every resource by type and name with its version, as
    /// compiled (private keys are never kept, so never shown), and the digest as `version`.
    pub fn render(&self) -> serde_json::Value {
        use serde_json::{json, Map, Value};
        fn sorted<K: std::ops::Deref<Target = str>, T>(
            map: &HashMap<K, T>,
            f: impl Fn(&T) -> Value,
        ) -> Value {
            let mut entries: Vec<(&K, &T)> = map.iter().collect();
            entries.sort_by_key(|(name, _)| &***name);
            Value::Object(
                entries
                    .into_iter()
                    .map(|(name, value)| (name.to_string(), f(value)))
                    .collect::<Map<_, _>>(),
            )
        }
        let table = |vhosts: &CompiledVirtualHosts| -> Value {
            vhosts
                .iter()
                .map(|(domains, routes)| {
                    json!({
                        "domains": domains.iter().map(|d| &**d).collect::<Vec<&str>>(),
                        "routes": routes.iter().map(|r| r.describe()).collect::<Vec<_>>(),
                    })
                })
                .collect()
        };
        let certificates: Vec<Value> = {
            let mut names: Vec<&String> = self.certificates.keys().collect();
            names.sort();
            names
                .into_iter()
                .map(|name| {
                    let c = &self.certificates[name];
                    json!({
                        "name": name,
                        "resourceVersion": c.version,
                        "secret": c.secret,
                        "externalHosts": c.external_hosts,
                        "internalHosts": c.internal_hosts,
                        "keyPem": "<redacted>",
                    })
                })
                .collect()
        };
        json!({
            "version": self.digest.to_hex(),
            "routeConfigs": sorted(&self.owners, |o| json!({
                "resourceVersion": o.version,
                "owner": o.metrics.owner(),
                "external": table(&o.external),
                "internal": table(&o.internal),
            })),
            "backends": sorted(&self.backends, |b| {
                let kind = match &b.compiled.kind {
                    BackendKind::Upstream(u) => json!({"protocol": format!("{:?}", u.protocol), "endpoints": u.endpoints().iter().map(|e| e.address.to_string()).collect::<Vec<_>>()}),
                    BackendKind::Responder(r) => json!({"responder": {"status": r.status.as_u16(), "bodyBytes": r.body.len(), "latencyMs": r.latency.as_millis()}}),
                };
                json!({
                    "resourceVersion": b.backend.as_ref().map(|(v, _)| v),
                    "endpointsVersion": b.endpoints.as_ref().map(|(v, _)| v),
                    "pending": b.backend.is_none(),
                    "revision": b.compiled.revision.as_ref().map(|r| &*r.id),
                    "target": kind,
                })
            }),
            "revisionPolicies": sorted(&self.policies, |(version, policy)| {
                let mut value = serde_json::to_value(policy).unwrap_or_default();
                if let Some(o) = value.as_object_mut() {
                    o.insert("resourceVersion".into(), Value::from(version.clone()));
                }
                value
            }),
            "certificates": certificates,
        })
    }
}

/// A backend not received yet: no endpoints, so requests wait for it (bounded).
fn placeholder(
    name: &str,
    max_waiting: usize,
    held_total: &Arc<HeldTotal>,
    metrics: impl FnOnce() -> BackendMetrics,
) -> Backend {
    Backend::build(
        name,
        BackendSpec {
            backend: None,
            addresses: &[],
            policy: None,
            max_waiting,
            held_total,
        },
        None,
        |_| Arc::default(),
        metrics,
    )
}

/// The rejection list of a NACK, for tests and logs.
pub fn rejected_names(rejection: &Rejection) -> Vec<&str> {
    rejection
        .resources
        .iter()
        .map(|r: &RejectedResource| r.name.as_str())
        .collect()
}

#[cfg(test)]
mod tests;
