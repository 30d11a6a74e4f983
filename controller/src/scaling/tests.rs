use super::*;
use crate::hub::HubMetrics;
use crate::local::EndpointPublisher;
use crate::manifest::parse_file;
use crate::scaler::ScaleError;
use crate::TranslateConfig;
use async_trait::async_trait;
use prometheus::Registry;
use std::sync::Mutex;

/// Revision `ns/web-1` scaling Deployment `web`, whose Service has two ready endpoints.
const TWO_READY: &str = "---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: ns}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-0, namespace: ns, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.0.0.1], conditions: {ready: true}}, {addresses: [10.0.0.2], conditions: {ready: true}}]
---
apiVersion: sluice.dev/v1alpha1
kind: Revision
metadata: {name: web-1, namespace: ns}
spec:
  service: {name: web, port: 80}
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
";

/// Records every scale request, and when it came.
#[derive(Default)]
struct Recorded {
    requests: Mutex<Vec<(Instant, u32)>>,
}

impl Recorded {
    fn since(&self, at: Instant) -> Vec<u32> {
        let requests = self.requests.lock().expect("not poisoned");
        requests
            .iter()
            .filter(|(when, _)| *when >= at)
            .map(|(_, replicas)| *replicas)
            .collect()
    }
}

#[async_trait]
impl Scaler for Recorded {
    async fn scale(&self, _target: &ScalingTarget, replicas: u32) -> Result<(), ScaleError> {
        let mut requests = self.requests.lock().expect("not poisoned");
        requests.push((Instant::now(), replicas));
        Ok(())
    }
    fn ready(&self, _target: &ScalingTarget) -> u32 {
        0
    }
    fn running(&self, _target: &ScalingTarget) -> u32 {
        2
    }
}

#[tokio::test(start_paused = true)]
async fn a_replica_taking_the_lease_holds_the_ready_instances_rather_than_its_idle_history() {
    let hub = Hub::new(
        TranslateConfig::default(),
        HubMetrics::new(&Registry::new()).expect("fresh registry"),
    );
    let file = parse_file("web.yaml".to_string(), TWO_READY);
    assert!(file.problems.is_empty(), "{:?}", file.problems);
    hub.edit(|c| c.apply_manifest_files(vec![file], &[]));
    let publisher: Arc<dyn EndpointPublisher> = hub.clone();
    let scaler = Arc::new(Recorded::default());
    let (leader_tx, leader) = watch::channel(false);
    let autoscaler = Autoscaler::new(
        hub,
        LocalProcesses::new(publisher),
        RevisionMetrics::new(&Registry::new()).expect("fresh registry"),
    )
    .with_cluster_scaler(scaler.clone())
    .with_leader(leader);
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(async move { autoscaler.run(shutdown).await });

    // A standby hears no proxy: its history is idle, and it would scale down (the cluster
    // scaler drops a standby's requests).
    tokio::time::sleep(Duration::from_secs(120)).await;
    let standby = scaler.since(Instant::now() - Duration::from_secs(10));
    assert!(
        standby.iter().any(|r| *r < 2),
        "the idle history wants fewer: {standby:?}"
    );

    // Leading, it starts afresh: the ready instances are held while proxies reconnect.
    leader_tx.send_replace(true);
    let took_over = Instant::now();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let leading = scaler.since(took_over);
    assert!(
        !leading.is_empty() && leading.iter().all(|r| *r == 2),
        "requests after taking over: {leading:?}"
    );
    stop.send_replace(true);
    task.await.expect("no panic");
}

