//! A real kubectl (1.33, picked by the dispatcher from `/version`) against the fake, the way a
//! user drives a cluster. Validation is off (`--validate=false`): the fake serves no OpenAPI.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::Context as _;
use serde_json::{json, Value};
use sluice_testkit::kube_api::{FakeApiServer, RecordedRequest};
use tempfile::TempDir;
use tokio::io::AsyncReadExt as _;
use tokio::process::Command;

use super::{eventually, SOON};

/// kubectl with its own kubeconfig and discovery cache, so runs never share state.
struct Kubectl {
    dir: TempDir,
}

impl Kubectl {
    fn new(server: &FakeApiServer) -> anyhow::Result<Kubectl> {
        let dir = TempDir::new()?;
        server.write_kubeconfig(&dir.path().join("kubeconfig"))?;
        Ok(Kubectl { dir })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("kubectl");
        command
            .arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Runs kubectl to completion; fails unless it exits 0. Returns stdout.
    async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = tokio::time::timeout(SOON * 2, self.command(args).output())
            .await
            .with_context(|| format!("kubectl {args:?} timed out"))?
            .context("run kubectl (preinstalled at /usr/bin/kubectl on sluice's machines)")?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        anyhow::ensure!(
            output.status.success(),
            "kubectl {args:?}: {}\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(stdout)
    }

    async fn json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let stdout = self.run(args).await?;
        serde_json::from_str(&stdout).with_context(|| format!("kubectl {args:?} printed {stdout}"))
    }

    fn write(&self, name: &str, yaml: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.path().join(name);
        std::fs::write(&path, yaml)?;
        Ok(path)
    }

    async fn apply(&self, file: &Path, extra: &[&str]) -> anyhow::Result<String> {
        let file = file.to_str().context("temp path is UTF-8")?;
        let mut args = vec!["apply", "--validate=false", "-f", file];
        args.extend_from_slice(extra);
        self.run(&args).await
    }
}

/// The requests that came in after `since` (an index into `requests()`).
fn since(server: &FakeApiServer, since: usize) -> Vec<RecordedRequest> {
    server.requests().split_off(since)
}

fn patches(requests: &[RecordedRequest]) -> Vec<(String, String)> {
    requests
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| (r.path.clone(), r.content_type.clone().unwrap_or_default()))
        .collect()
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: app:1
        env:
        - {name: A, value: \"1\"}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
endpoints:
- addresses: [10.0.0.1]
ports:
- {name: http, port: 8080}
";

#[tokio::test]
async fn kubectl_applies_patches_scales_and_deletes_builtin_kinds() -> anyhow::Result<()> {
    let server = FakeApiServer::start().await?;
    let kubectl = Kubectl::new(&server)?;
    let file = kubectl.write("web.yaml", DEPLOYMENT)?;
    let out = kubectl.apply(&file, &[]).await?;
    assert!(out.contains("deployment.apps/web created"), "{out}");
    assert!(
        out.contains("endpointslice.discovery.k8s.io/web-1 created"),
        "{out}"
    );
    let web = server
        .get("apps/v1", "deployments", "default", "web")
        .context("created")?;
    assert!(
        web["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );

    // A changed manifest: kubectl computes a strategic merge patch for a built-in kind.
    let mark = server.requests().len();
    let changed = DEPLOYMENT
        .replace("app:1", "app:2")
        .replace("10.0.0.1", "10.0.0.2");
    let file = kubectl.write("web.yaml", &changed)?;
    let out = kubectl.apply(&file, &[]).await?;
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    assert!(out.contains("service/web unchanged"), "{out}");
    let sent = patches(&since(&server, mark));
    assert_eq!(
        sent,
        [
            (
                "/apis/apps/v1/namespaces/default/deployments/web".to_owned(),
                "application/strategic-merge-patch+json".to_owned()
            ),
            (
                "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/web-1".to_owned(),
                "application/strategic-merge-patch+json".to_owned()
            ),
        ]
    );
    let web = kubectl
        .json(&["get", "deployment", "web", "-o", "json"])
        .await?;
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"],
        "app:2"
    );
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["env"],
        json!([{"name": "A", "value": "1"}])
    );
    assert_eq!(web["metadata"]["generation"], 2);
    let slice = kubectl
        .json(&["get", "endpointslices", "web-1", "-o", "json"])
        .await?;
    assert_eq!(slice["endpoints"][0]["addresses"], json!(["10.0.0.2"]));

    kubectl
        .run(&[
            "patch",
            "deployment",
            "web",
            "--type=merge",
            "-p",
            r#"{"metadata":{"labels":{"team":"edge"}}}"#,
        ])
        .await?;
    kubectl
        .run(&[
            "patch",
            "deployment",
            "web",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"app:3"}]}}}}"#,
        ])
        .await?;
    let web = server
        .get("apps/v1", "deployments", "default", "web")
        .context("still there")?;
    assert_eq!(web["metadata"]["labels"]["team"], "edge");
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"],
        "app:3"
    );
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["env"][0]["name"], "A",
        "merged by name"
    );

    let mark = server.requests().len();
    kubectl
        .run(&["scale", "deployment", "web", "--replicas=3"])
        .await?;
    let sent = patches(&since(&server, mark));
    assert_eq!(
        sent,
        [(
            "/apis/apps/v1/namespaces/default/deployments/web/scale".to_owned(),
            "application/merge-patch+json".to_owned()
        )]
    );
    let replicas = kubectl
        .run(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .await?;
    assert_eq!(replicas, "3");
    let scale = kubectl
        .json(&[
            "get",
            "--raw",
            "/apis/apps/v1/namespaces/default/deployments/web/scale",
        ])
        .await?;
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["selector"], "app=web");

    let table = kubectl.run(&["get", "deployments,services"]).await?;
    assert!(
        table.contains("deployment.apps/web") && table.contains("service/web"),
        "{table}"
    );
    let out = kubectl.run(&["delete", "deployment", "web"]).await?;
    assert!(out.contains("deployment.apps \"web\" deleted"), "{out}");
    assert_eq!(server.get("apps/v1", "deployments", "default", "web"), None);
    Ok(())
}

