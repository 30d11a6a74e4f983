//! The Helm chart in a cluster: rendered by real Helm (`charts/tests/chart.py`, the Go SDK
//! through PyPI's helm-python-sdk), applied with a real `kubectl` to the fake API server, and
//! run: the controller and the proxy are started with the rendered Deployments' own arguments
//! and environment (only listen addresses, the mounted token's path and the kubeconfig are
//! swapped for this machine's), and the README's install examples are run as written.

use crate::support::*;
use serde_json::Value;
use sluice_testkit::kube_api::ResourceType;
use sluice_testkit::{http1_request, EchoServer};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const NAMESPACE: &str = "sluice-system";
const LOCALHOST: std::net::IpAddr = std::net::IpAddr::V4(Ipv4Addr::LOCALHOST);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The chart rendered with a value set of `charts/sluice/ci/` (or `default`) and `--set`s:
/// the YAML stream (CRDs first) and its documents.
fn render(values: &str, sets: &[&str]) -> anyhow::Result<(String, Vec<Value>)> {
    let out = tempfile::NamedTempFile::new()?;
    let mut command = Command::new("python3");
    command
        .arg(repo().join("charts/tests/chart.py"))
        .args(["--values", values, "--namespace", NAMESPACE, "--out"])
        .arg(out.path());
    for set in sets {
        command.args(["--set", set]);
    }
    let output = command.output()?;
    anyhow::ensure!(
        output.status.success(),
        "rendering the chart failed (scripts/setup installs helm-python-sdk): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let yaml = std::fs::read_to_string(out.path())?;
    // safe_dump_all separates documents with a bare `---` line.
    let docs = yaml
        .split("\n---\n")
        .map(|doc| Ok(serde_yaml::from_str::<Value>(doc)?))
        .collect::<anyhow::Result<Vec<Value>>>()?;
    Ok((yaml, docs))
}

/// What a cluster with the chart's kinds serves; `knative`: with Knative's KIngress CRD.
fn chart_types(knative: bool) -> Vec<ResourceType> {
    ResourceType::with_chart_kinds()
        .into_iter()
        .filter(|t| knative || t.group != "networking.internal.knative.dev")
        .collect()
}

/// A cluster with the chart's namespace, and the chart applied to it with `kubectl apply`.
async fn install(knative: bool, yaml: &str) -> anyhow::Result<Cluster> {
    let cluster = Cluster::serving(chart_types(knative)).await?;
    cluster
        .apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NAMESPACE}}}\n"
        ))
        .await?;
    cluster.apply(yaml).await?;
    Ok(cluster)
}

fn container<'a>(docs: &'a [Value], deployment: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == deployment)
        .map(|d| &d["spec"]["template"]["spec"]["containers"][0])
        .unwrap_or_else(|| panic!("no Deployment {deployment} rendered"))
}

/// A container's arguments with some `--flag=value`s replaced; each replaced flag must be
/// there (the test must not silently run with the binary's defaults).
fn args_with(container: &Value, replace: &[(&str, String)]) -> Vec<String> {
    let mut args: Vec<String> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect();
    for (flag, value) in replace {
        let prefix = format!("--{flag}=");
        let arg = args
            .iter_mut()
            .find(|a| a.starts_with(&prefix))
            .unwrap_or_else(|| panic!("the chart passes no --{flag}"));
        *arg = format!("{prefix}{value}");
    }
    args
}

