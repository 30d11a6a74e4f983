//! The store → xDS resources and statuses, incrementally: a change to one object recomputes
//! only what depends on it, and produces only the resources and statuses that changed.
//!
//! [`Translator::update`] is pure over the store and the changes since the last call (no I/O,
//! no clock): the same history always gives the same resources. Its state is what the last call
//! computed, kept per object:
//!
//! ```text
//! Service + EndpointSlices ──> service backends (ns/svc:port) ──┐
//! Secrets ─────────────────────────────────────────────────────┤
//! KIngress (class matches) ──> ingress plan (+ last good) ──────┼──> claims (domain conflicts,
//! Revision + config-autoscaler ──> revision unit ──> Route plan ┘     [`crate::claims`])
//!                                                                         │
//!      RouteConfig per accepted owner, Backend/Endpoints/RevisionPolicy per referenced backend,
//!      Certificate per (Secret, content) with the SNI names it won, statuses per object
//! ```
//!
//! Each arrow is a reverse index, so a changed EndpointSlice reaches only the service backends
//! it feeds, and through them only the objects that name them.
//!
//! Per class-matching ingress (annotation `networking.knative.dev/ingress.class` equal to the
//! configured class; others are ignored entirely and get no status):
//! 1. Knative defaulting and validation ([`crate::ingress`]), then the Knative hash of the
//!    defaulted spec ([`crate::hash`]).
//! 2. InsertProbe, folded: each path's route carries the hash (`probe_hash`), which the proxy
//!    SETs as `k-network-hash` (with the route-level SETs, before the split's) when the request
//!    carries `k-network-hash: override`. That answers every request exactly as Knative's probe
//!    copy P′ (which matches `k-network-hash: override` and SETs the hash) placed before P
//!    would, with half the routes. A path that itself matches on `k-network-hash` keeps the
//!    explicit copy (its `override` match replaces the path's own, which folding cannot
//!    express); copies end in `/probe`. Route ids are `ns/name#<rule>/<path>`.
//! 3. Every split's backend (`ns/svc:<servicePort as written>`) is resolved from the store
//!    ([`backend`]).
//!
//! A failing ingress (invalid, Service or Service port missing, bad Secret) gets
//! `NetworkConfigured=False`. If an earlier translation of it succeeded, that last good plan
//! keeps serving, with its backends resolved from the current store (a vanished Service serves
//! no endpoints); otherwise it contributes nothing. Deleted ingresses leave the cache at once.
//!
//! **Hosts.** Normalised ([`sluice_xds::host`]); an empty host list means `"*"`. ExternalIP
//! rules go to both the external and the internal table, every other visibility to internal.
//!
//! **Domain conflicts** ([`crate::claims`]): ingresses and sluice Routes claim hosts oldest
//! first; one that shares a host with an older accepted owner is excluded whole, with
//! `LoadBalancerReady=False` (Routes: `IngressReady=False`) reason `DomainConflict`.
//!
//! **Route precedence.** Within a virtual host the routes of all rules naming that host are
//! concatenated in rule order and then stable-sorted by path prefix length, longest first (an
//! empty path is `"/"`). Equal prefixes keep spec order, so probe copies come before the routes
//! they copy and header-matched paths listed first keep winning over catch-alls. This is
//! net-kourier's order, under which ACME `/.well-known/...` paths beat `/`. Hosts of one owner
//! and table with identical route lists share one virtual host.
//!
//! **TLS** ([`tls`]). The `spec.tls` entries Knative's per-visibility selection picks become
//! certificates, read and validated from their Secrets; a missing or bad Secret fails the
//! ingress like a missing Service. On an SNI name several accepted ingresses claim, the older
//! one wins (within one ingress, the earlier entry). `httpOption: Redirected` sets
//! `https_redirect` on the ingress's routes in the external table only.
//!
//! **sluice Routes and Revisions** ([`routes`]) produce the same kinds of resources.

use crate::autoscaler::AutoscalerConfig;
use crate::claims::{AgeKey, ClaimSet, Conflict};
use crate::hash::ingress_hash;
use crate::ingress::{set_defaults, validate, InvalidIngress};
use crate::object::{
    HttpIngressPath, Ingress, IntOrString, Kind, Object, ObjectKey, INGRESS_CLASS_ANNOTATION,
    REVISION_LABEL, SERVICE_NAME_LABEL, VISIBILITY_EXTERNAL_IP,
};
use crate::revision::{self, ScalingTarget};
use crate::status::{
    Condition, ObjectStatus, CONDITION_LOAD_BALANCER_READY, CONDITION_NETWORK_CONFIGURED,
    MESSAGE_DOMAIN_CONFLICT, MESSAGE_UNINITIALIZED, REASON_DOMAIN_CONFLICT, REASON_UNINITIALIZED,
    STATUS_FALSE, STATUS_TRUE, STATUS_UNKNOWN,
};
use crate::store::{Store, StoreChange};
use crate::TranslateConfig;
use sluice_xds::cache::Change;
use sluice_xds::protocol::NamedResource;
use sluice_xds::{
    Backend, Certificate, Endpoints, Forward, HeaderMatch, HeaderValue, Protocol, Resource,
    ResourceType, RevisionPolicy, Route, RouteAction, RouteConfig, Split, Target, VirtualHost,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub mod backend;
pub mod routes;
pub mod tls;

pub use backend::ResolveError;
pub use tls::SecretError;

/// `spec.httpOption` value that redirects plain HTTP on ExternalIP rules to HTTPS.
pub const HTTP_OPTION_REDIRECTED: &str = "Redirected";

pub use sluice_xds::{PROBE_HASH_HEADER, PROBE_HASH_OVERRIDE};

/// Why one ingress could not be translated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    #[error(transparent)]
    Invalid(#[from] InvalidIngress),
    #[error("ingress {ingress}: {error}")]
    Backend {
        ingress: String,
        error: ResolveError,
    },
    #[error("ingress {ingress}: {error}")]
    Secret { ingress: String, error: SecretError },
}

impl TranslateError {
    /// The `NetworkConfigured=False` reason.
    pub fn reason(&self) -> &'static str {
        match self {
            TranslateError::Invalid(_) => "InvalidIngress",
            TranslateError::Backend { error, .. } => error.reason(),
            TranslateError::Secret { error, .. } => error.reason(),
        }
    }
}

