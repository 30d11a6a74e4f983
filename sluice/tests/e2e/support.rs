//! Runs the real `sluice` binary on a temporary manifest directory, on free loopback ports;
//! `sluice controller` and a fleet of `sluice proxy` as separate processes are in [`fleet`].

mod cluster;
mod fleet;
mod service;

pub use cluster::*;
pub use fleet::*;
pub use service::*;

use anyhow::{bail, Context};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Upper bound for any wait on the gateway (config applied, status reached).
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Gateway {
    child: Option<Child>,
    pub http: SocketAddr,
    pub internal: SocketAddr,
    /// External HTTPS listener (`--https`).
    pub https: SocketAddr,
    /// Cluster-local HTTPS listener (`--internal-https`).
    pub internal_https: SocketAddr,
    pub admin: SocketAddr,
    /// `--probe-addr`: /ready, /healthz and /metrics only.
    pub probe: SocketAddr,
    pub dir: tempfile::TempDir,
}

pub const CLASS: &str = "sluice.ingress.networking.knative.dev";

impl Gateway {
    /// Starts sluice with `manifests` as `00-initial.yaml` and waits for `/ready`.
    pub async fn start(manifests: &str) -> anyhow::Result<Gateway> {
        Gateway::start_with(manifests, &[]).await
    }