const KINGRESS: &str = "apiVersion: networking.internal.knative.dev/v1alpha1
kind: Ingress
metadata:
  name: hello
  annotations: {networking.knative.dev/ingress.class: sluice}
spec:
  rules:
  - hosts: [hello.example.com]
    visibility: ExternalIP
    http:
      paths:
      - splits:
        - {serviceName: hello, serviceNamespace: default, servicePort: 80, percent: 100}
---
apiVersion: sluice.dev/v1alpha1
kind: Revision
metadata:
  name: hello-00001
spec:
  containerConcurrency: 10
";

/// Parses every complete JSON document in `buffer` (kubectl pretty-prints them back to back).
fn documents(buffer: &[u8]) -> Vec<Value> {
    serde_json::Deserializer::from_slice(buffer)
        .into_iter::<Value>()
        .map_while(Result::ok)
        .collect()
}

#[tokio::test]
async fn kubectl_applies_and_watches_custom_resources() -> anyhow::Result<()> {
    let server = FakeApiServer::start().await?;
    let kubectl = Kubectl::new(&server)?;
    let file = kubectl.write("hello.yaml", KINGRESS)?;
    let out = kubectl.apply(&file, &[]).await?;
    assert!(
        out.contains("ingress.networking.internal.knative.dev/hello created"),
        "{out}"
    );
    assert!(
        out.contains("revision.sluice.dev/hello-00001 created"),
        "{out}"
    );

    // Custom kinds get a JSON merge patch (kubectl knows no Go struct to merge by).
    let mark = server.requests().len();
    let file = kubectl.write(
        "hello.yaml",
        &KINGRESS.replace("hello.example.com", "hi.example.com"),
    )?;
    kubectl.apply(&file, &[]).await?;
    let sent = patches(&since(&server, mark));
    assert_eq!(
        sent,
        [(
            "/apis/networking.internal.knative.dev/v1alpha1/namespaces/default/ingresses/hello"
                .to_owned(),
            "application/merge-patch+json".to_owned()
        )]
    );
    let ingress = kubectl
        .json(&["get", "kingress", "hello", "-o", "json"])
        .await?;
    assert_eq!(
        ingress["spec"]["rules"][0]["hosts"],
        json!(["hi.example.com"])
    );
    assert_eq!(ingress["metadata"]["generation"], 2);
    let revision = kubectl
        .json(&["get", "revisions.sluice.dev", "hello-00001", "-o", "json"])
        .await?;
    assert_eq!(revision["spec"]["containerConcurrency"], 10);

    // `get --watch`: list, then a watch from the list's version; a change shows as MODIFIED.
    let mark = server.requests().len();
    let mut watch = kubectl
        .command(&[
            "get",
            "kingress",
            "hello",
            "--watch",
            "-o",
            "json",
            "--output-watch-events",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("spawn kubectl get --watch")?;
    eventually("kubectl's watch request", || {
        since(&server, mark)
            .iter()
            .any(|r| r.query.contains("watch=true"))
    })
    .await?;
    let mut status = ingress.clone();
    status["status"] =
        json!({"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]});
    server.apply_status(status)?;
    let mut stdout = watch.stdout.take().context("piped stdout")?;
    let mut buffer = Vec::new();
    let deadline = Instant::now() + SOON;
    let modified = loop {
        let found = documents(&buffer)
            .into_iter()
            .find(|event| event["type"] == "MODIFIED");
        if let Some(event) = found {
            break event;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no MODIFIED line: {}",
            String::from_utf8_lossy(&buffer)
        );
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout(SOON, stdout.read(&mut chunk)).await??;
        anyhow::ensure!(
            read > 0,
            "kubectl exited: {}",
            String::from_utf8_lossy(&buffer)
        );
        buffer.extend_from_slice(&chunk[..read]);
    };
    assert_eq!(
        modified["object"]["status"]["conditions"][0]["type"],
        "Ready"
    );
    let first = documents(&buffer).into_iter().next().context("an event")?;
    assert_eq!(first["type"], "ADDED");
    watch.kill().await?;

    // Server-side apply: PATCH application/apply-patch+yaml with fieldManager=kubectl.
    let mark = server.requests().len();
    let file = kubectl.write(
        "hello.yaml",
        &KINGRESS.replace("percent: 100", "percent: 100, appendHeaders: {x: hi}"),
    )?;
    let out = kubectl.apply(&file, &["--server-side"]).await?;
    assert!(
        out.contains("ingress.networking.internal.knative.dev/hello serverside-applied"),
        "{out}"
    );
    let applies: Vec<RecordedRequest> = since(&server, mark)
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert!(applies
        .iter()
        .all(|r| r.content_type.as_deref() == Some("application/apply-patch+yaml")));
    // One apply per object, each followed by one that keeps the client-side annotation current.
    let managers: Vec<&str> = applies
        .iter()
        .filter_map(|r| r.query.split('&').find(|p| p.starts_with("fieldManager=")))
        .collect();
    assert_eq!(
        managers,
        [
            "fieldManager=kubectl",
            "fieldManager=kubectl-last-applied",
            "fieldManager=kubectl",
            "fieldManager=kubectl-last-applied"
        ]
    );
    let ingress = server
        .get(
            "networking.internal.knative.dev/v1alpha1",
            "ingresses",
            "default",
            "hello",
        )
        .context("still there")?;
    let split = &ingress["spec"]["rules"][0]["http"]["paths"][0]["splits"][0];
    assert_eq!(split["appendHeaders"], json!({"x": "hi"}));
    assert_eq!(
        ingress["status"]["conditions"][0]["type"], "Ready",
        "apply leaves status alone"
    );

    // Server-side apply also creates.
    let file = kubectl.write(
        "new.yaml",
        &KINGRESS.replace("name: hello\n", "name: fresh\n"),
    )?;
    let out = kubectl.apply(&file, &["--server-side"]).await?;
    assert!(
        out.contains("ingress.networking.internal.knative.dev/fresh serverside-applied"),
        "{out}"
    );
    let out = kubectl
        .run(&["delete", "kingress", "hello", "fresh"])
        .await?;
    assert!(out.contains("\"fresh\" deleted"), "{out}");
    assert!(server
        .list(
            "networking.internal.knative.dev/v1alpha1",
            "ingresses",
            None
        )
        .is_empty());
    Ok(())
}