/// What an owner (KIngress or sluice Route) serves once accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OwnerPlan {
    /// Its RouteConfig resource, versioned once when planned and shared (by `Arc`) with the
    /// emitted resources and the xDS cache.
    pub config: NamedResource,
    /// Every host it claims, both tables.
    pub hosts: BTreeSet<String>,
    /// Backend name → what it is.
    pub backends: BTreeMap<String, BackendRef>,
    /// Ingresses only, in spec order.
    pub certificates: Vec<tls::PlannedCertificate>,
}

/// What a backend name of a plan refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BackendRef {
    /// A Service port (`namespace/service:port`); `protocol` is from the last successful
    /// resolution, for when the Service has since vanished.
    Service {
        namespace: String,
        service: String,
        port: IntOrString,
        protocol: Protocol,
    },
    /// A sluice Revision.
    Revision(ObjectKey),
}

/// A statuses change.
// Statuses travel in short lists that are consumed at once: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatusChange {
    Set(ObjectStatus),
    Remove {
        kind: String,
        namespace: String,
        name: String,
    },
}

/// What one update changed.
#[derive(Clone, Debug, Default)]
pub struct Delta {
    pub resources: Vec<Change>,
    pub statuses: Vec<StatusChange>,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty() && self.statuses.is_empty()
    }
}

/// A Service backend (`ns/svc:port`) as the store resolves it now.
#[derive(Debug)]
struct ServiceBackend {
    namespace: String,
    service: String,
    port: IntOrString,
    resolved: Result<backend::Resolved, ResolveError>,
}

#[derive(Debug)]
struct IngressState {
    fresh: Result<Arc<OwnerPlan>, TranslateError>,
    last_good: Option<Arc<OwnerPlan>>,
    /// Backend names and Secrets the last planning read.
    reads: Reads,
    /// What its status and its claims were computed for.
    generation: i64,
    age: AgeKey,
}

impl IngressState {
    fn candidate(&self) -> Option<&Arc<OwnerPlan>> {
        self.fresh.as_ref().ok().or(self.last_good.as_ref())
    }
}

#[derive(Debug)]
struct RouteState {
    plan: Result<Arc<OwnerPlan>, routes::RouteError>,
    /// Revisions it names (found or not).
    revisions: BTreeSet<ObjectKey>,
    /// What its status and its claims were computed for.
    generation: i64,
    age: AgeKey,
}

/// What a usable Revision puts in the data plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RevisionOutput {
    pub backend: Backend,
    pub endpoints: Option<Endpoints>,
    pub policy: RevisionPolicy,
}

#[derive(Debug)]
struct RevisionState {
    output: Result<RevisionOutput, String>,
    status: ObjectStatus,
    target: Option<ScalingTarget>,
    /// The Service backend it resolved, if any.
    reads: Option<String>,
}

#[derive(Debug, Default)]
struct Reads {
    backends: BTreeSet<String>,
    secrets: BTreeSet<ObjectKey>,
}

/// What an accepted owner contributes besides its RouteConfig.
#[derive(Debug, Default)]
struct Contribution {
    backends: BTreeMap<String, BackendRef>,
    /// `(resource name, entry)`.
    certificates: Vec<(String, tls::PlannedCertificate)>,
    /// The owner's age, which orders its SNI claims.
    age: Option<AgeKey>,
}

impl Contribution {
    fn is_empty(&self) -> bool {
        self.backends.is_empty() && self.certificates.is_empty()
    }
}

/// The SNI claimants of one `(listener set, name)`: (age, entry index) → certificate resource.
type SniClaims = BTreeMap<(AgeKey, usize), String>;

/// One certificate resource: the PEM pair (every user has the same content: the name is its
/// hash), who uses it, and the `(external?, name)` claims made with it, counted.
#[derive(Debug)]
struct CertificateUse {
    entry: tls::PlannedCertificate,
    users: BTreeMap<ObjectKey, usize>,
    claims: BTreeMap<(bool, String), usize>,
}

#[derive(Default)]
struct Dirty {
    backends_resolved: BTreeSet<String>,
    ingresses: BTreeSet<ObjectKey>,
    revisions: BTreeSet<ObjectKey>,
    routes: BTreeSet<ObjectKey>,
    owners: BTreeSet<ObjectKey>,
    emit_backends: BTreeSet<String>,
    emit_certificates: BTreeSet<String>,
}

/// The incremental translator; see the module docs.
pub struct Translator {
    config: TranslateConfig,
    autoscaler: Result<AutoscalerConfig, String>,
    ingresses: BTreeMap<ObjectKey, IngressState>,
    routes: BTreeMap<ObjectKey, RouteState>,
    revisions: BTreeMap<ObjectKey, RevisionState>,
    services: BTreeMap<String, ServiceBackend>,
    /// `(ns, svc)` → its backend names.
    service_backends: BTreeMap<(String, String), BTreeSet<String>>,
    /// Backend name → ingresses and Revisions that resolved it.
    backend_readers: BTreeMap<String, BTreeSet<ObjectKey>>,
    secret_readers: BTreeMap<ObjectKey, BTreeSet<ObjectKey>>,
    /// Revision → Routes naming it.
    revision_readers: BTreeMap<ObjectKey, BTreeSet<ObjectKey>>,
    claims: ClaimSet,
    contributions: BTreeMap<ObjectKey, Contribution>,
    /// Backend name → accepted owners referring to it, and how.
    backend_refs: BTreeMap<String, BTreeMap<ObjectKey, BackendRef>>,
    /// `(external?, name)` → claimants.
    sni: BTreeMap<(bool, String), SniClaims>,
    /// Certificate resource → its content, users and the names they claim with it.
    certificate_users: BTreeMap<String, CertificateUse>,
    key_pairs: tls::KeyPairChecks,
    /// Service backends that lost a reader or a reference: forgotten if nobody is left.
    maybe_unused: BTreeSet<String>,
    emitted: [BTreeMap<String, NamedResource>; 5],
    statuses: BTreeMap<(String, String, String), ObjectStatus>,
}

/// The RouteConfig resource name of an owner: `ingress/ns/name` or `route/ns/name`.
pub fn owner_resource_name(key: &ObjectKey) -> String {
    format!(
        "{}/{}/{}",
        key.kind.as_str().to_ascii_lowercase(),
        key.namespace,
        key.name
    )
}

/// The owner a RouteConfig resource name stands for (see [`owner_resource_name`]).
pub fn owner_of_resource(name: &str) -> Option<ObjectKey> {
    let (kind, rest) = name.split_once('/')?;
    let (namespace, name) = rest.split_once('/')?;
    let kind = match kind {
        "ingress" => Kind::Ingress,
        "route" => Kind::Route,
        _ => return None,
    };
    Some(ObjectKey::new(kind, namespace, name))
}