/// Volumes as the kubelet mounts them: a volume's name, and the directory on this machine
/// that stands for its mount.
type Volumes = [(&'static str, PathBuf)];

/// The `xds-auth` volume of token mode: the Secret's `token`, read back from the cluster.
async fn token_volume(cluster: &Cluster, dir: &Path) -> anyhow::Result<(&'static str, PathBuf)> {
    let token = cluster
        .kubectl(&[
            "get",
            "secret",
            "-n",
            NAMESPACE,
            "sluice-xds-token",
            "-o",
            "go-template={{.data.token | base64decode}}",
        ])
        .await?;
    anyhow::ensure!(token.len() == 48, "token: {token:?}");
    let volume = dir.join("xds-auth");
    std::fs::create_dir_all(&volume)?;
    std::fs::write(volume.join("token"), token)?;
    Ok(("xds-auth", volume))
}

/// `args` with each of the container's mount paths replaced by its volume's directory here.
fn mounted(container: &Value, mut args: Vec<String>, volumes: &Volumes) -> Vec<String> {
    for mount in container["volumeMounts"].as_array().into_iter().flatten() {
        let name = mount["name"].as_str().unwrap_or_default();
        let path = mount["mountPath"].as_str().unwrap_or_default();
        let (_, dir) = volumes
            .iter()
            .find(|(volume, _)| *volume == name)
            .unwrap_or_else(|| panic!("no directory for volume {name}"));
        for arg in &mut args {
            *arg = arg.replace(&format!("{path}/"), &format!("{}/", dir.display()));
        }
    }
    args
}

struct Pod {
    process: Process,
    admin: SocketAddr,
}

impl Admin for Pod {
    fn admin_addr(&self) -> SocketAddr {
        self.admin
    }
}

/// Starts a rendered container's command with its rendered arguments and the environment the
/// downward API gives it, on a read-only root filesystem as the chart's `securityContext`
/// runs it (a private mount namespace with `/` remounted read-only); waits until its `/ready`
/// answers 200 on the probe port, where the chart points the kubelet.
async fn run_pod(
    name: &str,
    args: Vec<String>,
    admin: SocketAddr,
    probe: SocketAddr,
) -> anyhow::Result<Pod> {
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--", "sh", "-c"])
        .arg("mount --bind / / && mount -o remount,bind,ro / && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_sluice"))
        .args(&args)
        .env("POD_NAME", name)
        .env("POD_NAMESPACE", NAMESPACE)
        .env("SLUICE_NODE_ID", name)
        .env_remove("SLUICE_LOG");
    let mut pod = Pod {
        process: Process::spawn(name, command)?,
        admin,
    };
    eventually(&format!("{name} ready"), CLUSTER_WAIT, async || {
        pod.process.check_running()?;
        let ready =
            sluice_testkit::http1_request(probe, "GET", "kubelet", "/ready", &[], None).await?;
        Ok((ready.status == 200).then_some(()))
    })
    .await?;
    Ok(pod)
}

/// The controller of the rendered chart, pointed at `cluster`.
async fn run_controller(
    cluster: &Cluster,
    docs: &[Value],
    volumes: &Volumes,
) -> anyhow::Result<(Pod, SocketAddr)> {
    let (xds, admin, probe) = (
        free_addr(LOCALHOST)?,
        free_addr(LOCALHOST)?,
        free_addr(LOCALHOST)?,
    );
    let container = container(docs, "sluice-controller");
    let args = args_with(
        container,
        &[
            ("xds-listen", xds.to_string()),
            ("admin", admin.to_string()),
            ("probe-addr", probe.to_string()),
            ("log-format", "text".to_string()),
        ],
    );
    let mut args = mounted(container, args, volumes);
    args.extend([
        "--kubeconfig".into(),
        cluster.kubeconfig.display().to_string(),
    ]);
    Ok((
        run_pod("sluice-controller-0", args, admin, probe).await?,
        xds,
    ))
}

struct ProxyPod {
    pod: Pod,
    http: SocketAddr,
    /// The external HTTPS listener, where the chart enables TLS.
    https: Option<SocketAddr>,
}

/// The proxy of the rendered chart, dialing `xds` for the controller's Service.
async fn run_proxy(docs: &[Value], xds: SocketAddr, volumes: &Volumes) -> anyhow::Result<ProxyPod> {
    let free = || free_addr(LOCALHOST);
    let (http, internal, admin, probe) = (free()?, free()?, free()?, free()?);
    let proxy = container(docs, "sluice-proxy");
    let rendered = |flag: &str| {
        proxy["args"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|a| a.as_str()?.strip_prefix(&format!("--{flag}=")))
            .map(str::to_string)
    };
    // The rendered address is the controller Service's cluster DNS name.
    let service = format!("sluice-controller.{NAMESPACE}.svc.cluster.local");
    assert_eq!(rendered("xds"), Some(format!("{service}:18000")));
    let mut replace = vec![
        ("xds", xds.to_string()),
        ("http", http.to_string()),
        ("internal-http", internal.to_string()),
        ("admin", admin.to_string()),
        ("probe-addr", probe.to_string()),
        ("log-format", "text".to_string()),
    ];
    let https = match rendered("https") {
        Some(_) => {
            let https = free()?;
            replace.push(("https", https.to_string()));
            replace.push(("internal-https", free()?.to_string()));
            Some(https)
        }
        None => None,
    };
    let mut args = mounted(proxy, args_with(proxy, &replace), volumes);
    if rendered("xds-ca").is_some() {
        // In the cluster the name checked on the controller's certificate is the host of
        // --xds; here --xds is a loopback address, so the same name is given explicitly.
        args.push(format!("--xds-server-name={service}"));
    }
    Ok(ProxyPod {
        pod: run_pod("sluice-proxy-0", args, admin, probe).await?,
        http,
        https,
    })
}

/// A `## title` section of the README.
fn readme_section(title: &str) -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let start = readme
        .find(&format!("\n## {title}\n"))
        .unwrap_or_else(|| panic!("README has no section {title:?}"));
    let rest = &readme[start + title.len() + 5..];
    rest[..rest.find("\n## ").unwrap_or(rest.len())].to_string()
}

