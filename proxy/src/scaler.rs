//! Scalers: what turns the autoscaler's replica count into running instances.
//!
//! [`LocalProcesses`] runs a Revision's `spec.process` command on this machine: each instance
//! gets `PORT` set to a free loopback port, counts as ready only once it accepts TCP
//! connections, and is published to the store as an EndpointSlice (label
//! `sluice.dev/revision`), so it reaches the router through the same translate-and-swap path
//! as every other config. Scale-down drains first: the instance leaves the endpoints, its
//! in-flight requests finish (bounded by the revision timeout), then it gets SIGTERM and,
//! 10 s later, SIGKILL.
//!
//! No orphans: instances are started under `setpriv --pdeathsig KILL` (util-linux) when it is
//! available, so the kernel kills them if sluice dies; and [`LocalProcesses::stop_all`] runs
//! on every orderly exit.

use crate::source::Pipeline;
use sluice_controller::object::{Kind, Object, ObjectKey};
use sluice_controller::{ScalingBackend, ScalingTarget};
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::process::Child;
use tracing::{debug, info, warn};

/// How long an instance may take to accept connections before it is given up on.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// SIGTERM → SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How often a starting instance is probed: fast at first (a cold start's latency is this
/// interval's half on average), slower once it is clearly taking its time.
const FAST_PROBE_INTERVAL: Duration = Duration::from_millis(2);
const FAST_PROBE_PERIOD: Duration = Duration::from_secs(2);
const PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// Turns a replica count into running instances of a Revision.
pub trait Scaler: Send + Sync {
    /// Starts or stops instances so that `replicas` are starting or ready.
    fn scale(&self, target: &ScalingTarget, replicas: u32);
    /// Instances that are ready to serve.
    fn ready(&self, target: &ScalingTarget) -> u32;
    /// Instances starting or ready (what a scale request is compared against).
    fn running(&self, target: &ScalingTarget) -> u32;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Starting,
    Ready,
    Draining,
}

struct Instance {
    id: u64,
    port: u16,
    pid: Option<u32>,
    phase: Phase,
}

/// Every local instance, by revision id (`ns/name`).
pub struct LocalProcesses {
    pipeline: Arc<Pipeline>,
    instances: Mutex<HashMap<String, Vec<Instance>>>,
    next_id: AtomicU64,
}

