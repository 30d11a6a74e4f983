//! Test support shared by the translation tests: stores from YAML, a [`Harness`] that keeps one
//! [`Translator`] across store changes and checks every [`Delta`] against its views, and an
//! [`Output`] that reads the per-resource model back in the shapes the tests assert on.

use super::{Delta, StatusChange, Translator};
use crate::manifest::parse_file;
use crate::object::{Kind, Object, ObjectKey};
use crate::status::{Condition, ObjectStatus};
use crate::store::Store;
use crate::TranslateConfig;
use sluice_xds::cache::Change;
use sluice_xds::{
    Backend, Certificate, Endpoints, Resource, ResourceType, RevisionPolicy, RouteConfig,
    VirtualHost,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;

pub(crate) const CLASS: &str = "sluice.ingress.networking.knative.dev";

/// The objects of a multi-document YAML text, which must parse cleanly.
pub(crate) fn objects(yaml: &str) -> Vec<Object> {
    let file = parse_file("test.yaml".to_string(), yaml);
    assert!(file.problems.is_empty(), "test yaml: {:?}", file.problems);
    file.objects
}

pub(crate) fn store_of(yaml: &str) -> Store {
    let mut store = Store::new();
    for object in objects(yaml) {
        store.upsert(object);
    }
    store
}

pub(crate) fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|a| a.parse().expect("test addr")).collect()
}

/// A fresh translator's output for everything in `store`.
pub(crate) fn translate_store(store: &Store) -> Output {
    let mut translator = Translator::new(TranslateConfig::default());
    let delta = translator.update(store, &store.all_as_changes());
    let output = Output::of(&translator);
    assert_eq!(
        Output::from_delta(&Mirror::default(), delta),
        output,
        "the first delta holds everything"
    );
    output
}

/// What a translator shows: every resource by type and name, and every status.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Output {
    pub resources: BTreeMap<(ResourceType, String), Resource>,
    /// Sorted by kind, namespace and name.
    pub statuses: Vec<ObjectStatus>,
}

/// Resources and statuses rebuilt from deltas alone.
#[derive(Clone, Debug, Default)]
pub(crate) struct Mirror {
    resources: BTreeMap<(ResourceType, String), Resource>,
    statuses: BTreeMap<(String, String, String), ObjectStatus>,
}

impl Mirror {
    /// Applies a delta. Every change must change something: a put of what is already there or
    /// a removal of what is not is a spurious change.
    pub(crate) fn apply(&mut self, delta: Delta) {
        for change in delta.resources {
            match change {
                Change::Put(named) => {
                    assert_eq!(
                        named.version,
                        named.resource.version(),
                        "{}: version is the content hash",
                        named.name
                    );
                    let key = (named.resource.type_(), named.name.clone());
                    let old = self.resources.insert(key, (*named.resource).clone());
                    assert_ne!(
                        old.as_ref(),
                        Some(&*named.resource),
                        "spurious put of {}",
                        named.name
                    );
                }
                Change::Remove(type_, name) => {
                    let old = self.resources.remove(&(type_, name.clone()));
                    assert!(old.is_some(), "spurious removal of {type_} {name}");
                }
            }
        }
        for change in delta.statuses {
            match change {
                StatusChange::Set(status) => {
                    let old = self.statuses.insert(status.key(), status.clone());
                    assert_ne!(
                        old.as_ref(),
                        Some(&status),
                        "spurious status {}",
                        status.name
                    );
                }
                StatusChange::Remove {
                    kind,
                    namespace,
                    name,
                } => {
                    let old = self
                        .statuses
                        .remove(&(kind.clone(), namespace, name.clone()));
                    assert!(old.is_some(), "spurious status removal of {kind} {name}");
                }
            }
        }
    }

    pub(crate) fn output(&self) -> Output {
        Output {
            resources: self.resources.clone(),
            statuses: self.statuses.values().cloned().collect(),
        }
    }
}

/// One store and one translator, updated with only what changed; every update's delta is
/// checked against the translator's views.
pub(crate) struct Harness {
    pub store: Store,
    pub translator: Translator,
    mirror: Mirror,
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new(TranslateConfig::default())
    }
}

impl Harness {
    pub(crate) fn new(config: TranslateConfig) -> Self {
        Harness {
            store: Store::new(),
            translator: Translator::new(config),
            mirror: Mirror::default(),
        }
    }

    pub(crate) fn of(yaml: &str) -> Self {
        let mut harness = Harness::default();
        harness.apply(yaml);
        harness
    }

    /// Upserts every object of `yaml`.
    pub(crate) fn apply(&mut self, yaml: &str) {
        for object in objects(yaml) {
            self.store.upsert(object);
        }
    }

    pub(crate) fn delete(&mut self, kind: Kind, namespace: &str, name: &str) -> bool {
        self.store.delete(&ObjectKey::new(kind, namespace, name))
    }

    /// Updates the translator with the store's changes; returns the delta.
    pub(crate) fn update(&mut self) -> Delta {
        let changes = self.store.take_changes();
        let delta = self.translator.update(&self.store, &changes);
        self.mirror.apply(delta.clone());
        let output = Output::of(&self.translator);
        assert_eq!(self.mirror.output(), output, "deltas add up to the views");
        delta
    }

    /// Updates, and returns the whole output.
    pub(crate) fn run(&mut self) -> Output {
        self.update();
        Output::of(&self.translator)
    }
}