/// The ```lang blocks of a README section.
fn code_blocks(section: &str, lang: &str) -> Vec<String> {
    let fence = format!("```{lang}\n");
    let mut blocks = Vec::new();
    let mut rest = section;
    while let Some(start) = rest.find(&fence) {
        let body = &rest[start + fence.len()..];
        let end = body.find("```").expect("unterminated code block");
        blocks.push(body[..end].to_string());
        rest = &body[end + 3..];
    }
    blocks
}

/// Runs each `kubectl` command of a README shell block as written (continuation lines joined),
/// in `dir`, against `cluster`. Returns how many ran.
async fn run_readme_kubectl(cluster: &Cluster, block: &str, dir: &Path) -> anyhow::Result<usize> {
    let mut ran = 0;
    for command in block.replace("\\\n", " ").lines() {
        let command = command.split(" # ").next().unwrap_or_default().trim();
        if !command.starts_with("kubectl ") {
            continue;
        }

        let output = tokio::process::Command::new("sh")
            .args(["-c", command])
            .current_dir(dir)
            .env("KUBECONFIG", &cluster.kubeconfig)
            .output()
            .await?;
        anyhow::ensure!(
            output.status.success(),
            "README: `{command}` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        ran += 1;
    }
    Ok(ran)
}

fn replicas(cluster: &Cluster, name: &str) -> Option<i64> {
    cluster
        .api
        .get("apps/v1", "deployments", "default", name)
        .and_then(|d| d["spec"]["replicas"].as_i64())
}

/// The default chart on a cluster without Knative: `kubectl apply` takes every object, the
/// controller and proxy run with the rendered arguments, and the README's "Use without
/// Knative" example, applied with its own commands, scales its Deployment from zero on the
/// first request and answers it once the pod is ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_chart_installs_runs_and_serves_the_readme_example_without_knative(
) -> anyhow::Result<()> {
    let (yaml, docs) = render("default", &[])?;
    let cluster = install(false, &yaml).await?;
    // Every rendered object is in the cluster.
    for doc in &docs {
        let kind = doc["kind"].as_str().unwrap_or_default().to_lowercase();
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        let mut args = vec!["get", &kind, name, "-o", "name"];
        if doc["metadata"]["namespace"].is_string() {
            args.extend(["-n", NAMESPACE]);
        }
        cluster.kubectl(&args).await?;
    }

    // Knative's KIngress CRD is absent here: the controller still comes up.
    let dir = tempfile::tempdir()?;
    let volumes = [token_volume(&cluster, dir.path()).await?];
    let (controller, xds) = run_controller(&cluster, &docs, &volumes).await?;
    eventually(
        "the controller holds the chart's Lease",
        CLUSTER_WAIT,
        async || {
            Ok(
                (cluster.lease_holder(NAMESPACE).as_deref() == Some("sluice-controller-0"))
                    .then_some(()),
            )
        },
    )
    .await?;
    let proxy = run_proxy(&docs, xds, &volumes).await?;
    let http = proxy.http;

    // The README, as written.
    let section = readme_section("Use without Knative");
    let [manifest] = &code_blocks(&section, "yaml")[..] else {
        panic!("expected one yaml block in the README's Use without Knative")
    };
    std::fs::write(dir.path().join("hello.yaml"), manifest)?;
    let mut ran = 0;
    for block in code_blocks(&section, "sh") {
        ran += run_readme_kubectl(&cluster, &block, dir.path()).await?;
    }
    assert!(ran >= 2, "the README's kubectl commands ran: {ran}");
    cluster
        .wait_for("routes.sluice.dev", "default", "hello", CLUSTER_WAIT, |o| {
            object_condition(o, "Ready").is_some_and(|c| c.0 == "True")
        })
        .await?;
    assert_eq!(replicas(&cluster, "hello-v1"), Some(0));

    let request = tokio::spawn(async move {
        http1_request(http, "GET", "hello.example.com", "/", &[], None).await
    });
    eventually("hello-v1 scaled to 1", CLUSTER_WAIT, async || {
        Ok((replicas(&cluster, "hello-v1") == Some(1)).then_some(()))
    })
    .await?;
    assert!(!request.is_finished(), "answered before a pod was ready");
    let pod = EchoServer::start("hello-pod").await?;
    cluster
        .apply(&format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: hello-v1-abcde\n  namespace: default\n  labels: {{kubernetes.io/service-name: hello-v1}}\naddressType: IPv4\nports: [{{name: \"\", port: {}}}]\nendpoints: [{{addresses: [\"127.0.0.1\"], conditions: {{ready: true}}}}]\n",
            pod.addr().port()
        ))
        .await?;
    let response = tokio::time::timeout(CLUSTER_WAIT, request).await???;
    assert_eq!(response.status, 200);
    assert_eq!(response.echo()?.name, "hello-pod");

    // The KIngress watch is reported, not fatal.
    let statuses = controller.statuses().await?;
    assert!(
        statuses.iter().any(|s| s["kind"] == "Watch"
            && s.to_string().contains("not served by the API server")),
        "{statuses:#?}"
    );
    Ok(())
}

/// The chart's `autoscaler` values are what the controller applies: a Revision over the
/// rendered `max-scale-limit` is refused, and accepted once that ConfigMap allows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_config_autoscaler_is_what_the_controller_applies() -> anyhow::Result<()> {
    let (yaml, docs) = render(
        "default",
        &["autoscaler.max-scale-limit=5,autoscaler.max-scale=5"],
    )?;
    let cluster = install(false, &yaml).await?;
    let dir = tempfile::tempdir()?;
    let volumes = [token_volume(&cluster, dir.path()).await?];
    let (_controller, _xds) = run_controller(&cluster, &docs, &volumes).await?;
    cluster
        .apply(
            "apiVersion: v1\nkind: Service\nmetadata: {name: big, namespace: default}\nspec:\n  ports: [{port: 80}]\n---\napiVersion: sluice.dev/v1alpha1\nkind: Revision\nmetadata:\n  name: big\n  namespace: default\n  annotations: {autoscaling.knative.dev/max-scale: \"10\"}\nspec:\n  service: {name: big, port: 80}\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: big}\n",
        )
        .await?;
    let refused = cluster
        .wait_for(
            "revisions.sluice.dev",
            "default",
            "big",
            CLUSTER_WAIT,
            |o| object_condition(o, "Ready").is_some_and(|c| c.0 == "False"),
        )
        .await?;
    assert!(
        refused
            .to_string()
            .contains("must be between 1 and 5, was 10"),
        "{refused:#}"
    );
    cluster
        .kubectl(&[
            "patch",
            "configmap/config-autoscaler",
            "-n",
            NAMESPACE,
            "--type",
            "merge",
            "-p",
            r#"{"data":{"max-scale-limit":"50"}}"#,
        ])
        .await?;
    cluster
        .wait_for(
            "revisions.sluice.dev",
            "default",
            "big",
            CLUSTER_WAIT,
            |o| !o.to_string().contains("between 1 and 5"),
        )
        .await?;
    Ok(())
}

/// With Knative: the README's `config-network` patch applies as written, and a KIngress of
/// sluice's class reports the chart's Services as its load balancers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_knative_kingress_status_names_the_charts_services() -> anyhow::Result<()> {
    let (yaml, docs) = render("knative", &[])?;
    let cluster = install(true, &yaml).await?;
    // What a Knative Serving install has.
    cluster
        .apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: knative-serving}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: config-network, namespace: knative-serving}\ndata: {ingress-class: kourier.ingress.networking.knative.dev}\n")
        .await?;
    let dir = tempfile::tempdir()?;
    let section = readme_section("Use with Knative");
    let mut ran = 0;
    for block in code_blocks(&section, "sh") {
        ran += run_readme_kubectl(&cluster, &block, dir.path()).await?;
    }
    assert_eq!(ran, 1, "the README's config-network patch");
    let network = cluster
        .get("configmap", "knative-serving", "config-network")
        .await?;
    assert_eq!(
        network["data"]["ingress-class"],
        "sluice.ingress.networking.knative.dev"
    );

    let volumes = [token_volume(&cluster, dir.path()).await?];
    let (_controller, xds) = run_controller(&cluster, &docs, &volumes).await?;
    let _proxy = run_proxy(&docs, xds, &volumes).await?;
    cluster
        .apply("apiVersion: v1\nkind: Service\nmetadata: {name: hello, namespace: default}\nspec:\n  ports: [{port: 80}]\n---\napiVersion: networking.internal.knative.dev/v1alpha1\nkind: Ingress\nmetadata:\n  name: hello\n  namespace: default\n  annotations: {networking.knative.dev/ingress.class: sluice.ingress.networking.knative.dev}\nspec:\n  rules:\n  - hosts: [hello.default.example.com]\n    visibility: ExternalIP\n    http:\n      paths:\n      - splits:\n        - {serviceName: hello, serviceNamespace: default, servicePort: 80, percent: 100}\n")
        .await?;
    let ingress = cluster
        .wait_for(
            "ingresses.networking.internal.knative.dev",
            "default",
            "hello",
            CLUSTER_WAIT,
            kingress_ready,
        )
        .await?;
    let status = &ingress["status"];
    assert_eq!(
        status["publicLoadBalancer"]["ingress"][0]["domainInternal"],
        format!("sluice.{NAMESPACE}.svc.cluster.local")
    );
    assert_eq!(
        status["privateLoadBalancer"]["ingress"][0]["domainInternal"],
        format!("sluice-internal.{NAMESPACE}.svc.cluster.local")
    );
    // The rendered Services carry exactly those names.
    for name in ["sluice", "sluice-internal"] {
        cluster.get("service", NAMESPACE, name).await?;
    }
    Ok(())
}

