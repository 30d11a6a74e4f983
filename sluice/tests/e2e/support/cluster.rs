//! A fake Kubernetes API server with a real `kubectl` pointed at it: what the Kubernetes-mode
//! tests drive the way a user drives a cluster.

use anyhow::{bail, Context};
use serde_json::Value;
use sluice_testkit::kube_api::{FakeApiServer, ResourceType};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct Cluster {
    pub api: FakeApiServer,
    pub kubeconfig: PathBuf,
    dir: tempfile::TempDir,
}

impl Cluster {
    pub async fn start() -> anyhow::Result<Cluster> {
        Cluster::serving(ResourceType::defaults()).await
    }

    /// One that serves exactly `types`.
    pub async fn serving(types: Vec<ResourceType>) -> anyhow::Result<Cluster> {
        let api = FakeApiServer::start_with(types).await?;
        let dir = tempfile::tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        api.write_kubeconfig(&kubeconfig)?;
        Ok(Cluster {
            api,
            kubeconfig,
            dir,
        })
    }

    /// Starts one and `kubectl apply`s `yaml`.
    pub async fn start_with(yaml: &str) -> anyhow::Result<Cluster> {
        let cluster = Cluster::start().await?;
        cluster.apply(yaml).await?;
        Ok(cluster)
    }

    /// Runs kubectl against the fake (its own discovery cache); fails unless it succeeds.
    /// Returns stdout.
    pub async fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .output()
            .await
            .context("running kubectl")?;
        if !output.status.success() {
            bail!(
                "kubectl {}: {}\n{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).to_string())
    }

    /// `kubectl apply -f` of `yaml` (client-side apply, as most users do).
    pub async fn apply(&self, yaml: &str) -> anyhow::Result<()> {
        let file = self
            .dir
            .path()
            .join(format!("apply-{}.yaml", fastrand_name()));
        std::fs::write(&file, yaml)?;
        let path = file.to_string_lossy().to_string();
        self.kubectl(&["apply", "--validate=false", "-f", &path])
            .await?;
        Ok(())
    }

    /// `kubectl get <resource> -n ns name -o json`.
    pub async fn get(&self, resource: &str, ns: &str, name: &str) -> anyhow::Result<Value> {
        let out = self
            .kubectl(&["get", resource, "-n", ns, name, "-o", "json"])
            .await?;
        Ok(serde_json::from_str(&out)?)
    }

    /// Polls `kubectl get` until `check` accepts the object, or fails after `bound`.
    pub async fn wait_for(
        &self,
        resource: &str,
        ns: &str,
        name: &str,
        bound: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + bound;
        loop {
            let object = self.get(resource, ns, name).await.ok();
            if let Some(object) = object.as_ref().filter(|o| check(o)) {
                return Ok(object.clone());
            }
            if Instant::now() > deadline {
                bail!("{resource} {ns}/{name} not as expected within {bound:?}; last: {object:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Who holds the controllers' Lease (`sluice-controller` in `namespace`), if anyone.
    pub fn lease_holder(&self, namespace: &str) -> Option<String> {
        self.api
            .get(
                "coordination.k8s.io/v1",
                "leases",
                namespace,
                "sluice-controller",
            )
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
            .filter(|h| !h.is_empty())
    }

    /// Status writes (`PATCH …/<plural>/<name>/status`) the fake answered 2xx.
    pub fn status_writes(&self, plural: &str, name: &str) -> usize {
        let suffix = format!("/{plural}/{name}/status");
        self.api
            .requests()
            .iter()
            .filter(|r| r.method == "PATCH" && r.path.ends_with(&suffix) && r.status < 300)
            .count()
    }
}

fn fastrand_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed).to_string()
}

/// `KIngress` status as Knative's conformance reads it: Ready at the current generation.
pub fn kingress_ready(object: &Value) -> bool {
    let ready = object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    ready && object["status"]["observedGeneration"] == object["metadata"]["generation"]
}

/// The `type` condition's `(status, reason)` in an object's status.
pub fn object_condition(object: &Value, type_: &str) -> Option<(String, String)> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
}

/// Bound for waits involving the API server (watches, Lease turns).
pub const CLUSTER_WAIT: Duration = Duration::from_secs(20);
