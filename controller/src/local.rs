//! [`LocalProcesses`]: runs `spec.process` Revisions as processes on this machine, as many as
//! the autoscaler asks for.
//!
//! - **Start.** Each instance gets `PORT` (a free loopback port) and `K_REVISION`, under
//!   `setpriv --pdeathsig KILL` when available so the kernel kills it if sluice dies.
//! - **Ready** once its port accepts connections *and* the listening socket belongs to the
//!   instance (or a process it started), asked of the kernel (`sock_diag`, `/proc/PID/fd`): a
//!   free port is found by binding and releasing it, so another process could take it in
//!   between; such an instance is stopped and started again on another port, and an instance
//!   that exits before it is ready (its port taken) is started again too, a bounded number of
//!   times. Ready instances are published as EndpointSlices (label `sluice.dev/revision`),
//!   through the same translate-and-publish path as every other config.
//! - **Drain.** Scale-down takes the instance out of the endpoints, waits until every proxy
//!   has applied that (no new requests reach it), then sends SIGTERM, as Kubernetes does: the
//!   instance finishes what it has in flight and exits; after the Revision's `timeoutSeconds`
//!   (Knative's `terminationGracePeriodSeconds`) it gets SIGKILL.
//! - **Shutdown** ([`LocalProcesses::shutdown`]) stops every instance (SIGTERM, then SIGKILL
//!   after [`STOP_GRACE`]) and waits for them. No global state: whoever owns the supervisor stops
//!   it.

use crate::revision::{ScalingBackend, ScalingTarget};
use crate::scaler::{ScaleError, Scaler};
use async_trait::async_trait;
use rustix::process::{Pid, Signal};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::process::Child;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

/// How long an instance may take to accept connections before it is given up on.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// SIGTERM → SIGKILL on shutdown.
pub const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long a drain waits for the proxies to stop sending to an instance.
const UNPUBLISH_BOUND: Duration = Duration::from_secs(10);
/// How often a starting instance is probed: fast at first (a cold start's latency is this
/// interval's half on average), slower once it is clearly taking its time.
const FAST_PROBE_INTERVAL: Duration = Duration::from_millis(2);
const FAST_PROBE_PERIOD: Duration = Duration::from_secs(2);
const PROBE_INTERVAL: Duration = Duration::from_millis(20);
/// Starts of one instance on a port someone else took, before giving up.
const PORT_ATTEMPTS: u32 = 3;

/// Where ready instances are announced.
pub trait EndpointPublisher: Send + Sync + 'static {
    /// Publishes the ports of a Revision's ready instances; returns the config sequence that
    /// carries them.
    fn publish(&self, target: &ScalingTarget, ports: &[u16]) -> u64;
    /// Resolves once every proxy has applied `seq` (false after `bound`).
    fn applied(&self, seq: u64, bound: Duration)
        -> Pin<Box<dyn Future<Output = bool> + Send + '_>>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Starting,
    Ready,
    Draining,
}

#[derive(Debug)]
struct Instance {
    id: u64,
    port: u16,
    pid: Option<u32>,
    phase: Phase,
}