/// A `charts/tests/helm_session.py`: README lines run one at a time, `helm` through Helm's Go
/// SDK and `kubectl` for real, so the cluster can be checked between them.
struct HelmSession {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    answers: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl HelmSession {
    fn start(cluster: &Cluster) -> anyhow::Result<HelmSession> {
        let mut child = tokio::process::Command::new("python3")
            .arg(repo().join("charts/tests/helm_session.py"))
            .env("KUBECONFIG", &cluster.kubeconfig)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        use tokio::io::AsyncBufReadExt as _;
        Ok(HelmSession {
            child,
            stdin,
            answers: tokio::io::BufReader::new(stdout).lines(),
        })
    }

    /// Runs one line; its output, or an error saying why it failed.
    async fn run(&mut self, line: &str) -> anyhow::Result<String> {
        use tokio::io::AsyncWriteExt as _;
        self.stdin.write_all(format!("{line}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        let answer = tokio::time::timeout(Duration::from_secs(90), self.answers.next_line())
            .await??
            .ok_or_else(|| {
                anyhow::anyhow!("helm session ended (exit: {:?})", self.child.try_wait())
            })?;
        match answer.split_once(' ') {
            Some(("ok", output)) => Ok(output.replace("\\n", "\n")),
            _ => anyhow::bail!("README: `{line}`: {answer}"),
        }
    }
}

/// The README's commands (continuation lines joined, comments dropped) that start with one of
/// `programs`, from every shell block of a section.
fn readme_commands(title: &str, programs: &[&str]) -> Vec<String> {
    code_blocks(&readme_section(title), "sh")
        .iter()
        .flat_map(|block| {
            block
                .replace("\\\n", " ")
                .lines()
                .map(|l| l.split(" # ").next().unwrap_or_default().trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|line| programs.iter().any(|p| line.starts_with(&format!("{p} "))))
        .collect()
}

fn object_exists(cluster: &Cluster, group_version: &str, plural: &str, name: &str) -> bool {
    cluster
        .api
        .get(group_version, plural, NAMESPACE, name)
        .is_some()
}

/// The README's Helm commands, as written, with real Helm: the install creates what the
/// chart renders and its controller runs; the upgrade keeps the values it reuses and the xDS
/// token; the uninstall removes everything but the CRDs, which the README's last command
/// deletes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_helm_install_upgrade_and_uninstall_run_as_written() -> anyhow::Result<()> {
    let cluster = Cluster::serving(chart_types(false)).await?;
    let mut helm = HelmSession::start(&cluster)?;

    // The first install command of "Install with Helm" (the others install the same release
    // with other value sets; charts/tests renders and validates each). `rollout status`
    // needs a kubelet, which the fake API server has not.
    let install = readme_commands("Install with Helm", &["helm"]);
    assert!(install.len() >= 3, "{install:?}");
    eprintln!("{}", helm.run(&install[0]).await?);
    for name in ["sluice-controller", "sluice-proxy"] {
        assert!(
            object_exists(&cluster, "apps/v1", "deployments", name),
            "{name}"
        );
    }
    for name in ["sluice", "sluice-internal", "sluice-controller"] {
        assert!(object_exists(&cluster, "v1", "services", name), "{name}");
    }
    let proxy = cluster.get("deployment", NAMESPACE, "sluice-proxy").await?;
    let image = proxy["spec"]["template"]["spec"]["containers"][0]["image"].clone();
    assert_eq!(image, "registry.example.com/sluice:0.1.0");
    let token =
        cluster.get("secret", NAMESPACE, "sluice-xds-token").await?["data"]["token"].clone();
    assert!(token.is_string());

    // What Helm applied runs: the controller's Deployment, read back from the cluster.
    let installed: Vec<Value> = vec![
        cluster
            .get("deployment", NAMESPACE, "sluice-controller")
            .await?,
    ];
    let dir = tempfile::tempdir()?;
    let volumes = [token_volume(&cluster, dir.path()).await?];
    let (controller, _xds) = run_controller(&cluster, &installed, &volumes).await?;
    drop(controller);

    let lifecycle = readme_commands("Upgrade and uninstall", &["helm", "kubectl"]);
    let [upgrade, uninstall, delete_crds] = &lifecycle[..] else {
        panic!("expected upgrade, uninstall and CRD deletion: {lifecycle:?}")
    };
    eprintln!("{}", helm.run(upgrade).await?);
    let proxy = cluster.get("deployment", NAMESPACE, "sluice-proxy").await?;
    assert_eq!(proxy["spec"]["replicas"], 3);
    assert_eq!(
        proxy["spec"]["template"]["spec"]["containers"][0]["image"], image,
        "--reuse-values keeps the install's values"
    );
    let kept = cluster.get("secret", NAMESPACE, "sluice-xds-token").await?["data"]["token"].clone();
    assert_eq!(kept, token, "an upgrade keeps the xDS token");

    eprintln!("{}", helm.run(uninstall).await?);
    for (group_version, plural, name) in [
        ("apps/v1", "deployments", "sluice-controller"),
        ("apps/v1", "deployments", "sluice-proxy"),
        ("v1", "services", "sluice"),
        ("v1", "secrets", "sluice-xds-token"),
        ("v1", "configmaps", "config-autoscaler"),
    ] {
        assert!(
            !object_exists(&cluster, group_version, plural, name),
            "{plural}/{name} left"
        );
    }
    let crd = |name| {
        cluster
            .api
            .get(
                "apiextensions.k8s.io/v1",
                "customresourcedefinitions",
                "",
                name,
            )
            .is_some()
    };
    assert!(crd("routes.sluice.dev"), "Helm keeps CRDs");
    helm.run(delete_crds).await?;
    assert!(!crd("routes.sluice.dev") && !crd("revisions.sluice.dev"));
    Ok(())
}

/// A private CA and the leaves it signs, written as a cert-manager Secret is mounted
/// (`ca.crt`, `tls.crt`, `tls.key`).
struct Pki {
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> anyhow::Result<Pki> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sluice-xds-ca");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate()?)?;
        Ok(Pki { ca })
    }

    /// Issues what a rendered cert-manager `Certificate` asks for (its commonName, dnsNames
    /// and usages) into `dir`, as its Secret would be mounted.
    fn issue(&self, certificate: &Value, dir: &Path) -> anyhow::Result<()> {
        let spec = &certificate["spec"];
        let strings = |key: &str| -> Vec<String> {
            spec[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        };
        let mut params = rcgen::CertificateParams::new(strings("dnsNames"))?;
        if let Some(cn) = spec["commonName"].as_str() {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        params.extended_key_usages = strings("usages")
            .iter()
            .filter_map(|usage| match usage.as_str() {
                "server auth" => Some(rcgen::ExtendedKeyUsagePurpose::ServerAuth),
                "client auth" => Some(rcgen::ExtendedKeyUsagePurpose::ClientAuth),
                _ => None,
            })
            .collect();
        let key = rcgen::KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.ca)?;
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("ca.crt"), self.ca.pem())?;
        std::fs::write(dir.join("tls.crt"), cert.pem())?;
        std::fs::write(dir.join("tls.key"), key.serialize_pem())?;
        Ok(())
    }
}

/// The TLS value set: proxies and controllers authenticate each other with the certificates
/// the rendered cert-manager `Certificate`s describe (names, usages, the Secrets' layout), and
/// the proxy terminates HTTPS with the default certificate from its Secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_values_proxies_and_controllers_use_the_charts_certificates() -> anyhow::Result<()>
{
    let (_, docs) = render("tls", &[])?;
    // cert-manager is not installed in the fake: its objects are issued by the test instead.
    let (issued, applied): (Vec<&Value>, Vec<&Value>) = docs.iter().partition(|d| {
        d["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("cert-manager.io/"))
    });
    let yaml = applied
        .iter()
        .map(serde_yaml::to_string)
        .collect::<Result<Vec<_>, _>>()?
        .join("---\n");
    let cluster = install(false, &yaml).await?;
    let certificate = |name: &str| {
        issued
            .iter()
            .find(|d| d["kind"] == "Certificate" && d["metadata"]["name"] == name)
            .copied()
            .unwrap_or_else(|| panic!("no Certificate {name}"))
    };
    let dir = tempfile::tempdir()?;
    let pki = Pki::new()?;
    let controller_tls = dir.path().join("controller");
    pki.issue(certificate("sluice-xds-controller"), &controller_tls)?;
    let proxy_tls = dir.path().join("proxy");
    pki.issue(certificate("sluice-xds-proxy"), &proxy_tls)?;
    let default_tls = dir.path().join("default-tls");
    pki.issue(
        &serde_json::json!({"spec": {"dnsNames": ["*.example.com"], "usages": ["server auth"]}}),
        &default_tls,
    )?;

    let (controller, xds) =
        run_controller(&cluster, &docs, &[("xds-auth", controller_tls)]).await?;
    let proxy = run_proxy(
        &docs,
        xds,
        &[
            ("xds-auth", proxy_tls),
            ("default-tls", default_tls.clone()),
        ],
    )
    .await?;
    // The stream is up (the proxy is ready only with a config from the controller), and the
    // controller knows the proxy by its certificate.
    let statuses = controller.statuses().await?;
    assert!(
        statuses
            .iter()
            .any(|s| s["status"]["proxy"]["identity"] == "mtls:sluice-proxy"),
        "{statuses:#?}"
    );

    // HTTPS: a name no KIngress has gets the chart's default certificate.
    let https = proxy.https.expect("the TLS values enable HTTPS");
    let ca = std::fs::read_to_string(default_tls.join("ca.crt"))?;
    let client = sluice_testkit::TlsClient::new(&[&ca], &[sluice_testkit::ALPN_HTTP1])?;
    let mut connection =
        sluice_testkit::H1Client::connect_tls(https, &client, "unknown.example.com").await?;
    let response = connection
        .send("GET", "unknown.example.com", "/", &[], None)
        .await?;
    assert_eq!(response.status, 404);
    let served = connection
        .tls()
        .map(|t| t.peer_certificate.clone())
        .unwrap_or_default();
    let default_pem = std::fs::read_to_string(default_tls.join("tls.crt"))?;
    assert_eq!(served, sluice_testkit::leaf_der(&default_pem)?);
    drop(proxy.pod);
    Ok(())
}