/// Process ids of every running instance, for the exit path (which cannot await).
fn live_pids() -> &'static Mutex<BTreeMap<u64, u32>> {
    static PIDS: OnceLock<Mutex<BTreeMap<u64, u32>>> = OnceLock::new();
    PIDS.get_or_init(Default::default)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LocalProcesses {
    pub fn new(pipeline: Arc<Pipeline>) -> Arc<Self> {
        Arc::new(LocalProcesses {
            pipeline,
            instances: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        })
    }

    /// Instances that are ready (accepting connections and published).
    pub fn ready_count(&self, revision: &str) -> u32 {
        lock(&self.instances).get(revision).map_or(0, |list| {
            list.iter().filter(|i| i.phase == Phase::Ready).count() as u32
        })
    }

    /// Starting plus ready instances: what a scale request is compared against.
    pub fn running_count(&self, revision: &str) -> u32 {
        lock(&self.instances).get(revision).map_or(0, |list| {
            list.iter().filter(|i| i.phase != Phase::Draining).count() as u32
        })
    }

    /// Starts or drains instances so that `replicas` are starting or ready.
    fn scale_process(
        self: &Arc<Self>,
        target: &ScalingTarget,
        command: &[String],
        env: &BTreeMap<String, String>,
        replicas: u32,
    ) {
        let running = self.running_count(&target.id);
        if replicas > running {
            for _ in running..replicas {
                if let Err(error) = self.start(target, command, env) {
                    warn!(revision = %target.id, %error, "cannot start instance");
                    break;
                }
            }
        } else if replicas < running {
            let mut draining = Vec::new();
            {
                let mut all = lock(&self.instances);
                let list = all.entry(target.id.clone()).or_default();
                // Newest first, and starting ones before ready ones.
                let mut candidates: Vec<usize> = (0..list.len())
                    .filter(|&i| list[i].phase != Phase::Draining)
                    .collect();
                candidates.sort_by_key(|&i| {
                    (list[i].phase == Phase::Ready, std::cmp::Reverse(list[i].id))
                });
                for &i in candidates.iter().take((running - replicas) as usize) {
                    list[i].phase = Phase::Draining;
                    draining.push((list[i].id, list[i].port, list[i].pid));
                }
            }
            self.publish(target);
            for (id, port, pid) in draining {
                let this = self.clone();
                let target = target.clone();
                tokio::spawn(async move { this.drain(&target, id, port, pid).await });
            }
        }
    }

    fn start(
        self: &Arc<Self>,
        target: &ScalingTarget,
        command: &[String],
        env: &BTreeMap<String, String>,
    ) -> anyhow::Result<()> {
        let (program, args) = command
            .split_first()
            .ok_or_else(|| anyhow::anyhow!("revision {}: empty command", target.id))?;
        let port = free_port()?;
        let mut cmd = if setpriv_available() {
            let mut c = tokio::process::Command::new("setpriv");
            c.args(["--pdeathsig", "KILL", "--"])
                .arg(program)
                .args(args);
            c
        } else {
            let mut c = tokio::process::Command::new(program);
            c.args(args);
            c
        };
        cmd.envs(env)
            .env("PORT", port.to_string())
            .env("K_REVISION", &target.name)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| anyhow::anyhow!("revision {}: spawning {program}: {e}", target.id))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let pid = child.id();
        if let Some(pid) = pid {
            lock(live_pids()).insert(id, pid);
        }
        lock(&self.instances)
            .entry(target.id.clone())
            .or_default()
            .push(Instance {
                id,
                port,
                pid,
                phase: Phase::Starting,
            });
        debug!(revision = %target.id, port, "instance starting");
        let this = self.clone();
        let target = target.clone();
        tokio::spawn(async move { this.supervise(target, id, port, child).await });
        Ok(())
    }

    /// Waits for the instance to accept connections, publishes it, then waits for its exit.
    async fn supervise(
        self: Arc<Self>,
        target: ScalingTarget,
        id: u64,
        port: u16,
        mut child: Child,
    ) {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let started = tokio::time::Instant::now();
        let deadline = started + START_TIMEOUT;
        let mut ready = false;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                warn!(revision = %target.id, port, %status, "instance exited before it was ready");
                break;
            }
            if self.phase(&target.id, id) != Some(Phase::Starting) {
                break;
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                ready = true;
                break;
            }
            let interval = if started.elapsed() < FAST_PROBE_PERIOD {
                FAST_PROBE_INTERVAL
            } else {
                PROBE_INTERVAL
            };
            tokio::time::sleep(interval).await;
        }
        if ready && self.set_phase(&target.id, id, Phase::Starting, Phase::Ready) {
            info!(revision = %target.id, port, "instance ready");
            self.publish(&target);
        } else if !ready {
            self.set_phase(&target.id, id, Phase::Starting, Phase::Draining);
            let _ = child.start_kill();
        }
        let status = child.wait().await;
        lock(live_pids()).remove(&id);
        let was_ready = self.phase(&target.id, id) == Some(Phase::Ready);
        self.forget(&target.id, id);
        if was_ready {
            warn!(revision = %target.id, port, ?status, "instance exited");
            self.publish(&target);
        } else {
            debug!(revision = %target.id, port, ?status, "instance stopped");
        }
    }

    /// Lets in-flight requests finish (bounded by the revision timeout), then stops it.
    async fn drain(&self, target: &ScalingTarget, id: u64, port: u16, pid: Option<u32>) {
        let addr = sluice_addr(port);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(target.timeout_seconds);
        loop {
            let busy = {
                let router = self.pipeline.gateway().router();
                router
                    .backend(&target.id)
                    .and_then(|b| {
                        b.endpoint(&addr)
                            .map(|e| e.in_flight.load(Ordering::SeqCst))
                    })
                    .unwrap_or(0)
            };
            if busy == 0 || tokio::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(pid) = pid {
            signal(pid, "TERM");
            let stop_by = tokio::time::Instant::now() + STOP_GRACE;
            while self.phase(&target.id, id).is_some() && tokio::time::Instant::now() < stop_by {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if self.phase(&target.id, id).is_some() {
                signal(pid, "KILL");
            }
        }
        debug!(revision = %target.id, port, "instance drained");
    }

    fn phase(&self, revision: &str, id: u64) -> Option<Phase> {
        lock(&self.instances)
            .get(revision)
            .and_then(|list| list.iter().find(|i| i.id == id).map(|i| i.phase))
    }

    fn set_phase(&self, revision: &str, id: u64, from: Phase, to: Phase) -> bool {
        let mut all = lock(&self.instances);
        match all
            .get_mut(revision)
            .and_then(|l| l.iter_mut().find(|i| i.id == id))
        {
            Some(instance) if instance.phase == from => {
                instance.phase = to;
                true
            }
            _ => false,
        }
    }

    fn forget(&self, revision: &str, id: u64) {
        if let Some(list) = lock(&self.instances).get_mut(revision) {
            list.retain(|i| i.id != id);
        }
    }

    /// Writes the revision's ready instances to the store as EndpointSlices and applies.
    fn publish(&self, target: &ScalingTarget) {
        let ports: Vec<u16> = lock(&self.instances)
            .get(&target.id)
            .map(|list| {
                list.iter()
                    .filter(|i| i.phase == Phase::Ready)
                    .map(|i| i.port)
                    .collect()
            })
            .unwrap_or_default();
        {
            let mut controller = self.pipeline.controller();
            let prefix = format!("{}-local-", target.name);
            let stale: Vec<ObjectKey> = controller
                .store()
                .keys()
                .filter(|key| key.kind == Kind::EndpointSlice && key.namespace == target.namespace)
                .filter(|key| key.name.starts_with(&prefix))
                .filter(|key| !ports.iter().any(|p| key.name == format!("{prefix}{p}")))
                .cloned()
                .collect();
            for key in stale {
                controller.delete(&key);
            }
            for port in &ports {
                match endpoint_slice(target, *port) {
                    Ok(object) => {
                        controller.upsert(object);
                    }
                    Err(error) => warn!(revision = %target.id, %error, "cannot publish instance"),
                }
            }
        }
        self.pipeline.apply();
    }

    /// Kills every instance now. For the exit path: synchronous, no runtime needed.
    pub fn stop_all() {
        let pids: Vec<u32> = lock(live_pids()).values().copied().collect();
        for pid in &pids {
            signal(*pid, "TERM");
        }
        if !pids.is_empty() {
            std::thread::sleep(Duration::from_millis(200));
            for pid in pids {
                signal(pid, "KILL");
            }
        }
    }
}

/// A wrapper so the `Arc` can implement the trait (instances need `Arc<Self>` to supervise).
pub struct LocalScaler(pub Arc<LocalProcesses>);

impl Scaler for LocalScaler {
    fn scale(&self, target: &ScalingTarget, replicas: u32) {
        match &target.backend {
            ScalingBackend::Process { command, env } => {
                self.0.scale_process(target, command, env, replicas)
            }
            _ => warn!(revision = %target.id, "local scaler asked to scale a non-process revision"),
        }
    }

    fn ready(&self, target: &ScalingTarget) -> u32 {
        self.0.ready_count(&target.id)
    }

    fn running(&self, target: &ScalingTarget) -> u32 {
        self.0.running_count(&target.id)
    }
}

/// `spec.service` revisions without a cluster: their instances are the Service's endpoints,
/// which something else runs. Scale requests are logged, once per change, and not acted on;
/// the Kubernetes scaler (Deployment scale subresource) replaces this in a cluster.
pub struct ObservedService {
    pub pipeline: Arc<Pipeline>,
    last_request: Mutex<HashMap<String, u32>>,
}

impl ObservedService {
    pub fn new(pipeline: Arc<Pipeline>) -> Self {
        ObservedService {
            pipeline,
            last_request: Mutex::new(HashMap::new()),
        }
    }
}

impl Scaler for ObservedService {
    fn scale(&self, target: &ScalingTarget, replicas: u32) {
        if lock(&self.last_request).insert(target.id.clone(), replicas) != Some(replicas) {
            info!(revision = %target.id, replicas, "service revision: no scaler without a cluster; not scaling");
        }
    }

    fn ready(&self, target: &ScalingTarget) -> u32 {
        self.pipeline
            .gateway()
            .router()
            .backend(&target.id)
            .map_or(0, |b| b.endpoint_count() as u32)
    }

    fn running(&self, target: &ScalingTarget) -> u32 {
        self.ready(target)
    }
}

fn sluice_addr(port: u16) -> crate::upstream::Address {
    crate::upstream::Address::Socket(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

fn endpoint_slice(target: &ScalingTarget, port: u16) -> anyhow::Result<Object> {
    let value = serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{}-local-{port}", target.name),
            "namespace": target.namespace,
            "labels": {"sluice.dev/revision": target.name},
        },
        "addressType": "IPv4",
        "ports": [{"port": port}],
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
    });
    Ok(Object::decode(Kind::EndpointSlice, value)?)
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

fn setpriv_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        std::process::Command::new("setpriv")
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Sends a signal by name with kill(1): no unsafe code, and only on rare paths.
fn signal(pid: u32, name: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}