fn status_key(status: &ObjectStatus) -> (String, String, String) {
    (
        status.kind.clone(),
        status.namespace.clone(),
        status.name.clone(),
    )
}

impl Translator {
    pub fn new(config: TranslateConfig) -> Self {
        Translator {
            config,
            autoscaler: Ok(AutoscalerConfig::default()),
            ingresses: BTreeMap::new(),
            routes: BTreeMap::new(),
            revisions: BTreeMap::new(),
            services: BTreeMap::new(),
            service_backends: BTreeMap::new(),
            backend_readers: BTreeMap::new(),
            secret_readers: BTreeMap::new(),
            revision_readers: BTreeMap::new(),
            claims: ClaimSet::default(),
            contributions: BTreeMap::new(),
            backend_refs: BTreeMap::new(),
            sni: BTreeMap::new(),
            certificate_users: BTreeMap::new(),
            key_pairs: tls::KeyPairChecks::default(),
            maybe_unused: BTreeSet::new(),
            emitted: Default::default(),
            statuses: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &TranslateConfig {
        &self.config
    }

    /// Brings the output up to date with `store`, given what changed in it since the last
    /// call (every object on the first call: [`Store::all_as_changes`]). Returns what changed.
    pub fn update(&mut self, store: &Store, changes: &[StoreChange]) -> Delta {
        let mut dirty = Dirty::default();
        for change in changes {
            self.seed(store, change, &mut dirty);
        }
        let mut delta = Delta::default();
        while let Some(name) = dirty.backends_resolved.pop_first() {
            self.refresh_service(store, &name, &mut dirty);
        }
        while let Some(key) = dirty.revisions.pop_first() {
            self.refresh_revision(store, &key, &mut dirty, &mut delta);
        }
        while let Some(key) = dirty.ingresses.pop_first() {
            self.refresh_ingress(store, &key, &mut dirty);
        }
        while let Some(key) = dirty.routes.pop_first() {
            self.refresh_route(store, &key, &mut dirty);
        }
        dirty.owners.extend(self.claims.resolve());
        while let Some(key) = dirty.owners.pop_first() {
            self.emit_owner(store, &key, &mut dirty, &mut delta);
        }
        while let Some(name) = dirty.emit_backends.pop_first() {
            self.emit_backend(&name, &mut delta);
        }
        while let Some(name) = dirty.emit_certificates.pop_first() {
            self.emit_certificate(&name, &mut delta);
        }
        self.sweep_services();
        delta
    }

    /// Marks what a store change affects.
    fn seed(&mut self, store: &Store, change: &StoreChange, dirty: &mut Dirty) {
        let key = &change.key;
        match key.kind {
            Kind::Ingress => {
                dirty.ingresses.insert(key.clone());
            }
            Kind::Route => {
                dirty.routes.insert(key.clone());
            }
            Kind::Revision => {
                dirty.revisions.insert(key.clone());
            }
            Kind::Secret => {
                if let Some(readers) = self.secret_readers.get(key) {
                    dirty.ingresses.extend(readers.iter().cloned());
                }
            }
            Kind::Service => {
                let service = (key.namespace.clone(), key.name.clone());
                if let Some(names) = self.service_backends.get(&service) {
                    dirty.backends_resolved.extend(names.iter().cloned());
                }
            }
            Kind::EndpointSlice => {
                let now = store.get(key).map(|e| e.object.metadata().labels.clone());
                for labels in [Some(&change.old_labels), now.as_ref()]
                    .into_iter()
                    .flatten()
                {
                    if let Some(service) = labels.get(SERVICE_NAME_LABEL) {
                        let service = (key.namespace.clone(), service.clone());
                        if let Some(names) = self.service_backends.get(&service) {
                            dirty.backends_resolved.extend(names.iter().cloned());
                        }
                    }
                    if let Some(revision) = labels.get(REVISION_LABEL) {
                        dirty.revisions.insert(ObjectKey::new(
                            Kind::Revision,
                            &key.namespace,
                            revision,
                        ));
                    }
                }
            }
            Kind::ConfigMap => {
                if key.namespace == self.config.system_namespace
                    && key.name == crate::autoscaler::config::CONFIG_NAME
                {
                    let config = revision::autoscaler_config(store, &self.config.system_namespace);
                    if config != self.autoscaler {
                        self.autoscaler = config;
                        dirty.revisions.extend(self.revisions.keys().cloned());
                        dirty.revisions.extend(
                            store
                                .revisions()
                                .map(|r| object_key(Kind::Revision, &r.revision.metadata)),
                        );
                    }
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Service backends.

    /// The Service backend `name` as resolved now, resolving it on first use.
    fn service_backend(
        &mut self,
        store: &Store,
        namespace: &str,
        service: &str,
        port: &IntOrString,
    ) -> (String, &Result<backend::Resolved, ResolveError>) {
        let name = backend_id(namespace, service, port);
        if !self.services.contains_key(&name) {
            self.services.insert(
                name.clone(),
                ServiceBackend {
                    namespace: namespace.to_string(),
                    service: service.to_string(),
                    port: port.clone(),
                    resolved: backend::resolve(store, namespace, service, port),
                },
            );
            self.service_backends
                .entry((namespace.to_string(), service.to_string()))
                .or_default()
                .insert(name.clone());
        }
        let resolved = &self.services[&name].resolved;
        (name, resolved)
    }

    fn refresh_service(&mut self, store: &Store, name: &str, dirty: &mut Dirty) {
        let Some(entry) = self.services.get_mut(name) else {
            return;
        };
        let resolved = backend::resolve(store, &entry.namespace, &entry.service, &entry.port);
        if resolved == entry.resolved {
            return;
        }
        let target_changed = match (&resolved, &entry.resolved) {
            (Ok(a), Ok(b)) => a.backend != b.backend,
            _ => true,
        };
        entry.resolved = resolved;
        dirty.emit_backends.insert(name.to_string());
        for reader in self.backend_readers.get(name).into_iter().flatten() {
            match reader.kind {
                // Revisions carry the endpoints in their own backend.
                Kind::Revision => {
                    dirty.revisions.insert(reader.clone());
                }
                Kind::Ingress if target_changed => {
                    dirty.ingresses.insert(reader.clone());
                }
                _ => {}
            }
        }
    }

    /// Forgets Service backends nobody reads or refers to any more.
    fn sweep_services(&mut self) {
        let candidates = std::mem::take(&mut self.maybe_unused);
        let unused: Vec<String> = candidates
            .into_iter()
            .filter(|name| {
                self.services.contains_key(name)
                    && self
                        .backend_readers
                        .get(name)
                        .is_none_or(BTreeSet::is_empty)
                    && !self.backend_refs.contains_key(name)
            })
            .collect();
        for name in unused {
            if let Some(entry) = self.services.remove(&name) {
                let service = (entry.namespace, entry.service);
                if let Some(names) = self.service_backends.get_mut(&service) {
                    names.remove(&name);
                    if names.is_empty() {
                        self.service_backends.remove(&service);
                    }
                }
            }
            self.backend_readers.remove(&name);
        }
    }

    fn set_backend_reads(
        &mut self,
        reader: &ObjectKey,
        old: &BTreeSet<String>,
        new: &BTreeSet<String>,
    ) {
        for name in old.difference(new) {
            self.maybe_unused.insert(name.clone());
            if let Some(readers) = self.backend_readers.get_mut(name) {
                readers.remove(reader);
                if readers.is_empty() {
                    self.backend_readers.remove(name);
                }
            }
        }
        for name in new {
            self.backend_readers
                .entry(name.clone())
                .or_default()
                .insert(reader.clone());
        }
    }

    // -----------------------------------------------------------------------------------------
    // Revisions.

    fn refresh_revision(
        &mut self,
        store: &Store,
        key: &ObjectKey,
        dirty: &mut Dirty,
        delta: &mut Delta,
    ) {
        let old_reads: BTreeSet<String> = self
            .revisions
            .get(key)
            .and_then(|s| s.reads.clone())
            .into_iter()
            .collect();
        let stored = store.get(key).and_then(|e| match &*e.object {
            Object::Revision(r) => Some((r, e.generation)),
            _ => None,
        });
        let Some((revision, generation)) = stored else {
            self.set_backend_reads(key, &old_reads, &BTreeSet::new());
            if let Some(old) = self.revisions.remove(key) {
                self.remove_status(&old.status, delta);
                self.revision_changed(key, dirty);
            }
            return;
        };
        let autoscaler = self.autoscaler.clone().unwrap_or_default();
        let (namespace, name) = (key.namespace.as_str(), key.name.as_str());
        let mut reads = None;
        let validated =
            revision::validate(revision, &autoscaler).map_err(|e| (e.reason(), e.to_string()));
        let output = match validated {
            Err(e) => Err(e),
            Ok((valid, _)) => {
                let id = revision::backend_id(namespace, name);
                let resolved = match &valid.backend {
                    revision::RevisionBackend::Service {
                        name: service,
                        port,
                        ..
                    } => {
                        let (backend_name, resolved) =
                            self.service_backend(store, namespace, service, port);
                        reads = Some(backend_name);
                        resolved
                            .clone()
                            .map_err(|e| (e.reason(), format!("revision {namespace}/{name}: {e}")))
                    }
                    revision::RevisionBackend::Process { .. } => Ok(backend::Resolved {
                        backend: Backend {
                            protocol: Protocol::Http1,
                            target: Target::Endpoints,
                            revision: None,
                        },
                        endpoints: Some(Endpoints {
                            addresses: revision::process_endpoints(store, namespace, name),
                        }),
                    }),
                    revision::RevisionBackend::Responder(spec) => Ok(backend::Resolved {
                        backend: Backend {
                            protocol: Protocol::Http1,
                            target: Target::Responder(spec.clone()),
                            revision: None,
                        },
                        endpoints: None,
                    }),
                };
                resolved.map(|resolved| RevisionOutput {
                    backend: Backend {
                        revision: Some(id),
                        ..resolved.backend
                    },
                    endpoints: resolved.endpoints,
                    policy: valid.policy.clone(),
                })
            }
        };
        let reads_set: BTreeSet<String> = reads.iter().cloned().collect();
        self.set_backend_reads(key, &old_reads, &reads_set);
        let status = routes::revision_status(namespace, name, generation, output.as_ref().err());
        let target = revision::scaling_target(revision, &self.autoscaler);
        let state = RevisionState {
            output: output.map_err(|(_, message)| message),
            status,
            target,
            reads,
        };
        let changed = self.revisions.get(key).is_none_or(|old| {
            old.output != state.output || old.status != state.status || old.target != state.target
        });
        self.set_status(state.status.clone(), delta);
        self.revisions.insert(key.clone(), state);
        if changed {
            self.revision_changed(key, dirty);
        }
    }

    fn revision_changed(&mut self, key: &ObjectKey, dirty: &mut Dirty) {
        if let Some(readers) = self.revision_readers.get(key) {
            dirty.routes.extend(readers.iter().cloned());
        }
        dirty
            .emit_backends
            .insert(revision::backend_id(&key.namespace, &key.name));
    }

    // -----------------------------------------------------------------------------------------
    // Ingresses.

    fn refresh_ingress(&mut self, store: &Store, key: &ObjectKey, dirty: &mut Dirty) {
        let ingress = store.get(key).and_then(|e| match &*e.object {
            Object::Ingress(i)
                if i.metadata.annotations.get(INGRESS_CLASS_ANNOTATION)
                    == Some(&self.config.ingress_class) =>
            {
                Some((i, e.sequence, e.generation))
            }
            _ => None,
        });
        let old_reads = self
            .ingresses
            .get(key)
            .map(|s| (s.reads.backends.clone(), s.reads.secrets.clone()))
            .unwrap_or_default();
        let Some((ingress, sequence, generation)) = ingress else {
            self.set_backend_reads(key, &old_reads.0, &BTreeSet::new());
            self.set_secret_reads(key, &old_reads.1, &BTreeSet::new());
            if self.ingresses.remove(key).is_some() {
                self.claims.set(key, None);
                dirty.owners.insert(key.clone());
            }
            return;
        };
        let mut reads = Reads::default();
        let fresh = self.plan_ingress(store, ingress, &mut reads).map(Arc::new);
        self.set_backend_reads(key, &old_reads.0, &reads.backends);
        self.set_secret_reads(key, &old_reads.1, &reads.secrets);
        let previous = self.ingresses.remove(key);
        let last_good = match &fresh {
            Ok(plan) => Some(plan.clone()),
            Err(_) => previous.as_ref().and_then(|p| p.last_good.clone()),
        };
        let age = AgeKey::new(
            ingress.metadata.creation_timestamp.as_deref(),
            sequence,
            key.clone(),
        );
        let state = IngressState {
            fresh,
            last_good,
            reads,
            generation,
            age,
        };
        let changed = previous.as_ref().is_none_or(|p| {
            p.fresh != state.fresh || p.candidate() != state.candidate() || p.age != state.age
        });
        if changed {
            self.claims.set(
                key,
                state
                    .candidate()
                    .map(|p| (state.age.clone(), p.hosts.clone())),
            );
            dirty.owners.insert(key.clone());
        } else if previous.is_some_and(|p| p.generation != state.generation) {
            // The same outcome for a new generation: only the status changes.
            dirty.owners.insert(key.clone());
        }
        self.ingresses.insert(key.clone(), state);
    }

    fn set_secret_reads(
        &mut self,
        reader: &ObjectKey,
        old: &BTreeSet<ObjectKey>,
        new: &BTreeSet<ObjectKey>,
    ) {
        for secret in old.difference(new) {
            if let Some(readers) = self.secret_readers.get_mut(secret) {
                readers.remove(reader);
                if readers.is_empty() {
                    self.secret_readers.remove(secret);
                }
            }
        }
        for secret in new {
            self.secret_readers
                .entry(secret.clone())
                .or_default()
                .insert(reader.clone());
        }
    }

    /// Defaults, validates, hashes and plans one ingress, resolving its backends strictly and
    /// recording what it read.
    fn plan_ingress(
        &mut self,
        store: &Store,
        ingress: &Ingress,
        reads: &mut Reads,
    ) -> Result<OwnerPlan, TranslateError> {
        let meta = &ingress.metadata;
        let owner = format!("{}/{}", meta.namespace, meta.name);
        let mut spec = ingress.spec.clone();
        set_defaults(&mut spec);
        validate(&meta.namespace, &meta.name, &spec)?;
        let hash = ingress_hash(&meta.namespace, &meta.name, &spec);

        reads.secrets.extend(tls::secrets_read(&spec));
        let certificates =
            tls::plan_certificates(store, &spec, &mut self.key_pairs).map_err(|error| {
                TranslateError::Secret {
                    ingress: owner.clone(),
                    error,
                }
            })?;
        let mut backends = BTreeMap::new();
        let mut external: BTreeMap<String, Vec<Route>> = BTreeMap::new();
        let mut internal: BTreeMap<String, Vec<Route>> = BTreeMap::new();
        let https_redirect = spec.http_option == HTTP_OPTION_REDIRECTED;
        for (i, rule) in spec.rules.iter().enumerate() {
            let paths = rule
                .http
                .as_ref()
                .and_then(|http| http.paths.as_deref())
                .unwrap_or_default();
            let mut probes = Vec::with_capacity(paths.len());
            let mut routes = Vec::with_capacity(paths.len());
            for (j, path) in paths.iter().enumerate() {
                for split in path.splits.iter().flatten() {
                    let (name, resolved) = self.service_backend(
                        store,
                        &split.service_namespace,
                        &split.service_name,
                        &split.service_port,
                    );
                    reads.backends.insert(name.clone());
                    let protocol = match resolved {
                        Ok(resolved) => resolved.backend.protocol,
                        Err(error) => {
                            return Err(TranslateError::Backend {
                                ingress: owner,
                                error: error.clone(),
                            })
                        }
                    };
                    backends.insert(
                        name,
                        BackendRef::Service {
                            namespace: split.service_namespace.clone(),
                            service: split.service_name.clone(),
                            port: split.service_port.clone(),
                            protocol,
                        },
                    );
                }
                let id = format!("{owner}#{i}/{j}");
                if path
                    .headers
                    .keys()
                    .any(|name| name.eq_ignore_ascii_case(PROBE_HASH_HEADER))
                {
                    // A path that itself matches the probe header keeps a separate probe copy:
                    // the copy's `override` match replaces the path's own.
                    probes.push(path_route(format!("{id}/probe"), path, Probe::Copy(&hash)));
                    routes.push(path_route(id, path, Probe::None));
                } else {
                    routes.push(path_route(id, path, Probe::Folded(&hash)));
                }
            }
            probes.extend(routes);
            let external_rule = rule.visibility == VISIBILITY_EXTERNAL_IP;
            for host in normalize_hosts(&rule.hosts) {
                if external_rule {
                    external
                        .entry(host.clone())
                        .or_default()
                        .extend(probes.iter().map(|route| Route {
                            https_redirect,
                            ..route.clone()
                        }));
                }
                internal
                    .entry(host)
                    .or_default()
                    .extend(probes.iter().cloned());
            }
        }
        let hosts = external.keys().chain(internal.keys()).cloned().collect();
        let name = owner_resource_name(&ObjectKey::new(Kind::Ingress, &meta.namespace, &meta.name));
        Ok(OwnerPlan {
            config: NamedResource::new(
                name,
                Resource::RouteConfig(RouteConfig {
                    owner,
                    external: route_table(external),
                    internal: route_table(internal),
                }),
            ),
            hosts,
            backends,
            certificates,
        })
    }

    // -----------------------------------------------------------------------------------------
    // sluice Routes.

    fn refresh_route(&mut self, store: &Store, key: &ObjectKey, dirty: &mut Dirty) {
        let stored = store.get(key).and_then(|e| match &*e.object {
            Object::Route(r) => Some((r, e.sequence, e.generation)),
            _ => None,
        });
        let old_revisions = self
            .routes
            .get(key)
            .map(|s| s.revisions.clone())
            .unwrap_or_default();
        let Some((route, sequence, generation)) = stored else {
            self.set_revision_reads(key, &old_revisions, &BTreeSet::new());
            if self.routes.remove(key).is_some() {
                self.claims.set(key, None);
                dirty.owners.insert(key.clone());
            }
            return;
        };
        let revisions = &self.revisions;
        let (plan, named) = routes::plan_route(route, |revision| {
            revisions.get(revision).map(|state| state.output.as_ref())
        });
        let plan = plan.map(Arc::new);
        self.set_revision_reads(key, &old_revisions, &named);
        let state = RouteState {
            plan,
            revisions: named,
            generation,
            age: AgeKey::new(
                route.metadata.creation_timestamp.as_deref(),
                sequence,
                key.clone(),
            ),
        };
        let previous = self.routes.remove(key);
        if previous
            .as_ref()
            .is_none_or(|p| p.plan != state.plan || p.age != state.age)
        {
            self.claims.set(
                key,
                state
                    .plan
                    .as_ref()
                    .ok()
                    .map(|p| (state.age.clone(), p.hosts.clone())),
            );
            dirty.owners.insert(key.clone());
        } else if previous.is_some_and(|p| p.generation != state.generation) {
            // The same outcome for a new generation: only the status changes.
            dirty.owners.insert(key.clone());
        }
        self.routes.insert(key.clone(), state);
    }

    fn set_revision_reads(
        &mut self,
        reader: &ObjectKey,
        old: &BTreeSet<ObjectKey>,
        new: &BTreeSet<ObjectKey>,
    ) {
        for revision in old.difference(new) {
            if let Some(readers) = self.revision_readers.get_mut(revision) {
                readers.remove(reader);
                if readers.is_empty() {
                    self.revision_readers.remove(revision);
                }
            }
        }
        for revision in new {
            self.revision_readers
                .entry(revision.clone())
                .or_default()
                .insert(reader.clone());
        }
    }

    // -----------------------------------------------------------------------------------------
    // Output.

    /// An owner's RouteConfig, what it contributes, and its status.
    fn emit_owner(&mut self, store: &Store, key: &ObjectKey, dirty: &mut Dirty, delta: &mut Delta) {
        let (plan, age) = match key.kind {
            Kind::Ingress => self
                .ingresses
                .get(key)
                .map(|s| (s.candidate(), s.age.clone()))
                .unzip(),
            _ => self
                .routes
                .get(key)
                .map(|s| (s.plan.as_ref().ok(), s.age.clone()))
                .unzip(),
        };
        let accepted = plan
            .flatten()
            .filter(|_| self.claims.accepted(key))
            .cloned();
        self.emit_named(
            ResourceType::RouteConfig,
            &owner_resource_name(key),
            accepted.as_ref().map(|p| p.config.clone()),
            delta,
        );
        let contribution = accepted
            .map(|plan| Contribution {
                backends: plan.backends.clone(),
                certificates: plan
                    .certificates
                    .iter()
                    .map(|c| (c.resource_name(), c.clone()))
                    .collect(),
                age,
            })
            .unwrap_or_default();
        let old = self.contributions.remove(key).unwrap_or_default();
        self.contribute(key, store, old, contribution, dirty);
        match key.kind {
            Kind::Ingress => self.ingress_status(store, key, delta),
            _ => self.route_status(store, key, delta),
        }
    }

    /// Replaces an owner's contribution of backends and certificates.
    fn contribute(
        &mut self,
        key: &ObjectKey,
        store: &Store,
        old: Contribution,
        new: Contribution,
        dirty: &mut Dirty,
    ) {
        for name in old.backends.keys() {
            self.maybe_unused.insert(name.clone());
            if let Some(refs) = self.backend_refs.get_mut(name) {
                refs.remove(key);
                if refs.is_empty() {
                    self.backend_refs.remove(name);
                }
            }
            dirty.emit_backends.insert(name.clone());
        }
        for (name, backend) in &new.backends {
            if let BackendRef::Service {
                namespace,
                service,
                port,
                ..
            } = backend
            {
                // A last good plan may name a backend nobody has read since: resolve it now.
                self.service_backend(store, namespace, service, port);
            }
            self.backend_refs
                .entry(name.clone())
                .or_default()
                .insert(key.clone(), backend.clone());
            dirty.emit_backends.insert(name.clone());
        }
        if old.certificates != new.certificates || old.age != new.age {
            for (index, (name, entry)) in old.certificates.iter().enumerate() {
                for claim in sni_names(entry) {
                    if let Some(claimants) = self.sni.get_mut(&claim) {
                        claimants.retain(|(a, i), _| !(a.key() == key && *i == index));
                        dirty.emit_certificates.extend(claimants.values().cloned());
                        if claimants.is_empty() {
                            self.sni.remove(&claim);
                        }
                    }
                }
                if let Some(used) = self.certificate_users.get_mut(name) {
                    release(&mut used.users, key.clone());
                    for claim in sni_names(entry) {
                        release(&mut used.claims, claim);
                    }
                }
                dirty.emit_certificates.insert(name.clone());
            }
            if let Some(age) = &new.age {
                for (index, (name, entry)) in new.certificates.iter().enumerate() {
                    for claim in sni_names(entry) {
                        let claimants = self.sni.entry(claim).or_default();
                        claimants.insert((age.clone(), index), name.clone());
                        dirty.emit_certificates.extend(claimants.values().cloned());
                    }
                    let used = self
                        .certificate_users
                        .entry(name.clone())
                        .or_insert_with(|| CertificateUse {
                            entry: entry.clone(),
                            users: BTreeMap::new(),
                            claims: BTreeMap::new(),
                        });
                    *used.users.entry(key.clone()).or_default() += 1;
                    for claim in sni_names(entry) {
                        *used.claims.entry(claim).or_default() += 1;
                    }
                    dirty.emit_certificates.insert(name.clone());
                }
            }
        }
        if new.is_empty() {
            self.contributions.remove(key);
        } else {
            self.contributions.insert(key.clone(), new);
        }
    }

    fn emit_backend(&mut self, name: &str, delta: &mut Delta) {
        let resolved: Option<(Backend, Option<Endpoints>, Option<RevisionPolicy>)> =
            self.backend_refs.get(name).and_then(|refs| {
                let (_, reference) = refs.iter().next()?;
                match reference {
                    BackendRef::Service { protocol, .. } => {
                        Some(match self.services.get(name).map(|s| &s.resolved) {
                            Some(Ok(resolved)) => {
                                (resolved.backend.clone(), resolved.endpoints.clone(), None)
                            }
                            // Vanished since a last good plan used it: no endpoints.
                            _ => (
                                Backend {
                                    protocol: *protocol,
                                    target: Target::Endpoints,
                                    revision: None,
                                },
                                Some(Endpoints::default()),
                                None,
                            ),
                        })
                    }
                    BackendRef::Revision(revision) => {
                        let output = self.revisions.get(revision)?.output.as_ref().ok()?;
                        Some((
                            output.backend.clone(),
                            output.endpoints.clone(),
                            Some(output.policy.clone()),
                        ))
                    }
                }
            });
        let (backend, endpoints, policy) = match resolved {
            Some((b, e, p)) => (Some(b), e, p),
            None => (None, None, None),
        };
        self.emit(
            ResourceType::RevisionPolicy,
            name,
            policy.map(Resource::RevisionPolicy),
            delta,
        );
        self.emit(
            ResourceType::Backend,
            name,
            backend.map(Resource::Backend),
            delta,
        );
        self.emit(
            ResourceType::Endpoints,
            name,
            endpoints.map(Resource::Endpoints),
            delta,
        );
    }

    fn emit_certificate(&mut self, name: &str, delta: &mut Delta) {
        let used = self
            .certificate_users
            .get(name)
            .filter(|used| !used.users.is_empty());
        let Some(used) = used else {
            self.certificate_users.remove(name);
            self.emit(ResourceType::Certificate, name, None, delta);
            return;
        };
        let won = |external: bool| -> Vec<String> {
            used.claims
                .keys()
                .filter(|(set, host)| {
                    *set == external
                        && self
                            .sni
                            .get(&(*set, host.clone()))
                            .and_then(|claimants| claimants.values().next())
                            .is_some_and(|winner| winner == name)
                })
                .map(|(_, host)| host.clone())
                .collect()
        };
        let (external_hosts, internal_hosts) = (won(true), won(false));
        let entry = &used.entry;
        let resource = (!external_hosts.is_empty() || !internal_hosts.is_empty()).then(|| {
            Resource::Certificate(Certificate {
                secret: entry.secret.clone(),
                cert_pem: entry.cert_pem.clone(),
                key_pem: entry.key_pem.clone(),
                external_hosts,
                internal_hosts,
            })
        });
        self.emit(ResourceType::Certificate, name, resource, delta);
    }

    /// Records a resource already named and versioned (or its absence), and the change.
    fn emit_named(
        &mut self,
        type_: ResourceType,
        name: &str,
        resource: Option<NamedResource>,
        delta: &mut Delta,
    ) {
        let emitted = &mut self.emitted[type_.index()];
        match resource {
            Some(named) => {
                if emitted
                    .get(name)
                    .is_some_and(|old| old.version == named.version)
                {
                    return;
                }
                emitted.insert(name.to_string(), named.clone());
                delta.resources.push(Change::Put(named));
            }
            None => {
                if emitted.remove(name).is_some() {
                    delta
                        .resources
                        .push(Change::Remove(type_, name.to_string()));
                }
            }
        }
    }

    /// Records a resource (or its absence) and the change, if any.
    fn emit(
        &mut self,
        type_: ResourceType,
        name: &str,
        resource: Option<Resource>,
        delta: &mut Delta,
    ) {
        let named = resource.map(|r| NamedResource::new(name, r));
        self.emit_named(type_, name, named, delta);
    }

    fn set_status(&mut self, status: ObjectStatus, delta: &mut Delta) {
        let key = status_key(&status);
        if self.statuses.get(&key) != Some(&status) {
            self.statuses.insert(key, status.clone());
            delta.statuses.push(StatusChange::Set(status));
        }
    }

    fn remove_status(&mut self, status: &ObjectStatus, delta: &mut Delta) {
        if self.statuses.remove(&status_key(status)).is_some() {
            delta.statuses.push(StatusChange::Remove {
                kind: status.kind.clone(),
                namespace: status.namespace.clone(),
                name: status.name.clone(),
            });
        }
    }

    fn remove_status_of(&mut self, kind: &str, key: &ObjectKey, delta: &mut Delta) {
        let status_key = (kind.to_string(), key.namespace.clone(), key.name.clone());
        if self.statuses.remove(&status_key).is_some() {
            delta.statuses.push(StatusChange::Remove {
                kind: kind.to_string(),
                namespace: key.namespace.clone(),
                name: key.name.clone(),
            });
        }
    }

    fn conflict_message(&self, key: &ObjectKey) -> Option<Conflict> {
        self.claims.outcome(key).and_then(|o| o.clone())
    }

    fn ingress_status(&mut self, store: &Store, key: &ObjectKey, delta: &mut Delta) {
        let Some(state) = self.ingresses.get(key) else {
            self.remove_status_of("Ingress", key, delta);
            return;
        };
        let generation = store.get(key).map_or(0, |e| e.generation);
        let error = state.fresh.as_ref().err();
        let conflict = self.conflict_message(key).map(|c| {
            format!(
                "{MESSAGE_DOMAIN_CONFLICT}: host {:?} is already served by {} {}",
                c.host,
                c.holder.kind.as_str().to_ascii_lowercase(),
                c.holder.id()
            )
        });
        let status = ingress_status(&key.namespace, &key.name, generation, error, conflict);
        self.set_status(status, delta);
    }

    fn route_status(&mut self, store: &Store, key: &ObjectKey, delta: &mut Delta) {
        let Some(state) = self.routes.get(key) else {
            self.remove_status_of("Route", key, delta);
            return;
        };
        let generation = store.get(key).map_or(0, |e| e.generation);
        let conflict = self.conflict_message(key);
        let route = match store.get(key).map(|e| e.object.as_ref()) {
            Some(crate::object::Object::Route(route)) => Some(route),
            _ => None,
        };
        let status = routes::route_status(
            key,
            route,
            generation,
            state.plan.as_ref().err(),
            conflict.as_ref(),
        );
        self.set_status(status, delta);
    }

    // -----------------------------------------------------------------------------------------
    // Views.

    /// Every resource emitted, by type and name.
    pub fn resources(&self) -> impl Iterator<Item = (ResourceType, &NamedResource)> {
        ResourceType::ALL
            .into_iter()
            .flat_map(move |t| self.emitted[t.index()].values().map(move |r| (t, r)))
    }

    /// Every status, sorted by kind, namespace and name.
    pub fn statuses(&self) -> impl Iterator<Item = &ObjectStatus> {
        self.statuses.values()
    }

    /// Every Revision the autoscaler should run for (valid spec), by id.
    pub fn scaling_targets(&self) -> impl Iterator<Item = &ScalingTarget> {
        self.revisions.values().filter_map(|s| s.target.as_ref())
    }

    /// The ready addresses a Revision's backend has now (none for the responder).
    pub fn revision_endpoints(&self, key: &ObjectKey) -> usize {
        self.revisions
            .get(key)
            .and_then(|s| s.output.as_ref().ok())
            .and_then(|o| o.endpoints.as_ref())
            .map_or(0, |e| e.addresses.len())
    }

    /// The owners (ingresses, Routes) whose serving depends on a resource: for turning a
    /// proxy's rejection into their status.
    pub fn owners_of(&self, type_: ResourceType, name: &str) -> Vec<ObjectKey> {
        match type_ {
            ResourceType::RouteConfig => {
                if !self.emitted[ResourceType::RouteConfig.index()].contains_key(name) {
                    return Vec::new();
                }
                owner_of_resource(name).into_iter().collect()
            }
            ResourceType::Backend | ResourceType::Endpoints | ResourceType::RevisionPolicy => self
                .backend_refs
                .get(name)
                .map(|refs| refs.keys().cloned().collect())
                .unwrap_or_default(),
            ResourceType::Certificate => self
                .certificate_users
                .get(name)
                .map(|used| used.users.keys().cloned().collect())
                .unwrap_or_default(),
        }
    }
}

fn object_key(kind: Kind, meta: &crate::object::ObjectMeta) -> ObjectKey {
    ObjectKey::new(kind, &meta.namespace, &meta.name)
}

/// Takes one count of `key` back, dropping it at zero.
fn release<K: Ord>(counts: &mut BTreeMap<K, usize>, key: K) {
    if let Some(count) = counts.get_mut(&key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(&key);
        }
    }
}

/// The SNI claims of one certificate entry: `(external?, name)` per listener set it serves.
fn sni_names(entry: &tls::PlannedCertificate) -> Vec<(bool, String)> {
    let mut names = Vec::new();
    for (selected, external) in [(entry.external, true), (entry.internal, false)] {
        if selected {
            names.extend(entry.hosts.iter().map(|h| (external, h.clone())));
        }
    }
    names
}

/// The status of a class-matching ingress. `error` is the current translation failure (the
/// ingress may still serve its last good plan); `conflict` the domain-conflict message.
///
/// Only a translated, unrejected ingress waits for the load balancer (`Uninitialized`); the
/// conditions that were not evaluated are Unknown without a reason.
fn ingress_status(
    namespace: &str,
    name: &str,
    generation: i64,
    error: Option<&TranslateError>,
    conflict: Option<String>,
) -> ObjectStatus {
    let network = match (error, &conflict) {
        (Some(error), _) => Condition::new(CONDITION_NETWORK_CONFIGURED, STATUS_FALSE)
            .with_reason(error.reason(), error.to_string()),
        (None, Some(_)) => Condition::new(CONDITION_NETWORK_CONFIGURED, STATUS_UNKNOWN),
        (None, None) => Condition::new(CONDITION_NETWORK_CONFIGURED, STATUS_TRUE),
    };
    let load_balancer = match (conflict, error) {
        (Some(message), _) => Condition::new(CONDITION_LOAD_BALANCER_READY, STATUS_FALSE)
            .with_reason(REASON_DOMAIN_CONFLICT, message),
        // Nothing of this generation is waiting for the data plane.
        (None, Some(_)) => Condition::new(CONDITION_LOAD_BALANCER_READY, STATUS_UNKNOWN),
        (None, None) => Condition::new(CONDITION_LOAD_BALANCER_READY, STATUS_UNKNOWN)
            .with_reason(REASON_UNINITIALIZED, MESSAGE_UNINITIALIZED),
    };
    ObjectStatus::ingress(namespace, name, generation, vec![network, load_balancer])
}

/// The route for one KIngress path; with `probe_hash`, its InsertProbe copy.
fn path_route(id: String, path: &HttpIngressPath, probe: Probe<'_>) -> Route {
    let mut matches: BTreeMap<String, String> = path
        .headers
        .iter()
        .map(|(name, m)| (name.to_ascii_lowercase(), m.exact.clone()))
        .collect();
    let mut sets = lower_case_names(&path.append_headers);
    if let Probe::Copy(hash) = probe {
        matches.insert(
            PROBE_HASH_HEADER.to_string(),
            PROBE_HASH_OVERRIDE.to_string(),
        );
        sets.insert(PROBE_HASH_HEADER.to_string(), hash.to_string());
    }
    let splits = path
        .splits
        .iter()
        .flatten()
        .map(|split| Split {
            backend: backend_id(
                &split.service_namespace,
                &split.service_name,
                &split.service_port,
            ),
            weight: u32::try_from(split.percent).expect("validation keeps percents in 0..=100"),
            set_headers: header_values(lower_case_names(&split.append_headers)),
        })
        .collect();
    Route {
        id,
        path_prefix: if path.path.is_empty() {
            "/".to_string()
        } else {
            path.path.clone()
        },
        headers: matches
            .into_iter()
            .map(|(name, exact)| HeaderMatch { name, exact })
            .collect(),
        action: RouteAction::Forward(Forward {
            rewrite_host: (!path.rewrite_host.is_empty()).then(|| path.rewrite_host.clone()),
            set_headers: header_values(sets),
            splits,
        }),
        https_redirect: false,
        probe_hash: match probe {
            Probe::Folded(hash) => Some(hash.to_string()),
            Probe::Copy(_) | Probe::None => None,
        },
    }
}

/// How a KIngress path answers Knative's readiness probe (its InsertProbe).
#[derive(Clone, Copy)]
enum Probe<'a> {
    /// The route itself SETs the hash when the request asks (`Route::probe_hash`): the usual
    /// case, one route per path.
    Folded(&'a str),
    /// This route is the probe copy: it matches `k-network-hash: override` and SETs the hash.
    Copy(&'a str),
    /// No probe handling (the original of a copied path).
    None,
}

/// Header names folded to lower case; of names equal but for case, the last in byte order wins.
fn lower_case_names(headers: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
        .collect()
}

fn header_values(headers: BTreeMap<String, String>) -> Vec<HeaderValue> {
    headers
        .into_iter()
        .map(|(name, value)| HeaderValue { name, value })
        .collect()
}

/// The display id of a backend: `ns/svc:<servicePort as written>`.
pub fn backend_id(namespace: &str, service: &str, port: &IntOrString) -> String {
    format!("{namespace}/{service}:{port}")
}

/// Normalised, deduplicated hosts in spec order; none (or only empty names) means `"*"`.
fn normalize_hosts(hosts: &[String]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let hosts: Vec<String> = hosts
        .iter()
        .map(|h| sluice_xds::host::normalized(h))
        .filter(|h| !h.is_empty() && seen.insert(h.clone()))
        .collect();
    if hosts.is_empty() {
        vec!["*".to_string()]
    } else {
        hosts
    }
}

/// Sorts each host's routes by precedence and groups hosts with identical routes.
pub(crate) fn route_table(hosts: BTreeMap<String, Vec<Route>>) -> Vec<VirtualHost> {
    let mut groups: BTreeMap<Vec<String>, VirtualHost> = BTreeMap::new();
    for (host, mut routes) in hosts {
        routes.sort_by_key(|r| std::cmp::Reverse(r.path_prefix.len()));
        let ids = routes.iter().map(|r| r.id.clone()).collect();
        groups
            .entry(ids)
            .or_insert_with(|| VirtualHost {
                domains: Vec::new(),
                routes,
            })
            .domains
            .push(host);
    }
    let mut virtual_hosts: Vec<VirtualHost> = groups.into_values().collect();
    virtual_hosts.sort_by(|a, b| a.domains.cmp(&b.domains));
    virtual_hosts
}

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
