//! Kubernetes mode end to end: `sluice run --kubernetes` and `sluice controller --kubernetes`
//! against the fake API server, driven with a real `kubectl`, serving real loopback backends.

use crate::support::*;
use serde_json::Value;
use sluice_testkit::{http1_request, EchoServer};
use std::time::{Duration, Instant};

const KINGRESSES: &str = "ingresses.networking.internal.knative.dev";
const INGRESS_GV: &str = "networking.internal.knative.dev/v1alpha1";

/// A KIngress of another implementation's class.
fn foreign_ingress(ns: &str, name: &str, host: &str) -> String {
    simple_ingress(ns, name, host, "main", "80")
        .replace(CLASS, "istio.ingress.networking.knative.dev")
}

/// Service `ns/main` on `backend`, and KIngress `ns/<name>` sending `host` to it.
fn served(backend: std::net::SocketAddr, name: &str, host: &str) -> String {
    service("ns", "main", "http", 80, &[backend]) + &simple_ingress("ns", name, host, "main", "80")
}

async fn status_code(gw: &Gateway, host: &str) -> anyhow::Result<u16> {
    Ok(http1_request(gw.http, "GET", host, "/", &[], None)
        .await?
        .status)
}

async fn wait_code(gw: &Gateway, host: &str, code: u16) -> anyhow::Result<()> {
    eventually(
        &format!("{host} answers {code}"),
        CLUSTER_WAIT,
        async || Ok((status_code(gw, host).await? == code).then_some(())),
    )
    .await
}

#[tokio::test]
async fn kingress_created_updated_and_deleted_with_kubectl() -> anyhow::Result<()> {
    let backend = EchoServer::start("main").await?;
    let cluster = Cluster::start_with(
        &(served(backend.addr(), "hello", "hello.example.com")
            + &foreign_ingress("ns", "other", "other.example.com")),
    )
    .await?;
    let foreign_before = cluster.api.get(INGRESS_GV, "ingresses", "ns", "other");
    let gw = Gateway::start_kubernetes(&cluster.kubeconfig, &[]).await?;

    // Created: served, and Ready as Knative's conformance reads it.
    let ready = cluster
        .wait_for(KINGRESSES, "ns", "hello", CLUSTER_WAIT, kingress_ready)
        .await?;
    for condition in ["NetworkConfigured", "LoadBalancerReady", "Ready"] {
        assert_eq!(
            object_condition(&ready, condition).map(|c| c.0).as_deref(),
            Some("True"),
            "{condition}: {ready:#}"
        );
    }
    assert_eq!(
        ready["status"]["publicLoadBalancer"]["ingress"][0]["domainInternal"],
        "sluice.sluice-system.svc.cluster.local"
    );
    assert_eq!(
        ready["status"]["privateLoadBalancer"]["ingress"][0]["domainInternal"],
        "sluice-internal.sluice-system.svc.cluster.local"
    );
    assert_eq!(ready["status"]["observedGeneration"], 1);
    let r = http1_request(gw.http, "GET", "hello.example.com", "/", &[], None).await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.echo()?.name, "main");
    assert_eq!(
        status_code(&gw, "other.example.com").await?,
        404,
        "another class"
    );

    // Updated: the new generation is served and reported.
    cluster
        .apply(&simple_ingress(
            "ns",
            "hello",
            "hello2.example.com",
            "main",
            "80",
        ))
        .await?;
    let updated = cluster
        .wait_for(KINGRESSES, "ns", "hello", CLUSTER_WAIT, |o| {
            kingress_ready(o) && o["status"]["observedGeneration"] == 2
        })
        .await?;
    assert_eq!(updated["metadata"]["generation"], 2);
    assert_eq!(status_code(&gw, "hello2.example.com").await?, 200);
    assert_eq!(status_code(&gw, "hello.example.com").await?, 404);

    // Deleted: no longer served.
    cluster
        .kubectl(&["delete", KINGRESSES, "-n", "ns", "hello"])
        .await?;
    wait_code(&gw, "hello2.example.com", 404).await?;

    // The other class's object was never written.
    assert_eq!(
        cluster.api.get(INGRESS_GV, "ingresses", "ns", "other"),
        foreign_before,
        "byte-identical"
    );
    assert_eq!(cluster.status_writes("ingresses", "other"), 0);
    Ok(())
}

