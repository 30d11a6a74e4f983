//! [`FakeApiServer`]: an in-memory Kubernetes API server over real HTTP/1.1 on `127.0.0.1:0`,
//! good enough for the real `kube::Client`, `kube::runtime::watcher` and `kubectl` (1.33, with
//! `--validate=false`) to run against it unmodified.
//!
//! What it implements:
//! - Discovery (`/version` reports 1.33, legacy `/api`, `/apis` documents listing every type
//!   with its `status` and `scale` subresources); `/openapi/*` is 404, so kubectl needs
//!   `--validate=false`.
//! - get, list (label and field selectors, `limit`/`continue`), watch (replay from a
//!   `resourceVersion`, synthetic ADDEDs from "0", selector transitions as ADDED/DELETED,
//!   bookmarks about every second when idle, `timeoutSeconds`, in-stream 410 Expired),
//!   create (`generateName`, `dryRun=All`), update with the `resourceVersion` precondition,
//!   delete (preconditions, finalizers), deletecollection (by selector), and JSON, merge, strategic merge and apply patches on the
//!   main resource, `/status` and `/scale`.
//! - One global `resourceVersion` counter, bumped once per write; writes that change nothing are
//!   not writes. `metadata.generation` starts at 1 and rises on every change outside `metadata`
//!   (and `status`, for types with a status subresource), for every type except the built-ins
//!   that have none in a real cluster: namespaces, services, configmaps, secrets, pods,
//!   endpointslices and leases.
//! - The main resource never changes `status` of a type with a status subresource (and create
//!   drops it); `/status` changes only `status`; `/scale` changes only the replicas field.
//!
//! What it approximates or leaves out:
//! - **Server-side apply** has one field manager: the applied configuration is strategically
//!   merged into the stored object (see `patch`), `fieldManager` is required but not recorded,
//!   there are no `managedFields` and no conflicts, and fields dropped from a later apply stay.
//! - Strategic merge patch knows the merge keys of the common lists only (`patch::merge_key`),
//!   ignores `$setElementOrder` and `$retainKeys`, and is refused (415) for custom resources, as
//!   the real server refuses it.
//! - It starts with the namespaces of a fresh cluster (`default`, `kube-node-lease`,
//!   `kube-public`, `kube-system`) when it serves namespaces, but objects may live in namespaces
//!   that do not exist, and deleting a namespace deletes nothing else.
//! - No validation or defaulting beyond `metadata.name`, except `spec.replicas` of an `apps/v1`
//!   Deployment defaulting to 1. No admission, no garbage collection, no authentication.
//! - List pages after the first show the current state under the first page's version.
//! - `compact()` also advances the version counter by one, so that even the newest version a
//!   client holds is older than the log afterwards (see [`FakeApiServer::compact`]).
//! - JSON (and YAML request bodies) only: no `as=Table` (kubectl then prints just NAME and AGE)
//!   and no protobuf. A protobuf body gets 415, and kubectl does not fall back to JSON, so its
//!   generator commands (`kubectl create namespace|configmap|secret|deployment …`) fail here;
//!   `kubectl create … --dry-run=client -o json | kubectl create --validate=false -f -` works, as
//!   do `apply`, `create -f`, `replace`, `patch`, `label`, `scale`, `delete`, `get`, `wait`.
//!
//! To poke at one by hand: `cargo run -p sluice-testkit --example fake_apiserver -- /tmp/kubeconfig`,
//! then `kubectl --kubeconfig /tmp/kubeconfig --cache-dir /tmp/kcache apply --validate=false -f …`;
//! it prints every request it serves.

mod discovery;
mod error;
mod handler;
mod patch;
mod scale;
mod selector;
mod store;
mod watch;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch as signal;
use tokio::task::{JoinHandle, JoinSet};

use store::{Part, Preconditions, Store};

/// One kind of object the server serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// API group, `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
    /// Whether the type has a `/status` subresource.
    pub status: bool,
    /// Whether (and from which fields) the type has a `/scale` subresource.
    pub scale: Option<ScalePaths>,
}

/// Where a type keeps what its `autoscaling/v1` Scale shows, as dotted paths (`.spec.replicas`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScalePaths {
    pub spec_replicas: &'static str,
    pub status_replicas: &'static str,
    /// A string selector, or a LabelSelector that the Scale renders as `k=v,k2=v2`.
    pub label_selector: Option<&'static str>,
}

/// Created at start when the server has core v1 namespaces, as in a fresh cluster.
const SYSTEM_NAMESPACES: [&str; 4] = ["default", "kube-node-lease", "kube-public", "kube-system"];