    pub async fn start_with(manifests: &str, extra_args: &[&str]) -> anyhow::Result<Gateway> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("00-initial.yaml"), manifests)?;
        let config = dir.path().to_string_lossy().to_string();
        Gateway::spawn(dir, &["--config", &config], extra_args).await
    }

    /// Starts `sluice run --kubernetes` on `kubeconfig` and waits for `/ready`.
    pub async fn start_kubernetes(
        kubeconfig: &Path,
        extra_args: &[&str],
    ) -> anyhow::Result<Gateway> {
        let kubeconfig = kubeconfig.to_string_lossy().to_string();
        Gateway::spawn(
            tempfile::tempdir()?,
            &["--kubernetes", "--kubeconfig", &kubeconfig],
            extra_args,
        )
        .await
    }

    async fn spawn(
        dir: tempfile::TempDir,
        source_args: &[&str],
        extra_args: &[&str],
    ) -> anyhow::Result<Gateway> {
        let port = || -> anyhow::Result<SocketAddr> {
            Ok(SocketAddr::from((
                [127, 0, 0, 1],
                sluice_testkit::free_port(),
            )))
        };
        let (http, internal, admin) = (port()?, port()?, port()?);
        let (https, internal_https, probe) = (port()?, port()?, port()?);
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("run")
            .args(source_args)
            .args(["--http", &http.to_string()])
            .args(["--internal-http", &internal.to_string()])
            .args(["--admin", &admin.to_string()])
            .args(["--probe-addr", &probe.to_string()])
            .args(["--https", &https.to_string()])
            .args(["--internal-https", &internal_https.to_string()])
            .args(["--threads", "2", "--shutdown-grace", "10s"])
            .args(extra_args)
            .env(
                "SLUICE_LOG",
                std::env::var("SLUICE_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .spawn()
            .context("spawning sluice")?;
        let mut gateway = Gateway {
            child: Some(child),
            http,
            internal,
            https,
            internal_https,
            admin,
            probe,
            dir,
        };
        gateway.wait_ready().await?;
        Ok(gateway)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Writes a manifest file atomically (hidden temp file, then rename), as editors and
    /// Kubernetes volume updates do.
    pub fn write(&self, file: &str, contents: &str) -> anyhow::Result<()> {
        write_manifest(self.dir.path(), file, contents)
    }

    pub fn remove(&self, file: &str) -> anyhow::Result<()> {
        Ok(std::fs::remove_file(self.path(file))?)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("sluice exited during startup: {status}");
                }
            }
            if let Ok(r) = self.admin_get("/ready").await {
                if r.status == 200 {
                    // Listeners start right after readiness; wait until they accept.
                    if tokio::net::TcpStream::connect(self.http).await.is_ok()
                        && tokio::net::TcpStream::connect(self.internal).await.is_ok()
                        && tokio::net::TcpStream::connect(self.https).await.is_ok()
                        && tokio::net::TcpStream::connect(self.internal_https)
                            .await
                            .is_ok()
                    {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("sluice not ready within {WAIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.pid().context("not running")?;
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -{signal} failed");
        Ok(())
    }

    /// Waits for the process to exit, bounded.
    pub async fn wait_exit(&mut self, bound: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + bound;
        let child = self.child.as_mut().context("not running")?;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("sluice did not exit within {bound:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Admin for Gateway {
    fn admin_addr(&self) -> SocketAddr {
        self.admin
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Writes a manifest file atomically (hidden temp file, then rename), as editors and
/// Kubernetes volume updates do.
pub fn write_manifest(dir: &Path, file: &str, contents: &str) -> anyhow::Result<()> {
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, dir.join(file))?;
    Ok(())
}

/// A process with an admin listener (`sluice run`, `sluice controller`, `sluice proxy`): what
/// tests read from it. `/status` exists on the first two, `/config` on the first and the last.
pub trait Admin {
    fn admin_addr(&self) -> SocketAddr;

    async fn admin_get(&self, path: &str) -> anyhow::Result<sluice_testkit::Response> {
        sluice_testkit::http1_request(self.admin_addr(), "GET", "admin", path, &[], None).await
    }

    async fn statuses(&self) -> anyhow::Result<Vec<Value>> {
        let r = self.admin_get("/status").await?;
        Ok(serde_json::from_slice(&r.body)?)
    }

    /// The status entry of `kind ns/name`, if any.
    async fn status_of(&self, kind: &str, ns: &str, name: &str) -> anyhow::Result<Option<Value>> {
        Ok(self
            .statuses()
            .await?
            .into_iter()
            .find(|s| s["kind"] == kind && s["namespace"] == ns && s["name"] == name))
    }

    /// Polls until `check` accepts the object's status, or fails after [`WAIT`].
    async fn wait_status(
        &self,
        kind: &str,
        ns: &str,
        name: &str,
        check: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let status = self.status_of(kind, ns, name).await?;
            if let Some(s) = &status {
                if check(s) {
                    return Ok(s.clone());
                }
            }
            if Instant::now() > deadline {
                bail!("{kind} {ns}/{name}: status not reached within {WAIT:?}; last: {status:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the ingress is Ready at its current generation (Knative's IsReady).
    async fn wait_ingress_ready(&self, ns: &str, name: &str) -> anyhow::Result<Value> {
        self.wait_status("Ingress", ns, name, is_ready).await
    }

    /// The version of the active snapshot (`/config`).
    async fn version(&self) -> anyhow::Result<String> {
        let r = self.admin_get("/config").await?;
        let v: Value = serde_json::from_slice(&r.body)?;
        Ok(v["version"].as_str().unwrap_or_default().to_string())
    }
}

/// Knative's `IsReady`: observedGeneration == generation and Ready=True.
pub fn is_ready(status: &Value) -> bool {
    status["status"]["observedGeneration"] == status["generation"]
        && condition(status, "Ready") == Some("True")
}

pub fn condition<'a>(status: &'a Value, kind: &str) -> Option<&'a str> {
    status["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)?["status"]
        .as_str()
}

pub fn reason<'a>(status: &'a Value, kind: &str) -> Option<&'a str> {
    status["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)?["reason"]
        .as_str()
}

/// The binary under test.
pub const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// `config-autoscaler` with short windows so tests finish in seconds.
pub fn autoscaler_config(extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: config-autoscaler, namespace: knative-serving}}\ndata:\n  allow-zero-initial-scale: \"true\"\n  stable-window: 6s\n  scale-to-zero-grace-period: 1s\n{extra}---\n"
    )
}

/// A Revision running `sluice responder` locally, plus a Route sending `host` to it.
pub fn revision(
    name: &str,
    host: &str,
    cc: u32,
    annotations: &[(&str, &str)],
    responder_args: &[&str],
    extra_spec: &str,
) -> String {
    let mut ann = String::new();
    for (k, v) in annotations {
        ann += &format!("\n    {k}: \"{v}\"");
    }
    let mut command = format!("[\"{SLUICE}\", \"responder\"");
    for a in responder_args {
        command += &format!(", \"{a}\"");
    }
    command += "]";
    format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: Revision\nmetadata:\n  name: {name}\n  namespace: ns\n  annotations:{}{ann}\nspec:\n  containerConcurrency: {cc}\n{extra_spec}  process:\n    command: {command}\n---\napiVersion: sluice.dev/v1alpha1\nkind: Route\nmetadata: {{name: {name}, namespace: ns}}\nspec:\n  hosts: [{host}]\n  traffic: [{{revision: {name}, percent: 100}}]\n---\n",
        if ann.is_empty() { " {}" } else { "" },
    )
}

/// A class-matching KIngress `ns/name` with the given `spec` (YAML, indented by two spaces).
pub fn ingress(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.internal.knative.dev/v1alpha1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: {ns}\n  annotations: {{networking.knative.dev/ingress.class: {CLASS}}}\nspec:\n{spec}\n---\n"
    )
}

/// A single-rule, single-path, single-split KIngress for `host` → `svc:port`.
pub fn simple_ingress(ns: &str, name: &str, host: &str, svc: &str, port: &str) -> String {
    ingress(
        ns,
        name,
        &format!(
            "  rules:\n  - hosts: [{host}]\n    visibility: ExternalIP\n    http:\n      paths:\n      - splits: [{{serviceNamespace: {ns}, serviceName: {svc}, servicePort: {port}}}]"
        ),
    )
}

/// A Service with one port plus an EndpointSlice pointing at `addrs` (all ready).
pub fn service(ns: &str, name: &str, port_name: &str, port: u16, addrs: &[SocketAddr]) -> String {
    let app_protocol = if port_name == "http2" {
        "\n    appProtocol: kubernetes.io/h2c"
    } else {
        ""
    };
    let mut out = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  ports:\n  - name: {port_name}\n    port: {port}{app_protocol}\n    targetPort: 8080\n---\n"
    );
    out.push_str(&endpoint_slice(ns, name, port_name, addrs));
    out
}

/// An EndpointSlice for `svc`, grouping addresses by port (one slice per distinct port).
pub fn endpoint_slice(ns: &str, svc: &str, port_name: &str, addrs: &[SocketAddr]) -> String {
    let mut by_port: std::collections::BTreeMap<u16, Vec<String>> = Default::default();
    for a in addrs {
        by_port
            .entry(a.port())
            .or_default()
            .push(a.ip().to_string());
    }
    let mut out = String::new();
    for (i, (port, ips)) in by_port.iter().enumerate() {
        let ips = ips
            .iter()
            .map(|ip| format!("\"{ip}\""))
            .collect::<Vec<_>>()
            .join(", ");
        out.push_str(&format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {svc}-{i}\n  namespace: {ns}\n  labels: {{kubernetes.io/service-name: {svc}}}\naddressType: IPv4\nports: [{{name: {port_name}, port: {port}}}]\nendpoints: [{{addresses: [{ips}], conditions: {{ready: true}}}}]\n---\n"
        ));
    }
    if by_port.is_empty() {
        out.push_str(&format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {svc}-0\n  namespace: {ns}\n  labels: {{kubernetes.io/service-name: {svc}}}\naddressType: IPv4\nports: [{{name: {port_name}, port: 8080}}]\nendpoints: []\n---\n"
        ));
    }
    out
}