pub struct LocalProcesses {
    publisher: Arc<dyn EndpointPublisher>,
    /// By Revision id (`ns/name`).
    instances: Mutex<HashMap<String, Vec<Instance>>>,
    next_id: AtomicU64,
    tasks: Mutex<JoinSet<()>>,
    /// Set by [`LocalProcesses::shutdown`]: nothing starts any more.
    stopped: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LocalProcesses {
    pub fn new(publisher: Arc<dyn EndpointPublisher>) -> Arc<Self> {
        Arc::new(LocalProcesses {
            publisher,
            instances: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            tasks: Mutex::new(JoinSet::new()),
            stopped: AtomicBool::new(false),
        })
    }

    /// Instances that are ready (accepting connections and published).
    pub fn ready_count(&self, revision: &str) -> u32 {
        self.count(revision, |p| p == Phase::Ready)
    }

    /// Starting plus ready instances: what a scale request is compared against.
    pub fn running_count(&self, revision: &str) -> u32 {
        self.count(revision, |p| p != Phase::Draining)
    }

    fn count(&self, revision: &str, phase: impl Fn(Phase) -> bool) -> u32 {
        lock(&self.instances).get(revision).map_or(0, |list| {
            u32::try_from(list.iter().filter(|i| phase(i.phase)).count()).unwrap_or(u32::MAX)
        })
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = lock(&self.tasks);
        // Reap finished tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    /// Starts or drains instances so that `replicas` are starting or ready.
    fn scale_process(
        self: &Arc<Self>,
        target: &ScalingTarget,
        command: &[String],
        env: &BTreeMap<String, String>,
        replicas: u32,
    ) -> Result<(), ScaleError> {
        let running = self.running_count(&target.id);
        if replicas > running {
            for _ in running..replicas {
                self.start(target, command, env, 1)?;
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
                    draining.push((list[i].id, list[i].pid));
                }
            }
            let seq = self.publish(target);
            for (id, pid) in draining {
                let this = self.clone();
                let target = target.clone();
                self.spawn(async move { this.drain(&target, id, pid, seq).await });
            }
        }
        Ok(())
    }

    fn start(
        self: &Arc<Self>,
        target: &ScalingTarget,
        command: &[String],
        env: &BTreeMap<String, String>,
        attempt: u32,
    ) -> Result<(), ScaleError> {
        let error = |reason: String| ScaleError::Start {
            revision: target.id.clone(),
            reason,
        };
        if self.stopped.load(Ordering::SeqCst) {
            return Err(error("the control plane is shutting down".to_string()));
        }
        let (program, args) = command
            .split_first()
            .ok_or_else(|| error("empty command".to_string()))?;
        let port = free_port().map_err(|e| error(format!("no free port: {e}")))?;
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
            .map_err(|e| error(format!("spawning {program}: {e}")))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let pid = child.id();
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
        let (target, command, env) = (target.clone(), command.to_vec(), env.clone());
        self.spawn(async move {
            this.supervise(&target, id, port, child, &command, &env, attempt)
                .await
        });
        Ok(())
    }

    /// Waits for the instance to be ready, publishes it, then waits for its exit.
    #[allow(clippy::too_many_arguments)]
    async fn supervise(
        self: Arc<Self>,
        target: &ScalingTarget,
        id: u64,
        port: u16,
        mut child: Child,
        command: &[String],
        env: &BTreeMap<String, String>,
        attempt: u32,
    ) {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let started = tokio::time::Instant::now();
        let deadline = started + START_TIMEOUT;
        let pid = child.id();
        let mut outcome = Readiness::TimedOut;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                warn!(revision = %target.id, port, %status, "instance exited before it was ready");
                outcome = Readiness::Exited;
                break;
            }
            if self.phase(&target.id, id) != Some(Phase::Starting) {
                outcome = Readiness::Abandoned;
                break;
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                outcome = match pid {
                    Some(pid) if !listens_on(pid, port) => Readiness::PortTaken,
                    _ => Readiness::Ready,
                };
                break;
            }
            let interval = if started.elapsed() < FAST_PROBE_PERIOD {
                FAST_PROBE_INTERVAL
            } else {
                PROBE_INTERVAL
            };
            tokio::time::sleep(interval).await;
        }
        match outcome {
            Readiness::Ready if self.set_phase(&target.id, id, Phase::Starting, Phase::Ready) => {
                info!(revision = %target.id, port, "instance ready");
                self.publish(target);
            }
            Readiness::Ready | Readiness::Abandoned => {}
            Readiness::PortTaken | Readiness::Exited | Readiness::TimedOut => {
                // Only an instance still wanted is started again: one drained (scaled down,
                // shut down) while starting stays stopped.
                let wanted = self.set_phase(&target.id, id, Phase::Starting, Phase::Draining);
                let _ = child.start_kill();
                let retry = wanted
                    && matches!(outcome, Readiness::PortTaken | Readiness::Exited)
                    && attempt < PORT_ATTEMPTS;
                if outcome == Readiness::PortTaken {
                    warn!(revision = %target.id, port, "another process holds the instance's port; starting it on another");
                }
                if retry {
                    let _ = child.wait().await;
                    self.forget(&target.id, id);
                    if let Err(error) = self.start(target, command, env, attempt + 1) {
                        warn!(%error, "cannot restart instance");
                    }
                    return;
                }
            }
        }
        let status = child.wait().await;
        let was_ready = self.phase(&target.id, id) == Some(Phase::Ready);
        self.forget(&target.id, id);
        if was_ready {
            warn!(revision = %target.id, port, ?status, "instance exited");
            self.publish(target);
        } else {
            debug!(revision = %target.id, port, ?status, "instance stopped");
        }
    }

    /// Once no proxy sends to the instance any more, SIGTERM; SIGKILL after the Revision's
    /// timeout if it is still running.
    async fn drain(&self, target: &ScalingTarget, id: u64, pid: Option<u32>, seq: u64) {
        if !self.publisher.applied(seq, UNPUBLISH_BOUND).await {
            warn!(revision = %target.id, "proxies did not confirm the instance's removal in time; stopping it anyway");
        }
        let Some(pid) = pid else {
            return;
        };
        signal(pid, Signal::TERM);
        let stop_by = tokio::time::Instant::now() + Duration::from_secs(target.timeout_seconds);
        while self.phase(&target.id, id).is_some() && tokio::time::Instant::now() < stop_by {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if self.phase(&target.id, id).is_some() {
            signal(pid, Signal::KILL);
        }
        debug!(revision = %target.id, pid, "instance drained");
    }

    /// Stops every instance (SIGTERM, then SIGKILL after [`STOP_GRACE`]) and waits for them.
    pub async fn shutdown(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let pids: Vec<u32> = lock(&self.instances)
            .values_mut()
            .flat_map(|list| {
                list.iter_mut().filter_map(|i| {
                    i.phase = Phase::Draining;
                    i.pid
                })
            })
            .collect();
        for &pid in &pids {
            signal(pid, Signal::TERM);
        }
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        while lock(&self.instances).values().any(|l| !l.is_empty())
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for pid in pids {
            signal(pid, Signal::KILL);
        }
        let mut tasks = std::mem::take(&mut *lock(&self.tasks));
        // Killed children are reaped by their supervisors; give them a moment, then drop the
        // rest (dropping a child kills it).
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tasks.abort_all();
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
        let mut all = lock(&self.instances);
        if let Some(list) = all.get_mut(revision) {
            list.retain(|i| i.id != id);
            if list.is_empty() {
                all.remove(revision);
            }
        }
    }

    /// Publishes the Revision's ready instances; returns the sequence that carries them.
    fn publish(&self, target: &ScalingTarget) -> u64 {
        let ports: Vec<u16> = lock(&self.instances)
            .get(&target.id)
            .map(|list| {
                list.iter()
                    .filter(|i| i.phase == Phase::Ready)
                    .map(|i| i.port)
                    .collect()
            })
            .unwrap_or_default();
        self.publisher.publish(target, &ports)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Readiness {
    Ready,
    /// Something else listens on the port.
    PortTaken,
    Exited,
    TimedOut,
    /// Drained before it was ready.
    Abandoned,
}

#[async_trait]
impl Scaler for Arc<LocalProcesses> {
    async fn scale(&self, target: &ScalingTarget, replicas: u32) -> Result<(), ScaleError> {
        match &target.backend {
            ScalingBackend::Process { command, env } => {
                self.scale_process(target, command, env, replicas)
            }
            _ => Err(ScaleError::Unsupported {
                revision: target.id.clone(),
                reason: "the local process scaler runs spec.process revisions only".to_string(),
            }),
        }
    }

    fn ready(&self, target: &ScalingTarget) -> u32 {
        self.ready_count(&target.id)
    }

    fn running(&self, target: &ScalingTarget) -> u32 {
        self.running_count(&target.id)
    }
}

/// A free loopback port (bound, then released: [`listens_on`] catches a process that takes it
/// in between).
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
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

fn signal(pid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        // The process may be gone already; nothing to do then.
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// Whether a listening TCP socket on `port` belongs to `pid` or one of its descendants
/// (Linux: the kernel's socket table, `/proc/PID/fd`). Where they cannot tell, it says yes: the
/// connect probe stands alone.
pub fn listens_on(pid: u32, port: u16) -> bool {
    let Some(sockets) = sluice_xds::listeners::listening_sockets(port) else {
        return true;
    };
    let mut pending = vec![pid];
    let mut seen = 0;
    while let Some(pid) = pending.pop() {
        seen += 1;
        if seen > 256 {
            break;
        }
        if sluice_xds::listeners::held_by(pid, &sockets) {
            return true;
        }
        pending.extend(children(pid));
    }
    false
}

fn children(pid: u32) -> Vec<u32> {
    let mut all = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                all.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
    }
    all
}

#[cfg(test)]
mod tests;