/// Groups served by the real API server itself (not by CRDs).
const BUILTIN_GROUPS: [&str; 5] = ["", "apps", "batch", "autoscaling", "policy"];

/// Built-in types that have no `metadata.generation` in a real cluster.
const WITHOUT_GENERATION: [(&str, &str); 7] = [
    ("", "namespaces"),
    ("", "services"),
    ("", "configmaps"),
    ("", "secrets"),
    ("", "pods"),
    ("discovery.k8s.io", "endpointslices"),
    ("coordination.k8s.io", "leases"),
];

impl ResourceType {
    const fn new(
        group: &'static str,
        version: &'static str,
        kind: &'static str,
        plural: &'static str,
    ) -> Self {
        ResourceType {
            group,
            version,
            kind,
            plural,
            namespaced: true,
            status: false,
            scale: None,
        }
    }

    const fn with_status(mut self) -> Self {
        self.status = true;
        self
    }

    /// What sluice reads and writes: core namespaces (cluster-scoped), services, secrets,
    /// configmaps and pods; EndpointSlices; Deployments (status and scale); Leases; Knative's
    /// KIngress; sluice's Routes and Revisions (both with status).
    pub fn defaults() -> Vec<ResourceType> {
        let mut namespaces = ResourceType::new("", "v1", "Namespace", "namespaces");
        namespaces.namespaced = false;
        let mut deployments =
            ResourceType::new("apps", "v1", "Deployment", "deployments").with_status();
        deployments.scale = Some(ScalePaths {
            spec_replicas: ".spec.replicas",
            status_replicas: ".status.replicas",
            label_selector: Some(".spec.selector"),
        });
        vec![
            namespaces,
            ResourceType::new("", "v1", "Service", "services"),
            ResourceType::new("", "v1", "Secret", "secrets"),
            ResourceType::new("", "v1", "ConfigMap", "configmaps"),
            ResourceType::new("", "v1", "Pod", "pods"),
            ResourceType::new("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
            deployments,
            ResourceType::new("coordination.k8s.io", "v1", "Lease", "leases"),
            ResourceType::new(
                "networking.internal.knative.dev",
                "v1alpha1",
                "Ingress",
                "ingresses",
            )
            .with_status(),
            ResourceType::new("sluice.dev", "v1alpha1", "Route", "routes").with_status(),
            ResourceType::new("sluice.dev", "v1alpha1", "Revision", "revisions").with_status(),
        ]
    }

    /// [`ResourceType::defaults`] and what sluice's Helm chart installs besides: service
    /// accounts, RBAC, PodDisruptionBudgets, HorizontalPodAutoscalers and CRDs.
    pub fn with_chart_kinds() -> Vec<ResourceType> {
        let cluster_scoped = |mut t: ResourceType| {
            t.namespaced = false;
            t
        };
        let rbac = "rbac.authorization.k8s.io";
        let mut types = ResourceType::defaults();
        types.extend([
            ResourceType::new("", "v1", "ServiceAccount", "serviceaccounts"),
            cluster_scoped(ResourceType::new(rbac, "v1", "ClusterRole", "clusterroles")),
            cluster_scoped(ResourceType::new(
                rbac,
                "v1",
                "ClusterRoleBinding",
                "clusterrolebindings",
            )),
            ResourceType::new(rbac, "v1", "Role", "roles"),
            ResourceType::new(rbac, "v1", "RoleBinding", "rolebindings"),
            ResourceType::new(
                "policy",
                "v1",
                "PodDisruptionBudget",
                "poddisruptionbudgets",
            ),
            ResourceType::new(
                "autoscaling",
                "v2",
                "HorizontalPodAutoscaler",
                "horizontalpodautoscalers",
            ),
            cluster_scoped(ResourceType::new(
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
                "customresourcedefinitions",
            )),
        ]);
        types
    }

    /// `v1` or `group/version`.
    pub fn group_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group` (just `plural` for core), as error messages name resources.
    pub(crate) fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Whether the real server serves the type itself; strategic merge patch exists only there.
    pub(crate) fn is_builtin(&self) -> bool {
        BUILTIN_GROUPS.contains(&self.group)
            || (self.group.ends_with(".k8s.io") && !self.group.contains("x-k8s"))
    }

    pub(crate) fn tracks_generation(&self) -> bool {
        !WITHOUT_GENERATION.contains(&(self.group, self.plural))
    }
}

/// One request the server received, with the status it answered.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub at: Instant,
    pub method: String,
    pub path: String,
    /// The raw query string without `?`, `""` if none.
    pub query: String,
    pub content_type: Option<String>,
    /// The body as text (lossy UTF-8).
    pub body: String,
    /// The response code (0 while a response is being produced).
    pub status: u16,
    pub user_agent: Option<String>,
}

#[derive(Clone, Debug)]
struct ForbidRule {
    verb: String,
    plural: String,
    subresource: Option<String>,
}

/// State shared by the handle, every connection and every watch.
#[derive(Debug)]
struct Shared {
    store: Mutex<Store>,
    requests: Mutex<Vec<RecordedRequest>>,
    forbidden: Mutex<Vec<ForbidRule>>,
    /// Bumped by `disconnect_watches`: every open watch ends.
    disconnect: signal::Sender<u64>,
}

/// Locks a mutex; a panicking test thread must not poison the server for the next assertion.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The accept loop; stopping it closes the listener and every connection.
#[derive(Debug)]
struct Listening {
    accept: JoinHandle<()>,
    stop: signal::Sender<()>,
}

/// An in-memory Kubernetes API server on `127.0.0.1`. See the module docs for what it does.
///
/// Dropping it stops the server. Methods take `&self` (the state is behind mutexes), so tests
/// can share it in an `Arc`; only [`stop`](Self::stop) and [`restart`](Self::restart) need `&mut`.
#[derive(Debug)]
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    listening: Option<Listening>,
}

impl FakeApiServer {
    /// Starts a server with [`ResourceType::defaults`].
    pub async fn start() -> anyhow::Result<FakeApiServer> {
        FakeApiServer::start_with(ResourceType::defaults()).await
    }

    pub async fn start_with(types: Vec<ResourceType>) -> anyhow::Result<FakeApiServer> {
        for (i, t) in types.iter().enumerate() {
            let duplicate = types[..i].iter().any(|o| {
                o.group_version() == t.group_version() && (o.plural == t.plural || o.kind == t.kind)
            });
            if duplicate {
                return Err(anyhow!(
                    "resource type {} is listed twice",
                    t.group_resource()
                ));
            }
        }
        let (changed, _) = signal::channel(0);
        let (disconnect, _) = signal::channel(0);
        let mut store = Store::new(types.into(), changed);
        if let Some(namespaces) = store.type_index("v1", "namespaces") {
            // The namespaces every real cluster has: clients may read `default` before writing.
            for name in SYSTEM_NAMESPACES {
                let namespace = json!({
                    "metadata": {"name": name},
                    "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Active"},
                });
                store
                    .create(namespaces, "", namespace, true, false)
                    .with_context(|| format!("seed namespace {name}"))?;
            }
        }
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            requests: Mutex::new(Vec::new()),
            forbidden: Mutex::new(Vec::new()),
            disconnect,
        });
        let (addr, listening) =
            listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), shared.clone()).await?;
        Ok(FakeApiServer {
            shared,
            addr,
            listening: Some(listening),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on (kept across [`restart`](Self::restart)).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Writes a kubeconfig with cluster, user and context `fake` (namespace `default`, no
    /// credentials) pointing at this server.
    pub fn write_kubeconfig(&self, path: &Path) -> anyhow::Result<()> {
        let config = format!(
            "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: {}
users:
- name: fake
  user: {{}}
contexts:
- name: fake
  context:
    cluster: fake
    user: fake
    namespace: default
current-context: fake
",
            self.url()
        );
        std::fs::write(path, config).with_context(|| format!("write kubeconfig {}", path.display()))
    }

    /// The stored object, as a GET would return it.
    pub fn get(
        &self,
        group_version: &str,
        plural: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let store = lock(&self.shared.store);
        let ty = store.type_index(group_version, plural)?;
        store.get(ty, namespace, name).map(|o| (*o).clone())
    }

    /// Objects of one type, in one namespace or (`None`) in all, sorted by namespace and name.
    pub fn list(&self, group_version: &str, plural: &str, namespace: Option<&str>) -> Vec<Value> {
        let store = lock(&self.shared.store);
        let Some(ty) = store.type_index(group_version, plural) else {
            return Vec::new();
        };
        store.list(ty, namespace).map(|o| (**o).clone()).collect()
    }

    fn locate(&self, store: &Store, object: &Value) -> anyhow::Result<(usize, String, String)> {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
        let ty = store
            .type_of_object(api_version, kind)
            .ok_or_else(|| anyhow!("no resource type {api_version} {kind} on this server"))?;
        let namespace = if store.ty(ty).namespaced {
            store::meta_str(object, "namespace")
                .filter(|ns| !ns.is_empty())
                .unwrap_or("default")
        } else {
            ""
        };
        let name = store::meta_str(object, "name").unwrap_or("");
        Ok((ty, namespace.to_owned(), name.to_owned()))
    }

    /// Creates the object, or replaces the main resource of an existing one (its `status` is
    /// kept, its `resourceVersion` is not checked). The namespace defaults to `default`.
    ///
    /// Unlike an HTTP create, a created object keeps the `status` it is given, so tests can seed
    /// one; use [`apply_status`](Self::apply_status) to change the status of an existing object.
    /// Goes through the same store logic as HTTP writes: versions, generation, watch events.
    pub fn apply(&self, object: Value) -> anyhow::Result<Value> {
        let mut store = lock(&self.shared.store);
        let (ty, namespace, name) = self.locate(&store, &object)?;
        let written = if store.get(ty, &namespace, &name).is_some() {
            let mut object = object;
            if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("resourceVersion");
            }
            store.update(ty, &namespace, &name, object, Part::Main, false)?
        } else {
            store.create(ty, &namespace, object, true, false)?
        };
        Ok((*written).clone())
    }

    /// Replaces the `status` of an existing object, like a PUT to `/status` without a
    /// `resourceVersion`.
    pub fn apply_status(&self, object: Value) -> anyhow::Result<Value> {
        let mut store = lock(&self.shared.store);
        let (ty, namespace, name) = self.locate(&store, &object)?;
        let mut object = object;
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        let written = store.update(ty, &namespace, &name, object, Part::Status, false)?;
        Ok((*written).clone())
    }

    /// Deletes like an HTTP DELETE (an object with finalizers is only marked); whether it existed.
    pub fn delete(&self, group_version: &str, plural: &str, namespace: &str, name: &str) -> bool {
        let mut store = lock(&self.shared.store);
        let Some(ty) = store.type_index(group_version, plural) else {
            return false;
        };
        store
            .delete(ty, namespace, name, &Preconditions::default(), false)
            .is_ok()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Later requests with this verb (`get list watch create update patch delete
    /// deletecollection`; server-side apply is `patch`) on this
    /// resource (and subresource) get 403 Forbidden.
    pub fn forbid(&self, verb: &str, plural: &str, subresource: Option<&str>) {
        lock(&self.shared.forbidden).push(ForbidRule {
            verb: verb.to_owned(),
            plural: plural.to_owned(),
            subresource: subresource.map(str::to_owned),
        });
    }

    /// Lifts every [`forbid`](Self::forbid).
    pub fn allow_all(&self) {
        lock(&self.shared.forbidden).clear();
    }

    /// Ends every open watch response now; clients see their streams end cleanly.
    pub fn disconnect_watches(&self) {
        self.shared.disconnect.send_modify(|epoch| *epoch += 1);
    }

    /// Forgets the event log, as etcd compaction does: a watch from any version handed out so
    /// far gets the in-stream 410 Expired and its client must relist. The version counter moves
    /// on by one for that (no object changes), so this holds even for a client that is up to
    /// date. Open watches carry on.
    pub fn compact(&self) {
        lock(&self.shared.store).compact();
    }

    /// Closes the listener and every connection (open watches end with them); state is kept.
    pub async fn stop(&mut self) {
        if let Some(listening) = self.listening.take() {
            drop(listening.stop);
            // The accept task ends after it has closed every connection; awaiting it also
            // guarantees the port is free again for `restart`.
            let _ = listening.accept.await;
        }
    }

    /// Stops, then listens again on the same port with the same state, like an API server
    /// restart.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        let (addr, listening) = listen(self.addr, self.shared.clone()).await?;
        self.addr = addr;
        self.listening = Some(listening);
        Ok(())
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(listening) = self.listening.take() {
            // Aborting the accept task drops its connection set, which aborts every connection.
            listening.accept.abort();
        }
    }
}

async fn listen(addr: SocketAddr, shared: Arc<Shared>) -> anyhow::Result<(SocketAddr, Listening)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind {addr}"))?;
    let addr = listener.local_addr().context("local address of listener")?;
    let (stop, mut stopped) = signal::channel(());
    let accept = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => {
                        // Best effort: a socket that refuses NODELAY still works, only slower.
                        let _ = stream.set_nodelay(true);
                        connections.spawn(serve_connection(stream, shared.clone()));
                    }
                    // Out of file descriptors and the like: back off instead of spinning.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                // Nothing is ever sent: this resolves when the sender is dropped.
                _ = stopped.changed() => break,
            }
        }
        drop(listener);
        connections.shutdown().await;
    });
    Ok((addr, Listening { accept, stop }))
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let service = service_fn(move |request| handler::handle(shared.clone(), request));
    // A connection error only ends this connection; the client sees it and retries.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}