impl Output {
    pub(crate) fn of(translator: &Translator) -> Output {
        let resources = translator
            .resources()
            .map(|(type_, named)| {
                assert_eq!(type_, named.resource.type_(), "{}", named.name);
                assert_eq!(named.version, named.resource.version(), "{}", named.name);
                ((type_, named.name.clone()), (*named.resource).clone())
            })
            .collect();
        Output {
            resources,
            statuses: translator.statuses().cloned().collect(),
        }
    }

    fn from_delta(mirror: &Mirror, delta: Delta) -> Output {
        let mut mirror = mirror.clone();
        mirror.apply(delta);
        mirror.output()
    }

    fn of_type(&self, type_: ResourceType) -> impl Iterator<Item = (&str, &Resource)> {
        self.resources
            .iter()
            .filter(move |((t, _), _)| *t == type_)
            .map(|((_, name), resource)| (name.as_str(), resource))
    }

    /// RouteConfigs by name.
    pub(crate) fn route_configs(&self) -> BTreeMap<&str, &RouteConfig> {
        self.of_type(ResourceType::RouteConfig)
            .filter_map(|(name, r)| match r {
                Resource::RouteConfig(c) => Some((name, c)),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn route_config(&self, name: &str) -> &RouteConfig {
        self.route_configs()
            .get(name)
            .copied()
            .unwrap_or_else(|| panic!("no route config {name}"))
    }

    /// The external table as one list: every RouteConfig's virtual hosts, sorted by domains.
    pub(crate) fn external(&self) -> Vec<VirtualHost> {
        self.table(|c| &c.external)
    }

    /// The internal table as one list (see [`Output::external`]).
    pub(crate) fn internal(&self) -> Vec<VirtualHost> {
        self.table(|c| &c.internal)
    }

    fn table(&self, pick: impl Fn(&RouteConfig) -> &Vec<VirtualHost>) -> Vec<VirtualHost> {
        let mut all: Vec<VirtualHost> = self
            .route_configs()
            .values()
            .flat_map(|c| pick(c).iter().cloned())
            .collect();
        all.sort_by(|a, b| a.domains.cmp(&b.domains));
        all
    }

    /// Backends by name.
    pub(crate) fn backends(&self) -> BTreeMap<&str, &Backend> {
        self.of_type(ResourceType::Backend)
            .filter_map(|(name, r)| match r {
                Resource::Backend(b) => Some((name, b)),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn backend(&self, name: &str) -> &Backend {
        self.backends()
            .get(name)
            .copied()
            .unwrap_or_else(|| panic!("no backend {name}"))
    }

    pub(crate) fn endpoints(&self, name: &str) -> Option<&Endpoints> {
        match self
            .resources
            .get(&(ResourceType::Endpoints, name.to_string()))
        {
            Some(Resource::Endpoints(e)) => Some(e),
            _ => None,
        }
    }

    /// The addresses of a backend's Endpoints resource, which must exist.
    pub(crate) fn addresses(&self, name: &str) -> Vec<SocketAddr> {
        self.endpoints(name)
            .unwrap_or_else(|| panic!("no endpoints {name}"))
            .addresses
            .clone()
    }

    pub(crate) fn policy(&self, name: &str) -> Option<&RevisionPolicy> {
        match self
            .resources
            .get(&(ResourceType::RevisionPolicy, name.to_string()))
        {
            Some(Resource::RevisionPolicy(p)) => Some(p),
            _ => None,
        }
    }

    /// Certificates by name.
    pub(crate) fn certificates(&self) -> BTreeMap<&str, &Certificate> {
        self.of_type(ResourceType::Certificate)
            .filter_map(|(name, r)| match r {
                Resource::Certificate(c) => Some((name, c)),
                _ => None,
            })
            .collect()
    }

    /// The names of every resource of a type.
    pub(crate) fn names(&self, type_: ResourceType) -> Vec<&str> {
        self.of_type(type_).map(|(name, _)| name).collect()
    }

    pub(crate) fn status(&self, kind: &str, name: &str) -> &ObjectStatus {
        self.statuses
            .iter()
            .find(|s| s.kind == kind && s.name == name)
            .unwrap_or_else(|| panic!("no status for {kind} {name}"))
    }
}

pub(crate) fn condition<'a>(status: &'a ObjectStatus, type_: &str) -> &'a Condition {
    status
        .status
        .condition(type_)
        .unwrap_or_else(|| panic!("{} has no {type_}", status.name))
}

/// (status, reason, message) of a condition.
pub(crate) fn state(status: &ObjectStatus, type_: &str) -> (String, String, String) {
    let c = condition(status, type_);
    (
        c.status.clone(),
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    )
}

/// A Revision's backend, endpoints and policy as the translator resolved them, whether or not
/// a Route uses it (only used backends become resources), or its error message.
pub(crate) fn revision_output(
    translator: &Translator,
    namespace: &str,
    name: &str,
) -> Result<(Backend, Option<Endpoints>, RevisionPolicy), String> {
    let state = translator
        .revisions
        .get(&ObjectKey::new(Kind::Revision, namespace, name))
        .unwrap_or_else(|| panic!("no revision {namespace}/{name}"));
    state
        .output
        .clone()
        .map(|o| (o.backend, o.endpoints, o.policy))
}