/// Revision `ns/web-1` (target 10 in-flight requests per instance) scaling Deployment `web`,
/// whose Service has `ready` ready endpoints.
fn web_with_ready(ready: u32) -> String {
    let endpoints: Vec<String> = (1..=ready)
        .map(|i| format!("{{addresses: [10.0.0.{i}], conditions: {{ready: true}}}}"))
        .collect();
    format!(
        "---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: ns}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-0, namespace: ns, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: 8080}}]
endpoints: [{}]
---
apiVersion: sluice.dev/v1alpha1
kind: Revision
metadata:
  name: web-1
  namespace: ns
  annotations: {{autoscaling.knative.dev/target: \"10\"}}
spec:
  service: {{name: web, port: 80}}
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}
",
        endpoints.join(", ")
    )
}

/// The load one proxy reports at second `t` of the replay scenario: idle, a steep climb
/// (panic), a plateau, then idle long enough to scale to zero.
fn scenario_load(t: u64) -> f64 {
    match t {
        0..20 => 0.0,
        20..40 => (t - 19) as f64 * 4.0 + 0.25,
        40..90 => 23.5,
        _ => 0.0,
    }
}

#[tokio::test(start_paused = true)]
async fn the_exported_trace_replays_to_the_decisions_the_loop_made() {
    use crate::autoscaler::simulate::{parse_trace, simulate};
    use crate::history::History;
    use sluice_xds::load::{LoadReport, RevisionLoad};
    use sluice_xds::server::SessionEvents;

    let hub = Hub::new(
        TranslateConfig::default(),
        HubMetrics::new(&Registry::new()).expect("fresh registry"),
    );
    let apply = |ready: u32| {
        let file = parse_file("web.yaml".to_string(), &web_with_ready(ready));
        assert!(file.problems.is_empty(), "{:?}", file.problems);
        hub.edit(|c| c.apply_manifest_files(vec![file], &[]));
    };
    apply(1);
    let publisher: Arc<dyn EndpointPublisher> = hub.clone();
    let scaler = Arc::new(Recorded::default());
    let history = Arc::new(History::new(Duration::from_secs(600)));
    let autoscaler = Autoscaler::new(
        hub.clone(),
        LocalProcesses::new(publisher),
        RevisionMetrics::new(&Registry::new()).expect("fresh registry"),
    )
    .with_cluster_scaler(scaler.clone())
    .with_history(history.clone());
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(async move { autoscaler.run(shutdown).await });

    // One proxy reports every second, half a second off the loop's ticks; ready instances
    // follow the replicas asked for a second late, as a Deployment would.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for t in 0..200 {
        let concurrency = scenario_load(t);
        let revisions = (concurrency > 0.0)
            .then(|| RevisionLoad {
                revision: "ns/web-1".to_string(),
                concurrency,
                requests: concurrency * 3.0,
                held: 0,
            })
            .into_iter()
            .collect();
        hub.load(
            1,
            LoadReport {
                interval_ms: 1000,
                revisions,
            },
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let asked = scaler.since(Instant::now() - Duration::from_secs(1000));
        apply(asked.last().copied().unwrap_or(1));
    }
    // Read both at once: no decision can come between them.
    let csv = history
        .trace_csv("ns/web-1")
        .expect("the Revision is tracked");
    let live = scaler.since(Instant::now() - Duration::from_secs(1000));
    let points = history.view(600).remove(0).points;
    stop.send_replace(true);
    task.await.expect("no panic");

    let trace = parse_trace(&csv).expect("simulate reads the trace");
    assert_eq!(trace.first().map(|p| p.second), Some(0), "{csv}");
    let (target, _) = hub.scaling_targets().remove(0);
    let spec = target.scaling.expect("valid settings");
    let config = hub.autoscaler_config().expect("valid config-autoscaler");
    let rows = simulate(&trace, &spec, &config);

    // The replicas the loop asked its scaler for, decision by decision, are the replay's.
    let replayed: Vec<u32> = rows.iter().map(|r| r.desired.max(0) as u32).collect();
    assert_eq!(live, replayed, "live vs replayed replicas");
    // And second by second, with panic mode.
    let recorded: Vec<(u64, u32, bool)> = points
        .iter()
        .filter(|p| p.second > 0 && p.second % 2 == 0)
        .map(|p| (p.second, p.desired, p.panicking))
        .collect();
    let simulated: Vec<(u64, u32, bool)> = rows
        .iter()
        .map(|r| (r.second, r.desired.max(0) as u32, r.panicking))
        .collect();
    assert_eq!(recorded, simulated);
    // The scenario is worth replaying: it panicked, scaled up and went back to zero.
    assert!(rows.iter().any(|r| r.panicking), "{rows:?}");
    assert!(live.iter().any(|r| *r >= 3), "{live:?}");
    assert_eq!(live.last(), Some(&0), "{live:?}");
}