/// The value of the first `/metrics` line starting with `needle`.
pub async fn metric(gw: &impl Admin, needle: &str) -> anyhow::Result<Option<f64>> {
    let text = gw.admin_get("/metrics").await?.text().to_string();
    Ok(metric_in(&text, needle))
}

/// The value of the first line of a `/metrics` text starting with `needle`.
pub fn metric_in(text: &str, needle: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Sends `n` GETs for `host` at once and returns them, in flight, once `backend` holds all of
/// them (its `sluice_backend_held_requests` gauge reads `n`).
pub async fn held_requests(
    gw: &Gateway,
    host: &'static str,
    backend: &str,
    n: usize,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<anyhow::Result<sluice_testkit::Response>>>> {
    let requests = (0..n)
        .map(|_| {
            let addr = gw.http;
            tokio::spawn(async move {
                sluice_testkit::http1_request(addr, "GET", host, "/", &[], None).await
            })
        })
        .collect();
    wait_metric(
        gw,
        &format!("sluice_backend_held_requests{{backend=\"{backend}\"}}"),
        |v| v == n as f64,
        WAIT,
    )
    .await?;
    Ok(requests)
}

/// Polls until the metric passes `check`, or fails after `bound`.
pub async fn wait_metric(
    gw: &impl Admin,
    needle: &str,
    check: impl Fn(f64) -> bool,
    bound: Duration,
) -> anyhow::Result<f64> {
    let deadline = std::time::Instant::now() + bound;
    loop {
        if let Some(v) = metric(gw, needle).await? {
            if check(v) {
                return Ok(v);
            }
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "{needle} not reached within {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