#[tokio::test]
async fn status_is_written_only_when_it_changes_even_across_restarts() -> anyhow::Result<()> {
    let backend = EchoServer::start("main").await?;
    let cluster =
        Cluster::start_with(&served(backend.addr(), "hello", "hello.example.com")).await?;
    let gw = Gateway::start_kubernetes(&cluster.kubeconfig, &[]).await?;
    let first = cluster
        .wait_for(KINGRESSES, "ns", "hello", CLUSTER_WAIT, kingress_ready)
        .await?;
    let writes = cluster.status_writes("ingresses", "hello");
    assert!(
        (1..=2).contains(&writes),
        "translated, then ready: {writes} writes"
    );

    // Another object changing does not rewrite this one.
    cluster
        .apply(&simple_ingress(
            "ns",
            "second",
            "second.example.com",
            "main",
            "80",
        ))
        .await?;
    cluster
        .wait_for(KINGRESSES, "ns", "second", CLUSTER_WAIT, kingress_ready)
        .await?;
    assert_eq!(cluster.status_writes("ingresses", "hello"), writes);

    // A new process (its board stamps new transition times) finds nothing to write.
    drop(gw);
    let gw = Gateway::start_kubernetes(&cluster.kubeconfig, &[]).await?;
    wait_code(&gw, "second.example.com", 200).await?;
    holds_for(
        "no rewrite after a restart",
        Duration::from_secs(2),
        async || {
            anyhow::ensure!(cluster.status_writes("ingresses", "hello") == writes);
            Ok(())
        },
    )
    .await?;
    let after = cluster.get(KINGRESSES, "ns", "hello").await?;
    assert_eq!(
        after["status"], first["status"],
        "same times, same everything"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_slice_churn_under_load_drops_no_request() -> anyhow::Result<()> {
    let (a, b) = (EchoServer::start("a").await?, EchoServer::start("b").await?);
    let cluster = Cluster::start_with(&served(a.addr(), "hello", "hello.example.com")).await?;
    let gw = Gateway::start_kubernetes(&cluster.kubeconfig, &[]).await?;
    cluster
        .wait_for(KINGRESSES, "ns", "hello", CLUSTER_WAIT, kingress_ready)
        .await?;
    let http = gw.http;
    let load = (0..4)
        .map(|_| {
            tokio::spawn(async move {
                let mut failures = Vec::new();
                for _ in 0..150 {
                    match http1_request(http, "GET", "hello.example.com", "/", &[], None).await {
                        Ok(r) if r.status == 200 => {}
                        Ok(r) => failures.push(format!("status {}", r.status)),
                        Err(e) => failures.push(e.to_string()),
                    }
                }
                failures
            })
        })
        .collect::<Vec<_>>();
    // Churn the slice between [a], [a, b] and [b] while the load runs: never empty.
    let sets = [
        vec![a.addr(), b.addr()],
        vec![b.addr()],
        vec![a.addr(), b.addr()],
        vec![a.addr()],
    ];
    let mut changes = 0;
    while !load.iter().all(|l| l.is_finished()) && changes < 200 {
        let set = &sets[changes % sets.len()];
        let yaml = endpoint_slice("ns", "main", "http", set);
        cluster.api.apply(yaml_document(&yaml)?)?;
        changes += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut failures = Vec::new();
    for l in load {
        failures.extend(l.await?);
    }
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    assert!(
        changes >= 10,
        "only {changes} slice changes during the load"
    );
    assert!(a.requests() > 0 && b.requests() > 0, "both served");
    Ok(())
}

/// The first YAML document of `yaml`, as JSON.
fn yaml_document(yaml: &str) -> anyhow::Result<Value> {
    let doc = yaml.split("\n---").next().unwrap_or_default();
    Ok(serde_yaml::from_str(doc)?)
}

/// A Deployment `web` at 0 replicas, its Service and an empty EndpointSlice, and a Revision
/// scaling it from zero, with a Route to it.
fn scale_from_zero_manifests() -> String {
    let mut out = autoscaler_config("");
    out += "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: ns}\nspec:\n  replicas: 0\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: example.com/web:1}]\n---\n";
    out += &service("ns", "web", "http", 80, &[]);
    out += "apiVersion: sluice.dev/v1alpha1\nkind: Revision\nmetadata:\n  name: web-1\n  namespace: ns\n  annotations: {autoscaling.knative.dev/initial-scale: \"0\"}\nspec:\n  service: {name: web, port: 80}\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n---\n";
    out += "apiVersion: sluice.dev/v1alpha1\nkind: Route\nmetadata: {name: web, namespace: ns}\nspec:\n  hosts: [web.example.com]\n  traffic: [{revision: web-1, percent: 100}]\n---\n";
    out
}

fn replicas(cluster: &Cluster) -> Option<i64> {
    cluster
        .api
        .get("apps/v1", "deployments", "ns", "web")
        .and_then(|d| d["spec"]["replicas"].as_i64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_scales_a_deployment_from_zero_and_back() -> anyhow::Result<()> {
    let pod = EchoServer::start("web-pod").await?;
    let cluster = Cluster::start_with(&scale_from_zero_manifests()).await?;
    let gw = Gateway::start_kubernetes(&cluster.kubeconfig, &[]).await?;
    cluster
        .wait_for("routes.sluice.dev", "ns", "web", CLUSTER_WAIT, |o| {
            object_condition(o, "Ready").is_some_and(|c| c.0 == "True")
        })
        .await?;
    assert_eq!(replicas(&cluster), Some(0));

    // A cold request waits while the Deployment is scaled up…
    let http = gw.http;
    let sent = Instant::now();
    let request =
        tokio::spawn(
            async move { http1_request(http, "GET", "web.example.com", "/", &[], None).await },
        );
    eventually("scaled to 1", CLUSTER_WAIT, async || {
        Ok((replicas(&cluster) == Some(1)).then_some(()))
    })
    .await?;
    let scale_write = cluster
        .api
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH" && r.path.ends_with("/deployments/web/scale"))
        .map(|r| r.at);
    if let Some(at) = scale_write {
        eprintln!(
            "cold request to scale write: {:?}",
            at.saturating_duration_since(sent)
        );
    }
    assert!(
        !request.is_finished(),
        "answered before any instance was ready"
    );

    // …and is answered once the new pod's endpoint is ready, as in any cluster.
    cluster
        .apply(&endpoint_slice("ns", "web", "http", &[pod.addr()]))
        .await?;
    let response = tokio::time::timeout(CLUSTER_WAIT, request).await???;
    assert_eq!(response.status, 200);
    assert_eq!(response.echo()?.name, "web-pod");
    let revision = cluster
        .wait_for("revisions.sluice.dev", "ns", "web-1", CLUSTER_WAIT, |o| {
            o["status"]["actualScale"] == 1
        })
        .await?;
    assert_eq!(revision["status"]["desiredScale"], 1);

    // Idle: back to zero after the stable window and grace period.
    eventually("scaled to 0", Duration::from_secs(40), async || {
        Ok((replicas(&cluster) == Some(0)).then_some(()))
    })
    .await?;
    cluster
        .wait_for("revisions.sluice.dev", "ns", "web-1", CLUSTER_WAIT, |o| {
            o["status"]["desiredScale"] == 0
        })
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_scale_target_that_cannot_be_scaled_becomes_a_condition() -> anyhow::Result<()> {
    let mut manifests = scale_from_zero_manifests();
    // Forbidden for the Deployment, and a kind without a scale subresource.
    manifests += "apiVersion: sluice.dev/v1alpha1\nkind: Revision\nmetadata:\n  name: cm-1\n  namespace: ns\n  annotations: {autoscaling.knative.dev/initial-scale: \"0\"}\nspec:\n  service: {name: web, port: 80}\n  scaleTargetRef: {apiVersion: v1, kind: ConfigMap, name: web}\n---\n";
    manifests += "apiVersion: sluice.dev/v1alpha1\nkind: Route\nmetadata: {name: cm, namespace: ns}\nspec:\n  hosts: [cm.example.com]\n  traffic: [{revision: cm-1, percent: 100}]\n---\n";
    let cluster = Cluster::start_with(&manifests).await?;
    cluster.api.forbid("patch", "deployments", Some("scale"));
    let gw = Gateway::start_kubernetes(&cluster.kubeconfig, &[]).await?;
    for (host, revision, needle) in [
        ("web.example.com", "web-1", "forbidden"),
        ("cm.example.com", "cm-1", "no scale subresource"),
    ] {
        // A cold request (held: a Revision's wait is bounded by its timeoutSeconds).
        let http = gw.http;
        let held =
            tokio::spawn(async move { http1_request(http, "GET", host, "/", &[], None).await });
        let object = cluster
            .wait_for("revisions.sluice.dev", "ns", revision, CLUSTER_WAIT, |o| {
                object_condition(o, "ResourcesAvailable").is_some_and(|c| c.1 == "ScaleFailed")
            })
            .await?;
        let message = object["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "ResourcesAvailable")
            .and_then(|c| c["message"].as_str())
            .unwrap_or_default()
            .to_string();
        assert!(
            message.to_lowercase().contains(needle),
            "{revision}: {message}"
        );
        assert!(!held.is_finished(), "{host}: answered without an instance");
        held.abort();
    }
    assert_eq!(replicas(&cluster), Some(0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_controller_takes_over_within_fifteen_seconds_without_double_writes(
) -> anyhow::Result<()> {
    let cluster = Cluster::start_with(
        &(service("ns", "main", "http", 80, &[])
            + &simple_ingress("ns", "hello", "hello.example.com", "main", "80")),
    )
    .await?;
    let kubeconfig = cluster.kubeconfig.clone();
    let start = |identity: &'static str| {
        let kubeconfig = kubeconfig.clone();
        async move { Controller::start_kubernetes(&kubeconfig, &["--identity", identity]).await }
    };
    let mut a = start("controller-a").await?;
    eventually("a leads", CLUSTER_WAIT, async || {
        Ok(
            (cluster.lease_holder("knative-serving").as_deref() == Some("controller-a"))
                .then_some(()),
        )
    })
    .await?;
    let mut b = start("controller-b").await?;
    // Translated (no proxy is connected, so the load balancer is not ready): one write.
    cluster
        .wait_for(KINGRESSES, "ns", "hello", CLUSTER_WAIT, |o| {
            object_condition(o, "NetworkConfigured").is_some_and(|c| c.0 == "True")
        })
        .await?;
    assert_eq!(a.admin_get("/leader").await?.status, 200);
    assert_eq!(b.admin_get("/leader").await?.status, 503);
    holds_for("one writer", Duration::from_secs(3), async || {
        anyhow::ensure!(cluster.lease_holder("knative-serving").as_deref() == Some("controller-a"));
        anyhow::ensure!(cluster.status_writes("ingresses", "hello") == 1);
        Ok(())
    })
    .await?;

    // The leader dies without releasing the Lease.
    a.kill()?;
    let died = Instant::now();
    eventually("b leads", CLUSTER_WAIT, async || {
        Ok(
            (cluster.lease_holder("knative-serving").as_deref() == Some("controller-b"))
                .then_some(()),
        )
    })
    .await?;
    let failover = died.elapsed();
    eventually("b says it leads", WAIT, async || {
        Ok((b.admin_get("/leader").await?.status == 200).then_some(()))
    })
    .await?;
    eprintln!("failover after a crash: {failover:?}");
    assert!(failover <= Duration::from_secs(15), "{failover:?}");
    assert_eq!(
        cluster.status_writes("ingresses", "hello"),
        1,
        "the new leader found the status current"
    );

    // The new leader writes what changes.
    cluster
        .apply(&simple_ingress(
            "ns",
            "hello",
            "hello2.example.com",
            "main",
            "80",
        ))
        .await?;
    cluster
        .wait_for(KINGRESSES, "ns", "hello", CLUSTER_WAIT, |o| {
            o["status"]["observedGeneration"] == 2
        })
        .await?;
    assert_eq!(cluster.status_writes("ingresses", "hello"), 2);
    b.kill()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_errors_expired_versions_and_an_api_server_restart_lose_no_update(
) -> anyhow::Result<()> {
    let backend = EchoServer::start("main").await?;
    let mut cluster =
        Cluster::start_with(&served(backend.addr(), "one", "one.example.com")).await?;
    let gw = Gateway::start_kubernetes(&cluster.kubeconfig, &[]).await?;
    wait_code(&gw, "one.example.com", 200).await?;

    // Watches cut: they resume from their resourceVersion.
    cluster.api.disconnect_watches();
    cluster
        .apply(&simple_ingress(
            "ns",
            "two",
            "two.example.com",
            "main",
            "80",
        ))
        .await?;
    wait_code(&gw, "two.example.com", 200).await?;

    // Their resourceVersion expired (410): they list again.
    cluster.api.compact();
    cluster.api.disconnect_watches();
    cluster
        .apply(&simple_ingress(
            "ns",
            "three",
            "three.example.com",
            "main",
            "80",
        ))
        .await?;
    wait_code(&gw, "three.example.com", 200).await?;

    // The API server restarts; what changed while it was down is seen when it is back.
    cluster.api.stop().await;
    assert!(cluster.api.delete(INGRESS_GV, "ingresses", "ns", "one"));
    cluster.api.apply(yaml_document(&simple_ingress(
        "ns",
        "four",
        "four.example.com",
        "main",
        "80",
    ))?)?;
    cluster.api.restart().await?;
    wait_code(&gw, "four.example.com", 200).await?;
    wait_code(&gw, "one.example.com", 404).await?;
    assert_eq!(status_code(&gw, "two.example.com").await?, 200);
    assert_eq!(status_code(&gw, "three.example.com").await?, 200);
    Ok(())
}

#[tokio::test]
async fn a_forbidden_status_write_is_reported_and_retried_not_fatal() -> anyhow::Result<()> {
    let backend = EchoServer::start("main").await?;
    let cluster =
        Cluster::start_with(&served(backend.addr(), "hello", "hello.example.com")).await?;
    cluster.api.forbid("patch", "ingresses", Some("status"));
    let gw = Gateway::start_kubernetes(&cluster.kubeconfig, &[]).await?;
    wait_code(&gw, "hello.example.com", 200).await?;
    let problem = gw
        .wait_status("StatusWrite", "", "Ingress ns/hello", |s| {
            reason(s, "Ready") == Some("Forbidden")
        })
        .await?;
    assert_eq!(condition(&problem, "Ready"), Some("False"));
    assert!(cluster.get(KINGRESSES, "ns", "hello").await?["status"].is_null());

    // Allowed again: the retry writes it, and the problem is gone.
    cluster.api.allow_all();
    cluster
        .wait_for(KINGRESSES, "ns", "hello", CLUSTER_WAIT, kingress_ready)
        .await?;
    eventually("problem cleared", CLUSTER_WAIT, async || {
        Ok(gw
            .status_of("StatusWrite", "", "Ingress ns/hello")
            .await?
            .is_none()
            .then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_watch_holds_readiness_and_shows_why_until_it_is_allowed() -> anyhow::Result<()>
{
    let backend = EchoServer::start("main").await?;
    let cluster =
        Cluster::start_with(&served(backend.addr(), "hello", "hello.example.com")).await?;
    cluster.api.forbid("list", "secrets", None);
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("token"), "t\n")?;
    let (xds, admin) = (free_addr(LOCALHOST)?, free_addr(LOCALHOST)?);
    let mut command = std::process::Command::new(SLUICE);
    command
        .args(["controller", "--kubernetes", "--kubeconfig"])
        .arg(&cluster.kubeconfig)
        .args([
            "--xds-listen",
            &xds.to_string(),
            "--admin",
            &admin.to_string(),
            "--probe-addr",
            "127.0.0.1:0",
        ])
        .arg("--xds-token-file")
        .arg(dir.path().join("token"))
        .env("SLUICE_LOG", log_filter());
    let mut controller = Process::spawn("controller", command)?;
    let get = |path: &'static str| async move {
        sluice_testkit::http1_request(admin, "GET", "admin", path, &[], None).await
    };
    let problem = eventually("the forbidden watch on /status", CLUSTER_WAIT, async || {
        let statuses: Vec<Value> = serde_json::from_slice(&get("/status").await?.body)?;
        Ok(statuses
            .into_iter()
            .find(|s| s["kind"] == "Watch" && s["name"] == "v1/secrets"))
    })
    .await?;
    assert_eq!(reason(&problem, "Ready"), Some("Forbidden"), "{problem:#}");
    assert_eq!(
        get("/ready").await?.status,
        503,
        "not ready with a kind unlisted"
    );
    controller.check_running()?;

    cluster.api.allow_all();
    eventually("ready once allowed", Duration::from_secs(40), async || {
        Ok((get("/ready").await?.status == 200).then_some(()))
    })
    .await?;
    let statuses: Vec<Value> = serde_json::from_slice(&get("/status").await?.body)?;
    assert!(
        !statuses.iter().any(|s| s["kind"] == "Watch"),
        "{statuses:#?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_controller_reports_ready_only_once_its_proxies_serve() -> anyhow::Result<()> {
    let backend = EchoServer::start("main").await?;
    let cluster =
        Cluster::start_with(&served(backend.addr(), "hello", "hello.example.com")).await?;
    let controller = Controller::start_kubernetes(&cluster.kubeconfig, &[]).await?;
    // Translated, but with no proxy connected nothing serves it yet.
    let waiting = cluster
        .wait_for(KINGRESSES, "ns", "hello", CLUSTER_WAIT, |o| {
            object_condition(o, "NetworkConfigured").is_some_and(|c| c.0 == "True")
        })
        .await?;
    assert_eq!(
        object_condition(&waiting, "LoadBalancerReady")
            .map(|c| c.0)
            .as_deref(),
        Some("Unknown")
    );
    let proxy = Proxy::start(&controller.proxy("proxy-1")?).await?;
    cluster
        .wait_for(KINGRESSES, "ns", "hello", CLUSTER_WAIT, kingress_ready)
        .await?;
    let r = http1_request(proxy.http, "GET", "hello.example.com", "/", &[], None).await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.echo()?.name, "main");
    Ok(())
}

/// The names of the proxies `controller` lists as connected on `/status`.
async fn listed_proxies(controller: &Controller) -> anyhow::Result<Vec<String>> {
    Ok(controller
        .proxy_entries()
        .await?
        .iter()
        .filter_map(|e| e["name"].as_str().map(str::to_string))
        .collect())
}

/// Waits until `controller` lists only `proxy-1`, up to date.
async fn serves_only_proxy_1(controller: &Controller, bound: Duration) -> anyhow::Result<()> {
    eventually("the controller serves proxy-1", bound, async || {
        let entries = controller.proxy_entries().await?;
        let names: Vec<_> = entries.iter().map(|e| &e["name"]).collect();
        anyhow::ensure!(names == ["proxy-1"], "lists {names:?}");
        Ok(entries[0]["status"]["proxy"]["version"]
            .is_string()
            .then_some(()))
    })
    .await
}

const REPORTING_PROXIES: &str = "sluice_autoscaler_reporting_proxies ";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_one_service_only_the_leader_serves_proxies_and_they_follow_it_over_a_failover(
) -> anyhow::Result<()> {
    let pod = EchoServer::start("web-pod").await?;
    let cluster = Cluster::start_with(&scale_from_zero_manifests()).await?;
    let mut a =
        Controller::start_kubernetes(&cluster.kubeconfig, &["--identity", "controller-a"]).await?;
    eventually("a leads", CLUSTER_WAIT, async || {
        Ok(
            (cluster.lease_holder("knative-serving").as_deref() == Some("controller-a"))
                .then_some(()),
        )
    })
    .await?;
    let b =
        Controller::start_kubernetes(&cluster.kubeconfig, &["--identity", "controller-b"]).await?;
    // The standby gets the first connection: a proxy that stayed where it landed would stay
    // on the standby.
    let service = ServiceForwarder::start(vec![b.xds, a.xds]).await?;
    let proxy = Proxy::start(&ProxySpec {
        node_id: "proxy-1".to_string(),
        xds: service.addr,
        auth: a.proxy_auth()?,
        ip: LOCALHOST,
        netns: None,
    })
    .await?;

    // Refused by the standby, served by the leader, which hears its load.
    serves_only_proxy_1(&a, WAIT).await?;
    let sent = service.sent();
    assert!(
        sent[0] >= 1 && sent[1] >= 1,
        "connections per replica: {sent:?}"
    );
    wait_metric(&a, REPORTING_PROXIES, |v| v == 1.0, WAIT).await?;
    holds_for(
        "the standby serves no proxy",
        Duration::from_secs(2),
        async || {
            let listed = listed_proxies(&b).await?;
            anyhow::ensure!(listed.is_empty(), "b lists {listed:?}");
            anyhow::ensure!(metric(&b, REPORTING_PROXIES).await? == Some(0.0));
            Ok(())
        },
    )
    .await?;
    let route = cluster
        .wait_for("routes.sluice.dev", "ns", "web", CLUSTER_WAIT, |o| {
            object_condition(o, "Ready").is_some_and(|c| c.0 == "True")
        })
        .await?;

    // A cold request: its poke reaches the leader, which scales the Deployment from zero.
    let http = proxy.http;
    let cold =
        tokio::spawn(
            async move { http1_request(http, "GET", "web.example.com", "/", &[], None).await },
        );
    eventually("scaled to 1", CLUSTER_WAIT, async || {
        Ok((replicas(&cluster) == Some(1)).then_some(()))
    })
    .await?;
    cluster
        .apply(&endpoint_slice("ns", "web", "http", &[pod.addr()]))
        .await?;
    let response = tokio::time::timeout(CLUSTER_WAIT, cold).await???;
    assert_eq!(response.status, 200);
    serves_only_proxy_1(&a, WAIT).await?;
    let route_writes = cluster.status_writes("routes", "web");

    // The leader dies without releasing the Lease; the proxy serves its last config meanwhile.
    a.kill()?;
    let died = Instant::now();
    assert_eq!(proxy.get("web.example.com", "/").await?.status, 200);
    eventually("b leads", CLUSTER_WAIT, async || {
        Ok(
            (cluster.lease_holder("knative-serving").as_deref() == Some("controller-b"))
                .then_some(()),
        )
    })
    .await?;
    // Lease expiry (≤ 12.4 s), then at most one reconnect backoff (≤ 15 s).
    serves_only_proxy_1(&b, Duration::from_secs(40)).await?;
    eprintln!(
        "leader killed to its proxy served by the new one: {:?}",
        died.elapsed()
    );
    wait_metric(&b, REPORTING_PROXIES, |v| v == 1.0, WAIT).await?;
    assert_eq!(proxy.get("web.example.com", "/").await?.status, 200);

    // The new leader found the Route served once its proxy was back: nothing rewritten.
    holds_for(
        "the Route is not rewritten",
        Duration::from_secs(3),
        async || {
            anyhow::ensure!(cluster.status_writes("routes", "web") == route_writes);
            Ok(())
        },
    )
    .await?;
    let after = cluster.get("routes.sluice.dev", "ns", "web").await?;
    assert_eq!(
        after["status"], route["status"],
        "same times, same everything"
    );
    Ok(())
}
